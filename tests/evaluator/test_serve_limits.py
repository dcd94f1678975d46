"""``modelotel serve`` under hostile or broken clients: the limits it enforces (issue 15, finding 10).

Every test runs a real ``modelotel serve`` subprocess on loopback ports and talks to it over real sockets: a
series cap answered as a partial success and counted; a body shorter than its Content-Length refused without
counting any of it; slow connections (slowloris) bounded in number and time while /status keeps answering;
clients that go away counted in one log line, never a traceback; ``/status?at=`` absurd times answered 400;
a last snapshot that cannot be written makes serve exit 4; temporary snapshots left by a killed writer are
removed at start. Each test takes a few seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from test_serve import SERVE_SPEC, Serve, http, parse_exposition, sample

from modelotel.evaluator.engine.stream import SNAPSHOT_NAME

from collector_support import wait_for
from telemetry_gen import EPOCH, Event, export_lines

Request = metrics_service_pb2.ExportMetricsServiceRequest


def serve(tmp_path: Path, *extra: str, state: Path | None = None, name: str = "serve") -> Serve:
    spec_path = tmp_path / "slo.yaml"
    spec_path.write_text(SERVE_SPEC)
    return Serve(tmp_path, spec_path, state, *extra, name=name).start()


def lines_of(instances: int, end: int = 10) -> list[str]:
    """Delta export lines of ``fraud`` (times from EPOCH on), one per instance and 10 s: two series per instance
    (calls with and without an error), 20 events per line."""
    events = [
        Event(f"i{k}", 0.25 + j * 0.5, 0.05, error=j % 5 == 0) for k in range(instances) for j in range(2 * end)
    ]
    return export_lines(events, interval=10, end=end)


def post_json(s: Serve, line: str) -> tuple[int, dict]:
    code, body, _ = http(
        "POST", f"http://127.0.0.1:{s.http_port}/v1/metrics", line.encode(), {"Content-Type": "application/json"}
    )
    return code, json.loads(body) if body.startswith(b"{") else {"raw": body.decode(errors="replace")}


def events_at(s: Serve, at: float) -> float:
    return s.events("fraud-errors", at)


def metrics(s: Serve) -> dict:
    return parse_exposition(s.metrics())


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line")


def rst_close(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a killed client does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_series_past_max_series_are_refused_as_partial_success_and_counted(tmp_path):
    lines = lines_of(8, end=20)
    first = [ln for ln in lines if '"timeUnixNano":"1800000010000000000"' in ln]
    assert len(first) == 8
    s = serve(tmp_path, "--max-series", "6")
    try:
        answers = [post_json(s, line) for line in first]
        assert all(code == 200 for code, _ in answers), answers
        accepted = [a for _, a in answers if not a]
        refused = [a["partialSuccess"] for _, a in answers if a]
        assert len(accepted) == 3, answers  # two series per instance: the first three fit
        assert len(refused) == 5, answers
        assert all("--max-series" in r["errorMessage"] and int(r["rejectedDataPoints"]) >= 1 for r in refused)
        m = metrics(s)
        assert sample(m, "modelotel_serve_series") == 6
        assert sample(m, "modelotel_serve_max_series") == 6
        refused_points = sum(int(r["rejectedDataPoints"]) for r in refused)
        assert sample(m, "modelotel_serve_series_refused_points_total") == refused_points
        assert sample(m, "modelotel_serve_rejected_points_total") == refused_points
        assert events_at(s, EPOCH + 10) == 3 * 20  # only the accepted series' events
        # a known series still gets its new points at the cap
        later = next(ln for ln in lines if ln not in first and '"stringValue":"i0"' in ln)
        assert post_json(s, later) == (200, {})
        assert events_at(s, EPOCH + 20) == 4 * 20
        # over gRPC the same: a partial success naming the cap
        with grpc.insecure_channel(f"127.0.0.1:{s.grpc_port}") as channel:
            stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)
            new_series = next(ln for ln in lines if ln not in first and '"stringValue":"i7"' in ln)
            response = stub.Export(json_format.Parse(new_series, Request()), timeout=10)
            assert response.partial_success.rejected_data_points >= 1, response
            assert "--max-series" in response.partial_success.error_message
    finally:
        assert s.stop() == 0, s.output()
    assert "Traceback" not in s.output()


def test_a_body_shorter_than_its_content_length_is_400_and_counts_nothing(tmp_path):
    line = lines_of(1)[0].encode()
    s = serve(tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", s.http_port), timeout=10) as sock:
            head = (
                f"POST /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(line) + 500}\r\n\r\n"
            ).encode()
            sock.sendall(head + line)  # a whole request, but 500 bytes short of what the header announced
            sock.shutdown(socket.SHUT_WR)  # the client is done: the server sees end-of-file mid-body
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400"), answer
        assert b"shorter than its Content-Length" in answer, answer
        assert events_at(s, EPOCH + 10) == 0
        # the same request retried whole is counted once
        assert post_json(s, line.decode()) == (200, {})
        assert events_at(s, EPOCH + 10) == 20
    finally:
        assert s.stop() == 0, s.output()


def test_slow_connections_are_bounded_timed_out_and_do_not_starve_status(tmp_path):
    s = serve(tmp_path, "--max-connections", "8", "--request-timeout", "2s")
    assert s.proc is not None
    pid = s.proc.proc.pid
    slow: list[socket.socket] = []
    stop = threading.Event()
    try:
        base_threads = threads_of(pid)
        for _ in range(40):  # slowloris: headers begun, never finished
            sock = socket.create_connection(("127.0.0.1", s.metrics_port), timeout=10)
            sock.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)
        # one that trickles a header byte every 0.3 s: alive on every read, never done
        trickler = socket.create_connection(("127.0.0.1", s.metrics_port), timeout=10)
        trickler.sendall(b"GET /status HTTP/1.1\r\n")
        started = time.monotonic()
        closed_after: list[float] = []

        def trickle() -> None:
            try:
                while not stop.is_set():
                    trickler.sendall(b"X")
                    time.sleep(0.3)
            except OSError:
                closed_after.append(time.monotonic() - started)

        threading.Thread(target=trickle, daemon=True).start()
        time.sleep(0.5)
        # at most 8 handler threads however many connections
        assert threads_of(pid) <= base_threads + 8, (threads_of(pid), base_threads)
        t0 = time.monotonic()
        code, body, _ = http("GET", f"{s.url}/status")
        assert code == 200 and json.loads(body)["slos"], body
        assert time.monotonic() - t0 < 2.0, "/status waited behind slow connections"
        # every slow connection is closed by the server within the request timeout (plus a poll)
        deadline = time.monotonic() + 6
        for sock in slow:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                while sock.recv(65536):  # nothing, or a 503 for one refused outright; then end-of-file
                    pass
            except ConnectionResetError:
                pass
            except TimeoutError:
                raise AssertionError("a slow connection is still open past the request timeout") from None
        wait_for(lambda: closed_after, 6, "the trickling connection to be closed")
        assert closed_after[0] < 2.0 + 3.0, closed_after  # request timeout 2 s (+ the send that notices)
        m = metrics(s)
        dropped = {
            dict(labels)["reason"]: v
            for (name, labels), v in m.items()
            if name == "modelotel_serve_dropped_connections_total"
        }
        assert dropped.get("evicted", 0) + dropped.get("timeout", 0) >= 41 - 8, dropped
        assert threads_of(pid) <= base_threads + 2, "handler threads left behind"
    finally:
        stop.set()
        for sock in slow:
            sock.close()
        code = s.stop()
    assert code == 0, s.output()
    assert "Traceback" not in s.output()


def test_clients_that_go_away_are_one_counted_log_line_never_a_traceback(tmp_path):
    line = lines_of(1)[0].encode()
    s = serve(tmp_path)
    try:
        for _ in range(15):  # gone mid-body
            sock = socket.create_connection(("127.0.0.1", s.http_port), timeout=10)
            sock.sendall(
                b"POST /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(line)}\r\n\r\n".encode()
                + line[:100]
            )
            rst_close(sock)
        for _ in range(15):  # gone before reading the answer of a large response
            sock = socket.create_connection(("127.0.0.1", s.metrics_port), timeout=10)
            sock.sendall(b"GET /status?at=1800000010 HTTP/1.1\r\nHost: x\r\n\r\n")
            rst_close(sock)
        time.sleep(0.5)
        assert http("GET", f"{s.url}/healthz")[0] == 200
        m = metrics(s)
        dropped = sum(v for (name, _), v in m.items() if name == "modelotel_serve_dropped_connections_total")
        assert dropped >= 15, m
        assert events_at(s, EPOCH + 10) == 0  # nothing of the cut bodies counted
    finally:
        assert s.stop() == 0, s.output()
    log = s.output()
    assert "Traceback" not in log, log
    drop_lines = [ln for ln in log.splitlines() if "closed before its answer" in ln]
    assert len(drop_lines) == 1, log  # one line (rate-limited) with the totals; every drop is counted above


def test_status_at_an_absurd_time_is_a_400_with_the_reason(tmp_path):
    s = serve(tmp_path)
    try:
        for at in ("1e18", "-1e12", "1e12", "nan", "inf", "-1"):
            code, body, _ = http("GET", f"{s.url}/status?at={at}")
            assert code == 400, (at, code, body)
            assert "between 1970-01-01 and 9999-12-31" in json.loads(body)["error"], body
        assert http("GET", f"{s.url}/status?at=253402300799")[0] == 200  # the last printable second
        assert http("GET", f"{s.url}/status?at=0")[0] == 200
    finally:
        assert s.stop() == 0, s.output()
    assert "Traceback" not in s.output()


def test_serve_exits_4_when_the_last_snapshot_cannot_be_written(tmp_path):
    state = tmp_path / "state"
    s = serve(tmp_path, "--snapshot-every", "1h", state=state)
    assert post_json(s, lines_of(1)[0]) == (200, {})
    shutil.rmtree(state)
    state.write_text("not a directory any more")  # root can write anywhere: take the directory away instead
    code = s.stop()
    log = s.output()
    assert code == 4, log
    assert "cannot write the snapshot" in log and "state was not saved" in log, log
    assert "Traceback" not in log


def test_temporary_snapshots_left_by_a_killed_writer_are_removed_at_start(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    dead = 4_000_000  # above pid_max's usual ceiling: no such process
    while True:
        try:
            os.kill(dead, 0)
            dead += 1
        except ProcessLookupError:
            break
    stray = state / f".{SNAPSHOT_NAME}.{dead}.tmp"
    stray.write_bytes(b"half a snapshot")
    live = state / f".{SNAPSHOT_NAME}.{os.getpid()}.tmp"  # a running process's: maybe being written, kept
    live.write_bytes(b"in progress")
    s = serve(tmp_path, state=state)
    try:
        log = s.output()
        assert not stray.exists(), log
        assert live.exists()
        assert stray.name in log and "removed 1 temporary snapshot" in log, log
    finally:
        assert s.stop() == 0, s.output()


def test_unusable_limit_flags_are_one_line_exit_3(tmp_path):
    spec_path = tmp_path / "slo.yaml"
    spec_path.write_text(SERVE_SPEC)
    for flag, value in (("--max-series", "0"), ("--max-connections", "0"), ("--request-timeout", "0.1s")):
        p = subprocess.run(
            [sys.executable, "-m", "modelotel", "serve", "--slo", str(spec_path), flag, value, "--grpc-port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 3, (flag, p.returncode, p.stderr)
        assert flag in p.stderr and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
