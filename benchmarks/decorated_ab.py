"""The decorated call before and after a change to the SDK: ``overhead.py`` run alternately on two checkouts.

Two copies of ``modelotel`` cannot share one process (the package imports itself by name), so each run is a
separate process running ``benchmarks/overhead.py`` (the bare call, the OTel SDK and ours side by side, variants
in a new random order every round) with ``PYTHONPATH`` pointing at one checkout's ``sdk/``. Runs come in pairs,
one per checkout in a random order, so a pair shares the machine's load; the change's cost is the median of the
paired differences of "added median ns", and the spread of those differences is the noise it must rise above.

Then, in this process, the per-call store that issue 17 added (``LAST_CALLS[get_ident()] = (inst, result,
t_end)``) is timed on its own against cheaper ways to keep the same thing, in wrappers shaped like the SDK's.

    python benchmarks/decorated_ab.py --before /tmp/pre17 [--after .] [--pairs 10] [--rounds 30] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _results import machine_line, write_section  # noqa: E402

OURS = "modelotel, no span"
SCALAR = "modelotel, no span, scalar output (no extraction)"
SDK = "OTel SDK: 3 x Histogram.record (exponential View)"
BARE = "bare call"


def one_run(checkout: Path, rounds: int, calls: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        env = {**os.environ, "PYTHONPATH": str(checkout / "sdk")}
        cmd = [sys.executable, str(HERE / "overhead.py"), "--no-write", "--json", str(out), "--seed", str(seed)]
        cmd += ["--rounds", str(rounds), "--calls", str(calls)]
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return q[0], statistics.median(values), q[2]


# -- the store on its own -------------------------------------------------------------------------------


def store_variants() -> dict:
    """Wrappers shaped like the SDK's untraced path around a trivial model, differing only in what they keep."""
    from threading import get_ident, local

    def model(x):
        return x

    pc = time.perf_counter_ns
    inst = object()
    last: dict = {}
    tl = local()
    armed = False  # the guarded variant: a process where nothing ever asked for an id

    def none(x):
        t0 = pc()
        result = model(x)
        dt = pc() - t0
        return result, dt

    def as_built(x):  # decorations.py / decorator.py since issue 17
        t0 = pc()
        result = model(x)
        dt = pc() - t0
        last[get_ident()] = (inst, result, t0 + dt)
        return result, dt

    ident = get_ident

    def local_ident(x):  # the same, get_ident bound in the closure (no global lookup)
        t0 = pc()
        result = model(x)
        dt = pc() - t0
        last[ident()] = (inst, result, t0 + dt)
        return result, dt

    def thread_local(x):  # a threading.local attribute instead of a dict keyed by thread id
        t0 = pc()
        result = model(x)
        dt = pc() - t0
        tl.call = (inst, result, t0 + dt)
        return result, dt

    def no_addition(x):  # the same without adding t0 + dt (a 4-tuple; last_prediction_id adds them when asked)
        t0 = pc()
        result = model(x)
        dt = pc() - t0
        last[ident()] = (inst, result, t0, dt)
        return result, dt

    def guarded(x):  # kept only once last_prediction_id() has been called in the process
        t0 = pc()
        result = model(x)
        dt = pc() - t0
        if armed:
            last[ident()] = (inst, result, t0 + dt)
        return result, dt

    return {
        "no store (before issue 17)": none,
        "LAST_CALLS[get_ident()] = (inst, result, t_end) (as built)": as_built,
        "the same, get_ident bound in the closure": local_ident,
        "the same as (inst, result, t0, dt), no addition": no_addition,
        "threading.local attribute": thread_local,
        "guarded by a flag set at the first last_prediction_id() (flag off)": guarded,
    }


