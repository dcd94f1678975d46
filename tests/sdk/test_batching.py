"""Dynamic batching: BatchTimer and AsyncBatcher (modelotel.instrument.batching).

Per request: ml.batch.queue.duration = S - e_i and ml.inference.duration = E - e_i; per batch:
ml.batch.execution.duration = E - S and ml.batch.size = n (docs/instrumentation.md, "Batched models").
"""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource

import modelotel
from modelotel import conventions as conv
from modelotel.instrument.batching import BatchBuffers
from modelotel.metrics.recorder import Recorder
from modelotel.metrics.selftelemetry import SELF
from modelotel.sketch import LogSketch

from conftest import total_count

BASE = {conv.MODEL_NAME: "batched", conv.MODEL_VERSION: "v1", conv.DEPLOYMENT_ROLE: "primary"}
QUEUE, EXEC, SIZE, LATENCY = (
    conv.BATCH_QUEUE_DURATION,
    conv.BATCH_EXECUTION_DURATION,
    conv.BATCH_SIZE_METRIC,
    conv.INFERENCE_DURATION,
)


def _points(exporter, name, **attrs):
    return [p for p in exporter.last_points(name) if all(p.attributes.get(k) == v for k, v in attrs.items())]


def _collect(buffers: BatchBuffers) -> dict[tuple[str, str | None], object]:
    recorder = Recorder(temporality="delta")
    recorder.register(buffers)
    data = recorder.collect(Resource.create({}))
    found: dict[tuple[str, str | None], object] = {}
    if data is None:
        return found
    for metric in data.resource_metrics[0].scope_metrics[0].metrics:
        for p in metric.data.data_points:
            if metric.name in (QUEUE, EXEC, SIZE, LATENCY):
                found[metric.name, p.attributes.get(conv.ERROR_TYPE)] = p
            elif metric.name == conv.DROPPED:  # collect() takes modelotel's own drop counts too
                found[metric.name, p.attributes[conv.DROP_REASON]] = p
    return found


