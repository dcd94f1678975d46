"""Feedback counts in the window of the prediction it judges; an SLO judged from feedback is inconclusive until
enough of the window's predictions have their label (min_label_coverage); serve's snapshots keep both.

Telemetry is written as the SDK writes it (OTLP JSON lines, cumulative): ml.predictions when predictions are made,
ml.feedback with ml.prediction.time_bucket_end when their labels arrive, possibly days later.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelotel.evaluator import engine
from modelotel.evaluator.engine.stream import SNAPSHOT_NAME, StreamState
from modelotel.evaluator.spec import load_specs
from modelotel.sketch import LogSketch

from telemetry_gen import EPOCH, attr, write_lines

DAY = 86400.0
NS = 1_000_000_000


def _line(metric: str, kind: str, points: list[dict]) -> str:
    data = {"dataPoints": points, "aggregationTemporality": 2}
    if kind == "sum":
        data["isMonotonic"] = True
    return json.dumps(
        {
            "resourceMetrics": [
                {
                    "resource": {"attributes": [attr("service.name", "svc")]},
                    "scopeMetrics": [{"metrics": [{"name": metric, kind: data}]}],
                }
            ]
        }
    )


def _sum(value: int, attrs: list, start: float, end: float) -> dict:
    return {
        "attributes": attrs,
        "startTimeUnixNano": str(int(start * NS)),
        "timeUnixNano": str(int(end * NS)),
        "asInt": str(value),
    }


def _bucket(t: float) -> dict:
    return {"key": "ml.prediction.time_bucket_end", "value": {"intValue": str(int((t // 60 + 1) * 60))}}


def _telemetry(path, days: int, per_day: int, labelled: list[float], right: float, delay: float) -> None:
    """``per_day`` predictions on each of ``days`` days (exported that day); ``labelled[d]`` of day d's predictions
    get a label ``delay`` seconds later, a share ``right`` of them correct. One labelling process, one serving
    process, cumulative series as the SDK exports them (a feedback series per prediction-day bucket)."""
    model = [attr("ml.model.name", "fraud")]
    lines = []
    start = EPOCH
    for d in range(days):
        t = EPOCH + d * DAY + 3600
        lines.append(_line("ml.predictions", "sum", [_sum(per_day * (d + 1), model, start, t)]))
    fb_start = EPOCH + delay
    for d in range(days):
        t_pred = EPOCH + d * DAY + 3600
        n = int(labelled[d] * per_day)
        good = int(round(right * n))
        points = []
        for ok, count in ((True, good), (False, n - good)):
            if count:
                attrs = [*model, attr("ml.feedback.correct", ok), _bucket(t_pred)]
                points.append(_sum(count, attrs, fb_start, t_pred + delay))
        if points:
            lines.append(_line("ml.feedback", "sum", points))
    write_lines(path, lines)


SPEC = """
slos:
  - {name: acc, model: fraud, sli: accuracy, objective: 0.8, window: 1d, min_events: 1, alerts: off}
  - {name: acc-5pct, model: fraud, sli: accuracy, objective: 0.8, window: 1d, min_events: 1, alerts: off,
     min_label_coverage: 0.05}
  - {name: acc-5d, model: fraud, sli: accuracy, objective: 0.8, window: 5d, min_events: 1, alerts: off,
     min_label_coverage: 0.2}
