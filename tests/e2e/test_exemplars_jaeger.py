"""Exemplars end to end: a traced prediction's trace id is an exemplar on its latency bucket, survives OUR agent
collector (its file exporter writes it), and the span it names exists in the real Jaeger.

Three real processes on loopback ports, as tests/e2e/test_collector_jaeger.py: Jaeger v2 (in-memory storage), the
modelotel collector with collector_config/agent.yaml exporting every pipeline to Jaeger's OTLP/gRPC and to its
file exporter, and an app (subprocess) that exports OTLP/gRPC (protobuf, the SDK's encoder) to the agent. The
model sleeps 1, 4, 16 and 64 ms on successive calls, so each call lands in its own bucket at any scale >= 0 and
each must have its own exemplar.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid

from test_collector_jaeger import jaeger

from modelotel import conventions as conv
from modelotel.sketch import bucket_index

from collector_support import CONFIGS, ROOT, Process, free_port, otelcol, run_collector, wait_http

MODEL, VERSION = "exemplar-e2e-model", "1.0"
SLEEPS_MS = (1, 4, 16, 64)

APP = textwrap.dedent(
    """
    import json, sys, time
    from opentelemetry import trace
    import modelotel

    service, model, version = sys.argv[1:4]
    sleeps = json.loads(sys.argv[4])
    modelotel.configure(service_name=service, exporter="otlp", traces="span", export_interval=3600)
    calls = []

    @modelotel.instrument_model(name=model, version=version)
    def predict(ms):
        ctx = trace.get_current_span().get_span_context()  # the prediction's own span
        calls.append({"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x"), "ms": ms})
        time.sleep(ms / 1000)
        return [0.25, 0.75]

    for ms in sleeps:
        predict(ms)
    modelotel.shutdown()  # flushes metrics and spans to the agent
    print(json.dumps(calls))
    """
)


def _jaeger_trace(query: str, trace_id: str) -> list[dict]:
    """The spans Jaeger's query API holds for one trace (empty while it has none)."""
    try:
        with urllib.request.urlopen(f"http://{query}/api/traces/{trace_id}", timeout=5) as resp:
            data = json.load(resp).get("data") or []
    except OSError:  # 404 until the trace arrives (HTTPError is an OSError)
        return []
    return [s for t in data for s in t["spans"]]


def _duration_points(path) -> list[dict]:
    points = []
    for line in path.read_text().splitlines():
        doc = json.loads(line)
        for rm in doc.get("resourceMetrics", []):
            for sm in rm["scopeMetrics"]:
                for m in sm["metrics"]:
                    if m["name"] == conv.INFERENCE_DURATION:
                        points.extend(m["exponentialHistogram"]["dataPoints"])
    return points


def test_exemplar_trace_ids_survive_the_collector_and_name_spans_in_jaeger(tmp_path):
    jaeger_bin = jaeger()
    otelcol()

    names = ("j_grpc", "j_http", "j_query", "j_query_grpc", "j_health", "j_metrics", "a_grpc", "a_http", "a_health")
    ports = {k: free_port() for k in (*names, "a_metrics")}
    query = f"127.0.0.1:{ports['j_query']}"
    jaeger_env = {
        "MODELOTEL_JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports['j_grpc']}",
        "MODELOTEL_JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports['j_http']}",
        "MODELOTEL_JAEGER_QUERY_HTTP_ENDPOINT": query,
        "MODELOTEL_JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{ports['j_query_grpc']}",
        "MODELOTEL_JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{ports['j_health']}",
        "MODELOTEL_JAEGER_METRICS_PORT": str(ports["j_metrics"]),
    }
    out_file = tmp_path / "agent-out.jsonl"
    agent_env = {
        "MODELOTEL_GATEWAY_ENDPOINT": f"127.0.0.1:{ports['j_grpc']}",
        "MODELOTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports['a_grpc']}",
        "MODELOTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports['a_http']}",
        "MODELOTEL_QUEUE_DIR": str(tmp_path / "queue"),
        "MODELOTEL_COLLECTOR_METRICS_PORT": str(ports["a_metrics"]),
        "MODELOTEL_EXPORTERS": "[otlp_grpc/gateway, file]",
        "MODELOTEL_FILE_EXPORT_PATH": str(out_file),
    }
    service = f"exemplar-e2e-{uuid.uuid4().hex[:8]}"

    with Process([jaeger_bin, "--config", str(CONFIGS / "jaeger.yaml")], tmp_path / "jaeger.log", env=jaeger_env) as jg:
        wait_http(f"http://127.0.0.1:{ports['j_health']}/status", timeout=30, proc=jg.proc)
        with run_collector(CONFIGS / "agent.yaml", agent_env, tmp_path / "agent.log", ports["a_health"]) as agent:
            app = tmp_path / "app.py"
            app.write_text(APP)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELOTEL_"))}
            env.update(
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{ports['a_grpc']}",
                OTEL_EXPORTER_OTLP_INSECURE="true",
                OTEL_TRACES_EXPORTER="otlp",
                PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "sdk"), env.get("PYTHONPATH")) if p),
            )
            run = subprocess.run(
                [sys.executable, str(app), service, MODEL, VERSION, json.dumps(SLEEPS_MS)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert run.returncode == 0, run.stderr[-3000:]
            calls = json.loads(run.stdout.strip().splitlines()[-1])
            deadline = time.monotonic() + 30  # the agent batches; Jaeger stores a moment later
            spans: dict[str, list[dict]] = {}
            points: list[dict] = []
            while time.monotonic() < deadline:
                assert jg.proc.poll() is None and agent.proc.poll() is None, agent.output()[-3000:]
                spans = {c["trace_id"]: _jaeger_trace(query, c["trace_id"]) for c in calls}
                points = _duration_points(out_file) if out_file.exists() else []
                if all(spans.values()) and points:
                    break
                time.sleep(0.25)

    # The file exporter's point: every call counted, one exemplar per call, each in the bucket holding its value.
    (point,) = [p for p in points if int(p["count"]) > 0]
    assert int(point["count"]) == len(SLEEPS_MS)
    exemplars = point["exemplars"]
    assert len(exemplars) == len(SLEEPS_MS)
    by_span = {c["span_id"]: c for c in calls}
    scale, offset = point["scale"], point["positive"].get("offset", 0)
    counts = [int(c) for c in point["positive"]["bucketCounts"]]
    for e in exemplars:
        call = by_span[e["spanId"]]  # lowercase hex ids, as OTLP JSON writes them
        assert e["traceId"] == call["trace_id"]
        assert call["ms"] / 1000 <= e["asDouble"] < call["ms"] / 1000 + 0.05  # slept that long, on a busy machine
        j = bucket_index(e["asDouble"], scale) - offset
        assert 0 <= j < len(counts) and counts[j] >= 1, (e, point)
        assert int(e["timeUnixNano"]) > 0
    assert {e["spanId"] for e in exemplars} == set(by_span)

    # Each exemplar's span is in Jaeger: the trace it names holds a span with that id, the prediction's.
    for e in exemplars:
        (span,) = [s for s in spans[e["traceId"]] if s["spanID"] == e["spanId"]]
        assert span["operationName"] == f"predict {MODEL}"
        jaeger_s = span["duration"] / 1e6  # microseconds
        assert abs(jaeger_s - e["asDouble"]) < 0.002, (jaeger_s, e)
