"""OTLP JSON lines -> Deltas: the collector's ``file`` exporter output and modelotel's embedded file exporter.

Format (otlp_json.py): one ``ExportMetricsServiceRequest`` per line, lowerCamelCase keys, 64-bit integers as
strings, doubles as numbers or the strings ``"NaN"``/``"Infinity"``; the collector also writes ``{}`` for an
empty request. The same file may hold traces and logs (the gateway's file route): those lines are *foreign*.

Streaming. The file is read line by line (plain, gzip, or zstd when the ``zstandard`` package is importable;
detected by magic bytes, not by name); memory is the current line plus one latest point per cumulative series
(cumulative.py): it grows with the number of series, not with the size of the file.

Speed (benchmarks/evaluator_bench.py): orjson when installed (stdlib json otherwise); every ``bucketCounts``
array is cut out of the line before parsing and a line's arrays are decoded with one numpy call, only if a wanted
histogram needs them; a cumulative histogram point whose count did not change is not decoded at all.

Per data point, of metrics in ``metrics`` only (others are counted in ``skipped_metrics`` and not decoded):

* series = resource attributes + scope name/version + metric name + point attributes; ``Delta.attributes``
  merges resource and point attributes into one flat dict, point wins (shared by all deltas of a series:
  read-only). AnyValue -> str/bool/int/float; arrays and kvlists -> compact JSON strings; bytes -> base64 text.
* ``sum`` -> ``value`` = the increment; ``histogram`` -> ``explicit`` (ExplicitHistogram) and ``value`` = its
  count; ``exponentialHistogram`` -> ``sketch`` (LogSketch at the point's scale, or the smaller scale of two
  cumulative points) and ``value`` = its count. DELTA points (aggregationTemporality 1) are yielded as they are;
  CUMULATIVE ones (2) go through cumulative.CumulativeTracker (resets, unknown starts, scale changes).
  ``gauge``/``summary`` points, non-monotonic sums (up-down counters: no events to count), an unspecified
  temporality and inconsistent counts are ``bad_points``.
* A delta is yielded when it counted something (value > 0) and its end lies in ``[start_ns, end_ns]`` (when
  given); cumulative state is tracked for every point regardless.
* Zero buckets with a ``zeroThreshold`` > 0 are counted as zeros (LogSketch's zero threshold is 0).

Never raises on content: corrupt lines (not JSON, not UTF-8, a truncated last line or compressed stream),
foreign lines and bad points are counted in the ReadReport, with the first problems by line number. A file
that cannot be read at all raises ``SourceError``. ``report.bytes_read`` counts bytes of the file itself
(compressed, when it is).
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import os
import re
import stat
import time
import zlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...config import ENV_MAX_INFLATION, ENV_MAX_LINE_BYTES, InputLimits, input_limits
from .cumulative import (
    BASELINE,
    CONCURRENT,
    FIRST,
    INCREMENT,
    MAX_COUNT,
    RESET,
    STALE,
    CumulativeTracker,
    ExplicitCounts,
    ExpoCounts,
)
from .duplicates import DeltaPoints
from .points import AttrValue, Delta, Inventory, ReadReport, SourceError

try:  # orjson: the whole reader runs ~1.9x faster than with the stdlib json, its fallback
    from orjson import JSONDecodeError as _JSONError
    from orjson import dumps as _dumps
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - exercised only without orjson
    _JSONError = ValueError  # type: ignore[misc,assignment]
    _loads = json.loads

    def _dumps(obj: Any) -> bytes:  # type: ignore[misc]
        return json.dumps(obj, separators=(",", ":")).encode()


__all__ = ["DeltaRecord", "LineDecoder", "Progress", "SeriesPoint", "read_otlp_file", "series_ids"]

Progress = Callable[[int, int], None]
PROGRESS_INTERVAL_S = 0.25
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BUFFER = 1 << 20
_SIGNAL_HEADS = {b'{"resourceSpans"': "traces", b'{"resourceLogs"': "logs", b'{"resourceProfiles"': "profiles"}
_SIGNAL_KEYS = {"resourceSpans": "traces", "resourceLogs": "logs", "resourceProfiles": "profiles"}
_DELTA, _CUMULATIVE = 1, 2
_EMPTY = np.zeros(0, dtype=np.int64)
_TIME_LIMIT = 1 << 64  # OTLP times are fixed64 nanoseconds
_INT_LIMIT = 1 << 63  # asInt is sfixed64

series_ids = itertools.count(1)
"""Process-wide series ids: deltas of different reads never share one (the engine caches by it)."""


def read_otlp_file(
    path: str | os.PathLike[str],
    metrics: Collection[str] | None,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    progress: Progress | None = None,
    decoder: LineDecoder | None = None,
    limits: InputLimits | None = None,
) -> tuple[Iterator[Delta], ReadReport]:
    """Open ``path`` now (``SourceError`` if it cannot be read) and return the lazy deltas and the report they
    fill in as they are consumed. ``metrics`` None means every metric.

    ``decoder``: one shared by every file of an evaluation (its ``metrics`` and range are then its own), so that a
    series continues from file to file (rotated files), and points read twice are dropped as duplicates.

    ``limits``: the longest line read (longer ones are skipped unread, counted as corrupt) and how far a compressed
    file may inflate (past it: ``SourceError`` while iterating); default from the environment (config.py)."""
    name = os.fspath(path)
    limits = limits or input_limits()
    raw, lines, total = _open(name)
    report = ReadReport(source=name)
    if decoder is None:
        decoder = LineDecoder(None if metrics is None else frozenset(metrics), start_ns, end_ns, report)
    inflated_cap = limits.max_inflated_bytes(total) if lines is not raw else None
    return _deltas(raw, lines, total, decoder, report, progress, limits.max_line_bytes, inflated_cap), report


# -- opening ---------------------------------------------------------------------------------------------------


def _open(path: str) -> tuple[io.BufferedReader, Any, int]:
    """(raw file, binary line stream, file size); SourceError with one clear message if unreadable."""
    _check_regular(path)
    try:
        raw = open(path, "rb", buffering=_BUFFER)  # noqa: SIM115 - closed by _deltas
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SourceError(f"{path}: is a directory, not an OTLP JSON lines file") from None
    except PermissionError:
        raise SourceError(f"{path}: permission denied") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot open ({exc.strerror or exc})") from None
    try:
        total = os.fstat(raw.fileno()).st_size
        head = raw.peek(4)[:4]
        if head.startswith(GZIP_MAGIC):
            import gzip

            lines: Any = gzip.GzipFile(fileobj=raw, mode="rb")
        elif head.startswith(ZSTD_MAGIC):
            try:
                import zstandard
            except ImportError:
                raise SourceError(
                    f"{path}: zstd-compressed; install the 'zstandard' package to read it (or decompress it)"
                ) from None
            lines = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw), _BUFFER)
        else:
            lines = raw
        sample = lines.peek(4096)[:4096]
    except SourceError:
        raw.close()
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raw.close()
        raise SourceError(f"{path}: cannot read ({exc})") from None
    except Exception as exc:  # zstandard.ZstdError and other decompressor errors
        raw.close()
        raise SourceError(f"{path}: cannot decompress ({exc})") from None
    if b"\x00" in sample:
        raw.close()
        raise SourceError(f"{path}: not a text file (binary data); expected OTLP JSON lines (plain, .gz or .zst)")
    return raw, lines, total


def _check_regular(path: str) -> None:
    """SourceError unless ``path`` is a regular file: a device (/dev/zero), a FIFO or a socket would be read
    forever or block; checked with stat, which neither opens nor blocks."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot open ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise SourceError(f"{path}: is a directory, not an OTLP JSON lines file")
    if not stat.S_ISREG(mode):
        raise SourceError(f"{path}: is {_file_kind(mode)}, not a regular file; expected OTLP JSON lines")


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def _bounded_lines(stream: Any, max_line: int, max_total: int | None) -> Iterator[bytes | int]:
    """The lines of ``stream``; a line over ``max_line`` bytes (newline excluded) is skipped a chunk at a time and
    stands as its length (an int), so memory never holds more than ``max_line`` bytes of it. Skipping stops once
    ``max_total`` bytes were read in all (a compression bomb: the caller refuses the file)."""
    readline = stream.readline
    limit = max_line + 1
    total = 0
    while True:
        line = readline(limit)
        total += len(line)
        if len(line) < limit or line[-1:] == b"\n":
            if not line:
                return
            yield line
            continue
        size = len(line)
        del line
        while max_total is None or total <= max_total:
            chunk = readline(_BUFFER)
            size += len(chunk)
            total += len(chunk)
            if not chunk or chunk[-1:] == b"\n":
                break
        yield size


