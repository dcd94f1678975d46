"""Every OTel SDK private modelotel uses (modelotel._otel_compat), against the installed SDK.

Each accessor returns None or degrades when its private is missing; these tests fail instead, so an
SDK upgrade that moves one is caught here (then update _otel_compat and its SDK_CHECKED).
"""

from __future__ import annotations

import contextvars

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    InMemoryMetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, TraceFlags

from modelotel import _otel_compat as compat


@pytest.fixture
def provider():
    tp = TracerProvider(resource=Resource.create({"service.name": "compat"}))
    yield tp
    tp.shutdown()


def test_span_processors_track_add_span_processor(provider):
    tracer = provider.get_tracer("t")
    before = compat.span_processors(tracer.span_processor)
    assert isinstance(before, tuple) and before == ()
    assert compat.span_processors_fast(tracer.span_processor) is before
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    after = compat.span_processors(tracer.span_processor)
    assert after is not before and len(after) == 1  # replaced, not mutated: identity says "changed"


def test_tracer_config_and_enabled(provider):
    tracer = provider.get_tracer("t")
    config = compat.tracer_config(tracer)
    assert config is not None and config.is_enabled is True
    assert compat.tracer_config_fast(tracer) is config
    check = compat.tracer_enabled_check(tracer)
    assert callable(check) and check() is True


def test_instrumentation_scope(provider):
    tracer = provider.get_tracer("scope-name", "1.2.3")
    assert compat.has_instrumentation_scope(tracer)
    scope = compat.instrumentation_scope(tracer)
    assert isinstance(scope, InstrumentationScope)
    assert (scope.name, scope.version) == ("scope-name", "1.2.3")


def test_set_provider_resource(provider):
    old = provider.get_tracer("t")
    new_resource = Resource.create({"service.name": "child"})
    compat.set_provider_resource(provider, new_resource)
    assert provider.resource is new_resource
    assert old.resource is new_resource
    fresh = provider.get_tracer("t")
    assert fresh is not old and fresh.resource is new_resource


def test_static_decision():
    assert compat.static_decision(ALWAYS_ON) is Decision.RECORD_AND_SAMPLE
    assert compat.static_decision(ALWAYS_OFF) is Decision.DROP
    assert type(ALWAYS_ON) is StaticSampler


def test_parent_based_parts():
    root = TraceIdRatioBased(0.5)
    parts = compat.parent_based_parts(ParentBased(root))
    assert len(parts) == len(compat.PARENT_BASED_PARTS) == 5
    assert parts[0] is root
    assert all(p is not None for p in parts)
    assert compat.static_decision(parts[1]) is Decision.RECORD_AND_SAMPLE  # remote sampled: ALWAYS_ON
    assert compat.static_decision(parts[2]) is Decision.DROP  # remote not sampled: ALWAYS_OFF


def test_runtime_context_var_is_attach():
    var = compat.runtime_context_var()
    assert isinstance(var, contextvars.ContextVar)
    ctx = otel_context.set_value("k", "v")
    token = otel_context.attach(ctx)
    try:
        assert var.get() is ctx
    finally:
        otel_context.detach(token)


def test_composite_propagators():
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    inner = [TraceContextTextMapPropagator(), W3CBaggagePropagator()]
    assert list(compat.composite_propagators(CompositePropagator(inner))) == inner


def test_preferred_temporality():
    from opentelemetry.sdk.metrics import Histogram

    exporter = ConsoleMetricExporter(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    preferred = compat.preferred_temporality(exporter)
    assert preferred[Histogram] is AggregationTemporality.DELTA


def test_meter_provider_resource_readers_and_exporter():
    exporter = ConsoleMetricExporter()
    periodic = PeriodicExportingMetricReader(exporter, export_interval_millis=60_000)
    resource = Resource.create({"service.name": "meters"})
    mp = MeterProvider(resource=resource, metric_readers=[periodic, InMemoryMetricReader()])
    try:
        got_resource, readers = compat.meter_provider_resource_and_readers(mp)
        assert got_resource is resource
        assert periodic in list(readers)
        assert compat.reader_exporter(periodic) is exporter
    finally:
        mp.shutdown()


def test_encoders(provider):
    encode_spans = compat.span_encoder()
    tracer = provider.get_tracer("t")
    span = ReadableSpan(
        name="s",
        context=SpanContext(1, 2, is_remote=False, trace_flags=TraceFlags(1)),
        resource=tracer.resource,
        instrumentation_scope=compat.instrumentation_scope(tracer),
    )
    request = encode_spans([span])
    assert request.resource_spans[0].scope_spans[0].spans[0].name == "s"

    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    try:
        mp.get_meter("m").create_counter("c").add(3)
        request = compat.metrics_encoder()(reader.get_metrics_data())
        assert request.resource_metrics[0].scope_metrics[0].metrics[0].name == "c"
    finally:
        mp.shutdown()

    mixin = compat.metric_exporter_mixin()
    assert isinstance(mixin, type) and hasattr(mixin, "_common_configuration")
