"""``modelotel.record_feedback``: the public entry, which starts the SDK (like an instrumented call) so a labelling
process that never decorated a model exports its feedback too."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..metrics.selftelemetry import SELF
from ..runtime import STATE, autostart
from .record import FeedbackRefused, judge


def record_feedback(
    prediction_id: str,
    *,
    label: Any = None,
    correct: bool | Sequence[bool] | None = None,
    group: Any = None,
    positive_label: Any = None,
    time: float | None = None,
) -> bool:
    """Record ground truth for a prediction made in any process; True when it was recorded. Never raises.

    ``prediction_id``: from ``last_prediction_id()`` (any process holding the same ``MODELOTEL_FEEDBACK_KEY`` can
    judge it) or ``current_prediction_id()`` (only the process that made it). Give ``label`` (the true label, or
    for a regression model the true number) or ``correct`` directly; for batch predictions one value per item, or
    one for all. ``time``: when the truth became known (epoch seconds; default now), for the label latency.

    A refused feedback is counted in ``modelotel.dropped`` with its reason (``feedback_unmatched``,
    ``feedback_id_forged``, ``feedback_id_truncated``, ``feedback_id_unknown_key``, ``feedback_id_expired``,
    ``feedback_duplicate``, ...; docs/quality.md).

    Fairness (opt-in): ``group`` (one value, or one per item) becomes ``ml.fairness.group`` on ``ml.feedback``
    (20 distinct values per model, at most 64 characters, then ``__other__``). With ``label`` given and a positive
    class (``positive_label`` here, or the model's), each item also gets ``ml.prediction.positive`` and
    ``ml.feedback.positive``.
    """
    try:
        if not STATE.started:
            autostart()
        judge(prediction_id, label=label, correct=correct, group=group, positive_label=positive_label, at=time)
        return True
    except FeedbackRefused:
        return False
    except Exception as exc:
        SELF.error("feedback", exc)
        return False
