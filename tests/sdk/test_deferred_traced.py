"""Traced calls whose work is left to an export thread (``ModelBuffers.traced``) export what the call saw.

On modelotel's own TracerProvider a traced call keeps snapshots of its output and features and the
export thread works out the span's attributes and the metrics. These tests run such a process for
real (a subprocess: the test session's global TracerProvider is an application's), mutate inputs and
outputs after the calls returned, give feedback right after a call, and check the file it wrote
against values computed here from the original data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from modelotel import conventions as conv
from modelotel.extract import extract
from modelotel.privacy import FeatureHasher

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY = "deferred-test-key"

APP = r"""
import json, sys, threading
import numpy as np
import modelotel
from modelotel.runtime import STATE

modelotel.configure(service_name="deferred", exporter="file", path=sys.argv[1], export_interval=3600, traces="span")
out = []  # (case, features as they were, output as it was, prediction id)

@modelotel.instrument_model(name="lists", version="1")
def lists(x):
    return [0.1, 0.9] if x[0] > 0 else [0.7, 0.3]

@modelotel.instrument_model(name="arrays", version="1")
def arrays(x):
    return np.array([0.25, 0.75]) if x.sum() > 0 else np.array([0.6, 0.4])

@modelotel.instrument_model(name="records", version="1")
def records(x):
    return {"label": "fraud" if x["amount"] > 100 else "ok", "score": 0.8}

@modelotel.instrument_model(name="big", version="1")
def big(x):
    return [0.5, 0.5]

threads = []
def confidence(r):
    threads.append(threading.get_ident())
    return r[1]

@modelotel.instrument_model(name="callable", version="1", confidence=confidence)
def with_callable(x):
    return [0.2, 0.8]

pids = []
queued = {}
@modelotel.instrument_model(name="feedback", version="1")
def feedback_model(x):
    pids.append(modelotel.current_prediction_id())
    return [0.35, 0.65]

for i in range(5):
    x = [float(i), 2.0, None]
    r = lists(x)
    out.append(("lists", list(x), list(r)))
    x[0] = -99.0  # the caller reuses its buffers: the telemetry must not see this
    r[0], r[1] = 1.0, 0.0
    a = np.array([i, 1.0, 2.0])
    ra = arrays(a)
    out.append(("arrays", a.tolist(), ra.tolist()))
    a[:] = -5.0
    ra[:] = [1.0, 0.0]
    d = {"amount": 50.0 * i, "country": "NL"}
    out.append(("records", dict(d), records(d)))
    d["amount"] = 0.0
    bx = [0.5] * 100  # too long to copy: worked out on the request path
    out.append(("big", list(bx), big(bx)))
    with_callable([1.0])
    # what waits for an export thread, per model, right after the calls (the metric thread folds once a second)
    for b in STATE.recorder._sources:
        if hasattr(b, "traced"):
            name = b.attributes["ml.model.name"]
            queued[name] = max(queued.get(name, 0), len(b.traced))
