"""Spans: choosing a TracerProvider, modelotel's cheap span, and recording exceptions without leaking PII.

When the application already set an SDK TracerProvider we use it (its sampler, id generator,
resource and span processors); otherwise, when traces are on, we build one that exports where the
metrics go and install it globally so the application's own spans join the same pipeline. That
provider's only span processor is a ``SpanQueue`` (span_export.py): a span of ours that ends there is
one list append, and everything else (encoding, writing) happens on the queue's thread.
"""

from __future__ import annotations

import contextvars
import logging
import time
import traceback
from collections.abc import Callable
from random import getrandbits
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from .config import Settings
from .privacy import scrub
from .span_export import SpanQueue, make_span_exporter

_log = logging.getLogger("modelotel")

MAX_STACKTRACE_CHARS = 16_384
MAX_ATTRIBUTES = 128  # the SDK's default OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, for attributes others set on our spans
MAX_EVENTS = 128

# The context key under which the API keeps the current span (``trace.set_span_in_context`` uses it).
SPAN_KEY = next(iter(trace.set_span_in_context(NonRecordingSpan(trace.INVALID_SPAN_CONTEXT), Context())))
UNSET_STATUS = Status(StatusCode.UNSET)  # every LightSpan starts with this object (encoders test identity)
_SAMPLED = int(TraceFlags.SAMPLED)
_RANDOM = int(getattr(TraceFlags, "RANDOM_TRACE_ID", 0))


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


def set_provider_resource(provider: Any, resource: Any) -> None:
    """Give an SDK TracerProvider another Resource, for our own provider in a forked child.

    Tracers it hands out from now on are new objects carrying it (encoders cache a tracer's resource
    framing by the tracer's identity); those handed out before the fork (an application's module-level
    tracer) get it too, for the SDK spans they start. The SDK has no public setter: the provider keeps
    the resource in ``_resource`` and its tracers, cached by scope, in ``_tracers``.
    """
    if hasattr(provider, "_resource"):
        provider._resource = resource
    tracers = getattr(provider, "_tracers", None)
    if isinstance(tracers, dict):
        for tracer in list(tracers.values()):
            tracer.resource = resource
        tracers.clear()


def _context_var() -> Any:
    """The ContextVar behind the API's default runtime context, or None for another runtime context."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if type(runtime).__name__ == "ContextVarsRuntimeContext" and isinstance(var, contextvars.ContextVar):
        return var
    return None


_CONTEXT_VAR = _context_var()
# ``otel_context.attach``/``detach`` minus two Python calls: with the default runtime context they are
# exactly this ContextVar's set/reset (same tokens). detach_context raises where the API would log.
attach_context: Callable[[Context], Any] = _CONTEXT_VAR.set if _CONTEXT_VAR is not None else otel_context.attach
detach_context: Callable[[Any], None] = _CONTEXT_VAR.reset if _CONTEXT_VAR is not None else otel_context.detach


def current_context_with(span: Span) -> Context:
    """``trace.set_span_in_context(span)``: the current context plus ``span``, minus the API's calls."""
    if _CONTEXT_VAR is None:
        return trace.set_span_in_context(span)
    current = _CONTEXT_VAR.get()
    return Context({**current, SPAN_KEY: span}) if current else Context({SPAN_KEY: span})


def context_with_span(span: Span, parent: Context | None) -> Context:
    """``trace.set_span_in_context(span, parent)``, without the copy when ``parent`` is empty."""
    if not parent:
        return Context({SPAN_KEY: span})
    return trace.set_span_in_context(span, parent)


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

    def to_readable(self) -> Any:
        """The SDK ``ReadableSpan`` of this (ended) span, as the SDK's own span would have produced it."""
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
            instrumentation_scope=tracer._instrumentation_scope,
        )

    def __repr__(self) -> str:
        return f"LightSpan({self.name!r}, trace_id={self.trace_id:032x}, span_id={self.span_id:016x})"


# -- starting spans --------------------------------------------------------------------------------

# A sampler whose answer depends only on the parent's kind and the trace id: (root, remote sampled, remote
# not sampled, local sampled, local not sampled) -> sampled (a bool), or a TraceIdRatioBased bound (an int:
# sampled when the trace id's low 64 bits are below it, as the SDK decides). Static samplers (ALWAYS_ON/OFF),
# TraceIdRatioBased, and ParentBased over those (the SDK's default parentbased_always_on, and
# parentbased_traceidratio) are decided inline; others are asked.
_ROOT, _REMOTE_ON, _REMOTE_OFF, _LOCAL_ON, _LOCAL_OFF = range(5)
_LOW_64 = (1 << 64) - 1


