"""gRPC server interceptors (grpc and grpc.aio): one server span and one rpc.server.call.duration per call.

    server = grpc.server(pool, interceptors=[server_interceptor()])
    server = grpc.aio.server(interceptors=[aio_server_interceptor()])

The interceptor swaps each method's behaviour for a wrapper of the same arity and kind (plain
function, generator, coroutine, async generator), built once per method and cached. The wrapper
continues the caller's W3C trace from the invocation metadata, keeps the server span current while
the servicer runs (so ``@instrument_model`` spans are its children) and reads the final status:

* ``OK``, or the code given to ``context.set_code`` / ``context.abort`` (read back with ``code()``);
* ``UNKNOWN`` with ``error.type`` = the exception class for an uncaught exception;
* ``CANCELLED`` (``DEADLINE_EXCEEDED`` once the deadline has passed) when the client went away.

Streaming responses end when the stream ends, fails or is abandoned. Requests, responses and
metadata values other than ``traceparent``/``tracestate``/``baggage`` are never recorded, and the
servicer's responses and exceptions pass through as they are.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import grpc
from opentelemetry.propagators.textmap import Getter

import modelotel.config as config
import modelotel.conventions as conv

from ..conventions import (
    RPC_METHOD,
    RPC_SERVER_DURATION,
    RPC_STATUS,
    RPC_SYSTEM,
)
from ..metrics.selftelemetry import SELF
from .server import Request, ServerTelemetry

__all__ = ["aio_server_interceptor", "server_interceptor"]

_METRIC_ATTRIBUTES = (RPC_SYSTEM, RPC_METHOD, RPC_STATUS, conv.ERROR_TYPE)
_CACHE_LIMIT = 4096  # distinct methods; servers register a fixed set, so this only bounds a pathological one

# Server-side codes that make a span an error (semconv gRPC: the others are the caller's problem).
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def _outcome(code: grpc.StatusCode) -> tuple[dict[str, str], str | None, bool]:
    """(status attributes, error.type, span is an error) of a final status code, built once per code."""
    if code is grpc.StatusCode.OK:
        return {RPC_STATUS: "OK"}, None, False
    return {RPC_STATUS: code.name, conv.ERROR_TYPE: code.name}, code.name, code in _SERVER_ERRORS


_OUTCOMES = {code: _outcome(code) for code in grpc.StatusCode}
_OK = grpc.StatusCode.OK
_OK_ATTRS = _OUTCOMES[_OK][0]
_UNKNOWN = grpc.StatusCode.UNKNOWN
_CANCELLED = grpc.StatusCode.CANCELLED
_DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED


_W3C_KEYS = frozenset({"traceparent", "tracestate", "baggage"})


class _MetadataGetter(Getter):
    """W3C headers from gRPC invocation metadata: a tuple of (key, value) pairs, keys lowercase."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        values = [v for k, v in carrier if k == key and isinstance(v, str)]
        return values or None

    def keys(self, carrier: Any) -> list[str]:
        return [k for k, _ in carrier]

    @staticmethod
    def w3c(carrier: Any) -> tuple[str | None, list[str] | None, bool]:
        """(first traceparent, tracestate values, has baggage) in one pass over the metadata."""
        traceparent = tracestate = None
        baggage = False
        for k, v in carrier:
            if k in _W3C_KEYS and isinstance(v, str):
                if k == "traceparent":
                    if traceparent is None:
                        traceparent = v
                elif k == "tracestate":
                    tracestate = [*(tracestate or ()), v]
                else:
                    baggage = True
        return traceparent, tracestate, baggage


_GETTER = _MetadataGetter()


class _Method:
    """What every call of one RPC method shares: span name, start attributes, model route."""

    __slots__ = ("name", "attrs", "route")

    def __init__(self, full_method: str, telemetry: ServerTelemetry) -> None:
        name = full_method[1:] if full_method.startswith("/") else full_method
        self.name = name  # "pkg.Service/Method": the rpc.method value and the span name
        self.attrs = {RPC_SYSTEM: "grpc", RPC_METHOD: name}
        self.route = name if telemetry.models else None


# -- the end of a call ------------------------------------------------------------------------------


# A client gives up at its own deadline, which is ours minus the time its request took to reach
# us, and its cancellation takes about as long again to arrive: allow for the jitter in between.
_DEADLINE_SLACK_S = 0.1


