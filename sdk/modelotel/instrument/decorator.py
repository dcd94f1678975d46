"""``@instrument_model``: the per-inference hot path for sync, async, generator and async-generator callables.

Two rules shape every line here:

* The model's own exception propagates unchanged (same object; we only re-raise it), and the value
  returned is the very object the model returned.
* Anything that fails inside modelotel is caught, counted in ``modelotel.internal.errors`` and
  logged once per kind; it never reaches the caller.

Cost: the untraced path is two ``perf_counter_ns`` reads, list appends and the extraction of
confidence/label (see benchmarks/RESULTS.md). A traced call whose span goes to modelotel's own
span queue keeps snapshots of its output and features and leaves the rest (extraction, features
hash, span attributes, the pending-feedback entry) to an export thread, which does it before the
metrics or the span are exported; ``record_feedback`` that finds no entry completes what is queued
and looks again. Prediction ids cost nothing until someone asks for one:
``current_prediction_id()`` walks up the stack to the innermost instrumented call's frame and
registers an id for it, which that call collects when it finishes.

Layout: the per-call hot path first (the sync and async wrappers, then ``Instrumented``: the state one
decoration keeps and the methods its calls run), then decoration time (``instrument_model``). The
options are defined in ``options.py``, the streaming wrappers are in ``streams.py``, the re-decoration
cache in ``decorations.py``.
"""

from __future__ import annotations

import functools
import inspect
import random
import time
import weakref
from array import array
from collections.abc import Callable, Mapping, Sequence
from threading import get_ident
from time import perf_counter_ns
from typing import Any

import numpy as np
from opentelemetry import context as otel_context
from opentelemetry import trace

import modelotel.config as config
import modelotel.conventions as conv

from ..distributions import FeatureDistributions
from ..extract import extract
from ..features import Columns, as_columns, record_rows, records_of, report_not_found, value_missing
from ..feedback import KEYRING, PENDING, Label, Outcome, PredictionRecord, as_list, labels_of, new_prediction_id
from ..feedback.ids import encode as encode_prediction_id
from ..labels import WITHHELD_REASON, LabelPolicy
from ..metrics.buffers import ModelBuffers
from ..metrics.exemplars import offer as offer_exemplar
from ..metrics.selftelemetry import SELF
from ..ood import OODScorer
from ..privacy import count_missing, raw_features
from ..runtime import OFF, STATE, arm_sigterm, autostart
from ..tracing.span import MAX_ATTRIBUTES, LightSpan, record_exception
from ..tracing.start import attach_context, current_context_with, start_span
from .batching import BatchTimer, Discarded, Untimed
from .decorations import DECORATIONS, FRAME_PIDS, LAST_CALLS, MADE, WRAPPER_CODES, getframe, options_key
from .genai import GenAI, GenAIBuffers
from .options import ModelOptions, resolve
from .streams import async_gen_wrapper, gen_wrapper

STATE.recorder.register(LAST_CALLS)  # its fold forgets old outputs

_MISSING = object()
_NO = object()  # _snapshot: no cheap exact copy
_FAILED_BYTES_ITEMS = 4096  # float arrays of failed calls up to this size are copied, their NaNs counted later
_ndarray = np.ndarray
_F64 = np.dtype(np.float64)
_F32 = np.dtype(np.float32)
_NUMBERS = (int, float, np.number)  # regression outputs: no confidence by design, not a miss
_FLOATS_ONLY = {float}  # the element types of a list or tuple output kept as float64 bytes



# -- the per-call hot path: sync and async calls ------------------------------------------------


def _sync_wrapper(inst: Instrumented) -> Callable[..., Any]:
    fn = inst.fn
    success = inst.success
    record = inst.record
    error = inst.error
    missing_inputs = inst.missing_inputs
    pids = FRAME_PIDS
    follow = inst.traces is None  # the process-wide trace mode applies
    untraced = inst.traces == OFF
    last = LAST_CALLS

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not (STATE.fast if follow else (untraced and STATE.started)):
            return traced(args, kwargs)
        t0 = perf_counter_ns()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            error(exc, perf_counter_ns() - t0)
            missing_inputs(args, kwargs)
            if pids:
                pids.pop(id(getframe()), None)
            if last.armed:
                last[get_ident()] = None
            raise
        dt = perf_counter_ns() - t0
        if last.armed:
            last[get_ident()] = (inst, result, t0 + dt)
        if pids:
            pid = pids.pop(id(getframe()), None)
            if pid is not None:
                success(result, args, kwargs, dt, pid)
                return result
        record(result, args, kwargs, dt)
        return result

    def traced(args: tuple, kwargs: dict) -> Any:
        if not STATE.started:
            autostart()
            if not STATE.started:  # shut down: serve without recording
                return fn(*args, **kwargs)
        if not inst.tracing():
            return wrapper(*args, **kwargs)
        span, token, pid = inst.open_span()
        key = id(getframe())
        pids[key] = pid
        t0 = perf_counter_ns()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            dt = perf_counter_ns() - t0
            error(exc, dt)
            if span is not None:
                offer_exemplar(inst.buffers.exemplars, span, dt, type(exc).__name__)
            missing = missing_inputs(args, kwargs, span is None)
            pids.pop(key, None)
            inst.close_span(span, token, exc, missing=missing)
            if last.armed:
                last[get_ident()] = None
            raise
        dt = perf_counter_ns() - t0
        if last.armed:
            last[get_ident()] = (inst, result, t0 + dt)
        pid = pids.pop(key, pid)
        success(result, args, kwargs, dt, pid, span, token is not None)
        inst.close_span(span, token, None)
        return result

    WRAPPER_CODES.add(wrapper.__code__)
    WRAPPER_CODES.add(traced.__code__)
    return wrapper