def _static_table(sampler: Any) -> tuple[bool | int, ...] | None:
    from opentelemetry.sdk.trace.sampling import (
        Decision,
        ParentBased,
        ParentBasedTraceIdRatio,
        StaticSampler,
        TraceIdRatioBased,
    )

    def decision(s: Any) -> bool | int | None:
        if type(s) is StaticSampler:
            d = getattr(s, "_decision", None)
            if d is Decision.RECORD_AND_SAMPLE:
                return True
            if d is Decision.DROP:
                return False
        if type(s) is TraceIdRatioBased and TraceIdRatioBased.TRACE_ID_LIMIT == _LOW_64:
            bound = getattr(s, "bound", None)
            return bound if type(bound) is int else None
        return None

    if type(sampler) is StaticSampler or type(sampler) is TraceIdRatioBased:
        d = decision(sampler)
        return None if d is None else (d,) * 5
    if type(sampler) is ParentBased or type(sampler) is ParentBasedTraceIdRatio:
        parts = [
            decision(getattr(sampler, name, None))
            for name in (
                "_root",
                "_remote_parent_sampled",
                "_remote_parent_not_sampled",
                "_local_parent_sampled",
                "_local_parent_not_sampled",
            )
        ]
        return None if None in parts else tuple(parts)  # type: ignore[arg-type]
    return None


class _TracerPlan:
    """How to start spans for one SDK tracer, worked out once (and again if its processors change)."""

    __slots__ = (
        "tracer",
        "multi",
        "processors",
        "config",
        "enabled",
        "queue",
        "spans",
        "max_queue",
        "sink",
        "on_start",
        "table",
        "random_ids",
        "random_flag",
    )

    def __init__(self, tracer: Any, multi: Any, processors: Any) -> None:
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

        self.tracer = tracer
        self.multi = multi  # the provider's span processor; its tuple of processors changes on add
        self.processors = processors
        # SDK >= 1.3x can disable a tracer: its _TracerConfig (replaced, never mutated) says so.
        self.config = getattr(tracer, "_tracer_config", None)
        self.enabled = getattr(tracer, "_is_enabled", None)
        queue = processors[0] if len(processors) == 1 and type(processors[0]) is SpanQueue else None
        self.queue = queue
        self.spans = queue.spans if queue is not None else None
        self.max_queue = queue.max_queue_size if queue is not None else 0
        if queue is not None:  # ours alone: ending a span is the queue list's append (its bound: start_span)
            self.sink = queue.spans.append
            self.on_start = None
        else:

            def to_processors(span: LightSpan) -> None:
                multi.on_end(span.to_readable())

            self.sink = to_processors
            self.on_start = multi.on_start
        self.table = _static_table(tracer.sampler)
        self.random_ids = type(tracer.id_generator) is RandomIdGenerator
        self.random_flag = _RANDOM if tracer.id_generator.is_trace_id_random() else 0

    def usable(self, tracer: Any) -> bool:
        """Still the plan of this tracer (same processors) and the tracer is enabled."""
        if self.tracer is not tracer or self.multi._span_processors is not self.processors:
            return False
        if self.config is not None and tracer._tracer_config is self.config:
            return bool(self.config.is_enabled)
        return self.enabled is None or bool(self.enabled())


def _discard(span: LightSpan) -> None:
    pass


_PLANS: dict[int, _TracerPlan] = {}
_LAST_PLAN: list[Any] = [None]  # the plan used last: nearly every span is STATE.tracer's


def _plan_of(tracer: Any) -> _TracerPlan | None:
    """The tracer's plan, or None for anything but an enabled OTel SDK tracer."""
    plan = _PLANS.get(id(tracer))
    if plan is None or plan.tracer is not tracer or plan.multi._span_processors is not plan.processors:
        multi = getattr(tracer, "span_processor", None)
        processors = getattr(multi, "_span_processors", None)
        if (
            getattr(tracer, "sampler", None) is None
            or getattr(tracer, "id_generator", None) is None
            or not hasattr(tracer, "_instrumentation_scope")
            or not isinstance(processors, tuple)
        ):
            return None
        plan = _TracerPlan(tracer, multi, processors)
        if len(_PLANS) > 64:  # tracers are few; this only bounds a pathological caller
            _PLANS.clear()
        _PLANS[id(tracer)] = plan
    if not plan.usable(tracer):
        return None
    _LAST_PLAN[0] = plan
    return plan


