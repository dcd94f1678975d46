"""Distributions of allow-listed input features, for drift detection from telemetry alone.

Numeric features become sketches (``ml.feature.value{ml.feature.name}``): only bucket counts leave
the process, and the exported min/max are coarsened to bucket edges so no single raw value is
revealed. Categorical features become bounded counts (``ml.feature.category{ml.feature.name,
ml.feature.category}``), at most ``max_categories`` values per feature, then ``__other__``.
Nothing is recorded for features that are not allow-listed.

Small 1-D float arrays cost nothing extra on the hot path: the decorator already keeps their
bytes (for missing-value counts) and the export thread takes the allow-listed columns from the
stacked rows. Arrays are read by position in ``feature_names``; dict inputs (JSON records, dicts of
columns, lists of records) and frames (``features.as_columns``) by name, per call. An array whose
features cannot be placed (no ``feature_names``, or another width) is counted in
``modelotel.dropped``, never skipped silently. Missing values (None/NaN) are not distribution
values: they are counted in ``ml.features.missing``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

import modelotel.conventions as conv

from .features import Columns, column_values, records_of, report_not_found, report_width
from .metrics.buffers import attr_key, drain
from .metrics.recorder import Recorder
from .privacy import is_missing, scrub


class FeatureDistributions:
    """Per-model state: which features, their column positions, and the values buffered since the last fold."""

    def __init__(
        self,
        numeric: Sequence[str],
        categorical: Sequence[str],
        feature_names: Sequence[str] | None,
        max_categories: int = conv.DEFAULT_MAX_CATEGORIES,
        model: str = "",
    ) -> None:
        self.model = model  # named in the log line of a feature that cannot be found
        self.numeric = tuple(numeric)
        self.categorical = tuple(categorical)
        names = list(feature_names) if feature_names is not None else None
        self.width = len(names) if names is not None else None
        # (name, column) of allow-listed features present in feature_names, for array inputs
        self.numeric_columns = [(n, names.index(n)) for n in self.numeric if names and n in names]
        self.categorical_columns = [(n, names.index(n)) for n in self.categorical if names and n in names]
        self.max_categories = max_categories
        self.values: dict[str, list[float]] = {n: [] for n in self.numeric}
        self.categories: dict[str, list[Any]] = {n: [] for n in self.categorical}
        self._seen: dict[str, set[str]] = {n: set() for n in self.categorical}

    def record(self, feats: Any) -> None:
        """Per call, for inputs the export thread cannot take from deferred rows. Never called for those.

        Dict keys the input does not have are reported by the caller (it checks every configured name
        once per call); here they are skipped.
        """
        records = records_of(feats)
        if records is not None:
            for record in records:
                for name in self.numeric:
                    v = record.get(name)
                    if v is not None:
                        self.values[name].extend(column_values(v))  # fold counts non-numbers as drops
                for name in self.categorical:
                    v = record.get(name)
                    if v is not None:
                        self.categories[name].extend(column_values(v))
            return
        if type(feats) is np.ndarray or hasattr(feats, "__array__") or isinstance(feats, (list, tuple)):
            arr = np.asarray(feats)
            if arr.ndim == 1:
                arr = arr[None, :]
            if arr.ndim != 2 or self.width is None or arr.shape[1] != self.width:
                self._unplaced(arr.shape[1] if arr.ndim == 2 else arr.size, arr.shape[0] if arr.ndim == 2 else 1)
                return
            for name, j in self.numeric_columns:
                self.values[name].extend(arr[:, j].tolist())
            for name, j in self.categorical_columns:
                self.categories[name].extend(arr[:, j].tolist())
            return
        report_not_found(
            self.model, [*self.numeric, *self.categorical], 1, f"a {type(feats).__name__} input (no columns)"
        )

    def record_columns(self, cols: Columns) -> None:
        """Per call, a frame: each allow-listed column by name (names it lacks were reported by the caller)."""
        for name in self.numeric:
            if cols.has(name):
                try:
                    self.values[name].extend(cols.numbers(name).tolist())
                except (TypeError, ValueError):  # not all numbers: fold counts the others as non_finite drops
                    self.values[name].extend(cols.values(name))
        for name in self.categorical:
            if cols.has(name):
                self.categories[name].extend(cols.values(name))

    def _unplaced(self, width: int, rows: int) -> None:
        """An array whose columns cannot be matched to names: count what its allow-listed features lost."""
        n = (len(self.numeric) + len(self.categorical)) * rows
        if self.width is None:
            report_not_found(
                self.model,
                [*self.numeric, *self.categorical],
                n,
                "an array input (arrays are read by position: pass feature_names= to name their columns)",
            )
        else:
            report_width(self.model, width, self.width, n)

    def fold_rows(self, rows: np.ndarray) -> None:
        """Allow-listed columns of stacked deferred rows (float vectors of the named width)."""
        if self.width is None or rows.shape[1] != self.width:
            self._unplaced(rows.shape[1], rows.shape[0])
            return
        for name, j in self.numeric_columns:
            self.values[name].extend(rows[:, j].tolist())
        for name, j in self.categorical_columns:
            self.categories[name].extend(rows[:, j].tolist())

    def fold(self, rec: Recorder, attrs: dict[str, Any]) -> None:
        for name, buf in self.values.items():
            values = drain(buf)
            if values:
                try:
                    arr = np.asarray(values, dtype=np.float64)
                    nan = np.isnan(arr)
                    if nan.any():  # missing values, counted in ml.features.missing
                        arr = arr[~nan]
                except (TypeError, ValueError):
                    # anything that is neither missing nor a number becomes NaN: a counted non_finite drop
                    arr = np.asarray([_as_float(v) for v in values if not is_missing(v)], dtype=np.float64)
                if not arr.size:
                    continue
                f_attrs = {**attrs, conv.FEATURE_NAME: name}
                rec.observe(conv.FEATURE_VALUE, attr_key(f_attrs), f_attrs, arr)
        for name, buf in self.categories.items():
            values = drain(buf)
            if not values:
                continue
            seen = self._seen[name]
            for value, count in Counter(_category(v) for v in values if not is_missing(v)).items():
                if value not in seen:  # scrubbed like every exported text, then cut; a seen value is clean
                    value = scrub(value)[:_CATEGORY_CHARS]
                if value not in seen:
                    if len(seen) < self.max_categories:
                        seen.add(value)
                    else:
                        value = conv.OTHER_LABEL
                c_attrs = {**attrs, conv.FEATURE_NAME: name, conv.FEATURE_CATEGORY: value}
                rec.add(conv.FEATURE_CATEGORY_METRIC, attr_key(c_attrs), c_attrs, count)

    def clear(self) -> None:
        for buf in self.values.values():
            buf.clear()
        for buf in self.categories.values():
            buf.clear()


def _as_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")  # counted as a non-finite drop by the sketch


_CATEGORY_CHARS = 64  # an exported category value at most


def _category(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)  # category codes read from float arrays
    text = v if type(v) is str else str(v)
    return text[: _CATEGORY_CHARS + 1024]  # enough past the cut for scrub() to see an item across it whole
