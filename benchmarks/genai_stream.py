"""Cost of instrumenting a token stream: per stream and per streamed item, against the bare generator.

Variants consume the same generator (``yield i`` K times) through: the bare generator; ``@instrument_model``
(modelotel's ml.* stream metrics); ``@instrument_model(genai=GenAI(...))`` (adds gen_ai.server.*, one item = one
token); the same with ``tokens=`` (a user callable per item); and the async-generator forms of the bare and the
genai variant. Untraced (traces off), exporting to a discarding exporter. Each sample times a batch of streams with
perf_counter_ns; variants are interleaved in a new random order every round, and a variant's cost is its median
minus the bare generator's median (same K, same sync/async). Per stream: streams of 1 item. Per item: the slope
between streams of 1 and of K_LONG items, ``(t(K_LONG) - t(1)) / (K_LONG - 1)``, minus the bare slope.

    python benchmarks/genai_stream.py [--rounds 25] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _results import machine_line, write_section  # noqa: E402

K_LONG = 256
STREAMS_SHORT = 400  # streams per sample (1 item each)
STREAMS_LONG = 8  # streams per sample (K_LONG items each)


def build():
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

    import modelotel
    from modelotel import GenAI

    class Discard(MetricExporter):
        def __init__(self) -> None:
            super().__init__()

        def export(self, metrics_data, timeout_millis=10_000, **kwargs):
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis=10_000):
            return True

        def shutdown(self, timeout_millis=30_000, **kwargs):
            return None

    modelotel.configure(service_name="bench", exporter=Discard(), export_interval=5, traces=False)

    def bare(k):
        yield from range(k)

    async def abare(k):
        for i in range(k):
            yield i

    @modelotel.instrument_model("stream")
    def plain(k):
        yield from range(k)

    @modelotel.instrument_model("genai", genai=GenAI(provider="bench"))
    def genai(k):
        yield from range(k)

    @modelotel.instrument_model("genai-tokens", genai=GenAI(provider="bench", tokens=lambda item: 1))
    def genai_tokens(k):
        yield from range(k)

    @modelotel.instrument_model("astream")
    async def aplain(k):
        for i in range(k):
            yield i

    @modelotel.instrument_model("agenai", genai=GenAI(provider="bench"))
    async def agenai(k):
        for i in range(k):
            yield i

    sync = {
        "bare generator": bare,
        "@instrument_model": plain,
        "genai=GenAI(...)": genai,
        "genai=GenAI(..., tokens=callable)": genai_tokens,
    }
    asynchronous = {"bare async generator": abare, "async @instrument_model": aplain, "async genai=GenAI(...)": agenai}
    return sync, asynchronous


def time_sync(fn, k: int, streams: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(streams):
        for _item in fn(k):
            pass
    return (time.perf_counter_ns() - t0) / streams


async def _consume(fn, k: int, streams: int) -> None:
    for _ in range(streams):
        async for _item in fn(k):
            pass


def time_async(loop, fn, k: int, streams: int) -> float:
    t0 = time.perf_counter_ns()
    loop.run_until_complete(_consume(fn, k, streams))
    return (time.perf_counter_ns() - t0) / streams


def measure(rounds: int) -> dict[str, dict[str, float]]:
    sync, asynchronous = build()
    loop = asyncio.new_event_loop()
    samples: dict[tuple[str, int], list[float]] = {}
    jobs = [(name, fn, False) for name, fn in sync.items()] + [(n, f, True) for n, f in asynchronous.items()]
    for _name, fn, is_async in jobs:  # warm up (and start modelotel)
        (time_async(loop, fn, 4, 4) if is_async else time_sync(fn, 4, 4))
    gc.disable()
    try:
        for _ in range(rounds):
            random.shuffle(jobs)
            for name, fn, is_async in jobs:
                for k, streams in ((1, STREAMS_SHORT), (K_LONG, STREAMS_LONG)):
                    t = time_async(loop, fn, k, streams) if is_async else time_sync(fn, k, streams)
                    samples.setdefault((name, k), []).append(t)
            gc.collect()
    finally:
        gc.enable()
        loop.close()
    out = {}
    for name, _fn, is_async in jobs:
        base = "bare async generator" if is_async else "bare generator"
        stream_ns = statistics.median(samples[name, 1])
        long_ns = statistics.median(samples[name, K_LONG])
        per_item = (long_ns - stream_ns) / (K_LONG - 1)
        base_stream = statistics.median(samples[base, 1])
        base_item = (statistics.median(samples[base, K_LONG]) - base_stream) / (K_LONG - 1)
        out[name] = {
            "stream_ns": stream_ns,
            "per_item_ns": per_item,
            "added_per_stream_ns": stream_ns - base_stream,
            "added_per_item_ns": per_item - base_item,
        }
    return out


def render(results: dict[str, dict[str, float]], rounds: int) -> str:
    order = [
        "bare generator",
        "@instrument_model",
        "genai=GenAI(...)",
        "genai=GenAI(..., tokens=callable)",
        "bare async generator",
        "async @instrument_model",
        "async genai=GenAI(...)",
    ]
    lines = [
        f"Machine: {machine_line()}. Untraced, discarding exporter; {rounds} interleaved rounds, medians; a stream "
        f"of 1 item for the per-stream cost, the slope to {K_LONG} items for the per-item cost.",
        "",
        "| variant | ns per 1-item stream | added per stream | ns per item | added per item |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in order:
        r = results[name]
        bare = name.startswith("bare")
        added_stream = "-" if bare else f"{r['added_per_stream_ns']:,.0f}"
        added_item = "-" if bare else f"{r['added_per_item_ns']:,.0f}"
        lines.append(
            f"| {name} | {r['stream_ns']:,.0f} | {added_stream} | {r['per_item_ns']:,.0f} | {added_item} |"
        )
    g, p, t = results["genai=GenAI(...)"], results["@instrument_model"], results["genai=GenAI(..., tokens=callable)"]
    lines += [
        "",
        f"- `genai=` over plain `@instrument_model`: {g['added_per_stream_ns'] - p['added_per_stream_ns']:,.0f} ns "
        f"per stream and {g['added_per_item_ns'] - p['added_per_item_ns']:,.0f} ns per item. One item is one token, "
        "so the stream's item count and first-item time are the token figures: nothing is added per item; per "
        "stream, one row appended at the end (TTFT, TPOT and the histograms are computed on the export thread).",
        f"- `tokens=` (or `usage=`) calls the user's callable and checks its count on every item: "
        f"{t['added_per_item_ns'] - g['added_per_item_ns']:,.0f} ns per item over `genai=` alone, for a trivial "
        "callable.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    results = measure(args.rounds)
    body = render(results, args.rounds)
    print(body)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if not args.no_write:
        write_section(HERE / "RESULTS.md", "genai-stream", "Streaming generation (`benchmarks/genai_stream.py`)", body)


if __name__ == "__main__":
    main()
