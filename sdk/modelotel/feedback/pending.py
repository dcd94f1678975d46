"""In-process prediction ids: the ids ``current_prediction_id()`` hands out inside a call, before its output exists.

Such an id is 32 random hex characters; the call that asked for it puts its outcome (the model's buffers, its
labels and confidences or predicted numbers, and when it ran) in a bounded first-in-first-out table when it
finishes, and ``record_feedback`` in the same process looks it up there. Ids that any process can judge are the
self-describing ones of ``ids.py`` (``last_prediction_id()``), which need no table at all.
"""

from __future__ import annotations

import os
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..metrics.buffers import ModelBuffers
from .ids import Label

DEFAULT_CAPACITY = 100_000


@dataclass(frozen=True)
class Outcome:
    """What a finished call predicted, as feedback needs it. Labels are ``ids.Label``s: a long text is kept as its
    length and SHA-256 (the table holds up to DEFAULT_CAPACITY entries, and 100,000 five-megabyte answers would be
    500 GB), and judging stays exact."""

    buffers: ModelBuffers
    labels: tuple[Label | None, ...]
    confidences: tuple[float | None, ...]
    numbers: tuple[float, ...]
    time_s: float


def labels_of(labels: Any, shown: Any) -> tuple[Label | None, ...]:
    """The model's labels (and their exported forms, or None) as ``ids.Label``s."""
    if not labels:
        return ()
    shown = list(shown) if shown else [None] * len(labels)
    return tuple(None if lab is None else Label.of(lab, txt) for lab, txt in zip(labels, shown, strict=False))


class PendingPredictions:
    """pid -> Outcome; the oldest entries are evicted beyond ``capacity``."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        # OrderedDict: evicting the oldest is O(1); a plain dict's next(iter()) scans the holes left by earlier
        # deletions, which made every traced prediction slower once the table was full
        self._table: OrderedDict[str, Outcome] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0

    def put(self, pid: str, outcome: Outcome) -> None:
        with self._lock:
            table = self._table
            table[pid] = outcome
            while len(table) > self.capacity:
                table.popitem(last=False)
                self.evicted += 1

    def pop(self, pid: str) -> Outcome | None:
        with self._lock:
            return self._table.pop(pid, None)

    def clear(self) -> None:
        with self._lock:
            self._table.clear()

    def after_fork_in_child(self) -> None:
        """A new lock: a parent thread holding it at the fork does not exist in the child, which would wait forever."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._table)


PENDING = PendingPredictions()
os.register_at_fork(after_in_child=PENDING.after_fork_in_child)


def new_prediction_id() -> str:
    """128 random bits as 32 hex characters, like a W3C trace id (and made the same way as the OTel SDK
    makes trace ids: ``random.getrandbits``; os.urandom costs a system call per id)."""
    return f"{random.getrandbits(128):032x}"


def as_list(value: Any) -> list[Any] | None:
    """One value or a sequence/array of them as a list (None stays None; a failing tolist() gives None)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return list(value)
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        try:
            out = tolist()
            return out if isinstance(out, list) else [out]
        except Exception:
            return None
    return [value]
