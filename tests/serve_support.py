"""``modelotel serve`` as a subprocess on free loopback ports, for the tests that stream into it."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from collector_support import ROOT, Process, free_port, wait_http

# A collector receiving OTLP/gRPC and writing a file, and exporting the same to a serve over gRPC and over HTTP
# (environment: COLLECTOR_GRPC_PORT, FILE_PATH, SERVE_GRPC_PORT, SERVE_HTTP_PORT, MODELOTEL_HEALTH_ENDPOINT).
COLLECTOR = """
extensions:
  health_check:
    endpoint: ${env:MODELOTEL_HEALTH_ENDPOINT}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:${env:COLLECTOR_GRPC_PORT}
exporters:
  file:
    path: ${env:FILE_PATH}
    format: json
    flush_interval: 100ms
  otlp_grpc/serve:
    endpoint: 127.0.0.1:${env:SERVE_GRPC_PORT}
    tls:
      insecure: true
    sending_queue: {enabled: true, num_consumers: 1, queue_size: 10000}
    retry_on_failure: {enabled: true, initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 120s}
  otlp_http/serve:
    endpoint: http://127.0.0.1:${env:SERVE_HTTP_PORT}
    encoding: proto
    compression: gzip
    sending_queue: {enabled: true, num_consumers: 1, queue_size: 10000}
    retry_on_failure: {enabled: true, initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 120s}
service:
  extensions: [health_check]
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [file, otlp_grpc/serve, otlp_http/serve]
"""


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)



class Serve:
    """``modelotel serve`` as a subprocess on free loopback ports."""

    def __init__(self, tmp_path: Path, spec_path: Path, state: Path | None, *extra: str, name: str = "serve"):
        self.tmp_path, self.spec_path, self.state, self.extra, self.name = tmp_path, spec_path, state, extra, name
        self.grpc_port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self.starts = 0
        self.proc: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def start(self) -> Serve:
        self.starts += 1
        args = [
            sys.executable,
            "-m",
            "modelotel",
            "serve",
            "--slo",
            str(self.spec_path),
            "--grpc-port",
            str(self.grpc_port),
            "--http-port",
            str(self.http_port),
            "--metrics-port",
            str(self.metrics_port),
            "--evaluate-every",
            "0.5s",
            *self.extra,
        ]
        if self.state is not None:
            args += ["--state", str(self.state)]
        self.proc = Process(args, self.tmp_path / f"{self.name}-{self.starts}.log", cwd=ROOT)
        try:
            wait_http(f"{self.url}/healthz", timeout=30, proc=self.proc.proc)
        except AssertionError:
            self.proc.stop()
            raise AssertionError(f"{self.name} did not start:\n{self.proc.output()[-3000:]}") from None
        return self

    def stop(self) -> int:
        assert self.proc is not None
        return self.proc.stop()

    def output(self) -> str:
        return self.proc.log.read_text(errors="replace") if self.proc else ""  # also after stop()

    def status(self, at: float | None = None) -> dict:
        code, body, _ = http("GET", f"{self.url}/status" + (f"?at={at!r}" if at is not None else ""))
        assert code == 200, body
        return json.loads(body)

    def events(self, slo: str, at: float | None = None) -> float:
        return next(s["events"] for s in self.status(at)["slos"] if s["name"] == slo)

    def metrics(self) -> str:
        code, body, headers = http("GET", f"{self.url}/metrics")
        assert code == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4"), (code, headers)
        return body.decode()
