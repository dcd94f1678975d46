"""LightSpan: modelotel's cheap span keeps the provider's sampler, ids, resource and processors; on modelotel's
own provider it is queued and encoded by the export thread, byte-for-byte as the SDK's encoder would."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from modelotel import config
from modelotel.integrations.server import extract_context
from modelotel.metrics.selftelemetry import SELF
from modelotel.otlp.json import (
    OTLPJsonFileSpanExporter,
    json_line_to_proto,
    light_spans_to_json_line,
    spans_to_json_line,
)
from modelotel.otlp.proto import light_spans_to_request
from modelotel.tracing.provider import make_tracer_provider
from modelotel.tracing.queue import SpanQueue
from modelotel.tracing.span import LightSpan, record_exception
from modelotel.tracing.start import context_with_span, start_span


class _Headers(Getter):
    """A getter over a dict of lower-case headers with the ``w3c`` shortcut that ``extract_context`` takes from a
    getter that has one (as the integrations' getters do): (traceparent, tracestate values, has baggage)."""

    def get(self, carrier, key):
        value = carrier.get(key)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier):
        return list(carrier)

    @staticmethod
    def w3c(carrier):
        traceparent, tracestate = carrier.get("traceparent"), carrier.get("tracestate")
        return (
            traceparent if isinstance(traceparent, str) else None,
            [tracestate] if isinstance(tracestate, str) else None,
            "baggage" in carrier,
        )


HEADERS = _Headers()


def _provider(sampler=None):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "light"}), sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_light_span_exports_like_an_sdk_span():
    provider, exporter = _provider()
    tracer = provider.get_tracer("modelotel", "9.9")
    span = start_span(tracer, "GET /x", None, SpanKind.SERVER, {"a": 1})
    assert isinstance(span, LightSpan) and span.is_recording()
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        child = tracer.start_span("child")  # the SDK's own span, parented on ours
        child.end()
    finally:
        otel_context.detach(token)
    span.set_attributes({"b": "two"})
    span.update_name("GET /x/{id}")
    record_exception(span, ValueError("mail me at a@b.example"))
    span.end()
    span.set_attribute("late", True)  # ignored after end
    child_span, ours = exporter.get_finished_spans()
    assert isinstance(ours, ReadableSpan)
    assert ours.name == "GET /x/{id}" and ours.kind == SpanKind.SERVER
    assert dict(ours.attributes) == {"a": 1, "b": "two"}
    assert ours.resource.attributes["service.name"] == "light"
    assert ours.instrumentation_scope.name == "modelotel" and ours.instrumentation_scope.version == "9.9"
    assert ours.status.status_code == StatusCode.ERROR
    assert ours.events[0].name == "exception" and "<email>" in ours.events[0].attributes["exception.message"]
    assert ours.start_time <= ours.end_time
    assert child_span.parent.span_id == ours.context.span_id
    assert child_span.context.trace_id == ours.context.trace_id
    assert ours.context.trace_flags.sampled


def test_sampler_decides():
    provider, exporter = _provider(ALWAYS_OFF)
    span = start_span(provider.get_tracer("m"), "x", None, SpanKind.INTERNAL, {})
    assert isinstance(span, NonRecordingSpan) and not span.is_recording()
    assert span.get_span_context().is_valid and not span.get_span_context().trace_flags.sampled
    span.end()
    assert exporter.get_finished_spans() == ()

    provider, exporter = _provider(TraceIdRatioBased(0.5))
    tracer = provider.get_tracer("m")
    recorded = 0
    for _ in range(400):
        s = start_span(tracer, "x", None, SpanKind.INTERNAL, {})
        recorded += s.is_recording()
        s.end()
    assert 120 < recorded < 280  # binomial(400, 0.5): far outside 10 sigma otherwise
    assert len(exporter.get_finished_spans()) == recorded


