"""The examples as a newcomer runs them: each server for real on loopback, the traffic generator against it,
and the exported telemetry checked against what the traffic generator saw; then the demo end to end.

The servers export to a file (modelotel's embedded default). Every count is compared exactly with the
client's own record: requests sent, failures, predicted labels, feedback correctness, and the OOD outliers,
recomputed from the rows sent with the same scorer. So is each server's log: its startup lines, and the
totals it logs at shutdown.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from modelotel import conventions as conv
from modelotel.otlp.json import read_json_lines
from modelotel.sketch import LogSketch

from collector_support import Process, free_port, otelcol

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))

import fraud_model  # noqa: E402
import traffic  # noqa: E402

DURATION_S = 4.0  # phases scaled down: 1.2 s normal, 0.8 s slow, 0.6 s errors, 1.4 s drift
RATE = 40.0
SEED = 7
PREDICT_ROUTE = {"fastapi": "/predict", "flask": "/predict", "grpc": "fraud.v1.FraudModel/Predict"}
STATUS_CODE = "http.response.status_code"
FEEDBACK_ROUTE = {"fastapi": "/feedback", "flask": "/feedback", "grpc": "fraud.v1.FraudModel/Feedback"}


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    """One cache for the module: the first server trains and caches the model, the others load it."""
    return tmp_path_factory.mktemp("model-cache")


def server_env(telemetry: Path, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELOTEL_"))}
    env["MODELOTEL_FEEDBACK_KEY"] = "examples-test-feedback-key"  # as the demo sets one: every call has an id
    env.update(
        MODELOTEL_EXPORT_FILE=str(telemetry),
        OTEL_METRIC_EXPORT_INTERVAL="500",
        MODELOTEL_EXAMPLES_CACHE=str(cache),
        PYTHONPATH=os.pathsep.join([str(ROOT / "sdk"), os.environ.get("PYTHONPATH", "")]),
    )
    return env


class Telemetry:
    """The last cumulative point of every series in an OTLP-JSON-lines file (one process wrote it)."""

    def __init__(self, path: Path) -> None:
        self.points: dict[tuple, tuple[str, dict, dict]] = {}
        self.instances: set[str] = set()
        for number, obj in read_json_lines(path):
            assert obj is not None, f"{path}:{number}: corrupt line"
            for rm in obj.get("resourceMetrics", []):
                resource = {a["key"]: a["value"].get("stringValue") for a in rm["resource"]["attributes"]}
                self.instances.add(resource["service.instance.id"])
                for sm in rm["scopeMetrics"]:
                    for metric in sm["metrics"]:
                        data = metric.get("exponentialHistogram") or metric.get("sum")
                        for point in data["dataPoints"]:
                            attrs = {a["key"]: next(iter(a["value"].values())) for a in point.get("attributes", [])}
                            key = (metric["name"], tuple(sorted(attrs.items())))
                            self.points[key] = (metric["name"], attrs, point)

    def series(self, name: str, **match) -> list[tuple[dict, dict]]:
        return [
            (attrs, point)
            for n, attrs, point in self.points.values()
            if n == name and all(attrs.get(k) == v for k, v in match.items())
        ]

    def count(self, name: str, **match) -> int:
        """Histogram counts or counter values summed over the matching series."""
        total = 0
        for _, point in self.series(name, **match):
            total += int(point["count"]) if "count" in point else int(point.get("asInt", 0))
        return total


def served_totals(log: str) -> dict[str, tuple[int, dict[str, int]]]:
    """The shutdown line's ``served predict 160, 9 failed (500 x9); feedback 130``: {op: (calls, {status: n})}."""
    (line,) = [line for line in log.splitlines() if " after " in line and ": served " in line]
    totals = {}
    for part in line.split(": served ", 1)[1].split("; "):
        m = re.fullmatch(r"(\w+) ([\d,]+)(?:, ([\d,]+) failed \((.*)\))?", part)
        assert m, part
        by_status = {}
        for item in (m.group(4) or "").split(", ") if m.group(4) else []:
            status, n = item.rsplit(" x", 1)
            by_status[status] = int(n.replace(",", ""))
        assert sum(by_status.values()) == int((m.group(3) or "0").replace(",", ""))
        totals[m.group(1)] = (int(m.group(2).replace(",", "")), by_status)
    return totals


def check_server_log(log: str, port: int | None, telemetry: str) -> None:
    """What an operator reads: the model, where telemetry goes (``telemetry``: the start of that line's text), the
    address (``port``; None: any); then the stop and the final export."""
    assert re.search(r"model fraud v1 (loaded from|trained in) .*\(12 features; OOD threshold", log), log
    assert f"telemetry: {telemetry}" in log, log
    port_pattern = r"\d+" if port is None else str(port)
    assert re.search(rf"(listening on|Uvicorn running on) (http://)?127\.0\.0\.1:{port_pattern}\b", log), log
    assert re.search(r"stopping \(SIGTERM\) after [\d.]+ s: served ", log), log
    assert re.search(r"stopped: final telemetry export ok in [\d.]+ s", log), log


