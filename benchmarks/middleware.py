"""Per-request overhead of modelotel's middleware against the official OpenTelemetry instrumentations.

One process, variants interleaved (request by request, call by call), medians over rounds:

* FastAPI (ASGI called directly, no sockets) and Flask (WSGI called directly): bare app, the
  official instrumentation (``opentelemetry-instrumentation-fastapi`` / ``-flask``), modelotel
  traced, modelotel metrics-only. Each app serves the same tiny JSON endpoint with a route template.
* gRPC unary over loopback: no interceptor, the official ``server_interceptor``, modelotel's.
* A load test with ``wrk`` against uvicorn serving a 1 ms CPU-bound "model": requests/s bare vs ours.

Spans: every span is sampled (the SDK's default sampler, parentbased_always_on, with no parent), and
none goes over a network. The official instrumentations get an SDK MeterProvider and an SDK
TracerProvider with a BatchSpanProcessor, in two variants: its exporter encodes the spans as the SDK's
OTLP exporters do before sending (``encode_spans``, serialized; the production cost), or drops them
unencoded. "ours traced" is modelotel as ``modelotel.configure()`` sets it up -- its own
TracerProvider, spans queued and encoded by the export thread -- with the encoding its OTLP
exporters do (the export request, serialized). Span encoding runs in this process, is flushed every
round and charged to its variant. "ours traced, app provider" is modelotel on the discarding SDK
provider (an application that set its own TracerProvider). Each of ours is compared with the
official variant that treats spans alike.

    python benchmarks/middleware.py [--rounds 15] [--requests 300] [--no-load] [--otlp]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _results import machine_line, write_section  # noqa: E402

ORDER_SEED = 20261122


def shuffled(items: list, rng: random.Random) -> list:
    """``items`` in a fresh random order. Variants that alternate run in a new order every time: what ran
    just before a variant decides how warm its code is (ours after ours, or the official after the
    official, runs with the shared code still in the CPU caches), and a fixed order would hand that
    advantage to the same variants every time."""
    order = items[:]
    rng.shuffle(order)
    return order


def providers():
    """(SDK TracerProvider discarding spans, SDK TracerProvider OTLP-encoding spans, SDK MeterProvider).

    The encoding provider's exporter does what the SDK's OTLP exporters do before the network
    (``encode_spans`` and serialization); its batch processor exports only when flushed, so a round
    can be charged with encoding its own spans (``force_flush``).
    """
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class DiscardSpans(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    class EncodeSpans(SpanExporter):
        def export(self, spans):
            encode_spans(spans).SerializeToString()
            return SpanExportResult.SUCCESS

    class DiscardMetrics(MetricExporter):
        def export(self, metrics_data, timeout_millis=10_000, **kwargs):
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis=10_000):
            return True

        def shutdown(self, timeout_millis=30_000, **kwargs):
            pass

    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(DiscardSpans(), max_queue_size=1 << 16))
    tp_encoded = TracerProvider()
    tp_encoded.add_span_processor(
        BatchSpanProcessor(
            EncodeSpans(), max_queue_size=1 << 17, max_export_batch_size=1 << 16, schedule_delay_millis=1e9
        )
    )
    assert trace.get_tracer_provider() not in (tp, tp_encoded)  # the global one is modelotel's (configured first)
    mp = MeterProvider(metric_readers=[PeriodicExportingMetricReader(DiscardMetrics(), 60_000)])
    metrics.set_meter_provider(mp)
    return tp, tp_encoded, mp


class EncodeLightSpans:
    """modelotel's OTLP exporters' work before the network: the request for its spans, serialized."""

    def export_light(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        from modelotel.otlp.proto import light_spans_to_request

        light_spans_to_request(spans).SerializeToString()
        return SpanExportResult.SUCCESS

    def export(self, spans):
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
        from opentelemetry.sdk.trace.export import SpanExportResult

        encode_spans(spans).SerializeToString()
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis=30_000):
        return True

    def shutdown(self):
        pass


def with_flush(once, flush):
    """Charge a round with exporting its own spans: ``flush`` (encoding them) runs, timed, after it."""

    def run(n, loop=None):
        per_request = once(n, loop)
        t0 = time.process_time_ns()
        flush()
        return per_request + (time.process_time_ns() - t0) / n

    return run


def with_tracer(once, tracer):
    """Run a variant with modelotel's spans going to ``tracer`` (the application's provider) instead."""
    from modelotel.runtime import STATE

    def run(*args):
        saved, STATE.tracer = STATE.tracer, tracer
        try:
            return once(*args)
        finally:
            STATE.tracer = saved

    return run


# -- FastAPI -------------------------------------------------------------------------------------


def make_fastapi():
    from fastapi import FastAPI

    try:  # FastAPI >= 0.16x has built-in OTel telemetry, on when global providers exist: off for the baseline
        app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})
    except TypeError:
        app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int):
        return {"id": item_id, "ok": True}

    return app


def asgi_request(app, status: list, path: str = "/items/42"):
    """A coroutine function doing one GET ``path`` on ``app``, called directly (no server, no sockets)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"user-agent", b"bench")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    async def request():
        await app(dict(scope), receive, send)

    return request


