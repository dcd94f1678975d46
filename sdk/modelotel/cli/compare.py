"""``modelotel compare``: a canary or shadow against its baseline: promote, rollback or inconclusive."""

from __future__ import annotations

import argparse
import shutil
import textwrap

from .shared import (
    EXIT_FAIL,
    EXIT_INCONCLUSIVE,
    EXIT_NO_MATCH,
    EXIT_PASS,
    EXIT_SPEC,
    INPUT_EXITS,
    Help,
    UsageError,
    add_command,
    add_data,
    add_format,
    add_verbose,
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
        print(
            comparison_text(
                result, args.baseline, args.candidate, baseline.arm().total_calls, candidate.arm().total_calls
            )
        )
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


def text_width() -> int:
    """The terminal's width, at most 100 columns (100 off a terminal)."""
    return min(shutil.get_terminal_size((100, 24)).columns, 100)


def comparison_text(result, baseline: str, candidate: str, base_calls: int, cand_calls: int, width: int = 0) -> str:
    """The checks one per line, their details wrapped under them, then the verdict with each failing check (and
    each reason the checks do not give) on its own line: no line runs off the screen."""
    width = width or text_width()
    lines = [f"baseline  {baseline}: {base_calls:,} calls", f"candidate {candidate}: {cand_calls:,} calls", ""]
    name_width = max((len(c.name) for c in result.checks), default=0)
    for c in result.checks:
        head = f"  {c.status:<12} {c.name:<{name_width}}  {'gating' if c.gating else 'info':<6}  "
        indent = " " * (len(head) if width - len(head) >= 40 else 6)  # under the detail, unless that is too narrow
        lines.append(
            textwrap.fill(c.detail, width, initial_indent=head, subsequent_indent=indent, break_on_hyphens=False)
        )
    failing = [c.name for c in result.checks if c.gating and c.status == "fail"]
    verdict = f"verdict: {result.verdict.upper()}"
    if failing:
        verdict += f": {len(failing)} gating check{'s' if len(failing) > 1 else ''} failed"
    lines += ["", verdict]
    lines += [f"  - {name}" for name in failing]
    details = {c.detail for c in result.checks}
    for reason in (r for r in result.reasons if r not in details):  # the checks above already say theirs
        lines.append(
            textwrap.fill(reason, width, initial_indent="  - ", subsequent_indent="    ", break_on_hyphens=False)
        )
    return "\n".join(lines)


HELP = Help(
    summary="canary or shadow vs baseline: promote (exit 0), rollback (1) or inconclusive (2)",
    description="""
        Compare a candidate (a canary or a shadow model) with its baseline on the same telemetry: latency
        quantiles, error ratio, accuracy from feedback, and the drift of confidence and OOD scores between them.
        Each check is a one-sided test at --alpha against its tolerance; the verdict is rollback when a gating check
        fails, inconclusive when one cannot be decided (too few calls, intervals straddling the tolerance), and
        promote otherwise. Each check and each reason is printed on its own line.

        Reads the model metrics that @instrument_model records from --data (OTLP JSON lines or a Prometheus URL);
        the two sides are filters on their attributes (version=2, role=canary, ...).
    """,
    examples=(
        (
            "version 2 against version 1 over the last 15 minutes",
            "modelotel compare --data telemetry.jsonl --baseline version=1 --candidate version=2 --since last:15m",
        ),
        (
            "a shadow model, allowing 5% more latency, as JSON",
            "modelotel compare --data telemetry.jsonl --model fraud --baseline role=primary --candidate role=shadow "
            "--latency-tolerance 0.05 --format json",
        ),
    ),
    exit_codes=(
        (EXIT_PASS, "promote: every gating check within its tolerance"),
        (EXIT_FAIL, "rollback: a gating check fails"),
        (EXIT_INCONCLUSIVE, "inconclusive: too few calls, or a check cannot be decided (see --inconclusive-as)"),
        *INPUT_EXITS,
        (EXIT_NO_MATCH, "--baseline or --candidate matches nothing in the input"),
    ),
)


def add_parser(sub) -> None:
    p = add_command(sub, "compare", HELP)
    add_data(p)
    p.add_argument("--baseline", required=True, metavar="FILTER", help="key=value[,key=value]: e.g. version=1")
    p.add_argument("--candidate", required=True, metavar="FILTER", help="key=value[,key=value]: e.g. version=2")
    p.add_argument("--model", help="the ml.model.name of both sides (default: any model the filters match)")
    p.add_argument(
        "--since", metavar="TIME", help="only data after this time: now, epoch s, ISO 8601 or last:DURATION (last:15m)"
    )
    p.add_argument("--until", metavar="TIME", help="only data up to this time, as --since (default: the end)")
    p.add_argument(
        "--latency-tolerance",
        type=float,
        default=0.10,
        metavar="RATIO",
        help="relative increase of each latency quantile allowed (0.10: 10%% slower)",
    )
    p.add_argument(
        "--error-tolerance",
        type=float,
        default=0.005,
        metavar="RATIO",
        help="absolute increase of the error ratio allowed (0.005: half a point)",
    )
    p.add_argument(
        "--accuracy-tolerance",
        type=float,
        default=0.02,
        metavar="RATIO",
        help="absolute drop of accuracy from feedback allowed (0.02: two points)",
    )
    p.add_argument("--min-calls", type=int, default=500, metavar="N", help="calls each side needs for a verdict")
    p.add_argument("--alpha", type=float, default=0.05, help="the significance level of each check")
    p.add_argument(
        "--inconclusive-as",
        choices=("pass", "fail"),
        help="exit 0 (pass) or 1 (fail) instead of 2 when inconclusive (default: exit 2)",
    )
    add_format(p)
    add_verbose(p)
    p.set_defaults(func=cmd_compare)
