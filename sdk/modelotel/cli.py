"""The ``modelotel`` command: ``evaluate``, ``gate``, ``drift``, ``report`` (and more, see ``--help``).

Exit codes of ``gate`` (and the verdict commands): 0 pass, 1 fail, 2 inconclusive, 3 unusable spec or
arguments, 4 unusable input, 5 internal error, 6 cannot be judged on this input (a selector or filter that
matches nothing, or points that matched but cannot be counted). ``evaluate`` and ``report`` exit 0 whatever the
verdict. ``feedback`` has its own (0 all rows recorded, 1 some refused, 2 usage, 3 export failed: FEEDBACK_HELP).
Errors print one line, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

from . import config
from ._version import __version__

EXIT_PASS, EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_SPEC, EXIT_INPUT, EXIT_INTERNAL, EXIT_NO_MATCH = 0, 1, 2, 3, 4, 5, 6
UNJUDGED = ("no_match", "invalid")  # statuses that say the spec and the input do not fit: exit 6
PROGRESS_MIN_BYTES = 32 * 1024 * 1024


class UsageError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def parse_time(text: str) -> float:
    """``--at``: ``now``, epoch seconds, or ISO 8601 (``2026-11-22T10:00:00Z``; naive times are UTC)."""
    from .evaluator.durations import parse_instant

    try:
        return parse_instant(text)
    except ValueError as exc:
        raise UsageError(f"--at: {exc}", EXIT_SPEC) from None


class Progress:
    """Progress on stderr for large inputs: a live line on a terminal, a line every 5 s otherwise."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.last_line = 0.0
        self.shown = False

    def __call__(self, source: str, done: int, total: int) -> None:
        if total < PROGRESS_MIN_BYTES:
            return
        now = time.monotonic()
        if not self.tty and now - self.last_line < 5.0 and done < total:
            return
        self.last_line = now
        rate = done / max(now - self.started, 1e-6) / 1e6
        text = f"reading {source}: {done / total:.0%} ({done / 1e6:,.0f} of {total / 1e6:,.0f} MB, {rate:.0f} MB/s)"
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _load_slos(paths: Sequence[str]):
    from .evaluator import spec

    try:
        specs = spec.load_specs(list(paths))
    except spec.SpecError as exc:
        raise UsageError(str(exc), EXIT_SPEC) from None
    for note in specs.notes:
        print(f"note: {note}", file=sys.stderr)
    slos = list(specs.slos)
    if not slos:
        raise UsageError(f"{', '.join(paths)}: no SLOs defined", EXIT_SPEC)
    return slos


def _read(slos, data: Sequence[str], at: float | None, sinks=()):
    from .evaluator import engine, sources

    progress = Progress()
    try:
        return engine.evaluate(slos, data, at=at, progress=progress, sinks=sinks)
    except sources.SourceError as exc:
        raise UsageError(str(exc), EXIT_INPUT) from None
    except engine.NoData as exc:
        raise UsageError(str(exc), EXIT_INPUT) from None
    finally:
        progress.close()


def _evaluate(args: argparse.Namespace, sinks=()):
    slos = _load_slos(args.slo)
    return _read(slos, args.data, parse_time(args.at) if args.at else None, sinks)


def _print(args: argparse.Namespace, evaluation) -> None:
    from .evaluator.outputs import text as output

    print(output.to_json(evaluation) if args.format == "json" else output.to_table(evaluation))


def cmd_evaluate(args: argparse.Namespace) -> int:
    _print(args, _evaluate(args))
    return EXIT_PASS


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
    evaluation = _evaluate(args)
    _print(args, evaluation)
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


def parse_range(text: str | None, span: tuple[float, float], default: tuple[float, float]) -> tuple[float, float]:
    """``FROM..TO`` (times as for ``--at``), ``first:DURATION`` or ``last:DURATION`` of the data; None: default."""
    from .evaluator.durations import parse_duration

    if not text:
        return default
    if text.startswith(("first:", "last:")):
        kind, _, dur = text.partition(":")
        try:
            seconds = parse_duration(dur)
        except ValueError as exc:
            raise UsageError(f"{text!r}: {exc}", EXIT_SPEC) from None
        return (span[0], span[0] + seconds) if kind == "first" else (span[1] - seconds, span[1])
    a, sep, b = text.partition("..")
    if not sep:
        raise UsageError(f"expected FROM..TO, first:DURATION or last:DURATION, got {text!r}", EXIT_SPEC)
    return parse_time(a), parse_time(b)


