"""``quality.performance`` on a day of feedback deltas: gathering and window cost, and how far its figures are from
sklearn/numpy on the raw rows (docs/quality.md, "Performance from feedback").

A day of 60 s buckets; per bucket a 5-class classifier's ``ml.feedback`` increments (one per (true, predicted)
cell, as the SDK folds them) and confidence sketches, and a regression model's error sketches. Run:
``PYTHONPATH=sdk python benchmarks/performance_bench.py``.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from modelotel import conventions as conv
from modelotel.evaluator.quality.performance import PerformanceData
from modelotel.evaluator.sources.points import Delta
from modelotel.sketch import LogSketch

T0, BUCKETS, PER_BUCKET = 1_800_000_000, 1440, 200
MODEL = {conv.MODEL_NAME: "m", conv.MODEL_VERSION: "1", conv.DEPLOYMENT_ROLE: "primary"}
LABELS = np.array(["a", "b", "c", "d", "e"])


def sketch(values: np.ndarray) -> LogSketch:
    sk = LogSketch(5)
    sk.add_many(values)
    return sk


def main() -> None:
    rng = np.random.default_rng(0)
    deltas, y_true, y_pred, errors, bucket_of = [], [], [], [], []
    for k in range(BUCKETS):
        end_s = T0 + 60 * (k + 1)
        pred = rng.choice(LABELS, PER_BUCKET, p=[0.4, 0.25, 0.15, 0.12, 0.08])
        truth = np.where(rng.random(PER_BUCKET) < 0.8, pred, rng.choice(LABELS, PER_BUCKET))
        conf = rng.beta(5, 1.5, PER_BUCKET)
        err = rng.standard_t(3, PER_BUCKET) * 10
        y_true += truth.tolist()
        y_pred += pred.tolist()
        errors.append(err)
        bucket_of += [end_s] * PER_BUCKET
        ns = (end_s + 3600) * 1_000_000_000  # labels an hour late
        base = {**MODEL, conv.PREDICTION_TIME_BUCKET_END: end_s}
        cells: dict[tuple[str, str], int] = {}
        for t, p in zip(truth.tolist(), pred.tolist(), strict=True):
            cells[(t, p)] = cells.get((t, p), 0) + 1
        for (t, p), n in cells.items():
            attrs = {**base, conv.FEEDBACK_CORRECT: t == p, conv.PREDICTION_LABEL: p, conv.FEEDBACK_LABEL: t}
            deltas.append(Delta(conv.FEEDBACK, attrs, ns - 60, ns, float(n)))
        ok = truth == pred
        for flag in (True, False):
            attrs = {**base, conv.FEEDBACK_CORRECT: flag}
            sk = sketch(conf[ok == flag])
            deltas.append(Delta(conv.FEEDBACK_CONFIDENCE, attrs, ns - 60, ns, float(sk.count), sketch=sk))
        reg = {**MODEL, conv.MODEL_NAME: "r", conv.PREDICTION_TIME_BUCKET_END: end_s}
        a = np.abs(err)
        deltas.append(Delta(conv.FEEDBACK, reg, ns - 60, ns, float(PER_BUCKET)))
        deltas.append(Delta(conv.FEEDBACK_ABS_ERROR, reg, ns - 60, ns, float(PER_BUCKET), sketch=sketch(a)))
        deltas.append(Delta(conv.FEEDBACK_SQUARED_ERROR, reg, ns - 60, ns, float(PER_BUCKET), sketch=sketch(a * a)))

    data = PerformanceData()
    t = time.perf_counter()
    for d in deltas:
        data.add(d)
    gather = time.perf_counter() - t
    start, end = T0 + 6 * 3600, T0 + 18 * 3600  # the middle 12 hours
    t = time.perf_counter()
    cls = data.performance(("m", "1", "primary"), start, end)
    reg = data.performance(("r", "1", "primary"), start, end)
    window = time.perf_counter() - t

    inside = (np.array(bucket_of) > start) & (np.array(bucket_of) <= end)
    yt, yp = np.array(y_true)[inside], np.array(y_pred)[inside]
    p, r, f, s = precision_recall_fscore_support(yt, yp, labels=sorted(set(yt) | set(yp)), zero_division=0)
    c = cls.classification
    same = (
        [k.precision for k in c.classes] == p.tolist()
        and [k.recall for k in c.classes] == r.tolist()
        and [k.f1 for k in c.classes] == f.tolist()
        and [k.support for k in c.classes] == s.tolist()
    )
    e = np.concatenate(errors)[inside]
    mae, rmse = float(np.mean(np.abs(e))), float(np.sqrt(np.mean(e * e)))
    print(f"{len(deltas):,} deltas, {len(y_true):,} judged items per model over a day of 60 s buckets")
    print(f"gather: {gather * 1e6 / len(deltas):.1f} us per delta ({gather:.2f} s); one 12 h window: {window:.3f} s")
    print(f"classifier, 12 h window: {cls.judged:,} items; P/R/F1/support identical to sklearn: {same}")
    mae_diff, rmse_diff = abs(reg.regression.mae - mae) / mae, abs(reg.regression.rmse - rmse) / rmse
    print(f"regression: MAE rel. diff {mae_diff:.1e}, RMSE {rmse_diff:.1e}")
    for q in reg.regression.abs_error.quantiles:
        exact = float(np.quantile(np.abs(e), q.q, method="lower"))
        print(
            f"|error| p{q.q * 100:g}: {q.value:.4f} (exact {exact:.4f}, rel. error {abs(q.value - exact) / exact:.2%}, "
            f"bounds width {(q.high - q.low) / q.value:.2%})"
        )


if __name__ == "__main__":
    main()
