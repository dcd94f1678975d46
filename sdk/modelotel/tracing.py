"""Spans: choosing a TracerProvider, and recording exceptions without leaking PII.

When the application already set an SDK TracerProvider we use it (its sampler, processors and
exporters); otherwise, when traces are on, we build one that exports where the metrics go and
install it globally so the application's own spans join the same pipeline.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, Status, StatusCode, TraceFlags

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
    batch = min(512, settings.span_queue_size)
    provider.add_span_processor(
        BatchSpanProcessor(span_exporter, max_queue_size=settings.span_queue_size, max_export_batch_size=batch)
    )
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


class LightSpan(Span):
    """A recording span that is plain Python data until ``end()`` turns it into the SDK's ReadableSpan.

    The OTel SDK's ``Tracer.start_span`` builds a locked, validating ``_Span`` (about 20 us per span
    here, the larger part of a traced request's overhead). modelotel's own spans only ever carry
    attributes it built itself, so this span keeps them in a dict and makes the ``ReadableSpan`` once,
    at the end. It still goes through the application's provider: its sampler decides, its id
    generator makes the ids, its resource and span processors receive the span (``on_start`` gets this
    object, ``on_end`` the ReadableSpan). SpanLimits are not applied (our attribute sets are bounded).
    """

    __slots__ = ("_name", "_context", "_parent", "_kind", "_attrs", "_events", "_status", "_start", "_ended", "_tracer")

    def __init__(self, tracer: Any, name: str, context: Any, parent: Any, kind: Any, attributes: dict) -> None:
        self._tracer = tracer
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._attrs = attributes
        self._events: list[Any] = []
        self._status = Status(StatusCode.UNSET)
        self._start = time.time_ns()
        self._ended = False

    def get_span_context(self) -> Any:
        return self._context

    def is_recording(self) -> bool:
        return not self._ended

    def set_attribute(self, key: str, value: Any) -> None:
        if not self._ended:
            self._attrs[key] = value

    def set_attributes(self, attributes: Any) -> None:
        if not self._ended:
            self._attrs.update(attributes)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        if not self._ended:
            from opentelemetry.sdk.trace import Event

            self._events.append(Event(name, attributes or {}, timestamp or time.time_ns()))

    def add_link(self, context: Any, attributes: Any = None) -> None:  # not used by modelotel
        pass

    def update_name(self, name: str) -> None:
        if not self._ended:
            self._name = name

    def set_status(self, status: Any, description: str | None = None) -> None:
        if self._ended:
            return
        if isinstance(status, Status):
            self._status = status
        else:
            self._status = Status(status, description)

    def record_exception(self, exception: BaseException, attributes: Any = None, timestamp: Any = None, escaped=False):
        record_exception(self, exception)

    def end(self, end_time: int | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            from opentelemetry.sdk.trace import ReadableSpan

            tracer = self._tracer
            readable = ReadableSpan(
                name=self._name,
                context=self._context,
                parent=self._parent,
                resource=tracer.resource,
                attributes=self._attrs,
                events=tuple(self._events),
                kind=self._kind,
                status=self._status,
                start_time=self._start,
                end_time=end_time or time.time_ns(),
                instrumentation_scope=tracer._instrumentation_scope,
            )
            tracer.span_processor.on_end(readable)
        except Exception as exc:
            _log.debug("modelotel: span end failed: %s", exc)

    def __repr__(self) -> str:
        return f"LightSpan({self._name!r}, {self._context!r})"


def start_span(tracer: Any, name: str, parent_context: Any, kind: Any, attributes: dict) -> Span:
    """A span as ``tracer.start_span`` would make it, as a LightSpan when the tracer is the OTel SDK's.

    Anything unusual (a non-SDK tracer, a disabled tracer) goes through ``tracer.start_span`` itself.
    """
    sampler = getattr(tracer, "sampler", None)
    processor = getattr(tracer, "span_processor", None)
    id_generator = getattr(tracer, "id_generator", None)
    enabled = getattr(tracer, "_is_enabled", None)
    if sampler is None or processor is None or id_generator is None or not hasattr(tracer, "_instrumentation_scope"):
        return tracer.start_span(name, context=parent_context, kind=kind, attributes=attributes)
    if enabled is not None and not enabled():
        return tracer.start_span(name, context=parent_context, kind=kind, attributes=attributes)
    parent = trace.get_current_span(parent_context).get_span_context()
    if parent is None or not parent.is_valid:
        parent = None
        trace_id = id_generator.generate_trace_id()
        random_trace_id = id_generator.is_trace_id_random()
    else:
        trace_id = parent.trace_id
        random_trace_id = parent.trace_flags.random_trace_id
    result = sampler.should_sample(parent_context, trace_id, name, kind, attributes, ())
    flags = TraceFlags.SAMPLED if result.decision.is_sampled() else TraceFlags.DEFAULT
    if random_trace_id:
        flags |= TraceFlags.RANDOM_TRACE_ID
    context = SpanContext(
        trace_id,
        id_generator.generate_span_id(),
        is_remote=False,
        trace_flags=TraceFlags(flags),
        trace_state=result.trace_state,
    )
    if not result.decision.is_recording():
        return NonRecordingSpan(context)
    attrs = dict(attributes)
    if result.attributes:
        attrs.update(result.attributes)
    span = LightSpan(tracer, name, context, parent, kind, attrs)
    try:
        processor.on_start(span, parent_context=parent_context)
    except Exception as exc:
        _log.debug("modelotel: span processor on_start failed: %s", exc)
    return span
