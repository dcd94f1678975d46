"""Read throughput and memory of the evaluator's OTLP JSON lines source (and, plugged in, the whole evaluation).

Generates (in a temp dir, outside the repo) cumulative OTLP JSON lines as the collector's file exporter writes
them: ``--instances`` processes exporting every 10 s, each line one process's export with 3 models x
(``ml.inference.duration`` ok/error and ``ml.prediction.confidence`` exponential histograms, scale 5 with 160
buckets at most so the SDK-style downscaling happens; ``ml.predictions`` by label and ``ml.feedback``
counters); every process restarts twice (new instance id and start time, so new series). Then, each in a fresh
subprocess, a consumer reads the whole file: MB/s = file size / wall time, peak RSS from getrusage (the
baseline after imports is shown too). The same is done for a file 1/4 the size: equal peak RSS means memory is
flat in the file size.

Consumers are functions taking the file path (``CONSUMERS``); the lead plugs the SLO engine in as another one.

    python benchmarks/evaluator_bench.py [--mb 300] [--consumers reader,...] [--keep DIR] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from modelotel.evaluator import sources
from modelotel.sketch import LogSketch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _results import machine_line, write_section  # noqa: E402

try:
    from orjson import dumps
except ImportError:  # pragma: no cover

    def dumps(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


NS = 1_000_000_000
INTERVAL_S = 10
MODELS = ("fraud", "churn", "ranker")
LABELS = ("a", "b", "c", "d")
METRICS = {"ml.inference.duration", "ml.prediction.confidence", "ml.predictions", "ml.feedback"}
CALLS_PER_INTERVAL = 60  # per model and instance


# -- generating ------------------------------------------------------------------------------------------------


def _attr(key: str, value: str) -> dict:
    return {"key": key, "value": {"stringValue": value}}


class _Process:
    """One instrumented process: cumulative sketches and counters since its start."""

    def __init__(self, rng: np.random.Generator, slot: int, incarnation: int, start_ns: int) -> None:
        self.rng = rng
        self.start = str(start_ns)
        self.resource = {
            "attributes": [
                _attr("telemetry.sdk.language", "python"),
                _attr("telemetry.sdk.name", "opentelemetry"),
                _attr("telemetry.sdk.version", "1.45.1"),
                _attr("service.instance.id", f"{slot:08x}-{incarnation:04x}-4e89-8cd5-df1d11e379a2"),
                _attr("service.name", f"svc-{slot % 4}"),
            ]
        }
        self.durations = {(m, e): LogSketch(5, max_buckets=160) for m in MODELS for e in (False, True)}
        self.confidences = {m: LogSketch(5, max_buckets=160) for m in MODELS}
        self.predictions = {(m, lab): 0 for m in MODELS for lab in LABELS}
        self.feedback = {(m, ok): 0 for m in MODELS for ok in (True, False)}
        self.spread = {m: float(rng.uniform(0.3, 1.0)) for m in MODELS}

    def record(self) -> None:
        rng = self.rng
        for m in MODELS:
            n = int(rng.poisson(CALLS_PER_INTERVAL))
            errors = int(rng.binomial(n, 0.02))
            d = rng.lognormal(np.log(0.02), self.spread[m], n)
            self.durations[(m, False)].add_many(d[errors:])
            self.durations[(m, True)].add_many(d[:errors])
            self.confidences[m].add_many(rng.beta(5.0, 1.5, n - errors))
            for lab, c in zip(LABELS, rng.multinomial(n - errors, (0.4, 0.3, 0.2, 0.1)), strict=True):
                self.predictions[(m, lab)] += int(c)
            fb = int(rng.binomial(n - errors, 0.3))
            good = int(rng.binomial(fb, 0.9))
            self.feedback[(m, True)] += good
            self.feedback[(m, False)] += fb - good

    def export(self, time_ns: int) -> bytes:
        now = str(time_ns)

        def model_attrs(m: str) -> list:
            return [_attr("ml.model.name", m), _attr("ml.model.version", "3"), _attr("ml.deployment.role", "primary")]

        def hist(sk: LogSketch, attrs: list) -> dict:
            return {
                "attributes": attrs,
                "startTimeUnixNano": self.start,
                "timeUnixNano": now,
                "count": str(sk.count),
                "sum": sk.sum,
                "scale": sk.scale,
                "positive": {
                    "offset": sk.positive.offset,
                    "bucketCounts": list(map(str, sk.positive.counts.tolist())),
                },
                "negative": {},
                "min": sk.min,
                "max": sk.max,
            }

        def total(value: int, attrs: list) -> dict:
            return {"attributes": attrs, "startTimeUnixNano": self.start, "timeUnixNano": now, "asInt": str(value)}

        durations = [
            hist(sk, model_attrs(m) + ([_attr("error.type", "ValueError")] if err else []))
            for (m, err), sk in self.durations.items()
            if sk.count
        ]
        metrics = [
            {"name": "ml.inference.duration", "unit": "s", "exponentialHistogram": {
                "dataPoints": durations, "aggregationTemporality": 2}},
            {"name": "ml.prediction.confidence", "unit": "1", "exponentialHistogram": {
                "dataPoints": [hist(sk, model_attrs(m)) for m, sk in self.confidences.items()],
                "aggregationTemporality": 2}},
            {"name": "ml.predictions", "unit": "{prediction}", "sum": {
                "dataPoints": [total(v, model_attrs(m) + [_attr("ml.prediction.label", lab)])
                               for (m, lab), v in self.predictions.items()],
                "aggregationTemporality": 2, "isMonotonic": True}},
            {"name": "ml.feedback", "unit": "{feedback}", "sum": {
                "dataPoints": [total(v, model_attrs(m) + [{"key": "ml.feedback.correct", "value": {"boolValue": ok}}])
                               for (m, ok), v in self.feedback.items()],
                "aggregationTemporality": 2, "isMonotonic": True}},
        ]  # fmt: skip
        request = {
            "resourceMetrics": [
                {
                    "resource": self.resource,
                    "scopeMetrics": [{"scope": {"name": "modelotel", "version": "0.1.0"}, "metrics": metrics}],
                }
            ]
        }
        return dumps(request) + b"\n"


def generate(path: Path, target_bytes: int, instances: int, restarts: int = 2, seed: int = 1) -> dict:
    """Write cumulative OTLP JSON lines until ``target_bytes``. Every process restarts ``restarts`` times, spread
    evenly over the file whatever its size (a new instance id: new series), so files of different sizes hold the
    same number of series and their memory can be compared. Returns counts of what was written."""
    rng = np.random.default_rng(seed)
    t0 = 1_790_000_000 * NS
    procs = [_Process(rng, i, 0, t0 - int(rng.integers(1, 60)) * NS) for i in range(instances)]
    incarnations = [0] * instances
    written = lines = 0
    k = 0
    schedule: dict[int, list[int]] = {}
    with open(path, "wb") as fh:
        while written < target_bytes:
            k += 1
            for i in range(instances):
                t = t0 + k * INTERVAL_S * NS + i * 1_000_000
                if i in schedule.get(k, ()):
                    incarnations[i] += 1
                    procs[i] = _Process(rng, i, incarnations[i], t - INTERVAL_S * NS // 2)
                procs[i].record()
                line = procs[i].export(t)
                fh.write(line)
                written += len(line)
                lines += 1
            if k == 1:  # now the size of a round is known: place the restarts
                rounds = max(int(target_bytes / (written * 1.2)), 3)  # later lines are a bit longer
                for i in range(instances):
                    for r in range(1, restarts + 1):
                        schedule.setdefault(2 + (rounds - 2) * r // (restarts + 1) + i % 3, []).append(i)
    return {"bytes": written, "lines": lines, "restarts": sum(incarnations), "exports_per_instance": k}


# -- consumers (each takes the file path) ------------------------------------------------------------------------


def read_all(path: str) -> dict:
    """The reader alone: every delta of the four metrics, consumed."""
    deltas, report = sources.read(path, METRICS)
    n = 0
    for _ in deltas:
        n += 1
    return {"deltas": n, "points": report.points, "series": report.series, "resets": report.resets}


def read_predictions(path: str) -> dict:
    """Only ``ml.predictions`` (a counter): the histograms are skipped without decoding their buckets."""
    deltas, report = sources.read(path, {"ml.predictions"})
    n = sum(1 for _ in deltas)
    return {"deltas": n, "points": report.points, "skipped": report.skipped_metrics}


def evaluate_slos(path: str) -> dict:
    """The whole ``modelotel evaluate`` pipeline: 4 SLOs per model (latency at 250 ms, error ratio, low-confidence
    rate, accuracy), every default alert tier, one pass over the file."""
    from modelotel.evaluator import engine, spec

    doc = "slos:\n" + "".join(
        f"  - {{name: {m}-latency, model: {m}, sli: latency, threshold: 250ms, objective: 0.99, window: 28d}}\n"
        f"  - {{name: {m}-errors, model: {m}, sli: error_ratio, objective: 0.999, window: 28d}}\n"
        f"  - {{name: {m}-confidence, model: {m}, sli: low_confidence_rate, threshold: 0.5, objective: 0.9,"
        f" window: 28d}}\n"
        f"  - {{name: {m}-accuracy, model: {m}, sli: accuracy, objective: 0.8, window: 28d}}\n"
        for m in MODELS
    )
    spec_path = Path(path).with_suffix(".slo.yaml")
    spec_path.write_text(doc)
    slos = spec.load_slos([str(spec_path)])
    ev = engine.evaluate(slos, [path])
    return {"slos": len(ev.results), "events": int(sum(r.events for r in ev.results))}


CONSUMERS: dict[str, Callable[[str], dict]] = {
    "reader": read_all,
    "reader-counters-only": read_predictions,
    "evaluate": evaluate_slos,
}


def child(path: str, consumer: str) -> None:
    """Run one consumer in this (fresh) process and print its timing and memory as JSON."""
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    out = CONSUMERS[consumer](path)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_kb": peak, "baseline_kb": baseline, **out}))


def measure(path: Path, consumer: str, repeats: int) -> dict:
    """Best wall time (the machine is shared: noise only ever adds time) and highest peak RSS of ``repeats``
    fresh-process runs."""
    runs = []
    for _ in range(repeats):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(path), "--consumer", consumer],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        )
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "peak_kb": max(r["peak_kb"] for r in runs), "all_seconds": [r["seconds"] for r in runs]}


# -- main ------------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=300.0, help="size of the large file (MB)")
    ap.add_argument("--instances", type=int, default=40)
    ap.add_argument("--consumers", default=",".join(CONSUMERS), help="comma-separated names from CONSUMERS")
    ap.add_argument("--repeats", type=int, default=3, help="runs per file and consumer (best time is reported)")
    ap.add_argument("--keep", help="generate into (and keep) this directory instead of a temp dir")
    ap.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--consumer", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.consumer)
        return

    consumers = [c.strip() for c in args.consumers.split(",") if c.strip()]
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="modelotel-eval-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        files = {}
        for label, mb in (("full", args.mb), ("quarter", args.mb / 4)):
            path = tmp / f"otlp-{mb:g}MB.jsonl"
            t = time.perf_counter()
            stats = generate(path, int(mb * 1e6), args.instances)
            print(f"generated {path} ({stats['bytes'] / 1e6:.0f} MB, {stats['lines']} lines) "
                  f"in {time.perf_counter() - t:.1f} s", flush=True)  # fmt: skip
            files[label] = (path, stats)
        rows = []
        for consumer in consumers:
            for label in ("full", "quarter"):
                path, stats = files[label]
                r = measure(path, consumer, args.repeats)
                mbs = stats["bytes"] / 1e6 / r["seconds"]
                rows.append((consumer, label, stats, r, mbs))
                print(f"{consumer:24s} {stats['bytes'] / 1e6:6.0f} MB  {r['seconds']:6.2f} s  {mbs:6.1f} MB/s  "
                      f"peak RSS {r['peak_kb'] / 1024:.0f} MiB (after imports {r['baseline_kb'] / 1024:.0f})  "
                      f"{ {k: v for k, v in r.items() if k not in ('seconds', 'peak_kb', 'baseline_kb')} }",
                      flush=True)  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if not args.no_write:
        write(rows, args.instances, args.repeats)


def write(rows: list, instances: int, repeats: int) -> None:
    table = [
        "| consumer | file | lines | best wall s | MB/s | peak RSS MiB | RSS after imports MiB "
        "| deltas (events) | all wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for consumer, _label, stats, r, mbs in rows:
        table.append(
            f"| {consumer} | {stats['bytes'] / 1e6:,.0f} MB | {stats['lines']:,} | {r['seconds']:.2f} | {mbs:.1f} | "
            f"{r['peak_kb'] / 1024:.0f} | {r['baseline_kb'] / 1024:.0f} | {r.get('deltas', r.get('events', 0)):,} | "
            f"{', '.join(f'{x:.2f}' for x in r['all_seconds'])} |"
        )
    full = next(r for r in rows if r[0] == "reader" and r[1] == "full")
    quarter = next(r for r in rows if r[0] == "reader" and r[1] == "quarter")
    growth = (full[3]["peak_kb"] - quarter[3]["peak_kb"]) / 1024
    flat = "flat in the file size" if abs(growth) <= 5 else f"not flat: {growth:+.0f} MiB"
    notes = [
        f"- Reader: **{full[4]:.0f} MB/s** on the {full[2]['bytes'] / 1e6:,.0f} MB file (goal >= 50 MB/s), "
        f"{full[3]['deltas'] / (full[3]['seconds']):,.0f} deltas/s.",
        f"- Memory is {flat}: peak RSS {full[3]['peak_kb'] / 1024:.0f} MiB for {full[2]['bytes'] / 1e6:,.0f} MB and "
        f"{quarter[3]['peak_kb'] / 1024:.0f} MiB for {quarter[2]['bytes'] / 1e6:,.0f} MB, with "
        f"{full[3]['series']:,} and {quarter[3]['series']:,} series: the state is one latest point per series, so "
        "memory grows with the number of series (instances x attribute sets), not with the file.",
    ]
    counters = next((r for r in rows if r[0] == "reader-counters-only" and r[1] == "full"), None)
    if counters:
        notes.append(
            f"- Asking only for the counter (`ml.predictions`): {counters[4]:.0f} MB/s; the histograms are skipped "
            "before their buckets are decoded."
        )
    evaluate = [r for r in rows if r[0] == "evaluate"]
    if evaluate:
        full_e = next(r for r in evaluate if r[1] == "full")
        quarter_e = next((r for r in evaluate if r[1] == "quarter"), full_e)
        notes.append(
            f"- `modelotel evaluate` end to end ({full_e[3]['slos']} SLOs, all four default alert tiers, one pass): "
            f"**{full_e[4]:.0f} MB/s**, peak RSS {full_e[3]['peak_kb'] / 1024:.0f} MiB on "
            f"{full_e[2]['bytes'] / 1e6:,.0f} MB and {quarter_e[3]['peak_kb'] / 1024:.0f} MiB on "
            f"{quarter_e[2]['bytes'] / 1e6:,.0f} MB (ledgers hold one bin per minute of data per SLO)."
        )
    body = (
        f"Machine: {machine_line()}.\n"
        f"Cumulative OTLP JSON lines as the collector's file exporter writes them: {instances} processes exporting "
        f"every {INTERVAL_S} s (one line per export, about {full[2]['bytes'] / full[2]['lines'] / 1e3:.0f} kB: "
        f"{len(MODELS)} models x (duration ok/error + confidence) = 9 exponential-histogram points at scale <= 5 with "
        f"<= 160 buckets, and 18 counter points), every process restarting twice, to new series "
        f"({full[2]['restarts']} restarts per file). Each consumer runs in a fresh process, {repeats} times per file: "
        "MB/s = file size / best wall time (all times in the last column); peak RSS (getrusage, highest of the runs) "
        "vs the process after its imports.\n\n" + "\n".join(table) + "\n\n" + "\n".join(notes)
    )
    write_section(HERE / "RESULTS.md", "evaluator", "Evaluator throughput (`benchmarks/evaluator_bench.py`)", body)


if __name__ == "__main__":
    main()