def run_server(kind: str, tmp_path: Path, cache: Path) -> tuple[traffic.TrafficResult, Telemetry, list[str], str]:
    telemetry = tmp_path / "telemetry.jsonl"
    port = free_port()
    args = [sys.executable, str(EXAMPLES / f"{kind}_server.py"), "--port", str(port), "--allow-faults"]
    lines: list[str] = []
    with Process(args, tmp_path / "server.log", env=server_env(telemetry, cache)) as server:
        if kind == "grpc":
            client = traffic.connect(grpc_target=f"127.0.0.1:{port}")
        else:
            client = traffic.connect(url=f"http://127.0.0.1:{port}")
        try:
            try:
                traffic.wait_healthy(client, timeout=60, alive=lambda: server.proc.poll() is None)
            except traffic.Unavailable as exc:
                pytest.fail(f"{kind} server did not start: {exc}\n{server.output()[-3000:]}")
            result = traffic.run(client, DURATION_S, RATE, SEED, out=lines.append)
        finally:
            client.close()
        code = server.stop()
    log = (tmp_path / "server.log").read_text(errors="replace")
    assert code in (0, -15), f"{kind} server exited with {code}:\n{log[-3000:]}"  # uvicorn re-raises SIGTERM
    assert "Traceback" not in log, log[-3000:]
    check_server_log(log, port, f"OTLP JSON lines appended to {telemetry} every 0.5 s; spans off")
    return result, Telemetry(telemetry), lines, log


@pytest.mark.parametrize("kind", ["fastapi", "flask", "grpc"])
def test_server_telemetry_matches_the_traffic(kind, tmp_path, model_cache):
    result, telemetry, lines, log = run_server(kind, tmp_path, model_cache)
    model = fraud_model.load_model(fraud_model.cache_dir(model_cache))  # the one the servers loaded
    requests = result.requests
    ok = [r for r in requests if r.ok]
    failed = [r for r in requests if not r.ok]
    assert [line.split()[0] for line in lines[:4]] == ["normal", "slow", "errors", "drift"]
    assert len(telemetry.instances) == 1

    # every request reached the model once; the failures are the injected ones, all in the error burst
    model_attrs = {conv.MODEL_NAME: fraud_model.MODEL_NAME, conv.MODEL_VERSION: "1"}
    assert len(requests) == round(DURATION_S * RATE)
    assert telemetry.count(conv.INFERENCE_DURATION, **model_attrs) == len(requests)
    assert failed and {r.phase for r in failed} == {"errors"}
    assert {r.status for r in failed} == ({"INTERNAL"} if kind == "grpc" else {"500"})
    assert telemetry.count(conv.INFERENCE_DURATION, **model_attrs, **{conv.ERROR_TYPE: "ModelFailure"}) == len(failed)
    errors = [a for a, _ in telemetry.series(conv.INFERENCE_DURATION) if conv.ERROR_TYPE in a]
    assert {a[conv.ERROR_TYPE] for a in errors} == {"ModelFailure"}

    # the slow phase is visible in the model's latency: at least its calls took >= 400 ms
    (ok_point,) = [p for a, p in telemetry.series(conv.INFERENCE_DURATION, **model_attrs) if conv.ERROR_TYPE not in a]
    sketch = LogSketch.from_otlp_point(ok_point)
    slow = sum(r.phase == "slow" for r in requests)
    at_most_250ms = sketch.count_at_or_below(0.25)[1]
    assert sketch.count - at_most_250ms >= slow

    # the server's own request metric, by route/method; health checks and admin calls excluded
    feedback_sent = [r for r in requests if r.feedback_status is not None]
    assert feedback_sent and all(r.feedback_status == "matched" for r in feedback_sent)
    if kind == "grpc":
        metric, route_key, status_key, bad = (
            conv.RPC_SERVER_DURATION,
            "rpc.method",
            "rpc.response.status_code",
            "INTERNAL",
        )
    else:
        metric, route_key, status_key, bad = conv.HTTP_SERVER_DURATION, "http.route", "http.response.status_code", "500"
    assert telemetry.count(metric, **{route_key: PREDICT_ROUTE[kind]}) == len(requests)
    assert telemetry.count(metric, **{route_key: FEEDBACK_ROUTE[kind]}) == len(feedback_sent)
    statuses = Counter()
    for attrs, point in telemetry.series(metric, **{route_key: PREDICT_ROUTE[kind]}):
        statuses[str(attrs[status_key])] += int(point["count"])
    assert statuses[bad] == len(failed)
    assert telemetry.count(metric) == len(requests) + len(feedback_sent)  # nothing else: no /healthz, no admin

    # the server's log: the totals it logged at shutdown are the client's, and a summary, not a line per request
    assert served_totals(log) == {
        "predict": (len(requests), {bad: len(failed)}),
        "feedback": (len(feedback_sent), {}),
    }
    assert len(log.splitlines()) <= 25 < len(requests), log

    # predictions, confidences, feature distributions: one per row of every successful call
    rows = sum(len(r.rows) for r in ok)
    labels = Counter(label for r in ok for label in r.labels)
    for label, n in labels.items():
        assert telemetry.count(conv.PREDICTIONS, **model_attrs, **{conv.PREDICTION_LABEL: label}) == n
    assert telemetry.count(conv.PREDICTIONS, **model_attrs) == rows
    assert telemetry.count(conv.PREDICTION_CONFIDENCE_METRIC, **model_attrs) == rows
    for name in fraud_model.DRIFT_FEATURES:
        assert telemetry.count(conv.FEATURE_VALUE, **{conv.FEATURE_NAME: name}) == rows
    assert {a[conv.FEATURE_NAME] for a, _ in telemetry.series(conv.FEATURE_VALUE)} == set(fraud_model.DRIFT_FEATURES)

    # feedback: correctness exactly as the client judged the answers it got
    right = sum(r.right() for r in feedback_sent)
    items = sum(len(r.truth) for r in feedback_sent)
    assert telemetry.count(conv.FEEDBACK, **model_attrs, **{conv.FEEDBACK_CORRECT: True}) == right
    assert telemetry.count(conv.FEEDBACK, **model_attrs, **{conv.FEEDBACK_CORRECT: False}) == items - right

    # OOD: every row scored; outliers exactly those above the scorer's threshold, nearly all in the drift
    assert telemetry.count(conv.OOD_SCORE_METRIC, **model_attrs) == rows
    outliers = {
        phase: sum(int(np.count_nonzero(model.ood.score(r.rows) > model.ood.threshold)) for r in ok if r.phase == phase)
        for phase in ("normal", "slow", "errors", "drift")
    }
    assert telemetry.count(conv.OOD_OUTLIERS, **model_attrs) == sum(outliers.values())
    drift_rows = sum(len(r.rows) for r in ok if r.phase == "drift")
    clean_rows = rows - drift_rows
    assert outliers["drift"] >= 0.8 * drift_rows
    assert outliers["normal"] + outliers["slow"] + outliers["errors"] <= 0.2 * clean_rows


