"""Choosing a TracerProvider: the application's, or our own exporting where the metrics go."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from .._otel_compat import set_provider_resource  # noqa: F401 - re-exported (runtime calls it here)
from ..config import Settings
from .queue import SpanQueue, make_span_exporter


def app_tracer_provider() -> Any | None:
    """The application's SDK TracerProvider, or None when only the API's proxy/no-op is installed."""
    try:
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    except ImportError:  # pragma: no cover - the SDK is a dependency
        return None
    provider = trace.get_tracer_provider()
    return provider if isinstance(provider, SdkTracerProvider) else None


def make_tracer_provider(settings: Settings, resource: Any) -> Any | None:
    """Our own SDK TracerProvider exporting like the metrics, or None when there is nowhere to send spans."""
    from opentelemetry.sdk.trace import TracerProvider

    exporter = make_span_exporter(settings)
    if exporter is None:
        return None
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(
        SpanQueue(
            exporter,
            max_queue_size=settings.span_queue_size,
            max_export_batch_size=settings.span_batch_size,
            schedule_delay_s=settings.span_schedule_delay_s,
        )
    )
    return provider
