"""Group fairness from ``ml.feedback`` counts: per-group rates and fairlearn's disparity metrics.

Input
    ``ml.feedback`` counter increments with their attributes (see docs/semantic-conventions.md):
    ``ml.feedback.correct``; opt-in ``ml.fairness.group``; and, when the application configured a positive
    class and gave the true label, ``ml.prediction.positive`` (predicted label is the positive class) and
    ``ml.feedback.positive`` (true label is). Attribute values may be booleans (OTLP) or "true"/"false"
    strings (Prometheus labels). Feedback without a group is counted in ``ungrouped`` and left out.

Per group ``g`` (confusion counts ``TP FP FN TN`` from feedback carrying both positive flags)
    accuracy ``= correct / feedback`` (all feedback of the group, flags or not);
    selection rate ``= (TP + FP) / (TP + FP + FN + TN)``; ``TPR = TP / (TP + FN)``; ``FPR = FP / (FP + TN)``.
    These are fairlearn's ``selection_rate``, ``true_positive_rate`` and ``false_positive_rate`` on the rows
    ``(y_true == positive, y_pred == positive)`` of the group. A rate whose denominator is 0 is ``None``
    per group; in the disparities it counts as 0 (fairlearn's rates come from sklearn's ``confusion_matrix``
    with ``normalize="true"``, which turns 0/0 into 0) unless ``undefined="skip"`` leaves that group out.

Disparities (fairlearn ``method="between_groups"``, ``agg="worst_case"``, over groups with confusion rows)
    demographic parity difference ``= max_g SR_g - min_g SR_g``, ratio ``= min_g SR_g / max_g SR_g``;
    TPR/FPR difference and ratio likewise; equalized odds difference ``= max(TPR difference, FPR difference)``,
    equalized odds ratio ``= min(TPR ratio, FPR ratio)``. A ratio with a zero maximum is nan (fairlearn
    divides 0 by 0 too); the equalized odds ratio is then the other ratio (fairlearn's builtin ``min`` over
    ``[tpr, fpr]`` gives that when the FPR ratio is nan but nan when the TPR ratio is: order-dependent, so we
    ignore nan either way). With no group every disparity is nan; a single group has difference 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ... import conventions as conv

__all__ = ["Fairness", "GroupCounts", "GroupRates", "fairness", "tally"]

Undefined = Literal["zero", "skip"]


@dataclass
class GroupCounts:
    """Feedback counts of one group."""

    feedback: float = 0
    correct: float = 0
    tp: float = 0
    fp: float = 0
    fn: float = 0
    tn: float = 0

    @property
    def rows(self) -> float:
        """Feedback with both positive-class flags (the confusion-matrix rows)."""
        return self.tp + self.fp + self.fn + self.tn


@dataclass(frozen=True)
class GroupRates:
    group: str
    counts: GroupCounts
    accuracy: float | None
    selection_rate: float | None
    tpr: float | None
    fpr: float | None


@dataclass(frozen=True)
class Fairness:
    """Per-group rates and the disparities between groups (see the module docstring)."""

    groups: tuple[GroupRates, ...]
    demographic_parity_difference: float
    demographic_parity_ratio: float
    tpr_difference: float
    tpr_ratio: float
    fpr_difference: float
    fpr_ratio: float
    equalized_odds_difference: float
    equalized_odds_ratio: float
    ungrouped: float = 0
    undefined: Undefined = "zero"
    notes: tuple[str, ...] = field(default_factory=tuple)


def _flag(value: Any) -> bool | None:
    """A boolean attribute from OTLP (bool) or Prometheus ("true"/"false"); None when absent or unreadable."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "false"):
            return low == "true"
    return None


