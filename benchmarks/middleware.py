"""Per-request overhead of modelotel's middleware against the official OpenTelemetry instrumentations.

One process, variants interleaved round-robin, medians over rounds:

* FastAPI (ASGI called directly, no sockets) and Flask (WSGI called directly): bare app, the
  official instrumentation (``opentelemetry-instrumentation-fastapi`` / ``-flask``), modelotel
  traced, modelotel metrics-only. Each app serves the same tiny JSON endpoint with a route template.
* gRPC unary over loopback: no interceptor, the official ``server_interceptor``, modelotel's.
* A load test with ``wrk`` against uvicorn serving a 1 ms CPU-bound "model": requests/s bare vs ours.

All instrumented variants share one SDK TracerProvider (AlwaysOn sampler, batch processor, a
discarding exporter) and one SDK MeterProvider, so span costs are the same for both sides.

    python benchmarks/middleware.py [--rounds 15] [--requests 300] [--no-load]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _results import machine_line, write_section  # noqa: E402


def providers():
    from opentelemetry import metrics, trace
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

    class DiscardMetrics(MetricExporter):
        def export(self, metrics_data, timeout_millis=10_000, **kwargs):
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis=10_000):
            return True

        def shutdown(self, timeout_millis=30_000, **kwargs):
            pass

    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(DiscardSpans(), max_queue_size=1 << 16))
    trace.set_tracer_provider(tp)
    mp = MeterProvider(metric_readers=[PeriodicExportingMetricReader(DiscardMetrics(), 60_000)])
    metrics.set_meter_provider(mp)
    return tp, mp


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


def asgi_runner(app):
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/items/42",
        "raw_path": b"/items/42",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"user-agent", b"bench")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    status = []

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    async def run(n):
        for _ in range(n):
            await app(dict(scope), receive, send)

    def once(n, loop):
        t0 = time.perf_counter_ns()
        loop.run_until_complete(run(n))
        return (time.perf_counter_ns() - t0) / n

    return once, status


# -- Flask ---------------------------------------------------------------------------------------


def make_flask():
    from flask import Flask

    app = Flask(__name__)

    @app.get("/items/<int:item_id>")
    def item(item_id):
        return {"id": item_id, "ok": True}

    return app


def wsgi_runner(app):
    from werkzeug.test import EnvironBuilder

    base = EnvironBuilder(path="/items/42", method="GET").get_environ()
    status = []

    def start_response(s, headers, exc_info=None):
        status.append(s)

    def once(n, _loop=None):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            body = app(dict(base), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close:
                close()
        return (time.perf_counter_ns() - t0) / n

    return once, status


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

    def once(n, _loop=None):
        # Process CPU time (client, grpc's C threads and the servicer threads): the wall-clock latency
        # of a loopback call is dominated by thread hand-offs and too noisy to resolve ~10 us.
        t0 = time.process_time_ns()
        for _ in range(n):
            call(b"payload", timeout=10)
        return (time.process_time_ns() - t0) / n

    return once, (server, channel)


def interleave(variants: dict, rounds: int, requests: int, loop) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for once in variants.values():
        once(max(20, requests // 5), loop)  # warm-up
    for _ in range(rounds):
        for name, once in variants.items():
            samples[name].append(once(requests, loop))
    return {name: float(np.median(v)) for name, v in samples.items()}


def table(title: str, medians: dict[str, float], bare: str, official: str, ours: str) -> list[str]:
    lines = [f"**{title}**", "", "| variant | median us/request | added us | vs official |", "|---|---:|---:|---:|"]
    base = medians[bare]
    off_added = medians[official] - base
    for name, value in medians.items():
        added = value - base
        ratio = "" if name == bare or added <= 0 else f"{off_added / added:.1f}x less" if name != official else "1x"
        lines.append(f"| {name} | {value / 1000:,.1f} | {added / 1000:,.1f} | {ratio} |")
    ours_added = medians[ours] - base
    lines += [
        "",
        f"modelotel traced adds {ours_added / 1000:,.1f} us against the official {off_added / 1000:,.1f} us "
        f"({off_added / max(ours_added, 1):.1f}x less).",
        "",
    ]
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


def wrk_rps(variant: str, seconds: int, env: dict) -> float:
    port = free_port()
    script = HERE / "_load_app.py"
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
        out = subprocess.run(
            ["wrk", "-t1", "-c8", f"-d{seconds}s", f"http://127.0.0.1:{port}/predict/1"],
            capture_output=True,
            text=True,
        ).stdout
        match = re.search(r"Requests/sec:\s+([\d.]+)", out)
        return float(match.group(1)) if match else float("nan")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        script.unlink(missing_ok=True)


def load_test(repeats: int, seconds: int) -> list[str]:
    if shutil.which("wrk") is None:
        return ["Load test skipped: `wrk` is not installed (`apt-get install wrk`; `make bench` does it)."]
    env = dict(os.environ, OTEL_METRIC_EXPORT_INTERVAL="5000", MODELOTEL_TRACES="off")
    env["MODELOTEL_EXPORT_FILE"] = os.devnull
    traced_env = dict(env, MODELOTEL_TRACES="span")
    results: dict[str, list[float]] = {"bare": [], "ours, metrics only": [], "ours, traced": []}
    for _ in range(repeats):
        results["bare"].append(wrk_rps("bare", seconds, env))
        results["ours, metrics only"].append(wrk_rps("ours", seconds, env))
        results["ours, traced"].append(wrk_rps("ours", seconds, traced_env))
    med = {k: float(np.median(v)) for k, v in results.items()}
    lines = [
        f"**Load test**: wrk (1 thread, 8 connections, {seconds} s x {repeats} runs per variant, interleaved) "
        "against uvicorn (1 worker) serving FastAPI with a 1 ms CPU-bound model, file export to /dev/null, "
        "traced = every request sampled (server span + model span).",
        "",
        "| variant | median requests/s | runs | loss vs bare |",
        "|---|---:|---|---:|",
    ]
    for name, value in med.items():
        loss = "" if name == "bare" else f"{(1 - value / med['bare']) * 100:.1f}%"
        runs = ", ".join(f"{v:,.0f}" for v in results[name])
        lines.append(f"| {name} | {value:,.0f} | {runs} | {loss} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--no-load", action="store_true")
    parser.add_argument("--load-repeats", type=int, default=3)
    parser.add_argument("--load-seconds", type=int, default=8)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    os.environ["MODELOTEL_EXPORT_FILE"] = os.devnull
    tp, mp = providers()
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor as OfficialFastAPI
    from opentelemetry.instrumentation.flask import FlaskInstrumentor as OfficialFlask
    from opentelemetry.instrumentation.grpc import server_interceptor as official_grpc_interceptor

    import modelotel
    from modelotel.integrations import fastapi as ours_fastapi
    from modelotel.integrations import flask as ours_flask
    from modelotel.integrations import grpc as ours_grpc

    modelotel.configure(service_name="bench", exporter="none", export_interval=60, traces="span")
    loop = asyncio.new_event_loop()

    apps = {name: make_fastapi() for name in ("bare", "official", "ours traced", "ours metrics-only")}
    OfficialFastAPI.instrument_app(apps["official"], tracer_provider=tp, meter_provider=mp)
    ours_fastapi.instrument_app(apps["ours traced"])
    ours_fastapi.instrument_app(apps["ours metrics-only"], traces="off")
    fastapi_variants = {}
    for name, app in apps.items():
        once, status = asgi_runner(app)
        once(1, loop)
        assert status[-1] == 200, (name, status)
        fastapi_variants[f"FastAPI {name}"] = once
    fastapi = interleave(fastapi_variants, args.rounds, args.requests, loop)

    fapps = {name: make_flask() for name in ("bare", "official", "ours traced", "ours metrics-only")}
    OfficialFlask.instrument_app(fapps["official"], tracer_provider=tp, meter_provider=mp)
    ours_flask.instrument_app(fapps["ours traced"])
    ours_flask.instrument_app(fapps["ours metrics-only"], traces="off")
    flask_variants = {}
    for name, app in fapps.items():
        once, status = wsgi_runner(app)
        once(1)
        assert status[-1].startswith("200"), (name, status)
        flask_variants[f"Flask {name}"] = once
    flask = interleave(flask_variants, args.rounds, args.requests, None)

    grpc_servers = []
    grpc_variants = {}
    for name, interceptors in (
        ("bare", []),
        ("official", [official_grpc_interceptor(tracer_provider=tp)]),
        ("ours traced", [ours_grpc.server_interceptor()]),
        ("ours metrics-only", [ours_grpc.server_interceptor(traces="off")]),
    ):
        once, handles = grpc_runner(interceptors)
        grpc_servers.append(handles)
        grpc_variants[f"gRPC unary {name}"] = once
    grpc = interleave(grpc_variants, args.rounds, max(100, args.requests), None)
    for server, channel in grpc_servers:
        channel.close()
        server.stop(None)
    modelotel.shutdown()

    lines = [
        f"Machine: {machine_line()}. {args.rounds} interleaved rounds of {args.requests} requests per variant; "
        "median of the per-round means. Spans sampled (AlwaysOn) for every traced "
        "variant and the official ones, batch span processor, discarding exporters.",
        "",
    ]
    lines += table("FastAPI (ASGI, no sockets)", fastapi, "FastAPI bare", "FastAPI official", "FastAPI ours traced")
    lines += table("Flask (WSGI, no sockets)", flask, "Flask bare", "Flask official", "Flask ours traced")
    lines += table(
        "gRPC unary (loopback; CPU time of the whole process per call, client included)",
        grpc,
        "gRPC unary bare",
        "gRPC unary official",
        "gRPC unary ours traced",
    )
    lines.append("The official gRPC interceptor emits no metrics; modelotel's also records `rpc.server.call.duration`.")
    lines.append("")
    if not args.no_load:
        lines += load_test(args.load_repeats, args.load_seconds)
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(HERE / "RESULTS.md", "middleware", "Middleware overhead (`benchmarks/middleware.py`)", text)


if __name__ == "__main__":
    main()
