"""Seldon MLServer hosting two models (``iris`` in versions 1 and 2, ``lang``), with modelotel added by one line.

Run in the MLServer venv (tests/server_venv.sh mlserver) with modelotel on PYTHONPATH:
``python mlserver_app.py HTTP_PORT GRPC_PORT METRICS_PORT``. ``iris`` answers a [n, 3] FP32 probability
tensor, ``lang`` BYTES labels.
"""

import asyncio
import os
import sys

import numpy as np
from mlserver import MLModel, MLServer
from mlserver.codecs import StringCodec
from mlserver.settings import ModelParameters, ModelSettings, Settings
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput

import modelotel.integrations.mlserver

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]], dtype=np.float32)
LANGS = ["en", "fr", "de"]


class Iris(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        n = payload.inputs[0].shape[0]
        rows = np.tile(PROBS, (n // 3 + 1, 1))[:n]
        out = ResponseOutput(name="probs", shape=[n, 3], datatype="FP32", data=rows.ravel().tolist())
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=[out])


class Lang(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        n = payload.inputs[0].shape[0]
        out = StringCodec.encode_output("label", [LANGS[i % 3] for i in range(n)])  # BYTES, shape [n, 1]
        return InferenceResponse(model_name=self.name, outputs=[out])


async def main(http_port: int, grpc_port: int, metrics_port: int) -> None:
    settings = Settings(
        host="127.0.0.1",
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        parallel_workers=0,  # models in this process (workers change nothing here: OIP is served here)
        load_models_at_startup=False,
    )
    models = [
        ModelSettings(name="iris", implementation="mlserver_app.Iris", parameters=ModelParameters(version="1")),
        ModelSettings(name="iris", implementation="mlserver_app.Iris", parameters=ModelParameters(version="2")),
        ModelSettings(name="lang", implementation="mlserver_app.Lang"),
    ]
    server = MLServer(settings)
    # the one line (modelotel configures itself from the environment: MODELOTEL_EXPORT_FILE here)
    modelotel.integrations.mlserver.instrument(
        server, labels={"iris": ["setosa", "versicolor", "virginica"], "lang": LANGS}
    )
    await server.start(models)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # implementation="mlserver_app.Iris"
    asyncio.run(main(*map(int, sys.argv[1:4])))
