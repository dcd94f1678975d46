"""A Grafana dashboard over the series our collector's Prometheus route writes and the rules ``rules.py`` records.

Template variables: ``datasource`` (any Prometheus data source), ``model`` and ``version`` (``label_values`` of
``ml_inference_duration_seconds``; multi-value, "All" = ``.*``) and ``export_interval`` (the SDK's metric export
interval). Every model panel aggregates by model and version with ``sum by (ml_model_name, ml_model_version)``
over ``rate(...[$__rate_interval])``, and its targets' minimum step ("Min step", ``interval``) is
``$export_interval``: Grafana then makes ``$__rate_interval = max($__interval + export interval, 4 x export
interval)``. Without it Grafana takes the data source's scrape interval (15 s unless set), so with the SDK's
default 60 s exports ``$__rate_interval`` is 1m, a window holding at most one point, and ``rate()`` returns nothing:
every model panel would be empty.

With SLOs, the dashboard opens on a summary, one tile per SLO (as Sloth's and Grafana's SLO dashboards do):
alert tiers firing, since when, error budget remaining and the burn rate now; then the model panels, then each
SLO's detail.

* latency p50/p95/p99: ``histogram_quantile`` over the native histogram (within one bucket: 2.2% at scale 5);
* calls per second and error ratio (calls with ``error_type`` over all calls);
* confidence p10/p50/p90 and its distribution (a heatmap of the native histogram);
* OOD rate (``ml_ood_outliers_total`` over the number of scored predictions) and OOD score quantiles;
* accuracy from feedback (``ml_feedback_correct="true"`` over all feedback).

Per SLO (``rules.py`` must be loaded): error budget remaining, SLI against the objective, burn rate over every
recorded window against the alert tiers' rates, and firing alert tiers. Without SLOs, one table lists the budget
of every SLO whose rules Prometheus has.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from ... import conventions as conv
from ..slo import SKETCH_KINDS, SLO
from .rules import duration_text, label_name, prometheus_metric

__all__ = ["dashboard_json", "dashboard", "panel_queries"]

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
BY = f"{label_name(conv.MODEL_NAME)}, {label_name(conv.MODEL_VERSION)}"
MODEL_FILTER = f'{label_name(conv.MODEL_NAME)}=~"$model", {label_name(conv.MODEL_VERSION)}=~"$version"'
LEGEND = f"{{{{{label_name(conv.MODEL_NAME)}}}}} {{{{{label_name(conv.MODEL_VERSION)}}}}}"
WIDTH = 24
EXPORT_INTERVAL = "$export_interval"
# The choices offered for the export interval variable (OTEL_METRIC_EXPORT_INTERVAL, seconds).
EXPORT_INTERVALS = (1.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0)
BURN_UNIT = "suffix:×"  # a multiple of the budget rate; Grafana's custom-unit syntax, as it has no such unit


def _name(metric: str) -> str:
    return prometheus_metric(metric)[0]


def _rate(metric: str, extra: str = "") -> str:
    """Per model and version, the summed rate of a metric (a native histogram or a counter)."""
    matchers = f"{MODEL_FILTER}, {extra}" if extra else MODEL_FILTER
    return f"sum by ({BY}) (rate({_name(metric)}{{{matchers}}}[$__rate_interval]))"


def _quantiles(metric: str, qs: Sequence[float]) -> list[dict]:
    return [_rate_target(f"histogram_quantile({q}, {_rate(metric)})", f"p{q * 100:g} {LEGEND}") for q in qs]


def _target(expr: str, legend: str, **extra) -> dict:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, **extra}


def _rate_target(expr: str, legend: str, **extra) -> dict:
    """A target over ``rate(...[$__rate_interval])``: its min step is the export interval (module docstring)."""
    return _target(expr, legend, interval=EXPORT_INTERVAL, **extra)


class _Layout:
    """Panels placed left to right, rows of height ``h``; ids in order."""

    def __init__(self) -> None:
        self.panels: list[dict] = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "id": len(self.panels) + 1,
                "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def add(self, panel: dict, w: int, h: int = 8) -> None:
        if self.x + w > WIDTH:
            self._newline()
        targets = panel.get("targets", [])
        for i, t in enumerate(targets):
            t["refId"] = chr(ord("A") + i)
        panel = {"id": len(self.panels) + 1, "datasource": DATASOURCE, **panel}
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_h
        self.x, self.row_h = 0, 0


def _timeseries(title: str, targets: list[dict], unit: str, description: str = "", **defaults) -> dict:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit, **defaults}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
    }


def _stat(title: str, targets: list[dict], unit: str, steps: list[dict], description: str = "", **options) -> dict:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "targets": targets,
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}, "decimals": 2},
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            **options,
        },
    }


def _model_panels(layout: _Layout) -> None:
    duration, confidence = conv.INFERENCE_DURATION, conv.PREDICTION_CONFIDENCE_METRIC
    calls = f"histogram_count({_rate(duration)})"
    failed = label_name(conv.ERROR_TYPE) + '!=""'
    errors = f"histogram_count({_rate(duration, failed)})"
    layout.row("Model serving")
    layout.add(_timeseries("Inference latency", _quantiles(duration, (0.5, 0.95, 0.99)), "s"), 12)
    layout.add(_timeseries("Calls per second", [_rate_target(calls, LEGEND)], "reqps"), 6)
    layout.add(
        _timeseries(
            "Error ratio",
            [_rate_target(f"({errors} or {calls} * 0)\n/\n{calls}", LEGEND)],  # no error series yet: 0
            "percentunit",
            "Calls that raised (error_type set) over all calls.",
        ),
        6,
    )
    layout.add(_timeseries("Confidence quantiles", _quantiles(confidence, (0.1, 0.5, 0.9)), "percentunit"), 12)
    layout.add(
        {
            "type": "heatmap",
            "title": "Confidence distribution",
            "targets": [
                _rate_target(
                    f"sum(rate({_name(confidence)}{{{MODEL_FILTER}}}[$__rate_interval]))",
                    "confidence",
                    format="heatmap",
                )
            ],
            "options": {"calculate": False, "yAxis": {"unit": "percentunit"}, "color": {"scheme": "Blues"}},
            "fieldConfig": {"defaults": {}, "overrides": []},
        },
        12,
    )
    scored = f"histogram_count({_rate(conv.OOD_SCORE_METRIC)})"
    ood = f"({_rate(conv.OOD_OUTLIERS)} or {scored} * 0)\n/\n{scored}"  # no outlier series yet: 0
    layout.add(
        _timeseries(
            "OOD rate",
            [_rate_target(ood, LEGEND)],
            "percentunit",
            "Predictions flagged out-of-distribution (ml.ood.outliers) over predictions scored (ml.ood.score).",
        ),
        8,
    )
    layout.add(_timeseries("OOD score quantiles", _quantiles(conv.OOD_SCORE_METRIC, (0.5, 0.95, 0.99)), "none"), 8)
    correct = f'{label_name(conv.FEEDBACK_CORRECT)}="true"'
    accuracy = f"{_rate(conv.FEEDBACK, correct)}\n/\n{_rate(conv.FEEDBACK)}"
    layout.add(
        _timeseries(
            "Accuracy (feedback)", [_rate_target(accuracy, LEGEND)], "percentunit", "Feedback marked correct over all."
        ),
        8,
    )


def _slo_ref(slo: SLO, record: str) -> str:
    return f'{record}{{slo_name="{_escape(slo.name)}"}}'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _slo_panels(layout: _Layout, slo: SLO) -> None:
    sliced = slo.sli.kind == "percentile" or slo.budgeting != "occurrences"
    period = duration_text(slo.window.duration)
    period_error = f"slo:sli_error:timeslices{period}" if sliced else f"slo:sli_error:ratio_rate{period}"
    budget = _slo_ref(slo, "slo:error_budget:ratio")
    layout.row(f"SLO {slo.name}")
    layout.add(
        _stat(
            "Error budget remaining",
            [_target(_slo_ref(slo, "slo:period_error_budget_remaining:ratio"), f"over {period}")],
            "percentunit",
            [{"color": "red", "value": None}, {"color": "orange", "value": 0}, {"color": "green", "value": 0.25}],
            f"1 - consumed / budget over the last {period} ({'time slices' if sliced else 'events'}).",
        ),
        4,
    )
    layout.add(
        _timeseries(
            "SLI and objective",
            [
                _target(f"1 - {_slo_ref(slo, period_error)}", f"SLI ({period})"),
                _target(_slo_ref(slo, "slo:objective:ratio"), "objective"),
            ],
            "percentunit",
            slo.description,
        ),
        8,
    )
    targets = []
    if slo.sli.kind != "percentile":
        events = f'{{__name__=~"slo:sli_error:ratio_rate.+", slo_name="{_escape(slo.name)}"}}'
        targets.append(_target(f"{events} / on (slo_name) group_left () {budget}", "{{slo_window}}"))
    if sliced:
        slices = f'{{__name__=~"slo:sli_error:timeslices.+", slo_name="{_escape(slo.name)}"}}'
        targets.append(_target(f"{slices} / on (slo_name) group_left () {budget}", "{{slo_window}} (slices)"))
    # A line at 1x (the budget lasts exactly its period, as Sloth's detail dashboard draws), then each tier's rate.
    steps = [{"color": "green", "value": None}]
    if all(t.burn_rate > 1 for t in slo.alert_tiers):
        steps.append({"color": "yellow", "value": 1})
    colors = {"ticket": "orange", "page": "red"}
    for tier in sorted(slo.alert_tiers, key=lambda t: t.burn_rate):
        steps.append({"color": colors.get(tier.severity, "red"), "value": tier.burn_rate})
    layout.add(
        _timeseries(
            "Burn rate",
            targets,
            BURN_UNIT,
            "Bad fraction over each window / (1 - objective); lines at 1x (the budget lasts exactly its period) and at "
            "the alert tiers' burn rates.",
            thresholds={"mode": "absolute", "steps": steps},
            custom={"thresholdsStyle": {"mode": "line"}},
        ),
        8,
    )
    firing = f'count(ALERTS{{slo_name="{_escape(slo.name)}", alertstate="firing"}}) or vector(0)'
    tiers = _stat(
        "Alert tiers firing",
        [_target(firing, "tiers firing")],
        "none",
        [{"color": "green", "value": None}, {"color": "red", "value": 1}],
        ", ".join(f"{t.name}: {t.burn_rate:g}x over {duration_text(t.long_window)}" for t in slo.alert_tiers),
    )
    if slo.runbook:  # the next step, one click from what fires (the alerts carry it as runbook_url too)
        tiers["links"] = [{"title": f"Runbook: {slo.runbook}", "url": slo.runbook, "targetBlank": True}]
    layout.add(tiers, 4)


def _regex_literal(text: str) -> str:
    """``text`` matched literally by a PromQL (RE2) regex."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", text)