batches = st.lists(
    st.tuples(
        st.integers(10**10, 10**12),  # batch start S, ns (perf_counter_ns() is never negative)
        st.integers(0, 10**10),  # execution E - S, ns
        st.lists(st.integers(0, 10**10), min_size=0, max_size=40),  # queue times S - e_i, ns
        st.sampled_from([None, None, None, "RuntimeError"]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(batches)
def test_fold_against_an_exact_computation(rows):
    """count, sum, min and max of each metric equal the raw per-request and per-batch definitions, and the bucket
    counts equal a sketch of the exact values (so every quantile is the exact one within the sketch's 1.08 %)."""
    buffers = BatchBuffers(BASE)
    for start, execution, waits, error in rows:
        buffers.batches.append((start, start + execution, tuple(start - w for w in waits), error))
    found = _collect(buffers)
    expected = {
        (QUEUE, None): [w * 1e-9 for _, _, waits, _ in rows for w in waits],
        (LATENCY, None): [(w + x) * 1e-9 for _, x, waits, e in rows if e is None for w in waits],
        (LATENCY, "RuntimeError"): [(w + x) * 1e-9 for _, x, waits, e in rows if e for w in waits],
        (EXEC, None): [x * 1e-9 for _, x, _, e in rows if e is None],
        (EXEC, "RuntimeError"): [x * 1e-9 for _, x, _, e in rows if e],
        (SIZE, None): [float(len(waits)) for _, _, waits, _ in rows],
    }
    for key, values in expected.items():
        if not values:
            assert key not in found, key
            continue
        p = found[key]
        assert p.count == len(values), key
        assert math.isclose(p.sum, math.fsum(values), rel_tol=1e-12, abs_tol=1e-18), key
        assert (p.min, p.max) == (min(values), max(values)), key
        exact = LogSketch(conv.DEFAULT_SCALE, conv.DEFAULT_MAX_BUCKETS)
        exact.add_many(np.asarray(values))
        want = exact.to_otlp_point({}, 0, 1, max_scale=conv.MAX_EXPORT_SCALE)
        assert (p.scale, p.zero_count) == (want.scale, want.zero_count), key
        assert (p.positive.offset, list(p.positive.bucket_counts)) == (
            want.positive.offset,
            list(want.positive.bucket_counts),
        ), key
    assert {k for k in found if k[0] != conv.DROPPED} == {k for k, v in expected.items() if v}


def test_bad_tickets_are_counted_drops_not_errors(memory_exporter):
    timer = modelotel.BatchTimer("bad-tickets")
    start = time.perf_counter_ns()
    with timer.batch([start - 10, time.perf_counter(), None, start + 10**12]) as b:  # 1 good, 3 bad
        assert b.size == 4
    with timer.batch(42):  # not iterable: the batch is dropped, the block still runs
        ran = True
    assert ran
    modelotel.force_flush()
    assert total_count(_points(memory_exporter, LATENCY, **{conv.MODEL_NAME: "bad-tickets"})) == 1
    assert total_count(_points(memory_exporter, QUEUE, **{conv.MODEL_NAME: "bad-tickets"})) == 1
    assert total_count(_points(memory_exporter, SIZE, **{conv.MODEL_NAME: "bad-tickets"})) == 1
    drops = {p.attributes[conv.DROP_REASON]: p.value for p in memory_exporter.last_points(conv.DROPPED)}
    assert drops["batch_ticket_invalid"] == 3
    assert drops["batch_invalid"] == 1


def test_batch_timer_measures_what_the_caller_measures(memory_exporter):
    """Real clocks: the caller's own perf_counter_ns readings around the block bound each recorded value."""
    timer = modelotel.BatchTimer("timed", "3", attributes={"team": "search"})
    tickets = []
    for _ in range(3):
        tickets.append(modelotel.enqueue())
        time.sleep(0.01)
    before = time.perf_counter_ns()
    with timer.batch(tickets):
        time.sleep(0.02)
    after = time.perf_counter_ns()
    modelotel.force_flush()
    attrs = {conv.MODEL_NAME: "timed", conv.MODEL_VERSION: "3", "team": "search"}
    (queue,) = _points(memory_exporter, QUEUE, **attrs)
    (latency,) = _points(memory_exporter, LATENCY, **attrs)
    (execution,) = _points(memory_exporter, EXEC, **attrs)
    (size,) = _points(memory_exporter, SIZE, **attrs)
    assert (queue.count, latency.count, execution.count, size.count, size.sum) == (3, 3, 1, 1, 3)
    # start S lies in [before, after] and E too: queue and latency of each request are bounded by the caller's clock
    assert sum((before - t) * 1e-9 for t in tickets) <= queue.sum <= sum((after - t) * 1e-9 for t in tickets)
    assert queue.max <= latency.max <= (after - tickets[0]) * 1e-9
    assert 0.02 <= execution.sum <= (after - before) * 1e-9
    assert math.isclose(latency.sum - queue.sum, 3 * execution.sum, rel_tol=1e-9)


def test_the_models_exception_propagates_unchanged_and_every_request_counts_an_error(memory_exporter):
    timer = modelotel.BatchTimer("failing")
    boom = KeyError("no such row")
    with pytest.raises(KeyError) as raised, timer.batch([modelotel.enqueue() for _ in range(5)]):
        raise boom
    assert raised.value is boom
    modelotel.force_flush()
    failed = {conv.MODEL_NAME: "failing", conv.ERROR_TYPE: "KeyError"}
    assert total_count(_points(memory_exporter, LATENCY, **failed)) == 5
    assert total_count(_points(memory_exporter, EXEC, **failed)) == 1
    assert total_count(_points(memory_exporter, QUEUE, **{conv.MODEL_NAME: "failing"})) == 5


def test_async_batcher_results_exceptions_and_sizes(memory_exporter):
    sizes: list[int] = []

    async def predict(items):
        sizes.append(len(items))
        if "fail" in items:
            raise ValueError("bad item")
        await asyncio.sleep(0.005)
        return [f"y{x}" for x in items]

    batcher = modelotel.AsyncBatcher(predict, max_batch_size=4, max_wait=0.01, name="async-batched", version="1")

    async def main():
        ok = await asyncio.gather(*(batcher(i) for i in range(10)))
        failing = await asyncio.gather(batcher(1), batcher("fail"), return_exceptions=True)
        return ok, failing

    ok, failing = asyncio.run(main())
    assert ok == [f"y{i}" for i in range(10)]
    assert isinstance(failing[0], ValueError) and failing[0] is failing[1]  # the same object, to both requests
    assert all(s <= 4 for s in sizes) and sum(sizes) == 12
    modelotel.force_flush()
    model = {conv.MODEL_NAME: "async-batched"}
    (size,) = _points(memory_exporter, SIZE, **model)
    assert (size.count, size.sum, size.max) == (len(sizes), 12, max(sizes))
    assert total_count(_points(memory_exporter, LATENCY, **model, **{conv.ERROR_TYPE: "ValueError"})) == 2
    assert total_count(_points(memory_exporter, LATENCY, **model)) == 12


def test_async_batcher_sync_predict_and_a_wrong_result_count(memory_exporter):
    def predict(items):  # runs in a worker thread
        return [x * 2 for x in items][: max(1, len(items) - 1)]  # one short for a batch of 2 or more

    batcher = modelotel.AsyncBatcher(predict, max_batch_size=8, max_wait=0.05, name="short")

    async def main():
        return await asyncio.gather(batcher(1), batcher(2), return_exceptions=True)

    a, b = asyncio.run(main())
    assert isinstance(a, ValueError) and "1 results for a batch of 2" in str(a)
    modelotel.force_flush()
    assert total_count(_points(memory_exporter, LATENCY, **{conv.ERROR_TYPE: "ValueError"})) == 2


def test_bad_options_raise_config_error_at_construction():
    @modelotel.instrument_model("per-batch")
    def decorated(items):
        return items

    with pytest.raises(modelotel.ConfigError, match="batched=True"):
        modelotel.AsyncBatcher(decorated, max_batch_size=4, max_wait=0.01)
    for kwargs in ({"max_batch_size": 0, "max_wait": 0.01}, {"max_batch_size": 4, "max_wait": -1}):
        with pytest.raises(modelotel.ConfigError):
            modelotel.AsyncBatcher(lambda items: items, **kwargs)
    with pytest.raises(modelotel.ConfigError):
        modelotel.BatchTimer("")
    with pytest.raises(modelotel.ConfigError):
        modelotel.BatchTimer("m", deployment_role="blue")


def test_async_batcher_serves_a_second_event_loop(memory_exporter):
    async def predict(items):
        return [x + 1 for x in items]

    batcher = modelotel.AsyncBatcher(predict, max_batch_size=2, max_wait=0.001, name="two-loops")

    async def main(base):
        return await asyncio.gather(*(batcher(base + i) for i in range(3)))

    assert asyncio.run(main(0)) == [1, 2, 3]
    assert asyncio.run(main(10)) == [11, 12, 13]


def test_aclose_stops_the_loop_and_cancels_what_is_queued(memory_exporter):
    started = []

    async def predict(items):
        started.append(len(items))
        await asyncio.sleep(10)  # never finishes before aclose()
        return items

    batcher = modelotel.AsyncBatcher(predict, max_batch_size=1, max_wait=0.0, name="closing")

    async def main():
        calls = [asyncio.ensure_future(batcher(i)) for i in range(3)]
        while not started:
            await asyncio.sleep(0.001)
        await batcher.aclose()
        return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(main())
    assert started == [1]  # one batch running, two requests still queued
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
    assert batcher.worker is None


# -- @instrument_model(batched=True): the batched predict keeps everything per item, its requests are timed --------


def test_a_batched_decorated_predict_counts_requests_not_calls(memory_exporter):
    @modelotel.instrument_model("clf-batched", "5", batched=True)
    def predict(rows):
        return np.asarray([[0.9, 0.1] if r else [0.2, 0.8] for r in rows])

    tickets = [modelotel.enqueue() for _ in range(6)]
    with predict.batch(tickets):
        out = predict([1, 0, 1, 1, 0, 1])
    assert out.shape == (6, 2)  # the result is the model's
    with predict.batch([modelotel.enqueue() for _ in range(2)]):
        predict([0, 0])
    modelotel.force_flush()
    model = {conv.MODEL_NAME: "clf-batched", conv.MODEL_VERSION: "5"}
    assert total_count(_points(memory_exporter, LATENCY, **model)) == 8  # requests, not the 2 calls
    assert total_count(_points(memory_exporter, QUEUE, **model)) == 8
    (size,) = _points(memory_exporter, SIZE, **model)
    assert (size.count, size.sum) == (2, 8)
    # what the decorator adds per item is still there: 8 predictions, 8 confidences
    assert total_count(memory_exporter.last_points(conv.PREDICTIONS), **model) == 8
    (conf,) = _points(memory_exporter, conv.PREDICTION_CONFIDENCE_METRIC, **model)
    rows = [1, 0, 1, 1, 0, 1, 0, 0]
    assert (conf.count, round(conf.sum, 9)) == (8, round(sum(0.9 if r else 0.8 for r in rows), 9))
    assert not memory_exporter.last_points(conv.DROPPED)


def test_a_batched_decorated_predict_outside_a_batch_is_a_counted_drop(memory_exporter):
    @modelotel.instrument_model("clf-alone", batched=True)
    def predict(rows):
        if rows == ["bad"]:
            raise TypeError("bad row")
        return [0.5 for _ in rows]

    assert predict([1, 2, 3]) == [0.5, 0.5, 0.5]
    with pytest.raises(TypeError):
        predict(["bad"])
    modelotel.force_flush()
    assert not _points(memory_exporter, LATENCY, **{conv.MODEL_NAME: "clf-alone"})
    drops = {p.attributes[conv.DROP_REASON]: p.value for p in memory_exporter.last_points(conv.DROPPED)}
    assert drops == {"batched_call_untimed": 2}


def test_a_failing_batched_decorated_predict_fails_each_request_once(memory_exporter):
    @modelotel.instrument_model("clf-failing", batched=True)
    def predict(rows):
        raise RuntimeError("device lost")

    with pytest.raises(RuntimeError, match="device lost"), predict.batch([modelotel.enqueue() for _ in range(3)]):
        predict([1, 2, 3])
    modelotel.force_flush()
    failed = {conv.MODEL_NAME: "clf-failing", conv.ERROR_TYPE: "RuntimeError"}
    assert total_count(_points(memory_exporter, LATENCY, **failed)) == 3  # one per request, none for the call
    assert total_count(_points(memory_exporter, EXEC, **failed)) == 1


def test_async_batcher_takes_a_batched_decorated_predict_and_its_timer(memory_exporter):
    @modelotel.instrument_model("async-decorated", "1", batched=True)
    def predict(items):  # sync: runs in a worker thread, inside the batch's context
        return [[0.25, 0.75] for _ in items]

    batcher = modelotel.AsyncBatcher(predict, max_batch_size=4, max_wait=0.005)
    assert batcher.timer is predict.batch_timer

    async def main():
        return await asyncio.gather(*(batcher(i) for i in range(9)))

    assert asyncio.run(main()) == [[0.25, 0.75]] * 9
    modelotel.force_flush()
    model = {conv.MODEL_NAME: "async-decorated", conv.MODEL_VERSION: "1"}
    assert total_count(_points(memory_exporter, LATENCY, **model)) == 9
    assert total_count(memory_exporter.last_points(conv.PREDICTIONS), **model) == 9
    assert not memory_exporter.last_points(conv.DROPPED)  # the thread saw its batch: no untimed call


def test_batched_option_checks():
    with pytest.raises(modelotel.ConfigError, match="batched"):
        modelotel.instrument_model("x", batched="yes")
    with pytest.raises(modelotel.ConfigError, match="generator"):

        @modelotel.instrument_model("x", batched=True)
        def stream(rows):
            yield from rows


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(0, 10**9),  # queue time of a valid ticket, ns
            st.sampled_from([None, 1.5, "t", True]),  # not an integer
            st.just(-1),  # later than the batch's start
            st.just(-2),  # negative: not a perf_counter_ns()
        ),
        max_size=30,
    )
)
def test_invalid_tickets_are_dropped_one_by_one(entries):
    """Each invalid ticket drops exactly its request; the valid ones are recorded exactly."""
    start, end = 10**12, 10**12 + 777
    placed = {-1: start + 5, -2: -start}
    tickets = [placed.get(e, start - e) if type(e) is int else e for e in entries]
    buffers = BatchBuffers(BASE)
    buffers.batches.append((start, end, tuple(tickets), None))
    SELF.take()  # drops left by an earlier test are not this example's
    found = _collect(buffers)
    valid = [e for e in entries if type(e) is int and e >= 0]
    dropped = found.get((conv.DROPPED, "batch_ticket_invalid"))
    assert (dropped.value if dropped else 0) == len(entries) - len(valid)
    if valid:
        q = found[QUEUE, None]
        assert q.count == len(valid) and math.isclose(q.sum, math.fsum(v * 1e-9 for v in valid), rel_tol=1e-12)
        lat = found[LATENCY, None]
        assert math.isclose(lat.sum, math.fsum((v + 777) * 1e-9 for v in valid), rel_tol=1e-12)
    else:
        assert (QUEUE, None) not in found and (LATENCY, None) not in found
    assert found[SIZE, None].sum == len(entries)