def _expired(context: Any) -> bool:
    remaining = context.time_remaining()
    return remaining is not None and remaining <= _DEADLINE_SLACK_S


def _is_abort(exc: BaseException) -> bool:
    """``context.abort`` raised this: grpc raises a bare Exception(), grpc.aio an AbortError."""
    return (type(exc) is Exception and not exc.args) or isinstance(exc, grpc.aio.AbortError)


def _end(
    tel: ServerTelemetry,
    req: Request,
    context: Any,
    exc: BaseException | None = None,
    *,
    cancelled: bool = False,
    check_active: bool = True,
    drop_token: bool = False,
) -> None:
    """Finish a call with the status the client sees. Never raises.

    ``drop_token``: we may be on another thread or task than the one that attached the span (a
    stream abandoned by the server, a done-callback); the call's context is private to the call and
    discarded with it, so leaving it as it is is harmless, while detaching there would fail.
    """
    detach = not drop_token
    exception = None
    try:
        if cancelled or (check_active and not context.is_active()):
            code = _DEADLINE if _expired(context) else _CANCELLED
        else:
            code = context.code()
            if code is None or code is _OK:
                if exc is None:
                    tel.finish(req, status_attrs=_OK_ATTRS, detach=detach)
                    return
                if not _is_abort(exc):  # an uncaught exception: grpc answers UNKNOWN
                    error_type = type(exc).__name__
                    status_attrs = {RPC_STATUS: "UNKNOWN", conv.ERROR_TYPE: error_type}
                    tel.finish(req, status_attrs=status_attrs, error_type=error_type, exception=exc, detach=detach)
                    return
                code = _UNKNOWN
            elif exc is not None and code in _SERVER_ERRORS and not _is_abort(exc):
                exception = exc  # set_code(INTERNAL) then raise: keep the exception on the span
        status_attrs, error_type, span_error = _OUTCOMES.get(code) or _OUTCOMES[_UNKNOWN]
    except Exception as inner:
        SELF.error("grpc_status", inner)
        status_attrs, error_type, span_error = _OUTCOMES[_UNKNOWN]
    tel.finish(
        req,
        status_attrs=status_attrs,
        error_type=error_type,
        exception=exception,
        span_error=span_error,
        detach=detach,
    )


def _end_once(once: list, context: Any, exc: BaseException | None = None, **kwargs: Any) -> None:
    """End a stream exactly once, whichever of the stream and the done-callback gets here first."""
    try:
        tel, req = once.pop()  # list.pop is atomic: the other one finds it empty
    except IndexError:
        return
    _end(tel, req, context, exc, **kwargs)


class _CodeRecorder:
    """grpc.aio hands sync handlers a context with set_code() and abort() but no code(): remember the code."""

    __slots__ = ("_context", "_code")

    def __init__(self, context: Any) -> None:
        self._context = context
        self._code: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def set_code(self, code: Any) -> None:
        self._code = code
        self._context.set_code(code)

    def abort(self, code: Any, *args: Any, **kwargs: Any) -> Any:
        self._code = code
        return self._context.abort(code, *args, **kwargs)

    def abort_with_status(self, status: Any) -> Any:
        self._code = status.code
        return self._context.abort_with_status(status)

    def code(self) -> Any:
        return self._code


# -- behaviours: grpc (threads) and grpc.aio sync handlers ------------------------------------------------


def _sync_unary(tel: ServerTelemetry, m: _Method, inner: Callable[..., Any], aio: bool) -> Callable[..., Any]:
    begin, name, attrs, route = tel.begin, m.name, m.attrs, m.route
    check_active = not aio

    def behavior(request: Any, context: Any) -> Any:
        req = Request(attrs.copy())
        begin(req, name, context.invocation_metadata() or (), _GETTER)
        req.route = route
        if aio:
            context = _CodeRecorder(context)
        try:
            response = inner(request, context)
        except BaseException as exc:
            _end(tel, req, context, exc, check_active=check_active)
            raise
        _end(tel, req, context, check_active=check_active)
        return response

    return behavior


