"""FastAPI, Flask and gRPC servers whose spans go through modelotel's own TracerProvider (no application one).

    python tests/apps/traced_app.py fastapi|flask|grpc PORT

modelotel configures itself from the environment (MODELOTEL_EXPORT_FILE, MODELOTEL_TRACES=span), so
spans take the fast path: queued LightSpans, encoded to the OTLP-JSON file by the export thread.
Routes: ``/predict/{kind}`` calls the ``@instrument_model`` function, ``/fail`` raises (its message
holds an e-mail address, which must not reach the file). gRPC: ``/pkg.Traced/Predict`` with
``b"fail"`` raising. Each server stops on SIGINT and exports what is left.
"""

from __future__ import annotations

import sys

import modelotel


class Failure(Exception):
    pass


@modelotel.instrument_model(name="traced-model", version="1")
def predict(x):
    return [0.25, 0.75]


def fail():
    raise Failure("failed for jane.doe@example.com")


def fastapi_app():
    from fastapi import FastAPI

    from modelotel.integrations.fastapi import instrument_app

    app = FastAPI()

    @app.get("/predict/{kind}")
    def handle(kind: str):
        return {"kind": kind, "p": predict([1.0])}

    @app.get("/fail")
    def failing():
        fail()

    return instrument_app(app)


def flask_app():
    from flask import Flask

    from modelotel.integrations.flask import instrument_app

    app = Flask(__name__)

    @app.get("/predict/<kind>")
    def handle(kind):
        return {"kind": kind, "p": predict([1.0])}

    @app.get("/fail")
    def failing():
        fail()

    return instrument_app(app)


def serve_grpc(port: int) -> None:
    from concurrent import futures

    import grpc

    from modelotel.integrations.grpc import server_interceptor

    def unary(request: bytes, context) -> bytes:
        if request == b"fail":
            fail()
        return str(predict([1.0])).encode()

    methods = {"Predict": grpc.unary_unary_rpc_method_handler(unary)}
    handler = grpc.method_handlers_generic_handler("pkg.Traced", methods)
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[server_interceptor()])
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(None)


if __name__ == "__main__":
    framework, port = sys.argv[1], int(sys.argv[2])
    modelotel.configure()
    if framework == "fastapi":
        import uvicorn

        uvicorn.run(fastapi_app(), host="127.0.0.1", port=port, log_level="warning")
    elif framework == "flask":
        from werkzeug.serving import run_simple

        try:
            run_simple("127.0.0.1", port, flask_app())
        except KeyboardInterrupt:
            pass
    else:
        serve_grpc(port)
