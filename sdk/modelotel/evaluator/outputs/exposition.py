"""``modelotel serve``'s Prometheus text exposition (format 0.0.4): the SLO gauges of the latest evaluation
(``modelotel_slo_*``) and the receiver's own counters (``modelotel_serve_*``).

``GAUGES`` defines each SLO gauge family once, with its Prometheus and its OTLP name: serve exports the same
families as OTLP gauges (serve/export.py). ``exposition`` is a pure function of an evaluation and a
``ReceiverStats``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ...conventions import MODEL_NAME
from ..engine.batch import Evaluation
from ..engine.verdict import STATUSES, SLOResult
from ..slo import SLO

__all__ = ["CONTENT_TYPE", "GAUGES", "Gauge", "ReceiverStats", "exposition", "slo_labels"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = dict[str, str]
Sample = tuple[Labels, float]


def slo_labels(slo: SLO) -> Labels:
    """The labels every sample of an SLO's gauges carries: ``slo`` and ``model``."""
    return {"slo": slo.name, "model": dict(slo.sli.total.match).get(MODEL_NAME, "")}


def _status_samples(r: SLOResult) -> Iterable[Sample]:
    return (({"status": s}, 1.0 if r.status == s else 0.0) for s in STATUSES)  # one series per status


def _burn_samples(r: SLOResult) -> Iterable[Sample]:
    for window, value in r.burn_rates.items():
        if not window.startswith("window") and value is not None:
            yield {"window": window}, value


def _period_burn(r: SLOResult) -> Iterable[Sample]:
    for window, value in r.burn_rates.items():
        if window.startswith("window") and value is not None:
            yield {}, value


def _one(value: float | None) -> Iterable[Sample]:
    return () if value is None else (({}, float(value)),)


@dataclass(frozen=True)
class Gauge:
    """One SLO gauge family: Prometheus ``name``, OTLP ``otlp_name`` (+ ``unit``), and its samples per result."""

    name: str
    otlp_name: str
    unit: str
    help: str
    samples: Callable[[SLOResult], Iterable[Sample]]


GAUGES: tuple[Gauge, ...] = (
    Gauge(
        "modelotel_slo_sli", "modelotel.slo.sli", "", "SLI over the SLO window (good / events)", lambda r: _one(r.sli)
    ),
    Gauge(
        "modelotel_slo_sli_lower",
        "modelotel.slo.sli_lower",
        "",
        "lower bound of the SLI (histogram buckets split by the threshold counted bad)",
        lambda r: _one(r.sli_lower),
    ),
    Gauge(
        "modelotel_slo_sli_upper",
        "modelotel.slo.sli_upper",
        "",
        "upper bound of the SLI (histogram buckets split by the threshold counted good)",
        lambda r: _one(r.sli_upper),
    ),
    Gauge("modelotel_slo_objective", "modelotel.slo.objective", "", "SLO objective", lambda r: _one(r.slo.objective)),
    Gauge("modelotel_slo_events", "modelotel.slo.events", "", "events in the SLO window", lambda r: _one(r.events)),
    Gauge(
        "modelotel_slo_good_events",
        "modelotel.slo.good_events",
        "",
        "good events in the SLO window",
        lambda r: _one(r.good),
    ),
    Gauge(
        "modelotel_slo_error_budget_remaining",
        "modelotel.slo.error_budget_remaining",
        "",
        "1 - consumed / budget (negative once overspent)",
        lambda r: _one(r.budget_remaining_ratio),
    ),
    Gauge(
        "modelotel_slo_error_budget_consumed",
        "modelotel.slo.error_budget_consumed",
        "",
        "bad events (or bad time slices) in the SLO window",
        lambda r: _one(r.budget_consumed),
    ),
    Gauge(
        "modelotel_slo_error_budget",
        "modelotel.slo.error_budget",
        "",
        "(1 - objective) x events (or time slices) in the SLO window",
        lambda r: _one(r.budget_total),
    ),
    Gauge(
        "modelotel_slo_burn_rate",
        "modelotel.slo.burn_rate",
        "",
        "bad fraction over the window / (1 - objective), per alert window",
        _burn_samples,
    ),
    Gauge(
        "modelotel_slo_period_burn_rate",
        "modelotel.slo.period_burn_rate",
        "",
        "burn rate over the whole SLO window",
        _period_burn,
    ),
    Gauge(
        "modelotel_slo_alert_firing",
        "modelotel.slo.alert_firing",
        "",
        "1 when both windows of the alert tier burn at least its rate with min_events in the long window",
        lambda r: (({"alert": a.name, "severity": a.severity}, float(a.firing)) for a in r.alerts),
    ),
    Gauge(
        "modelotel_slo_alert_enough_data",
        "modelotel.slo.alert_enough_data",
        "",
        "1 when the alert tier's long window holds at least min_events events",
        lambda r: (({"alert": a.name, "severity": a.severity}, float(a.enough_data)) for a in r.alerts),
    ),
    Gauge(
        "modelotel_slo_time_to_exhaustion_seconds",
        "modelotel.slo.time_to_exhaustion",
        "s",
        "remaining budget x window / burn rate over the first tier's long window",
        lambda r: _one(r.time_to_exhaustion),
    ),
    Gauge("modelotel_slo_status", "modelotel.slo.status", "", "1 for the SLO's current status", _status_samples),
)


