"""Feedback from any process: the cost of the design built (A) and of the one not built (B), measured.

A, self-describing signed prediction ids (``modelotel.feedback.ids``): ``last_prediction_id()`` puts what feedback
needs (model attributes, time, labels and confidences) in the id, HMAC-signed; any process with the key judges it
and exports aggregated ``ml.feedback`` series. Nothing per prediction crosses the wire or waits anywhere.

B, prediction and feedback events joined by id: every prediction that may get feedback emits an OTLP log record
(id, model attributes, label, confidence, time); the labeller emits a feedback log record (id, true label, time);
the evaluator (or ``serve``) keeps each prediction until its feedback arrives or the horizon passes. Only what is
needed to measure B is prototyped here (not in the SDK): the LogRecord bytes with ``opentelemetry-proto``, the
request-path cost of building and enqueueing one event per call, and the join state per pending prediction.

    python benchmarks/feedback_designs.py [--judged 1000000] [--no-write]

Results go to benchmarks/RESULTS.md between this script's markers (docs/quality.md quotes them).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import deque
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _results import machine_line, write_section  # noqa: E402

KEY = "benchmark-feedback-key-0123456789"  # the shared MODELOTEL_FEEDBACK_KEY of the serving and labelling processes
os.environ["MODELOTEL_FEEDBACK_KEY"] = KEY
FEATURES = np.zeros(8)
PROBS_1 = np.array([0.93, 0.07])
PROBS_32 = np.tile(PROBS_1, (32, 1))
LONG_NAME = "recommendations-candidate-ranking-eu-west-1-holiday-season-shadow"
HORIZON_DAYS = 30
REQUESTS_PER_S = 100


def models(modelotel):
    """The typical models whose ids are measured, decorated as an application would (untraced)."""
    im = modelotel.instrument_model
    return {
        "classifier, 1 item (fraud 1.4.0, 2 classes)": (
            im(name="fraud", version="1.4.0", labels=["legit", "fraud"], traces="off")(lambda x: PROBS_1),
            "legit",
        ),
        "classifier, batch of 32": (
            im(name="fraud", version="1.4.0", labels=["legit", "fraud"], traces="off")(lambda x: PROBS_32),
            "legit",
        ),
        f"classifier, 1 item, {len(LONG_NAME)}-character name, version 2026.12.01-rc3": (
            im(name=LONG_NAME, version="2026.12.01-rc3", labels=["legit", "fraud"], traces="off")(lambda x: PROBS_1),
            "legit",
        ),
        "regression, 1 value (price 3)": (im(name="price", version="3", traces="off")(lambda x: 12.5), 13.0),
        "regression, batch of 32": (
            im(name="price", version="3", traces="off")(lambda x: np.full(32, 12.5)),
            13.0,
        ),
    }


def per_call_us(variants: dict, rounds: int = 15, calls: int = 400) -> dict[str, float]:
    """Median over rounds of the mean us per call; variants in a new random order every round."""
    per: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    rng = random.Random(3)
    pc = time.perf_counter_ns
    for fn in variants.values():
        for _ in range(calls // 4):
            fn()
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            fn = variants[name]
            t0 = pc()
            for _ in range(calls):
                fn()
            per[name].append((pc() - t0) / calls / 1000)
    return {name: statistics.median(v) for name, v in per.items()}


# -- the serving process (a subprocess): makes ids the labeller judges -------------------------------------


def make_ids(n: int, out: Path) -> None:
    import modelotel

    modelotel.configure(service_name="serving", exporter="none")
    ms = models(modelotel)
    single, _ = ms["classifier, 1 item (fraud 1.4.0, 2 classes)"]
    batch, _ = ms["classifier, batch of 32"]
    with out.open("w") as fh:
        for fn in (single, batch):
            for _ in range(n):
                fn(FEATURES)
                fh.write(modelotel.last_prediction_id() + "\n")
    modelotel.shutdown()


# -- design A ----------------------------------------------------------------------------------------------


def design_a(judged: int) -> dict:
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    import modelotel
    from modelotel.feedback import KEYRING, Label, PredictionRecord, judge
    from modelotel.feedback.ids import encode
    from modelotel.runtime import STATE

    class CountingExporter:
        """Encodes every export as the OTLP exporters do and counts the bytes (nothing is sent)."""

        def __init__(self) -> None:
            self.bytes = 0
            self.points = 0
            self.overflowed = 0  # ml.feedback items whose attributes were lost to the series cap (cumulative)

        def export(self, data, timeout_millis=None, **_):
            from opentelemetry.sdk.metrics.export import MetricExportResult

            self.bytes += len(encode_metrics(data).SerializeToString())
            for rm in data.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        self.points += len(m.data.data_points)
                        if m.name == "ml.feedback":
                            for p in m.data.data_points:
                                if p.attributes.get("otel.metric.overflow"):
                                    self.overflowed = p.value
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis=None):
            return True

        def shutdown(self, timeout_millis=None, **_):
            pass

    exporter = CountingExporter()
    modelotel.configure(service_name="labeller", exporter=exporter, export_interval=3600.0)
    out: dict = {}

    # id lengths and the request-path cost of asking for one
    ms = models(modelotel)
    out["id_length"] = {}
    for name, (fn, _) in ms.items():
        fn(FEATURES)
        out["id_length"][name] = len(modelotel.last_prediction_id().encode("ascii"))
    single, _ = ms["classifier, 1 item (fraud 1.4.0, 2 classes)"]
    batch, _ = ms["classifier, batch of 32"]
    in_proc = modelotel.instrument_model(name="fraud", version="1.4.0", labels=["legit", "fraud"], traces="off")

    @in_proc
    def with_current_id(x):
        modelotel.current_prediction_id()
        return PROBS_1

    lp = modelotel.last_prediction_id

    def single_with_id():
        single(FEATURES)
        lp()

    def batch_with_id():
        batch(FEATURES)
        lp()

    costs = per_call_us(
        {
            "single": lambda: single(FEATURES),
            "single + last_prediction_id()": single_with_id,
            "batch": lambda: batch(FEATURES),
            "batch + last_prediction_id()": batch_with_id,
            "single, current_prediction_id() inside": lambda: with_current_id(FEATURES),
        }
    )
    out["request_path_us"] = costs
    STATE.loop.export_once()

    # record_feedback on ids made in another process (the serving process, same key)
    n = 5000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ids.txt"
        subprocess.run([sys.executable, __file__, "--make-ids", str(n), "--out", str(path)], check=True)
        ids = path.read_text().split()
    remote_single, remote_batch = ids[:n], ids[n:]
    local_ids = []  # in-process ids: the id current_prediction_id() returned inside each call

    @in_proc
    def keep_id(x):
        local_ids.append(modelotel.current_prediction_id())
        return PROBS_1

    for _ in range(n):
        keep_id(FEATURES)
    STATE.loop.export_once()
    rf = modelotel.record_feedback
    timings = {}
    for name, pool, label in (
        ("record_feedback, another process's id, 1 item", remote_single, "legit"),
        ("record_feedback, another process's id, batch of 32", remote_batch, "legit"),
        ("record_feedback, in-process id (current_prediction_id)", local_ids, "legit"),
    ):
        gc.collect()
        t0 = time.perf_counter_ns()
        ok = sum(rf(pid, label=label) for pid in pool)
        timings[name] = ((time.perf_counter_ns() - t0) / len(pool) / 1000, ok, len(pool))
        STATE.loop.export_once()
    out["record_feedback_us"] = timings

    # judge() in a loop on ids spread over 30 days of predictions, labels in prediction order, the export thread's
    # fold every 10,000 judged ids; memory with tracemalloc; the OTLP bytes of the exported feedback series
    keys = KEYRING.load()
    attrs = (("ml.model.name", "fraud"), ("ml.model.version", "1.4.0"), ("ml.deployment.role", "primary"))
    legit, fraud = Label.of("legit", "legit"), Label.of("fraud", "fraud")
    now = int(time.time())
    rng = random.Random(5)
    fold_every = 10_000

    def make(i: int, total: int, span_s: int = HORIZON_DAYS * 86400) -> str:
        t = now - span_s + (span_s * i) // total
        lab = legit if rng.random() < 0.9 else fraud
        record = PredictionRecord(attrs, t, rng.getrandbits(64).to_bytes(8, "big"), None, (lab,), (0.93,))
        return encode(record, keys.key, keys.key_id)

    STATE.loop.export_once()
    speed_ids = [make(i, 20_000) for i in range(20_000)]
    gc.collect()
    t0 = time.perf_counter_ns()
    for pid in speed_ids:
        judge(pid, label="legit")
    out["judge_us"] = (time.perf_counter_ns() - t0) / len(speed_ids) / 1000
    del speed_ids
    memory = []
    for total in (10_000, judged):
        for _ in range(4):  # the previous run's series expire (IDLE_EXPORTS)
            STATE.loop.export_once()
        exporter.bytes = exporter.points = 0
        overflow_before = exporter.overflowed
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        made = [make(i, total) for i in range(min(fold_every, total))]
        for i in range(total):
            if i and i % fold_every == 0:
                STATE.loop.export_once()
                made = [make(j, total) for j in range(i, min(i + fold_every, total))]
            judge(made[i % fold_every], label="legit" if rng.random() < 0.95 else "fraud")
        del made
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        STATE.loop.export_once()
        overflowed = exporter.overflowed - overflow_before
        memory.append((total, current - base, peak - base, exporter.bytes, exporter.points, overflowed))
    out["labeller_memory"] = memory

    # dense: every prediction of 100/s labelled (200,000 predictions, 33 minutes), no tracemalloc: the wire bytes
    dense = 200_000
    for _ in range(4):
        STATE.loop.export_once()
    exporter.bytes = exporter.points = 0
    overflow_before = exporter.overflowed
    for i in range(0, dense, fold_every):
        for pid in [make(j, dense, dense // REQUESTS_PER_S) for j in range(i, i + fold_every)]:
            judge(pid, label="legit" if rng.random() < 0.95 else "fraud")
        STATE.loop.export_once()
    for _ in range(4):
        STATE.loop.export_once()
    out["dense"] = (dense, exporter.bytes, exporter.points, exporter.overflowed - overflow_before)
    out["dedupe"] = keys.settings.dedupe
    modelotel.shutdown()
    return out


def cli_rows(rows: int) -> dict | None:
    """``modelotel feedback`` on a CSV of ``rows`` labels for ids made by a serving process: wall and CPU time of
    the whole command (start-up included), exporting to an OTLP JSON file. None when the command does not exist."""
    import resource

    env = {**os.environ}
    probe = subprocess.run([sys.executable, "-m", "modelotel", "feedback", "--help"], capture_output=True, env=env)
    if probe.returncode != 0:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        ids_path, csv_path = Path(tmp) / "ids.txt", Path(tmp) / "labels.csv"
        subprocess.run([sys.executable, __file__, "--make-ids", str(rows), "--out", str(ids_path)], check=True)
        ids = ids_path.read_text().split()[:rows]  # the single-item ones
        rng = random.Random(11)
        with csv_path.open("w") as fh:
            fh.write("prediction_id,label\n")
            for pid in ids:
                fh.write(f"{pid},{'legit' if rng.random() < 0.95 else 'fraud'}\n")
        env["MODELOTEL_EXPORT_FILE"] = str(Path(tmp) / "feedback.jsonl")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "modelotel", "feedback", str(csv_path), "--progress", "none", "--json"],
            capture_output=True,
            env=env,
            text=True,
        )
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        try:
            own = json.loads(done.stdout).get("rows_per_s")
        except ValueError:
            own = None
        return {"rows": rows, "wall_s": wall, "cpu_s": cpu, "rc": done.returncode, "own_rows_per_s": own}


# -- design B ----------------------------------------------------------------------------------------------


def design_b() -> dict:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    def kv(key, value):
        if isinstance(value, float):
            return KeyValue(key=key, value=AnyValue(double_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=value))

    now = time.time_ns()
    pid = f"{random.getrandbits(128):032x}"
    model_attrs = [kv("ml.model.name", "fraud"), kv("ml.model.version", "1.4.0"), kv("ml.deployment.role", "primary")]
    prediction = LogRecord(
        time_unix_nano=now,
        observed_time_unix_nano=now,
        event_name="ml.prediction",
        attributes=[
            kv("ml.prediction.id", pid),
            *model_attrs,
            kv("ml.prediction.label", "legit"),
            kv("ml.prediction.confidence", 0.93),
        ],
    )
    feedback = LogRecord(
        time_unix_nano=now,
        observed_time_unix_nano=now,
        event_name="ml.feedback",
        attributes=[kv("ml.prediction.id", pid), kv("ml.feedback.label", "legit")],
    )
    out = {
        "prediction_bytes": len(prediction.SerializeToString()),
        "feedback_bytes": len(feedback.SerializeToString()),
    }

    # in an export request of 512 records sharing one resource and scope: the framing per record
    resource = Resource(attributes=[kv("service.name", "fraud-api"), kv("service.instance.id", pid)])
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=resource,
                scope_logs=[ScopeLogs(scope=InstrumentationScope(name="modelotel"), log_records=[prediction] * 512)],
            )
        ]
    )
    out["prediction_bytes_in_request"] = len(request.SerializeToString()) / 512

    # the request path: one event per call, (a) the least a Python SDK could do: a random id and a tuple appended
    # to a deque (labels, confidences and encoding deferred to an export thread), (b) the OTel SDK's logs API
    # through a BatchLogRecordProcessor with an exporter that drops the records (its cheapest configuration)
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult

    class Drop(LogRecordExporter):
        def export(self, batch):
            return LogRecordExportResult.SUCCESS

        def force_flush(self, timeout_millis=None):
            return True

        def shutdown(self):
            pass

    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(Drop(), max_queue_size=1 << 16))
    logger = provider.get_logger("bench")
    queue: deque = deque(maxlen=1 << 16)
    getrandbits = random.getrandbits
    time_ns = time.time_ns
    attrs = {"ml.model.name": "fraud", "ml.model.version": "1.4.0", "ml.deployment.role": "primary"}

    def model(x):
        return PROBS_1

    def bare():
        model(FEATURES)

    def deque_event():
        result = model(FEATURES)
        queue.append((getrandbits(128), time_ns(), result))

    def sdk_event():
        result = model(FEATURES)
        conf = float(result.max())
        logger.emit(
            timestamp=time_ns(),
            event_name="ml.prediction",
            attributes={
                "ml.prediction.id": f"{getrandbits(128):032x}",
                **attrs,
                "ml.prediction.label": "legit",
                "ml.prediction.confidence": conf,
            },
        )

    out["request_path_us"] = per_call_us({"bare": bare, "deque": deque_event, "sdk": sdk_event}, calls=2000)
    provider.shutdown()

    # the join state: pending predictions by id until their feedback or the horizon; the most compact Python
    # record: a 16-byte id -> (time s, label index, confidence), and the same packed in 16 bytes
    import struct

    pack = struct.Struct(">IHd").pack
    state = {}
    n = 1_000_000
    for kind in ("tuple", "packed"):
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        table: dict = {}
        t = int(time.time())
        for i in range(n):
            key = getrandbits(128).to_bytes(16, "big")
            table[key] = (t + i, i & 1, 0.93) if kind == "tuple" else pack(t + i, i & 1, 0.93)
        state[kind] = (tracemalloc.get_traced_memory()[0] - base) / n
        tracemalloc.stop()
        del table
    out["join_bytes_per_pending"] = state
    out["pending_in_horizon"] = REQUESTS_PER_S * HORIZON_DAYS * 86400
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--judged", type=int, default=1_000_000, help="ids judged for the labeller's memory")
    parser.add_argument("--cli-rows", type=int, default=100_000, help="rows for `modelotel feedback` (0: skip)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--evaluator-only", action="store_true", help="only the evaluator's memory (design A)")
    parser.add_argument("--make-ids", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_ids:
        make_ids(args.make_ids, args.out)
        return
    if args.evaluator_only:
        rows = evaluator_rss()
        text = evaluator_report(rows)
        print(text)
        if not args.no_write:
            write_section(
                HERE / "RESULTS.md", "feedback-evaluator", "Feedback: the evaluator's memory (design A)", text
            )
        return
    load_before = os.getloadavg()[0]
    b = design_b()
    a = design_a(args.judged)
    a["cli"] = cli_rows(args.cli_rows) if args.cli_rows else None
    text = report(a, b, load_before, args.judged)
    print(text)
    if not args.no_write:
        write_section(
            HERE / "RESULTS.md", "feedback", "Feedback from any process (`benchmarks/feedback_designs.py`)", text
        )


ACCURACY_SLO = """slos:
  - name: fraud-accuracy
    model: fraud
    sli: accuracy
    objective: 0.85
    window: 1d
