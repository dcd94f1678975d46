"""Raw HTTP and gRPC requests -> OTLP JSON lines as other instrumentations write them: explicit-bucket histograms
(the OTel SDK's default aggregation) in ms (old conventions) or s (stable ones), status codes instead of
``error.type``, optionally no ``service.instance.id`` (the OTel SDK sets none by default).

Every producer exports at ``t = k * interval`` what it saw in ``((k-1) interval, k interval]``; times in the file
are ``EPOCH + t``. Tests compare the evaluator with exact counts over the same raw requests.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from telemetry_gen import EPOCH, NS

MS_BOUNDS = (0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0, 10000.0)
# the GenAI conventions' explicit buckets for gen_ai.server.time_to_first_token and time_per_output_token (seconds)
TTFT_BOUNDS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BOUNDS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
S_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


@dataclass(frozen=True)
class Request:
    producer: str  # one process
    t: float  # seconds after EPOCH
    duration: float  # seconds
    status: int | str = 200  # HTTP status, or a gRPC status name
    route: str = "/predict"


GRPC_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
}


def _attr(key: str, value: str | int) -> dict:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def _attributes(kind: str, r: Request) -> list[dict]:
    if kind == "http-old":
        return [_attr("http.method", "POST"), _attr("http.target", r.route), _attr("http.status_code", r.status)]
    if kind == "http-stable":
        out = [_attr("http.request.method", "POST"), _attr("http.route", r.route)]
        out.append(_attr("http.response.status_code", r.status))
        if isinstance(r.status, int) and r.status >= 500:
            out.append(_attr("error.type", str(r.status)))
        return out
    if kind == "rpc-old":
        return [_attr("rpc.method", "Predict"), _attr("rpc.grpc.status_code", GRPC_CODES[str(r.status)])]
    if kind == "rpc-new":
        return [_attr("rpc.method", "Predict"), _attr("rpc.response.status_code", str(r.status))]
    if kind == "spanmetrics":
        error = GRPC_CODES.get(str(r.status), 0) in (2, 4, 12, 13, 14, 15)
        status = "STATUS_CODE_ERROR" if error else "STATUS_CODE_UNSET"
        return [_attr("span.name", "Predict"), _attr("status.code", status)]
    if kind in ("genai-ttft", "genai-tpot"):  # a model server's GenAI metrics: the model is the route
        return [
            _attr("gen_ai.operation.name", "chat"),
            _attr("gen_ai.provider.name", "vllm"),
            _attr("gen_ai.request.model", r.route),
        ]
    raise ValueError(kind)


METRICS = {  # kind -> (metric name, unit, bounds, seconds per unit)
    "http-old": ("http.server.duration", "ms", MS_BOUNDS, 1e-3),
    "http-stable": ("http.server.request.duration", "s", S_BOUNDS, 1.0),
    "rpc-old": ("rpc.server.duration", "ms", MS_BOUNDS, 1e-3),
    "rpc-new": ("rpc.server.call.duration", "s", S_BOUNDS, 1.0),
    "spanmetrics": ("traces.span.metrics.duration", "ms", MS_BOUNDS, 1e-3),
    "genai-ttft": ("gen_ai.server.time_to_first_token", "s", TTFT_BOUNDS, 1.0),
    "genai-tpot": ("gen_ai.server.time_per_output_token", "s", TPOT_BOUNDS, 1.0),
}


def explicit_point(values: Sequence[float], bounds: Sequence[float], attrs: list, start: int, end: int) -> dict:
    counts = [0] * (len(bounds) + 1)
    for v in values:
        counts[bisect_left(bounds, v)] += 1  # bucket i holds (bounds[i-1], bounds[i]]
    p = {
        "attributes": attrs,
        "startTimeUnixNano": str(start),
        "timeUnixNano": str(end),
        "count": str(len(values)),
        "sum": float(sum(values)),
        "bucketCounts": [str(c) for c in counts],
        "explicitBounds": list(bounds),
    }
    if values:
        p["min"], p["max"] = min(values), max(values)
    return p


def foreign_lines(
    requests: Sequence[Request],
    *,
    kind: str = "http-old",
    interval: float = 10.0,
    end: float,
    cumulative: bool = True,
    instance_id: bool = True,
    unit: str | None = None,
    starts: dict[str, float] | None = None,
) -> list[str]:
    """One line per producer per export, ordered by export time (as a collector's file is).

    ``instance_id=False`` leaves ``service.instance.id`` out, as the OTel SDK does by default, so producers share
    series identities and differ only in their start times (``starts``: seconds, default 0 for all).
    ``unit`` overrides the unit written (``""``: none)."""
    name, default_unit, bounds, per_unit = METRICS[kind]
    unit = default_unit if unit is None else unit
    starts = starts or {}
    by_producer: dict[str, list[Request]] = {}
    for r in requests:
        by_producer.setdefault(r.producer, []).append(r)
    out: list[tuple[float, str, str]] = []
    for producer, reqs in sorted(by_producer.items()):
        state: dict[tuple, list[float]] = {}
        first = starts.get(producer, 0.0)
        for k in range(1, round(end / interval) + 1):
            t0, t1 = (k - 1) * interval, k * interval
            if t1 <= first:
                continue
            if not cumulative:
                state = {}
            for r in reqs:
                if t0 < r.t <= t1:
                    key = tuple(json.dumps(a, sort_keys=True) for a in _attributes(kind, r))
                    state.setdefault(key, []).append(r.duration / per_unit)
            if not state:
                continue
            start_ns = int((EPOCH + (first if cumulative else max(t0, first))) * NS)
            end_ns = int((EPOCH + t1) * NS)
            points = [
                explicit_point(values, bounds, [json.loads(a) for a in key], start_ns, end_ns)
                for key, values in sorted(state.items())
            ]
            resource = [_attr("service.name", "shop")]
            if instance_id:
                resource.append(_attr("service.instance.id", producer))
            metric = {
                "name": name,
                "unit": unit,
                "histogram": {"dataPoints": points, "aggregationTemporality": 2 if cumulative else 1},
            }
            doc = {
                "resourceMetrics": [
                    {
                        "resource": {"attributes": resource},
                        "scopeMetrics": [{"scope": {"name": "opentelemetry"}, "metrics": [metric]}],
                    }
                ]
            }
            out.append((t1, producer, json.dumps(doc, separators=(",", ":"))))
    return [line for _, _, line in sorted(out)]
