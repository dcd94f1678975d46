"""An app with no modelotel code in it but @instrument_model: run under `opentelemetry-instrument`.

python tests/apps/auto_app.py fastapi|flask PORT
"""

import sys

import modelotel


@modelotel.instrument_model(name="auto-model", version="1")
def predict(x):
    return [0.25, 0.75]


def fastapi_app():
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/predict/{kind}")
    def handle(kind: str):
        return {"kind": kind, "p": predict([1.0])}

    return app


def flask_app():
    from flask import Flask

    app = Flask(__name__)

    @app.post("/predict/<kind>")
    def handle(kind):
        return {"kind": kind, "p": predict([1.0])}

    return app


if __name__ == "__main__":
    framework, port = sys.argv[1], int(sys.argv[2])
    if framework == "fastapi":
        import uvicorn

        uvicorn.run(fastapi_app(), host="127.0.0.1", port=port, log_level="warning")
    else:
        from werkzeug.serving import run_simple

        run_simple("127.0.0.1", port, flask_app())
