"""Where deltas come from: one function, ``read``, dispatching on the location.

    deltas, report = read(location, {"ml.inference.duration"}, start_ns=..., end_ns=..., progress=cb)
    for delta in deltas: ...     # lazily; ``report`` is complete once ``deltas`` is exhausted

A location is

* an ``http://`` or ``https://`` URL: the Prometheus HTTP API of a Prometheus or Mimir server (the base URL,
  e.g. ``http://127.0.0.1:9090`` or ``http://mimir:8080/prometheus``; see prometheus_source.py), or
* a file path: OTLP JSON lines (otlp_source.py), plain, gzip or zstd (detected by content, not by name; zstd
  needs the optional ``zstandard`` package, which modelotel does not depend on). Only a regular file is opened
  (a device, FIFO or socket is refused before it could block or never end); lines over
  ``MODELOTEL_MAX_LINE_BYTES`` are skipped unread and counted as corrupt, and a compressed file inflating past
  ``MODELOTEL_MAX_INFLATION`` times its size is refused (config.py), so memory never follows the worst line.

``Reader`` reads the locations of one evaluation in turn with shared series state: a series continues from one
file to the next (rotated files), the same points read twice (a file given twice, a file and its ``.gz``) are
dropped and counted as duplicates, and ``Reader.inventory`` tells what all the inputs held (for "matched nothing"
messages).

A file that the SDK's file exporter rotated (``x.jsonl`` with backups ``x.jsonl.1`` newest ... ``x.jsonl.N``
oldest, next to it) is read as one stream: given ``x.jsonl``, the backups are read first, oldest first, and
the whole set has one report (problems still name the file they were found in). A backup also given by name
is not read twice.

``metrics`` names the metrics wanted (None: all, for files); everything else is skipped cheaply. Deltas ending outside
``[start_ns, end_ns]`` are not yielded. ``progress(done, total)`` is called at most about every 0.25 s and once
at the end (bytes of a file, compressed if it is; queries made to a server). A location that cannot be read at
all raises ``SourceError`` (before the first delta, or while iterating for a server that goes away); problems
inside the data never raise, they are counted in the report.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Collection, Iterator

from ...config import input_limits
from .otlp_file import LineDecoder, read_otlp_file
from .points import Delta, Inventory, ReadReport, SourceError

__all__ = ["Reader", "SourceError", "is_url", "read", "rotated_backups"]


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
        self.limits = input_limits()  # line length and inflation bounds (config.py): read once per evaluation
        self._decoder: LineDecoder | None = None
        self._backups_read: set[tuple[int, int] | None] = set()

    def read(
        self, location: str, progress: Callable[[int, int], None] | None = None
    ) -> tuple[Iterator[Delta], ReadReport]:
        if is_url(location):
            from .prometheus import read_prometheus

            return read_prometheus(
                location,
                self.metrics,
                start_ns=self.start_ns,
                end_ns=self.end_ns,
                progress=progress,
                inventory=self.inventory,
            )
        if self._backups_read and _file_key(location) in self._backups_read:
            report = ReadReport(source=location)
            report.problem(0, "already read as a rotated backup of a file given before it")
            return iter(()), report
        backups = [b for b in rotated_backups(location) if _file_key(b) not in self._backups_read]
        if not backups:
            return self._read_file(location, progress)
        opened = []
        for backup in backups:
            try:
                opened.append(self._read_file(backup, progress))
            except SourceError:
                if os.path.exists(backup):
                    raise
                continue  # rotated away since it was listed
            key = _file_key(backup)
            if key is not None:
                self._backups_read.add(key)
        opened.append(self._read_file(location, progress))
        whole = ReadReport(source=location)
        return _one_stream(opened, whole), whole

    def _read_file(self, path: str, progress: Callable[[int, int], None] | None) -> tuple[Iterator[Delta], ReadReport]:
        if self._decoder is None:
            self._decoder = LineDecoder(self.metrics, self.start_ns, self.end_ns, ReadReport(source=path))
            self._decoder.inventory = self.inventory
        return read_otlp_file(path, self.metrics, progress=progress, decoder=self._decoder, limits=self.limits)


def rotated_backups(path: str) -> list[str]:
    """The backups ``path.1`` (newest) ... ``path.N`` of a rotated file (file_append.py names them), oldest
    first; empty when ``path`` is not a regular file or has none."""
    if not os.path.isfile(path):
        return []
    directory, base = os.path.split(path)
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return []
    prefix = base + "."
    numbered = []
    for name in names:
        suffix = name[len(prefix) :]
        if name.startswith(prefix) and suffix.isascii() and suffix.isdigit():
            backup = os.path.join(directory, name)
            if os.path.isfile(backup):
                numbered.append((int(suffix), backup))
    return [backup for _, backup in sorted(numbered, reverse=True)]


def _file_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _one_stream(parts: list[tuple[Iterator[Delta], ReadReport]], whole: ReadReport) -> Iterator[Delta]:
    """The deltas of each file in turn; each file's report is added into ``whole`` once its deltas are read."""
    for deltas, report in parts:
        try:
            yield from deltas
        finally:
            _add_report(whole, report)


def _add_report(whole: ReadReport, part: ReadReport) -> None:
    for f in dataclasses.fields(ReadReport):
        mine, theirs = getattr(whole, f.name), getattr(part, f.name)
        if f.name == "source":
            continue
        if f.name.startswith("first_") and f.name.endswith("_line"):
            if not mine:
                setattr(whole, f.name, theirs)
        elif isinstance(mine, bool):
            setattr(whole, f.name, mine or theirs)
        elif isinstance(mine, (int, float)):
            setattr(whole, f.name, mine + theirs)
        elif isinstance(mine, dict):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value
        elif isinstance(mine, set):
            mine |= theirs
        elif isinstance(mine, list):
            mine.extend(theirs[: max(0, whole.MAX_PROBLEMS - len(mine))])
