"""``modelotel gate``: ``evaluate`` whose exit code is the verdict, for CI and deploy pipelines."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .shared import (
    EXIT_FAIL,
    EXIT_INCONCLUSIVE,
    EXIT_NO_MATCH,
    EXIT_PASS,
    INPUT_EXITS,
    UNJUDGED,
    Help,
    add_command,
    add_inputs,
    evaluate_inputs,
    print_evaluation,
)


def gate_code(statuses: Sequence[str], inconclusive_as: str | None) -> int:
    """A gate that cannot judge (no_match, invalid) beats fail beats inconclusive beats pass; ``inconclusive_as``
    maps inconclusive first (never no_match or invalid: a typo must not pass)."""
    if any(s in UNJUDGED for s in statuses):
        return EXIT_NO_MATCH
    mapped = [inconclusive_as if s == "inconclusive" and inconclusive_as else s for s in statuses]
    if "fail" in mapped:
        return EXIT_FAIL
    if "inconclusive" in mapped:
        return EXIT_INCONCLUSIVE
    return EXIT_PASS


def cmd_gate(args: argparse.Namespace) -> int:
    evaluation = evaluate_inputs(args)
    print_evaluation(args, evaluation)
    code = gate_code([r.status for r in evaluation.results], args.inconclusive_as)
    verdict = {
        EXIT_PASS: "PASS",
        EXIT_FAIL: "FAIL",
        EXIT_INCONCLUSIVE: "INCONCLUSIVE",
        EXIT_NO_MATCH: "CANNOT JUDGE",
    }[code]
    unjudged = [r.slo.name for r in evaluation.results if r.status in UNJUDGED]
    why = f": {', '.join(unjudged)} cannot be judged on this input (see above)" if unjudged else ""
    print(f"gate: {verdict} (exit {code}){why}", file=sys.stderr)
    return code


HELP = Help(
    summary="like evaluate, exiting with the verdict: 0 pass, 1 fail, 2 inconclusive (for CI and deploys)",
    description="""
        Judge SLOs as `modelotel evaluate` does, print the same table (or JSON), and exit with the verdict, for a
        CI job or a deploy pipeline: any SLO that cannot be judged on this input (its selector matches nothing, or
        its points cannot be counted) beats fail, which beats inconclusive (too few events, or no data in part of
        the window), which beats pass. The verdict is also printed on stderr.

        Reads the SLO specs of --slo and the metrics of --data, as evaluate does.
    """,
    examples=(
        ("fail the job when an SLO fails", "modelotel gate --slo slo.yaml --data telemetry.jsonl"),
        (
            "let a canary through when there is too little traffic to judge",
            "modelotel gate --slo slo.yaml --data telemetry.jsonl --inconclusive-as pass",
        ),
    ),
    exit_codes=(
        (EXIT_PASS, "every SLO passes"),
        (EXIT_FAIL, "an SLO fails"),
        (EXIT_INCONCLUSIVE, "an SLO is inconclusive (and none fails)"),
        *INPUT_EXITS,
        (
            EXIT_NO_MATCH,
            "an SLO cannot be judged on this input: its selector matches nothing, or its points cannot "
            "be counted (never mapped by --inconclusive-as: a typo must not pass)",
        ),
    ),
)


def add_parser(sub) -> None:
    p = add_command(sub, "gate", HELP)
    add_inputs(p)
    p.add_argument(
        "--inconclusive-as",
        choices=("pass", "fail"),
        help="treat inconclusive SLOs as passing or failing (default: exit 2)",
    )
    p.set_defaults(func=cmd_gate)
