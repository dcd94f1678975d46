"""Where a configured feature is in one input: by name in frames and dicts, by position in arrays.

A pandas DataFrame can list its columns in any order, so frames are never read by position:
``as_columns`` wraps a pandas DataFrame, a pandas Series with a labelled index (one row), a polars
DataFrame or a pyarrow Table/RecordBatch in a ``Columns`` view whose values are taken by column
name. The libraries are never imported here: an input can only be one of their frames if the
application imported the library, so ``sys.modules`` is consulted, after a type check that lets
numpy arrays, lists and dicts through at once (the decorator's hot path never gets here for
small float vectors at all).

A configured name that an input does not have is counted in ``modelotel.dropped`` with the
reason ``feature_not_found`` (one per value it would have given) and logged once per model:
never an exception, never silence.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from .metrics.selftelemetry import SELF
from .privacy import count_missing, is_missing, missing_items

NOT_FOUND = "feature_not_found"
WIDTH_MISMATCH = "feature_width_mismatch"

_F64 = np.float64
_modules = sys.modules
# Types that are never frames: the common inputs skip the sys.modules look-ups.
_NOT_FRAMES = frozenset({np.ndarray, list, tuple, dict, float, int, str, bytes, bool, type(None)})


class Columns:
    """A frame's columns, looked up by name. Subclasses wrap one library's frame; none copies it."""

    __slots__ = ("frame", "rows")
    kind = "frame"

    def __init__(self, frame: Any, rows: int) -> None:
        self.frame = frame
        self.rows = rows

    def has(self, name: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def names(self) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def missing(self, names: Sequence[Any] | None) -> int:
        """None/NaN/null values in the named columns (all columns for None), every row."""
        return sum(self._missing(n) for n in (self.names() if names is None else names))

    def _missing(self, name: Any) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def numbers(self, name: Any) -> np.ndarray:
        """The column as float64, NaN where a value is missing; TypeError/ValueError if not numeric."""
        raise NotImplementedError  # pragma: no cover - abstract

    def values(self, name: Any) -> list[Any]:
        """The column's values as Python objects, missing ones included."""
        raise NotImplementedError  # pragma: no cover - abstract

    def matrix(self, names: Sequence[Any] | None) -> np.ndarray:
        """(rows, len(names)) float64, columns in the order of ``names`` (the frame's own order for None)."""
        cols = [self.numbers(n) for n in (self.names() if names is None else names)]
        return np.column_stack(cols) if cols else np.empty((self.rows, 0))


def _one_label(index: Any, name: Any) -> bool:
    """Whether ``name`` is exactly one label of a pandas index (a repeated label, or a MultiIndex
    level, selects several columns: no single value per row)."""
    try:
        return type(index.get_loc(name)) is int
    except Exception:  # KeyError when absent, TypeError/InvalidIndexError for unusable labels
        return False


class _PandasFrame(Columns):
    __slots__ = ()
    kind = "pandas DataFrame"

    def has(self, name: Any) -> bool:
        return _one_label(self.frame.columns, name)

    def names(self) -> list[Any]:
        return list(self.frame.columns)

    def missing(self, names: Sequence[Any] | None) -> int:
        frame = self.frame if names is None else self.frame[list(names)]
        return int(np.count_nonzero(frame.isna().to_numpy()))

    def numbers(self, name: Any) -> np.ndarray:
        return self.frame[name].to_numpy(dtype=_F64, na_value=np.nan)

    def values(self, name: Any) -> list[Any]:
        return self.frame[name].tolist()

    def matrix(self, names: Sequence[Any] | None) -> np.ndarray:
        frame = self.frame if names is None else self.frame[list(names)]
        return frame.to_numpy(dtype=_F64, na_value=np.nan)


class _PandasRow(Columns):
    """A Series whose index labels name the features (``df.iloc[i]``, ``pd.Series(record)``): one row."""

    __slots__ = ()
    kind = "pandas Series"

    def has(self, name: Any) -> bool:
        return _one_label(self.frame.index, name)

    def names(self) -> list[Any]:
        return list(self.frame.index)

    def missing(self, names: Sequence[Any] | None) -> int:
        series = self.frame if names is None else self.frame[list(names)]
        return int(np.count_nonzero(series.isna().to_numpy()))

    def numbers(self, name: Any) -> np.ndarray:
        v = self.frame[name]
        return np.array([np.nan if is_missing(v) else v], dtype=_F64)

    def values(self, name: Any) -> list[Any]:
        return [self.frame[name]]

    def matrix(self, names: Sequence[Any] | None) -> np.ndarray:
        series = self.frame if names is None else self.frame[list(names)]
        return series.to_numpy(dtype=_F64, na_value=np.nan).reshape(1, -1)


