"""What every source yields: per-series increments (deltas) with their time range and attributes.

Sources (OTLP JSON lines, the Prometheus HTTP API, the OTLP stream of ``modelotel serve``) convert cumulative
series to deltas themselves (per series: resource + scope + metric + point attributes), handle counter resets
(a new start time, or a value that went down) and scale changes, so the engine only ever adds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...sketch import LogSketch

AttrValue = str | bool | int | float


def attribute_text(value: AttrValue | None) -> str:
    """How filters compare attribute values: as text, booleans as ``true``/``false`` (OTLP JSON's and Prometheus'
    spelling), absent as ``""``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class SourceError(Exception):
    """A location that cannot be read at all (missing, a directory, no permission, not text, server down),
    with one message naming it. Problems inside readable data are counted in the ReadReport instead."""


@dataclass(frozen=True)
class ExplicitHistogram:
    """An explicit-bucket histogram increment: ``counts[i]`` values in ``(bounds[i-1], bounds[i]]``.

    ``len(counts) == len(bounds) + 1``; the last bucket is ``(bounds[-1], +inf)``.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float = 0.0


@dataclass(frozen=True)
class Delta:
    """An increment of one series over ``(start_ns, end_ns]``.

    ``value`` is the increase of a sum (counter) or the number of values added to a histogram; ``sketch`` is set
    for exponential histograms, ``explicit`` for explicit-bucket histograms. ``attributes`` merges resource and
    point attributes (point wins). ``series`` identifies the source series (for per-instance diagnostics).
    ``unit`` is the metric's unit as the data states it (UCUM, e.g. ``s`` or ``ms``; ``""`` when it does not).
    """

    metric: str
    attributes: dict[str, AttrValue]
    start_ns: int
    end_ns: int
    value: float
    sketch: LogSketch | None = None
    explicit: ExplicitHistogram | None = None
    series: int = 0
    unit: str = ""


@dataclass
class Problem:
    """One unusable line or point, reported with where it was."""

    source: str
    line: int  # 0 when not line-based
    reason: str


MAX_INVENTORY_SERIES = 1000  # per metric: enough to list what a selector could have matched


@dataclass
class Inventory:
    """What the inputs hold, to say why a selector matched nothing: every metric name with its number of points
    (read or skipped), and the attributes of the first ``MAX_INVENTORY_SERIES`` series of each wanted metric."""

    metrics: dict[str, int] = field(default_factory=dict)
    series: dict[str, list[dict[str, AttrValue]]] = field(default_factory=dict)
    units: dict[str, set[str]] = field(default_factory=dict)  # wanted metric -> units its data states
    first_ns: int = 0  # time span of the points of wanted metrics (0: none)
    last_ns: int = 0

    def add_series(self, metric: str, attributes: dict[str, AttrValue]) -> None:
        known = self.series.setdefault(metric, [])
        if len(known) < MAX_INVENTORY_SERIES:
            known.append(attributes)


@dataclass
class ReadReport:
    """What a source saw: counts per outcome, and the first problems with their line numbers."""

    source: str
    bytes_read: int = 0
    lines: int = 0
    points: int = 0
    deltas: int = 0
    skipped_metrics: int = 0  # points of metrics nobody asked for
    corrupt_lines: int = 0  # not JSON or truncated
    foreign_lines: int = 0  # valid JSON but not OTLP of any signal
    signal_lines: dict[str, int] = field(default_factory=dict)  # OTLP traces/logs/profiles lines: not metrics
    duplicate_points: int = 0  # points already read (the same data twice): dropped
    first_duplicate_line: int = 0
    bad_points: int = 0  # OTLP metrics points we could not use (inconsistent counts, unknown kinds)
    resets: int = 0  # cumulative series that restarted
    shared_series: int = 0  # points of a series that several processes write at once (no service.instance.id)
    first_cumulative: int = 0  # first point of a cumulative series with an unknown start (not counted)
    series: int = 0
    instances: set[str] = field(default_factory=set)  # service.instance.id values seen
    problems: list[Problem] = field(default_factory=list)  # at most MAX_PROBLEMS kept
    MAX_PROBLEMS = 20

    def problem(self, line: int, reason: str) -> None:
        if len(self.problems) < self.MAX_PROBLEMS:
            self.problems.append(Problem(self.source, line, reason))

    @property
    def usable(self) -> bool:
        return self.deltas > 0 or (self.points > 0 and self.bad_points < self.points)
