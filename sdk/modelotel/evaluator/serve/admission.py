"""How many request bytes ``modelotel serve`` reads and decodes at once: a budget in bytes.

Decoding an export request takes transient memory in proportion to its size (a bucket count is one byte of
protobuf but eight or more once decoded; docs/serve.md "Limits" has the measured factors), so the bytes of the
requests being read or decoded at the same time are bounded, not only each request's size: a request takes its
size from the budget before its body is read (HTTP) or parsed (gRPC) and gives it back when it is answered. One
that finds the budget spent waits, up to the request timeout, and is then refused with a retryable answer (HTTP
503, gRPC UNAVAILABLE). A request never needs more than the whole budget, and alone it always fits, so a
request of the maximum size is never refused for want of room when nothing else is in flight.
"""

from __future__ import annotations

import threading
import time

__all__ = ["ByteBudget", "parse_size"]

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 10**6, "mb": 10**6, "mib": 1 << 20}


def parse_size(text: str) -> int:
    """Bytes in ``"8388608"``, ``"8MiB"``, ``"512KiB"``, ``"4MB"`` (case-insensitive); ValueError otherwise."""
    stripped = text.strip().lower()
    digits = stripped.rstrip("abcdefghijklmnopqrstuvwxyz ")
    unit = stripped[len(digits) :].strip()
    if not digits.isdigit() or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size (bytes, or with KiB, MiB, KB or MB)")
    return int(digits) * _UNITS[unit]


class ByteBudget:
    """At most ``capacity`` bytes taken at once; ``take(n, timeout)`` waits for room (False when it found none)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.taken = 0
        self.waiting = 0  # requests waiting for room now (reported on /metrics)
        self._room = threading.Condition()

    def take(self, n: int, timeout: float) -> bool:
        n = min(n, self.capacity)  # alone, any request fits
        deadline = time.monotonic() + timeout
        with self._room:
            self.waiting += 1
            try:
                while self.taken + n > self.capacity:
                    left = deadline - time.monotonic()
                    if (left <= 0 or not self._room.wait(left)) and self.taken + n > self.capacity:
                        return False
                self.taken += n
                return True
            finally:
                self.waiting -= 1

    def give(self, n: int) -> None:
        with self._room:
            self.taken -= min(n, self.capacity)
            self._room.notify_all()
