"""Traffic for the example servers: normal, slow, failing and drifted phases, then delayed feedback.

    python examples/traffic.py --url http://127.0.0.1:8000 [--duration 60] [--rate 40] [--seed 1]
    python examples/traffic.py --grpc 127.0.0.1:50051 ...

The phases split ``--duration`` (default 60 s) in fixed proportions; each sends ``rate x phase seconds``
requests on a fixed schedule (open loop, so a slow server does not slow the senders down):

=========  =====  ===========================================================================
phase      share  what happens
=========  =====  ===========================================================================
normal     30%    card payments from the data set's serve split (never trained on), with 2% multiplicative
                  noise on the continuous features (amounts, ratio, distance, risk score)
slow       20%    the server's model sleeps ``SLOW_MS`` (400 ms) per call: far over a 250 ms SLO
errors     15%    30% of model calls fail (the server answers 500 / INTERNAL)
drift      35%    the amounts arrive in cents (an upstream payments feed switched to minor units):
                  ``amount_usd`` and ``avg_amount_30d_usd`` are 100x, their ratio unchanged;
                  OOD scores jump, the amount distributions shift, accuracy drops
=========  =====  ===========================================================================

The slow and error phases are switched on the server through its demo-only admin endpoint (the server
must run with ``--allow-faults``). One request in ten carries a batch of 2 to 4 rows. 90% of successful
predictions get their true labels back as feedback, 3% to 10% of the duration after the prediction
(1.8 to 6 s for a minute), so accuracy is the model's real accuracy on these rows. Everything random
comes from ``--seed``: the rows, batches, feedback choices and delays, and the server's failures.
"""

from __future__ import annotations

import argparse
import heapq
import http.client
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np
from fraud_model import AMOUNT_FEATURES, CONTINUOUS_FEATURES, LABELS, dataset

SLOW_MS = 400
ERROR_RATE = 0.3
CENTS_PER_DOLLAR = 100.0  # the drift phase: the amount features arrive in cents, not dollars
NOISE = 0.02
BATCH_SHARE = 0.1
FEEDBACK_SHARE = 0.9
FEEDBACK_DELAY = (0.03, 0.10)  # fractions of the duration
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Phase:
    name: str
    share: float  # of the duration
    mode: dict[str, float]  # sent to the server's admin endpoint at the start of the phase
    drift: bool = False
    what: str = ""


PHASES = (
    Phase("normal", 0.30, {"slow_ms": 0, "error_rate": 0}, what="in-distribution rows"),
    Phase("slow", 0.20, {"slow_ms": SLOW_MS, "error_rate": 0}, what=f"model sleeps {SLOW_MS} ms per call"),
    Phase("errors", 0.15, {"slow_ms": 0, "error_rate": ERROR_RATE}, what=f"{ERROR_RATE:.0%} of model calls fail"),
    Phase("drift", 0.35, {"slow_ms": 0, "error_rate": 0}, drift=True, what="amounts in cents"),
)


# -- transports: the same four operations over HTTP and gRPC -------------------------------------------


class Unavailable(Exception):
    """The server could not be reached or answered something unreadable."""


class HttpClient:
    """stdlib HTTP/1.1 with one keep-alive connection per thread."""

    ROUTES = {
        "predict": ("POST", "/predict"),
        "feedback": ("POST", "/feedback"),
        "mode": ("POST", "/admin/mode"),
        "health": ("GET", "/healthz"),
    }

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"--url {url!r}: expected http://host:port")
        self.host, self.port = parts.hostname, parts.port or 80
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)
        return conn

    def call(self, op: str, body: dict | None = None) -> tuple[bool, str, dict]:
        """(ok, status, decoded body) of one operation."""
        method, path = self.ROUTES[op]
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (1, 2):  # a keep-alive connection the server closed is retried once on a fresh one
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                payload = resp.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise Unavailable(f"{method} {path}: {exc}") from None
        try:
            decoded = json.loads(payload) if payload else {}
        except ValueError:
            raise Unavailable(f"{method} {path}: status {resp.status}, not JSON: {payload[:200]!r}") from None
        return 200 <= resp.status < 300, str(resp.status), decoded

    def close(self) -> None:
        pass  # per-thread connections close with their threads


