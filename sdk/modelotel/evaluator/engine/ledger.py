"""Per-SLO event ledger: good and total events in time bins, accumulated from source deltas.

A delta covering ``(start, end]`` is attributed to the bin holding its end time: bin ``k`` holds ends in
``((k-1) r, k r]`` for the resolution ``r`` (seconds, epoch-aligned). Windows are unions of whole bins, so a
window that starts and ends on multiples of ``r`` counts exactly the deltas ending inside it; otherwise its
far edge is rounded outwards by less than ``r`` (see ``docs/evaluator.md``). A long delta (the first point of
a cumulative series whose process started before the data begins) also lands at its end: whether its events
are old or all recent cannot be told from the point (docs/evaluator.md).

Counting good events in a histogram (``Selector.threshold``)
    Exponential buckets ``(b**i, b**(i+1)]``: every bucket wholly on the good side counts in ``lower`` and
    ``upper``; the bucket containing the threshold only in ``upper`` (``LogSketch.count_at_or_below``).
    ``v < t`` is ``v <= nextafter(t, -inf)`` exactly, and ``>``/``>=`` are the complements. The estimate
    counts the partial bucket in proportion to the log-distance of the threshold across it (values spread
    uniformly in ``log v``); it is off by at most that bucket's count. Equivalently the estimate is the exact
    count at some threshold within relative error ``alpha = (b-1)/(b+1)`` of ``t`` only up to that bucket:
    the reported bound ``[lower, upper]`` is what we guarantee.
    Explicit buckets ``(bounds[i-1], bounds[i]]``: the same with linear interpolation inside the bucket.
"""

from __future__ import annotations

import dataclasses
import math
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from functools import lru_cache

import modelotel.conventions as conv

from ...sketch import LogSketch, bucket_bounds, bucket_index
from ..slo import SKETCH_KINDS, SLO, AttributeFilter, Selector
from ..sources.points import AttrValue, Delta, ExplicitHistogram, attribute_text
from ..units import UnitProblem, in_unit, resolve_unit


@lru_cache(maxsize=256)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def passes(condition: AttributeFilter, attributes: dict[str, AttrValue]) -> bool:
    """Whether the attributes pass one filter (an absent key reads as ``""``, as Prometheus labels do)."""
    got = attribute_text(attributes.get(condition.key))
    op = condition.op
    if op == "eq":
        return got == condition.values[0]
    if op == "ne":
        return got != condition.values[0]
    if op == "in":
        return got in condition.values
    if op == "not_in":
        return got not in condition.values
    found = _pattern(condition.values[0]).fullmatch(got) is not None
    return found if op == "regex" else not found


def matches(selector: Selector, metric: str, attributes: dict[str, AttrValue]) -> bool:
    if metric != selector.metric:
        return False
    for key, want in selector.match:
        got = attributes.get(key)
        if got is None or attribute_text(got) != want:
            return False
    if any(key in attributes for key in selector.absent):
        return False
    if not all(key in attributes for key in selector.present):
        return False
    if not all(passes(c, attributes) for c in selector.filters):
        return False
    return not selector.any_of or any(all(passes(c, attributes) for c in alt) for alt in selector.any_of)


