"""SLOs on the GenAI conventions' time to first token and time per output token, from another producer's
explicit-bucket histograms (as model servers write them), judged against exact counts over the raw requests.

modelotel's own export of the same metrics is judged end to end in tests/e2e/test_genai_sse.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from foreign_gen import TTFT_BOUNDS, Request, foreign_lines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelotel.evaluator import engine
from modelotel.evaluator.spec import SpecError, load_slos

from telemetry_gen import EPOCH, write_lines

MODELS = ("llama-3-8b", "mistral-7b")


def evaluate(tmp_path: Path, text: str, data: Path) -> dict:
    spec = tmp_path / "slo.yaml"
    spec.write_text(text)
    ev = engine.evaluate(load_slos([str(spec)]), [str(data)], at=EPOCH + 600)
    return {r.slo.name: r for r in ev.results}


def ttft_requests(seed: int, n: int = 900) -> list[Request]:
    """Log-normal TTFTs around 120 ms over 10 minutes, for two models of one server."""
    rng = np.random.default_rng(seed)
    return [
        Request("a", float(rng.uniform(0.001, 600)), float(rng.lognormal(math.log(0.12), 0.9)), route=MODELS[i % 2])
        for i in range(n)
    ]


def data_file(tmp_path: Path, reqs: list[Request], kind: str = "genai-ttft") -> Path:
    path = tmp_path / f"{kind}.jsonl"
    write_lines(path, foreign_lines(reqs, kind=kind, end=600))
    return path


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), threshold_ms=st.sampled_from([100, 250, 500, 180]))
def test_percentile_slo_on_ttft_per_slice_matches_the_raw_requests(tmp_path, seed, threshold_ms):
    reqs = ttft_requests(seed)
    data = data_file(tmp_path, reqs)
    slos = (
        "slos:\n  - {name: ttft-p95, metric: gen_ai.server.time_to_first_token, model: llama-3-8b, sli: latency, "
        f"percentile: p95, threshold: {threshold_ms}ms, objective: 0.9, window: 10m, timeslice: {{window: 2m}}, "
        "alerts: off}\n"
    )
    r = evaluate(tmp_path, slos, data)["ttft-p95"]
    good = 0
    for k in range(5):
        values = sorted(q.duration for q in reqs if q.route == MODELS[0] and 120 * k < q.t <= 120 * (k + 1))
        good += values[math.floor(0.95 * (len(values) - 1))] <= threshold_ms / 1000
    assert r.slices_total == 5
    assert r.sli_lower * 5 - 1e-9 <= good <= r.sli_upper * 5 + 1e-9
    if threshold_ms / 1000 in TTFT_BOUNDS:  # a bucket bound: exact
        assert r.sli_lower == r.sli_upper == good / 5


def test_good_if_ttft_within_a_threshold_counts_each_request(tmp_path):
    reqs = ttft_requests(7)
    data = data_file(tmp_path, reqs)
    slos = (
        "slos:\n"
        "  - {name: ttft-500, metric: gen_ai.server.time_to_first_token, model: mistral-7b, sli: latency, "
        "threshold: 500ms, objective: 0.95, window: 10m, alerts: off}\n"
        "  - {name: ttft-all, metric: gen_ai.server.time_to_first_token, sli: latency, "
        "threshold: 250ms, objective: 0.95, window: 10m, alerts: off}\n"
    )
    results = evaluate(tmp_path, slos, data)
    mine = [q.duration for q in reqs if q.route == MODELS[1]]
    r = results["ttft-500"]
    assert (r.good, r.events) == (sum(d <= 0.5 for d in mine), len(mine))  # 500 ms is a bucket bound: exact
    assert r.sli_lower == r.sli_upper == r.sli
    r = results["ttft-all"]
    assert (r.good, r.events) == (sum(q.duration <= 0.25 for q in reqs), len(reqs))


def test_time_per_output_token_slo(tmp_path):
    rng = np.random.default_rng(3)
    reqs = [
        Request("a", float(rng.uniform(0.001, 600)), float(rng.gamma(4.0, 0.012)), route=MODELS[0]) for _ in range(500)
    ]
    data = data_file(tmp_path, reqs, kind="genai-tpot")
    slos = (
        "slos:\n  - {name: tpot, metric: gen_ai.server.time_per_output_token, model: llama-3-8b, sli: latency, "
        "threshold: 75ms, objective: 0.9, window: 10m, alerts: off}\n"
    )
    r = evaluate(tmp_path, slos, data)["tpot"]
    assert (r.good, r.events) == (sum(q.duration <= 0.075 for q in reqs), len(reqs))


def test_model_names_gen_ai_request_model_on_gen_ai_metrics_only(tmp_path):
    spec = tmp_path / "slo.yaml"
    spec.write_text(
        "slos:\n"
        "  - {name: a, metric: gen_ai.server.time_to_first_token, model: m, sli: latency, threshold: 1s, "
        "objective: 0.9}\n"
        "  - {name: b, model: m, sli: latency, threshold: 1s, objective: 0.9}\n"
    )
    a, b = load_slos([str(spec)])
    assert a.sli.total.match == (("gen_ai.request.model", "m"),)
    assert b.sli.total.match == (("ml.model.name", "m"),)
    spec.write_text(
        "slos:\n  - {name: a, metric: gen_ai.server.time_to_first_token, sli: latency, threshold: 5, objective: 0.9}\n"
    )
    with pytest.raises(SpecError, match="threshold"):
        load_slos([str(spec)])


def test_failed_streams_are_judged_on_the_request_duration(tmp_path):
    spec = tmp_path / "slo.yaml"
    spec.write_text(
        "slos:\n  - {name: e, metric: gen_ai.server.request.duration, model: m, sli: error_ratio, objective: 0.99}\n"
    )
    (slo,) = load_slos([str(spec)])
    bad = slo.sli.bad
    assert bad.metric == "gen_ai.server.request.duration" and bad.match == (("gen_ai.request.model", "m"),)
    conditions = [*bad.filters, *(f for alternative in bad.any_of for f in alternative)]
    assert "error.type" in bad.present or [(f.key, f.op) for f in conditions] == [("error.type", "ne")], bad