def time_store(rounds: int, calls: int) -> dict[str, float]:
    """Median over rounds of the mean ns per call (a loop of ``calls`` calls per variant per round, random order)."""
    variants = store_variants()
    per: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    rng = random.Random(7)
    pc = time.perf_counter_ns
    for fn in variants.values():
        for _ in range(calls):
            fn(1)
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            fn = variants[name]
            r = range(calls)
            t0 = pc()
            for _ in r:
                fn(1)
            per[name].append((pc() - t0) / calls)
    return {name: statistics.median(v) for name, v in per.items()} | {
        f"{name}::spread": (min(v), max(v)) for name, v in per.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", type=Path, required=True, help="checkout before the change (its sdk/ is used)")
    parser.add_argument("--after", type=Path, default=HERE.parent, help="checkout after the change")
    parser.add_argument("--label-before", default="before issue 17 (1f89ac2)")
    parser.add_argument("--label-after", default="with issue 17 (LAST_CALLS store)")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    rng = random.Random(17)
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for i in range(args.pairs):
        order = ["before", "after"]
        rng.shuffle(order)
        for which in order:
            checkout = args.before if which == "before" else args.after
            runs[which].append(one_run(checkout.resolve(), args.rounds, args.calls, seed=1000 + i))
        print(
            f"pair {i + 1}/{args.pairs}: "
            + ", ".join(f"{w} {runs[w][-1]['variants'][OURS]['added_p50']:.0f} ns" for w in ("before", "after")),
            flush=True,
        )
    store = time_store(rounds=40, calls=20_000)

    def series(which: str, variant: str, key: str = "added_p50") -> list[float]:
        return [r["variants"][variant][key] for r in runs[which]]

    lines = [
        f"Machine: {machine_line()}; 1-min load average {load_before:.1f} before. {args.pairs} pairs of runs of "
        f"`overhead.py` ({args.rounds} rounds x {args.calls} timed calls per variant, random order every round), one "
        "run per checkout in each pair in a random order, each a new process with PYTHONPATH at that checkout's "
        "sdk/. Per run: the variant's median minus the bare call's; here the median over runs and the interquartile "
        "range (q1 - q3) across runs, then the paired differences (after minus before, same pair).",
        "",
        f"| variant | {args.label_before}: added median ns (q1 - q3) | {args.label_after} | "
        "paired difference, median (q1 - q3) | difference % |",
        "|---|---:|---:|---:|---:|",
    ]
    summary = {}
    for variant in (OURS, SCALAR, SDK, "ddsketch.add x 3"):
        b, a = series("before", variant), series("after", variant)
        diffs = [y - x for x, y in zip(b, a, strict=True)]
        bq, aq, dq = quartiles(b), quartiles(a), quartiles(diffs)
        pct = 100 * dq[1] / bq[1] if bq[1] else float("nan")
        summary[variant] = (bq, aq, dq, pct)
        lines.append(
            f"| {variant} | {bq[1]:,.0f} ({bq[0]:,.0f} - {bq[2]:,.0f}) | {aq[1]:,.0f} ({aq[0]:,.0f} - {aq[2]:,.0f}) | "
            f"{dq[1]:+,.0f} ({dq[0]:+,.0f} - {dq[2]:+,.0f}) | {pct:+.1f}% |"
        )
    bare_b, bare_a = quartiles(series("before", BARE, "p50")), quartiles(series("after", BARE, "p50"))
    ratio_b = [s / o for s, o in zip(series("before", SDK), series("before", OURS), strict=True)]
    ratio_a = [s / o for s, o in zip(series("after", SDK), series("after", OURS), strict=True)]
    ob, oa, od, opct = summary[OURS]
    lines += [
        "",
        f"- The bare call's median: {bare_b[1]:.0f} ns before, {bare_a[1]:.0f} ns after. OTel SDK / ours (added "
        f"median, per run, then the median): {statistics.median(ratio_b):.1f}x before, "
        f"{statistics.median(ratio_a):.1f}x after.",
        f"- Untraced decorated call: **{od[1]:+,.0f} ns ({opct:+.1f}%)** median paired difference; the runs of one "
        f"checkout alone spread over {ob[2] - ob[0]:,.0f} ns (before) and {oa[2] - oa[0]:,.0f} ns (after) between "
        "their quartiles.",
        "",
        "The store alone, in this process (wrappers shaped like the SDK's untraced path around a trivial model; "
        "40 rounds x 20,000 calls per variant, random order; median of the per-round means, min - max):",
        "",
        "| wrapper keeps | ns/call | added over no store | min - max |",
        "|---|---:|---:|---:|",
    ]
    base = store["no store (before issue 17)"]
    for name in store_variants():
        lo, hi = store[f"{name}::spread"]
        lines.append(f"| {name} | {store[name]:.1f} | {store[name] - base:+.1f} | {lo:.1f} - {hi:.1f} |")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(
            HERE / "RESULTS.md", "decorated-ab", "Decorated call before/after (`benchmarks/decorated_ab.py`)", text
        )


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
