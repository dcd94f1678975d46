"""``modelotel serve``'s HTTP side: OTLP/HTTP (``POST /v1/metrics``, protobuf or JSON, optionally gzip) into a
``Receiver``, and the GET endpoints (``/metrics``, ``/status[?at=TIME]``, ``/healthz``).

Per port at most ``--max-connections`` connections, one thread each, every request read within
``--request-timeout`` (a connection still sending its request past it, or the one sending longest when a new
connection finds no free slot, is closed and counted: slow clients cannot starve /status); a body shorter than
its Content-Length is a 400 and counts nothing; a client that goes away is one counted log line. Requests over
``--max-request-bytes`` are refused (413) and a request's bytes are taken from the in-flight budget
(admission.py) before its body is read.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..engine.stream import Ingested, request_json
from ..outputs.exposition import CONTENT_TYPE, exposition
from .errors import say
from .receiver import Closing, Receiver, parse_protobuf

__all__ = ["Handler", "Server", "gunzip", "http_server"]

READ_TIMEOUT_S = 10.0  # one read of a socket: a peer silent this long is gone
LISTEN_BACKLOG = 128
LATEST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: the last time /status can print
INVALID_ARGUMENT = 3  # google.rpc.Code


class Connection:
    """One open HTTP connection: whether its handler is waiting for (or reading) a request, and since when."""

    __slots__ = ("closed_by_us", "reading_since", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reading_since: float | None = time.monotonic()  # None while a read request is being answered
        self.closed_by_us = False

    def close(self) -> None:
        """Wake its handler thread (a blocked read returns end-of-file) so that the thread ends."""
        self.closed_by_us = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Server(ThreadingHTTPServer):
    """One handler thread per connection, at most ``max_connections`` of them; a request must be read within
    ``request_timeout`` (checked every poll of ``serve_forever``). A new connection that finds every slot taken
    closes the connection that has been reading the longest (a slow or idle client: it may retry), or, when all
    are being answered, is itself answered 503. Whatever is closed early is counted (``Counters.drop``)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], handler: type, receiver: Receiver) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.receiver = receiver
        self.max_connections = receiver.options.max_connections
        self.request_timeout = receiver.options.request_timeout
        self._connections: dict[socket.socket, Connection] = {}
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            refuse = False
            if len(self._connections) >= self.max_connections:
                waiting = [c for c in self._connections.values() if c.reading_since is not None and not c.closed_by_us]
                if waiting:
                    min(waiting, key=lambda c: c.reading_since or 0.0).close()
                    self.receiver.counters.drop("evicted")
                else:
                    refuse = True
            if not refuse:
                self._connections[request] = Connection(request)
        if refuse:
            self.receiver.counters.drop("refused")
            try:
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def connection(self, request: Any) -> Connection | None:
        with self._connections_lock:
            return self._connections.get(request)

    def claim(self, request: Any) -> bool:
        """Mark a connection's request as read (no timeout or eviction from now on); False if it was closed
        already: the request must then not be acted on (its client saw no answer and may retry)."""
        with self._connections_lock:
            conn = self._connections.get(request)
            if conn is None or conn.closed_by_us:
                return False
            conn.reading_since = None
            return True

    def close_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.pop(request, None)
        super().close_request(request)

    def service_actions(self) -> None:
        """Close the connections that have been reading one request for longer than ``request_timeout``."""
        late = time.monotonic() - self.request_timeout
        with self._connections_lock:
            expired = [c for c in self._connections.values() if c.reading_since is not None and c.reading_since < late]
            expired = [c for c in expired if not c.closed_by_us]
            for c in expired:
                c.close()
        for _ in expired:
            self.receiver.counters.drop("timeout")

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Instead of socketserver's traceback on stderr: a peer gone or too slow is a counted drop; anything
        else is a bug, said in one line (the connection is closed, the server goes on)."""
        exc = sys.exc_info()[1]
        conn = self.connection(request)
        if conn is not None and conn.closed_by_us:
            return  # counted when we closed it
        if isinstance(exc, TimeoutError):
            self.receiver.counters.drop("timeout")
        elif isinstance(exc, OSError):
            self.receiver.counters.drop("client_disconnect")
        else:
            say(f"error: internal error on an HTTP request: {type(exc).__name__}: {exc}")


_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 34\r\nRetry-After: 1\r\n"
    b"Connection: close\r\n\r\nall connections busy; retry later\n"
)


def http_server(receiver: Receiver, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server on ``host:port`` answering OTLP/HTTP and the GET endpoints (not serving yet); OSError if
    the port cannot be bound."""
    return Server((host, port), Handler, receiver)


