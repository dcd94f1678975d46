"""Performance before the labels arrive: confidence-based performance estimation (CBPE), from sketches alone.

CBPE (as NannyML defines it) reads a model's confidence as the probability that its prediction is right. When
that holds (the model is *calibrated*) and the relation between inputs and labels has not changed (*no concept
drift*; covariate shift is fine), the expected accuracy of a window of predictions is the mean of their
top-label confidences, and the expected confusion matrix of a binary model is a sum of probabilities. CBPE
cannot see concept drift: the confidences do not move when the labels do. A realized accuracy from feedback
that parts from the estimate is the sign of it.

Input
    The merged ``ml.prediction.confidence`` sketch of a window (top-label confidence of every predicted item,
    in ``[0, 1]``; values outside are left out and counted in ``out_of_range``). Optionally a calibration map
    learned from feedback: the ``ml.feedback.confidence`` sketches of predictions judged correct and incorrect
    (``quality.calibration``).

Uncalibrated accuracy ``A = (1/N) sum_i c_i``.
    The sketch's ``sum`` is exact (OTel keeps it beside the buckets), so ``A = sum / count`` up to float
    rounding, when every value lies in ``[0, 1]`` and the sum agrees with the buckets (a point without its
    optional ``sum`` reads 0: it lies outside ``[sum_j n_j lo_j, sum_j n_j hi_j]`` unless every value is 0).
    Otherwise each bucket ``(lo_j, hi_j]`` counts at its midpoint: ``|A - A_exact| <= sum_j n_j hw_j / N``
    with ``hw_j = (hi_j - lo_j) / 2 <= (1 - 2**(-2**-scale)) / 2`` (1.08% at scale 5). ``low``/``high`` are
    the exact bounds ``sum_j n_j lo_j / N`` and ``sum_j n_j hi_j / N``.

Calibrated accuracy (histogram binning).
    NannyML fits isotonic regression of the reference labels on the reference probabilities, per prediction.
    Telemetry keeps no per-prediction pairs, only the two feedback sketches, and their buckets are the finest
    unit that can be split: so the map is the reliability diagram of ``quality.calibration`` (``M`` snapped
    equal-width bins, each a union of whole buckets at the common scale of the three sketches). A prediction
    whose bucket falls in bin ``b`` counts as correct with probability ``acc_b``, the fraction of the ``m_b``
    judged predictions of bin ``b`` that were correct, when ``m_b >= min_feedback``; in a bin with less
    feedback its own confidence counts (as uncalibrated; ``fallback_bins``/``fallback_count`` say how many).
    ``A_cal = (1/N) (sum_{b calibrated} n_b acc_b + sum_{j in fallback bins} n_j c_j)``. Counts are exact, so
    only the fallback cells add ``sum n_j hw_j / N`` to the bound. Histogram binning is monotone only up to
    the noise of ``acc_b``, where isotonic regression is monotone by construction; with ``min_feedback`` judged
    predictions per bin both give the same map up to that noise. Binning cannot see a shift *within* a bin (the
    bin's accuracy is a constant): more bins resolve it, at the cost of more feedback per bin. ``BINS = 20``
    (bins 0.05 wide, two or three scale-5 buckets each near 1). Below the bucket no map can resolve anything:
    at scale 5 every confidence in ``(2**(-1/32), 1] = (0.9786, 1]`` is one cell, so a model that squeezes
    many different true accuracies into that cell (strongly overconfident) cannot be recalibrated from
    sketches of its top-label confidence.

Sampling spread.
    ``bound``/``low``/``high`` bound the computation against the same computation on the raw confidences. The
    realized accuracy of a calibrated window is a sum of independent Bernoulli(``p_i``) over its ``N``
    predictions: its standard deviation around ``A`` is ``sqrt(sum_i p_i (1 - p_i)) / N``; ``p (1 - p)`` on a
    bucket is bounded by its maximum over the bucket, so ``sampling_sd`` is an upper bound. A calibrated
    estimate adds the noise of the map, ``sum_b n_b**2 acc_b (1 - acc_b) / m_b`` to the variance's numerator.
    ``interval(z)`` is ``[low - z sd, high + z sd]``.

Binary models (the series carry ``ml.prediction.label``): one sketch for the predictions of the positive label,
one for the others. With ``P_i = P(y_i = pos)``: ``c_i`` when the positive label was predicted, else
``1 - c_i``. ``E[TP] = sum_{pred pos} P_i = S+``, ``E[FP] = sum_{pred pos} (1 - P_i) = n+ - S+``,
``E[FN] = sum_{pred neg} P_i = n- - S-``, ``E[TN] = S-`` with ``S+``/``S-`` the (calibrated) expected correct
counts of each sketch, as above. precision ``= S+ / n+``, recall ``= S+ / (S+ + n- - S-)``,
F1 ``= 2 E[TP] / (2 E[TP] + E[FP] + E[FN]) = 2 S+ / (S+ + n+ + n- - S-)``. Each is increasing in ``S+`` and
non-decreasing in ``S-``, so evaluating them at the bounds of ``S+``, ``S-`` gives their exact bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...sketch import LogSketch
from .calibration import calibration, reliability_bin, unit_buckets

__all__ = [
    "BINS",
    "GAP_THRESHOLD",
    "AccuracyGap",
    "MIN_FEEDBACK",
    "AccuracyEstimate",
    "BinaryEstimate",
    "Estimate",
    "accuracy_gap",
    "estimated_accuracy",
    "estimated_binary",
]

BINS = 20  # reliability bins of the map: twice calibration's 10, measured to halve the within-bin bias (docs)
MIN_FEEDBACK = 50  # judged predictions a reliability bin needs before its accuracy replaces the confidence
SUM_TOLERANCE = 1e-9  # relative: float rounding allowed when the sketch's sum is checked against its buckets


@dataclass(frozen=True)
class Estimate:
    """One estimated figure: ``value`` and the exact bounds ``[low, high]`` of the same computation on the raw
    confidences (nan when undefined, e.g. precision without predicted positives)."""

    value: float
    low: float
    high: float

    @property
    def bound(self) -> float:
        """``|value - exact| <= bound``."""
        return max(self.value - self.low, self.high - self.value) if math.isfinite(self.value) else math.nan


@dataclass(frozen=True)
class AccuracyEstimate:
    """Expected accuracy of a window (module docstring), with its computation bound and sampling spread."""

    accuracy: Estimate
    count: int  # predictions with a confidence in [0, 1]
    out_of_range: int  # confidences < 0 or > 1, left out
    sampling_sd: float  # upper bound on the sd of the realized accuracy around the estimate (calibrated model)
    exact_sum: bool  # the sketch's sum was used (uncalibrated only)
    calibrated_bins: int  # reliability bins whose feedback accuracy was used (0 without a calibration map)
    fallback_bins: int  # bins with predictions but fewer than min_feedback judged ones: raw confidence used
    fallback_count: int  # predictions in those bins
    feedback: int  # judged predictions in the calibration map
    scale: int

    @property
    def calibrated(self) -> bool:
        return self.feedback > 0

    def interval(self, z: float = 3.0) -> tuple[float, float]:
        """``[low - z sd, high + z sd]``, clipped to [0, 1]: where the realized accuracy should fall."""
        spread = z * self.sampling_sd
        return max(0.0, self.accuracy.low - spread), min(1.0, self.accuracy.high + spread)


@dataclass(frozen=True)
class BinaryEstimate:
    """Expected precision, recall and F1 of the positive class, and accuracy, of a binary model's window."""

    precision: Estimate
    recall: Estimate
    f1: Estimate
    accuracy: Estimate
    predicted_positive: int
    predicted_negative: int
    out_of_range: int


