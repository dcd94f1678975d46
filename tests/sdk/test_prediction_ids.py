"""Self-describing prediction ids (feedback/ids.py) and feedback judged in another process than the prediction.

The exactness claim: feedback judged from the id in a labelling process produces the same ml.feedback counts and
ml.feedback.confidence sketches as the same feedback judged in the serving process itself.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelotel
import modelotel.config as config
import modelotel.conventions as conv
from modelotel.evaluator.sources import read
from modelotel.feedback import KEYRING, FeedbackRefused, IdProblem, Label, PredictionRecord, judge
from modelotel.feedback.ids import PREFIX, decode, encode

from conftest import total_count

KEY = "a-shared-feedback-key-0123456789"
OTHER_KEY = "another-deployment-key-987654321"
SDK = str(Path(modelotel.__file__).resolve().parents[1])


def _keys(secret: str | None, previous: str = "") -> None:
    env = {}
    if secret is not None:
        env[config.ENV_FEEDBACK_KEY] = secret
    if previous:
        env[config.ENV_FEEDBACK_PREVIOUS_KEYS] = previous
    KEYRING.reload(config.feedback_settings(env))


@pytest.fixture(autouse=True)
def _shared_key():
    _keys(KEY)
    yield
    KEYRING.reload()


# -- the format ----------------------------------------------------------------------------------------

labels = st.one_of(
    st.text(max_size=40),
    st.text(min_size=257, max_size=400),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
texts = st.text(min_size=1, max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attrs=st.dictionaries(texts, texts, max_size=5),
    items=st.lists(st.tuples(st.one_of(st.none(), labels), st.one_of(st.none(), st.floats(0, 1))), max_size=300),
    numbers=st.lists(st.floats(allow_nan=False), max_size=50),
    t=st.integers(0, 2**32 - 1),
    positive=st.one_of(st.none(), labels),
)
def test_an_id_says_exactly_what_was_encoded(attrs, items, numbers, t, positive):
    record = PredictionRecord(
        tuple(attrs.items()),
        t,
        os.urandom(8),
        None if positive is None else Label.of(positive, None),
        labels=() if numbers else tuple(None if v is None else Label.of(v, str(v)[:10]) for v, _ in items),
        confidences=() if numbers else tuple(c for _, c in items),
        numbers=tuple(numbers),
    )
    text = encode(record, KEYRING.key, KEYRING.key_id)
    assert text.startswith(PREFIX) and text.isascii()
    back = decode(text, KEYRING.accepted)
    assert back == PredictionRecord(**{**record.__dict__, "key_id": KEYRING.key_id})
    for (value, _), label in zip(items if not numbers else [], back.labels, strict=True):
        if value is not None:
            assert label.matches(value)  # the very truth it was made from is judged right, long texts included


def test_long_labels_travel_as_digests_and_judge_exactly():
    text = "x" * 10_000
    lab = Label.of(text, None)
    assert lab.tag == "d" and len(lab.text) == 64
    assert lab.matches(text) and not lab.matches(text[:-1] + "y") and not lab.matches(text + " ")
    assert Label.of(1, "1").matches(1.0) and Label.of(1, "1").matches("1") and not Label.of("1", "1").matches(2)


def _an_id(**kw) -> str:
    record = PredictionRecord(
        ((conv.MODEL_NAME, "fraud"), (conv.MODEL_VERSION, "1.4.0"), (conv.DEPLOYMENT_ROLE, "primary")),
        kw.get("t", int(time.time())),
        os.urandom(8),
        None,
        (Label.of("legit", "legit"),),
        (0.93,),
    )
    return encode(record, kw.get("key", KEYRING.key), kw.get("key_id", KEYRING.key_id))


def test_size_of_a_typical_id():
    # the figure in the ids.py docstring
    text = _an_id()
    assert len(base64.urlsafe_b64decode(text[4:] + "==")) == 84 and len(text) == 116


@settings(max_examples=60, deadline=None)
@given(position=st.integers(0, 70), bit=st.integers(0, 7))
def test_any_altered_byte_is_refused(position, bit):
    raw = bytearray(base64.urlsafe_b64decode(_an_id()[4:] + "=="))
    raw[position] ^= 1 << bit
    altered = PREFIX + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(IdProblem) as caught:
        decode(altered, KEYRING.accepted)
    assert caught.value.reason in (
        "feedback_id_forged",
        "feedback_id_malformed",
        "feedback_id_truncated",
        "feedback_id_unknown_key",  # a flipped key id names a key nobody holds
    )


def test_every_truncation_is_refused_as_truncated():
    text = _an_id()
    reasons = Counter()
    for n in range(len(PREFIX), len(text)):
        with pytest.raises(IdProblem) as caught:
            decode(text[:n], KEYRING.accepted)
        reasons[caught.value.reason] += 1
    # cut inside the signature is still "truncated"; the one exception is a cut at a base64 boundary that lands
    # exactly where a 1-byte-shorter structure would parse: never accepted either way
    assert set(reasons) <= {"feedback_id_truncated", "feedback_id_malformed"}, reasons
    assert reasons["feedback_id_truncated"] >= len(text) - len(PREFIX) - 3


def test_refusals_are_counted_per_reason_and_never_matched(memory_exporter):
    good = _an_id()
    raw = bytearray(base64.urlsafe_b64decode(good[4:] + "=="))
    raw[30] ^= 0x01  # inside the attributes: the signature no longer matches
    forged = PREFIX + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    _keys(OTHER_KEY)
    other = _an_id()
    _keys(KEY)
    cases = {
        forged: "feedback_id_forged",
        good[:60]: "feedback_id_truncated",
        "abc": "feedback_id_foreign",
        "0123456789abcdef0123456789abcdef": "feedback_unmatched",
        other: "feedback_id_unknown_key",
        _an_id(t=int(time.time()) - 91 * 86400): "feedback_id_expired",
        _an_id(t=int(time.time()) + 3600): "feedback_id_future",
        PREFIX + "!!!!": "feedback_id_malformed",
    }
    for pid, reason in cases.items():
        with pytest.raises(FeedbackRefused) as caught:
            judge(pid, label="legit")
        assert caught.value.reason == reason, (pid, str(caught.value))
        assert not modelotel.record_feedback(pid, label="legit")
    assert modelotel.record_feedback(good, label="legit")
    assert not modelotel.record_feedback(good, label="legit")  # the same id again: counted once
    modelotel.force_flush()
    dropped = memory_exporter.last_points(conv.DROPPED)
    for reason in set(cases.values()):
        assert total_count(dropped, **{conv.DROP_REASON: reason}) == 2 * list(cases.values()).count(reason), reason
    assert total_count(dropped, **{conv.DROP_REASON: "feedback_duplicate"}) == 1
    fb = memory_exporter.last_points(conv.FEEDBACK)
    assert total_count(fb, **{conv.MODEL_NAME: "fraud"}) == 1  # only the good one, once


def test_a_previous_key_still_judges_after_rotation(memory_exporter):
    _keys(OTHER_KEY)
    old = _an_id()
    _keys(KEY, previous=OTHER_KEY)
    assert judge(old, label="legit") == 1
    _keys(KEY)
    with pytest.raises(FeedbackRefused) as caught:
        judge(_an_id(key=KEYRING.key, key_id=b"\0\0\0\0"), label="legit")
    assert caught.value.reason == "feedback_id_unknown_key"


def test_a_key_too_short_is_a_config_error():
    with pytest.raises(config.ConfigError, match="16 characters"):
        config.feedback_settings({config.ENV_FEEDBACK_KEY: "short"})


# -- last_prediction_id ----------------------------------------------------------------------------------


def test_last_prediction_id_describes_the_last_call_of_this_thread(memory_exporter):
    @modelotel.instrument_model(name="churn", version="2", labels=["stay", "leave"])
    def predict(p):
        if p < 0:
            raise ValueError("bad input")
        return np.array([1 - p, p])

    assert modelotel.last_prediction_id() is None or True  # other tests may have run calls in this thread
    predict(0.8)
    pid = modelotel.last_prediction_id()
    assert pid == modelotel.last_prediction_id()  # asked twice: the same id
    record = decode(pid, KEYRING.accepted)
    assert dict(record.attributes)[conv.MODEL_NAME] == "churn"
    assert [lab.text for lab in record.labels] == ["leave"] and record.confidences == (0.8,)
    assert abs(record.time_s - time.time()) < 5
    with pytest.raises(ValueError):
        predict(-1)
    assert modelotel.last_prediction_id() is None  # the last call raised: no id for it
    predict(0.3)
    other = modelotel.last_prediction_id()
    assert other != pid and [lab.text for lab in decode(other, KEYRING.accepted).labels] == ["stay"]

    seen = {}

    def in_thread():
        seen["id"] = modelotel.last_prediction_id()

    import threading

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert seen["id"] is None  # another thread made no call


def test_a_regression_id_judges_abs_and_squared_error(memory_exporter):
    @modelotel.instrument_model(name="price")
    def predict(x):
        return np.array([x * 2.0, x * 3.0])

    predict(10.0)
    pid = modelotel.last_prediction_id()
    assert decode(pid, KEYRING.accepted).numbers == (20.0, 30.0)
    assert modelotel.record_feedback(pid, label=[23.0, 26.0])
    modelotel.force_flush()
    abs_err = memory_exporter.last_points(conv.FEEDBACK_ABS_ERROR)
    sq = memory_exporter.last_points(conv.FEEDBACK_SQUARED_ERROR)
    assert sum(p.count for p in abs_err) == 2 and sum(p.sum for p in abs_err) == 7.0
    assert sum(p.sum for p in sq) == 9.0 + 16.0
    fb = memory_exporter.last_points(conv.FEEDBACK)
    assert total_count(fb, **{conv.MODEL_NAME: "price"}) == 2
    assert all(conv.FEEDBACK_CORRECT not in p.attributes for p in fb if p.attributes[conv.MODEL_NAME] == "price")


# -- another process ---------------------------------------------------------------------------------------

SERVE = """
import json, sys, numpy as np, modelotel
modelotel.configure(service_name="serving", path=sys.argv[1], export_interval=3600)
rng = np.random.default_rng(7)