@dataclass(frozen=True)
class ReceiverStats:
    """The receiver's own numbers at one moment (``modelotel_serve_*``)."""

    requests: list[tuple[tuple[str, str], int]]  # ((protocol, outcome), count), sorted
    points: int
    bad_points: int
    skipped_points: int
    resets: int
    series: int
    max_series: int
    series_refused: int
    dropped_connections: list[tuple[str, int]]  # (reason, count), sorted
    bins: int
    snapshot_failures: int
    last_snapshot: float | None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _line(name: str, labels: Labels, value: float) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {_number(value)}" if inner else f"{name} {_number(value)}"


def exposition(evaluation: Evaluation | None, stats: ReceiverStats) -> str:
    """The Prometheus text format (0.0.4) of the latest evaluation and of the receiver's own counters."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(_line(name, labels, value) for labels, value in samples)

    results = evaluation.results if evaluation is not None else []
    for g in GAUGES:
        family(
            g.name, "gauge", g.help, ((slo_labels(r.slo) | labels, v) for r in results for labels, v in g.samples(r))
        )
    if evaluation is not None:
        family(
            "modelotel_slo_evaluation_timestamp_seconds",
            "gauge",
            "time the SLOs above were evaluated at",
            [({}, evaluation.at)],
        )
    family(
        "modelotel_serve_requests_total",
        "counter",
        "export requests received since start-up, by protocol and outcome (ok, partial, malformed, error, too_large, "
        "busy, timeout)",
        (({"protocol": p, "outcome": o}, float(n)) for (p, o), n in stats.requests),
    )
    family("modelotel_serve_points_total", "counter", "data points of the SLO metrics received", [({}, stats.points)])
    family(
        "modelotel_serve_rejected_points_total",
        "counter",
        "data points that could not be used (bad counts, gauges, unknown temporality, out of order)",
        [({}, stats.bad_points)],
    )
    family(
        "modelotel_serve_skipped_points_total",
        "counter",
        "data points of metrics no SLO uses",
        [({}, stats.skipped_points)],
    )
    family("modelotel_serve_resets_total", "counter", "cumulative series restarts seen", [({}, stats.resets)])
    family("modelotel_serve_series", "gauge", "series with state (latest cumulative point)", [({}, stats.series)])
    family("modelotel_serve_max_series", "gauge", "the --max-series limit", [({}, stats.max_series)])
    family(
        "modelotel_serve_series_refused_points_total",
        "counter",
        "data points of new series refused because --max-series series are held (also in rejected_points)",
        [({}, stats.series_refused)],
    )
    family(
        "modelotel_serve_dropped_connections_total",
        "counter",
        "HTTP connections closed before their answer: client_disconnect, timeout (--request-timeout), evicted (a "
        "slot for a new connection past --max-connections), refused (503: all slots answering)",
        (({"reason": r}, float(n)) for r, n in stats.dropped_connections),
    )
    family("modelotel_serve_bins", "gauge", "ledger time bins held, all SLOs", [({}, stats.bins)])
    family(
        "modelotel_serve_snapshot_failures_total",
        "counter",
        "snapshots that could not be written",
        [({}, stats.snapshot_failures)],
    )
    if stats.last_snapshot is not None:
        family(
            "modelotel_serve_snapshot_timestamp_seconds",
            "gauge",
            "time of the last snapshot written",
            [({}, stats.last_snapshot)],
        )
    return "\n".join(out) + "\n"
