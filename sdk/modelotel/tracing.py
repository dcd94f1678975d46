"""Spans: choosing a TracerProvider, and recording exceptions without leaking PII.

When the application already set an SDK TracerProvider we use it (its sampler, processors and
exporters); otherwise, when traces are on, we build one that exports where the metrics go and
install it globally so the application's own spans join the same pipeline.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from .config import Settings
from .privacy import scrub

_log = logging.getLogger("modelotel")

MAX_STACKTRACE_CHARS = 16_384


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
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    kind = settings.exporter
    if kind == "file":
        from .otlp_json import OTLPJsonFileSpanExporter

        span_exporter: Any = OTLPJsonFileSpanExporter(settings.path)
    elif kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        span_exporter = ConsoleSpanExporter()
    elif kind == "otlp" or not isinstance(kind, str):
        if settings.otlp_protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        span_exporter = OTLPSpanExporter()
    else:
        return None
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    return provider


def record_exception(span: Span, exc: BaseException) -> None:
    """The OTel ``exception`` event and ERROR status, with PII scrubbed from message and stacktrace."""
    try:
        message = scrub(str(exc))
    except Exception:
        message = "<unprintable>"
    try:
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if len(stack) > MAX_STACKTRACE_CHARS:
            stack = "...\n" + stack[-MAX_STACKTRACE_CHARS:]
        stack = "\n".join(scrub(line) for line in stack.split("\n"))
    except Exception:
        stack = ""
    exc_type = type(exc)
    qualname = exc_type.__qualname__
    module = exc_type.__module__
    type_name = qualname if module in ("builtins", "__main__", None) else f"{module}.{qualname}"
    span.add_event(
        "exception",
        {"exception.type": type_name, "exception.message": message, "exception.stacktrace": stack},
    )
    span.set_status(Status(StatusCode.ERROR, f"{exc_type.__name__}: {message}"))
