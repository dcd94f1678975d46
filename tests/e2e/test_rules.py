"""Generated Prometheus rules against the evaluator, on the real `promtool` and a real Prometheus.

What ``budget.py`` computes from a ledger, the rules must compute in PromQL. Expected values and alert states come
from the evaluator (``Ledger`` + ``evaluate_slo``) fed the same events, or from the raw counts; never hand-written.

* ``promtool check rules`` on every SLI kind, budgeting and window shape, from objects and from spec files.
* ``promtool test rules`` (Prometheus 2.42 cannot write native histograms in test series, so these use counter
  SLIs). Counter samples every minute on a grid from 0 and evaluations on the grid: a range ``[w]`` then holds a
  sample at each end and ``rate`` is the exact difference, so figures are exact (to 1e-9):
  - a hypothesis property: random traffic and error patterns, every recorded bad fraction and event count equals
    the one computed from the raw per-minute counts;
  - three scenarios fire and clear every default tier; at every 5-minute check the set of firing (SLO, tier)
    pairs equals the evaluator's, including a tier the ``min_events`` condition holds back (times with a burn
    rate within 1e-6 of a tier's are skipped), and one check compares the alerts' labels and annotations;
  - time-sliced budgets: bad-slice fraction and budget remaining equal the evaluator's (evaluation interval = slice).
* Native-histogram SLIs (latency at a threshold inside a populated bucket, error ratio, OOD rate by score and by
  outlier counter, low-confidence rate, percentiles) on a real Prometheus fed through our collector
  (``grafana.yaml``, remote write): 7 hours of cumulative OTLP points ending now, constant per minute within each
  phase. Each recorded ratio must lie within the evaluator's bounds over the export intervals wholly inside the
  window (rate() sees those; the bucket holding the threshold counted wholly good or bad), relaxed only for a
  counter over a histogram by Prometheus's zero clamp (see ``error_bounds``); event counts within one export
  interval's events; budget remaining likewise; the alert states equal the evaluator's.

Cost: about 9 s (promtool ~3 s; Prometheus and the collector ~1 s; 7 h of data built and landed ~3 s).
Needs ``promtool``/``prometheus`` on PATH and the collector; a missing one fails under MODELOTEL_CI=1.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import hypothesis
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelotel.evaluator.engine.ledger import Ledger, matches
from modelotel.evaluator.engine.verdict import SLOResult, evaluate_slo, slice_good
from modelotel.evaluator.outputs.rules import (
    RulesError,
    duration_text,
    label_name,
    prometheus_metric,
    quantile_expr,
    rule_groups,
    rules_yaml,
    timeslice_expr,
)
from modelotel.evaluator.slo import DEFAULT_ALERT_TIERS, SLI, SLO, AlertTier, Selector, Window
from modelotel.evaluator.sources.points import Delta
from modelotel.sketch import LogSketch, scale_base

from collector_support import CONFIGS, Process, free_port, run_collector, run_prometheus, which
from telemetry_gen import attr, expo_point

NS = 1_000_000_000
MINUTE = 60.0


# -- SLOs -------------------------------------------------------------------------------------------


def model_match(model: str) -> tuple[tuple[str, str], ...]:
    return (("ml.model.name", model),)


def accuracy_slo(name: str, model: str, objective: float = 0.99, **kw) -> SLO:
    total = Selector("ml.feedback", model_match(model))
    good = Selector("ml.feedback", model_match(model) + (("ml.feedback.correct", "true"),))
    return SLO(name, SLI("accuracy", total=total, good=good), objective, Window(30 * 86400.0), **kw)


def latency_slo(name: str, model: str, threshold: float, objective: float, **kw) -> SLO:
    total = Selector("ml.inference.duration", model_match(model))
    good = dataclasses.replace(total, threshold=threshold)
    return SLO(name, SLI("latency", total=total, good=good, threshold=threshold), objective, Window(30 * 86400.0), **kw)


def error_slo(name: str, model: str, objective: float, **kw) -> SLO:
    total = Selector("ml.inference.duration", model_match(model))
    bad = dataclasses.replace(total, present=("error.type",))
    return SLO(name, SLI("error_ratio", total=total, bad=bad), objective, Window(30 * 86400.0), **kw)


def ood_slo(name: str, model: str, objective: float, threshold: float | None = None, **kw) -> SLO:
    total = Selector("ml.ood.score", model_match(model))
    if threshold is None:  # bad = the outlier counter over the score histogram's count
        sli = SLI("ood_rate", total=total, bad=Selector("ml.ood.outliers", model_match(model)))
    else:
        sli = SLI("ood_rate", total=total, good=dataclasses.replace(total, threshold=threshold), threshold=threshold)
    return SLO(name, sli, objective, Window(30 * 86400.0), **kw)


def confidence_slo(name: str, model: str, threshold: float, objective: float, **kw) -> SLO:
    total = Selector("ml.prediction.confidence", model_match(model))
    good = dataclasses.replace(total, threshold=threshold, op="ge")
    sli = SLI("low_confidence_rate", total=total, good=good, threshold=threshold)
    return SLO(name, sli, objective, Window(30 * 86400.0), **kw)


def percentile_slo(name: str, model: str, threshold: float, percentile: float, **kw) -> SLO:
    total = Selector("ml.inference.duration", model_match(model))
    sli = SLI(
        "percentile",
        total=total,
        good=dataclasses.replace(total, threshold=threshold),
        threshold=threshold,
        percentile=percentile,
    )
    return SLO(name, sli, 0.95, Window(7 * 86400.0), timeslice_window=120.0, **kw)


def every_kind() -> list[SLO]:
    """One SLO of each kind and budgeting, with custom tiers, labels and resource filters."""
    svc = (("service.name", "api"), ("deployment.environment", "prod"))
    http = Selector("http.server.request.duration", svc)
    custom = (AlertTier("fast", "page", 10.0, 1800.0, 90.0), AlertTier("slow", "ticket", 2.0, 43200.0, 3600.0))
    return [
        latency_slo(
            "fraud-latency",
            "fraud",
            0.3,
            0.99,
            labels={"team": "risk", "tier.name": "gold"},
            source="slos.yaml: slos[0]",
        ),
        error_slo("fraud-errors", "fraud", 0.999, alert_tiers=custom, min_events=500),
        ood_slo("fraud-ood", "fraud", 0.98, threshold=0.7),
        ood_slo("fraud-ood-flag", "fraud", 0.98),
        confidence_slo("fraud-confidence", "fraud", 0.6, 0.9),
        accuracy_slo(
            "fraud-accuracy", "fraud", 0.9, budgeting="timeslices", timeslice_window=600.0, timeslice_target=0.95
        ),
        accuracy_slo("fraud-accuracy-mean", "fraud", 0.9, budgeting="ratio_timeslices", timeslice_window=300.0),
        percentile_slo("fraud-p95", "fraud", 0.3, 0.95),
        SLO(
            "api-errors",
            SLI("ratio", total=http, bad=dataclasses.replace(http, present=("error.type",))),
            0.995,
            Window(28 * 86400.0, rolling=False, unit="day", count=28),
        ),
        SLO(
            "api-ok",
            SLI("ratio", total=http, good=dataclasses.replace(http, absent=("error.type",))),
            0.995,
            Window(86400.0),
            alert_tiers=(),
        ),
    ]


# -- tools ------------------------------------------------------------------------------------------


def promtool() -> str:
    return which("promtool", "CI: apt-get install -y --no-install-recommends prometheus")


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def ledger_of(slo: SLO, deltas: Sequence[Delta], resolution: float = MINUTE) -> Ledger:
    ledger = Ledger(slo, resolution)
    for d in deltas:
        ledger.add(d)
    return ledger


def merged_sketch(slo: SLO, deltas: Sequence[Delta], start: float, end: float) -> LogSketch:
    """The values of the SLO's total selector in the deltas ending in ``(start, end]`` (seconds)."""
    out: LogSketch | None = None
    for d in deltas:
        if d.sketch is not None and start < d.end_ns / 1e9 <= end and matches(slo.sli.total, d.metric, d.attributes):
            if out is None:
                out = d.sketch.copy()
            else:
                out.merge(d.sketch)
    assert out is not None
    return out


