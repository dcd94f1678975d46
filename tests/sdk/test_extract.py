"""extract(): every supported output shape, logits, and hostile or malformed outputs (never raises)."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelotel.extract import SUM_TOLERANCE, Extraction, energy, extract, softmax


def ex(confidences, labels=None, batch=False):
    return Extraction(confidences, labels, batch)


def snapshot(obj):
    """A deep, comparable picture of ``obj`` (pickle survives NaN, arrays and nesting)."""
    return pickle.dumps(obj, protocol=5)


def extract_unchanged(output, **kwargs):
    """extract(output) while checking that ``output`` is neither replaced nor modified."""
    before = snapshot(output)
    ident = id(output)
    result = extract(output, **kwargs)
    assert id(output) == ident and snapshot(output) == before
    return result


# -- numpy ---------------------------------------------------------------------------------------


def test_probability_vector():
    assert extract_unchanged(np.array([0.1, 0.7, 0.2])) == ex([0.7], [1])
    r = extract_unchanged(np.array([0.25, 0.75], dtype=np.float32))
    assert r.confidences == [pytest.approx(0.75)] and r.labels == [1] and not r.batch


def test_large_probability_vector_vectorised():
    p = np.full(1000, 0.0005)
    p[123] = 0.5005
    r = extract_unchanged(p)
    assert r.labels == [123] and r.confidences == [pytest.approx(0.5005)] and not r.batch


def test_probability_rows_are_a_batch():
    rows = np.array([[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]])
    assert extract_unchanged(rows) == ex([0.9, 0.8, 0.5], [1, 0, 0], True)


def test_large_probability_batch_vectorised():
    rng = np.random.default_rng(0)
    rows = rng.dirichlet(np.ones(5), size=2000)
    r = extract_unchanged(rows)
    assert r.batch and r.labels == rows.argmax(axis=1).tolist()
    np.testing.assert_allclose(r.confidences, rows.max(axis=1))


def test_sklearn_predict_proba_on_iris():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    proba = model.predict_proba(x)
    r = extract_unchanged(proba)
    assert r.batch and len(r.confidences) == len(x)
    assert r.labels == model.predict(x).tolist()  # classes are 0, 1, 2: argmax index == class
    np.testing.assert_allclose(r.confidences, proba.max(axis=1))
    one = extract_unchanged(model.predict_proba(x[:1]))  # (1, 3): one-row batch
    assert one.batch and one.labels == [0] and one.confidences == [pytest.approx(proba[0].max())]


@pytest.mark.parametrize(
    ("p", "conf", "label"),
    [(0.8, 0.8, 1), (0.2, 0.8, 0), (0.5, 0.5, 1), (0.0, 1.0, 0), (1.0, 1.0, 1)],
)
def test_single_column_is_binary_positive_probability(p, conf, label):
    assert extract_unchanged(np.array([p])) == ex([pytest.approx(conf)], [label])
    assert extract_unchanged([p]) == ex([pytest.approx(conf)], [label])
    assert extract_unchanged(np.array([[p], [1 - p]])).labels == [label, 1 - label if p != 0.5 else 1]


def test_large_single_column_batch():
    p = np.linspace(0, 1, 101).reshape(-1, 1)
    r = extract_unchanged(p)
    assert r.batch and len(r.labels) == 101
    assert r.labels[:50] == [0] * 50 and r.labels[50:] == [1] * 51
    np.testing.assert_allclose(r.confidences, np.maximum(p[:, 0], 1 - p[:, 0]))


def test_sum_tolerance_is_shared_by_fast_and_general_paths():
    assert SUM_TOLERANCE == 1e-3  # the fast path inlines this constant
    near = [0.5, 0.5 + 0.9e-3]
    far = [0.5, 0.5 + 1.1e-3]
    makers = (
        np.array,  # fast path
        lambda v: np.array(v, dtype=np.float32),
        list,
        lambda v: np.array([v]),  # one-row batch
        lambda v: np.array(v + [0.0] * 100),  # vectorised path
        lambda v: np.array([v + [0.0] * 100] * 2),
    )
    for make in makers:
        assert extract(make(near)) is not None
        assert extract(make(far)) is None


def test_logits_refused_unless_softmax():
    logits = np.array([2.0, 1.0, 0.1])
    assert extract_unchanged(logits) is None
    r = extract_unchanged(logits, softmax=True)
    expected = np.exp(logits) / np.exp(logits).sum()
    assert r.labels == [0] and r.confidences == [pytest.approx(expected.max())]


def test_softmax_option_on_batches_lists_and_binary_logits():
    rng = np.random.default_rng(1)
    for n in (2, 500):  # small (Python) and large (numpy) paths
        logits = rng.normal(size=(n, 4)) * 10
        r = extract_unchanged(logits, softmax=True)
        probs = softmax(logits)
        assert r.labels == probs.argmax(axis=1).tolist()
        np.testing.assert_allclose(r.confidences, probs.max(axis=1), rtol=1e-12)
    assert extract_unchanged([[3.0, -1.0]], softmax=True).labels == [0]
    r = extract_unchanged(np.array([[3.0], [-3.0]]), softmax=True)  # one logit: the sigmoid
    assert r.labels == [1, 0] and r.confidences == [pytest.approx(1 / (1 + math.exp(-3)))] * 2
    big = extract_unchanged(np.array([[1000.0], [-1000.0]] * 40), softmax=True)
    assert big.labels == [1, 0] * 40 and big.confidences == [1.0] * 80


def test_softmax_and_energy_are_stable():
    huge = np.array([1000.0, 999.0, -1000.0])
    p = softmax(huge)
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0)
    assert extract(huge, softmax=True).confidences == [pytest.approx(p.max())]
    e = energy(huge)
    assert math.isfinite(e) and e == pytest.approx(-(1000 + math.log(1 + math.exp(-1))))
    batch = energy(np.array([[0.0, 0.0], [1000.0, 1000.0]]), T=2.0)
    np.testing.assert_allclose(batch, [-2 * math.log(2), -(1000 + 2 * math.log(2))])
    assert energy([1.0, 2.0], T=0) is None and energy("x") is None and softmax(None) is None


def test_string_arrays_are_labels_numbers_are_not():
    assert extract_unchanged(np.array(["cat", "dog"])) == ex([], ["cat", "dog"], True)
    assert extract_unchanged(np.array([0, 2, 1])) is None  # predict() of ints: labels or counts?
    assert extract_unchanged(np.array([True, False])) is None
    assert extract_unchanged(np.array([0.5, 1.5, 3.0])) is None  # regression outputs


# -- Python values and dicts ---------------------------------------------------------------------


def test_lists_and_tuples():
    assert extract_unchanged([0.2, 0.8]) == ex([0.8], [1])
    assert extract_unchanged((0.6, 0.4)) == ex([0.6], [0])
    assert extract_unchanged([[0.2, 0.8], [0.9, 0.1]]) == ex([0.8, 0.9], [1, 0], True)
    assert extract_unchanged([np.float32(0.25), np.float32(0.75)]) == ex([0.75], [1])
    assert extract_unchanged(["cat", "dog"]) == ex([], ["cat", "dog"], True)
    assert extract_unchanged([[0.2, 0.8], [1.5, -0.5]]) is None  # one row of logits: not probabilities
    assert len(extract_unchanged([[0.2, 0.8]] * 5000).labels) == 5000
    assert extract_unchanged([np.array([0.2, 0.8]), np.array([0.6, 0.4])]) == ex([0.8, 0.6], [1, 0], True)


def test_record_dicts():
    assert extract_unchanged({"label": "cat", "score": 0.9}) == ex([0.9], ["cat"])
    assert extract_unchanged({"class": 3, "confidence": 0.6}) == ex([0.6], [3])
    assert extract_unchanged({"prediction": "spam", "probability": np.float32(0.5)}) == ex([0.5], ["spam"])
    assert extract_unchanged({"prediction": np.int64(2), "prob": 1}) == ex([1.0], [2])
    assert extract_unchanged({"label": "cat"}) == ex([], ["cat"])
    assert extract_unchanged({"score": 0.3}) == ex([0.3])
    assert extract_unchanged({"label": "cat", "score": 3.7}) == ex([], ["cat"])  # a logit is no confidence


def test_wrapper_dicts():
    assert extract_unchanged({"probabilities": [0.1, 0.9]}) == ex([0.9], [1])
    assert extract_unchanged({"probs": np.array([[0.3, 0.7], [0.6, 0.4]])}) == ex([0.7, 0.6], [1, 0], True)
    assert extract_unchanged({"scores": (0.2, 0.8)}) == ex([0.8], [1])
    assert extract_unchanged({"predictions": [[0.1, 0.9]]}) == ex([0.9], [1], True)  # KServe v1
    zero_shot = {"sequence": "s", "labels": ["travel", "cooking"], "scores": [0.9, 0.1]}  # HF zero-shot
    assert extract_unchanged(zero_shot) == ex([0.9], ["travel"])
    assert extract_unchanged({"label": "cat", "probabilities": [0.2, 0.8]}) == ex([0.8], ["cat"])
    assert extract_unchanged({"logits": [2.0, 0.0]}) is None
    assert extract_unchanged({"logits": [2.0, 0.0]}, softmax=True).labels == [0]


def test_hugging_face_pipeline_lists():
    single = [{"label": "POSITIVE", "score": 0.998}]
    assert extract_unchanged(single) == ex([0.998], ["POSITIVE"], True)
    batch = [{"label": "POSITIVE", "score": 0.9}, {"label": "NEGATIVE", "score": 0.7}]
    assert extract_unchanged(batch) == ex([0.9, 0.7], ["POSITIVE", "NEGATIVE"], True)
    topk = [
        [{"label": "a", "score": 0.2}, {"label": "b", "score": 0.8}],
        [{"label": "a", "score": 0.6}, {"label": "b", "score": 0.4}],
    ]
    assert extract_unchanged(topk) == ex([0.8, 0.6], ["b", "a"], True)


def test_scalars_and_strings():
    for value in (0.5, 3, True, np.float64(0.5), np.float32(0.5), np.int64(1), None):
        assert extract_unchanged(value) is None
    assert extract_unchanged("cat") == ex([], ["cat"])
    assert extract_unchanged(np.str_("dog")) == ex([], ["dog"])


def test_non_finite_confidences_are_dropped():
    assert extract_unchanged({"label": "cat", "score": float("nan")}) == ex([], ["cat"])
    assert extract_unchanged({"label": "cat", "score": float("inf")}) == ex([], ["cat"])
    rows = [[0.2, 0.8], [float("nan"), 1.0], [1.0, 0.0]]
    assert extract_unchanged(rows) == ex([0.8, 1.0], [1, 0], True)  # the NaN item is dropped whole
    big = np.tile([0.25, 0.75], (100, 1))
    big[7] = [np.inf, 0.0]
    r = extract_unchanged(big)
    assert len(r.confidences) == len(r.labels) == 99 and all(math.isfinite(c) for c in r.confidences)
    assert extract_unchanged(np.array([np.nan, 0.5, 0.5])) is None
    assert extract_unchanged(np.array([np.nan])) is None
    assert extract_unchanged(np.full(100, np.nan)) is None
    records = [{"label": "a", "score": float("nan")}, {"label": "b", "score": 0.5}]
    assert extract_unchanged(records) == ex([0.5], ["a", "b"], True)


# -- torch (duck-typed stand-in: torch is not installed) -----------------------------------------


class FakeTensor:
    """Duck-typed stand-in for a torch tensor: only what extract() may touch, ``__module__`` "torch"."""

    __module__ = "torch"

    def __init__(self, values):
        self._values = np.asarray(values)
        self.calls = []

    def detach(self):
        self.calls.append("detach")
        return self

    def cpu(self):
        self.calls.append("cpu")
        return self

    def numpy(self):
        self.calls.append("numpy")
        return self._values


def test_torch_tensor_via_numpy_stand_in():
    t = FakeTensor([[0.1, 0.9], [0.7, 0.3]])
    assert extract(t) == ex([0.9, 0.7], [1, 0], True)
    assert t.calls == ["detach", "cpu", "numpy"]
    assert extract(FakeTensor([2.0, 0.0]), softmax=True).labels == [0]
    assert extract({"logits": FakeTensor([[0.0, 3.0]])}, softmax=True).labels == [1]
    assert softmax(FakeTensor([0.0, 0.0])).tolist() == [0.5, 0.5]

    class Broken(FakeTensor):
        def numpy(self):
            raise TypeError("Got unsupported ScalarType BFloat16")

    assert extract(Broken([0.5, 0.5])) is None


# -- malformed and hostile outputs ----------------------------------------------------------------


class Hostile:
    """Raises from every protocol method extract() could conceivably call."""

    def _boom(self, *args, **kwargs):
        raise RuntimeError("hostile")

    __len__ = __iter__ = __getitem__ = __eq__ = __ne__ = __lt__ = __gt__ = __bool__ = _boom
    __float__ = __int__ = __index__ = __array__ = __contains__ = __radd__ = __add__ = _boom
    __hash__ = None

    def __getattr__(self, name):
        raise RuntimeError(f"hostile getattr {name}")


class HostileList(list):
    def __len__(self):
        raise RuntimeError("hostile len")

    def __iter__(self):
        raise RuntimeError("hostile iter")

    def __getitem__(self, i):
        raise RuntimeError("hostile getitem")


class HostileDict(dict):
    def __getitem__(self, key):
        raise RuntimeError("hostile getitem")

    def get(self, key, default=None):
        raise RuntimeError("hostile get")

    def __iter__(self):
        raise RuntimeError("hostile iter")


class HostileClass:
    @property
    def __class__(self):
        raise RuntimeError("hostile __class__")


MALFORMED = [
    None,
    float("nan"),
    float("inf"),
    "",
    b"bytes",
    [],
    (),
    {},
    [[]],
    [None],
    [float("nan"), 0.5],
    [0.5, "x"],
    [0.5, True],
    [[0.5, 0.5], "row"],
    [{"label": "a"}, 3],
    [[{"label": "a", "score": 0.5}], 3],
    {"label": None, "score": None},
    {"label": [1, 2], "score": [0.1, 0.9]},
    {"probabilities": {"probabilities": {"probabilities": {"probabilities": [0.5, 0.5]}}}},
    {"a": {"b": {"c": {}}}},
    {"scores": "not numbers"},
    {1: 2, (3,): 4},
    np.array([]),
    np.empty((0, 3)),
    np.empty((3, 0)),
    np.array(0.5),
    np.zeros((2, 2, 2)),
    np.random.default_rng(0).random(10**6),
    np.random.default_rng(0).random((1000, 1000)),
    np.array([1 + 2j, 0.5j]),
    np.array([np.datetime64("2024-01-05")]),
    np.array([{"label": "a", "score": 0.5}, None], dtype=object),
    np.zeros(3, dtype=[("a", "f8"), ("b", "i4")]),
    [[0.5, 0.5]] * 200_000,
    Hostile(),
    [Hostile()],
    [0.5, Hostile()],
    {"label": Hostile(), "score": Hostile()},
    {"probabilities": Hostile()},
    {"probabilities": [0.5, Hostile()]},
    [{"label": "a", "score": Hostile()}],
    HostileList([0.5, 0.5]),
    HostileDict(label="a", score=0.5),
    FakeTensor(np.array(["a"])),
    object(),
    ValueError("x"),
    print,
]


@pytest.mark.parametrize("output", MALFORMED, ids=lambda o: type(o).__name__)
@pytest.mark.parametrize("soft", [False, True])
def test_malformed_outputs_never_raise_or_change(output, soft):
    try:
        before = snapshot(output)
    except Exception:  # hostile objects cannot be pickled: compare identity and repr-free state
        before = None
    result = extract(output, softmax=soft)
    assert result is None or isinstance(result, Extraction)
    if result is not None:
        assert all(type(c) is float and math.isfinite(c) and 0.0 <= c <= 1.0 for c in result.confidences)
        assert result.labels is None or all(type(lab) in (str, int) for lab in result.labels)
    if before is not None:
        assert snapshot(output) == before


def test_object_whose_class_attribute_raises():
    # Not in MALFORMED: pytest's own parametrisation calls isinstance() on parameters.
    for soft in (False, True):
        assert extract(HostileClass(), softmax=soft) is None
        assert extract([HostileClass()], softmax=soft) is None
        assert extract({"score": HostileClass()}, softmax=soft) is None


def test_dict_subclass_is_read_without_its_overrides():
    assert extract(HostileDict(label="a", score=0.5)) == ex([0.5], ["a"])


def test_large_inputs_stay_cheap():
    import time

    big = np.random.default_rng(0).random(10**6)
    start = time.perf_counter()
    assert extract(big) is None and extract(big.reshape(1000, 1000)) is None
    assert extract([[0.5, 0.5]] * 200_000) is None  # beyond the Python-level budget
    assert time.perf_counter() - start < 1.0


def test_result_lists_are_fresh():
    labels = ["x", "y"]
    r = extract(labels)
    assert r.labels == labels and r.labels is not labels
    r.labels.append("z")
    assert labels == ["x", "y"]


# -- properties ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 80), st.integers(2, 6)),
        elements=st.floats(0.01, 1.0),
    )
)
def test_any_normalised_rows_match_numpy(raw):
    probs = raw / raw.sum(axis=1, keepdims=True)
    r = extract_unchanged(probs)
    assert r.batch and len(r.labels) == len(probs)
    np.testing.assert_allclose(r.confidences, probs.max(axis=1))
    assert [probs[i, j] for i, j in enumerate(r.labels)] == pytest.approx(probs.max(axis=1).tolist())
    vector = extract_unchanged(probs[0])
    assert vector.confidences == [pytest.approx(probs[0].max())] and not vector.batch


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        st.sampled_from([np.float64, np.float32]),
        hnp.array_shapes(min_dims=1, max_dims=2, max_side=80),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=32),
    ),
    st.booleans(),
)
def test_arbitrary_float_arrays_never_raise(a, soft):
    r = extract_unchanged(a, softmax=soft)
    if r is not None:
        assert all(math.isfinite(c) and 0.0 <= c <= 1.0 for c in r.confidences)
        assert len(r.confidences) == len(r.labels)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["label", "score", "class", "probs", "scores", "prediction", "x"]),
                inner,
                max_size=4,
            )
        ),
        max_leaves=20,
    )
)
def test_arbitrary_json_never_raises(output):
    before = copy.deepcopy(output)
    r = extract(output)
    assert r is None or isinstance(r, Extraction)
    assert snapshot(output) == snapshot(before)