feedback_model([3.0])
ok = modelotel.record_feedback(pids[0], label=1)  # right away: the call's work may still be queued
modelotel.force_flush()
main = threading.get_ident()
print(json.dumps({"out": out, "queued": queued, "feedback_matched": ok, "main": main, "threads": threads}))
modelotel.shutdown()
"""


def run_app(tmp_path, app: str, **env_extra: str) -> tuple[dict, list[dict], dict[str, list[dict]]]:
    """Run ``app`` (argv[1]: its telemetry file) in a subprocess: (its last stdout line as JSON, spans, metrics)."""
    path = tmp_path / "telemetry.jsonl"
    script = tmp_path / "app.py"
    script.write_text(app)
    env = dict(os.environ, MODELOTEL_HASH_KEY=KEY, PYTHONPATH=os.path.join(ROOT, "sdk"), **env_extra)
    proc = subprocess.run(
        [sys.executable, str(script), str(path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    spans, metrics = [], {}
    for line in path.read_text().splitlines():
        obj = json.loads(line)
        if obj.get("resourceMetrics"):
            metrics = {}  # cumulative: the last export holds every series
        for rs in obj.get("resourceSpans", []):
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    attrs = {a["key"]: next(iter(a["value"].values())) for a in span.get("attributes", [])}
                    spans.append({**span, "attrs": attrs})
        for rm in obj.get("resourceMetrics", []):
            for sm in rm["scopeMetrics"]:
                for metric in sm["metrics"]:
                    body = next(v for k, v in metric.items() if isinstance(v, dict) and "dataPoints" in v)
                    for point in body["dataPoints"]:
                        attrs = {a["key"]: next(iter(a["value"].values())) for a in point.get("attributes", [])}
                        metrics.setdefault(metric["name"], []).append({**point, "attrs": attrs})
    return report, spans, metrics


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict, list[dict], dict[str, list[dict]]]:
    return run_app(tmp_path_factory.mktemp("deferred"), APP)


def _count(points: list[dict], **attrs: str) -> int:
    total = 0
    for p in points:
        if all(p["attrs"].get(k) == v for k, v in attrs.items()):
            total += int(p.get("count", p.get("asInt", 0)))
    return total


def test_deferred_traced_calls_export_what_the_call_saw(run):
    report, spans, metrics = run
    # the calls did leave their work for later (a fold would have to hit every iteration to hide it)
    assert all(report["queued"].get(m, 0) > 0 for m in ("lists", "arrays", "records")), report["queued"]
    assert report["queued"].get("big", 0) == report["queued"].get("callable", 0) == 0
    hasher = FeatureHasher(KEY)
    by_model: dict[str, list[dict]] = {}
    for span in spans:
        by_model.setdefault(span["attrs"][conv.MODEL_NAME], []).append(span)
    expected: dict[str, list[tuple[str, float, str]]] = {}
    for case, features, output in report["out"]:
        feats = np.array(features) if case == "arrays" else features
        ex = extract(np.array(output) if case == "arrays" else output)
        expected.setdefault(case, []).append((hasher.hash(feats), ex.confidences[0], str(ex.labels[0])))
    for case, rows in expected.items():
        got = sorted(
            (s["attrs"][conv.FEATURES_HASH], s["attrs"][conv.PREDICTION_CONFIDENCE], s["attrs"][conv.PREDICTION_LABEL])
            for s in by_model[case]
        )
        assert got == sorted(rows), case
        # the missing-feature count of each call is that call's own (one None in every "lists" call)
        if case == "lists":
            assert all(int(s["attrs"][conv.FEATURES_MISSING]) == 1 for s in by_model[case])
    # metrics: one confidence per call, labels as extracted from the original outputs
    for case, rows in expected.items():
        assert _count(metrics[conv.PREDICTION_CONFIDENCE_METRIC], **{conv.MODEL_NAME: case}) == len(rows)
        for label in {r[2] for r in rows}:
            n = sum(1 for r in rows if r[2] == label)
            assert _count(metrics[conv.PREDICTIONS], **{conv.MODEL_NAME: case, conv.PREDICTION_LABEL: label}) == n
    assert _count(metrics[conv.FEATURES_MISSING_METRIC], **{conv.MODEL_NAME: "lists"}) == 5


def test_feedback_right_after_a_deferred_call_and_user_callables_on_the_calling_thread(run):
    report, spans, metrics = run
    assert report["feedback_matched"] is True
    # label 1 is the prediction's argmax: a correct verdict with the prediction's confidence
    assert _count(metrics[conv.FEEDBACK], **{conv.MODEL_NAME: "feedback", conv.FEEDBACK_CORRECT: True}) == 1
    (span,) = [s for s in spans if s["attrs"][conv.MODEL_NAME] == "feedback"]
    assert span["attrs"][conv.PREDICTION_CONFIDENCE] == 0.65
    # a user's confidence callable is not moved to an export thread
    assert report["threads"] and set(report["threads"]) == {report["main"]}
    callable_spans = [s for s in spans if s["attrs"][conv.MODEL_NAME] == "callable"]
    assert len(callable_spans) == 5 and all(s["attrs"][conv.PREDICTION_CONFIDENCE] == 0.8 for s in callable_spans)


SAMPLED_APP = r"""
import json, sys
import modelotel

modelotel.configure(service_name="sampled", exporter="file", path=sys.argv[1], export_interval=3600, traces="span")

pids = []

@modelotel.instrument_model(name="sampled", version="1")
def predict(x):
    pids.append(modelotel.current_prediction_id())
    return [0.3, 0.7]

for i in range(200):
    predict([float(i)])
matched = [modelotel.record_feedback(pid, label=1) for pid in pids[:20]]
modelotel.force_flush()
print(json.dumps({"matched": matched}))
modelotel.shutdown()
"""


def test_calls_a_sampler_leaves_unsampled_record_everything_but_the_span(tmp_path):
    """A ratio sampler: the unsampled calls (a non-recording span) still record their confidence and label and
    take feedback, and nothing fails inside modelotel; only the sampled calls export a span."""
    report, spans, metrics = run_app(
        tmp_path, SAMPLED_APP, OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0.5"
    )
    assert conv.INTERNAL_ERRORS not in metrics, metrics.get(conv.INTERNAL_ERRORS)
    assert _count(metrics[conv.PREDICTION_CONFIDENCE_METRIC], **{conv.MODEL_NAME: "sampled"}) == 200
    assert _count(metrics[conv.PREDICTIONS], **{conv.MODEL_NAME: "sampled", conv.PREDICTION_LABEL: "1"}) == 200
    assert 20 < len(spans) < 180  # about half: sampled by trace id
    assert all(s["attrs"][conv.PREDICTION_CONFIDENCE] == 0.7 for s in spans)
    assert report["matched"] == [True] * 20
