"""WSGI middleware: one server span and one ``http.server.request.duration`` value per request.

The request ends when the server closes the response iterable (PEP 3333 ``close()``), not when the
application returns: streaming bodies keep the span open until their last chunk, and a client that
goes away mid-stream (the server stops iterating and calls ``close()``) ends it with ``error.type =
ClientDisconnect``, an ``http.client_disconnect`` span event and ERROR status, as the ASGI
middleware does. The request's context is current while the application runs and while each chunk
is produced (generators run later, inside the server's loop) and detached in between, always within
one call on the server's thread. An exception from the application is recorded (status 500) and the
very same object propagates.

Routing is the framework's business: a framework hook puts the route template in
``environ[route_key]`` (and may call ``set_route`` as soon as it is known, see ``flask.py``); an
exception the framework turned into a 5xx response can be handed over in ``environ[EXCEPTION_KEY]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from time import perf_counter_ns
from typing import Any

from opentelemetry.propagators.textmap import Getter

import modelotel.conventions as conv

from ..conventions import (
    CLIENT_DISCONNECT_EVENT,
    HTTP_METHOD,
    HTTP_ROUTE,
    HTTP_SERVER_DURATION,
    HTTP_STATUS,
    PROTOCOL_VERSION,
    URL_PATH,
    URL_SCHEME,
)
from ..metrics.selftelemetry import SELF
from ..runtime import STATE, autostart
from ..tracing.span import LightSpan
from ..tracing.start import attach_context, detach_context
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

__all__ = [
    "CLIENT_DISCONNECT_EVENT",
    "DISCONNECT_ERROR",
    "EXCEPTION_KEY",
    "REQUEST_KEY",
    "ROUTE_KEY",
    "ModelotelWSGIMiddleware",
]

ROUTE_KEY = "modelotel.route"  # default environ key of the route template
REQUEST_KEY = "modelotel.request"  # the in-flight Request, for framework hooks that learn the route early
EXCEPTION_KEY = "modelotel.exception"  # an exception the framework handled into a 5xx response
# CLIENT_DISCONNECT_EVENT / DISCONNECT_ERROR: the server closed the body before its end (WSGI hides
# why; it is nearly always the client leaving).

_METRIC_ATTRIBUTES = (HTTP_METHOD, HTTP_ROUTE, HTTP_STATUS, URL_SCHEME, PROTOCOL_VERSION)

WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


class _EnvironGetter(Getter[Mapping[str, Any]]):
    """W3C headers from a WSGI environ: ``traceparent`` is ``HTTP_TRACEPARENT``."""

    _names: dict[str, str] = {}

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        name = self._names.get(key)
        if name is None:
            name = "HTTP_" + key.upper().replace("-", "_")
            if len(self._names) < 64:
                self._names[key] = name
        value = carrier.get(name)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]

    @staticmethod
    def w3c(carrier: Mapping[str, Any]) -> tuple[str | None, list[str] | None, bool]:
        """(traceparent, tracestate values, has baggage): three environ lookups."""
        traceparent = carrier.get("HTTP_TRACEPARENT")
        tracestate = carrier.get("HTTP_TRACESTATE")
        return (
            traceparent if isinstance(traceparent, str) else None,
            [tracestate] if isinstance(tracestate, str) else None,
            "HTTP_BAGGAGE" in carrier,
        )


_GETTER = _EnvironGetter()

_PROTOCOLS = {"HTTP/1.1": "1.1", "HTTP/1.0": "1.0", "HTTP/2": "2", "HTTP/2.0": "2", "HTTP/3": "3"}
_STATUS_CODES: dict[str, int] = {}


def _protocol_version(server_protocol: str) -> str | None:
    version = _PROTOCOLS.get(server_protocol)
    if version is None and server_protocol.startswith("HTTP/"):
        version = server_protocol[5:] or None
    return version


def _status_code(status: str) -> int:
    """``"404 NOT FOUND"`` -> 404, cached (servers and frameworks reuse a handful of status lines)."""
    code = _STATUS_CODES.get(status)
    if code is None:
        code = int(status[:3])
        if len(_STATUS_CODES) < 512:
            _STATUS_CODES[status] = code
    return code


def _utf8_path(path: str) -> str:
    return path.encode("latin-1", "replace").decode("utf-8", "replace")


_NO_ENVIRON: dict[str, Any] = {}  # a finished response's environ (read-only: nothing is written after the end)


class _Response(Request):
    """One request and its response: captures the status, keeps the context per chunk, ends on ``close()``."""

    __slots__ = ("_mw", "environ", "_server_start_response", "status", "body", "produced")

    def __init__(self, mw: ModelotelWSGIMiddleware, environ: dict, start_response: Any, attrs: dict[str, Any]):
        # Request's fields too (one call less than Request.__init__ per request; keep in step with it).
        self.t0 = perf_counter_ns()
        self.span: Any = None
        self.context: Any = None
        self.token: Any = None
        self.attrs = attrs
        self.route: str | None = None
        self.done = False
        self._mw = mw
        self.environ = environ
        self._server_start_response = start_response
        self.status: str | None = None
        self.body: Any = None
        self.produced = 0  # 1: a chunk went to the server (its headers may be out); 2: the body is exhausted

    def start_response(self, status: str, headers: list, exc_info: Any = None) -> Any:
        self.status = status
        route_of = self._mw.route_of
        if route_of is not None and self.route is None:  # the framework still knows its route here
            try:
                route = route_of(self.environ)
                if route is not None:
                    span = self.span
                    if span is None or type(span) is LightSpan:  # the common cases, inline
                        self.route = self.attrs[HTTP_ROUTE] = route
                        if span is not None:
                            method = self.attrs[HTTP_METHOD]
                            span.name = SPAN_NAMES.get((method, route)) or span_name(method, route)
                    else:
                        self._mw._set_route(self, route)
            except Exception as exc:
                SELF.error("wsgi_route", exc)
        if exc_info is None:
            return self._server_start_response(status, headers)
        return self._server_start_response(status, headers, exc_info)

    def __iter__(self) -> Iterator[bytes]:
        # A generator: the server's next() resumes it, iter(body) runs on the first one (as the server
        # would run it), and the request's context is current only while application code runs. It
        # holds no context between chunks, so a server that stops early need not close it: close() below
        # closes the body and ends the request.
        ctx = self.context
        try:
            if ctx is None:
                for chunk in self.body:
                    self.produced = 1
                    yield chunk
            else:
                it = None
                while True:
                    token = attach_context(ctx)
                    try:
                        if it is None:
                            it = iter(self.body)
                        chunk = next(it)
                    except StopIteration:
                        break
                    finally:
                        detach_context(token)
                    self.produced = 1
                    yield chunk
        except GeneratorExit:  # the server stopped iterating; close() ends the request
            raise
        except BaseException as exc:
            self._mw._end(self, exc)
            raise
        self.produced = 2

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            ctx = self.context
            token = attach_context(ctx) if ctx is not None else None
            try:
                close()
            except BaseException as exc:
                self._mw._end(self, exc)
                raise
            finally:
                if token is not None:
                    detach_context(token)
        self._mw._end(self, None)


class ModelotelWSGIMiddleware:
    """Wraps a WSGI application; see the module docstring for what is recorded and when."""

    def __init__(
        self,
        wsgi_app: WSGIApp,
        *,
        excluded_urls: Iterable[str] | str | None = None,
        models: Mapping[str, Any] | None = None,
        deployment_role: str | None = None,
        traces: bool | str | None = None,
        route_key: str = ROUTE_KEY,
        route_of: Callable[[Mapping[str, Any]], str | None] | None = None,
    ) -> None:
        self.wsgi_app = wsgi_app
        self.route_key = route_key
        # The framework's route template for an environ, asked when the response starts (the framework's
        # request is still live then); None: only environ[route_key] / set_route() name the route.
        self.route_of = route_of
        self.enabled = True
        self.telemetry = ServerTelemetry(
            metric=HTTP_SERVER_DURATION,
            framework="flask",
            excluded_urls=excluded_urls,
            models=models,
            deployment_role=deployment_role,
            traces=traces,
            metric_attributes=_METRIC_ATTRIBUTES,
        )
        self._exclude = self.telemetry.exclude if self.telemetry.exclude.patterns else None

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self.enabled or (self._exclude is not None and self._exclude(environ.get("PATH_INFO") or "")):
            return self.wsgi_app(environ, start_response)
        # The request's start, inline (one call less per request); never raises.
        try:
            if not STATE.started:
                autostart()
            method = environ.get("REQUEST_METHOD", "")
            if method not in KNOWN_METHODS:
                method = http_method(method)
            attrs: dict[str, Any] = {HTTP_METHOD: method, URL_SCHEME: environ.get("wsgi.url_scheme", "http")}
            protocol = environ.get("SERVER_PROTOCOL", "")
            version = _PROTOCOLS.get(protocol) or _protocol_version(protocol)
            if version is not None:
                attrs[PROTOCOL_VERSION] = version
            telemetry = self.telemetry
            if (telemetry.traces or STATE.trace_mode) == "span":  # the path is for spans only, never metrics
                path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
                # WSGI gives the path latin-1-decoded; we want UTF-8. PII scrubbed.
                if not path.isascii():
                    path = _utf8_path(path)
                attrs[URL_PATH] = scrubbed_path(path)
            resp = _Response(self, environ, start_response, attrs)
            telemetry.begin(resp, "HTTP" if method == "_OTHER" else method, environ, _GETTER)
            environ[REQUEST_KEY] = resp
        except Exception as exc:
            SELF.error("wsgi_start", exc)
            return self.wsgi_app(environ, start_response)
        try:
            result = self.wsgi_app(environ, resp.start_response)
        except BaseException as exc:
            self._end(resp, exc)
            raise
        finally:
            token = resp.token
            if token is not None:  # current again only while the body is produced and closed
                resp.token = None
                try:
                    detach_context(token)
                except Exception as exc:
                    SELF.error("server_context_detach", exc)
        file_wrapper = environ.get("wsgi.file_wrapper")
        if file_wrapper is not None and isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
            # Wrapping would hide it from the server's sendfile path: end now (time to first byte).
            self._end(resp, None, complete=True)
            return result
        resp.body = result
        return resp

    def set_route(self, environ: Mapping[str, Any], route: str) -> None:
        """Name the in-flight request's span after its route template now (frameworks call this)."""
        req = environ.get(REQUEST_KEY)
        if isinstance(req, Request) and req.route is None and not req.done:
            self._set_route(req, route)

    def _set_route(self, req: Request, route: str) -> None:
        name = span_name(req.attrs.get(HTTP_METHOD), route) if req.span is not None else None
        self.telemetry.set_route(req, route, name)

    def _end(self, resp: _Response, exc: BaseException | None, complete: bool = False) -> None:
        """Finish the request once: status, route, error.type, exception; never raises."""
        req = resp
        if req.done:
            return
        try:
            environ = resp.environ
            if req.route is None:
                route = environ.get(self.route_key)
                if route is not None:
                    self._set_route(req, route)
            status = resp.status
            if exc is None and status is not None and (complete or resp.produced == 2):  # a complete response
                code = _STATUS_CODES.get(status) or _status_code(status)
                if code < 500:  # the common case, in short
                    self.telemetry.finish(req, status_attrs=STATUS_ATTRS.get(code) or http_status_attrs(code))
                    resp.environ = _NO_ENVIRON
                    return
            # An exception before the first chunk means the server sends a 500 (headers are not out yet).
            if status is None or (exc is not None and not resp.produced):
                code = 500
            else:
                code = _STATUS_CODES.get(status) or _status_code(status)
            status_attrs = STATUS_ATTRS.get(code) or http_status_attrs(code)
            error_type = None
            disconnected = False
            exception = exc
            if exc is None and code >= 500:
                handled = environ.get(EXCEPTION_KEY)
                if isinstance(handled, BaseException):
                    exception = handled
            if exception is not None:
                error_type = type(exception).__name__
            elif code >= 500:
                error_type = str(code)
            elif not (complete or resp.produced == 2):
                error_type = DISCONNECT_ERROR
                disconnected = True
            if disconnected and req.span is not None:
                req.span.add_event(CLIENT_DISCONNECT_EVENT, {conv.ERROR_TYPE: error_type})
            self.telemetry.finish(
                req,
                status_attrs=status_attrs,
                error_type=error_type,
                exception=exception,
                span_error=code >= 500 or disconnected,
            )
        except Exception as inner:
            SELF.error("wsgi_finish", inner)
            try:
                self.telemetry.finish(req)
            except Exception:  # pragma: no cover - finish catches its own failures
                pass
        # environ[REQUEST_KEY] is this object: drop its reference back, so the pair is freed at once
        # by reference counting instead of waiting for the cyclic garbage collector.
        resp.environ = _NO_ENVIRON
