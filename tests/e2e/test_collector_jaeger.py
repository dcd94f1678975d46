"""Real Jaeger v2 end to end: instrumented app -> OUR agent collector (agent.yaml) -> Jaeger -> its HTTP API.

Three real processes on loopback ephemeral ports: Jaeger v2 (collector_config/jaeger.yaml, in-memory
storage), the modelotel collector with collector_config/agent.yaml forwarding OTLP/gRPC to Jaeger,
and a small app (subprocess) whose @instrument_model function runs N times inside a parent span.
The spans are then read back from Jaeger's query API (/api/traces), as a user would see them.

Binaries: $MODELOTEL_JAEGER (set by `make test`) or collector_config/build_jaeger.sh, and the
collector from collector_support.otelcol(). Missing -> FAIL under MODELOTEL_CI=1, skip otherwise.
Cost: ~3-5 s with both binaries built (process start-ups, the app's import and its flush dominate).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
import uuid

from modelotel import conventions as conv
from modelotel.privacy import FeatureHasher

from collector_support import (
    CONFIGS,
    ROOT,
    Process,
    free_port,
    otelcol,
    require_binary,
    run_collector,
    wait_http,
)

N_CALLS = 24  # successful predictions; one more call fails on purpose
N_DISTINCT = 4  # distinct feature vectors among them (call i uses vector i % N_DISTINCT)
MODEL, VERSION = "jaeger-e2e-model", "3.1.4"
HASH_KEY = "jaeger-e2e-key"
# Raw feature values chosen to be unmistakable in any JSON the backend returns.
BASE, OTHER = 7341.918273, 55512.771
FEATURES = [[BASE + k, OTHER, 0.5] for k in range(N_DISTINCT)]
EMAIL = "jane.roe@example.com"  # on the parent span: the agent's redaction processor must mask it

APP = textwrap.dedent(
    """
    import json, sys
    from opentelemetry import trace
    import modelotel

    service, model, version, email = sys.argv[1:5]
    features = json.loads(sys.argv[5])
    n_calls = int(sys.argv[6])
    modelotel.configure(service_name=service, exporter="otlp", traces="span", export_interval=3600)

    @modelotel.instrument_model(name=model, version=version)
    def predict(x):
        if x is None:
            raise ValueError("no features given")
        return [0.25, 0.75]

    tracer = trace.get_tracer("jaeger-e2e-app")
    with tracer.start_as_current_span("handle-batch") as parent:
        parent.set_attribute("user.email", email)
        for i in range(n_calls):
            predict(features[i % len(features)])
        try:
            predict(None)
        except ValueError:
            pass
        ctx = parent.get_span_context()
    modelotel.shutdown()  # flushes spans (and metrics) to the agent
    print(json.dumps({"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}))
    """
)


def jaeger() -> str:
    """Jaeger v2: $MODELOTEL_JAEGER (set by `make test`) or a collector_config/build_jaeger.sh build."""
    path = os.environ.get("MODELOTEL_JAEGER")
    if not path:
        try:
            out = subprocess.run(
                ["bash", str(CONFIGS / "build_jaeger.sh")], capture_output=True, text=True, timeout=1800, check=True
            ).stdout.splitlines()
            path = out[-1].strip() if out else None
        except (subprocess.SubprocessError, OSError):
            path = None
    return require_binary(path, "Jaeger v2", "run `bash collector_config/build_jaeger.sh`")


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def _tags(span: dict) -> dict:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def _poll_trace(query: str, service: str, want_spans: int, timeout: float, procs: list[Process]) -> dict:
    """Poll /api/traces until the service's trace has `want_spans` spans (the agent batches for 1 s)."""
    url = f"http://{query}/api/traces?" + urllib.parse.urlencode({"service": service, "limit": 20, "lookback": "1h"})
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        for p in procs:
            assert p.proc.poll() is None, f"{p.log.name} exited early:\n{p.output()[-3000:]}"
        try:
            body = _get_json(url)
            last = body
            traces = body.get("data") or []
            if traces and sum(len(t["spans"]) for t in traces) >= want_spans:
                time.sleep(1.5)  # let a late batch land: the count assertions must see everything
                return _get_json(url)
        except Exception as exc:  # a refused/slow request is retried until the deadline
            last = exc
        time.sleep(0.25)
    raise AssertionError(f"Jaeger had no complete trace for {service} within {timeout} s; last answer: {last}")


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of Prometheus samples `name` (with or without _total) whose labels include `labels`."""
    total, found = 0.0, False
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) not in (name, name + "_total"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
            found = True
    assert found, f"no {name}{labels} sample in:\n{text[:3000]}"
    return total


def test_sdk_spans_reach_jaeger_through_the_agent(tmp_path):
    jaeger_bin = jaeger()  # resolve both binaries first: skip/fail before anything starts
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
    agent_env = {
        "MODELOTEL_GATEWAY_ENDPOINT": f"127.0.0.1:{ports['j_grpc']}",
        "MODELOTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports['a_grpc']}",
        "MODELOTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports['a_http']}",
        "MODELOTEL_QUEUE_DIR": str(tmp_path / "queue"),
        "MODELOTEL_COLLECTOR_METRICS_PORT": str(ports["a_metrics"]),
        "MODELOTEL_EXPORTERS": "[otlp_grpc/gateway]",
    }
    service = f"jaeger-e2e-{uuid.uuid4().hex[:8]}"
    want_spans = N_CALLS + 2  # parent + N_CALLS predictions + the failing one

    with Process([jaeger_bin, "--config", str(CONFIGS / "jaeger.yaml")], tmp_path / "jaeger.log", env=jaeger_env) as jg:
        try:
            wait_http(f"http://127.0.0.1:{ports['j_health']}/status", timeout=30, proc=jg.proc)
        except AssertionError:
            raise AssertionError(f"Jaeger did not become healthy:\n{jg.output()[-4000:]}") from None
        with run_collector(CONFIGS / "agent.yaml", agent_env, tmp_path / "agent.log", ports["a_health"]) as agent:
            app = tmp_path / "app.py"
            app.write_text(APP)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELOTEL_"))}
            env.update(
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{ports['a_grpc']}",
                OTEL_EXPORTER_OTLP_INSECURE="true",
                OTEL_TRACES_EXPORTER="otlp",
                MODELOTEL_TRACES="span",
                MODELOTEL_HASH_KEY=HASH_KEY,
                PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "sdk"), env.get("PYTHONPATH")) if p),
            )
            run = subprocess.run(
                [sys.executable, str(app), service, MODEL, VERSION, EMAIL, json.dumps(FEATURES), str(N_CALLS)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert run.returncode == 0, run.stderr[-3000:]
            ids = json.loads(run.stdout.strip().splitlines()[-1])

            body = _poll_trace(query, service, want_spans, timeout=30, procs=[jg, agent])
            jaeger_metrics = _get_text(f"http://127.0.0.1:{ports['j_metrics']}/metrics")
            agent_metrics = _get_text(f"http://127.0.0.1:{ports['a_metrics']}/metrics")
            agent_log = agent.output()

    # One trace, the app's, with every span exactly once.
    traces = body["data"]
    assert len(traces) == 1, [t["traceID"] for t in traces]
    trace = traces[0]
    assert int(trace["traceID"], 16) == int(ids["trace_id"], 16)
    spans = trace["spans"]
    assert len(spans) == want_spans, sorted(s["operationName"] for s in spans)
    assert len({s["spanID"] for s in spans}) == want_spans
    assert all(int(s["traceID"], 16) == int(ids["trace_id"], 16) for s in spans)
    assert {p["serviceName"] for p in trace["processes"].values()} == {service}

    # Parent/child: the app's span is the root, every prediction span is its CHILD_OF, inside its time.
    (parent,) = [s for s in spans if s["operationName"] == "handle-batch"]
    assert int(parent["spanID"], 16) == int(ids["span_id"], 16)
    assert not parent.get("references")
    children = [s for s in spans if s is not parent]
    assert {s["operationName"] for s in children} == {f"predict {MODEL}"}
    for s in children:
        refs = s["references"]
        assert [(r["refType"], int(r["spanID"], 16)) for r in refs] == [("CHILD_OF", int(parent["spanID"], 16))]
        assert parent["startTime"] <= s["startTime"]
        assert s["startTime"] + s["duration"] <= parent["startTime"] + parent["duration"]

    # ML attributes on every prediction span; hashes are the keyed HMAC of the features sent.
    tags = [_tags(s) for s in children]
    for t in tags:
        assert t[conv.MODEL_NAME] == MODEL and t[conv.MODEL_VERSION] == VERSION
        assert re.fullmatch(r"[0-9a-f]{32}", t[conv.PREDICTION_ID]), t[conv.PREDICTION_ID]
        assert not any(k.startswith(conv.FEATURE_PREFIX) for k in t), t  # no raw-feature attributes
    assert len({t[conv.PREDICTION_ID] for t in tags}) == want_spans - 1
    ok = [t for t in tags if not t.get("error")]
    failed = [s for s, t in zip(children, tags, strict=True) if t.get("error")]
    assert len(ok) == N_CALLS and len(failed) == 1
    hasher = FeatureHasher(HASH_KEY)
    assert sorted(t[conv.FEATURES_HASH] for t in ok) == sorted(
        hasher.hash(FEATURES[i % N_DISTINCT]) for i in range(N_CALLS)
    )
    assert len({t[conv.FEATURES_HASH] for t in ok}) == N_DISTINCT
    assert conv.FEATURES_HASH not in _tags(failed[0])  # None features: nothing to hash
    events = [{f["key"]: f["value"] for f in log["fields"]} for log in failed[0]["logs"]]
    assert any(e.get("event") == "exception" and e.get("exception.type") == "ValueError" for e in events), events

    # Privacy: no raw feature value anywhere in what Jaeger serves; the agent masked the e-mail.
    text = json.dumps(body)
    for value in {v for vec in FEATURES for v in vec if v != 0.5}:
        assert repr(value) not in text and f"{value:.3f}" not in text, value
    assert EMAIL not in text
    assert _tags(parent)["user.email"] == "****"

    # Counts agree at every hop: the agent sent them all, Jaeger's receiver accepted them all.
    assert _metric(agent_metrics, "otelcol_exporter_sent_spans", exporter="otlp_grpc/gateway") == want_spans
    assert _metric(jaeger_metrics, "otelcol_receiver_accepted_spans", receiver="otlp") == want_spans
    assert "Exporting failed" not in agent_log, agent_log[-3000:]
