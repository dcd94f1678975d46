"""Foreign telemetry end to end: apps instrumented ONLY with the official OpenTelemetry instrumentations, through
our real collector's file route, judged by `modelotel evaluate --format json`, against the client's own truth.

The apps (tests/apps/official_*_app.py) contain no telemetry code. They run as real servers on 127.0.0.1 under
`opentelemetry-instrument` (opentelemetry-distro: the SDK's OTLP/gRPC exporters, default explicit-bucket
histograms, default cumulative temporality, OTEL_METRIC_EXPORT_INTERVAL=1000), with modelotel's own
`opentelemetry_instrumentor` entry points disabled (modelotel registers some: without
OTEL_PYTHON_DISABLED_INSTRUMENTATIONS they would add modelotel's middleware too):

* FastAPI on uvicorn, Flask on werkzeug (threaded), each in the default (old) HTTP conventions
  (`http.server.duration`, ms, `http.status_code`, `http.target`) and with OTEL_SEMCONV_STABILITY_OPT_IN=http
  (`http.server.request.duration`, s, `http.response.status_code`, `http.route`, `error.type` on 5xx);
* a grpcio server, default and OTEL_SEMCONV_STABILITY_OPT_IN=rpc. opentelemetry-instrumentation-grpc records
  no metrics at all (spans only; its semconv opt-in knows http, database and gen_ai, not rpc), so gRPC SLOs are
  judged on the span metrics our gateway's span_metrics connector derives from the server spans
  (`traces.span.metrics.duration`, ms, `status.code`, `span.name`, `span.kind`). The shipped gateway keeps only
  the connector's default dimensions plus `ml.model.*`; this suite adds `rpc.grpc.status_code` (one extra
  `--config` file, as a user would) so an SLO can select gRPC status codes. The instrumentation sets the server
  span's status to ERROR exactly for the semconv server-error codes; but a handler that raises (the client gets
  UNKNOWN) leaves rpc.grpc.status_code = 0 and the status UNSET, an error invisible in its telemetry, so the
  workload ends calls only through `context.abort` / `set_code`.

The collector is `collector_config/gateway.yaml` + `profiles/file.yaml` (the file route: OTLP JSON lines, one file
per signal; the evaluation reads the metrics and the sampled spans' files together). Every app is stopped with
SIGTERM right after its last response, so what arrives after the last periodic export comes from the shutdown flush.
Finding (`test_sigterm_flush`): the SDK does NOT flush on SIGTERM by itself in any of these servers. uvicorn shuts
down gracefully and then re-raises SIGTERM with the default handler; werkzeug and grpc install no handler at all;
either way the interpreter dies of the signal before its exit handlers (the SDK's provider shutdown) run, and
everything recorded since the last export is lost. The apps therefore flush the documented ways, enabled by
APP_FLUSH_ON_SIGTERM=1: FastAPI shuts the global tracer and meter providers down in its lifespan shutdown; Flask and
gRPC turn SIGTERM into sys.exit(0), so the SDK's atexit shutdown runs.

Ground truth is the client's: every request's designed route/method, measured duration and received status.
The workload is built so the truth is unambiguous: designed sleeps of 30 / 130 / 300 ms, far from the
thresholds 100 / 200 / 250 ms, and the harness checks that each request is either measured by the client at
or under a threshold (so the server measured it under too) or designed to sleep over it. Assertions:

* the telemetry itself (decoded here, independently of modelotel): counts per status code equal the client's,
  bucket counts at boundary thresholds equal the client's classification (the plumbing: nothing lost, nothing
  duplicated);
* per SLO: events == requests; where the threshold is a bucket boundary of the metric's explicit buckets
  (100 ms and 250 ms for the HTTP buckets; 100 ms and 200 ms for the span-metrics buckets) good == the client's
  count exactly, elsewhere the client's SLI within [sli_lower, sli_upper]; error_ratio == server errors / total
  per the semantic conventions (HTTP: 5xx; gRPC server: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL,
  UNAVAILABLE, DATA_LOSS, per semantic-conventions docs/rpc/grpc.md); ratio SLIs selecting those codes (by
  equality, set membership `{in: [...]}` and regex `{regex: ...}`); p95 time-slice SLIs per route.

Specs are grouped in three files per app run (plain selectors and SLI kinds / percentile / set and regex
selectors), each evaluated by its own `modelotel evaluate`, so a spec the evaluator refuses fails its own
tests, not the others. Every expected value is computed from the client's records.

Cost: about 35 s on 2 shared cores (collector start ~1 s; six app runs of ~3-5 s each: start ~1 s, workload
~1 s, shutdown, collector pipeline ~2 s; three evaluations per run in parallel, ~0.5 s; the SIGTERM test ~10 s).
`summary.json` in the test's temporary directory lists every run's client timings, expected values and answers.
Needs the collector (`make collector`); without it the tests fail under MODELOTEL_CI=1 and skip otherwise.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.metadata
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from collector_support import CONFIGS, ROOT, Process, free_port, otelcol, wait_for, wait_http

pytestmark = pytest.mark.collector

BIN = Path(sys.executable).parent
APPS = ROOT / "tests" / "apps"

FAST_MS, MEDIUM_MS, SLOW_MS = 30, 130, 300
THRESHOLDS_MS = (100, 200, 250)
CONCURRENCY = 8
DATA_DEADLINE_S = 40.0

# OpenTelemetry SDK defaults (explicit-bucket aggregation) and the HTTP semconv's advised buckets in seconds,
# and the span_metrics connector's default buckets (ms): asserted against the data in test_metric_inventory.
OTEL_DEFAULT_BOUNDS = (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000)
HTTP_SECONDS_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
SPAN_METRICS_BOUNDS = (2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10000, 15000)

# HTTP: (path, designed sleep ms, requests). 4xx are the client's errors, not the server's.
HTTP_PLAN = (
    ("/fast", FAST_MS, 40),
    ("/medium", MEDIUM_MS, 10),
    ("/slow", SLOW_MS, 10),
    ("/boom", FAST_MS, 4),  # the handler raises -> 500
    ("/fail", FAST_MS, 4),  # the handler returns 500
    ("/unavailable", FAST_MS, 3),  # 503
    ("/bad", FAST_MS, 4),  # 400
    ("/missing", 0, 5),  # 404 from the router
)
# gRPC: (method, status code the handler ends with, designed sleep ms, calls)
GRPC_PLAN = (
    ("Get", "OK", FAST_MS, 30),
    ("Get", "INTERNAL", FAST_MS, 5),
    ("Get", "UNAVAILABLE", FAST_MS, 4),
    ("Get", "NOT_FOUND", FAST_MS, 5),
    ("Get", "INVALID_ARGUMENT", FAST_MS, 4),
    ("Report", "OK", MEDIUM_MS, 8),
    ("Search", "OK", SLOW_MS, 8),
)
# semantic-conventions docs/rpc/grpc.md, server span: rpc.response.status_code values that SHOULD be errors.
GRPC_SERVER_ERRORS = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)

# The span_metrics dimensions of collector_config/gateway.yaml plus rpc.grpc.status_code (lists are replaced).
SPAN_METRICS_OVERRIDE = """\
connectors:
  span_metrics:
    dimensions:
      - name: ml.model.name
      - name: ml.model.version
      - name: rpc.grpc.status_code
