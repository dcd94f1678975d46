"""Model performance from feedback telemetry: accuracy, confusion matrix, per-class P/R/F1, regression error, label
latency and label coverage of one model over a window of prediction time.

Input (docs/semantic-conventions.md)
    ``ml.feedback`` increments with ``ml.feedback.correct`` (absent for regression), ``ml.prediction.label`` and
    ``ml.feedback.label`` (predicted and true label, when the model's labels are exported), ``ml.fairness.group``
    and the positive-class flags (opt-in); ``ml.feedback.confidence`` sketches by correctness;
    ``ml.feedback.abs_error`` and ``ml.feedback.squared_error`` sketches (regression); ``ml.feedback.delay``
    (label latency, seconds); ``ml.predictions`` (predictions made). A model is the triple
    ``(ml.model.name, ml.model.version, ml.deployment.role)``: feedback judged in a labelling process carries the
    model's attributes from the prediction id, so it joins the serving process's series.

Attribution (which window an increment belongs to; windows are ``(start, end]``)
    Feedback series (``ml.feedback``, ``.confidence``, ``.abs_error``, ``.squared_error``) carry
    ``ml.prediction.time_bucket_end`` ``b``: the end of the bucket (default 5 min; an hour for predictions judged
    over a day late) the judged predictions were made in. An increment exported at ``e`` counts at
    ``min(b, e)``, so in the window when ``start < min(b, e) <= end``, whenever its labels arrived: a window's
    figures are those of the predictions made in it (a bucket counts wholly, so the window's edges move to bucket
    ends). A feedback series without that attribute (``MODELOTEL_FEEDBACK_TIME_BUCKET=0``, older SDKs) counts at
    its point's end time, i.e. when the feedback was exported (``Performance.by_arrival`` says how many).
    ``ml.feedback.delay`` has no time bucket: it counts at its point's end time, so latency figures are those of
    the labels that *arrived* in the window. ``ml.predictions`` counts at its point's end time too, so the
    predictions of a window are those *exported* in it: off by at most one export interval's predictions at each
    edge of the window.

Classification (counts exact; sklearn's definitions, labels the sorted union of true and predicted labels)
    accuracy ``= correct / judged`` from ``ml.feedback.correct`` (every judged item, labels exported or not).
    Confusion matrix ``C[i][j]`` = items with true label ``i`` predicted as ``j`` (rows true, columns predicted:
    ``sklearn.metrics.confusion_matrix``), from feedback carrying both labels. Per class ``k``:
    ``TP = C[k][k]``, ``support = sum_j C[k][j]`` (true), ``predicted = sum_i C[i][k]``;
    precision ``= TP / predicted``, recall ``= TP / support``, F1 ``= 2 TP / (support + predicted)``
    (``= 2PR / (P + R)``, sklearn's form); a 0/0 is 0 (sklearn's ``zero_division=0``, which is also what its
    default ``"warn"`` returns) and the class is named in ``undefined_precision`` / ``undefined_recall``.
    Macro average: the unweighted mean over classes; weighted average: weighted by support.
    ``label_accuracy = trace(C) / sum(C)`` is sklearn's ``accuracy_score`` on the rows with both labels. Labels
    beyond 20 per model are exported as ``__other__``: its row and column pool those classes, and its diagonal
    cell counts items whose true and predicted labels were both pooled, equal or not (a note says so).

Regression (``n`` judged items, errors ``e_i = truth_i - prediction_i``)
    MAE ``= sum |e_i| / n`` and RMSE ``= sqrt(sum e_i**2 / n)`` from the sums of the two sketches: exact but for
    float64 rounding of the sums (cumulative series are differenced: relative error about 1e-16 times the
    series' total over the window's). Quantiles of ``|e|`` from the ``abs_error`` sketch: see ``Quantile``.

Quantiles (abs error, label latency)
    ``sketch.quantile(q)`` estimates the value of rank ``floor(q (n - 1))`` (numpy ``method="lower"``) with
    relative error ``alpha = (b - 1) / (b + 1)`` (1.08% at scale 5): the estimate lies in the exact value's
    bucket ``(b**i, b**(i+1)]``, whose bounds (intersected with ``[min, max]``) are the ``low``/``high`` given.
    At rank 0 and ``n - 1`` the sketch returns its min / max, which a delta of a cumulative series knows only as
    the outer bound of its bucket: the bounds are then ``min`` up to the top of the bucket above it, and the
    bottom of the max's bucket up to ``max``. Zero is exact.

Coverage
    ``judged / predictions``: ``ml.feedback`` items attributed to the window over the ``ml.predictions`` of the
    model exported in it. It is below 1 while labels are outstanding, and can exceed 1 by the edge effect above.

Calibration (ECE, Brier) and fairness (per-group rates, disparities) are ``calibration.calibration`` and
``fairness.fairness`` on the window's increments, unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ... import conventions as conv
from ...sketch import LogSketch, bucket_bounds, bucket_index
from ..sources.points import AttrValue, Delta, attribute_text
from . import calibration as calibration_stats
from . import cbpe
from . import fairness as fairness_stats

__all__ = [
    "QUANTILES",
    "Averages",
    "ClassFigures",
    "Classification",
    "Coverage",
    "Distribution",
    "ModelKey",
    "Performance",
    "PerformanceData",
    "Quantile",
    "Regression",
    "classification",
    "quantile",
]

QUANTILES = (0.5, 0.9, 0.99)
ModelKey = tuple[str, str, str]  # (ml.model.name, ml.model.version, ml.deployment.role); "" when absent
MODEL_KEYS = (conv.MODEL_NAME, conv.MODEL_VERSION, conv.DEPLOYMENT_ROLE)
FEEDBACK_SERIES = frozenset(
    {conv.FEEDBACK, conv.FEEDBACK_CONFIDENCE, conv.FEEDBACK_ABS_ERROR, conv.FEEDBACK_SQUARED_ERROR}
)
# attributes of ml.feedback this module reads (the rest of a series' identity does not matter here)
FEEDBACK_KEYS = (
    conv.FEEDBACK_CORRECT,
    conv.PREDICTION_LABEL,
    conv.FEEDBACK_LABEL,
    conv.FAIRNESS_GROUP,
    conv.PREDICTION_POSITIVE,
    conv.FEEDBACK_POSITIVE,
)


# -- figures ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassFigures:
    label: str
    precision: float
    recall: float
    f1: float
    support: int  # items truly of this class
    predicted: int  # items predicted as this class


@dataclass(frozen=True)
class Averages:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Classification:
    """Confusion matrix (rows true, columns predicted) and the figures sklearn's ``classification_report`` gives."""

    labels: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]
    classes: tuple[ClassFigures, ...]
    macro: Averages
    weighted: Averages
    label_accuracy: float  # trace / total: sklearn accuracy_score on the rows with both labels
    rows: int
    undefined_precision: tuple[str, ...]  # classes never predicted: precision 0 by convention
    undefined_recall: tuple[str, ...]  # classes never true: recall 0 by convention


