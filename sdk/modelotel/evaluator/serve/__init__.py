"""``modelotel serve``: the streaming SLO evaluator, an OTLP receiver that a collector exports to.

    modelotel serve --slo slo.yaml [--host 127.0.0.1] [--grpc-port 4317] [--http-port 4318] [--metrics-port 9464]
                    [--state DIR] [--evaluate-every 10s] [--otlp-endpoint URL]
                    [--max-series 50000] [--max-connections 64] [--request-timeout 30s] [--max-request-bytes 4MiB]

Data flows one way: receivers (OTLP/gRPC ``MetricsService/Export``; OTLP/HTTP ``POST /v1/metrics``, protobuf or
JSON, optionally gzip) -> ``stream.StreamState`` (the file reader's decoder, one ledger per SLO) -> every
``--evaluate-every``: ``budget.evaluate_slo`` at the current time -> outputs:

* ``GET /metrics``: Prometheus text exposition of the latest evaluation (``modelotel_slo_*``) and of the
  receiver itself (``modelotel_serve_*``);
* OTLP gauges (``modelotel.slo.*``) to ``--otlp-endpoint`` through the OpenTelemetry SDK, when given;
* ``GET /status[?at=TIME]``: the JSON document of ``modelotel evaluate --format json``, evaluated on request
  (at ``TIME``: ``now``, epoch seconds or ISO 8601; default now);
* ``GET /healthz``: ``ok``.

State is snapshotted to ``--state DIR`` every ``--snapshot-every`` and on SIGTERM/SIGINT, and restored at
start-up (stream.py describes the format and its guarantees). SIGTERM/SIGINT stop the receivers, export and
snapshot a last time and exit 0 (4 when that last snapshot cannot be written). A bad request body is answered
(HTTP 400, gRPC INVALID_ARGUMENT) and counted; it never stops the server.

Limits (docs/serve.md "Limits"): at most ``--max-series`` series (points of new ones are refused as a partial
success and counted); per HTTP port at most ``--max-connections`` connections, one thread each, every request
read within ``--request-timeout`` (a connection still sending its request past it, or the one sending longest
when a new connection finds no free slot, is closed and counted: slow clients cannot starve /status); a body
shorter than its Content-Length is a 400 and counts nothing; a client that goes away is one counted log line.
Requests over ``--max-request-bytes`` are refused (413, RESOURCE_EXHAUSTED) and at most two such requests' bytes
are read or decoded at once (admission.py): memory follows the limits, not the load. gRPC calls are served by
GRPC_WORKERS threads, each call's message must arrive within ``--request-timeout``, and idle or old connections
are closed.
docs/serve.md is the user guide.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ...conventions import MODEL_NAME
from ..engine.batch import Evaluation
from ..engine.stream import SNAPSHOT_NAME, Ingested, SnapshotError, StreamState, request_json
from ..engine.verdict import STATUSES, SLOResult
from ..slo import SLO
from .admission import ByteBudget

__all__ = ["GAUGES", "ServeError", "Service", "StateNotSaved", "add_parser", "cmd_serve", "exposition"]

# A request's bytes, compressed or not: the collector's own OTLP/gRPC receiver limit (4 MiB, grpc-go's default),
# which collector-to-collector pipelines already fit their batches under. Decoding takes up to ~26x this (a
# protobuf bucket count is 1 byte on the wire, 16 once parsed, more as JSON and arrays; docs/serve.md "Limits").
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
MALLOC_ARENAS = 2  # glibc: without a cap every handler thread keeps its own arena of freed decoding memory
IN_FLIGHT_REQUESTS = 2  # request bytes read or decoded at once: this many requests of --max-request-bytes
DEFAULT_MAX_SERIES = 50_000  # a cumulative histogram series holds ~7 KB: ~350 MB at the cap
DEFAULT_MAX_CONNECTIONS = 64  # per HTTP port (one thread each); a collector uses a few
DEFAULT_REQUEST_TIMEOUT = "30s"
READ_TIMEOUT_S = 10.0  # one read of a socket: a peer silent this long is gone
LISTEN_BACKLOG = 128
DROP_LOG_INTERVAL_S = 60.0  # dropped connections are logged at most this often (each one is counted)
LATEST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: the last time /status can print
# gRPC: GRPC_WORKERS calls served at once (a thread each), up to GRPC_MAX_RPCS more queued for one, calls past that
# refused RESOURCE_EXHAUSTED (which the collector does not retry: the cap is far above its 10 sending consumers);
# each call's message must arrive within --request-timeout (a stream that never sends it is cancelled), and
# connections are recycled: closed when idle or old.
GRPC_WORKERS = 16
GRPC_MAX_RPCS = 64
GRPC_CONNECTION_IDLE_MS = 5 * 60 * 1000  # an idle connection (no call) is closed (GOAWAY); a client reconnects
GRPC_CONNECTION_AGE_MS = 30 * 60 * 1000  # every connection is closed this old, its calls given the grace below
GRPC_CONNECTION_GRACE_MS = 30 * 1000
GRPC_STREAMS_PER_CONNECTION = 16
EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"
INVALID_ARGUMENT = 3  # google.rpc.Code
EXPORT_TIMEOUT_S = 5  # an OTLP export (with its retries) to --otlp-endpoint; bounds the wait at shutdown too


class ServeError(Exception):
    """What stops serve before it runs: a bad option, a spec that does not load, a port it cannot listen on (the
    message says which, naming the flag). The CLI prints it and exits with its usage code."""


class StateNotSaved(Exception):
    """The state could not be written on the way out (the error was said): what arrived since the previous
    snapshot is lost. The CLI exits with its input code."""


def _say(message: str) -> None:
    print(f"modelotel serve: {message}", file=sys.stderr, flush=True)


# -- the command -----------------------------------------------------------------------------------------------


def add_parser(subparsers: Any) -> None:
    """Add the ``serve`` subcommand to the ``modelotel`` parser."""
    p = subparsers.add_parser(
        "serve", help="streaming SLO evaluator: an OTLP receiver with Prometheus /metrics, /status and OTLP output"
    )
    p.add_argument("--slo", action="append", required=True, metavar="FILE", help="SLO spec (native or OpenSLO)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: loopback only)")
    p.add_argument("--grpc-port", type=int, default=4317, metavar="PORT", help="OTLP/gRPC port (0: off)")
    p.add_argument("--http-port", type=int, default=4318, metavar="PORT", help="OTLP/HTTP port (0: off)")
    p.add_argument(
        "--metrics-port", type=int, default=9464, metavar="PORT", help="/metrics, /status and /healthz (0: off)"
    )
    p.add_argument("--state", metavar="DIR", help="directory for the state snapshot (default: no persistence)")
    p.add_argument("--evaluate-every", default="10s", metavar="DURATION", help="evaluation interval (default 10s)")
    p.add_argument("--snapshot-every", default="60s", metavar="DURATION", help="snapshot interval (default 60s)")
    p.add_argument(
        "--series-ttl",
        default="6h",
        metavar="DURATION",
        help="forget cumulative series silent this long (default 6h; must exceed any collector outage)",
    )
    p.add_argument(
        "--max-series",
        type=int,
        default=DEFAULT_MAX_SERIES,
        metavar="N",
        help=f"series held at most; points of new series past it are refused, counted (default {DEFAULT_MAX_SERIES})",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help=f"open HTTP connections per port, one thread each (default {DEFAULT_MAX_CONNECTIONS})",
    )
    p.add_argument(
        "--request-timeout",
        default=DEFAULT_REQUEST_TIMEOUT,
        metavar="DURATION",
        help=f"an HTTP request must be read within this, idle keep-alive included (default {DEFAULT_REQUEST_TIMEOUT})",
    )
    p.add_argument(
        "--max-request-bytes",
        default=str(DEFAULT_MAX_REQUEST_BYTES),
        metavar="SIZE",
        help=f"largest export request, compressed or not (bytes, or e.g. 8MiB; default {DEFAULT_MAX_REQUEST_BYTES}); "
        f"at most {IN_FLIGHT_REQUESTS}x this is read or decoded at once",
    )
    p.add_argument("--otlp-endpoint", metavar="URL", help="also export the SLO status as OTLP gauges to this URL")
    p.add_argument("--otlp-protocol", choices=("grpc", "http/protobuf"), default="grpc")
    p.set_defaults(func=cmd_serve)


@dataclass
class Options:
    host: str
    grpc_port: int
    http_port: int
    metrics_port: int
    state_dir: Path | None
    evaluate_every: float
    snapshot_every: float
    series_ttl: float
    otlp_endpoint: str | None
    otlp_protocol: str
    max_series: int = DEFAULT_MAX_SERIES
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    request_timeout: float = 30.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES


def cmd_serve(args: argparse.Namespace) -> int:
    options = _options(args)
    _limit_malloc_arenas()
    slos = _load_slos(args.slo)
    state = StreamState(slos, max_series=options.max_series)
    if options.state_dir is not None:
        _remove_stray_temporaries(options.state_dir)
        _restore(state, options.state_dir)
    service = Service(state, options)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    saved = False
    try:
        service.start()
        _say(service.describe())
        service.run(stop)
    finally:
        saved = service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not saved:  # the error was said; what arrived since the previous snapshot is not on disk
        raise StateNotSaved("the state was not saved on the way out")
    return 0


def _limit_malloc_arenas() -> None:
    """Cap glibc's malloc arenas (one per thread by default, up to 8 per core): the memory a decoded request
    frees is then reused by the next request on any thread instead of staying with the thread that freed it
    (measured: 8 concurrent 8 MiB protobuf requests peaked at 1,278 MiB uncapped, 492 MiB capped)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-8, MALLOC_ARENAS)  # M_ARENA_MAX; a libc without it (musl) has no such arenas either
    except (OSError, AttributeError):
        pass


