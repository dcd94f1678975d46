"""Tests for modelotel.sketch: accuracy, exact re-bucketing, the bucket limit and exact format round trips.

Hypothesis draws seeds and parameters; the data itself is generated with numpy so each example stays cheap.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from ddsketch import DDSketch, LogCollapsingLowestDenseDDSketch
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LinearlyInterpolatedMapping
from ddsketch.store import DenseStore
from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

from modelotel.sketch import (
    BucketStore,
    LogSketch,
    bucket_bounds,
    bucket_estimate,
    bucket_index,
    relative_accuracy,
    scale_base,
)

QS = (0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)
KINDS = ("lognormal", "bimodal", "pareto", "mixed")
UNLIMITED = 1 << 20  # max_buckets that no test data reaches

seeds = st.integers(0, 2**32 - 1)
kinds = st.sampled_from(KINDS)
fast = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sample(kind: str, seed: int, n: int) -> np.ndarray:
    """n values of a distribution family with seed-drawn parameters."""
    rng = np.random.default_rng(seed)
    if kind == "lognormal":
        x = rng.lognormal(rng.uniform(-8, 8), rng.uniform(0.05, 3.0), n)
    elif kind == "bimodal":  # two lognormals ~ 2**13 apart
        k = int(rng.binomial(n, rng.uniform(0.05, 0.95)))
        x = np.concatenate([rng.lognormal(-3.0, 0.4, k), rng.lognormal(6.0, 0.4, n - k)])
    elif kind == "pareto":
        x = (rng.pareto(rng.uniform(0.3, 3.0), n) + 1.0) * rng.uniform(1e-3, 10.0)
    else:  # "mixed": both signs and exact zeros
        x = rng.lognormal(rng.uniform(-3, 3), rng.uniform(0.1, 2.5), n) * rng.choice([-1.0, 1.0], n)
        x[rng.random(n) < rng.uniform(0.0, 0.3)] = 0.0
    rng.shuffle(x)
    return x


def build(x, scale: int, max_buckets: int = UNLIMITED) -> LogSketch:
    sk = LogSketch(scale=scale, max_buckets=max_buckets)
    assert sk.add_many(x) == 0
    return sk


def store_state(store: BucketStore) -> tuple[int, list[int]]:
    return (store.offset if len(store) else 0), store.counts.tolist()


def assert_same(a: LogSketch, b: LogSketch, *, x=None) -> None:
    """Bucket-for-bucket equality. ``sum`` is compared exactly unless the data ``x`` is given: then within
    1e-12 of ``sum(|x|)``, as float additions in a different order may round differently."""
    assert (a.scale, a.count, a.zero_count, a.min, a.max) == (b.scale, b.count, b.zero_count, b.min, b.max)
    assert store_state(a.positive) == store_state(b.positive)
    assert store_state(a.negative) == store_state(b.negative)
    if x is None:
        assert a.sum == b.sum
    else:
        assert abs(a.sum - b.sum) <= 1e-12 * float(np.abs(x).sum())


def within(estimate: float, exact: float, alpha: float) -> bool:
    return abs(estimate - exact) <= alpha * abs(exact) * (1 + 1e-9)


# -- accuracy --------------------------------------------------------------------------------------------


def test_relative_accuracy_per_scale():
    for scale, expected in ((4, 0.0217), (5, 0.0108), (6, 0.0054)):
        b = scale_base(scale)
        assert relative_accuracy(scale) == pytest.approx((b - 1) / (b + 1), rel=1e-12)
        assert round(relative_accuracy(scale), 4) == expected
        assert LogSketch(scale).relative_accuracy == relative_accuracy(scale)


def test_estimate_has_equal_relative_error_to_both_bucket_ends():
    for scale in (-3, 0, 5, 12):
        for v in (1e-250, 0.3, 1.0, 7.0, 1e250):
            index = bucket_index(v, scale)
            lo, hi = bucket_bounds(index, scale)
            assert lo < v <= hi
            est = bucket_estimate(index, scale)
            alpha = relative_accuracy(scale)
            assert lo < est < hi
            assert (est - lo) / lo == pytest.approx(alpha, rel=1e-9)
            assert (hi - est) / hi == pytest.approx(alpha, rel=1e-9)


@fast
@given(seed=seeds, kind=kinds, scale=st.integers(2, 8), n=st.integers(1, 3000))
def test_quantiles_within_relative_accuracy(seed, kind, scale, n):
    """The estimate and the exact lower-rank value lie in the same bucket, so the error is at most alpha.

    ``quantile(q)`` walks the buckets to the one holding sorted rank ``floor(q * (n - 1))``, which is
    exactly the element ``np.quantile(x, q, method="lower")`` returns; buckets partition the sorted order
    because the index is monotone in the value. Any ``x`` in ``(b**i, b**(i+1)]`` is within ``(b-1)/(b+1)``
    of the estimate ``2*b**(i+1)/(1+b)``; negatives mirror this, zeros are exact, and clamping to
    ``[min, max]`` only moves the estimate towards ``x``.
    """
    x = sample(kind, seed, n)
    sk = build(x, scale)
    assert sk.scale == scale and sk.count == n
    alpha = relative_accuracy(scale)
    got = sk.quantiles(QS)
    for q, est in zip(QS, got, strict=True):
        exact = float(np.quantile(x, q, method="lower"))
        assert within(est, exact, alpha), (q, est, exact)
        assert sk.quantile(q) == est
    assert got[0] == x.min() and got[-1] == x.max()  # ranks 0 and n-1 are the exact extremes


@fast
@given(seed=seeds, n=st.integers(1, 300), max_buckets=st.sampled_from([3, 8, 40, UNLIMITED]))
def test_add_matches_add_many(seed, n, max_buckets):
    """The scalar path (math.frexp/log2, incremental bucket limit) builds the same sketch as the batch one."""
    x = sample("mixed", seed, n) * 10.0 ** np.random.default_rng(seed).uniform(-30, 30, n)
    one = LogSketch(scale=8, max_buckets=max_buckets)
    for v in x.tolist():
        assert one.add(v) is True
    assert_same(one, build(x, 8, max_buckets), x=x)


# -- count_at_or_below ----------------------------------------------------------------------------------


@fast
@given(seed=seeds, kind=kinds, scale=st.integers(0, 8), n=st.integers(1, 2000))
def test_count_at_or_below_brackets_exact_count(seed, kind, scale, n):
    x = sample(kind, seed, n)
    sk = build(x, scale)
    rng = np.random.default_rng(seed + 1)
    powers = 2.0 ** rng.integers(-20, 20, 10).astype(float)
    thresholds = np.concatenate(
        [rng.choice(x, 10), x.min() * rng.uniform(0.5, 2, 5), rng.lognormal(0, 4, 10), powers, -powers, [0.0]]
    )
    thresholds = np.concatenate([thresholds, -thresholds])
    for t in thresholds.tolist():
        lo, hi = sk.count_at_or_below(t)
        exact = int(np.sum(x <= t))
        assert lo <= exact <= hi, (t, lo, exact, hi)
        if t > 0 and t < sk.max:  # only the bucket containing t is uncertain
            assert hi - lo <= sk.positive.count_at(bucket_index(t, scale))
        if t < 0 and t >= sk.min:
            assert hi - lo <= sk.negative.count_at(bucket_index(-t, scale))
    # zero and positive bucket boundaries (powers of two at scale >= 0) are exact
    for t in [0.0, *powers.tolist()]:
        lo, hi = sk.count_at_or_below(t)
        assert lo == hi == int(np.sum(x <= t)), t


def test_count_at_or_below_edges():
    sk = LogSketch(scale=3)
    assert sk.count_at_or_below(1.0) == (0, 0)
    sk.add_many([-4.0, -1.5, 0.0, 0.0, 1.0, 3.0, 3.05])
    assert sk.count_at_or_below(math.inf) == (7, 7)
    assert sk.count_at_or_below(-math.inf) == (0, 0)
    assert sk.count_at_or_below(-5.0) == (0, 0)
    assert sk.count_at_or_below(0.0) == (4, 4)
    assert sk.count_at_or_below(1.0) == (5, 5)  # 1 = 2**0 is a bucket boundary
    assert sk.count_at_or_below(3.02) == (5, 7)  # 3.0 and 3.05 share the bucket (2**(12/8), 2**(13/8)]
    assert sk.count_at_or_below(-1.5) == (1, 2)
    with pytest.raises(ValueError):
        sk.count_at_or_below(math.nan)


# -- merge, downscale, bucket limit ----------------------------------------------------------------------


@fast
@given(
    seed=seeds,
    kind=kinds,
    n=st.integers(0, 2000),
    scales=st.lists(st.integers(-2, 8), min_size=1, max_size=6),
    max_buckets=st.sampled_from([16, 160, 1024]),
)
def test_merge_equals_sketch_of_union(seed, kind, n, scales, max_buckets):
    x = sample(kind, seed, n)
    parts = np.array_split(x, np.sort(np.random.default_rng(seed).integers(0, n + 1, len(scales) - 1)))
    sketches = [build(p, s, max_buckets) for p, s in zip(parts, scales, strict=True)]
    before = [store_state(s.positive) for s in sketches]
    merged = LogSketch(scale=8, max_buckets=max_buckets)
    for s in sketches:
        merged.merge(s)
    expected = build(x, min(scales), max_buckets)
    assert_same(merged, expected, x=x)
    assert [store_state(s.positive) for s in sketches] == before  # inputs untouched


def test_merge_with_itself_doubles_counts():
    sk = build([-2.0, 0.0, 1.0, 5.0], 4)
    sk.merge(sk)
    assert (sk.count, sk.zero_count, sk.sum) == (8, 2, 8.0)
    assert sk.positive.total() == 4 and sk.negative.total() == 2


@fast
@given(seed=seeds, kind=kinds, scale=st.integers(-2, 10), by=st.integers(0, 12))
def test_downscale_equals_building_at_lower_scale(seed, kind, scale, by):
    by = min(by, scale + 10)
    x = sample(kind, seed, 1000)
    sk = build(x, scale)
    sk.downscale(by)
    assert_same(sk, build(x, scale - by))


def test_downscale_shifts_negative_indices_with_floor():
    store = BucketStore(-5, np.array([1, 2, 3, 4, 5, 6, 7], dtype=np.int64))  # indices -5..1
    store.downscale(1)
    # -5 -> -3; -4, -3 -> -2; -2, -1 -> -1; 0, 1 -> 0
    assert (store.offset, store.counts.tolist()) == (-3, [1, 5, 9, 13])
    with pytest.raises(ValueError):
        LogSketch(scale=-9).downscale(2)


@fast
@given(seed=seeds, max_buckets=st.sampled_from([3, 16, 64, 256]), n=st.integers(2, 2000))
def test_bucket_limit_downscales_minimally(seed, max_buckets, n):
    rng = np.random.default_rng(seed)
    x = np.concatenate([[1e-250, 1e250], 10.0 ** rng.uniform(-250, 250, n) * rng.choice([-1.0, 1.0], n)])
    sk = build(x, 8, max_buckets)
    assert len(sk.positive) <= max_buckets and len(sk.negative) <= max_buckets
    assert sk.scale < 8
    # exact re-bucketing: identical to building directly at the final scale without a limit ...
    assert_same(sk, build(x, sk.scale))
    # ... and the final scale is the largest that fits
    finer = build(x, sk.scale + 1)
    assert max(len(finer.positive), len(finer.negative)) > max_buckets
    alpha = sk.relative_accuracy
    for q in QS:
        assert within(sk.quantile(q), float(np.quantile(x, q, method="lower")), alpha)


def test_bucket_limit_covers_every_double():
    sk = LogSketch(scale=20, max_buckets=3)
    sk.add_many([5e-324, 1.0, 1.7976931348623157e308, -5e-324, -1.7976931348623157e308])
    assert sk.scale == -10 and len(sk.positive) == 3 and len(sk.negative) == 3
    with pytest.raises(ValueError):
        LogSketch(max_buckets=2)


# -- round trips -----------------------------------------------------------------------------------------


def otlp_json(point) -> dict:
    """The point as the collector's file exporter writes it: camelCase, int64 as strings, defaults omitted."""
    d: dict = {
        "startTimeUnixNano": str(point.start_time_unix_nano),
        "timeUnixNano": str(point.time_unix_nano),
    }
    if point.count:
        d["count"] = str(point.count)
    d["sum"] = point.sum
    if point.scale:
        d["scale"] = point.scale
    if point.zero_count:
        d["zeroCount"] = str(point.zero_count)
    for name in ("positive", "negative"):
        b = getattr(point, name)
        if b.bucket_counts:
            d[name] = {"bucketCounts": [str(c) for c in b.bucket_counts]}
            if b.offset:
                d[name] = {"offset": b.offset, **d[name]}
    d["min"], d["max"] = point.min, point.max
    return json.loads(json.dumps(d))


