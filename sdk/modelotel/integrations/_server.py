"""What every server integration shares: request metrics, exclusions, the server span, per-route models.

Each middleware (ASGI, WSGI, gRPC) does only the framework-specific part: read the method/route/
status from its protocol, and call ``ServerTelemetry.start`` / ``finish``. Metrics go through the
same lock-free buffers as ``@instrument_model`` (one append per request), spans through the
TracerProvider that ``modelotel.configure`` chose (the application's if it has one).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from time import perf_counter_ns
from typing import Any

import numpy as np
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import config
from .. import conventions as conv
from ..recorder import SELF, ModelBuffers, Recorder, attr_key, drain
from ..runtime import OFF, STATE, autostart
from ..tracing import record_exception, start_span

HTTP_SERVER_DURATION = conv.HTTP_SERVER_DURATION
RPC_SERVER_DURATION = conv.RPC_SERVER_DURATION

# Stable HTTP semantic-convention attributes (semconv 1.26+), RPC ones as of semconv 1.37+.
HTTP_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_STATUS = "http.response.status_code"
URL_SCHEME = "url.scheme"
URL_PATH = "url.path"
PROTOCOL_VERSION = "network.protocol.version"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
CLIENT_ADDRESS = "client.address"
USER_AGENT = "user_agent.original"
RPC_SYSTEM = "rpc.system.name"
RPC_METHOD = "rpc.method"
RPC_STATUS = "rpc.response.status_code"

# A client that goes away before the response is complete (ASGI and WSGI alike).
CLIENT_DISCONNECT_EVENT = "http.client_disconnect"  # span event
DISCONNECT_ERROR = "ClientDisconnect"  # error.type when no exception says more

_CLAIM = threading.Lock()  # finish() may race between a stream's thread and a cancellation callback

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"})


def http_method(raw: str) -> str:
    """OTel's bounded method value: unknown methods become ``_OTHER`` (cardinality)."""
    upper = raw.upper() if raw else ""
    return upper if upper in _KNOWN_METHODS else "_OTHER"


class ExcludeList:
    """Paths (or gRPC full method names) not to instrument: user regexes plus OTEL_PYTHON_*_EXCLUDED_URLS."""

    def __init__(self, patterns: Iterable[str] | str | None = None, framework: str | None = None) -> None:
        if isinstance(patterns, str):
            patterns = [patterns]
        merged = [*(patterns or ()), *config.excluded_urls(framework=framework)]
        try:
            self._regex = re.compile("|".join(f"(?:{p})" for p in merged)) if merged else None
        except re.error as exc:
            raise config.ConfigError(f"excluded_urls: invalid regex ({exc})") from None
        self.patterns = merged

    def __call__(self, path: str) -> bool:
        return self._regex is not None and self._regex.search(path) is not None