def evaluator(slo: SLO, deltas: Sequence[Delta], resolution: float = MINUTE) -> Callable[[float], SLOResult]:
    """The evaluator over ``deltas``: a function of the evaluation time."""
    ledger = ledger_of(slo, deltas, resolution)
    return lambda at: evaluate_slo(ledger, at)


# -- unit level -------------------------------------------------------------------------------------


def test_names_follow_the_collector_translation():
    # The names tests/e2e/test_collector_prometheus.py reads back from a real Prometheus.
    assert prometheus_metric("ml.inference.duration") == ("ml_inference_duration_seconds", True)
    assert prometheus_metric("ml.prediction.confidence") == ("ml_prediction_confidence", True)
    assert prometheus_metric("ml.feedback") == ("ml_feedback_total", False)
    assert prometheus_metric("ml.ood.outliers") == ("ml_ood_outliers_total", False)
    assert prometheus_metric("http.server.request.duration") == ("http_server_request_duration_seconds", True)
    assert prometheus_metric("app.requests") == ("app_requests_total", False)
    assert prometheus_metric("app.latency", histogram_hint=True) == ("app_latency", True)
    # Prometheus series names (translated PromQL, Sloth) are kept; a foreign duration histogram gets its unit
    assert prometheus_metric("http_request_duration_seconds_count") == ("http_request_duration_seconds_count", False)
    assert prometheus_metric("http.server.duration") == ("http_server_duration_milliseconds", True)
    assert label_name("ml.feedback.correct") == "ml_feedback_correct"
    assert label_name("error.type") == "error_type"
    assert label_name("9lives") == "key_9lives"


def test_each_window_is_computed_from_its_own_rates():
    """No window is derived from another window's ratio (sloth #241): each one rates over its own range."""
    for slo in every_kind():
        if slo.sli.kind == "percentile":
            continue
        for group in rule_groups([slo]):
            for rule in group["rules"]:
                name = rule.get("record", "")
                if name.startswith("slo:sli_error:ratio_rate"):
                    window = name.removeprefix("slo:sli_error:ratio_rate")
                    assert "avg_over_time" not in rule["expr"], rule
                    ranges = {part.split("]")[0] for part in rule["expr"].split("[")[1:]}
                    assert ranges == {window}, rule


