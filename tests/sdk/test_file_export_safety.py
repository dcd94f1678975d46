"""The OTLP-JSON file exporter under forks, crashes, full disks and a size bound (issue 15, findings 2, 6, 8).

Every scenario runs real processes: a writer forking while its threads export, a writer killed with SIGKILL
mid-line, a writer whose file size limit (RLIMIT_FSIZE) makes the write fail with EFBIG, a process holding the
file's flock, several processes rotating one file. What they wrote is read back with ``modelotel evaluate``
(a subprocess, as users run it) or line by line, and the counts must be exact.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from modelotel.otlp.json import read_json_lines

SLO = textwrap.dedent(
    """
    slos:
      - name: calls
        model: m
        sli: latency
        threshold: 10s
        objective: 0.5
        window: 1h
    """
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELOTEL_", "OTEL_"))}
    env.update(extra)
    return env


def _script(tmp_path, name: str, code: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return path


def _run(script, *args, env=None, timeout=60, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or _env(),
        cwd=cwd,
    )


def _evaluate(tmp_path, *data) -> dict:
    spec = tmp_path / "slo.yaml"
    spec.write_text(SLO)
    command = [sys.executable, "-m", "modelotel", "evaluate", "--slo", str(spec), "--format", "json"]
    proc = subprocess.run([*command, "--data", *map(str, data)], capture_output=True, text=True, timeout=60, env=_env())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _predictions_and_spans(paths) -> tuple[dict[str, int], dict[str, int], int]:
    """(predictions per model: the last cumulative value per process summed, spans per model, corrupt lines)."""
    last: dict[tuple[str, str], int] = {}
    spans: dict[str, int] = {}
    corrupt = 0
    for path in paths:
        for _, obj in read_json_lines(path):
            if obj is None:
                corrupt += 1
                continue
            for rs in obj.get("resourceSpans", ()):
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        attrs = {a["key"]: a["value"].get("stringValue") for a in span.get("attributes", ())}
                        model = attrs.get("ml.model.name")
                        if model:
                            spans[model] = spans.get(model, 0) + 1
            for rm in obj.get("resourceMetrics", ()):
                rattrs = {a["key"]: a["value"].get("stringValue") for a in rm["resource"]["attributes"]}
                for sm in rm["scopeMetrics"]:
                    for metric in sm["metrics"]:
                        if metric["name"] != "ml.predictions":
                            continue
                        for point in metric["sum"]["dataPoints"]:
                            attrs = {a["key"]: a["value"].get("stringValue") for a in point["attributes"]}
                            key = (rattrs["service.instance.id"], attrs["ml.model.name"])
                            last[key] = max(last.get(key, 0), int(point["asInt"]))
    predictions: dict[str, int] = {}
    for (_, model), value in last.items():
        predictions[model] = predictions.get(model, 0) + value
    return predictions, spans, corrupt


# --------------------------------------------------------------------------- finding 2: fork while a write is locked

FORKING_WRITER = """
    import json, os, sys, threading, time
    import modelotel

    path, children, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    modelotel.configure(service_name="forker", exporter="file", path=path, export_interval=3600, traces=True)

    @modelotel.instrument_model(name="parent")
    def parent_model(x):
        return x

    stop = threading.Event()
    parent_calls = 0

    def busy():  # spans and metrics written to the file back to back, as a loaded server's threads do
        global parent_calls
        while not stop.is_set():
            for i in range(300):
                parent_model(i)
            parent_calls += 300
            modelotel.force_flush()

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    time.sleep(0.3)
    pids = []
    for i in range(children):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                @modelotel.instrument_model(name=f"child-{i}")
                def child_model(x):
                    return x

                for j in range(calls):
                    child_model(j)
                code = 0 if modelotel.shutdown(10) else 2
            finally:
                os._exit(code)
        pids.append(pid)
        time.sleep(0.03)
    deadline = time.monotonic() + 20
    hung = failed = 0
    for pid in pids:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                failed += os.waitstatus_to_exitcode(status) != 0
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                hung += 1
                break
            time.sleep(0.01)
    stop.set()
    thread.join(10)
    stuck = thread.is_alive()
    modelotel.shutdown(10)
    print(json.dumps({"hung": hung, "failed": failed, "parent_stuck": stuck, "parent_calls": parent_calls}))