def _drift_setup(args: argparse.Namespace, slos=(), extra=(), require_signals: bool = True):
    """Read the inputs once with the signal timelines; pick the reference and current ranges (None without model
    signals when not ``require_signals``: a report on HTTP metrics alone)."""
    from .evaluator.quality.signals import Signals

    model = getattr(args, "model", None)
    match = {"ml.model.name": model} if model else None
    signals = Signals.create(args.resolution, match)
    evaluation = _read(slos, args.data, parse_time(args.at) if args.at else None, [*signals.timelines(), *extra])
    if model:
        _check_model(model, evaluation.inventory, [t.metric for t in signals.timelines()])
    reference_signals = None
    if args.reference_data:
        reference_signals = Signals.create(args.resolution, match)
        _read((), args.reference_data, None, reference_signals.timelines())
    span = signals.span()
    if span is None and not require_signals:
        return evaluation, signals, reference_signals, None, None
    if span is None:
        raise UsageError("no model signals (confidence, OOD score, features, labels) in the input", EXIT_INPUT)
    ref_span = reference_signals.span() if reference_signals else span
    if ref_span is None:
        raise UsageError("no model signals in the reference input", EXIT_INPUT)
    third = (span[1] - span[0]) / 3
    reference = parse_range(args.reference, ref_span, ref_span if reference_signals else (span[0], span[0] + third))
    current = parse_range(args.current, span, (span[1] - third, span[1]))
    return evaluation, signals, reference_signals, reference, current


