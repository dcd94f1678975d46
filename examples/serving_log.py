"""What an example server tells its operator on stderr: startup, a request summary every 10 s, shutdown.

One line per event an operator acts on, never one per request (40 requests/s would bury everything else)::

    2026-12-07 03:11:00,101 INFO fraud-fastapi: model fraud v1 loaded from ~/.cache/... (12 features, ...)
    2026-12-07 03:11:00,102 INFO fraud-fastapi: telemetry: OTLP JSON lines appended to /.../telemetry.jsonl ...
    2026-12-07 03:11:00,180 INFO fraud-fastapi: listening on http://127.0.0.1:8000 (fault injection ON: demo only)
    2026-12-07 03:11:10,180 INFO fraud-fastapi: last 10.0 s: predict 400, p50 2.6 ms, p99 7.3 ms; feedback 352, ...
    2026-12-07 03:12:01,003 INFO fraud-fastapi: stopping (SIGTERM) after 61.0 s: served predict 2,400, 46 failed ...
    2026-12-07 03:12:01,020 INFO fraud-fastapi: stopped: final telemetry export ok in 0.017 s

Requests are counted by operation (``predict``, ``feedback``; anything else as ``other``, so a client
probing random paths cannot grow the counters) and outcome, with the status of every failure.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable

import numpy as np

import modelotel
from modelotel import config

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SUMMARY_INTERVAL_S = 10.0
OPERATIONS = ("predict", "feedback")


def setup(service_name: str) -> logging.Logger:
    """Log INFO and above to stderr (libraries' loggers too: uvicorn's, grpc's), one format for all."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    return logging.getLogger(service_name)


def telemetry_destination(settings: modelotel.Settings) -> str:
    """Where this process's telemetry goes, in words (from the settings configure() resolved)."""
    every = f"every {settings.export_interval_s:g} s"
    exporter = settings.exporter
    if exporter == "file":
        where = f"OTLP JSON lines appended to {os.path.abspath(settings.path)} {every}"
    elif exporter == "otlp":
        endpoint = os.environ.get(config.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT) or os.environ.get(
            config.OTEL_EXPORTER_OTLP_ENDPOINT, "the OTLP default endpoint"
        )
        where = f"OTLP/{settings.otlp_protocol} to {endpoint} {every}"
    elif exporter == "none":
        where = "nowhere (exporter none)"
    else:
        where = f"{exporter} exporter {every}"
    spans = {"off": "spans off", "span": "a span per call too", "enrich": "the application's spans enriched"}
    return f"{where}; {spans.get(settings.traces, settings.traces)}"


class RequestLog:
    """Counts requests (thread-safe) and logs what they did: every ``interval`` seconds while traffic flows, and
    the totals at shutdown. ``record`` is called once per request with its operation, status and duration."""

    def __init__(self, log: logging.Logger, interval: float = SUMMARY_INTERVAL_S) -> None:
        self.log, self.interval = log, interval
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._window: dict[str, list[tuple[bool, str, float]]] = {}
        self._calls: Counter[str] = Counter()
        self._failed: Counter[tuple[str, str]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._window_start = self.started

    def start(self) -> RequestLog:
        self._thread.start()
        return self

    def record(self, operation: str, ok: bool, status: str, seconds: float) -> None:
        op = operation if operation in OPERATIONS else "other"
        with self._lock:
            self._window.setdefault(op, []).append((ok, status, seconds))
            self._calls[op] += 1
            if not ok:
                self._failed[(op, status)] += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.summarise()

    def summarise(self) -> None:
        """Log one line for the requests since the last one (nothing when there were none)."""
        with self._lock:
            window, self._window = self._window, {}
            now = time.monotonic()
            span, self._window_start = now - self._window_start, now
        if not window:
            return
        parts = []
        for op in sorted(window, key=order):
            calls = window[op]
            ms = np.array([s for _, _, s in calls]) * 1000
            p50, p99 = np.percentile(ms, [50, 99])
            failed = Counter(status for ok, status, _ in calls if not ok)
            parts.append(f"{op} {len(calls):,}{failures(failed.items())}, p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        self.log.info("last %.1f s: %s", span, "; ".join(parts))

    def totals(self) -> str:
        """``predict 2,400, 46 failed (500 x46); feedback 1,980``: every request since the start."""
        with self._lock:
            calls, failed = dict(self._calls), dict(self._failed)
        if not calls:
            return "no requests"
        return "; ".join(
            f"{op} {calls[op]:,}{failures((status, k) for (o, status), k in failed.items() if o == op)}"
            for op in sorted(calls, key=order)
        )

    def stop(self) -> None:
        """Stop the periodic line and log the last partial window."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.summarise()


def order(operation: str) -> tuple[int, str]:
    """predict, feedback, then the rest."""
    return (OPERATIONS.index(operation) if operation in OPERATIONS else len(OPERATIONS), operation)


def failures(by_status: Iterable[tuple[str, int]]) -> str:
    """``, 46 failed (500 x46)`` or the empty string."""
    items = sorted(by_status)
    total = sum(k for _, k in items)
    if not total:
        return ""
    return f", {total:,} failed ({', '.join(f'{status} x{k:,}' for status, k in items)})"


def fault_mode(log: logging.Logger, mode: dict) -> None:
    """Log a change of the demo's fault mode: a warning while faults are on."""
    slow_ms, error_rate = mode.get("slow_ms", 0), mode.get("error_rate", 0)
    if slow_ms or error_rate:
        log.warning(
            "fault injection (demo only): the model sleeps %g ms per call and fails %g%% of calls",
            slow_ms,
            100 * error_rate,
        )
    else:
        log.info("fault injection: off")


def shut_down(log: logging.Logger, requests: RequestLog, reason: str) -> bool:
    """The server has stopped taking requests: log what it served, export what is left, say whether it went out."""
    requests.stop()
    uptime = time.monotonic() - requests.started
    log.info("stopping (%s) after %.1f s: served %s", reason, uptime, requests.totals())
    started = time.perf_counter()
    ok = modelotel.shutdown()
    took = time.perf_counter() - started
    if ok:
        log.info("stopped: final telemetry export ok in %.3f s", took)
    else:
        log.warning("stopped: the final telemetry export FAILED after %.3f s (the last seconds are lost)", took)
    return ok
