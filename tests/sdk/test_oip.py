"""The Open Inference Protocol integration: a real OIP REST app under uvicorn and a real grpc.aio server on
loopback, two models each, exact counts per model and version; output decoding against numpy on raw data."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

import grpc
import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from hypothesis import given, settings
from hypothesis import strategies as st

import modelotel
from modelotel import conventions as conv
from modelotel.extract import SUM_TOLERANCE
from modelotel.integrations.oip import (
    GRPC_MODEL_INFER,
    GrpcResponse,
    OipMiddleware,
    OipModels,
    RestResponse,
    oip_aio_server_interceptor,
)
from modelotel.metrics.selftelemetry import SELF

import oip_messages as pb
from collector_support import wait_for
from conftest import MemoryMetricExporter, total_count

NAME, VERSION, ROLE = conv.MODEL_NAME, conv.MODEL_VERSION, conv.DEPLOYMENT_ROLE
IRIS = ["setosa", "versicolor", "virginica"]


@pytest.fixture
def exporter():
    exp = MemoryMetricExporter()
    modelotel.configure(service_name="oip-test", exporter=exp, export_interval=3600, traces=False)
    yield exp
    modelotel.shutdown()


def _flushed(exp: MemoryMetricExporter, name: str) -> list:
    modelotel.force_flush()
    return exp.last_points(name)


# -- a real OIP REST app --------------------------------------------------------------------------------

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]], dtype=np.float32)


def oip_app() -> FastAPI:
    """Two models the way an OIP server answers them: ``iris`` (FP32 [n, 3] probabilities, versions 1 and 2)
    and ``lang`` (BYTES labels), plus the failures a server has."""
    app = FastAPI()

    async def infer(name: str, version: str | None, request: Request):
        body = await request.json()
        n = int(body["inputs"][0]["shape"][0])
        if name == "iris":
            rows = np.tile(PROBS, (n // 3 + 1, 1))[:n]
            out = {"name": "probs", "shape": [n, 3], "datatype": "FP32", "data": rows.tolist()}  # nested: allowed
        elif name == "lang":
            out = {"name": "label", "shape": [n], "datatype": "BYTES", "data": ["en", "fr", "secret text"][:n]}
        elif name == "broken":
            return JSONResponse({"error": "boom"}, status_code=500)
        elif name == "bad":  # data that does not match its shape
            out = {"name": "x", "shape": [4, 2], "datatype": "FP64", "data": [0.5, 0.5]}
        else:
            return JSONResponse({"error": f"model {name} not found"}, status_code=404)
        return {"model_name": name, "model_version": version or "7", "outputs": [out]}

    @app.post("/v2/models/{name}/infer")
    async def infer_latest(name: str, request: Request):
        return await infer(name, None, request)

    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer_version(name: str, version: str, request: Request):
        return await infer(name, version, request)

    @app.get("/v2/health/ready")
    async def ready():
        return {}

    return app


@contextlib.contextmanager
def serving(app):
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 10, "uvicorn startup", interval=0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)


def _request(n: int) -> dict:
    return {"inputs": [{"name": "x", "shape": [n, 4], "datatype": "FP32", "data": [0.0] * (4 * n)}]}


def test_rest_two_models_exact_counts(exporter):
    app = oip_app()
    app.add_middleware(OipMiddleware, labels={"iris": IRIS, "lang": ["en", "fr"]})
    client_s = []  # what the client measured for each iris v1 call
    with serving(app) as url, httpx.Client(base_url=url) as client:
        for _ in range(4):
            t0 = time.perf_counter()
            assert client.post("/v2/models/iris/versions/1/infer", json=_request(3)).status_code == 200
            client_s.append(time.perf_counter() - t0)
        for _ in range(2):
            assert client.post("/v2/models/iris/versions/2/infer", json=_request(2)).status_code == 200
        for _ in range(5):
            assert client.post("/v2/models/lang/infer", json=_request(3)).status_code == 200
        assert client.post("/v2/models/broken/infer", json=_request(1)).status_code == 500
        assert client.post("/v2/models/nope/infer", json=_request(1)).status_code == 404
        assert client.post("/v2/models/bad/infer", json=_request(1)).status_code == 200
        assert client.get("/v2/health/ready").status_code == 200  # not an inference: no model series

    durations = _flushed(exporter, conv.INFERENCE_DURATION)
    ok = [p for p in durations if conv.ERROR_TYPE not in p.attributes]
    assert {(p.attributes[NAME], p.attributes[VERSION]): p.count for p in ok} == {
        ("iris", "1"): 4,
        ("iris", "2"): 2,
        ("lang", "7"): 5,  # no version in the path: the response's model_version
        ("bad", "7"): 1,
    }
    assert all(p.attributes[ROLE] == "primary" for p in durations)
    # each server-side duration lies inside its client's request window (and is not zero)
    (v1_duration,) = [p for p in ok if p.attributes[VERSION] == "1"]
    assert v1_duration.min > 0 and v1_duration.max <= max(client_s) and v1_duration.sum <= sum(client_s)
    errors = [p for p in durations if conv.ERROR_TYPE in p.attributes]
    assert [(p.attributes[NAME], p.attributes[conv.ERROR_TYPE], p.count) for p in errors] == [("broken", "500", 1)]
    assert not any(p.attributes[NAME] == "nope" for p in durations)  # 404: no series

    preds = exporter.last_points(conv.PREDICTIONS)
    # iris v1: 4 calls x rows 0,1,2 of PROBS -> argmax 0, 2, 1 once each per call
    for label, n in (("setosa", 4), ("virginica", 4), ("versicolor", 4)):
        assert total_count(preds, **{NAME: "iris", VERSION: "1", conv.PREDICTION_LABEL: label}) == n
    assert total_count(preds, **{NAME: "iris", VERSION: "2"}) == 4
    assert total_count(preds, **{NAME: "lang", conv.PREDICTION_LABEL: "en"}) == 5
    assert total_count(preds, **{NAME: "lang", conv.PREDICTION_LABEL: "fr"}) == 5
    unlabelled = [p for p in preds if p.attributes[NAME] == "lang" and conv.PREDICTION_LABEL not in p.attributes]
    assert sum(p.value for p in unlabelled) == 5  # "secret text" was not declared: counted, label withheld
    assert total_count(preds, **{NAME: "bad"}) == 1

    conf = exporter.last_points(conv.PREDICTION_CONFIDENCE_METRIC)
    (v1,) = [p for p in conf if p.attributes[NAME] == "iris" and p.attributes[VERSION] == "1"]
    assert v1.count == 12
    assert v1.sum == pytest.approx(4 * float(PROBS.astype(np.float64).max(axis=1).sum()), rel=1e-12)
    misses = exporter.last_points(conv.EXTRACT_MISSES)
    assert total_count(misses, **{NAME: "bad"}) == 1
    dropped = exporter.last_points(conv.DROPPED)
    assert total_count(dropped, **{conv.DROP_REASON: "oip_model_not_found"}) == 1
    # the HTTP metric of every request too (http=True)
    assert total_count(exporter.last_points(conv.HTTP_SERVER_DURATION)) == 4 + 2 + 5 + 1 + 1 + 1 + 1


# -- a real grpc.aio server ---------------------------------------------------------------------------------


def _grpc_response(request) -> object:
    n = 3
    if request.model_name == "iris":
        out = pb.InferOutputTensor(
            name="probs",
            datatype="FP64",
            shape=[n, 3],
            contents=pb.InferTensorContents(fp64_contents=PROBS.astype(np.float64).ravel().tolist()),
        )
        return pb.ModelInferResponse(model_name="iris", model_version=request.model_version, outputs=[out])
    # raw_output_contents: BYTES elements as 4-byte little-endian length + bytes
    raw = b"".join(len(s).to_bytes(4, "little") + s for s in (b"en", b"fr", b"en"))
    out = pb.InferOutputTensor(name="label", datatype="BYTES", shape=[n])
    return pb.ModelInferResponse(model_name="lang", model_version="3", outputs=[out], raw_output_contents=[raw])


class _Servicer:
    async def infer(self, request, context):
        if request.model_name == "nope":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such model")
        if request.model_name == "broken":
            raise RuntimeError("model failed")
        return _grpc_response(request)


def _run_grpc(calls: list[tuple[str, str]], interceptor) -> list[grpc.StatusCode]:
    async def main() -> list[grpc.StatusCode]:
        server = grpc.aio.server(interceptors=[interceptor])
        handler = grpc.unary_unary_rpc_method_handler(
            _Servicer().infer, pb.ModelInferRequest.FromString, pb.ModelInferResponse.SerializeToString
        )
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {"ModelInfer": handler})]
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        codes = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                infer = channel.unary_unary(
                    GRPC_MODEL_INFER, pb.ModelInferRequest.SerializeToString, pb.ModelInferResponse.FromString
                )
                for name, version in calls:
                    try:
                        await infer(pb.ModelInferRequest(model_name=name, model_version=version))
                        codes.append(grpc.StatusCode.OK)
                    except grpc.aio.AioRpcError as exc:
                        codes.append(exc.code())
        finally:
            await server.stop(None)
        return codes

    return asyncio.run(main())


def test_grpc_interceptor_two_models_exact_counts(exporter):
    calls = [("iris", "1")] * 3 + [("iris", "2")] * 2 + [("lang", "")] * 4 + [("broken", "1"), ("nope", "")]
    codes = _run_grpc(calls, oip_aio_server_interceptor(labels={"iris": IRIS, "lang": ["en", "fr"]}))
    assert codes == [grpc.StatusCode.OK] * 9 + [grpc.StatusCode.UNKNOWN, grpc.StatusCode.NOT_FOUND]

    durations = _flushed(exporter, conv.INFERENCE_DURATION)
    got = {(p.attributes[NAME], p.attributes[VERSION], p.attributes.get(conv.ERROR_TYPE)): p.count for p in durations}
    assert got == {
        ("iris", "1", None): 3,
        ("iris", "2", None): 2,
        ("lang", "3", None): 4,
        ("broken", "1", "RuntimeError"): 1,
    }
    preds = exporter.last_points(conv.PREDICTIONS)
    assert total_count(preds, **{NAME: "iris", VERSION: "1", conv.PREDICTION_LABEL: "virginica"}) == 3
    assert total_count(preds, **{NAME: "iris", VERSION: "2"}) == 6
    assert total_count(preds, **{NAME: "lang", conv.PREDICTION_LABEL: "en"}) == 8
    assert total_count(preds, **{NAME: "lang", conv.PREDICTION_LABEL: "fr"}) == 4
    conf = exporter.last_points(conv.PREDICTION_CONFIDENCE_METRIC)
    (v2,) = [p for p in conf if p.attributes[NAME] == "iris" and p.attributes[VERSION] == "2"]
    assert v2.count == 6 and v2.max == pytest.approx(float(np.float32(0.7)), rel=1e-12)
    dropped = exporter.last_points(conv.DROPPED)
    assert total_count(dropped, **{conv.DROP_REASON: "oip_model_not_found"}) == 1


def rest(*outputs) -> RestResponse:
    """A REST response body, as bytes, with these outputs."""
    return RestResponse(json.dumps({"outputs": list(outputs)}).encode())


def test_model_limit_is_a_counted_drop(exporter):
    models = OipModels(max_models=2)
    for i in range(5):
        models.record(f"m{i}", "1", 1000, rest({"shape": [1], "datatype": "FP32", "data": [1.0]}))
    durations = _flushed(exporter, conv.INFERENCE_DURATION)
    assert sorted(p.attributes[NAME] for p in durations) == ["m0", "m1"]
    assert total_count(exporter.last_points(conv.DROPPED), **{conv.DROP_REASON: "oip_model_limit"}) == 3


# -- decoding, against numpy on the raw data ------------------------------------------------------------


@st.composite
def prob_matrices(draw):
    n = draw(st.integers(1, 20))
    k = draw(st.integers(2, 6))
    raw = draw(st.lists(st.integers(1, 1000), min_size=n * k, max_size=n * k))
    m = np.asarray(raw, dtype=np.float64).reshape(n, k)
    return m / m.sum(axis=1, keepdims=True)


@settings(max_examples=40, deadline=None)
@given(prob_matrices(), st.sampled_from(["FP32", "FP64"]), st.booleans())
def test_confidence_and_labels_equal_numpy(m, datatype, grpc_wire):
    """Per row, confidence = max and label = argmax, exactly (FP32 rows compared as float32 values)."""
    exp = MemoryMetricExporter()
    modelotel.configure(service_name="oip-prop", exporter=exp, export_interval=3600, traces=False)
    try:
        dtype = np.float32 if datatype == "FP32" else np.float64
        rows = m.astype(dtype)
        if grpc_wire:
            field = "fp32_contents" if datatype == "FP32" else "fp64_contents"
            out = pb.InferOutputTensor(
                datatype=datatype, shape=list(rows.shape), contents=pb.InferTensorContents(**{field: rows.ravel()})
            )
            response = GrpcResponse(
                pb.ModelInferResponse.FromString(pb.ModelInferResponse(outputs=[out]).SerializeToString())
            )
        else:
            response = rest({"shape": list(rows.shape), "datatype": datatype, "data": rows.ravel().tolist()})
        OipModels().record("p", "1", 5, response)
        conf = _flushed(exp, conv.PREDICTION_CONFIDENCE_METRIC)
        preds = exp.last_points(conv.PREDICTIONS)
    finally:
        modelotel.shutdown()
    exact = rows.astype(np.float64)
    ok = np.abs(exact.sum(axis=1) - 1.0) <= SUM_TOLERANCE  # the rows extract_rows accepts
    (point,) = conf if ok.any() else (None,)
    if point is not None:
        assert point.count == int(ok.sum())
        assert point.sum == pytest.approx(float(exact.max(axis=1)[ok].sum()), rel=1e-12)
        assert point.max == float(exact.max(axis=1)[ok].max())
    want = np.bincount(exact.argmax(axis=1)[ok], minlength=m.shape[1])
    for label in range(m.shape[1]):
        assert total_count(preds, **{conv.PREDICTION_LABEL: str(label)}) == want[label]
    assert total_count(preds) == m.shape[0]  # every row is a prediction


def test_malformed_outputs_are_counted_not_raised(exporter):
    errors_before = SELF.errors["oip_record"]
    models = OipModels()
    bad = [
        {"shape": [2, 2], "datatype": "FP32", "data": [1.0]},  # data does not match shape
        {"shape": [1], "datatype": "COMPLEX", "data": [1]},  # no such datatype
        {"shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}},  # binary extension
        "not an output",
        {"shape": [2, 2], "datatype": "FP32", "data": [[1.0, 2.0], [3.0]]},  # ragged
        {"shape": ["two"], "datatype": "FP32", "data": [1.0, 2.0]},  # not a shape
        {"shape": [-1, -2], "datatype": "FP32", "data": [1.0, 2.0]},  # negative dimensions
    ]
    for output in bad:
        models.record("m", "1", 10, rest(output))
    models.record("m", "1", 10, RestResponse(b"{not json"))
    models.record("m", "1", 10, RestResponse(None))  # a body not kept (encoded or oversized)
    truncated = pb.InferOutputTensor(datatype="BYTES", shape=[1])
    raw_bytes = pb.ModelInferResponse(outputs=[truncated], raw_output_contents=[b"\x05\x00\x00\x00ab"])
    raw_fp32 = pb.ModelInferResponse(
        outputs=[pb.InferOutputTensor(datatype="FP32", shape=[1])], raw_output_contents=[b"abc"]
    )
    uneven = pb.ModelInferResponse(outputs=[truncated, truncated], raw_output_contents=[b""])
    for message in (raw_bytes, raw_fp32, uneven):
        models.record("m", "1", 10, GrpcResponse(message))
    assert total_count(_flushed(exporter, conv.EXTRACT_MISSES), **{NAME: "m"}) == 12
    assert total_count(exporter.last_points(conv.PREDICTIONS), **{NAME: "m"}) == 12
    assert total_count(exporter.last_points(conv.INFERENCE_DURATION), **{NAME: "m"}) == 12
    assert SELF.errors["oip_record"] == errors_before  # counted as misses, not as our own failures


def test_integer_class_ids_and_regression_outputs(exporter):
    models = OipModels(labels={"c": ["no", "yes"]})
    models.record("c", "1", 10, rest({"shape": [3, 1], "datatype": "INT64", "data": [1, 0, 1]}))
    models.record("r", "1", 10, rest({"shape": [4], "datatype": "FP32", "data": [0.5, 2, 3, 4]}))
    preds = _flushed(exporter, conv.PREDICTIONS)
    assert total_count(preds, **{NAME: "c", conv.PREDICTION_LABEL: "yes"}) == 2
    assert total_count(preds, **{NAME: "c", conv.PREDICTION_LABEL: "no"}) == 1
    assert total_count(preds, **{NAME: "r"}) == 4  # a regression: predictions without a label, no miss
    assert total_count(exporter.last_points(conv.EXTRACT_MISSES)) == 0


def test_request_path_only_appends_and_pending_is_bounded(exporter, monkeypatch):
    """The response is parsed at the fold; past MAX_PENDING calls the request path absorbs them (no loss)."""
    import modelotel.integrations.oip as oip

    monkeypatch.setattr(oip, "MAX_PENDING", 10)
    models = OipModels(labels={"iris": IRIS})
    body = {"model_version": "4", "outputs": [{"shape": [1, 3], "datatype": "FP64", "data": [0.1, 0.2, 0.7]}]}
    for _ in range(25):
        models.record("iris", None, 10, RestResponse(json.dumps(body).encode()))
        assert len(models.pending) <= 10
    assert models.models() == [("iris", "4")]  # absorbed twice on the request path already
    preds = _flushed(exporter, conv.PREDICTIONS)
    assert total_count(preds, **{NAME: "iris", VERSION: "4", conv.PREDICTION_LABEL: "virginica"}) == 25


def test_gzip_outside_is_read_before_compression_inside_is_a_counted_miss(exporter):
    """Starlette's GZip middleware rewrites the body message in place: read before passing it on. A middleware
    that runs outside GZip gets compressed bytes, which it does not inflate: a counted miss, not a wrong label."""
    from starlette.middleware.gzip import GZipMiddleware

    inner = oip_app()  # OipMiddleware inside GZip (added first: the innermost user middleware)
    inner.add_middleware(OipMiddleware, labels={"iris": IRIS}, http=False)
    inner.add_middleware(GZipMiddleware, minimum_size=100)
    outer = oip_app()  # OipMiddleware outside GZip
    outer.add_middleware(GZipMiddleware, minimum_size=100)
    outer.add_middleware(OipMiddleware, labels={"iris": IRIS}, http=False)
    for app, version in ((inner, "1"), (outer, "2")):
        with serving(app) as url, httpx.Client(base_url=url) as client:
            response = client.post(f"/v2/models/iris/versions/{version}/infer", json=_request(30))
            assert response.status_code == 200 and response.headers["content-encoding"] == "gzip"
            assert len(response.json()["outputs"][0]["data"]) == 30
    preds = _flushed(exporter, conv.PREDICTIONS)
    for label in IRIS:
        assert total_count(preds, **{NAME: "iris", VERSION: "1", conv.PREDICTION_LABEL: label}) == 10
    assert total_count(preds, **{NAME: "iris", VERSION: "2"}) == 1  # one unreadable response: one prediction
    assert total_count(exporter.last_points(conv.EXTRACT_MISSES), **{VERSION: "2"}) == 1
    assert total_count(exporter.last_points(conv.EXTRACT_MISSES), **{VERSION: "1"}) == 0


def test_model_names_from_the_request_are_scrubbed_and_capped(exporter):
    models = OipModels()
    models.record("jane.doe@example.com", "1", 10, rest({"shape": [1], "datatype": "FP32", "data": [1.0]}))
    models.record("m" * 500, "1", 10, rest({"shape": [1], "datatype": "FP32", "data": [1.0]}))
    names = {p.attributes[NAME] for p in _flushed(exporter, conv.INFERENCE_DURATION)}
    assert len(names) == 2
    assert not any("jane.doe@example.com" in n for n in names)
    assert all(len(n) <= 128 for n in names)
