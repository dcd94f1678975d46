"""What every server integration shares: request metrics, exclusions, the server span, per-route models.

Each middleware (ASGI, WSGI, gRPC) does only the framework-specific part: read the method/route/
status from its protocol, and call ``ServerTelemetry.begin`` / ``finish``. Metrics go through the
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
from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

import modelotel.config as config
import modelotel.conventions as conv

from .._otel_compat import composite_propagators
from ..conventions import (
    HTTP_ROUTE,
    HTTP_STATUS,
)
from ..metrics.buffers import ModelBuffers, attr_key, drain
from ..metrics.exemplars import offer as offer_exemplar
from ..metrics.recorder import Recorder
from ..metrics.selftelemetry import SELF
from ..privacy import scrub
from ..runtime import OFF, STATE, arm_sigterm, autostart
from ..tracing.span import SPAN_KEY, LightSpan, record_exception
from ..tracing.start import attach_context, context_with_span, detach_context, start_span

# A client that goes away before the response is complete (ASGI and WSGI alike): conv.CLIENT_DISCONNECT_EVENT.
DISCONNECT_ERROR = "ClientDisconnect"  # error.type when no exception says more

_CLAIM = threading.Lock()  # finish() may race between a stream's thread and a cancellation callback

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"})


def http_method(raw: str) -> str:
    """OTel's bounded method value: unknown methods become ``_OTHER`` (cardinality)."""
    upper = raw.upper() if raw else ""
    return upper if upper in KNOWN_METHODS else "_OTHER"


STATUS_ATTRS: dict[Any, dict[str, Any]] = {}
SPAN_NAMES: dict[tuple[Any, str], str] = {}


def http_status_attrs(status: int) -> dict[str, Any]:
    """``{http.response.status_code: status}``, one shared (read-only) dict per status code."""
    attrs = STATUS_ATTRS.get(status)
    if attrs is None:
        attrs = {HTTP_STATUS: status}
        if len(STATUS_ATTRS) < 1024:
            STATUS_ATTRS[status] = attrs
    return attrs


def span_name(method: Any, route: str) -> str:
    """``{method} {route}`` (``HTTP {route}`` for unknown methods), the HTTP server span's name; cached."""
    key = (method, route)
    try:
        name = SPAN_NAMES.get(key)
    except TypeError:  # an unhashable route from a misbehaving framework hook: not cached
        return f"{'HTTP' if method == '_OTHER' else method} {route}"
    if name is None:
        name = f"{'HTTP' if method == '_OTHER' else method} {route}"
        if len(SPAN_NAMES) < 4096:
            SPAN_NAMES[key] = name
    return name


_CLEAN_PATHS: dict[str, str] = {}  # URL paths scrub() left as they were (bounded)
_CLEAN_PATHS_MAX = 4096


