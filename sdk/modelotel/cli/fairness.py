"""``modelotel fairness``: per-group rates and disparities from feedback."""

from __future__ import annotations

import argparse
import math
import sys

from .shared import (
    EXIT_FAIL,
    EXIT_INCONCLUSIVE,
    EXIT_INPUT,
    EXIT_PASS,
    UsageError,
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
            print(f"  {'group':<16} {'feedback':>9} {'accuracy':>9} {'sel.rate':>9} {'TPR':>7} {'FPR':>7}")
            for g in f.groups:
                print(
                    f"  {g.group:<16} {g.counts.feedback:>9,.0f} {_rate(g.accuracy):>9} {_rate(g.selection_rate):>9} "
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


def add_parser(sub) -> None:
    p = sub.add_parser("fairness", help="per-group accuracy, selection rate, TPR, FPR and disparities from feedback")
    p.add_argument("--data", nargs="+", required=True, metavar="FILE_OR_URL")
    p.add_argument("--model", help="only this ml.model.name")
    p.add_argument("--since", help="only data after this time (as --at)")
    p.add_argument("--until", help="only data up to this time")
    p.add_argument(
        "--max-difference", type=float, help="exit 1 when demographic parity or equalized odds difference exceeds this"
    )
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_fairness)