def _check_model(model: str, inventory, metrics: Sequence[str]) -> None:
    """Exit 6 when no series of ``metrics`` in the input is of ``model`` (a typo), listing the models it holds."""
    from .evaluator.engine.diagnose import listing, values_of

    seen: set[str] = set()
    for metric in metrics:
        seen |= values_of(inventory.series.get(metric) or [], "ml.model.name")
    if model not in seen:
        import difflib

        close = difflib.get_close_matches(model, sorted(seen), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(
            f"--model {model!r} matches nothing in the input{hint}; models in the input: {listing(seen)}",
            EXIT_NO_MATCH,
        )


def _overlap_reason(reference, current, signals, reference_signals) -> str | None:
    """Why the drift of these ranges would say nothing: they overlap in one input, or hold the same values."""
    from .evaluator.outputs.text import iso
    from .evaluator.quality.signals import same_values

    start, end = max(reference[0], current[0]), min(reference[1], current[1])
    if start >= end:
        return None
    shown = f"reference {iso(reference[0])}..{iso(reference[1])}, current {iso(current[0])}..{iso(current[1])}"
    if reference_signals is None:
        return (
            f"the reference and current ranges overlap ({shown}): the same values on both sides hide drift; "
            "choose ranges that do not overlap (--reference first:1h --current last:1h)"
        )
    if same_values(signals, reference_signals, start, end):
        return (
            f"the reference and current data hold the same values where their ranges overlap ({shown}): one "
            "export given as both? Take the reference from another period or input"
        )
    return None


def _drift_json(rows, reference, current, data_driven: bool) -> str:
    import json

    from .evaluator.outputs.text import iso, json_number
    from .evaluator.quality.signals import drifted_by

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
    from .evaluator.quality.signals import drifted_by

    lines = [
        f"{'model':<12} {'signal':<22} {'ref n':>8} {'cur n':>8} {'PSI':>7} {'KS':>7} {'JS':>7} {'Hell.':>7}  drifted"
    ]
    for r in rows:
        d = r.result
        ks = "-" if d.ks is None else f"{d.ks.statistic:.3f}"
        drifted = ",".join(k for k in d.values() if drifted_by(d, k, data_driven)) or "-"
        lines.append(
            f"{r.model:<12} {r.signal:<22} {r.reference_count:>8,.0f} {r.current_count:>8,.0f} {d.psi.value:>7.3f} "
            f"{ks:>7} {d.js:>7.3f} {d.hellinger:>7.3f}  {drifted}"
        )
    return "\n".join(lines)


def cmd_drift(args: argparse.Namespace) -> int:
    from .evaluator.quality.signals import drift_rows, drifted_by

    _, signals, ref_signals, reference, current = _drift_setup(args)
    overlap = _overlap_reason(reference, current, signals, ref_signals)
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


def _reliability(signals, start: float, end: float):
    from .evaluator.quality.calibration import calibration

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

    from .evaluator.outputs import report
    from .evaluator.quality.signals import FeedbackCounts, drift_rows

    slos = _load_slos(args.slo)
    feedback = FeedbackCounts()
    evaluation, signals, ref_signals, reference, current = _drift_setup(args, slos, (feedback,), False)
    rows = []
    if reference is not None and current is not None:
        overlap = _overlap_reason(reference, current, signals, ref_signals)
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


def _relative_time(text: str) -> float:
    """As ``--at``, or ``last:DURATION`` (that long before now, e.g. ``last:15m``)."""
    if text.startswith("last:"):
        from .evaluator.durations import parse_duration

        try:
            return time.time() - parse_duration(text[len("last:") :])
        except ValueError as exc:
            raise UsageError(f"{text!r}: {exc}", EXIT_SPEC) from None
    return parse_time(text)


def cmd_compare(args: argparse.Namespace) -> int:
    import json

    from .evaluator.outputs.text import json_number
    from .evaluator.quality.arms import ArmCollector, parse_filter
    from .evaluator.quality.compare import Tolerances, compare

    try:
        base_match, cand_match = parse_filter(args.baseline), parse_filter(args.candidate)
    except ValueError as exc:
        raise UsageError(str(exc), EXIT_SPEC) from None
    if args.model:
        base_match.setdefault("ml.model.name", args.model)
        cand_match.setdefault("ml.model.name", args.model)
    start = _relative_time(args.since) if args.since else None
    end = _relative_time(args.until) if args.until else None
    baseline, candidate = ArmCollector(base_match, start, end), ArmCollector(cand_match, start, end)
    evaluation = _read((), args.data, None, (baseline, candidate))
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
    from . import conventions as conv
    from .evaluator.engine.diagnose import unmatched_reason
    from .evaluator.slo import Selector

    selector = Selector(conv.INFERENCE_DURATION, match=tuple(match.items()))
    why = unmatched_reason(selector, inventory)
    if why is not None:
        raise UsageError(f"{what} matches nothing in the input: {why}", EXIT_NO_MATCH)


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def cmd_fairness(args: argparse.Namespace) -> int:
    import json
    import math

    from .evaluator.quality.signals import FeedbackCounts

    counts = FeedbackCounts(
        parse_time(args.since) if args.since else None, parse_time(args.until) if args.until else None, args.model
    )
    evaluation = _read((), args.data, None, (counts,))
    if args.model:
        _check_model(args.model, evaluation.inventory, sorted(FeedbackCounts.metrics))
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


PERFORMANCE_HELP = """\
Accuracy, confusion matrix, per-class precision/recall/F1 (sklearn's definitions, 0/0 counted as 0), calibration
(ECE, Brier), regression MAE/RMSE/|error| quantiles, label latency and label coverage of every model, from the
feedback telemetry of record_feedback (judged in any process). A window is prediction time: its figures count the
predictions made in it, whenever their labels arrived (docs/quality.md, "Performance from feedback"). A figure that
cannot be computed says why.

example:
  modelotel performance --data telemetry.jsonl --model fraud --window 7d
  modelotel performance --data telemetry.jsonl --from 2026-12-01T00:00:00Z --to 2026-12-02T00:00:00Z --json

exit codes: 0 figures for at least one model, 2 no feedback for predictions made in the window, 3 unusable
arguments, 4 unusable input (unreadable, or no feedback or prediction telemetry), 5 internal error, 6 --model
matches nothing in the input.
"""


def performance_window(span: tuple[float, float], window: str | None, start: str | None, end: str | None):
    """``(start, end]`` from ``--window`` / ``--from`` / ``--to``: any two of them, or one (``--window`` ends at the
    end of the data, ``--from`` runs to it, ``--to`` starts at its beginning); none: all the data."""
    from .evaluator.durations import parse_duration

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
    a = _instant("--from", start) if start is not None else None
    b = _instant("--to", end) if end is not None else None
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


def _instant(flag: str, text: str) -> float:
    from .evaluator.durations import parse_instant

    try:
        return parse_instant(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}", EXIT_SPEC) from None


def cmd_performance(args: argparse.Namespace) -> int:
    from .evaluator.outputs import performance as output
    from .evaluator.quality.performance import PerformanceData

    data = PerformanceData({"ml.model.name": args.model} if args.model else None)
    evaluation = _read((), args.data, None, (data,))
    if args.model:
        _check_model(args.model, evaluation.inventory, sorted(PerformanceData.metrics))
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


def cmd_rules(args: argparse.Namespace) -> int:
    from .evaluator.outputs.rules import RulesError, rules_yaml

    try:
        print(rules_yaml(_load_slos(args.slo)), end="")
    except RulesError as exc:
        raise UsageError(str(exc), EXIT_SPEC) from None
    return EXIT_PASS


def cmd_dashboard(args: argparse.Namespace) -> int:
    from .evaluator.outputs.dashboard import dashboard_json

    slos = _load_slos(args.slo) if args.slo else None
    print(dashboard_json(slos, args.datasource))
    return EXIT_PASS


def _add_drift_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reference", metavar="RANGE", help="FROM..TO, first:DURATION or last:DURATION (default: first third)"
    )
    p.add_argument("--current", metavar="RANGE", help="as --reference (default: last third of the data)")
    p.add_argument("--reference-data", nargs="+", metavar="FILE_OR_URL", help="take the reference from other input")
    p.add_argument("--model", help="only this ml.model.name")
    p.add_argument(
        "--data-driven",
        action="store_true",
        help="also flag drift beyond mean + 3 sigma of the statistic over reference chunks",
    )
    # 1 s bins; timelines coarsen by themselves on long inputs (timeline.max_bins)
    p.add_argument("--resolution", type=float, default=1.0, help=argparse.SUPPRESS)