class _PolarsFrame(Columns):
    __slots__ = ("_names",)
    kind = "polars DataFrame"

    def __init__(self, frame: Any) -> None:
        super().__init__(frame, frame.height)
        self._names = frame.columns  # polars column names are unique strings

    def has(self, name: Any) -> bool:
        return name in self._names

    def names(self) -> list[Any]:
        return list(self._names)

    def _missing(self, name: Any) -> int:
        col = self.frame.get_column(name)
        if col.dtype.is_float():  # NaN is a value in polars, not a null: count both
            return int(np.count_nonzero(np.isnan(col.to_numpy())))  # nulls come out as NaN
        return int(col.null_count())

    def numbers(self, name: Any) -> np.ndarray:
        return np.asarray(self.frame.get_column(name).to_numpy(), dtype=_F64)

    def values(self, name: Any) -> list[Any]:
        return self.frame.get_column(name).to_list()


class _ArrowTable(Columns):
    __slots__ = ("_types",)
    kind = "pyarrow Table"

    def __init__(self, frame: Any, types: Any) -> None:
        super().__init__(frame, frame.num_rows)
        self._types = types

    def has(self, name: Any) -> bool:
        # -1 when absent or when several fields share the name
        return isinstance(name, str) and self.frame.schema.get_field_index(name) >= 0

    def names(self) -> list[Any]:
        return list(self.frame.schema.names)

    def _missing(self, name: Any) -> int:
        col = self.frame.column(name)
        if self._types.is_floating(col.type):  # NaN is a value in Arrow, not a null: count both
            return int(np.count_nonzero(np.isnan(col.to_numpy(zero_copy_only=False))))  # nulls come out as NaN
        return int(col.null_count)

    def numbers(self, name: Any) -> np.ndarray:
        return np.asarray(self.frame.column(name).to_numpy(zero_copy_only=False), dtype=_F64)

    def values(self, name: Any) -> list[Any]:
        return self.frame.column(name).to_pylist()


def as_columns(x: Any) -> Columns | None:
    """A by-name view of ``x`` if it is a frame of an imported library, else None (read it as before)."""
    if type(x) in _NOT_FRAMES:
        return None
    pd = _modules.get("pandas")
    if pd is not None:
        if isinstance(x, pd.DataFrame):
            return _PandasFrame(x, len(x))
        # A Series with the default 0..n-1 index carries no feature names: it stays positional, like an array.
        if isinstance(x, pd.Series) and not isinstance(x.index, pd.RangeIndex):
            return _PandasRow(x, 1)
    pl = _modules.get("polars")
    if pl is not None and isinstance(x, pl.DataFrame):
        return _PolarsFrame(x)
    pa = _modules.get("pyarrow")
    if pa is not None and isinstance(x, (pa.Table, pa.RecordBatch)):
        return _ArrowTable(x, pa.types)
    return None


def records_of(x: Any) -> list[dict] | None:
    """The dicts of a dict input (one record or a dict of columns) or of a list of records, else None."""
    t = type(x)
    if t is dict:
        return [x]
    if (t is list or t is tuple) and x and type(x[0]) is dict and all(type(r) is dict for r in x):
        return list(x)
    return None


def record_rows(record: dict, names: Sequence[Any]) -> int:
    """How many rows a record holds: the length of its longest named column (1 for scalars)."""
    rows = 1
    for name in names:
        v = record.get(name)
        if type(v) is list or type(v) is tuple or (isinstance(v, np.ndarray) and v.ndim):
            rows = max(rows, len(v))
    return rows


def value_missing(v: Any) -> int:
    """Missing values in one dict value: a scalar (0 or 1) or a column (list, tuple, array, Series)."""
    if v is None:
        return 1
    t = type(v)
    if t is float:
        return 1 if v != v else 0
    if t is list or t is tuple:
        return missing_items(v, 0) or 0
    return count_missing(v) or 0


def column_values(v: Any) -> list[Any]:
    """A dict value as a column: lists, tuples, 1-D arrays and Series give their items, a scalar itself."""
    t = type(v)
    if t is list:
        return v
    if t is tuple:
        return list(v)
    if isinstance(v, np.ndarray):
        return v.ravel().tolist()
    tolist = getattr(v, "tolist", None)  # pandas/polars Series
    if tolist is not None and getattr(v, "ndim", 0) == 1:
        return tolist()
    return [v]


def report_not_found(model: str, names: Sequence[Any], values: int, where: str) -> None:
    """Count ``values`` values of ``names`` that could not be found in an input; log the first per model."""
    listed = ", ".join(repr(n) for n in names[:8]) + (", ..." if len(names) > 8 else "")
    SELF.drop(
        NOT_FOUND,
        max(values, 1),
        f"model {model!r}: feature(s) {listed} not found in {where}; nothing is recorded for them",
        log_key=f"{NOT_FOUND}:{model}",
    )


def report_width(model: str, width: int, expected: int, values: int) -> None:
    SELF.drop(
        WIDTH_MISMATCH,
        max(values, 1),
        f"model {model!r}: an array input has {width} columns but feature_names= lists {expected}; "
        "array columns are matched to feature_names by position, so none is recorded",
        log_key=f"{WIDTH_MISMATCH}:{model}",
    )