def _async_wrapper(inst: Instrumented) -> Callable[..., Any]:
    fn = inst.fn
    success = inst.success
    error = inst.error
    pids = FRAME_PIDS

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not STATE.started:
            autostart()
        span = token = pid = None
        traced = inst.tracing()
        key = id(getframe())
        if traced:
            span, token, pid = inst.open_span()
            pids[key] = pid
        t0 = perf_counter_ns()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            dt = perf_counter_ns() - t0
            error(exc, dt)
            if span is not None:
                offer_exemplar(inst.buffers.exemplars, span, dt, type(exc).__name__)
            missing = inst.missing_inputs(args, kwargs, span is None)
            if pids:
                pids.pop(key, None)
            if traced:
                inst.close_span(span, token, exc, missing=missing)
            if LAST_CALLS.armed:
                LAST_CALLS[get_ident()] = None
            raise
        dt = perf_counter_ns() - t0
        if LAST_CALLS.armed:
            LAST_CALLS[get_ident()] = (inst, result, t0 + dt)
        pid = pids.pop(key, pid) if pids else pid
        success(result, args, kwargs, dt, pid, span, token is not None)
        if traced:
            inst.close_span(span, token, None)
        return result

    WRAPPER_CODES.add(wrapper.__code__)
    return wrapper


