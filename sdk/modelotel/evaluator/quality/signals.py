"""Model signals over time, read in the same pass as the SLOs: the timelines behind drift, charts and canaries.

``Signals`` bundles one ``Timeline`` per exported distribution (durations, confidence, OOD score, numeric
features, predicted labels, categorical features, feedback confidence) grouped by model (and feature).
``drift_rows`` compares a reference range with a current range of every signal (``drift.drift``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ... import conventions as conv
from ...sketch import LogSketch
from ..sources.points import Delta, attribute_text
from . import drift as drift_stats
from . import fairness as fairness_stats
from .timeline import Timeline

MODEL = conv.MODEL_NAME


@dataclass
class Signals:
    durations: Timeline
    confidence: Timeline
    ood: Timeline
    features: Timeline
    labels: Timeline
    categories: Timeline
    feedback_confidence: Timeline

    @classmethod
    def create(cls, resolution: float, match: dict[str, str] | None = None) -> Signals:
        m = dict(match or {})
        return cls(
            durations=Timeline(conv.INFERENCE_DURATION, resolution, (MODEL,), match=m),
            confidence=Timeline(conv.PREDICTION_CONFIDENCE_METRIC, resolution, (MODEL,), match=m),
            ood=Timeline(conv.OOD_SCORE_METRIC, resolution, (MODEL,), match=m),
            features=Timeline(conv.FEATURE_VALUE, resolution, (MODEL, conv.FEATURE_NAME), match=m),
            labels=Timeline(conv.PREDICTIONS, resolution, (MODEL,), count_by=conv.PREDICTION_LABEL, match=m),
            categories=Timeline(
                conv.FEATURE_CATEGORY_METRIC,
                resolution,
                (MODEL, conv.FEATURE_NAME),
                count_by=conv.FEATURE_CATEGORY,
                match=m,
            ),
            feedback_confidence=Timeline(conv.FEEDBACK_CONFIDENCE, resolution, (MODEL, conv.FEEDBACK_CORRECT), match=m),
        )

    def timelines(self) -> list[Timeline]:
        return [
            self.durations,
            self.confidence,
            self.ood,
            self.features,
            self.labels,
            self.categories,
            self.feedback_confidence,
        ]

    def span(self) -> tuple[float, float] | None:
        spans = [s for t in self.timelines() if (s := t.span()) is not None]
        if not spans:
            return None
        return min(s[0] for s in spans), max(s[1] for s in spans)


def _buckets(sk: LogSketch) -> tuple:
    return sk.scale, sk.count, sk.zero_count, tuple(sk.positive.items()), tuple(sk.negative.items())


def same_values(a: Signals, b: Signals, start: float, end: float) -> bool:
    """Whether two inputs hold exactly the same signal values in ``(start, end]`` (and some): one export given as
    both the reference and the current data, which would show no drift whatever the model did."""
    found = False
    for ta, tb in zip(a.timelines(), b.timelines(), strict=True):
        for group in set(ta.groups()) | set(tb.groups()):
            sa, sb = ta.merged(group, start, end), tb.merged(group, start, end)
            if (sa is None) != (sb is None) or (sa is not None and _buckets(sa) != _buckets(sb)):  # type: ignore[arg-type]
                return False
            ca, cb = ta.merged_counts(group, start, end), tb.merged_counts(group, start, end)
            if ca != cb:
                return False
            found = found or sa is not None or bool(ca)
    return found


@dataclass
class DriftRow:
    model: str
    signal: str  # "confidence", "ood_score", "label", "feature:<name>", "category:<name>"
    reference_count: float
    current_count: float
    result: drift_stats.Drift


def drifted_by(d: drift_stats.Drift, name: str, data_driven: bool = False) -> bool:
    """Whether statistic ``name`` drifted: beyond its fixed threshold (PSI >= 0.1, the others >), and with
    ``data_driven`` also beyond mean + 3 sigma over reference chunks (noisy on small chunks, so opt-in)."""
    value = d.values().get(name)
    if value is None:
        return False
    fixed = d.fixed[name]
    over = value >= fixed if name == "psi" else value > fixed
    return over or (data_driven and bool(d.drifted.get(name)))


def _chunks(tl: Timeline, group: tuple[str, ...], start: float, end: float, n: int, numeric: bool) -> list:
    step = (end - start) / n
    out = []
    for i in range(n):
        a, b = start + i * step, start + (i + 1) * step
        part = tl.merged(group, a, b) if numeric else tl.merged_counts(group, a, b)
        if part is not None and (part.count if numeric else sum(part.values())):
            out.append(part)
    return out


def drift_rows(
    signals: Signals,
    reference: tuple[float, float],
    current: tuple[float, float],
    *,
    chunks: int = 6,
    min_count: int = 30,
    reference_signals: Signals | None = None,
) -> list[DriftRow]:
    """Drift of every signal of every model, ``current`` range against ``reference`` range (seconds).

    ``reference_signals`` takes the reference from another input (e.g. training-time telemetry); the reference
    range then applies to it. Signals with fewer than ``min_count`` values on either side are left out.
    """
    ref_src = reference_signals or signals
    rows = []
    numeric = [("confidence", signals.confidence, ref_src.confidence), ("ood_score", signals.ood, ref_src.ood)]
    for name, tl, ref_tl in numeric + [("feature", signals.features, ref_src.features)]:
        for group in sorted(set(tl.groups()) & set(ref_tl.groups())):
            ref = ref_tl.merged(group, *reference)
            cur = tl.merged(group, *current)
            if ref is None or cur is None or ref.count < min_count or cur.count < min_count:
                continue
            parts = _chunks(ref_tl, group, *reference, chunks, True)
            result = drift_stats.drift(ref, cur, chunks=parts if len(parts) >= 2 else None)
            signal = f"feature:{group[1]}" if name == "feature" else name
            rows.append(DriftRow(group[0], signal, ref.count, cur.count, result))
    for name, tl, ref_tl in (
        ("label", signals.labels, ref_src.labels),
        ("category", signals.categories, ref_src.categories),
    ):
        for group in sorted(set(tl.groups()) & set(ref_tl.groups())):
            ref_counts = ref_tl.merged_counts(group, *reference)
            cur_counts = tl.merged_counts(group, *current)
            if sum(ref_counts.values()) < min_count or sum(cur_counts.values()) < min_count:
                continue
            parts = _chunks(ref_tl, group, *reference, chunks, False)
            result = drift_stats.drift(ref_counts, cur_counts, chunks=parts if len(parts) >= 2 else None)
            signal = f"category:{group[1]}" if name == "category" else "label"
            rows.append(DriftRow(group[0], signal, sum(ref_counts.values()), sum(cur_counts.values()), result))
    return rows


FAIRNESS_KEYS = (conv.FEEDBACK_CORRECT, conv.FAIRNESS_GROUP, conv.PREDICTION_POSITIVE, conv.FEEDBACK_POSITIVE)


@dataclass
class FeedbackCounts:
    """``ml.feedback`` increments per model and fairness attributes, in ``(start, end]`` (seconds)."""

    start: float | None = None
    end: float | None = None
    model: str | None = None
    counts: dict[str, dict[tuple, float]] = field(default_factory=dict)
    metrics = frozenset({conv.FEEDBACK})

    def add(self, delta: Delta) -> None:
        t = delta.end_ns / 1e9
        if (self.start is not None and t <= self.start) or (self.end is not None and t > self.end):
            return
        model = attribute_text(delta.attributes.get(MODEL))
        if self.model is not None and model != self.model:
            return
        key = tuple(delta.attributes.get(k) for k in FAIRNESS_KEYS)
        per = self.counts.setdefault(model, {})
        per[key] = per.get(key, 0.0) + delta.value

    def fairness(self, model: str) -> fairness_stats.Fairness:
        points = [
            ({k: v for k, v in zip(FAIRNESS_KEYS, key, strict=True) if v is not None}, n)
            for key, n in self.counts.get(model, {}).items()
        ]
        groups, ungrouped = fairness_stats.tally(points)
        return fairness_stats.fairness(groups, ungrouped=ungrouped)
