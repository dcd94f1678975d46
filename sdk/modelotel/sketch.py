"""A DDSketch-style log-bucket quantile sketch at an OpenTelemetry exponential-histogram scale.

Bucketing (OTel exponential histogram, zero threshold 0)
    At scale ``s`` the base is ``b = 2**(2**-s)``. Positive bucket ``i`` covers ``(b**i, b**(i+1)]``, so
    a value ``v > 0`` has index ``ceil(log2(v) * 2**s) - 1``. It is computed from ``v = m * 2**e``
    (``frexp``, ``1 <= 2m < 2``) as ``((e-1) << s) + ceil(log2(2m) * 2**s) - 1`` for ``s >= 0``, keeping the
    integer part out of the rounding: powers of two land exactly in the bucket whose *upper* bound they
    equal, and their float neighbours on the correct side (a plain ``log2(v)`` rounds ``2**k * (1 + 2**-52)``
    to ``k``). For ``s < 0``, ``ceil(log2 v) = e - [2m == 1]`` is an exact integer and the index is
    ``ceil(that / 2**-s) - 1``.
    Negative values use a second store indexed by ``|v|``; exact zeros go to ``zero_count``.

Accuracy
    Every value of bucket ``i`` is estimated by ``2 * b**(i+1) / (1 + b)``, the point with equal relative
    error to both ends of the bucket. For any ``x`` in the bucket the relative error is at most
    ``alpha = (b - 1) / (b + 1) = tanh(ln(2) * 2**-(s+1))``: 2.17% at scale 4, 1.08% at scale 5, 0.54% at 6.

Quantiles
    ``quantile(q)`` returns the estimate of the bucket holding the value of sorted rank ``floor(q * (n - 1))``
    (numpy's ``method="lower"``), mirrored for negatives, 0 for the zero bucket, clamped to ``[min, max]``.
    Since that value and the estimate share a bucket, the result is within ``alpha`` of the exact quantile.

Downscaling
    Lowering the scale by ``k`` squares the base ``k`` times; bucket ``i`` becomes ``i >> k`` (floor shift,
    also for negative indices). Boundaries of the coarse scale are boundaries of the fine one, so this
    re-bucketing is exact: downscaling equals building at the lower scale. The per-sign bucket limit is
    enforced this way (never by collapsing buckets), and ``merge`` first brings both sketches to the smaller
    scale.

Representable buckets
    Only buckets ``finite_index_range(scale)`` can hold a finite double (``2**-1074`` to ``DBL_MAX``): 2099
    per sign at scale 0, about ``2099 * 2**scale`` above it, 525 at scale -2 and 3 at -10. So the whole double
    range fits in 1024 buckets from scale -2 down, and any merge of representable sketches succeeds (at -10
    they fit even ``max_buckets=3``). ``bucket_range_problem`` rejects the others (``from_otlp_point``, the
    evaluator's decoder), and ``merge`` works out the final scale from the index ranges before it changes
    anything: a merge that cannot be represented raises ``ValueError`` with both sketches unchanged, and no
    merge allocates more than ``max_buckets`` per sign for the result.

DDSketch
    A DDSketch whose ``LogarithmicMapping`` has ``gamma = b`` uses keys ``ceil(log_gamma(v))``, i.e.
    ``key = index + 1``, and the same estimate ``2 * gamma**key / (1 + gamma)``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from opentelemetry.sdk.metrics.export import Buckets, ExponentialHistogramDataPoint

if TYPE_CHECKING:  # the DDSketch interop loads ddsketch when used: a model server never needs it
    from ddsketch import DDSketch

__all__ = [
    "MAX_SCALE",
    "MIN_SCALE",
    "BucketStore",
    "LogSketch",
    "bucket_bounds",
    "bucket_estimate",
    "bucket_index",
    "bucket_range_problem",
    "finite_index_range",
    "relative_accuracy",
    "scale_base",
]

MIN_SCALE = -10
"""Smallest scale OTLP allows; at it every finite double falls in one of 3 buckets per sign."""
MAX_SCALE = 20
"""Largest scale OTLP allows."""


def _exp2(x: float) -> float:
    """``2**x``, saturating to ``inf`` instead of raising ``OverflowError``."""
    try:
        return 2.0**x
    except OverflowError:
        return math.inf


def scale_base(scale: int) -> float:
    """The bucket base ``2**(2**-scale)`` (``inf`` when it overflows, at scale -10)."""
    return _exp2(math.ldexp(1.0, -scale))


def relative_accuracy(scale: int) -> float:
    """``(b - 1) / (b + 1) = tanh(ln(2) * 2**-(scale+1))``, the worst relative error of a bucket estimate."""
    return math.tanh(math.ldexp(math.log(2.0), -scale - 1))


def bucket_index(value: float, scale: int) -> int:
    """Index ``ceil(log2(value) * 2**scale) - 1`` of the bucket ``(b**i, b**(i+1)]`` holding ``value > 0``
    (computed via ``frexp``, see the module docstring)."""
    m, e = math.frexp(value)
    if scale >= 0:
        return ((e - 1) << scale) + math.ceil(math.ldexp(math.log2(2.0 * m), scale)) - 1
    return -(((m == 0.5) - e) >> -scale) - 1  # -((-c) >> k) = ceil(c / 2**k) for c = e - [m == 0.5]


def bucket_bounds(index: int, scale: int) -> tuple[float, float]:
    """``(b**index, b**(index+1))``: the exclusive lower and inclusive upper bound of a positive bucket."""
    width = math.ldexp(1.0, -scale)  # log2(b)
    return _exp2(index * width), _exp2((index + 1) * width)


def bucket_estimate(index: int, scale: int) -> float:
    """``2 * b**(index+1) / (1 + b) = b**index * 2 / (1 + 1/b)``: equal relative error to both bucket ends."""
    width = math.ldexp(1.0, -scale)
    return _exp2(index * width) * (2.0 / (1.0 + _exp2(-width)))


def finite_index_range(scale: int) -> tuple[int, int]:
    """``(lowest, highest)`` index of a bucket at ``scale`` that holds a positive finite double (the smallest
    subnormal ``2**-1074`` and ``DBL_MAX``); ``(-2, 0)`` at scale -10, ``(-34369, 32767)`` at scale 5."""
    return _FINITE[scale - MIN_SCALE]


def bucket_range_problem(scale: int, lowest: int, highest: int) -> str | None:
    """Why buckets ``lowest..highest`` at ``scale`` cannot be represented, or None: the scale is outside
    ``[MIN_SCALE, MAX_SCALE]`` or a bucket holds no finite double (``finite_index_range``)."""
    if not MIN_SCALE <= scale <= MAX_SCALE:
        return f"scale {scale} outside [{MIN_SCALE}, {MAX_SCALE}]"
    lo, hi = _FINITE[scale - MIN_SCALE]
    if lowest < lo or highest > hi:
        return (
            f"buckets {lowest}..{highest} at scale {scale} hold no finite double (buckets {lo}..{hi} do, "
            "from 2**-1074 to the largest double)"
        )
    return None


def _shifted(span: tuple[int, int] | None, k: int) -> tuple[int, int] | None:
    return None if span is None else (span[0] >> k, span[1] >> k)


def _shift_to_fit(ranges: Iterable[tuple[int, int] | None], max_buckets: int) -> int:
    """Smallest ``k >= 0`` with ``(hi >> k) - (lo >> k) + 1 <= max_buckets`` for every ``(lo, hi)`` range."""
    k = 0
    for span in ranges:
        if span is None:
            continue
        lo, hi = span
        while (hi >> k) - (lo >> k) + 1 > max_buckets:
            k += 1
    return k


def _union(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    """Smallest index range covering both (None: empty)."""
    if a is None or b is None:
        return b if a is None else a
    return min(a[0], b[0]), max(a[1], b[1])


_FINITE = tuple(
    (bucket_index(math.ldexp(1.0, -1074), s), bucket_index(sys.float_info.max, s))
    for s in range(MIN_SCALE, MAX_SCALE + 1)
)


class BucketStore:
    """Dense bucket counts: ``counts[j]`` (int64) is the count of bucket ``offset + j``.

    The array is kept trimmed (empty, or first and last entries nonzero), so ``len(store)`` is the span that
    the bucket limit applies to and ``(offset, counts)`` is canonical. It grows in either direction on insert.
    """

    __slots__ = ("offset", "counts")

    def __init__(self, offset: int = 0, counts: np.ndarray | None = None) -> None:
        self.offset = offset
        self.counts = np.zeros(0, dtype=np.int64) if counts is None else counts

    def __len__(self) -> int:
        return len(self.counts)

    def __repr__(self) -> str:
        return f"BucketStore(offset={self.offset}, counts={self.counts.tolist()})"

    def index_range(self) -> tuple[int, int] | None:
        """``(lowest, highest)`` occupied index, or None when empty."""
        n = len(self.counts)
        return (self.offset, self.offset + n - 1) if n else None

    def total(self) -> int:
        return int(self.counts.sum())

    def items(self) -> Iterator[tuple[int, int]]:
        """``(index, count)`` of the nonzero buckets, in increasing index order."""
        for j in np.flatnonzero(self.counts).tolist():
            yield self.offset + j, int(self.counts[j])

    def count_below(self, index: int) -> int:
        """Total count of buckets with index ``< index``."""
        end = min(max(index - self.offset, 0), len(self.counts))
        return int(self.counts[:end].sum())

    def count_at(self, index: int) -> int:
        j = index - self.offset
        return int(self.counts[j]) if 0 <= j < len(self.counts) else 0

    def copy(self) -> BucketStore:
        return BucketStore(self.offset, self.counts.copy())

    def _extend(self, lo: int, hi: int) -> None:
        """Make the array cover indices ``lo..hi`` (callers then put counts at both new ends)."""
        n = len(self.counts)
        if n == 0:
            self.offset, self.counts = lo, np.zeros(hi - lo + 1, dtype=np.int64)
            return
        new_lo, new_hi = min(lo, self.offset), max(hi, self.offset + n - 1)
        if new_lo == self.offset and new_hi == self.offset + n - 1:
            return
        grown = np.zeros(new_hi - new_lo + 1, dtype=np.int64)
        grown[self.offset - new_lo : self.offset - new_lo + n] = self.counts
        self.offset, self.counts = new_lo, grown

    def add(self, index: int, count: int = 1) -> None:
        if count <= 0:
            return
        self._extend(index, index)
        self.counts[index - self.offset] += count

    def add_counts(self, offset: int, counts: Sequence[int] | np.ndarray) -> None:
        """Add a dense block of counts whose first entry is bucket ``offset`` (zero ends are trimmed)."""
        block = np.asarray(counts, dtype=np.int64)
        nonzero = np.flatnonzero(block)
        if not len(nonzero):
            return
        if block[nonzero].min() < 0:
            raise ValueError("bucket counts must be non-negative")
        first, last = int(nonzero[0]), int(nonzero[-1])
        self._add_dense(offset + first, block[first : last + 1])

    def _add_dense(self, lo: int, block: np.ndarray) -> None:
        """Add int64 ``block`` (nonzero at both ends) at indices ``lo..lo+len-1``."""
        self._extend(lo, lo + len(block) - 1)
        start = lo - self.offset
        self.counts[start : start + len(block)] += block

    def add_indices(self, indices: np.ndarray, lo: int | None = None, hi: int | None = None) -> None:
        """Count every entry of an int64 index array (``lo``/``hi``: its min/max, if already known)."""
        if not len(indices):
            return
        lo = int(indices.min()) if lo is None else lo
        hi = int(indices.max()) if hi is None else hi
        self._add_dense(lo, np.bincount(indices - lo, minlength=hi - lo + 1))

    def merge(self, other: BucketStore, shift: int = 0) -> None:
        """Add ``other``'s counts, re-bucketed ``index >> shift`` (``other`` is not modified)."""
        if shift:
            other = other.copy()
            other.downscale(shift)
        self.add_counts(other.offset, other.counts)

    def downscale(self, by: int) -> None:
        """Re-bucket in place: bucket ``i`` becomes ``i >> by``.

        Consecutive indices shifted right stay consecutive or repeat, so the new buckets are sums of runs of
        the old array, taken with ``np.add.reduceat``; the result is again trimmed.
        """
        n = len(self.counts)
        if by <= 0 or n == 0:
            return
        by = min(by, 62)  # |index| < 2**62, so larger shifts give the same result
        new = (np.arange(n, dtype=np.int64) + self.offset) >> by
        starts = np.concatenate(([0], np.flatnonzero(np.diff(new)) + 1))
        self.counts = np.add.reduceat(self.counts, starts)
        self.offset = self.offset >> by


