"""A small Flask model server for the WSGI tests, in-process and under gunicorn.

    gunicorn -w 2 -b 127.0.0.1:0 --chdir <repo> tests.apps.wsgi_app:app

``create_app()`` builds a fresh, uninstrumented app (the tests instrument some instances and keep
others bare to compare responses); ``app`` is an instrumented one for servers. With
``WSGI_APP_CONFIGURE=1`` the module calls ``modelotel.configure()`` at import, so a preloading
server (``gunicorn --preload``) forks with modelotel already running.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, abort, stream_with_context

import modelotel
from modelotel.integrations.flask import instrument_app


class AppError(Exception):
    """What the failing view raises (tests check that Flask's handlers see this very object)."""


def create_app(model_name: str = "wsgi-model") -> Flask:
    app = Flask(__name__)
    app.config["RAISED"] = []  # every AppError the /fail view raised, in order

    @modelotel.instrument_model(name=model_name, version="1")
    def predict(features):
        return [0.2, 0.8]

    app.config["PREDICT"] = predict

    @app.get("/items/<int:item_id>")
    def item(item_id: int):
        return {"item": item_id}

    @app.post("/predict")
    def predict_view():
        return {"p": predict([1.0, 2.0])}

    @app.get("/fail")
    def fail():
        exc = AppError("view failed")
        app.config["RAISED"].append(exc)
        raise exc

    @app.get("/busy")
    def busy():
        return "try later", 503

    @app.get("/forbidden")
    def forbidden():
        abort(403)

    @app.get("/lines")
    def lines():
        @stream_with_context
        def generate():
            for i in range(5):
                yield f"line {i}\n"

        return Response(generate(), mimetype="text/plain")

    @app.get("/pid")
    def pid():
        return {"pid": os.getpid()}

    @app.get("/slow")
    def slow():
        time.sleep(0.05)  # long enough that concurrent requests land on different workers
        return {"pid": os.getpid()}

    return app


if os.environ.get("WSGI_APP_CONFIGURE") == "1":
    modelotel.configure()

app = instrument_app(create_app(), models={"/predict": ("wsgi-route-model", "1")})
