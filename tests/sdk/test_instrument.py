"""@instrument_model on every callable shape, under concurrency, with weird outputs, and with spans."""

from __future__ import annotations

import asyncio
import inspect
import math
import threading

import numpy as np
import pytest

import modelotel
from modelotel import conventions as conv

from conftest import total_count


class ModelFailure(Exception):
    pass


def test_sync_returns_identical_object_and_records(memory_exporter):
    out = np.array([0.1, 0.7, 0.2])

    @modelotel.instrument_model(name="iris", version="3")
    def predict(x):
        return out

    for _ in range(10):
        assert predict([1.0, 2.0]) is out
    modelotel.force_flush()
    durations = memory_exporter.last_points(conv.INFERENCE_DURATION)
    assert total_count(durations, **{conv.MODEL_NAME: "iris", conv.MODEL_VERSION: "3"}) == 10
    point = durations[0]
    assert point.attributes[conv.DEPLOYMENT_ROLE] == "primary"
    assert conv.ERROR_TYPE not in point.attributes
    assert point.scale == conv.DEFAULT_SCALE
    confidences = memory_exporter.last_points(conv.PREDICTION_CONFIDENCE_METRIC)
    assert total_count(confidences, **{conv.MODEL_NAME: "iris"}) == 10
    assert confidences[0].max == pytest.approx(0.7)
    labels = memory_exporter.last_points(conv.PREDICTIONS)
    assert total_count(labels, **{conv.PREDICTION_LABEL: "1"}) == 10


def test_model_exception_propagates_unchanged(memory_exporter):
    raised = ModelFailure("boom")

    @modelotel.instrument_model(name="failing")
    def predict(x):
        raise raised

    with pytest.raises(ModelFailure) as info:
        predict(1)
    assert info.value is raised
    assert info.value.__context__ is None and info.value.__cause__ is None
    # the model's own frame is still the last frame of the traceback
    tb = info.value.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_frame.f_code.co_name == "predict"
    modelotel.force_flush()
    points = memory_exporter.last_points(conv.INFERENCE_DURATION)
    assert total_count(points, **{conv.MODEL_NAME: "failing", conv.ERROR_TYPE: "ModelFailure"}) == 1


def test_signature_and_wrapped_are_kept():
    def predict(features, *, threshold: float = 0.5) -> float:
        """Doc."""
        return 1.0

    wrapped = modelotel.instrument_model(name="sig")(predict)
    assert wrapped.__wrapped__ is predict
    assert inspect.signature(wrapped) == inspect.signature(predict)
    assert wrapped.__name__ == "predict" and wrapped.__doc__ == "Doc."


def test_bare_decorator_uses_qualname(memory_exporter):
    @modelotel.instrument_model
    def scorer(x):
        return {"label": "spam", "score": 0.9}

    assert scorer(1) == {"label": "spam", "score": 0.9}
    modelotel.force_flush()
    names = {p.attributes[conv.MODEL_NAME] for p in memory_exporter.last_points(conv.INFERENCE_DURATION)}
    assert any(n.endswith("scorer") for n in names)


def test_async_function(memory_exporter):
    @modelotel.instrument_model(name="async-model")
    async def predict(x):
        await asyncio.sleep(0)
        return [0.2, 0.8]

    async def main():
        return await asyncio.gather(*(predict(i) for i in range(1000)))

    results = asyncio.run(main())
    assert len(results) == 1000
    modelotel.force_flush()
    points = memory_exporter.last_points(conv.INFERENCE_DURATION)
    assert total_count(points, **{conv.MODEL_NAME: "async-model"}) == 1000


def test_async_exception_propagates(memory_exporter):
    raised = ValueError("bad input")

    @modelotel.instrument_model(name="async-fail")
    async def predict(x):
        raise raised

    with pytest.raises(ValueError) as info:
        asyncio.run(predict(1))
    assert info.value is raised
    modelotel.force_flush()
    points = memory_exporter.last_points(conv.INFERENCE_DURATION)
    assert total_count(points, **{conv.MODEL_NAME: "async-fail", conv.ERROR_TYPE: "ValueError"}) == 1


def _stream_points(exporter, name):
    modelotel.force_flush()
    durations = exporter.last_points(conv.INFERENCE_DURATION)
    first = exporter.last_points(conv.INFERENCE_TIME_TO_FIRST_ITEM)
    return (
        total_count(durations, **{conv.MODEL_NAME: name}),
        total_count(first, **{conv.MODEL_NAME: name}),
        total_count(durations, **{conv.MODEL_NAME: name, conv.ERROR_TYPE: "RuntimeError"}),
    )


