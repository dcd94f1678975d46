"""Canary / shadow comparison: a baseline and a candidate, from merged sketches and counters, and a verdict.

Latency quantile deltas, with distribution-free confidence intervals
    For quantile ``q`` of ``n`` values and ``B ~ Binomial(n, q)`` with CDF ``F``, the order statistics
    ``X_(j) <= X_(k)`` (1-based) with ``j - 1 = max{m : F(m) <= a}`` and ``k - 1 = min{m : F(m) >= 1 - a}``,
    ``a = (1 - level) / 2``, cover the population quantile with probability ``F(k-1) - F(j-1) >= level``
    (exact for continuous data, at least that with ties). The sketch knows the bucket of every rank, so the
    interval becomes [lower edge of the bucket of rank ``j-1``, upper edge of the bucket of rank ``k-1``]
    (0-based ranks), clamped to the exact min/max: it contains ``[X_(j), X_(k)]``, so its coverage is at
    least as high; it is wider by at most one bucket at each end (relative ``b - 1``, 2.2% at scale 5).
    When ``n`` is too small for a rank, that end is infinite. ``F`` is summed over ``n q +- 12 sd + 12`` from
    the ratios of consecutive probabilities (log space, normalised; the mass outside is below 1e-30). The
    delta (candidate - baseline) interval is ``[c_lo - b_hi, c_hi - b_lo]`` from per-arm intervals at level
    ``sqrt(1 - alpha)``: the arms are independent, so both cover with probability ``>= 1 - alpha``. Point
    estimates are ``sketch.quantile(q)``.

Error ratio and accuracy: two proportions (``x/n``, candidate minus baseline)
    Significance: two-sided Fisher exact test when an expected cell count of the 2x2 table is below 5 (sum of
    the hypergeometric probabilities not above the observed one, relative tolerance 1e-7, computed from
    ratios of consecutive probabilities), otherwise the pooled two-proportion z-test,
    ``p = erfc(|z| / sqrt(2))``. Interval for the difference: Newcombe's hybrid
    score interval (his method 10: Wilson intervals per arm combined), at level ``1 - alpha``.

Distribution shift (confidence, OOD score): ``drift.ks``; shifted when its edge statistic (a lower bound of
the KS statistic) exceeds both the asymptotic critical value at ``alpha`` and ``max_shift``. A new model may
legitimately change its confidence distribution, so shifts only warn unless ``gate_on_shift``.

Verdict
    Each check passes, fails or is undecided. Fail: the candidate is significantly worse (``p < alpha``, or
    for latency the delta interval lies above 0) *and* the point estimate is worse than the tolerance. Pass:
    the worse end of the interval is within the tolerance (non-inferiority shown). Otherwise undecided.
    ``inconclusive`` when either arm has fewer than ``min_calls`` calls (whatever the checks say);
    else ``rollback`` when a gating check fails; else ``inconclusive`` when one is undecided; else
    ``promote``. Each check runs at ``alpha``; with several checks the chance that at least one fails by
    chance on equal arms is up to ``checks * alpha`` (Bonferroni): lower ``alpha`` to control it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

from ...sketch import LogSketch
from .drift import KS, ks, sketch_cells

__all__ = [
    "Arm",
    "Check",
    "Comparison",
    "ProportionDelta",
    "QuantileDelta",
    "Tolerances",
    "compare",
    "compare_proportions",
    "fisher_exact_pvalue",
    "order_statistic_ranks",
    "quantile_interval",
    "wilson_interval",
]

Verdict = Literal["promote", "rollback", "inconclusive"]
Status = Literal["pass", "fail", "undecided", "skipped", "warn"]


@dataclass(frozen=True)
class Tolerances:
    """What the candidate may lose against the baseline, and how much data a verdict needs."""

    quantiles: tuple[float, ...] = (0.5, 0.95, 0.99)
    latency_relative: float = 0.10  # candidate quantile may exceed the baseline's by 10% ...
    latency_absolute: float = 0.0  # ... plus this many seconds
    error_ratio: float = 0.005  # absolute increase of the error ratio (0.5 percentage points)
    accuracy: float = 0.02  # absolute accuracy drop (feedback)
    max_shift: float = 0.1  # KS statistic of confidence / OOD score beyond which a significant shift counts
    gate_on_shift: bool = False
    alpha: float = 0.05
    min_calls: int = 500  # per arm
    min_feedback: int = 200  # per arm, for the accuracy check
    require_feedback: bool = False  # without enough feedback: undecided (True) or skipped (False)

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        for q in self.quantiles:
            if not 0.0 < q < 1.0:
                raise ValueError(f"quantiles must be in (0, 1), got {q}")
        for name in ("latency_relative", "latency_absolute", "error_ratio", "accuracy", "max_shift"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Arm:
    """What one deployment recorded over the comparison window.

    ``latency``: merged ``ml.inference.duration`` of all calls (successes and failures); ``calls`` defaults to
    its count; ``errors``: calls with ``error.type``. ``confidence``/``ood``: merged ``ml.prediction.confidence``
    and ``ml.ood.score``. ``feedback``/``correct``: ``ml.feedback`` totals (all / ``correct=true``).
    """

    latency: LogSketch | None = None
    calls: int | None = None
    errors: int = 0
    confidence: LogSketch | None = None
    ood: LogSketch | None = None
    feedback: int = 0
    correct: int = 0

    @property
    def total_calls(self) -> int:
        if self.calls is not None:
            return self.calls
        return self.latency.count if self.latency is not None else 0


# -- quantile intervals --------------------------------------------------------------------------------------


def order_statistic_ranks(n: int, q: float, level: float) -> tuple[int | None, int | None]:
    """0-based ranks ``(j-1, k-1)`` of the distribution-free interval for quantile ``q`` (module docstring);
    None for an end that ``n`` values cannot provide."""
    if n <= 0:
        return None, None
    a = (1.0 - level) / 2.0
    sd = math.sqrt(n * q * (1.0 - q))
    lo = max(0, math.floor(n * q - 12.0 * sd - 12.0))
    hi = min(n, math.ceil(n * q + 12.0 * sd + 12.0))
    m = np.arange(lo, hi + 1)
    # pmf(m+1)/pmf(m) = (n-m)/(m+1) * q/(1-q): log pmf up to a constant, normalised over the window
    log_ratio = np.log((n - m[:-1]) / (m[:-1] + 1.0)) + (math.log(q) - math.log1p(-q))
    log_w = np.concatenate(([0.0], np.cumsum(log_ratio)))
    w = np.exp(log_w - log_w.max())
    cdf = np.cumsum(w) / w.sum()
    below = np.flatnonzero(cdf <= a)
    lower = int(m[below[-1]]) if len(below) else lo - 1  # F(lo - 1) < 1e-30 <= a
    above = np.flatnonzero(cdf >= 1.0 - a)
    upper = int(m[above[0]]) if len(above) else None
    return (lower if lower >= 0 else None), (upper if upper is not None and upper <= n - 1 else None)


def quantile_interval(sketch: LogSketch, q: float, level: float) -> tuple[float, float]:
    """Interval covering the population ``q``-quantile with probability ``>= level`` (module docstring)."""
    lower_rank, upper_rank = order_statistic_ranks(sketch.count, q, level)
    if lower_rank is None and upper_rank is None:
        return -math.inf, math.inf
    cells = sketch_cells(sketch)
    cum = np.cumsum(cells.counts[0])
    lo, hi = -math.inf, math.inf
    if lower_rank is not None:
        lo = max(float(cells.lower[int(np.searchsorted(cum, lower_rank, side="right"))]), sketch.min)
    if upper_rank is not None:
        hi = min(float(cells.upper[int(np.searchsorted(cum, upper_rank, side="right"))]), sketch.max)
    return lo, hi


@dataclass(frozen=True)
class QuantileDelta:
    """Candidate minus baseline at quantile ``q``, with a ``1 - alpha`` interval ``[low, high]``."""

    q: float
    baseline: float
    candidate: float
    low: float
    high: float
    baseline_interval: tuple[float, float]
    candidate_interval: tuple[float, float]

    @property
    def delta(self) -> float:
        return self.candidate - self.baseline


def quantile_delta(baseline: LogSketch, candidate: LogSketch, q: float, alpha: float) -> QuantileDelta:
    level = math.sqrt(1.0 - alpha)
    b_lo, b_hi = quantile_interval(baseline, q, level)
    c_lo, c_hi = quantile_interval(candidate, q, level)
    return QuantileDelta(
        q, baseline.quantile(q), candidate.quantile(q), c_lo - b_hi, c_hi - b_lo, (b_lo, b_hi), (c_lo, c_hi)
    )


# -- two proportions -----------------------------------------------------------------------------------------


def fisher_exact_pvalue(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided Fisher exact test of ``x1/n1`` vs ``x2/n2``: the total hypergeometric probability of the
    tables (same margins) no more likely than the observed one (relative tolerance 1e-7)."""
    k_total = x1 + x2
    lo, hi = max(0, k_total - n2), min(k_total, n1)
    k = np.arange(lo, hi, dtype=np.float64)
    # P(k+1)/P(k) = (K-k)(n1-k) / ((k+1)(n2-K+k+1)): relative probabilities over the whole support, so the
    # normalisation is exact and no large lgamma differences lose digits
    log_ratio = np.log((k_total - k) * (n1 - k)) - np.log((k + 1.0) * (n2 - k_total + k + 1.0))
    log_w = np.concatenate(([0.0], np.cumsum(log_ratio)))
    w = np.exp(log_w - log_w.max())
    observed = log_w[x1 - lo]
    return float(min(1.0, w[log_w <= observed + math.log1p(1e-7)].sum() / w.sum()))


