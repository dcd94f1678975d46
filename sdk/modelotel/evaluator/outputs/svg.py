"""Inline-SVG charts for the HTML report: no JavaScript, no external file, a few kB each.

Responsive without script: a chart is as wide as the page. Horizontal positions are percentages of the plot's
width and vertical ones pixels, so text keeps its size at any width (a ``viewBox`` would shrink an 11 px label
to 6 px on a phone). The lines themselves are drawn in an inner ``<svg>`` whose ``viewBox`` is stretched to the
plot (``preserveAspectRatio="none"``) with strokes that do not scale. The y-axis labels sit in a fixed-width
``<svg>`` left of the plot, so a plot's own text is only x-axis ticks and reference-line labels, placed so that
none overlaps another or leaves the chart (checked in a browser by tests/e2e/test_report_browser.py).

The legend is HTML above the plot: each key's swatch has its series' colour, and the drawn element carries the
same ``data-key``. Reference lines (thresholds) are dashed and in the legend; a reference line is also
labelled in the plot when the label has room (at least ``LABEL_GAP`` px from the previous one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from .chart_axes import Scale, format_number, linear_ticks, spans_decade, time_ticks, value_scale

# Distinct hues (Tableau 10 without its red, kept for thresholds that page, and its grey, kept for tickets)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
RED, GREY = "#d62728", "#7f7f7f"
DARK_RED, DARK_GREY = "#8c1c13", "#3b3b3b"  # second shades, so that two thresholds never share a colour
TOP, PLOT_H, AXIS_W = 10, 190, 64  # px: space above the plot, the plot's height, the y-axis labels' width
X_TICKS_H = 36  # px below the plot: tick labels and the axis title
LABEL_GAP = 14  # px between two reference-line labels
MAX_Y_TICKS = 8
MIN_TICK_GAP = 18  # px between two y tick labels
EDGE = 0.1  # a tick this close to either end is anchored at its end of the label, not its middle


@dataclass(frozen=True)
class Series:
    """One line: ``points`` are ``(x, y)``; ``band`` ``(x, low, high)`` draws an interval around it."""

    name: str
    points: Sequence[tuple[float, float]]
    color: str
    band: Sequence[tuple[float, float, float]] = ()
    dash: str = ""
    width: float = 1.8


@dataclass(frozen=True)
class RefLine:
    """A horizontal (or, in bar charts, vertical) threshold, dashed."""

    name: str
    value: float
    color: str = GREY
    dash: str = "6 4"


@dataclass(frozen=True)
class YAxis:
    """``title`` names the quantity and its unit; ``fmt`` writes a tick; ``log``: logarithmic when the data span
    more than a decade; ``include``: values the axis always holds (0 for a rate)."""

    title: str
    fmt: Callable[[float], str] = format_number
    log: bool = False
    include: tuple[float, ...] = ()


@dataclass(frozen=True)
class Bar:
    name: str
    value: float
    key: str  # the legend entry (a category) whose colour it has


def _key(text: str) -> str:
    return "k" + "".join(c if c.isalnum() else "-" for c in text)


def legend(entries: Sequence[tuple[str, str, bool]]) -> str:
    """``(name, colour, dashed)`` per entry: a swatch of that colour (a dashed rule for reference lines)."""
    keys = []
    for name, color, dashed in entries:
        cls = "swatch ref" if dashed else "swatch"
        prop = "border-color" if dashed else "background"
        keys.append(
            f'<span class="key" data-key="{_key(name)}"><i class="{cls}" style="{prop}:{color}"></i>'
            f"{escape(name)}</span>"
        )
    return f'<div class="legend">{"".join(keys)}</div>'


def _x_labels(ticks: Sequence[tuple[float, str]], frac: Callable[[float], float], y: float) -> list[str]:
    """Tick labels at percentages of the width; every other one (counted from the last) is ``minor`` and hidden
    on a narrow screen, so that the remaining ones keep apart at 390 px."""
    out = []
    n = len(ticks)
    for i, (x, label) in enumerate(ticks):
        f = min(max(frac(x), 0.0), 1.0) if n > 1 else 0.5
        anchor = "start" if f < EDGE and n > 1 else "end" if f > 1 - EDGE and n > 1 else "middle"
        minor = ' class="minor"' if (n - 1 - i) % 2 and n > 3 else ""
        out.append(f'<text x="{f * 100:.2f}%" y="{y:.0f}" text-anchor="{anchor}"{minor}>{escape(label)}</text>')
    return out


def _y_ticks(scale: Scale) -> list[float]:
    """Linear: at most ``MAX_Y_TICKS``. Log: 1-2-5 per decade while the closest two (a factor 2, or 2.5) keep
    ``MIN_TICK_GAP`` px apart, else the powers of ten (every other one, ... while closer than that)."""
    if not scale.log:
        return scale.ticks(MAX_Y_TICKS)
    decades = math.log10(scale.hi / scale.lo)
    if PLOT_H * math.log10(2) / decades >= MIN_TICK_GAP:
        return scale.ticks(64)
    return scale.ticks(max(2, int(PLOT_H / MIN_TICK_GAP)))


def _figure(title: str, body: str, note: str = "", fig_class: str = "chart") -> str:
    note_html = f'<p class="note">{escape(note)}</p>' if note else ""
    return f'<figure class="{fig_class}"><figcaption>{escape(title)}</figcaption>{body}{note_html}</figure>'


def empty_chart(title: str, why: str = "no data") -> str:
    return _figure(title, f'<p class="empty">{escape(why)}</p>')


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    y: YAxis,
    refs: Sequence[RefLine] = (),
    x_time: bool = True,
    x_title: str = "time (UTC)",
    x_domain: tuple[float, float] | None = None,
    note: str = "",
) -> str:
    """Lines over time (x = epoch seconds, or plain numbers when not ``x_time``) with dashed reference lines."""
    drawn = [(s, [(x, v) for x, v in s.points if math.isfinite(x) and math.isfinite(v)]) for s in series]
    xs = [x for _, pts in drawn for x, _ in pts]
    values = [v for _, pts in drawn for _, v in pts] + [v for s in series for _, lo, hi in s.band for v in (lo, hi)]
    if not xs:
        return empty_chart(title)
    log = y.log and spans_decade(values)
    if log:  # a log axis shows only positive values: say so rather than drop them silently
        dropped = sum(1 for _, pts in drawn for _, v in pts if v <= 0)
        drawn = [(s, [(x, v) for x, v in pts if v > 0]) for s, pts in drawn]
        if dropped:
            note = (note + " " if note else "") + f"{dropped} value(s) at or below 0 not drawn on the log axis."
    ys = value_scale(values, log=log, include=tuple(v for v in (*y.include, *(r.value for r in refs))))
    x0, x1 = x_domain or (min(xs), max(xs))
    single = x1 <= x0
    xs_scale = Scale(x0, x1 if not single else x0 + 1.0)

    def fx(x: float) -> float:
        return 0.5 if single else min(max(xs_scale.frac(x), 0.0), 1.0)

    def py(v: float) -> float:  # px from the top of the area svg
        return TOP + (1 - ys.frac(v)) * PLOT_H

    height = TOP + PLOT_H + X_TICKS_H
    yticks = _y_ticks(ys)
    # the y axis: its own svg, labels right-aligned against the plot
    axis = [f'<svg class="yaxis" width="{AXIS_W}" height="{height}" aria-hidden="true">']
    for t in yticks:
        axis.append(f'<text x="{AXIS_W - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{escape(y.fmt(t))}</text>')
    axis.append("</svg>")

    area = [f'<svg class="area" width="100%" height="{height}" role="img" aria-label="{escape(title)}">']
    for t in yticks:
        area.append(f'<line x1="0" x2="100%" y1="{py(t):.1f}" y2="{py(t):.1f}" class="grid"/>')
    area.append(f'<line x1="0" x2="100%" y1="{TOP + PLOT_H}" y2="{TOP + PLOT_H}" class="axisline"/>')
    data = [f'<svg x="0" y="{TOP}" width="100%" height="{PLOT_H}" viewBox="0 0 1000 1000" preserveAspectRatio="none">']
    for s, pts in drawn:
        band = [(x, lo, hi) for x, lo, hi in s.band if math.isfinite(lo) and math.isfinite(hi)]
        if log:
            band = [(x, max(lo, ys.lo), hi) for x, lo, hi in band if hi > 0]
        if len(band) > 1:
            upper = [f"{fx(x) * 1000:.1f},{(1 - ys.frac(hi)) * 1000:.1f}" for x, _, hi in band]
            lower = [f"{fx(x) * 1000:.1f},{(1 - ys.frac(lo)) * 1000:.1f}" for x, lo, _ in reversed(band)]
            data.append(
                f'<polygon points="{" ".join(upper + lower)}" fill="{s.color}" fill-opacity="0.18" stroke="none" '
                'class="band"/>'
            )
        if len(pts) > 1:
            d = " ".join(f"{fx(x) * 1000:.1f},{(1 - ys.frac(v)) * 1000:.1f}" for x, v in pts)
            dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
            data.append(
                f'<polyline points="{d}" fill="none" stroke="{s.color}" stroke-width="{s.width}"{dash} '
                f'vector-effect="non-scaling-stroke" class="series" data-key="{_key(s.name)}"/>'
            )
    data.append("</svg>")
    area.extend(data)
    for s, pts in drawn:  # a lone point: a marker in px (the stretched inner svg would make an ellipse of it)
        if len(pts) == 1:
            x, v = pts[0]
            area.append(
                f'<circle cx="{fx(x) * 100:.2f}%" cy="{py(v):.1f}" r="4" fill="{s.color}" stroke="{s.color}" '
                f'class="series" data-key="{_key(s.name)}"/>'
            )
    placed: list[float] = []
    for r in sorted(refs, key=lambda r: -r.value):
        yy = py(r.value)
        area.append(
            f'<line x1="0" x2="100%" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{r.color}" stroke-dasharray="{r.dash}" '
            f'class="ref" data-key="{_key(r.name)}"/>'
        )
        label_y = yy - 4 if yy - 4 - 11 >= 0 else yy + 13  # above the line, below it at the very top
        if all(abs(label_y - p) >= LABEL_GAP for p in placed) and label_y <= TOP + PLOT_H - 2:
            placed.append(label_y)
            area.append(
                f'<text x="100%" dx="-4" y="{label_y:.1f}" text-anchor="end" class="reflabel">{escape(r.name)}</text>'
            )
    xticks = time_ticks(x0, x1) if x_time else [(t, format_number(t)) for t in linear_ticks(x0, x1, 5)]
    area.extend(_x_labels(xticks, fx, TOP + PLOT_H + 15))
    area.append(
        f'<text x="50%" y="{TOP + PLOT_H + 31}" text-anchor="middle" class="axistitle">{escape(x_title)}</text>'
    )
    area.append("</svg>")

    if single:
        note = (note + " " if note else "") + "One evaluation point so far: a line needs a longer run."
    entries = [(s.name, s.color, bool(s.dash)) for s in series] + [(r.name, r.color, True) for r in refs]
    ytitle = f'<div class="ytitle">{escape(y.title)}{" (log scale)" if log else ""}</div>'
    plot = f'<div class="plot">{"".join(axis)}{"".join(area)}</div>'
    return _figure(title, legend(entries) + ytitle + plot, note)


ROW_H = 36  # px per bar: its name above, the bar below


def bar_rows(
    bars: Sequence[Bar],
    *,
    title: str,
    keys: Sequence[tuple[str, str]],
    refs: Sequence[RefLine] = (),
    x_title: str,
    note: str = "",
    max_name: int = 48,
    value_fmt: Callable[[float], str] = format_number,
) -> str:
    """Horizontal bars, one row each with its full name above it (a name longer than ``max_name`` characters
    is cut, its full text in a ``<title>``); ``keys``: ``(legend name, colour)`` of the bar categories (those with a
    bar are in the legend); ``refs``
    are vertical dashed lines, named in the legend only (thresholds close together would collide in the plot)."""
    if not bars:
        return empty_chart(title)
    colors = dict(keys)
    hi = max([b.value for b in bars] + [r.value for r in refs] + [1e-9]) * 1.05
    scale = Scale(0.0, hi)
    rows_h = ROW_H * len(bars)
    height = rows_h + TOP + X_TICKS_H
    out = [f'<svg class="area bars" width="100%" height="{height}" role="img" aria-label="{escape(title)}">']
    for i, b in enumerate(bars):
        top = TOP + i * ROW_H
        f = min(max(scale.frac(max(b.value, 0.0)), 0.0), 1.0)
        name = b.name if len(b.name) <= max_name else b.name[: max_name - 1] + "\u2026"
        out.append(f'<text x="0" y="{top + 11}" class="barname"><title>{escape(b.name)}</title>{escape(name)}</text>')
        out.append(
            f'<rect x="0" y="{top + 15}" width="{f * 100:.2f}%" height="14" fill="{colors[b.key]}" class="bar" '
            f'data-key="{_key(b.key)}"><title>{escape(b.name)}: {b.value:.6g}</title></rect>'
        )
        value = value_fmt(b.value)
        if f < 0.8:
            out.append(f'<text x="{f * 100:.2f}%" dx="4" y="{top + 26}" class="barvalue">{escape(value)}</text>')
        else:
            out.append(
                f'<text x="{f * 100:.2f}%" dx="-4" y="{top + 26}" text-anchor="end" class="barvalue inside">'
                f"{escape(value)}</text>"
            )
    for r in refs:
        x = scale.frac(r.value) * 100
        out.append(
            f'<line x1="{x:.2f}%" x2="{x:.2f}%" y1="{TOP}" y2="{TOP + rows_h}" stroke="{r.color}" '
            f'stroke-dasharray="{r.dash}" class="ref" data-key="{_key(r.name)}"/>'
        )
    out.append(f'<line x1="0" x2="100%" y1="{TOP + rows_h}" y2="{TOP + rows_h}" class="axisline"/>')
    ticks = [(t, format_number(t)) for t in linear_ticks(0.0, hi, 5)]
    out.extend(_x_labels(ticks, scale.frac, TOP + rows_h + 15))
    out.append(f'<text x="50%" y="{TOP + rows_h + 31}" text-anchor="middle" class="axistitle">{escape(x_title)}</text>')
    out.append("</svg>")
    used = {b.key for b in bars}  # a legend names only what is drawn
    entries = [(name, color, False) for name, color in keys if name in used] + [(r.name, r.color, True) for r in refs]
    return _figure(title, legend(entries) + f'<div class="plot">{"".join(out)}</div>', note)


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px auto;max-width:1400px;
padding:0 16px;color:#222}
h1{font-size:22px;margin:4px 0}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 4px}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}
td:first-child,th:first-child,.text-2 :is(td,th):nth-child(2),.text-7 :is(td,th):nth-child(7),
.text-8 :is(td,th):nth-child(8),.text-9 :is(td,th):nth-child(9){text-align:left}
.pass{background:#e6f4ea}.fail{background:#fce8e6}
.inconclusive,.no_match,.invalid{background:#fef7e0}
figure{margin:10px 0 18px;width:100%}figcaption{font-weight:600;margin-bottom:2px}
.legend{display:flex;flex-wrap:wrap;gap:2px 16px;font-size:12px;margin:2px 0 4px}
.key{white-space:nowrap}.swatch{display:inline-block;width:14px;height:10px;margin-right:5px;vertical-align:baseline}
.swatch.ref{height:0;border-top:2px dashed;vertical-align:middle;margin-bottom:3px}
.ytitle{font-size:12px;color:#555}
.plot{display:flex;width:100%}.plot svg{display:block;overflow:hidden}.plot svg.area{flex:1 1 auto;min-width:0}
.plot svg.yaxis{flex:0 0 auto}
svg text{font-size:11px;fill:#444}svg .grid{stroke:#eee}svg .axisline{stroke:#bbb}
svg .reflabel,svg .barname,svg .barvalue,svg .axistitle{paint-order:stroke;stroke:#fff;stroke-width:3px}
svg .barvalue.inside{fill:#fff;stroke:none}svg .axistitle{fill:#666}
.empty{color:#888}.note{color:#555;font-size:13px}code{background:#f4f4f4;padding:0 3px}
.summary{border:1px solid #ccc;border-radius:6px;padding:8px 12px;margin:10px 0 8px}
.headline{font-weight:600;margin:0 0 6px}
.slo{display:grid;grid-template-columns:9.5em 1fr;gap:2px 12px;padding:8px 0;border-top:1px solid #eee}
.slo:first-of-type{border-top:none}
.badge{font-weight:700;padding:2px 6px;border-radius:4px;text-align:center;align-self:start;border:1px solid}
.badge.fail{color:#a50e0e;border-color:#a50e0e}.badge.pass{color:#137333;border-color:#137333}
.badge.inconclusive,.badge.no_match,.badge.invalid{color:#8a5a00;border-color:#8a5a00}
.slo .name{font-weight:600}.slo .line{margin:1px 0}.slo .next{margin:2px 0}
@media (max-width:700px){body{padding:0 8px}.slo{grid-template-columns:1fr}.badge{justify-self:start}
svg text.minor{display:none}}
"""
