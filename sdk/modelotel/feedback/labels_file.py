"""Reading a labels file, row by row: what ``modelotel feedback`` ingests (the judging is ``ingest.py``).

A labels file is what a labelling pipeline produces: one row per judged prediction, with the prediction id, the true
label (or a boolean "correct"), and optionally when the label became known and a fairness group. Formats: CSV/TSV
and JSON lines (``.gz`` allowed), Parquet (with ``pyarrow``). Rows are streamed (CSV/JSONL line by line, Parquet
batch by batch), so memory does not grow with the file.

Every row comes out, good or bad, with where it is: its file line (1-based, the header is line 1) for text files,
its row index (0-based, as ``pandas.read_parquet(...).iloc[i]``) for Parquet. A row that cannot be judged carries
its problem (``missing_id``, ``missing_label``, ``bad_time``, ``bad_correct``, ``bad_json``) instead of values.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

FORMATS = ("csv", "tsv", "jsonl", "parquet")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
PARQUET_BATCH_ROWS = 65_536
_TRUE = frozenset(("true", "t", "yes", "y", "1", "1.0"))
_FALSE = frozenset(("false", "f", "no", "n", "0", "0.0"))


class LabelsFileError(Exception):
    """The file cannot be read as a labels file at all (missing, unknown format, no id column, no pyarrow)."""


@dataclass(frozen=True)
class Columns:
    """Column names. ``label`` or ``correct`` (or both: ``correct`` wins) must be present; ``label_explicit``:
    the label column was named by the user, so its absence is an error rather than a fallback to ``correct``."""

    id: str = "prediction_id"
    label: str = "label"
    correct: str | None = None
    time: str | None = None
    group: str | None = None
    label_explicit: bool = False


@dataclass(frozen=True)
class Row:
    """One row: ``where`` is its line (text) or row index (Parquet); ``problem`` (reason, message) when it cannot be
    judged, else the values."""

    where: int
    prediction_id: str | None = None
    label: Any = None
    correct: bool | None = None
    at: float | None = None
    group: Any = None
    problem: tuple[str, str] | None = None


def format_of(path: str) -> str:
    """The format named by the file's extension (``.gz`` looked through)."""
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    ext = os.path.splitext(name)[1]
    if ext not in _EXTENSIONS:
        raise LabelsFileError(
            f"{path}: cannot tell the format from the extension {ext or '(none)'!r}; give --format "
            f"({', '.join(FORMATS)})"
        )
    return _EXTENSIONS[ext]


def parse_time(value: Any) -> float:
    """Epoch seconds from epoch seconds (a number or its text) or ISO 8601 (naive times are UTC). ValueError else."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"not a time: {value!r}")
        return float(value)
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp()
    if hasattr(value, "to_pydatetime"):  # a pandas Timestamp
        return parse_time(value.to_pydatetime())
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(number):
            return number
        raise ValueError(f"not a time: {text!r}")
    if text.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not take Z
        text = text[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not ISO 8601 or epoch seconds: {str(value)[:60]!r}") from None
    return parse_time(when)


def parse_bool(value: Any) -> bool:
    """A boolean from a bool, 0/1, or true/false/yes/no/t/f/y/n text. ValueError else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a boolean: {str(value)[:60]!r}")


def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


