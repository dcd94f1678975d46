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
    UNJUDGED,
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


def add_parser(sub) -> None:
    p = sub.add_parser("gate", help="like evaluate; exit 0 pass, 1 fail, 2 inconclusive, >=3 unusable input")
    add_inputs(p)
    p.add_argument("--inconclusive-as", choices=("pass", "fail"), help="treat inconclusive SLOs as pass or fail")
    p.set_defaults(func=cmd_gate)
