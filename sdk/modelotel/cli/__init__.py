"""The ``modelotel`` command: ``evaluate``, ``gate``, ``drift``, ``report`` (and more, see ``--help``).

One module per subcommand owns its flags, help and exit codes (``add_parser`` and ``cmd_*``); ``shared`` holds what
several use (the exit codes, reading inputs, the progress line). Here: the top parser and ``main``, which maps the
typed errors of the layers below to exit codes.

Exit codes of ``gate`` (and the verdict commands): 0 pass, 1 fail, 2 inconclusive, 3 unusable spec or
arguments, 4 unusable input, 5 internal error, 6 cannot be judged on this input (a selector or filter that
matches nothing, or points that matched but cannot be counted). ``evaluate`` and ``report`` exit 0 whatever the
verdict. ``feedback`` has its own (0 all rows recorded, 1 some refused, 2 usage, 3 export failed).
Errors print one line, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from .. import config
from .._version import __version__
from . import compare, dashboard, drift, evaluate, fairness, feedback, gate, performance, report, rules, serve
from .feedback import FEEDBACK_USAGE, RowProgress
from .shared import EXIT_INPUT, EXIT_INTERNAL, EXIT_SPEC, Parser, UsageError

__all__ = ["RowProgress", "build_parser", "main"]

# The order of `modelotel --help`.
COMMANDS = (evaluate, gate, drift, compare, fairness, performance, rules, dashboard, serve, feedback, report)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="modelotel",
        description="OpenTelemetry for ML model serving: judge SLOs, drift, canaries and model quality from the "
        "telemetry that @instrument_model exports.",
        epilog="Run 'modelotel COMMAND --help' for what a command reads, examples and its exit codes.",
    )
    parser.add_argument("--version", action="version", version=f"modelotel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    parser.commands = sub.choices  # every subcommand's parser, by name (what the --help test walks)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..evaluator.serve import ServeError, StateNotSaved  # serve raises typed errors; the exit codes are ours

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