def _deltas(
    raw: io.BufferedReader,
    lines: Any,
    total: int,
    decoder: LineDecoder,
    report: ReadReport,
    progress: Progress | None,
    max_line: int,
    inflated_cap: int | None,
) -> Iterator[Delta]:
    decoder.report = report
    series_before = decoder.series_count
    number = 0
    inflated = 0  # bytes out of the decompressor, when the file is compressed
    next_progress = time.monotonic() + PROGRESS_INTERVAL_S
    try:
        it = _bounded_lines(lines, max_line, inflated_cap)
        while True:
            try:
                line = next(it)
            except StopIteration:
                break
            except Exception as exc:  # truncated or corrupt compressed stream: what came before still counts
                report.corrupt_lines += 1
                report.problem(number + 1, f"compressed data unreadable from here on ({exc})")
                break
            number += 1
            if inflated_cap is not None:
                inflated += line if isinstance(line, int) else len(line)
                if inflated > inflated_cap:
                    raise SourceError(
                        f"{report.source}: decompresses to over {inflated_cap} bytes from {total} (more than "
                        f"{inflated_cap / max(total, 1):.0f}x): refused as a compression bomb; "
                        f"{ENV_MAX_INFLATION} raises the ratio"
                    )
            if isinstance(line, int):
                report.lines += 1
                report.corrupt_lines += 1
                report.problem(
                    number, f"line of {line} bytes, over the {max_line}-byte limit: skipped ({ENV_MAX_LINE_BYTES})"
                )
                continue
            if progress is not None:
                now = time.monotonic()
                if now >= next_progress:
                    next_progress = now + PROGRESS_INTERVAL_S
                    report.bytes_read = raw.tell()
                    progress(report.bytes_read, total)
            if number == 1 and _document_start(line):
                # pretty-printed JSON (one document over many lines): decoded whole, as one line
                text, lines_in = _whole_document(line, it)  # type: ignore[arg-type]
                yield from decoder.document(text, lines_in)
                break
            deltas = decoder.line(number, line)
            if deltas:
                yield from deltas
    finally:
        report.bytes_read = _tell(raw, total)
        report.series = decoder.series_count - series_before
        raw.close()
    if progress is not None:
        progress(report.bytes_read, total)


