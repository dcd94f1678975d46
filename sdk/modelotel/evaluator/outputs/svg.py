"""Small inline-SVG charts for the HTML report: no JavaScript, no CDN, a few kB each."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")
W, H = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 34


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000 or a < 0.01:
        return f"{v:.2g}"
    if a >= 10:
        return f"{v:.0f}"
    return f"{v:.3g}"


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.ceil(lo / step) * step
    ticks = []
    v = start
    while v <= hi + 1e-12 and len(ticks) < 12:
        ticks.append(round(v, 12))
        v += step
    return ticks


def _time_label(t: float, span: float) -> str:
    dt = datetime.fromtimestamp(t, timezone.utc)
    return dt.strftime("%H:%M:%S" if span < 3 * 3600 else "%m-%d %H:%M")


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    *,
    title: str,
    y_label: str = "",
    hlines: Sequence[tuple[str, float]] = (),
    y_min: float | None = None,
    x_is_time: bool = True,
    x_label: str = "",
) -> str:
    """Lines over time (x = epoch seconds) with optional labelled horizontal reference lines."""
    pts = [p for _, s in series for p in s if math.isfinite(p[1])]
    if not pts:
        return f'<figure><figcaption>{escape(title)}</figcaption><p class="empty">no data</p></figure>'
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts] + [v for _, v in hlines]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x1 = x0 + 1
    y0 = min(ys) if y_min is None else y_min
    y1 = max(ys)
    if y1 == y0:
        y1 = y0 + (abs(y0) or 1.0)
    y1 += (y1 - y0) * 0.05

    def sx(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT)

    def sy(y: float) -> float:
        return TOP + (1 - (y - y0) / (y1 - y0)) * (H - TOP - BOTTOM)

    out = [f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{escape(title)}">']
    for t in _nice_ticks(y0, y1):
        y = sy(t)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for i in range(5):
        x = x0 + (x1 - x0) * i / 4
        label = _time_label(x, x1 - x0) if x_is_time else _fmt(x)
        out.append(f'<text x="{sx(x):.1f}" y="{H - 14}" text-anchor="middle">{label}</text>')
    if x_label:
        out.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 1}" text-anchor="middle">{escape(x_label)}</text>')
    if y_label:
        out.append(f'<text x="12" y="{TOP + 8}" class="axis">{escape(y_label)}</text>')
    for name, v in hlines:
        y = sy(v)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="ref"/>')
        out.append(f'<text x="{W - RIGHT - 4}" y="{y - 4:.1f}" text-anchor="end" class="ref">{escape(name)}</text>')
    for i, (name, s) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        good = [(sx(x), sy(y)) for x, y in s if math.isfinite(y)]
        if len(good) == 1:
            out.append(f'<circle cx="{good[0][0]:.1f}" cy="{good[0][1]:.1f}" r="2.5" fill="{color}"/>')
        elif good:
            d = " ".join(f"{x:.1f},{y:.1f}" for x, y in good)
            out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.6"/>')
        out.append(
            f'<text x="{LEFT + 8 + 110 * i}" y="{TOP + 10}" fill="{color}" class="legend">&#9632; {escape(name)}</text>'
        )
    out.append("</svg>")
    return f"<figure><figcaption>{escape(title)}</figcaption>{''.join(out)}</figure>"


def bar_chart(
    bars: Sequence[tuple[str, float]], *, title: str, hlines: Sequence[tuple[str, float]] = (), y_label: str = ""
) -> str:
    """Vertical bars with labels, e.g. PSI per feature with the 0.1 / 0.25 tiers as reference lines."""
    if not bars:
        return f'<figure><figcaption>{escape(title)}</figcaption><p class="empty">no data</p></figure>'
    y1 = max([v for _, v in bars] + [v for _, v in hlines] + [1e-9]) * 1.1
    slot = (W - LEFT - RIGHT) / len(bars)

    def sy(y: float) -> float:
        return TOP + (1 - y / y1) * (H - TOP - BOTTOM)

    out = [f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{escape(title)}">']
    for t in _nice_ticks(0.0, y1):
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for i, (name, v) in enumerate(bars):
        x = LEFT + i * slot + slot * 0.15
        color = PALETTE[0] if not hlines or v < hlines[-1][1] else PALETTE[1]
        out.append(
            f'<rect x="{x:.1f}" y="{sy(max(v, 0)):.1f}" width="{slot * 0.7:.1f}" '
            f'height="{sy(0) - sy(max(v, 0)):.1f}" fill="{color}"><title>{escape(name)}: {_fmt(v)}</title></rect>'
        )
        out.append(f'<text x="{x + slot * 0.35:.1f}" y="{H - 14}" text-anchor="middle">{escape(name[:14])}</text>')
    for name, v in hlines:
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" class="ref"/>')
        out.append(f'<text x="{W - RIGHT - 4}" y="{sy(v) - 4:.1f}" text-anchor="end" class="ref">{escape(name)}</text>')
    if y_label:
        out.append(f'<text x="12" y="{TOP + 8}" class="axis">{escape(y_label)}</text>')
    out.append("</svg>")
    return f"<figure><figcaption>{escape(title)}</figcaption>{''.join(out)}</figure>"


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1340px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.pass{background:#e6f4ea}.fail{background:#fce8e6}
.inconclusive{background:#fef7e0}figure{display:inline-block;margin:8px 12px 8px 0;vertical-align:top}
figcaption{font-weight:600;margin-bottom:2px}svg text{font-size:11px;fill:#444}svg .grid{stroke:#eee}
svg .ref{stroke:#999;stroke-dasharray:4 3;fill:#777}svg .legend{font-size:12px}.empty{color:#888}
.note{color:#555;font-size:13px}code{background:#f4f4f4;padding:0 3px}
"""
