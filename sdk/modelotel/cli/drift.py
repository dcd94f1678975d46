"""``modelotel drift``: drift of the model signals between a reference and a current range."""

from __future__ import annotations

import argparse
import sys

from .shared import (
    EXIT_FAIL,
    EXIT_INCONCLUSIVE,
    EXIT_INPUT,
    EXIT_NO_MATCH,
    EXIT_PASS,
    INPUT_EXITS,
    Help,
    add_command,
    add_data,
    add_drift_options,
    add_format,
    add_verbose,
    drift_setup,
    overlap_reason,
)


def _drift_json(rows, reference, current, data_driven: bool) -> str:
    import json

    from ..evaluator.outputs.text import iso, json_number
    from ..evaluator.quality.signals import drifted_by

    out = []
    for r in rows:
        d = r.result
        out.append(
            {
                "model": r.model,
                "signal": r.signal,
                "reference_count": r.reference_count,
                "current_count": r.current_count,
                "psi": json_number(d.psi.value),
                "psi_tier": d.psi.tier,
                "ks": None if d.ks is None else json_number(d.ks.statistic),
                "js": json_number(d.js),
                "hellinger": json_number(d.hellinger),
                "thresholds": {k: json_number(v) for k, v in d.fixed.items()},
                "data_driven_thresholds": {k: json_number(t.value) for k, t in d.data_driven.items()},
                "drifted": {k: drifted_by(d, k, data_driven) for k in d.values()},
            }
        )
    doc = {"reference": [iso(t) for t in reference], "current": [iso(t) for t in current], "signals": out}
    return json.dumps(doc, indent=2)


def _drift_table(rows, data_driven: bool) -> str:
    from ..evaluator.quality.signals import drifted_by

    mw = max([len("model")] + [len(r.model) for r in rows])  # columns as wide as their longest name
    sw = max([len("signal")] + [len(r.signal) for r in rows])
    lines = [
        f"{'model':<{mw}}  {'signal':<{sw}} {'ref n':>8} {'cur n':>8} {'PSI':>7} {'KS':>7} {'JS':>7} {'Hell.':>7}  "
        "drifted"
    ]
    for r in rows:
        d = r.result
        ks = "-" if d.ks is None else f"{d.ks.statistic:.3f}"
        drifted = ",".join(k for k in d.values() if drifted_by(d, k, data_driven)) or "-"
        lines.append(
            f"{r.model:<{mw}}  {r.signal:<{sw}} {r.reference_count:>8,.0f} {r.current_count:>8,.0f} "
            f"{d.psi.value:>7.3f} {ks:>7} {d.js:>7.3f} {d.hellinger:>7.3f}  {drifted}"
        )
    return "\n".join(lines)


def cmd_drift(args: argparse.Namespace) -> int:
    from ..evaluator.quality.signals import drift_rows, drifted_by

    _, signals, ref_signals, reference, current = drift_setup(args)
    overlap = overlap_reason(reference, current, signals, ref_signals)
    if overlap is not None:
        print(f"drift: INCONCLUSIVE ({overlap})", file=sys.stderr)
        return EXIT_INCONCLUSIVE
    rows = drift_rows(signals, reference, current, reference_signals=ref_signals, min_count=args.min_count)
    print(
        _drift_json(rows, reference, current, args.data_driven)
        if args.format == "json"
        else _drift_table(rows, args.data_driven)
    )
    if not rows:
        print("drift: INCONCLUSIVE (no signal with enough data on both sides)", file=sys.stderr)
        return EXIT_INCONCLUSIVE
    drifted = [r for r in rows if any(drifted_by(r.result, m, args.data_driven) for m in args.fail_on)]
    print(f"drift: {len(drifted)} of {len(rows)} signals drifted", file=sys.stderr)
    return EXIT_FAIL if drifted else EXIT_PASS


HELP = Help(
    summary="drift of confidence, OOD score, labels and features: reference vs current",
    description="""
        Compare the distribution of each model signal (prediction confidence, OOD score, predicted labels, every
        recorded feature) between a reference and a current time range: PSI with its tier, KS, Jensen-Shannon and
        Hellinger distances, per model and signal, with the counts on each side. By default the reference is the
        first third of the data and the current range the last third; --reference-data takes the reference from
        another input (last week's export, say).

        Reads the metrics of --data (OTLP JSON lines or a Prometheus URL) that @instrument_model records.
    """,
    examples=(
        (
            "the last hour against the first hour",
            "modelotel drift --data telemetry.jsonl --reference first:1h --current last:1h",
        ),
        (
            "today against last week's export, failing on PSI or KS",
            "modelotel drift --data today.jsonl --reference-data last_week.jsonl --fail-on psi ks",
        ),
    ),
    exit_codes=(
        (EXIT_PASS, "no signal drifted on a --fail-on statistic"),
        (EXIT_FAIL, "a signal drifted on a --fail-on statistic"),
        (
            EXIT_INCONCLUSIVE,
            "the ranges overlap (or hold the same values), or no signal has --min-count values on both sides",
        ),
        *INPUT_EXITS[:1],
        (EXIT_INPUT, "unusable input, or no model signals in it"),
        (EXIT_NO_MATCH, "--model matches no model in the input"),
    ),
)


def add_parser(sub) -> None:
    p = add_command(sub, "drift", HELP)
    add_data(p)
    p.add_argument("--at", help=argparse.SUPPRESS)
    add_drift_options(p)
    p.add_argument("--min-count", type=int, default=30, metavar="N", help="values needed on each side of a signal")
    p.add_argument(
        "--fail-on",
        nargs="+",
        default=["psi"],
        choices=("psi", "ks", "js", "hellinger"),
        help="the statistics whose drift exits 1",
    )
    add_format(p)
    add_verbose(p)
    p.set_defaults(func=cmd_drift)
