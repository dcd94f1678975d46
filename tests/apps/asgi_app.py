"""A FastAPI app instrumented with modelotel, for multi-worker runs (tests/sdk/test_asgi.py).

    uvicorn asgi_app:app --app-dir tests/apps --workers 2

modelotel configures itself from the environment on the first request of each worker
(MODELOTEL_EXPORT_FILE, OTEL_METRIC_EXPORT_INTERVAL), so every worker exports under its own
service.instance.id and flushes at exit. Responses carry the worker's pid.
"""

import os

from fastapi import FastAPI

from modelotel.integrations.fastapi import instrument_app

app = FastAPI()


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict:
    return {"id": item_id, "pid": os.getpid()}


instrument_app(app)
