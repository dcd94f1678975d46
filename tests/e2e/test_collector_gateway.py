"""The gateway collector end to end: collector_config/gateway.yaml + collector_config/profiles/*.yaml.

Real collector processes, a real instrumented app (a subprocess exporting OTLP/gRPC), and a loopback
FAKE Datadog OTLP intake that decodes what the otlp_http exporter sends with the official
opentelemetry-proto messages, as the real intake would.

Cost on 2 shared cores (measured): validate 6 x ~0.1 s; Datadog route ~8 s; file route ~4 s;
Grafana (real Prometheus 2.42 from apt) ~4 s; Jaeger ~4 s; PII through agent + gateway ~3 s; outage
~72 s (66 s of traffic, 60 s of it with the intake down). Whole file ~95 s.
Needs the collector (`make collector`) and, for the Grafana route, `prometheus` on PATH
(`apt-get install -y --no-install-recommends prometheus`); missing ones fail under MODELOTEL_CI=1.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from modelotel import conventions as conv
from modelotel.otlp.json import read_json_lines
from modelotel.sketch import LogSketch

from collector_support import CONFIGS, ROOT, Process, free_port, otelcol, run_collector, wait_http, which
from otlp_receiver import OTLPReceiver

pytestmark = pytest.mark.collector

GATEWAY = CONFIGS / "gateway.yaml"
PROFILES = CONFIGS / "profiles"
SPAN_CALLS = "traces.span.metrics.calls"  # span_metrics connector, default namespace
DELTA, CUMULATIVE = 1, 2  # OTLP AggregationTemporality
STATUS_ERROR = 2  # OTLP Status.StatusCode


# --------------------------------------------------------------------------- the instrumented app

# Four models so every tail-sampling policy has its own population: `fast` is ordinary (kept only by
# the probabilistic policy), `failing` raises (status ERROR), `slow` sleeps past the latency
# threshold, `ood` scores its first feature (> 5 sets ml.ood.is_outlier=true).
APP = r"""
import json, random, sys, time
import modelotel

plan = json.loads(sys.argv[1])
modelotel.configure(service_name=plan["service"], exporter="otlp", traces=True,
                    export_interval=plan.get("interval", 1.0), temporality=plan.get("temporality"))

def ok(x):
    return [0.8, 0.2]

def broken(x):
    raise RuntimeError("model crashed")

def slow(x):
    time.sleep(0.3)
    return [0.6, 0.4]

models = {
    "fast": modelotel.instrument_model(name="fast", version="1")(ok),
    "failing": modelotel.instrument_model(name="failing", version="1")(broken),
    "slow": modelotel.instrument_model(name="slow", version="1")(slow),
    "ood": modelotel.instrument_model(name="ood", version="1", ood=lambda x: float(x[0]), ood_threshold=5.0)(ok),
}
kinds = [k for k in ("fast", "failing", "slow", "ood_in", "ood_out") for _ in range(plan.get(k, 0))]
random.Random(7).shuffle(kinds)
rate = plan.get("rate")
start = time.monotonic()
for i, kind in enumerate(kinds):
    if rate:  # paced, so traffic really flows for len(kinds) / rate seconds
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
    try:
        models["ood" if kind.startswith("ood") else kind]([10.0 if kind == "ood_out" else 1.0, 0.0])
    except RuntimeError:
        pass
