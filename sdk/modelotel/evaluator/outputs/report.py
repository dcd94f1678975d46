"""The HTML report: one self-contained file (inline CSS and SVG, no script, no external file, no raw data).

First the summary (``summary``: per SLO its status, what fires since when, the budget left and the next step,
most urgent first), then the detail: the SLO table; per SLO, the error budget left and the burn rate over every
alert window, re-evaluated at ``POINTS`` times (``slo_history``); per model, latency quantiles over time; drift of
every signal between a reference and a current range; the reliability diagram from feedback; fairness.
docs/report.md explains each part.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape

from ..._version import __version__
from ..durations import format_duration
from ..engine.batch import Evaluation
from ..engine.verdict import error_allowance
from ..quality.cbpe import accuracy_gap
from ..quality.signals import DriftRow, Signals, drifted_by
from .chart_axes import format_percent, format_seconds
from .slo_history import History, history
from .summary import NextStep, SummaryLine, budget_text, firing_text, headline, since_text, sli_text, summarize
from .svg import (
    DARK_GREY,
    DARK_RED,
    GREY,
    PALETTE,
    RED,
    STYLE,
    Bar,
    RefLine,
    Series,
    YAxis,
    bar_rows,
    empty_chart,
    line_chart,
)

POINTS = 120  # re-evaluation times per chart: fine enough for a day at 12 min a point, a few kB per line
PSI_MODERATE, PSI_SIGNIFICANT = 0.1, 0.25
TIER_DASHES = ("7 4", "2 3", "10 3 2 3", "4 4")
TIER_COLOURS = {"page": (RED, DARK_RED), "ticket": (GREY, DARK_GREY)}  # the first and second tier of a severity


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.3%}"


def _href(link: str) -> str | None:
    """A runbook is linked when it is a web address or a relative path (never fetched: the reader clicks it)."""
    scheme = link.split(":", 1)[0].lower() if ":" in link.split("/", 1)[0] else ""
    return link if scheme in ("", "http", "https") else None


def _quality_notes(ev: Evaluation) -> list[tuple[str, ...]]:
    """Per result: CBPE beside realized accuracy and label coverage, as the CLI prints them."""
    estimates = ev.estimates if len(ev.estimates) == len(ev.results) else [None] * len(ev.results)
    out = []
    for r, estimate in zip(ev.results, estimates, strict=True):
        notes = []
        if r.label_coverage is not None:
            notes.append(
                f"label coverage {r.label_coverage:.1%} ({r.events:,.0f} of {r.predictions or 0:,.0f} predictions)"
            )
        if estimate is not None and r.slo.sli.kind == "accuracy" and r.status not in ("no_match", "invalid"):
            gap = accuracy_gap(estimate, r.good, r.events)
            if gap is not None:
                flag = ": beyond noise, miscalibration or concept drift" if gap.flagged else ""
                notes.append(f"estimated accuracy {_pct(gap.estimated)} (CBPE), gap {gap.gap * 100:+.2f} points{flag}")
        out.append(tuple(notes))
    return out


def _next_html(step: NextStep) -> str:
    href = _href(step.link)
    what = "runbook" if step.own else "docs"
    link = f'<a href="{escape(href)}">{escape(step.link)}</a>' if href else f"<code>{escape(step.link)}</code>"
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(step.text))  # commands as code
    return f'<div class="next"><b>next:</b> {text} ({what}: {link})</div>'


def _summary(lines: list[SummaryLine], at: float) -> str:
    out = ['<section class="summary" id="summary">', f'<p class="headline">{escape(headline(lines, at))}</p>']
    for line in lines:
        r = line.result
        out.append(f'<div class="slo" data-slo="{escape(line.name)}" data-status="{r.status}">')
        out.append(f'<span class="badge {r.status}">{escape(line.label)}</span><div>')
        out.append(f'<div class="name">{escape(line.name)}</div>')
        out.append(f'<div class="line">{escape(sli_text(r))}; {escape(budget_text(r))}</div>')
        if line.firing:
            items = "".join(f'<li data-tier="{escape(f.tier)}">{escape(firing_text(f, at))}</li>' for f in line.firing)
            out.append(f'<ul class="firing">{items}</ul>')
        if line.failing_since is not None:
            out.append(f'<div class="line">no tier fires; failing {escape(since_text(line.failing_since, at))}</div>')
        if r.status not in ("pass", "fail"):
            out.append(f'<div class="line">{escape(r.reason)}</div>')
        for note in line.notes:
            out.append(f'<div class="line">{escape(note)}</div>')
        if line.next_step is not None:
            out.append(_next_html(line.next_step))
        out.append("</div></div>")
    out.append("</section>")
    return "".join(out)


def _slo_table(lines: list[SummaryLine]) -> str:
    rows = [
        "<tr><th>SLO</th><th>status</th><th>SLI</th><th>objective</th><th>events</th><th>budget left</th>"
        "<th>firing alerts</th><th>reason</th></tr>"
    ]
    for line in lines:
        r = line.result
        firing = ", ".join(f"{a.name} ({a.severity})" for a in r.alerts if a.firing) or "-"
        remaining = "-" if r.budget_remaining_ratio is None else f"{r.budget_remaining_ratio:.1%}"
        sli = _pct(r.sli)
        if r.sli_lower is not None and r.sli_upper is not None and r.sli_upper - r.sli_lower > 5e-6:
            sli += f" [{_pct(r.sli_lower)}, {_pct(r.sli_upper)}]"  # the bounds the buckets allow, as the CLI shows
        reason = "".join(f"<br>note: {escape(n)}" for n in r.notes) + "".join(f"<br>{escape(n)}" for n in line.notes)
        rows.append(
            f'<tr class="{r.status}"><td>{escape(r.slo.name)}</td><td>{escape(line.label)}</td><td>{sli}</td>'
            f"<td>{_pct(r.slo.objective)}</td><td>{r.events:,.0f}</td><td>{remaining}</td>"
            f"<td>{escape(firing)}</td><td>{escape(r.reason)}{reason}</td></tr>"
        )
    return '<div class="scroll"><table class="text-2 text-7 text-8">' + "".join(rows) + "</table></div>"


def _remaining(sli: float | None, objective: float) -> float | None:
    """Budget left from the SLI: ``1 - (1 - SLI) / (1 - objective)`` (events or slices alike)."""
    return None if sli is None else 1.0 - (1.0 - sli) / error_allowance(objective)


def _budget_chart(hist: History, domain: tuple[float, float]) -> str:
    slo = hist.results[-1].slo
    points, band = [], []
    for t, r in zip(hist.times, hist.results, strict=True):
        if r.budget_remaining_ratio is None:
            continue
        points.append((t, r.budget_remaining_ratio))
        lo, hi = _remaining(r.sli_lower, slo.objective), _remaining(r.sli_upper, slo.objective)
        if lo is not None and hi is not None:
            band.append((t, lo, hi))
    if not any(hi - lo > 1e-9 for _, lo, hi in band):
        band = []  # no interval to show: every event was counted exactly
    return line_chart(
        [Series("budget left", points, PALETTE[0], band=band)],
        title="error budget left",
        y=YAxis("budget left (% of the window's budget; below 0%: overspent)", format_percent, include=(0.0, 1.0)),
        refs=[RefLine("exhausted 0%", 0.0, GREY)],
        x_domain=domain,
        note="The band: the budget the histogram buckets allow (a threshold inside a bucket)." if band else "",
    )


def _burn_chart(hist: History, domain: tuple[float, float]) -> str:
    """The burn rate over every alert window, and each tier's threshold (red: pages, grey: tickets)."""
    last = hist.results[-1]
    tiers = last.slo.alert_tiers
    firing = {a.name for a in last.alerts if a.firing}
    windows = sorted({w for t in tiers for w in (t.short_window, t.long_window)})
    big = {w for t in tiers if t.name in firing for w in (t.short_window, t.long_window)}
    series = []
    for i, w in enumerate(windows):
        key = format_duration(w)
        pts = [
            (t, v) for t, r in zip(hist.times, hist.results, strict=True) if (v := r.burn_rates.get(key)) is not None
        ]
        series.append(Series(f"burn over {key}", pts, PALETTE[i % len(PALETTE)], width=2.4 if w in big else 1.5))
    refs, seen = [], {}
    for i, t in enumerate(tiers):
        shades, count = TIER_COLOURS.get(t.severity, ()), seen.get(t.severity, 0)
        seen[t.severity] = count + 1
        colour = shades[count] if count < len(shades) else PALETTE[-1 - i % len(PALETTE)]
        name = f"{t.name} {t.burn_rate:g}x" + (" (firing)" if t.name in firing else "")
        refs.append(RefLine(name, t.burn_rate, colour, TIER_DASHES[i % len(TIER_DASHES)]))
    if not tiers:
        return empty_chart("burn rate", "no alert tiers")
    return line_chart(
        series,
        title="burn rate per alert window",
        y=YAxis("burn rate (x the rate that spends the budget over the SLO window)", _times, include=(0.0,)),
        refs=refs,
        x_domain=domain,
        note=f"A tier fires when both its windows burn at its threshold or more. Each point: the verdict at that time "
        f"({len(hist.times)} times; the ledger counts in bins of {format_duration(hist.resolution)}).",
    )


