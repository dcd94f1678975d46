"""What the CLI prints and writes, as users run it (a subprocess, real files): the burn column names its windows,
other signals' lines are quiet unless ``--verbose``, ``report --output`` never overwrites without ``--force``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from modelotel.evaluator.durations import parse_duration

from telemetry_gen import Event, export_lines, write_lines

SPEC = textwrap.dedent(
    """
    slos:
      - name: two-windows
        model: fraud
        sli: latency
        threshold: 250ms
        objective: 0.95
        window: 30m
        min_events: 50
        alerts:
          page-fast: {long_window: 10m, short_window: 1m}
          page-slow: off
          ticket-fast: off
          ticket-slow: off
      - name: default-tiers
        model: fraud
        sli: error_ratio
        objective: 0.99
        window: 30m
        min_events: 50
    """
)
# the collector's file route writes every signal to one file: a span line and a log line beside the metrics
SPAN_LINE = json.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {}, "spans": []}]}]})
LOG_LINE = json.dumps({"resourceLogs": [{"resource": {}, "scopeLogs": [{"scope": {}, "logRecords": []}]}]})


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, "-m", "modelotel", *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env
    )


@pytest.fixture
def files(tmp_path):
    spec = tmp_path / "slo.yaml"
    spec.write_text(SPEC)
    events = [Event("a", 1.0 + 3 * i, 0.5 if i % 10 == 0 else 0.02, error=i > 500 and i % 4 == 0) for i in range(600)]
    lines = export_lines(events, interval=10.0, end=1800.0)
    data = tmp_path / "metrics.jsonl"
    write_lines(data, lines)
    mixed = tmp_path / "collector.jsonl"
    write_lines(mixed, [lines[0], SPAN_LINE, SPAN_LINE, LOG_LINE, *lines[1:]])
    return spec, data, mixed


def burn_column(table: str) -> dict[str, str]:
    """SLO name -> its burn cell, cut from the table by the header's column positions."""
    header, _, *rows = table.splitlines()
    start = header.index("burn rate by window")
    end = header.index("alerts")
    cells = {}
    for row in rows:
        if not row.strip():
            break
        cells[row.split()[0]] = row[start:end].strip()
    return cells


def test_the_burn_column_names_each_window_once_with_its_rate(files):
    spec, data, _ = files
    doc = json.loads(run("evaluate", "--slo", str(spec), "--data", str(data), "--format", "json").stdout)
    table = run("evaluate", "--slo", str(spec), "--data", str(data)).stdout
    cells = burn_column(table)
    for slo in doc["slos"]:
        shown = [part.split() for part in cells[slo["name"]].split(" · ")]
        names = [name for name, _ in shown]
        assert len(names) == len(set(names)), shown  # never a window twice
        assert names == sorted(names, key=parse_duration)  # shortest first
        windows = sorted((k for k in slo["burn_rates"] if not k.startswith("window")), key=parse_duration)
        for name, rate in shown:
            exact = slo["burn_rates"][name]
            assert rate.endswith("x") and float(rate[:-1]) == pytest.approx(exact, rel=5e-3, abs=5e-3), (name, rate)
        if len(windows) <= 4:
            assert names == windows
        else:  # the shortest, the first tier's long window, the longest
            assert names == [windows[0], "1h", windows[-1]]
    assert [len(c.split(" · ")) for c in (cells["two-windows"], cells["default-tiers"])] == [2, 3]


