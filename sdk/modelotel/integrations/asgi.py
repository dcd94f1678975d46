"""Pure ASGI middleware: one server span and one ``http.server.request.duration`` value per HTTP request.

Works with any ASGI 3 application; FastAPI/Starlette route templates are read from the scope
(``modelotel.integrations.fastapi.instrument_app`` adds it to an app). Per request it does the
minimum: an exclusion check, ``ServerTelemetry.begin`` (W3C context extraction from the raw ASGI
headers, span start, context attach), a status capture in ``send`` and ``ServerTelemetry.finish``.

The request ends when the response is complete (the last ``http.response.body`` chunk went out, so
a ``StreamingResponse`` keeps its span open until its last chunk), when the application raises
(status 500 if nothing was sent; the same exception propagates), or when the client disconnects
(seen through ``receive`` returning ``http.disconnect`` or ``send`` raising). Websocket scopes
pass through untouched, lifespan ones too except that buffered telemetry is exported when the
shutdown completes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.propagators.textmap import Getter

import modelotel.conventions as conv

from ..conventions import (
    CLIENT_DISCONNECT_EVENT,
    HTTP_METHOD,
    HTTP_METHOD_ORIGINAL,
    HTTP_ROUTE,
    HTTP_SERVER_DURATION,
    HTTP_STATUS,
    PROTOCOL_VERSION,
    URL_PATH,
    URL_SCHEME,
)
from ..metrics.selftelemetry import SELF
from ..privacy import scrub_capped
from ..runtime import STATE, autostart, force_flush
from ..tracing.span import LightSpan
from .server import (
    DISCONNECT_ERROR,
    KNOWN_METHODS,
    SPAN_NAMES,
    STATUS_ATTRS,
    Request,
    ServerTelemetry,
    http_method,
    http_status_attrs,
    scrubbed_path,
    span_name,
)

__all__ = ["CLIENT_DISCONNECT_EVENT", "DISCONNECT_ERROR", "ModelotelMiddleware"]

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]

# Metric attributes (the span additionally gets url.path, scrubbed, and the route).
_METRIC_ATTRIBUTES = (HTTP_METHOD, HTTP_ROUTE, HTTP_STATUS, URL_SCHEME, PROTOCOL_VERSION)

# A client that went away before the response was complete: a span event, plus error.type (the
# exception class when one surfaced, else this value) because the response was cut short.

_FASTAPI_TELEMETRY_KEY = "fastapi.telemetry"
_SHUTDOWN_FLUSH_TIMEOUT_S = 10.0


_HEADER_NAMES: dict[str, bytes] = {}  # propagator key -> ASGI header name
_W3C_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})


class _HeaderGetter(Getter[Any]):
    """W3C propagation straight from ``scope["headers"]``: a list of (lowercase name, value) byte pairs."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        name = _HEADER_NAMES.get(key)
        if name is None:
            name = key.lower().encode("latin-1")
            if len(_HEADER_NAMES) < 64:
                _HEADER_NAMES[key] = name
        values = [v.decode("latin-1") for k, v in carrier if k == name]
        return values or None

    def keys(self, carrier: Any) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]

    @staticmethod
    def w3c(carrier: Any) -> tuple[str | None, list[str] | None, bool]:
        """(first traceparent, tracestate values, has baggage) in one pass over the headers."""
        traceparent = tracestate = None
        baggage = False
        for k, v in carrier:
            if k in _W3C_HEADERS:
                if k == b"traceparent":
                    if traceparent is None:
                        traceparent = v.decode("latin-1")
                elif k == b"tracestate":
                    tracestate = [*(tracestate or ()), v.decode("latin-1")]
                else:
                    baggage = True
        return traceparent, tracestate, baggage


_GETTER = _HeaderGetter()


def _disconnect_errors() -> tuple[type[BaseException], ...]:
    """What ``send`` raises when the peer is gone: OSError, and Starlette's/anyio's names for it."""
    errors: list[type[BaseException]] = [OSError]
    try:
        from starlette.requests import ClientDisconnect

        errors.append(ClientDisconnect)
    except ImportError:
        pass
    try:
        import anyio

        errors += [anyio.BrokenResourceError, anyio.ClosedResourceError]
    except ImportError:
        pass
    return tuple(errors)


_DISCONNECT_ERRORS = _disconnect_errors()