def test_the_synthetic_payments_are_what_fraud_model_documents():
    """The generator's columns keep their documented relations, it is deterministic, and the model trained on it
    tells the demo's story: ~95% right on unseen payments, ~80% with the amounts in cents, ~5% of clean rows
    flagged out of distribution and every row in cents."""
    X, y = fraud_model.transactions(5000, seed=3)
    again, y_again = fraud_model.transactions(5000, seed=3)
    assert np.array_equal(X, again) and np.array_equal(y, y_again)
    col = {name: X[:, i] for i, name in enumerate(fraud_model.FEATURE_NAMES)}
    assert X.shape == (5000, 12) and set(np.unique(y)) == {0, 1}
    assert np.array_equal(col["amount_usd"], np.round(col["amount_usd"], 2)) and col["amount_usd"].min() > 0
    assert np.allclose(col["amount_to_avg_ratio"], col["amount_usd"] / col["avg_amount_30d_usd"])
    for name in ("hour_of_day", "account_age_days", "txns_last_1h", "txns_last_24h", "failed_logins_24h"):
        assert np.array_equal(col[name], np.floor(col[name])), name
    assert col["hour_of_day"].min() >= 0 and col["hour_of_day"].max() <= 23
    assert (col["txns_last_24h"] >= col["txns_last_1h"]).all()
    for name in ("card_present", "foreign_merchant"):
        assert set(np.unique(col[name])) == {0.0, 1.0}, name
    assert ((col["merchant_risk_score"] > 0) & (col["merchant_risk_score"] < 1)).all()
    assert 0.2 <= y.mean() <= 0.3  # the docstring's "about 25%"

    data = fraud_model.dataset()
    assert 0.2 <= data.fraud_share <= 0.3
    assert len(data.train.y) + len(data.holdout.y) + len(data.serve.y) == fraud_model.N_ROWS
    model = fraud_model.train(data)
    serve = data.serve.X
    cents = traffic.drift(serve, data.feature_names)
    amounts = [data.feature_names.index(name) for name in fraud_model.AMOUNT_FEATURES]
    assert np.array_equal(cents[:, amounts], serve[:, amounts] * 100)
    assert np.array_equal(np.delete(cents, amounts, axis=1), np.delete(serve, amounts, axis=1))

    def accuracy(rows: np.ndarray) -> float:
        return float(np.mean(model.predict_proba(rows).argmax(axis=1) == data.serve.y))

    def ood_rate(rows: np.ndarray) -> float:
        return float(np.mean(model.ood.score(rows) > model.ood.threshold))

    assert 0.93 <= accuracy(serve) <= 0.97
    assert 0.75 <= accuracy(cents) <= 0.85
    assert 0.02 <= ood_rate(serve) <= 0.10
    assert ood_rate(cents) >= 0.95


