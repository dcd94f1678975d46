"""The evaluation pipeline: specs -> sources -> ledgers -> results. Data flows one way.

Sources are read once, streaming; every delta goes to the ledgers of the SLOs that use its metric. The
evaluation time defaults to the end of the newest delta read (so an old file evaluates as of its own end), or
``--at``. The bin resolution is the greatest common divisor of every window, alert window and time slice
(at most 60 s), so all of them are whole numbers of bins.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ...sketch import relative_accuracy
from .. import sources
from ..quality.cbpe import AccuracyEstimate
from ..slo import SLO
from ..sources.points import Delta, Inventory, ReadReport
from .diagnose import key_never_seen, unmatched_reason
from .estimates import ConfidenceWindows
from .ledger import Ledger
from .verdict import SLOResult, evaluate_slo, window_bounds

MAX_RESOLUTION = 60


def resolution_for(slos: Sequence[SLO]) -> float:
    """Largest whole number of seconds (<= 60) dividing every window, alert window and time slice."""
    r = MAX_RESOLUTION
    for slo in slos:
        spans = [t.long_window for t in slo.alert_tiers] + [t.short_window for t in slo.alert_tiers]
        if slo.window.rolling:
            spans.append(slo.window.duration)
        if slo.timeslice_window:
            spans.append(slo.timeslice_window)
        for s in spans:
            if s >= 1 and float(s).is_integer():
                r = math.gcd(r, int(s))
    return float(max(r, 1))


def lookback(slos: Sequence[SLO], at: float) -> float:
    """Earliest time any SLO looks at when evaluated at ``at``."""
    earliest = at
    for slo in slos:
        earliest = min(earliest, window_bounds(slo.window, at)[0])
        for t in slo.alert_tiers:
            earliest = min(earliest, at - t.long_window)
    return earliest


class Sink(Protocol):
    """Anything else that wants the deltas of the same pass (timelines for charts and drift)."""

    @property
    def metrics(self) -> set[str]: ...

    def add(self, delta: Delta) -> None: ...


@dataclass
class Evaluation:
    at: float
    results: list[SLOResult]
    reports: list[ReadReport]
    ledgers: list[Ledger] = field(default_factory=list)
    inventory: Inventory = field(default_factory=Inventory)
    estimates: list[AccuracyEstimate | None] = field(default_factory=list)  # CBPE beside accuracy SLOs, by result


class NoData(Exception):
    """No usable input at all (every source empty, foreign or corrupt)."""


def evaluate(
    slos: Sequence[SLO],
    locations: Sequence[str],
    at: float | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    sinks: Sequence[Sink] = (),
) -> Evaluation:
    """Read every location once and evaluate every SLO at ``at`` (epoch seconds; default: end of the data)."""
    resolution = resolution_for(slos)
    ledgers = [Ledger(slo, resolution) for slo in slos]
    confidence = ConfidenceWindows(slos, resolution)
    sinks = (*sinks, confidence)
    by_metric: dict[str, list[Ledger | Sink]] = {}
    for led in ledgers:
        for metric in led.slo.metrics():
            by_metric.setdefault(metric, []).append(led)
    for sink in sinks:
        for metric in sink.metrics:
            by_metric.setdefault(metric, []).append(sink)
    start_ns = end_ns = None
    if at is not None:
        end_ns = int(at * 1e9)
        start_ns = int((lookback(slos, at) - resolution) * 1e9)
    latest = 0
    reports = []
    reader = sources.Reader(set(by_metric), start_ns=start_ns, end_ns=end_ns)
    for location in locations:
        on_progress = None
        if progress is not None:
            on_progress = (lambda loc: lambda done, total: progress(loc, done, total))(location)
        deltas, report = reader.read(location, on_progress)
        routes: dict[int, list] = {}  # per source series: the ledgers and sinks it matches (series ids are unique)
        for delta in deltas:
            if end_ns is not None and delta.end_ns > end_ns:
                continue
            if delta.end_ns > latest:
                latest = delta.end_ns
            targets = routes.get(delta.series) if delta.series else None
            if targets is None:
                targets = [t for t in by_metric.get(delta.metric, ()) if not isinstance(t, Ledger) or t.wants(delta)]
                if delta.series:
                    routes[delta.series] = targets
            for target in targets:
                target.add(delta)
        reports.append(report)
    inventory = reader.inventory
    if at is None:
        if latest:
            at = latest / 1e9
        elif slos and any(inventory.metrics.values()):
            # readable metrics, but none the SLOs ask for: each SLO says what the input holds (no_match)
            at = time.time()
        else:
            raise NoData(_no_data_message(reports))
    baselines = sum(r.first_cumulative for r in reports)
    results = [judge(led, at, inventory, baselines) for led in ledgers]
    estimates = [confidence.estimate(i, r.window_start, r.at) for i, r in enumerate(results)]
    return Evaluation(at, results, reports, ledgers, inventory, estimates)


def judge(ledger: Ledger, at: float, inventory: Inventory, baselines: int = 0) -> SLOResult:
    """The ledger's verdict at ``at``; ``no_match`` when no series of the input passes the SLO's selector, and an
    ``inconclusive`` without events says why (the data lies outside the window, or only baselines were read)."""
    result = evaluate_slo(ledger, at)
    if ledger.min_scale is not None:
        result.relative_accuracy = relative_accuracy(ledger.min_scale)
    sli = ledger.slo.sli
    why = None if ledger.matched else unmatched_reason(sli.total, inventory)
    if why is not None:
        result.status, result.reason = "no_match", why
    elif result.status == "inconclusive" and not result.events:
        result.reason += _why_empty(ledger, result, inventory, baselines)
    for selector in (sli.good, sli.bad):
        note = None if selector is None else key_never_seen(selector, inventory)
        if note is not None:
            result.notes.append(note)
    return result


def _why_empty(ledger: Ledger, result: SLOResult, inventory: Inventory, baselines: int) -> str:
    first = last = None
    if ledger.bins:
        first, last = (min(ledger.bins) - 1) * ledger.resolution, max(ledger.bins) * ledger.resolution
    elif inventory.last_ns:
        first, last = inventory.first_ns / 1e9, inventory.last_ns / 1e9
    if first is not None and last is not None and (last <= result.window_start or first > result.at):
        return (
            f": the matching data spans {_iso(first)} to {_iso(last)}, outside the window "
            f"{_iso(result.window_start)} to {_iso(result.at)} (see --at)"
        )
    if baselines:
        return (
            f": the matching series had no increments ({baselines} cumulative points without a start time are only "
            "baselines: a series counts from its second point)"
        )
    return ": the matching series had no increments"


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _no_data_message(reports: Sequence[ReadReport]) -> str:
    parts = []
    for r in reports:
        what = (
            f"{r.lines} lines, {r.points} points of the needed metrics, {r.corrupt_lines} corrupt, "
            f"{r.foreign_lines} not OTLP metrics, {r.bad_points} unusable points"
        )
        if r.problems:  # the first reason, e.g. a line over the line limit
            what += f"; line {r.problems[0].line}: {r.problems[0].reason}"
        parts.append(f"{r.source}: {what}")
    return "no usable metric data in the input (" + "; ".join(parts) + ")"
