"""``modelotel evaluate`` and ``modelotel gate`` as users run them: a subprocess, real files, exit codes.

Covers the JSON contract (the fields CI gates read), the table, the gate's exit codes (0 pass, 1 fail,
2 inconclusive, >= 3 unusable spec or input), ``--inconclusive-as``, ``--at`` and one-line errors without a
traceback for bad specs and corrupt, foreign or missing inputs.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap

import pytest

from telemetry_gen import EPOCH, Event, export_lines, write_lines

SPEC = textwrap.dedent(
    """
    slos:
      - name: fraud-latency
        model: fraud
        sli: latency
        threshold: 250ms
        objective: 0.95
        window: 30m
        min_events: 50
      - name: fraud-errors
        model: fraud
        sli: error_ratio
        objective: 0.99
        window: 30m
        min_events: 50
    """
)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelotel", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def files(tmp_path):
    spec = tmp_path / "slo.yaml"
    spec.write_text(SPEC)
    # 600 calls over 30 min; 5% are slow (0.5 s); errors late (every 8th call after the 500th, then all)
    events = [
        Event("a", 1.0 + 3 * i, 0.5 if i % 20 == 0 else 0.02, error=i >= 588 or (i > 500 and i % 8 == 0))
        for i in range(600)
    ]
    data = tmp_path / "metrics.jsonl"
    write_lines(data, export_lines(events, interval=10.0, end=1800.0))
    return spec, data, events


def test_evaluate_json_contract(files):
    spec, data, events = files
    proc = run("evaluate", "--slo", str(spec), "--data", str(data), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    lat, err = doc["slos"]
    for slo in (lat, err):
        for key in ("name", "status", "sli", "objective", "events", "good", "error_budget", "burn_rates", "alerts"):
            assert key in slo
        assert set(slo["error_budget"]) >= {"total", "consumed", "remaining"}
        assert slo["events"] == 600
    assert lat["name"] == "fraud-latency" and lat["threshold"] == 0.25
    assert lat["sli"] == pytest.approx(0.95) and lat["status"] == "pass"  # 30 of 600 slow: exactly at 95%
    bad = sum(e.error for e in events)
    assert err["sli"] == pytest.approx(1 - bad / 600)
    assert err["status"] == "fail"
    assert err["error_budget"]["consumed"] == pytest.approx(bad)
    assert err["error_budget"]["remaining"] == pytest.approx(1 - bad / 6.0)
    # the last 5 minutes hold 100 calls, 12 + 1 of them errors: the 5m burn rate is 13% / 1%
    last5 = [e for e in events if e.t > 1500]
    assert err["burn_rates"]["5m"] == pytest.approx(sum(e.error for e in last5) / len(last5) / 0.01)

    # default tiers: every long window (1h and up) holds all 600 calls; short windows 5m, 30m, 2h, 6h
    def burn(seconds):
        recent = [e for e in events if e.t > 1800 - seconds]
        return sum(e.error for e in recent) / len(recent) / 0.01

    tiers = {"page-fast": (14.4, 300), "page-slow": (6, 1800), "ticket-fast": (3, 7200), "ticket-slow": (1, 21600)}
    expected = {name for name, (rate, short) in tiers.items() if burn(1e9) >= rate and burn(short) >= rate}
    assert {a["name"] for a in err["alerts"]} == expected
    assert "ticket-slow" in expected and "page-fast" not in expected  # the scenario exercises both outcomes
    assert lat["accuracy"]["relative_accuracy"] == pytest.approx(0.0108, abs=1e-4)
    assert doc["inputs"][0]["corrupt_lines"] == 0


def test_evaluate_table(files):
    spec, data, _ = files
    proc = run("evaluate", "--slo", str(spec), "--data", str(data))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["SLO", "status", "SLI"]
    assert any(line.startswith("fraud-latency") and "PASS" in line for line in lines)
    assert any(line.startswith("fraud-errors") and "FAIL" in line for line in lines)


def test_gate_exit_codes(files, tmp_path):
    spec, data, _ = files
    assert run("gate", "--slo", str(spec), "--data", str(data)).returncode == 1
    only_latency = tmp_path / "latency.yaml"
    only_latency.write_text(SPEC.split("  - name: fraud-errors")[0])
    proc = run("gate", "--slo", str(only_latency), "--data", str(data))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gate: PASS" in proc.stderr
    # evaluated 20 minutes in, the window holds ~400 calls; at minute 2 only 40 (< min_events=50)
    early = run("gate", "--slo", str(only_latency), "--data", str(data), "--at", str(EPOCH + 120))
    assert early.returncode == 2, early.stderr
    assert (
        run(
            "gate",
            "--slo",
            str(only_latency),
            "--data",
            str(data),
            "--at",
            str(EPOCH + 120),
            "--inconclusive-as",
            "pass",
        ).returncode
        == 0
    )
    assert (
        run(
            "gate",
            "--slo",
            str(only_latency),
            "--data",
            str(data),
            "--at",
            "2027-01-15T08:02:00Z",
            "--inconclusive-as",
            "fail",
        ).returncode
        == 1
    )


def test_gzip_input_equals_plain(files, tmp_path):
    spec, data, _ = files
    gz = tmp_path / "metrics.jsonl.gz"
    gz.write_bytes(gzip.compress(data.read_bytes()))
    plain = json.loads(run("evaluate", "--slo", str(spec), "--data", str(data), "--format", "json").stdout)
    packed = json.loads(run("evaluate", "--slo", str(spec), "--data", str(gz), "--format", "json").stdout)
    assert [s["sli"] for s in plain["slos"]] == [s["sli"] for s in packed["slos"]]


def test_corrupt_and_foreign_lines_are_counted_with_line_numbers(files, tmp_path):
    spec, data, _ = files
    lines = data.read_text().splitlines()
    mixed = tmp_path / "mixed.jsonl"
    spans = json.dumps({"resourceSpans": []})
    other = json.dumps({"hello": "world"})
    mixed.write_text(
        "\n".join([lines[0], "not json at all", spans, other, *lines[1:], lines[-1][: len(lines[-1]) // 2]])
    )
    proc = run("evaluate", "--slo", str(spec), "--data", str(mixed), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    inp = doc["inputs"][0]
    # spans in the same file (the collector's file route) are another signal: counted apart, not problems
    assert inp["corrupt_lines"] == 2 and inp["foreign_lines"] == 1 and inp["signal_lines"] == {"traces": 1}
    assert [p["line"] for p in inp["problems"]] == [2, 4, len(lines) + 4]
    # the telemetry itself is complete: the truncated copy of the last line is the only damage
    assert [s["events"] for s in doc["slos"]] == [600, 600]
    table = run("evaluate", "--slo", str(spec), "--data", str(mixed))
    assert "2 corrupt lines, 1 foreign line" in table.stdout


@pytest.mark.parametrize(
    ("spec_text", "data_kind", "code", "needle"),
    [
        (
            "slos:\n  - name: x\n    model: m\n    sli: latency\n    threshold: fast\n    objective: 0.9\n"
            "    window: 1h\n",
            "ok",
            3,
            "threshold",
        ),
        ("slos: [", "ok", 3, "slo.yaml"),
        (SPEC, "missing", 4, "missing.jsonl"),
        (SPEC, "binary", 4, "not a text file"),
        (SPEC, "text", 4, "no usable metric data"),
        (SPEC, "directory", 4, "directory"),
    ],
)
def test_unusable_input_one_clear_message(files, tmp_path, spec_text, data_kind, code, needle):
    _, data, _ = files
    spec = tmp_path / "slo.yaml"
    spec.write_text(spec_text)
    target = {"ok": data, "missing": tmp_path / "missing.jsonl", "directory": tmp_path}.get(data_kind)
    if data_kind in ("binary", "text"):
        target = tmp_path / "garbage.jsonl"
        target.write_bytes(b"\x00\x01garbage\n" if data_kind == "binary" else b"hello\n{}\n[1, 2]\n")
    proc = run("gate", "--slo", str(spec), "--data", str(target))
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert needle in proc.stderr


def test_usage_errors_exit_3_not_2(files):
    """argparse's own exit 2 would read as "inconclusive" to a gate: a typo must not pass a pipeline."""
    spec, data, _ = files
    for args in (["gate", "--slo", str(spec)], ["gate", "--slo", str(spec), "--data", str(data), "--bogus"], ["nope"]):
        proc = run(*args)
        assert proc.returncode == 3, (args, proc.stderr)
        assert "error:" in proc.stderr and "Traceback" not in proc.stderr