"""


def test_fork_while_exporting_never_hangs_a_child_and_loses_nothing(tmp_path):
    """Finding 2: 16 children forked while a thread writes spans and metrics back to back: all exit at once,
    the parent's writer is not stuck, and every child's calls are in the file, exactly."""
    script = _script(tmp_path, "forker.py", FORKING_WRITER)
    path = tmp_path / "fork.jsonl"
    children, calls = 16, 40
    start = time.monotonic()
    try:
        proc = _run(script, path, children, calls, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("the forking writer hung (children or the parent's writer blocked on the file lock)")
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["hung"] == 0, result
    assert result["failed"] == 0 and not result["parent_stuck"], result
    assert elapsed < 60
    predictions, spans, corrupt = _predictions_and_spans([path])
    assert corrupt == 0
    for i in range(children):
        assert predictions.get(f"child-{i}") == calls, (i, predictions)
        assert spans.get(f"child-{i}") == calls, (i, spans)
    assert predictions["parent"] == result["parent_calls"]
    assert spans["parent"] == result["parent_calls"]


LOCK_HOLDER = """
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""

BLOCKED_WRITER = """
    import json, sys, time
    import modelotel
    from modelotel.metrics.selftelemetry import SELF

    modelotel.configure(service_name="blocked", exporter="file", path=sys.argv[1], export_interval=3600)

    @modelotel.instrument_model(name="m")
    def model(x):
        return x

    for i in range(10):
        model(i)
    start = time.monotonic()
    ok = modelotel.force_flush(30)
    print(json.dumps({"ok": ok, "seconds": time.monotonic() - start, "drops": dict(SELF.drops)}))
    sys.stdout.flush()
    import os
    os._exit(0)
"""


