"""``modelotel drift``, ``compare`` and ``report`` on telemetry written by the real SDK in a subprocess.

The app records three phases with ``@instrument_model``: version 1 on normal inputs, version 2 on the same
inputs but 3 ms slower and failing 10% of calls (the canary), then version 1 on inputs shifted by 1.5 standard
deviations (drift). The report is rendered by headless Chromium (Debian's ``chromium``): a screenshot is taken
and the browser log must hold no console message or page error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from collector_support import require_binary

LONG = "amount_to_average_ratio_30d"
APP = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import modelotel
    LONG = "amount_to_average_ratio_30d"  # a name longer than any fixed column
    from modelotel.ood import MahalanobisScorer

    rng = np.random.default_rng(7)
    scorer = MahalanobisScorer().fit(rng.normal(size=(3000, 4)))
    modelotel.configure(service_name="quality", exporter="file", path=sys.argv[1], export_interval=0.2)

    def make(version, delay, fail_every):
        @modelotel.instrument_model(name="fraud", version=version, ood=scorer, feature_names=["a", LONG, "c", "d"],
                                    numeric_features=["a", LONG])
        def predict(x, i):
            if delay:
                time.sleep(delay)
            if fail_every and i % fail_every == 0:
                raise ValueError("model failed")
            p = 1 / (1 + np.exp(-2 * x[0]))
            return np.array([1 - p, p])
        return predict

    ids = []

    def make_labelled(version):
        @modelotel.instrument_model(name="fraud", version=version, labels=["legit", "fraud"])
        def predict(x, i):
            ids.append(modelotel.current_prediction_id())
            p = 1 / (1 + np.exp(-2 * x[0]))
            return np.array([1 - p, p])
        return predict

    def run(predict, n, shift):
        for i in range(n):
            try:
                predict(rng.normal(size=4) + shift, i)
            except ValueError:
                pass
        time.sleep(0.5)

    # feedback with a fairness group: group "b" gets "fraud" predicted far more often (selection rate)
    scored = make_labelled("1")
    truth = {}
    for i in range(400):
        group = "a" if i % 2 else "b"
        x = rng.normal(size=4) + (1.0 if group == "b" else 0.0)
        scored(x, i)
        truth[ids[-1]] = (group, "fraud" if x[0] + 0.3 * rng.normal() > 0 else "legit")
    for pid, (group, label) in truth.items():
        modelotel.record_feedback(pid, label=label, group=group, positive_label="fraud")
    time.sleep(0.5)

    v1, v2 = make("1", 0.0, 0), make("2", 0.003, 10)
    for _ in range(4):          # interleaved, as a canary receives a share of live traffic
        run(v1, 400, 0.0)
        run(v2, 150, 0.0)
    run(v1, 1500, 1.5)          # drifted inputs (last, so "last:1s" holds only them)
    modelotel.shutdown()
    """
)