@dataclass(frozen=True)
class Quantile:
    q: float
    value: float
    low: float  # the exact quantile (numpy method="lower") lies in [low, high]
    high: float


@dataclass(frozen=True)
class Distribution:
    """Count, mean and quantiles of a sketch (label latency, absolute error)."""

    count: int
    mean: float
    quantiles: tuple[Quantile, ...]
    relative_accuracy: float


@dataclass(frozen=True)
class Regression:
    count: int
    mae: float
    mse: float
    rmse: float
    abs_error: Distribution


@dataclass(frozen=True)
class Coverage:
    judged: int
    predictions: int
    ratio: float


@dataclass(frozen=True)
class Estimated:
    """CBPE (quality/cbpe.py) of the window's predictions, beside the realized figures: accuracy, and for a binary
    model with a known positive class precision, recall and F1. Calibrated with the feedback of predictions made
    BEFORE the window (``reference_feedback`` judged items; 0: uncalibrated, the confidences taken as they are)."""

    accuracy: cbpe.AccuracyEstimate
    gap: cbpe.AccuracyGap | None
    binary: cbpe.BinaryEstimate | None
    positive_label: str | None
    reference_feedback: int


@dataclass(frozen=True)
class Performance:
    """Every figure of one model over ``(start, end]`` of prediction time; ``missing`` says why a figure that is
    None could not be computed."""

    model: ModelKey
    start: float
    end: float
    judged: int  # ml.feedback items attributed to the window
    correct: int
    incorrect: int
    accuracy: float | None
    classification: Classification | None
    calibration: calibration_stats.Calibration | None
    fairness: fairness_stats.Fairness | None
    regression: Regression | None
    latency: Distribution | None
    coverage: Coverage | None
    by_arrival: int = 0  # of the judged items, those without a time bucket (counted when exported)
    estimated: Estimated | None = None  # CBPE of the window's predictions
    missing: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def classification(cells: Mapping[tuple[str, str], int]) -> Classification:
    """sklearn's confusion matrix and per-class/average precision, recall, F1 from ``(true, predicted) -> count``
    (see the module docstring). ``cells`` must hold at least one positive count."""
    labels = tuple(sorted({t for t, _ in cells} | {p for _, p in cells}))
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for (truth, predicted), n in cells.items():
        matrix[index[truth], index[predicted]] += n
    rows = int(matrix.sum())
    if not rows:
        raise ValueError("a confusion matrix needs at least one item")
    tp = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    # sklearn's _prf_divide with zero_division=0: the ratio where the denominator is positive, else 0
    precision = np.divide(tp, predicted, out=np.zeros(len(labels)), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(len(labels)), where=support > 0)
    both = (support + predicted).astype(np.float64)
    f1 = np.divide(2.0 * tp, both, out=np.zeros(len(labels)), where=both > 0)
    classes = tuple(
        ClassFigures(label, float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]), int(predicted[i]))
        for i, label in enumerate(labels)
    )
    total = int(support.sum())
    macro = Averages(float(np.mean(precision)), float(np.mean(recall)), float(np.mean(f1)), total)
    weighted = Averages(
        float(np.average(precision, weights=support)),
        float(np.average(recall, weights=support)),
        float(np.average(f1, weights=support)),
        total,
    )
    return Classification(
        labels=labels,
        matrix=tuple(tuple(int(v) for v in row) for row in matrix),
        classes=classes,
        macro=macro,
        weighted=weighted,
        label_accuracy=int(tp.sum()) / rows,
        rows=rows,
        undefined_precision=tuple(label for label, n in zip(labels, predicted, strict=True) if not n),
        undefined_recall=tuple(label for label, n in zip(labels, support, strict=True) if not n),
    )


