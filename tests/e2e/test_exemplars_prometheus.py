"""Exemplars into a real Prometheus (the Grafana-stack route): app -> our collector -> remote write -> exemplar API.

Grafana's jump from a latency spike to its trace reads Prometheus' exemplars (``/api/v1/query_exemplars``).
Debian's Prometheus 2.42 runs with the remote-write receiver and ``--enable-feature=native-histograms,
exemplar-storage``; our collector runs ``collector_config/grafana.yaml`` (remote write for metrics, traces to a
file standing in for Tempo). The app (a subprocess, OTLP/gRPC, cumulative, export every 0.5 s) makes one call,
waits past two exports, then four traced calls of 1, 4, 16 and 64 ms, each in its own bucket. Prometheus must then
hold those four exemplars, with the calls' trace and span ids, on ``ml_inference_duration_seconds``, each in a
bucket of the stored native histogram that counts something, and the collector's trace file the four spans.

Why the first call waits: Prometheus 2.42's remote-write handler appends a series' exemplars before its samples, so
the exemplars of a series' very first write find no series and are dropped (its debug log: "unknown HeadSeriesRef
when trying to add exemplar"); docs/collector.md says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request

import pytest

from modelotel.otlp.json import read_json_lines

from collector_support import CONFIGS, ROOT, free_port, run_collector, run_prometheus

pytestmark = pytest.mark.collector

SLEEPS_MS = (1, 4, 16, 64)
DEADLINE_S = 30.0

APP = textwrap.dedent(
    """
    import json, sys, time
    from opentelemetry import trace
    import modelotel

    modelotel.configure(service_name=sys.argv[1], exporter="otlp", export_interval=0.5, traces=True)
    calls = []

    @modelotel.instrument_model(name="ex-prom", version="1")
    def predict(ms):
        ctx = trace.get_current_span().get_span_context()
        calls.append({"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x"), "ms": ms})
        time.sleep(ms / 1000)
        return [0.25, 0.75]

    predict(2)
    time.sleep(1.2)  # the series exists in Prometheus before the exemplars we check arrive
    for ms in json.loads(sys.argv[2]):
        predict(ms)
    time.sleep(1.2)
    ok = modelotel.shutdown()
    print(json.dumps(calls[1:]))
    sys.exit(0 if ok else 3)
    """
)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]


def _spans(path) -> dict[str, dict]:
    """Spans of the collector's trace file by span id (hex)."""
    spans: dict[str, dict] = {}
    if not path.exists():
        return spans
    for _, doc in read_json_lines(path):
        for rs in (doc or {}).get("resourceSpans", []):
            for ss in rs["scopeSpans"]:
                spans.update({s["spanId"]: s for s in ss["spans"]})
    return spans


def test_exemplars_reach_prometheus_exemplar_storage(tmp_path):
    with run_prometheus(tmp_path, features=("native-histograms", "exemplar-storage")) as (prom_url, _prom):
        grpc_port = free_port()
        traces = tmp_path / "traces.jsonl"
        env = {
            "MODELOTEL_PROM_REMOTE_WRITE_URL": f"{prom_url}/api/v1/write",
            "MODELOTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}",
            "MODELOTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
            "MODELOTEL_COLLECTOR_METRICS_PORT": str(free_port()),
            "MODELOTEL_TRACES_EXPORTERS": "[file]",
            "MODELOTEL_LOGS_EXPORTERS": "[debug]",
            "MODELOTEL_FILE_EXPORT_PATH": str(traces),
        }
        with run_collector(CONFIGS / "grafana.yaml", env, tmp_path / "collector.log", free_port()):
            app_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELOTEL_"))}
            app_env.update(
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{grpc_port}",
                OTEL_EXPORTER_OTLP_INSECURE="true",
                OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
                PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "sdk"), app_env.get("PYTHONPATH")) if p),
            )
            service = "ex-prom-e2e"
            run = subprocess.run(
                [sys.executable, "-c", APP, service, json.dumps(SLEEPS_MS)],
                env=app_env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert run.returncode == 0, run.stderr[-3000:]
            calls = {c["span_id"]: c for c in json.loads(run.stdout.strip().splitlines()[-1])}

            sel = f'ml_inference_duration_seconds{{job="{service}", ml_model_name="ex-prom"}}'
            deadline = time.monotonic() + DEADLINE_S  # remote write and the trace file's batch land a moment later
            found: list[dict] = []
            spans: dict[str, dict] = {}
            while time.monotonic() < deadline:
                now = time.time()
                params = urllib.parse.urlencode({"query": sel, "start": now - 600, "end": now + 60})
                data = _get(f"{prom_url}/api/v1/query_exemplars?{params}")
                found = [e for series in data for e in series["exemplars"]]
                spans = _spans(traces)
                if {e["labels"].get("span_id") for e in found} >= set(calls) and set(spans) >= set(calls):
                    break
                time.sleep(0.25)
            (sample,) = _get(f"{prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": sel}))["result"]

    mine = {e["labels"]["span_id"]: e for e in found if e["labels"].get("span_id") in calls}
    assert set(mine) == set(calls), found
    buckets = sample["histogram"][1]["buckets"]  # [boundary rule, lower, upper, count] as strings
    assert int(sample["histogram"][1]["count"]) == 1 + len(SLEEPS_MS)
    for span_id, e in mine.items():
        call = calls[span_id]
        assert e["labels"]["trace_id"] == call["trace_id"]
        value = float(e["value"])
        assert call["ms"] / 1000 <= value < call["ms"] / 1000 + 0.05
        holding = [b for b in buckets if float(b[1]) < value <= float(b[2])]
        assert len(holding) == 1 and float(holding[0][3]) >= 1, (value, buckets)
        span = spans[span_id]  # the span Grafana would open (Tempo's stand-in: the collector's trace file)
        assert span["traceId"] == call["trace_id"] and span["name"] == "predict ex-prom"