def test_rules_name_their_problem():
    bad_threshold = SLO(
        "counter-threshold",
        SLI("ratio", total=Selector("ml.feedback"), good=Selector("ml.feedback", threshold=1.0)),
        0.9,
        Window(86400.0),
        source="slos.yaml: slos[3]",
    )
    with pytest.raises(RulesError, match=r"slos.yaml: slos\[3\]: SLO 'counter-threshold': ml.feedback is a counter"):
        rules_yaml([bad_threshold])
    with pytest.raises(RulesError, match="clashes with the SLO 'a'"):
        rules_yaml([accuracy_slo("a", "m"), accuracy_slo("a", "n")])
    with pytest.raises(RulesError, match="label 'slo_name' is reserved"):
        rules_yaml([accuracy_slo("a", "m", labels={"slo_name": "x"})])
    odd = (AlertTier("odd", "page", 2.0, 3600.0004, 300.0),)
    with pytest.raises(RulesError, match="SLO 'b'.*not a whole positive number of milliseconds"):
        rules_yaml([accuracy_slo("b", "m", alert_tiers=odd)])


def test_promtool_check_rules_accepts_every_kind(tmp_path):
    slos = every_kind()
    text = rules_yaml(slos)
    (tmp_path / "rules.yaml").write_text(text)
    proc = run_promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    groups = yaml.safe_load(text)["groups"]
    assert [g["name"] for g in groups] == [f"modelotel-slo-{s.name}" for s in slos]
    n_rules = sum(len(g["rules"]) for g in groups)
    assert f"SUCCESS: {n_rules} rules found" in proc.stdout
    for slo, group in zip(slos, groups, strict=True):
        alerts = [r for r in group["rules"] if "alert" in r]
        assert [a["labels"]["slo_alert_tier"] for a in alerts] == [t.name for t in slo.alert_tiers]
        assert [a["labels"]["severity"] for a in alerts] == [t.severity for t in slo.alert_tiers]
        records = {r["record"] for r in group["rules"] if "record" in r}
        assert {"slo:objective:ratio", "slo:error_budget:ratio", "slo:period_error_budget_remaining:ratio"} <= records
        sliced = slo.sli.kind == "percentile" or slo.budgeting != "occurrences"
        assert ("interval" in group) == sliced
        assert ("slo:timeslice_good:ratio" in records) == sliced
    assert groups[0]["rules"][0]["labels"] == {
        "slo_name": "fraud-latency",
        "model": "fraud",
        "team": "risk",
        "tier_name": "gold",
        "slo_window": "5m",
    }


SPEC = """
slos:
  - {name: fraud-latency, model: fraud, sli: latency, threshold: 250ms, objective: 99%, window: 28d}
  - {name: fraud-p95, model: fraud, sli: latency, percentile: p95, threshold: 300ms, objective: 0.99,
     timeslice: {window: 1m}}
  - {name: fraud-slices, model: fraud, sli: latency, threshold: 250ms, objective: 0.99, budgeting: timeslices,
     timeslice: {window: 5m, target: 95%}, window: {calendar: quarter}}
  - name: fraud-errors
    model: fraud
    sli: error_ratio
    objective: 0.999
    alerts:
      page-fast: off
      ticket-slow: {burn_rate: 2}
      weekly-review: {severity: ticket, burn_rate: 1.5, long_window: 7d, short_window: 1d}
  - {name: fraud-ood, model: fraud, sli: ood_rate, objective: 0.98}
  - {name: fraud-ood-score, model: fraud, sli: ood_rate, threshold: 0.8, objective: 0.98}
  - {name: fraud-confidence, model: fraud, sli: low_confidence_rate, threshold: 0.6, objective: 0.9}
  - {name: fraud-accuracy, model: fraud, version: "3", sli: accuracy, objective: 0.9, budgeting: ratio_timeslices}
  - name: api-availability
    sli: ratio
    objective: 0.995
    ratio:
      bad: {metric: http.server.request.duration, match: {service.name: api}, present: [error.type]}
      total: {metric: http.server.request.duration, match: {service.name: api}}
"""


def test_rules_from_spec_files(tmp_path):
    """SLOs as the spec parser makes them (load_slos) give rules promtool accepts, one group each."""
    from modelotel.evaluator.spec import load_slos

    (tmp_path / "slos.yaml").write_text(SPEC)
    slos = load_slos([str(tmp_path / "slos.yaml")])
    text = rules_yaml(slos)
    (tmp_path / "rules.yaml").write_text(text)
    proc = run_promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    groups = {g["name"]: g for g in yaml.safe_load(text)["groups"]}
    assert len(groups) == len(slos) == 9
    assert groups["modelotel-slo-fraud-p95"]["interval"] == "1m"
    errors = [r for r in groups["modelotel-slo-fraud-errors"]["rules"] if "alert" in r]
    assert [a["labels"]["slo_alert_tier"] for a in errors] == [
        "page-slow",
        "ticket-fast",
        "ticket-slow",
        "weekly-review",
    ]
    assert "slo:sli_error:ratio_rate7d" in {r.get("record") for r in groups["modelotel-slo-fraud-errors"]["rules"]}
    api = groups["modelotel-slo-api-availability"]["rules"][0]["expr"]
    assert 'job=~"(?:.+/)?api", error_type!=""' in api


# -- promtool test rules: counters --------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    minutes: int
    total: int  # events per minute
    bad: int  # of which bad