def quantile(sketch: LogSketch, q: float) -> Quantile:
    """The sketch's quantile ``q`` of non-negative values with bounds on the exact one (module docstring)."""
    value = sketch.quantile(q)
    if not sketch.count:
        return Quantile(q, math.nan, math.nan, math.nan)
    rank = math.floor(q * (sketch.count - 1))
    if rank < sketch.zero_count:  # ranks of the zero bucket (no negatives): exact zeros
        return Quantile(q, value, 0.0, 0.0)
    scale = sketch.scale
    if rank == 0:  # the min, exact or the lower bound of the lowest bucket (0 when that underflows)
        above = bucket_index(sketch.min, scale) + 1 if sketch.min > 0 else sketch.positive.offset
        lo, hi = sketch.min, bucket_bounds(above, scale)[1]
    elif rank == sketch.count - 1:  # the max, exact or the upper bound of the highest bucket
        lo, hi = bucket_bounds(bucket_index(sketch.max, scale), scale)[0], sketch.max
    elif value > 0:  # the estimate shares the exact value's bucket
        lo, hi = bucket_bounds(bucket_index(value, scale), scale)
    else:  # a bucket of subnormals whose estimate underflowed to 0: no bucket to read, only the range
        lo, hi = 0.0, sketch.max
    # one ulp of slack each side: the bounds are powers of b computed in floating point
    return Quantile(q, value, max(math.nextafter(lo, 0.0), sketch.min), min(math.nextafter(hi, math.inf), sketch.max))


def distribution(sketch: LogSketch, qs: Iterable[float] = QUANTILES) -> Distribution:
    return Distribution(
        count=sketch.count,
        mean=sketch.sum / sketch.count if sketch.count else math.nan,
        quantiles=tuple(quantile(sketch, q) for q in qs),
        relative_accuracy=sketch.relative_accuracy,
    )


# -- gathering ----------------------------------------------------------------------------------------------------


