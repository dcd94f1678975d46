"""The streaming evaluator's state: OTLP export requests -> deltas -> one ledger per SLO, in bounded memory,
snapshotted to disk and restored across restarts.

Ingestion. Each ``ExportMetricsServiceRequest`` (gRPC, or OTLP/HTTP protobuf) is written as one OTLP JSON line
(``request_json``: lowerCamelCase keys, enums as numbers, as the collector's file exporter writes) and fed to the
same line decoder the file reader uses (otlp_source), so series identity, cumulative -> delta handling
(cumulative.CumulativeTracker: resets, unknown starts, scale changes) and the bad-point rules are the file
reader's. OTLP/HTTP JSON bodies are that line already. Every delta goes to the ledgers of the SLOs whose
metrics it belongs to; evaluation is budget.evaluate_slo on those ledgers, exactly as ``modelotel evaluate``.

Memory is bounded by
* ledger bins: ``prune(now)`` drops bins that no window, alert window or time slice evaluated at ``now`` or
  later can reach (engine.lookback), so a ledger holds at most ``lookback / resolution`` bins (28 d at 60 s:
  40,320 bins of 5 floats; a percentile SLI adds one sketch per bin);
* per-series state: the latest cumulative point of every series (its bucket arrays); ``compact(now, ttl)``
  forgets series silent for ``ttl`` (their process is gone: a live SDK exports every interval).

Snapshot (``write_snapshot`` / ``load_snapshot``): one file ``<dir>/modelotel-serve.snapshot`` =
a header line ``{"format": "modelotel-serve-snapshot", "version": 1, "sha256": ..., "length": ...}`` + the
gzip-compressed JSON state (ledger bins per SLO with a fingerprint of its SLI, the latest point of every
cumulative series with its identity, the input counters). Written to a temporary file, fsynced, then renamed
over the previous one: a crash leaves the old or the new snapshot, never half of one. Ledgers and series
state are taken together under one lock, so after a restart the next cumulative point of a series yields
exactly the increment since the snapshot (nothing counted twice, nothing lost, even after a crash: cumulative
totals carry what arrived after the last snapshot). Delta-temporality data received after the last snapshot
is lost on a crash (not on SIGTERM, which snapshots last). The newest delta points of every series
(``DELTA_POINTS_KEPT`` per series, ending at most ``DELTA_KEPT_S`` before the newest delta) are in the snapshot
too, so that a collector retrying a delta request that was counted before a restart is recognised as a
duplicate, not counted twice. A snapshot holding more series than ``max_series`` restores the most recently
updated ``max_series`` of them; the others are dropped, counted (``series_refused``) and named in a note.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ...sketch import LogSketch
from ..slo import SLO
from ..sources.cumulative import ExplicitCounts, ExpoCounts
from ..sources.otlp_file import DeltaRecord, LineDecoder, SeriesPoint
from ..sources.points import Inventory, ReadReport
from .batch import Evaluation, judge, lookback, resolution_for
from .estimates import ConfidenceWindows
from .ledger import Bin, Ledger
from .verdict import SLOResult, window_bounds

try:
    from orjson import dumps as _dumps
except ImportError:  # pragma: no cover - exercised only without orjson

    def _dumps(obj: Any) -> bytes:  # type: ignore[misc]
        return json.dumps(obj, separators=(",", ":")).encode()


__all__ = [
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_NAME",
    "SNAPSHOT_VERSION",
    "Ingested",
    "SnapshotError",
    "StreamState",
    "request_json",
]

SNAPSHOT_FORMAT = "modelotel-serve-snapshot"
SNAPSHOT_VERSION = 1
SNAPSHOT_NAME = "modelotel-serve.snapshot"
SOURCE = "otlp receiver"
# a collector retries a failed export for up to 5 minutes (retry_on_failure max_elapsed_time): the delta points a
# snapshot keeps to recognise such retries after a restart cover far more than that, in bounded size
DELTA_POINTS_KEPT = 64  # per series (at a 10 s export interval: 10 minutes)
DELTA_KEPT_S = 3600.0  # before the newest delta counted


class SnapshotError(Exception):
    """A snapshot that cannot be used (unreadable, corrupt, another format version), with one message."""


# -- protobuf -> OTLP JSON line --------------------------------------------------------------------------------


def request_json(request: Any) -> bytes:
    """An ``ExportMetricsServiceRequest`` as one OTLP JSON line, with the fields the line decoder reads.

    Integers stay numbers (the decoder accepts numbers and strings alike); non-finite doubles become ``null``
    (orjson), which the decoder treats like absent ``sum``/``min``/``max`` and rejects as a sum value, as it
    rejects ``"NaN"`` in a file. ``gauge`` and ``summary`` points are only counted (they carry no increments).
    """
    rms = []
    for rm in request.resource_metrics:
        sms = []
        for sm in rm.scope_metrics:
            metrics = []
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                metric: dict[str, Any] = {"name": m.name, "unit": m.unit}
                if kind == "sum":
                    data = m.sum
                    metric["sum"] = {
                        "dataPoints": [_number_point(p) for p in data.data_points],
                        "aggregationTemporality": data.aggregation_temporality,
                        "isMonotonic": data.is_monotonic,
                    }
                elif kind == "exponential_histogram":
                    data = m.exponential_histogram
                    metric["exponentialHistogram"] = {
                        "dataPoints": [_exponential_point(p) for p in data.data_points],
                        "aggregationTemporality": data.aggregation_temporality,
                    }
                elif kind == "histogram":
                    data = m.histogram
                    metric["histogram"] = {
                        "dataPoints": [_explicit_point(p) for p in data.data_points],
                        "aggregationTemporality": data.aggregation_temporality,
                    }
                elif kind in ("gauge", "summary"):
                    metric[kind] = {"dataPoints": [{}] * len(getattr(m, kind).data_points)}
                metrics.append(metric)
            scope = {"name": sm.scope.name, "version": sm.scope.version}
            sms.append({"scope": scope, "metrics": metrics})
        rms.append({"resource": {"attributes": _attributes(rm.resource.attributes)}, "scopeMetrics": sms})
    return _dumps({"resourceMetrics": rms})


def _attributes(kvs: Any) -> list[dict[str, Any]]:
    return [{"key": kv.key, "value": _any_value(kv.value)} for kv in kvs]


def _any_value(v: Any) -> dict[str, Any]:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return {"stringValue": v.string_value}
    if kind == "int_value":
        return {"intValue": v.int_value}
    if kind == "bool_value":
        return {"boolValue": v.bool_value}
    if kind == "double_value":
        return {"doubleValue": v.double_value}
    if kind == "array_value":
        return {"arrayValue": {"values": [_any_value(x) for x in v.array_value.values]}}
    if kind == "kvlist_value":
        return {"kvlistValue": {"values": _attributes(v.kvlist_value.values)}}
    if kind == "bytes_value":
        import base64

        return {"bytesValue": base64.b64encode(v.bytes_value).decode()}
    return {}


def _common(p: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"timeUnixNano": p.time_unix_nano}
    if p.attributes:
        out["attributes"] = _attributes(p.attributes)
    if p.start_time_unix_nano:
        out["startTimeUnixNano"] = p.start_time_unix_nano
    if p.flags:
        out["flags"] = p.flags
    return out


def _number_point(p: Any) -> dict[str, Any]:
    out = _common(p)
    if p.WhichOneof("value") == "as_int":
        out["asInt"] = p.as_int
    else:
        out["asDouble"] = p.as_double
    return out


def _exponential_point(p: Any) -> dict[str, Any]:
    out = _common(p)
    out.update(scale=p.scale, count=p.count, zeroCount=p.zero_count)
    out["positive"] = {"offset": p.positive.offset, "bucketCounts": list(p.positive.bucket_counts)}
    out["negative"] = {"offset": p.negative.offset, "bucketCounts": list(p.negative.bucket_counts)}
    for name in ("sum", "min", "max"):
        if p.HasField(name):
            out[name] = getattr(p, name)
    return out


def _explicit_point(p: Any) -> dict[str, Any]:
    out = _common(p)
    out.update(count=p.count, bucketCounts=list(p.bucket_counts), explicitBounds=list(p.explicit_bounds))
    if p.HasField("sum"):
        out["sum"] = p.sum
    return out


# -- the state -------------------------------------------------------------------------------------------------


@dataclass
class Ingested:
    """What one export request did: ``malformed`` (not JSON, not OTLP metrics: answer 400) or its points,
    ``rejected`` ones (answer a partial success) and the first problem."""

    malformed: bool
    points: int
    rejected: int
    deltas: int
    message: str = ""


_COUNTERS = (
    "lines",
    "points",
    "skipped_metrics",
    "corrupt_lines",
    "foreign_lines",
    "bad_points",
    "resets",
    "duplicate_points",
    "shared_series",
)


class StreamState:
    """Ledgers of ``slos`` fed by export requests; thread-safe (one lock around every change and evaluation)."""

    def __init__(self, slos: Sequence[SLO], max_series: int | None = None) -> None:
        self.slos = list(slos)
        self.max_series = max_series  # points of new series past it are refused (counted in series_refused)
        self.series_refused = 0
        self.resolution = resolution_for(self.slos)
        # the CBPE estimate beside each accuracy SLO, as engine.evaluate gives it (engine/estimates.py)
        self.confidence = ConfidenceWindows(self.slos, self.resolution)
        self.metrics = frozenset(m for slo in self.slos for m in slo.metrics()) | self.confidence.metrics
        self.ledgers = [Ledger(slo, self.resolution) for slo in self.slos]
        self._by_metric: dict[str, list[int]] = {}  # metric -> indices of the ledgers that count it
        for i, slo in enumerate(self.slos):
            for metric in slo.metrics():
                self._by_metric.setdefault(metric, []).append(i)
        self.report = ReadReport(source=SOURCE)
        self.requests = 0
        self.latest_ns = 0  # end of the newest delta counted
        self.lock = threading.Lock()
        self._decoder = self._new_decoder()

    def _new_decoder(self) -> LineDecoder:
        decoder = LineDecoder(self.metrics, None, None, ReadReport(source=SOURCE))
        decoder.max_series = self.max_series
        return decoder

    # -- ingestion

    def ingest(self, line: bytes) -> Ingested:
        """Decode one OTLP JSON export request and count its deltas in the ledgers."""
        with self.lock:
            self.requests += 1
            number = self.requests
            seen = ReadReport(source=SOURCE)  # this request's counts, merged into the running report below
            self._decoder.report = seen
            refused = self._decoder.series_refused
            deltas = self._decoder.line(number, line)
            self.series_refused += self._decoder.series_refused - refused
            for delta in deltas:
                if delta.end_ns > self.latest_ns:
                    self.latest_ns = delta.end_ns
                for i in self._by_metric.get(delta.metric, ()):
                    self.ledgers[i].add(delta)
                if delta.metric in self.confidence.metrics:
                    self.confidence.add(delta)
            self._merge(seen, len(deltas))
        malformed = bool(seen.corrupt_lines or seen.foreign_lines or seen.signal_lines)
        message = seen.problems[0].reason if seen.problems else ""
        return Ingested(malformed, seen.points, seen.bad_points, len(deltas), message)

    def _merge(self, seen: ReadReport, deltas: int) -> None:
        report = self.report
        for name in _COUNTERS:
            setattr(report, name, getattr(report, name) + getattr(seen, name))
        report.deltas += deltas
        report.first_cumulative += seen.first_cumulative
        report.instances |= seen.instances
        if seen.problems:  # a server keeps the latest problems (a file report keeps the first)
            report.problems = (report.problems + seen.problems)[-ReadReport.MAX_PROBLEMS :]
        report.series = self._decoder.series_count

    # -- evaluation

    def evaluate(self, at: float) -> Evaluation:
        """Every SLO evaluated at ``at`` (epoch seconds), as ``engine.evaluate`` does over a file. An SLO whose
        evaluation fails is ``invalid`` with the reason; the others are evaluated as if it were not there."""
        with self.lock:
            inventory = self._decoder.inventory
            results = [_judged(ledger, at, inventory) for ledger in self.ledgers]
            report = replace(self.report, problems=list(self.report.problems), instances=set(self.report.instances))
            estimates = [self.confidence.estimate(i, r.window_start, r.at) for i, r in enumerate(results)]
            return Evaluation(at, results, [report], list(self.ledgers), estimates=estimates)

    # -- bounded memory

    def horizon(self, now: float) -> int:
        """The lowest bin index any evaluation at ``now`` or later can use: windows start after ``lookback``
        (which never decreases with time), and a window ``(start, end]`` sums bins from ``floor(start/r) + 1``."""
        return math.floor(lookback(self.slos, now) / self.resolution) + 1

    def prune(self, now: float) -> int:
        """Drop bins no evaluation at ``now`` or later can reach; the number dropped."""
        with self.lock:
            low = self.horizon(now)
            self._decoder.delta_points.forget_before(int((low - 1) * self.resolution * 1e9))
            dropped = 0
            for i, ledger in enumerate(self.ledgers):
                old = [k for k in ledger.bins if k < low]
                if old:
                    kept = {k: b for k, b in ledger.bins.items() if k >= low}
                    self.ledgers[i] = _rebuilt(ledger, kept)
                    dropped += len(old)
            dropped += self.confidence.forget_before(low)
            return dropped

    def compact(self, now: float, ttl: float) -> int:
        """Forget series whose latest point is older than ``ttl`` seconds; the number forgotten.

        A new decoder is seeded with the live series' latest points (their ids kept), which also empties the
        caches keyed by series (decoder, ledgers)."""
        with self.lock:
            before = self._decoder.series_count
            live = [s for s in self._decoder.export_series() if s.time_ns >= (now - ttl) * 1e9]
            old = self._decoder
            self._decoder = self._new_decoder()
            self._decoder.inventory = old.inventory  # what the input held, for "matched nothing" messages
            self._decoder.import_series(live, keep_ids=True)
            self._decoder.delta_points = delta_points = old.delta_points
            delta_points.forget_before(int((now - ttl) * 1e9))
            # delta series with points left keep their identity and id, so their records still recognise a retry
            self._decoder.import_delta_points(old.export_delta_points(1, 0), keep_ids=True)
            self.ledgers = [_rebuilt(ledger, ledger.bins) for ledger in self.ledgers]
            self.report.instances = {
                str(s.attributes["service.instance.id"]) for s in live if "service.instance.id" in s.attributes
            }
            self.report.series = self._decoder.series_count
            return before - self._decoder.series_count

    @property
    def series(self) -> int:
        return self._decoder.series_count

    @property
    def bins(self) -> int:
        return sum(len(ledger.bins) for ledger in self.ledgers)

    # -- snapshots

    def snapshot(self) -> bytes:
        """The whole state as snapshot file contents (header line + gzip JSON)."""
        with self.lock:
            state = {
                "saved_at": time.time(),
                "resolution": self.resolution,
                "requests": self.requests,
                "latest_ns": self.latest_ns,
                "report": {name: getattr(self.report, name) for name in (*_COUNTERS, "deltas", "first_cumulative")},
                "ledgers": [_ledger_state(ledger) for ledger in self.ledgers],
                "confidence": {
                    self.slos[i].name: {str(k): _sketch_json(sk) for k, sk in bins.items()}
                    for i, bins in self.confidence.bins.items()
                },
                "series": [_point_json(s) for s in self._decoder.export_series()],
                "delta_points": [
                    _delta_json(r)
                    for r in self._decoder.export_delta_points(
                        DELTA_POINTS_KEPT, self.latest_ns - int(DELTA_KEPT_S * 1e9)
                    )
                ],
                "inventory": _inventory_json(self._decoder.inventory),
            }
        body = gzip.compress(json.dumps(state, separators=(",", ":")).encode(), compresslevel=1)
        header = {
            "format": SNAPSHOT_FORMAT,
            "version": SNAPSHOT_VERSION,
            "sha256": hashlib.sha256(body).hexdigest(),
            "length": len(body),
        }
        return json.dumps(header).encode() + b"\n" + body

    def write_snapshot(self, directory: str | os.PathLike[str]) -> Path:
        """Write the snapshot atomically (temporary file, fsync, rename), once it reads back: ``SnapshotError``
        (the previous snapshot kept) if it does not, OSError if the directory is unusable."""
        data = self.snapshot()
        target = Path(directory) / SNAPSHOT_NAME
        try:
            state = _decode_snapshot(target, data)
            self._parse(state)
            self._confidence_from(state)
        except SnapshotError as exc:
            raise SnapshotError(f"the new snapshot does not read back, the previous one is kept: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise SnapshotError(
                f"{target}: the new snapshot does not read back ({type(exc).__name__}: {exc}); the previous one is kept"
            ) from None
        tmp = target.with_name(f".{SNAPSHOT_NAME}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        try:  # the rename itself is durable only once the directory is synced
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
        return target

    def load_snapshot(self, directory: str | os.PathLike[str]) -> list[str]:
        """Restore from ``<directory>/modelotel-serve.snapshot`` if there is one; notes for the user.

        Raises ``SnapshotError`` (state unchanged) for a snapshot that cannot be used. An SLO whose SLI changed
        since the snapshot, or a changed bin resolution, starts that history empty (a note says so).
        """
        path = Path(directory) / SNAPSHOT_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SnapshotError(f"{path}: cannot read ({exc.strerror or exc})") from None
        state = _decode_snapshot(path, data)
        try:
            return self._restore(state)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise SnapshotError(f"{path}: inconsistent contents ({type(exc).__name__}: {exc})") from None

    def _restore(self, state: dict[str, Any]) -> list[str]:
        ledgers, decoder, counters, notes = self._parse(state)
        confidence = self._confidence_from(state)
        # all parsed: only now replace the state
        self.ledgers = ledgers
        self.confidence = confidence
        self._decoder = decoder
        self.series_refused += counters.pop("series_dropped")
        self.requests = counters.pop("requests")
        self.latest_ns = counters.pop("latest_ns")
        for name, value in counters.items():
            setattr(self.report, name, value)
        self.report.series = decoder.series_count
        return notes

    def _confidence_from(self, state: dict[str, Any]) -> ConfidenceWindows:
        """The CBPE confidence bins of a snapshot (absent before 0.17; an SLO whose SLI changed starts empty)."""
        out = ConfidenceWindows(self.slos, self.resolution)
        if float(state["resolution"]) != self.resolution:
            return out
        saved = state.get("confidence") or {}
        fingerprints = {entry["slo"]: entry["sli"] for entry in state["ledgers"]}
        for i in out.bins:
            slo = self.slos[i]
            if slo.name in saved and fingerprints.get(slo.name) == _fingerprint(slo):
                out.bins[i] = {int(k): _sketch_from(sk) for k, sk in saved[slo.name].items()}
        return out

    def _parse(self, state: dict[str, Any]) -> tuple[list[Ledger], LineDecoder, dict[str, int], list[str]]:
        """The ledgers, decoder, counters and notes a snapshot's state restores (``self`` is not changed)."""
        notes = []
        saved = {entry["slo"]: entry for entry in state["ledgers"]}
        same_resolution = float(state["resolution"]) == self.resolution
        if not same_resolution:
            notes.append(
                f"bin resolution changed ({state['resolution']:g} s -> {self.resolution:g} s): SLO history dropped"
            )
        ledgers = []
        bins = 0
        for ledger in self.ledgers:
            entry = saved.get(ledger.slo.name)
            if entry is None or not same_resolution:
                ledgers.append(Ledger(ledger.slo, self.resolution))
                continue
            if entry["sli"] != _fingerprint(ledger.slo):
                notes.append(f"SLO {ledger.slo.name!r}: its SLI changed since the snapshot; its history is dropped")
                ledgers.append(Ledger(ledger.slo, self.resolution))
                continue
            restored = _ledger_from(ledger.slo, self.resolution, entry)
            bins += len(restored.bins)
            ledgers.append(restored)
        series = [_point_from(s) for s in state["series"]]
        series = [s for s in series if s.metric in self.metrics]
        deltas = [_delta_from(d) for d in state.get("delta_points") or ()]  # absent from older snapshots
        deltas = [d for d in deltas if d.metric in self.metrics]
        dropped = 0
        if self.max_series is not None and len(series) + len(deltas) > self.max_series:
            # the cap holds after a restart too (a lower --max-series, or a snapshot of another serve): the most
            # recently updated series are kept, the others start afresh if they come back and there is room
            held: list[tuple[int, int, SeriesPoint | DeltaRecord]] = [(p.time_ns, i, p) for i, p in enumerate(series)]
            held += [(d.ends[-1] if d.ends else 0, len(held) + i, d) for i, d in enumerate(deltas)]
            kept = [item for _, _, item in sorted(held, reverse=True)[: self.max_series]]
            keep_series = [p for p in kept if isinstance(p, SeriesPoint)]
            keep_deltas = [d for d in kept if isinstance(d, DeltaRecord)]
            dropped = len(series) + len(deltas) - len(keep_series) - len(keep_deltas)
            series, deltas = keep_series, keep_deltas
            notes.append(
                f"the snapshot holds {len(series) + len(deltas) + dropped} series, over --max-series "
                f"{self.max_series}: the {self.max_series} updated last are kept, {dropped} dropped (counted in "
                "modelotel_serve_series_refused_points_total)"
            )
        decoder = self._new_decoder()
        decoder.import_series(series, keep_ids=False)
        decoder.import_delta_points(deltas, keep_ids=False)
        decoder.inventory = _inventory_from(state.get("inventory") or {})
        counters = {name: int(value) for name, value in state["report"].items() if hasattr(self.report, name)}
        counters.update(requests=int(state["requests"]), latest_ns=int(state["latest_ns"]), series_dropped=dropped)
        saved_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(state["saved_at"])))
        held = len(series) + len(deltas)
        notes.insert(0, f"restored {bins} bins of {len(ledgers)} SLOs and {held} series (saved {saved_at})")
        return ledgers, decoder, counters, notes