def _usage(message: str) -> Exception:
    return ServeError(message)


def _options(args: argparse.Namespace) -> Options:
    from ..durations import DurationError, parse_duration

    def seconds(flag: str, text: str, minimum: float) -> float:
        try:
            value = parse_duration(text)
        except (DurationError, ValueError) as exc:
            raise _usage(f"{flag}: {exc}") from None
        if value < minimum:
            raise _usage(f"{flag}: {text!r} is shorter than {minimum:g} s")
        return value

    for flag, port in (("--grpc-port", args.grpc_port), ("--http-port", args.http_port)):
        if not 0 <= port <= 65535:
            raise _usage(f"{flag}: {port} is not a port number (0 turns the receiver off)")
    if not 0 <= args.metrics_port <= 65535:
        raise _usage(f"--metrics-port: {args.metrics_port} is not a port number")
    if not args.grpc_port and not args.http_port:
        raise _usage("--grpc-port and --http-port are both 0: nothing would receive data")
    if args.grpc_port and args.grpc_port in (args.http_port, args.metrics_port):
        raise _usage(f"--grpc-port {args.grpc_port} is also used for HTTP")
    if args.max_series < 1:
        raise _usage(f"--max-series: {args.max_series} (at least 1)")
    if args.max_connections < 1:
        raise _usage(f"--max-connections: {args.max_connections} (at least 1)")
    from .admission import parse_size

    try:
        max_request_bytes = parse_size(args.max_request_bytes)
    except ValueError as exc:
        raise _usage(f"--max-request-bytes: {exc}") from None
    if not 1024 <= max_request_bytes <= 1 << 30:
        raise _usage(f"--max-request-bytes: {args.max_request_bytes} (between 1 KiB and 1 GiB)")
    if args.otlp_endpoint and not args.otlp_endpoint.startswith(("http://", "https://")):
        raise _usage(f"--otlp-endpoint: expected an http:// or https:// URL, got {args.otlp_endpoint!r}")
    state_dir = None
    if args.state:
        state_dir = Path(args.state)
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _usage(f"--state {state_dir}: cannot create the directory ({exc.strerror or exc})") from None
        probe = state_dir / f".{SNAPSHOT_NAME}.probe"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise _usage(f"--state {state_dir}: not writable ({exc.strerror or exc})") from None
    return Options(
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        state_dir=state_dir,
        evaluate_every=seconds("--evaluate-every", args.evaluate_every, 0.1),
        snapshot_every=seconds("--snapshot-every", args.snapshot_every, 1.0),
        series_ttl=seconds("--series-ttl", args.series_ttl, 60.0),
        otlp_endpoint=args.otlp_endpoint,
        otlp_protocol=args.otlp_protocol,
        max_series=args.max_series,
        max_connections=args.max_connections,
        request_timeout=seconds("--request-timeout", args.request_timeout, 0.5),
        max_request_bytes=max_request_bytes,
    )