class Instrumented:
    """Per-decorator settings and the buffers its calls append to."""

    # -- recording (the hot path) -------------------------------------------------------------------------
    def error(self, exc: BaseException, dt: int) -> None:
        try:
            self.buffers.errors.append((type(exc).__name__, dt))
        except Exception as inner:  # pragma: no cover
            SELF.error("record_error", inner)

    def record(self, result: Any, args: tuple, kwargs: dict, dt: int) -> None:
        """Record one finished, untraced call with no prediction id: the hot path. Never raises.

        Only cheap copies happen here: small float vectors (outputs and features; outputs also as
        lists or tuples of floats) are kept as bytes and the export thread does the probability
        checks, max/argmax, NaN counts, feature columns and modelotel.ood scores for all of them at
        once (ModelBuffers.fold).
        """
        b = self.buffers
        b.durations.append(dt)
        try:
            out_deferred = False
            if self.defer_outputs:
                t = type(result)
                if t is _ndarray:
                    if result.ndim == 1 and 1 < result.size <= 64:
                        dtype = result.dtype
                        if dtype is _F64:
                            b.raw_outputs.append(result.tobytes())
                            out_deferred = True
                        elif dtype is _F32:
                            b.raw_outputs32.append(result.tobytes())
                            out_deferred = True
                elif (t is list or t is tuple) and 1 < len(result) <= 64 and set(map(type, result)) == _FLOATS_ONLY:
                    # A list of Python floats extracts exactly as the float64 array of its values does.
                    b.raw_outputs.append(array("d", result).tobytes())
                    out_deferred = True
            if not out_deferred:
                self._outputs_now(result)
            if not self.feature_work:
                return
            index = self.feature_index
            feats = args[index] if 0 <= index < len(args) else self.features_at(args, kwargs)
            feats_deferred = False
            cols = None
            if feats is not _MISSING:
                if self.defer_features and type(feats) is _ndarray and feats.ndim == 1 and feats.size <= 64:
                    dtype = feats.dtype
                    if dtype is _F64:
                        b.raw_features.append(feats.tobytes())
                        feats_deferred = True
                    elif dtype is _F32:
                        b.raw_features32.append(feats.tobytes())
                        feats_deferred = True
                if not feats_deferred:
                    t = type(feats)
                    if t is _ndarray or (t is dict and not self.needed):  # nothing looked up by name: as before
                        if self.count_missing:
                            missing = count_missing(feats)
                            if missing:
                                b.missing.append(missing)
                        if self.distributions is not None:
                            self.distributions.record(feats)
                    else:
                        cols = self._features_now(feats)[1]
            ood = self.ood
            if ood is None:
                return
            deferred_on = self.ood_deferred_on
            if (deferred_on == "features" and feats_deferred) or (deferred_on == "outputs" and out_deferred):
                return  # scored in bulk on the export thread
            if self.ood_batch or self.ood_on_outputs:
                scores = self._ood_scores(feats, result, cols)
                if scores:
                    b.ood.extend(scores)
            elif feats is not _MISSING:
                try:
                    score = ood(feats)
                except Exception as exc:
                    SELF.error("ood_score", exc)
                else:
                    if isinstance(score, float):
                        b.ood.append(score)
                    elif score is not None:
                        scores = _floats(score)
                        if scores:
                            b.ood.extend(scores)
        except Exception as exc:
            SELF.error("record", exc)

    def _outputs_now(self, result: Any, keep: bool = True) -> tuple[Any, Any, Any]:
        """Confidences and labels of one output, appended to the buffers unless ``keep`` is False (an id made
        later, from an output already recorded); (confidences, labels, exported labels): the labels as the model
        gave them (for feedback, in memory) and as they may leave the process (labels.py: None where withheld).
        One function on purpose: a second Python call here costs ~70 ns on every call (benchmarks/RESULTS.md)."""
        b = self.buffers
        confs: Any = None
        labels: Any = None
        scored = False  # each extracted label came with its own probability
        if self.extract_outputs:
            ex = extract(result, softmax=self.softmax)
            if ex is not None:
                confs = ex.confidences
                labels = ex.labels
                scored = labels is not None and len(confs) == len(labels)
            elif keep and self.confidence_fn is None and not isinstance(result, _NUMBERS):
                b.misses.append(1)
        if self.confidence_fn is not None:
            try:
                confs = _floats(self.confidence_fn(result))
            except Exception as exc:
                confs = None
                SELF.error("confidence_callable", exc)
        if self.label_fn is not None:
            try:
                labels = as_list(self.label_fn(result))
                scored = False
            except Exception as exc:
                SELF.error("label_callable", exc)
        shown = None
        if labels:
            if self.class_names is not None:
                labels = [_class_name(self.class_names, lab) for lab in labels]
            policy = b.label_policy
            shown, withheld = policy.exported(labels, scored)
            if not keep:
                return confs, labels, shown
            if withheld:
                SELF.drop(WITHHELD_REASON, withheld, policy.message, policy.log_key)
            b.labels.extend(shown)
        elif not keep:
            return confs, labels, shown
        if confs:
            if b.positive_label is not None and shown is not None and len(shown) == len(confs):
                b.labelled_confidences.extend(zip(confs, shown, strict=True))  # split by label at the fold
            else:
                b.confidences.extend(confs)
        if labels:
            return confs, labels, shown
        if confs and len(confs) > 1:
            b.labels.extend([None] * len(confs))
        else:
            b.labels.append(None)
        return confs, labels, shown

    def outcome(self, result: Any, confs: Any, labels: Any, shown: Any, when: float) -> Outcome:
        """What feedback needs of one finished call (``feedback.Outcome``)."""
        numbers = () if (confs or labels) else _numbers(result)
        return Outcome(self.buffers, labels_of(labels, shown), tuple(confs or ()), numbers, when)

    def prediction_id_of(self, result: Any, when: float) -> str | None:
        """A self-describing, signed id (``feedback/ids.py``) of one finished call's output; None when it cannot
        have one (counted in ``modelotel.dropped{prediction_id_unavailable}``). Never raises."""
        try:
            confs, labels, shown = self._outputs_now(result, keep=False)
            out = self.outcome(result, confs, labels, shown, when)
            positive = self.buffers.positive_label
            record = PredictionRecord(
                tuple((k, str(v)) for k, v in self.buffers.attributes.items()),
                int(when),
                random.getrandbits(64).to_bytes(8, "big"),
                None if positive is None else Label.of(positive, None),
                out.labels,
                tuple(out.confidences) if len(out.confidences) == len(out.labels) else (),
                out.numbers,
            )
            keys = KEYRING.load()
            return encode_prediction_id(record, keys.key, keys.key_id)
        except Exception as exc:
            SELF.drop("prediction_id_unavailable", 1, f"no prediction id for a call of {self.name!r}: {exc}")
            return None

    def success(
        self, result: Any, args: tuple, kwargs: dict, dt: int, pid: str | None, span: Any = None, owned: bool = False
    ) -> None:
        """Record one call that has a prediction id or a span. Never raises.

        A span of ours that modelotel's queue will export (``span.queued``) gets its attributes,
        and the call its metrics, off the request path when the output and the features can be
        snapshotted cheaply and exactly (``_snapshot``): the call waits in ``buffers.traced`` and
        ``complete`` runs on an export thread before the metrics or the span leave the process.
        Everything else is computed now.
        """
        b = self.buffers
        b.durations.append(dt)
        if span is not None:  # an exemplar (metrics/exemplars.py); untraced calls never get here with a span
            offer_exemplar(b.exemplars, span, dt)
        try:
            feats = _MISSING
            if self.features_at is not None and (self.feature_work or span is not None):
                feats = self.features_at(args, kwargs)
            # Only modelotel's own span can be queued; a span the sampler left out (non-recording) takes no
            # attributes, so its call's work is left for later as well, without the span.
            if owned and self.deferrable and span is not None:
                if type(span) is LightSpan:
                    later = span if span.queued else _NO
                else:
                    later = None if not span.is_recording() else _NO
                if later is not _NO:
                    output = _snapshot(result)
                    if output is not _NO:
                        saved = feats if feats is _MISSING else _snapshot(feats)
                        if saved is not _NO:
                            if later is not None:
                                later.deferred_owner = b
                            b.traced.append((self.complete, later, output, saved, pid))
                            return
            self._complete(span, result, feats, pid, owned)
        except Exception as exc:
            SELF.error("record", exc)

    def complete(self, span: Any, result: Any, feats: Any, pid: str | None) -> None:
        """The deferred work of a traced call (``ModelBuffers.complete_traced``); its span has ended."""
        self._complete(span, result, feats, pid, True, True)

    def _complete(
        self, span: Any, result: Any, feats: Any, pid: str | None, owned: bool, ended: bool = False
    ) -> None:
        b = self.buffers
        confs, labels, shown = self._outputs_now(result)
        missing = 0
        cols = None
        if feats is not _MISSING:
            if type(feats) is _ndarray:  # read by position: inline, as record() does
                if self.count_missing:
                    missing = count_missing(feats) or 0
                    if missing:
                        b.missing.append(missing)
                if self.distributions is not None:
                    self.distributions.record(feats)
            else:
                missing, cols = self._features_now(feats)
        scores = None
        if self.ood is not None:
            scores = self._ood_scores(feats, result, cols)
            if scores:
                b.ood.extend(scores)
        if pid is not None:
            start = getattr(span, "start_time", None)  # a deferred call finishes later than it ran
            when = start / 1e9 if isinstance(start, int) else time.time()
            PENDING.put(pid, self.outcome(result, confs, labels, shown, when))
        if span is None:
            return
        if ended:  # past end(): set_attributes would refuse; same limit as LightSpan.set_attribute
            attrs = self._span_attributes(True, pid, feats, confs, shown, scores, missing)
            target = span.attributes
            for key, value in attrs.items():
                if len(target) < MAX_ATTRIBUTES or key in target:
                    target[key] = value
        elif span.is_recording():
            span.set_attributes(self._span_attributes(owned, pid, feats, confs, shown, scores, missing))

    def _features_now(self, feats: Any, full: bool = True) -> tuple[int, Columns | None]:
        """Missing count (appended to the buffers) and, if ``full``, distributions of one input read in the call.

        Arrays and lists are read by position; frames and dicts by name, and every configured name
        one of them lacks is counted in ``modelotel.dropped{feature_not_found}`` (once per call, whichever
        of the missing count, the distributions and the OOD input wanted it). Returns the missing
        count and a frame's by-name view (None for other inputs), which ``_ood_scores`` reuses.
        """
        missing = 0
        cols = None
        t = type(feats)
        # a missing count alone (count_missing is on) needs only feature_names
        needed = self.needed if full else (self.feature_names or ())
        if (
            t is _ndarray
            or ((t is list or t is tuple) and not (feats and type(feats[0]) is dict))
            or (t is dict and not needed)
        ):
            # positional inputs, or a dict with no name to look up: counted as before
            if self.count_missing:
                missing = count_missing(feats) or 0
                if missing:
                    self.buffers.missing.append(missing)
            if full and self.distributions is not None:
                self.distributions.record(feats)
            return missing, None
        names = self.feature_names
        records = records_of(feats)
        if records is not None:
            if needed:
                for record in records:
                    absent = [n for n in needed if n not in record]
                    if absent:
                        rows = record_rows(record, [n for n in needed if n in record])
                        report_not_found(self.name, absent, rows * len(absent), "a dict input")
            if self.count_missing:
                if names is None:
                    missing = count_missing(feats) or 0
                else:
                    missing = sum(value_missing(r[n]) for r in records for n in names if n in r)
            if full and self.distributions is not None:
                self.distributions.record(feats)
        else:
            cols = as_columns(feats)
            if cols is None:
                if self.count_missing:
                    missing = count_missing(feats) or 0
                if full and self.distributions is not None:
                    self.distributions.record(feats)
            else:
                absent = [n for n in needed if not cols.has(n)]
                if absent:
                    have = cols.names()
                    shown = ", ".join(map(repr, have[:10])) + (", ..." if len(have) > 10 else "")
                    where = f"a {cols.kind} with columns [{shown}] (or not unique)"
                    report_not_found(self.name, absent, cols.rows * len(absent), where)
                if self.count_missing:
                    if names is not None and absent:
                        names = [n for n in names if n not in absent]
                    missing = cols.missing(names)
                if full and self.distributions is not None:
                    self.distributions.record_columns(cols)
        if missing:
            self.buffers.missing.append(missing)
        return missing, cols

    def missing_inputs(self, args: tuple, kwargs: dict, defer: bool = True) -> int:
        """Count the missing features of a call whose output is not recorded (it raised, or it streams).

        The inputs are what they are whatever the model did with them, and a model that rejects NaN
        is exactly the one whose missing features matter. With ``defer`` a small float vector is kept
        as bytes and its NaNs are counted on the export thread (returns 0 then); otherwise the count
        is returned, for the span. Never raises.
        """
        if not self.count_missing or self.features_at is None:
            return 0
        try:
            index = self.feature_index
            feats = args[index] if 0 <= index < len(args) else self.features_at(args, kwargs)
            if feats is _MISSING:
                return 0
            # only NaNs are counted from these bytes, so the shape does not matter
            if defer and type(feats) is _ndarray and feats.size <= _FAILED_BYTES_ITEMS:
                dtype = feats.dtype
                if dtype is _F64:
                    self.buffers.failed_features.append(feats.tobytes())
                    return 0
                if dtype is _F32:
                    self.buffers.failed_features32.append(feats.tobytes())
                    return 0
            return self._features_now(feats, False)[0]
        except Exception as exc:
            SELF.error("record", exc)
            return 0

    def _ood_scores(self, feats: Any, result: Any, cols: Columns | None = None) -> list[float] | None:
        try:
            source = result if self.ood_on_outputs else feats
            if source is _MISSING:
                return None
            if self.ood_batch:
                if self.ood_on_outputs:
                    x = np.asarray(source, dtype=np.float64)
                else:
                    x = self._ood_rows(feats, cols)
                    if x is None:
                        return None
                if x.ndim == 1:
                    x = x[None, :]
                return _floats(self.ood.score(x))
            return _floats(self.ood(source))
        except Exception as exc:
            SELF.error("ood_score", exc)
            return None

    def _ood_rows(self, feats: Any, cols: Columns | None) -> np.ndarray | None:
        """The OOD scorer's input: a frame's or dict's ``feature_names`` columns by name, in that order;
        an array as it is. None when a named feature is absent (already counted as not found)."""
        names = self.feature_names
        if cols is not None:
            if names is None:
                SELF.warn_once(
                    f"ood_frame_order:{self.name}",
                    f"model {self.name!r}: the OOD scorer reads a {cols.kind} in its own column order; "
                    "pass feature_names= to have its columns picked by name",
                )
                return cols.matrix(None)
            if not all(cols.has(n) for n in names):
                return None
            return cols.matrix(names)
        if names is not None:
            records = records_of(feats)
            if records is not None:
                if any(n not in r for r in records for n in names):
                    return None
                return np.vstack(
                    [np.column_stack([np.asarray(r[n], dtype=np.float64).ravel() for n in names]) for r in records]
                )
        return np.asarray(feats, dtype=np.float64)

    def _span_attributes(
        self, owned: bool, pid: str | None, feats: Any, confs: Any, labels: Any, scores: Any, missing: int
    ) -> dict[str, Any]:
        """What the call adds to its span (to an application's span in enrich mode: the model's too).
        ``labels``: as they may be exported (None where withheld)."""
        if owned:  # our own span was started with the model attributes and the id
            attrs: dict[str, Any] = {}
        else:
            attrs = dict(self.span_attributes)
            if pid is not None:
                attrs[conv.PREDICTION_ID] = pid
        if feats is not _MISSING:
            if self.hash_features:
                digest = STATE.hasher.hash(feats)
                if digest is not None:
                    attrs[conv.FEATURES_HASH] = digest
            if self.raw:
                row = feats
                cols = as_columns(feats)
                if cols is not None:  # a frame: by column name, and only a one-row frame (as a batch of one)
                    row = {n: cols.values(n)[0] for n in self.raw if cols.has(n)} if cols.rows == 1 else None
                for key, value in raw_features(row, self.raw, self.feature_names).items():
                    attrs[conv.FEATURE_PREFIX + key] = value
        if missing:
            attrs[conv.FEATURES_MISSING] = missing
        n = len(confs) if confs else (len(labels) if labels else 1)
        if n > 1:
            attrs[conv.BATCH_SIZE] = n
        else:
            if confs:
                attrs[conv.PREDICTION_CONFIDENCE] = confs[0]
            if labels and labels[0] is not None:
                attrs[conv.PREDICTION_LABEL] = labels[0]
            if scores:
                attrs[conv.OOD_SCORE] = scores[0]
                threshold = self.buffers.ood_threshold
                if threshold is not None:
                    attrs[conv.OOD_IS_OUTLIER] = scores[0] > threshold
        return attrs

    # -- tracing -----------------------------------------------------------------------------
    def tracing(self) -> bool:
        """Whether a call starting now is traced (span or enrich) under this model's and the process's mode."""
        return STATE.started and (self.traces or STATE.trace_mode) != OFF

    def open_span(self) -> tuple[Any, Any, str]:
        """(span or None, context token or None, prediction id) for a traced call."""
        pid = new_prediction_id()
        mode = self.traces or STATE.trace_mode
        tracer = STATE.tracer
        try:
            if mode == "span" and tracer is not None:
                attrs = {**self.span_attributes, conv.PREDICTION_ID: pid}
                span = start_span(tracer, self.span_name, None, trace.SpanKind.INTERNAL, attrs)
                token = attach_context(current_context_with(span))
                return span, token, pid
            if mode == "enrich":
                span = trace.get_current_span()
                return (span if span.is_recording() else None), None, pid
        except Exception as exc:
            SELF.error("span_start", exc)
        return None, None, pid

    @staticmethod
    def close_span(span: Any, token: Any, exc: BaseException | None, owned: bool = True, missing: int = 0) -> None:
        """Detach and end a call's span; a failed call's exception (and missing feature count) go on it."""
        try:
            if token is not None:
                otel_context.detach(token)
            if span is not None:
                if exc is not None and span.is_recording():
                    if missing:
                        span.set_attribute(conv.FEATURES_MISSING, missing)
                    record_exception(span, exc)
                if owned and token is not None:
                    span.end()
        except Exception as inner:
            SELF.error("span_end", inner)

    # -- construction (decoration time) -------------------------------------------------------
    def __init__(self, fn: Callable[..., Any], options: ModelOptions) -> None:
        """``options`` as ``options.resolve`` left them (role, checked attributes and trace mode filled in)."""
        o = options
        name = o.name if isinstance(o.name, str) else getattr(fn, "__qualname__", type(fn).__name__)
        version = str(o.version) if o.version is not None else conv.UNKNOWN_VERSION
        role, attributes = o.deployment_role, o.attributes
        confidence, label, class_names, softmax = o.confidence, o.label, o.labels, o.softmax
        extract_outputs = o.extract_outputs and (confidence is None or label is None)
        ood, ood_threshold, features = o.ood, o.ood_threshold, o.features
        count_missing, hash_features, raw = o.count_missing, o.hash_features, o.raw_features
        feature_names, traces, max_labels = o.feature_names, o.traces, o.max_labels
        numeric_features, categorical_features = o.numeric_features, o.categorical_features
        free_text_labels = o.free_text_labels
        positive_label = o.positive_label
        self.fn = fn
        self.name = name
        self.span_name = f"predict {name}"
        base = {conv.MODEL_NAME: name, conv.MODEL_VERSION: version, conv.DEPLOYMENT_ROLE: role, **attributes}
        self.buffers = ModelBuffers(base, ood_threshold=ood_threshold, max_labels=max_labels)
        if ood is not None and hasattr(ood, "score"):
            self.buffers.ood_scorer = ood  # its threshold is read at each export, so it may be set later
        STATE.recorder.register(self.buffers)
        # When this decoration is garbage (re-decorated in a loop), its buffers are folded once more and dropped.
        weakref.finalize(self, STATE.recorder.release, self.buffers).atexit = False
        self.genai = None  # streams of a model given genai=: the gen_ai.server.* metrics
        if o.genai is not None:
            if not (inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)):
                raise config.ConfigError(f"genai= needs a generator or async-generator model, not {name!r}")
            self.genai = GenAIBuffers(o.genai, base)
            STATE.recorder.register(self.genai)
            weakref.finalize(self, STATE.recorder.release, self.genai).atexit = False
        self.span_attributes = dict(base)
        self.confidence_fn = confidence
        self.label_fn = label
        self.class_names = list(class_names) if class_names is not None else None
        self.softmax = softmax
        self.extract_outputs = extract_outputs
        self.ood = ood
        self.ood_batch = hasattr(ood, "score")
        self.ood_on_outputs = getattr(ood, "input", "features") == "outputs"
        self.count_missing = count_missing
        self.hash_features = hash_features
        self.raw = tuple(raw)
        self.feature_names = list(feature_names) if feature_names is not None else None
        self.traces = traces
        self.features_at = _feature_locator(fn, features)
        self.feature_index = getattr(self.features_at, "index", -1)
        self.buffers.class_names = self.class_names
        # what of a label may be exported (labels.py): declared classes, class ids, or free text if opted in
        self.buffers.label_policy = LabelPolicy(self.class_names, free_text_labels, owner=fn, model=name)
        self.buffers.positive_label = positive_label
        self.buffers.softmax = softmax
        # Small float probability vectors are copied (tolist) and checked on the export thread.
        self.defer_outputs = extract_outputs and confidence is None and label is None
        self.buffers.count_missing = count_missing
        self.distributions = None
        if numeric_features or categorical_features:
            self.distributions = FeatureDistributions(numeric_features, categorical_features, feature_names, model=name)
            self.buffers.distributions = self.distributions
        # Frames and dicts are read by name: the names a call looks up. (Few attributes on purpose: from
        # 30 on, CPython 3.11 stops sharing instance dict keys and every self.x on the hot path is slower.)
        by_name = self.feature_names if count_missing or (self.ood_batch and not self.ood_on_outputs) else None
        self.needed = tuple(dict.fromkeys([*(by_name or ()), *(numeric_features or ()), *(categorical_features or ())]))
        # modelotel.ood scorers are pure and vectorised: score deferred rows on the export thread
        own_scorer = isinstance(ood, OODScorer)
        self.ood_deferred_on = getattr(ood, "input", "features") if own_scorer else None
        if self.ood_deferred_on == "outputs" and not self.defer_outputs:
            self.ood_deferred_on = None
        self.buffers.ood_on_rows = self.ood_deferred_on
        # small float feature vectors are kept as bytes for the export thread (NaN counts, columns, OOD)
        self.defer_features = count_missing or self.distributions is not None or self.ood_deferred_on == "features"
        # Traced calls may leave their work to an export thread unless user code would run there.
        self.deferrable = confidence is None and label is None and (ood is None or own_scorer)
        self.feature_work = self.features_at is not None and (
            count_missing or ood is not None or self.distributions is not None
        )


