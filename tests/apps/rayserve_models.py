"""Two Ray Serve deployments, modelotel added by one line each, in ``__init__`` (imported by rayserve_app.py).

Ray pickles a ``@serve.deployment`` class by value (the decorator shadows the class's name in its module), and a
method decorated in the class body carries modelotel's per-process state (locks, buffers), which cannot be
pickled: ``serve.run`` refuses it. Decorated in ``__init__``, the method is wrapped in the replica's process.
"""

import numpy as np
from ray import serve

import modelotel

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]])
LANGS = ["en", "fr", "de"]
IRIS = ["setosa", "versicolor", "virginica"]


@serve.deployment(ray_actor_options={"num_cpus": 0})  # the cluster has 1 CPU; replicas need none reserved
class Iris:
    def __init__(self):
        # the one line
        self.predict = modelotel.instrument_model(name="iris", version="1", labels=IRIS)(self.predict)

    def predict(self, x):
        n = np.asarray(x, dtype=float).shape[0]  # a malformed input raises here: counted as the model's error
        return np.tile(PROBS, (n // 3 + 1, 1))[:n]

    async def __call__(self, request):
        return {"probs": self.predict((await request.json())["x"]).tolist()}


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Lang:
    def __init__(self):
        self.predict = modelotel.instrument_model(name="lang", version="2", labels=LANGS)(self.predict)

    def predict(self, x):
        n = np.asarray(x, dtype=float).shape[0]
        return [LANGS[i % 3] for i in range(n)]

    async def __call__(self, request):
        return self.predict((await request.json())["x"])