def counter_series(model: str, phases: Sequence[Phase]) -> tuple[list[dict], list[Delta]]:
    """promtool input series (cumulative, a sample every minute from 0) and the evaluator's deltas."""
    good_cum, bad_cum = [0], [0]
    deltas = []
    k = 0
    for ph in phases:
        for _ in range(ph.minutes):
            k += 1
            good_cum.append(good_cum[-1] + ph.total - ph.bad)
            bad_cum.append(bad_cum[-1] + ph.bad)
            for correct, n in (("true", ph.total - ph.bad), ("false", ph.bad)):
                attrs = {"ml.model.name": model, "ml.feedback.correct": correct, "service.name": "svc"}
                deltas.append(Delta("ml.feedback", attrs, int((k - 1) * MINUTE * NS), int(k * MINUTE * NS), n))
    base = f'job="svc", instance="i-1", otel_scope_name="modelotel", ml_model_name="{model}"'
    series = []
    for correct, cum in (("true", good_cum), ("false", bad_cum)):
        # A series appears (at 0) one minute before its first event: until then the numerator of an SLI may
        # have no series at all, which the rules must count as 0.
        first = next((i for i, v in enumerate(cum) if v > 0), None)
        if first is not None:
            values = ["_"] * (first - 1) + [str(v) for v in cum[first - 1 :]]
            series.append(
                {"series": f'ml_feedback_total{{{base}, ml_feedback_correct="{correct}"}}', "values": " ".join(values)}
            )
    return series, deltas


def near(value: float | None, target: float) -> bool:
    return value is not None and abs(value - target) <= 1e-6 * target


