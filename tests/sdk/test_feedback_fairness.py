"""The SDK side of fairness: record_feedback(group=..., positive_label=...) exports bounded ml.feedback series
that the evaluator's fairness module turns into the same figures as a direct computation on the raw rows."""

from __future__ import annotations

import numpy as np
import pytest

import modelotel
from modelotel import conventions as conv
from modelotel.evaluator.quality.fairness import fairness, tally

from conftest import total_count


def test_grouped_feedback_round_trips_to_fairness_figures(memory_exporter):
    rng = np.random.default_rng(21)
    n = 600
    groups = rng.choice(["north", "south", "east"], n)
    p_approve = np.where(groups == "north", 0.7, np.where(groups == "south", 0.4, 0.55))
    ids = []

    @modelotel.instrument_model(name="loans", labels=["deny", "approve"])
    def predict(p):
        ids.append(modelotel.current_prediction_id())
        return np.array([1.0 - p, p])

    predicted = []
    for p in p_approve:
        score = float(np.clip(p + rng.normal(0, 0.2), 0.01, 0.99))
        predict(score)
        predicted.append("approve" if score > 0.5 else "deny")
    truth = np.where(rng.random(n) < p_approve, "approve", "deny")
    for pid, g, t in zip(ids, groups, truth, strict=True):
        assert modelotel.record_feedback(pid, label=str(t), group=str(g), positive_label="approve")
    modelotel.force_flush()

    points = memory_exporter.last_points(conv.FEEDBACK)
    assert {p.attributes[conv.FAIRNESS_GROUP] for p in points} == {"north", "south", "east"}
    got_groups, ungrouped = tally((p.attributes, p.value) for p in points)
    got = fairness(got_groups, ungrouped=ungrouped)
    assert ungrouped == 0

    y_pred, y_true = np.array(predicted), truth
    sr, tpr, fpr = [], [], []
    for g in sorted(set(groups)):
        m = groups == g
        t, p = y_true[m] == "approve", y_pred[m] == "approve"
        sr.append(p.mean())
        tpr.append((t & p).sum() / t.sum())
        fpr.append((~t & p).sum() / (~t).sum())
        rates = next(r for r in got.groups if r.group == g)
        assert rates.accuracy == pytest.approx(np.mean(y_true[m] == y_pred[m]))
        assert (rates.selection_rate, rates.tpr, rates.fpr) == pytest.approx((sr[-1], tpr[-1], fpr[-1]))
    assert got.demographic_parity_difference == pytest.approx(max(sr) - min(sr))
    assert got.demographic_parity_ratio == pytest.approx(min(sr) / max(sr))
    assert got.equalized_odds_difference == pytest.approx(max(max(tpr) - min(tpr), max(fpr) - min(fpr)))
    # calibration series are unchanged by groups: one per correctness
    conf = memory_exporter.last_points(conv.FEEDBACK_CONFIDENCE)
    assert len(conf) == 2 and sum(p.count for p in conf) == n


def test_groups_are_bounded_and_batches_take_one_group_per_item(memory_exporter):
    ids = []

    @modelotel.instrument_model(name="capped", labels=["no", "yes"])
    def predict(x):
        ids.append(modelotel.current_prediction_id())
        return np.array([[0.2, 0.8], [0.9, 0.1], [0.3, 0.7]])  # a batch: yes, no, yes

    for _ in range(conv.DEFAULT_MAX_GROUPS + 3):
        predict(0)
    for i, pid in enumerate(ids[:-2]):
        assert modelotel.record_feedback(pid, correct=[True] * 3, group=f"group-{i}")
    assert modelotel.record_feedback(ids[-2], label=["yes", "yes", "no"], group=["a", "b", "x" * 65])
    assert modelotel.record_feedback(ids[-1], label="yes", group=["a", "b"])  # 2 groups for 3 items
    modelotel.force_flush()

    points = memory_exporter.last_points(conv.FEEDBACK)
    seen = {p.attributes.get(conv.FAIRNESS_GROUP) for p in points}
    assert len(seen - {None, conv.OTHER_LABEL}) == conv.DEFAULT_MAX_GROUPS
    # the 3 capped groups, one 65-character group and "a"/"b" once the cap is reached: nothing is lost
    assert total_count(points, **{conv.MODEL_NAME: "capped"}) == 3 * (conv.DEFAULT_MAX_GROUPS + 3)
    assert total_count(points, **{conv.FAIRNESS_GROUP: conv.OTHER_LABEL}) > 0
    # correct= gives no positive-class flags, and no positive class was configured anywhere
    assert not any(conv.PREDICTION_POSITIVE in p.attributes for p in points)
    dropped = memory_exporter.last_points(conv.DROPPED)
    assert total_count(dropped, **{conv.DROP_REASON: "feedback_group_unusable"}) == 3
    assert total_count(points, **{conv.FEEDBACK_CORRECT: False}) == 3  # items 2 and 3 of ids[-2], item 2 of ids[-1]
