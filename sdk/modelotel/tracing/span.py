"""modelotel's cheap span (``LightSpan``), the status and limit constants, and recording exceptions.

A leaf: the OTLP writers import from here, and nothing here imports the rest of tracing.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags

import modelotel.conventions as conv

from .._otel_compat import instrumentation_scope
from ..privacy import scrub

_log = logging.getLogger("modelotel")

MAX_STACKTRACE_CHARS = 16_384
MAX_ATTRIBUTES = 128  # the SDK's default OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, for attributes others set on our spans
MAX_EVENTS = 128

# The context key under which the API keeps the current span (``trace.set_span_in_context`` uses it).
SPAN_KEY = next(iter(trace.set_span_in_context(NonRecordingSpan(trace.INVALID_SPAN_CONTEXT), Context())))
UNSET_STATUS = Status(StatusCode.UNSET)  # every LightSpan starts with this object (encoders test identity)
SAMPLED_FLAG = int(TraceFlags.SAMPLED)
RANDOM_FLAG = int(getattr(TraceFlags, "RANDOM_TRACE_ID", 0))


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
        conv.EXCEPTION_EVENT,
        {conv.EXCEPTION_TYPE: type_name, conv.EXCEPTION_MESSAGE: message, conv.EXCEPTION_STACKTRACE: stack},
    )
    span.set_status(Status(StatusCode.ERROR, f"{exc_type.__name__}: {message}"))


class LightSpan(Span):
    """A recording span that is plain Python data: ids as ints, attributes in a dict, events as tuples.

    The OTel SDK's ``Tracer.start_span`` builds a locked, validating ``_Span`` (about 20 us per span
    here). modelotel's spans carry attributes it built itself, so this span keeps plain fields and
    hands itself to a sink when it ends: on modelotel's own provider the sink appends it to the
    ``SpanQueue`` (the export thread encodes it); on an application's provider it becomes the SDK's
    ``ReadableSpan`` for the provider's span processors (``on_start`` gets this object). The
    ``SpanContext`` is built only when someone asks for it (``get_span_context``); modelotel's own
    child spans read the ids directly. SpanLimits: at most 128 attributes and 128 events (the SDK's
    defaults) from code other than modelotel's; values are not validated here but by the encoder.
    """

    __slots__ = (
        "name",
        "trace_id",
        "span_id",
        "trace_flags",
        "trace_state",
        "parent_id",
        "parent_remote",
        "kind",
        "attributes",
        "events",
        "status",
        "start_time",
        "end_time",
        "tracer",
        "_sink",
        "_context",
        "queued",
        "deferred_owner",
    )

    def __init__(
        self,
        tracer: Any,
        sink: Any,
        name: str,
        trace_id: int,
        span_id: int,
        trace_flags: int,
        trace_state: Any,
        parent_id: int,
        parent_remote: bool,
        kind: SpanKind,
        attributes: dict,
        queued: bool = False,
    ) -> None:
        self.tracer = tracer
        self._sink = sink
        self.name = name  # rename with update_name (ignored after the end); the middleware also sets it directly
        self.trace_id = trace_id
        self.span_id = span_id
        self.trace_flags = trace_flags
        self.trace_state = trace_state  # a TraceState or None
        self.parent_id = parent_id  # 0: a root span
        self.parent_remote = parent_remote
        self.kind = kind
        self.attributes = attributes
        self.events: list[tuple[str, Any, int]] | None = None  # (name, attributes, time_ns)
        self.status = UNSET_STATUS
        self.start_time = time.time_ns()
        self.end_time = 0  # 0 while recording
        self._context: SpanContext | None = None
        # True when ending appends it to modelotel's SpanQueue, whose thread encodes it: then work on
        # its attributes may be left for that thread (ModelBuffers.traced, with ``deferred_owner``
        # the buffers holding it; the queue completes it before export).
        self.queued = queued
        self.deferred_owner: Any = None

    def get_span_context(self) -> SpanContext:
        context = self._context
        if context is None:
            context = self._context = SpanContext(
                self.trace_id,
                self.span_id,
                is_remote=False,
                trace_flags=TraceFlags(self.trace_flags),
                trace_state=self.trace_state,
            )
        return context

    def is_recording(self) -> bool:
        return not self.end_time

    def set_attribute(self, key: str, value: Any) -> None:
        if not self.end_time and (len(self.attributes) < MAX_ATTRIBUTES or key in self.attributes):
            self.attributes[key] = value

    def set_attributes(self, attributes: Any) -> None:
        if not self.end_time:
            if len(self.attributes) + len(attributes) <= MAX_ATTRIBUTES:
                self.attributes.update(attributes)
            else:
                for key, value in attributes.items():
                    self.set_attribute(key, value)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        if self.end_time:
            return
        events = self.events
        if events is None:
            events = self.events = []
        if len(events) < MAX_EVENTS:
            events.append((name, dict(attributes) if attributes else {}, timestamp or time.time_ns()))

    def add_link(self, context: Any, attributes: Any = None) -> None:  # not used by modelotel
        pass

    def update_name(self, name: str) -> None:
        if not self.end_time:
            self.name = name

    def set_status(self, status: Any, description: str | None = None) -> None:
        if self.end_time:
            return
        if not isinstance(status, Status):
            status = Status(status, description)
        # As the SDK: OK is final, and UNSET never replaces a status already set.
        if self.status.status_code is StatusCode.OK or status.status_code is StatusCode.UNSET:
            return
        self.status = status

    def record_exception(self, exception: BaseException, attributes: Any = None, timestamp: Any = None, escaped=False):
        record_exception(self, exception)

    def end(self, end_time: int | None = None) -> None:
        if self.end_time:
            return
        self.end_time = end_time or time.time_ns()
        try:
            self._sink(self)
        except Exception as exc:
            _log.debug("modelotel: span end failed: %s", exc)

    # -- the SDK's view ----------------------------------------------------------------------------
    def parent_context(self) -> SpanContext | None:
        if not self.parent_id:
            return None
        return SpanContext(self.trace_id, self.parent_id, is_remote=self.parent_remote)

    def to_readable(self, scope: Any = None) -> Any:
        """The SDK ``ReadableSpan`` of this (ended) span, as the SDK's own span would have produced it.

        ``scope``: the tracer's instrumentation scope when the caller has it at hand (a tracer's plan does).
        """
        from opentelemetry.sdk.trace import Event, ReadableSpan

        tracer = self.tracer
        return ReadableSpan(
            name=self.name,
            context=self.get_span_context(),
            parent=self.parent_context(),
            resource=tracer.resource,
            attributes=self.attributes,
            events=tuple(Event(name, attrs, ts) for name, attrs, ts in self.events or ()),
            kind=self.kind,
            status=self.status,
            start_time=self.start_time,
            end_time=self.end_time or None,
            instrumentation_scope=scope if scope is not None else instrumentation_scope(tracer),
        )

    def __repr__(self) -> str:
        return f"LightSpan({self.name!r}, trace_id={self.trace_id:032x}, span_id={self.span_id:016x})"

