"""Finding and running the real collector (and other external binaries) in tests.

A binary that is missing makes the test FAIL when MODELOTEL_CI is set (CI must exercise the real
parts) and skip with the reason on a developer machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "collector_config"


def require_binary(path: str | None, what: str, how: str) -> str:
    """The binary's path, or fail (CI) / skip (developer machine) with a clear reason."""
    if path and os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    reason = f"{what} not found ({how})"
    if os.environ.get("MODELOTEL_CI"):
        pytest.fail(f"{reason}; CI must run this test")
    pytest.skip(reason)


def otelcol() -> str:
    """The modelotel collector: $MODELOTEL_OTELCOL (set by `make test`) or a `make collector` build."""
    path = os.environ.get("MODELOTEL_OTELCOL")
    if not path:
        try:
            out = (
                subprocess.run(
                    ["bash", str(CONFIGS / "build.sh")], capture_output=True, text=True, timeout=1800, check=True
                )
                .stdout.strip()
                .splitlines()
            )
            path = out[-1] if out else None
        except (subprocess.SubprocessError, OSError):
            path = None
    return require_binary(path, "the modelotel collector", "run `make collector`")


def which(name: str, how: str) -> str:
    return require_binary(shutil.which(name), name, how)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
    """Send `sig` (servers flush on a graceful stop), wait, and kill if it does not exit in time."""
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def wait_http(url: str, timeout: float = 60, proc: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 2xx, or fail with the process's output."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"process exited with {proc.returncode} before {url} answered:\n{out}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if 200 <= resp.status < 300:
                    return
        except Exception as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s: {last}")


class Process:
    """A subprocess whose combined output goes to a file; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None):
        self.log = log
        self._fh = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, stdout=self._fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd
        )

    def output(self) -> str:
        if not self._fh.closed:  # stopped: everything is on disk already
            self._fh.flush()
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._fh.close()
        return self.proc.returncode

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_collector(config: Path | str, env: dict[str, str], log: Path, health_port: int) -> Process:
    """Start the collector with `config` and wait for its health_check extension on `health_port`."""
    proc = Process(
        [otelcol(), "--config", str(config)], log, env={**env, "MODELOTEL_HEALTH_ENDPOINT": f"127.0.0.1:{health_port}"}
    )
    try:
        wait_http(f"http://127.0.0.1:{health_port}/", timeout=60, proc=proc.proc)
    except AssertionError:
        proc.stop()
        raise AssertionError(f"collector did not become healthy:\n{proc.output()[-4000:]}") from None
    return proc


@contextlib.contextmanager
def run_prometheus(
    workdir: Path, config: Path | None = None, features: tuple[str, ...] = ("native-histograms",)
) -> Iterator[tuple[str, Process]]:
    """Debian's Prometheus on a free loopback port with the remote-write receiver and native histograms
    (our collector's Grafana route needs both; ``features`` may add ``exemplar-storage``); yields
    ``(base_url, process)``."""
    prom_bin = which("prometheus", "CI: apt-get install -y --no-install-recommends prometheus")
    port = free_port()
    args = [
        prom_bin,
        f"--config.file={config or CONFIGS / 'prometheus.yaml'}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-remote-write-receiver",
        f"--enable-feature={','.join(features)}",
    ]
    with Process(args, workdir / "prometheus.log", cwd=workdir) as prom:
        try:
            wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=60, proc=prom.proc)
        except AssertionError:
            raise AssertionError(f"prometheus did not start:\n{prom.output()[-4000:]}") from None
        yield f"http://127.0.0.1:{port}", prom


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def flushable_uvicorn_app(app: str, env: dict[str, str], log: Path) -> Iterator[str]:
    """``tests.apps.<module>:app`` under a real uvicorn process on a free loopback port, with this checkout's sdk/
    first on the path; yields its URL once its ``POST /flush`` answers 200, stops it (SIGTERM) on the way out."""
    port = free_port()
    env = {**env, "PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), str(ROOT), env.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            return True
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{url}/flush", method="POST"), timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    try:
        wait_for(up, 30, "uvicorn to start")
        assert proc.poll() is None, log.read_text()
        yield url
    finally:
        stop_process(proc)