def test_generator_exhaustion_break_close_and_error(memory_exporter):
    closed = []

    @modelotel.instrument_model(name="gen")
    def stream(n, fail_at=None):
        try:
            for i in range(n):
                if i == fail_at:
                    raise RuntimeError("mid-stream")
                yield i
            return "done"
        finally:
            closed.append(n)

    assert list(stream(3)) == [0, 1, 2]
    for item in stream(5):
        if item == 1:
            break
    g = stream(4)
    assert next(g) == 0
    g.close()
    with pytest.raises(RuntimeError, match="mid-stream"):
        list(stream(5, fail_at=2))
    assert list(stream(0)) == []
    assert closed == [3, 5, 4, 5, 0]
    calls, firsts, errors = _stream_points(memory_exporter, "gen")
    assert calls == 5  # every stream closed exactly once
    assert firsts == 4  # the empty stream produced no first item
    assert errors == 1


def test_generator_send_and_return_value(memory_exporter):
    @modelotel.instrument_model(name="echo")
    def echo():
        received = yield "ready"
        while received is not None:
            received = yield received * 2
        return "finished"

    g = echo()
    assert next(g) == "ready"
    assert g.send(2) == 4
    with pytest.raises(StopIteration) as info:
        g.send(None)
    assert info.value.value == "finished"


def test_async_generator_shapes(memory_exporter):
    @modelotel.instrument_model(name="agen")
    async def stream(n, fail_at=None):
        for i in range(n):
            if i == fail_at:
                raise RuntimeError("mid-stream")
            await asyncio.sleep(0)
            yield i

    async def main():
        assert [i async for i in stream(3)] == [0, 1, 2]
        agen = stream(5)
        assert await agen.__anext__() == 0
        await agen.aclose()
        with pytest.raises(RuntimeError):
            async for _ in stream(4, fail_at=1):
                pass
        async for i in stream(5):
            if i == 2:
                break

    asyncio.run(main())
    calls, firsts, errors = _stream_points(memory_exporter, "agen")
    assert calls == 4
    assert firsts == 4
    assert errors == 1


def test_methods_static_and_callable_objects(memory_exporter):
    class Model:
        def __init__(self):
            self.seen = []

        @modelotel.instrument_model(name="method")
        def predict(self, features):
            self.seen.append(features)
            return [0.3, 0.7]

        @staticmethod
        @modelotel.instrument_model(name="static")
        def static_predict(features):
            return [0.5, 0.5]

    m = Model()
    assert m.predict([1, None]) == [0.3, 0.7]
    assert m.seen == [[1, None]]
    assert Model.static_predict([1]) == [0.5, 0.5]

    class Callable:
        def __call__(self, x):
            return x * 2

    wrapped = modelotel.instrument_model(name="callable-object")(Callable())
    assert wrapped(21) == 42
    modelotel.force_flush()
    durations = memory_exporter.last_points(conv.INFERENCE_DURATION)
    for name in ("method", "static", "callable-object"):
        assert total_count(durations, **{conv.MODEL_NAME: name}) == 1
    # the features of a method are its first argument after self: one None -> one missing feature
    missing = memory_exporter.last_points(conv.FEATURES_MISSING_METRIC)
    assert total_count(missing, **{conv.MODEL_NAME: "method"}) == 1


def test_eight_threads_exact_counts(memory_exporter):
    @modelotel.instrument_model(name="threaded")
    def predict(x):
        return x

    calls = 50_000

    def worker():
        for i in range(calls):
            predict(i)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    # export while the threads are appending, to exercise drain racing with appends
    while any(t.is_alive() for t in threads):
        modelotel.force_flush()
    for t in threads:
        t.join()
    modelotel.force_flush()
    points = memory_exporter.last_points(conv.INFERENCE_DURATION)
    assert total_count(points, **{conv.MODEL_NAME: "threaded"}) == 8 * calls


WEIRD_OUTPUTS = [
    None,
    float("nan"),
    float("inf"),
    "a string",
    {"nested": {"dict": {"deep": [1, {"x": None}]}}},
    np.array([]),
    np.zeros(1_000_000),
    np.array([np.nan, np.nan]),
    [float("nan"), 1.0],
    {"label": object(), "score": "high"},
    {"score": float("nan")},
]


class RaisesOnLen:
    def __len__(self):
        raise RuntimeError("len")

    def __iter__(self):
        raise RuntimeError("iter")


class RaisesOnEq:
    def __eq__(self, other):
        raise RuntimeError("eq")

    __hash__ = object.__hash__

    def tolist(self):
        raise RuntimeError("tolist")


