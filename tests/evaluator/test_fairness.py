"""Fairness figures from ml.feedback counts against fairlearn's definitions computed directly on raw arrays.

The reference implements fairlearn's ``selection_rate``, ``true_positive_rate`` (0 when a group has no
positives: sklearn's normalised confusion matrix), ``demographic_parity_difference/ratio`` and
``equalized_odds_difference/ratio`` (``method="between_groups"``, ``agg="worst_case"``) from the raw
(group, y_true, y_pred) rows; the module sees only the counter increments the SDK would export.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelotel import conventions as conv
from modelotel.evaluator.quality.fairness import GroupCounts, fairness, tally

fast = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference(groups: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, pos: str) -> dict[str, float]:
    """fairlearn's metrics on raw rows (undefined TPR/FPR are 0, as sklearn's normalised confusion matrix)."""
    sr, tpr, fpr = [], [], []
    for g in np.unique(groups):
        t, p = y_true[groups == g] == pos, y_pred[groups == g] == pos
        sr.append(p.mean())
        tpr.append((t & p).sum() / t.sum() if t.sum() else 0.0)
        fpr.append((~t & p).sum() / (~t).sum() if (~t).sum() else 0.0)

    def ratio(v: list[float]) -> float:
        return min(v) / max(v) if max(v) else math.nan

    tpr_diff, fpr_diff = max(tpr) - min(tpr), max(fpr) - min(fpr)
    return {
        "demographic_parity_difference": max(sr) - min(sr),
        "demographic_parity_ratio": ratio(sr),
        "equalized_odds_difference": max(tpr_diff, fpr_diff),
        "equalized_odds_ratio": float(np.nanmin([ratio(tpr), ratio(fpr)])) if max(tpr + fpr) else math.nan,
    }


def exported(groups, y_true, y_pred, pos, with_flags, as_strings) -> list[tuple[dict, float]]:
    """The ml.feedback increments the SDK records for these rows (None group: no attribute)."""
    counter: Counter = Counter()
    for g, t, p, flags in zip(groups, y_true, y_pred, with_flags, strict=True):
        key = [(conv.FEEDBACK_CORRECT, bool(t == p))]
        if g is not None:
            key.append((conv.FAIRNESS_GROUP, str(g)))
        if flags:
            key += [(conv.PREDICTION_POSITIVE, bool(p == pos)), (conv.FEEDBACK_POSITIVE, bool(t == pos))]
        counter[tuple(key)] += 1
    fmt = (lambda v: str(v).lower() if isinstance(v, bool) else v) if as_strings else (lambda v: v)
    return [({k: fmt(v) for k, v in key}, float(n)) for key, n in counter.items()]


def close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


@fast
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 400),
    n_groups=st.integers(1, 5),
    n_classes=st.integers(2, 3),
    flag_share=st.sampled_from([1.0, 0.7]),
    as_strings=st.booleans(),
)
def test_fairness_from_counts_equals_fairlearn_definitions_on_raw_rows(
    seed, n, n_groups, n_classes, flag_share, as_strings
):
    rng = np.random.default_rng(seed)
    classes = np.array(["approve", "deny", "review"][:n_classes])
    groups = rng.choice(np.array([f"g{i}" for i in range(n_groups)]), n)
    y_true = rng.choice(classes, n, p=rng.dirichlet(np.ones(n_classes)))
    y_pred = np.where(rng.random(n) < rng.uniform(0.3, 0.95), y_true, rng.choice(classes, n))
    with_flags = rng.random(n) < flag_share  # feedback given as correct= carries no positive flags
    grouped = np.where(rng.random(n) < 0.9, groups, None)  # some feedback without a group
    got_groups, ungrouped = tally(exported(grouped, y_true, y_pred, "approve", with_flags, as_strings))
    got = fairness(got_groups, ungrouped=ungrouped)

    assert ungrouped == np.count_nonzero(grouped == None)  # noqa: E711 - elementwise
    for rates in got.groups:
        in_group = grouped == rates.group
        assert rates.accuracy == pytest.approx(np.mean(y_true[in_group] == y_pred[in_group]))
        rows = in_group & with_flags
        assert rates.counts.rows == rows.sum()
        if rows.any():
            assert rates.selection_rate == pytest.approx(np.mean(y_pred[rows] == "approve"), abs=1e-12)
    rows = (grouped != None) & with_flags  # noqa: E711
    if not rows.any():
        assert math.isnan(got.demographic_parity_difference) and math.isnan(got.equalized_odds_difference)
        return
    ref = reference(grouped[rows].astype(str), y_true[rows], y_pred[rows], "approve")
    for name, value in ref.items():
        assert close(getattr(got, name), value), (name, getattr(got, name), value)


def test_undefined_rates_count_as_zero_like_fairlearn_or_are_skipped():
    groups = {
        "a": GroupCounts(feedback=10, correct=8, tp=4, fp=1, fn=1, tn=4),  # TPR 0.8, FPR 0.2
        "b": GroupCounts(feedback=5, correct=5, tp=0, fp=0, fn=0, tn=5),  # no positives: TPR undefined
    }
    zero = fairness(groups)
    assert zero.groups[1].tpr is None and zero.tpr_difference == pytest.approx(0.8)
    assert zero.equalized_odds_difference == pytest.approx(0.8) and zero.notes
    skip = fairness(groups, undefined="skip")
    assert skip.tpr_difference == 0.0 and skip.equalized_odds_difference == pytest.approx(0.2)
    assert skip.demographic_parity_difference == pytest.approx(0.5) and skip.demographic_parity_ratio == 0.0
    with pytest.raises(ValueError, match="undefined must be"):
        fairness(groups, undefined="ignore")


def test_feedback_without_flags_or_groups_is_counted_not_lost():
    points = [
        ({conv.FEEDBACK_CORRECT: True, conv.FAIRNESS_GROUP: "x"}, 3.0),
        ({conv.FEEDBACK_CORRECT: "false", conv.FAIRNESS_GROUP: "x"}, 1.0),
        ({conv.FEEDBACK_CORRECT: True}, 7.0),
        ({conv.FAIRNESS_GROUP: "x"}, 5.0),  # not feedback this module understands: skipped
    ]
    groups, ungrouped = tally(points)
    assert ungrouped == 7 and groups["x"].feedback == 4 and groups["x"].correct == 3 and groups["x"].rows == 0
    result = fairness(groups, ungrouped=ungrouped)
    assert math.isnan(result.demographic_parity_difference) and "left out" in result.notes[0]
