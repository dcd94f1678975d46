"""Restarts with real processes and real signals: nothing recorded is lost when a process ends.

Every test runs a real process (werkzeug ``app.run()``, uvicorn, gunicorn with sync workers,
``multiprocessing`` Process and Pool workers, a plain script) with a 60 s export interval, so only the
export at the process's end can deliver anything, then reads the OTLP-JSON file it wrote.

Servers are stopped by SIGTERM while two client threads keep sending requests. What "exact" means:
every request whose response the client had before the SIGTERM was sent is counted; a request cut by
the shutdown (the client saw an error) may be counted or not; nothing is counted that was not sent.
Servers that drain gracefully (uvicorn, gunicorn) answer what they accepted, so there the count equals
the answered requests exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
import requests

from modelotel import conventions as conv
from modelotel.config import SIGTERM_FLUSH_TIMEOUT_S

from collector_support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
LONG_INTERVAL_MS = "60000"  # only the export at the end can deliver
ROUTE = "http.route"


# -- reading what was exported ---------------------------------------------------------------------------


def _attrs(items) -> dict:
    return {a["key"]: next(iter(a["value"].values()), None) for a in items or ()}


def read_telemetry(path: Path, route: str | None = None) -> tuple[dict, dict]:
    """({metric: {service.instance.id: highest cumulative count}}, {service.instance.id: span count}).

    ``route`` keeps only HTTP points of that route. Each process exports cumulative counts under its own
    service.instance.id, so the sum over instances of each one's highest count is what was recorded.
    """
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    spans: dict[str, int] = defaultdict(int)
    if not path.exists():
        return counts, spans
    with open(path) as fh:
        for line in fh:
            obj = json.loads(line)
            for rm in obj.get("resourceMetrics", []):
                iid = _attrs(rm["resource"].get("attributes"))["service.instance.id"]
                per_line: dict[str, int] = defaultdict(int)
                for sm in rm.get("scopeMetrics", []):
                    for m in sm.get("metrics", []):
                        data = m.get("exponentialHistogram") or m.get("histogram")
                        if not data:
                            continue
                        for p in data["dataPoints"]:
                            if route is not None and _attrs(p.get("attributes")).get(ROUTE, route) != route:
                                continue
                            per_line[m["name"]] += int(p["count"])
                for name, n in per_line.items():
                    counts[name][iid] = max(counts[name].get(iid, 0), n)
            for rs in obj.get("resourceSpans", []):
                iid = _attrs(rs["resource"].get("attributes"))["service.instance.id"]
                spans[iid] += sum(len(ss.get("spans", [])) for ss in rs.get("scopeSpans", []))
    return counts, spans


def recorded(path: Path, metric: str, route: str | None = None) -> int:
    return sum(read_telemetry(path, route)[0].get(metric, {}).values())


# -- servers under load ----------------------------------------------------------------------------------


class Load:
    """Client threads POSTing on fresh connections; each answered request is timed, each failure counted."""

    def __init__(self, url: str, threads: int = 2) -> None:
        self.url = url
        self.answered: list[float] = []  # monotonic time each response arrived
        self.failed = 0
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                r = requests.post(self.url, headers={"Connection": "close"}, timeout=10)
                ok = r.status_code == 200
                pid = r.json()["pid"] if ok else None
            except (requests.RequestException, ValueError):
                ok, pid = False, None
            with self._lock:
                if ok:
                    self.answered.append(time.monotonic())
                    self.pids.add(pid)
                else:
                    self.failed += 1
            if not ok:
                time.sleep(0.005)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def answered_before(self, t: float) -> int:
        with self._lock:
            return sum(1 for done in self.answered if done < t)


def _server_env(path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, MODELOTEL_EXPORT_FILE=str(path), OTEL_METRIC_EXPORT_INTERVAL=LONG_INTERVAL_MS)
    env.pop("MODELOTEL_SIGTERM_FLUSH", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _run_under_load_then_sigterm(cmd: list[str], path: Path, port: int, workers: int = 1) -> tuple[Load, float, int]:
    """Start the server, load it for ~1.5 s (until every worker answered), SIGTERM it mid-load, stop the load
    once it exited. Returns (load, time the signal was sent, return code)."""
    log = path.with_suffix(".log")
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_server_env(path), stdout=log_fh, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/predict"
        with Load(url) as load:
            wait_for(lambda: len(load.answered) >= 20 or proc.poll() is not None, 30, "the server to answer")
            assert proc.poll() is None, log.read_text()
            started = time.monotonic()
            wait_for(lambda: time.monotonic() - started > 1.5 and len(load.pids) >= workers, 20, "every worker")
            assert not path.exists() or path.stat().st_size == 0, "exported before the end: the interval is 60 s"
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=20)
        return load, signalled, rc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        print(log.read_text())


def _assert_counts(load: Load, signalled: float, path: Path, *, graceful: bool) -> None:
    answered = len(load.answered)
    before = load.answered_before(signalled)
    http = recorded(path, conv.HTTP_SERVER_DURATION, "/predict")
    calls = recorded(path, conv.INFERENCE_DURATION)
    print(f"answered {answered} ({before} before the signal), failed {load.failed}, recorded {http} / {calls}")
    assert before > 50, f"too little load to mean anything ({before} requests)"
    if graceful:  # what was accepted was answered, and everything answered was recorded
        assert http == calls == answered, (http, calls, answered, load.failed)
    else:
        assert before <= http <= answered + load.failed, (before, http, answered, load.failed)
        assert before <= calls <= answered + load.failed, (before, calls, answered, load.failed)


def test_werkzeug_app_run_sigterm_exports_everything_and_dies_by_the_signal(tmp_path):
    path = tmp_path / "werkzeug.jsonl"
    port = free_port()
    cmd = [sys.executable, str(ROOT / "tests" / "apps" / "restart_app.py"), str(port)]
    load, signalled, rc = _run_under_load_then_sigterm(cmd, path, port)
    assert rc == -signal.SIGTERM  # the signal is not swallowed: the process ends as SIGTERM ends it
    _assert_counts(load, signalled, path, graceful=False)


def test_uvicorn_sigterm_exports_everything(tmp_path):
    path = tmp_path / "uvicorn.jsonl"
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "tests.apps.restart_app:asgi_app", "--port", str(port)]
    cmd += ["--host", "127.0.0.1", "--no-access-log", "--timeout-graceful-shutdown", "10"]
    load, signalled, rc = _run_under_load_then_sigterm(cmd, path, port)
    assert rc == -signal.SIGTERM  # uvicorn re-raises SIGTERM after its graceful shutdown
    _assert_counts(load, signalled, path, graceful=True)


def test_gunicorn_sync_workers_sigterm_export_everything(tmp_path):
    path = tmp_path / "gunicorn.jsonl"
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{port}"]
    cmd += ["--graceful-timeout", "10", "tests.apps.restart_app:flask_app"]
    load, signalled, rc = _run_under_load_then_sigterm(cmd, path, port, workers=2)
    assert rc == 0
    _assert_counts(load, signalled, path, graceful=True)
    assert len(read_telemetry(path)[0][conv.INFERENCE_DURATION]) == 2  # one series set per worker


# -- plain processes and SIGTERM ---------------------------------------------------------------------------

_SCRIPT_HEAD = """
import os, signal, sys, time
import modelotel
"""


def _run_script(body: str, path: Path, *, sigterm: bool = True, env: dict | None = None, timeout: float = 30):
    """Run a script that prints 'ready' when it has recorded its calls; SIGTERM it then. (proc, seconds to die)."""
    script = _SCRIPT_HEAD + textwrap.dedent(body)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env or _server_env(path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _expect_line(proc, "ready")
    t0 = time.monotonic()
    if sigterm:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc, time.monotonic() - t0


def _expect_line(proc: subprocess.Popen, expected: str) -> None:
    line = proc.stdout.readline().strip()
    if line != expected:
        proc.kill()  # before reading its stderr: it may never end by itself
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"expected {expected!r}, got {line!r}: {err}")


_RECORD_37 = """
predict = modelotel.instrument_model(name="sigterm-model")(lambda x: x)
for _ in range(37):
    predict(1)