@pytest.mark.parametrize("output", [*WEIRD_OUTPUTS, RaisesOnLen(), RaisesOnEq()], ids=repr)
def test_weird_outputs_leak_nothing(memory_exporter, output):
    @modelotel.instrument_model(name="weird", confidence=None)
    def predict(x):
        return output

    assert predict(RaisesOnLen()) is output
    assert predict(np.array([np.nan, 1.0])) is output
    modelotel.force_flush()
    points = memory_exporter.last_points(conv.INFERENCE_DURATION)
    assert total_count(points, **{conv.MODEL_NAME: "weird"}) == 2


def test_broken_user_callables_are_counted_not_raised(memory_exporter):
    def bad_confidence(output):
        raise KeyError("no score")

    @modelotel.instrument_model(name="bad-callable", confidence=bad_confidence, ood=lambda x: 1 / 0)
    def predict(x):
        return 5

    assert predict([1.0]) == 5
    modelotel.force_flush()
    errors = memory_exporter.last_points(conv.INTERNAL_ERRORS)
    kinds = {p.attributes[conv.INTERNAL_ERROR_KIND] for p in errors}
    assert "confidence_callable" in kinds and "ood_score" in kinds
    assert total_count(memory_exporter.last_points(conv.INFERENCE_DURATION), **{conv.MODEL_NAME: "bad-callable"}) == 1


def test_batch_outputs_one_record_per_item(memory_exporter):
    @modelotel.instrument_model(name="batch", labels=["setosa", "versicolor", "virginica"])
    def predict(X):
        return np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1]])

    predict(np.zeros((4, 3)))
    modelotel.force_flush()
    conf = memory_exporter.last_points(conv.PREDICTION_CONFIDENCE_METRIC)
    assert total_count(conf, **{conv.MODEL_NAME: "batch"}) == 4
    preds = memory_exporter.last_points(conv.PREDICTIONS)
    by_label = {
        p.attributes.get(conv.PREDICTION_LABEL): p.value for p in preds if p.attributes[conv.MODEL_NAME] == "batch"
    }
    assert by_label == {"setosa": 2, "versicolor": 1, "virginica": 1}


def test_ood_callable_and_threshold(memory_exporter):
    @modelotel.instrument_model(name="ood-model", ood=lambda x: float(sum(x)), ood_threshold=10.0)
    def predict(x):
        return [0.5, 0.5]

    for features in ([1.0, 2.0], [5.0, 6.0], [20.0, 0.0]):
        predict(features)
    modelotel.force_flush()
    ood = memory_exporter.last_points(conv.OOD_SCORE_METRIC)
    assert total_count(ood, **{conv.MODEL_NAME: "ood-model"}) == 3
    assert ood[0].max == pytest.approx(20.0)
    outliers = memory_exporter.last_points(conv.OOD_OUTLIERS)
    assert total_count(outliers, **{conv.MODEL_NAME: "ood-model"}) == 2


def test_static_attributes_role_and_bad_options():
    with pytest.raises(modelotel.ConfigError, match="deployment_role"):
        modelotel.instrument_model(name="m", deployment_role="blue")
    with pytest.raises(modelotel.ConfigError, match="attributes"):
        modelotel.instrument_model(name="m", attributes={f"k{i}": i for i in range(20)})
    with pytest.raises(modelotel.ConfigError, match="ood"):
        modelotel.instrument_model(name="m", ood=42)


def test_canary_role_and_extra_attributes(memory_exporter):
    @modelotel.instrument_model(name="fraud", version="7", deployment_role="canary", attributes={"region": "eu"})
    def predict(x):
        return 0.3

    predict(1)
    modelotel.force_flush()
    (point,) = [
        p for p in memory_exporter.last_points(conv.INFERENCE_DURATION) if p.attributes[conv.MODEL_NAME] == "fraud"
    ]
    assert point.attributes[conv.DEPLOYMENT_ROLE] == "canary"
    assert point.attributes["region"] == "eu"


