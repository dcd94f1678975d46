"""FastAPI / Starlette entry point: ``instrument_app(app)`` adds ``ModelotelMiddleware`` to the app.

FastAPI versions with native OpenTelemetry (``FastAPI(telemetry=...)``) would otherwise start a
second SERVER span around ours and record ``http.server.request.duration`` twice, so
``instrument_app`` turns FastAPI's own request spans and metrics off (its logs stay as configured)
and ``uninstrument_app`` restores them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import modelotel.config as config

from .asgi import ModelotelMiddleware
from .server import ExcludeList

__all__ = ["ModelotelMiddleware", "instrument_app", "is_instrumented", "uninstrument_app"]

_NATIVE_KEYS = ("tracing", "metrics")
_SAVED_ATTR = "_modelotel_native_telemetry"


def is_instrumented(app: Any) -> bool:
    """Whether ``app`` already carries modelotel's middleware."""
    return any(getattr(m, "cls", None) is ModelotelMiddleware for m in getattr(app, "user_middleware", None) or ())


def instrument_app(
    app: Any,
    *,
    excluded_urls: Iterable[str] | str | None = None,
    models: Mapping[str, Any] | None = None,
    deployment_role: str | None = None,
    traces: bool | str | None = None,
    route_resolver: Callable[[dict[str, Any]], str | None] | None = None,
) -> Any:
    """Instrument a FastAPI or Starlette app in place and return it; a second call does nothing.

    Options are ``ModelotelMiddleware``'s. They are checked here, so a bad one raises
    ``modelotel.ConfigError`` now rather than on the first request (Starlette builds its
    middleware lazily).
    """
    user_middleware = getattr(app, "user_middleware", None)
    if not isinstance(user_middleware, list) or not hasattr(app, "build_middleware_stack"):
        raise TypeError(
            f"instrument_app needs a FastAPI or Starlette app, got {type(app).__name__}; "
            "wrap other ASGI apps with ModelotelMiddleware(app)"
        )
    if is_instrumented(app):
        return app
    _check_options(excluded_urls, models, deployment_role, traces, route_resolver)
    options = {
        "excluded_urls": excluded_urls,
        "models": models,
        "deployment_role": deployment_role,
        "traces": traces,
        "route_resolver": route_resolver,
    }
    _mute_native_telemetry(app)
    if getattr(app, "middleware_stack", None) is None:
        app.add_middleware(ModelotelMiddleware, **options)
    else:  # already serving: add it outermost and let Starlette rebuild the stack on the next request
        from starlette.middleware import Middleware

        user_middleware.insert(0, Middleware(ModelotelMiddleware, **options))
        app.middleware_stack = None
    return app


def uninstrument_app(app: Any) -> Any:
    """Remove modelotel's middleware (the stack is rebuilt on the next request) and return the app."""
    user_middleware = getattr(app, "user_middleware", None)
    if isinstance(user_middleware, list) and is_instrumented(app):
        user_middleware[:] = [m for m in user_middleware if getattr(m, "cls", None) is not ModelotelMiddleware]
        if getattr(app, "middleware_stack", None) is not None:
            app.middleware_stack = None
    saved = app.__dict__.pop(_SAVED_ATTR, None) if hasattr(app, "__dict__") else None
    native = getattr(app, "_telemetry", None)
    if saved and isinstance(native, dict):
        native.update(saved)
    return app


def _check_options(excluded_urls: Any, models: Any, deployment_role: Any, traces: Any, route_resolver: Any) -> None:
    ExcludeList(excluded_urls, "fastapi")  # raises ConfigError on a bad regex (argument or environment)
    if deployment_role is not None:
        config.check_role(deployment_role)
    if traces is not None:
        config.trace_mode_of(traces)
    if route_resolver is not None and not callable(route_resolver):
        raise config.ConfigError(f"route_resolver={route_resolver!r} must be callable(scope) -> route or None")
    if models is None:
        return
    if not isinstance(models, Mapping):
        raise config.ConfigError(f"models={models!r}: use {{route template: name or (name, version)}}")
    for route, spec in models.items():
        if not isinstance(route, str) or not (
            isinstance(spec, str) or (isinstance(spec, (tuple, list)) and len(spec) == 2)
        ):
            raise config.ConfigError(f"models[{route!r}]={spec!r}: use a model name or (name, version)")


def _mute_native_telemetry(app: Any) -> None:
    """Turn off FastAPI's own server span and request metric (its config dict is read per request)."""
    native = getattr(app, "_telemetry", None)
    if isinstance(native, dict) and all(k in native for k in _NATIVE_KEYS) and hasattr(app, "__dict__"):
        app.__dict__.setdefault(_SAVED_ATTR, {k: native[k] for k in _NATIVE_KEYS})
        for key in _NATIVE_KEYS:
            native[key] = False