def test_fault_injection_is_refused_without_the_flag(tmp_path, model_cache):
    port = free_port()
    args = [sys.executable, str(EXAMPLES / "flask_server.py"), "--port", str(port)]
    with Process(args, tmp_path / "server.log", env=server_env(tmp_path / "t.jsonl", model_cache)) as server:
        client = traffic.connect(url=f"http://127.0.0.1:{port}")
        traffic.wait_healthy(client, timeout=60, alive=lambda: server.proc.poll() is None)
        ok, status, body = client.call("mode", {"error_rate": 1})
        assert (ok, status) == (False, "403") and "--allow-faults" in body["error"]
        ok, status, body = client.call("predict", {"rows": [[1.0] * 11]})
        assert (ok, status) == (False, "422") and "12 numbers" in body["error"]
        ok, status, body = client.call("feedback", {"prediction_id": "0" * 32, "labels": ["fraud"]})
        assert (ok, status, body) == (False, "404", {"matched": False})


def run_demo(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    out = tmp_path / "demo"
    cmd = [sys.executable, str(EXAMPLES / "demo.py"), "--out", str(out), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def section_lines(stdout: str, after: str, before: str) -> list[str]:
    """The lines between the one starting with ``after`` and the next one starting with ``before``."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(before))
    return lines[start + 1 : end]


def section(stdout: str, title: str) -> str:
    """The lines of one `== title ... ==` section of the demo's output."""
    part = stdout.split(f"== {title}", 1)[1]
    return part.split("\n== ", 1)[0]


def demo_env(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELOTEL_"))}
    return {**env, "MODELOTEL_EXAMPLES_CACHE": str(cache), **extra}


def check_demo_output(proc: subprocess.CompletedProcess, out: Path, telemetry: str) -> None:
    """The slow period fails the latency SLO with a page while inputs are clean; the drift fails the OOD SLO."""
    stdout = proc.stdout
    slow = section(stdout, "SLOs at the end of the slow period").splitlines()
    end = section(stdout, "SLOs at the end of the run").splitlines()

    def row(lines: list[str], slo: str) -> list[str]:
        return next(line for line in lines if line.startswith(slo + " ")).split()

    assert row(slow, "fraud-latency")[1] == "FAIL" and "page-fast" in row(slow, "fraud-latency")[-1], slow
    assert row(slow, "fraud-ood")[1] == "PASS", slow
    assert row(end, "fraud-ood")[1] == "FAIL", end
    assert "== drift" in stdout
    for name in ("telemetry.jsonl", "report.html"):
        assert (out / name).stat().st_size > 0, name
    assert "Traceback" not in proc.stderr
    # "server.log  the server's output": it says what started, where telemetry went, and what was flushed at the end
    log = (out / "server.log").read_text()
    check_server_log(log, None, telemetry)  # the demo picked the port
    served = served_totals(log)
    traffic_lines = section_lines(stdout, "traffic for", "feedback ")
    requests_sent = sum(int(re.search(r"(\d+) requests", line).group(1)) for line in traffic_lines)
    assert served["predict"][0] == requests_sent, (served, traffic_lines)


def test_demo_end_to_end(tmp_path, model_cache):
    proc = run_demo(tmp_path, "--duration", "6", "--no-collector", env=demo_env(model_cache))
    out = tmp_path / "demo"
    check_demo_output(proc, out, f"OTLP JSON lines appended to {out / 'telemetry.jsonl'} every 1 s; spans off")
    assert "modelotel's file exporter" in proc.stdout


@pytest.mark.collector
def test_demo_through_the_collector(tmp_path, model_cache):
    env = demo_env(model_cache, MODELOTEL_OTELCOL=otelcol())
    proc = run_demo(tmp_path, "--server", "grpc", "--duration", "6", "--traces", env=env)
    check_demo_output(proc, tmp_path / "demo", "OTLP/grpc to http://127.0.0.1:")  # the collector
    assert "OTLP -> collector" in proc.stdout
    spans = sum('"resourceSpans"' in line for line in (tmp_path / "demo" / "telemetry.jsonl").open())
    assert spans > 0  # --traces: the collector's file exporter got the spans too
