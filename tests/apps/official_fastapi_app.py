"""A FastAPI app with no telemetry code at all: run it under the official auto-instrumentation.

    opentelemetry-instrument uvicorn --app-dir tests/apps official_fastapi_app:app --host 127.0.0.1 --port PORT

(the way the opentelemetry-instrumentation-fastapi docs start an app), with OTEL_PYTHON_DISABLED_INSTRUMENTATIONS
naming modelotel's own instrumentors so only the official ones run. Used by tests/e2e/test_foreign_telemetry.py.

Routes (each sleeps before answering; APP_FAST_MS / APP_MEDIUM_MS / APP_SLOW_MS, defaults 30 / 150 / 300):

* ``GET /fast``, ``GET /medium``, ``GET /slow``: 200 after FAST / MEDIUM / SLOW ms;
* ``GET /boom``: raises (an unhandled exception; Starlette answers 500);
* ``GET /fail``: returns 500; ``GET /unavailable``: returns 503;
* ``GET /bad``: 400 (HTTPException);
* any other path: 404 from the router.

Stopping. uvicorn handles SIGTERM (graceful shutdown, lifespan shutdown) and then raises the same signal again
with the default handler, so the interpreter dies of it before its exit handlers run, among them the
OpenTelemetry SDK's provider shutdown (the final export of metrics and spans). With APP_FLUSH_ON_SIGTERM=1 the
app shuts the global tracer and meter providers down in its lifespan shutdown (``MeterProvider.shutdown()``
collects and exports once more), after uvicorn has finished every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse

FAST_S = float(os.environ.get("APP_FAST_MS", "30")) / 1000
MEDIUM_S = float(os.environ.get("APP_MEDIUM_MS", "150")) / 1000
SLOW_S = float(os.environ.get("APP_SLOW_MS", "300")) / 1000


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    if os.environ.get("APP_FLUSH_ON_SIGTERM") == "1":
        from opentelemetry import metrics, trace

        for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
            shutdown = getattr(provider, "shutdown", None)  # the SDK providers have it, the API's no-ops don't
            if shutdown is not None:
                shutdown()


app = FastAPI(lifespan=lifespan)


class HandlerFailure(Exception):
    pass


@app.get("/fast")
async def fast() -> dict:
    await asyncio.sleep(FAST_S)
    return {"route": "fast"}


@app.get("/medium")
async def medium() -> dict:
    await asyncio.sleep(MEDIUM_S)
    return {"route": "medium"}


@app.get("/slow")
async def slow() -> dict:
    await asyncio.sleep(SLOW_S)
    return {"route": "slow"}


@app.get("/boom")
async def boom() -> dict:
    await asyncio.sleep(FAST_S)
    raise HandlerFailure("the handler raised")


@app.get("/fail")
async def fail() -> JSONResponse:
    await asyncio.sleep(FAST_S)
    return JSONResponse({"error": "failed"}, status_code=500)


@app.get("/unavailable")
async def unavailable() -> JSONResponse:
    await asyncio.sleep(FAST_S)
    return JSONResponse({"error": "unavailable"}, status_code=503)


@app.get("/bad")
async def bad() -> dict:
    await asyncio.sleep(FAST_S)
    raise HTTPException(status_code=400, detail="bad request")
