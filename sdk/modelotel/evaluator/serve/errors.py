"""How ``modelotel serve`` reports trouble: typed errors for whoever runs it (the CLI maps them to exit codes) and
one line on stderr, prefixed ``modelotel serve:``, for everything it survives."""

from __future__ import annotations

import sys

__all__ = ["ServeError", "StateNotSaved", "say"]


class ServeError(Exception):
    """What stops serve before it runs: a bad option, a spec that does not load, a port it cannot listen on (the
    message says which, naming the flag). The CLI prints it and exits with its usage code."""


class StateNotSaved(Exception):
    """The state could not be written on the way out (the error was said): what arrived since the previous
    snapshot is lost. The CLI exits with its input code."""


def say(message: str) -> None:
    """One line on stderr: serve's log."""
    print(f"modelotel serve: {message}", file=sys.stderr, flush=True)
