"""Real Prometheus end to end (the Grafana-stack route): app -> our collector -> remote write -> PromQL.

An instrumented app (a subprocess, ``configure(exporter="otlp")``, cumulative temporality) records
20,000 known confidences through ``collector_config/grafana.yaml`` into a real Prometheus (Debian's
2.42 package, our own process, remote-write receiver and native histograms on). PromQL must then
give back the exact count, sum and bucket counts, and quantiles within the bound derived below.

Quantile bound. The SDK exports an exponential histogram at scale 5 and the remote-write exporter
passes it on as a native histogram of schema 5: buckets (b**i, b**(i+1)] with b = 2**(1/32). The
sketch alone (bucket midpoint estimate) is within alpha = (b-1)/(b+1) = 1.08%. Prometheus's
histogram_quantile instead interpolates *inside* the bucket holding rank q*n (linearly in 2.x), so it
can return any point of that bucket: the worst case is one bucket width, (b-1) * lower = 2.19% of the
value (= 2 * 1.08% to first order). Its rank rule (first bucket whose cumulative count >= q*n) puts
the sorted value v_k, k = ceil(q*n) - 1, in that bucket, while numpy's method="lower" quantile is x =
v_j, j = floor(q*(n-1)), and k is j or j+1. Hence, asserted below:
  * the PromQL quantile lies in the scale-5 bucket of v_k (exact, whatever the in-bucket interpolation);
  * |promql - x| <= (b-1) * v_k + (v_k - x)   (relative: 2.19% plus the gap of two adjacent order
    statistics, ~1e-4 here).

Cost: about 8 s wall, 3 s CPU (Prometheus + collector start ~0.6 s, the two app subprocesses ~2.5 s
each, mostly their deliberate sleeps past the export interval, then polling).
Needs `prometheus` on PATH (CI: `apt-get install -y --no-install-recommends prometheus`) and the
collector (`make collector`); a missing one fails under MODELOTEL_CI=1 and skips otherwise.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from modelotel.otlp.json import read_json_lines
from modelotel.sketch import bucket_bounds, bucket_index

from collector_support import CONFIGS, ROOT, Process, free_port, run_collector, run_prometheus, which

pytestmark = pytest.mark.collector

SCALE = 5  # the SDK's default export scale (conventions.DEFAULT_SCALE)
BASE = 2.0 ** (2.0**-SCALE)
N_CALLS, PER_CALL = 200, 100  # each call returns a row of 100 confidences: 20,000 values, 200 spans
DEADLINE_S = 30.0

# Records the confidences in $VALUES (one row per call) in chunks, sleeping past the 0.5 s export
# interval so Prometheus receives several cumulative samples, not only the final one.
APP = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    import modelotel

    values = np.load(os.environ["VALUES"])
    modelotel.configure(service_name=os.environ["SERVICE"], exporter="otlp", export_interval=0.5, traces=True)
    predict = modelotel.instrument_model(name="conf-model", version="3", confidence=lambda out: out)(lambda row: row)
    for chunk in np.array_split(values, 3):
        for row in chunk:
            predict(row)
        time.sleep(0.7)
    sys.exit(0 if modelotel.shutdown() else 3)  # False: the final export failed
    """
)