"""


def modelotel_instrumentors() -> list[str]:
    """modelotel's own opentelemetry_instrumentor entry points: disabled, so only the official ones run."""
    return sorted(
        ep.name
        for ep in importlib.metadata.entry_points(group="opentelemetry_instrumentor")
        if ep.value.startswith("modelotel")
    )


# --------------------------------------------------------------------------- the app runs


@dataclasses.dataclass(frozen=True)
class Run:
    app: str  # fastapi | flask | grpc
    mode: str  # default | http | rpc (OTEL_SEMCONV_STABILITY_OPT_IN)

    @property
    def id(self) -> str:
        return f"{self.app}-{self.mode}"

    @property
    def service(self) -> str:
        return f"foreign-{self.id}"

    @property
    def http(self) -> bool:
        return self.app != "grpc"

    @property
    def stable(self) -> bool:
        return self.mode == "http"

    # What a user writes: the duration metric, its unit, and the attributes that carry status and route.
    @property
    def metric(self) -> str:
        if not self.http:
            return "traces.span.metrics.duration"
        return "http.server.request.duration" if self.stable else "http.server.duration"

    @property
    def unit_ms(self) -> float:  # milliseconds per unit of the metric
        return 1000.0 if self.stable else 1.0

    @property
    def status_key(self) -> str:
        if not self.http:
            return "rpc.grpc.status_code"
        return "http.response.status_code" if self.stable else "http.status_code"

    @property
    def route_key(self) -> str:
        if not self.http:
            return "span.name"
        return "http.route" if self.stable else "http.target"

    @property
    def filters(self) -> dict[str, str]:
        """Attribute filters of every SLO: this run's service (and, for span metrics, server spans only)."""
        base = {"service.name": self.service}
        return base if self.http else {**base, "span.kind": "SPAN_KIND_SERVER"}


RUNS = (
    Run("fastapi", "default"),
    Run("fastapi", "http"),
    Run("flask", "default"),
    Run("flask", "http"),
    Run("grpc", "default"),
    Run("grpc", "rpc"),
)


@dataclasses.dataclass
class Request:
    """One request as the client saw it."""

    route: str  # HTTP path or gRPC span name (/shop.Orders/Get)
    sleep_ms: float  # designed handler sleep
    status: str  # "200", "500", ... or a gRPC status name
    seconds: float  # client-measured duration


