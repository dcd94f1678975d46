"""Model servers for the restart tests (tests/e2e/test_restarts.py): each stopped by SIGTERM under load.

``flask_app`` (WSGI middleware + a decorated model) runs under werkzeug's ``app.run()``
(``python tests/apps/restart_app.py PORT``) or gunicorn (``tests.apps.restart_app:flask_app``);
``asgi_app`` (ASGI middleware + a decorated model) under uvicorn. ``POST /predict`` makes one model call;
every response carries the pid that served it. modelotel configures itself from the environment
(MODELOTEL_EXPORT_FILE, OTEL_METRIC_EXPORT_INTERVAL), so only the shutdown export can deliver data
when the interval is long.
"""

from __future__ import annotations

import os
import sys

from fastapi import FastAPI
from flask import Flask

import modelotel
from modelotel.integrations.fastapi import instrument_app as instrument_fastapi
from modelotel.integrations.flask import instrument_app as instrument_flask


@modelotel.instrument_model(name="restart-model", version="1")
def predict(features: list[float]) -> list[float]:
    return [0.25, 0.75]


flask_app = Flask(__name__)


@flask_app.post("/predict")
def flask_predict() -> dict:
    return {"p": predict([1.0, 2.0]), "pid": os.getpid()}


instrument_flask(flask_app)

asgi_app = FastAPI()


@asgi_app.post("/predict")
async def asgi_predict() -> dict:
    return {"p": predict([1.0, 2.0]), "pid": os.getpid()}


instrument_fastapi(asgi_app)


if __name__ == "__main__":  # werkzeug's development server, as `flask run` / app.run() users serve
    flask_app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