def _load_slos(paths: list[str]) -> list[SLO]:
    from .. import spec

    try:
        specs = spec.load_specs(paths)
    except spec.SpecError as exc:
        raise _usage(str(exc)) from None
    for note in specs.notes:
        print(f"note: {note}", file=sys.stderr)
    return list(specs.slos)


def _remove_stray_temporaries(directory: Path) -> None:
    """Delete the temporary snapshots (``.<snapshot>.<pid>.tmp``, stream.write_snapshot) that a process killed
    mid-write left behind, saying which; one whose pid is a running process may be in use and is kept."""
    removed = []
    for path in sorted(directory.glob(f".{SNAPSHOT_NAME}.*.tmp")):
        pid = path.name[len(SNAPSHOT_NAME) + 2 : -len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and _running(int(pid)):
            continue
        try:
            path.unlink()
        except OSError as exc:
            _say(f"warning: cannot remove the stray temporary snapshot {path}: {exc.strerror or exc}")
            continue
        removed.append(path.name)
    if removed:
        _say(f"removed {len(removed)} temporary snapshot(s) left by an interrupted write: {', '.join(removed)}")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


def _restore(state: StreamState, directory: Path) -> None:
    """Load the snapshot; an unusable one is reported in one line, moved aside and ignored."""
    try:
        notes = state.load_snapshot(directory)
    except SnapshotError as exc:
        path = directory / SNAPSHOT_NAME
        aside = path.with_name(SNAPSHOT_NAME + ".unusable")
        try:
            path.replace(aside)
            kept = f"; kept as {aside.name}"
        except OSError:
            kept = ""
        _say(f"warning: ignoring the snapshot: {exc}{kept}; starting with empty state")
        return
    for note in notes:
        _say(note)


# -- the service -----------------------------------------------------------------------------------------------


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
        _say(
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


class Service:
    """Receivers, the periodic evaluation and snapshot, and the outputs, around one ``StreamState``."""

    def __init__(self, state: StreamState, options: Options) -> None:
        self.state = state
        self.options = options
        self.counters = Counters()
        # request bytes read or decoded at once (admission.py): transient memory follows this, not the load
        self.budget = ByteBudget(IN_FLIGHT_REQUESTS * options.max_request_bytes)
        self.latest: Evaluation | None = None
        self._grpc: Any = None
        self._http: list[ThreadingHTTPServer] = []
        self._meters: Any = None
        self._bound: list[str] = []
        self._started = False
        self._gate = threading.Condition()  # guards _closing and _inflight
        self._closing = False
        self._inflight = 0

    # -- life cycle

    def start(self) -> None:
        o = self.options
        routes: dict[int, list[str]] = {}  # one HTTP server per port; every one answers every route
        if o.http_port:
            routes.setdefault(o.http_port, []).append("OTLP/HTTP")
        if o.metrics_port:
            routes.setdefault(o.metrics_port, []).append("/metrics and /status")
        port = o.grpc_port
        try:
            if port:
                self._grpc = _grpc_server(self, o.host, port)
                self._bound.append(f"OTLP/gRPC on {_address(o.host, port)}")
            for port, what in routes.items():
                self._http.append(_http_server(self, o.host, port))
                self._bound.append(f"{' and '.join(what)} on {_address(o.host, port)}")
        except OSError as exc:
            self.stop()
            raise _usage(f"cannot listen on {_address(o.host, port)}: {exc.strerror or exc}") from None
        self.evaluate(time.time())
        if o.otlp_endpoint:
            self._meters = _meter_provider(self, o.otlp_endpoint, o.otlp_protocol, o.evaluate_every)
        if self._grpc is not None:
            self._grpc.start()
        for server in self._http:
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        self._started = True

    def describe(self) -> str:
        o = self.options
        parts = [f"{len(self.state.slos)} SLOs", *self._bound]
        parts.append(f"state in {o.state_dir}" if o.state_dir else "no --state: nothing survives a restart")
        if o.otlp_endpoint:
            parts.append(f"OTLP gauges to {o.otlp_endpoint}")
        return "; ".join(parts)

    def run(self, stop: threading.Event) -> None:
        """Evaluate and snapshot on schedule until ``stop`` is set (by SIGTERM/SIGINT)."""
        o = self.options
        next_eval = time.monotonic() + o.evaluate_every
        next_snapshot = time.monotonic() + o.snapshot_every
        while not stop.wait(max(0.0, min(next_eval, next_snapshot) - time.monotonic())):
            now = time.monotonic()
            try:
                if now >= next_eval:
                    next_eval = now + o.evaluate_every
                    self.evaluate(time.time())
                if now >= next_snapshot:
                    next_snapshot = now + o.snapshot_every
                    self.state.compact(time.time(), o.series_ttl)
                    self.snapshot()
            except Exception as exc:  # a bug must not stop the receivers: one line, and carry on
                _say(f"error: periodic evaluation failed: {type(exc).__name__}: {exc}")

    def stop(self) -> bool:
        """Receivers first (no data after the last snapshot), then the last export and snapshot. False when the
        state should have been saved and could not be."""
        with self._gate:  # from now on requests are refused with a retryable answer (503, UNAVAILABLE)
            self._closing = True
        if self._grpc is not None:
            self._grpc.stop(grace=5).wait(10)
            self._grpc = None
        for server in self._http:
            server.shutdown()
            server.server_close()
        self._http = []
        with self._gate:  # requests already past the gate (a keep-alive connection) finish first
            self._gate.wait_for(lambda: not self._inflight, timeout=10)
        if self._meters is not None:
            self.evaluate(time.time())
            self._meters.shutdown(timeout_millis=EXPORT_TIMEOUT_S * 1000)  # collects and exports once more
            self._meters = None
        saved = True
        if self._started and self.options.state_dir is not None:
            saved = self.snapshot()
            if saved:
                _say(f"stopped; state saved to {self.options.state_dir / SNAPSHOT_NAME}")
        self._started = False  # stop() may run twice (a failed start, then cmd_serve's finally)
        return saved

    def evaluate(self, at: float) -> Evaluation:
        self.state.prune(at)
        evaluation = self.state.evaluate(at)
        self.latest = evaluation
        return evaluation

    def snapshot(self) -> bool:
        directory = self.options.state_dir
        if directory is None:
            return False
        try:
            self.state.write_snapshot(directory)
        except OSError as exc:
            self.counters.snapshot_failures += 1
            _say(f"error: cannot write the snapshot to {directory}: {exc.strerror or exc}")
            return False
        except SnapshotError as exc:  # it would not read back: the previous one stays
            self.counters.snapshot_failures += 1
            _say(f"error: {exc}")
            return False
        self.counters.last_snapshot = time.time()
        return True

    # -- requests

    def receive(self, line: bytes, protocol: str) -> Ingested:
        """One export request (as an OTLP JSON line) into the state; counted by outcome. ``Closing`` once
        ``stop`` began: what is acknowledged after the last snapshot would be lost."""
        with self._gate:
            if self._closing:
                raise Closing
            self._inflight += 1
        try:
            result = self.state.ingest(line)
        except Exception as exc:  # a bug must not stop the server: one line, a 500 / INTERNAL answer
            self.counters.count(protocol, "error")
            _say(f"error: internal error on a {protocol} request: {type(exc).__name__}: {exc}")
            raise
        finally:
            with self._gate:
                self._inflight -= 1
                self._gate.notify_all()
        outcome = "malformed" if result.malformed else "partial" if result.rejected else "ok"
        self.counters.count(protocol, outcome)
        return result


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- OTLP/gRPC -------------------------------------------------------------------------------------------------


def _grpc_server(service: Service, host: str, port: int) -> Any:
    _check_port(host, port)  # gRPC's own bind failure is a C-core log line and a vaguer message
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # serve reports its own errors, in one line
    import grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

    options = service.options
    counters = service.counters

    def export(messages: Iterator[bytes], context: Any) -> Any:
        """``MetricsService/Export``, read as a stream of raw bytes (the same call on the wire) so that waiting
        for the message is bounded and the protobuf is parsed only once the budget has room for it."""
        watchdog = threading.Timer(options.request_timeout, context.cancel)  # grpcio itself waits forever
        watchdog.daemon = True
        watchdog.start()
        try:
            body = next(messages, None)
        except Exception:  # cancelled: by the watchdog, or the client went away
            body = None
        finally:
            watchdog.cancel()
        if body is None:
            if not context.is_active():
                counters.count("grpc", "timeout")
                return None  # nobody is listening
            counters.count("grpc", "malformed")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Export takes exactly one request message")
        if not service.budget.take(len(body), options.request_timeout):
            counters.count("grpc", "busy")
            context.abort(grpc.StatusCode.UNAVAILABLE, "modelotel serve is busy (request bytes in flight); retry")
        try:
            result = _export(body)
        finally:
            service.budget.give(len(body))
        if isinstance(result, str):  # an error answer: (code name, message)
            code, _, message = result.partition(":")
            context.abort(getattr(grpc.StatusCode, code), message)
        response = metrics_service_pb2.ExportMetricsServiceResponse()
        if result.rejected:
            response.partial_success.rejected_data_points = result.rejected
            response.partial_success.error_message = result.message
        return response

    def _export(body: bytes) -> Ingested | str:
        try:
            request = _parse_protobuf(body)
        except ValueError as exc:
            counters.count("grpc", "malformed")
            return f"INVALID_ARGUMENT:{exc}"
        try:
            result = service.receive(request_json(request), "grpc")
        except Closing:
            return "UNAVAILABLE:modelotel serve is stopping; retry"
        except Exception:
            return "INTERNAL:internal error (see the modelotel serve log)"
        if result.malformed:  # a parsed protobuf is always OTLP; kept for symmetry with HTTP
            return f"INVALID_ARGUMENT:{result.message}"
        return result

    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.metrics.v1.MetricsService",
        {
            "Export": grpc.stream_unary_rpc_method_handler(
                export, response_serializer=metrics_service_pb2.ExportMetricsServiceResponse.SerializeToString
            )
        },
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=GRPC_WORKERS, thread_name_prefix="otlp-grpc"),
        handlers=[handler],
        maximum_concurrent_rpcs=GRPC_MAX_RPCS,
        options=[
            ("grpc.max_receive_message_length", options.max_request_bytes),
            ("grpc.max_concurrent_streams", GRPC_STREAMS_PER_CONNECTION),
            ("grpc.max_connection_idle_ms", GRPC_CONNECTION_IDLE_MS),
            ("grpc.max_connection_age_ms", GRPC_CONNECTION_AGE_MS),
            ("grpc.max_connection_age_grace_ms", GRPC_CONNECTION_GRACE_MS),
            ("grpc.so_reuseport", 0),
        ],
    )
    try:
        bound = server.add_insecure_port(_address(host, port))
    except RuntimeError as exc:  # newer grpcio raises instead of returning 0
        raise OSError(str(exc)) from None
    if not bound:
        raise OSError("address in use or unavailable")
    return server


