"""``modelotel serve``'s OTLP/gRPC receiver: ``MetricsService/Export`` into a ``Receiver``.

GRPC_WORKERS calls are served at once (a thread each), up to GRPC_MAX_RPCS more queued for one, calls past that
refused RESOURCE_EXHAUSTED (which the collector does not retry: the cap is far above its 10 sending consumers);
each call's message must arrive within --request-timeout (a stream that never sends it is cancelled), its bytes
are taken from the in-flight budget before it is parsed, and connections are recycled: closed when idle or old.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

from ..engine.stream import Ingested, request_json
from .options import address
from .receiver import Closing, Receiver, parse_protobuf

__all__ = ["grpc_server"]

GRPC_WORKERS = 16
GRPC_MAX_RPCS = 64
GRPC_CONNECTION_IDLE_MS = 5 * 60 * 1000  # an idle connection (no call) is closed (GOAWAY); a client reconnects
GRPC_CONNECTION_AGE_MS = 30 * 60 * 1000  # every connection is closed this old, its calls given the grace below
GRPC_CONNECTION_GRACE_MS = 30 * 1000
GRPC_STREAMS_PER_CONNECTION = 16


def grpc_server(receiver: Receiver, host: str, port: int) -> Any:
    """A ``grpc.Server`` bound to ``host:port`` (not started); OSError if the port cannot be bound."""
    _check_port(host, port)  # gRPC's own bind failure is a C-core log line and a vaguer message
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # serve reports its own errors, in one line
    import grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

    options = receiver.options
    counters = receiver.counters

    def export(messages: Iterator[bytes], context: Any) -> Any:
        """``MetricsService/Export``, read as a stream of raw bytes (the same call on the wire) so that waiting
        for the message is bounded and the protobuf is parsed only once the budget has room for it."""
        watchdog = threading.Timer(options.request_timeout, context.cancel)  # grpcio itself waits forever
        watchdog.daemon = True
        watchdog.start()
        try:
            body = next(messages, None)
        except Exception:  # cancelled: by the watchdog, or the client went away
            body = None
        finally:
            watchdog.cancel()
        if body is None:
            if not context.is_active():
                counters.count("grpc", "timeout")
                return None  # nobody is listening
            counters.count("grpc", "malformed")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Export takes exactly one request message")
        if not receiver.budget.take(len(body), options.request_timeout):
            counters.count("grpc", "busy")
            context.abort(grpc.StatusCode.UNAVAILABLE, "modelotel serve is busy (request bytes in flight); retry")
        try:
            result = _export(body)
        finally:
            receiver.budget.give(len(body))
        if isinstance(result, str):  # an error answer: (code name, message)
            code, _, message = result.partition(":")
            context.abort(getattr(grpc.StatusCode, code), message)
        response = metrics_service_pb2.ExportMetricsServiceResponse()
        if result.rejected:
            response.partial_success.rejected_data_points = result.rejected
            response.partial_success.error_message = result.message
        return response

    def _export(body: bytes) -> Ingested | str:
        try:
            request = parse_protobuf(body)
        except ValueError as exc:
            counters.count("grpc", "malformed")
            return f"INVALID_ARGUMENT:{exc}"
        try:
            result = receiver.receive(request_json(request), "grpc")
        except Closing:
            return "UNAVAILABLE:modelotel serve is stopping; retry"
        except Exception:
            return "INTERNAL:internal error (see the modelotel serve log)"
        if result.malformed:  # a parsed protobuf is always OTLP; kept for symmetry with HTTP
            return f"INVALID_ARGUMENT:{result.message}"
        return result

    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.metrics.v1.MetricsService",
        {
            "Export": grpc.stream_unary_rpc_method_handler(
                export, response_serializer=metrics_service_pb2.ExportMetricsServiceResponse.SerializeToString
            )
        },
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=GRPC_WORKERS, thread_name_prefix="otlp-grpc"),
        handlers=[handler],
        maximum_concurrent_rpcs=GRPC_MAX_RPCS,
        options=[
            ("grpc.max_receive_message_length", options.max_request_bytes),
            ("grpc.max_concurrent_streams", GRPC_STREAMS_PER_CONNECTION),
            ("grpc.max_connection_idle_ms", GRPC_CONNECTION_IDLE_MS),
            ("grpc.max_connection_age_ms", GRPC_CONNECTION_AGE_MS),
            ("grpc.max_connection_age_grace_ms", GRPC_CONNECTION_GRACE_MS),
            ("grpc.so_reuseport", 0),
        ],
    )
    try:
        bound = server.add_insecure_port(address(host, port))
    except RuntimeError as exc:  # newer grpcio raises instead of returning 0
        raise OSError(str(exc)) from None
    if not bound:
        raise OSError("address in use or unavailable")
    return server


def _check_port(host: str, port: int) -> None:
    """OSError (e.g. address in use) if ``host:port`` cannot be bound now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
