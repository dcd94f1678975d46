"""Issue 14: missing features are counted whatever the call's outcome, and frames are read by column name.

Every expectation is computed exactly from the raw inputs (counts of None/NaN, of finite values, of
categories); the frames are real pandas, polars and pyarrow objects.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections import Counter

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

import modelotel
from modelotel import conventions as conv
from modelotel.ood import MahalanobisScorer
from modelotel.sketch import LogSketch

from conftest import MemoryMetricExporter, total_count

_ids = itertools.count()


def _name(prefix: str) -> str:
    """A model name of its own per model, so its series are not shared with another test's."""
    return f"{prefix}-{next(_ids)}"


def _missing(exporter, model: str) -> int:
    modelotel.force_flush()
    return total_count(exporter.last_points(conv.FEATURES_MISSING_METRIC), **{conv.MODEL_NAME: model})


def _dropped(exporter, reason: str) -> int:
    modelotel.force_flush()
    return total_count(exporter.last_points(conv.DROPPED), **{conv.DROP_REASON: reason})


def _feature_points(exporter, model: str) -> dict[str, object]:
    return {
        p.attributes[conv.FEATURE_NAME]: p
        for p in exporter.last_points(conv.FEATURE_VALUE)
        if p.attributes[conv.MODEL_NAME] == model
    }


def _categories(exporter, model: str, feature: str) -> Counter:
    return Counter(
        {
            p.attributes[conv.FEATURE_CATEGORY]: p.value
            for p in exporter.last_points(conv.FEATURE_CATEGORY_METRIC)
            if p.attributes[conv.MODEL_NAME] == model and p.attributes[conv.FEATURE_NAME] == feature
        }
    )


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _sklearn_model() -> LogisticRegression:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    return LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))


# -- 1. missing features whatever the outcome ------------------------------------------------------

ROW = [np.nan, 1.0, np.nan, 2.0]  # two missing values


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.array(ROW),  # a small float vector: the deferred path on success
        lambda: np.array(ROW, dtype=np.float32),
        lambda: np.array([ROW] * 40),  # a batch: its bytes are kept too
        lambda: np.array([ROW] * 2000),  # too large to copy: counted in the call
        lambda: list(ROW),
        lambda: pd.DataFrame([ROW, ROW], columns=["a", "b", "c", "d"]),
    ],
    ids=["float64", "float32", "batch", "large-batch", "list", "pandas"],
)
def test_missing_features_are_counted_when_scikit_learn_rejects_nan(memory_exporter, make):
    clf = _sklearn_model()
    name = _name("sk")

    @modelotel.instrument_model(name=name)
    def predict(x):
        return clf.predict_proba(np.asarray(x, dtype=np.float64).reshape(-1, 4))

    x = make()
    with pytest.raises(ValueError) as info:
        clf.predict_proba(np.asarray(x, dtype=np.float64).reshape(-1, 4))
    expected_message = str(info.value)
    with pytest.raises(ValueError) as info:
        predict(x)
    assert str(info.value) == expected_message  # scikit-learn's own error, untouched
    n_rows = len(x) if isinstance(x, (np.ndarray, pd.DataFrame)) and x.ndim == 2 else 1
    assert _missing(memory_exporter, name) == 2 * n_rows
    durations = memory_exporter.last_points(conv.INFERENCE_DURATION)
    assert total_count(durations, **{conv.MODEL_NAME: name, conv.ERROR_TYPE: "ValueError"}) == 1


def test_the_same_exception_object_propagates_and_the_count_never_raises(memory_exporter):
    raised = RuntimeError("rejects NaN")
    name = _name("same")

    class Hostile:
        """An input whose NaN check itself fails: the count is an internal error, never the caller's."""

        def __array__(self, *args, **kwargs):
            raise TypeError("no array for you")

    @modelotel.instrument_model(name=name)
    def predict(x):
        raise raised

    for x in ({"a": None, "b": float("nan"), "c": 1.0}, Hostile()):
        with pytest.raises(RuntimeError) as info:
            predict(x)
        assert info.value is raised
        assert info.value.__context__ is None and info.value.__cause__ is None
    assert _missing(memory_exporter, name) == 2


