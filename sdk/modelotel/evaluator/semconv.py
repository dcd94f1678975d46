"""What the OpenTelemetry semantic conventions fix about metrics other tools emit: units and what an error is.

Units. Data normally carries its unit (OTLP ``unit``, a Prometheus name suffix); these are the units the
conventions give the common duration histograms, for data that does not. The old HTTP and RPC conventions,
which the official Python instrumentations still emit by default, measure in milliseconds; the stable ones
(``OTEL_SEMCONV_STABILITY_OPT_IN=http`` / ``rpc``) in seconds.

Errors. A call is an error (``error_alternatives``)

* HTTP server metrics: the response status code is 5xx (``http.response.status_code``, or the old
  ``http.status_code``); without any status code (the request failed before a response), ``error.type`` is set.
  A 4xx is the client's error, not the server's (semconv: HTTP span status).
* HTTP client metrics: the same with 4xx and 5xx.
* RPC server metrics: the gRPC status is one the conventions count as a server error (``UNKNOWN``,
  ``DEADLINE_EXCEEDED``, ``UNIMPLEMENTED``, ``INTERNAL``, ``UNAVAILABLE``, ``DATA_LOSS``; by name in
  ``rpc.response.status_code``, or by number in the old ``rpc.grpc.status_code``); without a status, ``error.type``
  is set. ``NOT_FOUND`` or ``INVALID_ARGUMENT`` are the caller's errors.
* RPC client metrics: any status but ``OK``.
* span metrics (the collector's ``spanmetrics`` connector, ``traces.span.metrics.*``): the span status is
  ``STATUS_CODE_ERROR``, which instrumentations set by the same rules (a gRPC server error, an HTTP 5xx).
* anything else (``ml.*`` and unknown metrics): ``error.type`` is set.

The status code, when there is one, decides: an instrumentation that also sets ``error.type`` on a 4xx does not
turn it into a server error. Each rule is a list of disjoint alternatives (a series passes at most one), so
Prometheus rules can sum them.

Prometheus names. ``prometheus_name`` gives the names a metric may have been written under, ``attribute_key`` our
attribute key for a Prometheus label (``ml_model_name`` -> ``ml.model.name``), for the Prometheus reader and PromQL
translation alike.
"""

from __future__ import annotations

import re

from .. import conventions as conv
from .slo import AttributeFilter

__all__ = ["KNOWN_UNITS", "attribute_key", "error_alternatives", "known_unit", "may_be_classic", "prometheus_name"]

KNOWN_UNITS: dict[str, str] = {
    # old (experimental) HTTP and RPC conventions: milliseconds
    "http.server.duration": "ms",
    "http.client.duration": "ms",
    "rpc.server.duration": "ms",
    "rpc.client.duration": "ms",
    # stable HTTP, RPC release candidate, GenAI, database: seconds
    "http.server.request.duration": "s",
    "http.client.request.duration": "s",
    "rpc.server.call.duration": "s",
    "rpc.client.call.duration": "s",
    "gen_ai.server.request.duration": "s",
    "gen_ai.server.time_to_first_token": "s",
    "gen_ai.server.time_per_output_token": "s",
    "gen_ai.client.operation.duration": "s",
    "db.client.operation.duration": "s",
    "traces.span.metrics.duration": "ms",  # the spanmetrics connector's default unit
    **{name: spec.unit for name, spec in conv.METRICS.items()},
}

HTTP_STATUS_KEYS = ("http.response.status_code", "http.status_code")  # stable first, then the old key
RPC_STATUS_KEYS = ("rpc.response.status_code", "rpc.grpc.status_code")
GRPC_SERVER_ERRORS = {  # name -> number
    "UNKNOWN": "2",
    "DEADLINE_EXCEEDED": "4",
    "UNIMPLEMENTED": "12",
    "INTERNAL": "13",
    "UNAVAILABLE": "14",
    "DATA_LOSS": "15",
}


def may_be_classic(metric: str) -> bool:
    """Whether the metric's histograms may have explicit buckets (the OTel SDK's default aggregation, a classic
    histogram in Prometheus) rather than only modelotel's exponential ones: any metric modelotel does not define,
    and the HTTP/RPC/GenAI names it shares with other instrumentations (model servers write ``gen_ai.server.*``
    with the conventions' explicit buckets)."""
    shared = metric in (conv.HTTP_SERVER_DURATION, conv.RPC_SERVER_DURATION) or metric.startswith("gen_ai.")
    return metric not in conv.METRICS or shared


def known_unit(metric: str) -> str | None:
    """The unit the conventions (or modelotel) give ``metric``, or None."""
    return KNOWN_UNITS.get(metric)


def _by_status(keys: tuple[str, ...], bad_status: list[AttributeFilter]) -> tuple[tuple[AttributeFilter, ...], ...]:
    """Disjoint alternatives: the first status key present decides (``bad_status[i]`` tests ``keys[i]``); with no
    status key at all, ``error.type`` decides."""
    alternatives = []
    for i, condition in enumerate(bad_status):
        unset = tuple(AttributeFilter(key, "eq", ("",)) for key in keys[:i])
        alternatives.append((*unset, condition))
    unset = tuple(AttributeFilter(key, "eq", ("",)) for key in keys)
    alternatives.append((*unset, AttributeFilter(conv.ERROR_TYPE, "ne", ("",))))
    return tuple(alternatives)