def z_test_pvalue(x1: int, n1: int, x2: int, n2: int) -> float:
    """Pooled two-proportion z-test, two-sided."""
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    if se == 0.0:
        return 1.0
    z = (x2 / n2 - x1 / n1) / se
    return math.erfc(abs(z) / math.sqrt(2.0))


def wilson_interval(x: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval for ``x/n`` at normal quantile ``z``."""
    p = x / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class ProportionDelta:
    """``candidate - baseline`` of two proportions, its ``1 - alpha`` interval and the test's p-value."""

    baseline: float
    candidate: float
    low: float
    high: float
    pvalue: float
    test: Literal["fisher", "z"]
    counts: tuple[int, int, int, int]  # x_baseline, n_baseline, x_candidate, n_candidate

    @property
    def delta(self) -> float:
        return self.candidate - self.baseline


def compare_proportions(x1: int, n1: int, x2: int, n2: int, alpha: float = 0.05) -> ProportionDelta:
    """Baseline ``x1/n1`` against candidate ``x2/n2`` (see the module docstring)."""
    if n1 <= 0 or n2 <= 0:
        raise ValueError(f"both proportions need a positive total, got {n1} and {n2}")
    if not (0 <= x1 <= n1 and 0 <= x2 <= n2):
        raise ValueError(f"counts must be within their totals: {x1}/{n1}, {x2}/{n2}")
    n = n1 + n2
    k = x1 + x2
    expected = min(n1, n2) * min(k, n - k) / n  # the smallest expected cell of the 2x2 table
    if expected < 5:
        pvalue, test = fisher_exact_pvalue(x1, n1, x2, n2), "fisher"
    else:
        pvalue, test = z_test_pvalue(x1, n1, x2, n2), "z"
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    d = p2 - p1
    low = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return ProportionDelta(p1, p2, low, high, pvalue, test, (x1, n1, x2, n2))  # type: ignore[arg-type]


# -- the verdict ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One comparison: ``estimate`` is how much worse the candidate is (negative: better), ``[low, high]``
    its interval, ``allowance`` the tolerated worsening."""

    name: str
    status: Status
    gating: bool
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    allowance: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class Comparison:
    verdict: Verdict
    reasons: tuple[str, ...]
    checks: tuple[Check, ...]
    latency: tuple[QuantileDelta, ...]
    error_ratio: ProportionDelta | None
    accuracy: ProportionDelta | None
    confidence_shift: KS | None
    ood_shift: KS | None


def _ms(seconds: float, sign: str = "") -> str:
    """Seconds as milliseconds with 4 significant digits (``0.0243 ms``, ``+12.5 ms``); infinite ends as is."""
    if math.isinf(seconds):
        return ("+" if seconds > 0 and sign else "-" if seconds < 0 else "") + "inf ms"
    return f"{seconds * 1000:{sign}.4g} ms"


def _judge(worse: float, low: float, high: float, allowance: float, significant: bool) -> Status:
    """fail: significantly worse beyond the allowance; pass: the worse end is within it; else undecided."""
    if significant and worse > allowance:
        return "fail"
    if high <= allowance:
        return "pass"
    return "undecided"


def _latency_check(d: QuantileDelta, tol: Tolerances) -> Check:
    allowance = tol.latency_relative * d.baseline + tol.latency_absolute
    status = _judge(d.delta, d.low, d.high, allowance, d.low > 0)
    detail = (
        f"p{d.q * 100:g}: baseline {_ms(d.baseline)}, candidate {_ms(d.candidate)}, delta {_ms(d.delta, '+')} "
        f"in [{_ms(d.low, '+')}, {_ms(d.high, '+')}] ({(1 - tol.alpha) * 100:g}%), allowed +{_ms(allowance)}"
    )
    return Check(f"latency p{d.q * 100:g}", status, True, d.delta, d.low, d.high, allowance, detail)


def _shift_check(name: str, result: KS | None, tol: Tolerances) -> Check:
    if result is None:
        return Check(name, "skipped", False, detail=f"{name}: no data on one side")
    crit = result.critical_value(tol.alpha)
    shifted = result.statistic > crit and result.statistic > tol.max_shift
    status: Status = "pass" if not shifted else ("fail" if tol.gate_on_shift else "warn")
    detail = (
        f"{name}: KS {result.statistic:.4f} (<= {result.upper:.4f}), critical {crit:.4f}, max_shift {tol.max_shift:g}"
    )
    return Check(
        name, status, tol.gate_on_shift, result.statistic, result.statistic, result.upper, tol.max_shift, detail
    )


def _shift(a: LogSketch | None, b: LogSketch | None) -> KS | None:
    """KS of two sketches, or None when either is missing or empty."""
    if a is None or b is None or not a.count or not b.count:
        return None
    return ks(a, b)


def _latency(baseline: Arm, candidate: Arm, tol: Tolerances) -> tuple[tuple[QuantileDelta, ...], list[Check]]:
    b, c = baseline.latency, candidate.latency
    if b is None or c is None or not b.count or not c.count:
        return (), [Check("latency", "undecided", True, detail="latency: no duration histogram on one side")]
    deltas = tuple(quantile_delta(b, c, q, tol.alpha) for q in tol.quantiles)
    return deltas, [_latency_check(d, tol) for d in deltas]


def _errors(n_b: int, n_c: int, baseline: Arm, candidate: Arm, tol: Tolerances) -> tuple[ProportionDelta | None, Check]:
    if n_b <= 0 or n_c <= 0:
        return None, Check("error ratio", "undecided", True, detail="error ratio: no calls on one side")
    e = compare_proportions(baseline.errors, n_b, candidate.errors, n_c, tol.alpha)
    status = _judge(e.delta, e.low, e.high, tol.error_ratio, e.pvalue < tol.alpha)
    detail = (
        f"error ratio: baseline {e.baseline:.4%}, candidate {e.candidate:.4%}, delta {e.delta:+.4%} in "
        f"[{e.low:+.4%}, {e.high:+.4%}], {e.test} p={e.pvalue:.3g}, allowed +{tol.error_ratio:.4%}"
    )
    return e, Check("error ratio", status, True, e.delta, e.low, e.high, tol.error_ratio, detail)


def _accuracy(baseline: Arm, candidate: Arm, tol: Tolerances) -> tuple[ProportionDelta | None, Check]:
    if min(baseline.feedback, candidate.feedback) < max(tol.min_feedback, 1):
        detail = (
            f"accuracy: {baseline.feedback} baseline and {candidate.feedback} candidate feedback "
            f"(min_feedback {tol.min_feedback})"
        )
        status: Status = "undecided" if tol.require_feedback else "skipped"
        return None, Check("accuracy", status, tol.require_feedback, detail=detail)
    a = compare_proportions(baseline.correct, baseline.feedback, candidate.correct, candidate.feedback, tol.alpha)
    drop, low, high = -a.delta, -a.high, -a.low  # worsening = accuracy lost
    status = _judge(drop, low, high, tol.accuracy, a.pvalue < tol.alpha)
    detail = (
        f"accuracy: baseline {a.baseline:.4%}, candidate {a.candidate:.4%}, drop {drop:+.4%} in "
        f"[{low:+.4%}, {high:+.4%}], {a.test} p={a.pvalue:.3g}, allowed {tol.accuracy:.4%}"
    )
    return a, Check("accuracy", status, True, drop, low, high, tol.accuracy, detail)


def compare(baseline: Arm, candidate: Arm, tolerances: Tolerances | None = None) -> Comparison:
    """Every check of the candidate against the baseline, and the verdict (see the module docstring)."""
    tol = tolerances or Tolerances()
    n_b, n_c = baseline.total_calls, candidate.total_calls
    latency, checks = _latency(baseline, candidate, tol)
    errors, error_check = _errors(n_b, n_c, baseline, candidate, tol)
    accuracy, accuracy_check = _accuracy(baseline, candidate, tol)
    conf_ks, ood_ks = _shift(baseline.confidence, candidate.confidence), _shift(baseline.ood, candidate.ood)
    checks += [
        error_check,
        accuracy_check,
        _shift_check("confidence shift", conf_ks, tol),
        _shift_check("ood shift", ood_ks, tol),
    ]

    gating = [c for c in checks if c.gating]
    failed = [c for c in gating if c.status == "fail"]
    undecided = [c for c in gating if c.status == "undecided"]
    if min(n_b, n_c) < tol.min_calls:
        verdict: Verdict = "inconclusive"
        reasons = [f"too little data: {n_b} baseline and {n_c} candidate calls (min_calls {tol.min_calls})"]
    elif failed:
        verdict, reasons = "rollback", [c.detail for c in failed]
    elif undecided:
        verdict, reasons = "inconclusive", [c.detail for c in undecided]
    else:
        verdict, reasons = "promote", ["every gating check is within its tolerance"]
    reasons += [c.detail for c in checks if c.status == "warn"]
    return Comparison(verdict, tuple(reasons), tuple(checks), latency, errors, accuracy, conf_ks, ood_ks)