def tally(points: Iterable[tuple[Mapping[str, Any], float]]) -> tuple[dict[str, GroupCounts], float]:
    """Group counts from ``(attributes, increment)`` pairs of ``ml.feedback``; also the ungrouped total.

    Increments without a readable ``ml.feedback.correct`` are not feedback this module understands and are
    skipped (the caller selects the ``ml.feedback`` series of one model).
    """
    groups: dict[str, GroupCounts] = {}
    ungrouped = 0.0
    for attrs, value in points:
        ok = _flag(attrs.get(conv.FEEDBACK_CORRECT))
        if ok is None or not value:
            continue
        group = attrs.get(conv.FAIRNESS_GROUP)
        if group is None:
            ungrouped += value
            continue
        c = groups.setdefault(str(group), GroupCounts())
        c.feedback += value
        if ok:
            c.correct += value
        predicted, truth = _flag(attrs.get(conv.PREDICTION_POSITIVE)), _flag(attrs.get(conv.FEEDBACK_POSITIVE))
        if predicted is None or truth is None:
            continue
        if predicted and truth:
            c.tp += value
        elif predicted:
            c.fp += value
        elif truth:
            c.fn += value
        else:
            c.tn += value
    return groups, ungrouped


def _rate(num: float, den: float) -> float | None:
    return num / den if den else None


def _spread(values: list[float | None], undefined: Undefined) -> tuple[float, float]:
    """(max - min, min / max) over groups; undefined rates count as 0 or are skipped."""
    known = (
        [v if v is not None else 0.0 for v in values] if undefined == "zero" else [v for v in values if v is not None]
    )
    if not known:
        return math.nan, math.nan
    hi, lo = max(known), min(known)
    return hi - lo, (lo / hi if hi else math.nan)


def _nan_min(a: float, b: float) -> float:
    known = [v for v in (a, b) if not math.isnan(v)]
    return min(known) if known else math.nan


def fairness(groups: Mapping[str, GroupCounts], *, ungrouped: float = 0, undefined: Undefined = "zero") -> Fairness:
    """Per-group accuracy, selection rate, TPR, FPR and the between-groups disparities."""
    if undefined not in ("zero", "skip"):
        raise ValueError(f"undefined must be 'zero' (fairlearn) or 'skip', got {undefined!r}")
    rates = tuple(
        GroupRates(
            group=name,
            counts=c,
            accuracy=_rate(c.correct, c.feedback),
            selection_rate=_rate(c.tp + c.fp, c.rows),
            tpr=_rate(c.tp, c.tp + c.fn),
            fpr=_rate(c.fp, c.fp + c.tn),
        )
        for name, c in sorted(groups.items())
    )
    with_rows = [r for r in rates if r.counts.rows]
    notes = []
    if len(with_rows) < len(rates):
        notes.append(
            f"{len(rates) - len(with_rows)} group(s) have no feedback with positive-class flags "
            "(configure positive_label and pass label=): left out of the disparities"
        )
    if any(r.tpr is None or r.fpr is None for r in with_rows):
        notes.append(
            "some groups have no true positives or no true negatives: their TPR/FPR is undefined and "
            + ("counts as 0 (fairlearn)" if undefined == "zero" else "is left out")
        )
    dp_diff, dp_ratio = _spread([r.selection_rate for r in with_rows], "skip")
    tpr_diff, tpr_ratio = _spread([r.tpr for r in with_rows], undefined)
    fpr_diff, fpr_ratio = _spread([r.fpr for r in with_rows], undefined)
    return Fairness(
        groups=rates,
        demographic_parity_difference=dp_diff,
        demographic_parity_ratio=dp_ratio,
        tpr_difference=tpr_diff,
        tpr_ratio=tpr_ratio,
        fpr_difference=fpr_diff,
        fpr_ratio=fpr_ratio,
        equalized_odds_difference=max(tpr_diff, fpr_diff) if not math.isnan(tpr_diff + fpr_diff) else math.nan,
        equalized_odds_ratio=_nan_min(tpr_ratio, fpr_ratio),
        ungrouped=ungrouped,
        undefined=undefined,
        notes=tuple(notes),
    )
