"""gRPC server interceptors against real grpc and grpc.aio servers on loopback, with real channels.

Every scenario runs on both stacks (the ``stack`` fixture) and, where it is about results, also
against the same service without the interceptor: what the client sees must not differ.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import grpc
import pytest
from opentelemetry.trace import SpanKind, StatusCode

import modelotel
from modelotel import conventions as conv
from modelotel.conventions import RPC_METHOD, RPC_SERVER_DURATION, RPC_STATUS, RPC_SYSTEM
from modelotel.integrations.grpc import aio_server_interceptor, server_interceptor
from modelotel.metrics.selftelemetry import SELF

from apps import grpc_app
from conftest import MemoryMetricExporter, total_count

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
OPTIONS = {"excluded_urls": [r"/Health$"], "models": {"/pkg.Model/Predict": ("fraud", "7")}}


class Stack:
    """An instrumented and a bare server of one kind, and a channel to each."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "sync":
            self._servers = [grpc_app.start_sync_server([server_interceptor(**OPTIONS)]), grpc_app.start_sync_server()]
            ports = [port for _, port in self._servers]
        else:
            self._servers = [grpc_app.AioServer([aio_server_interceptor(**OPTIONS)]), grpc_app.AioServer()]
            ports = [s.port for s in self._servers]
        self.channel, self.bare = (grpc.insecure_channel(f"127.0.0.1:{port}") for port in ports)

    def close(self) -> None:
        self.channel.close()
        self.bare.close()
        for server in self._servers:
            if self.kind == "sync":
                server[0].stop(None)
            else:
                server.stop()


@pytest.fixture(scope="module", params=["sync", "aio"])
def stack(request):
    s = Stack(request.param)
    yield s
    grpc_app.RELEASE.set()
    s.close()


@pytest.fixture
def telemetry(spans, caplog):
    """Metrics to a memory exporter, spans to conftest's provider; no internal errors, no context leaks."""
    exporter = MemoryMetricExporter()
    modelotel.configure(service_name="grpc-test", exporter=exporter, export_interval=3600, traces="span")
    before = Counter(SELF.errors)
    caplog.set_level(logging.ERROR, logger="opentelemetry.context")
    yield exporter
    modelotel.shutdown()
    assert Counter(SELF.errors) == before
    assert not [r for r in caplog.get_records("call") if "detach" in r.getMessage()]


def unary(channel, method, payload, timeout=10, **kwargs):
    """(status name, response, details) as the client sees them."""
    try:
        return "OK", channel.unary_unary(f"/pkg.Model/{method}")(payload, timeout=timeout, **kwargs), ""
    except grpc.RpcError as err:
        return err.code().name, None, err.details()


def streamed(call):
    items = []
    try:
        items.extend(call)
        return "OK", items, ""
    except grpc.RpcError as err:
        return err.code().name, items, err.details()


def server_spans(spans, method):
    return [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER and s.name == f"pkg.Model/{method}"]