"""


def _results(tmp_path, path, at):
    spec = tmp_path / "slo.yaml"
    spec.write_text(SPEC)
    return {r.slo.name: r for r in engine.evaluate(list(load_specs([str(spec)]).slos), [str(path)], at=at).results}


def test_late_labels_count_in_the_window_of_their_predictions(tmp_path):
    """Day 0's predictions are labelled three days later, during day 3. Evaluated at the end of day 3, the last
    day's window holds none of them (they judge day 0's predictions; counted on arrival they would all be here),
    and a window reaching back to day 0 holds all of them. Evaluated as of day 1 (--at), they had not arrived."""
    path = tmp_path / "t.jsonl"
    _telemetry(path, days=4, per_day=1000, labelled=[0.9, 0.0, 0.0, 0.0], right=0.95, delay=3 * DAY)
    now = _results(tmp_path, path, at=EPOCH + 4 * DAY)
    today = now["acc"]
    assert today.events == 0 and today.predictions == 1000 and today.label_coverage == 0.0
    assert today.status == "inconclusive"
    week = now["acc-5d"]
    assert (week.events, week.good, week.predictions) == (900, 855, 4000)
    assert week.label_coverage == 900 / 4000 and week.status == "pass"
    then = _results(tmp_path, path, at=EPOCH + DAY)["acc"]  # as of day 1: the labels did not exist yet
    assert then.events == 0 and then.predictions == 1000


def test_low_label_coverage_is_inconclusive_with_the_coverage_in_the_reason(tmp_path):
    path = tmp_path / "t.jsonl"
    _telemetry(path, days=1, per_day=2000, labelled=[0.1], right=0.5, delay=600)
    results = _results(tmp_path, path, at=EPOCH + DAY)
    low = results["acc"]
    assert low.status == "inconclusive"
    assert low.label_coverage == 0.1 and "label coverage 10.0%" in low.reason and "2000 predictions" in low.reason
    sampled = results["acc-5pct"]  # the same data, a team labelling a 5% sample: judged (and failing)
    assert sampled.status == "fail" and sampled.sli == 0.5


def test_coverage_unknown_without_predictions_is_said(tmp_path):
    path = tmp_path / "t.jsonl"
    model = [attr("ml.model.name", "fraud")]
    attrs = [*model, attr("ml.feedback.correct", True), _bucket(EPOCH + 100)]
    write_lines(path, [_line("ml.feedback", "sum", [_sum(50, attrs, EPOCH, EPOCH + 200)])])
    r = _results(tmp_path, path, at=EPOCH + 300)["acc"]
    assert r.status == "pass" and r.label_coverage is None
    assert any("label coverage unknown" in note for note in r.notes)


def test_a_bucket_attribute_that_is_not_a_time_falls_back_to_the_point_time(tmp_path):
    path = tmp_path / "t.jsonl"
    model = [attr("ml.model.name", "fraud")]
    bad = {"key": "ml.prediction.time_bucket_end", "value": {"stringValue": "yesterday"}}
    attrs = [*model, attr("ml.feedback.correct", True), bad]
    write_lines(path, [_line("ml.feedback", "sum", [_sum(7, attrs, EPOCH, EPOCH + 200)])])
    assert _results(tmp_path, path, at=EPOCH + 300)["acc"].events == 7


def test_serve_snapshots_keep_predictions_and_the_incorrect_confidences(tmp_path):
    """A restart of `serve` restores the label coverage's denominator and calibration's sketch of incorrect
    predictions (before, only the correct ones' sketch was saved: the restored ECE was of correct ones alone)."""
    spec = tmp_path / "slo.yaml"
    spec.write_text(
        "slos:\n"
        "  - {name: acc, model: fraud, sli: accuracy, objective: 0.8, window: 1h, min_events: 1, alerts: off}\n"
        "  - {name: cal, model: fraud, sli: calibration, threshold: 0.1, objective: 0.5, window: 1h,"
        " timeslice: {window: 1m}, min_events: 1, alerts: off, min_label_coverage: 0}\n"
    )
    slos = list(load_specs([str(spec)]).slos)
    rng = np.random.default_rng(3)
    model = [attr("ml.model.name", "fraud")]
    conf = rng.uniform(0.5, 1.0, 600)
    right = rng.random(600) < conf  # calibrated: a good slice, judged on the correct AND the incorrect ones
    points = []
    for flag in (True, False):
        sk = LogSketch(5)
        sk.add_many(conf[right == flag])
        attrs = [*model, attr("ml.feedback.correct", flag), _bucket(EPOCH + 30)]
        points.append(
            {
                "attributes": attrs,
                "startTimeUnixNano": str(int(EPOCH * NS)),
                "timeUnixNano": str(int((EPOCH + 50) * NS)),
                "count": str(sk.count),
                "sum": sk.sum,
                "scale": sk.scale,
                "zeroCount": "0",
                "positive": {"offset": sk.positive.offset, "bucketCounts": [str(c) for c in sk.positive.counts]},
            }
        )
    predicted = LogSketch(5)
    predicted.add_many(rng.uniform(0.5, 1.0, 800))
    confidence_point = {
        "attributes": model,
        "startTimeUnixNano": str(int(EPOCH * NS)),
        "timeUnixNano": str(int((EPOCH + 50) * NS)),
        "count": str(predicted.count),
        "sum": predicted.sum,
        "scale": predicted.scale,
        "zeroCount": "0",
        "positive": {"offset": predicted.positive.offset, "bucketCounts": [str(c) for c in predicted.positive.counts]},
    }
    lines = [
        _line("ml.prediction.confidence", "exponentialHistogram", [confidence_point]),
        _line("ml.predictions", "sum", [_sum(800, model, EPOCH, EPOCH + 50)]),
        _line("ml.feedback.confidence", "exponentialHistogram", points),
        _line(
            "ml.feedback",
            "sum",
            [
                _sum(
                    int(right.sum()),
                    [*model, attr("ml.feedback.correct", True), _bucket(EPOCH + 30)],
                    EPOCH,
                    EPOCH + 50,
                ),
                _sum(
                    int((~right).sum()),
                    [*model, attr("ml.feedback.correct", False), _bucket(EPOCH + 30)],
                    EPOCH,
                    EPOCH + 50,
                ),
            ],
        ),
    ]
    before = StreamState(slos)
    for line in lines:
        before.ingest(line.encode())
    at = EPOCH + 120
    evaluated = before.evaluate(at)
    want = {r.slo.name: r for r in evaluated.results}
    want_estimate = evaluated.estimates[0]
    assert want_estimate is not None and want_estimate.count == 800
    assert want["acc"].label_coverage == 600 / 800
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / SNAPSHOT_NAME).write_bytes(before.snapshot())
    after = StreamState(slos)
    after.load_snapshot(snap)
    restored = after.evaluate(at)
    got = {r.slo.name: r for r in restored.results}
    assert restored.estimates[0] == want_estimate  # CBPE beside the accuracy SLO survives the restart
    assert got["acc"].label_coverage == want["acc"].label_coverage and got["acc"].predictions == 800
    assert (got["cal"].slices_good, got["cal"].slices_total) == (want["cal"].slices_good, want["cal"].slices_total)
    # restored without the incorrect ones' sketch, the slice would read 100% accurate at ~75% confidence: bad
    assert got["cal"].status == want["cal"].status == "pass"