def _check_port(host: str, port: int) -> None:
    """OSError (e.g. address in use) if ``host:port`` cannot be bound now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


# -- OTLP/HTTP and the GET endpoints ---------------------------------------------------------------------------


class _Connection:
    """One open HTTP connection: whether its handler is waiting for (or reading) a request, and since when."""

    __slots__ = ("closed_by_us", "reading_since", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reading_since: float | None = time.monotonic()  # None while a read request is being answered
        self.closed_by_us = False

    def close(self) -> None:
        """Wake its handler thread (a blocked read returns end-of-file) so that the thread ends."""
        self.closed_by_us = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    """One handler thread per connection, at most ``max_connections`` of them; a request must be read within
    ``request_timeout`` (checked every poll of ``serve_forever``). A new connection that finds every slot taken
    closes the connection that has been reading the longest (a slow or idle client: it may retry), or, when all
    are being answered, is itself answered 503. Whatever is closed early is counted (``Counters.drop``)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], handler: type, service: Service) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.service = service
        self.max_connections = service.options.max_connections
        self.request_timeout = service.options.request_timeout
        self._connections: dict[socket.socket, _Connection] = {}
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            refuse = False
            if len(self._connections) >= self.max_connections:
                waiting = [c for c in self._connections.values() if c.reading_since is not None and not c.closed_by_us]
                if waiting:
                    min(waiting, key=lambda c: c.reading_since or 0.0).close()
                    self.service.counters.drop("evicted")
                else:
                    refuse = True
            if not refuse:
                self._connections[request] = _Connection(request)
        if refuse:
            self.service.counters.drop("refused")
            try:
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def connection(self, request: Any) -> _Connection | None:
        with self._connections_lock:
            return self._connections.get(request)

    def claim(self, request: Any) -> bool:
        """Mark a connection's request as read (no timeout or eviction from now on); False if it was closed
        already: the request must then not be acted on (its client saw no answer and may retry)."""
        with self._connections_lock:
            conn = self._connections.get(request)
            if conn is None or conn.closed_by_us:
                return False
            conn.reading_since = None
            return True

    def close_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.pop(request, None)
        super().close_request(request)

    def service_actions(self) -> None:
        """Close the connections that have been reading one request for longer than ``request_timeout``."""
        late = time.monotonic() - self.request_timeout
        with self._connections_lock:
            expired = [c for c in self._connections.values() if c.reading_since is not None and c.reading_since < late]
            expired = [c for c in expired if not c.closed_by_us]
            for c in expired:
                c.close()
        for _ in expired:
            self.service.counters.drop("timeout")

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Instead of socketserver's traceback on stderr: a peer gone or too slow is a counted drop; anything
        else is a bug, said in one line (the connection is closed, the server goes on)."""
        exc = sys.exc_info()[1]
        conn = self.connection(request)
        if conn is not None and conn.closed_by_us:
            return  # counted when we closed it
        if isinstance(exc, TimeoutError):
            self.service.counters.drop("timeout")
        elif isinstance(exc, OSError):
            self.service.counters.drop("client_disconnect")
        else:
            _say(f"error: internal error on an HTTP request: {type(exc).__name__}: {exc}")


_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 34\r\nRetry-After: 1\r\n"
    b"Connection: close\r\n\r\nall connections busy; retry later\n"
)


def _http_server(service: Service, host: str, port: int) -> ThreadingHTTPServer:
    return _Server((host, port), _Handler, service)


class _Handler(BaseHTTPRequestHandler):
    server_version = "modelotel-serve"
    protocol_version = "HTTP/1.1"  # keep-alive: the collector's exporter reuses connections
    timeout = READ_TIMEOUT_S  # per read; the whole request is bounded by _Server.request_timeout
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
        pass

    def handle_one_request(self) -> None:
        conn = self.server.connection(self.request)
        if conn is not None:
            conn.reading_since = time.monotonic()  # waiting for the request: a timeout or an eviction may close it
        super().handle_one_request()

    def _answering(self) -> bool:
        """The request is read: from now on the connection is neither timed out nor evicted. False (and the
        connection is closed) if it was closed while the request was read."""
        if self.server.claim(self.request):
            return True
        self.close_connection = True
        return False

    # -- OTLP/HTTP

    def do_POST(self) -> None:  # noqa: N802
        path = urllib.parse.urlsplit(self.path).path
        length = self.headers.get("Content-Length")
        if length is None or not (length.isascii() and length.isdigit()):
            self.close_connection = True
            self._send(411, "text/plain", b"Content-Length required\n")
            return
        service = self.server.service
        limit = service.options.max_request_bytes
        if int(length) > limit:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            service.counters.count("http", "too_large")
            self._send(413, "text/plain", f"body over {limit} bytes (--max-request-bytes); nothing counted\n".encode())
            return
        # the request's share of the in-flight budget (admission.py) before its body is read: a compressed body
        # also needs room for what it inflates to
        compressed = (self.headers.get("Content-Encoding") or "identity").strip().lower() not in ("identity", "")
        charge = int(length) + (limit if compressed else 0)
        if not service.budget.take(charge, self.server.request_timeout):
            self.close_connection = True  # the body is not read
            service.counters.count("http", "busy")
            busy = f"busy: other requests hold {service.budget.capacity} bytes for over --request-timeout; retry\n"
            self._send(503, "text/plain", busy.encode(), {"Retry-After": "1"})
            return
        try:
            self._post(path, length, limit)
        finally:
            service.budget.give(charge)

    def _post(self, path: str, length: str, limit: int) -> None:
        body = self.rfile.read(int(length))
        if not self._answering():
            return
        if len(body) < int(length):  # the client went away (or was closed) mid-body: nothing of it is counted
            self.close_connection = True
            self.server.service.counters.count("http", "malformed")
            short = f"body of {len(body)} bytes, shorter than its Content-Length {length}; nothing counted\n"
            self._send(400, "text/plain", short.encode())
            return
        if path != "/v1/metrics":
            self._send(404, "text/plain", b"only /v1/metrics (OTLP metrics) is served here\n")
            return
        protocol = "http"
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        as_json = content_type == "application/json"
        if content_type not in ("application/x-protobuf", "application/json"):
            self.server.service.counters.count(protocol, "malformed")
            self._send(415, "text/plain", f"unsupported Content-Type {content_type!r}\n".encode())
            return
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        try:
            if encoding == "gzip":
                body = _gunzip(body, limit)
            elif encoding not in ("identity", ""):
                self.server.service.counters.count(protocol, "malformed")
                self._send(415, "text/plain", f"unsupported Content-Encoding {encoding!r}\n".encode())
                return
            if as_json:
                if not body.strip():
                    raise ValueError("empty body (an empty request is {})")
                line = body if body.endswith(b"\n") else body + b"\n"  # one complete line for the decoder
            else:
                line = request_json(_parse_protobuf(body))
        except ValueError as exc:
            self.server.service.counters.count(protocol, "malformed")
            self._status_error(400, as_json, str(exc))
            return
        try:
            result = self.server.service.receive(line, protocol)
        except Closing:
            self.close_connection = True
            self._send(503, "text/plain", b"modelotel serve is stopping; retry\n", {"Retry-After": "1"})
            return
        except Exception:
            self._status_error(500, as_json, "internal error (see the modelotel serve log)")
            return
        if result.malformed:
            self._status_error(400, as_json, result.message or "not OTLP metrics")
            return
        self._export_response(as_json, result)

    def _export_response(self, as_json: bool, result: Ingested) -> None:
        from google.protobuf import json_format
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

        response = metrics_service_pb2.ExportMetricsServiceResponse()
        if result.rejected:
            response.partial_success.rejected_data_points = result.rejected
            response.partial_success.error_message = result.message
        if as_json:
            self._send(200, "application/json", json_format.MessageToJson(response, indent=None).encode())
        else:
            self._send(200, "application/x-protobuf", response.SerializeToString())

    def _status_error(self, code: int, as_json: bool, message: str) -> None:
        """An OTLP error answer: a ``google.rpc.Status`` in the request's encoding."""
        from google.rpc import status_pb2

        status = status_pb2.Status(code=INVALID_ARGUMENT if code == 400 else 13, message=message)
        if as_json:
            self._send(code, "application/json", json.dumps({"code": status.code, "message": message}).encode())
        else:
            self._send(code, "application/x-protobuf", status.SerializeToString())

    # -- GET endpoints

    def do_GET(self) -> None:  # noqa: N802
        if not self._answering():
            return
        url = urllib.parse.urlsplit(self.path)
        service = self.server.service
        if url.path == "/metrics":
            self._send(200, EXPOSITION_TYPE, exposition(service).encode())
        elif url.path == "/status":
            self._status(service, urllib.parse.parse_qs(url.query))
        elif url.path == "/healthz":
            self._send(200, "text/plain", b"ok\n")
        else:
            self._send(404, "text/plain", b"GET /metrics, /status[?at=TIME] or /healthz; POST /v1/metrics\n")

    def _status(self, service: Service, query: dict[str, list[str]]) -> None:
        from ..durations import parse_instant
        from ..outputs.text import to_json

        at = time.time()
        if "at" in query:
            try:
                at = parse_instant(query["at"][-1])
            except ValueError as exc:
                self._send(400, "application/json", json.dumps({"error": f"at: {exc}"}).encode())
                return
            if not 0 <= at <= LATEST_TIME:  # NaN fails this too
                error = f"at: {query['at'][-1]!r} is not a time between 1970-01-01 and 9999-12-31"
                self._send(400, "application/json", json.dumps({"error": error}).encode())
                return
        try:
            document = to_json(service.state.evaluate(at)).encode()
        except Exception as exc:  # a bug must not drop the connection: one line, a 500
            _say(f"error: /status at {at!r} failed: {type(exc).__name__}: {exc}")
            self._send(500, "application/json", json.dumps({"error": "internal error (see the log)"}).encode())
            return
        self._send(200, "application/json", document)

    def _send(self, code: int, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


def _gunzip(body: bytes, limit: int) -> bytes:
    """Decompressed ``body``; ValueError for corrupt data or more than ``limit`` bytes (a zip bomb)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ValueError(f"gzip body unreadable ({exc})") from None
    if len(out) > limit:
        raise ValueError(f"gzip body inflates to over {limit} bytes")
    if not d.eof:
        raise ValueError("gzip body truncated")
    return out


def _parse_protobuf(body: bytes) -> Any:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

    try:
        return metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
    except DecodeError as exc:
        raise ValueError(f"not an OTLP ExportMetricsServiceRequest protobuf ({exc})") from None


# -- outputs: the SLO gauges -----------------------------------------------------------------------------------


Labels = dict[str, str]
Sample = tuple[Labels, float]


def _labels(slo: SLO) -> Labels:
    return {"slo": slo.name, "model": dict(slo.sli.total.match).get(MODEL_NAME, "")}


def _status_samples(r: SLOResult) -> Iterable[Sample]:
    return (({"status": s}, 1.0 if r.status == s else 0.0) for s in STATUSES)  # one series per status


def _burn_samples(r: SLOResult) -> Iterable[Sample]:
    for window, value in r.burn_rates.items():
        if not window.startswith("window") and value is not None:
            yield {"window": window}, value


def _period_burn(r: SLOResult) -> Iterable[Sample]:
    for window, value in r.burn_rates.items():
        if window.startswith("window") and value is not None:
            yield {}, value


def _one(value: float | None) -> Iterable[Sample]:
    return () if value is None else (({}, float(value)),)


@dataclass(frozen=True)
class Gauge:
    """One SLO gauge family: Prometheus ``name``, OTLP ``otlp_name`` (+ ``unit``), and its samples per result."""

    name: str
    otlp_name: str
    unit: str
    help: str
    samples: Callable[[SLOResult], Iterable[Sample]]


GAUGES: tuple[Gauge, ...] = (
    Gauge(
        "modelotel_slo_sli", "modelotel.slo.sli", "", "SLI over the SLO window (good / events)", lambda r: _one(r.sli)
    ),
    Gauge(
        "modelotel_slo_sli_lower",
        "modelotel.slo.sli_lower",
        "",
        "lower bound of the SLI (histogram buckets split by the threshold counted bad)",
        lambda r: _one(r.sli_lower),
    ),
    Gauge(
        "modelotel_slo_sli_upper",
        "modelotel.slo.sli_upper",
        "",
        "upper bound of the SLI (histogram buckets split by the threshold counted good)",
        lambda r: _one(r.sli_upper),
    ),
    Gauge("modelotel_slo_objective", "modelotel.slo.objective", "", "SLO objective", lambda r: _one(r.slo.objective)),
    Gauge("modelotel_slo_events", "modelotel.slo.events", "", "events in the SLO window", lambda r: _one(r.events)),
    Gauge(
        "modelotel_slo_good_events",
        "modelotel.slo.good_events",
        "",
        "good events in the SLO window",
        lambda r: _one(r.good),
    ),
    Gauge(
        "modelotel_slo_error_budget_remaining",
        "modelotel.slo.error_budget_remaining",
        "",
        "1 - consumed / budget (negative once overspent)",
        lambda r: _one(r.budget_remaining_ratio),
    ),
    Gauge(
        "modelotel_slo_error_budget_consumed",
        "modelotel.slo.error_budget_consumed",
        "",
        "bad events (or bad time slices) in the SLO window",
        lambda r: _one(r.budget_consumed),
    ),
    Gauge(
        "modelotel_slo_error_budget",
        "modelotel.slo.error_budget",
        "",
        "(1 - objective) x events (or time slices) in the SLO window",
        lambda r: _one(r.budget_total),
    ),
    Gauge(
        "modelotel_slo_burn_rate",
        "modelotel.slo.burn_rate",
        "",
        "bad fraction over the window / (1 - objective), per alert window",
        _burn_samples,
    ),
    Gauge(
        "modelotel_slo_period_burn_rate",
        "modelotel.slo.period_burn_rate",
        "",
        "burn rate over the whole SLO window",
        _period_burn,
    ),
    Gauge(
        "modelotel_slo_alert_firing",
        "modelotel.slo.alert_firing",
        "",
        "1 when both windows of the alert tier burn at least its rate with min_events in the long window",
        lambda r: (({"alert": a.name, "severity": a.severity}, float(a.firing)) for a in r.alerts),
    ),
    Gauge(
        "modelotel_slo_alert_enough_data",
        "modelotel.slo.alert_enough_data",
        "",
        "1 when the alert tier's long window holds at least min_events events",
        lambda r: (({"alert": a.name, "severity": a.severity}, float(a.enough_data)) for a in r.alerts),
    ),
    Gauge(
        "modelotel_slo_time_to_exhaustion_seconds",
        "modelotel.slo.time_to_exhaustion",
        "s",
        "remaining budget x window / burn rate over the first tier's long window",
        lambda r: _one(r.time_to_exhaustion),
    ),
    Gauge("modelotel_slo_status", "modelotel.slo.status", "", "1 for the SLO's current status", _status_samples),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _line(name: str, labels: Labels, value: float) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {_number(value)}" if inner else f"{name} {_number(value)}"


def exposition(service: Service) -> str:
    """The Prometheus text format (0.0.4) of the latest evaluation and of the receiver's own counters."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(_line(name, labels, value) for labels, value in samples)

    evaluation = service.latest
    results = evaluation.results if evaluation is not None else []
    for g in GAUGES:
        family(g.name, "gauge", g.help, ((_labels(r.slo) | labels, v) for r in results for labels, v in g.samples(r)))
    if evaluation is not None:
        family(
            "modelotel_slo_evaluation_timestamp_seconds",
            "gauge",
            "time the SLOs above were evaluated at",
            [({}, evaluation.at)],
        )
    state, counters = service.state, service.counters
    report = state.report
    family(
        "modelotel_serve_requests_total",
        "counter",
        "export requests received since start-up, by protocol and outcome (ok, partial, malformed, error, too_large, "
        "busy, timeout)",
        (({"protocol": p, "outcome": o}, float(n)) for (p, o), n in counters.by_outcome()),
    )
    family("modelotel_serve_points_total", "counter", "data points of the SLO metrics received", [({}, report.points)])
    family(
        "modelotel_serve_rejected_points_total",
        "counter",
        "data points that could not be used (bad counts, gauges, unknown temporality, out of order)",
        [({}, report.bad_points)],
    )
    family(
        "modelotel_serve_skipped_points_total",
        "counter",
        "data points of metrics no SLO uses",
        [({}, report.skipped_metrics)],
    )
    family("modelotel_serve_resets_total", "counter", "cumulative series restarts seen", [({}, report.resets)])
    family("modelotel_serve_series", "gauge", "series with state (latest cumulative point)", [({}, state.series)])
    family("modelotel_serve_max_series", "gauge", "the --max-series limit", [({}, service.options.max_series)])
    family(
        "modelotel_serve_series_refused_points_total",
        "counter",
        "data points of new series refused because --max-series series are held (also in rejected_points)",
        [({}, state.series_refused)],
    )
    family(
        "modelotel_serve_dropped_connections_total",
        "counter",
        "HTTP connections closed before their answer: client_disconnect, timeout (--request-timeout), evicted (a "
        "slot for a new connection past --max-connections), refused (503: all slots answering)",
        (({"reason": r}, float(n)) for r, n in counters.dropped_by_reason()),
    )
    family("modelotel_serve_bins", "gauge", "ledger time bins held, all SLOs", [({}, state.bins)])
    family(
        "modelotel_serve_snapshot_failures_total",
        "counter",
        "snapshots that could not be written",
        [({}, counters.snapshot_failures)],
    )
    if counters.last_snapshot is not None:
        family(
            "modelotel_serve_snapshot_timestamp_seconds",
            "gauge",
            "time of the last snapshot written",
            [({}, counters.last_snapshot)],
        )
    return "\n".join(out) + "\n"


# -- outputs: OTLP gauges through the OpenTelemetry SDK --------------------------------------------------------


def _meter_provider(service: Service, endpoint: str, protocol: str, every: float) -> Any:
    """A MeterProvider whose observable gauges read the latest evaluation, exported every ``every`` seconds."""
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    from ..._version import __version__

    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(
            endpoint=endpoint, insecure=endpoint.startswith("http://"), timeout=EXPORT_TIMEOUT_S
        )
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HTTPExporter

        url = endpoint if endpoint.rstrip("/").endswith("/v1/metrics") else endpoint.rstrip("/") + "/v1/metrics"
        exporter = HTTPExporter(endpoint=url, timeout=EXPORT_TIMEOUT_S)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=every * 1000)
    provider = MeterProvider(resource=Resource.create({"service.name": "modelotel-serve"}), metric_readers=[reader])
    meter = provider.get_meter("modelotel.serve", __version__)

    def observe(gauge: Gauge) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            evaluation = service.latest
            if evaluation is None:
                return []
            return [
                Observation(value, _labels(r.slo) | labels)
                for r in evaluation.results
                for labels, value in gauge.samples(r)
            ]

        return callback

    for gauge in GAUGES:
        meter.create_observable_gauge(gauge.otlp_name, [observe(gauge)], unit=gauge.unit, description=gauge.help)
    return provider
