"""Distributions of allow-listed input features, for drift detection from telemetry alone.

Numeric features become sketches (``ml.feature.value{ml.feature.name}``): only bucket counts leave
the process, and the exported min/max are coarsened to bucket edges so no single raw value is
revealed. Categorical features become bounded counts (``ml.feature.category{ml.feature.name,
ml.feature.category}``), at most ``max_categories`` values per feature, then ``__other__``.
Nothing is recorded for features that are not allow-listed.

Small 1-D float arrays cost nothing extra on the hot path: the decorator already keeps their
bytes (for missing-value counts) and the export thread takes the allow-listed columns from the
stacked rows. Dict inputs (JSON requests) are read per call, one lookup per allow-listed feature.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import conventions as conv
from .recorder import Recorder, attr_key, drain


class FeatureDistributions:
    """Per-model state: which features, their column positions, and the values buffered since the last fold."""

    def __init__(
        self,
        numeric: Sequence[str],
        categorical: Sequence[str],
        feature_names: Sequence[str] | None,
        max_categories: int = conv.DEFAULT_MAX_CATEGORIES,
    ) -> None:
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
        """Per call, for inputs the export thread cannot take from deferred rows. Never called for those."""
        t = type(feats)
        if t is dict:
            for name in self.numeric:
                v = feats.get(name)
                if v is not None and not isinstance(v, (str, bytes, bool)):
                    self.values[name].append(v)
            for name in self.categorical:
                v = feats.get(name)
                if v is not None:
                    self.categories[name].append(v)
            return
        if t is np.ndarray or hasattr(feats, "__array__") or isinstance(feats, (list, tuple)):
            arr = np.asarray(feats)
            if arr.ndim == 1:
                arr = arr[None, :]
            if arr.ndim != 2 or (self.width is not None and arr.shape[1] != self.width):
                return
            for name, j in self.numeric_columns:
                self.values[name].extend(arr[:, j].tolist())
            for name, j in self.categorical_columns:
                self.categories[name].extend(arr[:, j].tolist())

    def fold_rows(self, rows: np.ndarray) -> None:
        """Allow-listed columns of stacked deferred rows (float vectors of the named width)."""
        if self.width is None or rows.shape[1] != self.width:
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
                except (TypeError, ValueError):
                    arr = np.asarray([_as_float(v) for v in values], dtype=np.float64)
                f_attrs = {**attrs, conv.FEATURE_NAME: name}
                rec.observe(conv.FEATURE_VALUE, attr_key(f_attrs), f_attrs, arr)
        for name, buf in self.categories.items():
            values = drain(buf)
            if not values:
                continue
            seen = self._seen[name]
            for value, count in Counter(_category(v) for v in values).items():
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


def _category(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)  # category codes read from float arrays
    text = v if type(v) is str else str(v)
    return text[:64]