@pytest.mark.parametrize("threshold,good", [(1.0, 3), (2.5, 4)])
def test_abs_error_sli_counts_judged_regression_predictions_within_the_bound(tmp_path, threshold, good):
    """sli: abs_error on ml.feedback.abs_error: 1, 2 and 4 are exact bucket boundaries at every scale."""
    sk = LogSketch(5)
    sk.add_many(np.array([0.25, 0.5, 1.0, 2.0, 4.0]))
    attrs = [attr("ml.model.name", "price"), _bucket(EPOCH + 10)]
    point = {
        "attributes": attrs,
        "startTimeUnixNano": str(int(EPOCH * NS)),
        "timeUnixNano": str(int((EPOCH + 30) * NS)),
        "count": str(sk.count),
        "sum": sk.sum,
        "scale": sk.scale,
        "zeroCount": "0",
        "positive": {"offset": sk.positive.offset, "bucketCounts": [str(c) for c in sk.positive.counts]},
    }
    path = tmp_path / "e.jsonl"
    write_lines(path, [_line("ml.feedback.abs_error", "exponentialHistogram", [point])])
    spec = tmp_path / "slo.yaml"
    spec.write_text(
        f"slos:\n  - {{name: err, model: price, sli: abs_error, threshold: {threshold}, objective: 0.5, window: 1h,"
        " min_events: 1, alerts: off, min_label_coverage: 0}\n"
    )
    (r,) = engine.evaluate(list(load_specs([str(spec)]).slos), [str(path)], at=EPOCH + 60).results
    assert r.events == 5 and r.good_lower <= good <= r.good_upper