def otlp_proto(point) -> metrics_pb2.ExponentialHistogramDataPoint:
    p = metrics_pb2.ExponentialHistogramDataPoint(
        start_time_unix_nano=point.start_time_unix_nano,
        time_unix_nano=point.time_unix_nano,
        count=point.count,
        sum=point.sum,
        scale=point.scale,
        zero_count=point.zero_count,
        flags=point.flags,
        min=point.min,
        max=point.max,
    )
    for name in ("positive", "negative"):
        if getattr(point, name).bucket_counts:  # an unset submessage, as OTLP encoders leave it
            getattr(p, name).offset = getattr(point, name).offset
            getattr(p, name).bucket_counts.extend(getattr(point, name).bucket_counts)
    return metrics_pb2.ExponentialHistogramDataPoint.FromString(p.SerializeToString())


@fast
@given(seed=seeds, kind=kinds, scale=st.integers(-3, 10), n=st.integers(0, 1500))
def test_otlp_round_trips_are_exact(seed, kind, scale, n):
    x = sample(kind, seed, n)
    sk = build(x, scale)
    point = sk.to_otlp_point({"model": "m"}, 1, 2)
    assert (point.count, point.scale, point.zero_count, point.attributes) == (
        n,
        scale,
        sk.zero_count,
        {"model": "m"},
    )
    json.loads(point.to_json())  # plain Python ints, JSON-serialisable
    proto = otlp_proto(point)
    as_json = otlp_json(point)
    assert as_json == MessageToDict(proto)  # the builder mimics the canonical OTLP-JSON encoding
    for encoded in (point, as_json, proto):
        assert_same(LogSketch.from_otlp_point(encoded, max_buckets=UNLIMITED), sk)