class GrpcClient:
    """The ``fraud.v1.FraudModel`` service of grpc_server.py (JSON bytes over generic unary methods)."""

    METHODS = {"predict": "Predict", "feedback": "Feedback", "mode": "SetMode", "health": "Health"}

    def __init__(self, target: str) -> None:
        import grpc

        self._grpc = grpc
        # short reconnect backoff: the health poll finds a server that is still starting within 0.1-0.5 s
        options = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500)]
        self.channel = grpc.insecure_channel(target, options=options)
        self._stubs = {
            op: self.channel.unary_unary(
                f"/fraud.v1.FraudModel/{name}",
                request_serializer=lambda m: json.dumps(m).encode(),
                response_deserializer=json.loads,
            )
            for op, name in self.METHODS.items()
        }

    def call(self, op: str, body: dict | None = None) -> tuple[bool, str, dict]:
        grpc = self._grpc
        try:
            return True, "OK", self._stubs[op](body or {}, timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            code = exc.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(f"{self.METHODS[op]}: {code.name}: {exc.details()}") from None
            return False, code.name, {"error": exc.details()}

    def close(self) -> None:
        self.channel.close()


def connect(url: str | None = None, grpc_target: str | None = None) -> HttpClient | GrpcClient:
    if (url is None) == (grpc_target is None):
        raise ValueError("give exactly one of url (HTTP servers) or grpc_target")
    return HttpClient(url) if url is not None else GrpcClient(grpc_target)  # type: ignore[arg-type]


def wait_healthy(
    client: HttpClient | GrpcClient, timeout: float = 60.0, alive: Callable[[], bool] = lambda: True
) -> None:
    """Poll the health endpoint until it answers; ``alive()`` False (the server died) stops early."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline and alive():
        try:
            ok, status, _ = client.call("health")
            if ok:
                return
            last = f"status {status}"
        except Unavailable as exc:
            last = str(exc)
        time.sleep(0.1)
    raise Unavailable(f"the server did not become healthy within {timeout:g} s ({last})")


# -- the plan: every request decided up front from the seed --------------------------------------------


@dataclass
class Request:
    phase: str
    at: float  # seconds after the phase starts
    rows: np.ndarray  # (n, 12) exactly as sent
    truth: list[str]  # the true label of each row
    feedback_delay: float | None  # seconds after the answer; None: this prediction gets no feedback
    # filled in when sent
    ok: bool = False
    status: str = ""
    latency_s: float = 0.0
    prediction_id: str | None = None
    labels: list[str] | None = None
    feedback_status: str | None = None  # "matched", "unmatched" or an error, once sent

    def right(self) -> int:
        """How many rows the server labelled correctly (0 for a failed request)."""
        return sum(p == t for p, t in zip(self.labels, self.truth, strict=True)) if self.labels else 0


@dataclass
class PhaseResult:
    phase: Phase
    start: float  # epoch seconds
    end: float
    requests: list[Request]

    def summary(self) -> str:
        reqs = self.requests
        ok = [r for r in reqs if r.ok]
        rows = sum(len(r.rows) for r in ok)
        lat = np.array([r.latency_s for r in reqs]) * 1000
        p50, p99 = np.percentile(lat, [50, 99]) if len(lat) else (0.0, 0.0)
        right = sum(r.right() for r in ok)
        accuracy = f"{right / rows:.1%}" if rows else "-"
        return (
            f"{self.phase.name:<7} {self.end - self.start:5.1f} s  {len(reqs):5d} requests  "
            f"{len(reqs) - len(ok):4d} failed  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
            f"accuracy {accuracy:>6}  ({self.phase.what})"
        )


@dataclass
class TrafficResult:
    phases: list[PhaseResult] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0

    @property
    def requests(self) -> list[Request]:
        return [r for p in self.phases for r in p.requests]

    def phase(self, name: str) -> PhaseResult:
        return next(p for p in self.phases if p.phase.name == name)


def drift(rows: np.ndarray, feature_names: Sequence[str]) -> np.ndarray:
    """The drift phase's inputs: the amount columns (``AMOUNT_FEATURES``) in cents, i.e. x CENTS_PER_DOLLAR."""
    factor = np.array([CENTS_PER_DOLLAR if name in AMOUNT_FEATURES else 1.0 for name in feature_names])
    return rows * factor


def jitter_scale(feature_names: Sequence[str]) -> np.ndarray:
    """Per column: NOISE for the continuous features, 0 for counts and flags (a card is present or not)."""
    return np.array([NOISE if name in CONTINUOUS_FEATURES else 0.0 for name in feature_names])


def plan(duration: float, rate: float, seed: int, phases: Sequence[Phase] = PHASES) -> dict[str, list[Request]]:
    """Every request of every phase: rows, schedule, truth and feedback, all from ``seed``."""
    rng = np.random.default_rng(seed)
    data = dataset()
    X, y = data.serve.X, data.serve.y
    noise = jitter_scale(data.feature_names)
    lo, hi = FEEDBACK_DELAY[0] * duration, FEEDBACK_DELAY[1] * duration
    out: dict[str, list[Request]] = {}
    for phase in phases:
        n = max(1, round(rate * duration * phase.share))
        requests = []
        for i in range(n):
            size = int(rng.integers(2, 5)) if rng.random() < BATCH_SHARE else 1
            pick = rng.integers(len(X), size=size)
            rows = X[pick] * (1 + rng.normal(0, 1, (size, X.shape[1])) * noise)
            if phase.drift:
                rows = drift(rows, data.feature_names)
            delay = float(rng.uniform(lo, hi)) if rng.random() < FEEDBACK_SHARE else None
            requests.append(Request(phase.name, i / rate, rows, [LABELS[k] for k in y[pick]], delay))
        out[phase.name] = requests
    return out


# -- running it ------------------------------------------------------------------------------------------


class FeedbackSender:
    """One thread sending feedback when it falls due (a heap ordered by due time)."""

    def __init__(self, client: HttpClient | GrpcClient) -> None:
        self.client = client
        self._heap: list[tuple[float, int, Request]] = []
        self._cond = threading.Condition()
        self._closing = False
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="feedback", daemon=True)
        self._thread.start()

    def schedule(self, due: float, request: Request) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (due, self._seq, request))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._heap:
                        if self._closing:
                            return
                        self._cond.wait()
                        continue
                    due = self._heap[0][0]
                    now = time.monotonic()
                    if due <= now:
                        request = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(due - now)
            body = {"prediction_id": request.prediction_id, "labels": request.truth}
            try:
                ok, status, _ = self.client.call("feedback", body)
                request.feedback_status = "matched" if ok else f"unmatched ({status})"
            except Unavailable as exc:
                request.feedback_status = f"error: {exc}"

    def finish(self, abandon: bool = False) -> None:
        """Send everything still scheduled (waiting for it to fall due), then stop; ``abandon``: drop it."""
        with self._cond:
            self._closing = True
            if abandon:
                self._heap.clear()
            self._cond.notify()
        self._thread.join()