def test_async_failure_counts_missing_features(memory_exporter):
    name = _name("async")

    @modelotel.instrument_model(name=name)
    async def predict(x):
        await asyncio.sleep(0)
        raise ValueError("Input X contains NaN")

    with pytest.raises(ValueError, match="contains NaN"):
        asyncio.run(predict(np.array([np.nan, np.nan, 3.0])))
    assert _missing(memory_exporter, name) == 2


def test_streams_count_missing_features_whether_they_finish_or_fail(memory_exporter):
    name = _name("stream")

    @modelotel.instrument_model(name=name)
    def stream(x, fail_at=None):
        for i, v in enumerate(x):
            if i == fail_at:
                raise ValueError("NaN mid-stream")
            yield v

    assert len(list(stream(np.array([1.0, np.nan])))) == 2  # one missing, the stream finishes
    with pytest.raises(ValueError, match="mid-stream"):
        list(stream(np.array([np.nan, np.nan, 1.0, 2.0]), fail_at=3))  # two missing, fails after three items
    g = stream([None, 1.0, 2.0])  # one missing, abandoned after one item
    next(g)
    g.close()
    assert _missing(memory_exporter, name) == 4

    async_name = _name("astream")

    @modelotel.instrument_model(name=async_name)
    async def astream(x):
        yield 1
        raise ValueError("NaN")

    async def consume():
        async for _ in astream({"a": None, "b": None}):
            pass

    with pytest.raises(ValueError):
        asyncio.run(consume())
    assert _missing(memory_exporter, async_name) == 2


def test_a_failed_traced_call_puts_its_missing_count_on_the_span(spans):
    exporter = MemoryMetricExporter()
    modelotel.configure(exporter=exporter, export_interval=3600, traces="span")
    name = _name("traced")
    try:

        @modelotel.instrument_model(name=name)
        def predict(x):
            raise ValueError("Input X contains NaN")

        with pytest.raises(ValueError):
            predict(np.array([np.nan, 0.5, np.nan]))
        missing = _missing(exporter, name)
    finally:
        modelotel.shutdown()
    (span,) = [s for s in spans.get_finished_spans() if s.attributes.get(conv.MODEL_NAME) == name]
    assert span.attributes[conv.FEATURES_MISSING] == 2
    assert missing == 2


_cell = st.one_of(st.none(), st.just(float("nan")), st.floats(-1e6, 1e6))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(_cell, min_size=3, max_size=3), min_size=1, max_size=5), fails=st.booleans())
def test_missing_count_is_exact_whatever_the_outcome(memory_exporter, rows, fails):
    name = _name("prop-missing")

    @modelotel.instrument_model(name=name)
    def predict(x):
        if fails:
            raise ValueError("NaN")
        return np.array([0.5, 0.5])

    exact = sum(_is_missing(v) for row in rows for v in row)
    inputs = [rows[0], {"a": [r[0] for r in rows], "b": [r[1] for r in rows], "c": [r[2] for r in rows]}]
    inputs.append(np.array([[np.nan if v is None else v for v in row] for row in rows]))
    for x in inputs:
        try:
            predict(x)
        except ValueError:
            assert fails
    first_row = sum(_is_missing(v) for v in rows[0])
    assert _missing(memory_exporter, name) == first_row + 2 * exact


# -- 2. frames are read by column name -------------------------------------------------------------


def test_numeric_feature_of_a_dataframe_is_exported(memory_exporter):
    """The finding verbatim: numeric_features=["amount"] on a frame with an amount column exported nothing."""
    name = _name("amount")
    amounts = [12.5, 80.0, 3.25, np.nan, 1000.0]

    @modelotel.instrument_model(name=name, numeric_features=["amount"])
    def predict(df):
        return np.full((len(df), 2), 0.5)

    predict(pd.DataFrame({"customer": [1, 2, 3, 4, 5], "amount": amounts}))
    modelotel.force_flush()
    point = _feature_points(memory_exporter, name)["amount"]
    sketch = LogSketch.from_otlp_point(point)
    assert sketch.count == 4  # every row's value but the missing one (counted as missing instead)
    assert sketch.quantile(0.5) == pytest.approx(12.5, rel=sketch.relative_accuracy)
    assert _missing(memory_exporter, name) == 1