def _times(v: float) -> str:
    return f"{v:g}x"


def _budget_charts(lines: list[SummaryLine], histories: dict[str, History], domain: tuple[float, float]) -> str:
    parts = []
    for line in lines:
        hist = histories[line.name]
        parts.append(f'<section class="budget" data-slo="{escape(line.name)}"><h3>{escape(line.name)}</h3>')
        parts.append(_budget_chart(hist, domain))
        parts.append(_burn_chart(hist, domain))
        parts.append("</section>")
    return "".join(parts)


def _latency_charts(signals: Signals, start: float, end: float) -> str:
    """p50/p95/p99 per model over time, on a log axis when they span more than a decade."""
    parts = []
    step = max((end - start) / POINTS, signals.durations.resolution)
    for group in signals.durations.groups():
        series = signals.durations.quantiles_over_time(group, (0.5, 0.95, 0.99), start, end, step)
        lines = [
            Series(name, [(t, qs[i]) for t, qs in series], PALETTE[i]) for i, name in enumerate(("p50", "p95", "p99"))
        ]
        merged = signals.durations.merged(group, start - step, end)
        accuracy = f" Quantiles within \u00b1{merged.relative_accuracy:.2%} (sketch accuracy)." if merged else ""
        parts.append(
            line_chart(
                lines,
                title=f"{group[0]}: latency quantiles",
                y=YAxis("latency", format_seconds, log=True),
                x_domain=(start, end),
                note=f"Each point: the calls in the {format_duration(step)} before it.{accuracy}",
            )
        )
    return "".join(parts) or '<p class="empty">no call durations</p>'


