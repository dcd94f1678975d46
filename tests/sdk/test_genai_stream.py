"""GenAI streams: gen_ai.server.* metrics of generator models (modelotel.instrument.genai, streams.GenAIStream)."""

from __future__ import annotations

import asyncio
import math
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource

import modelotel
from modelotel import GenAI, config
from modelotel import conventions as conv
from modelotel.instrument.genai import GenAIBuffers
from modelotel.metrics.recorder import Recorder

from conftest import total_count

TTFT = conv.GENAI_SERVER_TIME_TO_FIRST_TOKEN
TPOT = conv.GENAI_SERVER_TIME_PER_OUTPUT_TOKEN
DURATION = conv.GENAI_SERVER_REQUEST_DURATION
BASE = {conv.MODEL_NAME: "llm", conv.MODEL_VERSION: "v1", conv.DEPLOYMENT_ROLE: "primary"}


def _points(exporter, name, **attrs):
    return [p for p in exporter.last_points(name) if all(p.attributes.get(k) == v for k, v in attrs.items())]


def test_one_item_is_one_token_and_the_figures_follow_the_definitions(memory_exporter):
    @modelotel.instrument_model("llm", "v1", genai=GenAI(provider="vllm", operation="text_completion"))
    def generate(n, first_s, gap_s):
        time.sleep(first_s)
        for i in range(n):
            if i:
                time.sleep(gap_s)
            yield f"tok{i}"

    t0 = time.perf_counter()
    assert list(generate(5, 0.03, 0.01)) == [f"tok{i}" for i in range(5)]
    client_total = time.perf_counter() - t0
    assert list(generate(1, 0.0, 0.0)) == ["tok0"]  # one token: a TTFT, no TPOT
    assert list(generate(0, 0.0, 0.0)) == []  # no token: neither
    modelotel.force_flush()
    expected = {
        conv.GENAI_OPERATION: "text_completion",
        conv.GENAI_SYSTEM: "vllm",  # the default: conventions v1.36.0 and before
        conv.GENAI_REQUEST_MODEL: "llm",
        conv.MODEL_NAME: "llm",
    }
    assert total_count(_points(memory_exporter, DURATION), **expected) == 3
    assert total_count(_points(memory_exporter, TTFT), **expected) == 2
    (tpot,) = _points(memory_exporter, TPOT, **expected)
    assert tpot.count == 1
    assert conv.GENAI_PROVIDER not in tpot.attributes and conv.GENAI_RESPONSE_MODEL not in tpot.attributes
    # (D - T) / 4 for 4 gaps of 10 ms; sleep overshoots, never undershoots
    assert 0.01 <= tpot.sum < 0.01 + 0.01
    ttft = max(_points(memory_exporter, TTFT, **expected), key=lambda p: p.max)
    assert 0.03 <= ttft.max < client_total
    (out,) = _points(memory_exporter, conv.GENAI_TOKENS, **{conv.GENAI_TOKEN_TYPE: "output"})
    assert (out.count, out.sum, out.min, out.max) == (3, 6, 0, 5)
    assert not _points(memory_exporter, conv.GENAI_TOKENS, **{conv.GENAI_TOKEN_TYPE: "input"})
    # modelotel's own names are unchanged: every stream is an ml.inference.duration, ml.* first item as before
    assert total_count(memory_exporter.last_points(conv.INFERENCE_DURATION), **{conv.MODEL_NAME: "llm"}) == 3
    assert total_count(memory_exporter.last_points(conv.INFERENCE_TIME_TO_FIRST_ITEM)) == 2


def test_tokens_and_usage_callables_and_the_latest_conventions(memory_exporter, monkeypatch):
    monkeypatch.setenv(config.OTEL_SEMCONV_STABILITY_OPT_IN, "http, gen_ai_latest_experimental")
    genai = GenAI(
        provider="acme",
        request_model="acme-7b",
        response_model="acme-7b-0613",
        tokens=lambda chunk: len(chunk["ids"]),
        usage=lambda chunk: (chunk["usage"]["in"], chunk["usage"]["out"]) if "usage" in chunk else None,
    )

    @modelotel.instrument_model("chat", genai=genai)
    async def chat(chunks):
        for chunk in chunks:
            yield chunk

    async def consume(chunks):
        return [c async for c in chat(chunks)]

    # empty first chunk: not a token; three tokens; a usage report that says 4 output tokens (billable: used)
    reported = [{"ids": []}, {"ids": [1, 2]}, {"ids": [3]}, {"usage": {"in": 11, "out": 4}}]
    counted = [{"ids": [5]}, {"ids": [6, 7]}]
    asyncio.run(consume(reported))
    asyncio.run(consume(counted))
    modelotel.force_flush()
    attrs = {
        conv.GENAI_PROVIDER: "acme",
        conv.GENAI_REQUEST_MODEL: "acme-7b",
        conv.GENAI_RESPONSE_MODEL: "acme-7b-0613",
    }
    assert total_count(_points(memory_exporter, TTFT, **attrs)) == 2
    assert total_count(_points(memory_exporter, TPOT, **attrs)) == 2
    assert not [p for p in memory_exporter.last_points(TTFT) if conv.GENAI_SYSTEM in p.attributes]
    (out,) = _points(memory_exporter, conv.GENAI_TOKENS, **{conv.GENAI_TOKEN_TYPE: "output"})
    assert (out.count, out.sum) == (2, 4 + 3)
    (inp,) = _points(memory_exporter, conv.GENAI_TOKENS, **{conv.GENAI_TOKEN_TYPE: "input"})
    assert (inp.count, inp.sum) == (1, 11)