FEATURES = ["amount", "age", "ratio"]


def _frames(data: dict[str, list]) -> dict[str, object]:
    """The same columns as every kind of frame the decorator reads by name."""
    return {
        "pandas": pd.DataFrame(data),
        "polars": pl.DataFrame(data, strict=False),
        "pyarrow": pa.table(data),
        "dict-of-columns": dict(data),
    }


def _reordered(data: dict[str, list]) -> dict[str, list]:
    return {k: data[k] for k in reversed(list(data))}


@pytest.mark.parametrize("kind", ["pandas", "polars", "pyarrow", "dict-of-columns"])
def test_reordered_columns_give_the_same_distributions_ood_scores_and_missing_counts(memory_exporter, kind):
    rng = np.random.default_rng(7)
    train = np.column_stack([rng.lognormal(3, 1, 500), rng.integers(18, 90, 500), rng.normal(0, 1, 500)])
    scorer = MahalanobisScorer().fit(train)
    scorer.threshold = float(np.quantile(scorer.score(train), 0.9))
    n = 50
    data = {
        "amount": rng.lognormal(3, 1, n).tolist(),
        "age": rng.integers(18, 90, n).astype(float).tolist(),
        "ratio": rng.normal(0, 3, n).tolist(),
    }
    data["age"][3] = None
    data["ratio"][7] = float("nan")
    data["ratio"][9] = float("nan")
    expected_scores = scorer.score(np.array([data[f] for f in FEATURES], dtype=np.float64).T)

    results = {}
    for label, columns in (("ordered", data), ("reordered", _reordered(data))):
        name = _name(f"{kind}-{label}")

        @modelotel.instrument_model(
            name=name, feature_names=FEATURES, numeric_features=["amount", "age"], ood=scorer
        )
        def predict(x):
            return np.full((n, 2), 0.5)

        frame = _frames(columns)[kind]
        predict(frame)
        modelotel.force_flush()
        points = _feature_points(memory_exporter, name)
        ood = [p for p in memory_exporter.last_points(conv.OOD_SCORE_METRIC) if p.attributes[conv.MODEL_NAME] == name]
        outliers = total_count(memory_exporter.last_points(conv.OOD_OUTLIERS), **{conv.MODEL_NAME: name})
        results[label] = (
            {f: (p.count, list(p.positive.bucket_counts), p.positive.offset) for f, p in points.items()},
            (ood[0].count, list(ood[0].positive.bucket_counts), ood[0].positive.offset),
            outliers,
            _missing(memory_exporter, name),
        )
        assert points["amount"].count == n
        assert points["age"].count == n - 1  # the missing age is counted as missing, not as a value
        assert LogSketch.from_otlp_point(points["amount"]).quantile(0.5) == pytest.approx(
            float(np.quantile(data["amount"], 0.5, method="lower")), rel=0.011
        )
        # the scorer saw the columns in feature_names order: its scores are the directly computed ones
        finite = expected_scores[np.isfinite(expected_scores)]
        assert ood[0].count == finite.size
        assert outliers == int(np.count_nonzero(finite > scorer.threshold))
        assert LogSketch.from_otlp_point(ood[0]).quantile(0.5) == pytest.approx(
            float(np.quantile(finite, 0.5, method="lower")), rel=0.011
        )
    assert results["ordered"] == results["reordered"]
    assert results["ordered"][3] == 3


