"""What ``modelotel serve``'s receivers share (http.py, grpc.py): ``Receiver``, the ``StreamState`` behind a gate
that closes when the service stops, the request and connection ``Counters``, the in-flight byte budget
(admission.py) and the latest evaluation that ``/metrics`` and the OTLP gauges show."""

from __future__ import annotations

import threading
import time
from typing import Any

from ..engine.batch import Evaluation
from ..engine.stream import Ingested, StreamState
from ..outputs.exposition import ReceiverStats
from .admission import ByteBudget
from .errors import say
from .options import IN_FLIGHT_REQUESTS, Options

__all__ = ["Closing", "Counters", "Receiver", "parse_protobuf"]

DROP_LOG_INTERVAL_S = 60.0  # dropped connections are logged at most this often (each one is counted)


class Counters:
    """Requests by protocol and outcome (``ok``, ``partial``, ``malformed``, ``error``, ``too_large``, ``busy``:
    no room in the in-flight budget, ``timeout``: a gRPC call whose message never came), since start-up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = {}
        self.dropped: dict[str, int] = {}  # HTTP connections closed before a full answer, by reason
        self._next_drop_log = 0.0
        self.snapshot_failures = 0
        self.last_snapshot: float | None = None

    def drop(self, reason: str) -> None:
        """A connection closed before its answer (``client_disconnect``, ``timeout``, ``evicted``, ``refused``):
        counted; logged as one line at most every DROP_LOG_INTERVAL_S, with the totals."""
        with self._lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
            now = time.monotonic()
            if now < self._next_drop_log:
                return
            self._next_drop_log = now + DROP_LOG_INTERVAL_S
            totals = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items()))
        say(
            f"HTTP connection closed before its answer ({reason}); so far: {totals} "
            f"(modelotel_serve_dropped_connections_total; logged at most every {DROP_LOG_INTERVAL_S:g} s)"
        )

    def dropped_by_reason(self) -> list[tuple[str, int]]:
        with self._lock:
            return sorted(self.dropped.items())

    def count(self, protocol: str, outcome: str) -> None:
        with self._lock:
            key = (protocol, outcome)
            self.requests[key] = self.requests.get(key, 0) + 1

    def by_outcome(self) -> list[tuple[tuple[str, str], int]]:
        with self._lock:  # handler threads may add a key meanwhile
            return sorted(self.requests.items())


class Closing(Exception):
    """The service is stopping: the request is refused (retryable), not lost."""


class Receiver:
    """The ``StreamState`` as the receivers see it: requests go in through ``receive`` (counted by outcome) until
    ``close``; ``latest`` is the evaluation the service made last."""

    def __init__(self, state: StreamState, options: Options) -> None:
        self.state = state
        self.options = options
        self.counters = Counters()
        # request bytes read or decoded at once (admission.py): transient memory follows this, not the load
        self.budget = ByteBudget(IN_FLIGHT_REQUESTS * options.max_request_bytes)
        self.latest: Evaluation | None = None
        self._gate = threading.Condition()  # guards _closing and _inflight
        self._closing = False
        self._inflight = 0

    def receive(self, line: bytes, protocol: str) -> Ingested:
        """One export request (as an OTLP JSON line) into the state; counted by outcome. ``Closing`` once
        ``close`` was called: what is acknowledged after the last snapshot would be lost."""
        with self._gate:
            if self._closing:
                raise Closing
            self._inflight += 1
        try:
            result = self.state.ingest(line)
        except Exception as exc:  # a bug must not stop the server: one line, a 500 / INTERNAL answer
            self.counters.count(protocol, "error")
            say(f"error: internal error on a {protocol} request: {type(exc).__name__}: {exc}")
            raise
        finally:
            with self._gate:
                self._inflight -= 1
                self._gate.notify_all()
        outcome = "malformed" if result.malformed else "partial" if result.rejected else "ok"
        self.counters.count(protocol, outcome)
        return result

    def close(self) -> None:
        """From now on requests are refused with a retryable answer (503, UNAVAILABLE)."""
        with self._gate:
            self._closing = True

    def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout`` seconds) for the requests already past the gate (a keep-alive connection)."""
        with self._gate:
            self._gate.wait_for(lambda: not self._inflight, timeout=timeout)

    def stats(self) -> ReceiverStats:
        """The receiver's own numbers now, for ``/metrics``."""
        state, counters = self.state, self.counters
        report = state.report
        return ReceiverStats(
            requests=counters.by_outcome(),
            points=report.points,
            bad_points=report.bad_points,
            skipped_points=report.skipped_metrics,
            resets=report.resets,
            series=state.series,
            max_series=self.options.max_series,
            series_refused=state.series_refused,
            dropped_connections=counters.dropped_by_reason(),
            bins=state.bins,
            snapshot_failures=counters.snapshot_failures,
            last_snapshot=counters.last_snapshot,
        )


def parse_protobuf(body: bytes) -> Any:
    """An ``ExportMetricsServiceRequest`` from its protobuf bytes; ValueError if it is not one."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

    try:
        return metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
    except DecodeError as exc:
        raise ValueError(f"not an OTLP ExportMetricsServiceRequest protobuf ({exc})") from None