def _summary_panels(layout: _Layout, slos: Sequence[SLO]) -> None:
    """One tile per SLO in each of four stat panels: what fires, since when, the budget left, the burn rate now."""
    names = f'slo_name=~"{_escape("|".join(_regex_literal(s.name) for s in slos))}"'
    layout.row("SLOs at a glance")
    firing = f'count by (slo_name) (ALERTS{{alertstate="firing", {names}}})'
    layout.add(
        _stat(
            "Alert tiers firing",
            # every SLO gets a tile: 0 from its objective's series when none of its tiers fires
            [_target(f"{firing}\nor\nsum by (slo_name) (0 * slo:objective:ratio{{{names}}})", "{{slo_name}}")],
            "none",
            [{"color": "green", "value": None}, {"color": "red", "value": 1}],
            "How many of each SLO's alert tiers fire now (0: none); each alert's annotations say what it means.",
            textMode="value_and_name",
        ),
        6,
    )
    # ALERTS_FOR_STATE holds when each active alert became active (Unix seconds); Grafana's dateTimeFromNow
    # takes milliseconds. Only firing alerts: the rules have no `for`, but a hand-added one could be pending.
    since = (
        f"1000 * min by (slo_name) (\n  ALERTS_FOR_STATE{{{names}}}\n"
        f'  and ignoring (alertstate) ALERTS{{alertstate="firing", {names}}}\n)'
    )
    firing_since = _stat(
        "Firing since",
        [_target(since, "{{slo_name}}")],
        "dateTimeFromNow",
        [{"color": "red", "value": None}],
        "When each SLO's earliest firing tier started firing; no tile for an SLO none of whose tiers fires.",
        textMode="value_and_name",
    )
    firing_since["fieldConfig"]["defaults"]["noValue"] = "nothing fires"
    del firing_since["fieldConfig"]["defaults"]["decimals"]
    layout.add(firing_since, 6)
    layout.add(
        _stat(
            "Error budget remaining",
            [_target(f"slo:period_error_budget_remaining:ratio{{{names}}}", "{{slo_name}} ({{slo_window}})")],
            "percentunit",
            [{"color": "red", "value": None}, {"color": "orange", "value": 0}, {"color": "green", "value": 0.25}],
            "1 - consumed / budget over each SLO's period; below 0% the budget is overspent.",
            textMode="value_and_name",
        ),
        6,
    )
    pages = [t.burn_rate for s in slos for t in s.alert_tiers if t.severity == "page"]
    layout.add(
        _stat(
            "Burn rate now",
            [_target(f"slo:current_burn_rate:ratio{{{names}}}", "{{slo_name}} ({{slo_window}})")],
            BURN_UNIT,
            [
                {"color": "green", "value": None},
                {"color": "orange", "value": 1},
                {"color": "red", "value": min(pages, default=14.4)},
            ],
            "Bad fraction over each SLO's shortest alert window / its budget: 1 spends the budget in exactly its "
            "period; red from the lowest page tier's rate. An SLO without alert tiers has no tile here.",
            textMode="value_and_name",
        ),
        6,
    )


