"""Prediction ids and ground-truth feedback joined to the prediction it judges.

A prediction id exists only when someone asks for it (``current_prediction_id()``), so calls that
never need feedback pay nothing. The id is remembered, with the prediction's confidences and
labels, in a bounded first-in-first-out table; ``record_feedback`` looks it up and records
correctness and the confidence it had (for calibration) under the model's own series.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import Any

from .recorder import SELF, ModelBuffers

DEFAULT_CAPACITY = 100_000


class PendingPredictions:
    """pid -> (buffers, confidences, labels); the oldest entries are evicted beyond ``capacity``."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._table: dict[str, tuple[ModelBuffers, Sequence[float] | None, Sequence[Any] | None]] = {}
        self._lock = threading.Lock()
        self.evicted = 0

    def put(self, pid: str, buffers: ModelBuffers, confidences: Any, labels: Any) -> None:
        with self._lock:
            table = self._table
            table[pid] = (buffers, confidences, labels)
            while len(table) > self.capacity:
                del table[next(iter(table))]
                self.evicted += 1

    def pop(self, pid: str) -> tuple[ModelBuffers, Any, Any] | None:
        with self._lock:
            return self._table.pop(pid, None)

    def clear(self) -> None:
        with self._lock:
            self._table.clear()

    def __len__(self) -> int:
        return len(self._table)


PENDING = PendingPredictions()


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


def record_feedback(prediction_id: str, *, label: Any = None, correct: bool | Sequence[bool] | None = None) -> bool:
    """Record ground truth for a prediction made in this process; True when it was matched.

    Give ``label`` (the true label; correctness is label == predicted label) or ``correct``
    directly. For batch predictions pass one value per item. Unknown or evicted ids are counted
    in ``modelotel.dropped{modelotel.drop.reason="feedback_unmatched"}``. Never raises.
    """
    try:
        entry = PENDING.pop(str(prediction_id))
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
        confs = list(confidences) if confidences else []
        if len(confs) != len(verdicts):
            # Items whose confidence was not finite have none; without a one-to-one match the
            # pairing would be a guess, so calibration gets nothing from this feedback.
            confs = [None] * len(verdicts)
        for ok, conf in zip(verdicts, confs, strict=True):
            buffers.feedback.append((ok, conf))
        return True
    except Exception as exc:
        SELF.error("feedback", exc)
        return False


def _same_label(truth: Any, predicted: Any) -> bool:
    if truth == predicted:
        return True
    return str(truth) == str(predicted)