def _floats(value: Any) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return [float(value)]
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        value = tolist()
        if not isinstance(value, list):
            return [float(value)]
    return [float(v) for v in value]


_IMMUTABLE = frozenset({float, int, str, bool, type(None)})
_SNAPSHOT_ITEMS = 64  # Python-level items copied at most (each one's type is checked)
_SNAPSHOT_BYTES = 1 << 16  # array bytes copied at most


def _snapshot(value: Any) -> Any:
    """A copy of ``value`` that later mutation by the caller cannot change, or ``_NO`` when that is not cheap.

    Immutable scalars are themselves; small flat lists, tuples and dicts of immutable scalars are
    shallow-copied (tuples kept), small numeric numpy arrays copied (same dtype, shape and bytes).
    Everything a deferred call does with the copy (extraction, features hash, missing counts, OOD
    scores) therefore sees exactly what it would have seen at the end of the call.
    """
    t = type(value)
    if t in _IMMUTABLE:
        return value
    if t is list or t is tuple:
        if len(value) <= _SNAPSHOT_ITEMS and set(map(type, value)) <= _IMMUTABLE:
            return value if t is tuple else list(value)
        return _NO
    if t is _ndarray:
        if value.dtype.kind in "fiub" and value.nbytes <= _SNAPSHOT_BYTES:
            return value.copy()
        return _NO
    if t is dict:
        if len(value) <= _SNAPSHOT_ITEMS and set(map(type, value.values())) | set(map(type, value)) <= _IMMUTABLE:
            return dict(value)
        return _NO
    return _NO


