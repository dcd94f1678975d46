"""Lock-free hot-path buffers: what one instrumented callable appended since the last collect.

The hot path only appends to plain lists owned by one instrumented callable (``ModelBuffers``).
``list.append`` is atomic in CPython (the GIL, and per-object locking on free-threaded builds), and
``drain`` copies then deletes a prefix, so an append that races with a drain lands after the prefix
and is taken by the next drain: nothing is lost and the hot path takes no lock. Per-thread lists
would cost a ``threading.local`` lookup (measured 72 ns against 23 ns for a shared append).

"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import Counter
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

import numpy as np

import modelotel.conventions as conv

from ..extract import extract_rows
from ..labels import LabelPolicy
from ..privacy import scrub
from .exemplars import grouped
from .selftelemetry import SELF

_log = logging.getLogger("modelotel")

AttrKey = tuple  # sorted tuple of (key, value) pairs: the identity of a series


def attr_key(attributes: Mapping[str, Any]) -> AttrKey:
    return tuple(sorted(attributes.items()))


class FeedbackItem(NamedTuple):
    """One judged item, as ``feedback.record`` queues it for the export thread.

    ``correct`` is None for a regression prediction, whose ``error`` is truth minus prediction. ``predicted_label``
    is the prediction's exported label (None: withheld or none); ``true_label`` the truth as given, exported at
    fold time under the model's label policy. ``bucket_end`` is the end of the prediction's time bucket (epoch
    seconds; None when buckets are off) and ``delay_s`` the time from prediction to feedback."""

    correct: bool | None
    confidence: float | None
    group: str | None
    predicted_positive: bool | None
    truly_positive: bool | None
    predicted_label: str | None
    true_label: Any
    bucket_end: int | None
    delay_s: float
    error: float | None


class SeriesSink(Protocol):
    """What ``ModelBuffers.fold`` writes into: ``metrics.recorder.Recorder`` (named here, not imported)."""

    def observe(self, name: str, key: AttrKey, attributes: Mapping[str, Any], values: Any) -> None: ...

    def add(self, name: str, key: AttrKey, attributes: Mapping[str, Any], value: int) -> None: ...

    def offer(self, name: str, key: AttrKey, attributes: Mapping[str, Any], candidates: list) -> None: ...


def drain(buffer: list) -> list:
    """Take everything appended so far; concurrent appends land after the taken prefix."""
    n = len(buffer)
    if not n:
        return []
    chunk = buffer[:n]
    del buffer[:n]
    return chunk


_ALL_BUFFERS: weakref.WeakSet[ModelBuffers] = weakref.WeakSet()
_ALL_BUFFERS_LOCK = threading.Lock()  # a set must not grow while it is copied


def _new_lock_in_child() -> None:
    global _ALL_BUFFERS_LOCK
    _ALL_BUFFERS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def complete_all_traced() -> None:
    """``complete_traced`` of every model's buffers (``record_feedback`` for an id it cannot find yet)."""
    with _ALL_BUFFERS_LOCK:
        owners = list(_ALL_BUFFERS)
    for buffers in owners:
        buffers.complete_traced()