@modelotel.instrument_model(name="fraud", version="3", labels=["legit", "fraud"])
def predict(p):
    in_call.append(modelotel.current_prediction_id())
    return np.column_stack([1 - p, p]) if p.ndim else np.array([1 - p, p])

rows = []
for i in range(400):
    in_call = []
    batch = rng.random(3) if i % 10 == 0 else np.float64(rng.random())
    predict(batch)
    n = 3 if i % 10 == 0 else 1
    truth = [["legit", "fraud"][int(rng.random() < 0.4)] for _ in range(n)]
    group = ["north", "south"][i % 2]
    rows.append({"remote": modelotel.last_prediction_id(), "local": in_call[0], "truth": truth, "group": group})
for row in rows:  # judged here, from the in-process ids
    assert modelotel.record_feedback(row["local"], label=row["truth"], group=row["group"], positive_label="fraud")
modelotel.shutdown()
json.dump([{k: r[k] for k in ("remote", "truth", "group")} for r in rows], open(sys.argv[2], "w"))
"""

LABEL = """
import json, sys, modelotel
modelotel.configure(service_name="labeller", path=sys.argv[1], export_interval=3600)
for row in json.load(open(sys.argv[2])):
    assert modelotel.record_feedback(row["remote"], label=row["truth"], group=row["group"], positive_label="fraud")