class Handler(BaseHTTPRequestHandler):
    server_version = "modelotel-serve"
    protocol_version = "HTTP/1.1"  # keep-alive: the collector's exporter reuses connections
    timeout = READ_TIMEOUT_S  # per read; the whole request is bounded by Server.request_timeout
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
        pass

    def handle_one_request(self) -> None:
        conn = self.server.connection(self.request)
        if conn is not None:
            conn.reading_since = time.monotonic()  # waiting for the request: a timeout or an eviction may close it
        super().handle_one_request()

    def _answering(self) -> bool:
        """The request is read: from now on the connection is neither timed out nor evicted. False (and the
        connection is closed) if it was closed while the request was read."""
        if self.server.claim(self.request):
            return True
        self.close_connection = True
        return False

    # -- OTLP/HTTP

    def do_POST(self) -> None:  # noqa: N802
        path = urllib.parse.urlsplit(self.path).path
        length = self.headers.get("Content-Length")
        if length is None or not (length.isascii() and length.isdigit()):
            self.close_connection = True
            self._send(411, "text/plain", b"Content-Length required\n")
            return
        receiver = self.server.receiver
        limit = receiver.options.max_request_bytes
        if int(length) > limit:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            receiver.counters.count("http", "too_large")
            self._send(413, "text/plain", f"body over {limit} bytes (--max-request-bytes); nothing counted\n".encode())
            return
        # the request's share of the in-flight budget (admission.py) before its body is read: a compressed body
        # also needs room for what it inflates to
        compressed = (self.headers.get("Content-Encoding") or "identity").strip().lower() not in ("identity", "")
        charge = int(length) + (limit if compressed else 0)
        if not receiver.budget.take(charge, self.server.request_timeout):
            self.close_connection = True  # the body is not read
            receiver.counters.count("http", "busy")
            busy = f"busy: other requests hold {receiver.budget.capacity} bytes for over --request-timeout; retry\n"
            self._send(503, "text/plain", busy.encode(), {"Retry-After": "1"})
            return
        try:
            self._post(path, length, limit)
        finally:
            receiver.budget.give(charge)

    def _post(self, path: str, length: str, limit: int) -> None:
        body = self.rfile.read(int(length))
        if not self._answering():
            return
        if len(body) < int(length):  # the client went away (or was closed) mid-body: nothing of it is counted
            self.close_connection = True
            self.server.receiver.counters.count("http", "malformed")
            short = f"body of {len(body)} bytes, shorter than its Content-Length {length}; nothing counted\n"
            self._send(400, "text/plain", short.encode())
            return
        if path != "/v1/metrics":
            self._send(404, "text/plain", b"only /v1/metrics (OTLP metrics) is served here\n")
            return
        protocol = "http"
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        as_json = content_type == "application/json"
        if content_type not in ("application/x-protobuf", "application/json"):
            self.server.receiver.counters.count(protocol, "malformed")
            self._send(415, "text/plain", f"unsupported Content-Type {content_type!r}\n".encode())
            return
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        try:
            if encoding == "gzip":
                body = gunzip(body, limit)
            elif encoding not in ("identity", ""):
                self.server.receiver.counters.count(protocol, "malformed")
                self._send(415, "text/plain", f"unsupported Content-Encoding {encoding!r}\n".encode())
                return
            if as_json:
                if not body.strip():
                    raise ValueError("empty body (an empty request is {})")
                line = body if body.endswith(b"\n") else body + b"\n"  # one complete line for the decoder
            else:
                line = request_json(parse_protobuf(body))
        except ValueError as exc:
            self.server.receiver.counters.count(protocol, "malformed")
            self._status_error(400, as_json, str(exc))
            return
        try:
            result = self.server.receiver.receive(line, protocol)
        except Closing:
            self.close_connection = True
            self._send(503, "text/plain", b"modelotel serve is stopping; retry\n", {"Retry-After": "1"})
            return
        except Exception:
            self._status_error(500, as_json, "internal error (see the modelotel serve log)")
            return
        if result.malformed:
            self._status_error(400, as_json, result.message or "not OTLP metrics")
            return
        self._export_response(as_json, result)

    def _export_response(self, as_json: bool, result: Ingested) -> None:
        from google.protobuf import json_format
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

        response = metrics_service_pb2.ExportMetricsServiceResponse()
        if result.rejected:
            response.partial_success.rejected_data_points = result.rejected
            response.partial_success.error_message = result.message
        if as_json:
            self._send(200, "application/json", json_format.MessageToJson(response, indent=None).encode())
        else:
            self._send(200, "application/x-protobuf", response.SerializeToString())

    def _status_error(self, code: int, as_json: bool, message: str) -> None:
        """An OTLP error answer: a ``google.rpc.Status`` in the request's encoding."""
        from google.rpc import status_pb2

        status = status_pb2.Status(code=INVALID_ARGUMENT if code == 400 else 13, message=message)
        if as_json:
            self._send(code, "application/json", json.dumps({"code": status.code, "message": message}).encode())
        else:
            self._send(code, "application/x-protobuf", status.SerializeToString())

    # -- GET endpoints

    def do_GET(self) -> None:  # noqa: N802
        if not self._answering():
            return
        url = urllib.parse.urlsplit(self.path)
        receiver = self.server.receiver
        if url.path == "/metrics":
            self._send(200, CONTENT_TYPE, exposition(receiver.latest, receiver.stats()).encode())
        elif url.path == "/status":
            self._status(receiver, urllib.parse.parse_qs(url.query))
        elif url.path == "/healthz":
            self._send(200, "text/plain", b"ok\n")
        else:
            self._send(404, "text/plain", b"GET /metrics, /status[?at=TIME] or /healthz; POST /v1/metrics\n")

    def _status(self, receiver: Receiver, query: dict[str, list[str]]) -> None:
        from ..durations import parse_instant
        from ..outputs.text import to_json

        at = time.time()
        if "at" in query:
            try:
                at = parse_instant(query["at"][-1])
            except ValueError as exc:
                self._send(400, "application/json", json.dumps({"error": f"at: {exc}"}).encode())
                return
            if not 0 <= at <= LATEST_TIME:  # NaN fails this too
                error = f"at: {query['at'][-1]!r} is not a time between 1970-01-01 and 9999-12-31"
                self._send(400, "application/json", json.dumps({"error": error}).encode())
                return
        try:
            document = to_json(receiver.state.evaluate(at)).encode()
        except Exception as exc:  # a bug must not drop the connection: one line, a 500
            say(f"error: /status at {at!r} failed: {type(exc).__name__}: {exc}")
            self._send(500, "application/json", json.dumps({"error": "internal error (see the log)"}).encode())
            return
        self._send(200, "application/json", document)

    def _send(self, code: int, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompressed ``body``; ValueError for corrupt data or more than ``limit`` bytes (a zip bomb)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ValueError(f"gzip body unreadable ({exc})") from None
    if len(out) > limit:
        raise ValueError(f"gzip body inflates to over {limit} bytes")
    if not d.eof:
        raise ValueError("gzip body truncated")
    return out