def _judged(ledger: Ledger, at: float, inventory: Inventory) -> SLOResult:
    """``engine.judge``, or an ``invalid`` result saying why it failed (a bug must not hide the other SLOs)."""
    try:
        return judge(ledger, at, inventory)
    except Exception as exc:  # noqa: BLE001 - any failure of one SLO is reported on that SLO
        start, _ = window_bounds(ledger.slo.window, at)
        reason = f"could not be evaluated ({type(exc).__name__}: {exc})"
        return SLOResult(
            ledger.slo, "invalid", reason, at, start, 0.0, 0.0, 0.0, 0.0, None, None, None, "events", 0.0, 0.0, None
        )


def _rebuilt(ledger: Ledger, bins: dict[int, Bin]) -> Ledger:
    """The same ledger with these bins and empty caches (its prefix sums and per-series roles)."""
    return Ledger(
        ledger.slo,
        ledger.resolution,
        bins,
        ledger.unmatched,
        ledger.errors,
        ledger.first_error,
        ledger.min_scale,
        ledger.explicit,
        ledger.error_events,
        dict(ledger.units),
        ledger.matched,
        predictions_seen=ledger.predictions_seen,
    )


def _fingerprint(slo: SLO) -> str:
    """What the ledger's counts depend on: the SLI (selectors, thresholds) and the SLO kind."""
    return hashlib.sha256(repr(slo.sli).encode()).hexdigest()[:16]


