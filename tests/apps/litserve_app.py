"""LitServe hosting two models in one server (two ``LitAPI``s, two paths), modelotel added by one line each.

Run in the LitServe venv (tests/server_venv.sh litserve) with modelotel on PYTHONPATH: ``python litserve_app.py
PORT``. ``iris`` (POST /iris, version 1) answers class probabilities; ``lang`` (POST /lang, version 2) answers
labels. LitServe runs ``predict`` in its inference worker processes (spawned: they import this module, so the
decorator applies there, and each worker exports its own data under its own service.instance.id).
"""

import signal
import sys

import litserve as ls
import numpy as np

import modelotel

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]])
LANGS = ["en", "fr", "de"]


class Iris(ls.LitAPI):
    def decode_request(self, request):
        return request["x"]

    # the one line
    @modelotel.instrument_model(name="iris", version="1", labels=["setosa", "versicolor", "virginica"])
    def predict(self, x):
        n = np.asarray(x, dtype=float).shape[0]  # a malformed input raises here: counted as the model's error
        return np.tile(PROBS, (n // 3 + 1, 1))[:n]

    def encode_response(self, output):
        return {"probs": output.tolist()}


class Lang(ls.LitAPI):
    def decode_request(self, request):
        return request["x"]

    @modelotel.instrument_model(name="lang", version="2", labels=LANGS)
    def predict(self, x):
        n = np.asarray(x, dtype=float).shape[0]
        return [LANGS[i % 3] for i in range(n)]

    def encode_response(self, output):
        return output


def interrupt(signum, frame):
    raise KeyboardInterrupt  # LitServe stops its inference workers on Ctrl+C; on SIGTERM it would leave them running


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, interrupt)
    apis = [Iris(api_path="/iris"), Lang(api_path="/lang")]
    server = ls.LitServer(apis, accelerator="cpu", devices=1, workers_per_device=1)
    server.run(host="127.0.0.1", port=int(sys.argv[1]), generate_client_file=False)