def test_a_traced_batched_predict_has_its_span_and_no_per_call_latency(spans):
    from conftest import MemoryMetricExporter

    exporter = MemoryMetricExporter()
    modelotel.configure(service_name="test-svc", exporter=exporter, export_interval=3600, traces="span")
    try:

        @modelotel.instrument_model("clf-traced", batched=True)
        def predict(rows):
            return [[0.6, 0.4] for _ in rows]

        with predict.batch([modelotel.enqueue() for _ in range(3)]):
            predict([1, 2, 3])
        modelotel.force_flush()
        assert total_count(_points(exporter, LATENCY, **{conv.MODEL_NAME: "clf-traced"})) == 3
        (point,) = _points(exporter, LATENCY, **{conv.MODEL_NAME: "clf-traced"})
        assert not point.exemplars  # a batch's span is not one request's: no exemplar on per-request latency
        assert total_count(exporter.last_points(conv.PREDICTIONS), **{conv.MODEL_NAME: "clf-traced"}) == 3
    finally:
        modelotel.shutdown()


def test_a_forked_child_exports_none_of_its_parents_batches(memory_exporter):
    import os

    timer = modelotel.BatchTimer("fork-batched")
    with timer.batch([modelotel.enqueue()]):
        pass
    assert len(timer.buffers.batches) == 1  # not folded yet
    pid = os.fork()
    if pid == 0:
        with timer.batch([modelotel.enqueue(), modelotel.enqueue()]):
            pass
        ok = len(timer.buffers.batches) == 1 and timer.buffers.batches[0][2].__len__() == 2
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    modelotel.force_flush()
    assert total_count(_points(memory_exporter, LATENCY, **{conv.MODEL_NAME: "fork-batched"})) == 1