def _ledger_state(ledger: Ledger) -> dict[str, Any]:
    bins = []
    sketches = {}
    sketches_bad = {}
    for k in sorted(ledger.bins):
        b = ledger.bins[k]
        bins.append([k, b.total, b.good, b.good_lower, b.good_upper, b.predictions])
        if b.sketch is not None:
            sketches[str(k)] = _sketch_json(b.sketch)
        if b.sketch_bad is not None:  # calibration: the confidences of incorrect predictions
            sketches_bad[str(k)] = _sketch_json(b.sketch_bad)
    return {
        "slo": ledger.slo.name,
        "sli": _fingerprint(ledger.slo),
        "bins": bins,
        "sketches": sketches,
        "sketches_bad": sketches_bad,
        "predictions_seen": ledger.predictions_seen,
        "unmatched": ledger.unmatched,
        "errors": ledger.errors,
        "first_error": ledger.first_error,
        "min_scale": ledger.min_scale,
        "explicit": ledger.explicit,
        "matched": ledger.matched,
        "error_events": ledger.error_events,
        "units": {metric: [unit, conventional] for metric, (unit, conventional) in ledger.units.items()},
    }


def _ledger_from(slo: SLO, resolution: float, entry: dict[str, Any]) -> Ledger:
    bins = {}
    for k, total, good, lower, upper, *rest in entry["bins"]:  # snapshots before 0.17 have no predictions
        bins[int(k)] = Bin(float(total), float(good), float(lower), float(upper))
        bins[int(k)].predictions = float(rest[0]) if rest else 0.0
    for k, sk in entry["sketches"].items():
        bins[int(k)].sketch = _sketch_from(sk)
    for k, sk in entry.get("sketches_bad", {}).items():
        bins.setdefault(int(k), Bin()).sketch_bad = _sketch_from(sk)
    min_scale = entry["min_scale"]
    ledger = Ledger(
        slo,
        resolution,
        bins,
        int(entry["unmatched"]),
        int(entry["errors"]),
        str(entry["first_error"]),
        None if min_scale is None else int(min_scale),
        bool(entry["explicit"]),
        float(entry.get("error_events", 0.0)),
        {str(m): (str(u), bool(c)) for m, (u, c) in entry.get("units", {}).items()},
        int(entry.get("matched", len(bins))),
    )
    ledger.predictions_seen = int(entry.get("predictions_seen", 0))
    return ledger


