"""CBPE from sketches (modelotel.evaluator.quality.cbpe) against NannyML's CBPE and the realized performance.

Data: a binary classifier on one feature, ground truth ``P(y=1|x) = sigmoid(1.5 x - 0.5)``. The reference
period (labelled, 10 chunks) has ``x ~ N(0, 1)``; in the analysis period (10 chunks) the feature's mean moves
from 0 to 2: covariate shift, no concept drift. Chunks of 5,000. Two models:

* ``calibrated``: reports the true posterior;
* ``overconfident``: reports ``sigmoid(1.5 * logit)``, sharper than the truth.

Per analysis chunk: the realized accuracy, precision, recall and F1 (positive class 1); ours from the sketches
the evaluator would read (``ml.prediction.confidence`` at the SDK's default scale 5, one sketch per predicted
label): uncalibrated, and calibrated by the reference chunks' feedback sketches (split by correct); NannyML's
CBPE (isotonic calibration on the reference), run in its own virtualenv through a subprocess (NannyML is not a
project dependency):

    python3.11 -m venv /tmp/nannyml-venv && /tmp/nannyml-venv/bin/pip install nannyml statsmodels
    PYTHONPATH=sdk python benchmarks/cbpe_vs_nannyml.py [--nannyml-python /tmp/nannyml-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from modelotel.evaluator.quality.cbpe import estimated_accuracy, estimated_binary
from modelotel.sketch import LogSketch

CHUNK = 5000
REFERENCE_CHUNKS = 10
ANALYSIS_CHUNKS = 10
SCALE = 5  # the SDK's default for ml.prediction.confidence
FIGURES = ("accuracy", "precision", "recall", "f1")
SHARPEN = {"calibrated": 1.0, "overconfident": 1.5}

NANNYML = textwrap.dedent(
    """
    import json, sys
    import numpy as np, pandas as pd
    import nannyml as nml

    data = np.load(sys.argv[1])
    frame = lambda p, y: pd.DataFrame({"y_pred_proba": p, "y_pred": (p >= 0.5).astype(int), "y_true": y})
    reference, analysis = frame(data["ref_p"], data["ref_y"]), frame(data["p"], data["y"])
    cbpe = nml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true", problem_type="classification_binary",
                    metrics=["accuracy", "precision", "recall", "f1"], chunk_size=int(sys.argv[2]))
    cbpe.fit(reference)
    df = cbpe.estimate(analysis).filter(period="analysis").to_df()
    out = {m: df[(m, "value")].tolist() for m in ["accuracy", "precision", "recall", "f1"]}
    json.dump(out, open(sys.argv[3], "w"))
    """
)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def sample(rng: np.random.Generator, mean: float, n: int, sharpen: float) -> tuple[np.ndarray, np.ndarray]:
    """(reported P(y=1), true label) of ``n`` predictions with the feature centred on ``mean``."""
    x = rng.normal(mean, 1.0, n)
    logit = 1.5 * x - 0.5
    y = (rng.random(n) < sigmoid(logit)).astype(int)
    return sigmoid(sharpen * logit), y


def sketch_of(values: np.ndarray) -> LogSketch:
    sk = LogSketch(SCALE)
    sk.add_many(values)
    return sk


def realized(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred = p >= 0.5
    tp, fp, fn = np.sum(pred & (y == 1)), np.sum(pred & (y == 0)), np.sum(~pred & (y == 1))
    return {
        "accuracy": float(np.mean(pred == (y == 1))),
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "f1": 2 * tp / (2 * tp + fp + fn),
    }


def ours(p: np.ndarray, feedback: tuple[LogSketch, LogSketch] | None) -> dict[str, float]:
    """The sketches the evaluator reads: top-label confidence per predicted label, at scale 5."""
    pred = p >= 0.5
    top = np.where(pred, p, 1.0 - p)
    correct, incorrect = feedback if feedback else (None, None)
    binary = estimated_binary(sketch_of(top[pred]), sketch_of(top[~pred]), correct, incorrect)
    accuracy = estimated_accuracy(sketch_of(top), correct, incorrect)
    assert (
        abs(accuracy.accuracy.value - binary.accuracy.value) <= 1e-9 + binary.accuracy.bound + accuracy.accuracy.bound
    )
    return {
        "sd": accuracy.sampling_sd,
        "accuracy": accuracy.accuracy.value,
        "precision": binary.precision.value,
        "recall": binary.recall.value,
        "f1": binary.f1.value,
    }


def nannyml(python: str, ref: tuple[np.ndarray, np.ndarray], ana: tuple[np.ndarray, np.ndarray]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "data.npz", Path(tmp) / "out.json"
        np.savez(data, ref_p=ref[0], ref_y=ref[1], p=ana[0], y=ana[1])
        subprocess.run([python, "-c", NANNYML, str(data), str(CHUNK), str(out)], check=True, timeout=600)
        return json.loads(out.read_text())


def scenario(name: str, python: str | None, seed: int) -> tuple[list[dict], dict]:
    rng = np.random.default_rng(seed)
    sharpen = SHARPEN[name]
    ref_p, ref_y = sample(rng, 0.0, CHUNK * REFERENCE_CHUNKS, sharpen)
    ref_pred = ref_p >= 0.5
    ref_top, ref_correct = np.where(ref_pred, ref_p, 1.0 - ref_p), ref_pred == (ref_y == 1)
    feedback = sketch_of(ref_top[ref_correct]), sketch_of(ref_top[~ref_correct])
    chunks = [sample(rng, mean, CHUNK, sharpen) for mean in np.linspace(0.0, 2.0, ANALYSIS_CHUNKS)]
    analysis = np.concatenate([p for p, _ in chunks]), np.concatenate([y for _, y in chunks])
    nml_out = nannyml(python, (ref_p, ref_y), analysis) if python else None
    rows = []
    for i, (p, y) in enumerate(chunks):
        row = {"chunk": i, "realized": realized(p, y), "ours": ours(p, None), "ours_cal": ours(p, feedback)}
        if nml_out is not None:
            row["nannyml"] = {m: nml_out[m][i] for m in FIGURES}
        rows.append(row)
    errors = {}
    for method in ("ours", "ours_cal", "nannyml"):
        if method not in rows[0]:
            continue
        for m in FIGURES:
            e = np.abs([r[method][m] - r["realized"][m] for r in rows])
            errors[(method, m)] = (float(e.max()), float(e.mean()))
    if "nannyml" in rows[0]:  # how far apart the two implementations are, chunk by chunk
        for method in ("ours", "ours_cal"):
            for m in FIGURES:
                e = np.abs([r[method][m] - r["nannyml"][m] for r in rows])
                errors[(f"{method}-nannyml", m)] = (float(e.max()), float(e.mean()))
    return rows, errors


LABELS = {
    "ours": "ours (uncalibrated)",
    "ours_cal": "ours (feedback-calibrated)",
    "nannyml": "NannyML CBPE",
    "ours-nannyml": "ours (uncalibrated) vs NannyML",
    "ours_cal-nannyml": "ours (feedback-calibrated) vs NannyML",
}


def markdown(name: str, rows: list[dict], errors: dict) -> str:
    methods = [m for m in ("ours", "ours_cal", "nannyml") if m in rows[0]]
    head = "| chunk | x mean | " + " | ".join(
        f"{fig} realized | " + " | ".join(f"{fig} {LABELS[m]}" for m in methods) for fig in ("accuracy", "f1")
    )
    sd = max(r["ours"]["sd"] for r in rows)
    lines = [
        f"**{name}** (chunks of {CHUNK:,}; analysis feature mean 0 to 2; sampling sd of a chunk's accuracy "
        f"<= {sd:.4f})",
        "",
        head + " |",
    ]
    lines.append("|" + "---|" * (2 + 2 * (1 + len(methods))))
    for r, mean in zip(rows, np.linspace(0.0, 2.0, ANALYSIS_CHUNKS), strict=True):
        cells = [str(r["chunk"]), f"{mean:.2f}"]
        for fig in ("accuracy", "f1"):
            cells.append(f"{r['realized'][fig]:.4f}")
            cells += [f"{r[m][fig]:.4f}" for m in methods]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| absolute error vs realized (max / mean) | " + " | ".join(FIGURES) + " |", "|---|---|---|---|---|"]
    for m in methods + [f"{m}-nannyml" for m in ("ours", "ours_cal") if (f"{m}-nannyml", "f1") in errors]:
        cells = [f"{errors[(m, fig)][0]:.4f} / {errors[(m, fig)][1]:.4f}" for fig in FIGURES]
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nannyml-python", default="/tmp/nannyml-venv/bin/python", help="'' to skip NannyML")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    python = args.nannyml_python or None
    if python and not Path(python).exists():
        print(f"{python} not found: see the module docstring (or pass --nannyml-python '')", file=sys.stderr)
        return 2
    for name in SHARPEN:
        rows, errors = scenario(name, python, args.seed)
        print(markdown(name, rows, errors))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