modelotel.shutdown()
print(json.dumps({"calls": len(kinds), "elapsed": round(time.monotonic() - start, 2)}))
"""


def app_env(grpc_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELOTEL_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{grpc_port}",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
    )
    return env


def run_app(tmp_path: Path, grpc_port: int, plan: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    script = tmp_path / "app.py"
    script.write_text(APP)
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(plan)],
        cwd=ROOT,
        env=app_env(grpc_port),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def expected_per_model(plan: dict[str, Any]) -> dict[str, int]:
    out = {k: plan.get(k, 0) for k in ("fast", "failing", "slow")}
    out["ood"] = plan.get("ood_in", 0) + plan.get("ood_out", 0)
    return {k: v for k, v in out.items() if v}


# --------------------------------------------------------------------------- the gateway process


class Gateway:
    """gateway.yaml + one profile on ephemeral loopback ports; restartable with the same queue dir."""

    def __init__(self, tmp_path: Path, profile: str, env: dict[str, str] | None = None) -> None:
        self.tmp_path = tmp_path
        self.profile = PROFILES / f"{profile}.yaml"
        self.ports = {k: free_port() for k in ("grpc", "http", "sampling", "health", "metrics")}
        self.queue_dir = tmp_path / "gateway-queue"
        self.env = {
            "MODELOTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.ports['grpc']}",
            "MODELOTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.ports['http']}",
            "MODELOTEL_SAMPLING_GRPC_ENDPOINT": f"127.0.0.1:{self.ports['sampling']}",
            "MODELOTEL_SAMPLING_BACKENDS": f"[127.0.0.1:{self.ports['sampling']}]",
            "MODELOTEL_HEALTH_ENDPOINT": f"127.0.0.1:{self.ports['health']}",
            "MODELOTEL_COLLECTOR_METRICS_PORT": str(self.ports["metrics"]),
            "MODELOTEL_QUEUE_DIR": str(self.queue_dir),
            # file route: one file per signal (metrics are what the evaluator reads)
            "MODELOTEL_FILE_EXPORT_PATH": str(tmp_path / "gateway.jsonl"),
            "MODELOTEL_FILE_EXPORT_TRACES_PATH": str(tmp_path / "gateway-traces.jsonl"),
            "MODELOTEL_FILE_EXPORT_LOGS_PATH": str(tmp_path / "gateway-logs.jsonl"),
            # Test timings: decide and flush within a second, retry at least every 2 s.
            "MODELOTEL_DECISION_WAIT": "1s",
            "MODELOTEL_SPAN_METRICS_INTERVAL": "1s",
            "MODELOTEL_RETRY_MAX_INTERVAL": "2s",
            "MODELOTEL_SLOW_THRESHOLD_MS": "200",
            "MODELOTEL_SAMPLING_PERCENT": "0",
            **(env or {}),
        }
        self.proc: Process | None = None
        self.starts = 0

    @property
    def grpc_port(self) -> int:
        return self.ports["grpc"]

    def start(self) -> Gateway:
        self.starts += 1
        self.proc = Process(
            [otelcol(), "--config", str(GATEWAY), "--config", str(self.profile)],
            self.tmp_path / f"gateway-{self.starts}.log",
            env=self.env,
        )
        try:
            wait_http(f"http://127.0.0.1:{self.ports['health']}/", timeout=60, proc=self.proc.proc)
        except AssertionError:
            self.proc.stop()
            raise AssertionError(f"gateway did not become healthy:\n{self.proc.output()[-4000:]}") from None
        return self

    def stop(self) -> int:
        return self.proc.stop() if self.proc else 0

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.tmp_path.glob("gateway-*.log")))

    def self_metric(self, name: str, **labels: str) -> float:
        """Sum of the collector's own Prometheus metric `name` over series matching `labels`."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['metrics']}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            m = re.match(rf"{re.escape(name)}\{{(.*)\}} (\S+)$", line)
            if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
                total += float(m.group(2))
        return total

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- the fake Datadog intake

_ROUTES = {
    "/v1/metrics": (metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse),
    "/v1/traces": (trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse),
    "/v1/logs": (logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse),
}


class FakeDatadogIntake:
    """OTLP/HTTP protobuf on 127.0.0.1, like https://otlp.datadoghq.com: /v1/{metrics,traces,logs}.

    Requests without the right ``dd-api-key`` get 403 (counted); stop()/start() is an outage of
    the same port.
    """

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.requests: dict[str, list[Any]] = defaultdict(list)
        self.rejected: list[str] = []
        self.cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        intake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                route = _ROUTES.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                if self.headers.get("dd-api-key") != intake.api_key:
                    with intake.cond:
                        intake.rejected.append(f"{self.path} dd-api-key={self.headers.get('dd-api-key')!r}")
                    self.send_error(403, "invalid API key")
                    return
                if self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_error(415)
                    return
                if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                    body = gzip.decompress(body)
                request = route[0].FromString(body)
                with intake.cond:
                    intake.requests[self.path].append(request)
                    intake.cond.notify_all()
                payload = route[1]().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> FakeDatadogIntake:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())  # SO_REUSEADDR is set
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # new connections are now refused: a real outage
            self._server = None

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))
            return True

    @property
    def metrics(self) -> list[Any]:
        return list(self.requests["/v1/metrics"])

    @property
    def traces(self) -> list[Any]:
        return list(self.requests["/v1/traces"])

    def __enter__(self) -> FakeDatadogIntake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- decoding helpers


