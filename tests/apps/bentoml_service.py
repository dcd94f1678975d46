"""A BentoML service hosting two models (two APIs: POST /iris and POST /lang), modelotel added by one line each,
and a batched one (POST /ranker: the Ranker service behind BentoML's adaptive batching, a dependency of Models).

Served by ``bentoml serve bentoml_service:Models --port P`` from tests/apps, in the BentoML venv
(tests/server_venv.sh bentoml) with modelotel on PYTHONPATH. BentoML runs each service in worker processes it
spawns; they import this module, so the decorator applies there, and each exports under its own
service.instance.id. The ranker's tickets are taken in Models' process and its batches timed in Ranker's: both
read CLOCK_MONOTONIC (``time.perf_counter_ns``), one clock for the host.
"""

import bentoml
import numpy as np

import modelotel

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]])
LANGS = ["en", "fr", "de"]


@bentoml.service(workers=1)
class Ranker:
    """A batched model: BentoML's adaptive batching in front of a predict that takes a list of requests. Its
    callers (Models.ranker) take each request's ticket on arrival and send it along with the input."""

    @modelotel.instrument_model(name="ranker", version="3", labels=["yes", "no"], batched=True)
    def predict(self, xs):
        return np.tile([0.8, 0.2], (len(xs), 1))

    @bentoml.api(batchable=True, max_batch_size=4, max_latency_ms=5000)
    def rank(self, items: list) -> list:  # [[ticket, x]] of one batch
        with self.predict.batch([int(ticket) for ticket, _ in items]):
            probs = self.predict([x for _, x in items])
        return [{"probs": row.tolist(), "batch": len(items)} for row in probs]


@bentoml.service(workers=1)
class Models:
    ranking = bentoml.depends(Ranker)

    @bentoml.api
    async def ranker(self, x: list) -> dict:
        ticket = modelotel.enqueue()  # the request arrives: before it waits for its batch (CLOCK_MONOTONIC, shared)
        (reply,) = await self.ranking.to_async.rank([[ticket, x]])
        return reply

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