def test_a_lock_held_elsewhere_times_out_as_a_counted_drop(tmp_path):
    """Finding 2: every lock wait has a deadline. Another process holds the file's flock for 40 s; the export
    gives up after the lock timeout, says it failed and counts its points as dropped."""
    from modelotel.config import FILE_LOCK_TIMEOUT_S

    path = tmp_path / "held.jsonl"
    holder = subprocess.Popen(
        [sys.executable, str(_script(tmp_path, "holder.py", LOCK_HOLDER)), str(path), "40"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        try:
            proc = _run(_script(tmp_path, "blocked.py", BLOCKED_WRITER), path, timeout=FILE_LOCK_TIMEOUT_S + 15)
        except subprocess.TimeoutExpired:
            pytest.fail("the export waited for the file lock without a deadline")
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] is False
    assert FILE_LOCK_TIMEOUT_S - 0.5 <= result["seconds"] <= FILE_LOCK_TIMEOUT_S + 5
    assert result["drops"].get("export_failed", 0) >= 1  # the points of the failed export, counted
    assert "lock" in proc.stderr and "held by another process" in proc.stderr
    assert path.read_bytes() == b""


FORK_DURING_A_WAIT = """
    import json, os, sys, threading, time
    from modelotel.otlp.file_append import LineAppender

    appender = LineAppender(sys.argv[1], "test")
    result = {}

    def export():  # waits for the lock another process holds, then gives up
        result["parent_ok"] = appender.append('{"parent":1}')

    thread = threading.Thread(target=export)
    thread.start()
    time.sleep(0.5)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if appender.append('{"child":1}') else 1)
    result["fork_s"] = time.monotonic() - start
    thread.join()
    _, status = os.waitpid(pid, 0)
    result["child_exit"] = os.waitstatus_to_exitcode(status)
    print(json.dumps(result))
"""


def test_a_fork_while_a_write_waits_for_the_lock_is_bounded(tmp_path):
    """Finding 2, the slow case: another process holds the flock for 7 s while a thread's write waits for it and
    the main thread forks. The fork waits only until that write gives up (5 s), the child's own write then
    succeeds once the holder lets go, and nothing hangs."""
    from modelotel import config

    path = tmp_path / "wait.jsonl"
    holder = subprocess.Popen(
        [sys.executable, str(_script(tmp_path, "holder.py", LOCK_HOLDER)), str(path), "7"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        try:
            proc = _run(_script(tmp_path, "waitfork.py", FORK_DURING_A_WAIT), path, timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("a fork during a lock wait hung")
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["parent_ok"] is False  # gave up at its deadline: a counted failure, not a hang
    assert config.FILE_LOCK_TIMEOUT_S - 1.0 <= result["fork_s"] <= config.FILE_LOCK_TIMEOUT_S + 1.5
    assert result["child_exit"] == 0
    assert path.read_text() == '{"child":1}\n'


# --------------------------------------------------------------------------- finding 6: torn lines, failed writes

SLOW_WRITER = """
    import os, sys, time
    import modelotel

    real_writev = os.writev

    def slow_partial_writev(fd, buffers, _writev=real_writev):
        # The disk (or NFS) takes 4 KiB at a time, slowly: the process dies between two of them.
        first = bytes(buffers[0])[:4096]
        time.sleep(0.02)
        return _writev(fd, [first])

    modelotel.configure(service_name="dying", exporter="file", path=sys.argv[1], export_interval=3600, traces=True)

    @modelotel.instrument_model(name="m")
    def model(x):
        return x

    for i in range(2000):
        model(i)
    os.writev = slow_partial_writev
    print("writing", flush=True)
    modelotel.force_flush()
    print("finished", flush=True)
"""

WRITER = """
    import sys
    import modelotel

    modelotel.configure(service_name="next", exporter="file", path=sys.argv[1], export_interval=3600)

    @modelotel.instrument_model(name="m")
    def model(x):
        return x

    for i in range(int(sys.argv[2])):
        model(i)
    assert modelotel.shutdown(10)
"""


def test_a_writer_killed_mid_line_does_not_swallow_the_next_export(tmp_path):
    """Finding 6: a writer is SIGKILLed in the middle of a line; the next process's export is still a line of
    its own, counted exactly by ``modelotel evaluate``, and the fragment is one corrupt line with a reason."""
    path = tmp_path / "torn.jsonl"
    dying = subprocess.Popen(
        [sys.executable, str(_script(tmp_path, "dying.py", SLOW_WRITER)), str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert dying.stdout.readline().strip() == "writing"
    deadline = time.monotonic() + 30
    while path.stat().st_size < 3 * 4096 and time.monotonic() < deadline:
        time.sleep(0.01)
    dying.send_signal(signal.SIGKILL)
    dying.wait()
    torn = path.read_bytes()
    assert torn and not torn.endswith(b"\n"), "the writer was expected to die mid-line"

    before = tmp_path / "before.jsonl"
    before.write_bytes(torn)
    dying_predictions, _, _ = _predictions_and_spans([before])  # its metrics line went out whole, then spans tore
    torn_line = torn.count(b"\n") + 1

    proc = _run(_script(tmp_path, "writer.py", WRITER), path, 123)
    assert proc.returncode == 0, proc.stderr
    doc = _evaluate(tmp_path, path)
    assert doc["slos"][0]["events"] == 123 + dying_predictions.get("m", 0)
    (inp,) = doc["inputs"]
    assert inp["corrupt_lines"] == 1
    assert inp["problems"][0]["line"] == torn_line and "not JSON" in inp["problems"][0]["reason"]
    assert path.read_bytes().startswith(torn + b"\n")


FULL_DISK_WRITER = """
    import json, os, resource, sys
    import modelotel
    from modelotel.metrics.selftelemetry import SELF

    path = sys.argv[1]
    modelotel.configure(service_name="full", exporter="file", path=path, export_interval=3600)
    models = [modelotel.instrument_model(name=f"model-{i}")(lambda x: x) for i in range(20)]
    for model in models:
        model(1)
    assert modelotel.force_flush()  # one whole export before the disk fills up
    size = os.path.getsize(path)
    # The file may grow by 3000 bytes more: the next export (some 20 kB) fails part way, as on a full disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 3000, resource.RLIM_INFINITY))
    for model in models:
        model(2)
    ok = modelotel.force_flush()
    print(json.dumps({"ok": ok, "before": size, "after": os.path.getsize(path), "drops": dict(SELF.drops)}))
    os._exit(0)
"""


def test_a_failed_write_is_a_failure_and_leaves_no_fragment(tmp_path):
    """Finding 6: a write that fails part way (EFBIG from RLIMIT_FSIZE, as ENOSPC on a full disk) makes the
    export fail, its points are counted as dropped, and the file is cut back to its last whole line."""
    path = tmp_path / "full.jsonl"
    proc = _run(_script(tmp_path, "full.py", FULL_DISK_WRITER), path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] is False
    assert result["drops"].get("export_failed", 0) >= 20  # at least one point per model, all counted
    assert result["after"] == result["before"]
    data = path.read_bytes()
    assert data.endswith(b"\n") and all(obj is not None for _, obj in read_json_lines(path))


# --------------------------------------------------------------------------- finding 8: the default and the size bound

DEFAULT_USER = """
    import os
    import modelotel

    @modelotel.instrument_model(name="m")
    def model(x):
        return x

    model(1)
    pid = os.fork()
    if pid == 0:
        model(2)
        modelotel.shutdown(10)
        os._exit(0)
    os.waitpid(pid, 0)
    modelotel.shutdown(10)
"""


def test_the_unconfigured_default_says_where_telemetry_goes(tmp_path):
    """Finding 8: with nothing configured, one log line names the absolute file and how to change it (once per
    process tree, not once per worker)."""
    work = tmp_path / "cwd"
    work.mkdir()
    proc = _run(_script(tmp_path, "default.py", DEFAULT_USER), cwd=work)
    assert proc.returncode == 0, proc.stderr
    target = str(work / "modelotel-telemetry.jsonl")
    said = [line for line in proc.stderr.splitlines() if target in line]
    assert len(said) == 1, proc.stderr
    assert "MODELOTEL_EXPORT_FILE" in said[0] and "OTEL_EXPORTER_OTLP_ENDPOINT" in said[0]
    assert "Traceback" not in proc.stderr
    # explicitly configured: nothing to say
    proc = _run(_script(tmp_path, "default.py", DEFAULT_USER), cwd=work, env=_env(MODELOTEL_EXPORT_FILE="x.jsonl"))
    assert proc.returncode == 0 and "modelotel-telemetry.jsonl" not in proc.stderr, proc.stderr


ROTATING_WRITER = """
    import sys
    import modelotel

    modelotel.configure(service_name=sys.argv[2], exporter="file", path=sys.argv[1], export_interval=3600)

    @modelotel.instrument_model(name="m")
    def model(x):
        return x

    for _ in range(40):
        for i in range(25):
            model(i)
        assert modelotel.force_flush()
    assert modelotel.shutdown(10)
"""


def test_rotation_bounds_the_file_and_the_evaluator_reads_the_set_as_one_stream(tmp_path):
    """Finding 8: three processes write one file with a 5 kB bound at once; every file stays under the bound,
    and ``modelotel evaluate`` given the path counts exactly the calls made (cumulative series continue across
    the rotations: no reset, no double count), also when backups are named explicitly."""
    path = tmp_path / "rot.jsonl"
    env = _env(MODELOTEL_FILE_MAX_BYTES="5000", MODELOTEL_FILE_BACKUPS="500")
    script = _script(tmp_path, "rotating.py", ROTATING_WRITER)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(path), f"w{i}"], env=env, stderr=subprocess.PIPE, text=True)
        for i in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=90)
        assert p.returncode == 0, err
    backups = sorted(tmp_path.glob("rot.jsonl.*"), key=lambda p: int(p.suffix[1:]))
    assert len(backups) >= 10
    for file in [path, *backups]:
        assert 0 < file.stat().st_size <= 5000, file
    predictions, _, corrupt = _predictions_and_spans([path, *backups])
    assert corrupt == 0 and predictions == {"m": 3000}

    doc = _evaluate(tmp_path, path)
    assert doc["slos"][0]["events"] == 3000
    (inp,) = doc["inputs"]
    assert inp["resets"] == 0 and inp["duplicate_points"] == 0 and inp["corrupt_lines"] == 0
    assert inp["instances"] == 3
    # a backup named after the path it belongs to is not read again; named before it, its points are read
    # twice and the second reading is dropped as duplicates: the count is the same either way
    doc = _evaluate(tmp_path, path, backups[0])
    assert doc["slos"][0]["events"] == 3000
    assert [i["duplicate_points"] for i in doc["inputs"]] == [0, 0]
    assert "already read as a rotated backup" in doc["inputs"][1]["problems"][0]["reason"]
    doc = _evaluate(tmp_path, backups[0], path)
    assert doc["slos"][0]["events"] == 3000
