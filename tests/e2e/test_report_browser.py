"""The demo's report as a person sees it: headless Chromium at 1280 px and 390 px, measured in the rendered DOM.

The demo runs for real (examples/demo.py, file export, a short --duration); its report is opened over the
DevTools protocol (tests/browser_support.py) and tests/e2e/report_checks.js measures it. Each test fails on
one defect the report at 1aad91a had (docs/report.md lists which): a legend swatch not the colour of its
series, text overlapping text or leaving its chart, a linear latency axis over data spanning more than a
decade, a firing tier without its threshold line and windows, the summary not first, the page wider than a
phone. Screenshots are kept in $MODELOTEL_ARTEFACTS (or pytest's tmp directory).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelotel.evaluator.durations import format_duration
from modelotel.evaluator.spec import load_specs

from browser_support import Browser
from collector_support import require_binary

ROOT = Path(__file__).resolve().parents[2]
CHECKS = (Path(__file__).parent / "report_checks.js").read_text()
WIDTHS = (1280, 390)
UNITS = {"µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    """The demo's output directory and its stdout (a 6 s run, as tests/e2e/test_examples.py runs it)."""
    tmp = tmp_path_factory.mktemp("report-demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELOTEL_"))}
    env["MODELOTEL_EXAMPLES_CACHE"] = str(tmp_path_factory.mktemp("model-cache"))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "sdk"), os.environ.get("PYTHONPATH", "")])
    out = tmp / "demo"
    cmd = [sys.executable, str(ROOT / "examples" / "demo.py"), "--out", str(out), "--duration", "6", "--no-collector"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=tmp)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "report.html").stat().st_size > 0
    return out, proc.stdout


@pytest.fixture(scope="module")
def measured(demo, tmp_path_factory) -> dict[int, dict]:
    """The checks' results at each width; the screenshots saved as artefacts."""
    chromium = require_binary(shutil.which("chromium"), "chromium", "make test-deps installs Debian's chromium")
    artefacts = Path(os.environ.get("MODELOTEL_ARTEFACTS") or tmp_path_factory.mktemp("artefacts"))
    artefacts.mkdir(parents=True, exist_ok=True)
    out, _ = demo
    results = {}
    with Browser(chromium, tmp_path_factory.mktemp("profile")) as browser:
        for width in WIDTHS:
            page = browser.open((out / "report.html").as_uri(), width)
            results[width] = page.evaluate(CHECKS)
            page.screenshot(artefacts / f"report-{width}px.png")
            results[width]["console"] = page.console_messages()
    return results


@pytest.mark.parametrize("width", WIDTHS)
def test_legend_swatches_have_their_series_colour(measured, width):
    assert measured[width]["legend"] == []


@pytest.mark.parametrize("width", WIDTHS)
def test_no_text_overlaps_or_leaves_its_chart(measured, width):
    assert measured[width]["overlap"] == []


@pytest.mark.parametrize("width", WIDTHS)
def test_nothing_wider_than_the_viewport(measured, width):
    assert measured[width]["width"] == []


@pytest.mark.parametrize("width", WIDTHS)
def test_the_summary_comes_first(measured, width):
    assert measured[width]["first"] == []


def test_budget_axis_in_percent(measured):
    assert measured[1280]["budget"] == []


def test_the_page_runs_no_script(measured, demo):
    html = (demo[0] / "report.html").read_text()
    assert "<script" not in html.lower() and not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert all(not m["console"] for m in measured.values())


def _seconds(label: str) -> float:
    assert re.fullmatch(r"[\d.]+ (µs|ms|s|min)", label), f"latency tick {label!r} has no unit of time"
    number, unit = label.split()
    return float(number) * UNITS[unit]


def test_latency_axis_is_logarithmic_over_more_than_a_decade(measured, demo):
    """The demo's client saw p50 of a few ms and a 400 ms slow period (its own numbers, not the report's): the
    latency ticks must sit at equal distances per factor of ten, labelled with a unit."""
    stdout = demo[1]
    client = [float(v) for v in re.findall(r"p(?:50|99)\s+([\d.]+) ms", stdout)]
    assert client and max(client) > 10 * min(client), stdout  # the premise: the data span more than a decade
    for width in WIDTHS:
        (ticks,) = measured[width]["latency"]
        assert len(ticks) >= 3, ticks
        values = [_seconds(label) for label, _ in ticks]  # fails on a unitless "0", "200", "400"
        ys = [y for _, y in ticks]
        per_decade = [(ys[i] - ys[i + 1]) / math.log10(values[i + 1] / values[i]) for i in range(len(ticks) - 1)]
        assert max(per_decade) - min(per_decade) < 1.0, list(zip(values, per_decade, strict=False))
        assert values[-1] / values[0] > 10


def test_every_firing_tier_has_its_threshold_and_windows(measured, demo):
    """Which tiers fire comes from `modelotel evaluate --format json` on the same file, not from the report."""
    out = demo[0]
    proc = subprocess.run(
        [sys.executable, "-m", "modelotel", "evaluate", "--slo", str(ROOT / "examples" / "slo.yaml"), "--data",
         str(out / "telemetry.jsonl"), "--format", "json"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT / "sdk")},
    )  # fmt: skip
    doc = json.loads(proc.stdout)  # "alerts": the firing tiers, with their windows
    firing = [(s["name"], a) for s in doc["slos"] for a in s["alerts"]]
    assert firing, doc  # the demo's end has a tier firing (fraud-ood's page-fast)
    for width in WIDTHS:
        charts = measured[width]["charts"]
        for slo, alert in firing:
            assert slo in charts, f"no charts under a heading {slo!r}: {sorted(charts)}"
            texts = [k for chart in charts[slo] for k in chart["keys"]]
            assert any(k.startswith(f"{alert['name']} ") for k in texts), (slo, alert, texts)  # its threshold
            for w in (alert["short_window"], alert["long_window"]):
                assert any("burn" in k and k.endswith(f" {w}") for k in texts), (slo, alert, w)  # both windows
            summary = measured[width]["summary"]
            assert alert["name"] in summary.get(slo, {}).get("tiers", []), summary  # the summary says it fires


def test_every_alert_tier_is_drawn(measured):
    """Not only the firing ones: each tier of examples/slo.yaml has its threshold and both windows' burn."""
    slos = load_specs([str(ROOT / "examples" / "slo.yaml")]).slos
    for width in WIDTHS:
        charts = measured[width]["charts"]
        for slo in slos:
            texts = [k for chart in charts.get(slo.name, []) for k in chart["keys"]]
            for tier in slo.alert_tiers:
                assert any(k.startswith(f"{tier.name} {tier.burn_rate:g}x") for k in texts), (slo.name, tier.name)
                for w in (tier.short_window, tier.long_window):
                    window = format_duration(w)
                    assert any("burn" in k and k.endswith(f" {window}") for k in texts), (slo.name, tier.name, window)
