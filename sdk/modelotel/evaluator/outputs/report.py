"""The HTML report: one self-contained file (inline CSS and SVG, no script, no CDN, no raw data).

Sections: the SLO table; per SLO, error budget remaining and burn rates over time (the evaluator re-run at
``POINTS`` times across the window); per model, latency quantiles over time; drift of every signal between
a reference and a current range; and the reliability diagram from feedback.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape

from ..._version import __version__
from ..durations import format_duration
from ..engine.batch import Evaluation
from ..engine.verdict import evaluate_slo
from ..quality.cbpe import accuracy_gap
from ..quality.signals import DriftRow, Signals, drifted_by
from .svg import STYLE, bar_chart, line_chart

POINTS = 60


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.3%}"


def _slo_table(ev: Evaluation) -> str:
    rows = [
        "<tr><th>SLO</th><th>status</th><th>SLI</th><th>objective</th><th>events</th><th>budget left</th>"
        "<th>firing alerts</th><th>reason</th></tr>"
    ]
    estimates = ev.estimates if len(ev.estimates) == len(ev.results) else [None] * len(ev.results)
    for r, estimate in zip(ev.results, estimates, strict=True):
        firing = ", ".join(f"{a.name} ({a.severity})" for a in r.alerts if a.firing) or "-"
        remaining = "-" if r.budget_remaining_ratio is None else f"{r.budget_remaining_ratio:.1%}"
        sli = _pct(r.sli)
        if r.sli_lower is not None and r.sli_upper is not None and r.sli_upper - r.sli_lower > 5e-6:
            sli += f" [{_pct(r.sli_lower)}, {_pct(r.sli_upper)}]"  # the bounds the buckets allow, as the CLI shows
        reason = "".join(f"<br>note: {escape(n)}" for n in r.notes)
        gap = None
        if estimate is not None and r.slo.sli.kind == "accuracy" and r.status not in ("no_match", "invalid"):
            gap = accuracy_gap(estimate, r.good, r.events)
        if r.label_coverage is not None:  # feedback SLIs: the share of the window's predictions judged so far
            reason += (
                f"<br>label coverage {r.label_coverage:.1%} ({r.events:,.0f} of {r.predictions or 0:,.0f} predictions)"
            )
        if gap is not None:  # CBPE beside the realized accuracy, as the CLI shows (docs/quality.md)
            flag = ": beyond noise, miscalibration or concept drift" if gap.flagged else ""
            reason += f"<br>estimated accuracy {_pct(gap.estimated)} (CBPE), gap {gap.gap * 100:+.2f} points{flag}"
        rows.append(
            f'<tr class="{r.status}"><td>{escape(r.slo.name)}</td><td>{r.status.upper()}</td><td>{sli}</td>'
            f"<td>{_pct(r.slo.objective)}</td><td>{r.events:,.0f}</td><td>{remaining}</td>"
            f"<td>{escape(firing)}</td><td>{escape(r.reason)}{reason}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def _budget_charts(ev: Evaluation) -> str:
    parts = []
    for led, result in zip(ev.ledgers, ev.results, strict=True):
        slo = led.slo
        first = (min(led.bins) - 1) * led.resolution if led.bins else result.window_start
        start = max(result.window_start, first)
        grid = [start + (ev.at - start) * (i + 1) / POINTS for i in range(POINTS)]
        remaining, burns = [], {}
        tiers = slo.alert_tiers[:1]
        for t in grid:
            r = evaluate_slo(led, t)
            if r.budget_remaining_ratio is not None:
                remaining.append((t, r.budget_remaining_ratio))
            for tier in tiers:
                for w in (tier.short_window, tier.long_window):
                    v = r.burn_rates.get(format_duration(w))
                    if v is not None:
                        burns.setdefault(format_duration(w), []).append((t, v))
        parts.append(f"<h3>{escape(slo.name)}</h3>")
        parts.append(
            line_chart(
                [("remaining", remaining)],
                title="error budget remaining (fraction)",
                hlines=[("exhausted", 0.0)],
            )
        )
        parts.append(
            line_chart(
                [(f"burn {w}", pts) for w, pts in burns.items()],
                title="burn rate",
                hlines=[(f"{t.name} {t.burn_rate:g}x", t.burn_rate) for t in tiers],
                y_min=0.0,
            )
        )
    return "".join(parts)


def _latency_charts(signals: Signals, start: float, end: float) -> str:
    parts = []
    step = max((end - start) / POINTS, signals.durations.resolution)
    for group in signals.durations.groups():
        series = signals.durations.quantiles_over_time(group, (0.5, 0.95, 0.99), start, end, step)
        lines = [(name, [(t, qs[i] * 1000) for t, qs in series]) for i, name in enumerate(("p50", "p95", "p99"))]
        parts.append(line_chart(lines, title=f"{group[0]}: latency quantiles (ms)", y_min=0.0))
    return "".join(parts)


def _drift_section(rows: Sequence[DriftRow], reference: tuple[float, float], current: tuple[float, float]) -> str:
    if not rows:
        return '<p class="empty">no signal with enough data on both sides</p>'
    head = (
        f'<p class="note">reference {_iso(reference[0])} to {_iso(reference[1])}; current {_iso(current[0])} to '
        f"{_iso(current[1])}. PSI over reference deciles (tiers 0.1 / 0.25), KS, Jensen-Shannon (base 2) and "
        "Hellinger from exported sketches; a statistic is flagged beyond its fixed threshold.</p>"
    )
    table = [
        "<table><tr><th>model</th><th>signal</th><th>reference n</th><th>current n</th><th>PSI</th>"
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
    table.append("</table>")
    bars = [(f"{r.signal}", r.result.psi.value) for r in rows]
    chart = bar_chart(bars, title="PSI per signal", hlines=[("moderate 0.1", 0.1), ("significant 0.25", 0.25)])
    return head + "".join(table) + chart


def _reliability_section(diagrams: Sequence[tuple[str, Sequence[tuple[float, float, float]], str]]) -> str:
    """``diagrams``: (model, [(mean confidence, accuracy, count) per bin], caption with ECE/Brier)."""
    if not diagrams:
        return '<p class="empty">no feedback with confidences</p>'
    parts = []
    for model, bins, caption in diagrams:
        pts = [(c, a) for c, a, n in bins if n > 0]
        parts.append(
            line_chart(
                [("accuracy", pts), ("perfect", [(0.0, 0.0), (1.0, 1.0)])],
                title=f"{model}: reliability ({caption})",
                x_is_time=False,
                x_label="mean confidence",
                y_min=0.0,
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
            "<table><tr><th>group</th><th>feedback</th><th>accuracy</th><th>selection rate</th><th>TPR</th>"
            "<th>FPR</th></tr>"
        ]
        for g in f.groups:  # type: ignore[attr-defined]
            rows.append(
                f"<tr><td>{escape(g.group)}</td><td>{g.counts.feedback:,.0f}</td><td>{rate(g.accuracy)}</td>"
                f"<td>{rate(g.selection_rate)}</td><td>{rate(g.tpr)}</td><td>{rate(g.fpr)}</td></tr>"
            )
        rows.append("</table>")
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
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="note">evaluated at {_iso(ev.at)} from {inputs}; modelotel {__version__}. Aggregates only: '
        "no raw feature values or events are in this file.</p>",
        "<h2>SLOs</h2>",
        _slo_table(ev),
        "<h2>Error budgets and burn rates</h2>",
        _budget_charts(ev),
        "<h2>Latency</h2>",
        _latency_charts(signals, max(start, span[0]), ev.at),
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
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>" + "".join(body) + "</body></html>\n"
    )