MAX_DOCUMENT_BYTES = 256 << 20  # a pretty-printed document is held whole; JSON lines stream


def _document_start(line: bytes) -> bool:
    """Whether a first line opens a JSON document spread over several lines (``{`` or ``[`` that does not
    close on the line)."""
    head = line.strip()
    if not head.startswith((b"{", b"[")):
        return False
    try:
        _loads(head)
    except (_JSONError, ValueError):
        return True
    return False


def _whole_document(first: bytes, rest: Iterator[bytes | int]) -> tuple[bytes, int]:
    """The document's bytes (the first line and all the others) and its number of lines."""
    parts = [first]
    size = len(first)
    while True:
        try:
            line = next(rest)
        except StopIteration:
            break
        except Exception:  # a truncated compressed stream: the document is incomplete, its parse says so
            break
        if isinstance(line, int):  # a line over the line limit: the document cannot be read whole
            raise SourceError(f"a pretty-printed JSON document with a line of {line} bytes ({ENV_MAX_LINE_BYTES})")
        parts.append(line)
        size += len(line)
        if size > MAX_DOCUMENT_BYTES:
            raise SourceError(
                f"a pretty-printed JSON document over {MAX_DOCUMENT_BYTES >> 20} MB: write OTLP JSON lines "
                "(one compact export request per line) instead"
            )
    return b"".join(parts), len(parts)


def _tell(raw: io.BufferedReader, total: int) -> int:
    try:
        return raw.tell()
    except (OSError, ValueError):
        return total


# -- decoding --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesPoint:
    """The latest cumulative point of one series (of one start time), with the series' identity: what a
    decoder needs to continue the series after a restart (``modelotel serve`` snapshots)."""

    resource: bytes  # resource attributes as compact JSON (the decoder's key)
    scope_name: str
    scope_version: str
    metric: str
    point: bytes  # point attributes as compact JSON
    attributes: dict[str, AttrValue]  # merged resource + point attributes (the deltas' attributes)
    sid: int
    start_ns: int
    time_ns: int
    total: Any  # int | float | ExpoCounts | ExplicitCounts


@dataclass(frozen=True)
class DeltaRecord:
    """The delta points recorded for one series (duplicates.DeltaPoints), with the series' identity: what a
    decoder needs to recognise a delta point it counted before a restart (``modelotel serve`` snapshots)."""

    resource: bytes
    scope_name: str
    scope_version: str
    metric: str
    point: bytes
    attributes: dict[str, AttrValue]
    sid: int
    ends: list[int]
    starts: list[int]