def test_promtool_alerts_fire_and_clear_like_the_evaluator(tmp_path):
    scenarios = {
        # a 40-minute 50% burst after 2 clean hours: page-fast, page-slow and ticket-fast fire, then clear
        "burst": [Phase(120, 100, 0), Phase(40, 100, 50), Phase(240, 100, 0)],
        # 2x for 8 hours: only ticket-slow, cleared once its 6h short window is mostly clean
        "slow": [Phase(480, 100, 2), Phase(420, 100, 0)],
        # 1 event a minute, all bad: the 1h window never holds min_events=100, longer ones do
        "trickle": [Phase(300, 1, 1), Phase(600, 1, 0)],
    }
    slos = [accuracy_slo(name, f"m-{name}") for name in scenarios]
    series, results = [], {}
    for slo, phases in zip(slos, scenarios.values(), strict=True):
        s, deltas = counter_series(f"m-{slo.name}", phases)
        series += s
        results[slo.name] = evaluator(slo, deltas)
    end = max(sum(p.minutes for p in ph) for ph in scenarios.values())

    tests, checked = [], []
    fired: dict[tuple[str, str], list[float]] = {}
    held_back = []
    for minute in range(5, end + 1, 5):
        at = minute * MINUTE
        expected = []
        skip = False
        for slo in slos:
            result = results[slo.name](at)
            for a in result.alerts:
                if near(a.long_burn, a.burn_rate) or near(a.short_burn, a.burn_rate):
                    skip = True
                if a.firing:
                    expected.append({"labels": f'{{slo_name="{slo.name}", slo_alert_tier="{a.name}"}}', "value": 1})
                    fired.setdefault((slo.name, a.name), []).append(at)
                elif (a.long_burn or 0) >= a.burn_rate and (a.short_burn or 0) >= a.burn_rate:
                    held_back.append((slo.name, a.name, at))
        if skip:
            continue
        checked.append(at)
        tests.append(
            {
                "expr": 'count by (slo_name, slo_alert_tier) (ALERTS{alertstate="firing"})',
                "eval_time": f"{minute}m",
                "exp_samples": expected,
            }
        )
    # The scenarios exercise what they claim: every default tier fires, and clears again at a later check.
    for tier in DEFAULT_ALERT_TIERS:
        cleared = [
            (slo.name, t)
            for slo in slos
            for t in checked
            if (slo.name, tier.name) in fired
            and t > fired[(slo.name, tier.name)][0]
            and t not in fired[(slo.name, tier.name)]
        ]
        assert cleared, f"{tier.name} never fired and cleared"
    assert any(name == "trickle" and tier == "page-fast" for name, tier, _ in held_back)
    assert len(checked) > 150

    # Exact labels and annotations of one firing set (the annotation shows the long-window burn rate).
    at = 150 * MINUTE  # 30 minutes into the burst
    exp_alerts = []
    for slo in slos:
        for a in results[slo.name](at).alerts:
            if a.firing:
                group = next(g for g in rule_groups([slo]))
                rule = next(r for r in group["rules"] if r.get("labels", {}).get("slo_alert_tier") == a.name)
                summary = rule["annotations"]["summary"].replace("{{ $value | humanize }}", f"{a.long_burn:.4g}")
                labels = {**rule["labels"], "slo_window": duration_text(a.long_window)}
                annotations = {**rule["annotations"], "summary": summary}
                exp_alerts.append({"exp_labels": labels, "exp_annotations": annotations})
    assert len(exp_alerts) >= 3

    (tmp_path / "rules.yaml").write_text(rules_yaml(slos))
    test_file = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "5m",  # alerts have no `for`: each evaluation stands alone; checks are every 5m
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": tests,
                "alert_rule_test": [{"eval_time": "150m", "alertname": "SLOErrorBudgetBurn", "exp_alerts": exp_alerts}],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test_file, sort_keys=False))
    proc = run_promtool("test", "rules", "test.yaml", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert "SUCCESS" in proc.stdout


def close_to(expr: str, value: float, tol: float = 1e-9) -> dict:
    """A promql_expr_test asserting ``|expr - value| <= tol`` (promtool compares values exactly)."""
    return {"expr": f"abs(sum({expr}) - {value!r}) <= bool {tol!r}", "exp_samples": [{"labels": "{}", "value": 1}]}


SHORT_TIERS = (AlertTier("fast", "page", 2.0, 1800.0, 300.0), AlertTier("slow", "ticket", 1.0, 7200.0, 900.0))
phase_lists = st.lists(
    st.tuples(st.integers(5, 90), st.integers(1, 40), st.floats(0.0, 1.0)).map(
        lambda p: Phase(p[0], p[1], round(p[1] * p[2]))
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[hypothesis.Phase.reuse, hypothesis.Phase.generate],  # no shrinking: each example runs promtool
)
@given(scenarios=st.lists(phase_lists, min_size=1, max_size=4), step=st.sampled_from([5, 10, 15]))
def test_promtool_error_ratios_are_exact_on_the_grid(tmp_path, scenarios, step):
    """Property: on a 1-minute counter grid evaluated on the grid, every recorded bad fraction and event count is
    the exact one from the raw per-minute counts (to 1e-9), for any traffic and error pattern; a series that has
    not appeared yet counts 0."""
    slos, series, tests = [], [], []
    for i, phases in enumerate(scenarios):
        slo = accuracy_slo(f"s{i}", f"m{i}", 0.95, alert_tiers=SHORT_TIERS)
        slos.append(slo)
        series += counter_series(f"m{i}", phases)[0]
        totals = [p.total for p in phases for _ in range(p.minutes)]
        bads = [p.bad for p in phases for _ in range(p.minutes)]
        sel = f'{{slo_name="{slo.name}"}}'
        for minute in range(step, len(totals) + 1, step):
            for w in (300, 900, 1800, 7200, 2592000):
                lo = max(0, minute - w // 60)
                total, bad = sum(totals[lo:minute]), sum(bads[lo:minute])
                t = close_to(f"slo:sli_error:ratio_rate{duration_text(w)}{sel}", bad / total)
                tests.append({**t, "eval_time": f"{minute}m"})
                if w in (1800, 7200, 2592000):
                    t = close_to(f"slo:events:increase{duration_text(w)}{sel}", total, 1e-9 * total)
                    tests.append({**t, "eval_time": f"{minute}m"})
    (tmp_path / "rules.yaml").write_text(rules_yaml(slos))
    test_file = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": f"{step}m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test_file, sort_keys=False))
    proc = run_promtool("test", "rules", "test.yaml", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]


def test_promtool_timeslices_like_the_evaluator(tmp_path):
    """Timeslices and RatioTimeslices budgets: the bad-slice fraction and the budget left, every slice."""
    rng = np.random.default_rng(7)
    phases = [Phase(5, 100, int(b)) for b in rng.choice([0, 2, 8, 30], size=60, p=[0.55, 0.25, 0.15, 0.05])]
    width = 300.0
    slos = [
        accuracy_slo(
            "sliced", "m-a", 0.9, budgeting="timeslices", timeslice_window=width, timeslice_target=0.95, alert_tiers=()
        ),
        accuracy_slo("mean", "m-b", 0.9, budgeting="ratio_timeslices", timeslice_window=width, alert_tiers=()),
    ]
    series, tests, slis = [], [], {}
    for slo in slos:
        slo_series, deltas = counter_series(dict(slo.sli.total.match)["ml.model.name"], phases)
        series += slo_series
        result_at = evaluator(slo, deltas)
        for minute in range(10, 301, 25):
            r = result_at(minute * MINUTE)
            assert r.sli is not None and r.budget_remaining_ratio is not None
            slis[(slo.name, minute)] = r.sli
            sel = f'{{slo_name="{slo.name}"}}'
            for t in (
                close_to(f"slo:sli_error:timeslices30d{sel}", 1.0 - r.sli),
                close_to(f"slo:period_error_budget_remaining:ratio{sel}", r.budget_remaining_ratio),
            ):
                tests.append({**t, "eval_time": f"{minute}m"})
    # Non-vacuous: some slices were bad, and the two budgetings disagree.
    assert min(slis.values()) < 0.95
    assert any(abs(slis[("sliced", m)] - slis[("mean", m)]) > 0.01 for _, m in slis)
    (tmp_path / "rules.yaml").write_text(rules_yaml(slos))
    test_file = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": duration_text(width),  # promtool runs every group at this interval
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test_file, sort_keys=False))
    proc = run_promtool("test", "rules", "test.yaml", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]


# -- a real Prometheus: native histograms through the collector ----------------------------------------

SCALE = 5
SPAN = 420  # minutes of data, ending at the last export
OOD_FLAG = 0.8  # OOD scores above this are counted in ml.ood.outliers


@dataclass(frozen=True)
class Minute:
    """What the instance records in each minute of a phase (the same every minute: windows cut anywhere agree)."""

    ok: tuple[float, ...]  # durations of successful calls
    errors: tuple[float, ...]  # durations of failed calls
    confidence: tuple[float, ...]
    ood: tuple[float, ...]


def _values(*parts) -> tuple[float, ...]:
    return tuple(float(v) for part in parts for v in np.atleast_1d(part))