def test_other_signals_lines_are_quiet_unless_verbose_and_counted_in_json(files, tmp_path):
    spec, _, mixed = files
    quiet = run("evaluate", "--slo", str(spec), "--data", str(mixed))
    assert quiet.returncode == 0, quiet.stderr
    assert "foreign" not in quiet.stdout + quiet.stderr and "span" not in quiet.stdout + quiet.stderr
    loud = run("evaluate", "--slo", str(spec), "--data", str(mixed), "-v")
    assert f"input {mixed}: 2 span lines, 1 log line (other signals: not metrics, skipped)" in loud.stdout
    assert re.search(rf"input {re.escape(str(mixed))}: [\d,]+ bytes, \d+ lines, ", loud.stdout)
    doc = json.loads(run("evaluate", "--slo", str(spec), "--data", str(mixed), "--format", "json").stdout)
    (inp,) = doc["inputs"]
    assert inp["signal_lines"] == {"traces": 2, "logs": 1} and inp["foreign_lines"] == 0
    assert inp["bytes"] == mixed.stat().st_size and inp["lines"] == len(mixed.read_text().splitlines())
    # a line of no known kind still gets a note, verbose or not; in `report`, on stderr
    odd = tmp_path / "odd.jsonl"
    odd.write_text(mixed.read_text() + json.dumps({"hello": "world"}) + "\n")
    table = run("evaluate", "--slo", str(spec), "--data", str(odd))
    assert "0 corrupt lines, 1 foreign line, 0 unusable points" in table.stdout
    report = run("report", "--slo", str(spec), "--data", str(odd), "-o", str(tmp_path / "r.html"))
    assert report.returncode == 0, report.stderr
    assert "note: input" in report.stderr and "1 foreign line" in report.stderr and "span" not in report.stderr
    verbose_report = run("report", "--slo", str(spec), "--data", str(odd), "-o", str(tmp_path / "v.html"), "-v")
    assert "2 span lines, 1 log line" in verbose_report.stderr


def test_report_never_overwrites_without_force(files, tmp_path):
    spec, data, _ = files
    work = tmp_path / "work"
    work.mkdir()
    first = run("report", "--slo", str(spec), "--data", str(data), cwd=work)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("wrote report.html (")
    original = (work / "report.html").read_bytes()
    # the default is a fresh name once report.html exists, and says which
    second = run("report", "--slo", str(spec), "--data", str(data), cwd=work)
    assert second.returncode == 0, second.stderr
    (fresh,) = re.findall(r"^wrote (report-\d{8}T\d{6}Z(?:-\d+)?\.html) \(", second.stdout, re.M)
    assert (work / fresh).read_bytes().lower().startswith(b"<!doctype html>")
    assert (work / "report.html").read_bytes() == original
    # an existing --output: one line, exit 3, before anything is read (a missing input would be exit 4)
    (work / "keep.html").write_text("mine")
    refused = run("report", "--slo", str(spec), "--data", str(tmp_path / "missing.jsonl"), "-o", "keep.html", cwd=work)
    assert refused.returncode == 3, refused.stderr
    assert (
        refused.stderr.strip() == "modelotel report: error: --output keep.html exists: add --force to overwrite "
        "it, or choose another"
    )
    assert (work / "keep.html").read_text() == "mine"
    forced = run("report", "--slo", str(spec), "--data", str(data), "-o", "keep.html", "--force", cwd=work)
    assert forced.returncode == 0, forced.stderr
    assert (work / "keep.html").read_text() != "mine"
    # a directory that does not exist: exit 4 (the output cannot be written), also before anything is read
    nowhere = run("report", "--slo", str(spec), "--data", str(tmp_path / "missing.jsonl"), "-o", "no/r.html", cwd=work)
    assert (
        nowhere.returncode == 4
        and nowhere.stderr.strip() == "modelotel report: error: --output no/r.html: no directory no"
    )
    # --format meant nothing for an HTML file: it is gone, and asking for it is a usage error
    fmt = run("report", "--slo", str(spec), "--data", str(data), "--format", "json", "-o", "x.html", cwd=work)
    assert fmt.returncode == 3 and "unrecognized arguments: --format" in fmt.stderr
    assert not (work / "x.html").exists()


def test_dashboard_export_interval_sets_the_variable_default_and_refuses_nonsense():
    proc = run("dashboard", "--export-interval", "10s")
    assert proc.returncode == 0, proc.stderr
    variable = next(v for v in json.loads(proc.stdout)["templating"]["list"] if v["name"] == "export_interval")
    assert variable["current"]["value"] == "10s"
    for bad in ("0s", "soon"):
        proc = run("dashboard", "--export-interval", bad)
        assert proc.returncode == 3 and "--export-interval" in proc.stderr and "Traceback" not in proc.stderr, bad
