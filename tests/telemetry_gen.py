"""Raw inference events -> OTLP JSON lines, as the SDK and the collector's file exporter would write them.

Tests generate raw events, encode them here in delta or cumulative form (per-instance scales, restarts,
downscaling cumulative series) and check the evaluator against exact computations on the same raw events.
Every instance exports at ``t = k * interval`` the events with ``t`` in ``((k-1) interval, k interval]``; times
in the file are ``EPOCH + t``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from modelotel.sketch import LogSketch

DURATION = "ml.inference.duration"
FEEDBACK = "ml.feedback"
NS = 1_000_000_000
EPOCH = 1_800_000_000.0  # 2027-01-15T08:00:00Z: event times are seconds after it (OTLP start time 0 means unknown)


@dataclass(frozen=True)
class Event:
    instance: str
    t: float  # seconds
    duration: float
    error: bool = False
    correct: bool | None = None  # feedback received with this correctness


def attr(key: str, value: str | bool) -> dict:
    """One OTLP JSON attribute (string or boolean)."""
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    return {"key": key, "value": {"stringValue": value}}


def _buckets(store) -> dict:
    if not len(store):
        return {}
    return {"offset": store.offset, "bucketCounts": [str(c) for c in store.counts.tolist()]}


def expo_point(sk: LogSketch, attrs: list, start: int, end: int, *, extremes: bool = True) -> dict:
    """An OTLP JSON exponential-histogram data point of ``sk`` as the collector's file exporter writes it (min/max
    unless ``extremes`` is False, as after a cumulative subtraction; no start time when ``start`` is 0)."""
    p = {
        "attributes": attrs,
        "startTimeUnixNano": str(start),
        "timeUnixNano": str(end),
        "count": str(sk.count),
        "sum": sk.sum,
        "scale": sk.scale,
        "zeroCount": str(sk.zero_count),
        "positive": _buckets(sk.positive),
        "negative": _buckets(sk.negative),
    }
    if sk.count and extremes:
        p["min"], p["max"] = sk.min, sk.max
    if not start:
        del p["startTimeUnixNano"]
    return p


def _sum_point(value: int, attrs: list, start: int, end: int) -> dict:
    return {"attributes": attrs, "startTimeUnixNano": str(start), "timeUnixNano": str(end), "asInt": str(value)}


class _Series:
    """One instance's running state for one attribute set."""

    def __init__(self, scale: int) -> None:
        self.sketch = LogSketch(scale)
        self.count = 0


def export_lines(
    events: Sequence[Event],
    *,
    interval: float,
    end: float,
    model: str = "fraud",
    cumulative: bool = False,
    scales: dict[str, int] | None = None,
    restarts: dict[str, Sequence[float]] | None = None,
    downscale_every: int = 0,
    metric: str = DURATION,
    attributes: dict[str, str] | None = None,
) -> list[str]:
    """One JSON line per instance per export interval up to ``end`` (seconds, a multiple of ``interval``).

    ``restarts[instance]`` are export times after which the instance restarted (cumulative state and start time
    reset). With ``downscale_every = n`` a cumulative series lowers its scale by one every n exports (the SDK does
    that when a series' range grows), down to -4. ``metric``/``attributes`` name another duration histogram and
    its attributes (default: ``ml.inference.duration`` with ``ml.model.name = model``).
    """
    base = [attr(k, v) for k, v in (attributes or {"ml.model.name": model}).items()]
    scales = scales or {}
    restarts = restarts or {}
    by_instance: dict[str, list[Event]] = {}
    for e in events:
        by_instance.setdefault(e.instance, []).append(e)
    lines = []
    n_exports = round(end / interval)
    for inst in sorted(by_instance):
        evs = sorted(by_instance[inst], key=lambda e: e.t)
        times = np.array([e.t for e in evs])
        scale = scales.get(inst, 5)
        state: dict[tuple, _Series] = {}
        counters: dict[tuple, int] = {}
        run_start = 0
        for k in range(1, n_exports + 1):
            t0, t1 = (k - 1) * interval, k * interval
            lo, hi = np.searchsorted(times, t0, side="right"), np.searchsorted(times, t1, side="right")
            window = evs[lo:hi]
            if not cumulative:
                state, counters = {}, {}
            elif downscale_every and k % downscale_every == 0:
                for s in state.values():
                    if s.sketch.scale > -4:
                        s.sketch.downscale(1)
            for e in window:
                key = (e.error,)
                s = state.get(key)
                if s is None:
                    cur = min((x.sketch.scale for x in state.values()), default=scale)
                    s = state[key] = _Series(cur)
                s.sketch.add(e.duration)
                if e.correct is not None:
                    counters[(e.correct,)] = counters.get((e.correct,), 0) + 1
            start_ns = int((EPOCH + (run_start if cumulative else t0)) * NS)
            end_ns = int((EPOCH + t1) * NS)
            hist_points = []
            for (error,), s in sorted(state.items()):
                attrs = list(base)
                if error:
                    attrs.append(attr("error.type", "ValueError"))
                hist_points.append(expo_point(s.sketch, attrs, start_ns, end_ns))
            sum_points = [
                _sum_point(v, [attr("ml.model.name", model), attr("ml.feedback.correct", c)], start_ns, end_ns)
                for (c,), v in sorted(counters.items())
            ]
            temporality = 2 if cumulative else 1
            metrics = []
            if hist_points:
                metrics.append(
                    {
                        "name": metric,
                        "unit": "s",
                        "exponentialHistogram": {"dataPoints": hist_points, "aggregationTemporality": temporality},
                    }
                )
            if sum_points:
                metrics.append(
                    {
                        "name": FEEDBACK,
                        "unit": "{feedback}",
                        "sum": {"dataPoints": sum_points, "aggregationTemporality": temporality, "isMonotonic": True},
                    }
                )
            if metrics:
                resource = {"attributes": [attr("service.name", "svc"), attr("service.instance.id", inst)]}
                doc = {
                    "resourceMetrics": [
                        {"resource": resource, "scopeMetrics": [{"scope": {"name": "modelotel"}, "metrics": metrics}]}
                    ]
                }
                lines.append(json.dumps(doc, separators=(",", ":")))
            if cumulative and t1 in restarts.get(inst, ()):
                state, counters = {}, {}
                run_start = t1
    return lines


def write_lines(path, lines: Iterable[str]) -> None:
    with open(path, "w") as fh:
        for line in lines:
            fh.write(line + "\n")