def _class_name(names: list[Any], label: Any) -> Any:
    if type(label) is int and 0 <= label < len(names):
        return names[label]
    return label


def _feature_locator(fn: Callable[..., Any], features: Any) -> Callable[[tuple, dict], Any] | None:
    """Where the features are: an index, a parameter name, a callable(args, kwargs), or False for nowhere.

    The default is the first positional argument, skipping ``self``/``cls`` of methods.
    """
    if features is False:
        return None
    if callable(features):
        user = features

        def by_callable(args: tuple, kwargs: dict) -> Any:
            try:
                return user(*args, **kwargs)
            except Exception as exc:
                SELF.error("features_callable", exc)
                return _MISSING

        return by_callable
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if features is None:
        index = 1 if positional and positional[0].name in ("self", "cls") else 0
        pname = positional[index].name if len(positional) > index else None
    elif isinstance(features, int):
        index = features
        pname = positional[index].name if len(positional) > index else None
    elif isinstance(features, str):
        pname = features
        names = [p.name for p in positional]
        index = names.index(features) if features in names else -1
        if params and features not in {p.name for p in params} and not any(p.kind == p.VAR_KEYWORD for p in params):
            where = getattr(fn, "__qualname__", type(fn).__name__)
            raise config.ConfigError(f"features={features!r}: {where} has no such parameter")
    else:
        raise config.ConfigError(f"features={features!r}: use an index, a parameter name, a callable or False")

    def locate(args: tuple, kwargs: dict) -> Any:
        if 0 <= index < len(args):
            return args[index]
        if pname is not None:
            return kwargs.get(pname, _MISSING)
        return _MISSING
    locate.index = index  # type: ignore[attr-defined]  # the hot path reads args[index] directly
    return locate