def _new_id(bits: int) -> int:
    value = getrandbits(bits)
    while not value:  # 0 is the invalid id (the SDK's RandomIdGenerator redraws too)
        value = getrandbits(bits)
    return value


def _current_span() -> Any:
    """The current context's span, or None (``trace.get_current_span`` minus its calls)."""
    if _CONTEXT_VAR is not None:
        return _CONTEXT_VAR.get().get(SPAN_KEY)
    span = trace.get_current_span()
    return span if span is not trace.INVALID_SPAN else None


def start_span(tracer: Any, name: str, parent_context: Context | None, kind: SpanKind, attributes: dict) -> Span:
    """A span as ``tracer.start_span(name, parent_context, kind, attributes)`` would make it, made cheaply.

    ``attributes`` becomes the span's own dict (not copied). The tracer's sampler decides (inline
    for static and parent-based-over-static samplers, which answer the same for the same parent),
    its id generator makes the ids, and the span goes to its processors. Anything unusual (a non-SDK
    tracer, a disabled one) goes through ``tracer.start_span`` itself.
    """
    plan = _LAST_PLAN[0]
    if (
        plan is None
        or plan.tracer is not tracer
        or plan.multi._span_processors is not plan.processors
        or (plan.config is not None and (tracer._tracer_config is not plan.config or not plan.config.is_enabled))
        or (plan.config is None and plan.enabled is not None and not plan.enabled())
    ):
        plan = _plan_of(tracer)
        if plan is None:
            return tracer.start_span(name, context=parent_context, kind=kind, attributes=attributes)
    if parent_context is not None:
        parent = parent_context.get(SPAN_KEY)
    elif _CONTEXT_VAR is not None:
        parent = _CONTEXT_VAR.get().get(SPAN_KEY)
    else:
        parent = _current_span()
    remote = False
    if type(parent) is LightSpan:  # a child of modelotel's own span (a model call inside a request)
        trace_id = parent.trace_id
        parent_id = parent.span_id
        flags = parent.trace_flags
        trace_state = parent.trace_state
    else:
        parent_id = 0
        if parent is not None:
            parent_ctx = parent.get_span_context()
            if parent_ctx is not None and parent_ctx.is_valid:
                trace_id = parent_ctx.trace_id
                parent_id = parent_ctx.span_id
                remote = parent_ctx.is_remote
                flags = parent_ctx.trace_flags
                trace_state = parent_ctx.trace_state
        if not parent_id:  # a root span
            flags = plan.random_flag
            trace_state = None
            ids = plan.random_ids
            trace_id = (getrandbits(128) or _new_id(128)) if ids else tracer.id_generator.generate_trace_id()
    table = plan.table
    if table is not None:
        if not parent_id:
            sample = table[_ROOT]
        elif remote:
            sample = table[_REMOTE_ON if flags & _SAMPLED else _REMOTE_OFF]
        else:
            sample = table[_LOCAL_ON if flags & _SAMPLED else _LOCAL_OFF]
        if type(sample) is int:  # TraceIdRatioBased's bound
            sample = (trace_id & _LOW_64) < sample
    else:
        result = tracer.sampler.should_sample(parent_context, trace_id, name, kind, attributes, ())
        # None: not even recorded.
        sample = result.decision.is_sampled() if result.decision.is_recording() else None
        trace_state = result.trace_state
        if sample is not None and result.attributes:
            attributes.update(result.attributes)
    span_id = (getrandbits(64) or _new_id(64)) if plan.random_ids else tracer.id_generator.generate_span_id()
    flags = (_SAMPLED | (flags & _RANDOM)) if sample else flags & _RANDOM
    if not sample:
        if sample is None or table is not None:  # not recorded (a static sampler records what it samples)
            return NonRecordingSpan(
                SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(flags), trace_state=trace_state)
            )
        # Recorded, not sampled (a record-only sampler): the application's processors still see it end
        # (as the SDK's span would); modelotel's queue would not export it.
        sink = _discard if plan.spans is not None else plan.sink
        queued = False
    elif plan.spans is not None and len(plan.spans) >= plan.max_queue:
        # The queue is full: not exported (counted, as the SDK's batch processor drops). The span still
        # records for whoever reads it while it is current.
        sink = plan.queue.drop
        queued = False
    else:
        sink = plan.sink
        queued = plan.spans is not None
    span = LightSpan(
        tracer, sink, name, trace_id, span_id, flags, trace_state, parent_id, remote, kind, attributes, queued
    )
    if plan.on_start is not None:
        try:
            plan.on_start(span, parent_context=parent_context)
        except Exception as exc:
            _log.debug("modelotel: span processor on_start failed: %s", exc)
    return span
