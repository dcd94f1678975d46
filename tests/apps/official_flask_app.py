"""A Flask app with no telemetry code at all: run it under the official auto-instrumentation.

    opentelemetry-instrument python tests/apps/official_flask_app.py PORT

(werkzeug's threaded server, as ``flask run`` would start it), with OTEL_PYTHON_DISABLED_INSTRUMENTATIONS naming
modelotel's own instrumentors so only the official ones run. Used by tests/e2e/test_foreign_telemetry.py.

Routes as in official_fastapi_app.py (APP_FAST_MS / APP_MEDIUM_MS / APP_SLOW_MS, defaults 30 / 150 / 300):
``/fast``, ``/medium``, ``/slow`` 200;
``/boom`` raises (Flask answers 500); ``/fail`` 500; ``/unavailable`` 503; ``/bad`` 400 (``abort``); others 404.

Stopping. werkzeug installs no SIGTERM handler, so SIGTERM kills the interpreter before its exit handlers run,
among them the OpenTelemetry SDK's MeterProvider shutdown (its final export). With APP_FLUSH_ON_SIGTERM=1 the app
turns SIGTERM into ``sys.exit(0)`` (the standard Python way to run exit handlers on SIGTERM), so the SDK flushes.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from flask import Flask, abort

FAST_S = float(os.environ.get("APP_FAST_MS", "30")) / 1000
MEDIUM_S = float(os.environ.get("APP_MEDIUM_MS", "150")) / 1000
SLOW_S = float(os.environ.get("APP_SLOW_MS", "300")) / 1000

app = Flask(__name__)


class HandlerFailure(Exception):
    pass


@app.get("/fast")
def fast():
    time.sleep(FAST_S)
    return {"route": "fast"}


@app.get("/medium")
def medium():
    time.sleep(MEDIUM_S)
    return {"route": "medium"}


@app.get("/slow")
def slow():
    time.sleep(SLOW_S)
    return {"route": "slow"}


@app.get("/boom")
def boom():
    time.sleep(FAST_S)
    raise HandlerFailure("the handler raised")


@app.get("/fail")
def fail():
    time.sleep(FAST_S)
    return {"error": "failed"}, 500


@app.get("/unavailable")
def unavailable():
    time.sleep(FAST_S)
    return {"error": "unavailable"}, 503


@app.get("/bad")
def bad():
    time.sleep(FAST_S)
    abort(400)


if __name__ == "__main__":
    if os.environ.get("APP_FLUSH_ON_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