print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and "ready-default" or "ready", flush=True)
time.sleep(60)
"""


def test_sigterm_with_the_default_action_exports_then_dies_by_the_signal(tmp_path):
    path = tmp_path / "t.jsonl"
    proc, took = _run_script(_RECORD_37, path)
    assert proc.returncode == -signal.SIGTERM, proc.stderr.read()
    assert recorded(path, conv.INFERENCE_DURATION) == 37
    assert took < 5


def test_sigterm_while_the_main_thread_starts_a_thread_does_not_deadlock(tmp_path):
    """werkzeug's threaded server starts a thread per request from the main thread; Thread.start holds the
    threading module's lock, so a handler that started a thread itself would block on it for good."""
    path = tmp_path / "t.jsonl"
    body = _RECORD_37.replace("time.sleep(60)", "")
    body += textwrap.dedent("""
    import threading
    with threading._active_limbo_lock:  # where Thread.start is when the signal lands
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)
    """)
    proc, took = _run_script(body, path, sigterm=False, timeout=SIGTERM_FLUSH_TIMEOUT_S + 10)
    assert proc.returncode == -signal.SIGTERM
    assert recorded(path, conv.INFERENCE_DURATION) == 37
    assert took < SIGTERM_FLUSH_TIMEOUT_S


def test_sigkill_costs_what_was_recorded_since_the_last_export(tmp_path):
    """SIGKILL cannot be handled: what the last periodic export delivered stays, the calls after it are lost."""
    path = tmp_path / "t.jsonl"
    script = _SCRIPT_HEAD + textwrap.dedent("""
    modelotel.configure(export_interval=3)
    predict = modelotel.instrument_model(name="sigkill-model")(lambda x: x)
    for _ in range(37):
        predict(1)
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(5):
        predict(1)
    print("recorded", flush=True)
    time.sleep(60)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=_server_env(path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _expect_line(proc, "ready")
        wait_for(lambda: recorded(path, conv.INFERENCE_DURATION) == 37, 10, "the periodic export", interval=0.05)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        _expect_line(proc, "recorded")
        proc.send_signal(signal.SIGKILL)  # well within the 3 s until the next export
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert recorded(path, conv.INFERENCE_DURATION) == 37  # the 5 calls after the last export are gone


def test_sigterm_chains_to_the_applications_handler(tmp_path):
    path = tmp_path / "t.jsonl"
    body = (
        textwrap.dedent("""
    def on_term(signum, frame):
        print("app handler ran", flush=True)
        sys.exit(3)
    signal.signal(signal.SIGTERM, on_term)
    """)
        + _RECORD_37
    )
    proc, _ = _run_script(body, path)
    assert proc.returncode == 3  # the application's handler decided how the process ends
    assert "app handler ran" in proc.stdout.read()
    assert recorded(path, conv.INFERENCE_DURATION) == 37


def test_an_ignored_sigterm_stays_ignored(tmp_path):
    path = tmp_path / "t.jsonl"
    body = "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + _RECORD_37
    proc, took = _run_script(body, path, timeout=1.5)
    assert proc.returncode == -signal.SIGKILL  # still running after SIGTERM: we had to kill it
    assert took >= 1.5


@pytest.mark.parametrize("how", ["environment", "configure", "configure-after-decorating"])
def test_sigterm_opt_out_leaves_the_default_action(tmp_path, how):
    path = tmp_path / "t.jsonl"
    env = _server_env(path, MODELOTEL_SIGTERM_FLUSH="0") if how == "environment" else None
    body = _RECORD_37
    if how == "configure":
        body = "modelotel.configure(sigterm_flush=False)\n" + _RECORD_37
    elif how == "configure-after-decorating":  # the handler the decorator installed is taken out again
        body = _RECORD_37.replace("for _ in", "modelotel.configure(sigterm_flush=False)\nfor _ in", 1)
    script = _SCRIPT_HEAD + textwrap.dedent(body)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env or _server_env(path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _expect_line(proc, "ready-default")  # our handler is not installed
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == -signal.SIGTERM
    assert recorded(path, conv.INFERENCE_DURATION) == 0  # the documented cost of opting out


def test_sigterm_with_a_stuck_exporter_still_ends_the_process_in_bounded_time(tmp_path):
    """An exporter that never returns (a hung collector) must not turn SIGTERM into a hang."""
    path = tmp_path / "t.jsonl"
    body = (
        textwrap.dedent("""
    import threading
    from opentelemetry.sdk.metrics.export import MetricExporter

    class Stuck(MetricExporter):
        def export(self, metrics_data, timeout_millis=10_000, **kwargs):
            threading.Event().wait()
        def force_flush(self, timeout_millis=10_000):
            return True
        def shutdown(self, timeout_millis=30_000, **kwargs):
            pass

    modelotel.configure(exporter=Stuck(), export_interval=3600)
    """)
        + _RECORD_37
    )
    proc, took = _run_script(body, path, timeout=SIGTERM_FLUSH_TIMEOUT_S + 10)
    assert proc.returncode == -signal.SIGTERM
    assert SIGTERM_FLUSH_TIMEOUT_S - 0.5 <= took < SIGTERM_FLUSH_TIMEOUT_S + 3


# -- forks and multiprocessing ----------------------------------------------------------------------------


def _run(script: str, path: Path, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        env=_server_env(path, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_forked_child_exports_its_spans_under_the_same_instance_id_as_its_metrics(tmp_path):
    path = tmp_path / "fork.jsonl"
    script = f"""
    import os, modelotel
    modelotel.configure(service_name="forky", exporter="file", path={str(path)!r}, export_interval=3600, traces=True)
    predict = modelotel.instrument_model(name="forked")(lambda x: x)
    predict(1)
    pid = os.fork()
    if pid == 0:
        for _ in range(100):
            predict(1)
        modelotel.shutdown()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    modelotel.shutdown()
    """
    _run(script, path)
    counts, spans = read_telemetry(path)
    metrics = counts[conv.INFERENCE_DURATION]
    assert sorted(metrics.values()) == [1, 100]
    assert spans == metrics  # every span exported, under the metrics' service.instance.id


_MP_HEAD = """
import multiprocessing as mp, os, sys, time
import modelotel

predict = modelotel.instrument_model(name="mp-model")(lambda x: x)
"""


def test_multiprocessing_process_workers_lose_nothing(tmp_path):
    path = tmp_path / "mp.jsonl"
    script = _MP_HEAD + textwrap.dedent("""
    def work(n):
        for _ in range(n):
            predict(1)

    if __name__ == "__main__":
        ctx = mp.get_context("fork")
        procs = [ctx.Process(target=work, args=(201,)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            assert p.exitcode == 0, p.exitcode
    """)
    _run(script, path, MODELOTEL_TRACES="span")
    counts, spans = read_telemetry(path)
    metrics = counts[conv.INFERENCE_DURATION]
    assert sorted(metrics.values()) == [201, 201, 201]
    assert spans == metrics  # each worker's spans too, under its own id


@pytest.mark.parametrize("ending", ["close-join", "terminate"])
def test_multiprocessing_pool_workers_lose_nothing(tmp_path, ending):
    """close()+join(): workers exit through multiprocessing's exit path (os._exit, no atexit); leaving
    ``with Pool()`` (terminate()): idle workers get SIGTERM."""
    path = tmp_path / "pool.jsonl"
    script = _MP_HEAD + textwrap.dedent(f"""
    def work(i):
        return predict(i)

    if __name__ == "__main__":
        ctx = mp.get_context("fork")
        pool = ctx.Pool(4)
        assert sum(pool.map(work, range(8014), chunksize=16)) == sum(range(8014))
        if {ending!r} == "terminate":
            pool.terminate()
        else:
            pool.close()
        pool.join()
    """)
    _run(script, path)
    counts, _ = read_telemetry(path)
    assert sum(counts[conv.INFERENCE_DURATION].values()) == 8014
    assert len(counts[conv.INFERENCE_DURATION]) == 4


def test_multiprocessing_pool_terminated_mid_load(tmp_path):
    """terminate() while every worker is busy: each call that returned is counted; the calls cut by the signal
    are not (at most one per worker can have been recorded without its completion being noted)."""
    path = tmp_path / "pool.jsonl"
    done = tmp_path / "done"
    script = _MP_HEAD + textwrap.dedent(f"""
    slow = modelotel.instrument_model(name="mp-model")(lambda x: time.sleep(0.0005) or x)

    def work(i):
        slow(i)
        fd = os.open({str(done)!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, b".")  # one byte per completed call (O_APPEND: atomic across processes)
        os.close(fd)

    if __name__ == "__main__":
        ctx = mp.get_context("fork")
        pool = ctx.Pool(4)
        results = pool.imap_unordered(work, range(10**7))
        time.sleep(1.5)
        pool.terminate()
        pool.join()
    """)
    _run(script, path)
    completed = done.stat().st_size
    calls = recorded(path, conv.INFERENCE_DURATION)
    assert completed > 100
    assert completed <= calls <= completed + 4, (completed, calls)


def test_multiprocessing_spawn_workers_lose_nothing(tmp_path):
    """The spawn start method (macOS, Windows default): a fresh interpreter per worker, ended through
    multiprocessing's exit path, or by SIGTERM when leaving ``with Pool()``."""
    path = tmp_path / "spawn.jsonl"
    (tmp_path / "spawned_model.py").write_text(
        "import modelotel\n"
        "predict = modelotel.instrument_model(name='spawn-model')(lambda x: x)\n"
        "def work(i):\n"
        "    return predict(i)\n"
    )
    script = """
    import multiprocessing as mp, spawned_model
    if __name__ == "__main__":
        ctx = mp.get_context("spawn")
        with ctx.Pool(2) as pool:
            assert sum(pool.map(spawned_model.work, range(1000), chunksize=10)) == sum(range(1000))
        worker = ctx.Process(target=spawned_model.work, args=(1,))
        worker.start()
        worker.join()
        assert worker.exitcode == 0
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        env=_server_env(path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert recorded(path, conv.INFERENCE_DURATION) == 1001
