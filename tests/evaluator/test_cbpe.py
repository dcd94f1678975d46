"""CBPE from sketches against exact numpy computations on the raw confidences, and against realized accuracy.

Bounds (docs/quality.md, "Performance before labels (CBPE)"): the exact figure of the same computation on the
raw confidences lies in ``[low, high]`` of each estimate (``bound`` from it); with the sketch's sum known the
uncalibrated accuracy is exact up to float rounding. The realized accuracy of a calibrated model's chunk lies in
``interval(z=4)`` (4 standard deviations of a sum of Bernoulli draws, plus the computation bound).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from modelotel.evaluator.quality.cbpe import MIN_FEEDBACK, estimated_accuracy, estimated_binary
from modelotel.sketch import LogSketch, bucket_bounds, bucket_index

fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOL = 1e-9
SDK_SCALE = 5  # the SDK's default scale for ml.prediction.confidence


def sketch_of(x: np.ndarray, scale: int) -> LogSketch:
    sk = LogSketch(scale)
    sk.add_many(x)
    return sk


def confidences(seed: int, n: int, specials: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    conf = rng.beta(rng.uniform(0.5, 8.0), rng.uniform(0.5, 3.0), n)
    if specials:  # exact zeros, ones and bin edges
        picks = rng.random(n) < 0.3
        conf[picks] = rng.choice(np.r_[0.0, 1.0, np.arange(1, 10) / 10], int(picks.sum()))
    return conf


def snapped_bin(c: float, scale: int, bins: int) -> int:
    """Bin of c's bucket by its midpoint (value by value, as calibration's snapped bins)."""
    if c == 0.0:
        return 0
    lo, hi = bucket_bounds(bucket_index(c, scale), scale)
    return min(max(math.ceil((lo + hi) / 2 * bins) - 1, 0), bins - 1)


def exact_calibrated_correct(
    conf: np.ndarray, fb_conf: np.ndarray, fb_correct: np.ndarray, scale: int, bins: int, min_feedback: int
) -> float:
    """Expected correct predictions: the feedback accuracy of the prediction's bin, or its own confidence."""
    fb_bin = np.array([snapped_bin(c, scale, bins) for c in fb_conf], dtype=np.int64)
    judged = np.bincount(fb_bin, minlength=bins)
    right = np.bincount(fb_bin, weights=fb_correct.astype(float), minlength=bins)
    total = 0.0
    for c in conf:
        b = snapped_bin(c, scale, bins)
        total += right[b] / judged[b] if judged[b] >= min_feedback else c
    return total


@fast
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 400),
    scale=st.integers(0, 6),
    specials=st.booleans(),
    drop_sum=st.booleans(),
)
def test_uncalibrated_accuracy_is_the_mean_confidence(seed, n, scale, specials, drop_sum):
    conf = confidences(seed, n, specials)
    sk = sketch_of(conf, scale)
    if drop_sum:  # an OTLP point without its optional sum reads 0: the buckets must carry the estimate
        sk.sum = 0.0
    est = estimated_accuracy(sk)
    exact = float(conf.mean())
    assert est.count == n and est.out_of_range == 0 and not est.calibrated
    assert est.accuracy.low - TOL <= exact <= est.accuracy.high + TOL
    assert abs(est.accuracy.value - exact) <= est.accuracy.bound + TOL
    if est.exact_sum:
        assert abs(est.accuracy.value - exact) <= TOL
    else:  # only a sum that disagrees with the buckets is refused: here, only a dropped one
        assert drop_sum and conf.sum() > 0
        width = 2 ** (2.0**-scale)
        assert est.accuracy.bound <= (1 - 1 / width) / 2 + TOL  # hw of the widest bucket in (0, 1]
    # sampling sd: an upper bound of the exact sqrt(sum c(1-c)) / n
    assert est.sampling_sd + TOL >= math.sqrt(float((conf * (1 - conf)).sum())) / n


def test_out_of_range_confidences_are_left_out_and_counted():
    conf = np.array([0.2, 0.9, 0.95, 1.0, 0.0])
    sk = sketch_of(np.r_[conf, [-0.5, 1.5, 3.0]], SDK_SCALE)
    est = estimated_accuracy(sk)
    assert est.out_of_range == 3 and est.count == 5 and not est.exact_sum  # the sum includes them: unusable
    assert est.accuracy.low - TOL <= conf.mean() <= est.accuracy.high + TOL
    with pytest.raises(ValueError, match="no prediction has a confidence"):
        estimated_accuracy(sketch_of(np.array([2.0, -1.0]), SDK_SCALE))