@pytest.mark.parametrize(
    "sampler", [TraceIdRatioBased(0.3), ParentBasedTraceIdRatio(0.3)], ids=["traceidratio", "parentbased_traceidratio"]
)
def test_ratio_samplers_decided_inline_as_the_sdk_decides(sampler):
    """Ratio samplers are answered without calling them: every span's decision is the sampler's own for its
    trace id (roots), and a ParentBased one follows its parent (children of sampled and unsampled spans)."""
    decide = sampler.should_sample
    asked = []
    sampler.should_sample = lambda *args, **kwargs: asked.append(args) or decide(*args, **kwargs)
    provider, exporter = _provider(sampler)
    tracer = provider.get_tracer("m")
    sampled = 0
    for _ in range(600):
        root = start_span(tracer, "x", None, SpanKind.SERVER, {})
        ctx = root.get_span_context()
        expected = decide(None, ctx.trace_id, "x").decision.is_sampled()
        assert ctx.trace_flags.sampled is expected and root.is_recording() is expected
        sampled += expected
        child = start_span(tracer, "y", trace.set_span_in_context(root), SpanKind.INTERNAL, {})
        parent_based = isinstance(sampler, ParentBased)
        assert child.get_span_context().trace_flags.sampled is expected  # same trace id, or following its parent
        for flags in (TraceFlags.DEFAULT, TraceFlags.SAMPLED):  # a remote parent decides for a ParentBased one
            remote = NonRecordingSpan(SpanContext(ctx.trace_id, 0xDEF, is_remote=True, trace_flags=TraceFlags(flags)))
            span = start_span(tracer, "z", trace.set_span_in_context(remote), SpanKind.SERVER, {})
            want = bool(flags) if parent_based else expected
            assert span.get_span_context().trace_flags.sampled is want
            span.end()
        child.end()
        root.end()
    assert 120 < sampled < 240  # binomial(600, 0.3)
    assert asked == []  # decided inline, never by a call to the sampler
    assert all(s.context.trace_flags.sampled for s in exporter.get_finished_spans())


def test_parent_based_sampler_follows_the_remote_parent():
    provider, exporter = _provider(ParentBased(root=ALWAYS_ON))
    tracer = provider.get_tracer("m")
    for flags, expected in ((TraceFlags.DEFAULT, False), (TraceFlags.SAMPLED, True)):
        parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(flags))
        ctx = trace.set_span_in_context(NonRecordingSpan(parent))
        span = start_span(tracer, "x", ctx, SpanKind.SERVER, {})
        assert span.is_recording() is expected
        assert span.get_span_context().trace_id == 0xABC
        span.end()
    (exported,) = exporter.get_finished_spans()
    assert exported.parent.span_id == 0xDEF and exported.parent.is_remote


# -- modelotel's own provider: spans queued as LightSpans and encoded by the export thread ---------------


def _our_provider(path, sampler=None, **queue_options):
    """What make_tracer_provider builds (a SpanQueue over the OTLP-JSON file exporter), with a chosen sampler."""
    provider = TracerProvider(resource=Resource({"service.name": "fast"}), sampler=sampler)
    queue = SpanQueue(OTLPJsonFileSpanExporter(path), **queue_options)
    provider.add_span_processor(queue)
    return provider, queue


def _read_spans(path) -> list:
    """(span proto, resource attributes, scope) for every span in an OTLP-JSON file."""
    out = []
    for line in Path(path).read_text().splitlines():
        for rs in json_line_to_proto(line).resource_spans:
            resource = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                out += [(span, resource, ss.scope) for span in ss.spans]
    return out


def _attrs(kvs) -> dict:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in kvs}


def test_make_tracer_provider_queues_our_spans(tmp_path):
    settings = config.resolve(service_name="made", exporter="file", path=tmp_path / "t.jsonl", environ={})
    provider = make_tracer_provider(settings, Resource({"service.name": "made"}))
    (queue,) = provider._active_span_processor._span_processors
    assert isinstance(queue, SpanQueue) and queue.max_queue_size == settings.span_queue_size
    span = start_span(provider.get_tracer("modelotel"), "x", None, SpanKind.INTERNAL, {})
    span.end()
    assert queue.spans == [span]  # ending a span is one append; nothing is encoded on this thread
    provider.shutdown()
    assert [s.name for s, _, _ in _read_spans(tmp_path / "t.jsonl")] == ["x"]


