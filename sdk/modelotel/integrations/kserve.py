"""KServe's Python model server (``kserve.ModelServer``): one call adds modelotel to every model it hosts.

``modelotel.integrations.kserve.instrument(server)`` before ``server.start(models)``: the REST app (KServe's
module-level FastAPI app, ``kserve.model_server.app``) gets ``oip.OipMiddleware`` and the gRPC servicer's
``ModelInfer`` is wrapped with ``oip.instrument_servicer`` (KServe builds its ``grpc.aio`` server itself with
fixed interceptors). Both record into one ``oip.OipModels``, so REST and gRPC calls of a model are one series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .oip import DEFAULT_MAX_MODELS, OipMiddleware, OipModels, instrument_servicer

__all__ = ["instrument"]


def instrument(
    server: Any = None,
    *,
    labels: Mapping[str, Sequence[Any]] | None = None,
    free_text_labels: bool = False,
    deployment_role: str | None = None,
    max_models: int = DEFAULT_MAX_MODELS,
    **http_options: Any,
) -> OipModels:
    """Instrument KServe's REST and gRPC inference endpoints in this process (``server``: the ``ModelServer``,
    accepted for symmetry; KServe's app and servicer are per process). Call it before ``server.start``.
    Options: see ``oip.OipModels`` and ``oip.OipMiddleware``. Idempotent: returns the ``OipModels`` in use."""
    import kserve.model_server as model_server
    from kserve.protocol.grpc.servicer import InferenceServicer

    models = instrument_servicer(  # idempotent: the models already in use, if any
        InferenceServicer,
        labels=labels,
        free_text_labels=free_text_labels,
        deployment_role=deployment_role,
        max_models=max_models,
    )
    app = model_server.app
    if not any(getattr(mw, "cls", None) is OipMiddleware for mw in app.user_middleware):
        app.add_middleware(OipMiddleware, models=models, **http_options)
    return models
