"""Starting spans cheaply: the tracer's plan (sampler, ids, processors) worked out once, and context helpers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from random import getrandbits
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags

from .._otel_compat import (
    has_instrumentation_scope,
    instrumentation_scope,
    parent_based_parts,
    runtime_context_var,
    span_processors,
    span_processors_fast,
    static_decision,
    tracer_config,
    tracer_config_fast,
    tracer_enabled_check,
)
from .queue import SpanQueue
from .span import RANDOM_FLAG, SAMPLED_FLAG, SPAN_KEY, LightSpan

_log = logging.getLogger("modelotel")


_CONTEXT_VAR = runtime_context_var()
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
            d = static_decision(s)
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
        parts = [decision(part) for part in parent_based_parts(sampler)]
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
        self.config = tracer_config(tracer)
        self.enabled = tracer_enabled_check(tracer)
        queue = processors[0] if len(processors) == 1 and type(processors[0]) is SpanQueue else None
        self.queue = queue
        self.spans = queue.spans if queue is not None else None
        self.max_queue = queue.max_queue_size if queue is not None else 0
        if queue is not None:  # ours alone: ending a span is the queue list's append (its bound: start_span)
            self.sink = queue.spans.append
            self.on_start = None
        else:

            scope = instrumentation_scope(tracer)

            def to_processors(span: LightSpan) -> None:
                multi.on_end(span.to_readable(scope))

            self.sink = to_processors
            self.on_start = multi.on_start
        self.table = _static_table(tracer.sampler)
        self.random_ids = type(tracer.id_generator) is RandomIdGenerator
        self.random_flag = RANDOM_FLAG if tracer.id_generator.is_trace_id_random() else 0

    def usable(self, tracer: Any) -> bool:
        """Still the plan of this tracer (same processors) and the tracer is enabled."""
        if self.tracer is not tracer or span_processors_fast(self.multi) is not self.processors:
            return False
        if self.config is not None and tracer_config_fast(tracer) is self.config:
            return bool(self.config.is_enabled)
        return self.enabled is None or bool(self.enabled())


def _discard(span: LightSpan) -> None:
    pass


_PLANS: dict[int, _TracerPlan] = {}
_LAST_PLAN: list[Any] = [None]  # the plan used last: nearly every span is STATE.tracer's


def _plan_of(tracer: Any) -> _TracerPlan | None:
    """The tracer's plan, or None for anything but an enabled OTel SDK tracer."""
    plan = _PLANS.get(id(tracer))
    if plan is None or plan.tracer is not tracer or span_processors_fast(plan.multi) is not plan.processors:
        multi = getattr(tracer, "span_processor", None)
        processors = span_processors(multi)
        if (
            getattr(tracer, "sampler", None) is None
            or getattr(tracer, "id_generator", None) is None
            or not has_instrumentation_scope(tracer)
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
        or span_processors_fast(plan.multi) is not plan.processors
        or (plan.config is not None and (tracer_config_fast(tracer) is not plan.config or not plan.config.is_enabled))
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
            sample = table[_REMOTE_ON if flags & SAMPLED_FLAG else _REMOTE_OFF]
        else:
            sample = table[_LOCAL_ON if flags & SAMPLED_FLAG else _LOCAL_OFF]
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
    flags = (SAMPLED_FLAG | (flags & RANDOM_FLAG)) if sample else flags & RANDOM_FLAG
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
