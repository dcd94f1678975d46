"""Issue 14: no silent wrong answers on inputs we did not write. One regression test (or more) per finding; each
failed on 001f0a2. Expected values are computed from the raw requests, never written by hand.

Telemetry comes from ``foreign_gen`` (explicit-bucket histograms in ms or s, status codes, producers without
``service.instance.id``), as the official OTel instrumentations write it; tests/e2e/test_foreign_telemetry.py runs the
real instrumentations through the real collector.
"""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from foreign_gen import MS_BOUNDS, Request, foreign_lines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelotel.evaluator import engine
from modelotel.evaluator.engine.verdict import error_allowance
from modelotel.evaluator.outputs.rules import rule_groups, rules_yaml
from modelotel.evaluator.slo import DEFAULT_ALERT_TIERS
from modelotel.evaluator.spec import SpecError, load_slos

from telemetry_gen import EPOCH, Event, export_lines, write_lines
from test_rules import Phase, accuracy_slo, close_to, counter_series, evaluator, run_promtool

SERVER_ERRORS = ("UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS")


def spec(tmp_path: Path, text: str, name: str = "slo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def evaluate(tmp_path: Path, text: str, *data: Path, at: float | None = None) -> dict:
    """``modelotel evaluate --format json`` in-process: the results by SLO name."""
    slos = load_slos([str(spec(tmp_path, text))])
    ev = engine.evaluate(slos, [str(d) for d in data], at=at)
    return {r.slo.name: r for r in ev.results}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelotel", *args], capture_output=True, text=True, timeout=120)


def requests(n: int, seed: int, producers: tuple[str, ...] = ("a",), end: float = 600.0) -> list[Request]:
    """``n`` requests over ``(0, end]``: log-normal durations around 80 ms, 5% 500/503, 5% 404."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        u = rng.random()
        status = 500 if u < 0.03 else 503 if u < 0.05 else 404 if u < 0.10 else 200
        t = float(rng.uniform(0.001, end))
        out.append(Request(producers[i % len(producers)], t, float(rng.lognormal(math.log(0.08), 0.8)), status))
    return out


def write(path: Path, lines: list[str]) -> Path:
    write_lines(path, lines)
    return path


# -- finding 3: units ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["http-old", "http-stable"])
def test_latency_threshold_is_read_in_each_metrics_unit(tmp_path, kind):
    """http.server.duration is in ms: threshold 100ms is 100 there, not 0.1 (SLI 0.58% against a true 84%)."""
    reqs = requests(3000, 1)
    data = write(tmp_path / "m.jsonl", foreign_lines(reqs, kind=kind, end=600))
    metric = "http.server.duration" if kind == "http-old" else "http.server.request.duration"
    slos = f"slos:\n  - {{name: fast, metric: {metric}, sli: latency, threshold: 100ms, objective: 0.8, window: 1h}}\n"
    r = evaluate(tmp_path, slos, data)["fast"]
    exact = sum(q.duration <= 0.1 for q in reqs) / len(reqs)
    assert r.events == len(reqs)
    assert r.sli == pytest.approx(exact, abs=1e-12)  # 100 ms is a bucket bound in both units: exact
    assert r.sli_lower == r.sli_upper == r.sli
    unit = "ms" if kind == "http-old" else "s"
    assert r.units == {metric: (unit, False)}


def test_a_threshold_inside_a_bucket_is_bounded_by_the_buckets(tmp_path):
    reqs = requests(2000, 2)
    data = write(tmp_path / "m.jsonl", foreign_lines(reqs, kind="http-old", end=600))
    slos = "slos:\n  - {name: t, metric: http.server.duration, sli: latency, threshold: 180ms, objective: 0.5}\n"
    r = evaluate(tmp_path, slos, data)["t"]
    exact = sum(q.duration <= 0.18 for q in reqs) / len(reqs)
    assert r.sli_lower <= exact <= r.sli_upper and r.sli_lower < r.sli_upper  # the (100, 250] ms bucket
    assert r.sli_lower == pytest.approx(sum(q.duration <= 0.1 for q in reqs) / len(reqs))
    assert r.sli_upper == pytest.approx(sum(q.duration <= 0.25 for q in reqs) / len(reqs))


def test_a_metric_without_a_unit_uses_the_conventions_unit_and_says_so(tmp_path):
    reqs = requests(500, 3)
    data = write(tmp_path / "m.jsonl", foreign_lines(reqs, kind="http-old", end=600, unit=""))
    slos = "slos:\n  - {name: t, metric: http.server.duration, sli: latency, threshold: 250ms, objective: 0.5}\n"
    r = evaluate(tmp_path, slos, data)["t"]
    assert r.sli == pytest.approx(sum(q.duration <= 0.25 for q in reqs) / len(reqs), abs=1e-12)
    assert any("carries no unit" in n and "'ms'" in n for n in r.notes), r.notes


def test_a_duration_threshold_on_a_metric_of_unknown_unit_is_invalid_not_guessed(tmp_path):
    reqs = requests(300, 4)
    lines = [line.replace("http.server.duration", "shop.checkout.time") for line in foreign_lines(reqs, end=600)]
    data = write(tmp_path / "m.jsonl", [line.replace('"unit":"ms"', '"unit":""') for line in lines])
    slos = "slos:\n  - {name: t, metric: shop.checkout.time, sli: latency, threshold: 250ms, objective: 0.5}\n"
    r = evaluate(tmp_path, slos, data)["t"]
    assert r.status == "invalid"
    assert "carries no unit" in r.reason and "shop.checkout.time" in r.reason and f"{len(reqs)} events" in r.reason


# -- finding 4: percentiles on explicit buckets ---------------------------------------------------------------------


def test_percentile_slis_on_explicit_bucket_histograms(tmp_path):
    """Per one-minute slice, p95 <= 250 ms: slices of fast traffic are good, slow ones bad (it read 0% before)."""
    reqs = []
    for minute in range(10):
        slow = minute in (2, 5, 6)
        for i in range(100):
            d = 0.4 if slow and i % 10 == 0 else 0.03  # 10% at 400 ms: p95 in the (250, 500] bucket
            reqs.append(Request("a", minute * 60 + 0.5 + i * 0.5, d))
    data = write(tmp_path / "m.jsonl", foreign_lines(reqs, kind="http-stable", end=600))
    slos = (
        "slos:\n  - {name: p95, metric: http.server.request.duration, sli: latency, percentile: p95, "
        "threshold: 250ms, objective: 0.9, window: 10m, timeslice: {window: 1m}, alerts: off}\n"
    )
    r = evaluate(tmp_path, slos, data, at=EPOCH + 600)["p95"]
    assert (r.slices_good, r.slices_total) == (7, 10)
    assert r.sli == r.sli_lower == r.sli_upper == pytest.approx(0.7)  # 250 ms is a bucket bound: exact
    assert r.status == "fail"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), threshold_ms=st.sampled_from([50, 75, 100, 180, 250, 400]))
def test_percentile_slices_hold_the_exact_verdict_within_their_bounds(tmp_path, seed, threshold_ms):
    reqs = requests(1200, seed, end=600)
    data = write(tmp_path / f"m{seed}.jsonl", foreign_lines(reqs, kind="http-old", end=600))
    slos = (
        "slos:\n  - {name: p90, metric: http.server.duration, sli: latency, percentile: p90, "
        f"threshold: {threshold_ms}ms, objective: 0.5, window: 10m, timeslice: {{window: 2m}}, alerts: off}}\n"
    )
    r = evaluate(tmp_path, slos, data, at=EPOCH + 600)["p90"]
    good = 0
    for k in range(5):
        values = sorted(q.duration for q in reqs if 120 * k < q.t <= 120 * (k + 1))
        rank = math.floor(0.9 * (len(values) - 1))  # the sketch's "lower" convention
        good += values[rank] <= threshold_ms / 1000
    assert r.slices_total == 5
    assert r.sli_lower * 5 - 1e-9 <= good <= r.sli_upper * 5 + 1e-9
    if threshold_ms in MS_BOUNDS:
        assert r.sli_lower == r.sli_upper == good / 5


# -- finding 5: errors by the semantic conventions ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["http-old", "http-stable"])
def test_error_ratio_on_http_metrics_counts_5xx_not_4xx(tmp_path, kind):
    reqs = requests(2000, 5)
    data = write(tmp_path / "m.jsonl", foreign_lines(reqs, kind=kind, end=600))
    metric = "http.server.duration" if kind == "http-old" else "http.server.request.duration"
    r = evaluate(tmp_path, f"slos:\n  - {{name: e, metric: {metric}, sli: error_ratio, objective: 0.99}}\n", data)["e"]
    exact = sum(not (isinstance(q.status, int) and q.status >= 500) for q in reqs) / len(reqs)
    assert r.sli == pytest.approx(exact, abs=1e-12) and r.sli < 0.99  # it read 100% before
    assert any("HTTP semantic conventions" in n and "5xx" in n for n in r.notes), r.notes


@pytest.mark.parametrize("kind", ["rpc-old", "rpc-new", "spanmetrics"])
def test_error_ratio_on_rpc_metrics_counts_server_error_codes(tmp_path, kind):
    rng = np.random.default_rng(6)
    codes = ["OK"] * 20 + ["NOT_FOUND", "INVALID_ARGUMENT", "CANCELLED", *SERVER_ERRORS]
    reqs = [Request("a", float(rng.uniform(0, 600)), 0.02, str(rng.choice(codes))) for _ in range(1500)]
    data = write(tmp_path / "m.jsonl", foreign_lines(reqs, kind=kind, end=600))
    metric = {"rpc-old": "rpc.server.duration", "rpc-new": "rpc.server.call.duration"}.get(
        kind, "traces.span.metrics.duration"
    )
    r = evaluate(tmp_path, f"slos:\n  - {{name: e, metric: {metric}, sli: error_ratio, objective: 0.9}}\n", data)["e"]
    exact = sum(q.status not in SERVER_ERRORS for q in reqs) / len(reqs)
    assert r.sli == pytest.approx(exact, abs=1e-12)
    assert r.notes and ("semantic conventions" in r.notes[0] or "span status" in r.notes[0])


# -- finding 6: set membership and regular expressions --------------------------------------------------------------


def test_selectors_take_sets_regexes_and_negations(tmp_path):
    reqs = requests(2000, 7)
    data = write(tmp_path / "m.jsonl", foreign_lines(reqs, kind="http-old", end=600))
    total = "{metric: http.server.duration}"
    slos = f"""
slos:
  - {{name: regex, sli: ratio, objective: 0.9, ratio: {{bad: {{metric: http.server.duration,
      match: {{http.status_code: {{regex: "5.."}}}}}}, total: {total}}}}}
  - {{name: set, sli: ratio, objective: 0.9, ratio: {{bad: {{metric: http.server.duration,
      match: {{http.status_code: [500, 503]}}}}, total: {total}}}}}
  - {{name: not-in, sli: ratio, objective: 0.9, ratio: {{good: {{metric: http.server.duration,
      match: {{http.status_code: {{not_in: [500, 503]}}}}}}, total: {total}}}}}
  - {{name: not-regex, sli: ratio, objective: 0.9, ratio: {{good: {{metric: http.server.duration,
      match: {{http.status_code: {{not_regex: "5.."}}}}}}, total: {total}}}}}
  - {{name: not-404, sli: ratio, objective: 0.9, ratio: {{good: {{metric: http.server.duration,
      match: {{http.status_code: {{not: 404}}}}}}, total: {total}}}}}
"""
    r = evaluate(tmp_path, slos, data)
    ok = sum(q.status < 500 for q in reqs) / len(reqs)
    for name in ("regex", "set", "not-in", "not-regex"):
        assert r[name].sli == pytest.approx(ok, abs=1e-12), name
    assert r["not-404"].sli == pytest.approx(sum(q.status != 404 for q in reqs) / len(reqs), abs=1e-12)


def test_a_bad_regex_or_operator_is_a_spec_error_with_its_line(tmp_path):
    path = spec(
        tmp_path,
        "slos:\n  - name: x\n    sli: ratio\n    objective: 0.9\n    ratio:\n      bad: {metric: m, match: {code: "
        '{regex: "5[0-9"}}}\n      total: {metric: m}\n',
    )
    with pytest.raises(SpecError, match=r"invalid regular expression .*line 6"):
        load_slos([str(path)])
    path.write_text(path.read_text().replace("regex", "regexp"))
    with pytest.raises(SpecError, match=r"unknown field \(did you mean 'regex'\?\)"):
        load_slos([str(path)])


# -- finding 7: a selector that matches nothing ---------------------------------------------------------------------


@pytest.fixture
def fraud_data(tmp_path):
    events = [Event("a", float(t), 0.01 if t % 9 else 0.5, error=t % 31 == 0) for t in range(1, 600)]
    lines = export_lines(events, interval=10, end=600)
    lines += export_lines(events[:300], interval=10, end=600, model="churn")
    return write(tmp_path / "m.jsonl", lines)


def test_a_typo_in_a_filter_is_no_match_naming_it_with_what_the_input_holds(tmp_path, fraud_data):
    slos = "slos:\n  - {name: lat, model: fraudd, sli: latency, threshold: 100ms, objective: 0.9}\n"
    r = evaluate(tmp_path, slos, fraud_data)["lat"]
    assert r.status == "no_match"
    assert "ml.model.name='fraudd'" in r.reason and "did you mean 'fraud'" in r.reason
    assert "'churn', 'fraud'" in r.reason  # the models the input holds
    slos = "slos:\n  - {name: lat, model: fraud, metric: ml.inference.durations, sli: latency, threshold: 1s,"
    r = evaluate(tmp_path, slos + " objective: 0.9}\n", fraud_data)["lat"]
    assert r.status == "no_match" and "no metric 'ml.inference.durations'" in r.reason
    assert "did you mean 'ml.inference.duration'" in r.reason


def test_gate_exits_6_on_no_match_even_with_inconclusive_as_pass(tmp_path, fraud_data):
    path = spec(tmp_path, "slos:\n  - {name: lat, model: fraudd, sli: latency, threshold: 100ms, objective: 0.9}\n")
    proc = run("gate", "--slo", str(path), "--data", str(fraud_data), "--inconclusive-as", "pass")
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert "NO_MATCH" in proc.stdout and "did you mean 'fraud'" in proc.stdout
    assert "cannot be judged" in proc.stderr
    doc = json.loads(run("evaluate", "--slo", str(path), "--data", str(fraud_data), "--format", "json").stdout)
    assert doc["slos"][0]["status"] == "no_match"


def test_compare_drift_and_fairness_name_a_filter_that_matches_nothing(tmp_path, fraud_data):
    proc = run("compare", "--data", str(fraud_data), "--baseline", "model=fraud", "--candidate", "model=fruad")
    assert proc.returncode == 6 and "--candidate model=fruad matches nothing" in proc.stderr, proc.stderr
    assert "did you mean 'fraud'" in proc.stderr
    proc = run("drift", "--data", str(fraud_data), "--model", "frau")
    assert proc.returncode == 6 and "--model 'frau' matches nothing" in proc.stderr, proc.stderr


def test_a_good_selector_on_a_key_the_metric_never_has_gets_a_note(tmp_path):
    reqs = requests(500, 8)
    data = write(tmp_path / "m.jsonl", foreign_lines(reqs, kind="http-stable", end=600))
    slos = (
        "slos:\n  - {name: r, sli: ratio, objective: 0.9, ratio: {bad: {metric: http.server.request.duration, "
        'match: {http.status_code: {regex: "5.."}}}, total: {metric: http.server.request.duration}}}\n'
    )
    r = evaluate(tmp_path, slos, data)["r"]
    assert any("http.status_code" in n and "did you mean 'http.response.status_code'" in n for n in r.notes)


# -- finding 9: the same points read twice ------------------------------------------------------------------------


@pytest.mark.parametrize("cumulative", [True, False])
def test_the_same_data_read_twice_counts_once(tmp_path, cumulative):
    reqs = requests(1500, 9, producers=("a", "b"))
    lines = foreign_lines(reqs, end=600, cumulative=cumulative)
    plain = write(tmp_path / "m.jsonl", lines)
    packed = tmp_path / "m.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    prefix = write(tmp_path / "copy.jsonl", lines[: len(lines) * 2 // 3])  # a copy taken while it was written
    slos = "slos:\n  - {name: e, metric: http.server.duration, sli: error_ratio, objective: 0.9, window: 1h}\n"
    once = evaluate(tmp_path, slos, plain)["e"]
    assert once.events == len(reqs)
    for inputs in ((plain, plain), (plain, packed), (prefix, plain), (plain, prefix)):
        ev = engine.evaluate(load_slos([str(tmp_path / "slo.yaml")]), [str(p) for p in inputs])
        (r,) = ev.results
        assert (r.events, r.sli) == (once.events, once.sli), inputs
        assert sum(rep.duplicate_points for rep in ev.reports) > 0


def test_rotated_files_continue_their_cumulative_series(tmp_path):
    """A collector's file rotated mid-run: the second file's first points are increments, not totals."""
    reqs = requests(1500, 10, producers=("a", "b"))
    lines = foreign_lines(reqs, end=600, cumulative=True)
    first, second = write(tmp_path / "1.jsonl", lines[:50]), write(tmp_path / "2.jsonl", lines[50:])
    slos = "slos:\n  - {name: e, metric: http.server.duration, sli: error_ratio, objective: 0.9, window: 1h}\n"
    r = evaluate(tmp_path, slos, first, second)["e"]
    assert r.events == len(reqs)


def test_two_replicas_without_an_instance_id_are_both_counted(tmp_path):
    """The OTel SDK sets no service.instance.id: two replicas write one series identity with their own start
    times. Both count, once each (one replica's points were dropped as out of order before)."""
    reqs = requests(2000, 11, producers=("a", "b"))
    lines = foreign_lines(reqs, end=600, cumulative=True, instance_id=False, starts={"a": 0.0, "b": 90.0})
    reqs = [q for q in reqs if q.producer == "a" or q.t > 90.0]  # b started at 90 s
    data = write(tmp_path / "m.jsonl", lines)
    slos = "slos:\n  - {name: e, metric: http.server.duration, sli: error_ratio, objective: 0.9, window: 1h}\n"
    ev = engine.evaluate(load_slos([str(spec(tmp_path, slos))]), [str(data)])
    (r,) = ev.results
    assert r.events == len(reqs)
    assert r.sli == pytest.approx(sum(q.status < 500 for q in reqs) / len(reqs), abs=1e-12)
    assert ev.reports[0].shared_series > 0 and ev.reports[0].bad_points == 0


# -- finding 10: full precision ---------------------------------------------------------------------------------


def test_json_carries_full_precision(tmp_path):
    """A 99.999% SLO failing at 99.99899% must not read 0.99999 (six decimals), and an SLI never prints above its
    own upper bound."""
    events = [Event("a", 1 + i * 0.005, 0.01, error=i == 5) for i in range(99_999)]
    data = write(tmp_path / "m.jsonl", export_lines(events, interval=60, end=600))
    path = spec(tmp_path, "slos:\n  - {name: e, model: fraud, sli: error_ratio, objective: 99.999%, window: 1h}\n")
    doc = json.loads(run("evaluate", "--slo", str(path), "--data", str(data), "--format", "json").stdout)
    (slo,) = doc["slos"]
    assert slo["sli"] == 1 - 1 / 99_999 and slo["sli"] < slo["objective"] and slo["status"] == "fail"
    assert slo["accuracy"]["sli_lower"] <= slo["sli"] <= slo["accuracy"]["sli_upper"]


# -- finding 11: a pretty-printed OTLP JSON document ------------------------------------------------------------------


def test_a_pretty_printed_otlp_document_is_read_and_unusable_points_say_why(tmp_path):
    reqs = requests(300, 12)
    (line,) = foreign_lines(reqs, end=600, interval=600)
    doc = json.loads(line)
    gauge = {"name": "http.server.active_requests", "unit": "1", "gauge": {"dataPoints": [{"asInt": "3"}]}}
    doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"].append(gauge)
    data = tmp_path / "metrics.json"
    data.write_text(json.dumps(doc, indent=2))  # as opentelemetry-proto's examples/metrics.json is written
    slos = (
        "slos:\n  - {name: e, metric: http.server.duration, sli: error_ratio, objective: 0.9}\n"
        "  - {name: g, sli: ratio, objective: 0.9, ratio: {good: {metric: http.server.active_requests}, "
        "total: {metric: http.server.active_requests}}}\n"
    )
    ev = engine.evaluate(load_slos([str(spec(tmp_path, slos))]), [str(data)])
    (report,) = ev.reports
    assert report.corrupt_lines == 0 and ev.results[0].events == len(reqs)
    (problem,) = report.problems
    text = data.read_text().splitlines()
    assert "gauge has no increments" in problem.reason and '"http.server.active_requests"' in text[problem.line - 1]
    assert ev.results[1].status == "no_match" and "no usable series" in ev.results[1].reason


# -- finding 12: rules agree with the evaluator at the boundary -----------------------------------------------------


@pytest.mark.parametrize("objective", [0.95, 0.99, 0.995, 0.999, 0.9999])
def test_rules_fire_at_exactly_the_tiers_burn_rate(tmp_path, objective):
    """At a bad fraction of exactly 14.4 x (1 - objective) the evaluator fires; the rule's literals, evaluated in
    IEEE doubles as PromQL does, must too (0.0144 / 0.0010000000000000009 read 14.399999999999986 before)."""
    text = f"slos:\n  - {{name: e, model: m, sli: error_ratio, objective: {objective}}}\n"
    (slo,) = load_slos([str(spec(tmp_path, text))])
    (group,) = rule_groups([slo])
    alert = next(r for r in group["rules"] if r.get("alert") and r["labels"]["slo_alert_tier"] == "page-fast")
    lhs = alert["expr"].split("\n")[1]  # "  slo:sli_error:ratio_rate1h{...} / BUDGET >= RATE"
    budget, rate = (float(x) for x in lhs.split(" / ")[1].split(" >= "))
    bad, total = 144 * round(error_allowance(objective) * 1e4), 100_000  # 14.4 (1 - objective) exactly
    ratio = bad / total  # what the recording rule holds at exactly 14.4x
    assert ratio / budget >= rate
    assert (ratio * (1 - 1e-6)) / budget < rate  # and not below the boundary


# -- finding 13: time to exhaustion and the report's interval ---------------------------------------------------------


def test_no_time_to_exhaustion_below_a_burn_of_one(tmp_path):
    # 0.5% errors against a 1% budget (burn 0.5), after an early burst that spent 80% of the budget
    events = [
        Event("a", float(t) / 10, 0.01, error=(t % 200 == 0) or (t < 1000 and t % 25 == 0)) for t in range(1, 36_000)
    ]
    data = write(tmp_path / "m.jsonl", export_lines(events, interval=60, end=3600))
    r = evaluate(tmp_path, "slos:\n  - {name: e, model: fraud, sli: error_ratio, objective: 0.99, window: 1h}\n", data)
    assert 0 < r["e"].budget_remaining_ratio < 1 and r["e"].burn_rates["1h"] < 1
    assert r["e"].time_to_exhaustion is None
    path = tmp_path / "slo.yaml"
    assert "exhausted in" not in run("evaluate", "--slo", str(path), "--data", str(data)).stdout


def test_report_shows_the_sli_interval(tmp_path):
    reqs = requests(2000, 13)
    data = write(tmp_path / "m.jsonl", foreign_lines(reqs, kind="http-old", end=600))
    text = "slos:\n  - {name: t, metric: http.server.duration, sli: latency, threshold: 180ms, objective: 0.5}\n"
    path = spec(tmp_path, text)
    out = tmp_path / "r.html"
    proc = run("report", "--slo", str(path), "--data", str(data), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    r = evaluate(tmp_path, path.read_text(), data)["t"]
    html = out.read_text()
    assert f"[{r.sli_lower * 100:.3f}%, {r.sli_upper * 100:.3f}%]" in html


def test_promtool_fires_at_exactly_the_tiers_burn_rate_like_the_evaluator(tmp_path):
    """Real Prometheus rule evaluation (promtool): 1.44% bad at 99.9% is a burn of exactly 14.4 over both page-fast
    windows; the evaluator fires page-fast, and so must the generated rule."""
    slo = accuracy_slo("exact", "m-exact", 0.999, alert_tiers=(DEFAULT_ALERT_TIERS[0],))
    series, deltas = counter_series("m-exact", [Phase(90, 10_000, 144)])
    result = evaluator(slo, deltas)(90 * 60.0)
    assert [a.firing for a in result.alerts] == [True]
    assert result.alerts[0].long_burn == pytest.approx(14.4, abs=1e-9)
    (tmp_path / "rules.yaml").write_text(rules_yaml([slo]))
    test_file = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "5m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": 'count by (slo_name, slo_alert_tier) (ALERTS{alertstate="firing"})',
                        "eval_time": "90m",
                        "exp_samples": [{"labels": '{slo_name="exact", slo_alert_tier="page-fast"}', "value": 1}],
                    }
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test_file, sort_keys=False))
    proc = run_promtool("test", "rules", "test.yaml", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


def test_promtool_rules_count_foreign_classic_histograms_with_filters_and_semconv_errors(tmp_path):
    """The old HTTP conventions' http.server.duration (ms, explicit buckets) reaches Prometheus as a classic
    histogram; the generated rules count its _count series with the regex filter and the semantic-convention
    error rule (5xx, not 4xx) exactly as the evaluator does."""
    minutes = 30
    per_minute = {200: 90, 404: 6, 500: 3, 503: 1}
    slos = load_slos(
        [
            str(
                spec(
                    tmp_path,
                    "slos:\n"
                    "  - {name: errors, metric: http.server.duration, sli: error_ratio, objective: 0.9, alerts: off}\n"
                    "  - {name: regex, sli: ratio, objective: 0.9, alerts: off, ratio: {bad: {metric: "
                    'http.server.duration, match: {http.status_code: {regex: "5.."}}}, total: {metric: '
                    "http.server.duration}}}\n"
                    "  - {name: not-404, sli: ratio, objective: 0.9, alerts: off, ratio: {good: {metric: "
                    "http.server.duration, match: {http.status_code: {not: 404}}}, total: {metric: "
                    "http.server.duration}}}\n",
                )
            )
        ]
    )
    series = []
    base = 'job="shop", instance="i-1", http_method="POST"'
    for status, n in per_minute.items():
        values = " ".join(str(n * k) for k in range(minutes + 1))
        name = f'http_server_duration_milliseconds_count{{{base}, http_status_code="{status}"}}'
        series.append({"series": name, "values": values})
    total = sum(per_minute.values())
    want = {"errors": 4 / total, "regex": 4 / total, "not-404": 6 / total}
    (tmp_path / "rules.yaml").write_text(rules_yaml(slos))
    tests = [
        {**close_to(f'slo:sli_error:ratio_rate28d{{slo_name="{name}"}}', value), "eval_time": "20m"}
        for name, value in want.items()
    ]
    test_file = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test_file, sort_keys=False))
    proc = run_promtool("test", "rules", "test.yaml", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


def test_promtool_percentile_slices_on_a_classic_ttft_histogram(tmp_path):
    """A p95 TTFT SLO on gen_ai.server.time_to_first_token as vLLM-style exporters write it (explicit buckets: a
    classic histogram in Prometheus). Before the classic alternative, histogram_quantile ran on native histograms
    only: no slice was ever recorded and the SLO's series stayed empty. Here 30 minutes all under 100 ms (p95 <= 500
    ms: good slices), then 30 minutes with half the requests between 0.5 and 1 s (p95 > 500 ms: bad slices)."""
    slos = load_slos(
        [
            str(
                spec(
                    tmp_path,
                    "slos:\n  - {name: ttft, metric: gen_ai.server.time_to_first_token, sli: latency, "
                    "percentile: p95, threshold: 500ms, objective: 0.5, window: 1h, alerts: off}\n",
                )
            )
        ]
    )
    per_minute = {
        "fast": {"0.1": 100, "0.5": 100, "1": 100, "+Inf": 100},
        "slow": {"0.1": 0, "0.5": 50, "1": 100, "+Inf": 100},
    }
    base = 'gen_ai_request_model="llama", job="vllm"'
    series = []
    for le in ("0.1", "0.5", "1", "+Inf"):
        cumulative, values = 0, ["0"]
        for minute in range(60):
            cumulative += per_minute["fast" if minute < 30 else "slow"][le]
            values.append(str(cumulative))
        name = f'gen_ai_server_time_to_first_token_seconds_bucket{{{base}, le="{le}"}}'
        series.append({"series": name, "values": " ".join(values)})
        if le == "+Inf":
            name = f"gen_ai_server_time_to_first_token_seconds_count{{{base}}}"
            series.append({"series": name, "values": " ".join(values)})
    (tmp_path / "rules.yaml").write_text(rules_yaml(slos))
    good = 'slo:timeslice_good:ratio{slo_name="ttft"}'
    tests = [{**close_to(good, 1.0), "eval_time": "25m"}, {**close_to(good, 0.0), "eval_time": "55m"}]
    test_file = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test_file, sort_keys=False))
    proc = run_promtool("test", "rules", "test.yaml", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


def test_an_empty_window_says_where_the_data_is(tmp_path, fraud_data):
    slos = "slos:\n  - {name: lat, model: fraud, sli: latency, threshold: 100ms, objective: 0.9, window: 1h}\n"
    r = evaluate(tmp_path, slos, fraud_data, at=EPOCH + 30 * 86400)["lat"]
    assert r.status == "inconclusive" and r.events == 0
    assert "the matching data spans 2027-01-15T08:00:10Z to 2027-01-15T08:10:00Z, outside the window" in r.reason


def test_serve_judges_foreign_telemetry_like_evaluate(tmp_path):
    """``modelotel serve`` receives protobuf export requests: the unit must survive the conversion (it was dropped,
    so a threshold in ms data was read as seconds) and a retried delta request must count once."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from modelotel.evaluator.engine.stream import StreamState, request_json

    reqs = requests(1500, 14)
    lines = foreign_lines(reqs, kind="http-old", end=600, cumulative=False)
    slos = load_slos(
        [
            str(
                spec(
                    tmp_path,
                    "slos:\n  - {name: fast, metric: http.server.duration, sli: latency, threshold: 100ms, "
                    "objective: 0.8, window: 1h}\n  - {name: errors, metric: http.server.duration, sli: error_ratio, "
                    "objective: 0.9, window: 1h}\n",
                )
            )
        ]
    )
    state = StreamState(slos)
    for line in lines:
        body = request_json(json_format.Parse(line, ExportMetricsServiceRequest()))
        state.ingest(body)
        assert state.ingest(body).deltas == 0  # a collector retry of the same request
    by_name = {r.slo.name: r for r in state.evaluate(EPOCH + 600).results}
    assert by_name["fast"].events == len(reqs)
    assert by_name["fast"].sli == pytest.approx(sum(q.duration <= 0.1 for q in reqs) / len(reqs), abs=1e-12)
    assert by_name["errors"].sli == pytest.approx(sum(q.status < 500 for q in reqs) / len(reqs), abs=1e-12)


def test_an_up_down_counter_is_refused_not_read_as_events(tmp_path):
    """http.server.active_requests goes down as well as up: read as increments it gave negative 'events'."""
    points = [
        {
            "attributes": [],
            "startTimeUnixNano": str(int(EPOCH * 1e9)),
            "timeUnixNano": str(int((EPOCH + t) * 1e9)),
            "asInt": str(v),
        }
        for t, v in ((10, 5), (20, 2), (30, 7))
    ]
    metric = {
        "name": "http.server.active_requests",
        "unit": "{request}",
        "sum": {"dataPoints": points, "aggregationTemporality": 2, "isMonotonic": False},
    }
    line = json.dumps({"resourceMetrics": [{"resource": {}, "scopeMetrics": [{"metrics": [metric]}]}]})
    data = write(tmp_path / "m.jsonl", [line])
    slos = (
        "slos:\n  - {name: r, sli: ratio, objective: 0.9, ratio: {good: {metric: http.server.active_requests}, "
        "total: {metric: http.server.active_requests}}}\n"
    )
    ev = engine.evaluate(load_slos([str(spec(tmp_path, slos))]), [str(data)])
    (report,) = ev.reports
    assert report.bad_points == 3 and "up-down counter" in report.problems[0].reason
    assert ev.results[0].status == "no_match" and "no usable series" in ev.results[0].reason
