"""Where deltas come from: one function, ``read``, dispatching on the location.

    deltas, report = read(location, {"ml.inference.duration"}, start_ns=..., end_ns=..., progress=cb)
    for delta in deltas: ...     # lazily; ``report`` is complete once ``deltas`` is exhausted

A location is

* an ``http://`` or ``https://`` URL: the Prometheus HTTP API of a Prometheus or Mimir server (the base URL,
  e.g. ``http://127.0.0.1:9090`` or ``http://mimir:8080/prometheus``; see prometheus_source.py), or
* a file path: OTLP JSON lines (otlp_source.py), plain, gzip or zstd (detected by content, not by name; zstd
  needs the optional ``zstandard`` package, which modelotel does not depend on).

``metrics`` names the metrics wanted (None: all, for files); everything else is skipped cheaply. Deltas ending outside
``[start_ns, end_ns]`` are not yielded. ``progress(done, total)`` is called at most about every 0.25 s and once
at the end (bytes of a file, compressed if it is; queries made to a server). A location that cannot be read at
all raises ``SourceError`` (before the first delta, or while iterating for a server that goes away); problems
inside the data never raise, they are counted in the report.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator

from .otlp_source import read_otlp_file
from .points import Delta, ReadReport, SourceError

__all__ = ["SourceError", "is_url", "read"]


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
    if is_url(location):
        from .prometheus_source import read_prometheus

        return read_prometheus(location, metrics, start_ns=start_ns, end_ns=end_ns, progress=progress)
    return read_otlp_file(location, metrics, start_ns=start_ns, end_ns=end_ns, progress=progress)
