"""Allow-listed feature distributions and counted extraction misses, checked against the raw inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import modelotel
from modelotel import conventions as conv
from modelotel.sketch import LogSketch

from conftest import total_count


def _by_feature(points, name):
    return [p for p in points if p.attributes.get(conv.FEATURE_NAME) == name]


@pytest.mark.parametrize("as_array", [False, True], ids=["dict-input", "array-input"])
def test_numeric_feature_sketch_matches_raw_values(memory_exporter, as_array):
    rng = np.random.default_rng(3)
    amounts = rng.lognormal(3, 1.2, 3000)
    ages = rng.integers(18, 90, 3000).astype(float)
    names = ["amount", "age", "secret_score"]

    @modelotel.instrument_model(
        name="dist", numeric_features=["amount", "age"], feature_names=names, labels=["no", "yes"]
    )
    def predict(x):
        return np.array([0.3, 0.7])

    for a, g in zip(amounts, ages, strict=True):
        x = np.array([a, g, 0.123]) if as_array else {"amount": float(a), "age": float(g), "secret_score": 0.123}
        predict(x)
    modelotel.force_flush()
    points = memory_exporter.last_points(conv.FEATURE_VALUE)
    assert {p.attributes[conv.FEATURE_NAME] for p in points} == {"amount", "age"}  # not the unlisted one
    (amount,) = _by_feature(points, "amount")
    sketch = LogSketch.from_otlp_point(amount)
    assert sketch.count == len(amounts)
    for q in (0.1, 0.5, 0.9, 0.99):
        exact = np.quantile(amounts, q, method="lower")
        assert abs(sketch.quantile(q) - exact) <= sketch.relative_accuracy * exact
    # min/max are bucket edges bracketing the true extremes, not the raw extreme values
    assert amount.min <= amounts.min() and amount.max >= amounts.max()
    assert amount.min != amounts.min() and amount.max != amounts.max()
    assert amounts.min() / amount.min <= 2 ** (2**-sketch.scale) + 1e-12


def test_categorical_feature_counts_are_bounded(memory_exporter):
    @modelotel.instrument_model(name="cats", categorical_features=["country"])
    def predict(x):
        return {"label": "ok", "score": 0.9}

    countries = [f"c{i}" for i in range(conv.DEFAULT_MAX_CATEGORIES + 20)]
    for c in countries:
        predict({"country": c, "email": "x@example.com"})
    predict({"country": "c0"})
    modelotel.force_flush()
    points = memory_exporter.last_points(conv.FEATURE_CATEGORY_METRIC)
    counts = {p.attributes[conv.FEATURE_CATEGORY]: p.value for p in points}
    assert counts["c0"] == 2
    assert counts[conv.OTHER_LABEL] == 20
    assert len(counts) == conv.DEFAULT_MAX_CATEGORIES + 1
    assert sum(counts.values()) == len(countries) + 1
    assert all(p.attributes[conv.FEATURE_NAME] == "country" for p in points)


def test_extraction_misses_are_counted_but_numbers_are_not(memory_exporter):
    outputs = iter([object(), {"weird": [1, 2]}, np.array([3.0, 7.0, 1.0]), 4.2, 7, np.float32(0.5)])

    @modelotel.instrument_model(name="misses")
    def predict(x):
        return next(outputs)

    for _ in range(6):
        predict(1)
    modelotel.force_flush()
    misses = memory_exporter.last_points(conv.EXTRACT_MISSES)
    # object(), the dict without a score and the non-probability vector: 3; the three numbers: 0
    assert total_count(misses, **{conv.MODEL_NAME: "misses"}) == 3
    preds = memory_exporter.last_points(conv.PREDICTIONS)
    assert total_count(preds, **{conv.MODEL_NAME: "misses"}) == 6


def test_feature_distributions_through_the_file_exporter(tmp_path):
    path = tmp_path / "dist.jsonl"
    modelotel.configure(exporter="file", path=path, export_interval=3600, traces=False)
    values = [1.5, 2.5, 1000.0, 0.25, 7.0]
    try:
        predict = modelotel.instrument_model(name="file-dist", numeric_features=["v"])(lambda x: x["v"])
        for v in values:
            predict({"v": v})
    finally:
        modelotel.shutdown()
    text = path.read_text()
    for v in ("1000.0", "1000,", '"max":1000'):
        assert v not in text  # the raw extreme never appears
    last = None
    for line in text.splitlines():
        for rm in json.loads(line).get("resourceMetrics", []):
            for sm in rm["scopeMetrics"]:
                for m in sm["metrics"]:
                    if m["name"] == conv.FEATURE_VALUE:
                        last = m["exponentialHistogram"]["dataPoints"][-1]
    assert last is not None and int(last["count"]) == len(values)
    assert LogSketch.from_otlp_point(last).quantile(0.5) == pytest.approx(2.5, rel=0.011)