def test_otlp_empty_sketch():
    sk = LogSketch()
    assert sk.count == 0 and math.isnan(sk.quantile(0.5)) and all(map(math.isnan, sk.quantiles([0.1, 1.0])))
    point = sk.to_otlp_point({}, 0, 1)
    assert (point.positive.offset, list(point.positive.bucket_counts)) == (0, [])
    assert (point.negative.offset, list(point.negative.bucket_counts)) == (0, [])
    assert (point.count, point.sum, point.min, point.max) == (0, 0.0, 0.0, 0.0)
    for encoded in (point, otlp_json(point), otlp_proto(point), {}):
        back = LogSketch.from_otlp_point(encoded)
        assert (back.count, back.min, back.max) == (0, math.inf, -math.inf)
    with pytest.raises(ValueError):
        sk.quantile(1.5)
    with pytest.raises(ValueError):
        sk.quantile(math.nan)


def test_otlp_json_without_min_max_keeps_accuracy():
    x = sample("mixed", 7, 2000)
    sk = build(x, 6)
    d = otlp_json(sk.to_otlp_point({}, 0, 1))
    del d["min"], d["max"]
    back = LogSketch.from_otlp_point(d)
    assert back.min <= x.min() and back.max >= x.max()
    for q in QS:
        assert within(back.quantile(q), float(np.quantile(x, q, method="lower")), back.relative_accuracy)