class LabelsFile:
    """A labels file opened for streaming: iterate ``rows()``; ``done()`` is the fraction read so far (bytes of the
    file on disk for text, rows for Parquet), for a progress bar."""

    def __init__(self, path: str, fmt: str | None, columns: Columns) -> None:
        self.path = path
        self.format = fmt or format_of(path)
        if self.format not in FORMATS:
            raise LabelsFileError(f"unknown format {self.format!r} (one of {', '.join(FORMATS)})")
        self.columns = columns
        self.location = "row" if self.format == "parquet" else "line"
        try:
            self.size = os.path.getsize(path)
            self._raw = open(path, "rb")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise LabelsFileError(f"{path}: {exc.strerror or exc}") from None
        self._total_rows = 0
        self._rows_done = 0
        self._finished = False

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> LabelsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def done(self) -> float:
        if self._finished:
            return 1.0
        if self.format == "parquet":
            return self._rows_done / self._total_rows if self._total_rows else 1.0
        try:
            return min(1.0, self._raw.tell() / self.size) if self.size else 1.0
        except (OSError, ValueError):
            return 0.0

    def rows(self) -> Iterator[Row]:
        yield from self._parquet_rows() if self.format == "parquet" else self._text_rows()
        self._finished = True

    # -- text formats ---------------------------------------------------------------------------------

    def _text(self) -> io.TextIOWrapper:
        magic = self._raw.peek(2)[:2] if hasattr(self._raw, "peek") else b""
        stream: Any = gzip.GzipFile(fileobj=self._raw) if magic == b"\x1f\x8b" else self._raw
        return io.TextIOWrapper(stream, encoding="utf-8-sig", newline="" if self.format != "jsonl" else None)

    def _text_rows(self) -> Iterator[Row]:
        text = self._text()
        try:
            if self.format == "jsonl":
                yield from self._jsonl_rows(text)
            else:
                yield from self._csv_rows(text)
        except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
            raise LabelsFileError(f"{self.path}: unreadable: {exc}") from None

    def _check_header(self, names: Any) -> None:
        c = self.columns
        present = set(names)
        shown = ", ".join(map(repr, list(names)[:20])) or "none"
        if c.id not in present:
            raise LabelsFileError(f"{self.path}: no id column {c.id!r} (columns: {shown}); use --id-column")
        for name, flag in ((c.correct, "--correct-column"), (c.time, "--time-column"), (c.group, "--group-column")):
            if name is not None and name not in present:
                raise LabelsFileError(f"{self.path}: no column {name!r} for {flag} (columns: {shown})")
        if c.label not in present and (c.correct is None or c.label_explicit):
            raise LabelsFileError(
                f"{self.path}: no label column {c.label!r} (columns: {shown}); use --label-column, or "
                "--correct-column for a boolean column"
            )

    def _csv_rows(self, text: io.TextIOWrapper) -> Iterator[Row]:
        reader = csv.reader(text, delimiter="\t" if self.format == "tsv" else ",")
        header = next(reader, None)
        if header is None:
            raise LabelsFileError(f"{self.path}: empty file (no header line)")
        self._check_header(header)
        index = {name: i for i, name in reversed(list(enumerate(header)))}  # the first of repeated names
        c = self.columns
        at = (index[c.id], index.get(c.label), _get(index, c.correct), _get(index, c.time), _get(index, c.group))
        line_end = reader.line_num
        for cells in reader:
            start, line_end = line_end + 1, reader.line_num
            if not cells:
                continue  # a blank line is no row
            values = [cells[i] if i is not None and i < len(cells) else None for i in at]
            yield self._row(start, *values)

    def _jsonl_rows(self, text: io.TextIOWrapper) -> Iterator[Row]:
        checked = False
        for line_no, line in enumerate(text, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                yield Row(line_no, problem=("bad_json", f"not JSON: {exc}"))
                continue
            if not isinstance(obj, dict):
                yield Row(line_no, problem=("bad_json", f"a JSON {type(obj).__name__}, not an object"))
                continue
            if not checked and self.columns.id not in obj:  # a misspelt column fails at once, not on every line
                shown = ", ".join(map(repr, list(obj)[:20])) or "none"
                raise LabelsFileError(
                    f"{self.path}: line {line_no} has no id column {self.columns.id!r} (keys: {shown}); use --id-column"
                )
            checked = True
            c = self.columns
            yield self._row(
                line_no,
                obj.get(c.id),
                obj.get(c.label),
                obj.get(c.correct) if c.correct else None,
                obj.get(c.time) if c.time else None,
                obj.get(c.group) if c.group else None,
            )

    # -- Parquet --------------------------------------------------------------------------------------

    def _parquet_rows(self) -> Iterator[Row]:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise LabelsFileError(
                f"{self.path}: reading Parquet needs pyarrow: pip install pyarrow (or give a CSV or JSON lines file)"
            ) from None
        try:
            parquet = pq.ParquetFile(self._raw)
        except Exception as exc:  # pyarrow raises its own ArrowInvalid and OSError kinds
            raise LabelsFileError(f"{self.path}: not a readable Parquet file: {exc}") from None
        names = parquet.schema_arrow.names
        self._check_header(names)
        c = self.columns
        wanted = [n for n in (c.id, c.label, c.correct, c.time, c.group) if n is not None and n in names]
        wanted = list(dict.fromkeys(wanted))
        self._total_rows = parquet.metadata.num_rows
        start = 0
        try:
            batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=wanted)
            for batch in batches:
                data = {name: batch.column(name).to_pylist() for name in wanted}
                n = batch.num_rows
                none = [None] * n
                cols = [data.get(name, none) if name is not None else none for name in (c.id, c.label)]
                cols += [data[name] if name is not None else none for name in (c.correct, c.time, c.group)]
                for i, values in enumerate(zip(*cols, strict=True)):
                    yield self._row(start + i, *values)
                start += n
                self._rows_done = start
        except Exception as exc:
            raise LabelsFileError(f"{self.path}: unreadable Parquet after row {start}: {exc}") from None

    # -- one row --------------------------------------------------------------------------------------

    def _row(self, where: int, pid: Any, label: Any, correct: Any, when: Any, group: Any) -> Row:
        if _missing(pid):
            return Row(where, problem=("missing_id", f"no prediction id in column {self.columns.id!r}"))
        correct_value = None
        if self.columns.correct is not None and not _missing(correct):
            try:
                correct_value = parse_bool(correct)
            except ValueError as exc:
                return Row(where, problem=("bad_correct", f"column {self.columns.correct!r}: {exc}"))
        if correct_value is None and _missing(label):
            names = " or ".join(repr(n) for n in (self.columns.correct, self.columns.label) if n)
            return Row(where, problem=("missing_label", f"no true label in column {names}"))
        at = None
        if self.columns.time is not None and not _missing(when):
            try:
                at = parse_time(when)
            except ValueError as exc:
                return Row(where, problem=("bad_time", f"column {self.columns.time!r}: {exc}"))
        return Row(
            where,
            str(pid).strip(),
            None if correct_value is not None else label,
            correct_value,
            at,
            None if _missing(group) else group,
        )


def _get(index: dict[str, int], name: str | None) -> int | None:
    return None if name is None else index.get(name)
