"""Throughput of ``modelotel feedback``: a labels file of ``--rows`` rows (distinct prediction ids made by a real
instrumented model in a serving process, truth right 60% of the time, a time and a group per row), written with
pandas as CSV, JSON lines and Parquet, ingested by the real command in its own process with the OTLP JSON file
exporter. Prints the rows per second the command measured over its read-and-judge loop (its ``--json`` summary)
and the wall time of the whole command (start-up, reading, judging, export), best of ``--repeats``, and the
command's peak RSS (``ru_maxrss`` of the child).

    python benchmarks/feedback_ingest_bench.py [--rows 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
KEY = "benchmark-feedback-key-0123456789"
SERVING = """
import json, random, sys
import modelotel
n = int(sys.argv[1]); rng = random.Random(1)

@modelotel.instrument_model(name="churn", version="3", labels=["stay", "leave"])
def churn(p):
    return {"probabilities": [1 - p, p]}

out = []
for i in range(n):
    p = rng.random()
    churn(p)
    out.append((modelotel.last_prediction_id(), ("stay", "leave")[p >= 0.5], ("stay", "leave")[p < 0.5]))
json.dump(out, sys.stdout)
"""


def _vm_hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:  # it has just exited
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELOTEL_"))}
    env.update(PYTHONPATH=str(ROOT / "sdk"), MODELOTEL_FEEDBACK_KEY=KEY)
    with tempfile.TemporaryDirectory() as tmp:
        made = json.loads(
            subprocess.run(
                [sys.executable, "-c", SERVING, str(args.rows)],
                env={**env, "MODELOTEL_EXPORT_FILE": os.path.join(tmp, "serving.jsonl")},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        rng = random.Random(2)
        now = time.time()
        frame = pd.DataFrame(
            {
                "prediction_id": [m[0] for m in made],
                "label": [m[1] if rng.random() < 0.6 else m[2] for m in made],
                "known_at": [now] * len(made),
                "region": [rng.choice(("eu", "us", "apac")) for _ in made],
            }
        )
        files = {"csv": "labels.csv", "jsonl": "labels.jsonl", "parquet": "labels.parquet"}
        frame.to_csv(os.path.join(tmp, files["csv"]), index=False)
        frame.to_json(os.path.join(tmp, files["jsonl"]), orient="records", lines=True)
        frame.to_parquet(os.path.join(tmp, files["parquet"]))
        print(f"{args.rows:,} rows, best of {args.repeats}; Python {sys.version.split()[0]}, {os.cpu_count()} cores")
        print(f"{'format':<8} {'rows/s (loop)':>14} {'wall s':>8} {'peak RSS MiB':>13}")
        for fmt, name in files.items():
            best_rate, best_wall, rss = 0.0, float("inf"), 0.0
            for _ in range(args.repeats):
                out = os.path.join(tmp, "feedback.jsonl")
                if os.path.exists(out):
                    os.remove(out)
                started = time.perf_counter()
                with open(os.path.join(tmp, "summary.json"), "w+") as fh:
                    proc = subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "modelotel",
                            "feedback",
                            name,
                            "--json",
                            "--progress",
                            "none",
                            "--time-column",
                            "known_at",
                            "--group-column",
                            "region",
                        ],
                        env={**env, "MODELOTEL_EXPORT_FILE": out},
                        stdout=fh,
                        stderr=subprocess.DEVNULL,
                        cwd=tmp,
                    )
                    peak = 0
                    while proc.poll() is None:  # VmHWM: this process's peak RSS since its exec
                        peak = max(peak, _vm_hwm_kib(proc.pid))
                        time.sleep(0.02)
                    status = proc.returncode
                    wall = time.perf_counter() - started
                    fh.seek(0)
                    summary = json.load(fh)
                assert status == 0 and summary["recorded"] == args.rows, summary
                best_rate, best_wall = max(best_rate, summary["rows_per_s"]), min(best_wall, wall)
                rss = max(rss, peak / 1024)
            print(f"{fmt:<8} {best_rate:>14,.0f} {best_wall:>8.2f} {rss:>13.0f}")


if __name__ == "__main__":
    main()
