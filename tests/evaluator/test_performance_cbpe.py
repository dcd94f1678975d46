"""CBPE in `modelotel performance`: a binary model declared with positive_label= exports its confidences by
predicted label, so precision, recall and F1 are estimated before any label arrives; the estimate equals the
exact computation on the confidences the model gave (sums are exact in the sketches), for outputs read on the
hot path and on the export thread alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

import modelotel
import modelotel.conventions as conv
from modelotel.evaluator.sources import read

ROOT = Path(__file__).resolve().parents[2]
SDK = str(Path(modelotel.__file__).resolve().parents[1])

SERVE = """
import json, sys, numpy as np, modelotel
modelotel.configure(service_name="svc", path=sys.argv[1], export_interval=3600)

@modelotel.instrument_model(name="fraud", version="1", labels=["legit", "fraud"], positive_label="fraud")
def predict(p, wrapped):
    probs = [1.0 - p, p]
    return {"probabilities": probs} if wrapped else np.array(probs)  # read now / on the export thread

rng = np.random.default_rng(11)
rows = []
for i in range(3000):
    p = float(rng.uniform(0.01, 0.99))
    predict(p, i % 2 == 0)
    truth = "fraud" if rng.random() < p else "legit"
    rows.append({"id": modelotel.last_prediction_id(), "p": p, "truth": truth})
modelotel.shutdown()
json.dump(rows, open(sys.argv[2], "w"))
"""

LABEL = """
import json, sys, modelotel
modelotel.configure(service_name="labeller", path=sys.argv[1], export_interval=3600)
for row in json.load(open(sys.argv[2]))[:1000]:
    assert modelotel.record_feedback(row["id"], label=row["truth"])
modelotel.shutdown()
"""


def _run(code: str, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": SDK, "MODELOTEL_FEEDBACK_KEY": "cbpe-test-key-0123456789"}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]


def test_binary_estimates_equal_the_exact_expectation_of_the_confidences(tmp_path):
    served, labelled, ids = tmp_path / "served.jsonl", tmp_path / "labelled.jsonl", tmp_path / "ids.json"
    _run(SERVE, str(served), str(ids))
    _run(LABEL, str(labelled), str(ids))
    rows = json.loads(ids.read_text())
    p = np.array([r["p"] for r in rows])

    # the confidence histogram is split by predicted label, every prediction in exactly one series
    deltas, _ = read(str(served), {conv.PREDICTION_CONFIDENCE_METRIC})
    by_label: dict = {}
    for d in deltas:
        label = d.attributes.get(conv.PREDICTION_LABEL)
        by_label[label] = by_label.get(label, 0) + d.sketch.count
    assert by_label == {"fraud": int((p > 0.5).sum()), "legit": int((p <= 0.5).sum())}

    out = subprocess.run(
        [sys.executable, "-m", "modelotel", "performance", "--data", str(served), str(labelled), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    est = json.loads(out.stdout)["models"][0]["estimated"]
    assert est["positive_label"] == "fraud"  # named by the model: the feedback carries its positive flags
    # exact expectations of a calibrated model from the raw probabilities
    pred_pos = p > 0.5
    s_pos = p[pred_pos].sum()  # E[TP]
    s_neg = (1 - p[~pred_pos]).sum()  # E[TN]
    n_pos, n_neg = pred_pos.sum(), (~pred_pos).sum()
    precision = s_pos / n_pos
    recall = s_pos / (s_pos + n_neg - s_neg)
    f1 = 2 * s_pos / (s_pos + n_pos + n_neg - s_neg)
    accuracy = np.maximum(p, 1 - p).mean()
    binary = est["binary"]
    assert abs(est["accuracy"]["value"] - accuracy) < 1e-9
    assert abs(binary["precision"]["value"] - precision) < 1e-9
    assert abs(binary["recall"]["value"] - recall) < 1e-9
    assert abs(binary["f1"]["value"] - f1) < 1e-9
    assert est["predictions"] == 3000 and binary["predicted_positive"] == n_pos
    # beside the realized figures of the 1,000 labelled predictions: a calibrated model, no flagged gap
    assert binary["realized_precision"] is not None and est["gap_flagged"] is False
    truth = np.array([r["truth"] == "fraud" for r in rows[:1000]])
    realized_precision = (truth & pred_pos[:1000]).sum() / pred_pos[:1000].sum()
    assert binary["realized_precision"] == realized_precision