def _drift_section(rows: Sequence[DriftRow], reference: tuple[float, float], current: tuple[float, float]) -> str:
    if not rows:
        return '<p class="empty">no signal with enough data on both sides</p>'
    rows = sorted(rows, key=lambda r: -r.result.psi.value)  # the largest drift first, as Evidently lists them
    head = (
        f'<p class="note">reference {_iso(reference[0])} to {_iso(reference[1])}; current {_iso(current[0])} to '
        f"{_iso(current[1])}. PSI over reference deciles (tiers 0.1 / 0.25), KS, Jensen-Shannon (base 2) and "
        "Hellinger from exported sketches; a statistic is flagged beyond its fixed threshold.</p>"
    )
    table = [
        '<div class="scroll"><table class="text-2 text-9"><tr><th>model</th><th>signal</th><th>reference n</th>'
        "<th>current n</th><th>PSI</th>"
        "<th>KS</th><th>JS</th><th>Hellinger</th><th>drifted by</th></tr>"
    ]
    for row in rows:
        d = row.result
        ks = "-" if d.ks is None else f"{d.ks.statistic:.3f}"
        drifted = ", ".join(k for k in d.values() if drifted_by(d, k)) or "-"
        cls = "fail" if drifted != "-" else "pass"
        table.append(
            f'<tr class="{cls}"><td>{escape(row.model)}</td><td>{escape(row.signal)}</td>'
            f"<td>{row.reference_count:,.0f}</td><td>{row.current_count:,.0f}</td><td>{d.psi.value:.3f}</td>"
            f"<td>{ks}</td><td>{d.js:.3f}</td><td>{d.hellinger:.3f}</td><td>{escape(drifted)}</td></tr>"
        )
    table.append("</table></div>")
    models = {r.model for r in rows}
    bars = [
        Bar(name, r.result.psi.value, _psi_tier(r.result.psi.value))
        for r in rows
        for name in [r.signal if len(models) == 1 else f"{r.model} {r.signal}"]
    ]
    chart = bar_rows(
        bars,
        title="PSI per signal",
        keys=[(k, c) for k, c in PSI_KEYS],
        refs=[
            RefLine(f"moderate {PSI_MODERATE:g}", PSI_MODERATE, DARK_GREY, "6 4"),
            RefLine(f"significant {PSI_SIGNIFICANT:g}", PSI_SIGNIFICANT, DARK_RED, "2 3"),
        ],
        x_title="PSI (population stability index)",
        value_fmt=_psi,
    )
    return head + "".join(table) + chart


PSI_KEYS = (
    ("PSI below 0.1: no drift", PALETTE[0]),
    ("0.1 to 0.25: moderate", PALETTE[1]),
    ("0.25 or more: significant", RED),
)