class LineDecoder:
    """Turns one line (an export request) into its deltas; holds the series table, the cumulative state, the
    record of delta points seen (duplicates.py) and the inventory of what was read. One decoder may read many
    files in turn (``report`` is then swapped per file)."""

    def __init__(self, metrics: frozenset[str] | None, start_ns: int | None, end_ns: int | None, report: ReadReport):
        self.metrics = metrics
        self.start_ns = -1 if start_ns is None else start_ns
        self.end_ns = 1 << 64 if end_ns is None else end_ns
        self.report = report
        self.tracker = CumulativeTracker()
        self.delta_points = DeltaPoints()
        self.inventory = Inventory()
        self._resources: dict[bytes, dict[str, AttrValue]] = {}
        # (resource attributes, scope name, scope version, metric) -> point attributes JSON -> (id, attributes)
        self._series_by_metric: dict[tuple, dict[bytes, tuple[int, dict[str, AttrValue]]]] = {}
        # Per resource (one process): the newest point time of its earlier exports. The first point of a
        # cumulative series seen after that accrued since then, not since its start time: a series that appears
        # mid-stream (a first error) is new, while one already running when the file began keeps its start.
        self._exported: dict[bytes, int] = {}
        self._floor = 0
        self._latest = 0
        self._earliest = 1 << 63
        self.series_count = 0
        # modelotel serve --max-series: a point of a new series past it is refused (a bad point, counted here too);
        # the caches keyed by resource and metric stop growing with it
        self.max_series: int | None = None
        self.series_refused = 0
        self._text: bytes | None = None  # a whole document being decoded (to find problems' lines)
        self._pieces: list[bytes] = []  # this line's bucketCounts texts (see _stash_buckets)
        self._arrays: list[tuple[np.ndarray, int] | None] | None = None  # ... decoded on first use

    def line(self, number: int, line: bytes) -> list[Delta]:
        out: list[Delta] = []
        report = self.report
        if len(line) < 8 and not line.strip():
            return out
        report.lines += 1
        head = line[: line.find(b'"', 2) + 1]
        signal = _SIGNAL_HEADS.get(head)
        if signal is not None and line.rstrip().endswith(b"}"):
            # traces/logs of the collector's file route: another signal, not a problem; not decoded at all
            report.signal_lines[signal] = report.signal_lines.get(signal, 0) + 1
            return out
        try:
            text, self._pieces = _stash_buckets(line)
            self._arrays = None
            obj = _loads(text)
        except (_JSONError, ValueError):
            report.corrupt_lines += 1
            report.problem(number, "not JSON" if line.endswith(b"\n") else "not JSON (truncated last line)")
            return out
        self._request(number, obj, out)
        return out

    def document(self, text: bytes, lines: int) -> list[Delta]:
        """A whole JSON document: one export request, or a list of them (pretty-printed, e.g. the examples of
        opentelemetry-proto). Problems name the line where the document's metric begins when it can be found."""
        report = self.report
        report.lines += lines
        out: list[Delta] = []
        try:
            obj = _loads(text)
        except (_JSONError, ValueError) as exc:
            report.corrupt_lines += 1
            report.problem(1, f"not JSON: a document starts on line 1 but does not parse ({exc})")
            return out
        self._text = text
        for request in obj if isinstance(obj, list) else [obj]:
            self._request(0, request, out)
        self._text = None
        return out

    def _request(self, number: int, obj: Any, out: list[Delta]) -> None:
        report = self.report
        rms = obj.get("resourceMetrics") if isinstance(obj, dict) else None
        if not isinstance(rms, list):
            signal = next((v for k, v in _SIGNAL_KEYS.items() if isinstance(obj, dict) and k in obj), None)
            if signal is not None:
                report.signal_lines[signal] = report.signal_lines.get(signal, 0) + 1
            elif obj != {}:  # the collector writes {} for an empty request
                report.foreign_lines += 1
                report.problem(number or 1, f"not OTLP metrics ({_describe(obj)})")
            return
        before = len(out)
        for i, rm in enumerate(rms):
            try:
                self._resource_metrics(number, rm, out)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                report.bad_points += 1
                report.problem(number or 1, f"resourceMetrics[{i}]: {_why(exc)}")
        report.deltas += len(out) - before

    def _where(self, number: int, metric: str) -> int:
        """The line of a problem: the request's line, or in a whole document the line naming the metric."""
        if number or self._text is None:
            return number
        at = self._text.find(b'"' + metric.encode() + b'"')
        return self._text.count(b"\n", 0, at) + 1 if at >= 0 else 1

    def _resource_metrics(self, number: int, rm: dict, out: list[Delta]) -> None:
        report = self.report
        wanted = self.metrics
        rattrs = (rm.get("resource") or {}).get("attributes") or ()
        rkey = _dumps(rattrs) if rattrs else b""
        resource = self._resources.get(rkey)
        if resource is None:
            resource = _attributes(rattrs)
            if not self._full():
                self._resources[rkey] = resource
            instance = resource.get("service.instance.id")
            if instance is not None:
                report.instances.add(str(instance))
        self._floor = self._latest = self._exported.get(rkey, 0)
        self._earliest = 1 << 63
        for sm in rm.get("scopeMetrics") or ():
            scope = sm.get("scope") or {}
            sname, sversion = scope.get("name", ""), scope.get("version", "")
            for metric in sm.get("metrics") or ():
                name = metric.get("name")
                inventory = self.inventory.metrics
                if wanted is not None and name not in wanted:
                    skipped = _point_count(metric)
                    report.skipped_metrics += skipped
                    inventory[name] = inventory.get(name, 0) + skipped
                    continue
                for kind in _KINDS:
                    data = metric.get(kind)
                    if data is not None:
                        break
                else:
                    report.bad_points += 1
                    report.problem(self._where(number, name), f"metric {name!r}: no data (not a sum or histogram)")
                    continue
                points = data.get("dataPoints") or ()
                report.points += len(points)
                inventory[name] = inventory.get(name, 0) + len(points)
                if kind in ("gauge", "summary"):
                    report.bad_points += len(points)
                    report.problem(
                        self._where(number, name),
                        f"metric {name!r}: a {kind} has no increments to count (SLOs need a sum or a histogram)",
                    )
                    continue
                temporality = data.get("aggregationTemporality")
                if temporality not in (_DELTA, _CUMULATIVE):
                    report.bad_points += len(points)
                    report.problem(
                        self._where(number, name),
                        f"metric {name!r}: aggregationTemporality {temporality!r} (need 1, delta, or 2, cumulative)",
                    )
                    continue
                unit = metric.get("unit") or ""
                units = self.inventory.units.get(name)
                if units is None:
                    units = self.inventory.units[name] = set()
                units.add(unit)
                key = (rkey, sname, sversion, name)
                by_point = self._series_by_metric.get(key)
                if by_point is None:
                    by_point = {}
                    if not self._full():
                        self._series_by_metric[key] = by_point
                cumulative = temporality == _CUMULATIVE
                if kind == "sum" and not data.get("isMonotonic"):
                    # an up-down counter (active requests, queue length) goes down as well as up: it counts no
                    # events, and its decreases are not resets
                    report.bad_points += len(points)
                    report.problem(
                        self._where(number, name),
                        f"metric {name!r}: a non-monotonic sum (an up-down counter) has no events to count",
                    )
                    continue
                if kind == "sum":
                    self._sums(number, name, unit, resource, by_point, points, cumulative, out)
                else:
                    self._histograms(number, name, unit, resource, by_point, points, cumulative, kind, out)
        if rkey in self._resources or rkey in self._exported:
            self._exported[rkey] = self._latest
        inventory = self.inventory
        if self._latest > inventory.last_ns:
            inventory.last_ns = self._latest
        if self._earliest < (inventory.first_ns or self._earliest + 1):
            inventory.first_ns = self._earliest

    def _new_series(
        self, name: str, by_point: dict, akey: bytes, resource: dict, pattrs: Any
    ) -> tuple[int, dict[str, AttrValue]]:
        if self._full():
            self.series_refused += 1
            raise ValueError(f"a new series past the limit of {self.max_series} series (--max-series): refused")
        series = by_point[akey] = (next(series_ids), {**resource, **_attributes(pattrs or ())})
        self.series_count += 1
        self.inventory.add_series(name, series[1])
        return series

    def _full(self) -> bool:
        return self.max_series is not None and self.series_count >= self.max_series

    def _sums(self, number, name, unit, resource, by_point, points, cumulative, out: list[Delta]) -> None:
        track = self.tracker.counter
        lo, hi = self.start_ns, self.end_ns
        for j, p in enumerate(points):
            try:
                pattrs = p.get("attributes")
                akey = _dumps(pattrs) if pattrs else b""
                series = by_point.get(akey) or self._new_series(name, by_point, akey, resource, pattrs)
                end = int(p["timeUnixNano"])
                start = int(p.get("startTimeUnixNano") or 0)
                if not (0 <= end < _TIME_LIMIT and 0 <= start < _TIME_LIMIT):
                    raise ValueError(f"time {end} or start time {start} outside [0, 2**64) nanoseconds")
                if p.get("flags", 0) & 1:  # FLAG_NO_RECORDED_VALUE: a staleness marker, no value
                    continue
                value = p.get("asInt")
                value = int(value) if value is not None else float(p.get("asDouble", 0.0))
                if value - value != 0:
                    raise ValueError(f"non-finite value {value}")
                if type(value) is int and not -_INT_LIMIT <= value < _INT_LIMIT:
                    raise ValueError(f"asInt {value} outside the 64-bit range")
                if end > self._latest:
                    self._latest = end
                if end < self._earliest:
                    self._earliest = end
                if cumulative:
                    outcome, start, value = track(series[0], start, end, value)
                    if outcome != INCREMENT:
                        if self._outcome(number, outcome):
                            continue
                        if outcome == FIRST and start < self._floor:
                            start = self._floor
                elif self.delta_points.seen(series[0], start, end):
                    self._duplicate(number)
                    continue
                if value and lo <= end <= hi:
                    out.append(_delta(name, series[1], start or end, end, value, None, None, series[0], unit))
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError, MemoryError) as exc:
                self.report.bad_points += 1
                self.report.problem(self._where(number, name), f"metric {name!r} point {j}: {_why(exc)}")

    def _histograms(self, number, name, unit, resource, by_point, points, cumulative, kind, out: list[Delta]) -> None:
        exponential = kind == "exponentialHistogram"
        tracker = self.tracker
        track = tracker.exponential if exponential else tracker.explicit
        decode = self._exponential if exponential else self._explicit
        lo, hi = self.start_ns, self.end_ns
        for j, p in enumerate(points):
            try:
                pattrs = p.get("attributes")
                akey = _dumps(pattrs) if pattrs else b""
                sid, attrs = by_point.get(akey) or self._new_series(name, by_point, akey, resource, pattrs)
                end = int(p["timeUnixNano"])
                start = int(p.get("startTimeUnixNano") or 0)
                if not (0 <= end < _TIME_LIMIT and 0 <= start < _TIME_LIMIT):
                    raise ValueError(f"time {end} or start time {start} outside [0, 2**64) nanoseconds")
                if p.get("flags", 0) & 1:
                    continue
                if end > self._latest:
                    self._latest = end
                if end < self._earliest:
                    self._earliest = end
                if cumulative and tracker.idle(sid, start, end, int(p.get("count") or 0)):
                    continue  # nothing new since the last point: its buckets are not even decoded
                counts = decode(p)
                fresh = True  # whether the counts' arrays are ours alone (the tracker keeps totals)
                if cumulative:
                    outcome, start, counts = track(sid, start, end, counts)
                    if outcome != INCREMENT:
                        if self._outcome(number, outcome):
                            continue
                        fresh = False
                        if outcome == FIRST and start < self._floor:
                            start = self._floor
                elif self.delta_points.seen(sid, start, end):
                    self._duplicate(number)
                    continue
                if counts is None or not counts.count or not lo <= end <= hi:
                    continue
                if exponential:
                    sketch = counts.sketch(not fresh)
                    delta = _delta(name, attrs, start or end, end, counts.count, sketch, None, sid, unit)
                else:
                    delta = _delta(name, attrs, start or end, end, counts.count, None, counts.histogram(), sid, unit)
                out.append(delta)
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError, MemoryError) as exc:
                self.report.bad_points += 1
                self.report.problem(self._where(number, name), f"metric {name!r} point {j}: {_why(exc)}")

    def _identities(self) -> dict[int, tuple]:
        identity = {}
        for (rkey, sname, sversion, metric), by_point in self._series_by_metric.items():
            for akey, (sid, attributes) in by_point.items():
                identity[sid] = (rkey, sname, sversion, metric, akey, attributes)
        return identity

    def export_series(self) -> list[SeriesPoint]:
        """Every cumulative point the tracker holds, with its series' identity."""
        identity = self._identities()
        return [
            SeriesPoint(*identity[sid], sid, start, time_ns, total)
            for sid, start, time_ns, total in self.tracker.states()
            if sid in identity
        ]

    def export_delta_points(self, per_series: int, since_ns: int) -> list[DeltaRecord]:
        """The newest ``per_series`` delta points of every series ending at ``since_ns`` or later, with the
        series' identity (``DeltaPoints.latest``)."""
        identity = self._identities()
        return [
            DeltaRecord(*identity[sid], sid, ends, starts)
            for sid, ends, starts in self.delta_points.latest(per_series, since_ns)
            if sid in identity
        ]

    def import_delta_points(self, records: list[DeltaRecord], keep_ids: bool) -> None:
        """Register the series of ``records`` (new ids unless ``keep_ids``) and record their delta points."""
        for r in records:
            self.delta_points.restore(self._register(r, keep_ids), r.ends, r.starts)

    def import_series(self, points: list[SeriesPoint], keep_ids: bool) -> None:
        """Register the series of ``points`` (new ids unless ``keep_ids``) and restore each latest point."""
        for p in points:
            self.tracker.restore(self._register(p, keep_ids), p.start_ns, p.time_ns, p.total)

    def _register(self, x: SeriesPoint | DeltaRecord, keep_ids: bool) -> int:
        """The series id of an imported record's series, registering the series when it is new."""
        by_point = self._series_by_metric.setdefault((x.resource, x.scope_name, x.scope_version, x.metric), {})
        known = by_point.get(x.point)
        if known is None:
            known = by_point[x.point] = (x.sid if keep_ids else next(series_ids), x.attributes)
            self.series_count += 1
        return known[0]

    def _exponential(self, p: dict) -> ExpoCounts:
        pos = p.get("positive") or {}
        neg = p.get("negative") or {}
        pos_counts, pos_total = self._buckets(pos.get("bucketCounts"))
        neg_counts, neg_total = self._buckets(neg.get("bucketCounts"))
        counts = ExpoCounts(
            int(p.get("scale") or 0),
            int(p.get("count") or 0),
            int(p.get("zeroCount") or 0),
            int(pos.get("offset") or 0),
            pos_counts,
            int(neg.get("offset") or 0),
            neg_counts,
            float(p.get("sum") or 0.0),
            _finite(p.get("min")),
            _finite(p.get("max")),
        )
        why = counts.consistent(pos_total, neg_total)
        if why:
            raise ValueError(why)
        return counts

    def _explicit(self, p: dict) -> ExplicitCounts:
        counts = ExplicitCounts(
            tuple(float(b) for b in p.get("explicitBounds") or ()),
            self._buckets(p.get("bucketCounts"))[0],
            int(p.get("count") or 0),
            float(p.get("sum") or 0.0),
        )
        why = counts.consistent()
        if why:
            raise ValueError(why)
        return counts

    def _buckets(self, counts: Any) -> tuple[np.ndarray, int]:
        """A point's bucket counts and their total. ``counts`` is an index into this line's stashed arrays or,
        if the line was not stashed (e.g. pretty-printed), a JSON list of strings or numbers."""
        if counts is None:
            return _EMPTY, 0
        if type(counts) is int:
            if self._arrays is None:
                self._arrays = _decode_pieces(self._pieces)
            decoded = self._arrays[counts]
            if type(decoded) is str:
                raise ValueError(f"bucketCounts {decoded}: [{_clip(self._pieces[counts])}]")
            return decoded
        array = np.array([int(c) for c in counts], dtype=np.int64)
        if len(array) and array.min() < 0:
            raise ValueError("negative bucket count")
        if len(array) and array.max() > MAX_COUNT:
            raise ValueError("a bucket count over 2**53")
        return array, _total(array)

    def _outcome(self, number: int, outcome: int) -> bool:
        """Count what the tracker did with a point; True when it was stale (nothing to yield)."""
        if outcome == RESET:
            self.report.resets += 1
        elif outcome == BASELINE:
            self.report.first_cumulative += 1
        elif outcome == CONCURRENT:
            self.report.shared_series += 1
        elif outcome == STALE:  # a total at or before the series' latest: already counted (read twice)
            self._duplicate(number)
            return True
        return False

    def _duplicate(self, number: int) -> None:
        report = self.report
        report.duplicate_points += 1
        if not report.first_duplicate_line:
            report.first_duplicate_line = number or 1


