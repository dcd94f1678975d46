"""Issue 18: an SLO's runbook, the next step the report and the alerts point on-call to.

Read from the native ``runbook:`` field, Sloth's ``alerting.annotations.runbook`` (as Sloth's own
kubernetes-apiserver example writes it) and OpenSLO's ``metadata.annotations``; written into the Prometheus alerts as
``runbook_url`` (the Prometheus-alert convention). A runbook that is not one line of text is a spec error at its line.
"""

from __future__ import annotations

import textwrap

import pytest
import yaml

from modelotel.evaluator.outputs.rules import rules_yaml
from modelotel.evaluator.spec import SpecError, load_specs

URL = "https://runbooks.example.com/fraud#latency"


def load(tmp_path, text: str):
    path = tmp_path / "slo.yaml"
    path.write_text(textwrap.dedent(text))
    return load_specs([str(path)])


NATIVE = f"""
    slos:
      - name: fraud-latency
        model: fraud
        sli: latency
        threshold: 250ms
        objective: 0.99
        window: 1h
        runbook: "{URL}"
      - name: fraud-errors
        model: fraud
        sli: error_ratio
        objective: 0.999
        window: 1h
"""

SLOTH = f"""
    version: "prometheus/v1"
    service: "fraud-api"
    slos:
      - name: "requests-availability"
        objective: 99.9
        sli:
          events:
            error_query: sum(rate(http_requests_total{{code=~"(5..|429)"}}[{{{{.window}}}}]))
            total_query: sum(rate(http_requests_total[{{{{.window}}}}]))
        alerting:
          name: FraudAvailability
          annotations:
            runbook: "{URL}"
            summary: "fraud is failing"
          page_alert:
            labels:
              severity: critical
"""

OPENSLO = f"""
    apiVersion: openslo/v1
    kind: SLO
    metadata:
      name: fraud-latency
      annotations:
        runbook_url: "{URL}"
        team: ml-platform
    spec:
      service: fraud-api
      indicator:
        metadata:
          name: fraud-latency-sli
        spec:
          thresholdMetric:
            metricSource:
              type: modelotel
              spec:
                metric: ml.inference.duration
                model: fraud
      timeWindow:
        - duration: 1h
          isRolling: true
      budgetingMethod: Occurrences
      objectives:
        - displayName: fast
          op: lte
          value: 0.25
          target: 0.99
"""


def test_native_runbook_and_its_absence(tmp_path):
    slos = {s.name: s for s in load(tmp_path, NATIVE).slos}
    assert slos["fraud-latency"].runbook == URL
    assert slos["fraud-errors"].runbook == ""


def test_sloth_alerting_annotation_is_the_runbook_and_not_reported_ignored(tmp_path):
    specs = load(tmp_path, SLOTH)
    (slo,) = specs.slos
    assert slo.runbook == URL
    ignored = " ".join(str(n) for n in specs.notes if "ignored" in str(n))
    assert "annotations.summary" in ignored and "annotations.runbook" not in ignored, ignored


def test_openslo_metadata_annotation_is_the_runbook(tmp_path):
    (slo,) = load(tmp_path, OPENSLO).slos
    assert slo.runbook == URL


@pytest.mark.parametrize(
    "value, message",
    [("[a, b]", "expected a URL or a path, got a list"), ('"a\\nb"', "expected one line"), ('"  "', "got '  '")],
)
def test_a_runbook_that_is_not_one_line_is_refused_at_its_line(tmp_path, value, message):
    text = NATIVE.replace(f'"{URL}"', value)
    with pytest.raises(SpecError) as err:
        load(tmp_path, text)
    assert "runbook" in str(err.value) and message in str(err.value) and "line 9" in str(err.value), str(err.value)


def test_a_typo_of_runbook_is_refused_with_a_suggestion(tmp_path):
    with pytest.raises(SpecError) as err:
        load(tmp_path, NATIVE.replace("runbook:", "runbok:"))
    assert "did you mean 'runbook'" in str(err.value)


def test_rules_carry_runbook_url_on_every_alert_of_the_slo_only(tmp_path):
    groups = yaml.safe_load(rules_yaml(load(tmp_path, NATIVE).slos))["groups"]
    alerts = {g["name"]: [r for r in g["rules"] if "alert" in r] for g in groups}
    with_runbook = [g for g, rules in alerts.items() if rules and all("runbook_url" in r["annotations"] for r in rules)]
    without = [g for g, rules in alerts.items() if rules and not any("runbook_url" in r["annotations"] for r in rules)]
    assert len(with_runbook) == 1 and "latency" in with_runbook[0], alerts.keys()
    assert len(without) == 1
    for rule in alerts[with_runbook[0]]:
        assert rule["annotations"]["runbook_url"] == URL
