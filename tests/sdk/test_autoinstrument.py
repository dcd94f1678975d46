"""`opentelemetry-instrument python app.py` loads modelotel's instrumentors through their entry points."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from collector_support import stop_process
from otlp_receiver import OTLPReceiver

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"app exited early: {proc.stderr.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("app did not start listening")


def _attrs(kvs) -> dict:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in kvs}


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_opentelemetry_instrument_loads_modelotel(framework):
    import httpx

    with OTLPReceiver() as receiver:
        port = _free_port()
        env = dict(
            os.environ,
            OTEL_SERVICE_NAME=f"auto-{framework}",
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_LOGS_EXPORTER="none",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{receiver.endpoint}",
            OTEL_EXPORTER_OTLP_INSECURE="true",
            OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
            OTEL_METRIC_EXPORT_INTERVAL="600000",
            # the official instrumentations would add a second server span per request
            OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="fastapi,flask,asgi,wsgi,grpc_client,grpc_server,grpc_aio_server",
        )
        env.pop("MODELOTEL_EXPORT_FILE", None)
        proc = subprocess.Popen(
            [
                os.path.join(BIN, "opentelemetry-instrument"),
                sys.executable,
                "tests/apps/auto_app.py",
                framework,
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_listening(port, proc)
            for i in range(5):
                r = httpx.post(f"http://127.0.0.1:{port}/predict/k{i}", timeout=10)
                assert r.status_code == 200 and r.json()["p"] == [0.25, 0.75]
            # a WSGI span ends when the server closes the response, just after the client has it
            time.sleep(0.5)
        finally:
            stop_process(proc, signal.SIGINT)
        assert receiver.wait_for(lambda r: r.trace_requests and r.metrics_requests, timeout=20), proc.stderr.read()

        spans = [
            (span, rs.resource)
            for req in receiver.trace_requests
            for rs in req.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]
        server = [s for s, _ in spans if s.name == "POST /predict/{kind}" or s.name == "POST /predict/<kind>"]
        models = [s for s, _ in spans if s.name == "predict auto-model"]
        assert len(server) == 5 and len(models) == 5
        by_id = {s.span_id: s for s in server}
        assert all(m.parent_span_id in by_id for m in models)
        assert {_attrs(res.attributes)["service.name"] for _, res in spans} == {f"auto-{framework}"}

        names = {
            m.name
            for req in receiver.metrics_requests
            for rm in req.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }
        assert {"http.server.request.duration", "ml.inference.duration"} <= names