# -- decoration time ------------------------------------------------------------------------------


def last_prediction_id() -> str | None:
    """A prediction id for the last instrumented call that finished in this thread, that any process holding the
    same ``MODELOTEL_FEEDBACK_KEY`` can judge (``record_feedback``); None when there is none (no call yet, the last
    one raised or was a stream, or it ended over 5 s ago). Call it right after the call, in the same thread:

        probabilities = model.predict_proba(rows)      # instrumented
        pid = modelotel.last_prediction_id()           # hand it to whoever will know the truth

    Asking twice for the same call gives the same id. Never raises.
    """
    try:
        if not LAST_CALLS.armed:  # the first ask: from now on calls keep their output for it
            LAST_CALLS.armed = True
            SELF.warn_once(
                "last_prediction_id_armed",
                "last_prediction_id() was asked before any call kept its output: None this time. Set "
                "MODELOTEL_FEEDBACK_KEY before decorating models and every call has an id from the first",
            )
            return None
        tid = get_ident()
        call = LAST_CALLS.get(tid)
        if call is None:
            return None
        made = MADE.get(tid)
        if made is not None and made[0] is call:
            return made[1]
        inst, result, ended = call
        when = time.time() - (perf_counter_ns() - ended) / 1e9
        pid = inst.prediction_id_of(result, when)
        MADE[tid] = (call, pid)
        return pid
    except Exception as exc:  # pragma: no cover - prediction_id_of never raises
        SELF.error("prediction_id", exc)
        return None