class Prometheus:
    def __init__(self, url: str, proc: Process) -> None:
        self.url = url
        self.proc = proc

    def get(self, path: str, **params: str) -> dict | list:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}" if params else f"{self.url}{path}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        data = self.get("/api/v1/query", query=promql)
        assert data["resultType"] == "vector", data
        return data["result"]

    def poll(self, promql: str, done, what: str) -> list[dict]:
        """Query until `done(result)` or the deadline; the failure shows the last result."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            result = self.query(promql)
            if done(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: `{promql}` gave {result} after {DEADLINE_S} s")
            time.sleep(0.25)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Prometheus 2.x (remote-write receiver, native histograms) + our collector on grafana.yaml."""
    prom_bin = which("prometheus", "CI: apt-get install -y --no-install-recommends prometheus")
    version = subprocess.run([prom_bin, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"version (\d+)\.(\d+)", version)
    # Native histograms over remote write arrived in 2.40.
    assert m and (int(m[1]), int(m[2])) >= (2, 40), f"Prometheus too old for native histograms: {version}"
    tmp = tmp_path_factory.mktemp("prom")
    with run_prometheus(tmp) as (prom_url, prom):
        grpc_port, metrics_port = free_port(), free_port()
        env = {
            "MODELOTEL_PROM_REMOTE_WRITE_URL": f"{prom_url}/api/v1/write",
            "MODELOTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}",
            "MODELOTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
            "MODELOTEL_COLLECTOR_METRICS_PORT": str(metrics_port),
            # No Tempo/Loki here: traces go to a file we read back, logs to debug.
            "MODELOTEL_TRACES_EXPORTERS": "[file]",
            "MODELOTEL_LOGS_EXPORTERS": "[debug]",
            "MODELOTEL_FILE_EXPORT_PATH": str(tmp / "traces.jsonl"),
        }
        with run_collector(CONFIGS / "grafana.yaml", env, tmp / "collector.log", free_port()) as collector:
            yield {
                "prom": Prometheus(prom_url, prom),
                "collector": collector,
                "otlp": f"http://127.0.0.1:{grpc_port}",
                "self_metrics": f"http://127.0.0.1:{metrics_port}/metrics",
                "traces": tmp / "traces.jsonl",
            }


def run_app(stack, tmp_path: Path, service: str, values: np.ndarray, **env: str) -> None:
    np.save(tmp_path / "values.npy", values)
    proc = subprocess.run(
        [sys.executable, "-c", APP],
        cwd=ROOT,
        env={
            **os.environ,
            "VALUES": str(tmp_path / "values.npy"),
            "SERVICE": service,
            "OTEL_EXPORTER_OTLP_ENDPOINT": stack["otlp"],
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            # Pinned so an outer environment cannot change what the assertions assume.
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "MODELOTEL_SCALE": str(SCALE),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def failed_translations(stack) -> float:
    """The exporter's self-metric counting batches it could not fully translate (0 before the first)."""
    with urllib.request.urlopen(stack["self_metrics"], timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("otelcol_exporter_prometheusremotewrite_failed_translations")
    )


def test_native_histogram_quantiles_count_and_buckets(stack, tmp_path):
    prom: Prometheus = stack["prom"]
    values = np.random.default_rng(20240611).beta(2.5, 4.0, size=(N_CALLS, PER_CALL))
    flat = np.sort(values.ravel())
    n = flat.size
    run_app(stack, tmp_path, "prom-e2e", values, OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="cumulative")

    sel = '{job="prom-e2e", ml_model_name="conf-model", ml_model_version="3"}'
    # The final cumulative sample carries every value; earlier ones carry fewer.
    counted = prom.poll(
        f"histogram_count(ml_prediction_confidence{sel})",
        lambda r: len(r) == 1 and float(r[0]["value"][1]) == n,
        "histogram_count of the confidence native histogram",
    )
    instance = counted[0]["metric"]["instance"]
    assert re.fullmatch(r"[0-9a-f-]{36}", instance), counted  # service.instance.id -> instance

    # Several cumulative samples arrived (one per export), growing to n: the series is a proper counter.
    data = prom.get("/api/v1/query", query=f"ml_prediction_confidence{sel}[5m]")
    counts = [int(h[1]["count"]) for h in data["result"][0]["histograms"]]
    assert len(counts) >= 2 and counts == sorted(counts) and counts[-1] == n, counts

    # Names as the remote-write exporter translates them (UnderscoreEscapingWithSuffixes).
    names = set(prom.get("/api/v1/label/__name__/values"))
    assert {"ml_prediction_confidence", "ml_inference_duration_seconds", "target_info"} <= names, names
    assert not any(name.startswith("ml_prediction_confidence_") for name in names), names  # no classic series

    # Bucket for bucket, what Prometheus stored is the histogram of our values at schema 5.
    raw = prom.query(f"ml_prediction_confidence{sel}")
    assert len(raw) == 1 and "histogram" in raw[0], raw
    hist = raw[0]["histogram"][1]
    assert int(hist["count"]) == n
    assert math.isclose(float(hist["sum"]), float(flat.sum()), rel_tol=1e-9)
    stored = {(float(lo), float(hi)): int(float(c)) for _, lo, hi, c in hist["buckets"] if float(c) > 0}
    expected: dict[int, int] = {}
    for v in flat:
        i = bucket_index(float(v), SCALE)
        expected[i] = expected.get(i, 0) + 1
    assert len(stored) == len(expected)
    for ((lo, hi), got), (i, want) in zip(sorted(stored.items()), sorted(expected.items()), strict=True):
        want_lo, want_hi = bucket_bounds(i, SCALE)
        assert math.isclose(lo, want_lo, rel_tol=1e-12) and math.isclose(hi, want_hi, rel_tol=1e-12), (lo, hi, i)
        assert got == want, (lo, hi, got, want)

    measured = []
    for q in (0.5, 0.9, 0.99):
        result = prom.query(f"histogram_quantile({q}, ml_prediction_confidence{sel})")
        assert len(result) == 1, result
        got = float(result[0]["value"][1])
        exact = float(np.quantile(flat, q, method="lower"))
        v_k = float(flat[math.ceil(q * n) - 1])  # the value Prometheus's rank rule lands on
        lo, hi = bucket_bounds(bucket_index(v_k, SCALE), SCALE)
        assert lo * (1 - 1e-12) <= got <= hi * (1 + 1e-12), (q, got, lo, hi)
        bound = (BASE - 1) * v_k + (v_k - exact)
        assert abs(got - exact) <= bound, (q, got, exact, bound)
        measured.append(f"p{q * 100:g}: promql {got:.6f} numpy {exact:.6f} err {abs(got - exact) / exact:.3%}")
    print(f"\n{n} confidences; bound {(BASE - 1):.2%} + order-statistic gap; " + "; ".join(measured))

    # Latency histogram with its model labels: one observation per call.
    durations = prom.query(f"histogram_count(ml_inference_duration_seconds{sel})")
    assert [float(d["value"][1]) for d in durations] == [N_CALLS], durations
    assert durations[0]["metric"]["ml_deployment_role"] == "primary"

    # Resource attributes live on target_info; the standard join brings them to any series.
    joined = prom.query(
        f"histogram_count(ml_prediction_confidence{sel}) * on (job, instance) group_left(telemetry_sdk_language) "
        "target_info"
    )
    assert len(joined) == 1 and float(joined[0]["value"][1]) == n, joined
    assert joined[0]["metric"]["telemetry_sdk_language"] == "python"
    assert joined[0]["metric"]["instance"] == instance

    # Traces took the env-selected route (file here, Tempo in production): one span per call.
    deadline = time.monotonic() + DEADLINE_S
    while True:
        spans = [
            span
            for _, obj in read_json_lines(stack["traces"])
            if obj
            for rs in obj.get("resourceSpans", [])
            if any(a["value"].get("stringValue") == "prom-e2e" for a in rs["resource"].get("attributes", []))
            for ss in rs.get("scopeSpans", [])
            for span in ss.get("spans", [])
        ]
        if len(spans) >= N_CALLS or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert len(spans) == N_CALLS
    assert {s["name"] for s in spans} == {"predict conf-model"}


def test_delta_temporality_is_dropped_by_remote_write(stack, tmp_path):
    """Why grafana.yaml requires cumulative: delta histograms never reach Prometheus, only a counter says so."""
    prom: Prometheus = stack["prom"]
    before = failed_translations(stack)
    values = np.random.default_rng(5).beta(2.5, 4.0, size=(20, 10))
    run_app(stack, tmp_path, "prom-e2e-delta", values, OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="delta")
    # target_info is built from the resource, so it arrives: proof the batch went through the exporter.
    prom.poll('target_info{job="prom-e2e-delta"}', lambda r: len(r) == 1, "target_info of the delta app")
    deadline = time.monotonic() + DEADLINE_S
    while failed_translations(stack) <= before and time.monotonic() < deadline:
        time.sleep(0.25)
    assert failed_translations(stack) > before
    assert prom.query('{job="prom-e2e-delta", __name__=~"ml_.*"}') == []
    assert "invalid temporality" not in stack["collector"].output()  # dropped silently (debug log only)