def pb_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def pb_attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: pb_value(kv.value) for kv in kvs}


def pb_points(requests: list[Any], name: str) -> list[tuple[Any, dict[str, Any]]]:
    """(metric, point) for every data point of `name` in decoded ExportMetricsServiceRequests."""
    out = []
    for request in requests:
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        data = getattr(m, m.WhichOneof("data"))
                        out.extend((m, p) for p in data.data_points)
    return out


def pb_spans(requests: list[Any]) -> list[tuple[dict[str, Any], Any]]:
    return [
        (pb_attrs(rs.resource.attributes), span)
        for request in requests
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]


def delta_counts(requests: list[Any], name: str, field: str = "count") -> dict[str, int]:
    """Sum over all windows of `field`, per ml.model.name (for DELTA points the sum is the total)."""
    totals: Counter[str] = Counter()
    for _, p in pb_points(requests, name):
        totals[pb_attrs(p.attributes).get(conv.MODEL_NAME, "-")] += int(getattr(p, field))
    return dict(totals)


def json_value(v: dict[str, Any]) -> Any:
    return next(iter(v.values())) if v else None


def latest_json_points(path: Path, name: str) -> list[tuple[str, dict[str, Any]]]:
    """(temporality kind + data, point) of the LATEST point of every series of `name` in a JSON-lines file."""
    latest: dict[tuple, tuple[int, dict[str, Any], dict[str, Any]]] = {}
    for _, obj in read_json_lines(path):
        assert obj is not None, f"corrupt line in {path}"
        for rm in obj.get("resourceMetrics", []):
            res = {a["key"]: json_value(a["value"]) for a in rm["resource"].get("attributes", [])}
            for sm in rm.get("scopeMetrics", []):
                for m in sm.get("metrics", []):
                    if m["name"] != name:
                        continue
                    kind = next(k for k in ("exponentialHistogram", "histogram", "sum", "gauge") if k in m)
                    for p in m[kind].get("dataPoints", []):
                        attrs = {a["key"]: json_value(a["value"]) for a in p.get("attributes", [])}
                        key = (res.get("service.instance.id"), tuple(sorted(attrs.items())))
                        t = int(p["timeUnixNano"])
                        if key not in latest or t >= latest[key][0]:
                            latest[key] = (t, {"kind": kind, **m[kind]}, {**p, "_attrs": attrs})
    return [(data, point) for _, data, point in latest.values()]


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# --------------------------------------------------------------------------- 1. every profile validates


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES.glob("*.yaml"))


def test_every_backend_has_a_profile():
    assert {"datadog", "grafana", "jaeger", "file"} <= set(profile_names())