def test_fast_spans_read_back_complete(tmp_path):
    path = tmp_path / "spans.jsonl"
    provider, queue = _our_provider(path, schedule_delay_s=3600)
    tracer = provider.get_tracer("modelotel", "9.9")
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "v=1"}
    remote = extract_context(headers, HEADERS)
    server = start_span(tracer, "GET", remote, SpanKind.SERVER, {"http.request.method": "GET"})
    token = otel_context.attach(context_with_span(server, remote))
    try:
        model = start_span(tracer, "predict m", None, SpanKind.INTERNAL, {"ml.model.name": "m", "n": 3})
        model.add_event("checkpoint", {"step": 1})
        record_exception(model, ValueError("mail me at a@b.example"))
        model.end()
        app_span = tracer.start_span("app work")  # the application's own SDK span on our provider
        app_span.end()
    finally:
        otel_context.detach(token)
    server.set_attributes({"http.route": "/x/{id}", "http.response.status_code": 503, "ratio": 0.5, "ok": True})
    server.update_name("GET /x/{id}")
    server.set_status(Status(StatusCode.ERROR))
    server.end()
    assert path.read_text() == ""  # nothing until the queue is exported
    assert provider.force_flush()
    by_name = {span.name: (span, resource, scope) for span, resource, scope in _read_spans(path)}
    assert set(by_name) == {"GET /x/{id}", "predict m", "app work"}
    s, resource, scope = by_name["GET /x/{id}"]
    assert resource["service.name"] == "fast" and (scope.name, scope.version) == ("modelotel", "9.9")
    assert s.trace_id.hex() == "0af7651916cd43dd8448eb211c80319c"
    assert s.parent_span_id.hex() == "b7ad6b7169203331"
    assert s.flags == 0x300  # has-is-remote and is-remote: the parent came from the caller
    assert s.trace_state == "v=1" and s.kind == 2  # SPAN_KIND_SERVER
    assert _attrs(s.attributes) == {
        "http.request.method": "GET",
        "http.route": "/x/{id}",
        "http.response.status_code": 503,
        "ratio": 0.5,
        "ok": True,
    }
    assert s.status.code == 2 and s.start_time_unix_nano <= s.end_time_unix_nano
    m, _, _ = by_name["predict m"]
    assert m.parent_span_id == s.span_id and m.trace_id == s.trace_id and m.flags == 0x100 and m.kind == 1
    assert _attrs(m.attributes) == {"ml.model.name": "m", "n": 3}
    assert [e.name for e in m.events] == ["checkpoint", "exception"]
    assert _attrs(m.events[0].attributes) == {"step": 1}
    exception = _attrs(m.events[1].attributes)
    assert exception["exception.type"] == "ValueError" and "a@b.example" not in exception["exception.message"]
    assert m.status.code == 2 and m.status.message.startswith("ValueError: ")
    a, _, _ = by_name["app work"]
    assert a.parent_span_id == s.span_id and a.trace_id == s.trace_id
    assert queue.exported == 3
    provider.shutdown()


def _same_as_sdk_encoding(spans) -> None:
    """Our JSON line for LightSpans is byte-for-byte the SDK encoder's line for their ReadableSpans, and our
    protobuf request is the SDK encoder's message."""
    readable = [s.to_readable() for s in spans]
    assert light_spans_to_json_line(spans) == spans_to_json_line(readable)
    assert light_spans_to_request(spans) == encode_spans(readable)


