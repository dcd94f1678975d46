"""Cost of timing a batched model: per batch and per request, against the bare batch loop and a bare asyncio batcher.

Three measurements, untraced, exporting to a discarding exporter:

1. ``BatchTimer`` on the request path: a loop that runs batches of N requests (a no-op predict), with and without
   ``with timer.batch(tickets):`` around it (tickets taken with ``modelotel.enqueue()`` in both, as a server's
   queue records arrival times anyway). Per batch: batches of 1; per request: the slope from 1 to N_LONG.
2. The export thread's fold (``BatchBuffers.fold`` into a ``Recorder``): ns per request and per batch, off the
   request path.
3. ``AsyncBatcher`` against a bare asyncio batcher with the same loop and no timing (``BareBatcher`` below):
   CONCURRENT requests gathered at once, batches of up to 32, a no-op async predict; ns per request end to end.

Samples are interleaved in a new random order every round; medians.

    python benchmarks/batching.py [--rounds 60] [--json PATH] [--no-write]
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

N_LONG = 64
BATCHES_SHORT = 2000  # batches of 1 per sample
BATCHES_LONG = 100  # batches of N_LONG per sample
CONCURRENT = 2048  # requests per AsyncBatcher sample
MAX_BATCH = 32


class BareBatcher:
    """AsyncBatcher's loop without modelotel: the baseline a hand-written server would have."""

    def __init__(self, predict, max_batch_size: int, max_wait: float) -> None:
        self.predict, self.max_batch_size, self.max_wait = predict, max_batch_size, max_wait
        self.loop = self.queue = self.worker = None

    async def __call__(self, item):
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            self.loop, self.queue, self.worker = loop, asyncio.Queue(), None
        if self.worker is None or self.worker.done():
            self.worker = loop.create_task(self.run())
        future = loop.create_future()
        self.queue.put_nowait((item, future))
        return await future

    async def run(self):
        loop = asyncio.get_running_loop()
        while True:
            waiting = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(waiting) < self.max_batch_size:
                if not self.queue.empty():
                    waiting.append(self.queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    waiting.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            try:
                results = await self.predict([w[0] for w in waiting])
            except BaseException as exc:
                for w in waiting:
                    w[1].set_exception(exc)
                continue
            for w, result in zip(waiting, results, strict=True):
                w[1].set_result(result)


def configure():
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

    import modelotel

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
    return modelotel


def loop_bare(enqueue, n: int, batches: int) -> float:
    def predict(items):
        return items

    t0 = time.perf_counter_ns()
    for _ in range(batches):
        tickets = [enqueue() for _ in range(n)]
        predict(tickets)
    return (time.perf_counter_ns() - t0) / batches


def loop_timed(enqueue, timer, n: int, batches: int) -> float:
    def predict(items):
        return items

    t0 = time.perf_counter_ns()
    for _ in range(batches):
        tickets = [enqueue() for _ in range(n)]
        with timer.batch(tickets):
            predict(tickets)
    return (time.perf_counter_ns() - t0) / batches


def fold_cost(batches: int, n: int) -> float:
    """ns per request to fold ``batches`` batches of ``n`` requests (the export thread's work)."""
    from opentelemetry.sdk.resources import Resource

    from modelotel.instrument.batching import BatchBuffers
    from modelotel.metrics.recorder import Recorder

    buffers = BatchBuffers({"ml.model.name": "bench"})
    recorder = Recorder(temporality="delta")
    recorder.register(buffers)
    now = time.perf_counter_ns()
    rows = [(now + 1000 * i, now + 1000 * i + 500, tuple(range(now - n, now)), None) for i in range(batches)]
    buffers.batches.extend(rows)
    t0 = time.perf_counter_ns()
    recorder.collect(Resource.create({}))
    return (time.perf_counter_ns() - t0) / (batches * n)


def batcher_cost(loop, batcher) -> float:
    async def go():
        results = await asyncio.gather(*(batcher(i) for i in range(CONCURRENT)))
        assert results == list(range(CONCURRENT))

    t0 = time.perf_counter_ns()
    loop.run_until_complete(go())
    return (time.perf_counter_ns() - t0) / CONCURRENT


def measure(rounds: int) -> dict[str, float]:
    modelotel = configure()
    enqueue = modelotel.enqueue
    timer = modelotel.BatchTimer("bench-timer")

    async def predict(items):
        return items

    timed = modelotel.AsyncBatcher(predict, max_batch_size=MAX_BATCH, max_wait=0.0, name="bench-batcher")
    bare = BareBatcher(predict, MAX_BATCH, 0.0)
    loop = asyncio.new_event_loop()
    jobs = {
        ("bare", 1): lambda: loop_bare(enqueue, 1, BATCHES_SHORT),
        ("bare", N_LONG): lambda: loop_bare(enqueue, N_LONG, BATCHES_LONG),
        ("timed", 1): lambda: loop_timed(enqueue, timer, 1, BATCHES_SHORT),
        ("timed", N_LONG): lambda: loop_timed(enqueue, timer, N_LONG, BATCHES_LONG),
        ("bare batcher", 0): lambda: batcher_cost(loop, bare),
        ("AsyncBatcher", 0): lambda: batcher_cost(loop, timed),
        ("fold", 1): lambda: fold_cost(2000, 1),
        ("fold", 8): lambda: fold_cost(500, 8),
    }
    for job in jobs.values():  # warm up (and start modelotel)
        job()
    samples: dict[tuple[str, int], list[float]] = {}
    order = list(jobs)
    gc.disable()
    try:
        for _ in range(rounds):
            random.shuffle(order)
            for key in order:
                samples.setdefault(key, []).append(jobs[key]())
            gc.collect()
    finally:
        gc.enable()
        loop.run_until_complete(timed.aclose())
        if bare.worker is not None:
            bare.worker.cancel()
            loop.run_until_complete(asyncio.gather(bare.worker, return_exceptions=True))
        loop.close()
    med = {key: statistics.median(values) for key, values in samples.items()}
    slope = {v: (med[v, N_LONG] - med[v, 1]) / (N_LONG - 1) for v in ("bare", "timed")}
    return {
        "bare_batch_of_1_ns": med["bare", 1],
        "timed_batch_of_1_ns": med["timed", 1],
        "added_per_batch_ns": med["timed", 1] - med["bare", 1],
        "bare_per_request_ns": slope["bare"],
        "timed_per_request_ns": slope["timed"],
        "added_per_request_ns": slope["timed"] - slope["bare"],
        "fold_per_request_batches_of_1_ns": med["fold", 1],
        "fold_per_request_batches_of_8_ns": med["fold", 8],
        "bare_batcher_per_request_ns": med["bare batcher", 0],
        "async_batcher_per_request_ns": med["AsyncBatcher", 0],
    }


def render(r: dict[str, float], rounds: int) -> str:
    added_batcher = r["async_batcher_per_request_ns"] - r["bare_batcher_per_request_ns"]
    return "\n".join(
        [
            f"Machine: {machine_line()}. Untraced, discarding exporter; {rounds} interleaved rounds, medians.",
            "",
            "| path | bare | with modelotel | added |",
            "|---|---:|---:|---:|",
            f"| `with timer.batch(tickets)`: per batch (batches of 1) | {r['bare_batch_of_1_ns']:,.0f} ns | "
            f"{r['timed_batch_of_1_ns']:,.0f} ns | {r['added_per_batch_ns']:,.0f} ns |",
            f"| `with timer.batch(tickets)`: per request (slope 1 to {N_LONG}) | {r['bare_per_request_ns']:,.0f} ns | "
            f"{r['timed_per_request_ns']:,.0f} ns | {r['added_per_request_ns']:,.0f} ns |",
            f"| `AsyncBatcher` vs a bare asyncio batcher, per request ({CONCURRENT} at once, batches of "
            f"{MAX_BATCH}) | {r['bare_batcher_per_request_ns']:,.0f} ns | {r['async_batcher_per_request_ns']:,.0f} ns "
            f"| {added_batcher:,.0f} ns |",
            "",
            f"- Off the request path, the export thread folds {r['fold_per_request_batches_of_8_ns']:,.0f} ns per "
            f"request in batches of 8 ({r['fold_per_request_batches_of_1_ns']:,.0f} ns in batches of 1): four "
            "histograms, numpy over all the requests of the batches folded at once.",
            "- On the request path a batch costs two clock reads, setting and resetting the current batch (a "
            "context variable, so a `batched=True` predict called in the block knows it is timed), a tuple of its "
            "tickets and one list append; the "
            "tickets themselves are taken in both columns (`modelotel.enqueue()` is `time.perf_counter_ns()`).",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    results = measure(args.rounds)
    body = render(results, args.rounds)
    print(body)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if not args.no_write:
        write_section(HERE / "RESULTS.md", "batching", "Dynamic batching (`benchmarks/batching.py`)", body)


if __name__ == "__main__":
    main()