def _psi(v: float) -> str:
    return f"{v:.3f}"  # as the table


def _psi_tier(v: float) -> str:
    return PSI_KEYS[0 if v < PSI_MODERATE else 1 if v < PSI_SIGNIFICANT else 2][0]


def _reliability_section(diagrams: Sequence[tuple[str, Sequence[tuple[float, float, float]], str]]) -> str:
    """``diagrams``: (model, [(mean confidence, accuracy, count) per bin], caption with ECE/Brier)."""
    if not diagrams:
        return '<p class="empty">no feedback with confidences</p>'
    parts = []
    for model, bins, caption in diagrams:
        pts = [(c, a) for c, a, n in bins if n > 0]
        parts.append(
            line_chart(
                [
                    Series("accuracy per confidence bin", pts, PALETTE[0]),
                    Series("perfect calibration", [(0.0, 0.0), (1.0, 1.0)], GREY, dash="5 4", width=1.2),
                ],
                title=f"{model}: reliability ({caption})",
                y=YAxis("accuracy (share of judged predictions that were right)", format_percent, include=(0.0, 1.0)),
                x_time=False,
                x_title="mean confidence of the bin",
                x_domain=(0.0, 1.0),
            )
        )
    return "".join(parts)


def _fairness_section(results: Sequence[tuple[str, object]]) -> str:
    if not results:
        return '<p class="empty">no feedback with a fairness group</p>'
    parts = []

    def rate(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    for model, f in results:
        rows = [
            '<div class="scroll"><table><tr><th>group</th><th>feedback</th><th>accuracy</th><th>selection rate</th>'
            "<th>TPR</th>"
            "<th>FPR</th></tr>"
        ]
        for g in f.groups:  # type: ignore[attr-defined]
            rows.append(
                f"<tr><td>{escape(g.group)}</td><td>{g.counts.feedback:,.0f}</td><td>{rate(g.accuracy)}</td>"
                f"<td>{rate(g.selection_rate)}</td><td>{rate(g.tpr)}</td><td>{rate(g.fpr)}</td></tr>"
            )
        rows.append("</table></div>")
        parts.append(
            f"<h3>{escape(model)}</h3>" + "".join(rows) + f'<p class="note">demographic parity difference '
            f"{f.demographic_parity_difference:.3f} (ratio {f.demographic_parity_ratio:.3f}); equalized odds "  # type: ignore[attr-defined]
            f"difference {f.equalized_odds_difference:.3f} (fairlearn between_groups, worst case)</p>"  # type: ignore[attr-defined]
        )
    return "".join(parts)


def render(
    ev: Evaluation,
    signals: Signals,
    *,
    drift: Sequence[DriftRow] = (),
    reference: tuple[float, float] | None = None,
    current: tuple[float, float] | None = None,
    reliability: Sequence[tuple[str, Sequence[tuple[float, float, float]], str]] = (),
    fairness: Sequence[tuple[str, object]] = (),
    title: str = "modelotel SLO report",
) -> str:
    span = signals.span() or (ev.at - 3600.0, ev.at)
    start = min([span[0]] + [r.window_start for r in ev.results])
    inputs = ", ".join(escape(r.source) for r in ev.reports)
    hists = [history(led, r.window_start, ev.at, POINTS) for led, r in zip(ev.ledgers, ev.results, strict=True)]
    lines = summarize(ev.results, list(ev.ledgers), hists, _quality_notes(ev))
    by_name = {h.results[-1].slo.name: h for h in hists}
    # one time range for every chart, as a dashboard's: from the first data (or window) to the evaluation
    charts_start = min([max(start, span[0])] + [h.times[0] for h in hists if len(h.times) > 1])
    body = [
        f"<h1>{escape(title)}</h1>",
        _summary(lines, ev.at),
        f'<p class="note">Evaluated at {_iso(ev.at)} from {inputs}; modelotel {__version__}. Aggregates only: '
        "no raw feature values or events are in this file. What each part means: docs/report.md.</p>",
        "<h2>SLOs</h2>",
        _slo_table(lines),
        "<h2>Error budgets and burn rates</h2>",
        _budget_charts(lines, by_name, (charts_start, ev.at)),
        "<h2>Latency</h2>",
        _latency_charts(signals, charts_start, ev.at),
        "<h2>Drift</h2>",
        _drift_section(drift, reference or span, current or span)
        if drift or reference
        else '<p class="empty">not computed</p>',
        "<h2>Calibration</h2>",
        _reliability_section(reliability),
        "<h2>Fairness</h2>",
        _fairness_section(fairness),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>" + "".join(body) + "</body></html>\n"
    )