class _DurationSource:
    """Buffered (attribute-key, attributes, ns) of one server metric, folded like ModelBuffers."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.values: list[tuple[tuple, dict[str, Any], int]] = []

    def fold(self, rec: Recorder) -> None:
        values = drain(self.values)
        if not values:
            return
        groups: dict[tuple, tuple[dict[str, Any], list[int]]] = {}
        for key, attrs, ns in values:
            entry = groups.get(key)
            if entry is None:
                entry = groups[key] = (attrs, [])
            entry[1].append(ns)
        for key, (attrs, ns) in groups.items():
            rec.observe(self.metric, key, attrs, np.asarray(ns, dtype=np.float64) * 1e-9)

    def clear(self) -> None:
        self.values.clear()


_SOURCES: dict[str, _DurationSource] = {}


def duration_source(metric: str) -> _DurationSource:
    source = _SOURCES.get(metric)
    if source is None:
        source = _SOURCES[metric] = _DurationSource(metric)
        STATE.recorder.register(source)
    return source


class RouteModels:
    """Per-route model names for servers that do not use @instrument_model.

    ``{"/predict": "fraud"}`` or ``{"/predict": ("fraud", "v3")}``: each matching request is also
    recorded as one ``ml.inference.duration`` of that model (with ``error.type`` on failure).
    """

    def __init__(self, models: Mapping[str, Any] | None, role: str | None = None) -> None:
        self._by_route: dict[str, ModelBuffers] = {}
        for route, spec in (models or {}).items():
            name, version = (spec, None) if isinstance(spec, str) else tuple(spec)
            attrs = {
                conv.MODEL_NAME: str(name),
                conv.MODEL_VERSION: str(version) if version is not None else conv.UNKNOWN_VERSION,
                conv.DEPLOYMENT_ROLE: config.check_role(role) if role else config.default_role(),
            }
            buffers = ModelBuffers(attrs)
            STATE.recorder.register(buffers)
            self._by_route[route] = buffers

    def __bool__(self) -> bool:
        return bool(self._by_route)

    def record(self, route: str | None, dt: int, error_type: str | None) -> None:
        buffers = self._by_route.get(route) if route is not None else None
        if buffers is None:
            return
        if error_type is None:
            buffers.durations.append(dt)
            buffers.labels.append(None)
        else:
            buffers.errors.append((error_type, dt))


class Request:
    """One request in flight: start time, span and context token, and the attributes gathered."""

    __slots__ = ("t0", "span", "token", "attrs", "route", "done")

    def __init__(self) -> None:
        self.t0 = perf_counter_ns()
        self.span: Any = None
        self.token: Any = None
        self.attrs: dict[str, Any] = {}
        self.route: str | None = None
        self.done = False


class ServerTelemetry:
    """The shared engine of one middleware instance."""

    def __init__(
        self,
        *,
        metric: str,
        framework: str,
        excluded_urls: Iterable[str] | str | None = None,
        models: Mapping[str, Any] | None = None,
        deployment_role: str | None = None,
        traces: bool | str | None = None,
        metric_attributes: tuple[str, ...] = (),
        route_attribute: str | None = HTTP_ROUTE,
    ) -> None:
        self.metric = metric
        self.route_attribute = route_attribute  # None: the route only selects a per-route model
        self.exclude = ExcludeList(excluded_urls, framework)
        self.models = RouteModels(models, deployment_role)
        self.traces = config.trace_mode_of(traces) if traces is not None else None
        self.metric_attributes = metric_attributes  # which gathered attributes go on the metric
        self._source = duration_source(metric)
        self._keys: dict[tuple, tuple[tuple, dict[str, Any]]] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    def start(
        self,
        span_name: str,
        carrier: Any,
        getter: Any = None,
        attributes: Mapping[str, Any] | None = None,
        kind: SpanKind = SpanKind.SERVER,
    ) -> Request:
        """Begin a request: extract the caller's W3C context, start the server span, make it current."""
        req = Request()
        try:
            if not STATE.started:
                autostart()
            if attributes:
                req.attrs.update(attributes)
            mode = self.traces or STATE.trace_mode
            if STATE.started and mode != OFF:
                parent = propagate.extract(carrier, getter=getter) if getter is not None else propagate.extract(carrier)
                tracer = STATE.tracer
                if mode == "span" and tracer is not None:
                    req.span = start_span(tracer, span_name, parent, kind, req.attrs)
                    req.token = otel_context.attach(trace.set_span_in_context(req.span, parent))
                else:  # enrich/no tracer: still join the caller's trace for anything started below
                    req.token = otel_context.attach(parent)
        except Exception as exc:
            SELF.error("server_span_start", exc)
        return req

    def set_route(self, req: Request, route: str | None, span_name: str | None = None) -> None:
        if route is None:
            return
        req.route = route
        if self.route_attribute is None:
            return
        req.attrs[self.route_attribute] = route
        span = req.span
        if span is not None:
            try:
                span.set_attribute(self.route_attribute, route)
                if span_name:
                    span.update_name(span_name)
            except Exception as exc:
                SELF.error("server_span_route", exc)

    def detach(self, req: Request) -> None:
        """Stop making the span current (the request's task/thread is done with it) but keep it open."""
        token, req.token = req.token, None
        if token is not None:
            try:
                otel_context.detach(token)
            except Exception as exc:
                SELF.error("server_context_detach", exc)

    def finish(
        self,
        req: Request,
        *,
        status_attrs: Mapping[str, Any] | None = None,
        error_type: str | None = None,
        exception: BaseException | None = None,
        span_error: bool = False,
        detach: bool = True,
    ) -> None:
        """End the request once: duration metric, per-route model metric, span status and end.

        Safe to call from several threads (a stream and a cancellation callback): one wins.
        ``detach=False`` when ending from a thread other than the one the context was attached in.
        """
        with _CLAIM:
            if req.done:
                return
            req.done = True
        dt = perf_counter_ns() - req.t0
        try:
            if status_attrs:
                req.attrs.update(status_attrs)
            if error_type is not None:
                req.attrs[conv.ERROR_TYPE] = error_type
            metric_attrs = {k: req.attrs[k] for k in self.metric_attributes if k in req.attrs}
            if error_type is not None:
                metric_attrs[conv.ERROR_TYPE] = error_type
            key = tuple(sorted(metric_attrs.items()))
            cached = self._keys.get(key)
            if cached is None:
                if len(self._keys) < 10_000:
                    self._keys[key] = cached = (attr_key(metric_attrs), metric_attrs)
                else:
                    cached = (key, metric_attrs)
            self._source.values.append((cached[0], cached[1], dt))
            if self.models:
                self.models.record(req.route, dt, error_type)
        except Exception as exc:
            SELF.error("server_metric", exc)
        if detach:
            self.detach(req)  # detach=False: req.token stays for its owner's detach(req)
        span = req.span
        if span is not None:
            try:
                if status_attrs:
                    span.set_attributes(status_attrs)
                if exception is not None:
                    record_exception(span, exception)
                elif span_error:
                    span.set_status(Status(StatusCode.ERROR))
                if error_type is not None:
                    span.set_attribute(conv.ERROR_TYPE, error_type)
                span.end()
            except Exception as exc:
                SELF.error("server_span_end", exc)
