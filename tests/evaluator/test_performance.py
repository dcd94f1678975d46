"""Performance from feedback deltas against exact computation on the raw rows: sklearn's confusion matrix,
precision/recall/F1/support (zero_division=0) and accuracy, numpy's MAE/RMSE/quantiles, window attribution.

The deltas are built as the SDK's fold builds them (one increment per distinct attribute set per time bucket);
the end-to-end test with the real SDK and a labelling process is in test_performance_e2e.py.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
)

from modelotel import conventions as conv
from modelotel.evaluator.quality.calibration import calibration
from modelotel.evaluator.quality.performance import PerformanceData, classification, quantile
from modelotel.evaluator.sources.points import Delta
from modelotel.sketch import LogSketch

pytestmark = pytest.mark.filterwarnings("ignore:A single label was found")  # sklearn, on one-label windows
fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODEL = {conv.MODEL_NAME: "m", conv.MODEL_VERSION: "1", conv.DEPLOYMENT_ROLE: "primary"}
KEY = ("m", "1", "primary")
T0 = 1_800_000_000  # a bucket end (multiple of 60)
S = 1_000_000_000


def feedback_deltas(rows, *, export_at=None, bucketed=True):
    """ml.feedback increments from (bucket_end, true, predicted) rows, grouped like the SDK's fold; each counted at
    ``export_at(bucket)`` (default: 30 s after the bucket)."""
    counts: dict[tuple, int] = {}
    for bucket, truth, pred in rows:
        counts[(bucket, truth, pred)] = counts.get((bucket, truth, pred), 0) + 1
    out = []
    for (bucket, truth, pred), n in counts.items():
        attrs = {**MODEL, conv.FEEDBACK_CORRECT: truth == pred, conv.PREDICTION_LABEL: pred, conv.FEEDBACK_LABEL: truth}
        if bucketed:
            attrs[conv.PREDICTION_TIME_BUCKET_END] = bucket
        end = (export_at(bucket) if export_at else bucket + 30) * S
        out.append(Delta(conv.FEEDBACK, attrs, end - 10 * S, end, float(n), series=len(out) + 1))
    return out


labels_st = st.sampled_from(["cat", "dog", "eel", "fox", "gnu"])
rows_st = st.lists(st.tuples(st.integers(0, 9), labels_st, labels_st), min_size=1, max_size=300)


@fast
@given(rows=rows_st, lo=st.integers(-1, 9), width=st.integers(1, 11))
def test_classification_figures_equal_sklearn_on_the_rows_of_the_window(rows, lo, width):
    rows = [(T0 + 60 * b, t, p) for b, t, p in rows]
    data = PerformanceData()
    for d in feedback_deltas(rows):
        data.add(d)
    start, end = T0 + 60 * lo, T0 + 60 * (lo + width)
    inside = [(t, p) for b, t, p in rows if start < b <= end]
    perf = data.performance(KEY, start, end)
    assert perf.judged == len(inside)
    if not inside:
        assert perf.classification is None and perf.accuracy is None
        assert "no feedback" in perf.missing["confusion"] and "no feedback" in perf.missing["accuracy"]
        return
    y_true = [t for t, _ in inside]
    y_pred = [p for _, p in inside]
    c = perf.classification
    labels = sorted(set(y_true) | set(y_pred))
    assert list(c.labels) == labels
    assert np.array_equal(np.array(c.matrix), confusion_matrix(y_true, y_pred, labels=labels))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    assert [x.precision for x in c.classes] == p.tolist()
    assert [x.recall for x in c.classes] == r.tolist()
    assert [x.f1 for x in c.classes] == f.tolist()
    assert [x.support for x in c.classes] == s.tolist()
    for avg, got in (("macro", c.macro), ("weighted", c.weighted)):
        ap, ar, af, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
        assert (got.precision, got.recall, got.f1) == (ap, ar, af), avg
    exact = accuracy_score(y_true, y_pred)
    assert perf.accuracy == exact and c.label_accuracy == exact
    assert perf.correct == sum(t == q for t, q in inside)
    with warnings.catch_warnings():  # sklearn's default zero_division="warn" gives the same 0 (and warns)
        warnings.simplefilter("ignore")
        report = classification_report(y_true, y_pred, labels=labels, output_dict=True)
    for x in c.classes:
        assert (report[x.label]["precision"], report[x.label]["recall"], report[x.label]["f1-score"]) == (
            x.precision,
            x.recall,
            x.f1,
        )
    assert set(c.undefined_precision) == set(y_true) - set(y_pred)
    assert set(c.undefined_recall) == set(y_pred) - set(y_true)


def test_classification_of_a_single_class_and_of_all_wrong():
    one = classification({("a", "a"): 3})
    assert one.matrix == ((3,),) and one.classes[0].f1 == 1.0 and one.macro.f1 == 1.0
    wrong = classification({("a", "b"): 2, ("b", "a"): 1})
    assert wrong.label_accuracy == 0.0 and wrong.macro.precision == 0.0 and wrong.undefined_precision == ()
    try:
        classification({("a", "a"): 0})
    except ValueError as exc:
        assert "at least one" in str(exc)
    else:
        raise AssertionError("an empty matrix was accepted")


@fast
@given(rows=rows_st, lag=st.integers(0, 30))
def test_window_counts_predictions_made_in_it_whenever_labels_arrived(rows, lag):
    """The same rows with labels arriving ``lag`` minutes late give the same figures for the same window; without
    the time bucket they would count at arrival (and the figures say so)."""
    rows = [(T0 + 60 * b, t, p) for b, t, p in rows]
    start, end = T0 + 60 * 2, T0 + 60 * 6
    prompt, late, unbucketed = PerformanceData(), PerformanceData(), PerformanceData()
    for d in feedback_deltas(rows):
        prompt.add(d)
    for d in feedback_deltas(rows, export_at=lambda b: b + 60 * lag + 1):
        late.add(d)
    for d in feedback_deltas(rows, export_at=lambda b: b + 60 * lag + 1, bucketed=False):
        unbucketed.add(d)
    a, b = prompt.performance(KEY, start, end), late.performance(KEY, start, end)
    assert (a.judged, a.correct, a.classification) == (b.judged, b.correct, b.classification)
    c = unbucketed.performance(KEY, start, end)
    arrived = [r for r in rows if start < r[0] + 60 * lag + 1 <= end]
    assert c.judged == c.by_arrival == len(arrived)
    if arrived:
        assert any("time_bucket_end" in n for n in c.notes)


def test_prometheus_style_attributes_read_the_same():
    """Prometheus labels are text: "true"/"false" and the bucket end as digits."""
    rows = [(T0, "a", "a"), (T0, "a", "b"), (T0 + 60, "b", "b")]
    otlp, prom = PerformanceData(), PerformanceData()
    for d in feedback_deltas(rows):
        otlp.add(d)
        text = {k: ("true" if v else "false") if isinstance(v, bool) else str(v) for k, v in d.attributes.items()}
        prom.add(Delta(d.metric, text, d.start_ns, d.end_ns, d.value))
    a, b = otlp.performance(KEY, T0 - 60, T0 + 60), prom.performance(KEY, T0 - 60, T0 + 60)
    assert a.judged == b.judged == 3 and a.accuracy == b.accuracy == 2 / 3
    assert a.classification == b.classification and a.by_arrival == b.by_arrival == 0


errors_st = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.one_of(
            st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
            st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e-9]),
        ),
    ),
    min_size=1,
    max_size=300,
)


def sketch(values, scale=5):
    sk = LogSketch(scale)
    sk.add_many(np.asarray(values, dtype=np.float64))
    return sk


@fast
@given(rows=errors_st, scale=st.sampled_from([0, 3, 5, 8]), lo=st.integers(-1, 4))
def test_regression_mae_rmse_exact_and_quantiles_bounded(rows, scale, lo):
    data = PerformanceData()
    by_bucket: dict[int, list[float]] = {}
    for b, e in rows:
        by_bucket.setdefault(T0 + 60 * b, []).append(e)
    for bucket, errs in by_bucket.items():
        attrs = {**MODEL, conv.PREDICTION_TIME_BUCKET_END: bucket}
        err = np.abs(np.asarray(errs))
        end = (bucket + 5) * S
        data.add(Delta(conv.FEEDBACK, attrs, end - S, end, float(len(errs))))
        data.add(Delta(conv.FEEDBACK_ABS_ERROR, attrs, end - S, end, float(len(errs)), sketch=sketch(err, scale)))
        data.add(Delta(conv.FEEDBACK_SQUARED_ERROR, attrs, end - S, end, float(len(errs)), sketch=sketch(err * err)))
    start, end = T0 + 60 * lo, T0 + 60 * (lo + 3)
    inside = np.array([e for b, e in rows if start < T0 + 60 * b <= end])
    perf = data.performance(KEY, start, end)
    if not len(inside):
        assert perf.regression is None and "no feedback" in perf.missing["regression"]
        return
    reg = perf.regression
    assert reg.count == len(inside) == perf.judged
    assert math.isclose(reg.mae, float(np.mean(np.abs(inside))), rel_tol=1e-12, abs_tol=1e-300)
    assert math.isclose(reg.rmse, float(np.sqrt(np.mean(inside**2))), rel_tol=1e-12, abs_tol=1e-300)
    for qv in reg.abs_error.quantiles:
        exact = float(np.quantile(np.abs(inside), qv.q, method="lower"))
        assert qv.low <= exact <= qv.high, (qv, exact)
        assert qv.low <= qv.value <= qv.high
    assert perf.accuracy is None and "regression" in perf.missing["accuracy"]
    assert "not a classifier" in perf.missing["confusion"]


@fast
@example(values=[0.0, 1.0, 5e-324], q=0.5, scale=0, known=False)  # a subnormal: its estimate underflowed to 0
@given(
    values=st.lists(st.floats(0, 1e7, allow_nan=False), min_size=1, max_size=200),
    q=st.floats(0, 1),
    scale=st.integers(-2, 8),
    known=st.booleans(),
)
def test_quantile_bounds_hold_with_and_without_known_min_max(values, q, scale, known):
    """A delta of a cumulative series knows min/max only as bucket bounds: the bounds must hold either way."""
    sk = sketch(values, scale)
    if not known and sk.count:
        sk = LogSketch.from_otlp_point(
            {
                "scale": sk.scale,
                "count": str(sk.count),
                "sum": sk.sum,
                "zeroCount": str(sk.zero_count),
                "positive": {"offset": sk.positive.offset, "bucketCounts": [str(c) for c in sk.positive.counts]},
            }
        )
        assert sk.min <= min(values) and sk.max >= max(values)
    got = quantile(sk, q)
    exact = float(np.quantile(np.asarray(values), q, method="lower"))
    assert got.low <= exact <= got.high, (got, exact)
    assert got.low <= got.value <= got.high


def test_coverage_latency_and_calibration_use_their_own_attribution():
    """Coverage: judged items of the window's buckets over the predictions exported in it; latency: delays that
    arrived in the window; calibration: the calibration module on the window's confidence sketches."""
    data = PerformanceData()
    rng = np.random.default_rng(3)
    conf = rng.uniform(0.3, 1.0, 400)
    ok = rng.random(400) < conf
    bucket = T0 + 60 * rng.integers(0, 4, 400)
    for b in np.unique(bucket):
        sel = bucket == b
        for flag in (True, False):
            part = sel & (ok == flag)
            attrs = {**MODEL, conv.FEEDBACK_CORRECT: flag, conv.PREDICTION_TIME_BUCKET_END: int(b)}
            end = (int(b) + 3600) * S  # labels an hour late
            data.add(Delta(conv.FEEDBACK, attrs, end - S, end, float(part.sum())))
            data.add(Delta(conv.FEEDBACK_CONFIDENCE, attrs, end - S, end, float(part.sum()), sketch=sketch(conf[part])))
    for minute in range(-1, 5):  # 250 predictions exported every minute
        end = (T0 + 60 * minute) * S
        data.add(Delta(conv.PREDICTIONS, {**MODEL, conv.PREDICTION_LABEL: "x"}, end - 60 * S, end, 250.0))
    delays = rng.exponential(3600, 400)
    arrival = T0 + 60 * rng.integers(0, 120, 400)
    for a in np.unique(arrival):
        end = int(a) * S
        data.add(Delta(conv.FEEDBACK_DELAY, MODEL, end - S, end, 1.0, sketch=sketch(delays[arrival == a])))
    start, end = T0 - 60, T0 + 60 * 3  # buckets T0 .. T0+180
    perf = data.performance(KEY, start, end)
    assert perf.judged == 400 and perf.correct == int(ok.sum())
    assert perf.coverage.predictions == 4 * 250 and perf.coverage.ratio == 400 / 1000
    direct, got = calibration(sketch(conf[ok]), sketch(conf[~ok])), perf.calibration
    assert (got.count, got.correct, got.ece, got.ece_bound, got.brier, got.brier_bound) == (
        direct.count,
        direct.correct,
        direct.ece,
        direct.ece_bound,
        direct.brier,
        direct.brier_bound,
    )
    assert [(b.count, b.correct) for b in got.bins] == [(b.count, b.correct) for b in direct.bins]
    arrived = delays[(arrival > start) & (arrival <= end)]
    assert perf.latency.count == len(arrived)
    assert math.isclose(perf.latency.mean, float(arrived.mean()), rel_tol=1e-12)
    for qv in perf.latency.quantiles:
        assert qv.low <= float(np.quantile(arrived, qv.q, method="lower")) <= qv.high
    assert perf.fairness is None and "group=" in perf.missing["fairness"]
    assert "withheld" in perf.missing["confusion"]
    later = data.performance(KEY, T0 + 60 * 3, T0 + 60 * 5)
    assert later.coverage is None and "no feedback" in later.missing["coverage"]
    assert later.latency is not None  # labels kept arriving


