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
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.propagators.textmap import Getter

from .. import conventions as conv
from ..privacy import scrub
from ..recorder import SELF
from ..runtime import STATE, autostart
from ._server import (
    CLIENT_DISCONNECT_EVENT,
    DISCONNECT_ERROR,
    HTTP_METHOD,
    HTTP_ROUTE,
    HTTP_SERVER_DURATION,
    HTTP_STATUS,
    PROTOCOL_VERSION,
    URL_PATH,
    URL_SCHEME,
    Request,
    ServerTelemetry,
    http_method,
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


def _url_path(environ: Mapping[str, Any]) -> str:
    """The concrete path (no query string), PII scrubbed: WSGI gives it latin-1-decoded, we want UTF-8."""
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    if not path.isascii():
        path = path.encode("latin-1", "replace").decode("utf-8", "replace")
    return scrub(path)


class _Response:
    """One request's response: captures the status, keeps the context per chunk, ends on ``close()``."""

    __slots__ = (
        "_mw",
        "req",
        "environ",
        "_server_start_response",
        "status",
        "body",
        "_it",
        "_ctx",
        "produced",
        "exhausted",
    )

    def __init__(self, mw: ModelotelWSGIMiddleware, req: Request, environ: dict, start_response: Any, ctx: Any):
        self._mw = mw
        self.req = req
        self.environ = environ
        self._server_start_response = start_response
        self.status: str | None = None
        self.body: Any = None
        self._it: Iterator[bytes] | None = None
        self._ctx = ctx  # the request's context, attached around application code; None if nothing to attach
        self.produced = False  # a chunk went to the server: its headers may be out
        self.exhausted = False

    def start_response(self, status: str, headers: list, exc_info: Any = None) -> Any:
        self.status = status
        if exc_info is None:
            return self._server_start_response(status, headers)
        return self._server_start_response(status, headers, exc_info)

    def __iter__(self) -> _Response:
        return self

    def __next__(self) -> bytes:
        ctx = self._ctx
        token = otel_context.attach(ctx) if ctx is not None else None
        try:
            it = self._it
            if it is None:  # iter() may run application code: do it here, where the server would
                it = self._it = iter(self.body)
            chunk = next(it)
            self.produced = True
            return chunk
        except StopIteration:
            self.exhausted = True
            raise
        except BaseException as exc:
            self._mw._end(self, exc)
            raise
        finally:
            if token is not None:
                otel_context.detach(token)

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            ctx = self._ctx
            token = otel_context.attach(ctx) if ctx is not None else None
            try:
                close()
            except BaseException as exc:
                self._mw._end(self, exc)
                raise
            finally:
                if token is not None:
                    otel_context.detach(token)
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
    ) -> None:
        self.wsgi_app = wsgi_app
        self.route_key = route_key
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
        resp = self._begin(environ, start_response)
        if resp is None:
            return self.wsgi_app(environ, start_response)
        try:
            result = self.wsgi_app(environ, resp.start_response)
        except BaseException as exc:
            self._end(resp, exc)
            raise
        finally:
            self.telemetry.detach(resp.req)  # current again only inside __next__/close
        file_wrapper = environ.get("wsgi.file_wrapper")
        if file_wrapper is not None and isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
            # Wrapping would hide it from the server's sendfile path: end now (time to first byte).
            self._end(resp, None, complete=True)
            return result
        resp.body = result
        return resp

    # -- request lifecycle --------------------------------------------------------------------
    def _begin(self, environ: dict, start_response: Callable[..., Any]) -> _Response | None:
        try:
            if not STATE.started:
                autostart()
            method = http_method(environ.get("REQUEST_METHOD", ""))
            attrs: dict[str, Any] = {HTTP_METHOD: method, URL_SCHEME: environ.get("wsgi.url_scheme", "http")}
            version = _protocol_version(environ.get("SERVER_PROTOCOL", ""))
            if version is not None:
                attrs[PROTOCOL_VERSION] = version
            telemetry = self.telemetry
            if (telemetry.traces or STATE.trace_mode) == "span":  # the path is for spans only, never metrics
                attrs[URL_PATH] = _url_path(environ)
            req = telemetry.start("HTTP" if method == "_OTHER" else method, environ, _GETTER, attrs)
            ctx = otel_context.get_current() if req.token is not None else None
            environ[REQUEST_KEY] = req
            return _Response(self, req, environ, start_response, ctx)
        except Exception as exc:
            SELF.error("wsgi_start", exc)
            return None

    def set_route(self, environ: Mapping[str, Any], route: str) -> None:
        """Name the in-flight request's span after its route template now (frameworks call this)."""
        req = environ.get(REQUEST_KEY)
        if isinstance(req, Request) and req.route is None and not req.done:
            self._set_route(req, route)

    def _set_route(self, req: Request, route: str) -> None:
        name = None
        if req.span is not None:
            method = req.attrs.get(HTTP_METHOD)
            name = f"{'HTTP' if method == '_OTHER' else method} {route}"
        self.telemetry.set_route(req, route, name)

    def _end(self, resp: _Response, exc: BaseException | None, complete: bool = False) -> None:
        """Finish the request once: status, route, error.type, exception; never raises."""
        req = resp.req
        if req.done:
            return
        try:
            environ = resp.environ
            if req.route is None:
                route = environ.get(self.route_key)
                if route is not None:
                    self._set_route(req, route)
            status = resp.status
            # An exception before the first chunk means the server sends a 500 (headers are not out yet).
            code = 500 if status is None or (exc is not None and not resp.produced) else _status_code(status)
            status_attrs: dict[str, Any] = {HTTP_STATUS: code}
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
            elif not (complete or resp.exhausted):
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