def _sketch_at_or_below(sk: LogSketch, t: float) -> tuple[float, int, int]:
    """``(estimate, lower, upper)`` of the number of values ``<= t`` in the sketch."""
    lower, upper = sk.count_at_or_below(t)
    if lower == upper or t <= 0.0:
        return float(lower + upper) / 2.0 if t <= 0.0 else float(lower), lower, upper
    i = bucket_index(t, sk.scale)
    lo, hi = bucket_bounds(i, sk.scale)
    frac = (math.log(t) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return lower + (upper - lower) * min(max(frac, 0.0), 1.0), lower, upper


def _explicit_at_or_below(h: ExplicitHistogram, t: float) -> tuple[float, int, int]:
    """Same for explicit buckets ``(bounds[i-1], bounds[i]]``; the outer buckets are unbounded."""
    j = bisect_left(h.bounds, t)  # bucket j holds values in (bounds[j-1], bounds[j]] and contains t
    lower = sum(h.counts[:j])
    if j < len(h.bounds) and h.bounds[j] == t:
        exact = lower + h.counts[j]
        return float(exact), exact, exact
    partial = h.counts[j] if j < len(h.counts) else 0
    upper = lower + partial
    if not partial:
        return float(lower), lower, upper
    if 0 < j < len(h.bounds):
        lo, hi = h.bounds[j - 1], h.bounds[j]
        frac = (t - lo) / (hi - lo)
    else:
        frac = 0.5  # an unbounded outer bucket: no shape to interpolate
    return lower + partial * frac, lower, upper


def threshold_in_unit(selector: Selector, delta: Delta) -> float | None:
    """The selector's threshold in the unit of ``delta``'s metric (a duration threshold is in seconds); raises
    ``UnitProblem`` when the metric has no unit of time."""
    t = selector.threshold
    if t is None or selector.threshold_unit != "s":
        return t
    unit, _ = resolve_unit(delta.metric, delta.unit)
    return in_unit(t, delta.metric, unit)


def count_good(selector: Selector, delta: Delta, t: float | None = None) -> tuple[float, float, float]:
    """``(estimate, lower, upper)`` of the events of ``delta`` that ``selector`` counts; ``t`` is the threshold
    in the delta's unit (``threshold_in_unit``)."""
    if t is None:
        t = threshold_in_unit(selector, delta)
    if t is None:
        return delta.value, delta.value, delta.value
    if selector.op in ("lt", "ge"):
        t = math.nextafter(t, -math.inf)  # v < t  <=>  v <= nextafter(t, -inf)
    if delta.sketch is not None:
        est, lo, hi = _sketch_at_or_below(delta.sketch, t)
        total = delta.sketch.count
    elif delta.explicit is not None:
        est, lo, hi = _explicit_at_or_below(delta.explicit, t)
        total = sum(delta.explicit.counts)
    else:
        raise ValueError(f"{delta.metric} is not a histogram; a threshold needs one")
    if selector.op in ("ge", "gt"):
        return total - est, total - hi, total - lo
    return est, lo, hi


@dataclass
class Bin:
    total: float = 0.0
    good: float = 0.0  # estimate
    good_lower: float = 0.0
    good_upper: float = 0.0
    sketch: LogSketch | None = None  # sliced SLIs: merged values of this bin (calibration: the correct ones)
    sketch_bad: LogSketch | None = None  # calibration: confidences of incorrect predictions
    predictions: float = 0.0  # feedback kinds: ml.predictions of the model (the denominator of label coverage)


def attributed_time(delta: Delta) -> float:
    """The time (epoch seconds) a delta counts at: for feedback series that carry the judged predictions' time
    bucket (``ml.prediction.time_bucket_end``: a window counts the predictions made in it, whenever their labels
    arrived), the bucket's end, or the delta's end when that is earlier (labels that came back within their own
    bucket: they count by the time they were exported, so a window ending now holds every label exported by now);
    else the delta's end. Either way within one bucket after the prediction."""
    end = delta.end_ns / 1e9
    bucket = delta.attributes.get(conv.PREDICTION_TIME_BUCKET_END)
    if bucket is not None:
        try:
            t = float(bucket)  # an int attribute, or Prometheus' label text
        except (TypeError, ValueError):
            t = math.nan
        if math.isfinite(t) and t > 0:
            return min(t, end)
    return end


@dataclass
class Ledger:
    """Bins of one SLO. ``add`` is called for every delta of the SLO's metrics; it keeps what matches.

    Deltas that match but cannot be counted (a duration threshold on a metric without a unit of time, a
    threshold on a counter) are counted in ``errors`` / ``error_events``, never silently: the SLO is then
    ``invalid`` (budget.py)."""

    slo: SLO
    resolution: float  # seconds
    bins: dict[int, Bin] = field(default_factory=dict)
    unmatched: int = 0
    errors: int = 0  # deltas that matched but could not be counted (e.g. a threshold on a counter)
    first_error: str = ""
    min_scale: int | None = None  # smallest exponential-histogram scale counted (sets the accuracy bound)
    explicit: bool = False  # explicit-bucket histograms were counted
    error_events: float = 0.0  # events of the deltas in ``errors``
    units: dict[str, tuple[str, bool]] = field(default_factory=dict)  # metric -> (unit read, from conventions)
    matched: int = 0  # deltas counted as total events (the selector matched the input)
    _cache: dict[tuple[int, str], tuple[bool, bool, bool, float | None, float | None]] = field(default_factory=dict)
    _prefix: tuple[list[int], list[tuple[float, float, float, float]]] | None = None
    _good: Selector | None = None
    _coverage: Selector | None = None
    predictions_seen: int = 0  # ml.predictions deltas counted for coverage

    def __post_init__(self) -> None:
        sli = self.slo.sli
        self._good = sli.good
        self._coverage = self.slo.coverage_selector()
        if sli.kind == "percentile" and sli.good is None and sli.threshold is not None:
            # a slice's percentile is judged from the count of values <= the threshold (budget.slice_good)
            self._good = dataclasses.replace(sli.total, threshold=sli.threshold, op="le", threshold_unit="s")

    def _roles(self, delta: Delta) -> tuple[bool, bool, bool, float | None, float | None]:
        """Whether the delta counts for (total, good, bad), and the good and bad thresholds in its unit; cached
        per source series. Raises ``UnitProblem`` for a duration threshold its metric's unit cannot take."""
        key = (delta.series, delta.metric)
        if delta.series and key in self._cache:
            return self._cache[key]
        sli = self.slo.sli
        if self._coverage is not None and matches(self._coverage, delta.metric, delta.attributes):
            roles = (False, False, False, None, None)
            if delta.series:
                self._cache[key] = roles
            return roles
        is_total = matches(sli.total, delta.metric, delta.attributes)
        good = self._good
        is_good = good is not None and matches(good, delta.metric, delta.attributes)
        is_bad = sli.bad is not None and matches(sli.bad, delta.metric, delta.attributes)
        t_good = threshold_in_unit(good, delta) if is_good else None  # type: ignore[arg-type]
        t_bad = threshold_in_unit(sli.bad, delta) if is_bad else None  # type: ignore[arg-type]
        if (is_total or is_good or is_bad) and delta.metric not in self.units:
            self.units[delta.metric] = resolve_unit(delta.metric, delta.unit)
        roles = (is_total, is_good, is_bad, t_good, t_bad)
        if delta.series:
            self._cache[key] = roles
        return roles

    def wants(self, delta: Delta) -> bool:
        """Whether ``delta``'s series counts for this SLO at all (the engine routes by series with it)."""
        if self._coverage is not None and matches(self._coverage, delta.metric, delta.attributes):
            return True
        try:
            return any(self._roles(delta)[:3])
        except UnitProblem:
            return True  # it matched: ``add`` counts it as an error

    def add(self, delta: Delta) -> None:
        self._prefix = None
        if self._coverage is not None and matches(self._coverage, delta.metric, delta.attributes):
            k = math.ceil(delta.end_ns / (self.resolution * 1e9))
            b = self.bins.get(k) or Bin()
            self.bins[k] = b
            b.predictions += delta.value
            self.predictions_seen += 1
            return
        try:
            is_total, is_good, is_bad, t_good, t_bad = self._roles(delta)
        except UnitProblem as exc:
            self._error(delta, str(exc))
            return
        if not (is_total or is_good or is_bad):
            self.unmatched += 1
            return
        sli = self.slo.sli
        sk = delta.sketch
        if sk is not None and (self.min_scale is None or sk.scale < self.min_scale):
            self.min_scale = sk.scale
        if delta.explicit is not None:
            self.explicit = True
        total = good = lower = upper = 0.0
        try:
            if is_total:
                total = delta.value
                self.matched += 1
                if self._good is None:  # good = total - bad
                    good = lower = upper = total
            if is_good:
                est, lo, hi = count_good(self._good, delta, t_good)  # type: ignore[arg-type]
                good, lower, upper = good + est, lower + lo, upper + hi
            if is_bad:  # good = total - bad: bad's upper bound is good's lower bound
                est, lo, hi = count_good(sli.bad, delta, t_bad)  # type: ignore[arg-type]
                good, lower, upper = good - est, lower - hi, upper - lo
        except ValueError as exc:
            self._error(delta, str(exc))
            return
        if is_total and sli.kind in SKETCH_KINDS and sk is None:
            # a counter or explicit buckets: no values to compare (a bin without a sketch cannot be judged)
            self._error(delta, f"{delta.metric} is not an exponential histogram; a {sli.kind} SLI needs one")
            return
        k = math.ceil(attributed_time(delta) / self.resolution)
        b = self.bins.get(k) or Bin()
        if is_total and sli.kind in SKETCH_KINDS and sk is not None:
            # first the merge, which may refuse (atomically): then nothing of the delta is counted
            bad = sli.kind == "calibration" and not is_good
            merged = (b.sketch_bad if bad else b.sketch) or LogSketch(sk.scale)
            try:
                merged.merge(sk)
            except ValueError as exc:
                self._error(delta, str(exc))
                return
            if bad:
                b.sketch_bad = merged
            else:
                b.sketch = merged
        self.bins[k] = b
        b.total += total
        b.good += good
        b.good_lower += lower
        b.good_upper += upper

    def _error(self, delta: Delta, message: str) -> None:
        self.errors += 1
        self.error_events += delta.value
        self.first_error = self.first_error or message

    def merged_sketch(self, start: float, end: float) -> LogSketch | None:
        """The merged sketch of the bins ending in ``(start, end]`` (drift references)."""
        k0, k1 = math.floor(start / self.resolution) + 1, math.ceil(end / self.resolution)
        out: LogSketch | None = None
        for k, b in self.bins.items():
            if k0 <= k <= k1 and b.sketch is not None:
                if out is None:
                    out = LogSketch(b.sketch.scale)
                out.merge(b.sketch)
        return out

    def window(self, start: float, end: float) -> Bin:
        """Sum of the bins whose end time lies in ``(start, end]`` (seconds; rounded out to bins)."""
        k0 = math.floor(start / self.resolution) + 1
        k1 = math.ceil(end / self.resolution)
        if self._prefix is None:  # prefix sums over the sorted bins: every window is two bisections
            keys = sorted(self.bins)
            sums = [(0.0, 0.0, 0.0, 0.0, 0.0)]
            t = g = lo = hi = p = 0.0
            for k in keys:
                b = self.bins[k]
                t, g, lo, hi = t + b.total, g + b.good, lo + b.good_lower, hi + b.good_upper
                p += b.predictions
                sums.append((t, g, lo, hi, p))
            self._prefix = (keys, sums)
        keys, sums = self._prefix
        i, j = bisect_left(keys, k0), bisect_right(keys, k1)
        a, b = sums[i], sums[max(i, j)]
        return Bin(b[0] - a[0], b[1] - a[1], b[2] - a[2], b[3] - a[3], predictions=b[4] - a[4])

    def slices(self, start: float, end: float, width: float) -> list[tuple[float, Bin]]:
        """Time slices of ``width`` seconds ending at ``end``, back to ``start``: ``(slice_end, merged bin)``.

        Only slices with events are returned (a slice without traffic is neither good nor bad).
        """
        n = max(1, round((end - start) / width))
        out: dict[int, Bin] = {}
        k0 = math.floor(start / self.resolution) + 1
        k1 = math.ceil(end / self.resolution)
        for k, b in self.bins.items():
            if not k0 <= k <= k1:
                continue
            # slice j (0 = latest) covers (end - (j+1) width, end - j width]
            j = min(n - 1, max(0, int((end - k * self.resolution) // width)))
            s = out.get(j)
            if s is None:
                s = out[j] = Bin()
            s.total += b.total
            s.good += b.good
            s.good_lower += b.good_lower
            s.good_upper += b.good_upper
            s.predictions += b.predictions
            if b.sketch is not None:
                if s.sketch is None:
                    s.sketch = LogSketch(b.sketch.scale)
                s.sketch.merge(b.sketch)
            if b.sketch_bad is not None:
                if s.sketch_bad is None:
                    s.sketch_bad = LogSketch(b.sketch_bad.scale)
                s.sketch_bad.merge(b.sketch_bad)
        return [(end - j * width, out[j]) for j in sorted(out, reverse=True) if out[j].total > 0]
