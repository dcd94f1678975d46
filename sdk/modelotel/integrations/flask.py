"""Flask: ``instrument_app(app)`` wraps ``app.wsgi_app`` in ModelotelWSGIMiddleware; no per-request hook.

* The route template (``request.url_rule.rule``, e.g. ``/items/<int:item_id>``) is read when the
  response starts: Flask's request object is still in the environ then (``werkzeug.request``);
  unmatched requests (404/405) have no route.
* A ``got_request_exception`` receiver (Flask sends it only for an unhandled exception, so a normal
  request pays nothing) hands the exception Flask turns into a 500 response to the middleware, so
  ``error.type`` is its class name and the span gets the exception event; it also records the route
  for an exception that propagates before any response starts (``PROPAGATE_EXCEPTIONS``).

Nothing else about the application changes: its error handlers see the very exception the view raised.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..metrics.selftelemetry import SELF
from .wsgi import EXCEPTION_KEY, ROUTE_KEY, ModelotelWSGIMiddleware

__all__ = ["flask_route", "instrument_app", "uninstrument_app"]

_EXTENSION = "modelotel"


class _Installed:
    """What instrument_app added to one app, so uninstrument_app can take exactly that away."""

    def __init__(self, middleware: ModelotelWSGIMiddleware, on_exception: Any) -> None:
        self.middleware = middleware
        self.on_exception = on_exception


def flask_route(environ: Mapping[str, Any]) -> str | None:
    """The matched rule of the Flask request behind ``environ``, while Flask still has it there."""
    rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
    return rule.rule if rule is not None else None


def instrument_app(
    app: Any,
    *,
    excluded_urls: Iterable[str] | str | None = None,
    models: Mapping[str, Any] | None = None,
    deployment_role: str | None = None,
    traces: bool | str | None = None,
    route_key: str = ROUTE_KEY,
) -> Any:
    """Instrument a Flask app in place and return it; a second call is a no-op.

    Options are ModelotelWSGIMiddleware's. Raises ``modelotel.ConfigError`` for bad options (here,
    never during a request).
    """
    if _EXTENSION in app.extensions:
        return app
    from flask import got_request_exception, request

    middleware = ModelotelWSGIMiddleware(
        app.wsgi_app,
        excluded_urls=excluded_urls,
        models=models,
        deployment_role=deployment_role,
        traces=traces,
        route_key=route_key,
        route_of=flask_route,
    )

    def modelotel_exception(sender: Any, exception: BaseException | None = None, **extra: Any) -> None:
        if exception is not None:
            try:
                environ = request.environ
                environ[EXCEPTION_KEY] = exception
                route = flask_route(environ)
                if route is not None:
                    environ.setdefault(route_key, route)
            except Exception as inner:
                SELF.error("flask_exception", inner)

    # A weak connection, the receiver kept alive by the app's extensions: it goes when the app goes.
    got_request_exception.connect(modelotel_exception, app)
    app.wsgi_app = middleware
    app.extensions[_EXTENSION] = _Installed(middleware, modelotel_exception)
    return app


def uninstrument_app(app: Any) -> Any:
    """Undo instrument_app; a no-op for an app that is not instrumented. Returns the app."""
    installed = app.extensions.pop(_EXTENSION, None)
    if not isinstance(installed, _Installed):
        return app
    middleware = installed.middleware
    if app.wsgi_app is middleware:
        app.wsgi_app = middleware.wsgi_app
    else:  # someone wrapped it further: we cannot unwrap, so step aside
        middleware.enabled = False
    from flask import got_request_exception

    got_request_exception.disconnect(installed.on_exception)
    return app
