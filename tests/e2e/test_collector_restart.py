"""The bundled collector agent (collector_config/agent.yaml) under SIGTERM, restarts and with no settings.

Real collector processes only: a loader thread per signal posts OTLP/HTTP protobuf requests to a real
agent at a steady rate, every data point / span / log record carrying a unique `seq` attribute, and
records which requests the agent acknowledged (HTTP 200). The agent is stopped with SIGTERM in the
middle of the load five times in a row, then restarted once more with its gateway (a second real
collector) finally up. Afterwards every acknowledged item is counted, exactly, in the agent's own
file and in what the gateway received from the agent's persistent queue. A second test does the same
with SIGKILL for the gateway route. Against the agent.yaml before this test (a batch processor in each
pipeline, gateway by default) all three fail: a panic on SIGTERM, items lost on SIGKILL, and
"connection refused" with no file for the first command.

Cost on 2 shared cores (measured): SIGTERM test ~11 s, SIGKILL test ~5 s, first command ~3 s.
Needs the collector (`make collector`); missing, it fails under MODELOTEL_CI=1.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from collector_support import CONFIGS, Process, free_port, otelcol, wait_for, wait_http

pytestmark = pytest.mark.collector

AGENT = CONFIGS / "agent.yaml"
SIGNALS = ("metrics", "traces", "logs")
ITEMS_PER_REQUEST = 20
REQUEST_INTERVAL_S = 0.02  # per signal: ~50 requests/s, ~1,000 items/s
CYCLES = 5
LOAD_PER_CYCLE_S = 1.5


# --------------------------------------------------------------------------- OTLP requests


def _seq_attr(seq: int) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key="seq", value=common_pb2.AnyValue(int_value=seq))


def _service(resource) -> None:
    # A service name, as every SDK sends: the gateway's span_metrics connector skips spans without one.
    resource.attributes.append(
        common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value="restart-probe"))
    )


def _request(signal_name: str, seqs: range) -> bytes:
    """One OTLP export request with one item per seq (a gauge point, a span or a log record)."""
    now = time.time_ns()
    if signal_name == "metrics":
        req = metrics_service_pb2.ExportMetricsServiceRequest()
        rm = req.resource_metrics.add()
        _service(rm.resource)
        metric = rm.scope_metrics.add().metrics.add()
        metric.name = "restart.probe"
        for seq in seqs:
            point = metric.gauge.data_points.add(time_unix_nano=now, as_int=seq)
            point.attributes.append(_seq_attr(seq))
    elif signal_name == "traces":
        req = trace_service_pb2.ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        _service(rs.resource)
        scope = rs.scope_spans.add()
        for seq in seqs:
            span = scope.spans.add(
                name="restart.probe",
                trace_id=seq.to_bytes(16, "big"),
                span_id=(seq + 1).to_bytes(8, "big"),
                start_time_unix_nano=now,
                end_time_unix_nano=now + 1000,
            )
            span.attributes.append(_seq_attr(seq))
    else:
        req = logs_service_pb2.ExportLogsServiceRequest()
        rl = req.resource_logs.add()
        _service(rl.resource)
        scope = rl.scope_logs.add()
        for seq in seqs:
            record = scope.log_records.add(time_unix_nano=now)
            record.body.string_value = "restart.probe"
            record.attributes.append(_seq_attr(seq))
    return req.SerializeToString()


class Loader:
    """One thread per signal posting to the agent's OTLP/HTTP port at a steady rate, across restarts.

    A request is never resent (fresh seqs each time), so an item may be delivered without having been
    acknowledged (the agent stopped before answering) but never twice."""

    def __init__(self, port: int):
        self.port = port
        self.acked: dict[str, set[int]] = {s: set() for s in SIGNALS}
        self.sent: dict[str, set[int]] = {s: set() for s in SIGNALS}
        self.refused = Counter()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(s,), daemon=True) for s in SIGNALS]

    def start(self) -> Loader:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _run(self, signal_name: str) -> None:
        conn: http.client.HTTPConnection | None = None
        next_seq = 0
        while not self._stop.is_set():
            seqs = range(next_seq, next_seq + ITEMS_PER_REQUEST)
            next_seq += ITEMS_PER_REQUEST
            body = _request(signal_name, seqs)
            self.sent[signal_name].update(seqs)
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("POST", f"/v1/{signal_name}", body, {"Content-Type": "application/x-protobuf"})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    self.acked[signal_name].update(seqs)
                else:
                    self.refused[f"{signal_name} HTTP {resp.status}"] += 1
            except (OSError, http.client.HTTPException) as exc:
                self.refused[f"{signal_name} {type(exc).__name__}"] += 1
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(REQUEST_INTERVAL_S)


# --------------------------------------------------------------------------- reading the files back

ITEM_PATHS = {
    "resourceMetrics": ("metrics", "scopeMetrics", "metrics"),
    "resourceSpans": ("traces", "scopeSpans", "spans"),
    "resourceLogs": ("logs", "scopeLogs", "logRecords"),
}


def _item_seqs(signal_name: str, item: dict) -> list[dict]:
    if signal_name == "metrics":
        return [p for kind in ("gauge", "sum") for p in (item.get(kind) or {}).get("dataPoints", [])]
    return [item]


def read_seqs(path: Path) -> tuple[dict[str, Counter], int]:
    """Every `seq` in an OTLP-JSON-lines file, counted per signal, and the number of lines that do not
    parse (a torn line is a failure here, not something to skip)."""
    counts = {s: Counter() for s in SIGNALS}
    bad = 0
    if not path.exists():
        return counts, bad
    for line in path.read_text(errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            bad += 1
            continue
        for top, (signal_name, scope_key, items_key) in ITEM_PATHS.items():
            for resource in obj.get(top, []):
                for scope in resource.get(scope_key, []):
                    for item in scope.get(items_key, []):
                        for carrier in _item_seqs(signal_name, item):
                            for attr in carrier.get("attributes", []):
                                if attr["key"] == "seq":
                                    counts[signal_name][int(attr["value"]["intValue"])] += 1
    return counts, bad


# --------------------------------------------------------------------------- processes


class Collector:
    """A real collector process on agent.yaml with its own loopback ports."""

    def __init__(self, name: str, tmp: Path, env: dict[str, str], http_port: int | None = None):
        self.name, self.tmp = name, tmp
        self.health = free_port()
        self.http_port = http_port or free_port()
        self.env = {
            "MODELOTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
            "MODELOTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
            "MODELOTEL_HEALTH_ENDPOINT": f"127.0.0.1:{self.health}",
            "MODELOTEL_COLLECTOR_METRICS_PORT": str(free_port()),
            **env,
        }
        self.runs = 0
        self.proc: Process | None = None
        self.stop_seconds: list[float] = []

    def start(self) -> Collector:
        self.runs += 1
        log = self.tmp / f"{self.name}-{self.runs}.log"
        self.proc = Process([otelcol(), "--config", str(AGENT)], log, env=self.env)
        wait_http(f"http://127.0.0.1:{self.health}/", timeout=60, proc=self.proc.proc)
        return self

    def sigterm(self, timeout: float = 30) -> tuple[int, str]:
        """SIGTERM, wait for the exit; the exit code and everything the process wrote."""
        assert self.proc is not None
        start = time.monotonic()
        self.proc.proc.send_signal(signal.SIGTERM)
        rc = self.proc.proc.wait(timeout)
        self.stop_seconds.append(time.monotonic() - start)
        self.proc.stop()
        return rc, self.proc.output()


def sigterm_cycles(target, loader: Loader, cycles: int, load_s: float) -> list[tuple[int, str]]:
    """Stop ``target`` (started, with ``start()``/``sigterm()``) by SIGTERM ``cycles`` times, each after ``load_s``
    of load that must reach it, restarting it between cycles; the (exit code, output) of each stop."""
    exits = []
    for cycle in range(cycles):
        before = sum(len(a) for a in loader.acked.values())
        time.sleep(load_s)
        assert sum(len(a) for a in loader.acked.values()) > before, f"no load reached the collector ({cycle})"
        exits.append(target.sigterm())
        if cycle < cycles - 1:
            target.start()
    return exits


def test_agent_sigterm_under_load_loses_nothing(tmp_path):
    """SIGTERM x5 in the middle of load, the gateway down: exit 0 and no panic every time; every
    acknowledged item is in the agent's file exactly once, and after a restart with the gateway up
    the persistent queue delivers every acknowledged item to it, exactly once."""
    gateway_grpc = free_port()  # nothing listens here until the end: every export fails and queues
    agent_file, gateway_file = tmp_path / "agent.jsonl", tmp_path / "gateway.jsonl"
    agent = Collector(
        "agent",
        tmp_path,
        {
            "MODELOTEL_EXPORTERS": "[otlp_grpc/gateway, file]",
            "MODELOTEL_FILE_EXPORT_PATH": str(agent_file),
            "MODELOTEL_GATEWAY_ENDPOINT": f"127.0.0.1:{gateway_grpc}",
            "MODELOTEL_QUEUE_DIR": str(tmp_path / "agent-queue"),
        },
    )
    loader = Loader(agent.http_port)
    exits: list[tuple[int, str]] = []
    try:
        agent.start()
        loader.start()
        exits = sigterm_cycles(agent, loader, CYCLES, LOAD_PER_CYCLE_S)
        loader.stop()
    finally:
        loader.stop()
        if agent.proc is not None:
            agent.proc.stop()

    for rc, output in exits:
        assert "panic" not in output, output[-6000:]
        assert rc == 0, output[-4000:]
    acked = {s: len(a) for s, a in loader.acked.items()}
    assert all(n >= 1000 for n in acked.values()), (acked, loader.refused)

    # The agent's file: every acknowledged item, once; nothing torn, nothing invented.
    in_file, bad = read_seqs(agent_file)
    assert bad == 0
    for s in SIGNALS:
        missing = loader.acked[s] - set(in_file[s])
        assert not missing, f"{s}: {len(missing)} of {acked[s]} acknowledged items are not in the file"
        assert set(in_file[s]) <= loader.sent[s]
        assert max(in_file[s].values()) == 1, f"{s}: duplicates in the file"

    # The persistent queue: the gateway comes up, the agent restarts (no new load) and drains it.
    gateway = Collector(
        "gateway",
        tmp_path,
        {
            "MODELOTEL_EXPORTERS": "[file]",
            "MODELOTEL_FILE_EXPORT_PATH": str(gateway_file),
            "MODELOTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{gateway_grpc}",
            "MODELOTEL_QUEUE_DIR": str(tmp_path / "gateway-queue"),
        },
    )
    gateway.start()
    try:
        agent.start()

        def drained() -> bool:
            got, _ = read_seqs(gateway_file)
            return all(loader.acked[s] <= set(got[s]) for s in SIGNALS)

        try:
            wait_for(drained, timeout=30, what="the agent's persistent queue to reach the gateway")
        finally:
            agent_rc, agent_out = agent.sigterm()
        gateway_rc, gateway_out = gateway.sigterm()
    finally:
        for c in (agent, gateway):
            if c.proc is not None:
                c.proc.stop()
    assert agent_rc == 0 and "panic" not in agent_out, agent_out[-4000:]
    assert gateway_rc == 0 and "panic" not in gateway_out, gateway_out[-4000:]
    at_gateway, bad = read_seqs(gateway_file)
    assert bad == 0
    print(
        f"acknowledged {acked}, not acknowledged {dict(loader.refused)}, "
        f"in the agent's file {[sum(in_file[s].values()) for s in SIGNALS]}, "
        f"at the gateway {[sum(at_gateway[s].values()) for s in SIGNALS]}, "
        f"SIGTERM to exit {[round(t, 2) for t in agent.stop_seconds]} s"
    )
    for s in SIGNALS:
        assert loader.acked[s] <= set(at_gateway[s])
        assert set(at_gateway[s]) <= loader.sent[s]
        assert max(at_gateway[s].values()) == 1, f"{s}: duplicates at the gateway"


DEFAULT_PORTS = (4317, 4318, 13133, 8888)  # agent.yaml's defaults


def test_the_documented_first_command_works_on_its_own(tmp_path):
    """`otelcol-modelotel --config collector_config/agent.yaml` with no MODELOTEL_* variable at all:
    healthy, OTLP sent to its default port lands in ./modelotel-telemetry.jsonl, no "connection
    refused" (no gateway is expected), and a clean exit on SIGTERM."""
    for port in DEFAULT_PORTS:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                reason = f"127.0.0.1:{port} (an agent.yaml default) is in use on this machine"
                if os.environ.get("MODELOTEL_CI"):
                    pytest.fail(reason)
                pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOTEL_")}
    log = tmp_path / "agent.log"
    with open(log, "w") as fh:
        agent = subprocess.Popen(
            [otelcol(), "--config", str(AGENT)], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=tmp_path
        )
        try:
            wait_http("http://127.0.0.1:13133/", timeout=60, proc=agent)
            conn = http.client.HTTPConnection("127.0.0.1", 4318, timeout=10)
            conn.request(
                "POST", "/v1/metrics", _request("metrics", range(7)), {"Content-Type": "application/x-protobuf"}
            )
            assert conn.getresponse().status == 200
            out = tmp_path / "modelotel-telemetry.jsonl"
            wait_for(lambda: sorted(read_seqs(out)[0]["metrics"]) == list(range(7)), 15, "the default file")
            time.sleep(2)  # long enough for a gateway exporter's first attempts to fail
        finally:
            agent.send_signal(signal.SIGTERM)
            try:
                rc = agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
                rc = agent.wait()
    text = log.read_text(errors="replace")
    assert rc == 0, text[-4000:]
    assert "connection refused" not in text.lower(), text[-4000:]
    assert "panic" not in text, text[-4000:]


