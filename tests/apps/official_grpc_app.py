"""A gRPC server with no telemetry code at all: run it under the official auto-instrumentation.

    opentelemetry-instrument python tests/apps/official_grpc_app.py PORT

with OTEL_PYTHON_DISABLED_INSTRUMENTATIONS naming modelotel's own instrumentors so only the official ones run
(opentelemetry-instrumentation-grpc patches ``grpc.server`` to add its server interceptor). Used by
tests/e2e/test_foreign_telemetry.py.

Service ``shop.Orders``, methods ``Get``, ``Report`` and ``Search`` (unary-unary, bytes in and out, generic
handlers: no generated stubs; the three behave alike, they differ only in name, so the span name tells the
client's designed latency classes apart).
The request is ``b"<CODE>:<ms>"``, e.g. ``b"INTERNAL:30"``: the handler sleeps ``ms`` milliseconds, then answers
OK (``b"ok"``), or ends with that status code: through ``context.abort`` for most codes, through
``context.set_code`` + ``set_details`` and a normal return for INVALID_ARGUMENT (both ways a servicer may fail).

Stopping: as official_flask_app.py (grpc installs no SIGTERM handler; APP_FLUSH_ON_SIGTERM=1 makes SIGTERM a
``sys.exit(0)`` so exit handlers, the SDK's final export among them, run).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE, METHODS = "shop.Orders", ("Get", "Report", "Search")


def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
    code_name, ms = request.decode().split(":")
    time.sleep(float(ms) / 1000)
    code = grpc.StatusCode[code_name]
    if code is grpc.StatusCode.OK:
        return b"ok"
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        context.set_code(code)
        context.set_details("invalid order id")
        return b""
    context.abort(code, f"designed {code_name}")
    return b""  # not reached: abort raises


def main(port: int) -> None:
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {name: grpc.unary_unary_rpc_method_handler(handle) for name in METHODS},  # bytes in, bytes out
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((handler,))
    if server.add_insecure_port(f"127.0.0.1:{port}") != port:
        raise SystemExit(f"cannot listen on 127.0.0.1:{port}")
    server.start()
    if os.environ.get("APP_FLUSH_ON_SIGTERM") == "1":
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        stop.wait()
        server.stop(grace=5).wait()
        sys.exit(0)
    server.wait_for_termination()


if __name__ == "__main__":
    main(int(sys.argv[1]))