def test_otlp_point_max_scale_and_limit_on_import():
    x = sample("lognormal", 3, 1000)
    sk = build(x, 8)
    point = sk.to_otlp_point({}, 0, 1, max_scale=4)
    assert sk.scale == 8  # the original is not downscaled
    assert_same(LogSketch.from_otlp_point(point), build(x, 4))
    small = LogSketch.from_otlp_point(sk.to_otlp_point({}, 0, 1), max_buckets=8)
    assert len(small.positive) <= 8 and small.scale < 8
    assert_same(small, build(x, 8, max_buckets=8))


def test_otlp_inconsistent_point_rejected():
    with pytest.raises(ValueError, match="inconsistent"):
        LogSketch.from_otlp_point({"count": "5", "positive": {"offset": 2, "bucketCounts": ["1", "1"]}})


def test_reads_points_from_the_otel_sdk_aggregation():
    """The SDK's own exponential histogram uses the same bucket convention, bucket for bucket."""
    x = np.concatenate([sample("lognormal", 11, 500), [0.0, 0.0, 1.0, 2.0, 0.25]])
    reader = InMemoryMetricReader()
    view = View(instrument_name="h", aggregation=ExponentialBucketHistogramAggregation(max_size=2048, max_scale=6))
    provider = MeterProvider(metric_readers=[reader], views=[view])
    try:
        hist = provider.get_meter("test").create_histogram("h")
        for v in x.tolist():
            hist.record(v)
        point = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]
    finally:
        provider.shutdown()
    assert point.scale == 6
    sk = LogSketch.from_otlp_point(point)
    assert_same(sk, build(x, 6), x=x)


