"""Cumulative -> delta, per series: increments between consecutive running totals, resets, scale changes.

A cumulative series reports running totals ``V(t_k)`` accrued since its start time ``S``. Each new point
becomes the increment over ``(t_{k-1}, t_k]``:

    ``inc = V(t_k) - V(t_{k-1})``  (bucket by bucket for histograms, and for ``count``/``zero_count``/``sum``)

except when the series restarted in between (a *reset*), which shows as

* a new start time ``S' != S`` (OTLP): ``inc = V(t_k)``, accrued over ``(S', t_k]``;
* a decrease of any total (counter value, histogram count, zero count, any bucket): ``V(t_k)`` is taken as
  accrued since the restart, over ``(t_{k-1}, t_k]``. What was counted between ``t_{k-1}`` and the restart is
  lost (it was never reported); nothing is counted twice.

The first point of a series counts fully over ``(S, t_0]`` when its start ``S`` is known (OTLP
``startTimeUnixNano`` > 0): everything in it accrued since then. With an unknown start (0) it is only the
baseline for the next point, unless the caller says it counts (``first_counts``: a Prometheus series that
began inside the queried range); then it covers the empty interval ``(t_0, t_0]``.

A point whose time is not after the previous one of its start is *stale* (repeated, or read again: its data
is already in the newer total) and changes nothing.

Concurrent producers. Processes that do not set ``service.instance.id`` write the same series identity, each
with its own start time. A new start whose predecessor was still reporting after it began is not a restart but
another producer: both are tracked, each point against the previous point of its own start (outcome
``CONCURRENT``), so neither is lost nor counted twice. A predecessor that stopped before the new start is a
restart and is forgotten. Inputs read out of time order look the same (an older start after a newer one) and
are counted correctly the same way.

Scales. Exponential bucket ``i`` at scale ``s`` is exactly bucket ``i >> k`` at scale ``s - k`` (sketch.py), so
both totals are brought to the smaller of their scales before subtracting; the increment is exact at that scale.
A series' scale may drop over time (the SDK downscales its cumulative state as the range grows); the state kept
is always the latest point at its own scale.

Explicit buckets: the bounds of both totals must be equal; a change of bounds is a reset.

Memory: one latest point per series (its bucket arrays), for as long as the reader runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...sketch import MAX_SCALE, MIN_SCALE, BucketStore, LogSketch, bucket_range_problem, finite_index_range
from .points import ExplicitHistogram

__all__ = [
    "BASELINE",
    "CONCURRENT",
    "FIRST",
    "INCREMENT",
    "RESET",
    "STALE",
    "CumulativeTracker",
    "ExpoCounts",
    "ExplicitCounts",
    "MAX_COUNT",
    "MAX_POINT_BUCKETS",
]

# What one point did to its series (returned with the increment).
INCREMENT = 0  # the difference to the previous point
FIRST = 1  # first point, counted fully (known start, or first_counts)
BASELINE = 2  # first point with an unknown start: remembered, nothing counted
RESET = 3  # the series restarted: the whole new total counted
STALE = 4  # not after the previous point of its start (repeated, read twice): ignored
CONCURRENT = 5  # a point of an older start that is still reporting: another producer of the series (or inputs
# out of time order); the increment is against that start's own previous point (its whole total when first)
MAX_CONCURRENT = 8  # older starts tracked per series; beyond that the least recently seen is forgotten

_EMPTY = np.zeros(0, dtype=np.int64)

MAX_POINT_BUCKETS = 1 << 16
"""Most buckets per sign one exponential-histogram point may carry (400x the OTel SDKs' default of 160): what one
series' state can claim is ``2 * 8 * MAX_POINT_BUCKETS`` bytes, 1 MiB."""
MAX_COUNT = 1 << 53
"""Largest count of a point or bucket: counts are added up as float64 downstream, exact only up to 2**53 (and a
larger bucket count could wrap the int64 sums that check a point's consistency)."""


@dataclass(slots=True)
class ExpoCounts:
    """An exponential histogram's totals: ``pos[j]`` counts bucket ``pos_offset + j`` at ``scale`` (int64).

    ``count`` must equal ``zero_count + pos.sum() + neg.sum()``, at most ``MAX_COUNT``; each sign holds at
    most ``MAX_POINT_BUCKETS`` buckets, all of which must hold finite doubles at ``scale`` (checked by
    ``consistent``, before any state changes). ``min``/``max`` are None when unknown.
    """

    scale: int
    count: int
    zero_count: int
    pos_offset: int
    pos: np.ndarray
    neg_offset: int
    neg: np.ndarray
    sum: float
    min: float | None = None
    max: float | None = None

    def consistent(self, pos_total: int | None = None, neg_total: int | None = None) -> str | None:
        """Why these counts are unusable, or None. A caller that knows the bucket totals (and that no count is
        negative) passes them."""
        scale, po, n, no, m = self.scale, self.pos_offset, len(self.pos), self.neg_offset, len(self.neg)
        if not MIN_SCALE <= scale <= MAX_SCALE:
            return f"scale {scale} outside [{MIN_SCALE}, {MAX_SCALE}]"
        lo, hi = finite_index_range(scale)
        if n > MAX_POINT_BUCKETS or m > MAX_POINT_BUCKETS:
            return f"{max(n, m)} buckets of one sign, over the {MAX_POINT_BUCKETS} one point may carry"
        if n and (po < lo or po + n - 1 > hi):
            return f"positive {bucket_range_problem(scale, po, po + n - 1)}"
        if m and (no < lo or no + m - 1 > hi):
            return f"negative {bucket_range_problem(scale, no, no + m - 1)}"
        if self.zero_count < 0:
            return "negative zero count"
        if not 0 <= self.count <= MAX_COUNT:
            return f"count {self.count} outside [0, 2**53]"
        if pos_total is None or neg_total is None:
            pos, neg = self.pos, self.neg
            if (len(pos) and pos.min() < 0) or (len(neg) and neg.min() < 0):
                return "negative bucket count"
            pos_total = int(pos.sum()) if len(pos) else 0
            neg_total = int(neg.sum()) if len(neg) else 0
        if self.count != self.zero_count + pos_total + neg_total:
            return f"count {self.count} != zeroCount {self.zero_count} + positive {pos_total} + negative {neg_total}"
        return None

    def at_scale(self, scale: int) -> ExpoCounts:
        """These counts re-bucketed to a scale <= ``self.scale`` (exact; a copy only when it changes)."""
        by = self.scale - scale
        if by <= 0:
            return self
        po, p = _downscale(self.pos_offset, self.pos, by)
        no, n = _downscale(self.neg_offset, self.neg, by)
        return ExpoCounts(scale, self.count, self.zero_count, po, p, no, n, self.sum, self.min, self.max)

    def minus(self, prev: ExpoCounts) -> ExpoCounts | None:
        """``self - prev`` at the smaller scale, or None if any total decreased (a reset)."""
        if self.count < prev.count or self.zero_count < prev.zero_count:
            return None
        scale = self.scale
        cur = self
        if scale != prev.scale:
            scale = min(scale, prev.scale)
            cur, prev = self.at_scale(scale), prev.at_scale(scale)
        pos = _subtract(cur.pos_offset, cur.pos, prev.pos_offset, prev.pos)
        neg = _subtract(cur.neg_offset, cur.neg, prev.neg_offset, prev.neg)
        if pos is None or neg is None:
            return None
        # All increments lie within the current totals' [min, max] (the totals include them).
        return ExpoCounts(
            scale,
            self.count - prev.count,
            self.zero_count - prev.zero_count,
            pos[0],
            pos[1],
            neg[0],
            neg[1],
            self.sum - prev.sum,
            self.min,
            self.max,
        )

    def sketch(self, copy: bool = False, max_buckets: int = 1024) -> LogSketch:
        """A LogSketch with exactly these buckets (``copy``: not sharing the arrays, which a tracker keeps).

        Unknown min/max become the outer bounds of the occupied buckets; known ones are used only where they
        are tighter than those bounds.
        """
        po, p = _trim(self.pos_offset, self.pos)
        no, n = _trim(self.neg_offset, self.neg)
        if copy:
            p, n = p.copy(), n.copy()
        lo, hi = math.inf, -math.inf
        if self.count:
            lo, hi = _bounds(self.scale, self.zero_count, po, p, no, n)
            lo = lo if self.min is None or self.min != self.min else max(lo, self.min)
            hi = hi if self.max is None or self.max != self.max else min(hi, self.max)
        # from_stores, not LogSketch(scale): that would build two empty stores only for them to be replaced, which
        # doubles the cost of a delta
        sk = LogSketch.from_stores(
            self.scale,
            BucketStore(po, p),
            BucketStore(no, n),
            self.zero_count,
            self.count,
            self.sum,
            lo,
            hi,
            max_buckets=max_buckets,
        )
        span = max(len(p), len(n))
        if span > max_buckets:
            k = 0
            while max(_span(po, p, k), _span(no, n, k)) > max_buckets:
                k += 1
            sk.downscale(k)
        return sk


@dataclass(slots=True)
class ExplicitCounts:
    """An explicit-bucket histogram's totals: ``counts[i]`` values in ``(bounds[i-1], bounds[i]]``."""

    bounds: tuple[float, ...]
    counts: np.ndarray
    count: int
    sum: float

    def consistent(self) -> str | None:
        if len(self.counts) != len(self.bounds) + 1 and not (self.count == 0 and not len(self.counts)):
            return f"{len(self.counts)} bucket counts for {len(self.bounds)} bounds (need bounds + 1)"
        if len(self.counts) and self.counts.min() < 0:
            return "negative bucket count"
        total = int(self.counts.sum()) if len(self.counts) else 0
        if total != self.count:
            return f"count {self.count} != sum of bucket counts {total}"
        if any(not a < b for a, b in zip(self.bounds, self.bounds[1:], strict=False)):
            return "explicit bounds not strictly increasing"
        return None

    def minus(self, prev: ExplicitCounts) -> ExplicitCounts | None:
        if self.bounds != prev.bounds or self.count < prev.count:
            return None
        if not len(prev.counts):
            return self
        if not len(self.counts):
            return None if prev.count else self
        diff = self.counts - prev.counts
        if diff.min() < 0:
            return None
        return ExplicitCounts(self.bounds, diff, self.count - prev.count, self.sum - prev.sum)

    def histogram(self) -> ExplicitHistogram:
        counts = tuple(self.counts.tolist()) if len(self.counts) else (0,) * (len(self.bounds) + 1)
        return ExplicitHistogram(self.bounds, counts, self.sum)


class _Last:
    __slots__ = ("kind", "older", "start_ns", "time_ns", "total")

    def __init__(self, kind: int, start_ns: int, time_ns: int, total: object) -> None:
        self.kind = kind
        self.start_ns = start_ns
        self.time_ns = time_ns
        self.total = total
        self.older = False  # a producer with an older start than the series' newest (CONCURRENT outcomes)


_COUNTER, _EXPONENTIAL, _EXPLICIT = range(3)


class CumulativeTracker:
    """The latest cumulative point of every series (by the caller's series id) and start time, turning each new
    point into ``(outcome, start_ns, increment)``; the increment covers ``(start_ns, time_ns]`` and is None for
    ``BASELINE`` and ``STALE``.

    ``start_ns`` 0 means unknown. Counter totals are ints or floats; for non-monotonic sums
    (``monotonic=False``) a decrease is a legitimate change, not a reset. Each method starts with the common case
    (same start, later time) inline: this runs once per data point.
    """

    def __init__(self) -> None:
        self._last: dict[int, _Last] = {}  # series -> the point of its newest start
        self._older: dict[int, dict[int, _Last]] = {}  # series -> start -> point, of older starts still reporting

    def __len__(self) -> int:
        return len(self._last) + sum(len(o) for o in self._older.values())

    def counter(
        self, series: int, start_ns: int, time_ns: int, total: float, *, monotonic: bool = True, first_counts=False
    ) -> tuple[int, int, float | None]:
        last = self._last.get(series)
        if last is None or last.kind != _COUNTER or last.start_ns != start_ns or time_ns <= last.time_ns:
            moved, last = self._changed(_COUNTER, last, series, start_ns, time_ns, total, first_counts)
            if moved is not None:
                return moved
        inc = total - last.total
        since = last.time_ns
        last.time_ns, last.total = time_ns, total
        if inc < 0 and monotonic:
            return RESET, since, total
        return (CONCURRENT if last.older else INCREMENT), since, inc

    def exponential(
        self, series: int, start_ns: int, time_ns: int, total: ExpoCounts, *, first_counts=False
    ) -> tuple[int, int, ExpoCounts | None]:
        return self._histogram(_EXPONENTIAL, series, start_ns, time_ns, total, first_counts)

    def explicit(
        self, series: int, start_ns: int, time_ns: int, total: ExplicitCounts, *, first_counts=False
    ) -> tuple[int, int, ExplicitCounts | None]:
        return self._histogram(_EXPLICIT, series, start_ns, time_ns, total, first_counts)

    def idle(self, series: int, start_ns: int, time_ns: int, count: int) -> bool:
        """True (and the series' time advanced) when a histogram point with this known start and total ``count``
        adds nothing: without a restart buckets never decrease, so an equal count means equal buckets. Lets the
        caller skip decoding the point."""
        last = self._last.get(series)
        if (
            last is None
            or last.kind == _COUNTER
            or not start_ns
            or start_ns != last.start_ns
            or time_ns <= last.time_ns
            or last.total.count != count
        ):
            return False
        last.time_ns = time_ns
        return True

    def states(self) -> list[tuple[int, int, int, object]]:
        """``(series, start_ns, time_ns, total)`` of every tracked point (for snapshots)."""
        out = [(sid, p.start_ns, p.time_ns, p.total) for sid, p in self._last.items()]
        out += [(sid, p.start_ns, p.time_ns, p.total) for sid, older in self._older.items() for p in older.values()]
        return out

    def _histogram(self, kind, series, start_ns, time_ns, total, first_counts):
        last = self._last.get(series)
        if last is None or last.kind != kind or last.start_ns != start_ns or time_ns <= last.time_ns:
            moved, last = self._changed(kind, last, series, start_ns, time_ns, total, first_counts)
            if moved is not None:
                return moved
        inc = total.minus(last.total)
        since = last.time_ns
        last.time_ns, last.total = time_ns, total
        if inc is None:
            return RESET, since, total
        return (CONCURRENT if last.older else INCREMENT), since, inc

    def _changed(self, kind, last, series, start_ns, time_ns, total, first_counts):
        """``(outcome, None)`` for a first point, a new start, an older start's first point or a stale point;
        ``(None, point)`` when the totals decide against ``point`` (the same start, or one of them unknown)."""
        if last is None or last.kind != kind:
            self._last[series] = _Last(kind, start_ns, time_ns, total)
            if start_ns > 0:
                return (FIRST, start_ns, total), None
            if first_counts:
                return (FIRST, time_ns, total), None
            return (BASELINE, 0, None), None
        if start_ns and last.start_ns and start_ns != last.start_ns:
            if start_ns > last.start_ns:  # a restart, or another producer of the series began
                if last.time_ns >= start_ns:  # still reporting after the new start: keep it as a producer
                    self._keep_older(series, last)
                self._last[series] = _Last(kind, start_ns, time_ns, total)
                return (RESET, start_ns, total), None
            older = self._older.setdefault(series, {})
            point = older.get(start_ns)
            if point is None or point.kind != kind:  # first point of an older start: its whole total
                self._keep_older(series, _Last(kind, start_ns, time_ns, total))
                return (CONCURRENT, start_ns, total), None
            if time_ns <= point.time_ns:
                return (STALE, 0, None), None
            return None, point
        if time_ns <= last.time_ns:
            return (STALE, 0, None), None
        # One of the starts is unknown (0): the caller compares the totals as if the starts were equal.
        last.start_ns = start_ns
        return None, last

    def _keep_older(self, series: int, point: _Last) -> None:
        point.older = True
        older = self._older.setdefault(series, {})
        older[point.start_ns] = point
        if len(older) > MAX_CONCURRENT:
            del older[min(older, key=lambda s: older[s].time_ns)]

    def restore(self, series: int, start_ns: int, time_ns: int, total: object) -> None:
        """Put back a point ``states`` gave (the newest start of a series becomes its current one)."""
        kind = _EXPONENTIAL if isinstance(total, ExpoCounts) else _COUNTER
        if isinstance(total, ExplicitCounts):
            kind = _EXPLICIT
        point = _Last(kind, start_ns, time_ns, total)
        last = self._last.get(series)
        if last is None:
            self._last[series] = point
        elif start_ns > last.start_ns:
            self._keep_older(series, last)
            self._last[series] = point
        else:
            self._keep_older(series, point)


# -- bucket arrays ---------------------------------------------------------------------------------------------


def _downscale(offset: int, counts: np.ndarray, by: int) -> tuple[int, np.ndarray]:
    """Bucket ``offset + j`` becomes ``(offset + j) >> by``: sums of runs (as BucketStore.downscale)."""
    n = len(counts)
    if n == 0 or by <= 0:
        return offset, counts
    by = min(by, 62)
    new = (np.arange(offset, offset + n, dtype=np.int64)) >> by
    starts = np.concatenate(([0], np.flatnonzero(np.diff(new)) + 1))
    return offset >> by, np.add.reduceat(counts, starts)


def _subtract(cur_off: int, cur: np.ndarray, prev_off: int, prev: np.ndarray) -> tuple[int, np.ndarray] | None:
    """``cur - prev`` aligned by bucket index, or None if any bucket would go negative. The result is never
    wider than ``cur`` (a ``prev`` bucket outside it is a decrease), however far apart the two offsets are."""
    n, m = len(cur), len(prev)
    if m == 0:
        return cur_off, cur
    if n == 0:
        return None if prev.any() else (cur_off, cur)
    if not (prev_off >= cur_off and prev_off + m <= cur_off + n):  # zero ends aside, buckets only grow outwards
        prev_off, prev = _trim(prev_off, prev)
        m = len(prev)
        if m == 0:
            return cur_off, cur
        if not (prev_off >= cur_off and prev_off + m <= cur_off + n):
            return None  # a counted bucket of prev is missing from cur: it decreased
    out = cur.copy()
    out[prev_off - cur_off : prev_off - cur_off + m] -= prev
    if out[out.argmin()] < 0:
        return None
    return cur_off, out


def _trim(offset: int, counts: np.ndarray) -> tuple[int, np.ndarray]:
    """Drop zero buckets at both ends (BucketStore keeps its arrays trimmed)."""
    n = len(counts)
    if n == 0:
        return 0, _EMPTY
    if counts[0] and counts[n - 1]:
        return offset, counts
    nz = counts.nonzero()[0]
    if not len(nz):
        return 0, _EMPTY
    first, last = int(nz[0]), int(nz[-1])
    return offset + first, counts[first : last + 1]


def _span(offset: int, counts: np.ndarray, k: int) -> int:
    return ((offset + len(counts) - 1) >> k) - (offset >> k) + 1 if len(counts) else 0


def _bounds(scale: int, zero: int, po: int, p: np.ndarray, no: int, n: np.ndarray) -> tuple[float, float]:
    """Outer bounds of the occupied buckets (trimmed arrays): every counted value lies within them.

    Bucket ``i`` is ``(b**i, b**(i+1)]`` with ``b**i = 2**(i * 2**-scale)`` (as sketch.bucket_bounds)."""
    width = math.ldexp(1.0, -scale)
    if len(n):
        lo = -_exp2((no + len(n)) * width)
    elif zero:
        lo = 0.0
    else:
        lo = _exp2(po * width)
    if len(p):
        hi = _exp2((po + len(p)) * width)
    elif zero:
        hi = 0.0
    else:
        hi = -_exp2(no * width)
    return lo, hi


def _exp2(x: float) -> float:
    try:
        return 2.0**x
    except OverflowError:
        return math.inf