GOOD = Minute(
    ok=_values(np.geomspace(0.02, 0.25, 98), 0.299, 0.45),  # 0.299 shares the bucket of the 0.3 s threshold
    errors=(),
    confidence=_values(np.linspace(0.62, 0.99, 97), np.linspace(0.3, 0.5, 3)),
    ood=_values(np.linspace(0.05, 0.65, 100)),
)
BAD = Minute(
    ok=_values(np.geomspace(0.02, 0.25, 20), 0.299, np.geomspace(0.4, 1.5, 39)),
    errors=_values(np.geomspace(0.05, 2.0, 40)),
    confidence=_values(np.linspace(0.62, 0.99, 50), np.linspace(0.3, 0.5, 50)),
    ood=_values(np.linspace(0.05, 0.65, 60), np.linspace(0.85, 0.99, 40)),
)
TRICKLE = Minute(ok=(), errors=(0.5,), confidence=(0.2,), ood=(0.9,))  # one bad call a minute

# Phase changes 40, 80 and 340 minutes before the end: away from every window edge (5m ... 6h).
MODELS = {
    "burning": [(SPAN - 40, GOOD), (40, BAD)],
    "recovered": [(80, GOOD), (260, BAD), (80, GOOD)],
    "quiet": [(SPAN, TRICKLE)],
}


def stack_slos() -> list[SLO]:
    slos = []
    for model in MODELS:
        slos += [
            latency_slo(f"{model}-latency", model, 0.3, 0.98),
            error_slo(f"{model}-errors", model, 0.99),
            ood_slo(f"{model}-ood", model, 0.99, threshold=0.7),
            ood_slo(f"{model}-ood-flag", model, 0.99),
            confidence_slo(f"{model}-confidence", model, 0.6, 0.9),
            percentile_slo(f"{model}-p95", model, 0.3, 0.95),
        ]
    return slos


SERIES = {  # Minute field -> (metric, extra point attributes)
    "ok": ("ml.inference.duration", ()),
    "errors": ("ml.inference.duration", (("error.type", "ValueError"),)),
    "confidence": ("ml.prediction.confidence", ()),
    "ood": ("ml.ood.score", ()),
}
UNITS = {"ml.inference.duration": "s", "ml.prediction.confidence": "1", "ml.ood.score": "1"}


def telemetry(end: float) -> tuple[bytes, list[Delta]]:
    """One OTLP/JSON request of cumulative points every minute from ``end - SPAN`` minutes to ``end``, and the
    evaluator's per-minute deltas of the same data. The first point of every series is empty (0 events)."""
    start = end - SPAN * MINUTE
    start_ns = str(int(start * NS))
    resource = {"service.name": "svc", "service.instance.id": "i-1"}
    points: dict[str, list[dict]] = {metric: [] for metric in [*UNITS, "ml.ood.outliers"]}
    deltas: list[Delta] = []
    for model, phases in MODELS.items():
        minutes = [m for n, m in phases for _ in range(n)]
        one_minute = {}  # per distinct Minute: its sketch per field, and its flagged OOD count
        for m in minutes:
            if id(m) not in one_minute:
                sketches = {f: LogSketch(SCALE) for f in SERIES}
                for f, sk in sketches.items():
                    sk.add_many(np.asarray(getattr(m, f), dtype=float))
                one_minute[id(m)] = (sketches, sum(v > OOD_FLAG for v in m.ood))
        cumulative = {f: LogSketch(SCALE) for f in SERIES}
        outliers = 0
        for k in range(SPAN + 1):
            t0, t1 = int((start + (k - 1) * MINUTE) * NS), int((start + k * MINUTE) * NS)
            if k:
                sketches, flagged = one_minute[id(minutes[k - 1])]
                outliers += flagged
                for f, sk in sketches.items():
                    cumulative[f].merge(sk)
                    metric, extra = SERIES[f]
                    attrs = {**resource, "ml.model.name": model, "ml.model.version": "3", **dict(extra)}
                    deltas.append(Delta(metric, attrs, t0, t1, float(sk.count), sketch=sk))
                attrs = {**resource, "ml.model.name": model, "ml.model.version": "3"}
                deltas.append(Delta("ml.ood.outliers", attrs, t0, t1, float(flagged)))
            for f, sk in cumulative.items():
                metric, extra = SERIES[f]
                attrs = [attr("ml.model.name", model), attr("ml.model.version", "3")] + [
                    attr(key, value) for key, value in extra
                ]
                points[metric].append(expo_point(sk, attrs, start_ns, t1, extremes=False))
            points["ml.ood.outliers"].append(
                {
                    "attributes": [attr("ml.model.name", model), attr("ml.model.version", "3")],
                    "startTimeUnixNano": start_ns,
                    "timeUnixNano": str(t1),
                    "asInt": str(outliers),
                }
            )
    metrics = [
        {
            "name": metric,
            "unit": unit,
            "exponentialHistogram": {"aggregationTemporality": 2, "dataPoints": points[metric]},
        }
        for metric, unit in UNITS.items()
    ]
    outlier_sum = {"aggregationTemporality": 2, "isMonotonic": True, "dataPoints": points["ml.ood.outliers"]}
    metrics.append({"name": "ml.ood.outliers", "unit": "{prediction}", "sum": outlier_sum})
    resource_json = {"attributes": [attr(k, v) for k, v in resource.items()]}
    doc = {
        "resourceMetrics": [
            {"resource": resource_json, "scopeMetrics": [{"scope": {"name": "modelotel"}, "metrics": metrics}]}
        ]
    }
    return json.dumps(doc, separators=(",", ":")).encode(), deltas


WINDOWS = (300.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0, 259200.0, 2592000.0)