def test_prediction_id_and_feedback(memory_exporter):
    ids = []

    @modelotel.instrument_model(name="fb", labels=["no", "yes"])
    def predict(x):
        ids.append(modelotel.current_prediction_id())
        return np.array([0.2, 0.8]) if x else np.array([0.9, 0.1])

    assert modelotel.current_prediction_id() is None
    predict(1)
    predict(0)
    predict(1)
    assert all(isinstance(i, str) and len(i) == 32 for i in ids) and len(set(ids)) == 3
    assert modelotel.record_feedback(ids[0], label="yes")
    assert modelotel.record_feedback(ids[1], label="yes")  # predicted "no": incorrect
    assert modelotel.record_feedback(ids[2], correct=True)
    assert not modelotel.record_feedback(ids[2], correct=True)  # already used
    assert not modelotel.record_feedback("not-an-id", label="yes")
    modelotel.force_flush()
    fb = memory_exporter.last_points(conv.FEEDBACK)
    assert total_count(fb, **{conv.MODEL_NAME: "fb", conv.FEEDBACK_CORRECT: True}) == 2
    assert total_count(fb, **{conv.MODEL_NAME: "fb", conv.FEEDBACK_CORRECT: False}) == 1
    conf = memory_exporter.last_points(conv.FEEDBACK_CONFIDENCE)
    assert total_count(conf, **{conv.FEEDBACK_CORRECT: False}) == 1
    dropped = memory_exporter.last_points(conv.DROPPED)
    assert total_count(dropped, **{conv.DROP_REASON: "feedback_unmatched"}) == 1  # ids[2] again
    assert total_count(dropped, **{conv.DROP_REASON: "feedback_id_foreign"}) == 1  # "not-an-id"


def test_prediction_id_inside_async_and_generator(memory_exporter):
    seen = {}

    @modelotel.instrument_model(name="pid-async")
    async def apredict(x):
        await asyncio.sleep(0)
        seen["async"] = modelotel.current_prediction_id()
        return 1

    @modelotel.instrument_model(name="pid-gen")
    def gen():
        seen["gen"] = modelotel.current_prediction_id()
        yield 1

    asyncio.run(apredict(1))
    list(gen())
    assert seen["async"] and seen["gen"] and seen["async"] != seen["gen"]
    assert modelotel.record_feedback(seen["async"], correct=False)


