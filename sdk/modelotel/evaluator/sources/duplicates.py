"""Delta points read twice: the same file given twice, a file and its ``.gz`` copy, two overlapping copies.

One producer never reports the same interval of a series twice, so a DELTA point whose series already had a
point with exactly the same ``(start, end]`` is the same data read again, and is dropped (and counted). Two
processes that share a series identity (no ``service.instance.id``) report different intervals and are both
kept. CUMULATIVE points need no record here: a repeated or older total of a series is already contained in the
newer one (cumulative.py calls it stale).

Memory: 16 bytes per delta point of the series (its end and start), sorted by end; points arrive in time order
within a series, so recording is an append. ``forget_before`` drops what no evaluation can reach any more
(``modelotel serve``). ``latest`` / ``restore`` carry the newest records of each series across a restart
(serve's snapshot), so that a collector's retry of a request counted before the restart is still recognised.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterator

__all__ = ["DeltaPoints"]


class DeltaPoints:
    """The ``(start, end]`` of every delta point seen, per series."""

    def __init__(self) -> None:
        self._series: dict[object, tuple[array, array]] = {}  # series -> (ends, starts), sorted by end

    def __len__(self) -> int:
        return sum(len(ends) for ends, _ in self._series.values())

    def seen(self, series: object, start_ns: int, end_ns: int) -> bool:
        """True when this series already had a point over exactly ``(start_ns, end_ns]``; else records it."""
        entry = self._series.get(series)
        if entry is None:
            # unsigned: OTLP times are fixed64, the reader accepts all of [0, 2**64) (a signed array overflowed on a
            # start time past 2**63 after its end was appended: ends and starts then differed in length)
            self._series[series] = (array("Q", (end_ns,)), array("Q", (start_ns,)))
            return False
        ends, starts = entry
        if end_ns > ends[-1]:  # the usual case: the next point of the series
            ends.append(end_ns)
            starts.append(start_ns)
            return False
        i = bisect_left(ends, end_ns)
        while i < len(ends) and ends[i] == end_ns:
            if starts[i] == start_ns:
                return True
            i += 1
        ends.insert(i, end_ns)
        starts.insert(i, start_ns)
        return False

    def latest(self, per_series: int, since_ns: int) -> Iterator[tuple[object, list[int], list[int]]]:
        """Per series, (series, ends, starts) of its newest ``per_series`` points ending at ``since_ns`` or later."""
        for series, (ends, starts) in self._series.items():
            k = max(bisect_left(ends, since_ns), len(ends) - per_series)
            if k < len(ends):
                yield series, ends[k:].tolist(), starts[k:].tolist()

    def restore(self, series: object, ends: list[int], starts: list[int]) -> None:
        """Record the points ``(starts[i], ends[i]]`` of ``series`` (as if seen), ends in any order."""
        for end_ns, start_ns in sorted(zip(ends, starts, strict=True)):
            self.seen(series, int(start_ns), int(end_ns))

    def forget_before(self, end_ns: int) -> None:
        """Forget points ending before ``end_ns`` (and series left empty)."""
        for series in list(self._series):
            ends, starts = self._series[series]
            k = bisect_left(ends, end_ns)
            if k == len(ends):
                del self._series[series]
            elif k:
                del ends[:k]
                del starts[:k]