@dataclass(frozen=True)
class _Expected:
    """Bounds on the expected number of correct predictions of one sketch, and the variance numerator."""

    low: float
    value: float
    high: float
    count: int
    variance: float
    out_of_range: int
    exact_sum: bool
    calibrated_bins: int
    fallback_bins: int
    fallback_count: int
    feedback: int
    scale: int


def _max_pq(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Maximum of ``p (1 - p)`` over ``[lo, hi]`` (the parabola peaks at 1/2)."""
    p = np.clip(0.5, lo, hi)
    return p * (1.0 - p)


def _expected_correct(
    confidence: LogSketch | None,
    correct: LogSketch | None,
    incorrect: LogSketch | None,
    bins: int,
    min_feedback: int,
) -> _Expected:
    feedback = [s for s in (correct, incorrect) if s is not None]
    scales = [s.scale for s in (confidence, *feedback) if s is not None]
    scale = min(scales) if scales else 0
    cells = unit_buckets(confidence, scale if scales else None)
    n = cells.n.astype(np.float64)
    count = int(n.sum())
    low, high = float((n * cells.lo).sum()), float((n * cells.hi).sum())
    pq = _max_pq(cells.lo, cells.hi)
    if not feedback:
        value = float((n * cells.mid).sum())
        exact_sum = False
        if confidence is not None and count and not cells.out_of_range:
            slack = SUM_TOLERANCE * max(1.0, high)
            exact_sum = low - slack <= confidence.sum <= high + slack
            if exact_sum:
                value = low = high = min(max(confidence.sum, 0.0), float(count))
        return _Expected(
            low, value, high, count, float((n * pq).sum()), cells.out_of_range, exact_sum, 0, 0, 0, 0, scale
        )

    table = calibration(
        *(None if s is None else _at(s, scale) for s in (correct, incorrect)), bins=bins
    ).bins  # every sketch at the common scale: predictions and feedback snap to the same bins
    judged = np.array([b.count for b in table], dtype=np.float64)
    right = np.array([b.correct for b in table], dtype=np.float64)
    which = reliability_bin(cells, bins)
    usable = judged >= max(1, min_feedback)
    acc = np.divide(right, judged, out=np.zeros(bins), where=judged > 0)
    n_b = np.bincount(which, weights=n, minlength=bins)
    fallback = ~usable[which]  # cells counted at their own confidence
    value = float((n_b * acc)[usable].sum() + (n * cells.mid)[fallback].sum())
    low = float((n_b * acc)[usable].sum() + (n * cells.lo)[fallback].sum())
    high = float((n_b * acc)[usable].sum() + (n * cells.hi)[fallback].sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        map_var = np.where(usable, n_b**2 * acc * (1.0 - acc) / np.maximum(judged, 1.0), 0.0)
    variance = float((n_b * acc * (1.0 - acc))[usable].sum() + (n * pq)[fallback].sum() + map_var.sum())
    filled = n_b > 0
    return _Expected(
        low,
        value,
        high,
        count,
        variance,
        cells.out_of_range,
        False,
        int((filled & usable).sum()),
        int((filled & ~usable).sum()),
        int(n[fallback].sum()),
        int(judged.sum()),
        scale,
    )


def _at(sketch: LogSketch, scale: int) -> LogSketch:
    if sketch.scale == scale:
        return sketch
    out = sketch.copy()
    out.downscale(sketch.scale - scale)
    return out


def estimated_accuracy(
    confidence: LogSketch,
    correct: LogSketch | None = None,
    incorrect: LogSketch | None = None,
    *,
    bins: int = BINS,
    min_feedback: int = MIN_FEEDBACK,
) -> AccuracyEstimate:
    """Expected accuracy of the predictions in ``confidence`` (their top-label confidences); calibrated by the
    feedback sketches ``correct``/``incorrect`` when either is given (module docstring)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    e = _expected_correct(confidence, correct, incorrect, bins, min_feedback)
    if not e.count:
        raise ValueError(f"no prediction has a confidence in [0, 1] ({e.out_of_range} outside it)")
    return AccuracyEstimate(
        accuracy=Estimate(e.value / e.count, e.low / e.count, e.high / e.count),
        count=e.count,
        out_of_range=e.out_of_range,
        sampling_sd=math.sqrt(max(e.variance, 0.0)) / e.count,
        exact_sum=e.exact_sum,
        calibrated_bins=e.calibrated_bins,
        fallback_bins=e.fallback_bins,
        fallback_count=e.fallback_count,
        feedback=e.feedback,
        scale=e.scale,
    )


def estimated_binary(
    positive: LogSketch | None,
    negative: LogSketch | None,
    correct: LogSketch | None = None,
    incorrect: LogSketch | None = None,
    *,
    bins: int = BINS,
    min_feedback: int = MIN_FEEDBACK,
) -> BinaryEstimate:
    """Expected precision, recall, F1 (of the positive class) and accuracy of a binary model from the confidence
    sketches of the predictions of the positive label and of the other one (module docstring)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    pos = _expected_correct(positive, correct, incorrect, bins, min_feedback)
    neg = _expected_correct(negative, correct, incorrect, bins, min_feedback)
    n_pos, n_neg = float(pos.count), float(neg.count)
    if not n_pos + n_neg:
        raise ValueError(f"no prediction has a confidence in [0, 1] ({pos.out_of_range + neg.out_of_range} outside)")

    def ratio(num: float, den: float) -> float:
        return num / den if den > 0 else math.nan

    def figure(f) -> Estimate:  # f increasing in S+ and non-decreasing in S-: bounds at the bounds
        value, low, high = f(pos.value, neg.value), f(pos.low, neg.low), f(pos.high, neg.high)
        # a bound where the figure is undefined (0/0: no expected positive at that end): every figure is in [0, 1]
        return Estimate(value, 0.0 if math.isnan(low) else low, 1.0 if math.isnan(high) else high)

    return BinaryEstimate(
        precision=figure(lambda sp, sn: ratio(sp, n_pos)),
        recall=figure(lambda sp, sn: ratio(sp, sp + n_neg - sn)),
        f1=figure(lambda sp, sn: ratio(2.0 * sp, sp + n_pos + n_neg - sn)),
        accuracy=figure(lambda sp, sn: (sp + sn) / (n_pos + n_neg)),
        predicted_positive=pos.count,
        predicted_negative=neg.count,
        out_of_range=pos.out_of_range + neg.out_of_range,
    )


GAP_THRESHOLD = 0.05  # |estimated - realized| accuracy beyond this (and beyond the noise) is flagged
GAP_Z = 3.0  # standard deviations of noise allowed on top of GAP_THRESHOLD


@dataclass(frozen=True)
class AccuracyGap:
    """The CBPE estimate beside the realized accuracy of the judged predictions of the same model and window.

    ``flagged`` when ``|gap| > GAP_THRESHOLD + bound + GAP_Z * noise``, ``noise`` the standard deviation of the
    difference of two independent estimates: ``sqrt(sampling_sd**2 + r (1 - r) / judged)`` (``r`` realized). A
    gap beyond noise means the confidences no longer say how often the model is right: miscalibration, or
    concept drift (the labels moved and the confidences did not), which CBPE cannot see; a gap that widens
    over time points at the latter.
    """

    estimated: float
    realized: float
    judged: int
    gap: float  # estimated - realized
    noise: float
    allowed: float  # |gap| above this is flagged
    flagged: bool


def accuracy_gap(estimate: AccuracyEstimate, correct: float, judged: float) -> AccuracyGap | None:
    """Compare ``estimate`` with ``correct`` of ``judged`` predictions (None without judged predictions)."""
    if judged <= 0:
        return None
    realized = correct / judged
    noise = math.sqrt(estimate.sampling_sd**2 + realized * (1.0 - realized) / judged)
    allowed = GAP_THRESHOLD + estimate.accuracy.bound + GAP_Z * noise
    gap = estimate.accuracy.value - realized
    return AccuracyGap(estimate.accuracy.value, realized, int(judged), gap, noise, allowed, abs(gap) > allowed)
