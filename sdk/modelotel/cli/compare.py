"""``modelotel compare``: a canary or shadow against its baseline: promote, rollback or inconclusive."""

from __future__ import annotations

import argparse

from .shared import (
    EXIT_FAIL,
    EXIT_INCONCLUSIVE,
    EXIT_NO_MATCH,
    EXIT_PASS,
    EXIT_SPEC,
    UsageError,
    read_inputs,
    relative_time,
)


def cmd_compare(args: argparse.Namespace) -> int:
    import json

    from ..evaluator.outputs.text import json_number
    from ..evaluator.quality.arms import ArmCollector, parse_filter
    from ..evaluator.quality.compare import Tolerances, compare

    try:
        base_match, cand_match = parse_filter(args.baseline), parse_filter(args.candidate)
    except ValueError as exc:
        raise UsageError(str(exc), EXIT_SPEC) from None
    if args.model:
        base_match.setdefault("ml.model.name", args.model)
        cand_match.setdefault("ml.model.name", args.model)
    start = relative_time(args.since) if args.since else None
    end = relative_time(args.until) if args.until else None
    baseline, candidate = ArmCollector(base_match, start, end), ArmCollector(cand_match, start, end)
    evaluation = read_inputs((), args.data, None, (baseline, candidate))
    for flag, text, match in (("--baseline", args.baseline, base_match), ("--candidate", args.candidate, cand_match)):
        _check_arm(f"{flag} {text}", match, evaluation.inventory)
    tol = Tolerances(
        latency_relative=args.latency_tolerance,
        error_ratio=args.error_tolerance,
        accuracy=args.accuracy_tolerance,
        min_calls=args.min_calls,
        alpha=args.alpha,
    )
    result = compare(baseline.arm(), candidate.arm(), tol)
    if args.format == "json":
        doc = {
            "verdict": result.verdict,
            "reasons": list(result.reasons),
            "baseline": {"filter": base_match, "calls": baseline.arm().total_calls},
            "candidate": {"filter": cand_match, "calls": candidate.arm().total_calls},
            "checks": [
                {
                    "name": c.name,
                    "status": c.status,
                    "gating": c.gating,
                    "estimate": json_number(c.estimate),
                    "low": json_number(c.low),
                    "high": json_number(c.high),
                    "allowance": json_number(c.allowance),
                    "detail": c.detail,
                }
                for c in result.checks
            ],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(f"baseline  {args.baseline}: {baseline.arm().total_calls:,} calls")
        print(f"candidate {args.candidate}: {candidate.arm().total_calls:,} calls")
        for c in result.checks:
            gate = "gating" if c.gating else "info"
            print(f"  {c.status:<9} {c.name:<22} ({gate}) {c.detail}")
        print(f"verdict: {result.verdict.upper()}" + (f" ({'; '.join(result.reasons)})" if result.reasons else ""))
    code = {"promote": EXIT_PASS, "rollback": EXIT_FAIL, "inconclusive": EXIT_INCONCLUSIVE}[result.verdict]
    if code == EXIT_INCONCLUSIVE and args.inconclusive_as:
        code = EXIT_PASS if args.inconclusive_as == "pass" else EXIT_FAIL
    return code


def _check_arm(what: str, match: dict[str, str], inventory) -> None:
    """Exit 6 when an arm's filter matches no series of the input (a typo), naming the filter that fails."""
    from .. import conventions as conv
    from ..evaluator.engine.diagnose import unmatched_reason
    from ..evaluator.slo import Selector

    selector = Selector(conv.INFERENCE_DURATION, match=tuple(match.items()))
    why = unmatched_reason(selector, inventory)
    if why is not None:
        raise UsageError(f"{what} matches nothing in the input: {why}", EXIT_NO_MATCH)


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="canary/shadow vs baseline: promote (exit 0), rollback (1) or inconclusive (2)")
    p.add_argument("--data", nargs="+", required=True, metavar="FILE_OR_URL")
    p.add_argument("--baseline", required=True, metavar="FILTER", help="e.g. version=1 or role=primary")
    p.add_argument("--candidate", required=True, metavar="FILTER", help="e.g. version=2 or role=canary")
    p.add_argument("--model", help="ml.model.name for both sides")
    p.add_argument("--since", help="only data after this time (as --at, or last:DURATION such as last:15m)")
    p.add_argument("--until", help="only data up to this time (as --since)")
    p.add_argument("--latency-tolerance", type=float, default=0.10, help="relative quantile increase allowed")
    p.add_argument("--error-tolerance", type=float, default=0.005, help="absolute error-ratio increase allowed")
    p.add_argument("--accuracy-tolerance", type=float, default=0.02, help="absolute accuracy drop allowed")
    p.add_argument("--min-calls", type=int, default=500, help="calls per side for a verdict")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--inconclusive-as", choices=("pass", "fail"))
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_compare)
