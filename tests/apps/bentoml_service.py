"""A BentoML service hosting two models (two APIs: POST /iris and POST /lang), modelotel added by one line each.

Served by ``bentoml serve bentoml_service:Models --port P`` from tests/apps, in the BentoML venv
(tests/server_venv.sh bentoml) with modelotel on PYTHONPATH. BentoML runs the service in a worker process it
spawns; that process imports this module, so the decorator applies there, and exports under its own
service.instance.id.
"""

import bentoml
import numpy as np

import modelotel

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]])
LANGS = ["en", "fr", "de"]


@bentoml.service(workers=1)
class Models:
    @bentoml.api
    # the one line, under @bentoml.api (which reads the signature through it)
    @modelotel.instrument_model(name="iris", version="1", labels=["setosa", "versicolor", "virginica"])
    def iris(self, x: list) -> dict:
        n = np.asarray(x, dtype=float).shape[0]  # a malformed input raises here: counted as the model's error
        return {"probs": np.tile(PROBS, (n // 3 + 1, 1))[:n].tolist()}

    @bentoml.api
    @modelotel.instrument_model(name="lang", version="2", labels=LANGS)
    def lang(self, x: list) -> list:
        n = np.asarray(x, dtype=float).shape[0]
        return [LANGS[i % 3] for i in range(n)]