_scalars = st.one_of(
    st.text(max_size=12),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.binary(max_size=6),
)
_values = st.one_of(
    _scalars,
    st.none(),
    st.lists(st.text(max_size=4), max_size=3),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=3),
    st.lists(st.floats(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(
    name=st.text(max_size=16),
    attributes=st.dictionaries(st.text(max_size=8), _values, max_size=6),
    events=st.lists(st.tuples(st.text(max_size=8), st.dictionaries(st.text(max_size=5), _scalars, max_size=3))),
    status=st.sampled_from([None, (StatusCode.OK, None), (StatusCode.ERROR, None), (StatusCode.ERROR, 'bad\n"x"')]),
    kind=st.sampled_from(list(SpanKind)),
    remote=st.booleans(),
    state=st.sampled_from([None, [("a", "1")], [("k", "v"), ("vendor", "x-y")]]),
)
def test_fast_encoding_equals_the_sdk_encoder(name, attributes, events, status, kind, remote, state):
    provider, queue = _our_provider(os.devnull, schedule_delay_s=3600)
    tracer = provider.get_tracer("modelotel", "1")
    parent = SpanContext(0x1234, 0x5678, is_remote=remote, trace_flags=TraceFlags(1), trace_state=TraceState(state))
    span = start_span(tracer, name, trace.set_span_in_context(NonRecordingSpan(parent)), kind, dict(attributes))
    root = start_span(provider.get_tracer("other"), "root", Context(), SpanKind.INTERNAL, {"k": "v"})
    for event_name, event_attrs in events:
        span.add_event(event_name, event_attrs)
    if status is not None:
        span.set_status(Status(*status))
    span.end()
    root.end()
    _same_as_sdk_encoding([span, root, span])
    provider.shutdown()


def test_sampler_is_respected_on_our_provider(tmp_path):
    path = tmp_path / "s.jsonl"
    provider, queue = _our_provider(path, ParentBased(root=ALWAYS_ON), schedule_delay_s=3600)
    tracer = provider.get_tracer("m")
    unsampled = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    span = start_span(tracer, "dropped", trace.set_span_in_context(NonRecordingSpan(unsampled)), SpanKind.SERVER, {})
    assert not span.is_recording() and span.get_span_context().trace_id == 0xABC
    token = otel_context.attach(trace.set_span_in_context(span))
    try:  # a child of an unsampled local span is not sampled either
        child = start_span(tracer, "child", None, SpanKind.INTERNAL, {})
        assert not child.is_recording() and child.get_span_context().trace_id == 0xABC
    finally:
        otel_context.detach(token)
    span.end()
    start_span(tracer, "kept", None, SpanKind.SERVER, {}).end()
    provider.force_flush()
    assert [s.name for s, _, _ in _read_spans(path)] == ["kept"]

    path = tmp_path / "ratio.jsonl"
    provider, queue = _our_provider(path, TraceIdRatioBased(0.5), schedule_delay_s=3600)
    tracer = provider.get_tracer("m")
    recorded = 0
    for _ in range(400):
        s = start_span(tracer, "x", None, SpanKind.INTERNAL, {})
        recorded += s.is_recording()
        s.end()
    assert 120 < recorded < 280  # binomial(400, 0.5): far outside 10 sigma otherwise
    provider.force_flush()
    assert len(_read_spans(path)) == recorded


def test_a_processor_added_to_our_provider_sees_our_spans(tmp_path):
    path = tmp_path / "p.jsonl"
    provider, queue = _our_provider(path, schedule_delay_s=3600)
    tracer = provider.get_tracer("m")
    start_span(tracer, "before", None, SpanKind.INTERNAL, {}).end()
    extra = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(extra))  # the application adds its own exporter
    start_span(tracer, "after", None, SpanKind.INTERNAL, {"a": 1}).end()
    assert [s.name for s in extra.get_finished_spans()] == ["after"]
    assert dict(extra.get_finished_spans()[0].attributes) == {"a": 1}
    provider.force_flush()
    assert sorted(s.name for s, _, _ in _read_spans(path)) == ["after", "before"]


def test_full_queue_drops_and_counts(tmp_path):
    provider, queue = _our_provider(tmp_path / "q.jsonl", max_queue_size=3, schedule_delay_s=3600)
    tracer = provider.get_tracer("m")
    before = SELF.drops["span_queue_full"]
    for i in range(5):
        span = start_span(tracer, f"s{i}", None, SpanKind.INTERNAL, {})
        assert span.is_recording()  # a span that will be dropped still records while it is current
        span.end()
    app_span = tracer.start_span("sdk")  # the application's SDK spans meet the same bound
    app_span.end()
    assert SELF.drops["span_queue_full"] - before == 3
    provider.force_flush()
    assert [s.name for s, _, _ in _read_spans(tmp_path / "q.jsonl")] == ["s0", "s1", "s2"]
    # In flight when the queue fills: the span was admitted at its start, so it is kept.
    early = start_span(tracer, "early", None, SpanKind.INTERNAL, {})
    for i in range(3):
        start_span(tracer, f"t{i}", None, SpanKind.INTERNAL, {}).end()
    early.end()
    provider.force_flush()
    assert [s.name for s, _, _ in _read_spans(tmp_path / "q.jsonl")][3:] == ["t0", "t1", "t2", "early"]


def test_record_only_sampler_spans_are_not_exported(tmp_path):
    class RecordOnly(Sampler):
        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, **kwargs):
            return SamplingResult(Decision.RECORD_ONLY, {"sampler.note": "kept"})

        def get_description(self):
            return "RecordOnly"

    provider, queue = _our_provider(tmp_path / "r.jsonl", RecordOnly(), schedule_delay_s=3600)
    span = start_span(provider.get_tracer("m"), "r", None, SpanKind.INTERNAL, {"a": 1})
    assert span.is_recording() and not span.get_span_context().trace_flags.sampled
    assert dict(span.attributes) == {"a": 1, "sampler.note": "kept"}
    span.end()
    provider.force_flush()
    assert _read_spans(tmp_path / "r.jsonl") == []