def _add_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slo", action="append", required=True, metavar="FILE", help="SLO spec (native or OpenSLO)")
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="FILE_OR_URL",
        help="OTLP JSON lines (plain or .gz) or a Prometheus HTTP API base URL",
    )
    p.add_argument("--at", help="evaluation time: now, epoch seconds or ISO 8601 (default: end of the data)")
    p.add_argument("--format", choices=("table", "json"), default="table")


def _add_serve(sub) -> None:
    """The ``serve`` subcommand: the flags of ``evaluator.serve.parse_options``."""
    from .evaluator.serve import options as serve  # its receivers import lazily

    p = sub.add_parser(
        "serve", help="streaming SLO evaluator: an OTLP receiver with Prometheus /metrics, /status and OTLP output"
    )
    p.add_argument("--slo", action="append", required=True, metavar="FILE", help="SLO spec (native or OpenSLO)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: loopback only)")
    p.add_argument("--grpc-port", type=int, default=4317, metavar="PORT", help="OTLP/gRPC port (0: off)")
    p.add_argument("--http-port", type=int, default=4318, metavar="PORT", help="OTLP/HTTP port (0: off)")
    p.add_argument(
        "--metrics-port", type=int, default=9464, metavar="PORT", help="/metrics, /status and /healthz (0: off)"
    )
    p.add_argument("--state", metavar="DIR", help="directory for the state snapshot (default: no persistence)")
    p.add_argument("--evaluate-every", default="10s", metavar="DURATION", help="evaluation interval (default 10s)")
    p.add_argument("--snapshot-every", default="60s", metavar="DURATION", help="snapshot interval (default 60s)")
    p.add_argument(
        "--series-ttl",
        default="6h",
        metavar="DURATION",
        help="forget cumulative series silent this long (default 6h; must exceed any collector outage)",
    )
    p.add_argument(
        "--max-series",
        type=int,
        default=serve.DEFAULT_MAX_SERIES,
        metavar="N",
        help="series held at most; points of new series past it are refused, counted "
        f"(default {serve.DEFAULT_MAX_SERIES})",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=serve.DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help=f"open HTTP connections per port, one thread each (default {serve.DEFAULT_MAX_CONNECTIONS})",
    )
    p.add_argument(
        "--request-timeout",
        default=serve.DEFAULT_REQUEST_TIMEOUT,
        metavar="DURATION",
        help="an HTTP request must be read within this, idle keep-alive included "
        f"(default {serve.DEFAULT_REQUEST_TIMEOUT})",
    )
    p.add_argument(
        "--max-request-bytes",
        default=str(serve.DEFAULT_MAX_REQUEST_BYTES),
        metavar="SIZE",
        help="largest export request, compressed or not "
        f"(bytes, or e.g. 8MiB; default {serve.DEFAULT_MAX_REQUEST_BYTES}); "
        f"at most {serve.IN_FLIGHT_REQUESTS}x this is read or decoded at once",
    )
    p.add_argument("--otlp-endpoint", metavar="URL", help="also export the SLO status as OTLP gauges to this URL")
    p.add_argument("--otlp-protocol", choices=("grpc", "http/protobuf"), default="grpc")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; exit 0. Its typed errors (``ServeError``: 3, ``StateNotSaved``: 4) are mapped
    in ``main``."""
    from .evaluator import serve

    options = serve.parse_options(
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        state=args.state,
        evaluate_every=args.evaluate_every,
        snapshot_every=args.snapshot_every,
        series_ttl=args.series_ttl,
        max_series=args.max_series,
        max_connections=args.max_connections,
        request_timeout=args.request_timeout,
        max_request_bytes=args.max_request_bytes,
        otlp_endpoint=args.otlp_endpoint,
        otlp_protocol=args.otlp_protocol,
    )
    serve.run(args.slo, options)
    return EXIT_PASS


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which a gate would read as "inconclusive": exit 3 instead (``feedback``,
    whose 3 means a failed export, sets ``usage_exit`` to its own 2)."""

    usage_exit = EXIT_SPEC

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(self.usage_exit, f"{self.prog}: error: {message}\n")


