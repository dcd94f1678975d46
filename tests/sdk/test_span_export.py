"""modelotel's own TracerProvider end to end: real servers' spans read back from the file, and OTLP export.

Each framework runs in a subprocess (a process has one global TracerProvider, and the test session's
is an application SDK provider), serving real clients that send a W3C ``traceparent``. The OTLP tests
build the provider in-process (not installed globally) and send to a real OTLP receiver on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from modelotel import config
from modelotel.tracing.provider import make_tracer_provider
from modelotel.tracing.span import record_exception
from modelotel.tracing.start import context_with_span, start_span

from collector_support import stop_process
from otlp_receiver import OTLPReceiver

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited early: {proc.stderr.read()}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not start listening")


def _spans(path) -> list[dict]:
    """Every span in an OTLP-JSON file, with its attributes as a plain dict and its resource's."""
    out = []
    with open(path) as fh:
        for line in fh:
            for rs in json.loads(line).get("resourceSpans", []):
                resource = {a["key"]: next(iter(a["value"].values())) for a in rs["resource"]["attributes"]}
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        attrs = {a["key"]: next(iter(a["value"].values())) for a in span.get("attributes", [])}
                        out.append({**span, "attrs": attrs, "resource": resource, "scope": ss["scope"]})
    return out


def _run(framework: str, tmp_path, requests) -> list[dict]:
    path = tmp_path / "spans.jsonl"
    port = _free_port()
    env = dict(
        os.environ,
        MODELOTEL_EXPORT_FILE=str(path),
        MODELOTEL_TRACES="span",
        OTEL_SERVICE_NAME=f"traced-{framework}",
        OTEL_METRIC_EXPORT_INTERVAL="600000",
        PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "sdk"), os.environ.get("PYTHONPATH", "")]),
    )
    cmd = [sys.executable, os.path.join(ROOT, "tests", "apps", "traced_app.py"), framework, str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_listening(port, proc)
        requests(port)
        time.sleep(0.3)  # a WSGI span ends when the server closes the response, just after the client has it
    finally:
        stop_process(proc, signal.SIGINT, timeout=20)
    return _spans(path)


def _check_request_spans(spans: list[dict], server_name: str, service: str) -> None:
    """Two traced /predict requests and one failing request, as the server recorded them."""
    servers = [s for s in spans if s["name"] == server_name and "error.type" not in s["attrs"]]
    models = [s for s in spans if s["name"] == "predict traced-model"]
    assert len(servers) == 2 and len(models) == 2, [s["name"] for s in spans]
    for server in servers:
        assert server["traceId"] == TRACE_ID and server["parentSpanId"] == PARENT_ID
        assert server["flags"] == 0x300 and server["kind"] == 2  # remote parent; SERVER
        assert int(server["startTimeUnixNano"]) <= int(server["endTimeUnixNano"])
        assert server["status"] == {}
    assert {m["parentSpanId"] for m in models} == {s["spanId"] for s in servers}
    assert all(m["traceId"] == TRACE_ID and m["attrs"]["ml.model.name"] == "traced-model" for m in models)
    assert len({s["spanId"] for s in spans}) == len(spans)
    (failed,) = [s for s in spans if s["attrs"].get("error.type") == "Failure"]
    assert failed["status"]["code"] == 2 and "jane.doe@example.com" not in json.dumps(failed)
    (event,) = failed["events"]
    assert event["name"] == "exception" and {a["key"] for a in event["attributes"]} >= {"exception.stacktrace"}
    assert failed["traceId"] != TRACE_ID and "parentSpanId" not in failed  # no traceparent: a new trace
    assert {s["resource"]["service.name"] for s in spans} == {service}
    assert {s["scope"]["name"] for s in spans} == {"modelotel"}


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_http_server_spans_on_our_provider(framework, tmp_path):
    def requests(port):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for kind in ("a", "b"):
                r = client.get(f"/predict/{kind}", headers={"traceparent": TRACEPARENT})
                assert r.status_code == 200 and r.json()["p"] == [0.25, 0.75]
            assert client.get("/fail").status_code == 500

    spans = _run(framework, tmp_path, requests)
    route = "/predict/{kind}" if framework == "fastapi" else "/predict/<kind>"
    _check_request_spans(spans, f"GET {route}", f"traced-{framework}")
    ok = [s for s in spans if s["name"] == f"GET {route}"]
    assert {s["attrs"]["url.path"] for s in ok} == {"/predict/a", "/predict/b"}
    assert all(s["attrs"]["http.response.status_code"] == "200" and s["attrs"]["http.route"] == route for s in ok)


def test_grpc_server_spans_on_our_provider(tmp_path):
    def requests(port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/pkg.Traced/Predict")
            for payload in (b"a", b"b"):
                assert call(payload, metadata=[("traceparent", TRACEPARENT)], timeout=10) == b"[0.25, 0.75]"
            with pytest.raises(grpc.RpcError) as failure:
                call(b"fail", timeout=10)
            assert failure.value.code() == grpc.StatusCode.UNKNOWN

    spans = _run("grpc", tmp_path, requests)
    _check_request_spans(spans, "pkg.Traced/Predict", "traced-grpc")
    ok = [s for s in spans if s["name"] == "pkg.Traced/Predict" and s["status"] == {}]
    assert all(s["attrs"]["rpc.response.status_code"] == "OK" for s in ok)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_otlp_export_of_our_spans_equals_the_sdk_encoding(protocol, monkeypatch):
    # modelotel's provider over OTLP: gRPC sends the request encoded by otlp_proto, HTTP the SDK's own
    # encoding of the spans; the receiver must get exactly what the SDK would send for them either way.
    with OTLPReceiver(http=True) as receiver:
        endpoint = f"http://{receiver.endpoint}" if protocol == "grpc" else receiver.http_endpoint
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        settings = config.resolve(service_name="otlp-spans", exporter="otlp", environ=dict(os.environ))
        provider = make_tracer_provider(settings, Resource({"service.name": "otlp-spans"}))
        tracer = provider.get_tracer("modelotel", "2.0")
        remote = NonRecordingSpan(SpanContext(int(TRACE_ID, 16), int(PARENT_ID, 16), True, TraceFlags(1)))
        ended = []
        for i in range(3):
            span = start_span(tracer, f"GET /r{i}", context_with_span(remote, None), SpanKind.SERVER, {"i": i})
            child = start_span(tracer, "predict", context_with_span(span, None), SpanKind.INTERNAL, {"p": 0.5})
            record_exception(child, ValueError("call 555-0100"))
            child.end()
            span.end()
            ended += [child, span]
        assert provider.force_flush()
        assert receiver.wait_for(lambda r: r.trace_requests, timeout=10)
        provider.shutdown()
    (request,) = receiver.trace_requests
    assert request == encode_spans([s.to_readable() for s in ended])
    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert [s.name for s in spans] == ["predict", "GET /r0", "predict", "GET /r1", "predict", "GET /r2"]
    assert all(s.trace_id.hex() == TRACE_ID for s in spans)
