"""The decorations of this process: one state per (function, options), a warning for a decorating loop, and
the registry of running calls (their wrappers' code objects, the prediction ids asked for by frame).

``instrument_model`` applied inside a hot loop (``instrument_model(name="m")(predict)(x)`` on every
request) used to build and register new per-model state on each call: memory grew by about 3 kB per
decoration and every export pass folded every state ever made, so calls slowed without bound. Now the
same function decorated with the same options gets the same wrapper back, and the state of a wrapper that
is garbage-collected is folded once more and dropped (``Recorder.release``). Decorating ``WARN_AFTER``
distinct times in one process logs one warning.

Reuse needs the wrappers held between two decorations, so the ``MAX_CACHED`` most recently used are kept
alive, and with them their functions and what those reference (a bound method's model object): few, so that
models replaced at run time are not kept for long; a loop needs one.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Hashable, Mapping
from time import perf_counter_ns
from typing import Any

from ..metrics.selftelemetry import SELF

# id(frame of an instrumented call) -> prediction id, filled only by current_prediction_id(); and the code
# objects of every wrapper (current_prediction_id walks the stack to the innermost frame running one).
FRAME_PIDS: dict[int, str] = {}

# The last call that finished in each thread: thread id -> (Instrumented, output, perf_counter_ns at its end), or
# None after a call that raised. last_prediction_id() builds its id only when asked; the store itself costs ~100 ns
# a call (benchmarks/RESULTS.md), so calls make it only once ``armed``: by a configured MODELOTEL_FEEDBACK_KEY at
# decoration time, or by the first last_prediction_id(). The export thread forgets entries older than
# LAST_CALL_TTL_NS (LastCalls.fold), so an output is not kept alive for long by a thread that stopped calling.
LAST_CALL_TTL_NS = 5_000_000_000


class LastCalls(dict):
    """thread id -> the last call; a recorder source whose ``fold`` forgets the old ones. ``armed``: calls record
    themselves here (see above)."""

    __slots__ = ("armed",)

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def fold(self, rec: Any) -> None:
        horizon = perf_counter_ns() - LAST_CALL_TTL_NS
        for tid, call in list(self.items()):
            if call is None or call[2] < horizon:
                self.pop(tid, None)
        MADE.clear()


LAST_CALLS = LastCalls()
MADE: dict[int, tuple[Any, str | None]] = {}  # thread id -> (call, its id): asking twice gives the same id
WRAPPER_CODES: set[Any] = set()
getframe = sys._getframe

MAX_CACHED = 16
WARN_AFTER = 1000
_PLAIN = frozenset({str, int, float, bool})


def options_key(*options: Any) -> Hashable | None:
    """A hashable form of a decorator's options (sequences as tuples, mappings as sorted items), or None."""
    parts: list[Any] = []
    for value in options:
        if value is None or type(value) in _PLAIN:  # most options: no conversion, no ABC check
            parts.append(value)
        elif isinstance(value, (list, tuple)):
            parts.append(tuple(value))
        elif isinstance(value, Mapping):
            parts.append(tuple(sorted(value.items(), key=repr)))
        else:
            parts.append(value)
    key = tuple(parts)
    try:
        hash(key)
    except TypeError:  # e.g. an unhashable scorer object: such a decoration is simply not reused
        return None
    return key


class Decorations:
    """The wrappers made so far by (function, options key); counts the decorations that made new state."""

    def __init__(self) -> None:
        self._wrappers: dict[Hashable, Any] = {}
        self._lock = threading.Lock()
        self.made = 0

    def get(self, fn: Any, options: Hashable | None) -> Any:
        if options is None:
            return None
        try:
            key = (fn, options)
            with self._lock:
                wrapper = self._wrappers.pop(key, None)
                if wrapper is not None:
                    self._wrappers[key] = wrapper  # the most recently used last: evicted last
            return wrapper
        except TypeError:  # an unhashable callable object
            return None

    def add(self, fn: Any, options: Hashable | None, wrapper: Any) -> None:
        with self._lock:
            self.made += 1
            made = self.made
            if options is not None:
                try:
                    self._wrappers[(fn, options)] = wrapper
                except TypeError:
                    pass
                while len(self._wrappers) > MAX_CACHED:
                    del self._wrappers[next(iter(self._wrappers))]
        if made == WARN_AFTER:
            SELF.warn_once(
                "redecoration",
                f"instrument_model has been applied {WARN_AFTER} times in this process: is it inside a loop or a "
                "request handler? Decorate the function once (at import) and call the decorated function; "
                "re-decorating the same function with the same options reuses its state, but each new function "
                "object costs a new one",
            )


DECORATIONS = Decorations()
