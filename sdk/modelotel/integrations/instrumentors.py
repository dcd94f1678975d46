"""OpenTelemetry ``BaseInstrumentor`` subclasses, so ``opentelemetry-instrument python app.py`` loads modelotel.

They are registered as ``opentelemetry_instrumentor`` entry points (``modelotel_fastapi``,
``modelotel_flask``, ``modelotel_grpc_server``, ``modelotel_grpc_aio_server``). Each patches the
framework's constructor (with wrapt) so every app or server created afterwards carries our middleware
or interceptor; ``uninstrument()`` removes the patch. To avoid two server spans per request, disable
the official ones: ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=fastapi,flask,grpc_server,grpc_aio_server``.

Under ``opentelemetry-instrument`` the distro configures the SDK providers first; modelotel's first
request then adopts them (their Resource, span pipeline and metric exporter).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from ..metrics.selftelemetry import SELF


def _unwrap(owner: Any, name: str) -> None:
    attr = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
    if isinstance(attr, wrapt.ObjectProxy) and hasattr(attr, "__wrapped__"):
        setattr(owner, name, attr.__wrapped__)


def _options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """instrument() kwargs minus the providers the OTel loader passes (modelotel uses the global ones)."""
    return {k: v for k, v in kwargs.items() if k not in ("tracer_provider", "meter_provider")}


def _instrument_after_init(instrument_app: Any, kind: str, kwargs: dict[str, Any]) -> Any:
    """A wrapt wrapper for an app class's ``__init__`` that instruments each new app; never raises."""
    options = _options(kwargs)

    def after_init(wrapped: Any, instance: Any, args: tuple, kw: dict) -> Any:
        result = wrapped(*args, **kw)
        try:
            instrument_app(instance, **options)
        except Exception as exc:
            SELF.error(kind, exc)
        return result

    return after_init


class FastAPIInstrumentor(BaseInstrumentor):
    """Adds modelotel's ASGI middleware to every FastAPI (and Starlette) app created after instrument()."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("fastapi >= 0.100",)

    def _instrument(self, **kwargs: Any) -> None:
        import fastapi
        import starlette.applications

        from . import fastapi as ours

        after_init = _instrument_after_init(ours.instrument_app, "auto_instrument_fastapi", kwargs)
        wrapt.wrap_function_wrapper(fastapi.FastAPI, "__init__", after_init)
        wrapt.wrap_function_wrapper(starlette.applications.Starlette, "__init__", after_init)

    def _uninstrument(self, **kwargs: Any) -> None:
        import fastapi
        import starlette.applications

        _unwrap(fastapi.FastAPI, "__init__")
        _unwrap(starlette.applications.Starlette, "__init__")


class FlaskInstrumentor(BaseInstrumentor):
    """Adds modelotel's WSGI middleware to every Flask app created after instrument()."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("flask >= 2.0",)

    def _instrument(self, **kwargs: Any) -> None:
        import flask

        from . import flask as ours

        after_init = _instrument_after_init(ours.instrument_app, "auto_instrument_flask", kwargs)
        wrapt.wrap_function_wrapper(flask.Flask, "__init__", after_init)

    def _uninstrument(self, **kwargs: Any) -> None:
        import flask

        _unwrap(flask.Flask, "__init__")


def _with_interceptor(factory: Any, options: dict[str, Any]) -> Any:
    def wrapper(wrapped: Any, instance: Any, args: tuple, kw: dict) -> Any:
        try:
            interceptors = list(kw.get("interceptors") or ())
            interceptors.insert(0, factory(**options))
            kw["interceptors"] = interceptors
        except Exception as exc:
            SELF.error("auto_instrument_grpc", exc)
        return wrapped(*args, **kw)

    return wrapper


class GrpcServerInstrumentor(BaseInstrumentor):
    """Adds modelotel's interceptor to every ``grpc.server(...)`` created after instrument()."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("grpcio >= 1.42",)

    def _instrument(self, **kwargs: Any) -> None:
        import grpc

        from . import grpc as ours

        wrapt.wrap_function_wrapper(grpc, "server", _with_interceptor(ours.server_interceptor, _options(kwargs)))

    def _uninstrument(self, **kwargs: Any) -> None:
        import grpc

        _unwrap(grpc, "server")


class GrpcAioServerInstrumentor(BaseInstrumentor):
    """Adds modelotel's aio interceptor to every ``grpc.aio.server(...)`` created after instrument()."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("grpcio >= 1.42",)

    def _instrument(self, **kwargs: Any) -> None:
        import grpc.aio

        from . import grpc as ours

        wrapt.wrap_function_wrapper(
            grpc.aio, "server", _with_interceptor(ours.aio_server_interceptor, _options(kwargs))
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        import grpc.aio

        _unwrap(grpc.aio, "server")