def test_spans_with_hashed_features_and_scrubbed_exception(spans):
    exporter = __import__("conftest").MemoryMetricExporter()
    modelotel.configure(exporter=exporter, export_interval=3600, traces="span")
    try:

        @modelotel.instrument_model(name="traced", version="2")
        def predict(x):
            if x.get("email"):
                raise ValueError(f"cannot score {x['email']}")
            return {"label": "ok", "score": 0.75}

        assert predict({"age": 987654, "name": "Zoltan-Quixote"}) == {"label": "ok", "score": 0.75}
        with pytest.raises(ValueError):
            predict({"email": "zoltan@example.com"})
        modelotel.force_flush()
    finally:
        modelotel.shutdown()
    finished = [s for s in spans.get_finished_spans() if s.name == "predict traced"]
    assert len(finished) == 2
    ok, failed = finished
    assert ok.attributes[conv.MODEL_NAME] == "traced" and ok.attributes[conv.MODEL_VERSION] == "2"
    assert failed.attributes[conv.MODEL_NAME] == "traced"
    assert ok.attributes[conv.PREDICTION_CONFIDENCE] == 0.75
    assert ok.attributes[conv.PREDICTION_LABEL] == "ok"
    assert len(ok.attributes[conv.FEATURES_HASH]) == 32
    assert len(ok.attributes[conv.PREDICTION_ID]) == 32
    values = [str(v) for span in finished for v in span.attributes.values()]
    values += [str(v) for e in failed.events for v in e.attributes.values()] + [failed.status.description]
    for secret in ("987654", "Zoltan", "zoltan@example.com"):
        assert not any(secret in v for v in values), secret
    (event,) = [e for e in failed.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ValueError"
    assert "<email>" in event.attributes["exception.message"]
    assert not failed.status.is_ok


def test_enrich_mode_sets_attributes_on_active_span(spans):
    from opentelemetry import trace

    exporter = __import__("conftest").MemoryMetricExporter()
    modelotel.configure(exporter=exporter, export_interval=3600, traces="enrich")
    try:

        @modelotel.instrument_model(name="enriched")
        def predict(x):
            return [0.1, 0.9]

        with trace.get_tracer("app").start_as_current_span("handler"):
            predict([1.0])
    finally:
        modelotel.shutdown()
    (handler,) = [s for s in spans.get_finished_spans() if s.name == "handler"]
    assert handler.attributes[conv.MODEL_NAME] == "enriched"
    assert handler.attributes[conv.PREDICTION_CONFIDENCE] == pytest.approx(0.9)
    assert not [s for s in spans.get_finished_spans() if s.name.startswith("predict")]


def test_generator_span_closed_on_break(spans):
    exporter = __import__("conftest").MemoryMetricExporter()
    modelotel.configure(exporter=exporter, export_interval=3600, traces="span")
    try:

        @modelotel.instrument_model(name="gen-traced")
        def stream():
            yield from range(10)

        for i in stream():
            if i == 3:
                break
    finally:
        modelotel.shutdown()
    (span,) = [s for s in spans.get_finished_spans() if s.name == "predict gen-traced"]
    assert span.attributes[conv.STREAM_ITEMS] == 4
    assert span.end_time is not None


def test_nan_durations_never_happen_but_nan_confidences_are_dropped(memory_exporter):
    @modelotel.instrument_model(name="nan-conf", confidence=lambda out: out)
    def predict(x):
        return x

    predict(float("nan"))
    predict(0.5)
    modelotel.force_flush()
    conf = memory_exporter.last_points(conv.PREDICTION_CONFIDENCE_METRIC)
    assert total_count(conf, **{conv.MODEL_NAME: "nan-conf"}) == 1
    dropped = memory_exporter.last_points(conv.DROPPED)
    assert total_count(dropped, **{conv.DROP_REASON: "non_finite"}) >= 1
    assert not math.isnan(conf[0].sum)


@pytest.mark.parametrize("softmax", [False, True])
def test_list_outputs_left_to_the_export_thread_match_extract(memory_exporter, softmax):
    """Lists and tuples of floats are kept as bytes and extracted in bulk later: the exported confidences,
    labels and misses equal extract() on each output as it was (probabilities, logits, NaN, inf, negatives)."""
    from collections import Counter

    from modelotel.extract import extract

    rng = np.random.default_rng(7)
    outputs = []
    for i in range(300):
        n = int(rng.integers(2, 65))
        row = rng.dirichlet(np.ones(n)) if i % 3 else rng.normal(0, 3, n)
        row = row.tolist()
        if i % 17 == 0:
            row[int(rng.integers(n))] = float("nan")
        if i % 23 == 0:
            row[0] = float("inf")
        outputs.append(tuple(row) if i % 2 else row)
    name = f"lists-{softmax}"

    @modelotel.instrument_model(name=name, softmax=softmax)
    def predict(i):
        return outputs[i]

    for i in range(len(outputs)):
        assert predict(i) is outputs[i]
    modelotel.force_flush()
    confs, labels, misses = [], Counter(), 0
    for out in outputs:
        ex = extract(list(out), softmax=softmax)
        if ex is None:
            misses += 1
            continue
        confs += ex.confidences
        labels.update(str(label) for label in ex.labels)
    points = [
        p
        for p in memory_exporter.last_points(conv.PREDICTION_CONFIDENCE_METRIC)
        if p.attributes[conv.MODEL_NAME] == name
    ]
    assert sum(p.count for p in points) == len(confs) > 100
    assert sum(p.sum for p in points) == pytest.approx(sum(confs), rel=1e-9)
    assert min(p.min for p in points) == pytest.approx(min(confs)) and max(p.max for p in points) == pytest.approx(
        max(confs)
    )
    counted = memory_exporter.last_points(conv.PREDICTIONS)
    for label, n in labels.items():
        assert total_count(counted, **{conv.MODEL_NAME: name, conv.PREDICTION_LABEL: label}) == n
    assert total_count(memory_exporter.last_points(conv.EXTRACT_MISSES), **{conv.MODEL_NAME: name}) == misses > 0


def test_feedback_on_long_free_text_keeps_a_digest_and_judges_exactly(memory_exporter):
    """A generator's 1 MB answers waiting for feedback: the table keeps 32-byte digests, not the texts, and
    correctness is still exact (same text: correct; one character changed: incorrect). (The last output of the
    thread stays alive for last_prediction_id() until the next call or 5 s: one answer, not ten.)"""
    import tracemalloc

    from modelotel.feedback import PENDING

    def answer(i):  # built afresh on every call: only what the table keeps stays alive
        return (f"answer {i} " * 100_000)[:1_000_000]

    ids = []

    @modelotel.instrument_model(name="fb-text", free_text_labels=True)
    def generate(i):
        ids.append(modelotel.current_prediction_id())
        return answer(i)

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(10):
        generate(i)
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(PENDING) >= 10
    assert kept < 1_200_000, f"{kept} bytes kept for ten pending 1 MB answers"
    assert modelotel.record_feedback(ids[0], label=answer(0))
    assert modelotel.record_feedback(ids[1], label=answer(1)[:-1] + "!")
    assert modelotel.record_feedback(ids[2], label=answer(2) + " ")
    modelotel.force_flush()
    fb = memory_exporter.last_points(conv.FEEDBACK)
    assert total_count(fb, **{conv.MODEL_NAME: "fb-text", conv.FEEDBACK_CORRECT: True}) == 1
    assert total_count(fb, **{conv.MODEL_NAME: "fb-text", conv.FEEDBACK_CORRECT: False}) == 2