def error_alternatives(metric: str) -> tuple[tuple[tuple[AttributeFilter, ...], ...], str]:
    """``(disjoint alternatives, description)`` of the error rule for ``metric`` (the module docstring)."""
    if metric.startswith(("http.server.", "http.client.")):
        server = metric.startswith("http.server.")
        pattern = "5[0-9][0-9]" if server else "[45][0-9][0-9]"
        codes = "5xx" if server else "4xx or 5xx"
        bad = [AttributeFilter(key, "regex", (pattern,)) for key in HTTP_STATUS_KEYS]
        side = "server" if server else "client"
        why = (
            f"errors per the OTel HTTP semantic conventions ({side}): http.response.status_code (or the old "
            f"http.status_code) {codes}; error.type set when there is no status code"
        )
        return _by_status(HTTP_STATUS_KEYS, bad), why
    if metric.startswith("rpc.server."):
        names = tuple(GRPC_SERVER_ERRORS) + tuple(GRPC_SERVER_ERRORS.values())
        bad = [AttributeFilter(key, "in", names) for key in RPC_STATUS_KEYS]
        why = (
            "errors per the OTel RPC semantic conventions (gRPC server): status "
            + ", ".join(GRPC_SERVER_ERRORS)
            + " (rpc.response.status_code, or the old numeric rpc.grpc.status_code); error.type set when there is "
            "no status"
        )
        return _by_status(RPC_STATUS_KEYS, bad), why
    if metric.startswith("traces.span.metrics."):
        status = AttributeFilter("status.code", "eq", ("STATUS_CODE_ERROR",))
        why = (
            "errors per the span status (spanmetrics connector): status.code STATUS_CODE_ERROR; error.type set when "
            "there is no status"
        )
        return _by_status(("status.code",), [status]), why
    if metric.startswith("rpc.client."):
        bad = [AttributeFilter(key, "not_in", ("OK", "0")) for key in RPC_STATUS_KEYS]
        why = (
            "errors per the OTel RPC semantic conventions (client): any status but OK (rpc.response.status_code, "
            "or the old numeric rpc.grpc.status_code); error.type set when there is no status"
        )
        # not_in also passes an absent key: the first alternative needs the key set
        first = (AttributeFilter(RPC_STATUS_KEYS[0], "ne", ("",)), bad[0])
        second = (
            AttributeFilter(RPC_STATUS_KEYS[0], "eq", ("",)),
            AttributeFilter(RPC_STATUS_KEYS[1], "ne", ("",)),
            bad[1],
        )
        rest = _by_status(RPC_STATUS_KEYS, [])
        return (first, second, *rest), why
    why = "errors: calls with error.type set" + (
        "" if metric in conv.METRICS else " (no semantic convention defines errors for this metric)"
    )
    return ((AttributeFilter(conv.ERROR_TYPE, "ne", ("",)),),), why


# -- Prometheus names ------------------------------------------------------------------------------

_UNIT_SUFFIXES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds", "By": "bytes"}
_OTEL_KEYS = (
    "service.name",
    "service.namespace",
    "service.instance.id",
    "service.version",
    "deployment.environment",
    "http.request.method",
    "http.response.status_code",
    "http.route",
    "url.scheme",
    "server.address",
    "server.port",
    "network.protocol.name",
    "network.protocol.version",
    "rpc.system",
    "rpc.service",
    "rpc.method",
    "rpc.grpc.status_code",
    # the old HTTP conventions, which the official instrumentations still emit by default, and span metrics
    "http.method",
    "http.status_code",
    "http.target",
    "http.scheme",
    "http.flavor",
    "http.host",
    "http.server_name",
    "net.host.name",
    "net.host.port",
    "rpc.response.status_code",
    "rpc.method",
)
# The span metrics connector's dimensions: their labels (status_code, span_name) are common words in hand-written
# Prometheus metrics too, so they map back only on the connector's own metrics.
_SPAN_METRICS_KEYS = ("status.code", "span.name", "span.kind")
_SPAN_METRICS = ("traces.span.metrics.", "traces_span_metrics_")


def _sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_:]", "_", name)


def prometheus_name(metric: str) -> list[str]:
    """The Prometheus metric names ``metric`` may have been written under (exact for conv.METRICS)."""
    base = _sanitize(metric)
    spec = conv.METRICS.get(metric)
    if spec is None:
        return [base, base + "_total", base + "_seconds", base + "_milliseconds"]
    suffix = _UNIT_SUFFIXES.get(spec.unit)
    name = base if suffix is None or base.endswith("_" + suffix) else f"{base}_{suffix}"
    return [name + "_total" if spec.kind == "counter" else name]


def _known_keys() -> dict[str, str]:
    keys = [v for k, v in vars(conv).items() if k.isupper() and isinstance(v, str) and "." in v]
    return {_sanitize(key): key for key in (*keys, *_OTEL_KEYS)}


_LABEL_TO_KEY = _known_keys()


_SPAN_LABEL_TO_KEY = {_sanitize(key): key for key in _SPAN_METRICS_KEYS}


def attribute_key(label: str, metric: str = "") -> str:
    """Our attribute key for a Prometheus label name of ``metric`` (unknown labels keep their name)."""
    if metric.startswith(_SPAN_METRICS) and label in _SPAN_LABEL_TO_KEY:
        return _SPAN_LABEL_TO_KEY[label]
    return _LABEL_TO_KEY.get(label, label)
