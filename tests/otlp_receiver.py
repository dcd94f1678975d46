"""A real, in-process OTLP receiver for tests: gRPC (and optionally OTLP/HTTP protobuf) on 127.0.0.1.

Usage::

    with OTLPReceiver(http=True) as rx:
        exporter = OTLPMetricExporter(endpoint=rx.endpoint, insecure=True)
        ...
        rx.wait_for(lambda r: r.metrics_requests, timeout=5)

Requests are kept decoded (``ExportMetricsServiceRequest`` / ``ExportTraceServiceRequest``), in
arrival order, whichever transport delivered them.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC method name)
        self._receiver._record(self._receiver.metrics_requests, request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
        self._receiver._record(self._receiver.trace_requests, request)
        return trace_service_pb2.ExportTraceServiceResponse()


# OTLP/HTTP path -> (request type, response type, name of the receiver's list)
_HTTP_ROUTES = {
    "/v1/metrics": (
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
        "metrics_requests",
    ),
    "/v1/traces": (
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
        "trace_requests",
    ),
}


def _make_http_handler(receiver: OTLPReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server naming)
            route = _HTTP_ROUTES.get(self.path.split("?", 1)[0])
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if route is None:
                self.send_error(404)
                return
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            try:
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                request = route[0].FromString(body)
            except Exception:
                self.send_error(400, "undecodable OTLP protobuf body")
                return
            receiver._record(getattr(receiver, route[2]), request)
            payload = route[1]().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    return Handler


class OTLPReceiver:
    """OTLP gRPC receiver on ``127.0.0.1:<free port>``; ``http=True`` adds OTLP/HTTP protobuf."""

    def __init__(self, http: bool = False) -> None:
        self.metrics_requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.trace_requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self._cond = threading.Condition()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsServicer(self), self._server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceServicer(self), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")  # port 0: the OS picks a free one
        if not self.port:
            raise OSError("OTLPReceiver: could not bind a gRPC port on 127.0.0.1")
        self.endpoint = f"127.0.0.1:{self.port}"
        self._http_server: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self.http_endpoint: str | None = None
        if http:
            self._http_server = ThreadingHTTPServer(("127.0.0.1", 0), _make_http_handler(self))
            self._http_server.daemon_threads = True
            self.http_endpoint = f"http://127.0.0.1:{self._http_server.server_address[1]}"
        self._started = False

    def _record(self, bucket: list[Any], request: Any) -> None:
        with self._cond:
            bucket.append(request)
            self._cond.notify_all()

    def start(self) -> OTLPReceiver:
        if not self._started:
            self._server.start()
            if self._http_server is not None:
                self._http_thread = threading.Thread(
                    target=self._http_server.serve_forever,
                    kwargs={"poll_interval": 0.05},
                    name="otlp-http-receiver",
                    daemon=True,
                )
                self._http_thread.start()
            self._started = True
        return self

    def wait_for(self, predicate: Callable[[OTLPReceiver], Any], timeout: float = 5.0) -> bool:
        """Block until ``predicate(self)`` is truthy (re-checked on every request); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def stop(self, grace: float = 1.0) -> None:
        if self._http_server is not None:
            if self._http_thread is not None:
                self._http_server.shutdown()
                self._http_thread.join(timeout=5)
            self._http_server.server_close()
            self._http_server = None
        # Also releases the bound port when the server was never started.
        self._server.stop(grace).wait(timeout=grace + 5)
        self._started = False

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