@pytest.fixture(scope="module")
def telemetry(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("quality") / "telemetry.jsonl"
    subprocess.run([sys.executable, "-c", APP, str(path)], check=True, timeout=120)
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelotel", *args], capture_output=True, text=True, timeout=120)


def test_drift_detects_the_shift_and_not_the_baseline(telemetry):
    shifted = run("drift", "--data", str(telemetry), "--format", "json", "--current", "last:1s", "--resolution", "0.2")
    assert shifted.returncode == 1, shifted.stderr
    doc = json.loads(shifted.stdout)
    by_signal = {s["signal"]: s for s in doc["signals"] if s["model"] == "fraud"}
    for signal in ("feature:a", f"feature:{LONG}", "ood_score"):
        assert by_signal[signal]["psi_tier"] == "significant", by_signal[signal]
        assert by_signal[signal]["drifted"]["psi"]
    # the same range against itself says nothing about drift: inconclusive (exit 2) with the reason, never
    # "0 drifted" and exit 0 (issue 14, finding 8)
    same = run(
        "drift",
        "--data",
        str(telemetry),
        "--format",
        "json",
        "--resolution",
        "0.2",
        "--reference",
        "first:2s",
        "--current",
        "first:2s",
    )
    assert same.returncode == 2, same.stdout + same.stderr
    assert "INCONCLUSIVE" in same.stderr and "overlap" in same.stderr and not same.stdout


def test_drift_table_columns_line_up_with_long_names(telemetry):
    table = run("drift", "--data", str(telemetry), "--current", "last:1s", "--resolution", "0.2")
    lines = table.stdout.splitlines()
    assert any(f"feature:{LONG}" in line for line in lines), table.stdout
    rows = [lines[0]] + [line for line in lines[1:] if line.startswith("fraud ")]
    assert len(rows) >= 4, table.stdout
    end = rows[0].index("ref n") + len("ref n")  # right-aligned numbers end under their header
    for row in rows[1:]:
        assert row[end - 1].isdigit() and row[end] == " ", (row, rows[0])


def test_compare_rolls_back_the_slow_failing_canary(telemetry):
    proc = run(
        "compare",
        "--data",
        str(telemetry),
        "--baseline",
        "version=1",
        "--candidate",
        "version=2",
        "--format",
        "json",
        "--min-calls",
        "300",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["verdict"] == "rollback"
    assert doc["candidate"]["calls"] == 600 and doc["baseline"]["calls"] == 400 + 1600 + 1500
    failed = {c["name"] for c in doc["checks"] if c["status"] == "fail"}
    assert "error ratio" in failed and any(name.startswith("latency") for name in failed)
    # the text: every check on its line with its detail wrapped to the terminal, each failing one under the verdict
    text = subprocess.run(
        [sys.executable, "-m", "modelotel", "compare", "--data", str(telemetry), "--baseline", "version=1"]
        + ["--candidate", "version=2", "--min-calls", "300"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "72"},
    )
    assert text.returncode == 1, text.stderr
    lines = text.stdout.splitlines()
    assert max(map(len, lines)) <= 72, text.stdout
    for c in doc["checks"]:
        (head,) = [line for line in lines if re.match(rf"^  {c['status']} +{re.escape(c['name'])} ", line)]
        start = lines.index(head)
        shown = " ".join(line.strip() for line in lines[start : start + 4])
        assert " ".join(c["detail"].split()[:3]) in shown  # the detail follows its check, wrapped
    gating_failed = [c["name"] for c in doc["checks"] if c["gating"] and c["status"] == "fail"]
    verdict = lines.index(f"verdict: ROLLBACK: {len(gating_failed)} gating checks failed")
    assert lines[verdict + 1 : verdict + 1 + len(gating_failed)] == [f"  - {name}" for name in gating_failed]
    # too little data: inconclusive, exit 2
    few = run(
        "compare",
        "--data",
        str(telemetry),
        "--baseline",
        "version=1",
        "--candidate",
        "version=2",
        "--min-calls",
        "100000",
    )
    assert few.returncode == 2, few.stdout + few.stderr
    bad = run("compare", "--data", str(telemetry), "--baseline", "version", "--candidate", "version=2")
    assert bad.returncode == 3 and "key=value" in bad.stderr


def test_fairness_per_group_rates(telemetry):
    proc = run("fairness", "--data", str(telemetry), "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (model,) = json.loads(proc.stdout)["models"]
    groups = {g["group"]: g for g in model["groups"]}
    assert set(groups) == {"a", "b"} and groups["a"]["feedback"] == groups["b"]["feedback"] == 200
    # inputs of group b are shifted towards "fraud": its selection rate is clearly higher
    assert groups["b"]["selection_rate"] > groups["a"]["selection_rate"] + 0.2
    dpd = groups["b"]["selection_rate"] - groups["a"]["selection_rate"]
    assert model["demographic_parity_difference"] == pytest.approx(dpd, abs=1e-6)
    strict = run("fairness", "--data", str(telemetry), "--max-difference", "0.1")
    assert strict.returncode == 1 and "demographic parity difference" in strict.stdout


SLO = textwrap.dedent(
    """
    slos:
      - name: fraud-latency
        model: fraud
        sli: latency
        threshold: 2ms
        objective: 0.95
        window: 1h
      - name: fraud-errors
        model: fraud
        sli: error_ratio
        objective: 0.99
        window: 1h
    """
)


def test_report_renders_in_headless_chromium(telemetry, tmp_path):
    chromium = require_binary(shutil.which("chromium"), "chromium", "make test-deps installs Debian's chromium")
    spec = tmp_path / "slo.yaml"
    spec.write_text(SLO)
    out = tmp_path / "report.html"
    proc = run("report", "--slo", str(spec), "--data", str(telemetry), "--output", str(out), "--resolution", "0.2")
    assert proc.returncode == 0, proc.stderr
    html = out.read_text()
    size = len(html.encode())
    assert 2_000 < size < 300_000, size  # self-contained and small
    assert "<script" not in html and "http://" not in html and "https://" not in html  # no CDN, no JS
    for needle in ("fraud-latency", "fraud-errors", "latency quantiles", "PSI per signal", "burn rate"):
        assert needle in html
    assert "fraud: reliability (ECE" in html  # the feedback confidences, split by ml.feedback.correct
    assert html.count("<svg") >= 5
    shot = tmp_path / "report.png"
    browser = subprocess.run(
        [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1400,2600",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            out.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert browser.returncode == 0, browser.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    console = [
        line for line in browser.stderr.splitlines() if re.search(r"CONSOLE|Uncaught|ERROR:.*(page|script)", line)
    ]
    assert not console, console
