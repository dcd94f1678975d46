"""`make demo`: serve the example model, drive a minute of traffic, and judge it with the evaluator.

    python examples/demo.py [--server fastapi|flask|grpc] [--duration 60] [--out out/demo] [--traces]

1. Starts one example server (FastAPI by default) as a subprocess on a free loopback port. Its telemetry
   goes straight to ``<out>/telemetry.jsonl`` (modelotel's embedded file exporter), or, when
   ``MODELOTEL_OTELCOL`` names a built collector (``make collector``), over OTLP through the collector's
   agent config (``collector_config/agent.yaml``), whose file exporter writes the same file.
2. Runs examples/traffic.py: normal traffic, a slow period, an error burst, drifted inputs, delayed feedback.
3. Stops the server (SIGTERM: it exports what is left) and the collector, whatever happened (Ctrl-C too).
4. Runs the evaluator on the file: the SLOs of examples/slo.yaml as they stood at the end of the slow
   period and at the end of the run, drift between the normal and the drifted phase, and the HTML report.

Exit status 0 when everything ran (failing SLOs are the point of the demo, not an error).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import traffic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SLO_SPEC = HERE / "slo.yaml"
AGENT_CONFIG = ROOT / "collector_config" / "agent.yaml"
SERVERS = ("fastapi", "flask", "grpc")
STOP_TIMEOUT_S = 20.0
EXPORT_INTERVAL_S = 1.0  # the servers' metric export interval: one point a second, enough for 10 s burn windows


class DemoError(Exception):
    """Something the demo cannot go on without; printed as one line."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A subprocess in its own process group (so Ctrl-C reaches only us and we stop it in order), with its
    output in a log file. ``stop()`` sends SIGTERM to the group, waits, and kills what is left."""

    def __init__(self, name: str, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.name, self.log = name, log
        self._fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self._fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} did not stop within {STOP_TIMEOUT_S:g} s: killed (see {self.log})")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything the child left behind in its group
        self.proc.wait()
        self._fh.close()
        return self.proc.returncode

    def tail(self, lines: int = 20) -> str:
        self._fh.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def wait_until(ready, child: Child, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise DemoError(f"{child.name} exited with status {child.proc.returncode}:\n{child.tail()}")
        if ready():
            return
        time.sleep(0.1)
    raise DemoError(f"{what} not ready within {timeout:g} s:\n{child.tail()}")


def start_collector(binary: str, out: Path, telemetry: Path) -> tuple[Child, str]:
    """The agent collector writing OTLP JSON lines to ``telemetry``; returns it and its OTLP/gRPC endpoint."""
    grpc_port, health_port = free_port(), free_port()
    env = {
        **os.environ,
        "MODELOTEL_EXPORTERS": "[file]",
        "MODELOTEL_FILE_EXPORT_PATH": str(telemetry),
        "MODELOTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}",
        "MODELOTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "MODELOTEL_HEALTH_ENDPOINT": f"127.0.0.1:{health_port}",
        "MODELOTEL_COLLECTOR_METRICS_PORT": str(free_port()),
        "MODELOTEL_QUEUE_DIR": str(out / "collector-queue"),
    }
    child = Child("collector", [binary, "--config", str(AGENT_CONFIG)], out / "collector.log", env)

    def healthy() -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    try:
        wait_until(healthy, child, 60, "the collector")
    except BaseException:
        child.stop()
        raise
    return child, f"http://127.0.0.1:{grpc_port}"


FEEDBACK_KEY = secrets.token_urlsafe(24)


def server_env(telemetry: Path, otlp_endpoint: str | None, traces: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELOTEL_"))}
    env["OTEL_METRIC_EXPORT_INTERVAL"] = str(int(EXPORT_INTERVAL_S * 1000))
    env["MODELOTEL_TRACES"] = "span" if traces else "off"
    # One secret per demo run, shared by its processes: prediction ids from last_prediction_id() are signed with it,
    # so any process holding it could judge them (docs/instrumentation.md); set, it also gives every call an id.
    env["MODELOTEL_FEEDBACK_KEY"] = FEEDBACK_KEY
    if otlp_endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_endpoint
        env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
        env["OTEL_TRACES_EXPORTER"] = "otlp" if traces else "none"
    else:
        env["MODELOTEL_EXPORT_FILE"] = str(telemetry)
    if "MODELOTEL_EXAMPLES_CACHE" in os.environ:
        env["MODELOTEL_EXAMPLES_CACHE"] = os.environ["MODELOTEL_EXAMPLES_CACHE"]
    return env


def start_server(kind: str, out: Path, env: dict[str, str]) -> tuple[Child, traffic.HttpClient | traffic.GrpcClient]:
    port = free_port()
    args = [sys.executable, str(HERE / f"{kind}_server.py"), "--port", str(port), "--allow-faults"]
    child = Child(f"{kind} server", args, out / "server.log", env)
    client = (
        traffic.connect(grpc_target=f"127.0.0.1:{port}")
        if kind == "grpc"
        else traffic.connect(url=f"http://127.0.0.1:{port}")
    )
    try:
        traffic.wait_healthy(client, timeout=60, alive=child.alive)
    except traffic.Unavailable as exc:
        client.close()
        child.stop()
        raise DemoError(f"{exc}\n{child.tail()}") from None
    return child, client


# -- the evaluator -----------------------------------------------------------------------------------------


def modelotel_command(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "modelotel", *args], capture_output=True, text=True, timeout=300)
    if check and proc.returncode not in (0, 1, 2):  # 1 (drift found) and 2 (too little data) are results
        raise DemoError(f"modelotel {args[0]} failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc


def has_command(name: str) -> bool:
    return modelotel_command(name, "--help", check=False).returncode == 0


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def clock(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%H:%M:%S")


def evaluate(telemetry: Path, result: traffic.TrafficResult, out: Path) -> list[Path]:
    """Print the SLO tables and drift, write the report; returns the files written."""
    written: list[Path] = []
    data = ["--slo", str(SLO_SPEC), "--data", str(telemetry)]
    if not has_command("evaluate"):
        print("\n(note) this modelotel has no `evaluate` command yet: skipping the SLO evaluation. Run it later:")
        print(f"  python -m modelotel evaluate {' '.join(data)}")
        return written
    slow = result.phase("slow")
    # A metric point is stamped when it is exported: the slow period's last second of calls arrives up to
    # one export interval after its end. Judged at its very end, a short slow period (the tests run a 6 s
    # demo: 1.2 s slow) could count only part of its calls, and whether the page fires would be luck. So
    # judge a little later, but before the drifted inputs that follow the error burst.
    at = min(slow.end + 1.5 * EXPORT_INTERVAL_S, result.phase("errors").end)
    print(f"\n== SLOs at the end of the slow period ({clock(at)}, once its last export is in) ==")
    print(modelotel_command("evaluate", *data, "--at", f"{at:.3f}").stdout.rstrip())
    print(f"\n== SLOs at the end of the run ({clock(result.end)}) ==")
    print(modelotel_command("evaluate", *data).stdout.rstrip())

    normal, drifted = result.phase("normal"), result.phase("drift")
    windows = ["--reference", f"{iso(normal.start)}..{iso(normal.end)}"]
    windows += ["--current", f"{iso(drifted.start)}..{iso(drifted.end)}"]
    if has_command("drift"):
        print(f"\n== drift: the drift phase ({clock(drifted.start)}-{clock(drifted.end)}) against the normal one ==")
        print(modelotel_command("drift", "--data", str(telemetry), *windows).stdout.rstrip())
    if has_command("report"):
        report = out / "report.html"
        modelotel_command("report", *data, *windows, "--output", str(report), "--force")
        written.append(report)
    else:
        print("\n(note) this modelotel has no `report` command yet: no HTML report.")
    return written


# -- main ------------------------------------------------------------------------------------------------


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    telemetry = out / "telemetry.jsonl"
    for stale in (telemetry, out / "report.html"):
        stale.unlink(missing_ok=True)  # both exporters append: start from an empty file
    shutil.rmtree(out / "collector-queue", ignore_errors=True)

    collector_bin = os.environ.get("MODELOTEL_OTELCOL")
    use_collector = bool(collector_bin) and os.access(collector_bin, os.X_OK) and not args.no_collector
    collector: Child | None = None
    server: Child | None = None
    client = None
    started = time.monotonic()
    try:
        endpoint = None
        if use_collector:
            collector, endpoint = start_collector(collector_bin, out, telemetry)  # type: ignore[arg-type]
            route = f"OTLP -> collector ({AGENT_CONFIG.relative_to(ROOT)}) -> {telemetry}"
        else:
            route = f"modelotel's file exporter -> {telemetry}"
        server, client = start_server(args.server, out, server_env(telemetry, endpoint, args.traces))
        print(f"{args.server} server up in {time.monotonic() - started:.1f} s; telemetry: {route}")
        print(f"traffic for {args.duration:g} s at {args.rate:g} requests/s (seed {args.seed}):")
        result = traffic.run(client, args.duration, args.rate, args.seed)
    finally:
        if client is not None:
            client.close()
        for child in (server, collector):  # the server first: it exports its last data on the way out
            if child is not None:
                code = child.stop()
                if code not in (0, -signal.SIGTERM):
                    print(f"  {child.name} exited with status {code} (log: {child.log})")
    if not telemetry.exists() or telemetry.stat().st_size == 0:
        raise DemoError(f"no telemetry was written to {telemetry}")
    print(f"server stopped; {telemetry.stat().st_size / 1e6:.1f} MB of telemetry")

    written = evaluate(telemetry, result, out)
    print(f"\ndone in {time.monotonic() - started:.0f} s. Files in {out}:")
    for path in [telemetry, *written, out / "server.log", *([out / "collector.log"] if collector else [])]:
        print(f"  {path.name:<16} {describe(path)}")
    return 0


def describe(path: Path) -> str:
    return {
        "telemetry.jsonl": "OTLP JSON lines (metrics; spans too with --traces), the collector's file format",
        "report.html": "the HTML report: SLOs, budgets, burn rates, latency, drift",
        "server.log": "the server's log: startup, a request summary every 10 s, what it flushed at shutdown",
        "collector.log": "the collector's output",
    }.get(path.name, "")


def interrupt(signum: int, frame: object) -> None:
    """SIGTERM (e.g. from CI) unwinds like Ctrl-C, so the servers are still stopped in order."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=SERVERS, default="fastapi")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (default 60)")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second (default 40)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="out/demo", help="output directory (default out/demo)")
    parser.add_argument("--traces", action="store_true", help="also export a span per request and prediction")
    parser.add_argument("--no-collector", action="store_true", help="ignore MODELOTEL_OTELCOL: file export only")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        return run_demo(args)
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except traffic.Unavailable as exc:
        print(f"demo: the server stopped answering: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted; servers stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
