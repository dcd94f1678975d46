"""Judging feedback: find what a prediction id predicted, compare it with the truth, queue the verdict for export.

An id is either self-describing (``ids.py``: any process holding the key judges it, nothing is looked up) or an
in-process id from ``current_prediction_id()`` (looked up in ``pending.PENDING``). Either way the verdict goes to
the model's buffers (``metrics.buffers.FeedbackItem``) and leaves as ``ml.feedback`` and friends, under the model's
own attributes, attributed to the prediction's time bucket (``ml.prediction.time_bucket_end``) so a window's
accuracy does not move with label latency.

Nothing is trusted that was not signed, and nothing is dropped without a reason: every refusal is counted in
``modelotel.dropped`` under the reason ``FeedbackRefused.reason`` names.

Fairness is opt-in: ``group=`` names the group an item belongs to (the caller's own category, such as a region or
an age band, never read from the features), bounded per model like predicted labels. With a positive class
(``positive_label=``, or the model's) and a true ``label=`` each item also records whether the predicted and the
true label are that class, which is what selection rate, TPR and FPR need.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from ..config import ConfigError
from ..metrics.buffers import FeedbackItem, complete_all_traced
from ..metrics.selftelemetry import SELF
from .ids import IdProblem, Label, decode, looks_like_id
from .keys import KEYRING
from .pending import PENDING, Outcome, as_list
from .remote import REMOTE_MODELS

MAX_CLOCK_SKEW_S = 300.0  # an id this far in the future is refused (feedback_id_future)
# Predictions judged over a day late go in hour buckets (a back-fill of a month touches 720 buckets, not 43,200);
# windows that judge week-old predictions are hours long or more.
OLD_PREDICTION_S = 86400.0
OLD_BUCKET_S = 3600
_HEX_ID = re.compile(r"[0-9a-f]{32}\Z").match


class FeedbackRefused(Exception):
    """Why a feedback was not recorded; it is counted in ``modelotel.dropped{reason}``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SeenIds:
    """The last ``capacity`` judged ids (by nonce), so a repeated feedback (a retried request, a re-sent file) counts
    once. Bounded: a repeat older than that, or judged in another process, is not detected (docs/quality.md)."""

    def __init__(self) -> None:
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: bytes, capacity: int) -> bool:
        """True if ``key`` is new (and now remembered)."""
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            while len(self._seen) > capacity:
                self._seen.popitem(last=False)
            return True

    def forget(self, key: bytes) -> None:
        with self._lock:
            self._seen.pop(key, None)

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()


SEEN = SeenIds()
os.register_at_fork(after_in_child=SEEN.after_fork_in_child)


def judge(
    prediction_id: Any,
    *,
    label: Any = None,
    correct: bool | Sequence[bool] | None = None,
    group: Any = None,
    positive_label: Any = None,
    at: float | None = None,
) -> int:
    """Record the feedback; returns the number of items judged. Raises ``FeedbackRefused`` (already counted)."""
    try:
        return _judge(prediction_id, label, correct, group, positive_label, at)
    except FeedbackRefused as refused:
        SELF.drop(refused.reason, 1, str(refused))
        raise


def _judge(prediction_id: Any, label: Any, correct: Any, group: Any, positive_label: Any, at: float | None) -> int:
    now = time.time()
    try:
        keyring = KEYRING.load()
    except ConfigError as exc:  # a bad MODELOTEL_FEEDBACK_KEY: every feedback says so, none is trusted
        raise FeedbackRefused("feedback_key_invalid", str(exc)) from None
    settings = keyring.settings
    assert settings is not None
    text = prediction_id if type(prediction_id) is str else str(prediction_id)
    seen_key = None
    positive: Label | None = None
    if looks_like_id(text):
        try:
            record = decode(text, keyring.accepted)
        except IdProblem as problem:
            raise FeedbackRefused(problem.reason, str(problem)) from None
        age = now - record.time_s
        if age > settings.horizon_s:
            raise FeedbackRefused(
                "feedback_id_expired",
                f"feedback {age / 86400:.1f} days after the prediction; the horizon is "
                f"{settings.horizon_s / 86400:g} days (MODELOTEL_FEEDBACK_HORIZON)",
            )
        if age < -MAX_CLOCK_SKEW_S:
            raise FeedbackRefused(
                "feedback_id_future", f"the prediction id is {-age:.0f} s in the future: clocks disagree"
            )
        buffers = REMOTE_MODELS.buffers_for_pairs(record.attributes)
        if buffers is None:
            raise FeedbackRefused("feedback_too_many_models", "too many distinct models in one labelling process")
        outcome = Outcome(buffers, record.labels, record.confidences, record.numbers, float(record.time_s))
        positive = record.positive
        seen_key = record.key_id + record.nonce
        if not SEEN.add(seen_key, max(settings.dedupe, 1)):
            raise FeedbackRefused("feedback_duplicate", "feedback for a prediction id already judged here")
    else:
        found = PENDING.pop(text)
        if found is None:  # a traced call may still wait for an export thread (ModelBuffers.traced)
            complete_all_traced()
            found = PENDING.pop(text)
        if found is None:
            if _HEX_ID(text):
                raise FeedbackRefused(
                    "feedback_unmatched",
                    "prediction id unknown to this process, evicted or judged already (an id from "
                    "current_prediction_id() is known only where it was made; use last_prediction_id() for "
                    "feedback from other processes)",
                )
            raise FeedbackRefused("feedback_id_foreign", "not a modelotel prediction id")
        outcome = found
    try:
        items = _items(outcome, positive, label, correct, group, positive_label, now if at is None else at, settings)
    except FeedbackRefused:
        if seen_key is not None:
            SEEN.forget(seen_key)  # a feedback that could not be used may be sent again, corrected
        raise
    outcome.buffers.feedback.extend(items)
    return len(items)