class ModelBuffers:
    """Everything one instrumented callable appended since the last collect.

    ``labels`` holds one entry per prediction item (None when the label is unknown), so the
    ``ml.predictions`` counter is exact for batches too.
    """

    # The lists the hot path appends to; clear() empties them (a forked child starts from nothing).
    BUFFERS = (
        "durations",
        "errors",
        "first_item",
        "confidences",
        "labelled_confidences",
        "ood",
        "labels",
        "missing",
        "feedback",
        "raw_outputs",
        "raw_features",
        "raw_outputs32",
        "raw_features32",
        "failed_features",
        "failed_features32",
        "misses",
        "traced",
        "exemplars",
    )
    __slots__ = (
        *BUFFERS,
        "_traced_lock",
        "__weakref__",
        "attributes",
        "key",
        "ood_threshold",
        "class_names",
        "label_policy",
        "softmax",
        "count_missing",
        "distributions",
        "ood_scorer",
        "ood_on_rows",
        "max_labels",
        "_seen_labels",
        "positive_label",
        "max_groups",
        "_seen_groups",
        "_confusion_labels",
    )

    def __init__(
        self,
        attributes: Mapping[str, Any],
        *,
        ood_threshold: float | None = None,
        max_labels: int = conv.DEFAULT_MAX_LABELS,
    ) -> None:
        self.attributes = dict(attributes)
        self.key = attr_key(self.attributes)
        self.durations: list[int] = []  # ns, successful calls
        self.errors: list[tuple[str, int]] = []  # (error.type, ns)
        self.first_item: list[int] = []  # ns, streaming calls
        self.confidences: list[float] = []
        # (confidence, exported label) of a model with a positive label: ml.prediction.confidence by label
        self.labelled_confidences: list[tuple[float, str | None]] = []
        self.ood: list[float] = []
        self.ood_threshold = ood_threshold
        self.labels: list[Any] = []
        self.missing: list[int] = []  # per call, only calls with at least one missing feature
        self.feedback: list[FeedbackItem] = []
        # Deferred work: the hot path keeps small float64/float32 vectors as tobytes() copies (bytes
        # are not tracked by the garbage collector, unlike lists) and the export thread does the
        # probability checks, max/argmax and NaN counts for all of them at once with numpy.
        self.raw_outputs: list[bytes] = []
        self.raw_features: list[bytes] = []
        self.raw_outputs32: list[bytes] = []
        self.raw_features32: list[bytes] = []
        # The same for the features of calls that raised: only their NaNs are counted (no distributions or
        # OOD scores: the call made no prediction), so a model that rejects NaN still shows them.
        self.failed_features: list[bytes] = []
        self.failed_features32: list[bytes] = []
        self.class_names: list[Any] | None = None
        self.label_policy = LabelPolicy()  # labels.py; ``labels`` holds what it let through (None for the rest)
        self.softmax = False
        self.misses: list[int] = []  # outputs whose shape gave no confidence
        # Traced calls whose span is exported by modelotel's own queue leave their work here as
        # (complete, span, output, features, prediction id), with snapshots of output and features:
        # ``complete_traced`` does it off the request path, before the metrics or the span go out.
        self.traced: list[tuple[Any, Any, Any, Any, str | None]] = []
        # Exemplar candidates of traced calls (metrics/exemplars.py ``offer``), tagged with the error type of a
        # failed call (None: a success); folded into the ml.inference.duration series their values went to.
        self.exemplars: list[tuple] = []
        self._traced_lock = threading.Lock()
        with _ALL_BUFFERS_LOCK:
            _ALL_BUFFERS.add(self)
        self.count_missing = True
        self.distributions: Any = None  # distributions.FeatureDistributions when features are allow-listed
        # One of modelotel.ood's scorers: pure and vectorised, so deferred rows are scored in bulk
        # here (~0.1-0.2 us a row) instead of one by one on the hot path (~5 us a call).
        self.ood_scorer: Any = None
        self.ood_on_rows: str | None = None  # "features" or "outputs": which deferred rows to score
        self.max_labels = max_labels
        self._seen_labels: set[str] = set()
        self.positive_label: Any = None  # the positive class for fairness rates; record_feedback may override
        self.max_groups = conv.DEFAULT_MAX_GROUPS
        self._seen_groups: set[str] = set()
        self._confusion_labels: set[str] = set()

    def clear(self) -> None:
        for name in self.BUFFERS:
            getattr(self, name).clear()
        self._traced_lock = threading.Lock()  # a forked child must not inherit a held lock
        if self.distributions is not None:
            self.distributions.clear()

    def bounded_label(self, label: Any) -> str:
        text = label if type(label) is str else str(label)
        if text in self._seen_labels:
            return text
        if len(self._seen_labels) < self.max_labels:
            self._seen_labels.add(text)
            return text
        return conv.OTHER_LABEL

    def bounded_group(self, group: str) -> str:
        """The group itself for the first ``max_groups`` distinct values (each at most MAX_GROUP_LENGTH
        characters), OTHER_LABEL after; called on the export thread only, like bounded_label."""
        group = scrub(group)  # a name the caller chose, scrubbed like every exported text
        if group in self._seen_groups:
            return group
        if len(group) <= conv.MAX_GROUP_LENGTH and len(self._seen_groups) < self.max_groups:
            self._seen_groups.add(group)
            return group
        return conv.OTHER_LABEL

    def complete_traced(self) -> None:
        """Do the work of every traced call queued so far (see ``traced``); on return it is all done.

        Called by the metric export thread (at each fold), the span export thread (before exporting
        a span whose call is queued here) and ``record_feedback`` (a prediction id it cannot find may
        belong to a queued call: its entry in the pending-feedback table is made here); the lock makes
        a caller wait for items another thread has taken. Never raises.
        """
        if not self.traced and not self._traced_lock.locked():
            return
        with self._traced_lock:
            for complete, span, output, features, pid in drain(self.traced):
                try:
                    complete(span, output, features, pid)
                except Exception as exc:
                    SELF.error("record", exc)
                if span is not None:  # None: a call whose span the sampler left out
                    span.deferred_owner = None

    def fold(self, rec: SeriesSink) -> None:
        self.complete_traced()
        attrs = self.attributes
        # Exemplars first: a call appends its duration before its exemplar, so every exemplar taken here has its
        # duration in the drain below (the other order could export an exemplar a fold before its value).
        exemplars = drain(self.exemplars) if self.exemplars else None
        durations = drain(self.durations)
        if durations:
            rec.observe(conv.INFERENCE_DURATION, self.key, attrs, np.asarray(durations, dtype=np.float64) * 1e-9)
        errors = drain(self.errors)
        if errors:
            by_type: dict[str, list[int]] = {}
            for error_type, ns in errors:
                by_type.setdefault(error_type, []).append(ns)
            for error_type, values in by_type.items():
                err_attrs = {**attrs, conv.ERROR_TYPE: error_type}
                rec.observe(
                    conv.INFERENCE_DURATION,
                    attr_key(err_attrs),
                    err_attrs,
                    np.asarray(values, dtype=np.float64) * 1e-9,
                )
        if exemplars:
            self._fold_exemplars(rec, exemplars)
        first_item = drain(self.first_item)
        if first_item:
            rec.observe(
                conv.INFERENCE_TIME_TO_FIRST_ITEM, self.key, attrs, np.asarray(first_item, dtype=np.float64) * 1e-9
            )
        conf_parts = [np.asarray(drain(self.confidences), dtype=np.float64)]
        by_label: dict[str | None, list[np.ndarray]] = {}  # positive-label models: confidences per exported label
        for conf, label in drain(self.labelled_confidences):
            by_label.setdefault(label, []).append(np.float64(conf))
        label_counts: Counter[Any] = Counter(drain(self.labels))
        for chunks, dtype in ((drain(self.raw_outputs), np.float64), (drain(self.raw_outputs32), np.float32)):
            for rows in _stack_by_length(chunks, dtype):
                if self.ood_on_rows == "outputs":
                    self._score_rows(rows)
                confs, idx, rejected = extract_rows(rows, self.softmax)
                conf_parts.append(confs)
                values, counts = np.unique(idx, return_counts=True)
                names = self.class_names
                indices = values.tolist()
                # class ids and declared names: never withheld, but exported in the policy's form (scrubbed, capped)
                shown, _ = self.label_policy.exported(
                    [names[i] if names is not None and i < len(names) else i for i in indices], True
                )
                for label, n in zip(shown, counts.tolist(), strict=True):
                    label_counts[label] += n
                if self.positive_label is not None:  # rows without a label (rejected) have no confidence either
                    conf_parts.pop()
                    for value, label in zip(values.tolist(), shown, strict=True):
                        by_label.setdefault(label, []).append(confs[idx == value])
                if rejected:
                    label_counts[None] += rejected
                    self.misses.append(rejected)
        confidences = np.concatenate(conf_parts) if len(conf_parts) > 1 else conf_parts[0]
        if confidences.size:
            rec.observe(conv.PREDICTION_CONFIDENCE_METRIC, self.key, attrs, confidences)
        for label, parts in by_label.items():
            values_of_label = np.concatenate([np.atleast_1d(p) for p in parts])
            if label is None:
                rec.observe(conv.PREDICTION_CONFIDENCE_METRIC, self.key, attrs, values_of_label)
            else:
                lab_attrs = {**attrs, conv.PREDICTION_LABEL: self.bounded_label(label)}
                rec.observe(conv.PREDICTION_CONFIDENCE_METRIC, attr_key(lab_attrs), lab_attrs, values_of_label)
        for label, count in label_counts.items():
            if label is None:
                rec.add(conv.PREDICTIONS, self.key, attrs, count)
            else:
                lab_attrs = {**attrs, conv.PREDICTION_LABEL: self.bounded_label(label)}
                rec.add(conv.PREDICTIONS, attr_key(lab_attrs), lab_attrs, count)
        missing = drain(self.missing)
        missing_total = int(sum(missing))
        dists = self.distributions
        for chunks, dtype in ((drain(self.raw_features), np.float64), (drain(self.raw_features32), np.float32)):
            for rows in _stack_by_length(chunks, dtype):
                if self.count_missing:
                    missing_total += int(np.count_nonzero(np.isnan(rows)))
                if dists is not None:
                    dists.fold_rows(rows)
                if self.ood_on_rows == "features":
                    self._score_rows(rows)
        for chunks, dtype in ((drain(self.failed_features), np.float64), (drain(self.failed_features32), np.float32)):
            for rows in _stack_by_length(chunks, dtype):
                missing_total += int(np.count_nonzero(np.isnan(rows)))
        if dists is not None:
            dists.fold(rec, attrs)
        misses = drain(self.misses)
        if misses:
            rec.add(conv.EXTRACT_MISSES, self.key, attrs, int(sum(misses)))
        self._fold_ood(rec)
        if missing_total:
            rec.add(conv.FEATURES_MISSING_METRIC, self.key, attrs, missing_total)
        feedback = drain(self.feedback)
        if feedback:
            self._fold_feedback(rec, feedback)

    def _fold_exemplars(self, rec: SeriesSink, exemplars: list[tuple]) -> None:
        """Exemplar candidates to the duration series their calls' values went to (after those values)."""
        for error_type, candidates in grouped(exemplars).items():
            if error_type is None:
                rec.offer(conv.INFERENCE_DURATION, self.key, self.attributes, candidates)
            else:
                err_attrs = {**self.attributes, conv.ERROR_TYPE: error_type}
                rec.offer(conv.INFERENCE_DURATION, attr_key(err_attrs), err_attrs, candidates)

    def _fold_feedback(self, rec: SeriesSink, feedback: list[FeedbackItem]) -> None:
        """``ml.feedback`` by correctness, prediction time bucket, and the group, positive-class flags and
        predicted/true labels when known; the judged confidences in ``ml.feedback.confidence`` by correctness and
        time bucket only (calibration needs no more, and a histogram per group would multiply the series);
        regression errors in ``ml.feedback.abs_error`` and ``ml.feedback.squared_error``; the label latency in
        ``ml.feedback.delay``."""
        attrs = self.attributes
        counts: Counter[tuple] = Counter()
        confs: dict[tuple, list[float]] = {}
        errors: dict[int | None, list[float]] = {}
        delays = []
        for item in feedback:
            ok, conf, bucket = item.correct, item.confidence, item.bucket_end
            pred = true = None
            if item.predicted_label is not None:  # a classifier whose labels leave the process: confusion counts
                pred = self.bounded_confusion(item.predicted_label)
                if item.true_label is not None:
                    true = self.bounded_confusion(self.exported_truth(item.true_label))
            counts[(ok, item.group, item.predicted_positive, item.truly_positive, pred, true, bucket)] += 1
            if conf is not None and ok is not None:
                confs.setdefault((ok, bucket), []).append(conf)
            if item.error is not None:
                errors.setdefault(bucket, []).append(item.error)
            delays.append(item.delay_s)
        for (ok, group, predicted_positive, truly_positive, pred, true, bucket), n in counts.items():
            fb_attrs = dict(attrs)
            if ok is not None:
                fb_attrs[conv.FEEDBACK_CORRECT] = ok
            if group is not None:
                fb_attrs[conv.FAIRNESS_GROUP] = self.bounded_group(group)
            if predicted_positive is not None and truly_positive is not None:
                fb_attrs[conv.PREDICTION_POSITIVE] = predicted_positive
                fb_attrs[conv.FEEDBACK_POSITIVE] = truly_positive
            if pred is not None:
                fb_attrs[conv.PREDICTION_LABEL] = pred
                if true is not None:
                    fb_attrs[conv.FEEDBACK_LABEL] = true
            if bucket is not None:
                fb_attrs[conv.PREDICTION_TIME_BUCKET_END] = bucket
            rec.add(conv.FEEDBACK, attr_key(fb_attrs), fb_attrs, n)
        for (ok, bucket), values in confs.items():
            conf_attrs = {**attrs, conv.FEEDBACK_CORRECT: ok}
            if bucket is not None:
                conf_attrs[conv.PREDICTION_TIME_BUCKET_END] = bucket
            values_array = np.asarray(values, dtype=np.float64)
            rec.observe(conv.FEEDBACK_CONFIDENCE, attr_key(conf_attrs), conf_attrs, values_array)
        for bucket, values in errors.items():
            err_attrs = dict(attrs)
            if bucket is not None:
                err_attrs[conv.PREDICTION_TIME_BUCKET_END] = bucket
            err = np.abs(np.asarray(values, dtype=np.float64))
            key = attr_key(err_attrs)
            rec.observe(conv.FEEDBACK_ABS_ERROR, key, err_attrs, err)
            rec.observe(conv.FEEDBACK_SQUARED_ERROR, key, err_attrs, err * err)
        if delays:
            rec.observe(conv.FEEDBACK_DELAY, self.key, attrs, np.asarray(delays, dtype=np.float64))

    def exported_truth(self, truth: Any) -> str:
        """A true label as ``ml.feedback.label`` shows it: under the model's label policy, as if it had come with
        a score (a class-shaped string or a declared class passes, other text is OTHER_LABEL)."""
        shown, _ = self.label_policy.exported([truth], True)
        return shown[0] if shown and shown[0] is not None else conv.OTHER_LABEL

    def bounded_confusion(self, label: str) -> str:
        """The label itself for the first ``DEFAULT_MAX_CONFUSION_LABELS`` distinct ones on feedback series (a
        confusion matrix has their square of cells), OTHER_LABEL after; export thread only."""
        if label in self._confusion_labels:
            return label
        if len(self._confusion_labels) < conv.DEFAULT_MAX_CONFUSION_LABELS:
            self._confusion_labels.add(label)
            return label
        return conv.OTHER_LABEL

    def _score_rows(self, rows: np.ndarray) -> None:
        try:
            scores = self.ood_scorer.score(rows)
            self.ood.extend(np.asarray(scores, dtype=np.float64).ravel().tolist())
        except Exception as exc:
            SELF.error("ood_score", exc)

    def _fold_ood(self, rec: SeriesSink) -> None:
        ood = drain(self.ood)
        if not ood:
            return
        scores = np.asarray(ood, dtype=np.float64)
        rec.observe(conv.OOD_SCORE_METRIC, self.key, self.attributes, scores)
        threshold = self.ood_threshold
        if threshold is None and self.ood_scorer is not None:
            threshold = getattr(self.ood_scorer, "threshold", None)  # a scorer may be thresholded later
        if threshold is not None:
            outliers = int(np.count_nonzero(scores > threshold))
            rec.add(conv.OOD_OUTLIERS, self.key, self.attributes, outliers)


def _stack_by_length(chunks: list[bytes], dtype: type) -> list[np.ndarray]:
    """Byte copies of vectors as 2-D arrays, one per vector length (almost always just one)."""
    if not chunks:
        return []
    width = np.dtype(dtype).itemsize
    lengths = set(map(len, chunks))
    if len(lengths) == 1:
        groups = [chunks]
    else:
        by_len: dict[int, list[bytes]] = {n: [] for n in lengths}
        for chunk in chunks:
            by_len[len(chunk)].append(chunk)
        groups = list(by_len.values())
    return [np.frombuffer(b"".join(g), dtype=dtype).reshape(len(g), len(g[0]) // width) for g in groups]


