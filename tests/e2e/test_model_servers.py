"""KServe's model server and Seldon MLServer, for real: each in its own cached venv (tests/server_venv.sh),
each hosting two models in one server process on loopback, modelotel added with one line; REST and gRPC
requests from here, exact counts per model and version read back from the exported OTLP-JSON file.

A venv that cannot be built skips its test with the reason, except under MODELOTEL_CI=1, where it fails.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import grpc
import httpx
import pytest

from modelotel import conventions as conv
from modelotel.otlp.json import read_json_lines

import oip_messages as pb
from collector_support import Process, free_port, wait_http

HERE = Path(__file__).resolve().parent.parent  # tests/
ROOT = HERE.parent
NAME, VERSION, LABEL, ERR = conv.MODEL_NAME, conv.MODEL_VERSION, conv.PREDICTION_LABEL, conv.ERROR_TYPE
BUILD_TIMEOUT_S = 900
STARTUP_S = 90


def server_venv(name: str) -> Path:
    """The server's cached venv, built on first use; skips (fails under MODELOTEL_CI=1) if it cannot be."""
    proc = subprocess.run(
        ["bash", str(HERE / "server_venv.sh"), name], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
    )
    if proc.returncode != 0:
        message = f"the {name} venv could not be built: {proc.stderr.strip()[-2000:]}"
        if os.environ.get("MODELOTEL_CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(proc.stdout.strip().splitlines()[-1])


def points(path: Path) -> dict[str, list[tuple[dict, dict]]]:
    """metric name -> [(attributes, data point)] of the last export that has it (cumulative)."""
    last: dict[str, list[tuple[dict, dict]]] = {}
    if not path.exists():
        return last
    for _, obj in read_json_lines(path):
        if obj is None:
            continue
        seen: dict[str, list[tuple[dict, dict]]] = {}
        for rm in obj.get("resourceMetrics", []):
            for sm in rm["scopeMetrics"]:
                for metric in sm["metrics"]:
                    body = next(v for k, v in metric.items() if isinstance(v, dict) and "dataPoints" in v)
                    for p in body["dataPoints"]:
                        attrs = {a["key"]: next(iter(a["value"].values())) for a in p.get("attributes", [])}
                        seen.setdefault(metric["name"], []).append((attrs, p))
        last.update(seen)
    return last


def counts(data: dict, metric: str, *keys: str) -> Counter:
    """Sum of count (histograms) or value (sums) of ``metric`` per tuple of ``keys`` attribute values."""
    out: Counter = Counter()
    for attrs, p in data.get(metric, []):
        n = int(p["count"]) if "count" in p else int(p.get("asInt", p.get("asDouble", 0)))
        out[tuple(attrs.get(k) for k in keys)] += n
    return out


def wait_counts(path: Path, metric: str, keys: tuple[str, ...], want: dict, proc: Process) -> dict:
    """Poll the export file until ``metric``'s counts equal ``want``; then check they stay equal one more export."""
    deadline = time.monotonic() + 20
    got: Counter = Counter()
    while time.monotonic() < deadline:
        data = points(path)
        got = counts(data, metric, *keys)
        if dict(got) == want:
            time.sleep(1.2)  # two more export intervals: nothing counted twice
            data = points(path)
            assert dict(counts(data, metric, *keys)) == want
            return data
        time.sleep(0.2)
    raise AssertionError(f"{metric} by {keys}: {dict(got)} != {want}\n{proc.output()[-3000:]}")


def env_for(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    out = tmp_path / "telemetry.jsonl"
    return out, {
        "MODELOTEL_EXPORT_FILE": str(out),
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "MODELOTEL_TRACES": "off",
        "PYTHONPATH": str(ROOT / "sdk"),
    }


def prometheus_value(text: str, name: str, labels: str) -> float:
    """The value of the sample ``name{labels}`` in Prometheus text format (labels exactly as exposed)."""
    prefix = f"{name}{{{labels}}} "
    (line,) = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(line[len(prefix) :])


def rest_request(n: int) -> dict:
    return {"id": f"r{n}", "inputs": [{"name": "x", "shape": [n, 4], "datatype": "FP32", "data": [0.5] * (4 * n)}]}


def grpc_infer(port: int, calls: list[tuple[str, str, int]]) -> list[grpc.StatusCode]:
    """The status code of each call."""
    codes = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        for name, version, n in calls:
            x = pb.InferInputTensor(
                name="x", datatype="FP32", shape=[n, 4], contents=pb.InferTensorContents(fp32_contents=[0.5] * (4 * n))
            )
            request = pb.ModelInferRequest(id="g", model_name=name, model_version=version, inputs=[x])
            try:
                response = infer(request, timeout=30)
            except grpc.RpcError as exc:
                codes.append(exc.code())
                continue
            assert response.model_name == name and response.outputs[0].shape[0] == n  # the descriptor's fields
            codes.append(grpc.StatusCode.OK)
    return codes


# -- KServe ----------------------------------------------------------------------------------------------------


def test_kserve_two_models_rest_and_grpc(tmp_path):
    venv = server_venv("kserve")
    out, env = env_for(tmp_path)
    http_port, grpc_port = free_port(), free_port()
    args = [str(venv / "bin" / "python"), str(HERE / "apps" / "kserve_app.py")]
    args += ["--http_port", str(http_port), "--grpc_port", str(grpc_port)]
    with Process(args, tmp_path / "kserve.log", env=env, cwd=tmp_path) as proc:
        try:
            wait_http(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=STARTUP_S, proc=proc.proc)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{proc.output()[-3000:]}") from None
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as client:
            for _ in range(4):
                assert client.post("/v2/models/iris/infer", json=rest_request(3)).status_code == 200
            for _ in range(3):
                assert client.post("/v2/models/lang/infer", json=rest_request(2)).status_code == 200
            assert client.post("/v2/models/nope/infer", json=rest_request(1)).status_code == 404
            bad = client.post("/v2/models/lang/infer", json={"id": "b", "inputs": "not a list"})
            assert bad.status_code >= 400
        codes = grpc_infer(grpc_port, [("iris", "", 3)] * 2 + [("lang", "", 3)] * 5 + [("nope", "", 1)])
        assert codes == [grpc.StatusCode.OK] * 7 + [grpc.StatusCode.NOT_FOUND]

        # iris names its version "1" in its responses; lang names none; the bad request failed with its status
        want = {("iris", "1", None): 6, ("lang", "unknown", None): 8, ("lang", "unknown", str(bad.status_code)): 1}
        data = wait_counts(out, conv.INFERENCE_DURATION, (NAME, VERSION, ERR), want, proc)
        preds = counts(data, conv.PREDICTIONS, NAME, LABEL)
        # iris: rows 0, 1, 2 of its table -> setosa, virginica, versicolor, once each per call of 3 rows
        assert preds[("iris", "setosa")] == preds[("iris", "virginica")] == preds[("iris", "versicolor")] == 6
        # lang: labels not declared (KServe's user gave only iris's): counted without a label
        assert preds[("lang", None)] == 3 * 2 + 5 * 3
        conf = {a[NAME]: p for a, p in data[conv.PREDICTION_CONFIDENCE_METRIC]}
        assert int(conf["iris"]["count"]) == 18
        assert conf["iris"]["sum"] == pytest.approx(6 * (0.7 + 0.6 + 0.5), rel=1e-6)  # float32 rows
        dropped = counts(data, conv.DROPPED, conv.DROP_REASON)
        assert dropped[("oip_model_not_found",)] == 2  # REST and gRPC
        # KServe's own Prometheus histogram of predict() counts the same calls, REST and gRPC
        text = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=10).text
        assert prometheus_value(text, "request_predict_seconds_count", 'model_name="iris"') == 6
        assert prometheus_value(text, "request_predict_seconds_count", 'model_name="lang"') == 8


# -- MLServer --------------------------------------------------------------------------------------------------


def test_mlserver_two_models_rest_and_grpc(tmp_path):
    venv = server_venv("mlserver")
    out, env = env_for(tmp_path)
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    args = [str(venv / "bin" / "python"), str(HERE / "apps" / "mlserver_app.py")]
    args += [str(http_port), str(grpc_port), str(metrics_port)]
    with Process(args, tmp_path / "mlserver.log", env=env, cwd=tmp_path) as proc:
        try:
            for model in ("iris/versions/1", "iris/versions/2", "lang"):
                wait_http(f"http://127.0.0.1:{http_port}/v2/models/{model}/ready", timeout=STARTUP_S, proc=proc.proc)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{proc.output()[-3000:]}") from None
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as client:
            for _ in range(4):
                assert client.post("/v2/models/iris/versions/1/infer", json=rest_request(3)).status_code == 200
            # a response large enough for MLServer's GZip middleware: modelotel reads it before compression
            big = client.post("/v2/models/iris/versions/1/infer", json=rest_request(60))
            assert big.status_code == 200 and big.headers.get("content-encoding") == "gzip"
            for _ in range(2):
                assert client.post("/v2/models/iris/versions/2/infer", json=rest_request(3)).status_code == 200
            for _ in range(3):
                assert client.post("/v2/models/lang/infer", json=rest_request(2)).status_code == 200
            assert client.post("/v2/models/nope/infer", json=rest_request(1)).status_code == 404
            bad = client.post("/v2/models/iris/versions/2/infer", json={"id": "b", "inputs": "not a list"})
            assert bad.status_code >= 400
        codes = grpc_infer(grpc_port, [("iris", "2", 3)] * 3 + [("lang", "", 3)] * 5 + [("nope", "", 1)])
        assert codes == [grpc.StatusCode.OK] * 8 + [grpc.StatusCode.NOT_FOUND]

        want = {
            ("iris", "1", None): 5,
            ("iris", "2", None): 5,
            ("iris", "2", str(bad.status_code)): 1,
            ("lang", "unknown", None): 8,
        }
        data = wait_counts(out, conv.INFERENCE_DURATION, (NAME, VERSION, ERR), want, proc)
        preds = counts(data, conv.PREDICTIONS, NAME, VERSION, LABEL)
        for label in ("setosa", "virginica", "versicolor"):
            assert preds[("iris", "1", label)] == 4 + 20
            assert preds[("iris", "2", label)] == 5
        # lang's labels are declared: exported
        assert (
            preds[("lang", "unknown", "en")] + preds[("lang", "unknown", "fr")] + preds[("lang", "unknown", "de")]
            == 3 * 2 + 5 * 3
        )
        assert preds[("lang", "unknown", "en")] == 3 * 1 + 5 * 1
        dropped = counts(data, conv.DROPPED, conv.DROP_REASON)
        assert dropped[("oip_model_not_found",)] == 2  # REST and gRPC
        # MLServer's own Prometheus metrics count the same calls (docs/integrations.md relates the two)
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        success = "model_infer_request_success_total"
        assert prometheus_value(text, success, 'model="iris",version="1"') == 5
        assert prometheus_value(text, success, 'model="iris",version="2"') == 5
        # a model without a version is two series there, by protocol: "None" (REST) and "" (gRPC); one here
        assert prometheus_value(text, success, 'model="lang",version="None"') == 3
        assert prometheus_value(text, success, 'model="lang",version=""') == 5


def test_a_venv_that_cannot_be_built_skips_or_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELOTEL_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("MODELOTEL_CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-server venv could not be built"):
        server_venv("no-such-server")
    monkeypatch.setenv("MODELOTEL_CI", "1")
    with pytest.raises(pytest.fail.Exception, match="no-such-server venv could not be built"):
        server_venv("no-such-server")


CHECK_DESCRIPTOR = """
import oip_messages as ours
from kserve.protocol.grpc import grpc_predict_v2_pb2 as theirs

pairs = [
    (ours.ModelInferRequest, theirs.ModelInferRequest),
    (ours.ModelInferResponse, theirs.ModelInferResponse),
    (ours.InferInputTensor, theirs.ModelInferRequest.InferInputTensor),
    (ours.InferOutputTensor, theirs.ModelInferResponse.InferOutputTensor),
    (ours.InferTensorContents, theirs.InferTensorContents),
]
for mine, real in pairs:
    for field in mine.DESCRIPTOR.fields:
        other = real.DESCRIPTOR.fields_by_name[field.name]
        assert (other.number, other.type, other.label) == (field.number, field.type, field.label), field.full_name
print(sum(len(m.DESCRIPTOR.fields) for m, _ in pairs))
"""


def test_oip_messages_match_kserve_generated_stubs():
    """tests/oip_messages.py's descriptor, written from the protocol, against the stubs KServe generated."""
    venv = server_venv("kserve")
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", CHECK_DESCRIPTOR],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(HERE)},
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == 4 + 5 + 4 + 4 + 8  # every field of ours was compared
