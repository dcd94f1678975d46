"""Three Ray Serve deployments, modelotel added by one line each in ``__init__`` (ranker, batched, also takes a
ticket per request and times each batch; imported by rayserve_app.py).

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
YES_NO = ["yes", "no"]


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


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Ranker:
    """A batched model: Ray's ``@serve.batch`` queue in front of a predict that takes a list of requests."""

    def __init__(self):
        # batched=True: per item, labels and confidences; per request (with predict.batch), latency and queue time
        self.predict = modelotel.instrument_model(name="ranker", version="3", labels=YES_NO, batched=True)(self.predict)

    def predict(self, xs):
        return np.tile([0.8, 0.2], (len(xs), 1))

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.25)
    async def run(self, items):  # [(ticket, x)] of one batch
        with self.predict.batch([ticket for ticket, _ in items]):
            probs = self.predict([x for _, x in items])
        return [{"probs": row.tolist(), "batch": len(items)} for row in probs]

    async def __call__(self, request):
        ticket = modelotel.enqueue()  # the request arrives: before it waits for its batch
        return await self.run((ticket, (await request.json())["x"]))