def test_a_series_row_is_read_by_its_index_labels(memory_exporter):
    name = _name("series")

    @modelotel.instrument_model(name=name, feature_names=FEATURES, numeric_features=["amount"])
    def predict(row):
        return np.array([0.5, 0.5])

    predict(pd.Series({"ratio": 0.5, "amount": 250.0, "age": np.nan}))  # not in feature_names order
    modelotel.force_flush()
    point = _feature_points(memory_exporter, name)["amount"]
    assert point.count == 1 and point.min <= 250.0 <= point.max
    assert _missing(memory_exporter, name) == 1


def test_missing_count_of_a_frame_covers_the_named_features_of_every_row(memory_exporter):
    name = _name("named-missing")

    @modelotel.instrument_model(name=name, feature_names=["a", "b"])
    def predict(df):
        return np.full((len(df), 2), 0.5)

    df = pd.DataFrame({"request_id": [None, None, None], "b": [1.0, np.nan, np.nan], "a": [np.nan, 2.0, 3.0]})
    predict(df)
    assert _missing(memory_exporter, name) == 3  # request_id is not a feature


def test_a_feature_the_frame_lacks_is_counted_and_logged_once(memory_exporter, caplog):
    name = _name("lacks")
    out = np.full((4, 2), 0.5)

    @modelotel.instrument_model(name=name, numeric_features=["amount", "age"])
    def predict(df):
        return out

    df = pd.DataFrame({"amount": [1.0, 2.0, 3.0, 4.0], "agee": [30.0, 40.0, 50.0, 60.0]})
    before = _dropped(memory_exporter, "feature_not_found")
    with caplog.at_level(logging.WARNING, logger="modelotel"):
        assert predict(df) is out
        assert predict(df) is out
    assert _dropped(memory_exporter, "feature_not_found") - before == 8  # 4 rows x 2 calls
    logged = [r.getMessage() for r in caplog.records if "feature_not_found" in r.getMessage()]
    assert len(logged) == 1 and name in logged[0] and "'age'" in logged[0] and "'agee'" in logged[0]
    assert _feature_points(memory_exporter, name)["amount"].count == 8  # the columns it has are still read


@pytest.mark.parametrize("small", [True, False], ids=["deferred-rows", "read-in-call"])
def test_arrays_that_cannot_be_placed_are_counted(memory_exporter, small):
    unnamed, narrow = _name("unnamed"), _name("narrow")
    x = np.array([1.0, 2.0, 3.0]) if small else np.ones((100, 3))
    rows = 1 if small else 100

    @modelotel.instrument_model(name=unnamed, numeric_features=["amount"])
    def no_names(x):
        return np.array([0.5, 0.5])

    @modelotel.instrument_model(name=narrow, feature_names=["amount", "age"], numeric_features=["amount"])
    def wrong_width(x):
        return np.array([0.5, 0.5])

    before = _dropped(memory_exporter, "feature_not_found"), _dropped(memory_exporter, "feature_width_mismatch")
    no_names(x)
    wrong_width(x)
    after = _dropped(memory_exporter, "feature_not_found"), _dropped(memory_exporter, "feature_width_mismatch")
    assert (after[0] - before[0], after[1] - before[1]) == (rows, rows)
    assert not _feature_points(memory_exporter, unnamed) and not _feature_points(memory_exporter, narrow)


_SCORER_OF_3 = MahalanobisScorer().fit(np.random.default_rng(1).normal(size=(50, 3)))


@pytest.mark.parametrize(
    "options, match",
    [
        ({"feature_names": ["amount", "age"], "numeric_features": ["amuont"]}, "not in feature_names"),
        ({"feature_names": ["amount", "age"], "categorical_features": ["country"]}, "not in feature_names"),
        ({"feature_names": ["amount", "age", "amount"]}, "more than once"),
        ({"numeric_features": "amount"}, "not one string"),
        ({"feature_names": "amount"}, "not one string"),
        ({"features": "featurez"}, "no such parameter"),
        ({"feature_names": ["a", "b"], "ood": _SCORER_OF_3}, "fitted on 3 features"),
    ],
)
def test_features_that_can_never_resolve_are_refused_at_decoration(options, match):
    def predict(features):
        return features

    with pytest.raises(modelotel.ConfigError, match=match):
        modelotel.instrument_model(name="bad", **options)(predict)


