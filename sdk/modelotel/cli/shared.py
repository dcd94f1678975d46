"""What the subcommands share: the exit codes, usage errors, reading the inputs (with progress), time ranges
and the input flags."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

EXIT_PASS, EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_SPEC, EXIT_INPUT, EXIT_INTERNAL, EXIT_NO_MATCH = 0, 1, 2, 3, 4, 5, 6


UNJUDGED = ("no_match", "invalid")  # statuses that say the spec and the input do not fit: exit 6


PROGRESS_MIN_BYTES = 32 * 1024 * 1024


class UsageError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which a gate would read as "inconclusive": exit 3 instead (``feedback``,
    whose 3 means a failed export, sets ``usage_exit`` to its own 2)."""

    usage_exit = EXIT_SPEC

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(self.usage_exit, f"{self.prog}: error: {message}\n")


def parse_time(text: str) -> float:
    """``--at``: ``now``, epoch seconds, or ISO 8601 (``2026-11-22T10:00:00Z``; naive times are UTC)."""
    from ..evaluator.durations import parse_instant

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


def load_slos(paths: Sequence[str]):
    from ..evaluator import spec

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


def read_inputs(slos, data: Sequence[str], at: float | None, sinks=()):
    from ..evaluator import engine, sources

    progress = Progress()
    try:
        return engine.evaluate(slos, data, at=at, progress=progress, sinks=sinks)
    except sources.SourceError as exc:
        raise UsageError(str(exc), EXIT_INPUT) from None
    except engine.NoData as exc:
        raise UsageError(str(exc), EXIT_INPUT) from None
    finally:
        progress.close()


def evaluate_inputs(args: argparse.Namespace, sinks=()):
    slos = load_slos(args.slo)
    return read_inputs(slos, args.data, parse_time(args.at) if args.at else None, sinks)


def print_evaluation(args: argparse.Namespace, evaluation) -> None:
    from ..evaluator.outputs import text as output

    print(output.to_json(evaluation) if args.format == "json" else output.to_table(evaluation))


def parse_range(text: str | None, span: tuple[float, float], default: tuple[float, float]) -> tuple[float, float]:
    """``FROM..TO`` (times as for ``--at``), ``first:DURATION`` or ``last:DURATION`` of the data; None: default."""
    from ..evaluator.durations import parse_duration

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


def drift_setup(args: argparse.Namespace, slos=(), extra=(), require_signals: bool = True):
    """Read the inputs once with the signal timelines; pick the reference and current ranges (None without model
    signals when not ``require_signals``: a report on HTTP metrics alone)."""
    from ..evaluator.quality.signals import Signals

    model = getattr(args, "model", None)
    match = {"ml.model.name": model} if model else None
    signals = Signals.create(args.resolution, match)
    evaluation = read_inputs(slos, args.data, parse_time(args.at) if args.at else None, [*signals.timelines(), *extra])
    if model:
        check_model(model, evaluation.inventory, [t.metric for t in signals.timelines()])
    reference_signals = None
    if args.reference_data:
        reference_signals = Signals.create(args.resolution, match)
        read_inputs((), args.reference_data, None, reference_signals.timelines())
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


def check_model(model: str, inventory, metrics: Sequence[str]) -> None:
    """Exit 6 when no series of ``metrics`` in the input is of ``model`` (a typo), listing the models it holds."""
    from ..evaluator.engine.diagnose import listing, values_of

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


def overlap_reason(reference, current, signals, reference_signals) -> str | None:
    """Why the drift of these ranges would say nothing: they overlap in one input, or hold the same values."""
    from ..evaluator.outputs.text import iso
    from ..evaluator.quality.signals import same_values

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


def relative_time(text: str) -> float:
    """As ``--at``, or ``last:DURATION`` (that long before now, e.g. ``last:15m``)."""
    if text.startswith("last:"):
        from ..evaluator.durations import parse_duration

        try:
            return time.time() - parse_duration(text[len("last:") :])
        except ValueError as exc:
            raise UsageError(f"{text!r}: {exc}", EXIT_SPEC) from None
    return parse_time(text)


def instant(flag: str, text: str) -> float:
    from ..evaluator.durations import parse_instant

    try:
        return parse_instant(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}", EXIT_SPEC) from None


def add_inputs(p: argparse.ArgumentParser) -> None:
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


def add_drift_options(p: argparse.ArgumentParser) -> None:
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