def _flag(value: AttrValue | None) -> bool | None:
    """A boolean attribute from OTLP (bool) or Prometheus ("true"/"false"); None when absent or unreadable."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _bucket_end(value: AttrValue | None) -> float | None:
    """``ml.prediction.time_bucket_end`` as seconds: an int (OTLP) or its text (Prometheus); None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    try:
        out = float(value)
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def _merge(into: dict, key, sketch: LogSketch) -> None:
    held = into.get(key)
    if held is None:
        into[key] = sketch.copy()
    else:
        held.merge(sketch)


@dataclass
class _Slot:
    """What one model gathered at one attribution time."""

    feedback: Counter = field(default_factory=Counter)  # tuple of FEEDBACK_KEYS values -> items
    by_arrival: float = 0.0  # feedback items without a time bucket
    confidence: dict[bool, LogSketch] = field(default_factory=dict)
    errors: dict[str, LogSketch] = field(default_factory=dict)  # metric -> merged sketch (abs, squared, delay)
    predictions: float = 0.0
    predicted: dict[str | None, LogSketch] = field(default_factory=dict)  # ml.prediction.confidence by label


class PerformanceData:
    """Gathers the feedback telemetry of every model per attribution time (an engine sink: ``metrics``, ``add``);
    ``performance`` then computes the figures of any window. ``match``: attribute -> value text every series
    must carry (e.g. ``{"ml.model.name": "fraud"}``)."""

    metrics = frozenset(FEEDBACK_SERIES | {conv.FEEDBACK_DELAY, conv.PREDICTIONS, conv.PREDICTION_CONFIDENCE_METRIC})

    def __init__(self, match: Mapping[str, str] | None = None) -> None:
        self.match = dict(match or {})
        self.slots: dict[ModelKey, dict[float, _Slot]] = {}
        self.unusable: Counter = Counter()  # (model, metric) -> points without a sketch where one is needed

    def add(self, delta: Delta) -> None:
        attrs = delta.attributes
        for key, want in self.match.items():
            if attribute_text(attrs.get(key)) != want:
                return
        model: ModelKey = tuple(attribute_text(attrs.get(k)) for k in MODEL_KEYS)  # type: ignore[assignment]
        at = delta.end_ns / 1e9
        bucket = _bucket_end(attrs.get(conv.PREDICTION_TIME_BUCKET_END)) if delta.metric in FEEDBACK_SERIES else None
        # the bucket's end, or the export when that came first (as engine.ledger.attributed_time)
        slot = self.slots.setdefault(model, {}).setdefault(at if bucket is None else min(bucket, at), _Slot())
        metric = delta.metric
        if metric == conv.PREDICTIONS:
            slot.predictions += delta.value
        elif metric == conv.FEEDBACK:
            slot.feedback[tuple(attrs.get(k) for k in FEEDBACK_KEYS)] += delta.value
            if bucket is None:
                slot.by_arrival += delta.value
        elif delta.sketch is None:
            self.unusable[(model, metric)] += 1
        elif metric == conv.PREDICTION_CONFIDENCE_METRIC:
            label = attrs.get(conv.PREDICTION_LABEL)
            _merge(slot.predicted, None if label is None else attribute_text(label), delta.sketch)
        elif metric == conv.FEEDBACK_CONFIDENCE:
            ok = _flag(attrs.get(conv.FEEDBACK_CORRECT))
            if ok is not None:
                _merge(slot.confidence, ok, delta.sketch)
        else:
            _merge(slot.errors, metric, delta.sketch)

    def models(self) -> list[ModelKey]:
        return sorted(self.slots)

    def span(self) -> tuple[float, float] | None:
        """Earliest and latest attribution time of anything gathered."""
        times = [t for per in self.slots.values() for t in per]
        return (min(times), max(times)) if times else None

    def performance(
        self,
        model: ModelKey,
        start: float,
        end: float,
        qs: Iterable[float] = QUANTILES,
        positive_label: str | None = None,
    ) -> Performance:
        """The figures of ``model`` over ``(start, end]`` (seconds; see the module docstring). ``positive_label``:
        the positive class for CBPE's binary figures (default: the one feedback's positive flags name)."""
        slots = [s for t, s in self.slots.get(model, {}).items() if start < t <= end]
        before = [s for t, s in self.slots.get(model, {}).items() if t <= start]
        feedback: Counter = Counter()
        confidence: dict[bool, LogSketch] = {}
        errors: dict[str, LogSketch] = {}
        predictions = by_arrival = 0.0
        for s in slots:
            feedback.update(s.feedback)
            predictions += s.predictions
            by_arrival += s.by_arrival
            for ok, sk in s.confidence.items():
                _merge(confidence, ok, sk)
            for metric, sk in s.errors.items():
                _merge(errors, metric, sk)
        unusable = {m: n for (k, m), n in self.unusable.items() if k == model}
        figures = _figures(
            model, start, end, feedback, confidence, errors, predictions, by_arrival, tuple(qs), unusable
        )
        estimated, why = _estimated(slots, before, figures, positive_label or _positive_of(feedback))
        if why:
            figures.missing["estimated"] = why
        return dataclasses.replace(figures, estimated=estimated)


