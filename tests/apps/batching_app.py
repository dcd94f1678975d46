"""A FastAPI app serving a batched model through ``modelotel.AsyncBatcher``, for tests/e2e/test_batching_load.py.

    uvicorn tests.apps.batching_app:app

The model keeps its own record, with its own clock reads, of what modelotel should report: each batch's size,
and per request its queue time (the model's first clock read minus the handler's read before it awaited the
batcher) and its latency (the model's last clock read minus the same). ``GET /measured`` returns those raw
values; ``POST /flush`` exports now (delta temporality, so one flush holds everything since the last).
With ``BATCHING_APP_DECORATED=1`` the predict is decorated with ``@instrument_model(batched=True)`` and the
batcher takes its timer (per-item metrics too); otherwise it is undecorated and the batcher names the model.
"""

import asyncio
import os
import time

from fastapi import FastAPI

import modelotel

app = FastAPI()
MEASURED: dict[str, list] = {"sizes": [], "queue_ns": [], "latency_ns": []}  # queue and latency: [id, ns]


async def predict(items: list[dict]) -> list[dict]:
    start = time.perf_counter_ns()
    # a batch's work: a fixed cost and a per-item cost, or the longest "slow" seconds of its items
    await asyncio.sleep(max(i["slow"] for i in items) or 0.004 + 0.0005 * len(items))
    out = [{"y": i["x"] * 2, "label": "even" if i["x"] % 2 == 0 else "odd", "score": 0.75} for i in items]
    end = time.perf_counter_ns()
    MEASURED["sizes"].append(len(items))
    MEASURED["queue_ns"].extend([i["id"], start - i["t_in"]] for i in items)
    MEASURED["latency_ns"].extend([i["id"], end - i["t_in"]] for i in items)
    return out


if os.environ.get("BATCHING_APP_DECORATED") == "1":
    predict = modelotel.instrument_model("batched-clf", "2", batched=True)(predict)
    batcher = modelotel.AsyncBatcher(predict, max_batch_size=8, max_wait=0.005)
else:
    batcher = modelotel.AsyncBatcher(predict, max_batch_size=8, max_wait=0.005, name="batched-clf", version="2")


@app.post("/predict")
async def predict_one(body: dict) -> dict:
    item = {"id": body["id"], "x": body["x"], "slow": float(body.get("slow", 0)), "t_in": time.perf_counter_ns()}
    return await batcher(item)


@app.get("/measured")
def measured() -> dict:
    return MEASURED


@app.post("/reset")
def reset() -> dict:
    for values in MEASURED.values():
        values.clear()
    return {"flushed": modelotel.force_flush()}


@app.post("/flush")
def flush() -> dict:
    return {"flushed": modelotel.force_flush()}