def test_export_thread_exports_full_batches_without_a_flush(tmp_path):
    path = tmp_path / "b.jsonl"
    provider, queue = _our_provider(path, max_export_batch_size=4, schedule_delay_s=3600)
    tracer = provider.get_tracer("m")
    for i in range(4):
        start_span(tracer, f"s{i}", None, SpanKind.INTERNAL, {}).end()
    deadline = time.monotonic() + 5
    while not path.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(s.name for s, _, _ in _read_spans(path)) == ["s0", "s1", "s2", "s3"]
    provider.shutdown()


def test_forked_child_exports_its_own_spans_only(tmp_path):
    path = tmp_path / "fork.jsonl"
    provider, queue = _our_provider(path, schedule_delay_s=3600)
    tracer = provider.get_tracer("m")
    start_span(tracer, "parent-pending", None, SpanKind.INTERNAL, {}).end()
    pid = os.fork()
    if pid == 0:  # the child: its queue starts empty and has its own export thread
        code = 1
        try:
            start_span(tracer, "child", None, SpanKind.INTERNAL, {}).end()
            code = 0 if queue._thread.is_alive() and provider.force_flush() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [s.name for s, _, _ in _read_spans(path)] == ["child"]
    provider.force_flush()
    assert [s.name for s, _, _ in _read_spans(path)] == ["child", "parent-pending"]


def test_extract_context_matches_the_global_propagator():
    cases = [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03 ",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "garbage",
        "",
    ]
    for traceparent in cases:
        for tracestate in (None, "a=1,b=2", "x" * 600):
            headers = {"traceparent": traceparent}
            if tracestate is not None:
                headers["tracestate"] = tracestate
            ours = trace.get_current_span(extract_context(headers, HEADERS)).get_span_context()
            theirs = trace.get_current_span(propagate.extract(headers, getter=HEADERS)).get_span_context()
            assert ours == theirs and ours.trace_state == theirs.trace_state, (traceparent, tracestate)
    # baggage goes through the propagator, which also extracts the span
    headers = {"traceparent": cases[0], "baggage": "user=1"}
    ctx = extract_context(headers, HEADERS)
    assert baggage.get_baggage("user", ctx) == "1"
    assert trace.get_current_span(ctx).get_span_context().trace_id == 0x0AF7651916CD43DD8448EB211C80319C


def test_big_batch_and_invalid_utf8_written_as_one_valid_line(tmp_path):
    # More pieces than one writev takes (IOV_MAX), and strings with lone surrogates: an attribute
    # value the SDK cannot encode is dropped as the SDK drops it; a name gets "?" instead of failing.
    path = tmp_path / "big.jsonl"
    provider, queue = _our_provider(path, max_export_batch_size=4096, schedule_delay_s=3600)
    tracer = provider.get_tracer("modelotel")
    ended = []
    for i in range(2100):
        span = start_span(tracer, f"s{i}", None, SpanKind.INTERNAL, {"i": i, "path": f"/x/{i}"})
        span.end()
        ended.append(span)
    odd = start_span(tracer, "bad\udc80name", None, SpanKind.INTERNAL, {"ok": "é", "bad": "x\udc80y"})
    odd.end()
    provider.force_flush()
    (line,) = path.read_text().splitlines()
    assert line == light_spans_to_json_line([*ended, odd])
    assert light_spans_to_json_line(ended) == spans_to_json_line([s.to_readable() for s in ended])
    spans = [s for s, _, _ in _read_spans(path)]
    assert [s.name for s in spans[:-1]] == [f"s{i}" for i in range(2100)]
    assert spans[-1].name == "bad?name" and _attrs(spans[-1].attributes) == {"ok": "é"}