def run(
    client: HttpClient | GrpcClient,
    duration: float = 60.0,
    rate: float = 40.0,
    seed: int = 1,
    workers: int = 32,
    phases: Sequence[Phase] = PHASES,
    out: Callable[[str], None] = print,
) -> TrafficResult:
    """Send every phase's requests on schedule, wait for the last feedback, and return what happened."""
    requests = plan(duration, rate, seed, phases)
    result = TrafficResult(start=time.time())
    feedback = FeedbackSender(client)

    def send(req: Request) -> None:
        started = time.perf_counter()
        try:
            req.ok, req.status, body = client.call("predict", {"rows": req.rows.tolist()})
        except Unavailable as exc:
            req.ok, req.status, body = False, f"unavailable: {exc}", {}
        req.latency_s = time.perf_counter() - started
        if req.ok:
            req.prediction_id, req.labels = body["prediction_id"], body["labels"]
            if req.feedback_delay is not None:
                feedback.schedule(time.monotonic() + req.feedback_delay, req)

    completed = False
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="traffic") as pool:
            for i, phase in enumerate(phases):
                ok, status, body = client.call("mode", {**phase.mode, "seed": seed + i})
                if not ok:
                    raise Unavailable(f"the server refused the fault mode ({status}: {body.get('error', body)})")
                start, t0 = time.time(), time.monotonic()
                pending = []
                for req in requests[phase.name]:
                    pause = t0 + req.at - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    pending.append(pool.submit(send, req))
                wait(pending)  # every request of this phase ran under this phase's mode
                for f in pending:
                    f.result()
                phase_result = PhaseResult(phase, start, time.time(), requests[phase.name])
                result.phases.append(phase_result)
                out(phase_result.summary())
        completed = True
    finally:
        try:
            client.call("mode", {"slow_ms": 0, "error_rate": 0})
        except Unavailable:
            pass
        feedback.finish(abandon=not completed)
    result.end = time.time()
    given = [r for r in result.requests if r.feedback_status is not None]
    matched = sum(r.feedback_status == "matched" for r in given)
    correct = sum(r.right() for r in given)
    items = sum(len(r.truth) for r in given)
    out(
        f"feedback {len(given)} labels sent {FEEDBACK_DELAY[0] * duration:.1f}-{FEEDBACK_DELAY[1] * duration:.1f} s "
        f"after their predictions, {matched} matched; {correct} of {items} predictions were right "
        f"({correct / max(items, 1):.1%})"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="base URL of the FastAPI or Flask server, e.g. http://127.0.0.1:8000")
    where.add_argument("--grpc", metavar="HOST:PORT", help="address of the gRPC server")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (default 60)")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second (default 40)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    client = connect(args.url, args.grpc)
    try:
        wait_healthy(client, timeout=10)
        run(client, args.duration, args.rate, args.seed)
    except Unavailable as exc:
        print(f"traffic: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