def _sketch_json(sk: LogSketch) -> dict[str, Any]:
    out = {
        "scale": sk.scale,
        "count": sk.count,
        "sum": sk.sum,
        "zeroCount": sk.zero_count,
        "maxBuckets": sk.max_buckets,
        "positive": {"offset": sk.positive.offset, "bucketCounts": sk.positive.counts.tolist()},
        "negative": {"offset": sk.negative.offset, "bucketCounts": sk.negative.counts.tolist()},
    }
    if sk.count:
        out["min"], out["max"] = sk.min, sk.max
    return out


def _sketch_from(d: dict[str, Any]) -> LogSketch:
    return LogSketch.from_otlp_point(d, max_buckets=int(d["maxBuckets"]))


def _decode_snapshot(path: Path, data: bytes) -> dict[str, Any]:
    head, newline, body = data.partition(b"\n")
    try:
        header = json.loads(head)
    except ValueError:
        header = None
    if not newline or not isinstance(header, dict) or header.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"{path}: not a modelotel serve snapshot")
    if header.get("version") != SNAPSHOT_VERSION:
        raise SnapshotError(
            f"{path}: snapshot format version {header.get('version')!r}; this modelotel reads version "
            f"{SNAPSHOT_VERSION}"
        )
    if len(body) != header.get("length") or hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise SnapshotError(f"{path}: corrupt (length or checksum does not match its header)")
    try:
        state = json.loads(gzip.decompress(body))
    except (OSError, EOFError, ValueError) as exc:
        raise SnapshotError(f"{path}: corrupt ({exc})") from None
    if not isinstance(state, dict):
        raise SnapshotError(f"{path}: corrupt (state is not an object)")
    return state