def app_command(app: str, port: int) -> list[str]:
    instrument = str(BIN / "opentelemetry-instrument")
    if app == "fastapi":  # as the opentelemetry-instrumentation-fastapi docs run uvicorn
        return [
            instrument,
            str(BIN / "uvicorn"),
            "--app-dir",
            str(APPS),
            "official_fastapi_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
    return [instrument, sys.executable, str(APPS / f"official_{app}_app.py"), str(port)]


def app_env(run: Run, service: str, otlp_port: int, flush_hook: bool, interval_ms: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELOTEL_"))}
    env.update(
        OTEL_SERVICE_NAME=service,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{otlp_port}",
        OTEL_METRIC_EXPORT_INTERVAL=str(interval_ms),
        OTEL_BSP_SCHEDULE_DELAY="500" if interval_ms <= 1000 else str(interval_ms),
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=",".join(modelotel_instrumentors()),
        APP_FAST_MS=str(FAST_MS),
        APP_MEDIUM_MS=str(MEDIUM_MS),
        APP_SLOW_MS=str(SLOW_MS),
        APP_FLUSH_ON_SIGTERM="1" if flush_hook else "0",
    )
    if run.mode != "default":
        env["OTEL_SEMCONV_STABILITY_OPT_IN"] = run.mode
    return env


def wait_port(port: int, proc: Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise AssertionError(f"app exited with {proc.proc.returncode} before listening:\n{proc.output()[-4000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"app did not listen on {port} within {timeout} s:\n{proc.output()[-4000:]}")


def http_call(port: int, path: str, sleep_ms: float) -> Request:
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as resp:
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        exc.read()
        status = exc.code
    return Request(path, sleep_ms, str(status), time.perf_counter() - start)


def grpc_call(channel: grpc.Channel, method: str, code: str, sleep_ms: float) -> Request:
    call = channel.unary_unary(f"/shop.Orders/{method}")
    start = time.perf_counter()
    try:
        call(f"{code}:{sleep_ms:g}".encode(), timeout=30)
        status = "OK"
    except grpc.RpcError as exc:
        status = exc.code().name
    return Request(f"/shop.Orders/{method}", sleep_ms, status, time.perf_counter() - start)


def send_workload(app: str, port: int, scale: float = 1.0) -> list[Request]:
    """The designed workload, shuffled (fixed seed), CONCURRENCY at a time; `scale` < 1 sends fewer."""
    if app == "grpc":
        jobs = [(m, c, ms) for m, c, ms, n in GRPC_PLAN for _ in range(max(1, int(n * scale)))]
    else:
        jobs = [(p, None, ms) for p, ms, n in HTTP_PLAN for _ in range(max(1, int(n * scale)))]
    random.Random(14).shuffle(jobs)
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        if app == "grpc":
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                return list(pool.map(lambda j: grpc_call(channel, j[0], j[1], j[2]), jobs))
        return list(pool.map(lambda j: http_call(port, j[0], j[2]), jobs))


def check_design(requests: list[Request]) -> None:
    """The ground truth is unambiguous: at each threshold a request is measured by the client at or under it (so
    the server, whose interval lies inside the client's, measured it under too) or designed to sleep over it."""
    for t_ms in THRESHOLDS_MS:
        unclear = [r for r in requests if r.seconds * 1000 > t_ms and r.sleep_ms <= t_ms]
        assert not unclear, f"machine too slow for the design at {t_ms} ms: {unclear[:5]}"


# --------------------------------------------------------------------------- reading the file ourselves


def _any_value(value: dict) -> Any:
    (kind, v), *_ = value.items()
    return int(v) if kind == "intValue" else v


def latest_points(path: Path) -> dict[tuple, dict]:
    """(service, scope, metric, unit, kind, point attributes) -> the newest point, from OTLP JSON lines.

    Independent of modelotel's reader. Cumulative data: the newest point of a series holds its totals."""
    latest: dict[tuple, dict] = {}
    if not path.exists():
        return latest
    with open(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            doc = json.loads(line)
            for rm in doc.get("resourceMetrics", []):
                res = {a["key"]: _any_value(a["value"]) for a in rm.get("resource", {}).get("attributes", [])}
                for sm in rm.get("scopeMetrics", []):
                    scope = sm.get("scope", {}).get("name", "")
                    for m in sm.get("metrics", []):
                        kind = next(k for k in ("histogram", "sum", "gauge", "exponentialHistogram") if k in m)
                        for p in m[kind].get("dataPoints", []):
                            attrs = tuple(sorted((a["key"], _any_value(a["value"])) for a in p.get("attributes", [])))
                            key = (res.get("service.name"), scope, m["name"], m.get("unit", ""), kind, attrs)
                            p = {**p, "temporality": m[kind].get("aggregationTemporality")}
                            old = latest.get(key)
                            if old is None or int(p["timeUnixNano"]) >= int(old["timeUnixNano"]):
                                latest[key] = p
    return latest


def series_of(latest: dict[tuple, dict], service: str, metric: str) -> list[tuple[dict, dict]]:
    """(point attributes, newest point) of every series of `metric` from `service`."""
    return [(dict(k[5]), p) for k, p in latest.items() if k[0] == service and k[2] == metric]


def selected(run: Run, latest: dict[tuple, dict]) -> list[tuple[dict, dict]]:
    """The series the SLOs of `run` judge (server spans only, for span metrics)."""
    out = series_of(latest, run.service, run.metric)
    return out if run.http else [(a, p) for a, p in out if a.get("span.kind") == "SPAN_KIND_SERVER"]


def count_of(points: list[tuple[dict, dict]]) -> int:
    return sum(int(p.get("count", p.get("asInt", 0))) for _, p in points)


def count_at_or_below(points: list[tuple[dict, dict]], bound: float) -> int:
    """Histogram counts in buckets wholly at or below `bound`, which must be one of the explicit bounds."""
    total = 0
    for _, p in points:
        bounds = [float(b) for b in p["explicitBounds"]]
        i = next(i for i, b in enumerate(bounds) if abs(b - bound) <= 1e-9 * max(1.0, bound))
        total += sum(int(c) for c in p["bucketCounts"][: i + 1])
    return total


# --------------------------------------------------------------------------- the collector


class Collector:
    """gateway.yaml + profiles/file.yaml (+ the span_metrics dimension override) on ephemeral loopback ports."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.path = tmp / "foreign.jsonl"  # metrics
        self.traces_path = tmp / "foreign-traces.jsonl"
        ports = {k: free_port() for k in ("grpc", "http", "sampling", "health", "metrics")}
        self.otlp_port = ports["grpc"]
        override = tmp / "span-metrics-dimensions.yaml"
        override.write_text(SPAN_METRICS_OVERRIDE)
        env = {
            "MODELOTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports['grpc']}",
            "MODELOTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports['http']}",
            "MODELOTEL_SAMPLING_GRPC_ENDPOINT": f"127.0.0.1:{ports['sampling']}",
            "MODELOTEL_SAMPLING_BACKENDS": f"[127.0.0.1:{ports['sampling']}]",
            "MODELOTEL_HEALTH_ENDPOINT": f"127.0.0.1:{ports['health']}",
            "MODELOTEL_COLLECTOR_METRICS_PORT": str(ports["metrics"]),
            "MODELOTEL_QUEUE_DIR": str(tmp / "queue"),
            "MODELOTEL_FILE_EXPORT_PATH": str(self.path),
            "MODELOTEL_FILE_EXPORT_TRACES_PATH": str(self.traces_path),
            "MODELOTEL_FILE_EXPORT_LOGS_PATH": str(tmp / "foreign-logs.jsonl"),
            "MODELOTEL_DECISION_WAIT": "1s",
            "MODELOTEL_SPAN_METRICS_INTERVAL": "1s",
        }
        config = ["--config", str(CONFIGS / "gateway.yaml"), "--config", str(CONFIGS / "profiles" / "file.yaml")]
        self.proc = Process([otelcol(), *config, "--config", str(override)], tmp / "collector.log", env=env)
        try:
            wait_http(f"http://127.0.0.1:{ports['health']}/", timeout=60, proc=self.proc.proc)
        except AssertionError:
            self.proc.stop()
            raise AssertionError(f"collector did not become healthy:\n{self.proc.output()[-4000:]}") from None

    def wait_count(self, service: str, metric: str, expected: int, server_spans: bool) -> dict[tuple, dict]:
        """Poll the file until `service`'s `metric` counts `expected` events (or the deadline); the points."""

        def done() -> dict[tuple, dict] | None:
            latest = latest_points(self.path)
            points = series_of(latest, service, metric)
            if server_spans:
                points = [(a, p) for a, p in points if a.get("span.kind") == "SPAN_KIND_SERVER"]
            return latest if count_of(points) >= expected else None

        try:
            return wait_for(done, DATA_DEADLINE_S, f"{expected} events of {metric} from {service}", interval=0.5)
        except AssertionError:
            return latest_points(self.path)  # the tests report what is missing

    def wait_spans(self) -> None:
        """Until the traces file holds a span line (sampled traces: the 5xx / gRPC errors of the first run)."""

        def done() -> bool:
            if not self.traces_path.exists():
                return False
            with open(self.traces_path, "rb") as fh:
                return any(line.startswith(b'{"resourceSpans"') for line in fh)

        try:
            wait_for(done, 15, "a span line in the file", interval=0.5)
        except AssertionError:
            pass  # test_evaluator_reads_the_file_route reports it

    def stop(self) -> None:
        self.proc.stop()


def run_app(collector: Collector, run: Run, service: str, flush_hook: bool, interval_ms: int, scale: float = 1.0):
    """Start the app, send the workload, SIGTERM it at once; (requests, exit code, app log)."""
    port = free_port()
    log = collector.tmp / f"{service}.log"
    proc = Process(
        app_command(run.app, port),
        log,
        env=app_env(run, service, collector.otlp_port, flush_hook, interval_ms),
        cwd=ROOT,
    )
    try:
        wait_port(port, proc)
        requests = send_workload(run.app, port, scale)
    finally:
        rc = proc.stop(timeout=30)  # SIGTERM right after the last response
    return requests, rc, proc.output()


# --------------------------------------------------------------------------- SLOs and their expected values


@dataclasses.dataclass
class Expect:
    """What the evaluator must report for one SLO, from the client's records."""

    events: int | None = None
    good: int | None = None  # exact good count (bucket boundary, status-code ratios)
    truth_sli: float | None = None  # the client's SLI: within [sli_lower, sli_upper]
    slices_sli: float | None = None  # time-slice SLI (percentile)
    why: str = ""


@dataclasses.dataclass
class Check:
    name: str
    group: str  # spec file: core | percentile | sets
    spec: dict
    expect: Callable[[list[Request]], Expect]


def server_error(run: Run, status: str) -> bool:
    return int(status) >= 500 if run.http else status in GRPC_SERVER_ERRORS


def grpc_number(name: str) -> int:
    return grpc.StatusCode[name].value[0]


def checks_for(run: Run, bounds_ms: tuple[float, ...]) -> list[Check]:
    """The SLOs a user would write for this app, each with its expected values."""
    m, attrs = run.metric, run.filters
    common = {"attributes": attrs, "objective": 0.9, "min_events": 1, "alerts": "off"}
    checks: list[Check] = []

    for t_ms in THRESHOLDS_MS:
        on_boundary = any(abs(b - t_ms) < 1e-6 for b in bounds_ms)

        def expect(reqs: list[Request], t_ms=t_ms, on_boundary=on_boundary) -> Expect:
            good = sum(r.seconds * 1000 <= t_ms for r in reqs)
            why = f"{good} of {len(reqs)} requests at or under {t_ms} ms (client)"
            if on_boundary:
                return Expect(events=len(reqs), good=good, why=why + "; a bucket boundary: exact")
            return Expect(events=len(reqs), truth_sli=good / len(reqs), why=why + "; inside a bucket: bounds")

        spec = {"name": f"latency-{t_ms}ms", "metric": m, "sli": "latency", "threshold": f"{t_ms}ms", **common}
        checks.append(Check(spec["name"], "core", spec, expect))

    def errors(reqs: list[Request]) -> Expect:
        bad = sum(server_error(run, r.status) for r in reqs)
        what = "5xx" if run.http else "gRPC server errors (semconv)"
        return Expect(events=len(reqs), good=len(reqs) - bad, why=f"{bad} {what} of {len(reqs)}")

    checks.append(
        Check("error-ratio", "core", {"name": "error-ratio", "metric": m, "sli": "error_ratio", **common}, errors)
    )

    # A ratio with today's equality selector: HTTP 500 only; span metrics' status.code (the span status, which
    # the official gRPC instrumentation sets to ERROR exactly for the semconv server-error codes).
    if run.http:
        bad_eq, count_eq = {run.status_key: 500}, (lambda r: r.status == "500")
    else:
        bad_eq, count_eq = {"status.code": "STATUS_CODE_ERROR"}, (lambda r: r.status in GRPC_SERVER_ERRORS)

    def ratio_eq(reqs: list[Request]) -> Expect:
        bad = sum(map(count_eq, reqs))
        return Expect(events=len(reqs), good=len(reqs) - bad, why=f"{bad} matching {bad_eq} of {len(reqs)}")

    name = "ratio-500" if run.http else "ratio-span-status-error"
    spec = {"name": name, "sli": "ratio", "ratio": {"bad": {"metric": m, "match": bad_eq}, "total": {"metric": m}}}
    checks.append(Check(name, "core", {**spec, **common}, ratio_eq))

    # Set membership and regex selectors on the status code.
    if run.http:
        in_values: list[int | str] = [500, 502, 503, 504]
        selectors = {"ratio-5xx-in": {"in": in_values}, "ratio-5xx-regex": {"regex": "5.."}}
        members = {"ratio-5xx-in": lambda s: int(s) in in_values, "ratio-5xx-regex": lambda s: s.startswith("5")}
    else:
        in_values = sorted(grpc_number(c) for c in GRPC_SERVER_ERRORS)
        pattern = "|".join(str(v) for v in in_values)
        selectors = {"ratio-grpc-errors-in": {"in": in_values}, "ratio-grpc-errors-regex": {"regex": pattern}}
        members = {k: (lambda s: s in GRPC_SERVER_ERRORS) for k in selectors}
    for name, value in selectors.items():

        def ratio_set(reqs: list[Request], member=members[name], value=value) -> Expect:
            bad = sum(member(r.status) for r in reqs)
            return Expect(events=len(reqs), good=len(reqs) - bad, why=f"{bad} with {run.status_key} {value}")

        spec = {
            "name": name,
            "sli": "ratio",
            "ratio": {"bad": {"metric": m, "match": {run.status_key: value}}, "total": {"metric": m}},
        }
        checks.append(Check(name, "sets", {**spec, **common}, ratio_set))

    # p95 per time slice, per route: one route every slice of which is fast, one every slice of which is slow.
    fast_route, slow_route = ("/fast", "/slow") if run.http else ("/shop.Orders/Get", "/shop.Orders/Search")
    slow_t = max(b for b in bounds_ms if b < SLOW_MS)  # a bucket boundary under the slow sleep: 250 or 200 ms
    for route, t_ms in ((fast_route, 100), (slow_route, slow_t)):

        def slices(reqs: list[Request], route=route, t_ms=t_ms) -> Expect:
            mine = [r for r in reqs if r.route == route]
            if all(r.seconds * 1000 <= t_ms for r in mine):
                return Expect(slices_sli=1.0, why=f"all {len(mine)} {route} requests <= {t_ms} ms: every slice good")
            assert all(r.sleep_ms > t_ms for r in mine), f"design: {route} mixes both sides of {t_ms} ms"
            return Expect(slices_sli=0.0, why=f"all {len(mine)} {route} requests > {t_ms} ms: every slice bad")

        name = f"p95-{route.rsplit('/', 1)[-1].lower()}-{t_ms:g}ms"
        spec = {
            "name": name,
            "metric": m,
            "sli": "latency",
            "percentile": "p95",
            "threshold": f"{t_ms:g}ms",
            "timeslice": {"window": "1m"},
            **common,
            "attributes": {**attrs, run.route_key: route},
        }
        checks.append(Check(name, "percentile", spec, slices))
    return checks


def bounds_of(run: Run) -> tuple[float, ...]:
    """The explicit bucket bounds of the run's duration metric, in ms (the documented defaults)."""
    if not run.http:
        return SPAN_METRICS_BOUNDS
    return tuple(b * 1000 for b in HTTP_SECONDS_BOUNDS) if run.stable else OTEL_DEFAULT_BOUNDS


def evaluate(spec_path: Path, *data: Path) -> tuple[dict | None, str]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelotel",
            "evaluate",
            "--slo",
            str(spec_path),
            "--data",
            *map(str, data),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        return None, f"`modelotel evaluate --slo {spec_path}` exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"
    try:
        return json.loads(proc.stdout), proc.stderr
    except json.JSONDecodeError as exc:
        return None, f"`modelotel evaluate` printed no JSON ({exc}): {proc.stdout[:500]} {proc.stderr[-1000:]}"


@dataclasses.dataclass
class RunResult:
    run: Run
    requests: list[Request]
    exit_code: int
    log: str
    latest: dict[tuple, dict]
    checks: dict[str, Check]
    results: dict[str, dict]  # SLO name -> its JSON
    errors: dict[str, str]  # group -> why it has no results
    inputs: dict[str, list]  # group -> the "inputs" part of the JSON
    span_lines: int  # span lines in the traces file just before the evaluation


def execute(collector: Collector, run: Run) -> RunResult:
    requests, rc, log = run_app(collector, run, run.service, flush_hook=True, interval_ms=1000)
    assert requests, "no requests sent"
    latest = collector.wait_count(run.service, run.metric, len(requests), server_spans=not run.http)
    collector.wait_spans()
    checks = {c.name: c for c in checks_for(run, bounds_of(run))}
    groups: dict[str, list[dict]] = defaultdict(list)
    for c in checks.values():
        groups[c.group].append(c.spec)
    spec_dir = collector.tmp / "specs" / run.id
    spec_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for group, slos in groups.items():
        paths[group] = spec_dir / f"{group}.yaml"
        paths[group].write_text(yaml.safe_dump({"slos": slos}, sort_keys=False))
    results: dict[str, dict] = {}
    errors: dict[str, str] = {}
    inputs: dict[str, list] = {}
    with open(collector.traces_path, "rb") as fh:
        span_lines = sum(line.startswith(b'{"resourceSpans"') for line in fh)
    data = (collector.path, collector.traces_path)
    with concurrent.futures.ThreadPoolExecutor(len(paths)) as pool:
        done = dict(zip(paths, pool.map(lambda p: evaluate(p, *data), paths.values()), strict=True))
    for group, (doc, message) in done.items():
        if doc is None:
            errors[group] = message
            continue
        inputs[group] = doc.get("inputs", [])
        for slo in doc.get("slos", []):
            results[slo["name"]] = slo
    res = RunResult(run, requests, rc, log, latest, checks, results, errors, inputs, span_lines)
    write_summary(collector.tmp / "summary.json", res)
    return res


def _expected_or_why(check: Check, requests: list[Request]) -> dict | str:
    try:
        return dataclasses.asdict(check.expect(requests))
    except AssertionError as exc:
        return f"design violated: {exc}"


def write_summary(path: Path, res: RunResult) -> None:
    """Client timings, the expected values and the evaluator's answers of every run, for people reading the results."""
    doc = json.loads(path.read_text()) if path.exists() else {}
    by_sleep: dict[str, list[float]] = defaultdict(list)
    for r in res.requests:
        by_sleep[f"{r.sleep_ms:g}ms"].append(r.seconds * 1000)
    doc[res.run.id] = {
        "requests": len(res.requests),
        "statuses": dict(Counter(r.status for r in res.requests)),
        "client_ms_by_designed_sleep": {k: [round(min(v), 1), round(max(v), 1)] for k, v in by_sleep.items()},
        "exit_code": res.exit_code,
        "errors": res.errors,
        "slos": {
            name: {
                "expected": _expected_or_why(check, res.requests),
                "got": {
                    k: res.results.get(name, {}).get(k) for k in ("sli", "events", "good", "accuracy", "timeslices")
                },
            }
            for name, check in res.checks.items()
        },
    }
    path.write_text(json.dumps(doc, indent=1))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    c = Collector(tmp_path_factory.mktemp("foreign"))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def runs(collector):
    """run id -> RunResult, each app run once, on first use."""
    cache: dict[str, RunResult] = {}

    def get(run_id: str) -> RunResult:
        if run_id not in cache:
            cache[run_id] = execute(collector, next(r for r in RUNS if r.id == run_id))
        return cache[run_id]

    return get


def slo_cases() -> list[tuple[str, str]]:
    return [(run.id, c.name) for run in RUNS for c in checks_for(run, bounds_of(run))]


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("run_id", [r.id for r in RUNS])
def test_telemetry_matches_client_ground_truth(runs, run_id):
    """The plumbing, judged without modelotel: every request arrived once, with its status, in the right bucket."""
    res = runs(run_id)
    run, reqs = res.run, res.requests
    check_design(reqs)
    points = selected(run, res.latest)
    assert count_of(points) == len(reqs), (
        f"{run.metric} of {run.service} counts {count_of(points)} events, the client sent {len(reqs)} "
        f"(app exit code {res.exit_code}; log tail: {res.log[-1500:]})"
    )
    assert all(p["temporality"] == 2 for _, p in points), "expected the SDK's default CUMULATIVE temporality"

    by_status: Counter = Counter()
    for attrs, p in points:
        by_status[str(attrs.get(run.status_key))] += int(p["count"])
    expected = Counter(r.status if run.http else str(grpc_number(r.status)) for r in reqs)
    assert by_status == expected, f"events per {run.status_key}: telemetry {by_status}, client {expected}"

    if not run.http:  # the span status: ERROR exactly on the semconv server-error codes
        errors = sum(int(p["count"]) for a, p in points if a.get("status.code") == "STATUS_CODE_ERROR")
        assert errors == sum(r.status in GRPC_SERVER_ERRORS for r in reqs)

    for t_ms in THRESHOLDS_MS:
        if any(abs(b - t_ms) < 1e-6 for b in bounds_of(run)):
            in_data = count_at_or_below(points, t_ms / run.unit_ms)
            truth = sum(r.seconds * 1000 <= t_ms for r in reqs)
            assert in_data == truth, f"{in_data} events in buckets <= {t_ms} ms, the client measured {truth}"


@pytest.mark.parametrize(("run_id", "slo"), slo_cases(), ids=[f"{r}:{s}" for r, s in slo_cases()])
def test_slo_matches_ground_truth(runs, run_id, slo):
    res = runs(run_id)
    check = res.checks[slo]
    check_design(res.requests)
    assert check.group not in res.errors, res.errors.get(check.group)
    assert slo in res.results, f"{slo} missing from the evaluator's output: {sorted(res.results)}"
    got = res.results[slo]
    want = check.expect(res.requests)
    shown = {k: got.get(k) for k in ("sli", "events", "good", "accuracy", "timeslices", "status", "reason")}
    context = f"{want.why}; evaluator: {shown}"
    if want.events is not None:
        assert got["events"] == pytest.approx(want.events), context
    if want.good is not None:
        assert got["good"] == pytest.approx(want.good), context
        assert got["sli"] == pytest.approx(want.good / want.events, abs=1e-6), context
    if want.truth_sli is not None:
        acc = got.get("accuracy") or {}
        lower, upper = acc.get("sli_lower"), acc.get("sli_upper")
        assert lower is not None and upper is not None, context
        assert lower - 1e-6 <= want.truth_sli <= upper + 1e-6, context
    if want.slices_sli is not None:
        assert got["sli"] == pytest.approx(want.slices_sli, abs=1e-6), context
        slices = got.get("timeslices") or {}
        assert slices.get("total", 0) >= 1, context


@pytest.mark.parametrize("run_id", [r.id for r in RUNS])
def test_evaluator_reads_the_file_route(runs, run_id):
    """The file route also writes span lines (their own file, read in the same evaluation): accounted for (as
    foreign lines or as another signal's), never as corrupt lines or problems; every metric point usable."""
    res = runs(run_id)
    assert "core" not in res.errors, res.errors.get("core")
    reports = res.inputs["core"]
    assert len(reports) == 2, reports  # the metrics file and the traces file
    assert res.span_lines > 0, "the file route wrote no span line before the evaluation"
    reported = 0
    for report in reports:
        assert report["corrupt_lines"] == 0, report
        assert report["bad_points"] == 0, report
        assert not report.get("problems"), report
        for key, value in report.items():
            if any(word in key for word in ("foreign", "signal", "span", "trace")):
                reported += sum(value.values()) if isinstance(value, dict) else int(value)
    assert reported >= res.span_lines, (
        f"{res.span_lines} span lines in the traces file, the reports account for {reported}: {reports}"
    )


# What the official instrumentations emit (names, units, point attribute keys of the duration histogram).
HTTP_OLD_KEYS = {
    "http.flavor",
    "http.host",
    "http.method",
    "http.scheme",
    "http.server_name",
    "http.status_code",
    "net.host.port",
}
HTTP_STABLE_KEYS = {"http.request.method", "http.response.status_code", "network.protocol.version", "url.scheme"}
INVENTORY = {
    ("fastapi", "default"): {
        "http.server.active_requests": "{request}",
        "http.server.duration": "ms",
        "http.server.response.size": "By",
    },
    ("fastapi", "http"): {
        "http.server.active_requests": "{request}",
        "http.server.request.duration": "s",
        "http.server.response.body.size": "By",
    },
    ("flask", "default"): {"http.server.active_requests": "requests", "http.server.duration": "ms"},
    ("flask", "http"): {"http.server.active_requests": "{request}", "http.server.request.duration": "s"},
    ("grpc", "default"): {},
    ("grpc", "rpc"): {},
}


@pytest.mark.parametrize("run_id", [r.id for r in RUNS])
def test_metric_inventory(runs, run_id):
    """Record (and pin) what each official instrumentation emits in each convention mode; only official scopes."""
    res = runs(run_id)
    run = res.run
    mine = {k: p for k, p in res.latest.items() if k[0] == run.service}
    scopes = {k[1] for k in mine}
    official = {k[2]: k[3] for k in mine if k[1].startswith("opentelemetry.instrumentation.")}
    assert not any("modelotel" in s for s in scopes), f"modelotel instrumentation ran: {scopes}"
    assert not any(k[2].startswith("ml.") for k in mine), "ml.* metrics from an app without modelotel"
    assert official == INVENTORY[(run.app, run.mode)], f"{run.id}: official metrics {official}"

    if run.http:
        points = selected(run, res.latest)
        keys = set().union(*(a.keys() for a, _ in points))
        base = HTTP_STABLE_KEYS if run.stable else HTTP_OLD_KEYS
        extra = {"http.route", "error.type"} if run.stable else {"http.target"}
        if run.app == "flask" and not run.stable:
            extra |= {"net.host.name"}
        assert keys == base | extra, f"{run.metric} attribute keys {sorted(keys)}"
        want_bounds = [b / run.unit_ms for b in bounds_of(run)]
        for attrs, p in points:
            assert [float(b) for b in p["explicitBounds"]] == pytest.approx(want_bounds), p["explicitBounds"]
            status = int(attrs[run.status_key])
            if run.stable:  # error.type on exactly the 5xx, with the status code as its value
                assert attrs.get("error.type") == (str(status) if status >= 500 else None), attrs
            route = attrs.get(run.route_key)
            assert (route is None) == (status == 404), attrs  # the route template, absent when none matched
    else:
        spans = series_of(res.latest, run.service, "traces.span.metrics.duration")
        assert spans and all(p["explicitBounds"] for _, p in spans)
        for attrs, p in spans:
            assert [float(b) for b in p["explicitBounds"]] == pytest.approx(SPAN_METRICS_BOUNDS), p["explicitBounds"]
            assert {"service.name", "span.name", "span.kind", "status.code", "rpc.grpc.status_code"} <= set(attrs)
        names = {a["span.name"] for a, _ in spans}
        assert names == {f"/shop.Orders/{m}" for m, *_ in GRPC_PLAN}, names


# --------------------------------------------------------------------------- SIGTERM


@pytest.mark.parametrize("app", ["fastapi", "flask", "grpc"])
def test_sigterm_flush(collector, app):
    """Does the SDK flush on SIGTERM? With a 60 s export interval (and span batch delay) nothing is exported before
    the shutdown, so all that arrives comes from the final flush. Without the apps' flush hook: nothing arrives
    (the finding); with it: every request."""
    run = Run(app, "default")
    metric = run.metric
    unflushed, flushed = f"sigterm-{app}-plain", f"sigterm-{app}-flushed"
    plain, plain_rc, plain_log = run_app(collector, run, unflushed, flush_hook=False, interval_ms=60_000, scale=0.2)
    hooked, hooked_rc, hooked_log = run_app(collector, run, flushed, flush_hook=True, interval_ms=60_000, scale=0.2)
    latest = collector.wait_count(flushed, metric, len(hooked), server_spans=not run.http)

    def count(service: str) -> int:
        points = series_of(latest, service, metric)
        if not run.http:
            points = [(a, p) for a, p in points if a.get("span.kind") == "SPAN_KIND_SERVER"]
        return count_of(points)

    assert count(flushed) == len(hooked), f"flush hook: {count(flushed)} of {len(hooked)} arrived; {hooked_log[-1500:]}"
    # The flushed run's data is in, and it was sent after the plain run died: had the plain run exported at exit,
    # its data would be in the file by now.
    assert plain_rc == -15, f"expected death by SIGTERM, exit code {plain_rc}"
    assert count(unflushed) == 0, (
        f"{count(unflushed)} of {len(plain)} events arrived without a flush hook: the SDK now flushes on SIGTERM "
        "by itself; the apps' APP_FLUSH_ON_SIGTERM hooks and this finding can go"
    )
