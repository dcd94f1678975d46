"""The ``modelotel`` command (the evaluator's subcommands land here)."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelotel", description="OpenTelemetry for ML model serving.")
    parser.add_argument("--version", action="version", version=f"modelotel {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