def test_features_may_name_a_keyword_parameter(memory_exporter):
    @modelotel.instrument_model(name="kw", features="rows")
    def predict(model_id, *, rows):
        return rows

    @modelotel.instrument_model(name="kwargs", features="rows")
    def predict_any(**kwargs):
        return kwargs

    assert predict("m", rows=[1.0]) == [1.0]


def _frame_of(kind: str, data: dict[str, list]):
    if kind == "pandas":
        return pd.DataFrame(data)
    if kind == "polars":
        return pl.DataFrame(data, strict=False)
    if kind == "pyarrow":
        return pa.table(data)
    return dict(data)


_num = st.one_of(st.none(), st.just(float("nan")), st.floats(-1e9, 1e9), st.integers(-1000, 1000).map(float))
_cat = st.one_of(st.none(), st.sampled_from(["DE", "FR", "US", "NO"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 12),
    data=st.data(),
    kind=st.sampled_from(["pandas", "polars", "pyarrow", "dict-of-columns"]),
    order=st.permutations(["amount", "age", "country", "id"]),
    fails=st.booleans(),
)
def test_frame_counts_are_exact(memory_exporter, n, data, kind, order, fails):
    """Missing count and feature distribution counts against an exact count of the raw columns."""
    columns = {
        "amount": data.draw(st.lists(_num, min_size=n, max_size=n)),
        "age": data.draw(st.lists(_num, min_size=n, max_size=n)),
        "country": data.draw(st.lists(_cat, min_size=n, max_size=n)),
        "id": data.draw(st.lists(_num, min_size=n, max_size=n)),  # not a feature: its NaNs do not count
    }
    name = _name("prop-frame")

    @modelotel.instrument_model(
        name=name,
        feature_names=["amount", "age", "country"],
        numeric_features=["amount", "age"],
        categorical_features=["country"],
    )
    def predict(x):
        if fails:
            raise ValueError("NaN")
        return np.full((n, 2), 0.5)

    frame = _frame_of(kind, {k: columns[k] for k in order})
    try:
        predict(frame)
    except ValueError:
        assert fails
    exact_missing = sum(_is_missing(v) for f in ("amount", "age", "country") for v in columns[f])
    assert _missing(memory_exporter, name) == exact_missing
    points = _feature_points(memory_exporter, name)
    categories = _categories(memory_exporter, name, "country")
    if fails:  # a failed call records no distributions
        assert not points and not categories
        return
    for f in ("amount", "age"):
        exact = sum(not _is_missing(v) for v in columns[f])
        assert (points[f].count if f in points else 0) == exact
    assert categories == Counter(v for v in columns["country"] if v is not None)


@pytest.mark.parametrize("kind", ["pandas", "polars", "pyarrow"])
def test_opted_in_raw_features_of_a_one_row_frame_are_read_by_name(spans, kind):
    """raw_features=["amount"] on a one-row frame put nothing on the span (frames were not read at all); with the
    columns in another order the value must still be the amount, never another column's."""
    exporter = MemoryMetricExporter()
    modelotel.configure(exporter=exporter, export_interval=3600, traces="span")
    name = _name(f"raw-{kind}")
    try:

        @modelotel.instrument_model(name=name, raw_features=["amount"], feature_names=["amount", "ratio"])
        def predict(x):
            return np.array([0.9, 0.1])

        for data in ({"amount": [120.5], "ratio": [0.25]}, {"ratio": [0.25], "amount": [120.5]}):
            predict(_frames(data)[kind])
    finally:
        modelotel.shutdown()
    found = [s for s in spans.get_finished_spans() if s.attributes.get(conv.MODEL_NAME) == name]
    assert [s.attributes.get(conv.FEATURE_PREFIX + "amount") for s in found] == [120.5, 120.5]
    assert not any(conv.FEATURE_PREFIX + "ratio" in s.attributes for s in found)  # not opted in