def _sync_stream(tel: ServerTelemetry, m: _Method, inner: Callable[..., Any], aio: bool) -> Callable[..., Any]:
    """A function returning an iterator: call the servicer now (its errors surface where grpc expects them)."""
    begin, name, attrs, route = tel.begin, m.name, m.attrs, m.route
    check_active = not aio

    def behavior(request: Any, context: Any) -> Any:
        req = Request(attrs.copy())
        begin(req, name, context.invocation_metadata() or (), _GETTER)
        req.route = route
        if aio:
            context = _CodeRecorder(context)
        try:
            responses = inner(request, context)
        except BaseException as exc:
            _end(tel, req, context, exc, check_active=check_active)
            raise
        once = [(tel, req)]
        try:
            if aio:  # grpc.aio iterates on its thread pool: the span cannot stay current there
                tel.detach(req)
            elif not context.add_callback(lambda: _end_once(once, context, cancelled=True, drop_token=True)):
                _end_once(once, context, cancelled=True, drop_token=True)  # the call is already over
        except Exception as exc:
            SELF.error("grpc_stream_callback", exc)
        return _iterate(once, context, responses, check_active)

    return behavior


def _iterate(once: list, context: Any, responses: Any, check_active: bool) -> Any:
    # grpc calls next() on whatever the servicer returned; so do we (a list fails the same way).
    try:
        while True:
            try:
                item = next(responses)
            except StopIteration:
                break
            yield item
    except GeneratorExit:  # grpc stopped iterating: the call is over (client gone)
        _end_once(once, context, cancelled=True, drop_token=True)
        raise
    except BaseException as exc:
        _end_once(once, context, exc, check_active=check_active)
        raise
    _end_once(once, context, check_active=check_active)


# -- behaviours: grpc.aio coroutines and async generators ---------------------------------------------------


def _aio_coroutine(tel: ServerTelemetry, m: _Method, inner: Callable[..., Any]) -> Callable[..., Any]:
    """Unary responses, and streaming ones written with ``await context.write(...)``."""
    begin, name, attrs, route = tel.begin, m.name, m.attrs, m.route

    async def behavior(request: Any, context: Any) -> Any:
        req = Request(attrs.copy())
        begin(req, name, context.invocation_metadata() or (), _GETTER)
        req.route = route
        try:
            response = await inner(request, context)
        except asyncio.CancelledError:  # the client cancelled (or the deadline passed)
            _end(tel, req, context, cancelled=True)
            raise
        except BaseException as exc:
            _end(tel, req, context, exc, check_active=False)
            raise
        _end(tel, req, context, check_active=False)
        return response

    return behavior


def _aio_generator(tel: ServerTelemetry, m: _Method, inner: Callable[..., Any]) -> Callable[..., Any]:
    begin, name, attrs, route = tel.begin, m.name, m.attrs, m.route

    async def behavior(request: Any, context: Any) -> Any:
        req = Request(attrs.copy())
        begin(req, name, context.invocation_metadata() or (), _GETTER)
        req.route = route
        once = [(tel, req)]
        try:
            # grpc may stop iterating while we wait at a yield (cancelled during a write): end there.
            context.add_done_callback(lambda _ctx: _end_once(once, context, cancelled=True, drop_token=True))
        except Exception as exc:
            SELF.error("grpc_stream_callback", exc)
        try:
            responses = inner(request, context)
            while True:
                try:
                    item = await responses.__anext__()
                except StopAsyncIteration:
                    break
                yield item
        except GeneratorExit:
            _end_once(once, context, cancelled=True, drop_token=True)
            raise
        except asyncio.CancelledError:
            _end_once(once, context, cancelled=True)
            raise
        except BaseException as exc:
            _end_once(once, context, exc, check_active=False)
            raise
        _end_once(once, context, check_active=False)

    return behavior


# -- handlers --------------------------------------------------------------------------------------------

_FACTORIES = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler, False),
    ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
    ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
    ("stream_stream", grpc.stream_stream_rpc_method_handler, True),
)


def _is_async_unary(fn: Any) -> bool:
    # grpc.aio's own test for awaiting a handler rather than running it on its thread pool.
    return inspect.isawaitable(fn) or inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)


def _wrap_handler(tel: ServerTelemetry, m: _Method, handler: Any, aio: bool) -> Any:
    """A handler of the same arity whose behaviour is instrumented; the original when we cannot tell."""
    for field, factory, streams in _FACTORIES:
        inner = getattr(handler, field, None)
        if inner is None:
            continue
        if getattr(inner, "experimental_non_blocking", False):
            return handler  # grpc's experimental callback API: its responses do not come back to us
        if aio and (inspect.iscoroutinefunction(inner) if streams else _is_async_unary(inner)):
            behavior = _aio_coroutine(tel, m, inner)
        elif aio and streams and inspect.isasyncgenfunction(inner):
            behavior = _aio_generator(tel, m, inner)
        else:
            behavior = (_sync_stream if streams else _sync_unary)(tel, m, inner, aio)
        pool = getattr(inner, "experimental_thread_pool", None)
        if pool is not None:
            behavior.experimental_thread_pool = pool  # type: ignore[attr-defined]
        return factory(behavior, handler.request_deserializer, handler.response_serializer)
    return handler


