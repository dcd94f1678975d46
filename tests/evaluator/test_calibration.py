"""Calibration from the two feedback-confidence sketches against exact numpy computations on the raw pairs.

Bounds (docs/quality.md): against the same snapped bins, counts and accuracies are exact and ECE/MCE are
within ``ece_bound``/``mce_bound``; against exact equal-width bins within ``ece_bound + binning_bound``; the
exact Brier score lies in ``[brier_low, brier_high]``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelotel.evaluator.quality.calibration import calibration
from modelotel.sketch import LogSketch, bucket_bounds, bucket_index, scale_base

fast = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOL = 1e-12


def pairs(seed: int, n: int, gamma: float, specials: bool, outside: bool) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct): P(correct | c) = c**gamma (gamma=1 is perfectly calibrated)."""
    rng = np.random.default_rng(seed)
    conf = rng.beta(rng.uniform(0.5, 8.0), rng.uniform(0.5, 3.0), n)
    if specials:  # exact zeros, ones and bin edges
        picks = rng.random(n) < 0.3
        conf[picks] = rng.choice(np.r_[0.0, 1.0, np.arange(1, 10) / 10], int(picks.sum()))
    correct = rng.random(n) < conf**gamma
    if outside:
        picks = rng.random(n) < 0.05
        conf[picks] = rng.choice([-0.5, 1.5, 3.0], int(picks.sum()))
    return conf, correct


def sketch_of(x: np.ndarray, scale: int) -> LogSketch:
    sk = LogSketch(scale)
    sk.add_many(x)
    return sk


def snapped_bin(c: float, scale: int, bins: int) -> tuple[int, float, float]:
    """Bin of c's bucket by its midpoint, and the bucket bounds (computed value by value)."""
    if c == 0.0:
        return 0, 0.0, 0.0
    lo, hi = bucket_bounds(bucket_index(c, scale), scale)
    return min(max(math.ceil((lo + hi) / 2 * bins) - 1, 0), bins - 1), lo, hi


def ece_mce(conf: np.ndarray, correct: np.ndarray, which: np.ndarray, bins: int) -> tuple[float, float, np.ndarray]:
    gaps = np.zeros(bins)
    counts = np.bincount(which, minlength=bins)
    for b in range(bins):
        sel = which == b
        gaps[b] = abs(np.sum(correct[sel]) - np.sum(conf[sel]))
    filled = counts > 0
    return gaps.sum() / len(conf), float((gaps[filled] / counts[filled]).max()), counts


@fast
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 2000),
    gamma=st.floats(0.3, 3.0),
    scales=st.tuples(st.integers(-3, 8), st.integers(-3, 8)),
    bins=st.sampled_from([10, 10, 15, 4]),
    specials=st.booleans(),
    outside=st.booleans(),
)
def test_calibration_matches_raw_pairs_within_bounds(seed, n, gamma, scales, bins, specials, outside):
    conf, correct = pairs(seed, n, gamma, specials, outside)
    good, bad = sketch_of(conf[correct], scales[0]), sketch_of(conf[~correct], scales[1])
    inside = (conf >= 0) & (conf <= 1)
    if not inside.any():
        with pytest.raises(ValueError, match="no judged prediction"):
            calibration(good, bad, bins=bins)
        return
    cal = calibration(good, bad, bins=bins)
    assert cal.out_of_range == int(np.count_nonzero(~inside))
    c, y = conf[inside], correct[inside].astype(np.float64)
    assert cal.count == len(c) and cal.correct == int(y.sum())

    # the same snapped bins on the raw values: counts and accuracies exact, confidences within the bounds
    snapped = [snapped_bin(float(v), cal.scale, bins) for v in c]
    which = np.array([s[0] for s in snapped])
    ece_snap, mce_snap, counts = ece_mce(c, y, which, bins)
    for b, row in enumerate(cal.bins):
        sel = which == b
        assert row.count == counts[b] and row.correct == int(y[sel].sum())
        if row.count:
            assert abs(row.mean_confidence - c[sel].mean()) <= row.confidence_bound + TOL
    assert abs(cal.ece - ece_snap) <= cal.ece_bound + TOL
    assert abs(cal.mce - mce_snap) <= cal.mce_bound + TOL
    # every half-width in (0, 1] is at most (1 - 1/b) / 2
    assert cal.ece_bound <= (1 - 1 / scale_base(cal.scale)) / 2 + TOL

    # exact equal-width bins [0, 1/M], (1/M, 2/M], ...
    equal = np.clip(np.ceil(c * bins).astype(int) - 1, 0, bins - 1)
    ece_eq, _, _ = ece_mce(c, y, equal, bins)
    assert abs(cal.ece - ece_eq) <= cal.ece_bound + cal.binning_bound + TOL

    brier = float(np.mean((c - y) ** 2))
    assert cal.brier_low - TOL <= brier <= cal.brier_high + TOL
    assert abs(cal.brier - brier) <= cal.brier_bound + TOL


def test_overconfident_model_has_a_large_ece_and_a_calibrated_one_a_small_one():
    rng = np.random.default_rng(5)
    conf = rng.beta(5, 1.5, 50_000)
    calibrated = rng.random(conf.size) < conf
    overconfident = rng.random(conf.size) < conf**3
    good = calibration(sketch_of(conf[calibrated], 5), sketch_of(conf[~calibrated], 5))
    bad = calibration(sketch_of(conf[overconfident], 5), sketch_of(conf[~overconfident], 5))
    assert good.ece < 0.01 + good.ece_bound
    assert bad.ece > 0.15
    assert bad.brier > good.brier
    # reliability diagram: the overconfident model's accuracy is below its confidence in every busy bin
    assert all(b.accuracy < b.mean_confidence for b in bad.bins if b.count > 1000)


def test_single_confidence_value_gives_the_gap_exactly_within_one_bucket():
    # 1000 predictions at confidence 0.95, 800 of them correct: ECE = |0.8 - 0.95| = 0.15
    conf = np.full(1000, 0.95)
    cal = calibration(sketch_of(conf[:800], 5), sketch_of(conf[800:], 5))
    assert abs(cal.ece - 0.15) <= cal.ece_bound and cal.ece_bound < 0.011
    assert cal.bins[9].count == 1000 and cal.bins[9].accuracy == 0.8
    brier = 0.8 * 0.05**2 + 0.2 * 0.95**2
    assert cal.brier_low <= brier <= cal.brier_high


def test_missing_sides_and_bad_input():
    only_correct = calibration(sketch_of(np.array([0.9, 0.8]), 5), None)
    assert only_correct.correct == only_correct.count == 2
    with pytest.raises(ValueError, match="needs the confidence sketch"):
        calibration(None, None)
    with pytest.raises(ValueError, match=r"2 outside it"):
        calibration(sketch_of(np.array([1.5, -1.0]), 5), None)
