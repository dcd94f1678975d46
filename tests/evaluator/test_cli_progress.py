"""Progress of a long read, as users see it: a bar redrawn in place on a terminal (a pty), plain lines in a pipe.

The slow input is a real HTTP server on loopback that answers the Prometheus API's queries (with no series) and
holds each answer 50 ms for the first SLOW_S seconds: ``modelotel evaluate`` reads it for about that long (281
range queries over the default 35 days), then exits 4 (no usable metric data) as it would on an empty server.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modelotel.cli.progress import BAR_EVERY_S, LINE_EVERY_S, PROGRESS_AFTER_S, Progress

SLOW_S = 3.5
SPEC = """\
slos:
  - name: latency
    model: fraud
    sli: latency
    threshold: 250ms
    objective: 0.99
    window: 30m
"""


@pytest.fixture
def slow_prometheus():
    started: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            if not started:
                started.append(time.monotonic())
            if time.monotonic() - started[0] < SLOW_S:
                time.sleep(0.05)
            data = [] if self.path.startswith("/api/v1/label/") else {"resultType": "matrix", "result": []}
            body = json.dumps({"status": "success", "data": data}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def command(tmp_path, url: str) -> list[str]:
    spec = tmp_path / "slo.yaml"
    spec.write_text(SPEC)
    return [sys.executable, "-m", "modelotel", "evaluate", "--slo", str(spec), "--data", url]


def test_a_bar_redrawn_in_place_on_a_terminal_then_erased(tmp_path, slow_prometheus):
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "90"}
    proc = subprocess.Popen(
        command(tmp_path, slow_prometheus), stdout=subprocess.PIPE, stderr=follower, env=env, text=False
    )
    os.close(follower)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(30)
    os.close(leader)
    text = out.decode()
    assert proc.returncode == 4, text  # an empty server: no usable metric data
    frames = [f for f in text.split("\r\x1b[K") if f.startswith("reading ")]
    assert len(frames) >= 3, text  # redrawn in place, several times in ~1.5 s
    for frame in frames:
        assert "\n" not in frame and len(frame) <= 89, frame  # never wrapped: it could not be redrawn
        assert re.search(r"\d+%  \[[#.]{20}\]  [\d,]+/[\d,]+ queries  [\d,.]+ queries/s", frame), frame
    assert any("ETA " in f for f in frames)
    done = [int(m) for f in frames for m in re.findall(r"  ([\d,]+)/[\d,]+ queries", f)]
    assert done == sorted(done)  # the amount read only grows
    # erased at the end: the error line starts on a clean line, right after the erase
    last = text.rindex("\r\x1b[K")
    assert text[last + 4 :].lstrip("\r\n").startswith("modelotel evaluate: error: no usable metric data"), text


def test_plain_lines_in_a_pipe(tmp_path, slow_prometheus):
    started = time.monotonic()
    proc = subprocess.run(command(tmp_path, slow_prometheus), capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode == 4, proc.stderr
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("reading ")]
    # one after PROGRESS_AFTER_S, one every LINE_EVERY_S after it, and the last one at the end
    assert 2 <= len(lines) <= 2 + int((elapsed - PROGRESS_AFTER_S) / LINE_EVERY_S), proc.stderr
    for line in lines:
        assert re.fullmatch(rf"reading {re.escape(slow_prometheus)}: +\d+%  [\d,]+/[\d,]+ queries  .*", line), line
    assert re.search(r" 100%  (\d+)/\1 queries  .* in \d+s$", lines[-1]), lines[-1]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_nothing_before_the_delay_then_bytes_rate_and_time_left():
    """Files are counted in bytes: rate in MB/s, time left from it; nothing at all for a short run."""
    clock, stream = Clock(), io.StringIO()
    quick = Progress(stream, clock, tty=True)
    clock.now += PROGRESS_AFTER_S - 0.1
    quick("telemetry.jsonl", 10_000_000, 10_000_000)
    quick.close()
    assert stream.getvalue() == ""

    progress = Progress(stream, clock, tty=True)
    for _ in range(12):  # 4 MB read every 0.25 s: 16 MB/s
        clock.now += 0.25
        done = progress.state[1] + 4_000_000 if progress.state else 4_000_000
        progress("telemetry.jsonl", done, 100_000_000)
    frames = [f for f in stream.getvalue().split("\r\x1b[K") if f]
    assert frames, stream.getvalue()
    # at 3.0 s (12 x 0.25): 48 MB of 100 at 16 MB/s, 52 MB left: 3.25 s, shown rounded up
    assert frames[-1] == "reading telemetry.jsonl   48%  [##########..........]  48.0/100.0 MB  16.0 MB/s  ETA 4s"
    redraws = len(frames)
    assert redraws <= (3.0 - PROGRESS_AFTER_S) / BAR_EVERY_S + 1
    progress.close()
    assert stream.getvalue().endswith("\r\x1b[K")
