"""Rendering results: the JSON document (a stable contract for CI gates) and the terminal table.

Numbers in the JSON document carry full precision (the shortest text that reads back as the same double): a
99.999% objective must not read 0.99999 while failing, nor an SLI print above its own upper bound."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

from ..durations import format_duration
from ..engine.batch import Evaluation
from ..engine.verdict import SLOResult
from ..quality.cbpe import AccuracyEstimate, AccuracyGap, accuracy_gap
from ..slo import FEEDBACK_KINDS
from ..sources import is_url
from ..sources.points import ReadReport


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def json_number(x: float | None) -> float | None:
    """``x`` as a JSON number at full precision; None for missing and non-finite values."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return float(x)


def result_json(r: SLOResult) -> dict[str, Any]:
    slo = r.slo
    out: dict[str, Any] = {
        "name": slo.name,
        "status": r.status,
        "reason": r.reason,
        "sli": json_number(r.sli),
        "sli_kind": slo.sli.kind,
        "objective": slo.objective,
        "events": json_number(r.events),
        "good": json_number(r.good),
        "window": {
            "start": iso(r.window_start),
            "end": iso(r.at),
            "duration": format_duration(slo.window.duration),
            "rolling": slo.window.rolling,
        },
        "budgeting": slo.budgeting,
        "error_budget": {
            "unit": r.budget_unit,
            "total": json_number(r.budget_total),
            "consumed": json_number(r.budget_consumed),
            "remaining": json_number(r.budget_remaining_ratio),
        },
        "burn_rates": {k: json_number(v) for k, v in r.burn_rates.items()},
        "alerts": [
            {
                "name": a.name,
                "severity": a.severity,
                "burn_rate_threshold": a.burn_rate,
                "long_window": format_duration(a.long_window),
                "short_window": format_duration(a.short_window),
                "long_burn": json_number(a.long_burn),
                "short_burn": json_number(a.short_burn),
            }
            for a in r.alerts
            if a.firing
        ],
        "alerts_without_enough_data": [a.name for a in r.alerts if not a.enough_data],
        "time_to_exhaustion_seconds": json_number(r.time_to_exhaustion),
        "accuracy": {
            "sli_lower": json_number(r.sli_lower),
            "sli_upper": json_number(r.sli_upper),
            "relative_accuracy": json_number(r.relative_accuracy),
        },
        "source": slo.source,
        "notes": list(r.notes),
    }
    if slo.sli.kind in FEEDBACK_KINDS:
        out["label_coverage"] = {
            "coverage": json_number(r.label_coverage),
            "judged": json_number(r.events),
            "predictions": json_number(r.predictions),
            "min_label_coverage": slo.min_label_coverage,
        }
    if r.units:
        out["units"] = {
            metric: {"unit": unit, "from": "semantic conventions" if conventional else "data"}
            for metric, (unit, conventional) in r.units.items()
        }
    if slo.sli.threshold is not None:
        out["threshold"] = slo.sli.threshold
    if slo.sli.percentile is not None:
        out["percentile"] = slo.sli.percentile
    if r.slices_total is not None:
        out["timeslices"] = {"good": r.slices_good, "total": r.slices_total}
    return out


def _gap(r: SLOResult, estimate: AccuracyEstimate | None) -> AccuracyGap | None:
    """The CBPE estimate against the realized accuracy of an accuracy SLO's window, when both exist."""
    if estimate is None or r.slo.sli.kind != "accuracy" or r.status in ("no_match", "invalid"):
        return None
    return accuracy_gap(estimate, r.good, r.events)


def estimate_json(r: SLOResult, estimate: AccuracyEstimate | None) -> dict[str, Any] | None:
    """``estimated_accuracy`` of an accuracy SLO: the CBPE estimate of its model's predictions in the window,
    beside the realized accuracy of the judged ones (docs/quality.md)."""
    gap = _gap(r, estimate)
    if gap is None or estimate is None:
        return None
    return {
        "value": json_number(estimate.accuracy.value),
        "lower": json_number(estimate.accuracy.low),
        "upper": json_number(estimate.accuracy.high),
        "sampling_sd": json_number(estimate.sampling_sd),
        "predictions": estimate.count,
        "out_of_range": estimate.out_of_range,
        "realized": json_number(gap.realized),
        "judged": gap.judged,
        "gap": json_number(gap.gap),
        "gap_allowed": json_number(gap.allowed),
        "gap_flagged": gap.flagged,
    }