def _positive_of(feedback: Counter) -> str | None:
    """The positive class the feedback's flags name: the predicted label of items flagged predicted-positive, when
    exactly one label is."""
    labels = set()
    for key in feedback:
        attrs = dict(zip(FEEDBACK_KEYS, key, strict=True))
        if _flag(attrs[conv.PREDICTION_POSITIVE]) is True and attrs[conv.PREDICTION_LABEL] is not None:
            labels.add(attribute_text(attrs[conv.PREDICTION_LABEL]))
    return labels.pop() if len(labels) == 1 else None


def _estimated(
    slots: list[_Slot], before: list[_Slot], figures: Performance, positive: str | None
) -> tuple[Estimated | None, str]:
    """CBPE of the window's predictions, calibrated with the feedback of earlier predictions; (None, why) when
    there is nothing to estimate."""
    predicted: dict[str | None, LogSketch] = {}
    for s in slots:
        for label, sk in s.predicted.items():
            _merge(predicted, label, sk)
    if not predicted:
        return None, "no ml.prediction.confidence of this model in the window"
    reference: dict[bool, LogSketch] = {}
    for s in before:
        for ok, sk in s.confidence.items():
            _merge(reference, ok, sk)
    correct, incorrect = reference.get(True), reference.get(False)
    judged_before = (correct.count if correct else 0) + (incorrect.count if incorrect else 0)
    every = LogSketch(next(iter(predicted.values())).scale)
    for sk in predicted.values():
        every.merge(sk)
    try:
        if judged_before:
            accuracy = cbpe.estimated_accuracy(every, correct, incorrect)
        else:
            accuracy = cbpe.estimated_accuracy(every)
    except ValueError as exc:  # no confidence in [0, 1]
        return None, str(exc)
    gap = None
    if figures.correct + figures.incorrect:
        gap = cbpe.accuracy_gap(accuracy, figures.correct, figures.correct + figures.incorrect)
    binary = None
    if positive is not None and positive in predicted and None not in predicted:
        negative = [sk for label, sk in predicted.items() if label != positive]
        merged = None
        for sk in negative:
            if merged is None:
                merged = LogSketch(sk.scale)
            merged.merge(sk)
        try:
            binary = cbpe.estimated_binary(predicted[positive], merged, correct, incorrect)
        except ValueError:
            binary = None
    return Estimated(accuracy, gap, binary, positive, judged_before), ""


