"""Cost of the OOD scorers in modelotel.ood: one sample per call (the decorator's hot path) and batches.

Each scorer is fitted on synthetic correlated Gaussian data (10 classes where that applies). A single
sample is the (1, d) float64 row the decorator passes; its per-call cost is the median over
``--repeats`` timeit repeats of the mean of ``--number`` calls. The batched cost is per row of a
1,000-row batch, median over repeats. The last table times a decorated model (a function returning a
fixed 10-class probability vector) with and without ``ood=``, so the scorer's cost *in the decorator*
(argument lookup, asarray, score, tolist) shows up as the difference. Results go to
benchmarks/RESULTS.md between this script's markers (key "ood").

    python benchmarks/ood_bench.py [--repeats 15] [--number 2000] [--no-write]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import timeit
from pathlib import Path

# One BLAS thread, as in a serving worker: on a shared 2-core machine a threaded BLAS makes the batch
# timings swing by 10x with the neighbours' load. Set the variables yourself to measure otherwise.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from modelotel.ood import EnergyScorer, MahalanobisScorer, MaxSoftmaxScorer, RangeScorer  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _results import machine_line, write_section  # noqa: E402

BATCH = 1000
N_CLASSES = 10


def gaussian(d: int, n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % N_CLASSES
    centers = rng.normal(0, 2, (N_CLASSES, d))
    A = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ A + centers[y], y


def per_call_ns(fn, arg, number: int, repeats: int) -> tuple[float, float]:
    """(median, min) over ``repeats`` of the mean time of ``number`` calls, in ns."""
    fn(arg)  # warm-up
    times = np.asarray(timeit.repeat(lambda: fn(arg), number=number, repeat=repeats)) / number * 1e9
    return float(np.median(times)), float(times.min())


def scorers() -> list[tuple[str, object, np.ndarray]]:
    out = []
    for d in (8, 32, 128):
        X, y = gaussian(d)
        out.append((f"Mahalanobis, {N_CLASSES} class means, d={d}", MahalanobisScorer().fit(X, y), X))
        out.append((f"Mahalanobis, one mean, d={d}", MahalanobisScorer().fit(X), X))
    for d in (8, 32, 128):
        X, _ = gaussian(d)
        out.append((f"Range, d={d}", RangeScorer().fit(X), X))
    logits = np.random.default_rng(1).normal(0, 3, (4000, N_CLASSES))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    out.append((f"MaxSoftmax, {N_CLASSES} classes (probabilities)", MaxSoftmaxScorer().fit(probs), probs))
    out.append((f"MaxSoftmax, {N_CLASSES} classes (from_logits)", MaxSoftmaxScorer(from_logits=True), logits))
    out.append((f"Energy, {N_CLASSES} classes", EnergyScorer().fit(logits), logits))
    return out


def decorator_rows(number: int, repeats: int) -> list[tuple[str, float]]:
    """Median per-call cost of a decorated trivial model, with and without a scorer, interleaved."""
    import modelotel

    modelotel.configure(service_name="ood-bench", exporter="none", export_interval=1.0, traces=False)
    X, y = gaussian(32)
    maha = MahalanobisScorer().fit(X, y)
    maha.threshold_for_fpr(gaussian(32, seed=1)[0])
    probs = np.full(N_CLASSES, 1.0 / N_CLASSES)
    msp = MaxSoftmaxScorer()
    msp.threshold = 0.5

    def model(x):
        return probs

    variants = {
        "no ood": modelotel.instrument_model(name="b0", traces="off")(model),
        "ood=MahalanobisScorer (d=32, 10 classes)": modelotel.instrument_model(name="b1", ood=maha, traces="off")(
            model
        ),
        "ood=MaxSoftmaxScorer (10 classes)": modelotel.instrument_model(name="b2", ood=msp, traces="off")(model),
    }
    x = X[0].copy()
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for fn in variants.values():
        fn(x)
    for _ in range(repeats):
        for name, fn in variants.items():
            samples[name].append(timeit.timeit(lambda fn=fn: fn(x), number=number // 4))
    modelotel.shutdown()
    return [(name, float(np.median(v)) / (number // 4) * 1e9) for name, v in samples.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    rows = []
    gc.collect()
    for name, scorer, X in scorers():
        one, one_min = per_call_ns(scorer.score, X[:1].copy(), args.number, args.repeats)
        batch_ns, batch_min = per_call_ns(scorer.score, X[:BATCH].copy(), max(1, args.number // 100), args.repeats)
        rows.append((name, one, one_min, batch_ns / BATCH, batch_min / BATCH))
        print(f"{name}: {one / 1000:.2f} us/call, {batch_ns / BATCH:.0f} ns/row in a batch of {BATCH}", flush=True)
    deco = decorator_rows(args.number, args.repeats)
    base = deco[0][1]
    load_after = os.getloadavg()[0]

    maha32 = next(r for r in rows if r[0] == f"Mahalanobis, {N_CLASSES} class means, d=32")
    lines = [
        f"Machine: {machine_line()}; 1-minute load average {load_before:.1f} before, {load_after:.1f} after",
        "(the machine is shared). One BLAS thread. Single sample: a (1, d) float64 row, as the decorator passes",
        f"it; median (and min) over {args.repeats} timeit repeats of {args.number:,} calls. Batch: a "
        f"{BATCH:,}-row batch, cost per row.",
        f"Scorers fitted on synthetic correlated Gaussian data ({N_CLASSES} classes where that applies).",
        "",
        "| scorer | single sample, median us/call | min | batch of 1,000, median ns/row | min |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, one, one_min, row, row_min in rows:
        lines.append(f"| {name} | {one / 1000:.2f} | {one_min / 1000:.2f} | {row:,.0f} | {row_min:,.0f} |")
    lines += [
        "",
        "Through `@instrument_model` (untraced; a model returning a fixed 10-class probability vector; "
        "variants interleaved, median of the repeats):",
        "",
        "| variant | ns/call | added by `ood=` |",
        "|---|---:|---:|",
    ]
    for name, ns in deco:
        lines.append(f"| {name} | {ns:,.0f} | {'-' if name == 'no ood' else f'{ns - base:,.0f}'} |")
    lines += [
        "",
        f"- Mahalanobis at d=32 with {N_CLASSES} class means: **{maha32[1] / 1000:.2f} us** median per "
        "single-sample call (goal < 10 us): one `(1, d) @ (d, d + k)` product against the whitening and "
        "class means precomputed at fit, then a dot product and a min.",
        "- Inside `@instrument_model`, modelotel.ood scorers on small float vectors are not called per request: "
        "the call keeps the row's bytes and the export thread scores all rows at once (the batch column), "
        "so `ood=` adds only the copy to the request path (second table).",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(HERE / "RESULTS.md", "ood", "OOD scorer cost (`benchmarks/ood_bench.py`)", text)


if __name__ == "__main__":
    main()
