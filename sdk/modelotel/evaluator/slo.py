"""The evaluator's SLO model: what every spec format (native YAML, OpenSLO) is translated into.

One-way pipeline: ``spec`` / ``openslo`` parse files into these frozen objects; the engine reads them and never
looks back at the source documents. Every fraction is in [0, 1]; every duration in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import modelotel.conventions as conv

SLIKind = Literal[
    "latency",  # fraction of calls with duration <= threshold (exponential/explicit histogram)
    "percentile",  # per time slice: quantile(percentile) of the duration <= threshold (Timeslices only)
    "error_ratio",  # fraction of calls without error.type
    "ood_rate",  # fraction of predictions with OOD score <= threshold (or not counted in ml.ood.outliers)
    "low_confidence_rate",  # fraction of predictions with confidence >= threshold
    "accuracy",  # fraction of feedback with ml.feedback.correct = true
    "ratio",  # any two counters or histogram counts: good/total or bad/total
    "drift",  # per time slice: a drift statistic of the signal against a reference range <= threshold
    "calibration",  # per time slice: ECE (or Brier score) of the feedback confidences <= threshold
    "estimated_accuracy",  # per time slice: CBPE expected accuracy of the prediction confidences >= threshold
    "abs_error",  # fraction of judged regression predictions with absolute error <= threshold
]
SLICED_KINDS = ("percentile", "drift", "calibration", "estimated_accuracy")  # judged per time slice
SKETCH_KINDS = ("drift", "calibration", "estimated_accuracy")  # from merged sketches: the ledger keeps them
# Judged from feedback: counted in the time bucket of the PREDICTION (ml.prediction.time_bucket_end), and judged
# only when enough of the window's predictions have their label (min_label_coverage).
FEEDBACK_KINDS = ("accuracy", "calibration", "abs_error")
DEFAULT_MIN_LABEL_COVERAGE = 0.5
Budgeting = Literal["occurrences", "timeslices", "ratio_timeslices"]


FilterOp = Literal["eq", "ne", "in", "not_in", "regex", "not_regex"]


@dataclass(frozen=True)
class AttributeFilter:
    """One attribute condition, with Prometheus' label-matcher semantics: an absent attribute reads as ``""``, so
    ``eq ""`` means absent and ``ne``/``not_in``/``not_regex`` match series without the key.

    ``values``: the one value for ``eq``/``ne``, the set for ``in``/``not_in``, the one pattern for ``regex`` /
    ``not_regex`` (anchored at both ends, as PromQL's ``=~``).
    """

    key: str
    op: FilterOp
    values: tuple[str, ...]


@dataclass(frozen=True)
class Selector:
    """Series of one metric whose attributes (resource and point, point wins) equal every ``match`` value and
    pass every ``filters`` condition.

    ``absent`` lists attribute keys that must NOT be present (e.g. ``error.type`` for successful calls).
    ``any_of``: when set, the series must also pass every condition of at least one alternative; alternatives are
    built disjoint (a series passes at most one), so counts over them add up (the semantic-convention error rule).
    ``threshold``/``op`` turn a histogram into a count of values on the good side (``le``: value <= threshold).
    ``threshold_unit`` is ``"s"`` when the threshold is a duration in seconds (then compared in each metric's own
    unit: a threshold of 0.1 s is 100 on a histogram in ms), None for a plain number.
    """

    metric: str
    match: tuple[tuple[str, str], ...] = ()
    absent: tuple[str, ...] = ()
    present: tuple[str, ...] = ()
    threshold: float | None = None
    op: Literal["le", "lt", "ge", "gt"] = "le"
    filters: tuple[AttributeFilter, ...] = ()
    any_of: tuple[tuple[AttributeFilter, ...], ...] = ()
    threshold_unit: str | None = None


@dataclass(frozen=True)
class SLI:
    """How good and total events are counted. For ``ratio``, exactly one of ``good``/``bad`` is set."""

    kind: SLIKind
    total: Selector
    good: Selector | None = None
    bad: Selector | None = None
    threshold: float | None = None  # latency seconds, OOD score or confidence; informative copy
    percentile: float | None = None  # for kind == "percentile": e.g. 0.95
    statistic: str | None = None  # drift: psi | ks | js | hellinger; calibration: ece | brier
    reference: str | None = None  # drift: "first:DURATION" of the data, or "FROM..TO" (ISO 8601 / epoch seconds)
    definition: str = ""  # how bad events are told apart when not written in the spec (the error rule used)


@dataclass(frozen=True)
class Window:
    """Rolling (``duration`` seconds ending at the evaluation time) or calendar-aligned.

    A calendar window starts at ``calendar_start`` (UTC epoch seconds, or None = natural boundary of ``unit``)
    and repeats every ``count`` ``unit``; the current period is the one containing the evaluation time.
    """

    duration: float
    rolling: bool = True
    unit: Literal["second", "minute", "hour", "day", "week", "month", "quarter", "year"] | None = None
    count: int = 1
    calendar_start: float | None = None
    timezone: str = "UTC"


@dataclass(frozen=True)
class AlertTier:
    """A multi-window multi-burn-rate alert: fires when both windows burn faster than ``burn_rate``."""

    name: str
    severity: Literal["page", "ticket"]
    burn_rate: float
    long_window: float
    short_window: float


DEFAULT_ALERT_TIERS: tuple[AlertTier, ...] = (
    AlertTier("page-fast", "page", 14.4, 3600.0, 300.0),
    AlertTier("page-slow", "page", 6.0, 6 * 3600.0, 1800.0),
    AlertTier("ticket-fast", "ticket", 3.0, 86400.0, 7200.0),
    AlertTier("ticket-slow", "ticket", 1.0, 3 * 86400.0, 6 * 3600.0),
)


@dataclass(frozen=True)
class SLO:
    name: str
    sli: SLI
    objective: float  # target fraction of good events (or good slices), in (0, 1)
    window: Window
    budgeting: Budgeting = "occurrences"
    timeslice_target: float | None = None  # Timeslices: a slice is good when its SLI >= this
    timeslice_window: float | None = None  # seconds
    alert_tiers: tuple[AlertTier, ...] = DEFAULT_ALERT_TIERS
    min_events: int = 100  # below this, status is "inconclusive"
    # feedback kinds: below this share of the window's predictions judged so far, status is "inconclusive"
    min_label_coverage: float = DEFAULT_MIN_LABEL_COVERAGE
    description: str = ""
    runbook: str = ""  # where on-call looks first: a URL (linked in the report, runbook_url in the rules) or a path
    source: str = ""  # "file.yaml: slos[0]" or "file.yaml: document 2 (SLO fraud-latency)"
    labels: dict[str, str] = field(default_factory=dict)

    def metrics(self) -> set[str]:
        """Metric names the engine needs for this SLO (lets sources skip everything else)."""
        selectors = (self.sli.total, self.sli.good, self.sli.bad, self.coverage_selector())
        return {s.metric for s in selectors if s is not None}

    def coverage_selector(self) -> Selector | None:
        """For a feedback kind: the model's ``ml.predictions`` (the denominator of label coverage), selected by the
        SLI's conditions on keys predictions carry too (the model, version, role, resource), not the feedback's own
        (correctness, labels, groups)."""
        if self.sli.kind not in FEEDBACK_KINDS:
            return None
        total = self.sli.total

        def shared(key: str) -> bool:
            return key not in _FEEDBACK_ONLY_KEYS

        return Selector(
            conv.PREDICTIONS,
            match=tuple((k, v) for k, v in total.match if shared(k)),
            absent=tuple(k for k in total.absent if shared(k)),
            present=tuple(k for k in total.present if shared(k)),
            filters=tuple(c for c in total.filters if shared(c.key)),
        )


_FEEDBACK_ONLY_KEYS = frozenset(
    {
        conv.FEEDBACK_CORRECT,
        conv.FEEDBACK_LABEL,
        conv.FEEDBACK_POSITIVE,
        conv.PREDICTION_POSITIVE,
        conv.FAIRNESS_GROUP,
        conv.PREDICTION_TIME_BUCKET_END,
    }
)
