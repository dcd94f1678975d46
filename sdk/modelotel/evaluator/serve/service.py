"""``modelotel serve``'s life cycle: ``run`` (start-up: the spec, the snapshot restored, the receivers; the periodic
evaluation and snapshot until SIGTERM/SIGINT; the way out) and ``Service``, which owns the receivers, the OTLP
gauges and the snapshots around one ``Receiver``."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..engine.batch import Evaluation
from ..engine.stream import SNAPSHOT_NAME, SnapshotError, StreamState
from ..slo import SLO
from .errors import ServeError, StateNotSaved, say
from .export import EXPORT_TIMEOUT_S, meter_provider
from .grpc import grpc_server
from .http import http_server
from .options import Options, address
from .receiver import Receiver

__all__ = ["Service", "run"]

MALLOC_ARENAS = 2  # glibc: without a cap every handler thread keeps its own arena of freed decoding memory


def run(slo_paths: Sequence[str], options: Options) -> None:
    """Serve the SLOs of ``slo_paths`` until SIGTERM/SIGINT. ``ServeError`` if it cannot start (a spec that does
    not load, a port it cannot listen on); ``StateNotSaved`` if the state could not be written on the way out."""
    _limit_malloc_arenas()
    slos = _load_slos(slo_paths)
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
        say(service.describe())
        service.run(stop)
    finally:
        saved = service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not saved:  # the error was said; what arrived since the previous snapshot is not on disk
        raise StateNotSaved("the state was not saved on the way out")


class Service:
    """Receivers, the periodic evaluation and snapshot, and the outputs, around one ``StreamState``."""

    def __init__(self, state: StreamState, options: Options) -> None:
        self.state = state
        self.options = options
        self.receiver = Receiver(state, options)
        self.counters = self.receiver.counters
        self._grpc: Any = None
        self._http: list[ThreadingHTTPServer] = []
        self._meters: Any = None
        self._bound: list[str] = []
        self._started = False

    @property
    def latest(self) -> Evaluation | None:
        return self.receiver.latest

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
                self._grpc = grpc_server(self.receiver, o.host, port)
                self._bound.append(f"OTLP/gRPC on {address(o.host, port)}")
            for port, what in routes.items():
                self._http.append(http_server(self.receiver, o.host, port))
                self._bound.append(f"{' and '.join(what)} on {address(o.host, port)}")
        except OSError as exc:
            self.stop()
            raise ServeError(f"cannot listen on {address(o.host, port)}: {exc.strerror or exc}") from None
        self.evaluate(time.time())
        if o.otlp_endpoint:
            self._meters = meter_provider(self.receiver, o.otlp_endpoint, o.otlp_protocol, o.evaluate_every)
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
                say(f"error: periodic evaluation failed: {type(exc).__name__}: {exc}")

    def stop(self) -> bool:
        """Receivers first (no data after the last snapshot), then the last export and snapshot. False when the
        state should have been saved and could not be."""
        self.receiver.close()  # from now on requests are refused with a retryable answer (503, UNAVAILABLE)
        if self._grpc is not None:
            self._grpc.stop(grace=5).wait(10)
            self._grpc = None
        for server in self._http:
            server.shutdown()
            server.server_close()
        self._http = []
        self.receiver.drain(timeout=10)  # requests already past the gate (a keep-alive connection) finish first
        if self._meters is not None:
            self.evaluate(time.time())
            self._meters.shutdown(timeout_millis=EXPORT_TIMEOUT_S * 1000)  # collects and exports once more
            self._meters = None
        saved = True
        if self._started and self.options.state_dir is not None:
            saved = self.snapshot()
            if saved:
                say(f"stopped; state saved to {self.options.state_dir / SNAPSHOT_NAME}")
        self._started = False  # stop() may run twice (a failed start, then run's finally)
        return saved

    def evaluate(self, at: float) -> Evaluation:
        self.state.prune(at)
        evaluation = self.state.evaluate(at)
        self.receiver.latest = evaluation
        return evaluation

    def snapshot(self) -> bool:
        directory = self.options.state_dir
        if directory is None:
            return False
        try:
            self.state.write_snapshot(directory)
        except OSError as exc:
            self.counters.snapshot_failures += 1
            say(f"error: cannot write the snapshot to {directory}: {exc.strerror or exc}")
            return False
        except SnapshotError as exc:  # it would not read back: the previous one stays
            self.counters.snapshot_failures += 1
            say(f"error: {exc}")
            return False
        self.counters.last_snapshot = time.time()
        return True


# -- start-up ----------------------------------------------------------------------------------------------------


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


def _load_slos(paths: Sequence[str]) -> list[SLO]:
    from .. import spec

    try:
        specs = spec.load_specs(paths)
    except spec.SpecError as exc:
        raise ServeError(str(exc)) from None
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
            say(f"warning: cannot remove the stray temporary snapshot {path}: {exc.strerror or exc}")
            continue
        removed.append(path.name)
    if removed:
        say(f"removed {len(removed)} temporary snapshot(s) left by an interrupted write: {', '.join(removed)}")


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
        say(f"warning: ignoring the snapshot: {exc}{kept}; starting with empty state")
        return
    for note in notes:
        say(note)
