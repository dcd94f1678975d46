"""Collecting one side of a canary / shadow comparison: the deltas whose attributes match a filter.

A filter is ``key=value[,key=value...]``; ``model``, ``version`` and ``role`` stand for ``ml.model.name``,
``ml.model.version`` and ``ml.deployment.role``, any other key is an attribute name (resource or point, e.g.
``service.instance.id`` or ``k8s.deployment.name``). Values compare as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ... import conventions as conv
from ...sketch import LogSketch
from ..sources.points import Delta, attribute_text
from .compare import Arm

SHORT_KEYS = {"model": conv.MODEL_NAME, "version": conv.MODEL_VERSION, "role": conv.DEPLOYMENT_ROLE}


def parse_filter(text: str) -> dict[str, str]:
    """``"version=2,role=canary"`` -> ``{"ml.model.version": "2", "ml.deployment.role": "canary"}``."""
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ValueError(f"expected key=value[,key=value...], got {text!r}")
        out[SHORT_KEYS.get(key, key)] = value
    return out


@dataclass
class ArmCollector:
    """Merges what one arm recorded in ``(start, end]`` (seconds); None bounds are open."""

    match: dict[str, str]
    start: float | None = None
    end: float | None = None
    latency: LogSketch | None = None
    errors: int = 0
    confidence: LogSketch | None = None
    ood: LogSketch | None = None
    feedback: int = 0
    correct: int = 0
    instances: set[str] = field(default_factory=set)

    metrics = frozenset(
        {conv.INFERENCE_DURATION, conv.PREDICTION_CONFIDENCE_METRIC, conv.OOD_SCORE_METRIC, conv.FEEDBACK}
    )

    def add(self, delta: Delta) -> None:
        t = delta.end_ns / 1e9
        if (self.start is not None and t <= self.start) or (self.end is not None and t > self.end):
            return
        attrs = delta.attributes
        for key, want in self.match.items():
            got = attrs.get(key)
            if got is None or attribute_text(got) != want:
                return
        instance = attrs.get("service.instance.id")
        if instance is not None:
            self.instances.add(str(instance))
        metric = delta.metric
        if metric == conv.FEEDBACK:
            self.feedback += int(delta.value)
            if attribute_text(attrs.get(conv.FEEDBACK_CORRECT)) == "true":
                self.correct += int(delta.value)
            return
        if delta.sketch is None:
            return
        if metric == conv.INFERENCE_DURATION:
            self.latency = _merge(self.latency, delta.sketch)
            if conv.ERROR_TYPE in attrs:
                self.errors += delta.sketch.count
        elif metric == conv.PREDICTION_CONFIDENCE_METRIC:
            self.confidence = _merge(self.confidence, delta.sketch)
        elif metric == conv.OOD_SCORE_METRIC:
            self.ood = _merge(self.ood, delta.sketch)

    def arm(self) -> Arm:
        return Arm(
            latency=self.latency,
            errors=self.errors,
            confidence=self.confidence,
            ood=self.ood,
            feedback=self.feedback,
            correct=self.correct,
        )


def _merge(into: LogSketch | None, sk: LogSketch) -> LogSketch:
    if into is None:
        return sk.copy()
    into.merge(sk)
    return into
