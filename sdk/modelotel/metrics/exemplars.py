"""Exemplars: a few traced measurements on each histogram point, so a latency spike links to its trace.

An OTLP ``Exemplar`` is one raw measurement (``as_double``, ``time_unix_nano``) with the ``trace_id`` and
``span_id`` of the span it was made in. Grafana's "jump to trace" and Datadog's read them off histogram points.

**Filter** (``OTEL_METRICS_EXEMPLAR_FILTER``, as the OpenTelemetry SDK reads it; ``config.EXEMPLAR_FILTERS``):

* ``trace_based`` (default): a measurement made inside a *sampled* span (``trace_flags & 1``);
* ``always_on``: a measurement made inside any span with a valid context, sampled or not (the ids as they are);
* ``always_off``: none.

One deviation from the SDK, by design: ``always_on`` makes no exemplar of a measurement that has no span at all
(the SDK's would carry no ids), because the untraced hot path records no timestamp and must pay nothing.

**Cost.** The untraced path does nothing here. A traced call makes one ``offer``: one ``time.time_ns()`` and one
list append of ``(tag, ns, time, trace id, span id)`` (the ``tag`` says which series: the error type of a failed
call, the request attributes of a server request). The export thread does the rest.

**Reservoir** (``Reservoir``, one per series and export interval): at most one exemplar per bucket of the
exported exponential histogram, the *latest* measurement that fell in it, and at most ``MAX_PER_POINT`` (20) per
point; past 20 occupied buckets the 20 highest buckets keep theirs (a latency spike is what one jumps from); a
point lists them oldest first (Prometheus refuses an exemplar older than the last one of its series). Why
not the SDK's reservoirs: the SDK gives an exponential histogram a ``SimpleFixedSizeExemplarReservoir`` of
``min(20, max_size)`` cells filled by uniform reservoir sampling, so a rare slow call is kept with probability
about 20/n and the cells cluster in the busy buckets; its ``AlignedHistogramBucketExemplarReservoir`` (one per
bucket, the last measurement) exists only for explicit-bucket histograms. Ours is the aligned one on exponential
buckets, bounded like the simple one, and deterministic: every bucket that holds a traced call, up to the 20th
such bucket from the top, has an exemplar whose value lies in that very bucket, so the bucket of the slowest
traced call of an interval always has one.

Memory: candidates are keyed by bucket at the series sketch's current scale, which holds at most
``max_buckets`` buckets per sign, so a reservoir holds at most ``2 * max_buckets + 1`` candidates whatever the
call rate; re-keying after the sketch downscales is exact (bucket ``i`` at scale ``s`` is ``i >> k`` at
``s - k``, see ``sketch.py``).

**Temporality.** Exemplars belong to the export interval they were recorded in: every collect takes them (the
reservoir is emptied), in delta and in cumulative temporality alike, so a cumulative point carries only the
exemplars of the last interval.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.sdk.metrics import Exemplar

from ..sketch import bucket_index
from .selftelemetry import SELF

TRACE_BASED = "trace_based"
ALWAYS_ON = "always_on"
ALWAYS_OFF = "always_off"

MAX_PER_POINT = 20
"""Exemplars per histogram point and export, as the OTel SDK's ``min(20, max_size)`` for exponential histograms."""


class ExemplarFilter:
    """The process-wide filter (``runtime`` sets ``mode`` from ``Settings.exemplar_filter`` at start)."""

    __slots__ = ("mode",)

    def __init__(self) -> None:
        self.mode = TRACE_BASED


FILTER = ExemplarFilter()

Candidate = tuple  # (tag, duration ns, time_unix_nano, trace id, span id), as ``offer`` appends it


