"""The CBPE estimate beside each ``accuracy`` SLO: the merged ``ml.prediction.confidence`` of the same model.

A sink of the batch pass (``batch.Sink``): for every ``accuracy`` SLO, the prediction-confidence series that its
filters select (the SLO's ``ml.feedback`` selector with the metric swapped and the feedback-only conditions left
out: same model, version, role and attributes) are merged per bin, so any window can be estimated afterwards.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from ... import conventions as conv
from ...sketch import LogSketch
from ..quality.cbpe import AccuracyEstimate, estimated_accuracy
from ..slo import SLO
from ..sources.points import Delta
from .ledger import matches


class ConfidenceWindows:
    """Merged prediction-confidence sketches per bin, for the ``accuracy`` SLOs among ``slos`` (by index)."""

    def __init__(self, slos: Sequence[SLO], resolution: float) -> None:
        self.resolution = resolution
        self.selectors = {
            # the model's predictions (SLO.coverage_selector: the feedback-only conditions left out)
            i: dataclasses.replace(slo.coverage_selector(), metric=conv.PREDICTION_CONFIDENCE_METRIC)  # type: ignore[arg-type]
            for i, slo in enumerate(slos)
            if slo.sli.kind == "accuracy"
        }
        self.bins: dict[int, dict[int, LogSketch]] = {i: {} for i in self.selectors}
        self.refused = 0  # deltas that could not be merged (a sketch beyond the scale range): left out, counted

    @property
    def metrics(self) -> set[str]:
        return {conv.PREDICTION_CONFIDENCE_METRIC} if self.selectors else set()

    def add(self, delta: Delta) -> None:
        if delta.sketch is None:
            return
        k = math.ceil(delta.end_ns / (self.resolution * 1e9))
        for i, selector in self.selectors.items():
            if matches(selector, delta.metric, delta.attributes):
                merged = self.bins[i].get(k) or LogSketch(delta.sketch.scale)
                try:
                    merged.merge(delta.sketch)
                except ValueError:
                    self.refused += 1
                    continue
                self.bins[i][k] = merged

    def forget_before(self, low: int) -> int:
        """Drop the bins below index ``low`` (serve's pruning); the number dropped."""
        dropped = 0
        for per_slo in self.bins.values():
            old = [k for k in per_slo if k < low]
            for k in old:
                del per_slo[k]
            dropped += len(old)
        return dropped

    def estimate(self, index: int, start: float, end: float) -> AccuracyEstimate | None:
        """CBPE accuracy of the predictions in the bins ending in ``(start, end]`` (None without any in [0, 1])."""
        k0, k1 = math.floor(start / self.resolution) + 1, math.ceil(end / self.resolution)
        merged: LogSketch | None = None
        for k, sk in self.bins.get(index, {}).items():
            if k0 <= k <= k1:
                if merged is None:
                    merged = LogSketch(sk.scale)
                merged.merge(sk)
        if merged is None or not merged.count:
            return None
        try:
            return estimated_accuracy(merged)
        except ValueError:  # every confidence outside [0, 1]
            return None