@fast
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    n_feedback=st.integers(1, 1500),
    scales=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
    bins=st.sampled_from([5, 10, 20]),
    min_feedback=st.sampled_from([1, 20, MIN_FEEDBACK]),
    gamma=st.floats(0.3, 3.0),
)
def test_calibrated_accuracy_matches_exact_binning(seed, n, n_feedback, scales, bins, min_feedback, gamma):
    rng = np.random.default_rng(seed)
    conf = confidences(seed, n, specials=True)
    fb_conf = confidences(seed + 1, n_feedback, specials=True)
    fb_correct = rng.random(n_feedback) < fb_conf**gamma  # miscalibrated unless gamma == 1
    pred_scale, good_scale, bad_scale = scales
    made = (
        sketch_of(conf, pred_scale),
        sketch_of(fb_conf[fb_correct], good_scale) if fb_correct.any() else None,
        sketch_of(fb_conf[~fb_correct], bad_scale) if (~fb_correct).any() else None,
    )
    est = estimated_accuracy(*made, bins=bins, min_feedback=min_feedback)
    # the scale each sketch holds: a sketch over a wide range downscales itself below the one it was made at
    scale = min(s.scale for s in made if s is not None)
    assert est.scale == scale and est.feedback == n_feedback and est.calibrated
    exact = exact_calibrated_correct(conf, fb_conf, fb_correct, scale, bins, min_feedback) / n
    assert est.accuracy.low - TOL <= exact <= est.accuracy.high + TOL
    assert abs(est.accuracy.value - exact) <= est.accuracy.bound + TOL
    # the bound comes only from predictions counted at their own confidence
    pred_bins = np.array([snapped_bin(c, scale, bins) for c in conf])
    fb_bins = np.bincount([snapped_bin(c, scale, bins) for c in fb_conf], minlength=bins)
    fallback = fb_bins[pred_bins] < min_feedback
    assert est.fallback_count == int(fallback.sum())
    assert est.fallback_bins == len(set(pred_bins[fallback].tolist()))
    if not fallback.any():
        assert est.accuracy.bound <= TOL
    # sampling sd: an upper bound of the exact one (Bernoulli of each prediction's probability, plus the map's noise)
    p = np.array(
        [exact_calibrated_correct(np.array([c]), fb_conf, fb_correct, scale, bins, min_feedback) for c in conf]
    )
    judged = fb_bins
    n_b = np.bincount(pred_bins, minlength=bins)
    acc = np.divide(
        np.bincount([snapped_bin(c, scale, bins) for c in fb_conf], weights=fb_correct.astype(float), minlength=bins),
        judged,
        out=np.zeros(bins),
        where=judged > 0,
    )
    usable = judged >= min_feedback
    variance = float((p * (1 - p)).sum()) + float((n_b**2 * acc * (1 - acc) / np.maximum(judged, 1))[usable].sum())
    assert est.sampling_sd + TOL >= math.sqrt(variance) / n