def error_bounds(slo: SLO, ledger: Ledger, end: float, at: float, w: float) -> tuple[float, float]:
    """Where PromQL's error ratio over ``[at - w, at]`` must lie, from the evaluator's ledger (1 s bins).

    rate() sees the increase between the first and the last export inside the window, extrapolated: the export
    intervals wholly inside it (the evaluator also counts the one ending at the first export). Within those,
    the good count lies between the evaluator's bounds (the threshold's bucket wholly bad or good). Both series
    of a ratio are extrapolated alike to the window's edges, except that Prometheus stops a float counter at 0
    (it assumes it started there) and not a native histogram: a counter still at 0 at the window's start over a
    histogram count (ood-flag) comes out low by up to that extrapolation.
    """
    start = end - SPAN * MINUTE
    first = max(start, end - math.floor((end - (at - w)) / MINUTE) * MINUTE)
    b = ledger.window(first, at)
    lower, upper = 1 - b.good_upper / b.total, 1 - b.good_lower / b.total
    assert lower <= 1 - b.good / b.total <= upper
    if slo.sli.bad is not None and slo.sli.bad.metric != slo.sli.total.metric:
        last = end - math.floor((end - at) / MINUTE) * MINUTE if at < end else end
        stretch = sum(e if e < 1.1 * MINUTE else MINUTE / 2 for e in (first - (at - w), at - last))
        lower *= (last - first) / (last - first + stretch)
    return lower - 1e-9, upper + 1e-9


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str):
        with urllib.request.urlopen(f"{self.url}{path}?{urllib.parse.urlencode(params)}", timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        params = {"query": promql} if at is None else {"query": promql, "time": repr(at)}
        return self.get("/api/v1/query", **params)["result"]

    def value(self, promql: str, at: float) -> float | None:
        result = self.query(promql, at)
        assert len(result) <= 1, (promql, result)
        return float(result[0]["value"][1]) if result else None


class RuledPrometheus(Prometheus):
    def __init__(self, url: str, proc: Process, config: Path) -> None:
        super().__init__(url)
        self.proc = proc
        self.config = config

    def load_rules(self, slos: Sequence[SLO]) -> None:
        """Write the rules of ``slos``, evaluated every second, and reload the configuration (SIGHUP)."""
        rules = self.config.parent / "rules.yaml"
        rules.write_text(rules_yaml(slos))
        config = {"global": {"evaluation_interval": "1s"}, "rule_files": [str(rules)], "scrape_configs": []}
        self.config.write_text(yaml.safe_dump(config))
        self.proc.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while len(self.get("/api/v1/rules")["groups"]) != len(slos):
            if time.monotonic() > deadline:
                raise AssertionError(f"rules not loaded:\n{self.proc.output()[-3000:]}")
            time.sleep(0.1)


@contextmanager
def prometheus_server(tmp: Path) -> Iterator[RuledPrometheus]:
    """Prometheus 2.x with remote write and native histograms, no rules yet: recording rules write samples at
    the current time, after which the head refuses samples over an hour older (our history is loaded first)."""
    (tmp / "prometheus.yaml").write_text(yaml.safe_dump({"scrape_configs": []}))
    with run_prometheus(tmp, tmp / "prometheus.yaml") as (url, proc):
        yield RuledPrometheus(url, proc, tmp / "prometheus.yaml")


@contextmanager
def loaded_stack(tmp: Path, slos: Sequence[SLO]) -> Iterator[tuple[Prometheus, list[Delta], float]]:
    """Prometheus fed ``telemetry`` ending now through our collector, then given the rules of ``slos``."""
    with prometheus_server(tmp) as prom:
        http_port = free_port()
        env = {
            "MODELOTEL_PROM_REMOTE_WRITE_URL": f"{prom.url}/api/v1/write",
            "MODELOTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
            "MODELOTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http_port}",
            "MODELOTEL_COLLECTOR_METRICS_PORT": str(free_port()),
            "MODELOTEL_TRACES_EXPORTERS": "[debug]",
            "MODELOTEL_LOGS_EXPORTERS": "[debug]",
        }
        with run_collector(CONFIGS / "grafana.yaml", env, tmp / "collector.log", free_port()) as collector:
            end = float(math.floor(time.time()))
            body, deltas = telemetry(end)
            request = urllib.request.Request(
                f"http://127.0.0.1:{http_port}/v1/metrics", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=30) as resp:
                assert resp.status == 200
            want = sum(len(m.ok) + len(m.errors) for phases in MODELS.values() for n, m in phases for _ in range(n))
            deadline = time.monotonic() + 30
            while True:
                got = prom.query("sum(histogram_count(ml_inference_duration_seconds))")
                if got and float(got[0]["value"][1]) == want:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"data did not land: {got}, want {want}\n{collector.output()[-3000:]}")
                time.sleep(0.2)
            prom.load_rules(slos)
            yield prom, deltas, end