# -- modelotel feedback -----------------------------------------------------------------------------------

FEEDBACK_OK, FEEDBACK_REFUSED, FEEDBACK_USAGE, FEEDBACK_EXPORT_FAILED = 0, 1, 2, 3
FEEDBACK_LINES_AFTER_ROWS = 100_000  # --progress auto off a terminal: lines once the file is this large ...
FEEDBACK_LINES_AFTER_S = 5.0  # ... or has taken this long
FEEDBACK_HELP = """\
Ingest a labels file: one row per judged prediction, as labelling pipelines produce them. Each row is judged like
modelotel.record_feedback (any prediction id from last_prediction_id(), signed with the same
MODELOTEL_FEEDBACK_KEY as this process has) and exported through the configured exporter (MODELOTEL_EXPORT_FILE,
OTEL_EXPORTER_OTLP_ENDPOINT, ... as for the SDK) when the file is done.

Columns: the prediction id; the true label (or a boolean --correct-column); optionally when the label became known
(--time-column: ISO 8601 or epoch seconds; default now) and a fairness group (--group-column).

Every row is accounted for: rows read = recorded + refused, refused by reason (missing_id, missing_label,
bad_time, bad_correct, bad_json, and every record_feedback reason: feedback_id_forged, feedback_id_truncated,
feedback_id_foreign, feedback_id_unknown_key, feedback_id_expired, feedback_duplicate, ...) with the first
line numbers (file lines, header = 1; Parquet: 0-based row index). --errors writes every refused row.

example:
  MODELOTEL_FEEDBACK_KEY=... MODELOTEL_EXPORT_FILE=feedback.jsonl \\
      modelotel feedback labels.csv --group-column region --errors bad_rows.csv

exit codes:
  0  every row recorded
  1  some rows refused (the recorded ones are still exported)
  2  usage error, unreadable file, or no MODELOTEL_FEEDBACK_KEY
  3  the export failed (nothing, or not everything, was delivered)
"""