def _items(
    outcome: Outcome,
    positive: Label | None,
    label: Any,
    correct: Any,
    group: Any,
    positive_label: Any,
    at: float,
    settings: Any,
) -> list[FeedbackItem]:
    width = settings.time_bucket_s
    if width and at - outcome.time_s > OLD_PREDICTION_S:
        width = max(width, OLD_BUCKET_S)
    bucket_end = (int(outcome.time_s // width) + 1) * width if width else None
    delay = max(0.0, at - outcome.time_s)
    if outcome.numbers and correct is None:
        return _regression(outcome, label, group, bucket_end, delay)
    predicted = outcome.labels
    if correct is not None:
        verdicts: list[bool | None] = [bool(v) for v in (as_list(correct) or [])]
        truths: list[Any] = [None] * len(verdicts)
    elif label is not None and predicted:
        truths = _broadcast(as_list(label) or [], len(predicted))
        verdicts = [p is not None and p.matches(t) for t, p in zip(truths, predicted, strict=False)]
    else:
        raise FeedbackRefused("feedback_unusable", "feedback needs correct= or a label for a labelled prediction")
    n = len(verdicts)
    confs = list(outcome.confidences) if outcome.confidences else []
    if len(confs) != n:
        # Items whose confidence was not finite have none; without a one-to-one match the
        # pairing would be a guess, so calibration gets nothing from this feedback.
        confs = [None] * n
    preds = list(predicted) if len(predicted) == n else [None] * n
    groups = _groups(group, n)
    if positive_label is not None:
        positive = Label.of(positive_label, None)
    elif positive is None and outcome.buffers.positive_label is not None:
        positive = Label.of(outcome.buffers.positive_label, None)
    out = []
    for ok, conf, grp, pred, truth in zip(verdicts, confs, groups, preds, truths, strict=False):
        pred_pos = true_pos = None
        if positive is not None and correct is None and truth is not None and pred is not None:
            pred_pos, true_pos = pred.same_as(positive), positive.matches(truth)
        out.append(
            FeedbackItem(
                ok,
                conf,
                grp,
                pred_pos,
                true_pos,
                pred.shown if pred is not None else None,
                truth,
                bucket_end,
                delay,
                None,
            )
        )
    return out


def _regression(outcome: Outcome, label: Any, group: Any, bucket_end: int | None, delay: float) -> list[FeedbackItem]:
    if label is None:
        raise FeedbackRefused("feedback_unusable", "a regression prediction needs label=<the true value>")
    n = len(outcome.numbers)
    truths = _broadcast(as_list(label) or [], n)
    if len(truths) != n:
        raise FeedbackRefused("feedback_unusable", f"{len(truths)} true values for {n} predicted ones")
    try:
        values = [float(t) for t in truths]
    except (TypeError, ValueError):
        raise FeedbackRefused("feedback_unusable", "a regression truth is not a number") from None
    if not all(math.isfinite(v) for v in values):
        raise FeedbackRefused("feedback_unusable", "a regression truth is NaN or infinite")
    groups = _groups(group, n)
    return [
        FeedbackItem(None, None, grp, None, None, None, None, bucket_end, delay, truth - predicted)
        for truth, predicted, grp in zip(values, outcome.numbers, groups, strict=True)
    ]


def _broadcast(values: list[Any], n: int) -> list[Any]:
    """One value for every item of a batch, or one per item."""
    return values * n if len(values) == 1 and n > 1 else values


def _groups(group: Any, n: int) -> list[str | None]:
    """One group (or None) per item: a single value applies to every item of a batch."""
    if group is None:
        return [None] * n
    values = _broadcast(as_list(group) or [], n)
    if len(values) != n:
        SELF.drop("feedback_group_unusable", n, f"{len(values)} groups for {n} judged items; recorded without groups")
        return [None] * n
    return [None if v is None else str(v) for v in values]
