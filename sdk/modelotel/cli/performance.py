"""``modelotel performance``: model performance from feedback telemetry."""

from __future__ import annotations

import argparse
import math
import sys

from .shared import (
    EXIT_INCONCLUSIVE,
    EXIT_INPUT,
    EXIT_NO_MATCH,
    EXIT_PASS,
    EXIT_SPEC,
    Help,
    UsageError,
    add_command,
    add_data,
    add_verbose,
    check_model,
    instant,
    read_inputs,
)

PERFORMANCE_HELP = Help(
    summary="accuracy, confusion matrix, P/R/F1, calibration, regression error, label latency and coverage",
    description="""
        Accuracy, confusion matrix, per-class precision/recall/F1 (sklearn's definitions, 0/0 counted as 0),
        calibration (ECE, Brier), regression MAE/RMSE/|error| quantiles, label latency and label coverage of every
        model, from the feedback telemetry of record_feedback (judged in any process). A window is prediction
        time: its figures count the predictions made in it, whenever their labels arrived (docs/quality.md,
        "Performance from feedback"). A figure that cannot be computed says why.

        Reads the feedback and prediction metrics (ml.feedback, ml.predictions) of --data: OTLP JSON lines or a
        Prometheus URL.
    """,
    examples=(
        (
            "fraud's last 7 days of predictions",
            "modelotel performance --data telemetry.jsonl --model fraud --window 7d",
        ),
        (
            "one day, as JSON at full precision",
            "modelotel performance --data telemetry.jsonl --from 2026-12-01T00:00:00Z --to 2026-12-02T00:00:00Z --json",
        ),
    ),
    exit_codes=(
        (EXIT_PASS, "figures for at least one model"),
        (EXIT_INCONCLUSIVE, "no feedback for predictions made in the window"),
        (EXIT_SPEC, "unusable arguments"),
        (EXIT_INPUT, "unusable input (unreadable, or no feedback or prediction telemetry)"),
        (EXIT_NO_MATCH, "--model matches nothing in the input"),
    ),
)


def performance_window(span: tuple[float, float], window: str | None, start: str | None, end: str | None):
    """``(start, end]`` from ``--window`` / ``--from`` / ``--to``: any two of them, or one (``--window`` ends at the
    end of the data, ``--from`` runs to it, ``--to`` starts at its beginning); none: all the data."""
    from ..evaluator.durations import parse_duration

    if window is not None and start is not None and end is not None:
        raise UsageError("give at most two of --window, --from and --to", EXIT_SPEC)
    length = None
    if window is not None:
        try:
            length = parse_duration(window)
        except ValueError as exc:
            raise UsageError(f"--window: {exc}", EXIT_SPEC) from None
        if length <= 0:
            raise UsageError(f"--window must be positive, got {window!r}", EXIT_SPEC)
    a = instant("--from", start) if start is not None else None
    b = instant("--to", end) if end is not None else None
    if length is not None:
        if a is not None:
            b = a + length
        else:
            b = span[1] if b is None else b
            a = b - length
    a = math.nextafter(span[0], -math.inf) if a is None else a  # (start, end]: the first bucket included
    b = span[1] if b is None else b
    if b <= a:
        raise UsageError("the window is empty: --to must be after --from", EXIT_SPEC)
    return a, b


def cmd_performance(args: argparse.Namespace) -> int:
    from ..evaluator.outputs import performance as output
    from ..evaluator.quality.performance import PerformanceData

    data = PerformanceData({"ml.model.name": args.model} if args.model else None)
    evaluation = read_inputs((), args.data, None, (data,))
    if args.model:
        check_model(args.model, evaluation.inventory, sorted(PerformanceData.metrics))
    span = data.span()
    if span is None:
        raise UsageError("no feedback or prediction telemetry (ml.feedback, ml.predictions) in the input", EXIT_INPUT)
    start, end = performance_window(span, args.window, args.start, args.end)
    perfs = [data.performance(model, start, end, positive_label=args.positive_label) for model in data.models()]
    print(output.to_json(perfs, start, end) if args.json else output.to_text(perfs, start, end))
    if not any(p.judged for p in perfs):
        print("performance: INCONCLUSIVE (no feedback for predictions made in the window)", file=sys.stderr)
        return EXIT_INCONCLUSIVE
    return EXIT_PASS


def add_parser(sub) -> None:
    p = add_command(sub, "performance", PERFORMANCE_HELP)
    add_data(p)
    p.add_argument("--model", help="only this ml.model.name (default: every model)")
    p.add_argument("--window", metavar="DURATION", help="e.g. 7d or 1h: ending at --to or the end of the data")
    p.add_argument("--from", dest="start", metavar="TIME", help="window start, exclusive (now, epoch s, ISO 8601)")
    p.add_argument("--to", dest="end", metavar="TIME", help="window end, inclusive (default: the end of the data)")
    p.add_argument(
        "--positive-label",
        metavar="LABEL",
        help="the positive class for the estimated precision/recall/F1 (default: the one feedback's flags name)",
    )
    p.add_argument("--json", action="store_true", help="JSON at full precision instead of text")
    add_verbose(p)
    p.set_defaults(func=cmd_performance)