def test_failed_streams_and_failing_callables(memory_exporter):
    def bad_count(item):
        if item == "boom":
            raise KeyError("tokenizer")
        return -1 if item == "neg" else 1

    @modelotel.instrument_model("llm-errors", genai=GenAI(provider="vllm", tokens=bad_count))
    def generate(items, fail=False):
        yield from items
        if fail:
            raise TimeoutError("decode step")

    with pytest.raises(TimeoutError):
        list(generate(["a", "b"], fail=True))
    assert list(generate(["a", "boom", "c"])) == ["a", "boom", "c"]  # the model's caller never sees it
    assert list(generate(["neg"])) == ["neg"]
    g = generate(["a", "b", "c"])
    assert next(g) == "a" and next(g) == "b"
    g.close()  # abandoned (a client that left): a successful stream of the tokens it produced
    modelotel.force_flush()
    durations = _points(memory_exporter, DURATION, **{conv.MODEL_NAME: "llm-errors"})
    assert total_count(durations, **{conv.ERROR_TYPE: "TimeoutError"}) == 1
    assert sum(p.count for p in durations if conv.ERROR_TYPE not in p.attributes) == 3
    # only the abandoned stream counted its tokens: TTFT/TPOT are for successful, counted streams
    assert total_count(_points(memory_exporter, TTFT)) == 1
    assert total_count(_points(memory_exporter, TPOT)) == 1
    (out,) = _points(memory_exporter, conv.GENAI_TOKENS)
    assert (out.count, out.sum) == (1, 2)
    drops = memory_exporter.last_points(conv.DROPPED)
    assert total_count(drops, **{conv.DROP_REASON: "genai_token_count"}) == 2


@pytest.mark.parametrize(
    "genai, match",
    [
        ("vllm", "GenAI"),
        (GenAI(provider=""), "provider"),
        (GenAI(provider="x", operation=3), "operation"),
        (GenAI(provider="x", request_model=""), "request_model"),
        (GenAI(provider="x", tokens=5), "tokens"),
    ],
)
def test_bad_genai_options_are_refused_at_decoration(genai, match):
    with pytest.raises(modelotel.ConfigError, match=match):
        modelotel.instrument_model("m", genai=genai)


def test_genai_needs_a_generator_model():
    with pytest.raises(modelotel.ConfigError, match="generator"):
        modelotel.instrument_model("m", genai=GenAI(provider="x"))(lambda x: x)


def test_opt_in_parsing():
    assert config.genai_latest({config.OTEL_SEMCONV_STABILITY_OPT_IN: "http/dup, gen_ai_latest_experimental"})
    assert not config.genai_latest({config.OTEL_SEMCONV_STABILITY_OPT_IN: "http,gen_ai"})
    assert not config.genai_latest({})


rows = st.lists(
    st.tuples(
        st.integers(1, 10**6),  # first token, ns
        st.integers(0, 10**10),  # decode time, ns
        st.integers(0, 5000),  # output tokens
        st.one_of(st.none(), st.integers(0, 10**6)),  # reported input tokens
        st.sampled_from([None, None, None, "TimeoutError"]),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(rows)
def test_fold_against_an_exact_computation(streams):
    """count, sum, min and max of every metric equal the raw per-stream definitions (the sketch keeps those exact;
    its quantiles are within 1.08 % relative: docs/sketch.md)."""
    buffers = GenAIBuffers(GenAI(provider="vllm"), BASE, latest=False)
    for first, decode, output, given_input, error in streams:
        first_token = first if output else 0
        buffers.streams.append((first + decode, first_token, output, given_input, error, True))
    recorder = Recorder(temporality="delta")
    recorder.register(buffers)
    data = recorder.collect(Resource.create({}))
    found: dict[tuple[str, str | None], object] = {}
    for metric in data.resource_metrics[0].scope_metrics[0].metrics:
        for p in metric.data.data_points:
            found[metric.name, p.attributes.get(conv.ERROR_TYPE) or p.attributes.get(conv.GENAI_TOKEN_TYPE)] = p
    ok = [s for s in streams if s[4] is None]
    expected = {
        (DURATION, None): [(f + d) * 1e-9 for f, d, *_ in ok],
        (DURATION, "TimeoutError"): [(f + d) * 1e-9 for f, d, _, _, e in streams if e],
        (TTFT, None): [f * 1e-9 for f, _, n, _, _ in ok if n],
        (TPOT, None): [d / (n - 1) * 1e-9 for _, d, n, _, _ in ok if n > 1],
        (conv.GENAI_TOKENS, "output"): [float(n) for _, _, n, _, _ in ok],
        (conv.GENAI_TOKENS, "input"): [float(i) for _, _, _, i, _ in ok if i is not None],
    }
    for key, values in expected.items():
        if not values:
            assert key not in found
            continue
        p = found[key]
        assert p.count == len(values), key
        assert math.isclose(p.sum, math.fsum(values), rel_tol=1e-12, abs_tol=1e-18), key
        assert (p.min, p.max) == (min(values), max(values)), key


def test_a_forked_child_exports_none_of_its_parents_streams(memory_exporter):
    @modelotel.instrument_model("llm-fork", genai=GenAI(provider="vllm"))
    def generate(n):
        yield from range(n)

    assert list(generate(3)) == [0, 1, 2]
    streams = generate.__modelotel__.genai.streams
    assert len(streams) == 1  # not folded yet
    pid = os.fork()
    if pid == 0:  # the child: nothing of the parent's left to export, and its own streams recorded
        ok = not streams and list(generate(2)) == [0, 1] and len(streams) == 1
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    modelotel.force_flush()
    assert total_count(_points(memory_exporter, TTFT, **{conv.MODEL_NAME: "llm-fork"})) == 1