def _figures(
    model: ModelKey,
    start: float,
    end: float,
    feedback: Counter,
    confidence: dict[bool, LogSketch],
    errors: dict[str, LogSketch],
    predictions: float,
    by_arrival: float,
    qs: tuple[float, ...],
    unusable: Mapping[str, int],
) -> Performance:
    missing: dict[str, str] = {}
    notes: list[str] = []
    judged = correct = incorrect = 0
    cells: Counter = Counter()
    predicted_only = 0
    for key, n in feedback.items():
        attrs = dict(zip(FEEDBACK_KEYS, key, strict=True))
        items = int(n)
        judged += items
        ok = _flag(attrs[conv.FEEDBACK_CORRECT])
        if ok is True:
            correct += items
        elif ok is False:
            incorrect += items
        predicted, truth = attrs[conv.PREDICTION_LABEL], attrs[conv.FEEDBACK_LABEL]
        if predicted is not None and truth is not None:
            cells[(attribute_text(truth), attribute_text(predicted))] += items
        elif predicted is not None:
            predicted_only += items
    no_feedback = "no feedback for predictions made in the window"

    accuracy = None
    if correct + incorrect:
        accuracy = correct / (correct + incorrect)
    else:
        missing["accuracy"] = no_feedback if not judged else "feedback carries no ml.feedback.correct (regression)"

    matrix = None
    if any(cells.values()):
        matrix = classification({k: v for k, v in cells.items() if v})
        if conv.OTHER_LABEL in matrix.labels:
            notes.append(
                f"labels beyond {conv.DEFAULT_MAX_CONFUSION_LABELS} per model are pooled as {conv.OTHER_LABEL}: its "
                "row, column and diagonal cell mix those classes"
            )
    elif not judged:
        missing["confusion"] = no_feedback
    elif correct + incorrect == 0:
        missing["confusion"] = "not a classifier (regression feedback)"
    elif predicted_only:
        missing["confusion"] = "feedback gave correct= rather than the true label=, so there is no true label"
    else:
        missing["confusion"] = "predicted labels are withheld (not exported by the model), so no confusion matrix"
    if matrix is not None and predicted_only:
        notes.append(f"{predicted_only} judged items have no true label (correct= feedback): not in the matrix")

    cal = None
    if confidence:
        try:
            cal = calibration_stats.calibration(confidence.get(True), confidence.get(False))
        except ValueError as exc:  # no confidence in [0, 1]
            missing["calibration"] = str(exc)
    else:
        missing["calibration"] = (
            no_feedback if not judged else "no ml.feedback.confidence (the predictions had no confidence)"
        )

    groups, ungrouped = fairness_stats.tally(
        ({k: v for k, v in zip(FEEDBACK_KEYS, key, strict=True) if v is not None}, n) for key, n in feedback.items()
    )
    fair = fairness_stats.fairness(groups, ungrouped=ungrouped) if groups else None
    if fair is None:
        missing["fairness"] = no_feedback if not judged else "feedback carries no ml.fairness.group (opt-in: group=)"

    regression = None
    abs_error, squared = errors.get(conv.FEEDBACK_ABS_ERROR), errors.get(conv.FEEDBACK_SQUARED_ERROR)
    if abs_error is not None and abs_error.count:
        mse = squared.sum / squared.count if squared is not None and squared.count else math.nan
        regression = Regression(
            count=abs_error.count,
            mae=abs_error.sum / abs_error.count,
            mse=mse,
            rmse=math.sqrt(mse) if mse >= 0 else math.nan,
            abs_error=distribution(abs_error, qs),
        )
        if squared is None or squared.count != abs_error.count:
            notes.append("ml.feedback.squared_error does not match ml.feedback.abs_error item for item: RMSE is off")
    else:
        missing["regression"] = no_feedback if not judged else "no ml.feedback.abs_error (not a regression model)"

    delay = errors.get(conv.FEEDBACK_DELAY)
    latency = distribution(delay, qs) if delay is not None and delay.count else None
    if latency is None:
        missing["latency"] = "no feedback arrived in the window (ml.feedback.delay counts at arrival)"

    coverage = None
    if predictions and judged:
        coverage = Coverage(judged, int(predictions), judged / predictions)
    elif not judged:
        missing["coverage"] = no_feedback
    else:
        missing["coverage"] = "no ml.predictions of this model in the window (the serving process's telemetry)"
    if by_arrival:
        notes.append(
            f"{int(by_arrival)} judged items carry no ml.prediction.time_bucket_end: counted when their feedback "
            "was exported, not when the prediction was made"
        )
    for metric, n in sorted(unusable.items()):
        notes.append(f"{n} points of {metric} (whole input) are not exponential histograms: left out")
    return Performance(
        model=model,
        start=start,
        end=end,
        judged=judged,
        correct=correct,
        incorrect=incorrect,
        accuracy=accuracy,
        classification=matrix,
        calibration=cal,
        fairness=fair,
        regression=regression,
        latency=latency,
        coverage=coverage,
        by_arrival=int(by_arrival),
        missing=missing,
        notes=tuple(notes),
    )