class RowProgress:
    """Rows judged, on stderr: a bar redrawn in place (``bar``, at most 5 times a second), a line every 5 s
    (``lines``), or nothing. ``auto``: a bar on a terminal; off one, lines once the file is large (over
    FEEDBACK_LINES_AFTER_ROWS rows or FEEDBACK_LINES_AFTER_S seconds), and then a final line. Asked for
    explicitly (``bar``, ``lines``), the final count is shown whatever the size."""

    def __init__(self, mode: str, source: str, done, stream=None, clock=time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.forced = mode in ("bar", "lines")
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "auto-lines"
        self.mode = mode
        self.source = source
        self.done = done  # () -> fraction of the file read
        self.clock = clock
        self.started = clock()
        self.last = self.started
        self.shown = False

    def large(self, summary, now: float) -> bool:
        return summary.read >= FEEDBACK_LINES_AFTER_ROWS or now - self.started >= FEEDBACK_LINES_AFTER_S

    def __call__(self, summary) -> None:
        if self.mode == "none" or summary.read & 1023:  # the clock is read once per 1,024 rows
            return
        now = self.clock()
        if now - self.last < (0.2 if self.mode == "bar" else 5.0):
            return
        if self.mode == "auto-lines" and not self.large(summary, now):
            return
        self.last = now
        self.show(summary, now)

    def show(self, summary, now: float) -> None:
        fraction = self.done()
        rate = summary.read / max(now - self.started, 1e-6)
        text = f"{summary.read:,} rows ({fraction:.0%}), {summary.refused:,} refused, {rate:,.0f} rows/s"
        if self.mode == "bar":
            filled = int(30 * fraction)
            self.stream.write(f"\r{self.source} [{'#' * filled}{'.' * (30 - filled)}] {text}\x1b[K")
        else:
            self.stream.write(f"{self.source}: {text}\n")
        self.stream.flush()
        self.shown = True

    def close(self, summary) -> None:
        now = self.clock()
        if self.shown or self.forced or (self.mode == "auto-lines" and self.large(summary, now)):
            self.show(summary, now)
            if self.mode == "bar":
                self.stream.write("\n")
            self.stream.flush()


def _feedback_columns(args: argparse.Namespace):
    from .feedback.labels_file import Columns

    return Columns(
        id=args.id_column,
        label=args.label_column or "label",
        correct=args.correct_column,
        time=args.time_column,
        group=args.group_column,
        label_explicit=args.label_column is not None,
    )


def _feedback_table(path: str, location: str, summary, seconds: float, export_ok: bool) -> str:
    lines = [
        f"{path}: {summary.read:,} rows read = {summary.recorded:,} recorded ({summary.items:,} items judged) "
        f"+ {summary.refused:,} refused, in {seconds:.1f} s ({summary.read / max(seconds, 1e-9):,.0f} rows/s)"
    ]
    if summary.reasons:
        width = max(len("reason"), *(len(r) for r in summary.reasons))
        lines.append(f"{'reason':<{width}}  {'rows':>9}  first {location}s  (first message)")
        for reason, tally in sorted(summary.reasons.items(), key=lambda kv: -kv[1].count):
            first = ", ".join(map(str, tally.first)) + (", ..." if tally.count > len(tally.first) else "")
            lines.append(f"{reason:<{width}}  {tally.count:>9,}  {first}  ({tally.message})")
    lines.append("export: ok" if export_ok else "export: FAILED (see the errors above)")
    return "\n".join(lines)


def _feedback_json(args, location: str, fmt: str, summary, seconds: float, export_ok: bool) -> str:
    import json

    return json.dumps(
        {
            "file": args.labels_file,
            "format": fmt,
            "location": location,
            "rows_read": summary.read,
            "recorded": summary.recorded,
            "items_judged": summary.items,
            "refused": summary.refused,
            "reasons": {
                reason: {"count": t.count, f"first_{location}s": t.first, "message": t.message}
                for reason, t in summary.reasons.items()
            },
            "export_ok": export_ok,
            "seconds": seconds,
            "rows_per_s": summary.read / seconds if seconds > 0 else None,
        },
        indent=2,
    )


def cmd_feedback(args: argparse.Namespace) -> int:
    import csv

    from . import runtime
    from .feedback.ingest import IngestSummary, ingest
    from .feedback.labels_file import LabelsFile, LabelsFileError

    try:
        settings = config.feedback_settings()
    except config.ConfigError as exc:  # main() maps ConfigError to 3, which here means a failed export
        raise UsageError(str(exc), FEEDBACK_USAGE) from None
    if settings.key is None:
        raise UsageError(
            f"{config.ENV_FEEDBACK_KEY} is not set: ids made by other processes cannot be judged; set it to the "
            "serving processes' key",
            FEEDBACK_USAGE,
        )
    try:
        labels = LabelsFile(args.labels_file, args.format, _feedback_columns(args))
    except LabelsFileError as exc:
        raise UsageError(str(exc), FEEDBACK_USAGE) from None
    errors_fh = writer = None
    if args.errors:
        try:
            errors_fh = open(args.errors, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed below)
        except OSError as exc:
            labels.close()
            raise UsageError(f"--errors {args.errors}: {exc.strerror or exc}", FEEDBACK_USAGE) from None
        writer = csv.writer(errors_fh)
        writer.writerow([labels.location, "reason", "message"])
    try:
        runtime.configure()
    except config.ConfigError as exc:
        labels.close()
        raise UsageError(str(exc), FEEDBACK_USAGE) from None
    loop = runtime.STATE.loop
    progress = RowProgress(args.progress, args.labels_file, labels.done)
    started = time.monotonic()
    summary = IngestSummary()
    try:
        with labels:
            ingest(
                labels.rows(),
                positive_label=args.positive_label,
                on_bad_row=(lambda where, reason, message: writer.writerow((where, reason, message)))
                if writer
                else None,
                on_row=progress,
                summary=summary,
            )
            progress.close(summary)  # while the file is open: the fraction read is its position
    except LabelsFileError as exc:
        exported = runtime.shutdown()  # what was judged before the file broke is still exported
        before = (
            f" ({summary.read:,} rows read before it: {summary.recorded:,} recorded"
            f"{' and exported' if exported else ', export FAILED'}, {summary.refused:,} refused)"
            if summary.read
            else ""
        )
        raise UsageError(f"{exc}{before}", FEEDBACK_USAGE) from None
    finally:
        if errors_fh is not None:
            errors_fh.close()
    export_ok = runtime.shutdown()
    export_ok = export_ok and (loop is None or loop.failures == 0)  # an earlier periodic export failing counts
    seconds = time.monotonic() - started
    if args.json:
        print(_feedback_json(args, labels.location, labels.format, summary, seconds, export_ok))
    else:
        print(_feedback_table(args.labels_file, labels.location, summary, seconds, export_ok))
    if not export_ok:
        return FEEDBACK_EXPORT_FAILED
    return FEEDBACK_REFUSED if summary.refused else FEEDBACK_OK


def _add_feedback(sub) -> None:
    from .feedback.labels_file import FORMATS

    p = sub.add_parser(
        "feedback",
        help="ingest a labels file (CSV, JSON lines, Parquet) as feedback for signed prediction ids",
        description=FEEDBACK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "labels_file",
        metavar="LABELS_FILE",
        help="the labels file (.csv/.tsv/.jsonl/.ndjson/.json/.parquet; .gz for text formats)",
    )
    p.add_argument("--format", choices=FORMATS, help="the file's format (default: from its extension)")
    p.add_argument("--id-column", default="prediction_id", help="the prediction id column (default prediction_id)")
    p.add_argument("--label-column", help="the true label column (default label)")
    p.add_argument("--correct-column", help="a boolean column: was the prediction correct (instead of a label)")
    p.add_argument("--time-column", help="when the label became known: ISO 8601 or epoch seconds (default: now)")
    p.add_argument("--group-column", help="the fairness group (ml.fairness.group)")
    p.add_argument("--positive-label", help="the positive class for fairness rates (default: the model's)")
    p.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="progress on stderr (default auto: a bar on a terminal, lines for large files otherwise)",
    )
    p.add_argument("--errors", metavar="FILE", help="write every refused row (line, reason, message) as CSV")
    p.add_argument("--json", action="store_true", help="a machine-readable summary on stdout")
    p.usage_exit = FEEDBACK_USAGE
    p.set_defaults(func=cmd_feedback)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="modelotel", description="OpenTelemetry for ML model serving.")
    parser.add_argument("--version", action="version", version=f"modelotel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("evaluate", help="SLO compliance, error budgets and burn rates from exported telemetry")
    _add_inputs(p)
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("gate", help="like evaluate; exit 0 pass, 1 fail, 2 inconclusive, >=3 unusable input")
    _add_inputs(p)
    p.add_argument("--inconclusive-as", choices=("pass", "fail"), help="treat inconclusive SLOs as pass or fail")
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("drift", help="drift of confidence, OOD score, labels and features: reference vs current")
    p.add_argument("--data", nargs="+", required=True, metavar="FILE_OR_URL")
    p.add_argument("--at", help=argparse.SUPPRESS)
    _add_drift_options(p)
    p.add_argument("--min-count", type=int, default=30, help="values needed on each side (default 30)")
    p.add_argument(
        "--fail-on",
        nargs="+",
        default=["psi"],
        choices=("psi", "ks", "js", "hellinger"),
        help="statistics whose drift exits 1 (default: psi)",
    )
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_drift)

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

    p = sub.add_parser(
        "performance",
        help="accuracy, confusion matrix, P/R/F1, calibration, regression error, label latency and coverage",
        description=PERFORMANCE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", nargs="+", required=True, metavar="FILE_OR_URL")
    p.add_argument("--model", help="only this ml.model.name")
    p.add_argument("--window", metavar="DURATION", help="e.g. 7d or 1h: ending at --to or the end of the data")
    p.add_argument("--from", dest="start", metavar="TIME", help="window start, exclusive (now, epoch s, ISO 8601)")
    p.add_argument("--to", dest="end", metavar="TIME", help="window end, inclusive (default: the end of the data)")
    p.add_argument(
        "--positive-label",
        metavar="LABEL",
        help="the positive class for the estimated precision/recall/F1 (default: the one feedback's flags name)",
    )
    p.add_argument("--json", action="store_true", help="JSON at full precision")
    p.set_defaults(func=cmd_performance)

    p = sub.add_parser("rules", help="Prometheus recording and multi-window burn-rate alerting rules (stdout)")
    p.add_argument("--slo", action="append", required=True, metavar="FILE")
    p.set_defaults(func=cmd_rules)

    p = sub.add_parser("dashboard", help="a Grafana dashboard (JSON on stdout) for our metrics and SLOs")
    p.add_argument("--slo", action="append", metavar="FILE", help="add budget and burn-rate panels per SLO")
    p.add_argument("--datasource", default="Prometheus", help="Prometheus datasource name (default Prometheus)")
    p.set_defaults(func=cmd_dashboard)

    _add_serve(sub)
    _add_feedback(sub)

    p = sub.add_parser("report", help="a self-contained HTML report: SLOs, budgets, burn rates, latency, drift")
    _add_inputs(p)
    _add_drift_options(p)
    p.add_argument("--output", "-o", default="report.html")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .evaluator.serve import ServeError, StateNotSaved  # serve raises typed errors; the exit codes are ours

    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["feedback"]:  # an unknown option is reported by the top parser: feedback's usage exit is 2
        parser.usage_exit = FEEDBACK_USAGE
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"modelotel {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except ServeError as exc:
        print(f"modelotel {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_SPEC
    except StateNotSaved as exc:
        print(f"modelotel {args.command}: error: exiting with {EXIT_INPUT}: {exc}", file=sys.stderr, flush=True)
        return EXIT_INPUT
    except config.ConfigError as exc:  # an unusable MODELOTEL_* setting
        print(f"modelotel {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_SPEC
    except KeyboardInterrupt:
        print(f"modelotel {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # never a traceback for users; MODELOTEL_DEBUG=1 shows it
        if config.debug_tracebacks():
            raise
        print(
            f"modelotel {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(set MODELOTEL_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