def report_json(r: ReadReport) -> dict[str, Any]:
    return {
        "source": r.source,
        "bytes": r.bytes_read,
        "lines": r.lines,
        "points": r.points,
        "deltas": r.deltas,
        "corrupt_lines": r.corrupt_lines,
        "foreign_lines": r.foreign_lines,
        "signal_lines": dict(r.signal_lines),
        "bad_points": r.bad_points,
        "duplicate_points": r.duplicate_points,
        "resets": r.resets,
        "baseline_points": r.first_cumulative,
        "shared_series": r.shared_series,
        "instances": len(r.instances),
        "problems": [{"line": p.line, "reason": p.reason} for p in r.problems],
    }


def to_json(ev: Evaluation) -> str:
    doc = {
        "at": iso(ev.at),
        "slos": [_with_estimate(r, e) for r, e in zip(ev.results, _estimates(ev), strict=True)],
        "inputs": [report_json(r) for r in ev.reports],
    }
    return json.dumps(doc, indent=2)


def _estimates(ev: Evaluation) -> list[AccuracyEstimate | None]:
    return ev.estimates if len(ev.estimates) == len(ev.results) else [None] * len(ev.results)


def _with_estimate(r: SLOResult, estimate: AccuracyEstimate | None) -> dict[str, Any]:
    out = result_json(r)
    extra = estimate_json(r, estimate)
    if extra is not None:
        out["estimated_accuracy"] = extra
    return out


def _pct(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x * 100:.{digits}f}%"


def _burn(x: float | None) -> str:
    """A burn rate in three significant figures at most: ``0.37x``, ``20.0x``, ``1900x``."""
    if x is None:
        return "-"
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


TABLE_BURN_WINDOWS = 4  # windows shown in the table's burn column; the JSON has every one


def burn_cell(r: SLOResult) -> str:
    """The burn rates of an SLO's alert windows, each named (``10s 0.00x · 1m 20.0x · 5m 20.0x``), shortest first:
    every window when there are at most TABLE_BURN_WINDOWS, else the shortest, the first tier's long window (the
    one the time to exhaustion uses) and the longest. Each window once, whichever tiers share it."""
    windows = sorted({w for tier in r.slo.alert_tiers for w in (tier.long_window, tier.short_window)})
    if len(windows) > TABLE_BURN_WINDOWS:
        windows = sorted({windows[0], r.slo.alert_tiers[0].long_window, windows[-1]})
    shown = [(format_duration(w), r.burn_rates.get(format_duration(w))) for w in windows]
    return " · ".join(f"{name} {_burn(rate)}" for name, rate in shown) or "-"


def _human_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.1f}{unit}"
    return f"{s:.0f}s"