def dashboard(slos: Sequence[SLO] | None = None, datasource: str = "Prometheus", export_interval: float = 60.0) -> dict:
    """The dashboard as a dict (see ``dashboard_json``); ``export_interval`` (seconds) is the default of its
    ``export_interval`` variable, the SDK's OTEL_METRIC_EXPORT_INTERVAL (default 60 s)."""
    layout = _Layout()
    ruled = [s for s in slos or () if s.sli.kind not in SKETCH_KINDS]  # no recording rules for the others
    if ruled:
        _summary_panels(layout, ruled)
    _model_panels(layout)
    if slos:
        for slo in ruled:
            _slo_panels(layout, slo)
    else:
        layout.row("SLOs")
        layout.add(
            {
                "type": "table",
                "title": "Error budget remaining",
                "targets": [
                    _target("slo:period_error_budget_remaining:ratio", "{{slo_name}}", format="table", instant=True)
                ],
                "fieldConfig": {"defaults": {"unit": "percentunit"}, "overrides": []},
                "transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
            },
            WIDTH,
        )
    model_query = f"label_values({_name(conv.INFERENCE_DURATION)}, {label_name(conv.MODEL_NAME)})"
    version_query = (
        f'label_values({_name(conv.INFERENCE_DURATION)}{{{label_name(conv.MODEL_NAME)}=~"$model"}}, '
        f"{label_name(conv.MODEL_VERSION)})"
    )
    return {
        "title": "modelotel: models and SLOs",
        "uid": "modelotel-models",
        "tags": ["modelotel", "ml", "slo"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"text": datasource, "value": datasource},
                    "hide": 0,
                    "refresh": 1,
                    "regex": "",
                    "options": [],
                },
                _query_variable("model", "Model", model_query),
                _query_variable("version", "Version", version_query),
                _export_interval_variable(export_interval),
            ]
        },
        "panels": layout.panels,
    }


def _query_variable(name: str, label: str, query: str) -> dict:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "refresh": 2,
        "sort": 1,
        "hide": 0,
        "options": [],
    }


def _export_interval_variable(default: float) -> dict:
    choices = [duration_text(v) for v in sorted({*EXPORT_INTERVALS, default})]
    current = duration_text(default)
    return {
        "name": "export_interval",
        "label": "Export interval",
        "description": "The SDK's metric export interval (OTEL_METRIC_EXPORT_INTERVAL, default 60s): each rate "
        "window spans at least 4 of them.",
        "type": "custom",
        "query": ",".join(choices),
        "current": {"text": current, "value": current},
        "options": [{"text": c, "value": c, "selected": c == current} for c in choices],
        "includeAll": False,
        "multi": False,
        "hide": 0,
    }


def panel_queries(board: dict) -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` of every panel target (rows hold no queries here)."""
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]


def dashboard_json(
    slos: Sequence[SLO] | None = None, datasource: str = "Prometheus", export_interval: float = 60.0
) -> str:
    """Grafana dashboard JSON (schema 39): a summary per SLO, model panels, and per SLO its budget, SLI and
    burn-rate panels."""
    return json.dumps(dashboard(slos, datasource, export_interval), indent=2) + "\n"