@fast
@given(seed=seeds, kind=kinds, scale=st.integers(-3, 10), n=st.integers(0, 1500))
def test_ddsketch_round_trip_and_quantiles(seed, kind, scale, n):
    x = sample(kind, seed, n)
    sk = build(x, scale)
    dd = sk.to_ddsketch()
    assert isinstance(dd, DDSketch) and dd._mapping.gamma == scale_base(scale)
    assert dd.count == n and dd.sum == sk.sum
    assert_same(LogSketch.from_ddsketch(dd, max_buckets=UNLIMITED), sk)
    if n:
        alpha = relative_accuracy(scale)
        for q in QS:
            theirs = float(dd.get_quantile_value(q))
            exact = float(np.quantile(x, q, method="lower"))
            assert within(theirs, exact, alpha)
            rank = math.floor(q * (n - 1))
            if 0 < rank < n - 1:  # (ranks 0 and n-1 are our exact min/max)
                # same bucket, same estimate: ddsketch's key = our index + 1; we also clamp to [min, max]
                assert min(max(theirs, sk.min), sk.max) == pytest.approx(sk.quantile(q), rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(seed=seeds, scale=st.integers(0, 8))
def test_ddsketch_key_convention(seed, scale):
    """A stock DDSketch with gamma = 2**(2**-scale) keys every (non-boundary) value at our index + 1."""
    x = sample("mixed", seed, 300)
    stock = DDSketch(relative_accuracy(scale))
    for v in x.tolist():
        stock.add(v)
    exact = build(x, scale).to_ddsketch()
    for v in np.abs(x[x != 0]).tolist():
        assert stock._mapping.key(v) == exact._mapping.key(v) == bucket_index(v, scale) + 1
    assert_same(LogSketch.from_ddsketch(stock, max_buckets=UNLIMITED), build(x, scale), x=x)


def test_from_ddsketch_rejects_foreign_gamma_and_mappings():
    sk = DDSketch(0.01)
    sk.add(1.0)
    with pytest.raises(ValueError, match=r"not 2\*\*\(2\*\*-scale\)"):
        LogSketch.from_ddsketch(sk)
    linear = BaseDDSketch(LinearlyInterpolatedMapping(relative_accuracy(5)), DenseStore(), DenseStore(), 0.0)
    with pytest.raises(ValueError, match="LogarithmicMapping"):
        LogSketch.from_ddsketch(linear)
    collapsed = LogCollapsingLowestDenseDDSketch(relative_accuracy(5), bin_limit=10)
    for v in (1e-3, 1.0, 1e3):
        collapsed.add(v)
    with pytest.raises(ValueError, match="collapsed"):
        LogSketch.from_ddsketch(collapsed)
    weighted = LogSketch(5).to_ddsketch()
    weighted.add(3.0, weight=0.5)
    with pytest.raises(ValueError, match="non-integer"):
        LogSketch.from_ddsketch(weighted)


# -- insertion edge cases --------------------------------------------------------------------------------


def test_non_finite_values_are_dropped_and_counted():
    sk = LogSketch()
    assert sk.add(math.nan) is False and sk.add(math.inf) is False and sk.add(-math.inf) is False
    assert sk.count == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and without numpy RuntimeWarnings (inf - inf, overflow)
        assert sk.add_many([1.0, math.nan, math.inf, -math.inf, 2.0]) == 3
        assert (sk.count, sk.sum, sk.min, sk.max) == (2, 3.0, 1.0, 2.0)
        assert sk.add_many(np.full(10, np.nan)) == 10 and sk.count == 2
        assert sk.add_many(np.array([], dtype=float)) == 0
        assert sk.add_many([1e308, 1e308]) == 0  # finite values whose sum overflows are kept
    assert sk.count == 4 and sk.sum == math.inf and sk.positive.total() == 4


@pytest.mark.parametrize("scale", [-4, -1, 0, 1, 5, 8, 20])
def test_powers_of_two_land_in_the_bucket_they_bound(scale):
    exps = np.arange(-1074, 1024)
    x = 2.0 ** exps.astype(float)
    expected = np.ceil(np.ldexp(exps.astype(float), scale)).astype(np.int64) - 1
    assert [bucket_index(v, scale) for v in x.tolist()] == expected.tolist()
    if scale >= 0:  # every power of two is a boundary: it is the upper bound of its bucket
        assert expected.tolist() == (exps * 2**scale - 1).tolist()
        for e in (-1022, -3, 0, 1, 7, 1023):
            assert bucket_bounds(bucket_index(2.0**e, scale), scale)[1] == 2.0**e
            # float neighbours fall on the correct sides (plain ceil(log2(v) * 2**s) misplaces the upper one)
            assert bucket_index(math.nextafter(2.0**e, math.inf), scale) == (e << scale)
            assert bucket_index(math.nextafter(2.0**e, 0.0), scale) == (e << scale) - 1
    if scale > 8:  # one octave is 2**scale dense buckets: keep two at scale 20
        x, expected = x[1074:1076], expected[1074:1076]
    both = LogSketch(scale=scale, max_buckets=1 << 22)
    assert both.add_many(np.concatenate([x, -x])) == 0
    one = LogSketch(scale=scale, max_buckets=1 << 22)
    assert both.scale == scale
    for v in x.tolist():
        one.add(v)
        one.add(-v)
    for sk in (both, one):
        for store in (sk.positive, sk.negative):
            idx, counts = np.unique(expected, return_counts=True)
            assert dict(store.items()) == dict(zip(idx.tolist(), counts.tolist(), strict=True))


def test_clear_copy_and_zero_bucket():
    sk = LogSketch(scale=8, max_buckets=4)
    sk.add_many([0.0, -0.0, 1e-9, 1e9])
    assert sk.zero_count == 2 and sk.scale < 8
    dup = sk.copy()
    dup.add(5.0)
    assert sk.count == 4 and dup.count == 5 and sk.positive.total() == 2
    sk.clear()
    assert (sk.scale, sk.count, sk.zero_count, sk.sum, sk.min, sk.max) == (8, 0, 0, 0.0, math.inf, -math.inf)
    assert len(sk.positive) == 0 and dup.count == 5
    assert sk.quantile(0.5) != sk.quantile(0.5)  # nan
    sk.add(0.0)
    assert sk.add_many(np.zeros(3)) == 0
    assert (sk.count, sk.zero_count, len(sk.positive), len(sk.negative)) == (4, 4, 0, 0)
    assert sk.quantile(0.5) == 0.0 and sk.count_at_or_below(0.0) == (4, 4)
