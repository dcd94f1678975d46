"""The Grafana dashboard: its JSON shape, and every query run on a real Prometheus holding real data.

The data and rules are those of ``test_rules`` (7 hours of telemetry through our collector, the rules of every
histogram SLI kind): each panel's PromQL, with Grafana's variables replaced, must be accepted by Prometheus's
query API (a parse error is an HTTP 400 there) and, where the data has the series, return something.
Needs ``prometheus`` and the collector; a missing one fails under MODELOTEL_CI=1.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from modelotel.evaluator.outputs.dashboard import SCHEMA_VERSION, dashboard_json, panel_queries

from test_rules import accuracy_slo, loaded_stack, rule_times, stack_slos

# Grafana's variables as a dashboard with "All" models and versions would send them.
VARIABLES = {"$__rate_interval": "5m", "$model": ".*", "$version": ".*"}
SLO_PANELS = ("Error budget remaining", "SLI and objective", "Burn rate", "Alert tiers firing")


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def test_dashboard_shape():
    slos = [*stack_slos()[:6], accuracy_slo("acc", "m", budgeting="timeslices", timeslice_window=300.0)]
    board = json.loads(dashboard_json(slos, datasource="prom-main"))
    assert board["schemaVersion"] == SCHEMA_VERSION == 39
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["datasource"]["current"]["value"] == "prom-main"
    assert variables["model"]["definition"] == "label_values(ml_inference_duration_seconds, ml_model_name)"
    assert '{ml_model_name=~"$model"}' in variables["version"]["definition"]
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert p["targets"] and all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])
    # No two panels overlap.
    cells = [
        (x, y)
        for p in panels
        for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
        for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells))
    titles = [p["title"] for p in panels]
    for title in ("Inference latency", "Error ratio", "Confidence quantiles", "Confidence distribution", "OOD rate"):
        assert title in titles
    # Each SLO: its row, then its four panels, all about that SLO only.
    for slo in slos:
        row = titles.index(f"SLO {slo.name}")
        assert tuple(titles[row + 1 : row + 5]) == SLO_PANELS, titles[row : row + 5]
        for p in panels[row + 1 : row + 5]:
            for t in p["targets"]:
                assert f'slo_name="{slo.name}"' in t["expr"], (slo.name, p["title"], t["expr"])
    # Burn-rate thresholds are 1x and the tier rates; a time-sliced SLO also shows its slice-based windows.
    burn = panels[titles.index(f"SLO {slos[-1].name}") + 3]
    steps = burn["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps[1:]] == sorted({1, *(t.burn_rate for t in slos[-1].alert_tiers)})
    assert [t["legendFormat"] for t in burn["targets"]] == ["{{slo_window}}", "{{slo_window}} (slices)"]
    # On top, one summary row: each stat panel has a tile per SLO.
    summary = ["SLOs at a glance", "Alert tiers firing", "Firing since", "Error budget remaining", "Burn rate now"]
    assert titles[:5] == summary
    for p in panels[1:5]:
        (target,) = p["targets"]
        assert target["legendFormat"].startswith("{{slo_name}}")
        for slo in slos:
            assert slo.name.replace("-", "") in target["expr"].replace("-", ""), (p["title"], slo.name)
    # Every rate() target's min step is the export interval variable, whose default is the SDK's 60 s.
    rated = [t for p in panels for t in p.get("targets", []) if "$__rate_interval" in t["expr"]]
    assert len(rated) == 14 and all(t["interval"] == "$export_interval" for t in rated)
    assert variables["export_interval"]["current"]["value"] == "1m"
    assert json.loads(dashboard_json(slos, export_interval=2.5))["templating"]["list"][-1]["current"]["value"] == (
        "2500ms"
    )
    # Without SLOs: the model panels and one table of every SLO's budget.
    plain = json.loads(dashboard_json(None))
    assert [p["title"] for p in plain["panels"]][-2:] == ["SLOs", "Error budget remaining"]


@pytest.mark.collector
def test_every_query_runs_on_a_real_prometheus(tmp_path):
    slos = stack_slos()
    board = json.loads(dashboard_json(slos))
    with loaded_stack(tmp_path, slos) as (prom, _, end):
        times, _ = rule_times(prom, [s for s in slos if s.sli.kind != "percentile"], end)
        at = max(times.values())
        empty = []
        for title, expr in panel_queries(board) + [("table", "slo:period_error_budget_remaining:ratio")]:
            try:
                result = prom.query(substitute(expr), at)
            except urllib.error.HTTPError as exc:
                raise AssertionError(f"{title}: `{expr}` rejected: {exc.read().decode()}") from None
            if not result:
                empty.append((title, expr))
        # Only what the data cannot have: no feedback was sent, and the slice groups of percentile SLIs run every
        # 2 minutes (their slice-based series may not exist yet).
        for title, expr in empty:
            assert "ml_feedback_total" in expr or "-p95" in expr, (title, expr)
        # The variables' label_values() series exist and carry the labels.
        for variable in json.loads(dashboard_json(slos))["templating"]["list"]:
            if variable["type"] != "query":
                continue
            definition = substitute(variable["definition"])
            selector, label = definition.removeprefix("label_values(").removesuffix(")").rsplit(", ", 1)
            url = f"{prom.url}/api/v1/series?{urllib.parse.urlencode({'match[]': selector})}"
            with urllib.request.urlopen(url, timeout=10) as resp:
                series = json.load(resp)["data"]
            values = {s.get(label) for s in series} - {None}
            assert values == ({"burning", "recovered", "quiet"} if label == "ml_model_name" else {"3"}), values


def test_an_slo_runbook_is_a_link_on_its_alert_panel():
    first, second = stack_slos()[:2]
    url = "https://runbooks.example.com/fraud#latency"
    board = json.loads(dashboard_json([dataclasses.replace(first, runbook=url), second]))
    panels = board["panels"]
    titles = [p["title"] for p in panels]
    for slo, expected in ((first, [url]), (second, [])):
        row = titles.index(f"SLO {slo.name}")
        links = [link["url"] for p in panels[row + 1 : row + 5] for link in p.get("links", [])]
        assert links == expected, (slo.name, links)