@pytest.mark.parametrize("profile", [None, *profile_names()])
def test_gateway_profile_validates(profile):
    args = [otelcol(), "validate", "--config", str(GATEWAY)]
    if profile:
        args += ["--config", str(PROFILES / f"{profile}.yaml")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOTEL_")}
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_a_profile_naming_an_unknown_exporter_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("service:\n  pipelines:\n    metrics:\n      exporters: [datadog]\n")
    result = subprocess.run(
        [otelcol(), "validate", "--config", str(GATEWAY), "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert 'references exporter "datadog" which is not configured' in result.stderr


# --------------------------------------------------------------------------- 2a. Datadog route


def test_datadog_route_delta_exponential_histograms_and_tail_sampled_spans(tmp_path):
    """App (cumulative) -> gateway (datadog profile) -> fake OTLP intake: DELTA expo histograms whose
    windows add up to the calls made; only error / slow / OOD spans (baseline sampling 0 %); span
    metrics computed from every span, sampled or not."""
    # ~3.5 s at 16 calls/s with a 1 s export interval: several cumulative points, hence several deltas.
    plan = {"service": "dd-route-svc", "fast": 40, "failing": 4, "slow": 3, "ood_in": 5, "ood_out": 4, "rate": 16}
    expected = expected_per_model(plan)  # fast 40, failing 4, slow 3, ood 9
    key = "dd-test-key-" + os.urandom(6).hex()
    with FakeDatadogIntake(key) as intake:
        gw_env = {"DD_API_KEY": key, "MODELOTEL_DATADOG_OTLP_ENDPOINT": intake.endpoint}
        with Gateway(tmp_path, "datadog", gw_env) as gw:
            run_app(tmp_path, gw.grpc_port, plan)

            def complete() -> bool:
                return (
                    delta_counts(intake.metrics, conv.INFERENCE_DURATION) == expected
                    and delta_counts(intake.metrics, SPAN_CALLS, "as_int") == expected
                    and len(pb_spans(intake.traces)) >= 4 + 3 + 4
                )

            intake.wait_for(complete, timeout=30)
            time.sleep(1.5)  # a late duplicate or a late unsampled span would land now
        assert not intake.rejected, intake.rejected

        durations = pb_points(intake.metrics, conv.INFERENCE_DURATION)
        assert durations, "no ml.inference.duration reached the intake:\n" + gw.log()
        for metric, point in durations:
            assert metric.WhichOneof("data") == "exponential_histogram"
            assert metric.exponential_histogram.aggregation_temporality == DELTA
            assert LogSketch.from_otlp_point(point).count == point.count  # buckets consistent after the delta
        assert delta_counts(intake.metrics, conv.INFERENCE_DURATION) == expected
        assert len({p.start_time_unix_nano for _, p in durations}) > 1, "expected several delta windows"
        slow_seconds = sum(p.sum for _, p in durations if pb_attrs(p.attributes)[conv.MODEL_NAME] == "slow")
        assert 3 * 0.3 <= slow_seconds < 3 * 0.3 + 1.0

        # span_metrics counts every span, including the 40 `fast` ones tail sampling dropped.
        calls = pb_points(intake.metrics, SPAN_CALLS)
        assert {m.sum.aggregation_temporality for m, _ in calls} == {DELTA}
        # one collector.instance.id (a UUID per gateway process) keeps replicas' series apart
        assert len({pb_attrs(p.attributes)["collector.instance.id"] for _, p in calls}) == 1
        assert delta_counts(intake.metrics, SPAN_CALLS, "as_int") == expected

        spans = pb_spans(intake.traces)
        by_model = defaultdict(list)
        for resource, span in spans:
            assert resource["service.name"] == "dd-route-svc"
            attrs = pb_attrs(span.attributes)
            assert attrs[conv.MODEL_VERSION] == "1" and conv.PREDICTION_ID in attrs
            by_model[attrs[conv.MODEL_NAME]].append((span, attrs))
        assert {m: len(v) for m, v in by_model.items()} == {"failing": 4, "slow": 3, "ood": 4}
        assert all(span.status.code == STATUS_ERROR for span, _ in by_model["failing"])
        assert all(span.end_time_unix_nano - span.start_time_unix_nano >= 0.3e9 for span, _ in by_model["slow"])
        assert all(attrs[conv.OOD_IS_OUTLIER] is True and attrs[conv.OOD_SCORE] == 10.0 for _, attrs in by_model["ood"])


# --------------------------------------------------------------------------- 2b. file route


def test_file_route_sketches_decode_to_the_calls_made(tmp_path):
    plan = {"service": "file-route-svc", "fast": 30, "failing": 3, "ood_in": 2, "ood_out": 2}
    expected = expected_per_model(plan)
    out, spans_out = tmp_path / "gateway.jsonl", tmp_path / "gateway-traces.jsonl"

    def counts(name: str) -> dict[str, int]:
        if not out.exists():
            return {}
        totals: Counter[str] = Counter()
        for data, point in latest_json_points(out, name):
            sk = LogSketch.from_otlp_point(point) if data["kind"] == "exponentialHistogram" else None
            totals[point["_attrs"].get(conv.MODEL_NAME, "-")] += sk.count if sk else int(point.get("asInt", 0))
        return dict(totals)

    def spans_written() -> int:
        if not spans_out.exists():
            return 0
        return sum(
            len(ss.get("spans", []))
            for _, obj in read_json_lines(spans_out)
            for rs in (obj or {}).get("resourceSpans", [])
            for ss in rs.get("scopeSpans", [])
        )

    with Gateway(tmp_path, "file", {"MODELOTEL_SAMPLING_PERCENT": "100"}) as gw:
        run_app(tmp_path, gw.grpc_port, plan)
        ok = wait_until(
            lambda: (
                counts(conv.INFERENCE_DURATION) == expected
                and counts(SPAN_CALLS) == expected
                and spans_written() >= sum(expected.values())
            ),
            timeout=30,
        )
        assert ok, f"{counts(conv.INFERENCE_DURATION)} / {counts(SPAN_CALLS)} != {expected}\n{gw.log()}"

    points = latest_json_points(out, conv.INFERENCE_DURATION)
    assert {data["aggregationTemporality"] for data, _ in points} == {CUMULATIVE}  # the evaluator reads cumulative
    assert counts(conv.INFERENCE_DURATION) == expected
    assert spans_written() == sum(expected.values())  # 100 %: every call's span, once
    # one file per signal (a file exporter shared by pipelines panics on SIGTERM, tests/e2e/test_gateway_restart.py)
    assert all(obj is not None and "resourceMetrics" in obj for _, obj in read_json_lines(out))
    assert all(obj is not None and "resourceSpans" in obj for _, obj in read_json_lines(spans_out))


# --------------------------------------------------------------------------- grafana / jaeger routes


def prometheus_query(url: str, promql: str) -> float | None:
    """The single value of an instant PromQL query, or None while it has no result."""
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}", timeout=10) as r:
        result = json.load(r)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def scrape_sum(url: str, name: str) -> float:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def test_grafana_profile_routes_to_prometheus_and_tempo(tmp_path):
    """Metrics (app + span metrics, cumulative) by remote write into a real Prometheus, sampled spans
    to Tempo's OTLP/HTTP (an in-process receiver). ~8 s."""
    prom_bin = which("prometheus", "CI: apt-get install -y --no-install-recommends prometheus")
    plan = {"service": "grafana-route-svc", "fast": 20, "failing": 2}
    calls = sum(expected_per_model(plan).values())
    port = free_port()
    args = [
        prom_bin,
        f"--config.file={CONFIGS / 'prometheus.yaml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-remote-write-receiver",
        "--enable-feature=native-histograms",  # the SDK's exponential histograms arrive as native ones
    ]
    prom_url = f"http://127.0.0.1:{port}"
    with Process(args, tmp_path / "prometheus.log", cwd=tmp_path) as prom, OTLPReceiver(http=True) as tempo:
        wait_http(f"{prom_url}/-/ready", timeout=60, proc=prom.proc)
        env = {
            "MODELOTEL_PROM_REMOTE_WRITE_URL": f"{prom_url}/api/v1/write",
            "MODELOTEL_TEMPO_OTLP_ENDPOINT": tempo.http_endpoint,
            "MODELOTEL_SAMPLING_PERCENT": "100",
        }
        with Gateway(tmp_path, "grafana", env) as gw:
            run_app(tmp_path, gw.grpc_port, plan)
            job = '{job="grafana-route-svc"}'
            queries = {
                "inference count": f"sum(histogram_count(ml_inference_duration_seconds{job}))",
                "span-metrics calls": f"sum(traces_span_metrics_calls_total{job})",
            }
            ok = wait_until(
                lambda: (
                    all(prometheus_query(prom_url, q) == calls for q in queries.values())
                    and len(pb_spans(tempo.trace_requests)) >= calls
                ),
                timeout=30,
            )
            got = {k: prometheus_query(prom_url, q) for k, q in queries.items()}
            assert ok, f"{got}, {len(pb_spans(tempo.trace_requests))} spans; expected {calls}\n{gw.log()}"
        assert len(pb_spans(tempo.trace_requests)) == calls


def test_jaeger_profile_routes_spans_and_exposes_span_metrics(tmp_path):
    """Sampled spans over OTLP/gRPC to Jaeger (an in-process receiver); metrics on the Prometheus
    scrape endpoint that Jaeger's Monitor tab reads. ~5 s."""
    plan = {"service": "jaeger-route-svc", "fast": 20, "failing": 2}
    calls = sum(expected_per_model(plan).values())
    scrape = free_port()
    with OTLPReceiver() as jaeger:
        env = {
            "MODELOTEL_JAEGER_OTLP_ENDPOINT": jaeger.endpoint,
            "MODELOTEL_PROMETHEUS_ENDPOINT": f"127.0.0.1:{scrape}",
            "MODELOTEL_SAMPLING_PERCENT": "100",
        }
        with Gateway(tmp_path, "jaeger", env) as gw:
            run_app(tmp_path, gw.grpc_port, plan)
            url = f"http://127.0.0.1:{scrape}/metrics"

            def done() -> bool:
                return (
                    scrape_sum(url, "traces_span_metrics_calls_total") == calls
                    and scrape_sum(url, "ml_inference_duration_seconds_count") == calls
                    and len(pb_spans(jaeger.trace_requests)) >= calls
                )

            assert wait_until(done, timeout=30), gw.log()
            # Jaeger SPM reads these names (milliseconds histogram + calls counter).
            assert scrape_sum(url, "traces_span_metrics_duration_milliseconds_count") == calls
        assert len(pb_spans(jaeger.trace_requests)) == calls


# --------------------------------------------------------------------------- 2c. PII defence in depth

PII = {
    "user.email": "jane.doe@example.com",
    "payment.card": "4111111111111111",
    "payment.card_spaced": "4111 1111 1111 1111",
    "customer.ssn": "123-45-6789",
    "customer.phone": "+14155552671",
    "api_key": "sk-live-9f8e7d6c5b4a",
}


def test_agent_masks_pii_before_the_file_and_the_gateway(tmp_path):
    """A span with PII attribute values -> agent.yaml (redaction) -> its file exporter AND the gateway
    (file route): neither output contains any of the values, while ordinary values survive."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    agent_file, gateway_file = tmp_path / "agent.jsonl", tmp_path / "gateway-traces.jsonl"
    with Gateway(tmp_path, "file", {"MODELOTEL_SAMPLING_PERCENT": "100"}) as gw:
        agent_ports = {k: free_port() for k in ("grpc", "http", "health", "metrics")}
        agent_env = {
            "MODELOTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{agent_ports['grpc']}",
            "MODELOTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{agent_ports['http']}",
            "MODELOTEL_COLLECTOR_METRICS_PORT": str(agent_ports["metrics"]),
            "MODELOTEL_GATEWAY_ENDPOINT": f"127.0.0.1:{gw.grpc_port}",
            "MODELOTEL_EXPORTERS": "[otlp_grpc/gateway, file]",
            "MODELOTEL_FILE_EXPORT_PATH": str(agent_file),
            "MODELOTEL_QUEUE_DIR": str(tmp_path / "agent-queue"),
        }
        with run_collector(CONFIGS / "agent.yaml", agent_env, tmp_path / "agent.log", agent_ports["health"]):
            provider = TracerProvider(
                resource=Resource({"service.name": "pii-svc", "owner.email": "ops-lead@example.net"})
            )
            exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{agent_ports['grpc']}", insecure=True)
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            span = provider.get_tracer("pii-test").start_span(
                "predict",
                attributes={
                    **PII,
                    "payment.card_int": 4111111111111111,
                    conv.MODEL_NAME: "pii-model",
                    conv.PREDICTION_CONFIDENCE: 0.93,
                    "request.epoch_ms": 1717171717171,
                },
            )
            span.add_event("feedback", {"reviewer": "john.roe@example.org"})
            span.end()
            provider.shutdown()

            def has_span(path: Path) -> bool:
                return path.exists() and any(
                    span["name"] == "predict"
                    for _, obj in read_json_lines(path)
                    for rs in (obj or {}).get("resourceSpans", [])
                    for ss in rs.get("scopeSpans", [])
                    for span in ss.get("spans", [])
                )

            assert wait_until(lambda: has_span(agent_file) and has_span(gateway_file), timeout=20), gw.log()

    for path in (agent_file, gateway_file):
        raw = path.read_text()
        leaked = [v for v in [*PII.values(), "john.roe@example.org", "ops-lead@example.net"] if v in raw]
        assert not leaked, f"{path.name} leaks {leaked}"
        assert "4111111111111111" not in raw  # the int attribute too
        # masked, not dropped: the keys stay, ordinary values pass untouched
        assert '"key":"user.email","value":{"stringValue":"****"}' in raw
        assert "0.93" in raw and "1717171717171" in raw and "redaction.masked.count" in raw


# --------------------------------------------------------------------------- 2d. outage


def test_backend_outage_and_gateway_restart_lose_nothing(tmp_path):
    """20 calls/s for 66 s; the Datadog intake is DOWN for 60 s of it, and the gateway is restarted
    (SIGTERM) in the middle of the outage. After the intake returns, every data point and span
    arrives: the persistent queues (file_storage) survive the restart and retries drain them.

    The app exports DELTA here: cumulative_to_delta keeps its state in memory, so a restarted gateway
    must drop the first cumulative point of each series (`initial_value: auto`), which would lose one
    window by design; that conversion itself is covered by the Datadog route test.
    """
    # Traffic outlasts the outage: ~2 s of it before (the route works), 60 s down, a few s after.
    rate, seconds, outage = 20, 66, 60.0
    plan = {"service": "outage-svc", "fast": rate * seconds, "rate": rate, "temporality": "delta"}
    calls = rate * seconds
    key = "dd-outage-key-" + os.urandom(6).hex()
    intake = FakeDatadogIntake(key).start()
    gw = Gateway(
        tmp_path,
        "datadog",
        {"DD_API_KEY": key, "MODELOTEL_DATADOG_OTLP_ENDPOINT": intake.endpoint, "MODELOTEL_SAMPLING_PERCENT": "100"},
    ).start()

    def delivered() -> tuple[int, int]:
        return (
            sum(delta_counts(intake.metrics, conv.INFERENCE_DURATION).values()),
            len({s.span_id for _, s in pb_spans(intake.traces)}),
        )

    script = tmp_path / "app.py"
    script.write_text(APP)
    app_log = open(tmp_path / "app.log", "w")  # noqa: SIM115 - closed in finally
    app = subprocess.Popen(
        [sys.executable, str(script), json.dumps(plan)],
        cwd=ROOT,
        env=app_env(gw.grpc_port),
        stdout=app_log,
        stderr=subprocess.STDOUT,
    )
    measured: dict[str, Any] = {}
    try:
        # Data flows before the outage (proves the route), then the intake goes away.
        assert intake.wait_for(lambda: bool(pb_points(intake.metrics, conv.INFERENCE_DURATION)), 20), gw.log()
        intake.stop()
        down_at = time.monotonic()
        measured["before_outage"] = sum(delta_counts(intake.metrics, conv.INFERENCE_DURATION).values())

        time.sleep(outage / 2)
        measured["queued_before_restart"] = gw.self_metric("otelcol_exporter_queue_size", exporter="otlp_http/datadog")
        restart_at = time.monotonic()
        assert gw.stop() == 0, gw.log()
        queue_files = {p.name: p.stat().st_size for p in gw.queue_dir.iterdir()}
        assert any("otlp_http_datadog" in name for name in queue_files), queue_files
        gw.start()
        measured["restart_s"] = round(time.monotonic() - restart_at, 1)

        time.sleep(max(0.0, down_at + outage - time.monotonic()))
        measured["queued_at_recovery"] = gw.self_metric("otelcol_exporter_queue_size", exporter="otlp_http/datadog")
        assert app.poll() is None, "traffic must still flow during the outage"
        intake.start()
        recovered_at = time.monotonic()

        assert app.wait(timeout=60) == 0, (tmp_path / "app.log").read_text()[-4000:]

        intake.wait_for(lambda: delivered() == (calls, calls), timeout=60)
        measured["drain_s"] = round(time.monotonic() - recovered_at, 1)
        time.sleep(2)  # anything extra (a duplicate) would show up now
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)
        app_log.close()
        gw.stop()
        intake.stop()
    print(f"\noutage measurements: {measured}")
    assert not intake.rejected
    assert measured["queued_before_restart"] > 0 and measured["queued_at_recovery"] > 0, measured
    points, spans = delivered()
    assert points == calls, f"{points} of {calls} inference data points arrived\n{gw.log()}"
    assert spans == calls, f"{spans} of {calls} spans arrived"
    assert len(pb_spans(intake.traces)) == calls, "duplicate spans"