"""


DAY_S = 86400
EVALUATOR_CASES = ((10_000, 10_000 // REQUESTS_PER_S), (1_000_000, 1_000_000 // REQUESTS_PER_S), (10_000, DAY_S))


def evaluator_rss(cases: tuple[tuple[int, int], ...] = EVALUATOR_CASES) -> list[tuple]:
    """Design A's evaluator: ``modelotel feedback`` writes the labelling process's OTLP JSON file for ``n``
    labels of predictions spread evenly over ``span_s`` seconds (ids signed with the shared key), then
    ``modelotel evaluate`` reads it with one accuracy SLO. Rows: (n, file bytes, points, events the SLO counted,
    evaluate peak RSS KiB, seconds, exit code, span_s)."""
    from modelotel.feedback import KEYRING, Label, PredictionRecord
    from modelotel.feedback.ids import encode

    keys = KEYRING.load()
    attrs = (("ml.model.name", "fraud"), ("ml.model.version", "1.4.0"), ("ml.deployment.role", "primary"))
    legit, fraud = Label.of("legit", "legit"), Label.of("fraud", "fraud")
    rng = random.Random(13)
    out = []
    for n, span_s in cases:
        with tempfile.TemporaryDirectory() as tmp:
            csv_path, data, slo = Path(tmp) / "labels.csv", Path(tmp) / "feedback.jsonl", Path(tmp) / "slo.yaml"
            slo.write_text(ACCURACY_SLO)
            now = int(time.time())
            with csv_path.open("w") as fh:
                fh.write("prediction_id,label\n")
                for i in range(n):
                    lab = legit if rng.random() < 0.9 else fraud
                    t = now - span_s + (span_s * i) // n
                    record = PredictionRecord(attrs, t, rng.getrandbits(64).to_bytes(8, "big"), None, (lab,), (0.9,))
                    truth = lab.text if rng.random() < 0.9 else ("fraud" if lab is legit else "legit")
                    fh.write(f"{encode(record, keys.key, keys.key_id)},{truth}\n")
            env = {**os.environ, "MODELOTEL_EXPORT_FILE": str(data)}
            cmd = [sys.executable, "-m", "modelotel", "feedback", str(csv_path), "--progress", "none"]
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            points = 0
            for line in data.read_text().splitlines():
                points += line.count('"timeUnixNano"')
            cmd = [sys.executable, "-m", "modelotel", "evaluate", "--slo", str(slo), "--data", str(data)]
            cmd += ["--format", "json"]
            t0 = time.perf_counter()
            report_path = Path(tmp) / "evaluation.json"
            with report_path.open("w") as sink:
                child = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.DEVNULL)
                _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage
                child.returncode = os.waitstatus_to_exitcode(status)
            seconds = time.perf_counter() - t0
            rss = usage.ru_maxrss
            try:
                events = json.loads(report_path.read_text())["slos"][0]["events"]
            except (ValueError, KeyError, IndexError):
                events = float("nan")
            out.append((n, data.stat().st_size, points, events, rss, seconds, child.returncode, span_s))
    return out


def evaluator_report(rows: list[tuple]) -> str:
    lines = [
        f"Machine: {machine_line()}. modelotel at {sdk_commit()}. `modelotel feedback` judged n labels (for "
        "predictions spread evenly over the span; 90% labelled right) into an OTLP JSON file (one export, when the "
        "file is done); `modelotel evaluate` read it with one accuracy SLO (1-day window); its peak RSS (ru_maxrss "
        "from wait4). Every label should be counted: the difference is feedback that went to the 2,000-series "
        "overflow series of `ml.feedback` (no model name, no time bucket).",
        "",
        "| labels judged | predictions spread over | file bytes | data points | feedback the SLO counted | "
        "evaluate peak RSS, MiB | evaluate seconds | exit code |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, size, points, events, rss, seconds, rc, span_s in rows:
        span = f"{span_s / 3600:.1f} h" if span_s >= 3600 else f"{span_s / 60:.1f} min"
        lines.append(
            f"| {n:,} | {span} | {size:,} | {points:,} | {events:,.0f} | {rss / 1024:.1f} | {seconds:.2f} | {rc} |"
        )
    return "\n".join(lines)


def sdk_commit() -> str:
    """The commit of the checkout whose modelotel was measured."""
    import modelotel

    where = Path(modelotel.__file__).parent
    done = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def report(a: dict, b: dict, load_before: float, judged: int) -> str:
    rp = a["request_path_us"]
    lines = [
        f"Machine: {machine_line()}; 1-min load average {load_before:.1f} before. "
        f"modelotel at {sdk_commit()}. Per-call figures: median over 15 "
        "rounds of the mean of 400 calls (2,000 for design B's), variants in a new random order every round.",
        "",
        "**Design A (built): self-describing signed ids.** Id length (ASCII bytes, `mo1.` + base64url), as "
        "`last_prediction_id()` makes it:",
        "",
        "| model | id bytes |",
        "|---|---:|",
    ]
    for name, n in a["id_length"].items():
        lines.append(f"| {name} | {n} |")
    lines += [
        "",
        "| on the request path (untraced call) | us/call | added us |",
        "|---|---:|---:|",
        f"| classifier, 1 item | {rp['single']:.2f} | |",
        f"| + `last_prediction_id()` | {rp['single + last_prediction_id()']:.2f} | "
        f"{rp['single + last_prediction_id()'] - rp['single']:.2f} |",
        f"| classifier, batch of 32 | {rp['batch']:.2f} | |",
        f"| + `last_prediction_id()` | {rp['batch + last_prediction_id()']:.2f} | "
        f"{rp['batch + last_prediction_id()'] - rp['batch']:.2f} |",
        f"| classifier, 1 item, `current_prediction_id()` inside (in-process id) | "
        f"{rp['single, current_prediction_id() inside']:.2f} | "
        f"{rp['single, current_prediction_id() inside'] - rp['single']:.2f} |",
        "",
        "| in the labelling process | us/call | accepted |",
        "|---|---:|---:|",
    ]
    for name, (us, ok, n) in a["record_feedback_us"].items():
        lines.append(f"| {name} | {us:.1f} | {ok:,} of {n:,} |")
    lines += [
        "",
        f"`judge()` in a loop on ids spread over {HORIZON_DAYS} days of predictions (labels in prediction order, "
        "the export thread's fold every 10,000; tracemalloc on, which slows it), the memory still held at the end "
        f"(dedupe set: the last {a['dedupe']:,} ids; remote buffers and series), and the OTLP protobuf bytes of the "
        "feedback metrics exported meanwhile:",
        "",
        "| ids judged | memory held, MiB | peak, MiB | exported OTLP bytes | bytes per judged id | points exported "
        "| items in the overflow series |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for total, cur, peak, nbytes, points, overflowed in a["labeller_memory"]:
        lines.append(
            f"| {total:,} | {cur / 2**20:.1f} | {peak / 2**20:.1f} | {nbytes:,} | {nbytes / total:.1f} | {points:,} "
            f"| {overflowed:,} ({100 * overflowed / total:.0f}%) |"
        )
    total, nbytes, points, overflowed = a["dense"]
    lines.append(
        f"| {total:,}, made {REQUESTS_PER_S}/s (every prediction labelled; no tracemalloc) | | | {nbytes:,} | "
        f"{nbytes / total:.1f} | {points:,} | {overflowed:,} ({100 * overflowed / total:.0f}%) |"
    )
    lines += [
        "",
        f"`judge()` without tracemalloc: **{a['judge_us']:.1f} us per id, {1e6 / a['judge_us']:,.0f} ids/s** "
        "(1 item each, 20,000 ids).",
    ]
    cli = a.get("cli")
    if cli is not None:
        lines.append(
            f"`modelotel feedback` on a CSV of {cli['rows']:,} labels (ids made by another process, 1 item each; "
            f"exit code {cli['rc']}): {cli['wall_s']:.1f} s wall, {cli['cpu_s']:.1f} s CPU, start-up and export "
            f"included: **{cli['rows'] / cli['wall_s']:,.0f} rows/s** ({cli['rows'] / cli['cpu_s']:,.0f} per CPU "
            "second)"
            + (
                f"; the command's own figure (reading and judging): {cli['own_rows_per_s']:,.0f} rows/s."
                if cli["own_rows_per_s"]
                else "."
            )
        )
    pend = b["pending_in_horizon"]
    per_tuple, per_packed = b["join_bytes_per_pending"]["tuple"], b["join_bytes_per_pending"]["packed"]
    brp = b["request_path_us"]
    lines += [
        "",
        "**Design B (not built): prediction and feedback events joined by id.** OTLP protobuf `LogRecord` "
        "(opentelemetry-proto), id as 32 hex characters:",
        "",
        "| | bytes |",
        "|---|---:|",
        f"| prediction event (id, model name/version/role, label, confidence, time, event name) | "
        f"{b['prediction_bytes']} |",
        f"| the same, per record in an export request of 512 | {b['prediction_bytes_in_request']:.0f} |",
        f"| feedback event (id, true label, time, event name) | {b['feedback_bytes']} |",
        "",
        "| on the request path, one event per call | us/call | added us |",
        "|---|---:|---:|",
        f"| bare model call | {brp['bare']:.2f} | |",
        f"| random id + tuple appended to a deque (the least; labels and encoding deferred) | {brp['deque']:.2f} | "
        f"{brp['deque'] - brp['bare']:.2f} |",
        f"| OTel SDK logs API, `Logger.emit` (BatchLogRecordProcessor, records dropped unencoded) | "
        f"{brp['sdk']:.2f} | {brp['sdk'] - brp['bare']:.2f} |",
        "",
        f"Join state: {per_tuple:.0f} bytes per pending prediction as a dict of 16-byte id -> (time, label index, "
        f"confidence) tuple, {per_packed:.0f} bytes packed in 14 bytes (tracemalloc, 1,000,000 entries). "
        f"{REQUESTS_PER_S} predictions/s for a {HORIZON_DAYS}-day horizon: {pend:,} pending at most (labels that never "
        f"come stay until the horizon): **{pend * per_tuple / 2**30:.1f} GiB** (tuples), "
        f"{pend * per_packed / 2**30:.1f} GiB packed, {pend * 32 / 2**30:.1f} GiB at 32 bytes each (an ideal native "
        "table).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
