"""What the subcommands share: the exit codes, usage errors, reading the inputs (with progress), time ranges
and the input flags."""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .progress import Progress

EXIT_PASS, EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_SPEC, EXIT_INPUT, EXIT_INTERNAL, EXIT_NO_MATCH = 0, 1, 2, 3, 4, 5, 6


UNJUDGED = ("no_match", "invalid")  # statuses that say the spec and the input do not fit: exit 6


HELP_WIDTH = 100  # help text is wrapped to the terminal, at most this wide


class UsageError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def shown_default(action: argparse.Action) -> str | None:
    """The default an option's help names: None when it has none to name (unset, a flag, suppressed)."""
    default = action.default
    if default is None or default is False or default == argparse.SUPPRESS or not action.option_strings:
        return None
    if isinstance(default, (list, tuple)):
        return " ".join(map(str, default))
    return str(default)


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which a gate would read as "inconclusive": exit 3 instead (``feedback``,
    whose 3 means a failed export, sets ``usage_exit`` to its own 2). Every option's help names its default (added
    here unless the help already says "default"), so a new option cannot leave it out."""

    usage_exit = EXIT_SPEC
    commands: dict[str, argparse.ArgumentParser] = {}  # noqa: RUF012 (set once, on the top parser)

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(self.usage_exit, f"{self.prog}: error: {message}\n")

    def add_argument(self, *args, **kwargs):  # type: ignore[override]
        action = super().add_argument(*args, **kwargs)
        default = shown_default(action)
        if action.help and action.help != argparse.SUPPRESS and default is not None and "default" not in action.help:
            action.help += " (default: " + default.replace("%", "%%") + ")"
        return action


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written (paragraphs, examples, exit-code tables: ``Help`` wraps them), options
    wrapped to the terminal but never wider than HELP_WIDTH."""

    def __init__(self, prog: str) -> None:
        width = min(shutil.get_terminal_size((HELP_WIDTH, 24)).columns, HELP_WIDTH) - 2
        super().__init__(prog, max_help_position=28, width=width)


# Exit codes every command shares, after its own.
COMMON_EXITS = (
    (EXIT_INTERNAL, "internal error (MODELOTEL_DEBUG=1 shows the traceback)"),
    (130, "interrupted (Ctrl-C)"),
)
INPUT_EXITS = (
    (EXIT_SPEC, "unusable arguments or spec (a usage error included)"),
    (EXIT_INPUT, "unusable input: missing, unreadable, or no usable metric data"),
)


@dataclass(frozen=True)
class Help:
    """A subcommand's help, in the style of kubectl and gh: a one-line summary (in ``modelotel --help``), a
    description (what it does, what it reads), examples (what each shows, then the command line) and the exit
    codes."""

    summary: str
    description: str
    examples: tuple[tuple[str, str], ...]
    exit_codes: tuple[tuple[int, str], ...]

    def description_text(self) -> str:
        paragraphs = [" ".join(p.split()) for p in self.description.strip().split("\n\n")]
        return "\n\n".join(textwrap.fill(p, HELP_WIDTH - 2) for p in paragraphs)

    def epilog(self) -> str:
        lines = ["examples:"]
        for i, (what, command) in enumerate(self.examples):
            lines += ([""] if i else []) + [f"  # {what}", *(f"  {line}" for line in command_lines(command))]
        lines += ["", "exit codes:"]
        for code, meaning in sorted((*self.exit_codes, *COMMON_EXITS)):
            lines.append(
                textwrap.fill(meaning, HELP_WIDTH - 2, initial_indent=f"  {code:<3}  ", subsequent_indent=" " * 7)
            )
        return "\n".join(lines)


def command_lines(command: str, width: int = HELP_WIDTH - 4) -> list[str]:
    """A long example command broken before its options, shell continuations (`` \\``) between the lines."""
    if "\n" in command or len(command) <= width:
        return command.splitlines()
    lines = [""]
    for word in command.split(" "):
        if lines[-1] and word.startswith("--") and len(lines[-1]) + 1 + len(word) > width - 2:
            lines.append("    ")
        lines[-1] += (" " if lines[-1].strip() else "") + word
    return [line + " \\" for line in lines[:-1]] + lines[-1:]


def add_command(sub, name: str, help: Help) -> Parser:  # noqa: A002 (argparse's word)
    """The subparser of ``name`` with its description, examples and exit codes."""
    return sub.add_parser(
        name,
        help=help.summary,
        description=help.description_text(),
        epilog=help.epilog(),
        formatter_class=HelpFormatter,
    )