def scrubbed_path(path: str) -> str:
    """``scrub(path)`` for ``url.path``; paths it found nothing in are remembered, so a repeated one is a lookup."""
    if type(path) is not str:
        return scrub(path)
    if path in _CLEAN_PATHS:
        return path
    out = scrub(path)
    if out == path and len(_CLEAN_PATHS) < _CLEAN_PATHS_MAX and len(path) <= 256:  # bounded memory: short ones
        _CLEAN_PATHS[path] = path
    return out


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
    """Buffered (telemetry, request attributes, ns) of one server metric, folded like ModelBuffers.

    The request path appends the request's attribute dict as it is; which of its attributes make the
    series (``ServerTelemetry.metric_key``) is worked out here, on the export thread.
    """

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.values: list[tuple[ServerTelemetry, dict[str, Any], int]] = []
        # exemplar candidates of requests with a span (metrics/exemplars.py), tagged (telemetry, request attributes)
        self.exemplars: list[tuple] = []

    def fold(self, rec: Recorder) -> None:
        # exemplars first: a request appends its value before its exemplar (see ModelBuffers.fold)
        exemplars = drain(self.exemplars) if self.exemplars else None
        values = drain(self.values)
        if values:
            self._fold_values(rec, values)
        if exemplars:  # their values are in this drain or an earlier one
            self._fold_exemplars(rec, exemplars)

    def _fold_values(self, rec: Recorder, values: list[tuple[ServerTelemetry, dict[str, Any], int]]) -> None:
        groups: dict[tuple, tuple[dict[str, Any], list[int]]] = {}
        for tel, request_attrs, ns in values:
            try:
                key, attrs = tel.metric_key(request_attrs)
            except Exception as exc:  # e.g. an unhashable route from a hostile app: that request only
                SELF.error("server_metric", exc)
                continue
            entry = groups.get(key)
            if entry is None:
                entry = groups[key] = (attrs, [])
            entry[1].append(ns)
        for key, (attrs, ns) in groups.items():
            rec.observe(self.metric, key, attrs, np.asarray(ns, dtype=np.float64) * 1e-9)

    def _fold_exemplars(self, rec: Recorder, exemplars: list[tuple]) -> None:
        by_series: dict[tuple, tuple[dict[str, Any], list[tuple]]] = {}
        for candidate in exemplars:
            tel, request_attrs = candidate[0]
            try:
                key, attrs = tel.metric_key(request_attrs)
            except Exception:  # its value was dropped (and counted) above: no exemplar either
                continue
            entry = by_series.get(key)
            if entry is None:
                entry = by_series[key] = (attrs, [])
            entry[1].append(candidate)
        for key, (attrs, candidates) in by_series.items():
            rec.offer(self.metric, key, attrs, candidates)

    def clear(self) -> None:
        self.values.clear()
        self.exemplars.clear()


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

    def record(self, route: str | None, dt: int, error_type: str | None, span: Any = None) -> None:
        buffers = self._by_route.get(route) if route is not None else None
        if buffers is None:
            return
        if error_type is None:
            buffers.durations.append(dt)
            buffers.labels.append(None)
        else:
            buffers.errors.append((error_type, dt))
        if span is not None:
            offer_exemplar(buffers.exemplars, span, dt, error_type)


class Request:
    """One request in flight: start time, span and context token, and the attributes gathered.

    ``attrs`` is also the span's attribute dict when the span is modelotel's LightSpan (one dict,
    written once); ``finish`` reads the metric's attributes from it.
    """

    __slots__ = ("t0", "span", "context", "token", "attrs", "route", "done")

    def __init__(self, attrs: dict[str, Any]) -> None:
        self.t0 = perf_counter_ns()
        self.span: Any = None
        self.context: Context | None = None  # what start() made current (None: nothing)
        self.token: Any = None
        self.attrs = attrs
        self.route: str | None = None
        self.done = False


# -- W3C context from the request -------------------------------------------------------------------

_EMPTY = Context()
_TRACEPARENT = re.compile(r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*$")
_MAX_TRACESTATE = 512  # W3C: combined tracestate longer than this is ignored (as the SDK does)
_W3C: list[Any] = [None, 0]  # [the global textmap last seen, its W3C shape: 0 other, 1 tracecontext, 2 + baggage]


def _w3c_shape(textmap: Any) -> int:
    """1: exactly the W3C tracecontext propagator; 2: tracecontext + baggage (the default); 0: anything else."""
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parts = composite_propagators(textmap) if type(textmap) is CompositePropagator else [textmap]
    kinds = [type(p) for p in parts or ()]
    if kinds == [TraceContextTextMapPropagator]:
        return 1
    if kinds in (
        [TraceContextTextMapPropagator, W3CBaggagePropagator],
        [W3CBaggagePropagator, TraceContextTextMapPropagator],
    ):
        return 2
    return 0


def extract_context(carrier: Any, getter: Any) -> Context:
    """``propagate.extract(carrier, getter=getter)``, parsed directly when the propagator is W3C's.

    With the default propagators (tracecontext, baggage) and no ``baggage`` header, the
    ``traceparent``/``tracestate`` headers are read with the getter's ``w3c`` shortcut and parsed
    exactly as ``TraceContextTextMapPropagator`` does; anything else goes through the global propagator.
    """
    textmap = propagate.get_global_textmap()
    cached = _W3C
    if cached[0] is not textmap:
        cached[1] = _w3c_shape(textmap)
        cached[0] = textmap
    w3c = getattr(getter, "w3c", None)
    if not cached[1] or w3c is None:
        return propagate.extract(carrier, getter=getter) if getter is not None else propagate.extract(carrier)
    traceparent, tracestate, baggage = w3c(carrier)
    if baggage and cached[1] == 2:
        return textmap.extract(carrier, getter=getter)
    if traceparent is None:
        return _EMPTY
    match = _TRACEPARENT.search(traceparent)
    if match is None:
        return _EMPTY
    version, trace_id, span_id, flags, rest = match.groups()
    if trace_id == "0" * 32 or span_id == "0" * 16 or version == "ff" or (version == "00" and rest):
        return _EMPTY
    state = None
    if tracestate is not None and sum(map(len, tracestate)) + len(tracestate) - 1 <= _MAX_TRACESTATE:
        state = TraceState.from_header(tracestate)
    parent = SpanContext(
        int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16)), trace_state=state
    )
    return context_with_span(NonRecordingSpan(parent), None)


