"""``modelotel evaluate`` with CBPE, on telemetry written by the real SDK in a subprocess.

Two binary models, each labelled later with ``record_feedback``: ``churn`` reports the true posterior
(calibrated) under covariate shift; ``drifted`` reports the same confidences but its labels come from another
relation (concept drift): CBPE still estimates the old accuracy and the gap to the realized one is flagged. The
app also writes the confidences it returned, so every figure is checked against the exact computation.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

APP = textwrap.dedent(
    """
    import sys, json
    import numpy as np
    import modelotel

    rng = np.random.default_rng(5)
    modelotel.configure(service_name="cbpe", exporter="file", path=sys.argv[1], export_interval=0.2)
    ids, kept = [], {"churn": [], "drifted": []}

    def make(name):
        @modelotel.instrument_model(name=name, version="1", labels=["stay", "churn"])
        def predict(x):
            ids.append(modelotel.current_prediction_id())
            p = 1 / (1 + np.exp(-(1.5 * x - 0.5)))
            return np.array([1 - p, p])
        return predict

    for name in ("churn", "drifted"):
        predict, truth = make(name), {}
        for i in range(3000):
            x = rng.normal(0.8 if i >= 1500 else 0.0, 1.0)  # covariate shift halfway
            probs = predict(x)
            # churn: labels from the posterior the model reports; drifted: from a flatter, shifted one
            p_true = probs[1] if name == "churn" else 1 / (1 + np.exp(-(0.4 * x + 0.5)))
            label = "churn" if rng.random() < p_true else "stay"
            truth[ids[-1]] = label
            kept[name].append([float(probs.max()), int(label == ("churn" if probs[1] >= 0.5 else "stay"))])
        for pid, label in truth.items():
            modelotel.record_feedback(pid, label=label)
    modelotel.shutdown()
    json.dump(kept, open(sys.argv[2], "w"))
    """
)


@pytest.fixture(scope="module")
def telemetry(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("cbpe")
    path, raw = root / "telemetry.jsonl", root / "raw.json"
    subprocess.run([sys.executable, "-c", APP, str(path), str(raw)], check=True, timeout=120)
    return path, {name: np.array(rows) for name, rows in json.loads(raw.read_text()).items()}


def evaluate(spec: Path, data: Path, fmt: str = "json") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "modelotel", "evaluate", "--slo", str(spec), "--data", str(data), "--format", fmt],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_estimated_accuracy_slo_and_the_estimate_beside_realized_accuracy(telemetry, tmp_path):
    data, raw = telemetry
    mean = {name: float(rows[:, 0].mean()) for name, rows in raw.items()}  # exact CBPE: mean top-label confidence
    realized = {name: float(rows[:, 1].mean()) for name, rows in raw.items()}
    spec = tmp_path / "slos.yaml"
    spec.write_text(
        textwrap.dedent(
            f"""
            slos:
              - {{name: churn-estimated-ok, model: churn, sli: estimated_accuracy, threshold: {mean["churn"] - 0.005},
                 objective: 0.9, timeslice: {{window: 1h}}, alerts: off}}
              - {{name: churn-estimated-low, model: churn, sli: estimated_accuracy, threshold: {mean["churn"] + 0.005},
                 objective: 0.9, timeslice: {{window: 1h}}, alerts: off}}
              - {{name: churn-accuracy, model: churn, sli: accuracy, objective: 0.5, alerts: off}}
              - {{name: drifted-accuracy, model: drifted, sli: accuracy, objective: 0.5, alerts: off}}
            """
        )
    )
    out = evaluate(spec, data)
    assert out.returncode == 0, out.stderr
    slos = {s["name"]: s for s in json.loads(out.stdout)["slos"]}
    # the slice holds every prediction of the model: its estimate is the exact mean, 0.5 points from each threshold
    assert slos["churn-estimated-ok"]["status"] == "pass" and slos["churn-estimated-ok"]["timeslices"]["good"] == 1
    assert slos["churn-estimated-low"]["status"] == "fail" and slos["churn-estimated-low"]["timeslices"]["good"] == 0
    assert slos["churn-estimated-ok"]["events"] == 3000
    assert "estimated_accuracy" not in slos["churn-estimated-ok"]  # only beside accuracy SLOs

    for name, flagged in (("churn", False), ("drifted", True)):
        est = slos[f"{name}-accuracy"]["estimated_accuracy"]
        assert est["predictions"] == 3000 and est["judged"] == 3000
        assert abs(est["value"] - mean[name]) <= 1e-9  # the exported sum is exact
        assert est["realized"] == pytest.approx(realized[name], abs=1e-12)
        assert est["gap"] == pytest.approx(mean[name] - realized[name], abs=1e-9)
        assert est["gap_flagged"] is flagged, est
    assert mean["drifted"] - realized["drifted"] > 0.1  # the concept drift is real: the flag could be wrong

    table = evaluate(spec, data, "table")
    assert table.returncode == 0, table.stderr
    assert "churn-accuracy: estimated accuracy" in table.stdout
    assert "drifted-accuracy: estimated accuracy" in table.stdout and "concept drift" in table.stdout
    churn_line = next(line for line in table.stdout.splitlines() if "churn-accuracy: estimated" in line)
    assert "concept drift" not in churn_line


def test_report_shows_the_estimate_beside_realized_accuracy(telemetry, tmp_path):
    data, raw = telemetry
    spec = tmp_path / "slos.yaml"
    spec.write_text(
        "slos:\n"
        "  - {name: churn-accuracy, model: churn, sli: accuracy, objective: 0.5, alerts: off}\n"
        "  - {name: drifted-accuracy, model: drifted, sli: accuracy, objective: 0.5, alerts: off}\n"
    )
    out = tmp_path / "report.html"
    proc = subprocess.run(
        [sys.executable, "-m", "modelotel", "report", "--slo", str(spec), "--data", str(data), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    html = out.read_text()
    rows = {name: html.split(f"<td>{name}-accuracy</td>")[1].split("</tr>")[0] for name in ("churn", "drifted")}
    for name in rows:
        assert f"estimated accuracy {raw[name][:, 0].mean():.3%} (CBPE)" in rows[name]
        assert "label coverage " in rows[name] and " predictions)" in rows[name]  # accuracy: judged of predicted
    assert "concept drift" in rows["drifted"] and "concept drift" not in rows["churn"]