def rule_times(prom: RuledPrometheus, slos: Sequence[SLO], after: float) -> tuple[dict[str, float], list[dict]]:
    """For each SLO, the time of an evaluation of its group whose previous evaluation already saw all the data
    (a remote-write commit can land between two rules of one evaluation); then the rules are unloaded, so
    that the queries that follow do not compete with evaluations every second on a small machine. Also returns
    the rule groups' state (``/api/v1/rules``) just before."""
    deadline = time.monotonic() + 60
    periods = {s.name: duration_text(s.window.duration) for s in slos}  # slo:events:increase<period> needs data
    names = "|".join(periods)
    while True:
        data = prom.get("/api/v1/query", query=f'{{__name__=~"slo:events:increase.*", slo_name=~"{names}"}}[30s]')
        times: dict[str, float] = {}
        for series in data["result"]:
            name, window = series["metric"]["slo_name"], series["metric"]["slo_window"]
            seen = [float(t) for t, v in series["values"] if float(v) > 0 and float(t) > after]
            if window == periods[name] and len(seen) >= 2:
                times[name] = seen[-1]
        if len(times) == len(slos):
            groups = prom.get("/api/v1/rules")["groups"]
            prom.load_rules([])
            return times, groups
        if time.monotonic() > deadline:
            missing = sorted({s.name for s in slos} - set(times))
            raise AssertionError(f"no two evaluations with data for {missing}")
        time.sleep(0.5)


@pytest.mark.collector
def test_histogram_slis_on_a_real_prometheus(tmp_path):
    slos = stack_slos()
    occurrences = [s for s in slos if s.sli.kind != "percentile"]
    with loaded_stack(tmp_path, slos) as (prom, deltas, end):
        assert len(prom.get("/api/v1/rules")["groups"]) == len(slos)
        times, rules = rule_times(prom, occurrences, end)
        fired, quiet = set(), set()
        for slo in occurrences:
            at = times[slo.name]
            ledger = ledger_of(slo, deltas, 1.0)
            result = evaluate_slo(ledger, at)
            sel = f'{{slo_name="{slo.name}"}}'
            records = {r["record"] for g in rule_groups([slo]) for r in g["rules"] if "record" in r}
            windows = [w for w in WINDOWS if f"slo:sli_error:ratio_rate{duration_text(w)}" in records]
            assert len(windows) == 8
            per_minute = len(MODELS[dict(slo.sli.total.match)["ml.model.name"]][0][1].confidence)
            for w in windows:
                text = duration_text(w)
                got = prom.value(f"slo:sli_error:ratio_rate{text}{sel}", at)
                lower, upper = error_bounds(slo, ledger, end, at, w)
                assert got is not None and lower <= got <= upper, (slo.name, text, got, lower, upper)
                if f"slo:events:increase{text}" in records:
                    total = ledger.window(at - w, at).total  # increase() extrapolates to the window's edges
                    events = prom.value(f"slo:events:increase{text}{sel}", at)
                    slack = per_minute * (1 + (at - end) / MINUTE)  # extrapolation: an interval, plus to `at`
                    assert events is not None and abs(events - total) <= slack, (slo.name, text, events, total)
            # Remaining = 1 - error / (1 - objective) over the period (all the data here).
            remaining = prom.value(f"slo:period_error_budget_remaining:ratio{sel}", at)
            lower, upper = error_bounds(slo, ledger, end, at, slo.window.duration)
            budget = 1 - slo.objective
            assert remaining is not None
            assert 1 - upper / budget <= remaining <= 1 - lower / budget, (slo.name, remaining)
            assert result.budget_remaining_ratio is not None
            assert 1 - upper / budget <= result.budget_remaining_ratio <= 1 - lower / budget

            firing = prom.query(f'ALERTS{{slo_name="{slo.name}", alertstate="firing"}}', at)
            got_tiers = sorted(a["metric"]["slo_alert_tier"] for a in firing)
            for a in result.alerts:  # the scenario keeps every burn rate well away from the tier rates
                for burn in (a.long_burn, a.short_burn):
                    assert burn is None or abs(burn - a.burn_rate) > 0.05 * a.burn_rate, (slo.name, a)
            assert got_tiers == sorted(a.name for a in result.alerts if a.firing), (slo.name, result.alerts)
            fired |= {(slo.name, t) for t in got_tiers}
            quiet |= {(slo.name, a.name) for a in result.alerts if not a.enough_data}
        # The scenarios cover: every tier firing somewhere, tiers not firing, and min_events holding one back.
        assert {t for _, t in fired} == {t.name for t in DEFAULT_ALERT_TIERS}
        assert ("recovered-errors", "page-fast") not in fired and ("recovered-errors", "ticket-slow") in fired
        assert ("quiet-errors", "page-fast") in quiet and ("quiet-errors", "page-fast") not in fired

        # Every rule evaluated without error (the slice groups, every 2 minutes, at least did not fail).
        for g in rules:
            for r in g["rules"]:
                assert r["health"] != "err", (g["name"], r)
                assert g["interval"] != 1 or r["health"] == "ok", (g["name"], r)

        # Percentile SLIs: the quantile and the slice verdict, queried at the last export (no extrapolation).
        base = scale_base(SCALE)
        verdicts = set()
        for slo in (s for s in slos if s.sli.kind == "percentile"):
            ledger = ledger_of(slo, deltas, 1.0)
            for w in (300.0, 3600.0, 21600.0):
                want = merged_sketch(slo, deltas, end - w, end).quantile(0.95)
                got = prom.value(quantile_expr(slo, w), end)
                assert got is not None and abs(got - want) <= 2 * (base - 1) * want, (slo.name, w, got, want)
            ((_, b),) = ledger.slices(end - 120, end, 120)
            verdict = prom.value(timeslice_expr(slo), end)
            assert verdict == float(merged_sketch(slo, deltas, end - 120, end).quantile(0.95) <= 0.3), slo.name
            assert verdict == float(slice_good(slo, b)[0]), (slo.name, verdict)  # the evaluator agrees
            verdicts.add(verdict)
        assert verdicts == {0.0, 1.0}
