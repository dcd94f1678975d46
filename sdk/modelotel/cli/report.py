"""``modelotel report``: a self-contained HTML report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .shared import (
    EXIT_INPUT,
    EXIT_NO_MATCH,
    EXIT_PASS,
    EXIT_SPEC,
    Help,
    UsageError,
    add_command,
    add_drift_options,
    add_inputs,
    drift_setup,
    load_slos,
    overlap_reason,
)


def _reliability(signals, start: float, end: float):
    from ..evaluator.quality.calibration import calibration

    tl = signals.feedback_confidence
    diagrams = []
    for model in sorted({g[0] for g in tl.groups()}):
        correct = tl.merged((model, "true"), start, end)
        incorrect = tl.merged((model, "false"), start, end)
        if correct is None and incorrect is None:
            continue
        cal = calibration(correct, incorrect)
        if not cal.count:
            continue
        bins = [(b.mean_confidence, b.accuracy, b.count) for b in cal.bins if b.count]
        caption = (
            f"ECE {cal.ece:.3f} \u00b1 {cal.ece_bound + cal.binning_bound:.3f}, Brier {cal.brier:.3f}, n={cal.count}"
        )
        diagrams.append((model, bins, caption))
    return diagrams


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..evaluator.outputs import report
    from ..evaluator.quality.signals import FeedbackCounts, drift_rows

    slos = load_slos(args.slo)
    feedback = FeedbackCounts()
    evaluation, signals, ref_signals, reference, current = drift_setup(args, slos, (feedback,), False)
    rows = []
    if reference is not None and current is not None:
        overlap = overlap_reason(reference, current, signals, ref_signals)
        if overlap is not None:
            print(f"note: drift in the report says nothing: {overlap}", file=sys.stderr)
        rows = drift_rows(signals, reference, current, reference_signals=ref_signals)
    span = signals.span() or (evaluation.at - 3600, evaluation.at)
    html = report.render(
        evaluation,
        signals,
        drift=rows,
        reference=reference,
        current=current,
        reliability=_reliability(signals, span[0], evaluation.at),
        fairness=[(m, f) for m in sorted(feedback.counts) if (f := feedback.fairness(m)).groups],
    )
    write_report(html, Path(args.output), args.force)
    return EXIT_PASS


DEFAULT_OUTPUT = "report.html"


def fresh_output(directory: Path, now: float) -> Path:
    """report.html when there is none; else report-YYYYmmddTHHMMSSZ.html (UTC), -2, -3, ... while taken."""
    first = directory / DEFAULT_OUTPUT
    if not first.exists():
        return first
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    path, n = directory / f"report-{stamp}.html", 1
    while path.exists():
        n += 1
        path = directory / f"report-{stamp}-{n}.html"
    return path


def check_output(args: argparse.Namespace) -> None:
    """Before any reading: the output chosen (a fresh name by default), an existing --output refused unless
    --force and a missing directory refused, so a long run does not end in one of those errors."""
    if args.output is None:
        args.output = str(fresh_output(Path("."), time.time()))
    elif Path(args.output).exists() and not args.force:
        raise UsageError(f"--output {args.output} exists: add --force to overwrite it, or choose another", EXIT_SPEC)
    parent = Path(args.output).parent
    if not parent.is_dir():
        raise UsageError(f"--output {args.output}: no directory {parent}", EXIT_INPUT)


def write_report(html: str, out: Path, force: bool) -> None:
    """Write the report; without ``force`` only to a file that does not exist yet (checked as it is created)."""
    try:
        with open(out, "w" if force else "x", encoding="utf-8") as fh:
            fh.write(html)
    except FileExistsError:
        raise UsageError(f"--output {out} exists: add --force to overwrite it, or choose another", EXIT_SPEC) from None
    except OSError as exc:
        raise UsageError(f"--output {out}: {exc.strerror or exc}", EXIT_INPUT) from None
    print(f"wrote {out} ({len(html.encode()) / 1024:.0f} kB)")


def run_report(args: argparse.Namespace) -> int:
    check_output(args)
    return cmd_report(args)


HELP = Help(
    summary="a self-contained HTML report: what needs attention, SLOs, budgets, burn rates, latency, drift",
    description="""
        Write one HTML file that reads without a network or a script: first what needs attention (each SLO's
        status, the alerts firing and since when, the budget left, the next step), then the SLO table, charts of
        SLIs, budgets, burn rates and latency over time, drift between a reference and a current range,
        calibration and fairness from feedback. docs/report.md explains each part. Exits 0 whatever the verdict.

        Reads the SLO specs of --slo and the metrics of --data (OTLP JSON lines or a Prometheus URL). Never
        overwrites a file unless --force: without --output it writes report.html, or report-<UTC time>.html
        when report.html exists, and says which.
    """,
    examples=(
        ("a report of the demo's telemetry", "modelotel report --slo slo.yaml --data telemetry.jsonl"),
        (
            "the last hour's drift against the first, replacing last run's file",
            "modelotel report --slo slo.yaml --data telemetry.jsonl --reference first:1h --current last:1h "
            "--output out/report.html --force",
        ),
    ),
    exit_codes=(
        (EXIT_PASS, "report written (whatever the verdict)"),
        (EXIT_SPEC, "unusable arguments or SLO spec, or --output exists and --force is not given"),
        (EXIT_INPUT, "unusable input, or --output cannot be written"),
        (EXIT_NO_MATCH, "--model matches no model in the input"),
    ),
)


def add_parser(sub) -> None:
    p = add_command(sub, "report", HELP)
    add_inputs(p, output_format=False)  # the output is HTML: no --format
    add_drift_options(p)
    p.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help=f"where to write the report (default: {DEFAULT_OUTPUT}, or report-YYYYmmddTHHMMSSZ.html when "
        f"{DEFAULT_OUTPUT} exists)",
    )
    p.add_argument("--force", "-f", action="store_true", help="overwrite --output if it exists")
    p.set_defaults(func=run_report)
