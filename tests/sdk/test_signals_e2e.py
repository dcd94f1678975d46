"""A decorated scikit-learn model exports confidence, OOD and label distributions that decode from the file.

Everything is compared with what the model actually produced, computed directly from the same inputs.
"""

from __future__ import annotations

import json

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelotel
from modelotel import conventions as conv
from modelotel.ood import MahalanobisScorer
from modelotel.sketch import LogSketch


def _latest(path):
    """(metric name, attributes) -> the last data point dict, from OTLP-JSON lines."""
    latest = {}
    with open(path) as fh:
        for line in fh:
            for rm in json.loads(line).get("resourceMetrics", []):
                for sm in rm["scopeMetrics"]:
                    for m in sm["metrics"]:
                        data = m.get("exponentialHistogram") or m.get("sum")
                        for p in data["dataPoints"]:
                            attrs = tuple(
                                sorted((a["key"], next(iter(a["value"].values()))) for a in p.get("attributes", []))
                            )
                            latest[(m["name"], attrs)] = p
    return latest


def _points(latest, metric):
    return {dict(attrs).get(conv.PREDICTION_LABEL): p for (name, attrs), p in latest.items() if name == metric}


def test_sklearn_model_signals_decode_from_the_file_exporter(tmp_path):
    data = load_breast_cancer()
    X_train, X_test, y_train, _ = train_test_split(data.data, data.target, test_size=0.3, random_state=0)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X_train, y_train)
    scorer = MahalanobisScorer().fit(X_train, y_train)
    scorer.threshold_for_fpr(X_train[:150], fpr=0.05)
    rng = np.random.default_rng(1)
    shifted = X_test[:40] * rng.uniform(1.5, 3.0, size=(40, X_test.shape[1]))  # drifted inputs
    inputs = np.vstack([X_test, shifted])

    path = tmp_path / "signals.jsonl"
    modelotel.configure(service_name="cancer", exporter="file", path=path, export_interval=3600, traces=False)
    try:

        @modelotel.instrument_model(name="cancer", version="1", labels=list(data.target_names), ood=scorer)
        def predict(x):
            return clf.predict_proba(x.reshape(1, -1))[0]

        outputs = [predict(x) for x in inputs]
    finally:
        modelotel.shutdown()

    probs = np.array(outputs)
    confidences = probs.max(axis=1)
    labels = np.array(data.target_names)[probs.argmax(axis=1)]
    scores = scorer.score(inputs)
    latest = _latest(path)

    (conf_point,) = _points(latest, conv.PREDICTION_CONFIDENCE_METRIC).values()
    conf = LogSketch.from_otlp_point(conf_point)
    assert conf.count == len(inputs)
    for q in (0.05, 0.5, 0.95):
        exact = np.quantile(confidences, q, method="lower")
        assert abs(conf.quantile(q) - exact) <= conf.relative_accuracy * exact

    (ood_point,) = _points(latest, conv.OOD_SCORE_METRIC).values()
    ood = LogSketch.from_otlp_point(ood_point)
    assert ood.count == len(inputs)
    for q in (0.5, 0.9, 0.99):
        exact = np.quantile(scores, q, method="lower")
        assert abs(ood.quantile(q) - exact) <= ood.relative_accuracy * abs(exact)
    (outliers,) = _points(latest, conv.OOD_OUTLIERS).values()
    assert int(outliers["asInt"]) == int(np.sum(scores > scorer.threshold))
    assert int(outliers["asInt"]) >= 30  # most of the drifted inputs are flagged

    by_label = {k: int(p["asInt"]) for k, p in _points(latest, conv.PREDICTIONS).items()}
    expected = {name: int(np.sum(labels == name)) for name in data.target_names}
    assert by_label == {k: v for k, v in expected.items() if v}
