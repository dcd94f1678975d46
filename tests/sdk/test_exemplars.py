"""Exemplars on modelotel's duration histograms (metrics/exemplars.py): which measurements, which bucket, how many,
which export interval, and how they are written (OTLP JSON and protobuf) and read back (the evaluator)."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from test_asgi import serving  # the real uvicorn server of the ASGI suite
from test_grpc import Stack as GrpcStack  # a real grpc (or grpc.aio) server with modelotel's interceptor

import modelotel
from modelotel import config
from modelotel import conventions as conv
from modelotel.evaluator.engine.stream import request_json
from modelotel.evaluator.serve.receiver import parse_protobuf
from modelotel.evaluator.sources.otlp_file import read_otlp_file
from modelotel.integrations.fastapi import instrument_app
from modelotel.metrics import exemplars as ex
from modelotel.metrics.buffers import attr_key
from modelotel.metrics.recorder import Recorder, iter_points
from modelotel.metrics.selftelemetry import SELF
from modelotel.otlp.json import metrics_to_json_line
from modelotel.sketch import bucket_index

from conftest import MemoryMetricExporter

ATTRS = {conv.MODEL_NAME: "m", conv.MODEL_VERSION: "1"}
KEY = attr_key(ATTRS)


def bucket_of(point, value: float) -> int:
    """Position of ``value``'s bucket in the point's positive buckets (the value is > 0)."""
    return bucket_index(value, point.scale) - point.positive.offset


def assert_in_occupied_bucket(point, exemplar) -> None:
    j = bucket_of(point, exemplar.value)
    assert 0 <= j < len(point.positive.bucket_counts) and point.positive.bucket_counts[j] > 0, (point, exemplar)


def candidate(ns: int, when: int, trace_id: int = 1, span_id: int = 1, tag=None) -> tuple:
    return (tag, ns, when, trace_id, span_id)


# -- the reservoir against an exact computation on the raw measurements -------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=10**13), min_size=1, max_size=300),
    st.integers(min_value=0, max_value=2**31),
    st.sampled_from([5, 2, 0]),
    st.sampled_from([1024, 16]),
)
def test_one_latest_exemplar_per_occupied_bucket_the_highest_twenty(durations_ns, seed, scale, max_buckets):
    """Every exemplar lies in an occupied bucket of its point; per bucket it is the latest traced measurement in
    that bucket; the buckets that have one are exactly the MAX_PER_POINT highest buckets holding a traced value.
    Small ``max_buckets`` and wide value ranges make the sketch downscale between offers (re-keying)."""
    rng = np.random.default_rng(seed)
    rec = Recorder(scale=scale, max_buckets=max_buckets, temporality="delta", start_ns=1)
    traced = rng.random(len(durations_ns)) < 0.5
    times = rng.permutation(len(durations_ns)) + 10**18  # arrival order is not time order
    cands = []
    for i, ns in enumerate(durations_ns):
        if traced[i]:
            cands.append(candidate(ns, int(times[i]), trace_id=i + 1, span_id=i + 1))
    # offered in chunks, as successive folds of one interval do
    for chunk in np.array_split(np.arange(len(durations_ns)), 3):
        if not len(chunk):
            continue
        rec.observe(conv.INFERENCE_DURATION, KEY, ATTRS, np.asarray([durations_ns[i] for i in chunk], float) * 1e-9)
        mine = [c for c in cands if c[3] - 1 in set(chunk.tolist())]
        if mine:
            rec.offer(conv.INFERENCE_DURATION, KEY, ATTRS, mine)
    (point,) = [p for n, p in iter_points(rec.collect(Resource({}), now_ns=2)) if n == conv.INFERENCE_DURATION]

    # exact: per bucket at the exported scale, the latest traced measurement
    latest: dict[int, tuple] = {}
    for c in cands:
        b = bucket_index(c[1] * 1e-9, point.scale)
        if b not in latest or c[2] >= latest[b][2]:
            latest[b] = c
    want = sorted(latest, reverse=True)[: ex.MAX_PER_POINT]
    got = point.exemplars
    assert len(got) == len(want) <= ex.MAX_PER_POINT
    assert sorted(bucket_index(e.value, point.scale) for e in got) == sorted(want)  # the highest, one each
    assert [e.time_unix_nano for e in got] == sorted(e.time_unix_nano for e in got)  # oldest first (Prometheus)
    for e in got:
        assert_in_occupied_bucket(point, e)
        c = latest[bucket_index(e.value, point.scale)]
        assert (e.value, e.time_unix_nano, e.trace_id, e.span_id) == (c[1] * 1e-9, c[2], c[3], c[4])
        assert e.filtered_attributes == {}


def test_exemplars_belong_to_their_interval_in_both_temporalities():
    for temporality in ("cumulative", "delta"):
        rec = Recorder(temporality=temporality, start_ns=1)
        rec.observe(conv.INFERENCE_DURATION, KEY, ATTRS, np.asarray([0.25]))
        rec.offer(conv.INFERENCE_DURATION, KEY, ATTRS, [candidate(250_000_000, 5, 7, 8)])
        first = [p for _, p in iter_points(rec.collect(Resource({}), now_ns=10))]
        assert [(e.value, e.trace_id) for e in first[0].exemplars] == [(0.25, 7)]
        rec.observe(conv.INFERENCE_DURATION, KEY, ATTRS, np.asarray([0.5]))  # an untraced call
        second = [p for _, p in iter_points(rec.collect(Resource({}), now_ns=20))]
        assert second[0].count == (2 if temporality == "cumulative" else 1)
        assert list(second[0].exemplars) == []
        rec.observe(conv.INFERENCE_DURATION, KEY, ATTRS, np.asarray([0.125]))
        rec.offer(conv.INFERENCE_DURATION, KEY, ATTRS, [candidate(125_000_000, 25, 9, 10)])
        third = [p for _, p in iter_points(rec.collect(Resource({}), now_ns=30))]
        assert [(e.value, e.trace_id) for e in third[0].exemplars] == [(0.125, 9)]


def test_non_finite_and_zero_values():
    rec = Recorder(temporality="delta", start_ns=1)
    rec.observe(conv.INFERENCE_DURATION, KEY, ATTRS, np.asarray([0.0, 0.5]))
    rec.offer(conv.INFERENCE_DURATION, KEY, ATTRS, [candidate(0, 5, 1, 1), candidate(500_000_000, 6, 2, 2)])
    (point,) = [p for _, p in iter_points(rec.collect(Resource({}), now_ns=10))]
    assert [(e.value, e.trace_id) for e in point.exemplars] == [(0.0, 1), (0.5, 2)]  # the zero bucket has one too
    res = ex.Reservoir(5)
    res.add(5, [float("nan"), float("inf")], [candidate(1, 1), candidate(1, 1)])
    assert len(res) == 0


# -- the filter ---------------------------------------------------------------------------------------------------


def _span(sampled: bool, trace_id: int = 0xABC, span_id: int = 0xDEF) -> NonRecordingSpan:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags))


@pytest.mark.parametrize(
    ("mode", "sampled_kept", "unsampled_kept"),
    [(ex.TRACE_BASED, True, False), (ex.ALWAYS_ON, True, True), (ex.ALWAYS_OFF, False, False)],
)
def test_filter_modes(mode, sampled_kept, unsampled_kept):
    saved = ex.FILTER.mode
    ex.FILTER.mode = mode
    try:
        buf: list = []
        ex.offer(buf, _span(True), 100, "a")
        assert [c[0] for c in buf] == (["a"] if sampled_kept else [])
        buf.clear()
        ex.offer(buf, _span(False), 100, "b")
        assert [c[0] for c in buf] == (["b"] if unsampled_kept else [])
        buf.clear()
        ex.offer(buf, _span(True, trace_id=0, span_id=0), 100)  # the invalid context: never
        before = SELF.errors.get("exemplar", 0)
        ex.offer(buf, object(), 100)  # not a span: no exemplar, no exception, counted (unless the filter is off)
        assert buf == []
        assert SELF.errors.get("exemplar", 0) == before + (mode != ex.ALWAYS_OFF)
    finally:
        ex.FILTER.mode = saved


def test_the_environment_variable(monkeypatch):
    monkeypatch.delenv(config.OTEL_METRICS_EXEMPLAR_FILTER, raising=False)
    assert config.resolve(environ={}).exemplar_filter == "trace_based"
    for value in ("always_on", "ALWAYS_OFF", " trace_based "):
        env = {config.OTEL_METRICS_EXEMPLAR_FILTER: value}
        assert config.resolve(environ=env).exemplar_filter == value.strip().lower()
    with pytest.raises(config.ConfigError, match="OTEL_METRICS_EXEMPLAR_FILTER"):
        config.resolve(environ={config.OTEL_METRICS_EXEMPLAR_FILTER: "sometimes"})


# -- the decorator: traced calls, untraced calls, errors ----------------------------------------------------------


@pytest.fixture
def traced(spans):
    exporter = MemoryMetricExporter()
    modelotel.configure(service_name="exemplars", exporter=exporter, export_interval=3600, traces="span")
    yield exporter
    modelotel.shutdown()


def _model_spans(spans, name):
    return {s.context.span_id: s for s in spans.get_finished_spans() if s.name == f"predict {name}"}


def _points(exporter, flush=True, **attrs):
    """Points of the last export (exemplars are those of its interval: a second flush has none)."""
    if flush:
        modelotel.force_flush()
    return [
        p
        for p in exporter.last_points(conv.INFERENCE_DURATION)
        if all(p.attributes.get(k) == v for k, v in attrs.items())
    ]


def test_traced_calls_carry_their_span_and_value(traced, spans):
    @modelotel.instrument_model(name="ex-sync", version="1")
    def predict(x):
        if x < 0:
            raise ValueError("negative")
        return [0.3, 0.7]

    @modelotel.instrument_model(name="ex-async", version="1")
    async def apredict(x):
        await asyncio.sleep(x)
        return [0.3, 0.7]

    for x in (1, 2, 3):
        predict(x)
    with pytest.raises(ValueError):
        predict(-1)

    async def run():
        for x in (0.001, 0.004, 0.016):
            await apredict(x)

    asyncio.run(run())
    modelotel.force_flush()
    for name, n_ok in (("ex-sync", 3), ("ex-async", 3)):
        by_id = _model_spans(spans, name)
        (ok,) = [p for p in _points(traced, False, **{conv.MODEL_NAME: name}) if conv.ERROR_TYPE not in p.attributes]
        assert ok.count == n_ok and 1 <= len(ok.exemplars) <= n_ok
        for e in ok.exemplars:
            span = by_id[e.span_id]  # the very span of that call
            assert e.trace_id == span.context.trace_id
            assert span.start_time <= e.time_unix_nano
            assert e.value <= (span.end_time - span.start_time) * 1e-9  # measured inside the span
            assert_in_occupied_bucket(ok, e)
        assert len({bucket_of(ok, e.value) for e in ok.exemplars}) == len(ok.exemplars)
    # the async calls slept 1, 4 and 16 ms: three buckets apart at any scale >= 0, so all three are there
    (aok,) = _points(traced, False, **{conv.MODEL_NAME: "ex-async"})
    assert len(aok.exemplars) == 3
    (err,) = [p for p in _points(traced, False, **{conv.MODEL_NAME: "ex-sync"}) if conv.ERROR_TYPE in p.attributes]
    assert err.attributes[conv.ERROR_TYPE] == "ValueError" and err.count == 1
    (e,) = err.exemplars
    assert e.span_id in _model_spans(spans, "ex-sync")
    assert_in_occupied_bucket(err, e)


def test_streams_carry_their_span(traced, spans):
    @modelotel.instrument_model(name="ex-gen", version="1")
    def tokens(n):
        for i in range(n):
            time.sleep(0.001)
            yield i

    @modelotel.instrument_model(name="ex-agen", version="1")
    async def atokens(n):
        for i in range(n):
            await asyncio.sleep(0.001)
            yield i
        raise RuntimeError("stream broke")

    assert list(tokens(1)) == [0] and list(tokens(8)) == list(range(8))  # about 1 and 8 ms: different buckets

    async def consume():
        with pytest.raises(RuntimeError):
            async for _ in atokens(2):
                pass

    asyncio.run(consume())
    modelotel.force_flush()
    gen_spans = _model_spans(spans, "ex-gen")
    (point,) = _points(traced, False, **{conv.MODEL_NAME: "ex-gen"})
    assert point.count == 2 and len(point.exemplars) == 2
    assert {e.span_id for e in point.exemplars} == set(gen_spans)
    for e in point.exemplars:
        assert e.trace_id == gen_spans[e.span_id].context.trace_id
        assert_in_occupied_bucket(point, e)
    (failed,) = _points(traced, False, **{conv.MODEL_NAME: "ex-agen"})
    assert failed.attributes[conv.ERROR_TYPE] == "RuntimeError" and failed.count == 1
    (e,) = failed.exemplars
    assert e.span_id in _model_spans(spans, "ex-agen")
    assert_in_occupied_bucket(failed, e)


def test_genai_streams_carry_their_span_on_request_duration_and_ttft(traced, spans):
    @modelotel.instrument_model(name="ex-llm", version="1", genai=modelotel.GenAI(provider="vllm"))
    def generate(n, first_ms):
        time.sleep(first_ms / 1000)
        for i in range(n):
            yield f"tok{i}"

    for n, first_ms in ((3, 1), (3, 16)):  # first tokens about 1 and 16 ms: different buckets
        assert len(list(generate(n, first_ms))) == n
    modelotel.force_flush()
    by_id = _model_spans(spans, "ex-llm")
    assert len(by_id) == 2
    for metric in (conv.GENAI_SERVER_REQUEST_DURATION, conv.GENAI_SERVER_TIME_TO_FIRST_TOKEN):
        (point,) = [p for p in traced.last_points(metric) if p.attributes.get(conv.MODEL_NAME) == "ex-llm"]
        assert point.count == 2 and len(point.exemplars) == 2, metric
        assert {e.span_id for e in point.exemplars} == set(by_id)
        for e in point.exemplars:
            assert e.trace_id == by_id[e.span_id].context.trace_id
            assert_in_occupied_bucket(point, e)


def test_enrich_mode_names_the_callers_span(spans):
    exporter = MemoryMetricExporter()
    modelotel.configure(service_name="exemplars", exporter=exporter, export_interval=3600, traces="enrich")
    try:

        @modelotel.instrument_model(name="ex-enrich", version="1")
        def predict(x):
            return [0.3, 0.7]

        tracer = trace.get_tracer("exemplar-test-app")
        ids = []
        for x in range(2):
            with tracer.start_as_current_span(f"handler {x}") as handler:
                predict(x)
                ctx = handler.get_span_context()
                ids.append((ctx.trace_id, ctx.span_id))
            time.sleep(0.01)
        (point,) = _points(exporter, **{conv.MODEL_NAME: "ex-enrich"})
        assert point.count == 2 and 1 <= len(point.exemplars) <= 2  # two calls may share a bucket
        assert {(e.trace_id, e.span_id) for e in point.exemplars} <= set(ids)
        assert (point.exemplars[-1].trace_id, point.exemplars[-1].span_id) == ids[-1]  # the latest call has one
    finally:
        modelotel.shutdown()


def test_untraced_calls_have_none(memory_exporter, spans):
    @modelotel.instrument_model(name="ex-untraced", version="1")
    def predict(x):
        return [0.3, 0.7]

    for x in range(5):
        predict(x)
    (point,) = _points(memory_exporter, **{conv.MODEL_NAME: "ex-untraced"})
    assert point.count == 5 and list(point.exemplars) == []


def test_always_off_from_the_environment(spans, monkeypatch):
    monkeypatch.setenv(config.OTEL_METRICS_EXEMPLAR_FILTER, "always_off")
    exporter = MemoryMetricExporter()
    modelotel.configure(service_name="exemplars", exporter=exporter, export_interval=3600, traces="span")
    try:

        @modelotel.instrument_model(name="ex-off", version="1")
        def predict(x):
            return [0.3, 0.7]

        for x in range(3):
            predict(x)
        (point,) = _points(exporter, **{conv.MODEL_NAME: "ex-off"})
        assert point.count == 3 and list(point.exemplars) == []
        assert len(_model_spans(spans, "ex-off")) == 3  # traced all the same
        assert ex.FILTER.mode == "always_off"
    finally:
        modelotel.shutdown()


# -- the server middleware ------------------------------------------------------------------------------------------


def test_http_server_duration_and_route_models_carry_the_request_span(traced, spans):
    app = FastAPI()

    @app.get("/slow/{ms}")
    async def slow(ms: int):
        await asyncio.sleep(ms / 1000)
        return {"ms": ms}

    instrument_app(app, models={"/slow/{ms}": ("routed", "2")})
    with serving(app) as url, httpx.Client(base_url=url) as client:
        for ms in (1, 8, 64):
            assert client.get(f"/slow/{ms}").status_code == 200
    modelotel.force_flush()  # the server's lifespan shutdown flushed too: exemplars are in whichever export
    server = {s.context.span_id: s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER}
    http_points = [
        p for p in traced.all_points(conv.HTTP_SERVER_DURATION) if p.attributes.get("http.route") == "/slow/{ms}"
    ]
    model_points = [p for p in traced.all_points(conv.INFERENCE_DURATION) if p.attributes[conv.MODEL_NAME] == "routed"]
    for points in (http_points, model_points):
        assert points[-1].count == 3
        found = [(p, e) for p in points for e in p.exemplars]
        assert len(found) == 3  # 1, 8, 64 ms: three buckets apart, each exported once
        for point, e in found:
            span = server[e.span_id]
            assert e.trace_id == span.context.trace_id
            assert span.start_time <= e.time_unix_nano <= span.end_time  # measured as the span ended
            # the request clock starts a few microseconds before its span does (perf_counter vs time_ns)
            assert abs(e.value - (span.end_time - span.start_time) * 1e-9) < 1e-3
            assert_in_occupied_bucket(point, e)


@pytest.mark.parametrize("kind", ["sync", "aio"])
def test_rpc_server_duration_carries_the_call_span(kind, traced, spans):
    stack = GrpcStack(kind)
    try:
        for payload in (b"a", b"b"):
            assert stack.channel.unary_unary("/pkg.Model/Predict")(payload, timeout=10) == b"ok:" + payload
        modelotel.force_flush()
    finally:
        stack.close()
    server = {s.context.span_id: s for s in spans.get_finished_spans() if s.name == "pkg.Model/Predict"}
    assert len(server) == 2
    points = [
        p for p in traced.all_points(conv.RPC_SERVER_DURATION) if p.attributes[conv.RPC_METHOD] == "pkg.Model/Predict"
    ]
    found = [(p, e) for p in points for e in p.exemplars]
    assert points[-1].count == 2 and 1 <= len(found) <= 2  # two calls may share a bucket: then the later one
    for point, e in found:
        span = server[e.span_id]
        assert e.trace_id == span.context.trace_id
        assert span.start_time <= e.time_unix_nano <= span.end_time
        assert_in_occupied_bucket(point, e)
    if len(found) == 1:
        (only,) = found
        later = max(server.values(), key=lambda s: s.end_time)
        assert only[1].span_id == later.context.span_id


# -- encoding and reading back --------------------------------------------------------------------------------------


def _data_with_exemplars():
    rec = Recorder(temporality="delta", start_ns=1)
    values = [0.003, 0.02, 0.5]
    rec.observe(conv.INFERENCE_DURATION, KEY, ATTRS, np.asarray(values))
    tid, sid = 0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7
    rec.offer(conv.INFERENCE_DURATION, KEY, ATTRS, [candidate(20_000_000, 1_700_000_000_123_456_789, tid, sid)])
    return rec.collect(Resource({"service.name": "s"}), now_ns=1_700_000_001_000_000_000), tid, sid


def test_json_and_protobuf_carry_the_exemplar():
    data, tid, sid = _data_with_exemplars()
    line = metrics_to_json_line(data)
    (found,) = re.findall(r'"exemplars":\[(.*?)\]', line)
    assert json.loads(found) == {
        "timeUnixNano": "1700000000123456789",
        "asDouble": 0.02,
        "traceId": "0af7651916cd43dd8448eb211c80319c",  # OTLP JSON: lowercase hex, not base64
        "spanId": "00f067aa0ba902b7",
    }
    request = encode_metrics(data)
    (proto,) = request.resource_metrics[0].scope_metrics[0].metrics[0].exponential_histogram.data_points[0].exemplars
    assert proto.trace_id == tid.to_bytes(16, "big") and proto.span_id == sid.to_bytes(8, "big")
    assert proto.as_double == 0.02 and proto.time_unix_nano == 1_700_000_000_123_456_789


def test_the_evaluator_reads_points_with_exemplars_as_without(tmp_path):
    data, _, _ = _data_with_exemplars()
    line = metrics_to_json_line(data)
    stripped = re.sub(r',"exemplars":\[.*?\]', "", line)
    assert stripped != line
    results = []
    for name, text in (("with.jsonl", line), ("without.jsonl", stripped)):
        path = tmp_path / name
        path.write_text(text + "\n")
        deltas, report = read_otlp_file(path, [conv.INFERENCE_DURATION])
        got = [(d.value, d.sketch.count, d.sketch.sum) for d in deltas]
        assert report.bad_points == 0 and report.corrupt_lines == 0
        results.append((got, report.points, report.deltas))
    assert results[0] == results[1] and results[0][0] == [(3, 3, pytest.approx(0.523))]


def test_modelotel_serve_reads_protobuf_with_exemplars_as_without():
    """``modelotel serve``'s receivers turn an OTLP protobuf request into the line its decoder reads."""
    data, _, _ = _data_with_exemplars()
    request = encode_metrics(data)
    with_exemplars = request_json(parse_protobuf(request.SerializeToString()))
    point = request.resource_metrics[0].scope_metrics[0].metrics[0].exponential_histogram.data_points[0]
    assert len(point.exemplars) == 1
    point.ClearField("exemplars")
    assert with_exemplars == request_json(parse_protobuf(request.SerializeToString()))
