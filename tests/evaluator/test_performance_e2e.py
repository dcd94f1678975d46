"""``modelotel performance`` on telemetry of the real SDK: a serving process makes predictions (a classifier, single
and batch calls, and a regression model) and hands out ``last_prediction_id()``s; ANOTHER process, which never
decorated a model, judges them with ``record_feedback``; each writes its own OTLP JSON-lines file. The figures
the CLI reads back from both files are compared with sklearn and numpy on the raw rows.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from modelotel.evaluator.quality.calibration import calibration
from modelotel.sketch import LogSketch

SERVE = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import modelotel

    modelotel.configure(service_name="serving", exporter="file", path=sys.argv[1], export_interval=0.2, traces=False)
    rng = np.random.default_rng(11)

    @modelotel.instrument_model(name="animals", version="3", labels=["cat", "dog", "eel"])
    def classify(x):
        return x

    @modelotel.instrument_model(name="price", version="1")
    def price(x):
        return float(x)

    rows = []
    for i in range(160):
        p = rng.dirichlet([2.0, 1.0, 0.5])
        classify(p)
        rows.append({"pid": modelotel.last_prediction_id(), "probs": [p.tolist()], "at": time.time()})
    for i in range(8):  # batches of 5
        p = rng.dirichlet([1.0, 1.0, 1.0], size=5)
        classify(p)
        rows.append({"pid": modelotel.last_prediction_id(), "probs": p.tolist(), "at": time.time()})
    prices = []
    for i in range(120):
        v = float(rng.lognormal(3, 1))
        price(v)
        prices.append({"pid": modelotel.last_prediction_id(), "value": v, "at": time.time()})
    modelotel.shutdown()
    json.dump({"classify": rows, "price": prices}, open(sys.argv[2], "w"))
    """
)

LABEL = textwrap.dedent(
    """
    import json, sys
    import modelotel

    modelotel.configure(service_name="labeller", exporter="file", path=sys.argv[1], export_interval=0.2, traces=False)
    ok = [modelotel.record_feedback(f["pid"], label=f["label"], time=f["time"]) for f in json.load(open(sys.argv[2]))]
    modelotel.shutdown()
    print(json.dumps(ok))
    """
)

NAMES = np.array(["cat", "dog", "eel"])


def run(tmp_path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "MODELOTEL_FEEDBACK_KEY": "performance-e2e-shared-secret"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)