def _arm_if_keyed() -> None:
    """Calls keep their output for last_prediction_id() from the start when a feedback key is configured (the
    process means to hand out ids for other processes). A bad key is logged here and raised by no call."""
    try:
        if KEYRING.load().configured:
            LAST_CALLS.armed = True
    except config.ConfigError as exc:
        SELF.warn_once("feedback_key", f"{exc}: prediction ids are signed with a random key of this process")
    except Exception as exc:  # pragma: no cover - reading settings cannot normally fail otherwise
        SELF.error("feedback_key", exc)


def _numbers(result: Any) -> tuple[float, ...]:
    """A regression output's predicted values: a number, or a flat sequence or array of numbers; else ()."""
    if isinstance(result, bool):
        return ()
    if isinstance(result, _NUMBERS):
        value = float(result)
        return (value,) if value == value else ()
    if type(result) is _ndarray and result.ndim <= 2 and result.dtype.kind in "iuf" and 0 < result.size <= 65_535:
        if result.ndim == 2 and result.shape[1] != 1:
            return ()
        values = tuple(float(v) for v in result.ravel().tolist())
        return values if all(v == v for v in values) else ()
    if (
        isinstance(result, (list, tuple))
        and 0 < len(result) <= 65_535
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in result)
    ):
        values = tuple(float(v) for v in result)
        return values if all(v == v for v in values) else ()
    return ()


def current_prediction_id() -> str | None:
    """The id of the innermost instrumented call running in this thread or task, else None.

    Pass it to whoever will later know the truth, and call ``record_feedback(id, ...)`` then.
    """
    try:
        frame = getframe(1)
        while frame is not None:
            if frame.f_code in WRAPPER_CODES:
                key = id(frame)
                pid = FRAME_PIDS.get(key)
                if pid is None:
                    pid = FRAME_PIDS[key] = new_prediction_id()
                return pid
            frame = frame.f_back
    except Exception as exc:  # pragma: no cover - frame access cannot normally fail
        SELF.error("prediction_id", exc)
    return None