def test_agent_sigkill_keeps_what_it_acknowledged_for_the_gateway(tmp_path):
    """Even SIGKILL (no shutdown at all): a request the agent acknowledged is already in the gateway
    exporter's persistent queue on disk, and a restart with the gateway up delivers all of it, once.
    (The agent's own file is buffered for up to 1 s: that route is guaranteed on SIGTERM only.)"""
    gateway_grpc = free_port()
    gateway_file = tmp_path / "gateway.jsonl"
    agent = Collector(
        "agent",
        tmp_path,
        {
            "MODELOTEL_EXPORTERS": "[otlp_grpc/gateway]",
            "MODELOTEL_GATEWAY_ENDPOINT": f"127.0.0.1:{gateway_grpc}",
            "MODELOTEL_QUEUE_DIR": str(tmp_path / "agent-queue"),
        },
    )
    loader = Loader(agent.http_port)
    try:
        agent.start()
        loader.start()
        time.sleep(LOAD_PER_CYCLE_S)
        agent.proc.proc.kill()
        assert agent.proc.proc.wait(10) == -signal.SIGKILL
    finally:
        loader.stop()
        agent.proc.stop()
    assert all(len(a) >= 300 for a in loader.acked.values()), loader.acked

    gateway = Collector(
        "gateway",
        tmp_path,
        {
            "MODELOTEL_EXPORTERS": "[file]",
            "MODELOTEL_FILE_EXPORT_PATH": str(gateway_file),
            "MODELOTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{gateway_grpc}",
            "MODELOTEL_QUEUE_DIR": str(tmp_path / "gateway-queue"),
        },
    )
    gateway.start()
    try:
        agent.start()
        try:
            wait_for(
                lambda: all(loader.acked[s] <= set(read_seqs(gateway_file)[0][s]) for s in SIGNALS),
                timeout=30,
                what="the queue left by the killed agent to reach the gateway",
            )
        finally:
            agent_rc, agent_out = agent.sigterm()
        gateway.sigterm()
    finally:
        for c in (agent, gateway):
            if c.proc is not None:
                c.proc.stop()
    assert agent_rc == 0 and "panic" not in agent_out, agent_out[-4000:]
    at_gateway, bad = read_seqs(gateway_file)
    assert bad == 0
    print(
        f"acknowledged before SIGKILL {[len(loader.acked[s]) for s in SIGNALS]}, at the gateway after the restart "
        f"{[sum(at_gateway[s].values()) for s in SIGNALS]}"
    )
    for s in SIGNALS:
        assert set(at_gateway[s]) <= loader.sent[s]
        assert max(at_gateway[s].values()) == 1, f"{s}: duplicates at the gateway"
