"""Prediction ids and ground-truth feedback joined to the prediction it judges.

A prediction id exists only when someone asks for it (``current_prediction_id()``), so calls that
never need feedback pay nothing. The id is remembered, with the prediction's confidences and
labels, in a bounded first-in-first-out table; ``record_feedback`` looks it up and records
correctness and the confidence it had (for calibration) under the model's own series.

Fairness is opt-in: ``group=`` names the group an item belongs to (the caller's own category, such as
a region or an age band, never read from the features), bounded per model like predicted labels. With
a positive class (``positive_label=``) and a true ``label=`` each item also records whether the
predicted and the true label are that class, which is what selection rate, TPR and FPR need.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from .metrics.buffers import ModelBuffers, complete_all_traced
from .metrics.selftelemetry import SELF

DEFAULT_CAPACITY = 100_000
# Longer predicted labels (a generator's free text) are kept as a digest: the table holds up to
# DEFAULT_CAPACITY entries, and 100,000 five-megabyte answers would be 500 GB.
MAX_KEPT_LABEL_CHARS = 256


class LabelDigest:
    """A long text label as its length and SHA-256: equal to a truth whose text has the same digest."""

    __slots__ = ("length", "digest")

    def __init__(self, text: str) -> None:
        self.length = len(text)
        self.digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()

    def matches(self, truth: Any) -> bool:
        text = str(truth)
        return len(text) == self.length and LabelDigest(text).digest == self.digest


def kept_labels(labels: Any) -> Any:
    """The labels as the table keeps them: strings over MAX_KEPT_LABEL_CHARS become a LabelDigest."""
    if not labels or not any(isinstance(v, str) and len(v) > MAX_KEPT_LABEL_CHARS for v in labels):
        return labels
    return [LabelDigest(v) if isinstance(v, str) and len(v) > MAX_KEPT_LABEL_CHARS else v for v in labels]


class PendingPredictions:
    """pid -> (buffers, confidences, labels); the oldest entries are evicted beyond ``capacity``."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        # OrderedDict: evicting the oldest is O(1); a plain dict's next(iter()) scans the holes left by earlier
        # deletions, which made every traced prediction slower once the table was full
        self._table: OrderedDict[str, tuple[ModelBuffers, Sequence[float] | None, Sequence[Any] | None]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()
        self.evicted = 0

    def put(self, pid: str, buffers: ModelBuffers, confidences: Any, labels: Any) -> None:
        with self._lock:
            table = self._table
            table[pid] = (buffers, confidences, kept_labels(labels))
            while len(table) > self.capacity:
                table.popitem(last=False)
                self.evicted += 1

    def pop(self, pid: str) -> tuple[ModelBuffers, Any, Any] | None:
        with self._lock:
            return self._table.pop(pid, None)

    def clear(self) -> None:
        with self._lock:
            self._table.clear()

    def after_fork_in_child(self) -> None:
        """A new lock: a parent thread holding it at the fork does not exist in the child, which would wait forever."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._table)


PENDING = PendingPredictions()
os.register_at_fork(after_in_child=PENDING.after_fork_in_child)


def new_prediction_id() -> str:
    """128 random bits as 32 hex characters, like a W3C trace id (and made the same way as the OTel SDK
    makes trace ids: ``random.getrandbits``; os.urandom costs a system call per id)."""
    return f"{random.getrandbits(128):032x}"


def as_list(value: Any) -> list[Any] | None:
    """One value or a sequence/array of them as a list (None stays None; a failing tolist() gives None)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return list(value)
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        try:
            out = tolist()
            return out if isinstance(out, list) else [out]
        except Exception:
            return None
    return [value]


def record_feedback(
    prediction_id: str,
    *,
    label: Any = None,
    correct: bool | Sequence[bool] | None = None,
    group: Any = None,
    positive_label: Any = None,
) -> bool:
    """Record ground truth for a prediction made in this process; True when it was matched.

    Give ``label`` (the true label; correctness is label == predicted label) or ``correct``
    directly. For batch predictions pass one value per item. Unknown or evicted ids are counted
    in ``modelotel.dropped{modelotel.drop.reason="feedback_unmatched"}``. Never raises.

    Fairness (opt-in): ``group`` (one value, or one per item) becomes ``ml.fairness.group`` on
    ``ml.feedback`` (20 distinct values per model, at most 64 characters, then ``__other__``). With
    ``label`` given and a positive class (``positive_label`` here, or the model's), each item also
    gets ``ml.prediction.positive`` and ``ml.feedback.positive``.
    """
    try:
        pid = str(prediction_id)
        entry = PENDING.pop(pid)
        if entry is None:  # a traced call may still wait for an export thread (ModelBuffers.traced)
            complete_all_traced()
            entry = PENDING.pop(pid)
        if entry is None:
            SELF.drop("feedback_unmatched", 1, "prediction id unknown to this process or evicted")
            return False
        buffers, confidences, predicted = entry
        if correct is not None:
            verdicts = as_list(correct) or []
            verdicts = [bool(v) for v in verdicts]
        elif label is not None and predicted:
            truths = as_list(label) or []
            if len(truths) == 1 and len(predicted) > 1:
                truths = truths * len(predicted)
            verdicts = [_same_label(t, p) for t, p in zip(truths, predicted, strict=False)]
        else:
            SELF.drop("feedback_unusable", 1, "feedback needs correct= or a label for a labelled prediction")
            return False
        n = len(verdicts)
        confs = list(confidences) if confidences else []
        if len(confs) != n:
            # Items whose confidence was not finite have none; without a one-to-one match the
            # pairing would be a guess, so calibration gets nothing from this feedback.
            confs = [None] * n
        groups = _groups(group, n)
        positive = positive_label if positive_label is not None else buffers.positive_label
        flags: list[tuple[bool | None, bool | None]] = [(None, None)] * n
        if positive is not None and correct is None and label is not None:
            truths = as_list(label) or []
            if len(truths) == 1:
                truths = truths * n
            flags = [
                (_same_label(p, positive), _same_label(t, positive)) if p is not None else (None, None)
                for t, p in zip(truths, predicted, strict=False)
            ]
        for ok, conf, grp, (pred_pos, true_pos) in zip(verdicts, confs, groups, flags, strict=True):
            buffers.feedback.append((ok, conf, grp, pred_pos, true_pos))
        return True
    except Exception as exc:
        SELF.error("feedback", exc)
        return False


def _groups(group: Any, n: int) -> list[str | None]:
    """One group (or None) per item: a single value applies to every item of a batch."""
    if group is None:
        return [None] * n
    values = as_list(group) or []
    if len(values) == 1:
        values = values * n
    if len(values) != n:
        SELF.drop("feedback_group_unusable", n, f"{len(values)} groups for {n} judged items; recorded without groups")
        return [None] * n
    return [None if v is None else str(v) for v in values]


def _same_label(truth: Any, predicted: Any) -> bool:
    if isinstance(predicted, LabelDigest):
        return predicted.matches(truth)
    if isinstance(truth, LabelDigest):
        return truth.matches(predicted)
    if truth == predicted:
        return True
    return str(truth) == str(predicted)
