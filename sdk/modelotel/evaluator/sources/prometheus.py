"""Prometheus HTTP API -> Deltas: what our collector's ``prometheus_remote_write`` exporter (grafana.yaml) wrote
into Prometheus or Mimir, read back as the same deltas the OTLP JSON lines source gives.

Location: the API's base URL, ``http(s)://host:9090`` (Prometheus) or ``http://mimir:8080/prometheus``; a trailing
``/api/v1`` is accepted. ``user:password@`` in the URL becomes basic auth; other headers (Mimir's
``X-Scope-OrgID``) are a parameter of ``read_prometheus``.

Names, as the exporter translates them (``translation_strategy: UnderscoreEscapingWithSuffixes``): characters
outside ``[a-zA-Z0-9_:]`` become ``_``, the unit adds a suffix (``s`` -> ``_seconds``; ``1`` and ``{...}`` units
none), monotonic counters end in ``_total``. So ``ml.inference.duration`` is ``ml_inference_duration_seconds``
(a native histogram) and ``ml.predictions`` is ``ml_predictions_total``. Metrics in conventions.METRICS are
queried by that exact name; any other by ``name``, ``name_total`` or ``name_seconds``. Labels map back to our
attribute keys: ``job`` -> ``service.name`` (``namespace/name`` -> ``service.namespace`` too), ``instance`` ->
``service.instance.id``, every attribute key named in conventions and the OTel keys of ``semconv`` (``ml_model_name`` ->
``ml.model.name``); other labels keep their names; ``otel_scope_*`` labels only identify the series.

Samples: the *raw* samples of each series, fetched as a range vector (``name[<chunk>]``, an instant query at the
chunk's end) chunk by chunk (``chunk_s``, default 3 h: at most 10,800 samples per series at one per second, under
the 11,000 points per series Prometheus allows in a range query). A ``query_range`` would resample at its step and
lose increments around counter resets; raw samples keep every one. Samples repeated at a chunk boundary are used
once.

Cumulative -> delta (cumulative.py): samples carry no start time, so the first sample of a series is a baseline
when the series already has a sample in the ``lookback_s`` (15 min) before ``start_ns``; when it has none it began
inside the range, and its value (accrued since its process started) counts fully, over ``(t, t]``. Caveat: a range
that starts before the server's retention makes every series look new there. Any decrease is a reset.

Classic histograms (explicit buckets, what other instrumentations' OTel SDKs export by default): for metrics
modelotel does not define (and the HTTP/RPC names it shares with them), the ``<name>_bucket`` series are read too and
regrouped per label set and sample time into one explicit-bucket histogram (cumulative ``le`` counts -> per-bucket
counts); a sample without its ``le="+Inf"`` bucket is a bad point.

Native histograms: each bucket ``[boundary_rule, left, right, count]`` becomes an OTel exponential bucket. The
schema (= OTel scale) is inferred from the bucket widths, ``right / left = 2**(2**-scale)``, and a positive bucket
``(left, right]`` is index ``round(log2(right) * 2**scale) - 1``; a negative one ``[left, right)`` the same with
``|left|``; the zero bucket (containing 0) is the zero count. min/max are not stored by Prometheus: the sketches get
the bucket bounds. Classic (``_bucket``) histograms are not read.

Errors: a server that cannot be reached, answers an HTTP error or something other than the Prometheus API raises
``SourceError`` (the first request is made before ``read_prometheus`` returns); a sample we cannot use is a
``bad_points`` entry with the query in its problem (line 0).
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Iterator
from typing import Any

import numpy as np

from ..semconv import attribute_key, may_be_classic, prometheus_name
from ..units import unit_from_prometheus_name
from .cumulative import BASELINE, INCREMENT, RESET, STALE, CumulativeTracker, ExplicitCounts, ExpoCounts
from .otlp_file import series_ids
from .points import AttrValue, Delta, Inventory, ReadReport, SourceError

try:
    from orjson import loads as _loads
except ImportError:  # pragma: no cover
    _loads = json.loads

__all__ = ["attribute_key", "prometheus_name", "read_prometheus"]

DEFAULT_RANGE_S = 35 * 86400  # when no start is given: a 30-day SLO window plus its longest alert window
CHUNK_S = 3 * 3600
LOOKBACK_S = 15 * 60
TIMEOUT_S = 30.0
PROGRESS_INTERVAL_S = 0.25
_SCOPE_LABELS = ("otel_scope_name", "otel_scope_version", "otel_scope_schema_url")
def read_prometheus(
    url: str,
    metrics: Collection[str] | None,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk_s: float = CHUNK_S,
    lookback_s: float = LOOKBACK_S,
    headers: dict[str, str] | None = None,
    inventory: Inventory | None = None,
) -> tuple[Iterator[Delta], ReadReport]:
    """The deltas of ``metrics`` (None: not supported here, a server has too many) between ``start_ns`` and
    ``end_ns`` (default: the last 35 days up to now). Checks the server answers before returning.

    ``inventory`` gets the series read and, when a metric has none, the metric names the server holds."""
    client = _Client(url, headers)
    report = ReadReport(source=client.base)
    if metrics is None:
        raise SourceError(f"{client.base}: name the metrics to read from a Prometheus server")
    end = time.time() if end_ns is None else end_ns / 1e9
    start = end - DEFAULT_RANGE_S if start_ns is None else start_ns / 1e9
    client.get("/api/v1/query", {"query": "1", "time": _fmt(end)}, report)  # reachable, and really the API
    reader = _Reader(client, report, start, end, chunk_s, lookback_s, inventory or Inventory())
    return reader.deltas(sorted(metrics), progress), report


def _fmt(t: float) -> str:
    return f"{t:.3f}"


class _Client:
    def __init__(self, url: str, headers: dict[str, str] | None) -> None:
        parts = urllib.parse.urlsplit(url)
        self.headers = {"Accept": "application/json", **(headers or {})}
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        if parts.username is not None:
            auth = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            self.headers.setdefault("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        path = parts.path.rstrip("/")
        if path.endswith("/api/v1"):
            path = path[: -len("/api/v1")]
        self.base = urllib.parse.urlunsplit((parts.scheme, netloc, path, "", ""))

    def get(self, path: str, params: dict[str, str], report: ReadReport) -> Any:
        """The ``data`` of a successful API answer; SourceError otherwise."""
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        what = f"{self.base}: {params.get('query', path)!r}"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=self.headers), timeout=TIMEOUT_S) as r:
                body = r.read()
        except urllib.error.HTTPError as exc:
            raise SourceError(f"{what}: HTTP {exc.code} {_error_text(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SourceError(f"{self.base}: cannot reach the Prometheus API ({reason})") from None
        report.bytes_read += len(body)
        try:
            answer = _loads(body)
        except ValueError:
            raise SourceError(f"{what}: the answer is not JSON: not a Prometheus API at this URL?") from None
        if not isinstance(answer, dict) or answer.get("status") != "success" or "data" not in answer:
            raise SourceError(f"{what}: not a Prometheus API answer ({str(answer)[:200]})")
        return answer["data"]


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read()
        answer = json.loads(body)
        return f"{answer.get('errorType', '')}: {answer.get('error', '')}".strip(": ")
    except Exception:
        return str(exc.reason)


class _Reader:
    def __init__(
        self, client: _Client, report: ReadReport, start: float, end: float, chunk_s, lookback_s, inventory: Inventory
    ) -> None:
        self.client = client
        self.inventory = inventory
        self.report = report
        self.start, self.end = start, end
        self.start_ns, self.end_ns = round(start * 1e9), round(end * 1e9)
        self.chunk_s = max(float(chunk_s), 0.001)
        self.lookback_s = lookback_s
        self.tracker = CumulativeTracker()
        self._series: dict[tuple, tuple[int, dict[str, AttrValue], list[int]]] = {}

    def deltas(self, metrics: list[str], progress: Callable[[int, int], None] | None) -> Iterator[Delta]:
        first = self.start - self.lookback_s
        chunks = max(1, math.ceil((self.end - first) / self.chunk_s))
        total = chunks * len(metrics)
        done = 0
        next_progress = time.monotonic() + PROGRESS_INTERVAL_S
        for metric in metrics:
            names = prometheus_name(metric)
            if len(names) == 1:
                selector = f'{{__name__="{names[0]}"}}'
            else:
                selector = '{__name__=~"' + "|".join(re.escape(n) for n in names) + '"}'
            classic = None
            if may_be_classic(metric):
                classic = '{__name__=~"(' + "|".join(re.escape(n) for n in names) + ')_bucket"}'
            for k in range(chunks):
                t = min(first + (k + 1) * self.chunk_s, self.end)
                span = t - max(first + k * self.chunk_s, first)
                query = f"{selector}[{int(math.ceil(span * 1000))}ms]"
                data = self.client.get("/api/v1/query", {"query": query, "time": _fmt(t)}, self.report)
                yield from self._result(metric, query, data)
                if classic is not None:
                    query = f"{classic}[{int(math.ceil(span * 1000))}ms]"
                    data = self.client.get("/api/v1/query", {"query": query, "time": _fmt(t)}, self.report)
                    yield from self._classic_result(metric, query, data)
                done += 1
                if progress is not None and time.monotonic() >= next_progress:
                    next_progress = time.monotonic() + PROGRESS_INTERVAL_S
                    progress(done, total)
        self.report.series = len(self._series)
        if any(not self.inventory.series.get(m) for m in metrics):
            self._names()
        if progress is not None:
            progress(total, total)

    def _names(self) -> None:
        """The metric names the server holds (for a "matched nothing" message); -1: points not counted."""
        try:
            names = self.client.get("/api/v1/label/__name__/values", {}, self.report)
        except SourceError:
            return
        for name in names if isinstance(names, list) else ():
            self.inventory.metrics.setdefault(str(name), -1)

    def _result(self, metric: str, query: str, data: Any) -> Iterator[Delta]:
        report = self.report
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            report.problem(0, f"{query}: expected a matrix, got {str(data)[:100]}")
            return
        for item in data.get("result") or ():
            try:
                labels = item["metric"]
                sid, attrs, last, unit = self._series_of(metric, labels)
                floats = item.get("values") or ()
                hists = item.get("histograms") or ()
            except (KeyError, TypeError, AttributeError) as exc:
                report.bad_points += 1
                report.problem(0, f"{query}: unusable series ({exc!r})")
                continue
            samples = [(round(float(ts) * 1000), False, v) for ts, v in floats]
            samples += [(round(float(ts) * 1000), True, h) for ts, h in hists]
            samples.sort(key=lambda s: s[0])
            for ts_ms, is_hist, value in samples:
                if ts_ms <= last[0]:
                    continue  # the same sample at a chunk boundary
                last[0] = ts_ms
                report.points += 1
                self.inventory.metrics[metric] = self.inventory.metrics.get(metric, 0) + 1
                kind = "native" if is_hist else "counter"
                delta = self._sample(metric, query, sid, attrs, ts_ms * 1_000_000, kind, value, unit)
                if delta is not None:
                    report.deltas += 1
                    yield delta

    def _classic_result(self, metric: str, query: str, data: Any) -> Iterator[Delta]:
        """A classic histogram's ``_bucket`` series (one per ``le``), regrouped into one explicit-bucket histogram
        per label set and sample time."""
        report = self.report
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            report.problem(0, f"{query}: expected a matrix, got {str(data)[:100]}")
            return
        groups: dict[tuple, dict[int, dict[float, float]]] = {}
        for item in data.get("result") or ():
            try:
                labels = dict(item["metric"])
                le = float(labels.pop("le"))
                labels["__name__"] = labels["__name__"][: -len("_bucket")]
                samples = groups.setdefault(tuple(sorted(labels.items())), {})
                for ts, v in item.get("values") or ():
                    samples.setdefault(round(float(ts) * 1000), {})[le] = float(v)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                report.bad_points += 1
                report.problem(0, f"{query}: unusable bucket series ({exc!r})")
        for key, by_time in groups.items():
            sid, attrs, last, unit = self._series_of(metric, dict(key))
            for ts_ms in sorted(by_time):
                if ts_ms <= last[0]:
                    continue  # the same sample at a chunk boundary
                last[0] = ts_ms
                report.points += 1
                self.inventory.metrics[metric] = self.inventory.metrics.get(metric, 0) + 1
                delta = self._sample(metric, query, sid, attrs, ts_ms * 1_000_000, "classic", by_time[ts_ms], unit)
                if delta is not None:
                    report.deltas += 1
                    yield delta

    def _series_of(self, metric: str, labels: dict) -> tuple[int, dict[str, AttrValue], list[int], str]:
        key = tuple(sorted(labels.items()))
        series = self._series.get(key)
        if series is None:
            attrs: dict[str, AttrValue] = {}
            for label, value in labels.items():
                if label == "__name__" or label in _SCOPE_LABELS:
                    continue
                if label == "job":
                    namespace, _, name = value.rpartition("/")
                    attrs["service.name"] = name
                    if namespace:
                        attrs["service.namespace"] = namespace
                elif label == "instance":
                    attrs["service.instance.id"] = value
                    self.report.instances.add(value)
                else:
                    attrs[attribute_key(label, metric)] = value
            unit = unit_from_prometheus_name(str(labels.get("__name__", "")))
            series = self._series[key] = (next(series_ids), attrs, [-1], unit)
            self.inventory.add_series(metric, attrs)
            self.inventory.units.setdefault(metric, set()).add(unit)
        return series

    def _sample(self, metric, query, sid, attrs, ts_ns, kind: str, value, unit) -> Delta | None:
        """One sample of a ``counter``, a ``native`` histogram or a ``classic`` one (its ``{le: count}``)."""
        report = self.report
        first_counts = ts_ns >= self.start_ns  # no sample in the lookback before the range: the series is new
        try:
            if kind == "native":
                counts = _native_histogram(value)
                outcome, start, inc = self.tracker.exponential(sid, 0, ts_ns, counts, first_counts=first_counts)
            elif kind == "classic":
                explicit = _classic_counts(value)
                outcome, start, inc = self.tracker.explicit(sid, 0, ts_ns, explicit, first_counts=first_counts)
            else:
                v = float(value)
                if not math.isfinite(v):
                    raise ValueError(f"non-finite counter value {value!r}")
                total: float = int(v) if v.is_integer() and abs(v) < 2**53 else v
                outcome, start, inc = self.tracker.counter(sid, 0, ts_ns, total, first_counts=first_counts)
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
            report.bad_points += 1
            report.problem(0, f"{query}: sample at {ts_ns / 1e9:.3f}: {exc}")
            return None
        if outcome == RESET:
            report.resets += 1
        elif outcome == BASELINE:
            report.first_cumulative += 1
        elif outcome == STALE:
            return None
        if inc is None or not self.start_ns <= ts_ns <= self.end_ns:
            return None
        if kind != "counter":
            if not inc.count:
                return None
            sketch = inc.sketch(outcome != INCREMENT) if kind == "native" else None
            explicit = inc.histogram() if kind == "classic" else None
            return Delta(metric, attrs, start, ts_ns, inc.count, sketch, explicit, sid, unit)
        if not inc:
            return None
        return Delta(metric, attrs, start, ts_ns, inc, None, None, sid, unit)


def _classic_counts(buckets: dict[float, float]) -> ExplicitCounts:
    """The cumulative ``le`` counts of one classic-histogram sample as per-bucket explicit counts."""
    if math.inf not in buckets:
        raise ValueError(f"no le=\"+Inf\" bucket among {len(buckets)}: an incomplete histogram sample")
    bounds = sorted(b for b in buckets if b != math.inf)
    cumulative = [buckets[b] for b in bounds] + [buckets[math.inf]]
    if any(not c.is_integer() or c < 0 for c in cumulative):
        raise ValueError("bucket counts are not non-negative integers")
    per = np.diff(np.array([0.0, *cumulative])).astype(np.int64)
    if len(per) and per.min() < 0:
        raise ValueError("le bucket counts decrease: not a cumulative histogram")
    counts = ExplicitCounts(tuple(bounds), per, int(cumulative[-1]), 0.0)
    why = counts.consistent()
    if why:
        raise ValueError(why)
    return counts


def _native_histogram(h: dict) -> ExpoCounts:
    """A native histogram sample (``count``, ``sum``, ``buckets``) as exponential-histogram totals."""
    zero = 0
    found: list[tuple[float, float, int, bool]] = []  # (upper |bound|, lower |bound|, count, negative)
    for _rule, left, right, count in h.get("buckets") or ():  # the sign of the bounds says it all
        lo, hi, c = float(left), float(right), float(count)
        if not c.is_integer() or c < 0:
            raise ValueError(f"bucket count {count!r} is not a non-negative integer")
        if lo <= 0.0 <= hi:
            zero += int(c)
        elif lo > 0.0:
            found.append((hi, lo, int(c), False))
        else:
            found.append((-lo, -hi, int(c), True))
    scale = _infer_scale(found)
    pos: dict[int, int] = {}
    neg: dict[int, int] = {}
    for upper, _, c, negative in found:
        if c:
            index = round(math.log2(upper) * 2.0**scale) - 1
            side = neg if negative else pos
            side[index] = side.get(index, 0) + c
    po, p = _dense(pos)
    no, n = _dense(neg)
    counts = ExpoCounts(scale, int(float(h["count"])), zero, po, p, no, n, float(h.get("sum", 0.0)))
    why = counts.consistent()
    if why:
        raise ValueError(why)
    return counts


def _infer_scale(buckets: list[tuple[float, float, int, bool]]) -> int:
    """The schema whose bucket widths these are: ``log2(upper / lower) = 2**-scale``. The lowest bucket may be cut
    at the zero threshold (a wider ratio), so the largest consistent scale wins; no buckets: scale 0."""
    best = None
    for upper, lower, _, _ in buckets:
        if lower <= 0.0 or not math.isfinite(upper):
            continue
        width = math.log2(upper) - math.log2(lower)
        if width <= 0:
            continue
        s = round(-math.log2(width))
        if abs(width * 2.0**s - 1.0) < 1e-6 and -4 <= s <= 8 and (best is None or s > best):
            best = s
    if best is None:
        if buckets:
            raise ValueError("bucket boundaries are not those of an exponential schema")
        return 0
    return best


def _dense(side: dict[int, int]) -> tuple[int, np.ndarray]:
    if not side:
        return 0, np.zeros(0, dtype=np.int64)
    lo, hi = min(side), max(side)
    out = np.zeros(hi - lo + 1, dtype=np.int64)
    for i, c in side.items():
        out[i - lo] = c
    return lo, out