def to_table(ev: Evaluation, verbose: bool = False) -> str:
    """The table of SLOs, then a line per thing to know (estimates, budgets, notes, inputs: ``input_notes``)."""
    headers = ["SLO", "status", "SLI", "objective", "events", "budget left", "burn rate by window", "alerts"]
    rows = []
    for r in ev.results:
        burn_text = burn_cell(r)
        firing = ",".join(a.name for a in r.alerts if a.firing) or "-"
        sli = _pct(r.sli)
        if r.sli_lower is not None and r.sli_upper is not None and r.sli_upper - r.sli_lower > 5e-6:
            sli += f" [{_pct(r.sli_lower)}, {_pct(r.sli_upper)}]"
        rows.append(
            [
                r.slo.name,
                r.status.upper(),
                sli,
                _pct(r.slo.objective),
                f"{r.events:,.0f}",
                _pct(r.budget_remaining_ratio, 1),
                burn_text,
                firing,
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append("")
    lines.append(f"evaluated at {iso(ev.at)}")
    for r, estimate in zip(ev.results, _estimates(ev), strict=True):
        gap = _gap(r, estimate)
        if gap is not None and estimate is not None:
            lines.append(
                f"  {r.slo.name}: estimated accuracy {_pct(gap.estimated)} (CBPE, {estimate.count:,} predictions) "
                f"vs realized {_pct(gap.realized)} ({gap.judged:,} judged): gap {gap.gap * 100:+.2f} points"
                + (
                    f", beyond {gap.allowed * 100:.2f}: miscalibration or concept drift (CBPE cannot see concept drift)"
                    if gap.flagged
                    else ""
                )
            )
        if r.label_coverage is not None and r.status in ("pass", "fail"):
            lines.append(
                f"  {r.slo.name}: label coverage {_pct(r.label_coverage, 1)} ({r.events:,.0f} of "
                f"{r.predictions or 0:,.0f} predictions in the window have feedback so far)"
            )
        remaining = r.budget_remaining_ratio
        if r.status in ("pass", "fail") and remaining is not None and remaining <= 0:
            spent = f"{-remaining:.0%} overspent" if remaining < 0 else "spent exactly"
            lines.append(f"  {r.slo.name}: error budget exhausted ({spent})")
        elif r.time_to_exhaustion is not None and r.status in ("pass", "fail"):
            lines.append(
                f"  {r.slo.name}: budget exhausted in {_human_seconds(r.time_to_exhaustion)} at the current burn"
            )
        if r.status not in ("pass", "fail"):
            lines.append(f"  {r.slo.name}: {r.status.upper()}: {r.reason}")
        for note in r.notes:
            lines.append(f"  {r.slo.name}: note: {note}")
    lines += input_notes(ev.reports, verbose=verbose)
    return "\n".join(lines)


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


SIGNAL_WORDS = {"traces": "span", "logs": "log", "profiles": "profile"}  # the signals a metrics reader skips


def input_notes(reports: list[ReadReport], verbose: bool = False) -> list[str]:
    """What the inputs held besides usable metrics, one line each: corrupt and foreign lines, unusable, duplicate
    and baseline-only points always; with ``verbose`` also what was read, and the lines of other signals (spans and
    logs of the collector's file route: expected there, skipped without being decoded, so quiet by default)."""
    lines = []
    for rep in reports:
        if verbose:
            lines.append(
                f"input {rep.source}: {rep.bytes_read:,} bytes, {_count(rep.lines, 'line')}, "
                f"{_count(rep.points, 'point')} of the metrics asked for, {_count(rep.deltas, 'increment')}"
            )
            if rep.signal_lines:
                kinds = ", ".join(
                    _count(n, SIGNAL_WORDS.get(signal, signal) + " line")
                    for signal, n in sorted(rep.signal_lines.items(), key=lambda kv: list(SIGNAL_WORDS).index(kv[0]))
                )
                lines.append(f"input {rep.source}: {kinds} (other signals: not metrics, skipped)")
        issues = rep.corrupt_lines + rep.foreign_lines + rep.bad_points
        if issues:
            lines.append(
                f"input {rep.source}: {_count(rep.corrupt_lines, 'corrupt line')}, "
                f"{_count(rep.foreign_lines, 'foreign line')}, {_count(rep.bad_points, 'unusable point')}"
                + (f" (first at line {rep.problems[0].line}: {rep.problems[0].reason})" if rep.problems else "")
            )
        if rep.duplicate_points:
            lines.append(
                f"input {rep.source}: {_count(rep.duplicate_points, 'duplicate point')} dropped, already read "
                f"(first at line {rep.first_duplicate_line}): the same data given twice?"
            )
        if rep.first_cumulative and not is_url(rep.source):  # in a Prometheus range, the first sample is one
            lines.append(
                f"input {rep.source}: {_count(rep.first_cumulative, 'cumulative point')} without a start time "
                "counted only as baselines (what their series held before them is not counted)"
            )
        if rep.shared_series:
            lines.append(
                f"input {rep.source}: {_count(rep.shared_series, 'point')} of series that several processes "
                "write at once (set service.instance.id), or of inputs out of time order: each counted once"
            )
    return lines
