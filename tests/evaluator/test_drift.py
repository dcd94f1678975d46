"""Drift statistics from sketches against exact computations on the raw data (scipy/numpy).

Exactness claims (docs/quality.md): PSI, JS and Hellinger from sketches equal the same formulas applied to the
raw values binned on the same bucket grid; the sketch KS statistic is exact at bucket edges and
``statistic <= scipy's ks_2samp statistic <= upper``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp, kstwobign

from modelotel.evaluator.quality import drift as dr
from modelotel.sketch import LogSketch, bucket_bounds, bucket_index

seeds = st.integers(0, 2**32 - 1)
fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KINDS = ("lognormal", "signed", "narrow", "discrete")


def sample(kind: str, rng: np.random.Generator, n: int, shift: float) -> np.ndarray:
    """n values of a family, shifted by ``shift`` (log scale for positive families)."""
    if kind == "lognormal":
        return rng.lognormal(shift, rng.uniform(0.2, 2.0), n)
    if kind == "signed":  # both signs and exact zeros
        x = rng.normal(shift, 1.0, n)
        x[rng.random(n) < 0.1] = 0.0
        return x
    if kind == "narrow":  # mass concentrated in a few buckets: deciles collapse
        return rng.normal(1.0 + shift * 0.01, 0.002, n)
    return rng.integers(0, 5, n).astype(np.float64) + shift  # ties, zeros


def sketch_of(x: np.ndarray, scale: int, max_buckets: int = 1 << 16) -> LogSketch:
    sk = LogSketch(scale, max_buckets)
    sk.add_many(x)
    return sk


def cell_key(v: float, scale: int) -> float:
    """Upper edge of the cell holding v: distinct per cell and increasing with the cell's values."""
    if v > 0:
        return bucket_bounds(bucket_index(v, scale), scale)[1]
    if v < 0:
        return -bucket_bounds(bucket_index(-v, scale), scale)[0]
    return 0.0


def keys_of(x: np.ndarray, scale: int) -> np.ndarray:
    return np.array([cell_key(float(v), scale) for v in x])