def instrument_model(
    name: str | Callable[..., Any] | None = None,
    version: str | None = None,
    *,
    deployment_role: str | None = None,
    confidence: Callable[[Any], Any] | None = None,
    label: Callable[[Any], Any] | None = None,
    labels: Sequence[Any] | None = None,
    softmax: bool = False,
    extract_outputs: bool = True,
    ood: Any = None,
    ood_threshold: float | None = None,
    features: Any = None,
    count_missing: bool = True,
    hash_features: bool = True,
    raw_features: Sequence[str] = (),
    feature_names: Sequence[str] | None = None,
    attributes: Mapping[str, Any] | None = None,
    traces: bool | str | None = None,
    max_labels: int = conv.DEFAULT_MAX_LABELS,
    numeric_features: Sequence[str] = (),
    categorical_features: Sequence[str] = (),
    free_text_labels: bool = False,
    positive_label: Any = None,
    genai: GenAI | None = None,
    batched: bool = False,
) -> Any:
    """Instrument a predict function: duration, outcome, confidence, OOD score, label, missing features.

    ``name``/``version`` become ``ml.model.name``/``ml.model.version``. ``confidence``/``label`` are
    callables on the output (default: extracted automatically); ``labels`` maps class indices to
    names; ``softmax`` treats outputs as logits. ``ood`` is a callable on the features or a scorer
    with ``score(X)`` (and ``threshold``). ``features`` says where the features are (index, name,
    callable(*args, **kwargs) or False; default the first positional argument). ``raw_features``
    allow-lists feature names whose raw values may go on spans (``feature_names`` names columns of
    array inputs). ``attributes`` are static extra metric attributes (at most 8). ``traces``
    overrides the process setting for this model: "span", "enrich" or "off". ``numeric_features`` and
    ``categorical_features`` allow-list features whose distributions are exported for drift
    (sketches and bounded counts, never raw values; arrays need ``feature_names``).
    A string output is exported as ``ml.prediction.label`` only if it is one of the model's classes
    (``labels``, or the wrapped estimator's ``classes_``) or a short class name that came with its
    probability; ``free_text_labels=True`` exports any (scrubbed, capped): see ``modelotel.labels``.
    ``positive_label`` names the positive class of a binary model: feedback gets the fairness flags without
    ``record_feedback(positive_label=...)``, and ``ml.prediction.confidence`` is split by predicted label, so
    ``modelotel performance`` estimates precision, recall and F1 before the labels arrive (CBPE).
    ``genai=GenAI(provider=...)`` on a generator or async-generator model adds the GenAI semantic conventions'
    ``gen_ai.server.*`` metrics of each stream (time to first token, time per output token): see ``genai``.
    ``batched=True`` marks a function that takes a batch of queued requests: its calls record everything per item
    but no duration; each request's latency and queue time are recorded by ``with predict.batch(tickets):`` around
    the call (or by ``AsyncBatcher(predict, ...)``): see ``batching``.

    The options are defined once, in ``options.ModelOptions`` (this signature is checked against it).
    Bad options raise ``modelotel.ConfigError`` at decoration time, never during a call.
    """
    options = ModelOptions(**locals())  # first: exactly the parameters (tests pin them to ModelOptions)
    if callable(name) and not isinstance(name, str):
        return instrument_model()(name)

    resolved = resolve(options)
    key = options_key(*resolved.values())

    def decorate(fn: Any) -> Any:
        rewrap = None
        if isinstance(fn, (staticmethod, classmethod)):
            rewrap, fn = type(fn), fn.__func__
        if not callable(fn):
            raise config.ConfigError(f"instrument_model needs a callable, got {type(fn).__name__}")
        wrapper = DECORATIONS.get(fn, key)  # the same function and options again: the same state
        if wrapper is not None:
            return rewrap(wrapper) if rewrap is not None else wrapper
        if resolved.batched and (inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn)):
            raise config.ConfigError("batched=True needs a function that takes a batch, not a generator")
        inst = Instrumented(fn, resolved)
        if inspect.isasyncgenfunction(fn):
            wrapper = async_gen_wrapper(inst)
        elif inspect.isgeneratorfunction(fn):
            wrapper = gen_wrapper(inst)
        elif inspect.iscoroutinefunction(fn):
            wrapper = _async_wrapper(inst)
        else:
            wrapper = _sync_wrapper(inst)
        if inspect.isfunction(fn) or inspect.ismethod(fn):
            wrapper = functools.wraps(fn)(wrapper)
        else:  # a callable object: keep a pointer to it and its call signature
            wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
            wrapper.__name__ = getattr(fn, "__name__", type(fn).__name__)  # type: ignore[attr-defined]
            wrapper.__doc__ = getattr(fn, "__doc__", None)
        wrapper.__modelotel__ = inst  # type: ignore[attr-defined]
        if resolved.batched:  # per-call durations go nowhere; the requests are timed by the model's BatchTimer
            buffers = inst.buffers
            buffers.durations = buffers.errors = Untimed(inst.name)
            buffers.exemplars = Discarded()
            wrapper.batch_timer = BatchTimer.with_attributes(buffers.attributes)  # type: ignore[attr-defined]
            wrapper.batch = wrapper.batch_timer.batch  # type: ignore[attr-defined]
        DECORATIONS.add(fn, key, wrapper)
        if not LAST_CALLS.armed:
            _arm_if_keyed()
        arm_sigterm()  # decorating usually happens in the main thread; the first call may come on another
        return rewrap(wrapper) if rewrap is not None else wrapper

    return decorate