def _delta_maker() -> Callable[..., Delta]:
    """``Delta(...)``, built the cheap way when possible: a frozen dataclass's ``__init__`` sets every field with
    ``object.__setattr__`` and costs ~40% of a counter point. Filling ``__dict__`` directly gives the same
    (still frozen) object; a slotted Delta has no ``__dict__`` and gets its own constructor."""
    fields = tuple(f.name for f in dataclasses.fields(Delta))
    if fields != _DELTA_FIELDS or "__slots__" in vars(Delta):
        return Delta
    new = object.__new__

    def make(metric, attributes, start_ns, end_ns, value, sketch, explicit, series, unit) -> Delta:
        d = new(Delta)
        d.__dict__.update(
            metric=metric,
            attributes=attributes,
            start_ns=start_ns,
            end_ns=end_ns,
            value=value,
            sketch=sketch,
            explicit=explicit,
            series=series,
            unit=unit,
        )
        return d

    return make


_DELTA_FIELDS = ("metric", "attributes", "start_ns", "end_ns", "value", "sketch", "explicit", "series", "unit")
_delta = _delta_maker()
_KINDS = ("exponentialHistogram", "sum", "histogram", "gauge", "summary")


def _why(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    if isinstance(exc, ValueError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


_BUCKETS_KEY = b'"bucketCounts":['
_SPACED_BUCKETS_KEY = re.compile(rb'"bucketCounts"\s*:\s*\[')


def _stash_buckets(line: bytes) -> tuple[bytes, list[bytes]]:
    """Take every ``"bucketCounts":[...]`` array out of the line before JSON parsing, leaving its index.

    Bucket counts are most of the bytes and, as JSON strings, would cost one Python object each; decoding all of
    a line's arrays with one ``np.fromstring`` is several times cheaper. The key with its quotes can only be a
    key: inside a JSON string every ``"`` is escaped. A malformed array fails here (no ``]``) or when decoded.
    """
    parts = line.split(_BUCKETS_KEY)
    if len(parts) - 1 < line.count(b'"bucketCounts"'):
        # JSON with spaces (json.dumps, Go's protojson): the same, found by a regex. Unstashed, every count would
        # be a Python string, ~25x the bytes of the line in memory
        parts = _SPACED_BUCKETS_KEY.split(line)
    if len(parts) == 1:
        return line, []
    out = [parts[0]]
    pieces = []
    for k, part in enumerate(parts[1:]):
        end = part.index(b"]")
        pieces.append(part[:end].strip())
        out.append(b'"bucketCounts":%d' % k)
        out.append(part[end + 1 :])
    return b"".join(out), pieces


def _decode_pieces(pieces: list[bytes]) -> list[tuple[np.ndarray, int] | str]:
    """Each stashed array's text (``"1","0",...`` or ``1,0,...``) as (int64 counts, their total); for one that is
    not all integers in ``[0, MAX_COUNT]``, why. One ``fromstring`` and one ``reduceat`` for the whole line (when
    no int64 sum can wrap: every count <= MAX_COUNT and ``max * n < 2**63``)."""
    lengths = [piece.count(b",") + 1 if piece else 0 for piece in pieces]
    try:
        joined = b",".join([piece for piece in pieces if piece])
        if b"-" in joined:
            raise ValueError("a negative count")
        values = np.fromstring(joined.translate(None, b'"'), dtype=np.int64, sep=",")  # translate: 6x replace
        if len(values) != sum(lengths):
            raise ValueError("an array is not all integers")
        top = int(values[values.argmax()]) if len(values) else 0
        if top > MAX_COUNT or top * len(values) >= 1 << 63:
            raise ValueError("a large count")
    except ValueError:  # find which, one by one
        return [_decode_piece(piece, n) for piece, n in zip(pieces, lengths, strict=True)]
    starts = []
    at = 0
    for n in lengths:
        starts.append(at)
        at += n
    nonempty = [start for start, n in zip(starts, lengths, strict=True) if n]
    totals = iter(np.add.reduceat(values, nonempty).tolist() if nonempty else ())
    # copies: a series' state must not pin the whole line's array
    return [
        (values[start : start + n].copy(), next(totals)) if n else (_EMPTY, 0)
        for start, n in zip(starts, lengths, strict=True)
    ]


def _decode_piece(piece: bytes, n: int) -> tuple[np.ndarray, int] | str:
    try:
        values = np.fromstring(piece.translate(None, b'"'), dtype=np.int64, sep=",")
    except ValueError:
        return "not all non-negative integers"
    if len(values) != n or (n and values.min() < 0):
        return "not all non-negative integers"
    if n and values.max() > MAX_COUNT:  # (fromstring saturates at 2**63 - 1)
        return "holds a count over 2**53"
    return values, _total(values)


def _total(values: np.ndarray) -> int:
    """Exact sum of non-negative counts <= MAX_COUNT (the int64 sum when it cannot wrap)."""
    if not len(values):
        return 0
    if int(values[values.argmax()]) * len(values) < 1 << 63:
        return int(values.sum())
    return sum(values.tolist())


def _clip(text: bytes, limit: int = 60) -> str:
    s = text.decode("utf-8", "replace")
    return s if len(s) <= limit else s[:limit] + "..."


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if v - v == 0.0 else None  # NaN and +-inf (inf - inf is NaN)


def _point_count(metric: dict) -> int:
    for kind in ("exponentialHistogram", "sum", "histogram", "gauge", "summary"):
        data = metric.get(kind)
        if data is not None:
            return len(data.get("dataPoints") or ())
    return 0


def _attributes(kvs: Any) -> dict[str, AttrValue]:
    return {kv["key"]: _any_value(kv.get("value") or {}) for kv in kvs}


def _any_value(v: dict) -> AttrValue:
    """OTLP AnyValue -> a flat Python value; arrays and kvlists -> compact JSON (they have no flat form)."""
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "arrayValue" in v or "kvlistValue" in v:
        return json.dumps(_plain(v), separators=(",", ":"), ensure_ascii=False)
    if "bytesValue" in v:
        return str(v["bytesValue"])
    return ""


def _plain(v: dict) -> Any:
    if "arrayValue" in v:
        return [_plain(x) for x in (v["arrayValue"] or {}).get("values") or ()]
    if "kvlistValue" in v:
        return {kv["key"]: _plain(kv.get("value") or {}) for kv in (v["kvlistValue"] or {}).get("values") or ()}
    value = _any_value(v)
    return value if value == value else str(value)  # NaN has no JSON form


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        keys = ", ".join(list(obj)[:3])
        return f"an object with keys {keys}" if keys else "an empty object"
    return f"a JSON {type(obj).__name__}"
