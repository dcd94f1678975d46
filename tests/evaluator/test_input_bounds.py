"""``modelotel evaluate`` on hostile inputs: memory never follows the input's worst line (issue 15, finding 11).

Real ``modelotel evaluate`` subprocesses, each started by a small wrapper that reports the child's peak RSS
(``resource.getrusage(RUSAGE_CHILDREN)``, so only that process counts): an over-long line is skipped unread and
counted as a corrupt line with the reason (at a limit set by MODELOTEL_MAX_LINE_BYTES, and at the default); a
gzip bomb is refused with one clear message; devices, FIFOs and sockets given as data or SLO files are refused
in one line, never read and never waited on. Lines around the bad one still count exactly.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from telemetry_gen import Event, export_lines

SPEC = """
slos:
  - {name: errors, model: fraud, sli: error_ratio, objective: 0.9, window: 1h, min_events: 1}
"""
MiB = 1 << 20
# the wrapper: run the command, then print its exit code and peak RSS (bytes) as the last line of stderr
MEASURE = (
    "import resource, subprocess, sys\n"
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=60)\n"
    "sys.stdout.write(p.stdout)\n"
    "sys.stderr.write(p.stderr)\n"
    "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, file=sys.stderr)\n"
)


def evaluate(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str, int]:
    """(exit code, stdout, stderr, peak RSS in bytes) of ``modelotel evaluate args``."""
    p = subprocess.run(
        [sys.executable, "-c", MEASURE, sys.executable, "-m", "modelotel", "evaluate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    *rest, last = p.stderr.rstrip("\n").split("\n")
    code, rss = map(int, last.split())
    return code, p.stdout, "\n".join(rest), rss


def good_lines() -> tuple[list[str], int]:
    events = [Event("a", 0.5 + i * 0.5, 0.05, error=i % 4 == 0) for i in range(40)]
    return export_lines(events, interval=10, end=20), len(events)


def write_with_long_line(path: Path, long_bytes: int) -> None:
    """Good lines, one line of ``long_bytes`` bytes (JSON-looking, written a MiB at a time), good lines."""
    lines, _ = good_lines()
    with open(path, "wb") as fh:
        fh.write((lines[0] + "\n").encode())
        fh.write(b'{"resourceMetrics":[],"padding":"')
        left = long_bytes - 40
        chunk = b"x" * MiB
        while left > 0:
            fh.write(chunk[: min(left, MiB)])
            left -= MiB
        fh.write(b'"}\n')
        for line in lines[1:]:
            fh.write((line + "\n").encode())


@pytest.fixture()
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "slo.yaml"
    path.write_text(SPEC)
    return path


def events_of(stdout: str) -> tuple[int, dict]:
    doc = json.loads(stdout)
    return doc["slos"][0]["events"], doc["inputs"][0]


def test_a_line_over_the_limit_is_skipped_unread_and_counted_with_the_reason(tmp_path, spec):
    data = tmp_path / "long.jsonl"
    write_with_long_line(data, 200 * MiB)
    _, n_events = good_lines()
    code, out, err, rss = evaluate(
        "--slo", str(spec), "--data", str(data), "--format", "json", env={"MODELOTEL_MAX_LINE_BYTES": str(MiB)}
    )
    assert code == 0, err
    assert rss < 150 * MiB, f"peak RSS {rss / MiB:.0f} MiB for a 200 MiB line at a 1 MiB limit"
    events, report = events_of(out)
    assert events == n_events  # the lines around it count exactly
    assert report["corrupt_lines"] == 1, report
    assert "over the 1048576-byte limit" in json.dumps(report), report


def test_at_the_default_limit_a_100_mb_line_is_skipped_in_bounded_memory(tmp_path, spec):
    data = tmp_path / "long.jsonl"
    write_with_long_line(data, 100 * MiB)
    _, n_events = good_lines()
    code, out, err, rss = evaluate("--slo", str(spec), "--data", str(data), "--format", "json")
    assert code == 0, err
    assert rss < 250 * MiB, f"peak RSS {rss / MiB:.0f} MiB for a 100 MiB line at the 64 MiB default"
    events, report = events_of(out)
    assert events == n_events and report["corrupt_lines"] == 1, report
    assert "over the 67108864-byte limit" in json.dumps(report), report


def test_a_gzip_bomb_is_refused_with_one_clear_message_in_bounded_memory(tmp_path, spec):
    bomb = tmp_path / "bomb.jsonl.gz"
    member = gzip.compress(b" " * (16 * MiB), compresslevel=9)  # gzip members concatenate into one stream
    bomb.write_bytes(member * 64)  # 1 GiB of one line, about 1 MB on disk
    code, out, err, rss = evaluate("--slo", str(spec), "--data", str(bomb), "--format", "json")
    assert rss < 250 * MiB, f"peak RSS {rss / MiB:.0f} MiB on a 1 GiB gzip bomb"
    assert code == 4, (code, err)
    lines = [ln for ln in err.splitlines() if ln.startswith("modelotel evaluate: error:")]
    assert len(lines) == 1 and "compression bomb" in lines[0] and "MODELOTEL_MAX_INFLATION" in lines[0], err
    assert "Traceback" not in err


def test_real_compressed_telemetry_is_read_whole_under_the_inflation_limit(tmp_path, spec):
    lines, n_events = good_lines()
    data = tmp_path / "data.jsonl.gz"
    with gzip.open(data, "wt", compresslevel=9) as fh:
        fh.write("\n".join(lines) + "\n")
    code, out, err, _ = evaluate(
        "--slo", str(spec), "--data", str(data), "--format", "json", env={"MODELOTEL_MAX_INFLATION": "2"}
    )
    assert code == 0, err  # small files may always inflate to MIN_INFLATED_BYTES (256 MiB)
    assert events_of(out)[0] == n_events


KEEP_OPEN: list[socket.socket] = []  # bound sockets stay files until the test process ends


def special_files() -> list[tuple[str, Path]]:
    short = Path(tempfile.mkdtemp(prefix="mo-", dir="/tmp"))  # a socket path must be short
    fifo = short / "fifo"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(short / "sock"))  # left bound until the process ends: a real socket file
    KEEP_OPEN.append(sock)
    return [("a FIFO", fifo), ("a character device", Path("/dev/zero")), ("a socket", short / "sock")]


def test_devices_fifos_and_sockets_are_refused_in_one_line_never_read(tmp_path, spec):
    lines, _ = good_lines()
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(lines) + "\n")
    for kind, path in special_files():
        code, _, err, rss = evaluate("--slo", str(spec), "--data", str(path), timeout=20)
        assert code == 4, (kind, code, err)
        assert f"{path}: is {kind}" in err and "not a regular file" in err, err
        code, _, err, rss = evaluate("--slo", str(path), "--data", str(data), timeout=20)
        assert code == 3, (kind, code, err)
        assert f"{path}: is {kind}" in err and "not a regular file" in err, err
        assert "Traceback" not in err and rss < 150 * MiB


def test_unusable_limit_settings_are_one_line_exit_3(tmp_path, spec):
    lines, _ = good_lines()
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(lines) + "\n")
    for name, value in (("MODELOTEL_MAX_LINE_BYTES", "lots"), ("MODELOTEL_MAX_INFLATION", "0")):
        code, _, err, _ = evaluate("--slo", str(spec), "--data", str(data), env={name: value})
        assert code == 3, (name, code, err)
        assert name in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2, err


def test_an_oversized_spec_file_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as fh:
        fh.write(b"slos:\n# " + b"x" * (17 * MiB) + b"\n")
    code, _, err, rss = evaluate("--slo", str(big), "--data", str(big))
    assert code == 3 and "over the 16 MiB a spec may have" in err, err
    assert rss < 150 * MiB