# -- series state: what the decoder exports (otlp_source.SeriesPoint), as snapshot JSON ---------------------------


def _point_json(s: SeriesPoint) -> dict[str, Any]:
    t = s.total
    if isinstance(t, ExpoCounts):
        total: Any = {
            "expo": [t.scale, t.count, t.zero_count, t.pos_offset, t.pos.tolist(), t.neg_offset, t.neg.tolist()],
            "sum": t.sum,
            "min": t.min,
            "max": t.max,
        }
    elif isinstance(t, ExplicitCounts):
        total = {"explicit": [list(t.bounds), t.counts.tolist(), t.count], "sum": t.sum}
    else:
        total = t
    return {
        **_identity_json(s),
        "start": s.start_ns,
        "time": s.time_ns,
        "total": total,
    }


def _identity_json(x: SeriesPoint | DeltaRecord) -> dict[str, Any]:
    """What names a series in the snapshot (the decoder's series key and attributes), for both record kinds."""
    return {
        "resource": x.resource.decode(),
        "scope": [x.scope_name, x.scope_version],
        "metric": x.metric,
        "point": x.point.decode(),
        "attributes": x.attributes,
    }


def _identity_from(d: dict[str, Any]) -> tuple[bytes, str, str, str, bytes, dict[str, Any]]:
    attributes = d["attributes"]
    if not isinstance(attributes, dict):
        raise TypeError("series attributes are not an object")
    name, version = d["scope"]
    return str(d["resource"]).encode(), str(name), str(version), str(d["metric"]), str(d["point"]).encode(), attributes


