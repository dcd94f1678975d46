"""Prediction labels and url.path on a real server (uvicorn + FastAPI, werkzeug + Flask) exporting to a file.

The app (tests/apps/pii_app.py) runs in its own process with modelotel's own TracerProvider, so metrics
and spans both land in the OTLP-JSON file, which is read back whole: no PII may be in it, free text
becomes no label (counted), declared and class-shaped labels stay, opted-in text is scrubbed and capped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest

import modelotel
from modelotel import conventions as conv
from modelotel.labels import MAX_LABEL_CHARS, WITHHELD_REASON, LabelPolicy
from modelotel.metrics.recorder import iter_points
from modelotel.privacy import TRUNCATION_MARKER

from collector_support import stop_process, wait_for
from conftest import MemoryMetricExporter

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
ROOT = os.path.dirname(HERE)

# Everything personal the app's models, paths and exceptions contain.
SECRETS = [
    "jane.roe@example.com",
    "4111 1111 1111 1111",
    "4111111111111111",
    "Johnathan",
    "Smithers",
    "1428 Elm",
    "zed@example.org",
    "5555555555554444",
    "123456789",
    "a1B2c3D4e5F6g7H8i9J0",
    "ghp_R2d2C3poX9yZ8wV7uT6sR5qP4oN3mL2kJ1iH",
    "q9Zx7Yv5Wu3Ts1Rq8Po6Nm4Lk2Jh0GfEdCbA",
    "hunter2secret",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _attrs(items: list[dict]) -> dict:
    return {a["key"]: next(iter(a["value"].values())) for a in items}


@pytest.fixture(scope="module", params=["fastapi", "flask"])
def exported(request, tmp_path_factory):
    """Run the app, make every request, flush; (raw file text, metric points, spans)."""
    framework = request.param
    out = tmp_path_factory.mktemp(framework) / "telemetry.jsonl"
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "sdk"), os.environ.get("PYTHONPATH", "")]))
    env.pop("MODELOTEL_EXPORT_FILE", None)
    app = os.path.join(HERE, "apps", "pii_app.py")
    proc = subprocess.Popen([sys.executable, app, framework, str(port), str(out)], env=env)
    try:

        def accepting():
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
            assert proc.poll() is None, "the app exited"
            return False

        wait_for(accepting, timeout=60, what=f"{framework} app")
        # a fresh connection per request: the server closes the one a 500 went out on
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers={"Connection": "close"}) as client:
            for kind in ("summary", "answer", "batch", "declared", "sentiment", "sklearn", "opted", "callable"):
                for _ in range(2):
                    assert client.get(f"/predict/{kind}").status_code == 200, kind
            assert client.get("/users/ghp_R2d2C3poX9yZ8wV7uT6sR5qP4oN3mL2kJ1iH/orders").status_code == 200
            assert client.get("/users/q9Zx7Yv5Wu3Ts1Rq8Po6Nm4Lk2Jh0GfEdCbA/orders").status_code == 200
            assert client.get("/users/jane.roe@example.com/orders?api_key=hunter2secret").status_code == 200
            assert client.get("/fail/card_4111111111111111").status_code == 500
            assert client.get("/flush").json() == {"flushed": True}
    finally:
        stop_process(proc, signal.SIGINT, timeout=20)
    text = out.read_text()
    points: list[tuple[str, dict, dict]] = []
    spans: list[dict] = []
    for line in text.splitlines():
        obj = json.loads(line)
        for rm in obj.get("resourceMetrics", []):
            for sm in rm["scopeMetrics"]:
                for metric in sm["metrics"]:
                    data = next(v for k, v in metric.items() if isinstance(v, dict) and "dataPoints" in v)
                    for p in data["dataPoints"]:
                        points.append((metric["name"], _attrs(p.get("attributes", [])), p))
        for rs in obj.get("resourceSpans", []):
            for ss in rs["scopeSpans"]:
                spans.extend(ss["spans"])
    return text, points, spans


def _labels(points, model: str) -> Counter:
    """Last cumulative ml.predictions count per label (None: no label attribute) of one model."""
    last: dict = {}
    for name, attrs, p in points:
        if name == conv.PREDICTIONS and attrs.get(conv.MODEL_NAME) == model:
            last[attrs.get(conv.PREDICTION_LABEL)] = int(p["asInt"])
    return Counter(last)


def _span_labels(spans, model: str) -> list:
    return [_attrs(s["attributes"]).get(conv.PREDICTION_LABEL) for s in spans if s["name"] == f"predict {model}"]


def test_no_pii_anywhere_in_the_exported_file(exported):
    text, _, spans = exported
    for secret in SECRETS:
        assert secret not in text, secret
    assert len(text) < 1 << 20  # the 5 MB output is not in it, not even once
    assert "Refused" in text and "<card>" in text  # the failure was recorded, scrubbed


def test_free_text_outputs_are_predictions_without_a_label(exported):
    _, points, spans = exported
    for model, items in (("summary", 2), ("answer", 2), ("batch", 4), ("callable", 2)):
        assert _labels(points, model) == Counter({None: items}), model
        assert _span_labels(spans, model) == [None, None], model
    dropped = {attrs[conv.DROP_REASON]: int(p["asInt"]) for name, attrs, p in points if name == conv.DROPPED}
    assert dropped[WITHHELD_REASON] == 2 + 2 + 4 + 2


def test_declared_discovered_and_class_shaped_labels_are_exported(exported):
    _, points, spans = exported
    assert _labels(points, "declared") == Counter({"spam": 2})
    assert _labels(points, "sentiment") == Counter({"POSITIVE": 2})
    assert _labels(points, "sklearn") == Counter({"dog": 2})  # clf.classes_ of the wrapped estimator
    assert _span_labels(spans, "declared") == ["spam", "spam"]
    assert _span_labels(spans, "sentiment") == ["POSITIVE", "POSITIVE"]
    assert _span_labels(spans, "sklearn") == ["dog", "dog"]


def test_opted_in_free_text_is_scrubbed_and_capped(exported):
    _, points, spans = exported
    (label,) = _labels(points, "opted")
    assert label.startswith("contact <email> card <card> zzz") and label.endswith(TRUNCATION_MARKER)
    assert len(label) == MAX_LABEL_CHARS
    assert _span_labels(spans, "opted") == [label, label]


def test_url_path_and_exception_messages_are_scrubbed(exported):
    _, _, spans = exported
    paths = sorted(_attrs(s["attributes"]).get("url.path") for s in spans if s["kind"] in (2, "SPAN_KIND_SERVER"))
    assert "/users/<secret>/orders" in paths and "/users/<email>/orders" in paths
    assert "/fail/card_<card>" in paths
    assert all("?" not in (p or "") for p in paths)  # the query string is never recorded
    (failed,) = [s for s in spans if any(e["name"] == "exception" for e in s.get("events", []))]
    (event,) = failed["events"]
    message = _attrs(event["attributes"])["exception.message"]
    assert message == "refused card_<card> for card_<card>, ssn <ssn>, Bearer <secret>"


# -- the rule itself, in-process (labels.LabelPolicy) ----------------------------------------------


def test_label_policy_rules():
    policy = LabelPolicy(["spam", 7])
    shown, withheld = policy.exported(["spam", "7", 3, True, 2.5, None, "eggs", "x" * 10], False)
    assert shown == ["spam", "7", "3", "True", "2.5", None, None, None] and withheld == 2
    # class-shaped strings only with their own probability
    shown, withheld = policy.exported(["POSITIVE", "1 star", "LABEL_0", "a b c d", "no, thanks", "é"], True)
    assert shown == ["POSITIVE", "1 star", "LABEL_0", None, None, None] and withheld == 3
    # declared labels are scrubbed too; numbers that are card numbers as well
    shown, _ = LabelPolicy(["mail ann@example.com"]).exported(["mail ann@example.com", 4111111111111111], False)
    assert shown == ["mail <email>", "<card>"]
    opted, _ = LabelPolicy(free_text=True).exported(["x" * 1000, "short"], False)
    assert opted == ["x" * (MAX_LABEL_CHARS - len(TRUNCATION_MARKER)) + TRUNCATION_MARKER, "short"]


def test_label_policy_never_raises_on_hostile_labels():
    class Hostile:
        def __str__(self):
            raise RuntimeError("hostile")

        __hash__ = None

    shown, withheld = LabelPolicy(free_text=True).exported([Hostile(), [1, 2], "ok"], False)
    assert shown == [None, "[1, 2]", "ok"] and withheld == 1


def test_estimator_classes_are_found_once_it_is_fitted():
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression()
    policy = LabelPolicy(owner=clf.predict)  # not fitted yet: no classes_
    assert policy.exported(["dog"], False) == ([None], 1)
    clf.fit(np.array([[0.0], [1.0]]), np.array(["cat", "dog"]))
    time.sleep(1.1)  # looked up again at most once a second
    assert policy.exported(["dog", "cow"], False) == (["dog", None], 1)


# -- every other text attribute a user chooses: scrubbed too (in-process, a real memory exporter) ----------


def test_categories_groups_and_raw_features_are_scrubbed(spans):
    exporter = MemoryMetricExporter()
    modelotel.configure(service_name="scrub-attrs", exporter=exporter, export_interval=3600, traces="span")
    try:

        @modelotel.instrument_model(
            name="attrs", labels=["no", "yes"], categorical_features=["contact"], raw_features=["note"]
        )
        def predict(row):
            return {"probabilities": [0.2, 0.8], "labels": ["no", "yes"]}

        for contact in ("ann@example.com", "north", "x" * 60 + " 4111 1111 1111 1111"):
            predict({"contact": contact, "note": "call me at jane.roe@example.com"})

        @modelotel.instrument_model(name="fb", labels=["no", "yes"])
        def judged(row):
            ids.append(modelotel.current_prediction_id())
            return [0.2, 0.8]

        ids: list[str] = []
        judged([1.0])
        assert modelotel.record_feedback(ids[0], label="yes", group="bob@example.com")
        modelotel.force_flush()
    finally:
        modelotel.shutdown()
    texts = []
    for batch in exporter.batches:
        for _, point in iter_points(batch):
            texts += [str(v) for v in point.attributes.values()]
    texts += [str(v) for s in spans.get_finished_spans() for v in s.attributes.values()]
    joined = "\n".join(texts)
    for secret in ("ann@example.com", "4111 1111", "jane.roe@example.com", "bob@example.com"):
        assert secret not in joined, secret
    assert "<email>" in texts and "north" in texts  # categories and the group: scrubbed, not dropped
    assert "call me at <email>" in texts  # the allow-listed raw feature, scrubbed
    assert any(t.startswith("x" * 60) and len(t) <= 64 for t in texts)


def test_withheld_label_is_logged_once_per_model_with_how_to_opt_in(memory_exporter, caplog):
    @modelotel.instrument_model(name="summarizer-log")
    def summarize(text):
        return f"summary of {text}: write to ann@example.com"

    with caplog.at_level("WARNING", logger="modelotel"):
        for i in range(3):
            summarize(f"doc {i}")
    lines = [r.getMessage() for r in caplog.records if "summarizer-log" in r.getMessage()]
    assert len(lines) == 1 and "labels=[...]" in lines[0] and "free_text_labels=True" in lines[0]
    assert "ann@example.com" not in lines[0]
    modelotel.force_flush()
    preds = memory_exporter.last_points(conv.PREDICTIONS)
    mine = [p for p in preds if p.attributes.get(conv.MODEL_NAME) == "summarizer-log"]
    assert [(conv.PREDICTION_LABEL in p.attributes, p.value) for p in mine] == [(False, 3)]
    dropped = memory_exporter.last_points(conv.DROPPED)
    assert sum(p.value for p in dropped if p.attributes[conv.DROP_REASON] == WITHHELD_REASON) >= 3