def parse_time(text: str) -> float:
    """``--at``: ``now``, epoch seconds, or ISO 8601 (``2026-11-22T10:00:00Z``; naive times are UTC)."""
    from ..evaluator.durations import parse_instant

    try:
        return parse_instant(text)
    except ValueError as exc:
        raise UsageError(f"--at: {exc}", EXIT_SPEC) from None


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


def read_inputs(slos, data: Sequence[str], at: float | None, sinks=(), *, verbose: bool = False, notes: bool = True):
    """``engine.evaluate`` with progress, its typed errors as exit codes; ``notes``: what the inputs held besides
    usable metrics on stderr (corrupt and foreign lines always, other signals' lines with ``verbose``)."""
    from ..evaluator import engine, sources
    from ..evaluator.outputs.text import input_notes

    progress = Progress()
    try:
        evaluation = engine.evaluate(slos, data, at=at, progress=progress, sinks=sinks)
    except sources.SourceError as exc:
        raise UsageError(str(exc), EXIT_INPUT) from None
    except engine.NoData as exc:
        raise UsageError(str(exc), EXIT_INPUT) from None
    finally:
        progress.close()
    if notes:
        for note in input_notes(evaluation.reports, verbose=verbose):
            print(f"note: {note}", file=sys.stderr)
    return evaluation


def evaluate_inputs(args: argparse.Namespace, sinks=()):
    """The SLOs of ``--slo`` judged on ``--data`` (the table says what the inputs held; JSON counts it)."""
    slos = load_slos(args.slo)
    return read_inputs(slos, args.data, parse_time(args.at) if args.at else None, sinks, notes=False)


def print_evaluation(args: argparse.Namespace, evaluation) -> None:
    from ..evaluator.outputs import text as output

    if args.format == "json":
        print(output.to_json(evaluation))
    else:
        print(output.to_table(evaluation, verbose=args.verbose))


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
    verbose = getattr(args, "verbose", False)
    at = parse_time(args.at) if args.at else None
    evaluation = read_inputs(slos, args.data, at, [*signals.timelines(), *extra], verbose=verbose)
    if model:
        check_model(model, evaluation.inventory, [t.metric for t in signals.timelines()])
    reference_signals = None
    if args.reference_data:
        reference_signals = Signals.create(args.resolution, match)
        read_inputs((), args.reference_data, None, reference_signals.timelines(), verbose=verbose)
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


DATA_HELP = (
    "OTLP JSON lines files (plain, .gz or .zst: the collector's file exporter or modelotel's), or a Prometheus "
    "HTTP API base URL; several are read as one stream"
)
SLO_HELP = "an SLO spec file (native, OpenSLO or Sloth YAML); repeat for several"


def add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", required=True, metavar="FILE_OR_URL", help=DATA_HELP)


def add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table: for people; json: for machines, every figure at full precision",
    )


def add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="also say what each input held besides metrics: span and log lines of the collector's file route, "
        "read and skipped quietly otherwise",
    )


def add_inputs(p: argparse.ArgumentParser, output_format: bool = True) -> None:
    """``--slo``, ``--data``, ``--at``, ``--verbose`` and (unless the output is a file) ``--format``."""
    p.add_argument("--slo", action="append", required=True, metavar="FILE", help=SLO_HELP)
    add_data(p)
    p.add_argument(
        "--at", metavar="TIME", help="evaluation time: now, epoch seconds or ISO 8601 (default: the end of the data)"
    )
    if output_format:
        add_format(p)
    add_verbose(p)


def add_drift_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reference",
        metavar="RANGE",
        help="FROM..TO, first:DURATION or last:DURATION (default: the first third of the data)",
    )
    p.add_argument("--current", metavar="RANGE", help="as --reference (default: last third of the data)")
    p.add_argument(
        "--reference-data",
        nargs="+",
        metavar="FILE_OR_URL",
        help="take the reference range from this input instead (default: from --data)",
    )
    p.add_argument("--model", help="only this ml.model.name (default: every model)")
    p.add_argument(
        "--data-driven",
        action="store_true",
        help="also flag drift beyond mean + 3 sigma of the statistic over reference chunks",
    )
    # 1 s bins; timelines coarsen by themselves on long inputs (timeline.max_bins)
    p.add_argument("--resolution", type=float, default=1.0, help=argparse.SUPPRESS)
