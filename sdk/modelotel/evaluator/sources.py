"""Where deltas come from: one function, ``read``, dispatching on the location.

    deltas, report = read(location, {"ml.inference.duration"}, start_ns=..., end_ns=..., progress=cb)
    for delta in deltas: ...     # lazily; ``report`` is complete once ``deltas`` is exhausted

A location is

* an ``http://`` or ``https://`` URL: the Prometheus HTTP API of a Prometheus or Mimir server (the base URL,
  e.g. ``http://127.0.0.1:9090`` or ``http://mimir:8080/prometheus``; see prometheus_source.py), or
* a file path: OTLP JSON lines (otlp_source.py), plain, gzip or zstd (detected by content, not by name; zstd
  needs the optional ``zstandard`` package, which modelotel does not depend on).

``Reader`` reads the locations of one evaluation in turn with shared series state: a series continues from one
file to the next (rotated files), the same points read twice (a file given twice, a file and its ``.gz``) are
dropped and counted as duplicates, and ``Reader.inventory`` tells what all the inputs held (for "matched nothing"
messages).

``metrics`` names the metrics wanted (None: all, for files); everything else is skipped cheaply. Deltas ending outside
``[start_ns, end_ns]`` are not yielded. ``progress(done, total)`` is called at most about every 0.25 s and once
at the end (bytes of a file, compressed if it is; queries made to a server). A location that cannot be read at
all raises ``SourceError`` (before the first delta, or while iterating for a server that goes away); problems
inside the data never raise, they are counted in the report.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator

from .otlp_source import LineDecoder, read_otlp_file
from .points import Delta, Inventory, ReadReport, SourceError

__all__ = ["Reader", "SourceError", "is_url", "read"]


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def read(
    location: str,
    metrics: Collection[str] | None,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Iterator[Delta], ReadReport]:
    """The deltas of ``metrics`` at ``location`` and the report they fill in (see the module docstring)."""
    return Reader(metrics, start_ns=start_ns, end_ns=end_ns).read(location, progress)


class Reader:
    """Reads locations one after another (each read's deltas consumed before the next), sharing series state."""

    def __init__(
        self, metrics: Collection[str] | None, *, start_ns: int | None = None, end_ns: int | None = None
    ) -> None:
        self.metrics = None if metrics is None else frozenset(metrics)
        self.start_ns, self.end_ns = start_ns, end_ns
        self.inventory = Inventory()
        self._decoder: LineDecoder | None = None

    def read(
        self, location: str, progress: Callable[[int, int], None] | None = None
    ) -> tuple[Iterator[Delta], ReadReport]:
        if is_url(location):
            from .prometheus_source import read_prometheus

            return read_prometheus(
                location,
                self.metrics,
                start_ns=self.start_ns,
                end_ns=self.end_ns,
                progress=progress,
                inventory=self.inventory,
            )
        if self._decoder is None:
            self._decoder = LineDecoder(self.metrics, self.start_ns, self.end_ns, ReadReport(source=location))
            self._decoder.inventory = self.inventory
        return read_otlp_file(location, self.metrics, progress=progress, decoder=self._decoder)
