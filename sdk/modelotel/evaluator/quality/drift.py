"""Drift between a reference and a current distribution, from exported sketches or bounded counts alone.

Distributions
    Numeric (``ml.feature.value``, ``ml.prediction.confidence``, ``ml.ood.score``): merged ``LogSketch``es.
    Both are brought to the smaller of their scales (exact re-bucketing, see sketch.py) and compared over the
    *cells* occupied by either: negative buckets, the zero bucket, positive buckets, in ascending value order
    (``sketch_cells``). Categorical (``ml.predictions`` by label, ``ml.feature.category``): counts per value;
    the cells are the union of the values. ``p_i``/``q_i`` are the reference/current fractions in cell ``i``.

PSI (population stability index)
    Bins are the reference deciles (``bins=10``) snapped to cell edges: for ``k = 1..bins-1`` the bin boundary
    is the upper edge of the cell holding the reference value of rank ``floor(k/bins * (n-1))``; repeated
    boundaries merge, so a cell holding more than a tenth of the reference gives fewer bins. The outer bins
    are open (``(-inf, e_1]`` and ``(e_last, +inf)``). Categories are their own bins.
    ``PSI = sum_b (q_b - p_b) * ln(q_b / p_b)`` with each fraction floored at ``epsilon = 1e-4`` (an empty bin
    would otherwise give an infinite PSI). Tiers: ``< 0.1`` none, ``< 0.25`` moderate, else significant.
    Counts per bin are exact, so this is PSI of the raw data over the same bins; the snapped boundaries differ
    from the raw deciles by less than one cell (relative width ``b - 1``).

KS (two-sample Kolmogorov-Smirnov statistic) ``D = sup_x |F(x) - G(x)|`` of the empirical CDFs.
    At every cell edge both CDFs are known exactly, so ``statistic = max over edges`` is exact there and a
    lower bound of ``D``. Inside a cell each CDF rises monotonically from its value at the cell's lower edge to
    that at its upper edge, so ``D <= upper = max over cells of max(F_hi - G_lo, G_hi - F_lo)``; ``upper``
    exceeds ``statistic`` by at most the larger mass one distribution has in one cell, and equals it where
    only one distribution has mass in each cell (and at the zero cell, a single point).

Jensen-Shannon distance, base 2 (in ``[0, 1]``; scipy's ``jensenshannon(p, q, base=2)``)
    ``sqrt(KL(p||m)/2 + KL(q||m)/2)`` with ``m = (p + q) / 2`` and ``0 * log 0 = 0``.

Hellinger distance (in ``[0, 1]``)
    ``sqrt(sum_i (sqrt(p_i) - sqrt(q_i))**2 / 2)`` (= ``sqrt(1 - sum_i sqrt(p_i q_i))``, computed in the
    first form, which has no cancellation for near-equal distributions).

``js_distance``/``hellinger`` compute over the cells, i.e. exactly the values of the raw data binned on the
bucket grid (finer bins give larger values: both are monotone under refinement). ``drift()`` judges them over
the PSI bins instead (``binned_js_hellinger``): on fine cells the sampling noise of a thousand values alone
reads as JS ~0.15, above the fixed 0.1 threshold.

Data-driven thresholds (NannyML's ``StandardDeviationThreshold`` style)
    The reference is given as chunks (e.g. one merged sketch per hour). For each chunk the statistic of that
    chunk against the merge of all other chunks is computed; ``threshold = mean + k * std`` (``k = 3``,
    population std, ``ddof = 0``). Empty chunks are skipped; at least two non-empty chunks are needed.
    Fixed thresholds beside them: PSI 0.1 and 0.25, JS 0.1, Hellinger 0.1 (Evidently's defaults), KS the
    asymptotic critical value at ``alpha = 0.05``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ...sketch import LogSketch

__all__ = [
    "DEFAULT_EPSILON",
    "FIXED_THRESHOLDS",
    "KS",
    "PSI",
    "Cells",
    "Distribution",
    "Drift",
    "Threshold",
    "data_driven_threshold",
    "drift",
    "hellinger",
    "js_distance",
    "ks",
    "ks_critical_value",
    "ks_pvalue",
    "psi",
    "psi_tier",
    "sketch_cells",
]

Distribution = LogSketch | Mapping[str, float]
"""A numeric distribution (merged sketch) or a categorical one (count per value)."""

DEFAULT_EPSILON = 1e-4
"""Floor for bin fractions in PSI (Evidently's and most PSI tools' choice)."""
PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25
FIXED_THRESHOLDS: dict[str, float] = {"psi": PSI_MODERATE, "js": 0.1, "hellinger": 0.1}
"""Fixed alert thresholds (KS uses its critical value instead)."""

PSITier = Literal["none", "moderate", "significant"]


# -- the common cell grid ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cells:
    """Occupied cells of one or more sketches at one scale, ascending by value.

    Cell ``i`` holds values in ``(lower[i], upper[i]]`` for positive buckets, ``[lower[i], upper[i])`` for
    negative ones and ``{0}`` for the zero cell (``lower == upper == 0``). ``counts[k][i]`` is sketch ``k``'s
    count in cell ``i``; every cell has a nonzero count in at least one sketch.
    """

    scale: int
    lower: np.ndarray
    upper: np.ndarray
    counts: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.lower)


def _take(counts: np.ndarray, offset: int, indices: np.ndarray) -> np.ndarray:
    """Counts of the given bucket indices from a dense store (0 outside it)."""
    out = np.zeros(len(indices), dtype=np.int64)
    j = indices - offset
    ok = (j >= 0) & (j < len(counts))
    out[ok] = counts[j[ok]]
    return out


def sketch_cells(*sketches: LogSketch) -> Cells:
    """The union of the cells occupied by ``sketches`` after downscaling copies to the smallest scale."""
    if not sketches:
        raise ValueError("sketch_cells needs at least one sketch")
    scale = min(s.scale for s in sketches)
    aligned = []
    for s in sketches:
        if s.scale != scale:
            s = s.copy()
            s.downscale(s.scale - scale)
        aligned.append(s)

    def occupied(stores: list) -> np.ndarray:
        parts = [st.offset + np.flatnonzero(st.counts) for st in stores if len(st)]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    neg = occupied([s.negative for s in aligned])[::-1]  # larger magnitude first = ascending value
    pos = occupied([s.positive for s in aligned])
    zero = any(s.zero_count for s in aligned)
    width = math.ldexp(1.0, -scale)
    with np.errstate(over="ignore"):
        lower = np.concatenate([-np.exp2((neg + 1) * width), [0.0] if zero else [], np.exp2(pos * width)])
        upper = np.concatenate([-np.exp2(neg * width), [0.0] if zero else [], np.exp2((pos + 1) * width)])
    counts = tuple(
        np.concatenate(
            [
                _take(s.negative.counts, s.negative.offset, neg),
                np.array([s.zero_count], dtype=np.int64) if zero else np.zeros(0, dtype=np.int64),
                _take(s.positive.counts, s.positive.offset, pos),
            ]
        )
        for s in aligned
    )
    return Cells(scale, lower, upper, counts)


def _aligned(reference: Distribution, current: Distribution) -> tuple[np.ndarray, np.ndarray, Cells | None]:
    """Count vectors of both distributions over common cells (and the Cells for numeric ones)."""
    ref_sketch, cur_sketch = isinstance(reference, LogSketch), isinstance(current, LogSketch)
    if ref_sketch != cur_sketch:
        raise TypeError("reference and current must both be sketches or both be category counts")
    if ref_sketch:
        cells = sketch_cells(reference, current)  # type: ignore[arg-type]
        ref, cur = cells.counts
    else:
        cells = None
        keys = sorted(set(reference) | set(current), key=str)  # type: ignore[arg-type]
        ref = np.array([float(reference.get(k, 0)) for k in keys])  # type: ignore[union-attr]
        cur = np.array([float(current.get(k, 0)) for k in keys])  # type: ignore[union-attr]
        if (ref < 0).any() or (cur < 0).any():
            raise ValueError("category counts must not be negative")
    if not ref.sum():
        raise ValueError("the reference distribution is empty")
    if not cur.sum():
        raise ValueError("the current distribution is empty")
    return ref, cur, cells


# -- PSI -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PSI:
    """PSI and its bins: ``edges[b]`` is the upper edge of bin ``b`` (numeric; the last is +inf) or its
    category; ``reference``/``current`` are the unfloored fractions per bin."""

    value: float
    tier: PSITier
    edges: tuple[float | str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]
    epsilon: float


def psi_tier(value: float) -> PSITier:
    """``none`` below 0.1, ``moderate`` below 0.25, else ``significant``."""
    if value < PSI_MODERATE:
        return "none"
    return "moderate" if value < PSI_SIGNIFICANT else "significant"


def decile_bins(reference_counts: np.ndarray, bins: int) -> np.ndarray:
    """Start index of each bin over the cells: boundaries after the cells holding the reference ranks
    ``floor(k/bins * (n-1))``, ``k = 1..bins-1``; duplicates and a boundary after the last cell dropped."""
    n = int(reference_counts.sum())
    cum = np.cumsum(reference_counts)
    ranks = np.floor(np.arange(1, bins) / bins * (n - 1))
    last_cell = np.searchsorted(cum, ranks, side="right")  # cell holding each rank
    cuts = np.unique(last_cell)
    cuts = cuts[cuts < len(reference_counts) - 1]
    return np.concatenate(([0], cuts + 1)).astype(np.intp)


def psi(reference: Distribution, current: Distribution, *, bins: int = 10, epsilon: float = DEFAULT_EPSILON) -> PSI:
    """Population stability index over reference deciles snapped to cell edges (see the module docstring)."""
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    ref, cur, cells = _aligned(reference, current)
    if cells is not None:
        starts = decile_bins(ref, bins)
        ref_b = np.add.reduceat(ref, starts).astype(np.float64)
        cur_b = np.add.reduceat(cur, starts).astype(np.float64)
        ends = np.append(starts[1:] - 1, len(ref) - 1)
        edges: tuple[float | str, ...] = (*(float(cells.upper[e]) for e in ends[:-1]), math.inf)
    else:
        ref_b, cur_b = ref, cur
        edges = tuple(sorted(set(reference) | set(current), key=str))  # type: ignore[arg-type]
    p = ref_b / ref_b.sum()
    q = cur_b / cur_b.sum()
    pf, qf = np.maximum(p, epsilon), np.maximum(q, epsilon)
    value = float(np.sum((qf - pf) * np.log(qf / pf)))
    return PSI(value, psi_tier(value), edges, tuple(p.tolist()), tuple(q.tolist()), epsilon)


# -- KS ------------------------------------------------------------------------------------------------------


def ks_critical_value(n: int, m: int, alpha: float = 0.05) -> float:
    """Asymptotic two-sample critical value ``sqrt(-ln(alpha/2) / 2) * sqrt((n + m) / (n m))``."""
    if n <= 0 or m <= 0:
        return math.inf
    return math.sqrt(-math.log(alpha / 2.0) / 2.0) * math.sqrt((n + m) / (n * m))


def ks_pvalue(statistic: float, n: int, m: int) -> float:
    """Asymptotic two-sided p-value: the Kolmogorov survival function at ``lambda = D sqrt(n m / (n + m))``,
    ``2 sum_{k>=1} (-1)**(k-1) exp(-2 k**2 lambda**2)`` (scipy's ``kstwobign.sf``). Binned data makes it
    conservative."""
    if n <= 0 or m <= 0:
        return 1.0
    lam = statistic * math.sqrt(n * m / (n + m))
    if lam < 0.1:
        return 1.0  # 1 - sf < 1e-50 here, and the alternating series would need hundreds of terms
    total = 0.0
    for k in range(1, 201):
        term = math.exp(-2.0 * k * k * lam * lam)
        total += term if k % 2 else -term
        if term < 1e-17:
            break
    return min(max(2.0 * total, 0.0), 1.0)


@dataclass(frozen=True)
class KS:
    """KS statistic exact at cell edges (``statistic <= D <= upper``), where it is reached, and the counts."""

    statistic: float
    upper: float
    at: float
    n_reference: int
    n_current: int

    def critical_value(self, alpha: float = 0.05) -> float:
        return ks_critical_value(self.n_reference, self.n_current, alpha)

    def pvalue(self) -> float:
        """Asymptotic p-value of ``statistic`` (see ``ks_pvalue``)."""
        return ks_pvalue(self.statistic, self.n_reference, self.n_current)


def ks(reference: LogSketch, current: LogSketch) -> KS:
    """Two-sample KS statistic of two sketches, with its upper bound (see the module docstring)."""
    if not (isinstance(reference, LogSketch) and isinstance(current, LogSketch)):
        raise TypeError("KS needs two sketches: category counts have no order")
    ref, cur, cells = _aligned(reference, current)
    assert cells is not None  # both are sketches
    n, m = int(ref.sum()), int(cur.sum())
    f_hi = np.cumsum(ref) / n
    g_hi = np.cumsum(cur) / m
    f_lo = np.concatenate(([0.0], f_hi[:-1]))
    g_lo = np.concatenate(([0.0], g_hi[:-1]))
    edge = np.abs(f_hi - g_hi)
    i = int(edge.argmax())
    inside = np.maximum(f_hi - g_lo, g_hi - f_lo)
    point = cells.lower == cells.upper  # the zero cell: both CDFs jump at the same point
    inside[point] = edge[point]
    return KS(float(edge[i]), float(max(edge[i], inside.max())), float(cells.upper[i]), n, m)


# -- JS and Hellinger ----------------------------------------------------------------------------------------


def _fractions(reference: Distribution, current: Distribution) -> tuple[np.ndarray, np.ndarray]:
    ref, cur, _ = _aligned(reference, current)
    return ref / ref.sum(), cur / cur.sum()


def js_distance(reference: Distribution, current: Distribution) -> float:
    """Jensen-Shannon distance, base 2, over the common cells (see the module docstring)."""
    p, q = _fractions(reference, current)
    return _js(p, q)


def _js(p: np.ndarray, q: np.ndarray) -> float:
    m = (p + q) / 2.0

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return math.sqrt(max((kl(p) + kl(q)) / 2.0, 0.0))


def hellinger(reference: Distribution, current: Distribution) -> float:
    """Hellinger distance over the common cells (see the module docstring)."""
    p, q = _fractions(reference, current)
    return _hellinger(p, q)


def _hellinger(p: np.ndarray, q: np.ndarray) -> float:
    return math.sqrt(float(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)) / 2.0)


def binned_js_hellinger(result: PSI) -> tuple[float, float]:
    """JS distance and Hellinger distance over the PSI bins (reference deciles; categories as they are).

    Over the fine bucket cells both statistics carry a sampling bias that fixed thresholds cannot absorb:
    two samples of 1,000 values from the same distribution spread over ~100 cells give JS ~0.15. Over ten
    decile bins the same bias is ~0.03, so ``drift()`` judges JS and Hellinger on these bins.
    """
    p, q = np.asarray(result.reference, dtype=float), np.asarray(result.current, dtype=float)
    return _js(p, q), _hellinger(p, q)


# -- data-driven thresholds ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """``value = mean + k * std`` of the statistic of each reference chunk against the rest."""

    value: float
    mean: float
    std: float
    k: float
    chunk_values: tuple[float, ...]


def _total(dist: Distribution) -> float:
    return float(dist.count) if isinstance(dist, LogSketch) else float(sum(dist.values()))


def _merge(parts: Sequence[Distribution]) -> Distribution:
    if isinstance(parts[0], LogSketch):
        out = parts[0].copy()  # type: ignore[union-attr]
        for p in parts[1:]:
            out.merge(p)  # type: ignore[arg-type]
        return out
    merged: dict[str, float] = {}
    for p in parts:
        for key, value in p.items():  # type: ignore[union-attr]
            merged[key] = merged.get(key, 0.0) + float(value)
    return merged


def data_driven_threshold(
    chunks: Sequence[Distribution],
    statistic: Callable[[Distribution, Distribution], float],
    *,
    k: float = 3.0,
) -> Threshold:
    """``mean + k * std`` (population std) of ``statistic(rest, chunk)`` over the non-empty reference chunks,
    where ``rest`` merges all other chunks."""
    usable = [c for c in chunks if _total(c) > 0]
    if len(usable) < 2:
        raise ValueError(f"data-driven thresholds need at least 2 non-empty reference chunks, got {len(usable)}")
    values = [statistic(_merge(usable[:i] + usable[i + 1 :]), chunk) for i, chunk in enumerate(usable)]
    arr = np.asarray(values, dtype=np.float64)
    mean, std = float(arr.mean()), float(arr.std())
    return Threshold(mean + k * std, mean, std, k, tuple(values))


# -- all of it -----------------------------------------------------------------------------------------------


def _ks_statistic(reference: Distribution, current: Distribution) -> float:
    return ks(reference, current).statistic  # type: ignore[arg-type]


def _psi_value(reference: Distribution, current: Distribution) -> float:
    return psi(reference, current).value


def _js_binned(reference: Distribution, current: Distribution) -> float:
    return binned_js_hellinger(psi(reference, current))[0]


def _hellinger_binned(reference: Distribution, current: Distribution) -> float:
    return binned_js_hellinger(psi(reference, current))[1]


STATISTICS: dict[str, Callable[[Distribution, Distribution], float]] = {
    "psi": _psi_value,
    "ks": _ks_statistic,
    "js": _js_binned,
    "hellinger": _hellinger_binned,
}
"""Each drift statistic as a function of (reference, current), for data-driven thresholds."""


@dataclass(frozen=True)
class Drift:
    """Every statistic for one distribution pair, with its fixed and (given chunks) data-driven thresholds.

    ``drifted[name]`` is True when the statistic exceeds its fixed threshold (KS: the ``statistic`` exceeds
    the critical value at ``alpha``) or its data-driven one, when there is one.
    """

    psi: PSI
    js: float
    hellinger: float
    ks: KS | None  # numeric distributions only
    fixed: dict[str, float]
    data_driven: dict[str, Threshold] = field(default_factory=dict)
    drifted: dict[str, bool] = field(default_factory=dict)

    def values(self) -> dict[str, float]:
        out = {"psi": self.psi.value, "js": self.js, "hellinger": self.hellinger}
        if self.ks is not None:
            out["ks"] = self.ks.statistic
        return out


def drift(
    reference: Distribution,
    current: Distribution,
    *,
    chunks: Sequence[Distribution] | None = None,
    alpha: float = 0.05,
    k: float = 3.0,
) -> Drift:
    """PSI, JS, Hellinger and (numeric) KS of ``current`` against ``reference``; with ``chunks`` (the
    reference split in time) also data-driven thresholds for each."""
    numeric = isinstance(reference, LogSketch)
    ks_result = ks(reference, current) if numeric else None  # type: ignore[arg-type]
    fixed = dict(FIXED_THRESHOLDS)
    if ks_result is not None:
        fixed["ks"] = ks_result.critical_value(alpha)
    psi_result = psi(reference, current)
    js_binned, hellinger_binned = binned_js_hellinger(psi_result)
    values = {"psi": psi_result.value, "js": js_binned, "hellinger": hellinger_binned}
    if ks_result is not None:
        values["ks"] = ks_result.statistic
    data_driven = (
        {name: data_driven_threshold(chunks, STATISTICS[name], k=k) for name in values} if chunks is not None else {}
    )
    drifted = {}
    for name, value in values.items():
        over = value >= fixed[name] if name == "psi" else value > fixed[name]  # PSI tiers start at 0.1 inclusive
        dd = data_driven.get(name)
        drifted[name] = over or (dd is not None and value > dd.value)
    return Drift(psi_result, values["js"], values["hellinger"], ks_result, fixed, data_driven, drifted)