modelotel.shutdown()
"""


def _run(code: str, *args: str, env: dict[str, str]) -> None:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env={**os.environ, "PYTHONPATH": SDK, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]


def _feedback(path: Path) -> tuple[Counter, dict]:
    """ml.feedback totals by attributes (without the time bucket) and ml.feedback.confidence bucket counts."""
    deltas, _ = read(str(path), {conv.FEEDBACK, conv.FEEDBACK_CONFIDENCE})
    counts: Counter = Counter()
    sketches: dict = {}
    for d in deltas:
        attrs = {
            k: v
            for k, v in d.attributes.items()
            if k.startswith(("ml.", "ml_")) and k != conv.PREDICTION_TIME_BUCKET_END
        }
        key = tuple(sorted(attrs.items()))
        if d.metric == conv.FEEDBACK:
            counts[key] += d.value
        else:
            merged = sketches.setdefault(key, modelotel.LogSketch(d.sketch.scale))
            merged.merge(d.sketch)
    return counts, {k: (s.count, s.sum, s.to_otlp_point({}, 0, 1).positive.bucket_counts) for k, s in sketches.items()}


def test_feedback_judged_in_another_process_equals_the_in_process_judgement(tmp_path):
    env = {config.ENV_FEEDBACK_KEY: KEY}
    served, ids = tmp_path / "served.jsonl", tmp_path / "ids.json"
    labelled = tmp_path / "labelled.jsonl"
    _run(SERVE, str(served), str(ids), env=env)
    _run(LABEL, str(labelled), str(ids), env=env)
    local_counts, local_conf = _feedback(served)
    remote_counts, remote_conf = _feedback(labelled)
    assert sum(local_counts.values()) == 400 - 40 + 40 * 3  # every item of every call
    assert remote_counts == local_counts  # correctness, groups, positive flags, predicted and true labels
    assert remote_conf == local_conf  # calibration: the same confidences, bucket by bucket
    rows = json.loads(ids.read_text())
    wrong = sum(1 for k, v in local_counts.items() if (conv.FEEDBACK_CORRECT, False) in k for _ in range(int(v)))
    assert 0 < wrong < 520
    assert all(len(r["remote"]) < 400 for r in rows)


def test_without_a_shared_key_another_process_cannot_judge(tmp_path):
    served, ids, labelled = tmp_path / "s.jsonl", tmp_path / "ids.json", tmp_path / "l.jsonl"
    _run(SERVE, str(served), str(ids), env={config.ENV_FEEDBACK_KEY: ""})
    code = LABEL.replace("assert modelotel.record_feedback", "modelotel.record_feedback")
    _run(code, str(labelled), str(ids), env={config.ENV_FEEDBACK_KEY: ""})
    deltas, _ = read(str(labelled), {conv.DROPPED, conv.FEEDBACK})
    got = Counter()
    for d in deltas:
        got[(d.metric, d.attributes.get(conv.DROP_REASON))] += d.value
    # without a key calls keep their output only once last_prediction_id() was first asked: the first call's id
    # is None (a "foreign" id), the 399 others are signed with the serving process's own random key
    rows = json.loads(ids.read_text())
    assert rows[0]["remote"] is None and all(r["remote"] for r in rows[1:])
    assert got[(conv.DROPPED, "feedback_id_unknown_key")] == 399
    assert got[(conv.DROPPED, "feedback_id_foreign")] == 1
    assert got[(conv.FEEDBACK, None)] == 0


def test_feedback_counts_in_the_prediction_time_bucket_and_idle_series_expire(memory_exporter):
    """A label three days late lands in the bucket of its prediction; once nothing adds to that bucket its series is
    exported IDLE_EXPORTS more times and forgotten (memory bounded whatever the delay), and a later label for the
    same bucket starts it again with a later start time (a reset readers handle)."""
    from modelotel.metrics.recorder import IDLE_EXPORTS

    t = int(time.time()) - 3 * 86400
    bucket = (t // 3600 + 1) * 3600  # judged over a day late: an hour bucket
    assert modelotel.record_feedback(_an_id(t=t), label="legit")

    def series():
        modelotel.force_flush()
        batch = memory_exporter.batches[-1] if memory_exporter.batches else None
        from modelotel.metrics.recorder import iter_points

        return [p for n, p in iter_points(batch) if n == conv.FEEDBACK and p.attributes[conv.MODEL_NAME] == "fraud"]

    first = series()
    assert [p.attributes[conv.PREDICTION_TIME_BUCKET_END] for p in first] == [bucket] and first[0].value == 1
    for _ in range(IDLE_EXPORTS):
        assert [p.value for p in series()] == [1]  # still exported while idle
    assert series() == []  # forgotten
    assert modelotel.record_feedback(_an_id(t=t + 1), label="fraud")  # same bucket, later
    again = series()
    assert [(p.value, p.attributes[conv.FEEDBACK_CORRECT]) for p in again] == [(1, False)]
    assert again[0].start_time_unix_nano > first[0].start_time_unix_nano
    delay = memory_exporter.last_points(conv.FEEDBACK_DELAY)
    assert sum(p.count for p in delay) == 2 and min(p.min for p in delay) >= 3 * 86400 - 5


def test_a_new_feedback_series_is_exported_at_zero_first_by_periodic_exports():
    """Prometheus' rate()/increase() ignore a series' first sample: a per-bucket feedback series whose first sample
    held its whole count would read as no feedback there. A periodic export shows a new one at zero, the next its
    value; a flush (or the last export) shows everything at once."""
    from opentelemetry.sdk.resources import Resource

    from modelotel.metrics.recorder import Recorder, iter_points

    def values(data):
        return [(n, getattr(p, "value", None) or getattr(p, "count", 0)) for n, p in iter_points(data)]

    attrs = {conv.MODEL_NAME: "m", conv.PREDICTION_TIME_BUCKET_END: 60}
    plain = {conv.MODEL_NAME: "m"}
    rec = Recorder()
    rec.add(conv.FEEDBACK, tuple(sorted(attrs.items())), attrs, 5)
    rec.add(conv.PREDICTIONS, tuple(sorted(plain.items())), plain, 7)
    rec.observe(conv.FEEDBACK_CONFIDENCE, tuple(sorted(attrs.items())), attrs, np.array([0.5, 0.7]))
    first = values(rec.collect(Resource.create({}), hold=True))
    assert sorted(first) == [(conv.FEEDBACK, 0), (conv.FEEDBACK_CONFIDENCE, 0), (conv.PREDICTIONS, 7)]
    rec.add(conv.FEEDBACK, tuple(sorted(attrs.items())), attrs, 1)
    second = values(rec.collect(Resource.create({}), hold=True))
    assert sorted(second) == [(conv.FEEDBACK, 6), (conv.FEEDBACK_CONFIDENCE, 2), (conv.PREDICTIONS, 7)]

    flushed = Recorder()
    flushed.add(conv.FEEDBACK, tuple(sorted(attrs.items())), attrs, 5)
    assert values(flushed.collect(Resource.create({}))) == [(conv.FEEDBACK, 5)]


def test_calls_keep_their_output_only_once_ids_are_wanted(tmp_path):
    """The store behind last_prediction_id() costs ~100 ns a call (benchmarks/RESULTS.md): without a feedback key
    and before the first last_prediction_id(), calls skip it; a configured key arms it at decoration."""
    code = """
