"""LightSpan: modelotel's cheap span goes through the provider's sampler, ids, resource and processors."""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

from modelotel.tracing import LightSpan, record_exception, start_span


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
