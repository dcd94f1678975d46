"""Flask: ``instrument_app(app)`` wraps ``app.wsgi_app`` in ModelotelWSGIMiddleware and adds two hooks.

* a ``before_request`` hook, first in line (an earlier hook that answers would skip it), which puts
  ``request.url_rule.rule`` (``/items/<int:item_id>``) into the environ and renames the span as soon
  as routing is known; unmatched requests (404/405) have no route;
* a ``teardown_request`` hook that hands the exception Flask turned into a 500 response to the
  middleware, so ``error.type`` is its class name and the span gets the exception event.

Nothing else about the application changes: its error handlers see the very exception the view raised.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..recorder import SELF
from .wsgi import EXCEPTION_KEY, ROUTE_KEY, ModelotelWSGIMiddleware

__all__ = ["instrument_app", "uninstrument_app"]

_EXTENSION = "modelotel"


class _Installed:
    """What instrument_app added to one app, so uninstrument_app can take exactly that away."""

    def __init__(self, middleware: ModelotelWSGIMiddleware, before: Any, teardown: Any) -> None:
        self.middleware = middleware
        self.before = before
        self.teardown = teardown


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
    from flask import request

    middleware = ModelotelWSGIMiddleware(
        app.wsgi_app,
        excluded_urls=excluded_urls,
        models=models,
        deployment_role=deployment_role,
        traces=traces,
        route_key=route_key,
    )

    def modelotel_route() -> None:
        try:
            current = request._get_current_object()  # one context lookup instead of one per attribute
            rule = current.url_rule
            if rule is not None:
                environ = current.environ
                environ[route_key] = rule.rule
                middleware.set_route(environ, rule.rule)
        except Exception as exc:
            SELF.error("flask_route", exc)

    def modelotel_exception(exc: BaseException | None) -> None:
        if exc is not None:
            try:
                request.environ[EXCEPTION_KEY] = exc
            except Exception as inner:
                SELF.error("flask_exception", inner)

    # Direct list edits, not the decorators: those refuse once the app has served a request.
    app.before_request_funcs.setdefault(None, []).insert(0, modelotel_route)
    app.teardown_request_funcs.setdefault(None, []).append(modelotel_exception)
    app.wsgi_app = middleware
    app.extensions[_EXTENSION] = _Installed(middleware, modelotel_route, modelotel_exception)
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
    for registry, hook in (
        (app.before_request_funcs, installed.before),
        (app.teardown_request_funcs, installed.teardown),
    ):
        hooks = registry.get(None)
        if hooks and hook in hooks:
            hooks.remove(hook)
    return app
