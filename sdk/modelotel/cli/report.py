"""``modelotel report``: a self-contained HTML report."""

from __future__ import annotations

import argparse
import sys

from .shared import (
    EXIT_INPUT,
    EXIT_PASS,
    UsageError,
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
    out = Path(args.output)
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--output {out}: {exc.strerror or exc}", EXIT_INPUT) from None
    print(f"wrote {out} ({len(html.encode()) / 1024:.0f} kB)")
    return EXIT_PASS


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="a self-contained HTML report: SLOs, budgets, burn rates, latency, drift")
    add_inputs(p)
    add_drift_options(p)
    p.add_argument("--output", "-o", default="report.html")
    p.set_defaults(func=cmd_report)
