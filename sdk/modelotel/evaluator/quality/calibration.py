"""Calibration from feedback: ECE, MCE, Brier score and the reliability diagram, from two sketches alone.

Input
    ``ml.feedback.confidence`` split by ``ml.feedback.correct``: one merged sketch of the top-label confidence
    of predictions judged correct, one of those judged incorrect. Both are brought to their smaller scale
    (exact re-bucketing). A confidence is expected in ``[0, 1]``; bucket ``(b**i, b**(i+1)]`` lies inside
    ``(0, 1]`` exactly when ``i < 0`` (1 is a bucket boundary at every scale), exact zeros are their own
    cell, and values above 1 or below 0 are left out and counted in ``out_of_range``.

Bins
    ``M = 10`` equal-width bins ``[0, 1/M], (1/M, 2/M], ..., ((M-1)/M, 1]``. A bin edge ``k/M`` usually falls
    inside a bucket, whose values cannot be split, so each bucket goes wholly to the bin holding its midpoint
    ``mid = (lo + hi) / 2``: the bins are the equal-width bins with each edge moved to a bucket boundary less
    than half a bucket away ("snapped bins"). Per bin ``b``: ``n_b`` judged predictions, ``acc_b`` the
    fraction correct (both exact for the snapped bins), ``conf_b = sum n_j mid_j / n_b`` over its buckets.

ECE ``= sum_b n_b / N * |acc_b - conf_b|``, MCE ``= max_b |acc_b - conf_b|`` (non-empty bins).
    Every value of bucket ``j`` is within ``hw_j = (hi - lo) / 2`` of ``mid_j``, so ``conf_b`` is within
    ``e_b = sum n_j hw_j / n_b`` of the exact mean confidence of the bin; hence against the exact ECE of the
    snapped bins ``|ECE - ECE_exact| <= ece_bound = sum_j n_j hw_j / N`` and ``|MCE - MCE_exact| <=
    mce_bound = max_b e_b``. ``hw_j <= (1 - 1/b) / 2`` for buckets in ``(0, 1]``: 1.08% at scale 5.
    Against exact equal-width bins on the raw data, moving the part of a straddling bucket ``j`` that lies on
    the other side of an edge changes ``ECE * N`` by at most ``2 * sum_{i in j} |correct_i - conf_i| <=
    2 * (c_j * (1 - lo_j) + w_j * hi_j)`` (``c_j``/``w_j`` correct/incorrect counts), so
    ``|ECE - ECE_equal_width| <= ece_bound + binning_bound`` with ``binning_bound`` that sum over straddling
    buckets, divided by ``N``.

Brier score of the top label ``= mean (conf - correct)**2``.
    On a bucket ``(lo, hi]`` inside ``[0, 1]`` the term is monotone: ``(1 - conf)**2`` for correct
    predictions lies in ``[(1 - hi)**2, (1 - lo)**2]``, ``conf**2`` for incorrect ones in ``[lo**2, hi**2]``.
    Summing gives exact bounds ``[brier_low, brier_high]``; ``brier`` is their midpoint and ``brier_bound``
    half their width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...sketch import LogSketch

__all__ = [
    "DEFAULT_BINS",
    "Calibration",
    "CalibrationBin",
    "UnitBuckets",
    "calibration",
    "reliability_bin",
    "unit_buckets",
]

DEFAULT_BINS = 10


@dataclass(frozen=True)
class CalibrationBin:
    """One bar of the reliability diagram: nominal range ``(lower, upper]`` (the first includes 0)."""

    lower: float
    upper: float
    count: int
    correct: int
    mean_confidence: float  # nan when empty
    confidence_bound: float  # |mean_confidence - exact mean confidence of the snapped bin| <= this

    @property
    def accuracy(self) -> float:
        return self.correct / self.count if self.count else math.nan

    @property
    def gap(self) -> float:
        """``|accuracy - mean_confidence|`` (nan when empty)."""
        return abs(self.accuracy - self.mean_confidence) if self.count else math.nan


@dataclass(frozen=True)
class Calibration:
    """ECE, MCE and Brier score with their bounds, and the reliability diagram (see the module docstring)."""

    bins: tuple[CalibrationBin, ...]
    count: int  # judged predictions with a confidence in [0, 1]
    correct: int
    ece: float
    ece_bound: float  # vs the exact ECE of the same (snapped) bins
    binning_bound: float  # added vs exact equal-width bins
    mce: float
    mce_bound: float
    brier: float
    brier_bound: float
    brier_low: float
    brier_high: float
    out_of_range: int  # confidences < 0 or > 1, left out of everything above
    scale: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.count if self.count else math.nan


@dataclass
class UnitBuckets:
    """Buckets of one sketch inside [0, 1]: bounds and counts (the zero cell is ``lo == hi == 0``), and how many
    values fell outside [0, 1]."""

    lo: np.ndarray
    hi: np.ndarray
    n: np.ndarray
    out_of_range: int

    @property
    def mid(self) -> np.ndarray:
        return (self.lo + self.hi) / 2.0

    @property
    def half_width(self) -> np.ndarray:
        return (self.hi - self.lo) / 2.0


def unit_buckets(sketch: LogSketch | None, scale: int | None = None) -> UnitBuckets:
    """The buckets of ``sketch`` inside [0, 1] at ``scale`` (default: its own; a lower scale re-buckets exactly,
    a higher one is refused). None reads as an empty sketch."""
    if sketch is None:
        empty = np.zeros(0)
        return UnitBuckets(empty, empty, np.zeros(0, dtype=np.int64), 0)
    if scale is not None and scale != sketch.scale:
        if scale > sketch.scale:
            raise ValueError(f"cannot bring a sketch at scale {sketch.scale} up to scale {scale}")
        sketch = sketch.copy()
        sketch.downscale(sketch.scale - scale)
    width = math.ldexp(1.0, -sketch.scale)
    pos = sketch.positive
    idx = pos.offset + np.arange(len(pos), dtype=np.int64)
    keep = (idx < 0) & (pos.counts > 0)
    idx, n = idx[keep], pos.counts[keep]
    lo, hi = np.exp2(idx * width), np.exp2((idx + 1) * width)
    if sketch.zero_count:
        lo, hi = np.append(lo, 0.0), np.append(hi, 0.0)
        n = np.append(n, sketch.zero_count)
    out = sketch.negative.total() + int(pos.counts[(pos.offset + np.arange(len(pos))) >= 0].sum())
    return UnitBuckets(lo, hi, n.astype(np.int64), out)


def reliability_bin(buckets: UnitBuckets, bins: int) -> np.ndarray:
    """Index of the snapped bin (module docstring) each bucket goes to: the equal-width bin holding its midpoint."""
    return np.clip(np.ceil(buckets.mid * bins).astype(np.int64) - 1, 0, bins - 1)


def calibration(correct: LogSketch | None, incorrect: LogSketch | None, *, bins: int = DEFAULT_BINS) -> Calibration:
    """Calibration of the top-label confidence from the confidence sketches of correct and incorrect
    predictions (either may be None when there were none)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    given = [s for s in (correct, incorrect) if s is not None]
    if not given:
        raise ValueError("calibration needs the confidence sketch of correct or incorrect predictions")
    scale = min(s.scale for s in given)

    good, bad = unit_buckets(correct, scale), unit_buckets(incorrect, scale)
    lo = np.concatenate([good.lo, bad.lo])
    hi = np.concatenate([good.hi, bad.hi])
    n = np.concatenate([good.n, bad.n]).astype(np.float64)
    is_correct = np.concatenate([np.ones(len(good.n), dtype=bool), np.zeros(len(bad.n), dtype=bool)])
    out_of_range = good.out_of_range + bad.out_of_range
    total = int(n.sum())
    if not total:
        raise ValueError(f"no judged prediction has a confidence in [0, 1] ({out_of_range} outside it)")

    both = UnitBuckets(lo, hi, n, out_of_range)
    mid, hw = both.mid, both.half_width
    which = reliability_bin(both, bins)
    count_b = np.bincount(which, weights=n, minlength=bins)
    correct_b = np.bincount(which, weights=n * is_correct, minlength=bins)
    conf_sum_b = np.bincount(which, weights=n * mid, minlength=bins)
    slack_b = np.bincount(which, weights=n * hw, minlength=bins)
    filled = count_b > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf_b = np.where(filled, conf_sum_b / count_b, math.nan)
        bound_b = np.where(filled, slack_b / count_b, math.nan)
    gaps = np.abs(correct_b - conf_sum_b)  # n_b * |acc_b - conf_b|

    # buckets that straddle an equal-width edge: lo < k/M < hi for an integer k, i.e. the smallest integer
    # above lo*M, floor(lo*M) + 1, is below hi*M: ceil(hi*M) - 1 >= floor(lo*M) + 1
    straddles = np.ceil(hi * bins) - np.floor(lo * bins) >= 2
    worst = np.where(is_correct, n * (1.0 - lo), n * hi)  # >= sum over the bucket of |correct - conf|

    brier_low_terms = np.where(is_correct, (1.0 - hi) ** 2, lo**2) * n
    brier_high_terms = np.where(is_correct, (1.0 - lo) ** 2, hi**2) * n
    brier_low = float(brier_low_terms.sum()) / total
    brier_high = float(brier_high_terms.sum()) / total

    table = tuple(
        CalibrationBin(
            lower=b / bins,
            upper=(b + 1) / bins,
            count=int(count_b[b]),
            correct=int(correct_b[b]),
            mean_confidence=float(mean_conf_b[b]),
            confidence_bound=float(bound_b[b]),
        )
        for b in range(bins)
    )
    return Calibration(
        bins=table,
        count=total,
        correct=int(correct_b.sum()),
        ece=float(gaps.sum()) / total,
        ece_bound=float((n * hw).sum()) / total,
        binning_bound=2.0 * float(worst[straddles].sum()) / total,
        mce=float((gaps[filled] / count_b[filled]).max()),
        mce_bound=float(bound_b[filled].max()),
        brier=(brier_low + brier_high) / 2.0,
        brier_bound=(brier_high - brier_low) / 2.0,
        brier_low=brier_low,
        brier_high=brier_high,
        out_of_range=out_of_range,
        scale=scale,
    )