def offer(buffer: list, span: Any, ns: int, tag: Any = None) -> None:
    """Append a traced measurement of ``ns`` nanoseconds made in ``span`` to ``buffer`` if the filter lets it.

    ``span`` is modelotel's ``LightSpan`` (ids read directly) or any OpenTelemetry span. Never raises: an object
    without a span context makes no exemplar and counts in ``modelotel.internal.errors{exemplar}``.
    """
    mode = FILTER.mode
    if mode == ALWAYS_OFF:
        return
    try:
        trace_id = getattr(span, "trace_id", None)  # LightSpan: plain ints, no SpanContext built
        if trace_id is not None:
            span_id, flags = span.span_id, span.trace_flags
        else:
            ctx = span.get_span_context()
            trace_id, span_id, flags = ctx.trace_id, ctx.span_id, ctx.trace_flags
        if not trace_id or not span_id or (mode == TRACE_BASED and not flags & 1):
            return
        buffer.append((tag, ns, time.time_ns(), trace_id, span_id))
    except Exception as exc:  # a foreign span object without a context: no exemplar; the measurement is kept
        SELF.error("exemplar", exc)


def _key(value: float, scale: int) -> tuple[int, int]:
    """(sign, bucket index at ``scale``) of a finite value; (0, 0) for zero."""
    if value > 0:
        return 1, bucket_index(value, scale)
    if value < 0:
        return -1, bucket_index(-value, scale)
    return 0, 0


class Reservoir:
    """The exemplar candidates of one histogram series in the current export interval (see the module doc)."""

    __slots__ = ("scale", "cells")

    def __init__(self, scale: int) -> None:
        self.scale = scale
        # (sign, bucket) -> (value s, time ns, trace id, span id): the latest measurement in that bucket
        self.cells: dict[tuple[int, int], tuple[float, int, int, int]] = {}

    def __len__(self) -> int:
        return len(self.cells)

    def add(self, scale: int, values: Sequence[float], candidates: Iterable[Candidate]) -> None:
        """Offer ``values`` (seconds) with their candidates; ``scale`` is the series sketch's scale now."""
        if scale < self.scale:
            self._rekey(scale)
        cells = self.cells
        for value, (_tag, _ns, when, trace_id, span_id) in zip(values, candidates, strict=True):
            if not math.isfinite(value):
                continue  # the sketch drops it too (counted there)
            key = _key(value, self.scale)
            held = cells.get(key)
            if held is None or when >= held[1]:
                cells[key] = (value, when, trace_id, span_id)

    def _rekey(self, scale: int) -> None:
        shift = self.scale - scale
        merged: dict[tuple[int, int], tuple[float, int, int, int]] = {}
        for (sign, index), cell in self.cells.items():
            key = (sign, index >> shift) if sign else (0, 0)
            held = merged.get(key)
            if held is None or cell[1] >= held[1]:
                merged[key] = cell
        self.cells = merged
        self.scale = scale

    def take(self, scale: int) -> list[Exemplar]:
        """The exemplars of a point exported at ``scale`` (<= the reservoir's), oldest first; empties it.

        One per bucket at ``scale`` (the latest), at most ``MAX_PER_POINT``: those of the highest buckets. In time
        order because Prometheus refuses an exemplar older than the series' last one ("out of order exemplar"),
        so a remote write of a point listed otherwise would keep only some."""
        if scale < self.scale:
            self._rekey(scale)
        cells, self.cells = self.cells, {}
        # highest value first: positive buckets descending, then zero, then negative ascending in magnitude
        by_value = sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][0] * kv[0][1]), reverse=True)
        chosen = sorted((cell for _, cell in by_value[:MAX_PER_POINT]), key=lambda cell: cell[1])
        return [
            Exemplar(filtered_attributes={}, value=v, time_unix_nano=t, span_id=s, trace_id=tr)
            for v, t, tr, s in chosen
        ]


def grouped(candidates: Iterable[Candidate]) -> dict[Any, list[Candidate]]:
    """Candidates by tag (the export thread groups them per series)."""
    out: dict[Any, list[Candidate]] = {}
    for c in candidates:
        out.setdefault(c[0], []).append(c)
    return out