# -- Flask ---------------------------------------------------------------------------------------


def wsgi_request(app, status: list):
    """A function doing one GET /items/42 on ``app`` through WSGI, reading and closing the body."""
    from werkzeug.test import EnvironBuilder

    base = EnvironBuilder(path="/items/42", method="GET").get_environ()

    def start_response(s, headers, exc_info=None):
        status.append(s)

    def request():
        body = app(dict(base), start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close:
            close()

    return request


def make_flask():
    from flask import Flask

    app = Flask(__name__)

    @app.get("/items/<int:item_id>")
    def item(item_id):
        return {"id": item_id, "ok": True}

    return app


# -- gRPC ----------------------------------------------------------------------------------------


def grpc_runner(interceptors):
    from concurrent import futures

    import grpc

    def predict(request, context):
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Model", {"Predict": grpc.unary_unary_rpc_method_handler(predict)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=interceptors)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary("/bench.Model/Predict")
    call(b"x", timeout=10)

    def one_call() -> None:
        call(b"payload", timeout=10)

    return one_call, (server, channel)


class _Metadatum(tuple):
    """What grpc's ``invocation_metadata()`` holds: (key, value) pairs with .key and .value."""

    key = property(lambda self: self[0])
    value = property(lambda self: self[1])


class StandInContext:
    """The ServicerContext methods both interceptors call, answering as a live, successful call does."""

    metadata = (_Metadatum(("user-agent", "grpc-python/bench")),)

    def invocation_metadata(self):
        return self.metadata

    def peer(self):
        return "ipv4:127.0.0.1:50000"

    def is_active(self):
        return True

    def code(self):
        return None

    def details(self):
        return None

    def time_remaining(self):
        return 9.0


def grpc_direct_runner(interceptor):
    """The server side alone: the intercepted unary behaviour called in-process, no network, no grpc threads."""
    import grpc

    def predict(request, context):
        return request

    handler = grpc.unary_unary_rpc_method_handler(predict)

    class Details:
        method = "/bench.Model/Predict"
        invocation_metadata = StandInContext.metadata

    behavior = (
        predict if interceptor is None else interceptor.intercept_service(lambda _: handler, Details()).unary_unary
    )
    context = StandInContext()
    assert behavior(b"x", context) == b"x"

    def once(n, _loop=None):
        t0 = time.process_time_ns()
        for _ in range(n):
            behavior(b"payload", context)
        return (time.process_time_ns() - t0) / n

    return once


def interleave_calls(variants: dict, rounds: int, calls: int) -> dict[str, float]:
    """Like ``interleave``, but variants alternate call by call within a round.

    A loopback gRPC call spends ~400 us of CPU in several threads (client, grpc's pollers, the
    servicer's pool), and that varies far more from moment to moment than the ~10 us being measured;
    alternating every call gives all variants the same moments. The measure is the process CPU time
    per call (all threads), the statistic the median over rounds of the per-round means. A variant's
    ``flush`` (the span export of ours traced) runs after each round and is charged to that round.
    """
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for call, _ in variants.values():
        for _ in range(20):
            call()
    clock = time.process_time_ns
    rng = random.Random(ORDER_SEED)
    plan = list(variants.items())
    for _ in range(rounds):
        totals = dict.fromkeys(variants, 0)
        for _ in range(calls):
            for name, (call, _) in shuffled(plan, rng):
                t0 = clock()
                call()
                totals[name] += clock() - t0
        for name, (_, flush) in variants.items():
            if flush is not None:
                t0 = clock()
                flush()
                totals[name] += clock() - t0
            samples[name].append(totals[name] / calls)
    return {name: float(np.median(v)) for name, v in samples.items()}


def interleave_requests(variants: dict, rounds: int, requests: int, loop=None) -> dict[str, float]:
    """Per-request alternation for the in-process apps: ``variants`` maps a name to (requesters, tracer, flush).

    Each requester does one request (a coroutine function when ``loop`` is given). Every variant has
    several app instances, used in turn, so no variant's figure rests on one app object's memory
    layout; the variants alternate request by request, so they share the machine's moments, in a new
    random order for every request (``shuffled``: a fixed order made the variant after the official
    one pay for the official's cache footprint, 12-17 us, every time). A round
    times ``requests`` requests of each (process CPU per request); then a variant's ``flush`` (ours
    traced: its span queue, encoded and written) runs and is charged to it. ``tracer`` (the app
    provider variant) is swapped in around each of its requests, outside the timed part. The first
    round is a warm-up; the figure is the median over rounds of the per-round means.
    """
    from modelotel.runtime import STATE

    clock = time.process_time_ns
    samples: dict[str, list[float]] = {name: [] for name in variants}
    plan = list(variants.items())
    rng = random.Random(ORDER_SEED)

    def schedule():
        """(variant, request) in turn; a variant's tracer is current from its yield to the next (untimed)."""
        for i in range(requests):
            for name, (requesters, tracer, _) in shuffled(plan, rng):
                saved = STATE.tracer
                if tracer is not None:
                    STATE.tracer = tracer
                yield name, requesters[i % len(requesters)]
                STATE.tracer = saved

    def one_round_sync(totals: dict) -> None:
        for name, request in schedule():
            t0 = clock()
            request()
            totals[name] += clock() - t0

    async def one_round_async(totals: dict) -> None:
        for name, request in schedule():
            t0 = clock()
            await request()
            totals[name] += clock() - t0

    for round_number in range(rounds + 1):
        totals = dict.fromkeys(variants, 0)
        if loop is None:
            one_round_sync(totals)
        else:
            loop.run_until_complete(one_round_async(totals))
        for name, (_, _, flush) in plan:
            if flush is not None:
                t0 = clock()
                flush()
                totals[name] += clock() - t0
        if round_number:
            for name in variants:
                samples[name].append(totals[name] / requests)
    return {name: float(np.median(v)) for name, v in samples.items()}


WARM_BLOCKS = 6  # the warm figure times the same number of requests in blocks of requests / 6


def interleave_blocks(variants: dict, rounds: int, requests: int, loop=None) -> dict[str, float]:
    """``interleave_requests``' variants timed in blocks: each round runs ``requests`` requests of one
    variant (one app instance, the next one the next round), then the next variant's. The code under
    test stays in the CPU caches within a block, as in a tight loop: the warm figure. Short blocks and
    many rounds keep the variants close in time, so they share the machine's moments.
    """
    from modelotel.runtime import STATE

    clock = time.process_time_ns
    samples: dict[str, list[float]] = {name: [] for name in variants}

    async def block_async(request, n: int) -> None:
        for _ in range(n):
            await request()

    rng = random.Random(ORDER_SEED)
    plan = list(variants.items())
    for round_number in range(rounds + 1):
        for name, (requesters, tracer, flush) in shuffled(plan, rng):
            request = requesters[round_number % len(requesters)]
            if tracer is not None:
                saved, STATE.tracer = STATE.tracer, tracer
            t0 = clock()
            if loop is None:
                for _ in range(requests):
                    request()
            else:
                loop.run_until_complete(block_async(request, requests))
            if flush is not None:
                flush()
            spent = clock() - t0
            if tracer is not None:
                STATE.tracer = saved
            if round_number:
                samples[name].append(spent / requests)
    return {name: float(np.median(v)) for name, v in samples.items()}


def interleave(variants: dict, rounds: int, requests: int, loop) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for once in variants.values():
        once(max(20, requests // 5), loop)  # warm-up
    rng = random.Random(ORDER_SEED)
    plan = list(variants.items())
    for _ in range(rounds):
        for name, once in shuffled(plan, rng):
            samples[name].append(once(requests, loop))
    return {name: float(np.median(v)) for name, v in samples.items()}


BARE = "bare"
OFFICIAL_ENCODED = "official, spans OTLP-encoded"
OFFICIAL = "official, spans discarded"
OURS_TRACED = "ours traced"
OURS_APP = "ours traced, app provider"
OURS_METRICS = "ours metrics-only"
# Each of ours against the official variant that does the same with spans (metrics-only: the cheaper official).
AGAINST = {OURS_TRACED: OFFICIAL_ENCODED, OURS_APP: OFFICIAL, OURS_METRICS: OFFICIAL}


def table(
    title: str, label: str, medians: dict[str, float], warm: dict[str, float] | None, warm_block: int
) -> list[str]:
    """A variant table (names ``f"{label} {variant}"``); with ``warm`` (interleave_blocks), two more columns."""
    head = "| variant | median us/request | added us | against | times less |"
    rule = "|---|---:|---:|---|---:|"
    if warm is not None:
        head += " added us, warm | times less, warm |"
        rule += "---:|---:|"
    lines = [f"**{title}**", "", head, rule]

    def added(values: dict[str, float], variant: str) -> float:
        return values[f"{label} {variant}"] - values[f"{label} {BARE}"]

    def ratio(values: dict[str, float], variant: str) -> str:
        against = AGAINST.get(variant)
        ours = added(values, variant)
        return f"{added(values, against) / ours:.1f}x" if against is not None and ours > 0 else ""

    for name, value in medians.items():
        variant = name[len(label) + 1 :]
        line = (
            f"| {name} | {value / 1000:,.1f} | {added(medians, variant) / 1000:,.1f} | "
            f"{AGAINST.get(variant, '')} | {ratio(medians, variant)} |"
        )
        if warm is not None:
            line += f" {added(warm, variant) / 1000:,.1f} | {ratio(warm, variant)} |"
        lines.append(line)

    def summary(values: dict[str, float]) -> str:
        ours = added(values, OURS_TRACED)
        return (
            f"adds {ours / 1000:,.1f} us against the official's {added(values, OFFICIAL_ENCODED) / 1000:,.1f} us with "
            f"OTLP-encoded spans ({ratio(values, OURS_TRACED)} less; {added(values, OFFICIAL) / 1000:,.1f} us, "
            f"{added(values, OFFICIAL) / max(ours, 1):.1f}x, with its spans discarded)"
        )

    lines += [
        "",
        "modelotel traced " + summary(medians) + ("" if warm is None else f"; warm, it {summary(warm)}") + ".",
    ]
    if warm is not None:
        lines.append(
            "(Requests alternate between the variants, so each one's code starts with cold CPU caches, as in a "
            "server that runs other code between requests; the warm columns time blocks of "
            f"{warm_block} requests per variant, alternating block by block.)"
        )
    lines.append("")
    return lines


# -- load test -----------------------------------------------------------------------------------

LOAD_APP = """
import time, sys
from fastapi import FastAPI
import modelotel

def burn(seconds):
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1
    return x

def make(instrumented):
    app = FastAPI()
    model = (lambda x: [0.2, 0.8])
    if instrumented:
        model = modelotel.instrument_model(name="load", version="1")(model)
    @app.get("/predict/{item}")
    async def predict(item: int):
        burn(0.001)
        return {"p": model([item])}
    if instrumented:
        from modelotel.integrations.fastapi import instrument_app
        instrument_app(app)
    return app

app = make(sys.argv[1] == "ours")
if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="error", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk_run(variant: str, seconds: int, env: dict) -> tuple[float, float]:
    """(requests/s, server CPU microseconds per request) of one wrk run against a fresh server."""
    port = free_port()
    script = HERE / f"_load_app_{os.getpid()}.py"
    script.write_text(LOAD_APP)
    proc = subprocess.Popen([sys.executable, str(script), variant, str(port)], env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        subprocess.run(["wrk", "-t1", "-c8", "-d2s", f"http://127.0.0.1:{port}/predict/1"], capture_output=True)
        cpu0 = cpu_seconds(proc.pid)
        out = subprocess.run(
            ["wrk", "-t1", "-c8", f"-d{seconds}s", f"http://127.0.0.1:{port}/predict/1"],
            capture_output=True,
            text=True,
        ).stdout
        cpu = cpu_seconds(proc.pid) - cpu0
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        total = re.search(r"(\d+) requests in", out)
        if rps is None or total is None:
            return float("nan"), float("nan")
        return float(rps.group(1)), cpu * 1e6 / int(total.group(1))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        script.unlink(missing_ok=True)


COLLECTOR_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
exporters:
  file:
    path: {path}
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
    metrics: {{receivers: [otlp], exporters: [file]}}
"""


def collector_binary() -> str | None:
    path = os.environ.get("MODELOTEL_OTELCOL")
    if not path:
        build = HERE.parent / "collector_config" / "build.sh"
        out = subprocess.run(["bash", str(build)], capture_output=True, text=True)
        path = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else None
    return path if path and os.access(path, os.X_OK) else None


def start_collector(workdir: Path) -> tuple[subprocess.Popen, int]:
    """The modelotel collector receiving OTLP/gRPC on loopback and writing everything to a file."""
    binary = collector_binary()
    if binary is None:
        raise RuntimeError("--otlp needs the collector: set MODELOTEL_OTELCOL or run `make collector`")
    port = free_port()
    config = workdir / "collector.yaml"
    config.write_text(COLLECTOR_CONFIG.format(port=port, path=workdir / "collector-out.jsonl"))
    proc = subprocess.Popen([binary, "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the collector did not start")


def load_test(repeats: int, seconds: int, otlp: bool = False) -> list[str]:
    if shutil.which("wrk") is None:
        return ["Load test skipped: `wrk` is not installed (`apt-get install wrk`; `make bench` does it)."]
    env = dict(os.environ, OTEL_METRIC_EXPORT_INTERVAL="5000", MODELOTEL_TRACES="off")
    env["MODELOTEL_EXPORT_FILE"] = os.devnull
    variants = {
        "bare": ("bare", env),
        "ours, metrics only": ("ours", env),
        "ours, traced": ("ours", dict(env, MODELOTEL_TRACES="span")),
        # A production setting: every request measured, one in ten traced (the sampler decides per trace).
        "ours, 10% of requests traced": (
            "ours",
            dict(
                env,
                MODELOTEL_TRACES="span",
                OTEL_TRACES_SAMPLER="parentbased_traceidratio",
                OTEL_TRACES_SAMPLER_ARG="0.1",
            ),
        ),
    }
    collector = None
    workdir = Path(tempfile.mkdtemp(prefix="modelotel-load-"))
    try:
        if otlp:
            collector, port = start_collector(workdir)
            otlp_env = dict(env, MODELOTEL_TRACES="span", OTEL_EXPORTER_OTLP_INSECURE="true")
            del otlp_env["MODELOTEL_EXPORT_FILE"]  # then the OTLP endpoint selects the OTLP exporters
            otlp_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
            variants["ours, traced, OTLP/gRPC to a collector"] = ("ours", otlp_env)
        results: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        rng = random.Random(ORDER_SEED)
        for _ in range(repeats):  # every repeat runs each variant once, in a new order
            for name, (app, variant_env) in shuffled(list(variants.items()), rng):
                rps, us = wrk_run(app, seconds, variant_env)
                results[name].append(rps)
                cpu[name].append(us)
    finally:
        if collector is not None:
            collector.terminate()
            collector.wait(20)
        shutil.rmtree(workdir, ignore_errors=True)
    med = {k: float(np.median(v)) for k, v in results.items()}
    cpu_med = {k: float(np.median(v)) for k, v in cpu.items()}

    def paired(values: dict[str, list[float]], name: str) -> float:
        """Median over the repeats of the variant's value relative to bare's in the same repeat, minus 1."""
        return float(np.nanmedian(np.asarray(values[name]) / np.asarray(values["bare"]))) - 1

    lines = [
        f"**Load test**: wrk (1 thread, 8 connections, {seconds} s x {repeats} runs per variant; every repeat runs "
        "each variant once, in a new random order, and a variant is compared with bare's run in the same repeat: "
        "the median of those paired ratios) "
        "against uvicorn (1 worker) serving FastAPI with a 1 ms CPU-bound model; traced = every request sampled "
        "(server span + model span), 10% = the SDK's parentbased_traceidratio sampler at 0.1. Export: the "
        "OTLP-JSON file exporter writing to /dev/null"
        + (", or OTLP/gRPC to the modelotel collector on loopback (another process, same 2 cores)" if otlp else "")
        + f"; 1-min load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| variant | median requests/s | runs | loss vs bare | server CPU us/request | added CPU |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name, value in med.items():
        loss = "" if name == "bare" else f"{-paired(results, name) * 100:.1f}%"
        added = "" if name == "bare" else f"{paired(cpu, name) * 100:.1f}%"
        runs = ", ".join(f"{v:,.0f}" for v in results[name])
        lines.append(f"| {name} | {value:,.0f} | {runs} | {loss} | {cpu_med[name]:,.0f} | {added} |")
    lines += [
        "",
        "Server CPU per request (all threads of the uvicorn process, export thread included, from /proc) is the "
        "steadier measure on a shared machine: for a CPU-bound single-process server, added CPU per request is "
        "the throughput it loses.",
    ]
    return lines


def breakdown(requests: int, loop) -> list[str]:
    """Where a traced request's cost goes, in one process: the load test's app, requests alternated.

    Variants of the same FastAPI app with the 1 ms model run request by request in turn (so load on
    the machine hits them alike); each request's main-thread CPU is measured (``thread_time``), and
    the medians are compared with the bare app's. Spans are exported by flushing the queue every 25
    rounds on the main thread, its CPU shared out per span; the metric export thread's CPU is shared
    out over the instrumented requests.
    """
    import threading

    from fastapi import FastAPI

    import modelotel
    from modelotel.integrations.fastapi import instrument_app
    from modelotel.runtime import STATE

    def burn(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    # name: (server span, model span, features hash on the model span)
    kinds = {
        "bare": None,
        "metrics only": (False, False, True),
        "server span only": (True, False, True),
        "model span only": (False, True, True),
        "traced": (True, True, True),
        "traced, no features hash": (True, True, False),
    }

    def make_app(name, kind):
        app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})

        def model(x):
            return [0.2, 0.8]

        if kind is not None:
            _, model_span, hashing = kind
            model = modelotel.instrument_model(
                name=f"load {name}", version="1", traces=None if model_span else "off", hash_features=hashing
            )(model)

        @app.get("/predict/{item}")
        async def predict(item: int):
            burn(0.001)
            return {"p": model([item])}

        if kind is not None:
            instrument_app(app, traces=None if kind[0] else "off")
        return app

    apps = {name: make_app(name, kind) for name, kind in kinds.items()}
    spans_per_request = {name: (kind[0] + kind[1]) if kind else 0 for name, kind in kinds.items()}
    requests_of = {name: asgi_request(app, [], "/predict/1") for name, app in apps.items()}
    plan = list(requests_of.items())
    rng = random.Random(ORDER_SEED)

    times: dict[str, list[int]] = {name: [] for name in apps}
    clock = time.thread_time_ns
    flush_ns = 0
    # A traced model call leaves its work (extraction, features hash, span attributes) to whichever export
    # thread comes first (ModelBuffers.complete_traced): time it where it runs, charge it to its variant,
    # and take it out of the export figures that are shared out.
    from modelotel.metrics.buffers import ModelBuffers

    deferred_ns: dict[str, int] = {name: 0 for name in apps}
    deferred_on_main = 0  # within the timed span flushes
    in_flush = [False]
    main_thread = threading.get_ident()
    complete_traced = ModelBuffers.complete_traced

    def timed_complete(self):
        nonlocal deferred_on_main
        t0 = clock()
        complete_traced(self)
        spent = clock() - t0
        name = self.attributes.get("ml.model.name", "")[len("load ") :]
        if name in deferred_ns:
            deferred_ns[name] += spent
        if in_flush[0] and threading.get_ident() == main_thread:
            deferred_on_main += spent

    ModelBuffers.complete_traced = timed_complete
    export_thread = next((t for t in threading.enumerate() if t.name == "modelotel-export"), None)

    def export_cpu() -> float:
        if export_thread is None or not export_thread.is_alive():
            return 0.0
        return time.clock_gettime(time.pthread_getcpuclockid(export_thread.ident))

    async def run(n, record):
        nonlocal flush_ns
        for i in range(n):
            for name, request in shuffled(plan, rng):
                t0 = clock()
                await request()
                if record:
                    times[name].append(clock() - t0)
            if i % 25 == 24:  # at most 150 spans queued: below the batch size the span thread exports on its own
                in_flush[0] = True
                t0 = clock()
                STATE.span_provider.force_flush()
                if record:
                    flush_ns += clock() - t0
                in_flush[0] = False

    try:
        loop.run_until_complete(run(200, False))
        deferred_ns.update(dict.fromkeys(deferred_ns, 0))
        deferred_on_main = 0
        cpu0 = export_cpu()
        loop.run_until_complete(run(requests, True))
        STATE.recorder.fold()  # what is still queued, on this thread
        export_ns = (export_cpu() - cpu0) * 1e9
    finally:
        ModelBuffers.complete_traced = complete_traced
    deferred_total = sum(deferred_ns.values())
    metric_export_us = (export_ns - (deferred_total - deferred_on_main)) / 1000 / (requests * (len(apps) - 1))
    span_export_us = max(0, flush_ns - deferred_on_main) / 1000 / (requests * sum(spans_per_request.values()))
    base = float(np.median(times["bare"]))
    lines = [
        f"**Where a traced request's time goes** (one process, the load test's FastAPI app with its 1 ms model, "
        f"the variants alternating request by request, {requests:,} requests each; main-thread CPU per request, "
        "median, minus the bare app's; span export and metric export as measured on their own and shared out). "
        f"Bare: {base / 1000:,.0f} us per request.",
        "",
        "| variant | request path | model span, deferred | span export | metric export | total | of the bare request |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in apps:
        if name == "bare":
            continue
        path = (float(np.median(times[name])) - base) / 1000
        deferred = deferred_ns[name] / 1000 / requests
        spans = span_export_us * spans_per_request[name]
        total = path + deferred + spans + metric_export_us
        lines.append(
            f"| {name} | {path:,.1f} us | {deferred:,.1f} us | {spans:,.1f} us | {metric_export_us:,.1f} us "
            f"| {total:,.1f} us | {100 * total / (base / 1000):.1f}% |"
        )
    lines += [
        "",
        f"A span costs {span_export_us:,.1f} us to export (encoded to an OTLP request), once the request is "
        "done. The model span is the instrumented call's traced path (`@instrument_model`): on the request path "
        "the span, the prediction id and snapshots of output and features; deferred to an export thread (timed "
        "there, per variant) the confidence and label, the keyed features hash, the span's attributes and the "
        "pending-feedback entry. The absolute values run higher than the load test's (here every request starts "
        "right after the model's 1 ms loop, with cold caches, and the server does little else): read the table "
        "for the shares.",
        "",
    ]
    return lines


def micro(args: argparse.Namespace) -> list[str]:
    os.environ["MODELOTEL_EXPORT_FILE"] = os.devnull
    import modelotel
    from modelotel.integrations import fastapi as ours_fastapi
    from modelotel.integrations import flask as ours_flask
    from modelotel.integrations import grpc as ours_grpc
    from modelotel.runtime import STATE

    # First, so that modelotel builds (and installs globally) its own TracerProvider, as in production.
    modelotel.configure(service_name="bench", exporter="file", path=os.devnull, export_interval=60, traces="span")
    tp, tp_encoded, mp = providers()
    # Ours traced encodes its spans as its OTLP exporters do (the request, serialized), like the
    # official variant whose spans are OTLP-encoded; nothing goes over the network for either.
    span_queue = STATE.span_provider._active_span_processor._span_processors[0]
    span_queue.exporter = EncodeLightSpans()
    app_tracer = tp.get_tracer("modelotel", modelotel.__version__)
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor as OfficialFastAPI
    from opentelemetry.instrumentation.flask import FlaskInstrumentor as OfficialFlask
    from opentelemetry.instrumentation.grpc import server_interceptor as official_grpc_interceptor

    loop = asyncio.new_event_loop()
    names = (BARE, OFFICIAL_ENCODED, OFFICIAL, OURS_TRACED, OURS_APP, OURS_METRICS)

    # Several app instances per variant, used in turn (see interleave_requests).
    instances = max(1, args.instances)
    tracers = {OURS_APP: app_tracer}
    flushes = {OURS_TRACED: STATE.span_provider.force_flush, OFFICIAL_ENCODED: tp_encoded.force_flush}
    official_providers = {OFFICIAL: tp, OFFICIAL_ENCODED: tp_encoded}

    def variants(label, make, official, ours, requester, run, ok):
        """name -> (requesters of ``instances`` apps, tracer, flush), each app checked with one request."""
        out = {}
        for name in names:
            requesters = []
            for _ in range(instances):
                app = make()
                if name in official_providers:
                    official(app, tracer_provider=official_providers[name], meter_provider=mp)
                elif name.startswith("ours"):
                    ours(app, traces="off" if name == OURS_METRICS else None)
                status: list = []
                request = requester(app, status)
                run(request)
                assert ok(status[-1]), (name, status)
                requesters.append(request)
            out[f"{label} {name}"] = (requesters, tracers.get(name), flushes.get(name))
        return out

    fastapi_variants = variants(
        "FastAPI",
        make_fastapi,
        OfficialFastAPI.instrument_app,
        ours_fastapi.instrument_app,
        asgi_request,
        lambda request: loop.run_until_complete(request()),
        lambda status: status == 200,
    )
    flask_variants = variants(
        "Flask",
        make_flask,
        OfficialFlask.instrument_app,
        ours_flask.instrument_app,
        wsgi_request,
        lambda request: request(),
        lambda status: status.startswith("200"),
    )
    # The setup's objects (frameworks, apps, SDK) move to the permanent generation: a full collection then
    # scans what the requests allocate, as in a long-running server, not the whole import graph.
    gc.collect()
    gc.freeze()
    fastapi = interleave_requests(fastapi_variants, args.rounds, args.requests, loop)
    block = max(1, args.requests // WARM_BLOCKS)
    fastapi_warm = interleave_blocks(fastapi_variants, args.rounds * WARM_BLOCKS, block, loop)
    flask = interleave_requests(flask_variants, args.rounds, args.requests)
    flask_warm = interleave_blocks(flask_variants, args.rounds * WARM_BLOCKS, block)

    grpc_servers = []
    grpc_variants = {}
    grpc_direct_variants = {}

    def grpc_interceptor(name):
        if name in official_providers:
            return official_grpc_interceptor(tracer_provider=official_providers[name])
        if name == BARE:
            return None
        return ours_grpc.server_interceptor(traces="off" if name == OURS_METRICS else None)

    for name in names:
        interceptor = grpc_interceptor(name)
        one_call, handles = grpc_runner([interceptor] if interceptor is not None else [])
        once = grpc_direct_runner(grpc_interceptor(name))
        if name == OURS_APP:
            one_call = with_tracer(one_call, app_tracer)
            once = with_tracer(once, app_tracer)
        flush = flushes.get(name)
        if flush is not None:
            once = with_flush(once, flush)
        grpc_servers.append(handles)
        grpc_variants[f"gRPC unary {name}"] = (one_call, flush)
        grpc_direct_variants[f"gRPC server side {name}"] = once
    grpc = interleave_calls(grpc_variants, args.grpc_rounds, args.grpc_calls)
    for server, channel in grpc_servers:
        channel.close()
        server.stop(None)
    grpc_direct = interleave(grpc_direct_variants, args.rounds, args.requests, None)
    breakdown_lines = breakdown(args.breakdown_requests, loop) if args.breakdown_requests else []
    modelotel.shutdown()

    lines = [
        f"Machine: {machine_line()}. FastAPI and Flask: {args.instances} app instances per variant used in turn, "
        f"the variants alternating request by request, {args.rounds} rounds of {args.requests} requests each "
        "(after a warm-up round), median of the per-round means; the setup's objects frozen out of the garbage "
        "collector (gc.freeze), as in a long-running server. Every span sampled; nothing goes over a network. "
        "Official, spans OTLP-encoded: SDK TracerProvider and BatchSpanProcessor, its exporter doing what the "
        "SDK's OTLP exporters do before sending (`encode_spans`, serialized), flushed and charged every round. "
        "Official, spans discarded: the same with an exporter that drops the spans unencoded (no production "
        "setup does that). Ours traced: modelotel's own provider, its spans encoded as its OTLP exporters do "
        "(the export request, serialized) on its export thread, flushed and charged every round. Ours traced, "
        "app provider: modelotel's spans through the discarding SDK provider (an application that set its own). "
        "Each of ours is compared with the official variant that handles spans alike (the `against` column).",
        "",
    ]
    for title, label, medians, warm in (
        ("FastAPI (ASGI, no sockets)", "FastAPI", fastapi, fastapi_warm),
        ("Flask (WSGI, no sockets)", "Flask", flask, flask_warm),
        (
            f"gRPC unary (loopback; CPU time of the whole process per call, client included; variants alternate "
            f"call by call, {args.grpc_rounds} rounds of {args.grpc_calls} calls, median of the round means)",
            "gRPC unary",
            grpc,
            None,
        ),
        (
            "gRPC unary, the server side alone (the intercepted behaviour called in-process with a stand-in "
            "context: no network, no grpc threads)",
            "gRPC server side",
            grpc_direct,
            None,
        ),
    ):
        lines += table(title, label, medians, warm, block if warm is not None else 0)
    lines.append("The official gRPC interceptor emits no metrics; modelotel's also records `rpc.server.call.duration`.")
    lines.append("")
    lines += breakdown_lines
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--instances", type=int, default=3, help="app instances per variant (FastAPI, Flask)")
    parser.add_argument("--grpc-rounds", type=int, default=200)
    parser.add_argument("--breakdown-requests", type=int, default=3000, help="0 skips the cost breakdown")
    parser.add_argument("--grpc-calls", type=int, default=30, help="calls per variant per gRPC round")
    parser.add_argument("--no-load", action="store_true")
    parser.add_argument("--no-micro", action="store_true", help="the load test only (implies --no-write)")
    parser.add_argument("--load-repeats", type=int, default=8)
    parser.add_argument("--load-seconds", type=int, default=6)
    parser.add_argument("--otlp", action="store_true", help="also load-test OTLP/gRPC span export to a collector")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    lines = [] if args.no_micro else micro(args)
    if not args.no_load:
        lines += load_test(args.load_repeats, args.load_seconds, args.otlp)
    text = "\n".join(lines)
    print(text)
    if not (args.no_write or args.no_micro):
        write_section(HERE / "RESULTS.md", "middleware", "Middleware overhead (`benchmarks/middleware.py`)", text)


if __name__ == "__main__":
    main()