import json, sys, modelotel
from modelotel.instrument.decorations import LAST_CALLS
modelotel.configure(exporter="none")

@modelotel.instrument_model(name="m")
def predict(x):
    return [0.2, 0.8]

predict(1)
before = dict(armed=LAST_CALLS.armed, kept=len(LAST_CALLS))
first = modelotel.last_prediction_id()
predict(1)
print(json.dumps({**before, "first": first, "then": bool(modelotel.last_prediction_id())}))
"""
    for key, want in (("", {"armed": False, "kept": 0, "first": None, "then": True}), (KEY, None)):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONPATH": SDK, config.ENV_FEEDBACK_KEY: key},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout.strip().splitlines()[-1])
        if want is not None:
            assert got == want
        else:
            assert got["armed"] and got["kept"] == 1 and got["first"] and got["then"]


def test_too_many_buckets_at_once_keep_the_counts_and_say_so():
    """A back-fill touching more prediction-time buckets than the (tenfold) cap: the values past it keep the
    model's series without the bucket and are counted in modelotel.dropped{feedback_time_bucket_overflow}."""
    from opentelemetry.sdk.resources import Resource

    from modelotel.metrics.recorder import BUCKETED_SERIES_FACTOR, Recorder, iter_points
    from modelotel.metrics.selftelemetry import SELF

    rec = Recorder(max_series=2)
    cap = 2 * BUCKETED_SERIES_FACTOR
    SELF.take()
    for b in range(cap + 5):
        attrs = {conv.MODEL_NAME: "m", conv.PREDICTION_TIME_BUCKET_END: 60 * (b + 1)}
        rec.add(conv.FEEDBACK, tuple(sorted(attrs.items())), attrs, 3)
    _, drops = SELF.take()
    assert drops == {"feedback_time_bucket_overflow": 5 * 3}
    points = [p for n, p in iter_points(rec.collect(Resource.create({}))) if n == conv.FEEDBACK]
    bucketed = [p for p in points if conv.PREDICTION_TIME_BUCKET_END in p.attributes]
    plain = [p for p in points if conv.PREDICTION_TIME_BUCKET_END not in p.attributes]
    assert len(bucketed) == cap and [(p.attributes, p.value) for p in plain] == [({conv.MODEL_NAME: "m"}, 15)]
    assert sum(p.value for p in points) == 3 * (cap + 5)  # nothing lost


def test_a_bad_key_refuses_every_feedback_with_the_reason(tmp_path):
    code = """
import json, modelotel
modelotel.configure(exporter="none")
print(json.dumps(modelotel.record_feedback("mo1.AAAA", label="x")))
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": SDK, config.ENV_FEEDBACK_KEY: "short"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("false"), out.stderr
    assert "feedback_key_invalid" in out.stderr and "16 characters" in out.stderr