_ERROR = Status(StatusCode.ERROR)


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
        self.has_models = bool(self.models)
        self.traces = config.trace_mode_of(traces) if traces is not None else None
        # Which gathered attributes go on the metric (error.type always can).
        keys = tuple(metric_attributes)
        self.metric_attributes = keys if conv.ERROR_TYPE in keys else (*keys, conv.ERROR_TYPE)
        self._source = duration_source(metric)
        # (attribute values in metric_attributes order) -> (series key, metric attributes)
        self._keys: dict[tuple, tuple[tuple, dict[str, Any]]] = {}
        arm_sigterm()  # set up in the main thread, usually; the first request may come on another

    def metric_key(self, attrs: Mapping[str, Any]) -> tuple[tuple, dict[str, Any]]:
        """(series key, metric attributes) of a finished request's attributes; called on the export thread."""
        values = tuple(map(attrs.get, self.metric_attributes))
        cached = self._keys.get(values)
        if cached is None:
            metric_attrs = {k: v for k, v in zip(self.metric_attributes, values, strict=True) if v is not None}
            cached = (attr_key(metric_attrs), metric_attrs)
            if len(self._keys) < 10_000:
                self._keys[values] = cached
        return cached

    # -- lifecycle ---------------------------------------------------------------------------
    def begin(self, req: Request, span_name: str, carrier: Any, getter: Any, kind: SpanKind = SpanKind.SERVER) -> None:
        """Begin ``req`` (a Request or subclass, whose attribute dict becomes its span's): extract the
        caller's W3C context, start the server span, make it current."""
        try:
            if not STATE.started:
                autostart()
            mode = self.traces or STATE.trace_mode
            if mode != OFF and STATE.started:
                parent = extract_context(carrier, getter)
                tracer = STATE.tracer
                if mode == "span" and tracer is not None:
                    span = req.span = start_span(tracer, span_name, parent, kind, req.attrs)
                    parent = Context({SPAN_KEY: span}) if not parent else context_with_span(span, parent)
                # enrich/no tracer: still join the caller's trace for anything started below
                req.context = parent
                req.token = attach_context(parent)
        except Exception as exc:
            SELF.error("server_span_start", exc)

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
                if type(span) is LightSpan:  # it shares req.attrs; renamed before it ends
                    if span_name:
                        span.name = span_name
                    return
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
                detach_context(token)
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
        attrs = req.attrs
        try:
            if status_attrs:
                attrs.update(status_attrs)
            if error_type is not None:
                attrs[conv.ERROR_TYPE] = error_type
            # The dict is final now (a LightSpan refuses attributes once ended): the export thread reads it.
            self._source.values.append((self, attrs, dt))
            if req.span is not None:  # an exemplar (metrics/exemplars.py) of the request's own span
                offer_exemplar(self._source.exemplars, req.span, dt, (self, attrs))
            if self.has_models:
                self.models.record(req.route, dt, error_type, req.span)
        except Exception as exc:
            SELF.error("server_metric", exc)
        token = req.token
        if detach and token is not None:  # detach=False: req.token stays for its owner's detach(req)
            req.token = None
            try:
                detach_context(token)
            except Exception as exc:
                SELF.error("server_context_detach", exc)
        span = req.span
        if span is not None:
            try:
                if type(span) is not LightSpan:  # a LightSpan shares req.attrs, already updated
                    if status_attrs:
                        span.set_attributes(status_attrs)
                    if error_type is not None:
                        span.set_attribute(conv.ERROR_TYPE, error_type)
                if exception is not None:
                    record_exception(span, exception)
                elif span_error:
                    span.set_status(_ERROR)
                span.end()
            except Exception as exc:
                SELF.error("server_span_end", exc)