def test_performance_of_feedback_judged_in_another_process(tmp_path):
    serving, labelling, made, labels = (tmp_path / n for n in ("serve.jsonl", "label.jsonl", "made.json", "fb.json"))
    (tmp_path / "serve.py").write_text(SERVE)
    (tmp_path / "label.py").write_text(LABEL)
    out = run(tmp_path, "serve.py", str(serving), str(made))
    assert out.returncode == 0, out.stderr
    rows = json.loads(made.read_text())

    rng = np.random.default_rng(5)
    y_true, y_pred, conf, delays, feedback = [], [], [], [], []
    for i, row in enumerate(rows["classify"]):
        probs = np.array(row["probs"])
        if i % 4 == 3:
            continue  # never labelled: coverage below 1
        pred = NAMES[probs.argmax(axis=1)]
        truth = np.where(rng.random(len(pred)) < 0.7, pred, rng.choice(NAMES, len(pred)))
        delay = float(rng.uniform(60, 6 * 3600))
        feedback.append({"pid": row["pid"], "label": truth.tolist(), "time": row["at"] + delay})
        y_true += truth.tolist()
        y_pred += pred.tolist()
        conf += probs.max(axis=1).tolist()
        delays += [delay] * len(pred)
    errors = []
    for row in rows["price"][:100]:
        truth = row["value"] * float(rng.uniform(0.8, 1.25))
        feedback.append({"pid": row["pid"], "label": truth, "time": row["at"] + 30.0})
        errors.append(truth - row["value"])
    labels.write_text(json.dumps(feedback))
    out = run(tmp_path, "label.py", str(labelling), str(labels))
    assert out.returncode == 0, out.stderr
    assert all(json.loads(out.stdout)), "a feedback was refused"

    cli = [sys.executable, "-m", "modelotel", "performance", "--data", str(serving), str(labelling), "--window", "7d"]
    out = subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    by = {m["model"]["name"]: m for m in doc["models"]}
    assert by["animals"]["model"] == {"name": "animals", "version": "3", "role": "primary"}

    # classifier: counts exact, rates as sklearn computes them
    a = by["animals"]
    labels_sorted = sorted(set(y_true) | set(y_pred))
    c = a["classification"]
    assert c["labels"] == labels_sorted
    assert c["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=labels_sorted).tolist()
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels_sorted, zero_division=0)
    assert [k["precision"] for k in c["classes"]] == p.tolist()
    assert [k["recall"] for k in c["classes"]] == r.tolist()
    assert [k["f1"] for k in c["classes"]] == f.tolist()
    assert [k["support"] for k in c["classes"]] == s.tolist()
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
        got = c[f"{avg}_avg"]
        assert (got["precision"], got["recall"], got["f1"]) == (ap, ar, af)
    assert a["accuracy"] == accuracy_score(y_true, y_pred) == c["label_accuracy"]
    assert a["judged"] == len(y_true) and a["judged_by_arrival"] == 0
    predictions = sum(len(row["probs"]) for row in rows["classify"])
    assert a["coverage"] == {"judged": len(y_true), "predictions": predictions, "ratio": len(y_true) / predictions}

    # calibration: the module's bounds against the exact equal-width ECE and Brier on the raw pairs
    conf_a, ok_a = np.array(conf), np.array(y_true) == np.array(y_pred)
    cal = a["calibration"]
    assert cal["count"] == len(conf_a)
    which = np.clip(np.ceil(conf_a * 10).astype(int) - 1, 0, 9)
    exact_ece = sum(abs(ok_a[which == b].sum() - conf_a[which == b].sum()) for b in range(10)) / len(conf_a)
    assert abs(cal["ece"] - exact_ece) <= cal["ece_bound"] + cal["binning_bound"] + 1e-12
    exact_brier = float(np.mean((conf_a - ok_a) ** 2))
    assert cal["brier_low"] - 1e-12 <= exact_brier <= cal["brier_high"] + 1e-12
    direct = calibration(_sketch(conf_a[ok_a]), _sketch(conf_a[~ok_a]))
    assert math.isclose(cal["ece"], direct.ece, rel_tol=1e-12)

    # label latency: the id carries the prediction time in whole seconds, so each exported delay is d + [0, 1)
    lat = a["label_latency"]
    assert lat["count"] == len(delays)
    d = np.array(delays)
    assert float(d.mean()) - 1e-9 <= lat["mean"] <= float(d.mean()) + 1.0
    for q in lat["quantiles"]:
        lo_exact = float(np.quantile(d, q["q"], method="lower"))
        assert q["low"] <= lo_exact + 1.0 and lo_exact <= q["high"], q
    assert "regression" in a["not_computed"] and "group=" in a["not_computed"]["fairness"]

    # regression: MAE and RMSE exact but for float rounding, |error| quantiles bounded
    g = by["price"]
    e = np.array(errors)
    reg = g["regression"]
    assert reg["count"] == len(e) == g["judged"]
    assert math.isclose(reg["mae"], float(np.mean(np.abs(e))), rel_tol=1e-9)
    assert math.isclose(reg["rmse"], float(np.sqrt(np.mean(e**2))), rel_tol=1e-9)
    for q in reg["abs_error"]["quantiles"]:
        assert q["low"] <= float(np.quantile(np.abs(e), q["q"], method="lower")) <= q["high"], q
    assert g["accuracy"] is None and g["classification"] is None
    assert "regression" in g["not_computed"]["accuracy"]
    assert g["coverage"]["predictions"] == 120 and g["coverage"]["judged"] == 100

    # the table says the same, and names what it could not compute
    out = subprocess.run([*cli, "--model", "price"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "model price version 1 role primary" in out.stdout and "animals" not in out.stdout
    assert f"MAE {reg['mae']:.6g}" in out.stdout and "100 judged of 120 predictions: 83.3%" in out.stdout
    assert "accuracy       not computed: feedback carries no ml.feedback.correct" in out.stdout


def _sketch(values: np.ndarray) -> LogSketch:
    sk = LogSketch(5)
    sk.add_many(values)
    return sk


def test_cli_exit_codes(tmp_path):
    """6: --model matches nothing; 4: no feedback telemetry at all; 3: bad window; 2: nothing judged in it."""
    path = tmp_path / "t.jsonl"
    (tmp_path / "serve.py").write_text(SERVE)
    out = run(tmp_path, "serve.py", str(path), str(tmp_path / "made.json"))
    assert out.returncode == 0, out.stderr
    base = [sys.executable, "-m", "modelotel", "performance", "--data", str(path)]

    def code(*extra):
        done = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=120)
        return done.returncode, done.stdout + done.stderr

    rc, text = code("--model", "anmals")
    assert rc == 6 and "did you mean 'animals'" in text
    rc, text = code("--window", "1h")  # predictions but no feedback yet
    assert rc == 2 and "no feedback for predictions made in the window" in text
    assert "coverage       not computed: no feedback" in text
    rc, text = code("--window", "1h", "--from", "now", "--to", "now")
    assert rc == 3 and "at most two" in text
    rc, text = code("--window", "-5m")
    assert rc == 3
    other = tmp_path / "other.jsonl"  # metrics, but no feedback or prediction telemetry
    other.write_text(path.read_text().replace('"ml.predictions"', '"app.other"').replace('"ml.', '"app.'))
    done = subprocess.run(
        [sys.executable, "-m", "modelotel", "performance", "--data", str(other)], capture_output=True, text=True
    )
    assert done.returncode == 4 and "error:" in done.stderr and "Traceback" not in done.stderr, done.stderr