class LogSketch:
    """Quantile sketch with OTel exponential-histogram buckets at ``scale`` (see the module docstring).

    ``max_buckets`` bounds the span of each of the two stores; when a value or a merge would exceed it, the
    whole sketch is downscaled by the smallest ``k`` that makes both spans fit. Values are counted exactly
    per bucket; ``count``, ``sum``, ``min`` and ``max`` are exact (``min``/``max`` are ``inf``/``-inf`` when
    empty).
    """

    def __init__(self, scale: int = 5, max_buckets: int = 1024) -> None:
        if not isinstance(scale, int) or not MIN_SCALE <= scale <= MAX_SCALE:
            raise ValueError(f"scale must be an int in [{MIN_SCALE}, {MAX_SCALE}], got {scale!r}")
        if max_buckets < 3:
            raise ValueError(f"max_buckets must be >= 3 (3 buckets per sign hold all doubles), got {max_buckets}")
        self._initial_scale = scale
        self.max_buckets = max_buckets
        self.clear()

    @classmethod
    def from_stores(
        cls,
        scale: int,
        positive: BucketStore,
        negative: BucketStore,
        zero_count: int,
        count: int,
        sum: float,  # noqa: A002 - the field's name
        min: float = math.inf,  # noqa: A002
        max: float = -math.inf,  # noqa: A002
        max_buckets: int = 1024,
    ) -> LogSketch:
        """A sketch holding exactly these stores (used, not copied) and totals, at ``scale``; ``clear()`` returns
        to that scale. Builds no empty stores first: the OTLP readers make one per delta. The caller vouches that
        the totals fit the stores and that the stores' spans fit ``max_buckets`` (else call ``downscale``)."""
        sk = cls.__new__(cls)
        sk._initial_scale = sk.scale = scale
        sk.max_buckets = max_buckets
        sk.count, sk.sum, sk.min, sk.max = count, sum, min, max
        sk.zero_count, sk.positive, sk.negative = zero_count, positive, negative
        return sk

    def clear(self) -> None:
        """Forget all values and return to the constructor's scale."""
        self.scale = self._initial_scale
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.zero_count = 0
        self.positive = BucketStore()
        self.negative = BucketStore()

    def __repr__(self) -> str:
        return (
            f"LogSketch(scale={self.scale}, count={self.count}, sum={self.sum}, min={self.min}, "
            f"max={self.max}, zero_count={self.zero_count}, positive={self.positive!r}, "
            f"negative={self.negative!r})"
        )

    @property
    def relative_accuracy(self) -> float:
        """``(b - 1) / (b + 1)`` at the current scale."""
        return relative_accuracy(self.scale)

    def copy(self) -> LogSketch:
        out = type(self).__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.positive = self.positive.copy()
        out.negative = self.negative.copy()
        return out

    # -- insertion -------------------------------------------------------------------------------------------

    def _fit(self, positive: tuple[int, int] | None, negative: tuple[int, int] | None) -> int:
        """Downscale so that stores covering these index ranges respect ``max_buckets``; return the shift."""
        k = _shift_to_fit((positive, negative), self.max_buckets)
        if k:
            self.downscale(k)
        return k

    def add(self, value: float) -> bool:
        """Record one value; return False (recording nothing) for NaN and +-inf."""
        v = float(value)
        if v > 0.0:
            if v == math.inf:
                return False
            store = self.positive
            index = bucket_index(v, self.scale)
        elif v < 0.0:
            if v == -math.inf:
                return False
            store = self.negative
            index = bucket_index(-v, self.scale)
        elif v == 0.0:
            store = None
            self.zero_count += 1
        else:
            return False
        if store is not None:
            j = index - store.offset
            if 0 <= j < len(store.counts):
                store.counts[j] += 1
            else:
                rng = _union(store.index_range(), (index, index))
                if store is self.positive:
                    k = self._fit(rng, self.negative.index_range())
                else:
                    k = self._fit(self.positive.index_range(), rng)
                store.add(index >> k)
        self.count += 1
        self.sum += v
        if v < self.min:
            self.min = v
        if v > self.max:
            self.max = v
        return True

    def _keys(self, magnitudes: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """Keys ``index + 1`` of positive magnitudes (``bucket_index`` vectorised), and the index range."""
        m, e = np.frexp(magnitudes)
        if self.scale >= 0:
            m *= 2.0
            np.log2(m, out=m)
            m *= math.ldexp(1.0, self.scale)  # exact
            np.ceil(m, out=m)
            keys = m.astype(np.int64)
            e -= 1
            e *= 1 << self.scale  # |e| <= 1074, so e * 2**20 still fits int32
            keys += e
        else:
            keys = e.astype(np.int64)
            keys -= m == 0.5
            np.negative(keys, out=keys)
            keys >>= -self.scale
            np.negative(keys, out=keys)
        # argmin/argmax are SIMD-vectorised and several times faster than min/max
        return keys, (int(keys[keys.argmin()]) - 1, int(keys[keys.argmax()]) - 1)

    def add_many(self, values: Iterable[float] | np.ndarray) -> int:
        """Record a batch (list or ndarray) with numpy; return how many non-finite values were dropped.

        Per sign: one ``log2``/``ceil`` pass and one ``bincount``; the bucket limit is checked once per batch.
        """
        x = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64).ravel()
        values_in = x.size
        if not values_in:
            return 0
        dropped = 0
        # argmin/argmax are SIMD-fast and return the first nan if there is one: they also detect non-finites
        lo, hi = float(x[x.argmin()]), float(x[x.argmax()])
        if not (math.isfinite(lo) and math.isfinite(hi)):
            x = x[np.isfinite(x)]
            dropped = values_in - x.size
            if not x.size:
                return dropped
            lo, hi = float(x[x.argmin()]), float(x[x.argmax()])
        if max(hi, -lo) * x.size < 1e300:
            total = float(x.sum())
        else:  # the sum may overflow to inf, which is then the right answer
            with np.errstate(over="ignore", invalid="ignore"):
                total = float(x.sum())
        # one pass per sign that is present: the common all-positive batch uses x as it is
        pos = None if hi <= 0.0 else x if lo > 0.0 else x[x > 0.0]
        neg = None if lo >= 0.0 else np.negative(x if hi < 0.0 else x[x < 0.0])
        zeros = x.size - (0 if pos is None else pos.size) - (0 if neg is None else neg.size)
        pbatch = None if pos is None else self._keys(pos)
        nbatch = None if neg is None else self._keys(neg)
        # union of the stores' and the batch's index ranges -> at most one downscale for the whole batch
        k = self._fit(
            _union(self.positive.index_range(), pbatch and pbatch[1]),
            _union(self.negative.index_range(), nbatch and nbatch[1]),
        )
        for store, batch in ((self.positive, pbatch), (self.negative, nbatch)):
            if batch is None:
                continue
            keys, (first, last) = batch
            first, last = first >> k, last >> k
            if k:
                keys -= 1
                keys >>= k
                keys -= first
            else:
                keys -= first + 1
            store._add_dense(first, np.bincount(keys, minlength=last - first + 1))
        self.count += x.size
        self.zero_count += zeros
        self.sum += total
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)
        return dropped

    # -- combination -----------------------------------------------------------------------------------------

    def downscale(self, by: int) -> None:
        """Lower the scale by ``by``: bucket ``i`` becomes ``i >> by`` in both stores (exact re-bucketing)."""
        if by < 0:
            raise ValueError(f"downscale amount must be >= 0, got {by}")
        if not by:
            return
        if self.scale - by < MIN_SCALE:
            raise ValueError(f"cannot downscale scale {self.scale} by {by} below {MIN_SCALE}")
        self.scale -= by
        self.positive.downscale(by)
        self.negative.downscale(by)

    def merge(self, other: LogSketch) -> None:
        """Add ``other``'s values (``other`` is not modified). Both are brought to the smaller scale, and further
        down if the merged spans exceed this sketch's ``max_buckets``.

        Atomic: the final scale is computed from the index ranges first, so a merge that would need a scale
        below ``MIN_SCALE`` (buckets no finite double falls in) raises ``ValueError`` with this sketch unchanged,
        and no array wider than ``max_buckets`` is ever allocated for the result."""
        if other is self:
            other = other.copy()
        target = min(self.scale, other.scale)
        mine, theirs = self.scale - target, other.scale - target
        k = _shift_to_fit(
            (
                _union(_shifted(self.positive.index_range(), mine), _shifted(other.positive.index_range(), theirs)),
                _union(_shifted(self.negative.index_range(), mine), _shifted(other.negative.index_range(), theirs)),
            ),
            self.max_buckets,
        )
        if target - k < MIN_SCALE:
            raise ValueError(
                f"cannot merge sketches at scales {self.scale} and {other.scale}: their buckets would need scale "
                f"{target - k} < {MIN_SCALE} to fit {self.max_buckets} buckets (buckets that hold no finite double)"
            )
        # nothing has changed yet, and nothing below can fail
        self.downscale(mine + k)
        self.positive.merge(other.positive, theirs + k)
        self.negative.merge(other.negative, theirs + k)
        self.count += other.count
        self.zero_count += other.zero_count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    # -- queries ---------------------------------------------------------------------------------------------

    def quantile(self, q: float) -> float:
        """Estimate of the value of rank ``floor(q * (count - 1))``; nan when empty (see module docstring).

        Ranks 0 and ``count - 1`` return the exact ``min`` and ``max``.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q!r}")
        if not self.count:
            return math.nan
        rank = math.floor(q * (self.count - 1))
        if rank == 0:
            return self.min
        if rank == self.count - 1:
            return self.max
        n_neg = self.negative.total()
        if rank < n_neg:
            # ascending values are descending magnitudes: walk the negative store from its top
            neg = self.negative
            j = int(np.searchsorted(np.cumsum(neg.counts[::-1]), rank, side="right"))
            estimate = -bucket_estimate(neg.offset + len(neg) - 1 - j, self.scale)
        elif rank < n_neg + self.zero_count:
            estimate = 0.0
        else:
            pos = self.positive
            j = int(np.searchsorted(np.cumsum(pos.counts), rank - n_neg - self.zero_count, side="right"))
            estimate = bucket_estimate(pos.offset + j, self.scale)
        return min(max(estimate, self.min), self.max)

    def quantiles(self, qs: Iterable[float]) -> list[float]:
        return [self.quantile(q) for q in qs]

    def count_at_or_below(self, threshold: float) -> tuple[int, int]:
        """``(lower, upper)`` bounds on the number of recorded values ``<= threshold``.

        Buckets wholly at or below the threshold count in both bounds; the bucket containing it only in the
        upper one. For ``t > 0`` that is bucket ``i = index(t)``, exact when ``t == b**(i+1)`` (a
        representable boundary is a power of two). For ``t < 0`` negative buckets ``j > index(|t|)`` lie
        wholly below ``t`` and bucket ``index(|t|)`` is partial (at a boundary it may still hold values equal
        to ``t``). Zero and ``t >= max`` / ``t < min`` are exact.
        """
        t = float(threshold)
        if math.isnan(t):
            raise ValueError("threshold must not be nan")
        if t >= self.max:
            return self.count, self.count
        if t < self.min:
            return 0, 0
        n_neg = self.negative.total()
        if t < 0.0:
            i = bucket_index(-t, self.scale)
            lower = n_neg - self.negative.count_below(i + 1)
            return lower, lower + self.negative.count_at(i)
        lower = n_neg + self.zero_count
        if t == 0.0:
            return lower, lower
        i = bucket_index(t, self.scale)
        lower += self.positive.count_below(i)
        partial = self.positive.count_at(i)
        if math.frexp(t)[0] == 0.5 and math.ldexp(math.log2(t), self.scale).is_integer():
            return lower + partial, lower + partial  # t is the upper bound of bucket i
        return lower, lower + partial

    # -- OTLP ------------------------------------------------------------------------------------------------

    def to_otlp_point(
        self,
        attributes: dict,
        start_time_unix_nano: int,
        time_unix_nano: int,
        *,
        max_scale: int | None = None,
    ) -> ExponentialHistogramDataPoint:
        """The SDK's ``ExponentialHistogramDataPoint``; ``max_scale`` downscales a copy first if needed.

        min/max are optional in OTLP and emitted as 0.0 for an empty sketch; empty stores are (offset 0, []).
        """
        sk = self
        if max_scale is not None and self.scale > max_scale:
            sk = self.copy()
            sk.downscale(self.scale - max_scale)
        empty = not sk.count
        return ExponentialHistogramDataPoint(
            attributes=attributes,
            start_time_unix_nano=start_time_unix_nano,
            time_unix_nano=time_unix_nano,
            count=sk.count,
            sum=sk.sum,
            scale=sk.scale,
            zero_count=sk.zero_count,
            positive=Buckets(
                offset=sk.positive.offset if len(sk.positive) else 0,
                bucket_counts=sk.positive.counts.tolist(),
            ),
            negative=Buckets(
                offset=sk.negative.offset if len(sk.negative) else 0,
                bucket_counts=sk.negative.counts.tolist(),
            ),
            flags=0,
            min=0.0 if empty else sk.min,
            max=0.0 if empty else sk.max,
        )

    @classmethod
    def from_otlp_point(cls, point: Any, max_buckets: int = 1024) -> LogSketch:
        """Build from an SDK ``ExponentialHistogramDataPoint``, an OTLP-JSON dict (collector file exporter:
        camelCase keys, int64 as strings, absent fields 0/empty) or an OTLP protobuf message.

        ``count`` must equal ``zero_count`` plus the bucket counts, and every occupied bucket must hold finite
        doubles (``bucket_range_problem``); ``ValueError`` otherwise. If ``min``/``max`` are absent they are
        replaced by the outer bounds of the occupied buckets, which never clamp an estimate.
        """
        if isinstance(point, Mapping):
            fields = _json_fields(point)
        elif hasattr(point, "HasField"):
            fields = _proto_fields(point)
        else:
            fields = (
                point.scale,
                point.count,
                point.sum,
                point.zero_count,
                (point.positive.offset, point.positive.bucket_counts),
                (point.negative.offset, point.negative.bucket_counts),
                point.min,
                point.max,
            )
        scale, count, total, zero_count, positive, negative, vmin, vmax = fields
        sk = cls(scale=int(scale), max_buckets=max_buckets)
        sk.positive.add_counts(int(positive[0]), [int(c) for c in positive[1]])
        sk.negative.add_counts(int(negative[0]), [int(c) for c in negative[1]])
        for store in (sk.positive, sk.negative):
            span = store.index_range()
            why = None if span is None else bucket_range_problem(sk.scale, *span)
            if why:
                raise ValueError(why)
        sk.zero_count = int(zero_count)
        sk.count = int(count)
        if sk.zero_count < 0 or sk.count != sk.zero_count + sk.positive.total() + sk.negative.total():
            raise ValueError(
                f"inconsistent point: count={sk.count} but zero_count={sk.zero_count} + positive="
                f"{sk.positive.total()} + negative={sk.negative.total()}"
            )
        sk.sum = float(total)
        if sk.count:
            sk.min = float(vmin) if vmin is not None else sk._bound_min()
            sk.max = float(vmax) if vmax is not None else sk._bound_max()
        sk._fit(sk.positive.index_range(), sk.negative.index_range())
        return sk

    def _bound_min(self) -> float:
        if len(self.negative):
            return -bucket_bounds(self.negative.offset + len(self.negative) - 1, self.scale)[1]
        if self.zero_count:
            return 0.0
        return bucket_bounds(self.positive.offset, self.scale)[0]

    def _bound_max(self) -> float:
        if len(self.positive):
            return bucket_bounds(self.positive.offset + len(self.positive) - 1, self.scale)[1]
        if self.zero_count:
            return 0.0
        return -bucket_bounds(self.negative.offset, self.scale)[0]

    # -- DDSketch --------------------------------------------------------------------------------------------

    def to_ddsketch(self) -> DDSketch:
        """A ``ddsketch.DDSketch`` with the same buckets: ``LogarithmicMapping`` with ``gamma = b`` exactly
        and multiplier exactly ``2**scale``, store key = index + 1. Needs ``scale >= -5`` (ddsketch requires a
        relative accuracy < 1).

        The buckets are copied exactly. Values added to the result later go through ddsketch's own key
        function, which uses ``math.log(v, 2)``; that is not exact at all powers of two, so such values may
        land one bucket off.
        """
        alpha = self.relative_accuracy
        if alpha >= 1.0:
            raise ValueError(f"ddsketch cannot represent scale {self.scale} (relative accuracy rounds to 1)")
        from ddsketch import DDSketch

        sk = DDSketch(alpha)
        mapping = sk._mapping
        mapping.gamma = scale_base(self.scale)
        mapping._multiplier = math.ldexp(1.0, self.scale)  # key = ceil(log2(v) * 2**scale)
        mapping.min_possible = sys.float_info.min * mapping.gamma
        mapping.max_possible = sys.float_info.max / mapping.gamma
        for store, ours in ((sk._store, self.positive), (sk._negative_store, self.negative)):
            for index, c in ours.items():
                store.add(index + 1, float(c))
        sk._zero_count = float(self.zero_count)
        sk._count = float(self.count)
        sk._sum = self.sum
        sk._min = self.min
        sk._max = self.max
        return sk

    @classmethod
    def from_ddsketch(cls, sk: DDSketch, max_buckets: int = 1024) -> LogSketch:
        """Inverse of ``to_ddsketch`` (exact for its output). The mapping must be a ``LogarithmicMapping``
        with offset 0 and ``gamma = 2**(2**-scale)`` for an integer scale (a relative tolerance of 1e-9 on
        ``log2(gamma)`` accepts gammas rebuilt from a relative accuracy); bin counts must be integers and the
        stores not collapsed."""
        from ddsketch.mapping import LogarithmicMapping

        mapping = sk._mapping
        if not isinstance(mapping, LogarithmicMapping) or mapping._offset != 0:
            raise ValueError(f"need a LogarithmicMapping with offset 0, got {type(mapping).__name__}")
        log2_gamma = math.log2(mapping.gamma)
        scale = round(-math.log2(log2_gamma))
        if not MIN_SCALE <= scale <= MAX_SCALE or abs(math.ldexp(log2_gamma, scale) - 1.0) > 1e-9:
            raise ValueError(
                f"ddsketch gamma {mapping.gamma!r} is not 2**(2**-scale) for an integer scale in "
                f"[{MIN_SCALE}, {MAX_SCALE}] (relative accuracy {mapping.relative_accuracy!r})"
            )
        out = cls(scale=scale, max_buckets=max_buckets)
        for ours, store in ((out.positive, sk._store), (out.negative, sk._negative_store)):
            if getattr(store, "is_collapsed", False):
                raise ValueError("ddsketch store has collapsed buckets; their values are not in their buckets")
            bins = np.asarray(store.bins, dtype=np.float64)
            if not np.all(bins == np.round(bins)) or not float(sk._zero_count).is_integer():
                raise ValueError("ddsketch has non-integer (weighted) counts")
            ours.add_counts(store.offset - 1, bins.astype(np.int64))
        out.zero_count = int(sk._zero_count)
        out.count = out.zero_count + out.positive.total() + out.negative.total()
        out.sum = float(sk.sum)
        out.min = float(sk._min)
        out.max = float(sk._max)
        out._fit(out.positive.index_range(), out.negative.index_range())
        return out


def _json_fields(d: Mapping[str, Any]) -> tuple:
    """Fields of an OTLP-JSON data point (lowerCamelCase keys; proto field names accepted too)."""

    def get(camel: str, snake: str, default: Any = None) -> Any:
        return d.get(camel, d.get(snake, default))

    def buckets(name: str) -> tuple[int, list]:
        b = d.get(name) or {}
        return int(b.get("offset", 0)), list(b.get("bucketCounts", b.get("bucket_counts", [])))

    return (
        int(d.get("scale", 0)),
        int(d.get("count", 0)),
        float(d.get("sum", 0.0)),
        int(get("zeroCount", "zero_count", 0)),
        buckets("positive"),
        buckets("negative"),
        d.get("min"),
        d.get("max"),
    )


def _proto_fields(p: Any) -> tuple:
    """Fields of an ``opentelemetry.proto.metrics.v1.metrics_pb2.ExponentialHistogramDataPoint``."""
    return (
        p.scale,
        p.count,
        p.sum if p.HasField("sum") else 0.0,
        p.zero_count,
        (p.positive.offset, p.positive.bucket_counts),
        (p.negative.offset, p.negative.bucket_counts),
        p.min if p.HasField("min") else None,
        p.max if p.HasField("max") else None,
    )
