"""Per-request cost of the Open Inference Protocol integration (``modelotel.integrations.oip``).

In the style of ``middleware.py`` (its ``interleave_requests``: variants alternating request by request in a
fresh random order, process CPU time, median over rounds of the per-round means, the first round a warm-up):

* REST: a FastAPI OIP app (``POST /v2/models/iris/versions/1/infer`` answering a [3, 3] FP32 probability
  tensor) called directly through ASGI, no sockets: bare; ``ModelotelMiddleware`` (HTTP metrics only, for
  reference); ``OipMiddleware(http=False)`` (the per-model metrics and output decoding alone);
  ``OipMiddleware`` (both). Metrics only (``traces=False``).
* gRPC: the ``ModelInfer`` wrapper (``oip_aio_server_interceptor``'s behaviour) around an async servicer
  returning the same tensor as ``InferTensorContents``, called in-process (no network), against the bare one.
* The export thread's share: the responses the request path kept, parsed and decoded, and their rows folded
  (max/argmax of every row), per call.

    python benchmarks/oip_middleware.py [--rounds 15] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request  # module level: the endpoint's string annotations resolve here

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # oip_messages: ModelInfer messages without generated stubs
from middleware import interleave_calls, interleave_requests  # noqa: E402

from _results import machine_line, write_section  # noqa: E402

PATH = "/v2/models/iris/versions/1/infer"
BODY = b'{"id":"1","inputs":[{"name":"x","shape":[3,4],"datatype":"FP32","data":[0,0,0,0,0,0,0,0,0,0,0,0]}]}'
PROBS = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]]


def make_app():
    app = FastAPI()

    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, version: str, request: Request):
        body = await request.json()
        return {
            "model_name": name,
            "model_version": version,
            "id": body["id"],
            "outputs": [{"name": "probs", "shape": [3, 3], "datatype": "FP32", "data": PROBS}],
        }

    return app


def post(app, status: list):
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive():
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    async def request():
        await app(dict(scope), receive, send)

    return request


class _Context:
    """The one ServicerContext method the wrapper calls, answering as a successful call does."""

    def code(self):
        return None


def make_response_body() -> bytes:
    import json

    outputs = [{"name": "probs", "shape": [3, 3], "datatype": "FP32", "data": PROBS}]
    return json.dumps({"model_name": "iris", "model_version": "1", "id": "1", "outputs": outputs}).encode()


def grpc_response():
    import oip_messages as pb

    return pb.ModelInferResponse(
        model_name="iris",
        model_version="1",
        outputs=[
            pb.InferOutputTensor(
                name="probs",
                datatype="FP32",
                shape=[3, 3],
                contents=pb.InferTensorContents(fp32_contents=np.ravel(PROBS).tolist()),
            )
        ],
    )


def grpc_runner(wrap: bool):
    from modelotel.integrations.oip import OipModels, instrument_servicer

    import oip_messages as pb

    response = grpc_response()

    class Servicer:
        async def ModelInfer(self, request, context):  # noqa: N802 - the protocol's name
            return response

    if wrap:
        instrument_servicer(Servicer, OipModels())
    servicer, request, context = Servicer(), pb.ModelInferRequest(model_name="iris", model_version="1"), _Context()
    loop = asyncio.new_event_loop()

    def call():
        coro = servicer.ModelInfer(request, context)
        try:
            coro.send(None)  # completes without suspending: no event loop round trip in the figure
        except StopIteration as stop:
            assert stop.value is response

    return call, loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

    import modelotel
    from modelotel.integrations.asgi import ModelotelMiddleware
    from modelotel.integrations.oip import GrpcResponse, OipMiddleware, OipModels, RestResponse

    class Discard(MetricExporter):
        def export(self, metrics_data, timeout_millis=10_000, **kwargs):
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis=10_000):
            return True

        def shutdown(self, timeout_millis=30_000, **kwargs):
            pass

    modelotel.configure(service_name="oip-bench", exporter=Discard(), export_interval=3600, traces=False)
    status: list[int] = []
    builders = {
        "bare": lambda app: app,
        "HTTP middleware (ModelotelMiddleware)": lambda app: ModelotelMiddleware(app),
        "OipMiddleware(http=False)": lambda app: OipMiddleware(app, http=False),
        "OipMiddleware": lambda app: OipMiddleware(app),
    }
    variants = {
        name: ([post(build(make_app()), status) for _ in range(3)], None, None) for name, build in builders.items()
    }
    loop = asyncio.new_event_loop()
    for requesters, _, _ in variants.values():
        loop.run_until_complete(requesters[0]())
    assert set(status) == {200}, status
    gc.freeze()
    rest = interleave_requests(variants, args.rounds, args.requests, loop)

    calls = {name: (grpc_runner(wrap)[0], None) for name, wrap in (("bare", False), ("ModelInfer wrapped", True))}
    grpc_medians = interleave_calls(calls, args.rounds * 10, args.requests // 10)

    # the export thread's share: the responses of N calls parsed and decoded, their rows folded, at once
    fold = {}
    rest_body = make_response_body()
    grpc_message = grpc_response()
    n = 3000
    for kind, response in (("REST", lambda: RestResponse(rest_body)), ("gRPC", lambda: GrpcResponse(grpc_message))):
        models = OipModels()
        modelotel.force_flush()
        times = []
        for _ in range(5):
            for _ in range(n):
                models.record("iris", "1", 1000, response())
            t0 = time.process_time_ns()
            modelotel.force_flush()
            times.append((time.process_time_ns() - t0) / n)
        fold[kind] = float(np.median(times))
    modelotel.shutdown()

    bare = rest["bare"]
    lines = [
        f"Machine: {machine_line()}. Metrics only (traces off); process CPU time; variants alternating request by "
        f"request in a fresh random order, {args.rounds} rounds of {args.requests} requests (after a warm-up round), "
        "median of the per-round means.",
        "",
        "**REST (FastAPI OIP app, ASGI called directly, a [3, 3] FP32 output decoded)**",
        "",
        "| variant | median us/request | added us |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {v / 1000:,.1f} | {(v - bare) / 1000:,.1f} |" for name, v in rest.items()]
    gbare = grpc_medians["bare"]
    lines += [
        "",
        f"**gRPC `ModelInfer` (the wrapper called in-process, {args.rounds * 10} rounds of {args.requests // 10} "
        "calls)**",
        "",
        "| variant | median us/call | added us |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {v / 1000:,.2f} | {(v - gbare) / 1000:,.2f} |" for name, v in grpc_medians.items()]
    lines += [
        "",
        f"Export thread (off the request path): parsing and decoding the responses of {n} calls and folding their "
        f"rows (3 each: max and argmax, labels counted) costs {fold['REST'] / 1000:,.1f} us per REST call and "
        f"{fold['gRPC'] / 1000:,.1f} us per gRPC call (median of 5 folds).",
    ]
    body = "\n".join(lines)
    print(body)
    write_section(
        HERE / "RESULTS.md", "oip", "Open Inference Protocol middleware (`benchmarks/oip_middleware.py`)", body
    )


if __name__ == "__main__":
    main()