def _flush_at_shutdown(send: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Export what is buffered when the app's lifespan shutdown completes, before the server is told.

    uvicorn (each worker of ``--workers N`` too) stops on SIGTERM by re-raising it with the default
    handler after its graceful shutdown, so atexit never runs and the last interval would be lost.
    """

    async def lifespan_send(message: Any) -> None:
        if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            try:
                if STATE.started:
                    force_flush(_SHUTDOWN_FLUSH_TIMEOUT_S)
            except Exception as exc:
                SELF.error("asgi_shutdown_flush", exc)
        await send(message)

    return lifespan_send


def _route_path(route: Any) -> str | None:
    """The template of a Starlette/FastAPI route object (``path_format`` drops ``:int`` convertors)."""
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else None


def _match_routes(routes: Iterable[Any], scope: Scope, prefix: str, depth: int) -> str | None:
    """The full template of the route a Starlette router would pick, following Mounts."""
    from starlette.routing import Match  # only reached for Starlette apps

    partial = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return _template_of(route, child, scope, prefix, depth)
        if match is Match.PARTIAL and partial is None:
            partial = (route, child)
    if partial is not None:  # e.g. 405 Method Not Allowed: the route exists
        return _template_of(partial[0], partial[1], scope, prefix, depth)
    return None


def _template_of(route: Any, child: Scope, scope: Scope, prefix: str, depth: int) -> str | None:
    subroutes = getattr(route, "routes", None)
    if subroutes and depth < 8:  # a Mount (or Host) of a router: continue inside with the child scope
        mount_path = getattr(route, "path", "") or ""
        inner = _match_routes(subroutes, {**scope, **child}, prefix + mount_path, depth + 1)
        if inner is not None:
            return inner
    path = _route_path(route)
    return prefix + path if path is not None else None


class ModelotelMiddleware:
    """Pure ASGI middleware recording the HTTP server span and duration metric of each request.

    ``excluded_urls``: a regex or a list of regexes searched in the path; matching requests get
    no telemetry at all (``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`` /
    ``OTEL_PYTHON_EXCLUDED_URLS`` add to them). ``models``: ``{route template: name or (name,
    version)}`` records each request of that route as one ``ml.inference.duration``.
    ``deployment_role`` goes with those models. ``traces``: "span", "enrich" or "off" for this app
    (default: the process setting). ``route_resolver(scope) -> template | None`` names the route
    when the scope carries no Starlette/FastAPI route object.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        excluded_urls: Iterable[str] | str | None = None,
        models: Mapping[str, Any] | None = None,
        deployment_role: str | None = None,
        traces: bool | str | None = None,
        route_resolver: Callable[[Scope], str | None] | None = None,
    ) -> None:
        self.app = app
        self.telemetry = ServerTelemetry(
            metric=HTTP_SERVER_DURATION,
            framework="fastapi",
            excluded_urls=excluded_urls,
            models=models,
            deployment_role=deployment_role,
            traces=traces,
            metric_attributes=_METRIC_ATTRIBUTES,
        )
        exclude = self.telemetry.exclude
        self._exclude = exclude if exclude.patterns else None  # skip the call when there is nothing to match
        self.route_resolver = route_resolver

    async def __call__(self, scope: Scope, receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                send = _flush_at_shutdown(send)
            await self.app(scope, receive, send)
            return
        # FastAPI's native telemetry skips scopes carrying this key: mounted FastAPI sub-apps then
        # start no second SERVER span (instrument_app turns it off on the instrumented app itself).
        scope.setdefault(_FASTAPI_TELEMETRY_KEY, None)
        if self._exclude is not None and self._exclude(scope["path"]):
            await self.app(scope, receive, send)
            return

        req = self._start(scope)
        # Captured now: routers and sub-apps rewrite scope["app"] and scope["root_path"] on the way in.
        app0 = scope.get("app")
        root0 = scope.get("root_path", "")
        status = 0
        trailers = False
        disconnected = False
        disconnect_exc: BaseException | None = None

        async def receive_wrapper() -> Any:
            nonlocal disconnected
            message = await receive()
            if not req.done and message.get("type") == "http.disconnect":
                disconnected = True
            return message

        async def send_wrapper(message: Any) -> None:
            nonlocal status, trailers, disconnected, disconnect_exc
            mtype = message["type"]
            if mtype == "http.response.start":
                status = message.get("status", 0)
                trailers = message.get("trailers", False)
                self._set_route(req, scope, app0, root0)
            try:
                await send(message)
            except _DISCONNECT_ERRORS as exc:
                if not req.done:
                    disconnected, disconnect_exc = True, exc
                raise
            if req.done:
                return
            if mtype == "http.response.body":
                if not message.get("more_body", False) and not trailers:
                    self._end(req, status, scope, app0, root0)
            elif (mtype == "http.response.trailers" and not message.get("more_trailers", False)) or (
                mtype == "http.response.pathsend"  # the zero-copy file extension: one final message
            ):
                self._end(req, status, scope, app0, root0)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except BaseException as exc:
            if not req.done:
                if disconnected:
                    self._end(req, status, scope, app0, root0, disconnect=disconnect_exc or exc)
                else:
                    self._end(req, status or 500, scope, app0, root0, exc=exc)
            raise
        else:
            if not req.done:  # the app returned without completing the response
                if disconnected:
                    self._end(req, status, scope, app0, root0, disconnect=disconnect_exc)
                else:  # the server answers 500 to an app that returns without responding
                    self._end(req, status or 500, scope, app0, root0)
        finally:
            self.telemetry.detach(req)  # in the task that attached it (send may run in a child task)

    # -- bookkeeping (never raises) -----------------------------------------------------------
    def _start(self, scope: Scope) -> Request:
        tel = self.telemetry
        raw_method = scope.get("method", "")
        method = raw_method if raw_method in KNOWN_METHODS else http_method(raw_method)
        attrs = {
            HTTP_METHOD: method,
            URL_SCHEME: scope.get("scheme", "http"),
            PROTOCOL_VERSION: scope.get("http_version", "1.1"),
        }
        try:
            if not STATE.started:
                autostart()
            if (tel.traces or STATE.trace_mode) == "span":  # span-only attributes
                attrs[URL_PATH] = scrubbed_path(scope.get("path", ""))
                if method == "_OTHER":
                    attrs[HTTP_METHOD_ORIGINAL] = scrub_capped(raw_method, 64)  # the client's text: scrubbed, capped
        except Exception as exc:
            SELF.error("asgi_start", exc)
        req = Request(attrs)
        tel.begin(req, "HTTP" if method == "_OTHER" else method, scope.get("headers") or (), _GETTER)
        return req

    def _route(self, scope: Scope, app0: Any, root0: str) -> str | None:
        """The route template: the scope's route object, else ``route_resolver``, else Starlette matching."""
        route = scope.get("route")
        # A route reached through a Mount has a template relative to it: match from the top instead.
        if route is not None and scope.get("root_path", "") == root0:
            template = _route_path(route)
            if template is not None:
                return template
        if self.route_resolver is not None:
            template = self.route_resolver(scope)
            return str(template) if template is not None else None
        routes = getattr(app0, "routes", None) or getattr(self.app, "routes", None)
        if not routes:
            return None
        probe = {**scope, "path": scope.get("path", ""), "root_path": root0, "path_params": {}}
        return _match_routes(routes, probe, "", 0)

    def _set_route(self, req: Request, scope: Scope, app0: Any, root0: str) -> None:
        if req.route is not None:
            return
        try:
            # The common case inline: a FastAPI/Starlette route object not reached through a Mount.
            route = scope.get("route")
            template = getattr(route, "path_format", None) if route is not None else None
            if type(template) is not str or scope.get("root_path", "") != root0:
                template = self._route(scope, app0, root0)
            if template is not None:
                method = req.attrs.get(HTTP_METHOD)
                span = req.span
                if span is None or type(span) is LightSpan:
                    req.route = req.attrs[HTTP_ROUTE] = template
                    if span is not None:
                        span.name = SPAN_NAMES.get((method, template)) or span_name(method, template)
                else:
                    self.telemetry.set_route(req, template, span_name(method, template))
        except Exception as exc:
            SELF.error("asgi_route", exc)

    def _end(
        self,
        req: Request,
        status: int,
        scope: Scope,
        app0: Any,
        root0: str,
        *,
        exc: BaseException | None = None,
        disconnect: BaseException | None | bool = False,
    ) -> None:
        """Finish the request; the context stays attached until ``__call__`` detaches it in its own task."""
        if req.route is None:
            self._set_route(req, scope, app0, root0)
        error_type: str | None = None
        span_error = False
        status_attrs: dict[str, Any] | None = None
        try:
            if disconnect is not False:
                error_type = type(disconnect).__name__ if disconnect is not None else DISCONNECT_ERROR
                span_error = True
                if req.span is not None:
                    req.span.add_event(CLIENT_DISCONNECT_EVENT, {conv.ERROR_TYPE: error_type})
            elif exc is not None:
                error_type = type(exc).__name__
            elif status >= 500:
                error_type = str(status)
                span_error = True
            if status:
                status_attrs = STATUS_ATTRS.get(status) or http_status_attrs(status)
        except Exception as inner:  # e.g. an app that sent a non-integer status
            SELF.error("asgi_finish", inner)
        # finish must not detach: the last send may run in a child task (Starlette's streaming), and
        # a context token can only be reset where it was set; __call__ detaches it in its own task.
        self.telemetry.finish(
            req,
            status_attrs=status_attrs,
            error_type=error_type,
            exception=exc,
            span_error=span_error,
            detach=False,
        )