@fast
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 400),
    share=st.floats(0.0, 1.0),
    scale=st.integers(0, 6),
    drop_sum=st.booleans(),
    calibrate=st.booleans(),
)
@example(seed=686226, n=1, share=0.0, scale=6, drop_sum=False, calibrate=True)  # feedback downscaled to 5 (CI)
def test_binary_figures_match_the_expected_confusion_matrix(seed, n, share, scale, drop_sum, calibrate):
    rng = np.random.default_rng(seed)
    conf = confidences(seed, n, specials=True)
    positive = rng.random(n) < share  # the predicted label is the positive one
    feedback: tuple[LogSketch | None, LogSketch | None] = (None, None)
    sketches = []
    for part in (conf[positive], conf[~positive]):
        sk = sketch_of(part, scale) if len(part) else None
        if sk is not None and drop_sum:
            sk.sum = 0.0
        sketches.append(sk)
    p_top = conf  # P(prediction correct)
    if calibrate:  # the exact map on raw values: each prediction's bin accuracy (or its confidence)
        fb_conf = confidences(seed + 1, 600, specials=True)
        fb_correct = rng.random(600) < fb_conf**2
        feedback = (sketch_of(fb_conf[fb_correct], scale), sketch_of(fb_conf[~fb_correct], scale))
        # the bins at the scale the estimate works at: the lowest of the part's sketch and the feedback's (a
        # sketch holding a wide range downscales itself: 0.1 down to 1e-5 took one to scale 5 of 6)
        common = [min(s.scale for s in (sk, *feedback) if s is not None) for sk in sketches]
        p_top = np.array(
            [
                exact_calibrated_correct(np.array([c]), fb_conf, fb_correct, common[0 if pos else 1], 10, 20)
                for c, pos in zip(conf, positive, strict=True)
            ]
        ).reshape(n)
    p_pos = np.where(positive, p_top, 1.0 - p_top)  # P(y = pos)
    tp, fp, fn = p_pos[positive].sum(), (1 - p_pos)[positive].sum(), p_pos[~positive].sum()
    est = estimated_binary(*sketches, *feedback, bins=10, min_feedback=20)
    assert est.predicted_positive == int(positive.sum()) and est.predicted_negative == n - int(positive.sum())
    exact = {
        "precision": tp / (tp + fp) if positive.any() else math.nan,
        "recall": tp / (tp + fn) if tp + fn > 0 else math.nan,
        "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn > 0 else math.nan,
        "accuracy": (tp + (n - positive.sum()) - fn) / n,
    }
    for name, value in exact.items():
        figure = getattr(est, name)
        if math.isnan(value):  # undefined (0/0); from buckets alone, only its bounds can say it may be
            assert math.isnan(figure.value) or (drop_sum and figure.low == 0.0), name
            continue
        assert figure.low - TOL <= value <= figure.high + TOL, name
        assert abs(figure.value - value) <= figure.bound + TOL, name
        if not drop_sum and not calibrate:
            assert figure.bound <= 1e-9, name


# -- against realized performance: a logistic model under covariate shift ----------------------------------------

CHUNK = 5000
Z = 4.0  # realized accuracy within interval(Z): 4 sd of the Bernoulli sum plus the computation bound


def shifted_chunks(seed: int, n_chunks: int, sharpen: float = 1.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(reported top-label confidence, prediction correct) per chunk: ground truth P(y=1|x) = sigmoid(1.5 x - 0.5),
    the feature's mean moving from 0 to 2 across chunks (covariate shift, no concept drift). The model reports
    ``sigmoid(sharpen * logit)``: calibrated at 1, overconfident above."""
    rng = np.random.default_rng(seed)
    out = []
    for mean in np.linspace(0.0, 2.0, n_chunks):
        x = rng.normal(mean, 1.0, CHUNK)
        logit = 1.5 * x - 0.5
        p = 1.0 / (1.0 + np.exp(-logit))
        y = rng.random(CHUNK) < p
        reported = 1.0 / (1.0 + np.exp(-sharpen * logit))
        predicted = reported >= 0.5
        out.append((np.maximum(reported, 1.0 - reported), predicted == y))
    return out


def test_estimate_of_a_calibrated_model_tracks_realized_accuracy_under_covariate_shift():
    realized_spread = []
    for conf, correct in shifted_chunks(seed=17, n_chunks=8):
        est = estimated_accuracy(sketch_of(conf, SDK_SCALE))
        low, high = est.interval(Z)
        realized = correct.mean()
        assert low <= realized <= high, (est, realized)
        assert est.exact_sum and high - low < 0.05  # the interval is tight enough to mean something
        realized_spread.append(realized)
    assert max(realized_spread) - min(realized_spread) > 0.05  # the shift moved accuracy: the test can fail


def test_miscalibrated_model_needs_the_feedback_calibration_map():
    reference, *chunks = shifted_chunks(seed=18, n_chunks=6, sharpen=1.5)
    ref_conf, ref_correct = reference  # feedback: the first chunk's labels
    correct_sk, incorrect_sk = sketch_of(ref_conf[ref_correct], SDK_SCALE), sketch_of(ref_conf[~ref_correct], SDK_SCALE)
    for conf, correct in chunks:
        realized = correct.mean()
        raw = estimated_accuracy(sketch_of(conf, SDK_SCALE))
        low, high = raw.interval(Z)
        assert not low <= realized <= high  # overconfident: the raw estimate is far too high
        assert raw.accuracy.value - realized > 0.03
        cal = estimated_accuracy(sketch_of(conf, SDK_SCALE), correct_sk, incorrect_sk)
        low, high = cal.interval(Z)
        assert low <= realized <= high, (cal, realized)
