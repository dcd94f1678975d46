"""The bundled gateway's file route (collector_config/gateway.yaml, alone or with profiles/file.yaml) under SIGTERM.

Real collector processes only: the loader of tests/e2e/test_collector_restart.py (a thread per signal posting OTLP/HTTP
protobuf, every data point / span / log record with a unique `seq` attribute) drives a real gateway, which is
stopped with SIGTERM in the middle of the load five times in a row, then started once more with no load. Afterwards
every acknowledged item is counted, exactly, in the gateway's three output files (one per signal). Spans take the
whole gateway path: load_balancing by trace id (persistent queue), the sampling tier's receiver, tail_sampling
(100 % kept here), batch, the traces file; every span also feeds span_metrics, whose timer pushes its points into the
metrics pipeline (measured, not exact: it does not export on shutdown, see the assertion). Two variants: the
sampling tier up (SIGTERM finds spans waiting in tail_sampling and batch), and the sampling tier unreachable until
the last start (every span waits in the persistent queue across the SIGTERMs).

Against the gateway.yaml before this test (one `file` exporter shared by the traces, metrics and logs pipelines,
each with a `batch` processor in front) both variants fail: a nil-pointer panic in contrib's file exporter (exit
code 2) on SIGTERM, and acknowledged items missing.

Cost on 2 shared cores (measured): ~18 s per variant. Needs the collector (`make collector`); missing, it fails
under MODELOTEL_CI=1.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from test_collector_restart import SIGNALS, Loader, read_seqs, sigterm_cycles

from collector_support import CONFIGS, Process, free_port, otelcol, wait_for, wait_http

pytestmark = pytest.mark.collector

GATEWAY = CONFIGS / "gateway.yaml"
CYCLES = 5
# Each start's first ~1.2 s, the load-balancing tier cannot reach its own sampling tier yet (gRPC connect backoff,
# its spans wait in the queue): 2.5 s of load per cycle lets spans reach span_metrics' 1 s timer in every cycle.
LOAD_PER_CYCLE_S = 2.5
# span_metrics' duration histogram (default namespace): its count is the spans counted. Not the `calls` counter:
# v0.161 emits a cumulative sum's first point of a process as 0, so a process that flushes once reports no calls.
SPAN_DURATION = "traces.span.metrics.duration"
OUTPUTS = {  # the file route's variables, one file per signal (gateway.yaml's header)
    "metrics": "MODELOTEL_FILE_EXPORT_PATH",
    "traces": "MODELOTEL_FILE_EXPORT_TRACES_PATH",
    "logs": "MODELOTEL_FILE_EXPORT_LOGS_PATH",
}


class Gateway:
    """gateway.yaml (+ a profile) on its own loopback ports, restartable on the same queue and files."""

    def __init__(self, tmp: Path, profile: str | None):
        self.tmp = tmp
        self.configs = [GATEWAY] + ([CONFIGS / "profiles" / f"{profile}.yaml"] if profile else [])
        self.health, self.http_port, sampling = free_port(), free_port(), free_port()
        self.sampling_backends = f"[127.0.0.1:{sampling}]"
        self.files = {s: tmp / f"gateway-{s}.jsonl" for s in SIGNALS}
        self.env = {
            "MODELOTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
            "MODELOTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
            "MODELOTEL_SAMPLING_GRPC_ENDPOINT": f"127.0.0.1:{sampling}",
            "MODELOTEL_SAMPLING_BACKENDS": self.sampling_backends,
            "MODELOTEL_HEALTH_ENDPOINT": f"127.0.0.1:{self.health}",
            "MODELOTEL_COLLECTOR_METRICS_PORT": str(free_port()),
            "MODELOTEL_QUEUE_DIR": str(tmp / "gateway-queue"),
            # Keep every span, decide and flush within a second, retry at least every second.
            "MODELOTEL_SAMPLING_PERCENT": "100",
            "MODELOTEL_DECISION_WAIT": "1s",
            "MODELOTEL_SPAN_METRICS_INTERVAL": "1s",
            "MODELOTEL_RETRY_MAX_INTERVAL": "1s",
            **{var: str(self.files[s]) for s, var in OUTPUTS.items()},
        }
        self.runs = 0
        self.proc: Process | None = None
        self.stop_seconds: list[float] = []

    def start(self) -> Gateway:
        self.runs += 1
        args = [otelcol()] + [a for c in self.configs for a in ("--config", str(c))]
        self.proc = Process(args, self.tmp / f"gateway-{self.runs}.log", env=self.env)
        wait_http(f"http://127.0.0.1:{self.health}/", timeout=60, proc=self.proc.proc)
        return self

    def sigterm(self, timeout: float = 30) -> tuple[int, str]:
        """SIGTERM, wait for the exit; the exit code and everything the process wrote."""
        assert self.proc is not None
        start = time.monotonic()
        self.proc.proc.send_signal(signal.SIGTERM)
        rc = self.proc.proc.wait(timeout)
        self.stop_seconds.append(time.monotonic() - start)
        self.proc.stop()
        return rc, self.proc.output()

    def written(self) -> tuple[dict[str, Counter], int]:
        """Every `seq` in the three files (each signal counted wherever it is), and the torn lines."""
        total = {s: Counter() for s in SIGNALS}
        bad = 0
        for path in set(self.files.values()):
            counts, torn = read_seqs(path)
            bad += torn
            for s in SIGNALS:
                total[s].update(counts[s])
        return total, bad


def span_metric_count(path: Path) -> int:
    """Spans counted by span_metrics: the latest cumulative count of every duration series, summed. A restarted
    gateway starts new series (its own collector.instance.id), so the processes' counts add up."""
    latest: dict[str, tuple[int, int]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        for rm in json.loads(line).get("resourceMetrics", []):
            for sm in rm.get("scopeMetrics", []):
                for metric in sm.get("metrics", []):
                    if metric["name"] != SPAN_DURATION:
                        continue
                    for point in metric["histogram"]["dataPoints"]:
                        key = json.dumps([rm.get("resource"), point.get("attributes")], sort_keys=True)
                        t = int(point["timeUnixNano"])
                        if key not in latest or t >= latest[key][0]:
                            latest[key] = (t, int(point["count"]))
    return sum(count for _, count in latest.values())


@pytest.mark.parametrize(
    "profile, sampling_tier_down",
    [(None, False), ("file", True)],
    ids=["default-spans-through-tail-sampling", "profile-file-spans-queued-for-the-restart"],
)
def test_gateway_sigterm_under_load_loses_nothing(tmp_path, profile, sampling_tier_down):
    """SIGTERM x5 in the middle of load: exit 0 and no panic every time; after one more start (no load) every
    acknowledged data point, span and log record is in the gateway's files exactly once, in its own signal's file.

    With the sampling tier up, SIGTERM finds spans waiting in tail_sampling (decision_wait 1 s): they are decided
    and written on the way out. With it down (its address refuses connections until the last start), every span
    stays in the load-balancing tier's persistent queue across the five SIGTERMs and is written after the restart."""
    gateway = Gateway(tmp_path, profile)
    if sampling_tier_down:
        gateway.env["MODELOTEL_SAMPLING_BACKENDS"] = f"[127.0.0.1:{free_port()}]"
    loader = Loader(gateway.http_port)
    exits: list[tuple[int, str]] = []
    try:
        gateway.start()
        loader.start()
        exits = sigterm_cycles(gateway, loader, CYCLES, LOAD_PER_CYCLE_S)
        loader.stop()
        for rc, output in exits:
            assert "panic" not in output, output[-6000:]
            assert rc == 0, output[-4000:]

        # One more start, no load: spans kept in the load-balancing queue go through sampling to the file.
        before_restart = {s: sum(c.values()) for s, c in gateway.written()[0].items()}
        if sampling_tier_down:
            assert before_restart["traces"] == 0, "spans passed a sampling tier that was down"
            gateway.env["MODELOTEL_SAMPLING_BACKENDS"] = gateway.sampling_backends
        gateway.start()
        try:
            wait_for(
                lambda: all(loader.acked[s] <= set(gateway.written()[0][s]) for s in SIGNALS),
                timeout=30,
                what="every acknowledged item in the gateway's files",
            )
            time.sleep(1.5)  # a duplicate replayed late would show up now
        finally:
            rc, output = gateway.sigterm()
        assert rc == 0 and "panic" not in output, output[-4000:]
    finally:
        loader.stop()
        if gateway.proc is not None:
            gateway.proc.stop()

    acked = {s: len(a) for s, a in loader.acked.items()}
    assert all(n >= 1000 for n in acked.values()), (acked, loader.refused)
    written, bad = gateway.written()
    spans, counted = sum(written["traces"].values()), span_metric_count(gateway.files["metrics"])
    print(
        f"acknowledged {acked}, not acknowledged {dict(loader.refused)}, "
        f"written {[sum(written[s].values()) for s in SIGNALS]}, of them after the last restart "
        f"{[sum(written[s].values()) - before_restart[s] for s in SIGNALS]}, "
        f"SIGTERM to exit {[round(t, 2) for t in gateway.stop_seconds]} s, "
        f"spans counted by span_metrics {counted} of {spans}"
    )
    assert bad == 0
    for s in SIGNALS:
        missing = loader.acked[s] - set(written[s])
        assert not missing, f"{s}: {len(missing)} of {acked[s]} acknowledged items are not in the files"
        assert set(written[s]) <= loader.sent[s]
        assert max(written[s].values()) == 1, f"{s}: duplicates in the files"
        # one file per signal: nothing of another signal in it
        own, _ = read_seqs(gateway.files[s])
        assert sum(own[s].values()) == sum(written[s].values())
    # span_metrics fed the metrics pipeline during the SIGTERM cycles, never counting a span twice. It does not export
    # on shutdown: what it counted since its last flush (1 s here) before each SIGTERM is missing (a documented limit).
    assert 0 < counted <= spans
    if sampling_tier_down:  # every span arrived after the last start, long before its SIGTERM
        assert counted == spans