def _delta_json(r: DeltaRecord) -> dict[str, Any]:
    return {
        **_identity_json(r),
        "ends": r.ends,
        "starts": r.starts,
    }


def _delta_from(d: dict[str, Any]) -> DeltaRecord:
    ends, starts = d["ends"], d["starts"]
    if not isinstance(ends, list) or not isinstance(starts, list):
        raise TypeError("delta points: ends or starts of the wrong type")
    if len(ends) != len(starts):
        raise ValueError("delta points: as many ends as starts expected")
    return DeltaRecord(*_identity_from(d), 0, [int(e) for e in ends], [int(s) for s in starts])


def _inventory_json(inventory: Inventory) -> dict[str, Any]:
    return {
        "metrics": inventory.metrics,
        "series": inventory.series,
        "units": {metric: sorted(units) for metric, units in inventory.units.items()},
    }


def _inventory_from(d: dict[str, Any]) -> Inventory:
    return Inventory(
        {str(k): int(v) for k, v in (d.get("metrics") or {}).items()},
        {str(k): [dict(a) for a in v] for k, v in (d.get("series") or {}).items()},
        {str(k): {str(u) for u in v} for k, v in (d.get("units") or {}).items()},
    )


def _point_from(d: dict[str, Any]) -> SeriesPoint:
    raw = d["total"]
    if isinstance(raw, dict) and "expo" in raw:
        scale, count, zero, po, pos, no, neg = raw["expo"]
        total: Any = ExpoCounts(
            int(scale),
            int(count),
            int(zero),
            int(po),
            np.array(pos, dtype=np.int64),
            int(no),
            np.array(neg, dtype=np.int64),
            float(raw["sum"]),
            None if raw["min"] is None else float(raw["min"]),
            None if raw["max"] is None else float(raw["max"]),
        )
        why = total.consistent()
    elif isinstance(raw, dict) and "explicit" in raw:
        bounds, counts, count = raw["explicit"]
        total = ExplicitCounts(
            tuple(float(b) for b in bounds), np.array(counts, dtype=np.int64), int(count), float(raw["sum"])
        )
        why = total.consistent()
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        total, why = raw, None
    else:
        raise ValueError(f"unknown series total {str(raw)[:40]!r}")
    if why:
        raise ValueError(why)
    return SeriesPoint(*_identity_from(d), 0, int(d["start"]), int(d["time"]), total)