class _Handlers:
    """The interceptor's state: the telemetry engine and, per method, (original handler, handler to serve)."""

    def __init__(
        self,
        excluded_urls: Iterable[str] | str | None,
        models: Mapping[str, Any] | None,
        deployment_role: str | None,
        traces: bool | str | None,
    ) -> None:
        if isinstance(excluded_urls, str):
            excluded_urls = [excluded_urls]
        excluded = [*(excluded_urls or ()), *_excluded_services()]
        self.telemetry = ServerTelemetry(
            metric=RPC_SERVER_DURATION,
            framework="grpc",
            excluded_urls=excluded,
            models={_method_name(k): v for k, v in (models or {}).items()},
            deployment_role=deployment_role,
            traces=traces,
            metric_attributes=_METRIC_ATTRIBUTES,
        )
        self.cache: dict[str, tuple[Any, Any]] = {}

    def serve(self, handler: Any, details: Any, aio: bool) -> Any:
        """The handler to serve this call with: looked up per method, built on a method's first call."""
        if handler is None:
            return None
        try:
            method = details.method
            cached = self.cache.get(method)
            if cached is not None and cached[0] is handler:
                return cached[1]
            tel = self.telemetry
            served = handler if tel.exclude(method) else _wrap_handler(tel, _Method(method, tel), handler, aio)
            if len(self.cache) < _CACHE_LIMIT or method in self.cache:
                self.cache[method] = (handler, served)
            return served
        except Exception as exc:
            SELF.error("grpc_intercept", exc)
            return handler


def _method_name(key: str) -> str:
    return key[1:] if key.startswith("/") else key


def _excluded_services() -> list[str]:
    """OTEL_PYTHON_GRPC_EXCLUDED_SERVICES, as the official instrumentation reads it: whole services."""
    return [f"^/{re.escape(service)}/" for service in config.grpc_excluded_services()]


class _ServerInterceptor(grpc.ServerInterceptor):
    def __init__(self, handlers: _Handlers) -> None:
        self._handlers = handlers

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        # This runs on grpc's single serving thread: a dict lookup here, everything else in the behaviour.
        return self._handlers.serve(continuation(handler_call_details), handler_call_details, False)


class _AioServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, handlers: _Handlers) -> None:
        self._handlers = handlers

    async def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        return self._handlers.serve(await continuation(handler_call_details), handler_call_details, True)


def server_interceptor(
    *,
    excluded_urls: Iterable[str] | str | None = None,
    models: Mapping[str, Any] | None = None,
    deployment_role: str | None = None,
    traces: bool | str | None = None,
) -> grpc.ServerInterceptor:
    """An interceptor for ``grpc.server(..., interceptors=[...])``.

    ``excluded_urls``: regexes searched in the full method name ``/pkg.Service/Method`` (plus
    OTEL_PYTHON_GRPC_EXCLUDED_URLS, OTEL_PYTHON_EXCLUDED_URLS and the service names in
    OTEL_PYTHON_GRPC_EXCLUDED_SERVICES); excluded methods run untouched. ``models``: per method
    (``"pkg.Service/Method"`` or ``"/pkg.Service/Method"``) a model name or (name, version), each call
    then also counts as one ``ml.inference.duration`` of that model. ``traces``: "span", "enrich" or
    "off" for these calls (default: the process setting). Bad options raise ``modelotel.ConfigError``.
    """
    return _ServerInterceptor(_Handlers(excluded_urls, models, deployment_role, traces))


def aio_server_interceptor(
    *,
    excluded_urls: Iterable[str] | str | None = None,
    models: Mapping[str, Any] | None = None,
    deployment_role: str | None = None,
    traces: bool | str | None = None,
) -> grpc.aio.ServerInterceptor:
    """The same for ``grpc.aio.server(interceptors=[...])``: coroutines, async generators, ``context.write``
    and sync handlers (which grpc.aio runs on its thread pool) alike."""
    return _AioServerInterceptor(_Handlers(excluded_urls, models, deployment_role, traces))