def test_fairness_figures_are_the_fairness_module_on_the_window():
    data = PerformanceData()
    rows = [("north", True, True, True), ("north", False, True, False), ("south", True, False, False)] * 5
    for i, (group, ok, pp, tp) in enumerate(rows):
        attrs = {
            **MODEL,
            conv.FEEDBACK_CORRECT: ok,
            conv.FAIRNESS_GROUP: group,
            conv.PREDICTION_POSITIVE: pp,
            conv.FEEDBACK_POSITIVE: tp,
            conv.PREDICTION_TIME_BUCKET_END: T0,
        }
        data.add(Delta(conv.FEEDBACK, attrs, (T0 + i) * S, (T0 + i + 1) * S, 1.0))
    f = data.performance(KEY, T0 - 60, T0).fairness
    by = {g.group: g for g in f.groups}
    assert by["north"].counts.feedback == 10 and by["north"].accuracy == 0.5 and by["north"].tpr == 1.0
    assert by["south"].selection_rate == 0.0 and f.demographic_parity_difference == 1.0


def test_models_are_kept_apart_by_name_version_and_role():
    data = PerformanceData()
    for role, n in (("primary", 3.0), ("canary", 1.0)):
        attrs = {**MODEL, conv.DEPLOYMENT_ROLE: role, conv.FEEDBACK_CORRECT: True, conv.PREDICTION_TIME_BUCKET_END: T0}
        data.add(Delta(conv.FEEDBACK, attrs, T0 * S, (T0 + 1) * S, n))
    assert data.models() == [("m", "1", "canary"), ("m", "1", "primary")]
    assert data.performance(("m", "1", "canary"), T0 - 60, T0).judged == 1
    assert data.span() == (T0, T0)
    only = PerformanceData({conv.DEPLOYMENT_ROLE: "canary"})
    only.add(Delta(conv.FEEDBACK, {**MODEL, conv.FEEDBACK_CORRECT: True}, 0, S, 1.0))
    assert only.models() == []


