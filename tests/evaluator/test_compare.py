"""Canary comparison: the statistics against scipy / raw data, and verdicts on generated canary scenarios."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.stats import binom, binomtest, fisher_exact, norm

from modelotel.evaluator.quality.compare import (
    Arm,
    Tolerances,
    compare,
    compare_proportions,
    fisher_exact_pvalue,
    order_statistic_ranks,
    quantile_interval,
    wilson_interval,
)
from modelotel.sketch import LogSketch

fast = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sketch_of(x: np.ndarray, scale: int = 5) -> LogSketch:
    sk = LogSketch(scale)
    sk.add_many(x)
    return sk


# -- quantile intervals --------------------------------------------------------------------------------------


@fast
@given(n=st.integers(1, 200_000), q=st.sampled_from([0.01, 0.5, 0.9, 0.95, 0.99, 0.999]), level=st.floats(0.5, 0.999))
def test_order_statistic_ranks_match_scipy_binomial(n, q, level):
    a = (1 - level) / 2
    lo, hi = order_statistic_ranks(n, q, level)
    centre = int(n * q)
    window = np.arange(
        max(0, centre - 20 * int(math.sqrt(n) + 1) - 20), min(n, centre + 20 * int(math.sqrt(n) + 1) + 20) + 1
    )
    cdf = binom.cdf(window, n, q)
    assume(not np.any(np.abs(cdf - a) < 1e-9) and not np.any(np.abs(cdf - (1 - a)) < 1e-9))  # float ties
    below = window[cdf <= a]
    expected_lo = int(below[-1]) if len(below) else (int(window[0]) - 1 if window[0] > 0 else None)
    above = window[cdf >= 1 - a]
    expected_hi = int(above[0]) if len(above) and above[0] <= n - 1 else None
    assert (lo, hi) == (expected_lo if expected_lo is None or expected_lo >= 0 else None, expected_hi)
    if lo is not None and hi is not None:  # the coverage the interval promises
        assert binom.cdf(hi, n, q) - binom.cdf(lo, n, q) >= level - 1e-12


@fast
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 3000),
    q=st.sampled_from([0.5, 0.9, 0.95, 0.99]),
    scale=st.integers(0, 8),
)
def test_sketch_interval_contains_the_raw_order_statistic_interval(seed, n, q, scale):
    rng = np.random.default_rng(seed)
    x = rng.lognormal(rng.uniform(-6, 1), rng.uniform(0.1, 1.5), n)
    if rng.random() < 0.3:
        x = np.round(x, 2)  # ties (and zeros)
    sk = sketch_of(x, scale)
    base = 2 ** (2**-sk.scale) * (1 + 1e-12)  # building may have downscaled: the sketch's own bucket base
    lo_rank, hi_rank = order_statistic_ranks(n, q, 0.95)
    lo, hi = quantile_interval(sk, q, 0.95)
    s = np.sort(x)
    # each end holds its raw order statistic and is at most one bucket away from it
    if lo_rank is None:
        assert lo == -math.inf
    else:
        assert lo <= s[lo_rank] <= lo * base
    if hi_rank is None:
        assert hi == math.inf
    else:
        assert s[hi_rank] <= hi <= s[hi_rank] * base


def test_interval_coverage_on_repeated_samples():
    """At least the promised 90% of 400 intervals for the p90 of n=300 lognormal values hold the true p90."""
    rng = np.random.default_rng(1)
    true_p90 = math.exp(norm.ppf(0.9) * 0.8)
    hits = 0
    for _ in range(400):
        lo, hi = quantile_interval(sketch_of(rng.lognormal(0, 0.8, 300)), 0.9, 0.9)
        hits += lo <= true_p90 <= hi
    assert hits / 400 >= 0.9 - 3 * math.sqrt(0.09 / 400)


# -- two proportions -----------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(n1=st.integers(1, 60), n2=st.integers(1, 60), data=st.data())
def test_fisher_exact_matches_scipy(n1, n2, data):
    x1, x2 = data.draw(st.integers(0, n1)), data.draw(st.integers(0, n2))
    expected = fisher_exact([[x1, n1 - x1], [x2, n2 - x2]]).pvalue
    assert fisher_exact_pvalue(x1, n1, x2, n2) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(n1=st.integers(20, 10**6), n2=st.integers(20, 10**6), f1=st.floats(0, 1), f2=st.floats(0, 1))
def test_z_test_and_wilson_interval_match_scipy(n1, n2, f1, f2):
    x1, x2 = round(f1 * n1), round(f2 * n2)
    result = compare_proportions(x1, n1, x2, n2, 0.05)
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if result.test == "z":
        expected = 2 * norm.sf(abs(x2 / n2 - x1 / n1) / se) if se else 1.0
        assert result.pvalue == pytest.approx(expected, rel=1e-9, abs=1e-300)
    else:
        assert result.pvalue == pytest.approx(fisher_exact([[x1, n1 - x1], [x2, n2 - x2]]).pvalue, rel=1e-9)
    ci = binomtest(x1, n1).proportion_ci(0.95, method="wilson")
    assert wilson_interval(x1, n1, norm.ppf(0.975)) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert result.low <= result.delta <= result.high


def test_newcombe_interval_reproduces_the_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873-890, example (a): 56/70 vs 48/80, method 10: 0.0524, 0.3339
    result = compare_proportions(48, 80, 56, 70, 0.05)
    assert (round(result.low, 4), round(result.high, 4)) == (0.0524, 0.3339)


# -- verdicts on canary scenarios ----------------------------------------------------------------------------


def arm(
    rng: np.random.Generator,
    calls: int,
    *,
    median: float = 0.05,
    error_ratio: float = 0.005,
    accuracy: float = 0.9,
    conf: tuple[float, float] = (8.0, 2.0),
    feedback: int = 10_000,
) -> Arm:
    latency = rng.lognormal(math.log(median), 0.5, calls)
    return Arm(
        latency=sketch_of(latency),
        errors=int(rng.binomial(calls, error_ratio)),
        confidence=sketch_of(rng.beta(*conf, calls)),
        ood=sketch_of(rng.gamma(2.0, 1.0, calls)),
        feedback=feedback,
        correct=int(rng.binomial(feedback, accuracy)),
    )


SCENARIO_SEEDS = range(3)


@pytest.mark.parametrize("seed", SCENARIO_SEEDS)
def test_clear_regression_rolls_back(seed):
    rng = np.random.default_rng(seed)
    base = arm(rng, 50_000)
    slower = compare(base, arm(rng, 50_000, median=0.07))
    assert slower.verdict == "rollback"
    assert {c.name for c in slower.checks if c.status == "fail"} == {"latency p50", "latency p95", "latency p99"}
    erroring = compare(base, arm(rng, 50_000, error_ratio=0.03))
    assert erroring.verdict == "rollback" and [c.name for c in erroring.checks if c.status == "fail"] == ["error ratio"]
    worse = compare(base, arm(rng, 50_000, accuracy=0.8))
    assert worse.verdict == "rollback" and [c.name for c in worse.checks if c.status == "fail"] == ["accuracy"]


@pytest.mark.parametrize("seed", SCENARIO_SEEDS)
def test_clear_improvement_promotes(seed):
    rng = np.random.default_rng(100 + seed)
    result = compare(arm(rng, 50_000), arm(rng, 50_000, median=0.035, error_ratio=0.001, accuracy=0.95))
    assert result.verdict == "promote", result.reasons
    assert all(c.estimate < 0 for c in result.checks if c.gating)  # better on every gating check


@pytest.mark.parametrize("seed", SCENARIO_SEEDS)
def test_no_difference_promotes_within_tolerance(seed):
    rng = np.random.default_rng(200 + seed)
    result = compare(arm(rng, 100_000), arm(rng, 100_000))
    assert result.verdict == "promote", result.reasons
    assert all(c.status == "pass" for c in result.checks), [c.detail for c in result.checks]


@pytest.mark.parametrize("seed", SCENARIO_SEEDS)
def test_too_little_data_is_inconclusive(seed):
    rng = np.random.default_rng(300 + seed)
    result = compare(arm(rng, 5000), arm(rng, 120, feedback=30))
    assert result.verdict == "inconclusive" and "too little data" in result.reasons[0]
    # without the minimum the p99 of 120 calls still cannot show non-inferiority: undecided, not pass
    relaxed = compare(arm(rng, 5000), arm(rng, 120, feedback=30), Tolerances(min_calls=1))
    assert relaxed.verdict == "inconclusive"
    assert next(c for c in relaxed.checks if c.name == "latency p99").status == "undecided"
    assert next(c for c in relaxed.checks if c.name == "accuracy").status == "skipped"


def test_confidence_shift_warns_or_gates():
    rng = np.random.default_rng(9)
    base, shifted = arm(rng, 20_000), arm(rng, 20_000, conf=(3.0, 2.0))
    warned = compare(base, shifted, Tolerances(quantiles=(0.5,)))
    check = next(c for c in warned.checks if c.name == "confidence shift")
    assert (
        check.status == "warn" and warned.verdict == "promote" and any("confidence shift" in r for r in warned.reasons)
    )
    gated = compare(base, shifted, Tolerances(quantiles=(0.5,), gate_on_shift=True))
    assert gated.verdict == "rollback"
    assert next(c for c in gated.checks if c.name == "ood shift").status == "pass"


def test_bad_tolerances_and_counts_are_clear_errors():
    with pytest.raises(ValueError, match="alpha"):
        Tolerances(alpha=0)
    with pytest.raises(ValueError, match="quantiles"):
        Tolerances(quantiles=(1.0,))
    with pytest.raises(ValueError, match="within their totals"):
        compare_proportions(5, 3, 1, 10)