def binned(ref_keys: np.ndarray, cur_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw values counted per cell: (cells, reference counts, current counts)."""
    cells = np.union1d(ref_keys, cur_keys)
    p = np.array([np.count_nonzero(ref_keys == c) for c in cells], dtype=np.float64)
    q = np.array([np.count_nonzero(cur_keys == c) for c in cells], dtype=np.float64)
    return cells, p, q


def raw_psi_on_cells(ref: np.ndarray, ref_keys: np.ndarray, cur_keys: np.ndarray, bins: int, eps: float) -> float:
    """PSI with boundaries at the cells of the raw reference deciles, computed from the raw values."""
    order = np.sort(ref)
    n = len(ref)
    ranks = [math.floor(k / bins * (n - 1)) for k in range(1, bins)]
    scale_keys = {float(v): k for v, k in zip(ref, ref_keys, strict=True)}
    cuts = np.unique([scale_keys[float(order[r])] for r in ranks])
    p = np.bincount(np.searchsorted(cuts, ref_keys, side="left"), minlength=len(cuts) + 1) / len(ref_keys)
    q = np.bincount(np.searchsorted(cuts, cur_keys, side="left"), minlength=len(cuts) + 1) / len(cur_keys)
    p, q = np.maximum(p, eps), np.maximum(q, eps)
    return float(np.sum((q - p) * np.log(q / p)))


@fast
@given(
    seed=seeds,
    kind=st.sampled_from(KINDS),
    scales=st.tuples(st.integers(-1, 8), st.integers(-1, 8)),
    sizes=st.tuples(st.integers(1, 1500), st.integers(1, 1500)),
    shift=st.floats(-1.0, 1.0),
    max_buckets=st.sampled_from([16, 160, 1 << 16]),
)
def test_statistics_equal_raw_data_on_the_bucket_grid(seed, kind, scales, sizes, shift, max_buckets):
    rng = np.random.default_rng(seed)
    ref = sample(kind, rng, sizes[0], 0.0)
    cur = sample(kind, rng, sizes[1], shift)
    a, b = sketch_of(ref, scales[0], max_buckets), sketch_of(cur, scales[1], max_buckets)
    scale = min(a.scale, b.scale)  # building may have downscaled either
    ref_keys, cur_keys = keys_of(ref, scale), keys_of(cur, scale)
    cells, p_cnt, q_cnt = binned(ref_keys, cur_keys)
    p, q = p_cnt / p_cnt.sum(), q_cnt / q_cnt.sum()

    grid = dr.sketch_cells(a, b)
    assert grid.scale == scale
    np.testing.assert_allclose(grid.upper, cells, rtol=1e-14)  # same cells (edges to 1 ulp), same order
    np.testing.assert_array_equal(grid.counts[0], p_cnt)
    np.testing.assert_array_equal(grid.counts[1], q_cnt)

    assert dr.js_distance(a, b) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
    assert dr.hellinger(a, b) == pytest.approx(math.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2) / 2), abs=1e-12)
    result = dr.psi(a, b)
    assert result.value == pytest.approx(raw_psi_on_cells(ref, ref_keys, cur_keys, 10, dr.DEFAULT_EPSILON), abs=1e-12)
    assert sum(result.reference) == pytest.approx(1.0) and len(result.edges) <= 10

    k = dr.ks(a, b)
    with np.errstate(divide="ignore"):  # scipy's asymptotic p-value divides by n - 1 (unused here)
        exact = ks_2samp(ref, cur, method="asymp").statistic
    assert k.statistic - 1e-12 <= exact <= k.upper + 1e-12
    # exact at the edges: the statistic is the KS statistic of the binned raw data
    f, g = np.cumsum(p), np.cumsum(q)
    assert k.statistic == pytest.approx(np.max(np.abs(f - g)), abs=1e-12)
    # and the upper bound exceeds it by at most one cell's mass
    assert k.upper - k.statistic <= max(p.max(), q.max()) + 1e-12


def test_identical_distributions_have_zero_drift_and_shifts_are_detected():
    rng = np.random.default_rng(7)
    x = rng.lognormal(0.0, 0.5, 20_000)
    a = sketch_of(x, 5)
    same = dr.drift(a, a.copy())
    assert same.values() == {"psi": 0.0, "js": 0.0, "hellinger": 0.0, "ks": 0.0}
    assert not any(same.drifted.values())
    shifted = dr.drift(a, sketch_of(rng.lognormal(0.5, 0.5, 20_000), 5))
    assert shifted.psi.tier == "significant" and all(shifted.drifted.values())
    assert shifted.ks.statistic > shifted.ks.critical_value(0.05) and shifted.ks.pvalue() < 1e-6


def test_deciles_collapse_when_one_bucket_holds_most_of_the_reference():
    ref = sketch_of(np.r_[np.full(900, 2.0), np.linspace(3, 4, 100)], 5)
    result = dr.psi(ref, ref.copy())
    assert len(result.edges) < 10 and result.edges[0] == 2.0  # 2.0 is a bucket upper edge (a power of two)
    assert result.reference[0] == pytest.approx(0.9)


def test_categorical_statistics_equal_raw_formulas():
    rng = np.random.default_rng(3)
    classes = np.array(["cat", "dog", "bird", "__other__"])
    ref = rng.choice(classes, 5000, p=[0.5, 0.3, 0.2, 0.0])
    cur = rng.choice(classes, 3000, p=[0.4, 0.3, 0.2, 0.1])
    rc = {str(k): int(v) for k, v in zip(*np.unique(ref, return_counts=True), strict=True)}
    cc = {str(k): int(v) for k, v in zip(*np.unique(cur, return_counts=True), strict=True)}
    p = np.array([np.mean(ref == c) for c in classes])
    q = np.array([np.mean(cur == c) for c in classes])
    assert dr.js_distance(rc, cc) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
    assert dr.hellinger(rc, cc) == pytest.approx(math.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2) / 2), abs=1e-12)
    pf, qf = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
    result = dr.psi(rc, cc)
    assert result.value == pytest.approx(np.sum((qf - pf) * np.log(qf / pf)), abs=1e-12)
    assert set(result.edges) == set(classes)  # a label new in the current window is its own bin
    assert dr.drift(rc, cc).ks is None


@fast
@given(seed=seeds, n_chunks=st.integers(2, 8), kind=st.sampled_from(KINDS))
def test_data_driven_threshold_is_mean_plus_3_sigma_of_chunk_vs_rest(seed, n_chunks, kind):
    rng = np.random.default_rng(seed)
    raw = [sample(kind, rng, int(rng.integers(50, 400)), 0.0) for _ in range(n_chunks)]
    chunks = [sketch_of(x, 4) for x in raw]
    got = dr.data_driven_threshold(chunks, dr.js_distance)
    # reference computation: each rest built from the concatenated raw values, binned on the grid
    values = []
    for i, x in enumerate(raw):
        rest = np.concatenate(raw[:i] + raw[i + 1 :])
        _, p, q = binned(keys_of(rest, 4), keys_of(x, 4))
        values.append(jensenshannon(p / p.sum(), q / q.sum(), base=2))
    assert got.chunk_values == pytest.approx(values, abs=1e-12)
    assert got.value == pytest.approx(np.mean(values) + 3 * np.std(values), abs=1e-12)


def test_data_driven_thresholds_flag_a_shift_and_not_the_reference_itself():
    rng = np.random.default_rng(11)
    chunks = [sketch_of(rng.normal(10, 1, 2000), 5) for _ in range(12)]
    reference = chunks[0].copy()
    for c in chunks[1:]:
        reference.merge(c)
    calm = dr.drift(reference, sketch_of(rng.normal(10, 1, 2000), 5), chunks=chunks)
    moved = dr.drift(reference, sketch_of(rng.normal(10.3, 1, 2000), 5), chunks=chunks)
    for name in ("psi", "js", "hellinger", "ks"):
        assert calm.values()[name] <= calm.data_driven[name].value, name
        assert moved.values()[name] > moved.data_driven[name].value, name
        assert moved.drifted[name] and not calm.drifted[name], name


@settings(max_examples=200, deadline=None)
@given(d=st.floats(0.0, 1.0), n=st.integers(1, 10**6), m=st.integers(1, 10**6))
def test_ks_pvalue_is_the_kolmogorov_survival_function(d, n, m):
    lam = d * math.sqrt(n * m / (n + m))
    assert dr.ks_pvalue(d, n, m) == pytest.approx(kstwobign.sf(lam), abs=1e-12)


def test_ks_critical_value_matches_the_asymptotic_distribution():
    n, m = 4000, 6000
    crit = dr.ks_critical_value(n, m, 0.05)
    assert kstwobign.sf(crit * math.sqrt(n * m / (n + m))) == pytest.approx(0.05, rel=1e-3)


def test_bad_inputs_have_clear_errors():
    a = sketch_of(np.array([1.0, 2.0]), 5)
    with pytest.raises(ValueError, match="current distribution is empty"):
        dr.psi(a, LogSketch())
    with pytest.raises(ValueError, match="reference distribution is empty"):
        dr.js_distance({"a": 0}, {"a": 3})
    with pytest.raises(TypeError, match="both be sketches"):
        dr.hellinger(a, {"a": 3})
    with pytest.raises(TypeError, match="no order"):
        dr.ks({"a": 1}, {"a": 2})
    with pytest.raises(ValueError, match="at least 2 non-empty"):
        dr.data_driven_threshold([a, LogSketch()], dr.js_distance)


def test_ks_is_exact_when_no_bucket_holds_both_distributions_except_zero():
    ref = sketch_of(np.r_[np.zeros(90), np.full(10, 5.0)], 5)
    cur = sketch_of(np.r_[np.full(50, -1.0), np.zeros(50)], 5)
    k = dr.ks(ref, cur)
    assert (
        k.statistic
        == k.upper
        == ks_2samp(np.r_[np.zeros(90), np.full(10, 5.0)], np.r_[np.full(50, -1.0), np.zeros(50)]).statistic
    )
