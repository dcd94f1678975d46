"""An SLO over time: the verdict re-evaluated on a grid of times, and when the current state began.

The grid is ``points`` times spread evenly from the first evaluated time to the evaluation time, each rounded
up to a bin end (a multiple of the ledger's resolution ``r``), plus the evaluation time itself. Between two bin
ends a verdict can only change where a bin enters or leaves a window, so bin ends are where it is judged.

``run_start`` finds when the current run of a condition (a tier firing, the SLO failing) began: walking back
over the grid to the last time it did not hold, then bisecting over the bin ends between that time and the
next. Bound: the start ``s`` it returns holds, and the bin end before it (``s - r``) does not; it is THE start
of the current run (the earliest ``s`` from which the condition held at every bin end up to now) whenever the
condition changed at most once between two consecutive grid times. A shorter interruption inside one grid step
(``(at - first) / points``) can be missed, which makes ``s`` earlier, never later. Cost: ``points`` evaluations
for the grid (shared with the charts) plus ``log2(step / r)`` per condition.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..engine.ledger import Ledger
from ..engine.verdict import SLOResult, evaluate_slo


@dataclass(frozen=True)
class History:
    times: list[float]  # ascending; the last one is the evaluation time
    results: list[SLOResult]  # the verdict at each time
    resolution: float


@dataclass(frozen=True)
class RunStart:
    since: float  # the first bin end of the current run
    resolution: float  # the run began in (since - resolution, since]
    before_first: bool  # it held at the first evaluated time already: the run began then or earlier


def history(ledger: Ledger, start: float, at: float, points: int) -> History:
    """The verdict at ``points`` bin ends from ``start`` to ``at`` (and at ``at``)."""
    r = ledger.resolution
    first = (min(ledger.bins) - 1) * r if ledger.bins else start
    t0 = min(max(start, first), at)
    times = sorted({math.ceil((t0 + (at - t0) * (i + 1) / points) / r - 1e-9) * r for i in range(points)})
    times = [t for t in times if t < at] + [at]
    return History(times, [evaluate_slo(ledger, t) for t in times], r)


def run_start(ledger: Ledger, hist: History, holds: Callable[[SLOResult], bool]) -> RunStart | None:
    """When the current run of ``holds`` began (None when it does not hold at the evaluation time)."""
    if not hist.results or not holds(hist.results[-1]):
        return None
    r = hist.resolution
    i = len(hist.results) - 1
    while i > 0 and holds(hist.results[i - 1]):
        i -= 1
    if i == 0:
        return RunStart(hist.times[0], r, True)
    lo = round(hist.times[i - 1] / r)  # a bin end where it did not hold
    hi_t = hist.times[i]
    hi = math.floor(hi_t / r + 1e-9)  # the last bin end at or before the first time it held
    if hi <= lo or not holds(evaluate_slo(ledger, hi * r)):
        return RunStart(hi_t, r, False)  # it began after the last bin end: at the (unaligned) evaluation time
    while hi - lo > 1:  # invariant: not holds at lo, holds at hi
        mid = (lo + hi) // 2
        if holds(evaluate_slo(ledger, mid * r)):
            hi = mid
        else:
            lo = mid
    return RunStart(hi * r, r, False)


def tier_fires(name: str) -> Callable[[SLOResult], bool]:
    return lambda result: any(a.name == name and a.firing for a in result.alerts)


def failing(result: SLOResult) -> bool:
    return result.status == "fail"
