"""Series registry with a cardinality cap, and collect() of every ``ModelBuffers`` into OTel MetricsData.

A background thread (metrics/export.py) calls ``Recorder.collect()``, which folds every buffer into
per-series sketches and counters and builds one ``MetricsData`` in the chosen temporality.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogram,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

import modelotel.conventions as conv

from ..sketch import LogSketch
from .buffers import AttrKey, attr_key, drain
from .exemplars import Candidate, Reservoir
from .selftelemetry import SELF

_log = logging.getLogger("modelotel")


COARSE_EXTREMES = frozenset({conv.FEATURE_VALUE})


def _coarse_extremes(point: Any) -> Any:
    """min/max replaced by the outer edges of the occupied buckets (they still bound every value)."""
    if not point.count:
        return point
    base = 2.0 ** (2.0**-point.scale)
    lows, highs = [], []
    pos, neg = point.positive, point.negative
    if any(neg.bucket_counts):
        first = next(i for i, c in enumerate(neg.bucket_counts) if c)
        last = max(i for i, c in enumerate(neg.bucket_counts) if c)
        lows.append(-(base ** (neg.offset + last + 1)))
        highs.append(-(base ** (neg.offset + first)))
    if point.zero_count:
        lows.append(0.0)
        highs.append(0.0)
    if any(pos.bucket_counts):
        first = next(i for i, c in enumerate(pos.bucket_counts) if c)
        last = max(i for i, c in enumerate(pos.bucket_counts) if c)
        lows.append(base ** (pos.offset + first))
        highs.append(base ** (pos.offset + last + 1))
    return dataclasses.replace(point, min=min(lows), max=max(highs))


# Feedback series carry the prediction's time bucket, so a long-running process makes new ones every bucket. In
# cumulative temporality a series nobody adds to any more is exported IDLE_EXPORTS more times, then forgotten; a
# late feedback for its bucket starts it again from zero with a new start time (a reset, which every reader of
# cumulative data handles), so memory stays bounded whatever the label delay. A new such series is first exported
# at zero and its values one export later ("held"): Prometheus' rate() and increase() ignore a series' first
# sample, so a short-lived series whose first sample already held its whole count would read as no feedback.
EXPIRING_ATTRIBUTE = conv.PREDICTION_TIME_BUCKET_END
IDLE_EXPORTS = 3
# A back-fill of labels spanning days touches many buckets at once (1,440 a day at 60 s, times correctness, labels
# and groups): such series get ten times the per-metric cap. Past it, a value keeps its series but without the
# time bucket (it then counts when exported), counted in modelotel.dropped{feedback_time_bucket_overflow}: the
# model's counts stay whole, only their attribution is coarser.
BUCKETED_SERIES_FACTOR = 10


def _bucket_overflow(metric: str, values: int) -> None:
    SELF.drop(
        "feedback_time_bucket_overflow",
        values,
        f"{metric}: too many prediction-time buckets at once; these values count when exported, without "
        "ml.prediction.time_bucket_end (the model's counts stay whole)",
    )


class _HistSeries:
    __slots__ = ("attributes", "start_ns", "sketch", "seen", "idle", "held", "reservoir")

    def __init__(self, attributes: Mapping[str, Any], start_ns: int, sketch: LogSketch, hold: bool = False) -> None:
        self.attributes = dict(attributes)
        self.start_ns = start_ns
        self.sketch = sketch
        self.reservoir: Reservoir | None = None  # this interval's exemplars (metrics/exemplars.py), once offered
        self.seen = -1  # the count at the last export
        self.idle = 0  # exports since it last changed
        # values of a new expiring series, shown from its second export on (see EXPIRING_ATTRIBUTE)
        self.held: LogSketch | None = LogSketch(sketch.scale, sketch.max_buckets) if hold else None

    def release(self) -> None:
        if self.held is not None:
            if self.held.count:
                self.sketch.merge(self.held)
            self.held = None

    def tick(self) -> int:
        count = self.sketch.count
        self.idle = self.idle + 1 if count == self.seen else 0
        self.seen = count
        return self.idle


class _SumSeries:
    __slots__ = ("attributes", "start_ns", "value", "seen", "idle", "held")

    def __init__(self, attributes: Mapping[str, Any], start_ns: int, hold: bool = False) -> None:
        self.attributes = dict(attributes)
        self.start_ns = start_ns
        self.value = 0
        self.seen = -1
        self.idle = 0
        self.held: int | None = 0 if hold else None

    def release(self) -> None:
        if self.held is not None:
            self.value += self.held
            self.held = None

    def tick(self) -> int:
        self.idle = self.idle + 1 if self.value == self.seen else 0
        self.seen = self.value
        return self.idle


_OVERFLOW_ATTRS = {conv.OVERFLOW: True}
_OVERFLOW_KEY = attr_key(_OVERFLOW_ATTRS)


class Recorder:
    """Per-metric series (sketches for histograms, integers for counters) and the buffers feeding them."""

    def __init__(
        self,
        *,
        scale: int = conv.DEFAULT_SCALE,
        max_buckets: int = conv.DEFAULT_MAX_BUCKETS,
        max_series: int = conv.DEFAULT_MAX_SERIES,
        temporality: str = "cumulative",
        start_ns: int | None = None,
    ) -> None:
        self.scale = scale
        self.max_buckets = max_buckets
        self.max_series = max_series
        self.delta = temporality == "delta"
        self._hist: dict[str, dict[AttrKey, _HistSeries]] = {}
        self._sums: dict[str, dict[AttrKey, _SumSeries]] = {}
        self._sources: list[Any] = []
        # Sources whose owner is gone (a decoration garbage-collected): appended by a GC finalizer (no lock
        # there: it may run in a thread holding ours), folded once more, then kept only while something
        # else holds them (a pending feedback entry), so memory does not follow re-decorations.
        self._released: list[Any] = []
        self._released_alive: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()  # collect() may run from the thread and from force_flush at once
        self._window_start_ns = start_ns if start_ns is not None else time.time_ns()
        self._now_ns = self._window_start_ns

    # -- sources ------------------------------------------------------------------------------
    def register(self, source: Any) -> None:
        """A source has ``fold(recorder)``; ModelBuffers and the integrations' buffers are sources."""
        with self._lock:
            if source not in self._sources:
                self._sources.append(source)

    def release(self, source: Any) -> None:
        """``source``'s owner is gone: fold it at the next fold, then hold it weakly. Lock-free."""
        self._released.append(source)

    @property
    def sources(self) -> list[Any]:
        return list(self._sources)

    # -- series -------------------------------------------------------------------------------
    def _series(self, table: dict, metric: str, key: AttrKey, attrs: Mapping[str, Any], factory):
        per_metric = table.setdefault(metric, {})
        series = per_metric.get(key)
        if series is None:
            if EXPIRING_ATTRIBUTE in attrs:
                if len(per_metric) < self.max_series * BUCKETED_SERIES_FACTOR:
                    series = per_metric[key] = factory(attrs)
                    return series
                # the model's series without the bucket: one per attribute set the bucketed ones already had, so
                # it is not held to the per-metric cap they fill
                plain = {k: v for k, v in attrs.items() if k != EXPIRING_ATTRIBUTE}
                plain_key = attr_key(plain)
                series = per_metric.get(plain_key)
                if series is None:
                    series = per_metric[plain_key] = factory(plain)
                return series
            if len(per_metric) >= self.max_series and key != _OVERFLOW_KEY:
                SELF.warn_once(
                    "cardinality_overflow",
                    f"{metric} reached {self.max_series} series; further series go to the "
                    f"{conv.OVERFLOW}=true series (values are kept, attributes are not)",
                )
                overflow = per_metric.get(_OVERFLOW_KEY)
                if overflow is None:
                    overflow = per_metric[_OVERFLOW_KEY] = factory(_OVERFLOW_ATTRS)
                return overflow
            series = per_metric[key] = factory(attrs)
        return series

    def _start_of(self, attrs: Mapping[str, Any]) -> int:
        """A new series starts with the window, or (an expiring one, cumulative) at the last export."""
        if EXPIRING_ATTRIBUTE in attrs and not self.delta:
            return self._now_ns
        return self._window_start_ns

    def _hist_series(self, metric: str, key: AttrKey, attrs: Mapping[str, Any]) -> _HistSeries:
        start = self._start_of(attrs)
        return self._series(
            self._hist,
            metric,
            key,
            attrs,
            lambda a: _HistSeries(a, start, LogSketch(self.scale, self.max_buckets), self._holds(a)),
        )

    def observe(self, metric: str, key: AttrKey, attrs: Mapping[str, Any], values: np.ndarray) -> None:
        series = self._hist_series(metric, key, attrs)
        if EXPIRING_ATTRIBUTE in attrs and EXPIRING_ATTRIBUTE not in series.attributes:
            _bucket_overflow(metric, len(values))
        dropped = (series.held or series.sketch).add_many(values)
        if dropped:
            SELF.drop("non_finite", dropped, f"NaN or infinite values for {metric}")

    def offer(self, metric: str, key: AttrKey, attrs: Mapping[str, Any], candidates: list[Candidate]) -> None:
        """Exemplar candidates (``exemplars.offer`` tuples) of values already ``observe``d in this series.

        Never makes a series: the values went to ``key``'s series or, past the cardinality cap, to the overflow
        one; a series already gone (delta: its values were exported in an earlier interval) takes none."""
        per_metric = self._hist.get(metric)
        if per_metric is None:
            return
        series = per_metric.get(key)
        if series is None:
            series = per_metric.get(_OVERFLOW_KEY) if len(per_metric) >= self.max_series else None
            if series is None:
                return
        reservoir = series.reservoir
        scale = series.sketch.scale
        if reservoir is None:
            reservoir = series.reservoir = Reservoir(scale)
        reservoir.add(scale, [c[1] * 1e-9 for c in candidates], candidates)  # the very float the sketch got

    def add(self, metric: str, key: AttrKey, attrs: Mapping[str, Any], amount: int) -> None:
        start = self._start_of(attrs)
        series = self._series(self._sums, metric, key, attrs, lambda a: _SumSeries(a, start, self._holds(a)))
        if EXPIRING_ATTRIBUTE in attrs and EXPIRING_ATTRIBUTE not in series.attributes:
            _bucket_overflow(metric, amount)
        if series.held is None:
            series.value += amount
        else:
            series.held += amount

    def _holds(self, attrs: Mapping[str, Any]) -> bool:
        """Whether a new series is first exported at zero (EXPIRING_ATTRIBUTE, cumulative)."""
        return not self.delta and EXPIRING_ATTRIBUTE in attrs

    # -- collect ------------------------------------------------------------------------------
    def fold(self) -> None:
        """Move everything buffered into the series now (the export thread does this every second,
        so buffers hold about one second of calls whatever the export interval)."""
        with self._lock:
            self._fold_locked()

    def _fold_locked(self) -> None:
        released = drain(self._released) if self._released else ()  # owners gone before this fold
        for source in [*self._sources, *self._released_alive]:
            try:
                source.fold(self)
            except Exception as exc:  # one broken source must not stop the others
                SELF.error("fold", exc)
        for source in released:  # everything they held is folded now
            with contextlib.suppress(ValueError):
                self._sources.remove(source)
            self._released_alive.add(source)

    def collect(self, resource: Resource, now_ns: int | None = None, hold: bool = False) -> MetricsData | None:
        """Fold all buffers and build MetricsData; None when there is nothing to export. ``hold``: new expiring
        series are exported at zero this time (see EXPIRING_ATTRIBUTE); otherwise everything held is shown."""
        with self._lock:
            self._fold_locked()
            if not hold:
                self._release_held()
            errors, drops = SELF.take()
            now = now_ns if now_ns is not None else time.time_ns()
            now = max(now, self._window_start_ns + 1)
            for kind, count in errors.items():
                attrs = {conv.INTERNAL_ERROR_KIND: kind}
                self.add(conv.INTERNAL_ERRORS, attr_key(attrs), attrs, count)
            for reason, count in drops.items():
                attrs = {conv.DROP_REASON: reason}
                self.add(conv.DROPPED, attr_key(attrs), attrs, count)
            metrics = self._build(now)
            if self.delta:
                self._hist.clear()
                self._sums.clear()
                self._window_start_ns = now
            else:
                self._expire()
            self._now_ns = now
        if not metrics:
            return None
        scope = InstrumentationScope(conv.INSTRUMENTATION_SCOPE, _version())
        return MetricsData(
            resource_metrics=[
                ResourceMetrics(
                    resource=resource,
                    scope_metrics=[ScopeMetrics(scope=scope, metrics=metrics, schema_url="")],
                    schema_url="",
                )
            ]
        )

    def _build(self, now: int) -> list[Metric]:
        temporality = AggregationTemporality.DELTA if self.delta else AggregationTemporality.CUMULATIVE
        out: list[Metric] = []
        for name, table in self._hist.items():
            points = [
                _with_exemplars(
                    s.sketch.to_otlp_point(s.attributes, s.start_ns, now, max_scale=conv.MAX_EXPORT_SCALE), s
                )
                for s in table.values()
                if s.sketch.count or not self.delta
            ]
            if name in COARSE_EXTREMES:
                points = [_coarse_extremes(p) for p in points]
            if points:
                out.append(_metric(name, ExponentialHistogram(data_points=points, aggregation_temporality=temporality)))
        for name, table in self._sums.items():
            points = [
                NumberDataPoint(
                    attributes=s.attributes, start_time_unix_nano=s.start_ns, time_unix_nano=now, value=s.value
                )
                for s in table.values()
                if s.value or not self.delta
            ]
            if points:
                out.append(
                    _metric(name, Sum(data_points=points, aggregation_temporality=temporality, is_monotonic=True))
                )
        return out

    def _release_held(self) -> None:
        for table in (*self._hist.values(), *self._sums.values()):
            for series in table.values():
                if series.held is not None:
                    series.release()

    def _expire(self) -> None:
        """After an export: show what new expiring series held, and forget those that did not change in the last
        IDLE_EXPORTS exports (see EXPIRING_ATTRIBUTE)."""
        for table in (*self._hist.values(), *self._sums.values()):
            gone = []
            for k, s in table.items():
                if EXPIRING_ATTRIBUTE in s.attributes:
                    if s.held is not None:
                        s.release()
                    elif s.tick() >= IDLE_EXPORTS:
                        gone.append(k)
            for k in gone:
                del table[k]

    def reset_series(self) -> None:
        """Start every series afresh (a new configure() means a new service.instance.id)."""
        with self._lock:
            self._hist.clear()
            self._sums.clear()
            self._window_start_ns = time.time_ns()

    def reset(self) -> None:
        """Forget all series and buffered values (a forked child starts from nothing)."""
        self._lock = threading.Lock()
        self._hist.clear()
        self._sums.clear()
        for source in self._sources:
            clear = getattr(source, "clear", None)
            if clear is not None:
                clear()
        self._window_start_ns = time.time_ns()


def _with_exemplars(point: Any, series: _HistSeries) -> Any:
    """The point with this interval's exemplars of its series (taken: the next interval starts with none)."""
    reservoir = series.reservoir
    if reservoir is None:
        return point
    series.reservoir = None
    if not reservoir.cells:
        return point
    return dataclasses.replace(point, exemplars=reservoir.take(point.scale))


def _metric(name: str, data: Any) -> Metric:
    """A Metric with the name, unit and description conventions.py gives it."""
    spec = conv.METRICS.get(name)
    return Metric(name=name, description=spec.description if spec else "", unit=spec.unit if spec else "", data=data)


def _version() -> str:
    from .._version import __version__

    return __version__


def iter_points(metrics_data: MetricsData | None) -> Iterable[tuple[str, Any]]:
    """(metric name, data point) pairs of a MetricsData, for tests and the console."""
    if metrics_data is None:
        return
    for rm in metrics_data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    yield metric.name, point
