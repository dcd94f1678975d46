"""KServe's Python model server hosting two models, with modelotel added by one line.

Run in the KServe venv (tests/server_venv.sh kserve) with modelotel on PYTHONPATH:
``python kserve_app.py --http_port P --grpc_port G`` (KServe reads its own flags from argv). ``iris`` answers a
[n, 3] FP32 probability tensor and names its version in the response; ``lang`` answers BYTES labels.
"""

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

import modelotel.integrations.kserve

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]], dtype=np.float32)
LANGS = ["en", "fr", "de"]


class Iris(Model):
    def __init__(self) -> None:
        super().__init__("iris")
        self.ready = True

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        n = payload.inputs[0].shape[0]
        rows = np.tile(PROBS, (n // 3 + 1, 1))[:n]
        out = InferOutput(name="probs", shape=[n, 3], datatype="FP32", data=rows)
        return InferResponse(payload.id, self.name, [out], model_version="1", from_grpc=payload.from_grpc)


class Lang(Model):
    def __init__(self) -> None:
        super().__init__("lang")
        self.ready = True

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        n = payload.inputs[0].shape[0]
        out = InferOutput(name="label", shape=[n], datatype="BYTES", data=[LANGS[i % 3] for i in range(n)])
        return InferResponse(payload.id, self.name, [out], from_grpc=payload.from_grpc)


if __name__ == "__main__":
    server = ModelServer()
    # the one line (modelotel configures itself from the environment: MODELOTEL_EXPORT_FILE here)
    modelotel.integrations.kserve.instrument(server, labels={"iris": ["setosa", "versicolor", "virginica"]})
    server.start([Iris(), Lang()])
