"""Time-binned distributions per group, for charts (quantiles over time) and drift (window vs window).

A ``Timeline`` keeps, for one metric, the merged increments of every group (a tuple of attribute values, e.g.
``(model,)`` or ``(model, feature)``) per time bin: merged sketches for exponential histograms, summed values
for counters (by the attribute named in ``count_by``, e.g. the predicted label). Like the ledger, a delta lands
in the bin holding its end time. When a group would exceed ``max_bins`` bins, the resolution doubles and
neighbouring bins merge (merging is exact), so memory stays bounded over long inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from ...sketch import LogSketch
from ..sources.points import Delta, attribute_text

Group = tuple[str, ...]


@dataclass
class Timeline:
    metric: str
    resolution: float  # seconds
    group_by: tuple[str, ...] = ("ml.model.name",)
    count_by: str | None = None  # counters: keep a count per value of this attribute (e.g. the label)
    match: dict[str, str] = field(default_factory=dict)
    sketches: dict[Group, dict[int, LogSketch]] = field(default_factory=dict)
    counts: dict[Group, dict[int, dict[str, float]]] = field(default_factory=dict)
    max_bins: int = 1440

    @property
    def metrics(self) -> set[str]:
        return {self.metric}

    def add(self, delta: Delta) -> None:
        if delta.metric != self.metric:
            return
        attrs = delta.attributes
        for key, want in self.match.items():
            if attribute_text(attrs.get(key)) != want:
                return
        group = tuple(attribute_text(attrs.get(g)) for g in self.group_by)
        k = math.ceil(delta.end_ns / (self.resolution * 1e9))
        if delta.sketch is not None:
            bins = self.sketches.setdefault(group, {})
            sk = bins.get(k)
            if sk is None:
                bins[k] = delta.sketch.copy()
                if len(bins) > self.max_bins:
                    self._coarsen()
            else:
                sk.merge(delta.sketch)
        elif self.count_by is not None:
            value = attribute_text(attrs.get(self.count_by))
            bins_c = self.counts.setdefault(group, {})
            per = bins_c.setdefault(k, {})
            per[value] = per.get(value, 0.0) + delta.value
            if len(bins_c) > self.max_bins:
                self._coarsen()

    def _coarsen(self) -> None:
        """Double the resolution: bin k (ends in ((k-1) r, k r]) goes to bin ceil(k / 2) at 2 r."""
        self.resolution *= 2
        for group, bins in self.sketches.items():
            merged: dict[int, LogSketch] = {}
            for k, sk in bins.items():
                j = -(-k // 2)
                if j in merged:
                    merged[j].merge(sk)
                else:
                    merged[j] = sk
            self.sketches[group] = merged
        for group, bins_c in self.counts.items():
            merged_c: dict[int, dict[str, float]] = {}
            for k, per in bins_c.items():
                target = merged_c.setdefault(-(-k // 2), {})
                for value, n in per.items():
                    target[value] = target.get(value, 0.0) + n
            self.counts[group] = merged_c

    def groups(self) -> list[Group]:
        return sorted(set(self.sketches) | set(self.counts))

    def merged(self, group: Group, start: float, end: float) -> LogSketch | None:
        """Merged sketch of the bins ending in ``(start, end]`` (seconds), or None without data."""
        k0, k1 = math.floor(start / self.resolution) + 1, math.ceil(end / self.resolution)
        out: LogSketch | None = None
        for k, sk in self.sketches.get(group, {}).items():
            if k0 <= k <= k1:
                if out is None:
                    out = sk.copy()
                else:
                    out.merge(sk)
        return out

    def merged_counts(self, group: Group, start: float, end: float) -> dict[str, float]:
        k0, k1 = math.floor(start / self.resolution) + 1, math.ceil(end / self.resolution)
        out: dict[str, float] = {}
        for k, per in self.counts.get(group, {}).items():
            if k0 <= k <= k1:
                for value, n in per.items():
                    out[value] = out.get(value, 0.0) + n
        return out

    def span(self) -> tuple[float, float] | None:
        """``(first, last)`` bin end times (seconds) with data in any group."""
        keys = [k for bins in self.sketches.values() for k in bins] + [k for b in self.counts.values() for k in b]
        if not keys:
            return None
        return (min(keys) - 1) * self.resolution, max(keys) * self.resolution

    def quantiles_over_time(
        self, group: Group, qs: Sequence[float], start: float, end: float, step: float
    ) -> list[tuple[float, list[float]]]:
        """``(t, [quantile(q) for q in qs])`` of the data in each ``(t - step, t]`` from ``start`` to ``end``."""
        out = []
        n = max(1, math.ceil((end - start) / step))
        for i in range(n):
            t1 = end - (n - 1 - i) * step
            sk = self.merged(group, t1 - step, t1)
            if sk is not None and sk.count:
                out.append((t1, [sk.quantile(q) for q in qs]))
        return out
