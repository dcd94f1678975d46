"""Seldon MLServer (``mlserver.MLServer``): one call adds modelotel to every model it hosts.

``modelotel.integrations.mlserver.instrument(server)`` between ``MLServer(settings)`` and ``server.start(...)``:
the REST app MLServer built gets ``oip.OipMiddleware`` (inside its GZip middleware) and its gRPC servicer's
``ModelInfer`` is wrapped with ``oip.instrument_servicer`` (MLServer builds its ``grpc.aio`` server itself; its
settings add no user middleware or interceptors). Both record into one ``oip.OipModels``. Inference may run in
MLServer's worker processes (``parallel_workers``): the calls are observed in the main process, where the
protocol is served.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import modelotel.config as config

from .oip import DEFAULT_MAX_MODELS, OipMiddleware, OipModels, instrument_servicer

__all__ = ["instrument"]


def instrument(
    server: Any,
    *,
    labels: Mapping[str, Sequence[Any]] | None = None,
    free_text_labels: bool = False,
    deployment_role: str | None = None,
    max_models: int = DEFAULT_MAX_MODELS,
    **http_options: Any,
) -> OipModels:
    """Instrument ``server`` (an ``mlserver.MLServer`` not started yet): REST and gRPC inference, per model and
    version. Options: see ``oip.OipModels`` and ``oip.OipMiddleware``. Idempotent: returns the ``OipModels``."""
    from mlserver.grpc.servicers import InferenceServicer

    # MLServer keeps its FastAPI app on its REST server object and offers no public accessor
    app = getattr(getattr(server, "_rest_server", None), "_app", None)
    if app is None or not hasattr(app, "add_middleware"):
        raise config.ConfigError("modelotel.integrations.mlserver.instrument: not an mlserver.MLServer")
    models = instrument_servicer(  # idempotent: the models already in use, if any
        InferenceServicer,
        labels=labels,
        free_text_labels=free_text_labels,
        deployment_role=deployment_role,
        max_models=max_models,
    )
    if not any(getattr(mw, "cls", None) is OipMiddleware for mw in app.user_middleware):
        from starlette.middleware import Middleware

        # innermost of the user middleware (add_middleware would make it outermost): inside MLServer's GZip
        # middleware, so it reads the response before compression (MLServer compresses by default)
        app.user_middleware.append(Middleware(OipMiddleware, models=models, **http_options))
    return models
