"""Every use of an OpenTelemetry SDK private, in one place (tests/sdk/test_otel_compat.py runs each against the SDK).

The OTel Python SDK has no public API for a few things modelotel needs: the span processors a provider
holds (to append ended spans straight to our queue), a tracer's scope and enabled flag, a sampler's
parts (to decide inline), the ContextVar behind the runtime context, the encoders the OTLP exporters
use, a provider's resource and metric readers. Each access is a function here whose docstring names
the SDK version it was checked against; when one changes, this file and its test are the only places
to look. Readers degrade (return None) where the private is missing; the test fails instead, so an
SDK upgrade that removes one is noticed, not silently slower.

Hot-path accessors (a span's start) are bound C ``attrgetter``s (``*_fast``): the same attribute as
the documented function beside them, without a Python frame per span.

Checked against: opentelemetry-sdk / -api / -exporter-otlp-proto-common 1.45.1.
"""

from __future__ import annotations

import contextvars
import operator
from typing import Any

SDK_CHECKED = "1.45.1"  # the opentelemetry-sdk version every function below was checked against


# -- tracers and their provider ----------------------------------------------------------------------


def span_processors(multi: Any) -> Any:
    """The tuple of span processors behind a provider's ``SynchronousMultiSpanProcessor`` (``_span_processors``).

    Replaced (never mutated) by ``add_span_processor``, so identity says "unchanged". Checked: SDK 1.45.1.
    """
    return getattr(multi, "_span_processors", None)


span_processors_fast = operator.attrgetter("_span_processors")  # span_processors() on the hot path


def tracer_config(tracer: Any) -> Any:
    """A tracer's ``_TracerConfig`` (``_tracer_config``; ``.is_enabled``), or None before SDK 1.3x.

    Replaced, never mutated, when the configurator changes. Checked: SDK 1.45.1.
    """
    return getattr(tracer, "_tracer_config", None)


tracer_config_fast = operator.attrgetter("_tracer_config")  # tracer_config() on the hot path


def tracer_enabled_check(tracer: Any) -> Any:
    """A tracer's ``_is_enabled`` method (SDKs with it but without ``_tracer_config``), or None. Checked: SDK 1.45.1."""
    return getattr(tracer, "_is_enabled", None)


def has_instrumentation_scope(tracer: Any) -> bool:
    """Whether ``tracer`` is an SDK tracer carrying its scope (``_instrumentation_scope``). Checked: SDK 1.45.1."""
    return hasattr(tracer, "_instrumentation_scope")


def instrumentation_scope(tracer: Any) -> Any:
    """An SDK tracer's ``InstrumentationScope`` (``_instrumentation_scope``). Checked: SDK 1.45.1."""
    return tracer._instrumentation_scope


def set_provider_resource(provider: Any, resource: Any) -> None:
    """Give an SDK TracerProvider another Resource (``_resource``) and reset its cached tracers (``_tracers``).

    Tracers handed out before get the resource too (their public ``resource`` attribute); the cache is
    cleared so new ones are new objects. Checked: SDK 1.45.1.
    """
    if hasattr(provider, "_resource"):
        provider._resource = resource
    tracers = getattr(provider, "_tracers", None)
    if isinstance(tracers, dict):
        for tracer in list(tracers.values()):
            tracer.resource = resource
        tracers.clear()


# -- samplers ------------------------------------------------------------------------------------------


def static_decision(sampler: Any) -> Any:
    """A ``StaticSampler``'s ``Decision`` (``_decision``), or None. Checked: SDK 1.45.1."""
    return getattr(sampler, "_decision", None)


PARENT_BASED_PARTS = (
    "_root",
    "_remote_parent_sampled",
    "_remote_parent_not_sampled",
    "_local_parent_sampled",
    "_local_parent_not_sampled",
)


def parent_based_parts(sampler: Any) -> list[Any]:
    """A ``ParentBased`` sampler's five delegates, in the order of ``PARENT_BASED_PARTS`` (None where missing).

    Checked: SDK 1.45.1.
    """
    return [getattr(sampler, name, None) for name in PARENT_BASED_PARTS]


# -- context -------------------------------------------------------------------------------------------


def runtime_context_var() -> contextvars.ContextVar | None:
    """The ContextVar behind the API's default runtime context, or None for another runtime context.

    ``opentelemetry.context._RUNTIME_CONTEXT`` (a ``ContextVarsRuntimeContext``) keeps it in
    ``_current_context``; ``attach``/``detach`` are exactly its ``set``/``reset``. Checked: API 1.45.1.
    """
    from opentelemetry import context as otel_context

    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if type(runtime).__name__ == "ContextVarsRuntimeContext" and isinstance(var, contextvars.ContextVar):
        return var
    return None


def composite_propagators(textmap: Any) -> Any:
    """The propagators inside a ``CompositePropagator`` (``_propagators``), or None. Checked: API 1.45.1."""
    return getattr(textmap, "_propagators", None)


# -- metrics -------------------------------------------------------------------------------------------


def preferred_temporality(exporter: Any) -> Any:
    """A metric exporter's requested temporality by instrument type (``_preferred_temporality``), or None.

    Checked: SDK 1.45.1.
    """
    return getattr(exporter, "_preferred_temporality", None)


def meter_provider_resource_and_readers(provider: Any) -> tuple[Any, Any]:
    """(resource, metric readers) of an SDK ``MeterProvider`` (``_sdk_config``, ``_metric_readers``).

    Checked: SDK 1.45.1.
    """
    sdk_config = getattr(provider, "_sdk_config", None)
    resource = getattr(sdk_config, "resource", None)
    readers = getattr(provider, "_metric_readers", None) or getattr(sdk_config, "metric_readers", ()) or ()
    return resource, readers


def reader_exporter(reader: Any) -> Any:
    """The exporter a ``PeriodicExportingMetricReader`` pushes to (``_exporter``), or None. Checked: SDK 1.45.1."""
    return getattr(reader, "_exporter", None)


# -- the OTLP exporters' encoders (a ``_internal`` package of opentelemetry-exporter-otlp-proto-common) ---


def span_encoder() -> Any:
    """``encode_spans(readable_spans) -> ExportTraceServiceRequest``, the OTLP exporters' own encoder.

    From ``opentelemetry.exporter.otlp.proto.common._internal.trace_encoder``. Imported when called
    (the writers call it once, at their import). Checked: exporter-otlp-proto-common 1.45.1.
    """
    from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import encode_spans

    return encode_spans


def metrics_encoder() -> Any:
    """``encode_metrics(metrics_data) -> ExportMetricsServiceRequest``, the OTLP exporters' own encoder.

    From ``opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder``. Checked: 1.45.1.
    """
    from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics

    return encode_metrics


def metric_exporter_mixin() -> type:
    """``OTLPMetricExporterMixin``: the OTLP metric exporters' temporality/aggregation handling, as a base class.

    From ``opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder``. Checked: 1.45.1.
    """
    from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import OTLPMetricExporterMixin

    return OTLPMetricExporterMixin
