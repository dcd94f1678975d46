"""``modelotel fairness``: per-group rates and disparities from feedback."""

from __future__ import annotations

import argparse
import math
import sys

from .shared import (
    EXIT_FAIL,
    EXIT_INCONCLUSIVE,
    EXIT_INPUT,
    EXIT_NO_MATCH,
    EXIT_PASS,
    INPUT_EXITS,
    Help,
    UsageError,
    add_command,
    add_data,
    add_format,
    add_verbose,
    check_model,
    parse_time,
    read_inputs,
)


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def cmd_fairness(args: argparse.Namespace) -> int:
    import json

    from ..evaluator.quality.signals import FeedbackCounts

    counts = FeedbackCounts(
        parse_time(args.since) if args.since else None, parse_time(args.until) if args.until else None, args.model
    )
    evaluation = read_inputs((), args.data, None, (counts,))
    if args.model:
        check_model(args.model, evaluation.inventory, sorted(FeedbackCounts.metrics))
    models = sorted(counts.counts)
    if not models:
        raise UsageError("no ml.feedback data in the input (record_feedback with group= enables fairness)", EXIT_INPUT)
    docs, worst = [], 0.0
    for model in models:
        f = counts.fairness(model)
        if not f.groups:
            continue
        worst = max(worst, f.demographic_parity_difference, f.equalized_odds_difference)
        docs.append((model, f))
    if args.format == "json":

        def num(x: float | None) -> float | None:
            return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)  # full precision

        out = [
            {
                "model": model,
                "groups": [
                    {
                        "group": g.group,
                        "feedback": g.counts.feedback,
                        "accuracy": num(g.accuracy),
                        "selection_rate": num(g.selection_rate),
                        "tpr": num(g.tpr),
                        "fpr": num(g.fpr),
                    }
                    for g in f.groups
                ],
                "demographic_parity_difference": num(f.demographic_parity_difference),
                "demographic_parity_ratio": num(f.demographic_parity_ratio),
                "equalized_odds_difference": num(f.equalized_odds_difference),
                "equalized_odds_ratio": num(f.equalized_odds_ratio),
                "ungrouped_feedback": f.ungrouped,
                "method": "fairlearn between_groups, worst_case",
            }
            for model, f in docs
        ]
        print(json.dumps({"models": out}, indent=2))
    else:
        for model, f in docs:
            print(f"model {model}")
            gw = max([16] + [len(g.group) for g in f.groups])  # as wide as the longest group name
            print(f"  {'group':<{gw}} {'feedback':>9} {'accuracy':>9} {'sel.rate':>9} {'TPR':>7} {'FPR':>7}")
            for g in f.groups:
                print(
                    f"  {g.group:<{gw}} {g.counts.feedback:>9,.0f} {_rate(g.accuracy):>9} {_rate(g.selection_rate):>9} "
                    f"{_rate(g.tpr):>7} {_rate(g.fpr):>7}"
                )
            print(
                f"  demographic parity difference {f.demographic_parity_difference:.3f} "
                f"(ratio {f.demographic_parity_ratio:.3f}); equalized odds difference "
                f"{f.equalized_odds_difference:.3f} (fairlearn between_groups, worst case)"
            )
    if not docs:
        print("fairness: INCONCLUSIVE (feedback carries no ml.fairness.group)", file=sys.stderr)
        return EXIT_INCONCLUSIVE
    if args.max_difference is not None:
        return EXIT_FAIL if worst > args.max_difference else EXIT_PASS
    return EXIT_PASS


HELP = Help(
    summary="per-group accuracy, selection rate, TPR, FPR and disparities from feedback",
    description="""
        Per model and fairness group (the group= of record_feedback, or --group-column of modelotel feedback):
        accuracy, selection rate, true and false positive rates, and the demographic parity and equalized odds
        differences and ratios between groups (fairlearn's between_groups, worst case). With --max-difference it
        is a gate.

        Reads the feedback metrics (ml.feedback) of --data: OTLP JSON lines or a Prometheus URL.
    """,
    examples=(
        ("every model's groups", "modelotel fairness --data telemetry.jsonl"),
        (
            "fail when fraud's groups differ by more than 10 points",
            "modelotel fairness --data telemetry.jsonl --model fraud --max-difference 0.1",
        ),
    ),
    exit_codes=(
        (EXIT_PASS, "rates computed (and within --max-difference when given)"),
        (EXIT_FAIL, "a disparity exceeds --max-difference"),
        (EXIT_INCONCLUSIVE, "the feedback carries no fairness group"),
        *INPUT_EXITS[:1],
        (EXIT_INPUT, "unusable input, or no feedback in it"),
        (EXIT_NO_MATCH, "--model matches no model in the input"),
    ),
)


def add_parser(sub) -> None:
    p = add_command(sub, "fairness", HELP)
    add_data(p)
    p.add_argument("--model", help="only this ml.model.name (default: every model)")
    p.add_argument("--since", metavar="TIME", help="only data after this time: now, epoch s or ISO 8601")
    p.add_argument("--until", metavar="TIME", help="only data up to this time (default: the end of the data)")
    p.add_argument(
        "--max-difference",
        type=float,
        metavar="D",
        help="exit 1 when the demographic parity or equalized odds difference exceeds this (default: no limit)",
    )
    add_format(p)
    add_verbose(p)
    p.set_defaults(func=cmd_fairness)