def wait_for(fn, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


def duration_points(exporter):
    modelotel.force_flush()
    return exporter.last_points(RPC_SERVER_DURATION)


def test_unary_span_metric_model_child_and_per_method_model(stack, telemetry, spans):
    assert unary(stack.channel, "Predict", b"hello") == ("OK", b"ok:hello", "")

    (span,) = server_spans(spans, "Predict")
    assert span.attributes[RPC_SYSTEM] == "grpc"
    assert span.attributes[RPC_METHOD] == "pkg.Model/Predict"
    assert span.attributes[RPC_STATUS] == "OK"
    assert conv.ERROR_TYPE not in span.attributes and "http.route" not in span.attributes
    assert span.status.status_code is StatusCode.UNSET
    assert span.parent is None  # no traceparent: a new trace
    (child,) = [s for s in spans.get_finished_spans() if s.name == "predict scorer"]
    assert child.parent.span_id == span.context.span_id and child.context.trace_id == span.context.trace_id

    points = duration_points(telemetry)
    (point,) = [p for p in points if p.attributes.get(RPC_METHOD) == "pkg.Model/Predict"]
    assert dict(point.attributes) == {RPC_SYSTEM: "grpc", RPC_METHOD: "pkg.Model/Predict", RPC_STATUS: "OK"}
    assert point.count == 1 and point.sum > 0
    models = telemetry.last_points(conv.INFERENCE_DURATION)
    assert total_count(models, **{conv.MODEL_NAME: "fraud", conv.MODEL_VERSION: "7"}) == 1
    assert total_count(models, **{conv.MODEL_NAME: "scorer"}) == 1


def test_traceparent_from_metadata_is_continued(stack, telemetry, spans):
    metadata = (("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"), ("x-other", "secret-value"))
    assert unary(stack.channel, "Predict", b"t", metadata=metadata)[0] == "OK"
    assert unary(stack.channel, "Predict", b"u", metadata=(("traceparent", "00-garbage-01"),))[0] == "OK"

    continued, fresh = server_spans(spans, "Predict")
    assert continued.context.trace_id == int(TRACE_ID, 16)
    assert continued.parent.span_id == int(PARENT_ID, 16) and continued.parent.is_remote
    assert fresh.parent is None and fresh.context.trace_id != int(TRACE_ID, 16)
    assert not any("secret-value" in str(v) for s in spans.get_finished_spans() for v in s.attributes.values())


def test_all_four_arities(stack, telemetry, spans):
    channel = stack.channel
    assert streamed(channel.unary_stream("/pkg.Model/Stream")(b"3", timeout=10)) == ("OK", [b"0", b"1", b"2"], "")
    collected = channel.stream_unary("/pkg.Model/Collect")(iter([b"a", b"b", b"c"]), timeout=10)
    assert collected == b"a|b|c"
    chat = channel.stream_stream("/pkg.Model/Chat")(iter([b"x", b"y"]), timeout=10)
    assert streamed(chat) == ("OK", [b"echo:x", b"echo:y"], "")

    for method in ("Stream", "Collect", "Chat"):
        (span,) = server_spans(spans, method)
        assert span.attributes[RPC_STATUS] == "OK" and span.attributes[RPC_METHOD] == f"pkg.Model/{method}"
    # the span stays current while a streaming servicer produces its items
    (stream_span,) = server_spans(spans, "Stream")
    children = [s for s in spans.get_finished_spans() if s.name == "predict scorer"]
    assert len(children) == 3 and all(c.parent.span_id == stream_span.context.span_id for c in children)
    assert all(c.end_time <= stream_span.end_time for c in children)

    points = duration_points(telemetry)
    for method in ("Stream", "Collect", "Chat"):
        assert total_count(points, **{RPC_METHOD: f"pkg.Model/{method}", RPC_STATUS: "OK"}) == 1


@pytest.mark.parametrize("method", ["Predict", "SyncPredict"])
def test_abort_set_code_and_exception_match_the_bare_server(stack, telemetry, spans, method):
    outcomes = {}
    for payload in (b"missing", b"invalid", b"boom"):
        outcomes[payload] = unary(stack.channel, method, payload)
        assert outcomes[payload] == unary(stack.bare, method, payload)
    assert outcomes[b"missing"] == ("NOT_FOUND", None, "no such model")
    assert outcomes[b"invalid"] == ("INVALID_ARGUMENT", None, "bad input")
    assert outcomes[b"boom"][0] == "UNKNOWN"

    missing, invalid, boom = server_spans(spans, method)
    for span, code in ((missing, "NOT_FOUND"), (invalid, "INVALID_ARGUMENT")):
        assert span.attributes[RPC_STATUS] == code and span.attributes[conv.ERROR_TYPE] == code
        assert span.status.status_code is StatusCode.UNSET  # a client error, not the server's
        assert not span.events
    assert boom.attributes[RPC_STATUS] == "UNKNOWN" and boom.attributes[conv.ERROR_TYPE] == "ModelFailure"
    assert boom.status.status_code is StatusCode.ERROR
    (event,) = boom.events
    assert event.name == "exception" and event.attributes["exception.type"].endswith("ModelFailure")

    points = duration_points(telemetry)
    full = f"pkg.Model/{method}"
    assert total_count(points, **{RPC_METHOD: full, RPC_STATUS: "NOT_FOUND", conv.ERROR_TYPE: "NOT_FOUND"}) == 1
    assert total_count(points, **{RPC_METHOD: full, RPC_STATUS: "INVALID_ARGUMENT"}) == 1
    assert total_count(points, **{RPC_METHOD: full, RPC_STATUS: "UNKNOWN", conv.ERROR_TYPE: "ModelFailure"}) == 1
    assert total_count(points, **{RPC_METHOD: full, RPC_STATUS: "OK"}) == 0


def test_stream_errors_mid_stream_match_the_bare_server(stack, telemetry, spans):
    def run(channel, payload):
        return streamed(channel.unary_stream("/pkg.Model/Stream")(payload, timeout=10))

    failed, aborted = run(stack.channel, b"fail"), run(stack.channel, b"abort")
    assert failed == run(stack.bare, b"fail") and failed[:2] == ("UNKNOWN", [b"one"])
    assert aborted == run(stack.bare, b"abort") == ("PERMISSION_DENIED", [b"one"], "nope")

    fail_span, abort_span = server_spans(spans, "Stream")
    assert fail_span.attributes[conv.ERROR_TYPE] == "ModelFailure"
    assert fail_span.status.status_code is StatusCode.ERROR
    assert abort_span.attributes[RPC_STATUS] == "PERMISSION_DENIED"
    assert abort_span.status.status_code is StatusCode.UNSET
    points = duration_points(telemetry)
    assert total_count(points, **{RPC_METHOD: "pkg.Model/Stream", conv.ERROR_TYPE: "ModelFailure"}) == 1
    assert total_count(points, **{RPC_METHOD: "pkg.Model/Stream", conv.ERROR_TYPE: "PERMISSION_DENIED"}) == 1


def test_server_stream_cancelled_by_the_client_ends_the_span(stack, telemetry, spans):
    grpc_app.RELEASE.clear()
    call = stack.channel.unary_stream("/pkg.Model/Stream")(b"slow", timeout=10)
    assert next(call) == b"first"
    started = time.monotonic()
    call.cancel()
    (span,) = wait_for(lambda: server_spans(spans, "Stream"))
    # ended by the cancellation, not by the servicer's next item (it is still waiting)
    assert time.monotonic() - started < grpc_app.WAIT_LIMIT_S / 2
    assert span.attributes[RPC_STATUS] == "CANCELLED" and span.attributes[conv.ERROR_TYPE] == "CANCELLED"
    assert span.status.status_code is StatusCode.UNSET
    grpc_app.RELEASE.set()

    # the worker that served the stream serves a fresh call without a stale parent
    assert unary(stack.channel, "Predict", b"after") == ("OK", b"ok:after", "")
    (after,) = server_spans(spans, "Predict")
    assert after.parent is None
    points = duration_points(telemetry)
    assert total_count(points, **{RPC_METHOD: "pkg.Model/Stream", RPC_STATUS: "CANCELLED"}) == 1


def test_client_stream_cancelled_by_the_client(stack, telemetry, spans):
    more = threading.Event()

    def requests():
        yield b"a"
        more.wait(5)  # the client stops sending; then cancels

    future = stack.channel.stream_unary("/pkg.Model/Collect").future(requests(), timeout=10)
    try:
        time.sleep(0.05)  # let the server start reading
        future.cancel()
        (span,) = wait_for(lambda: server_spans(spans, "Collect"))
    finally:
        more.set()
    # Both stacks may end the request stream of a cancelled call like a half-close (grpc delivers
    # "no more messages" and "cancelled" as two events, in either order), so the servicer may
    # finish normally before the cancellation is visible: then OK is what the servicer did.
    assert span.attributes[RPC_STATUS] in {"CANCELLED", "OK"} and span.status.status_code is StatusCode.UNSET
    status = span.attributes[RPC_STATUS]
    assert total_count(duration_points(telemetry), **{RPC_METHOD: "pkg.Model/Collect", RPC_STATUS: status}) == 1


def test_cancelled_while_the_server_waits_to_write(stack, telemetry, spans):
    # The servicer is suspended at its yield while grpc waits for flow control: the stream is
    # abandoned outside the servicer, and the span must still end.
    call = stack.channel.unary_stream("/pkg.Model/Stream")(b"big", timeout=10)
    assert next(call) == grpc_app.BIG
    time.sleep(0.05)  # let the server fill the window and block
    call.cancel()
    (span,) = wait_for(lambda: server_spans(spans, "Stream"))
    assert span.attributes[RPC_STATUS] == "CANCELLED"
    assert total_count(duration_points(telemetry), **{RPC_METHOD: "pkg.Model/Stream", RPC_STATUS: "CANCELLED"}) == 1


def test_deadline_exceeded(stack, telemetry, spans):
    assert unary(stack.channel, "Predict", b"wait", timeout=0.2)[0] == "DEADLINE_EXCEEDED"
    (span,) = wait_for(lambda: server_spans(spans, "Predict"))
    assert span.attributes[RPC_STATUS] == "DEADLINE_EXCEEDED"
    assert span.status.status_code is StatusCode.ERROR
    points = duration_points(telemetry)
    assert total_count(points, **{RPC_STATUS: "DEADLINE_EXCEEDED", conv.ERROR_TYPE: "DEADLINE_EXCEEDED"}) == 1


def test_excluded_method_is_silent(stack, telemetry, spans):
    assert unary(stack.channel, "Health", b"") == ("OK", b"SERVING", "")
    assert unary(stack.channel, "Predict", b"x")[0] == "OK"
    assert not server_spans(spans, "Health") and len(server_spans(spans, "Predict")) == 1
    points = duration_points(telemetry)
    assert not [p for p in points if p.attributes.get(RPC_METHOD) == "pkg.Model/Health"]
    assert total_count(points, **{RPC_METHOD: "pkg.Model/Predict"}) == 1


def test_concurrent_calls_keep_their_own_traces(stack, telemetry, spans):
    results = {}

    def client(i):
        parent = f"{i + 1:016x}"
        md = (("traceparent", f"00-{i + 1:032x}-{parent}-01"),)
        results[i] = unary(stack.channel, "Predict", str(i).encode(), metadata=md)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {i: ("OK", b"ok:" + str(i).encode(), "") for i in range(32)}
    by_trace = {s.context.trace_id: s for s in server_spans(spans, "Predict")}
    assert sorted(by_trace) == list(range(1, 33))
    assert all(s.parent.span_id == t for t, s in by_trace.items())
    for child in [s for s in spans.get_finished_spans() if s.name == "predict scorer"]:
        assert child.parent.span_id == by_trace[child.context.trace_id].context.span_id
    assert total_count(duration_points(telemetry), **{RPC_METHOD: "pkg.Model/Predict"}) == 32


def test_metrics_without_tracing(stack, memory_exporter, spans):
    assert unary(stack.channel, "Predict", b"m") == ("OK", b"ok:m", "")
    assert not server_spans(spans, "Predict")
    assert total_count(duration_points(memory_exporter), **{RPC_METHOD: "pkg.Model/Predict", RPC_STATUS: "OK"}) == 1


# -- the interceptor's handler bookkeeping, without a network -----------------------------------------


class Details(grpc.HandlerCallDetails):
    def __init__(self, method):
        self.method = method
        self.invocation_metadata = ()


def test_handlers_keep_arity_and_serializers_and_are_built_once():
    interceptor = server_interceptor(excluded_urls="Health")
    serialize, deserialize = bytes.upper, bytes.lower
    handlers = {
        "A": grpc.unary_unary_rpc_method_handler(grpc_app.predict, deserialize, serialize),
        "B": grpc.unary_stream_rpc_method_handler(grpc_app.stream, deserialize, serialize),
        "C": grpc.stream_unary_rpc_method_handler(grpc_app.collect, deserialize, serialize),
        "D": grpc.stream_stream_rpc_method_handler(grpc_app.chat, deserialize, serialize),
    }
    for name, original in handlers.items():
        wrapped = interceptor.intercept_service(lambda _d, h=original: h, Details(f"/pkg.Model/{name}"))
        assert wrapped is not original
        assert (wrapped.request_streaming, wrapped.response_streaming) == (
            original.request_streaming,
            original.response_streaming,
        )
        assert wrapped.request_deserializer is deserialize and wrapped.response_serializer is serialize
        again = interceptor.intercept_service(lambda _d, h=original: h, Details(f"/pkg.Model/{name}"))
        assert again is wrapped
    health = handlers["A"]
    assert interceptor.intercept_service(lambda _d: health, Details("/pkg.Model/Health")) is health
    assert interceptor.intercept_service(lambda _d: None, Details("/pkg.Model/Nope")) is None


def test_excluded_services_from_the_official_environment_variable(monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_GRPC_EXCLUDED_SERVICES", "grpc.health.v1.Health, pkg.Internal")
    interceptor = server_interceptor()
    handler = grpc.unary_unary_rpc_method_handler(grpc_app.health)
    for method in ("/grpc.health.v1.Health/Check", "/pkg.Internal/Reload"):
        assert interceptor.intercept_service(lambda _d: handler, Details(method)) is handler
    assert interceptor.intercept_service(lambda _d: handler, Details("/pkg.Model/Predict")) is not handler
    # a service name is matched whole, not as a prefix of another one
    assert interceptor.intercept_service(lambda _d: handler, Details("/pkg.InternalX/Reload")) is not handler