def _labelled(attrs, n=1.0, at=T0 + 1):
    return Delta(conv.FEEDBACK, {**MODEL, conv.PREDICTION_TIME_BUCKET_END: T0, **attrs}, 0, at * S, n)


def test_each_missing_figure_says_why():
    """correct= feedback on a labelled model, withheld labels, pooled labels, no ml.predictions, no histograms."""
    correct_only = PerformanceData()
    correct_only.add(_labelled({conv.FEEDBACK_CORRECT: True, conv.PREDICTION_LABEL: "a"}, 3.0))
    p = correct_only.performance(KEY, T0 - 60, T0)
    assert p.accuracy == 1.0 and p.classification is None
    assert "correct= rather than the true label=" in p.missing["confusion"]
    assert "no ml.predictions" in p.missing["coverage"] and "no ml.feedback.confidence" in p.missing["calibration"]

    withheld = PerformanceData()
    withheld.add(_labelled({conv.FEEDBACK_CORRECT: False}))
    assert "withheld" in withheld.performance(KEY, T0 - 60, T0).missing["confusion"]

    mixed = PerformanceData()
    mixed.add(_labelled({conv.FEEDBACK_CORRECT: True, conv.PREDICTION_LABEL: "a", conv.FEEDBACK_LABEL: "a"}, 2.0))
    mixed.add(_labelled({conv.FEEDBACK_CORRECT: False, conv.PREDICTION_LABEL: "a"}, 1.0))
    other = {
        conv.FEEDBACK_CORRECT: False,
        conv.PREDICTION_LABEL: conv.OTHER_LABEL,
        conv.FEEDBACK_LABEL: conv.OTHER_LABEL,
    }
    mixed.add(_labelled(other, 4.0))
    mixed.add(Delta(conv.FEEDBACK_DELAY, MODEL, 0, (T0 + 1) * S, 2.0))  # an explicit histogram: no sketch
    p = mixed.performance(KEY, T0 - 60, T0)
    assert p.judged == 7 and p.accuracy == 2 / 7 and p.classification.rows == 6
    assert p.classification.matrix == ((4, 0), (0, 2))  # __other__ sorts first
    notes = " ".join(p.notes)
    assert "1 judged items have no true label" in notes and "pooled as __other__" in notes
    assert "ml.feedback.delay (whole input) are not exponential histograms" in notes
    assert "no feedback arrived" in p.missing["latency"]
