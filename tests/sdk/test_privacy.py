"""privacy: keyed feature hashes, missing-value counts, PII scrubbing and the raw-feature allow-list."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import struct
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelotel.privacy import (
    MAX_SCRUB_CHARS,
    TRUNCATION_MARKER,
    AllowList,
    FeatureHasher,
    contains_pii,
    count_missing,
    encode,
    hasher_from_env,
    raw_features,
    scrub,
    scrub_attributes,
)

KEY = b"test-key-0123456789"


def Q(n):
    return struct.pack(">Q", n)


def reference(key, features):
    return hmac.new(key, encode(features), hashlib.sha256).hexdigest()[:32]


# -- hostile objects, shared by several sections --------------------------------------------------


class Hostile:
    def _boom(self, *args, **kwargs):
        raise RuntimeError("hostile")

    __len__ = __iter__ = __getitem__ = __eq__ = __ne__ = __lt__ = __bool__ = __float__ = __index__ = _boom
    __hash__ = None


class HostileList(list):
    def __iter__(self):
        raise RuntimeError("hostile iter")

    def __len__(self):
        raise RuntimeError("hostile len")


class HostileKey:
    def __hash__(self):
        return 1

    def __eq__(self, other):
        raise RuntimeError("hostile eq")


def deep(n):
    x = 1.0
    for _ in range(n):
        x = [x]
    return x


cyclic = [1.0]
cyclic.append(cyclic)

HOSTILE = [Hostile(), HostileList([1.0]), [1.0, Hostile()], {"a": Hostile()}, {HostileKey(): 1}, cyclic]


# -- FeatureHasher ---------------------------------------------------------------------------------


def test_encoding_is_the_documented_one():
    assert encode(None) == b"N" and encode(True) == b"T" and encode(False) == b"F"
    assert encode(1.5) == b"f" + struct.pack(">d", 1.5)
    assert encode(float("nan")) == encode(-float("nan")) == b"f" + bytes.fromhex("7ff8000000000000")
    assert encode(1) == b"i" + struct.pack(">I", 1) + b"\x01"
    assert encode(-129) == b"i" + struct.pack(">I", 2) + (-129).to_bytes(2, "big", signed=True)
    assert encode("é") == b"s" + Q(2) + "é".encode()
    assert encode(b"\x00") == b"b" + Q(1) + b"\x00"
    assert encode([1.5, None]) == b"l" + Q(2) + encode(1.5) + b"N"
    assert encode({"b": 1, "a": None}) == b"d" + Q(2) + encode("a") + b"N" + encode("b") + encode(1)
    a = np.arange(6, dtype="<i4").reshape(2, 3)
    header = b"a" + Q(3) + b"<i4" + struct.pack(">I", 2) + Q(2) + Q(3) + Q(24)
    assert encode(a) == header + a.tobytes()
    assert encode(np.float32(0.5)) == encode(0.5) and encode(np.int64(3)) == encode(3)


def test_hash_is_keyed_hmac_sha256_of_the_encoding():
    h = FeatureHasher(KEY)
    rng = np.random.default_rng(0)
    for features in (
        [1.0, 2.0, None],
        {"age": 41, "name": "Ann", "tags": ("a", "b")},
        rng.random((4, 5)),
        rng.random(200_000),  # above the no-copy threshold
        "text input",
        {1, 2, 3},
    ):
        digest = h.hash(features)
        assert digest == reference(KEY, features) and len(digest) == 32
        int(digest, 16)
    long_key = b"k" * 100  # longer than SHA-256's block: hashed first, as RFC 2104 says
    assert FeatureHasher(long_key).hash([1]) == reference(long_key, [1])


def test_same_input_same_hash_different_input_or_key_different_hash():
    h = FeatureHasher(KEY)
    assert h.hash({"a": 1, "b": [1.0, 2.0]}) == h.hash({"b": [1.0, 2.0], "a": 1})  # key order irrelevant
    assert h.hash([1.0, 2.0]) == h.hash((1.0, 2.0))
    assert h.hash([1.0, 2.0]) != h.hash([2.0, 1.0])
    assert h.hash([1.0, 2.0]) != h.hash([1.0, 2.0000001])
    assert h.hash([1, 2]) != h.hash([1.0, 2.0])  # exact: types are part of the input
    assert h.hash(["ab", "c"]) != h.hash(["a", "bc"])  # length prefixes: no concatenation ambiguity
    assert h.hash(np.zeros(4)) != h.hash(np.zeros((2, 2)))  # shape is hashed
    assert h.hash(np.zeros(4)) != h.hash(np.zeros(4, dtype=np.float32))  # dtype is hashed
    assert FeatureHasher(b"other").hash([1.0, 2.0]) != h.hash([1.0, 2.0])


def test_array_layout_does_not_change_the_hash():
    h = FeatureHasher(KEY)
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert h.hash(a) == h.hash(np.asfortranarray(a)) == h.hash(a.T.copy().T)
    assert h.hash(a[:, ::2]) == h.hash(a[:, ::2].copy())
    assert h.hash(a.astype(">f8")) == h.hash(a)  # byte order normalised
    assert h.hash(np.array([np.nan, 1.0])) == h.hash(np.array([np.nan, 1.0]))
    assert h.hash(np.array(["a", "bc"])) == reference(KEY, np.array(["a", "bc"]))
    objects = np.array([1, "a", None], dtype=object)
    assert h.hash(objects) == reference(KEY, objects) and h.hash(objects) != h.hash([1, "a", None])


@pytest.mark.parametrize("features", HOSTILE + [deep(100), object(), np.zeros(2, dtype=[("a", "O")]), print])
def test_unhashable_or_hostile_gives_none(features):
    assert FeatureHasher(KEY).hash(features) is None
    assert encode(features) is None


def test_huge_array_is_hashed_fast():
    big = np.random.default_rng(0).random(4_000_000)  # 32 MB
    h = FeatureHasher(KEY)
    start = time.perf_counter()
    digest = h.hash(big)
    assert time.perf_counter() - start < 2.0
    assert digest == hmac.new(KEY, encode(big), hashlib.sha256).hexdigest()[:32]


def test_ephemeral_key():
    a, b = FeatureHasher(None), FeatureHasher(b"")
    assert a.key_is_ephemeral and b.key_is_ephemeral and not FeatureHasher(KEY).key_is_ephemeral
    assert a.hash([1.0]) == b.hash([1.0])  # one key per process
    assert a.hash([1.0]) != FeatureHasher(KEY).hash([1.0])
    with pytest.raises(TypeError):
        FeatureHasher(5)  # a programming error at setup, not on the hot path


def _hash_in_subprocess(env_key):
    env = {k: v for k, v in os.environ.items() if k != "MODELOTEL_HASH_KEY"}
    if env_key is not None:
        env["MODELOTEL_HASH_KEY"] = env_key
    code = (
        "import os; from modelotel.privacy import hasher_from_env; "
        "print(hasher_from_env(os.environ.get('MODELOTEL_HASH_KEY')).hash({'x': [1.0, 2.0]}))"
    )
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def test_hashes_across_processes():
    ephemeral = [_hash_in_subprocess(None) for _ in range(2)]
    assert ephemeral[0] != ephemeral[1]  # unlinkable across processes
    keyed = [_hash_in_subprocess("s3cret") for _ in range(2)]
    assert keyed[0] == keyed[1] == FeatureHasher(b"s3cret").hash({"x": [1.0, 2.0]}) + "\n"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_a_fresh_ephemeral_key():
    h = FeatureHasher(None)
    keyed = FeatureHasher(KEY)
    read, write = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns about fork() with other tests' threads alive
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: report and leave without running any test machinery
        try:
            os.write(write, f"{h.hash([1.0])} {keyed.hash([1.0])}".encode())
        finally:
            os._exit(0)
    os.close(write)
    child_ephemeral, child_keyed = os.read(read, 200).decode().split()
    os.close(read)
    os.waitpid(pid, 0)
    assert child_ephemeral != h.hash([1.0]) and child_keyed == keyed.hash([1.0])


def test_hasher_from_env_forms(caplog):
    assert hasher_from_env("abc").hash([1]) == reference(b"abc", [1])
    assert hasher_from_env("hex:00ff10").hash([1]) == reference(b"\x00\xff\x10", [1])
    assert hasher_from_env("base64:AP8Q").hash([1]) == reference(b"\x00\xff\x10", [1])
    assert hasher_from_env("ünï").hash([1]) == reference("ünï".encode(), [1])
    assert hasher_from_env(None).key_is_ephemeral and hasher_from_env("").key_is_ephemeral
    with caplog.at_level(logging.WARNING, logger="modelotel"):
        for bad in ("hex:zz", "base64:!!!", "hex:", "\udcff"):
            assert hasher_from_env(bad).key_is_ephemeral
    assert len(caplog.records) == 4


# -- count_missing ---------------------------------------------------------------------------------


def test_count_missing_shapes():
    assert count_missing(np.array([1.0, np.nan, 3.0])) == 1
    assert count_missing(np.array([1.0, np.inf, -np.inf])) == 0  # infinite is not missing
    assert count_missing(np.array([1e308, 1e308])) == 0  # the sum overflows, the count does not
    assert count_missing(np.array([[np.nan, 1.0], [np.nan, np.nan]], dtype=np.float32)) == 3
    assert count_missing(np.array(np.nan)) == 1
    assert count_missing(np.array([1, 2, 3])) == 0 and count_missing(np.array([True])) == 0
    assert count_missing(np.array(["a", ""])) == 0
    assert count_missing(np.array(["2024-01-05", "NaT"], dtype="datetime64[D]")) == 1
    assert count_missing(np.array([1.0, None, float("nan"), np.float32("nan"), "x"], dtype=object)) == 3
    assert count_missing(np.array([complex(1, np.nan), 1j])) == 1
    assert count_missing([1.0, None, float("nan"), "x", 3]) == 2
    assert count_missing((1, 2, 3)) == 0
    assert count_missing([[1.0, None], [float("nan"), 2.0], np.array([np.nan])]) == 3
    assert count_missing({"a": None, "b": float("nan"), "c": 1, "d": [None, 1]}) == 3
    assert count_missing([{"a": None}, {"a": 1.0}]) == 1  # records
    assert count_missing(float("nan")) == 1 and count_missing(2.0) == 0 and count_missing("text") == 0
    assert count_missing([]) == 0 and count_missing({}) == 0
    assert count_missing(np.float32("nan")) == 1
    assert count_missing([10**400, 1]) == 0


@pytest.mark.parametrize("features", [None, object(), print, np.zeros(2, dtype=[("a", "f8")])] + HOSTILE[:2])
def test_count_missing_unknown_or_hostile_gives_none(features):
    assert count_missing(features) is None


def test_count_missing_hostile_elements_are_present_values():
    assert count_missing([1.0, Hostile(), None]) == 1
    assert count_missing({"a": Hostile(), "b": float("nan")}) == 1


def _nan_arrays(max_side):
    return hnp.arrays(
        st.sampled_from([np.float64, np.float32, np.float16]),
        hnp.array_shapes(min_dims=1, max_dims=2, max_side=max_side),
        elements=st.sampled_from([0.0, 1.5, -2.0, np.inf, np.nan, 6e4]),
    )


@settings(max_examples=300, deadline=None)
@given(st.one_of(_nan_arrays(8), _nan_arrays(300)))
def test_count_missing_arrays_match_numpy(a):
    assert count_missing(a) == int(np.isnan(a).sum())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(), st.integers(), st.text(max_size=3)), max_size=100))
def test_count_missing_lists_match_python(values):
    expected = sum(1 for v in values if v is None or (isinstance(v, float) and math.isnan(v)))
    assert count_missing(values) == expected
    assert count_missing(tuple(values)) == expected
    assert count_missing(dict(enumerate(values))) == expected
    assert count_missing(np.array(values + [None], dtype=object)) == expected + 1


class FakeSeries:
    """Duck-typed stand-in for a pandas Series (pandas is not installed): module and class name match."""

    __module__ = "pandas.core.series"

    def __init__(self, values, name=None):
        self.values = np.asarray(values)
        self.name = name

    def isna(self):
        return FakeSeries(np.array([v is None or (isinstance(v, float) and v != v) for v in self.values.tolist()]))

    def to_numpy(self):
        return self.values


FakeSeries.__name__ = FakeSeries.__qualname__ = "Series"


class FakeDataFrame:
    """Duck-typed stand-in for a pandas DataFrame."""

    __module__ = "pandas.core.frame"

    def __init__(self, columns):
        self._columns = {k: FakeSeries(v, name=k) for k, v in columns.items()}
        self.columns = list(columns)

    def __getitem__(self, key):
        return self._columns[key]

    def isna(self):
        mask = np.stack([s.isna().to_numpy() for s in self._columns.values()], axis=1)
        return FakeSeries(mask)


FakeDataFrame.__name__ = FakeDataFrame.__qualname__ = "DataFrame"


def test_pandas_objects_via_duck_typed_stand_ins():
    frame = FakeDataFrame({"age": [41.0, np.nan], "city": ["Oslo", None]})
    assert count_missing(frame) == 2
    assert count_missing(frame["age"]) == 1
    h = FeatureHasher(KEY)
    assert h.hash(frame) == reference(KEY, frame) and h.hash(frame) is not None
    assert h.hash(frame) != h.hash(FakeDataFrame({"age": [41.0, np.nan], "city": ["Oslo", "Rome"]}))
    assert h.hash(frame["age"]) != h.hash(FakeSeries([41.0, np.nan], name="other"))


def test_count_missing_is_cheap_on_the_hot_path():
    import timeit

    small = np.array([0.1, 0.2, 0.3, 0.4] * 5)
    big = np.random.default_rng(0).random(1_000_000)
    big[::1000] = np.nan
    assert count_missing(big) == 1000
    per_call = min(timeit.repeat(lambda: count_missing(small), number=2000, repeat=3)) / 2000
    assert per_call < 20e-6  # generous for CI; ~0.5 µs on a quiet machine


# -- scrub -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Contact john.doe+ml@example.co.uk today.", "Contact <email> today."),
        ("mailto:ann@example.com>", "mailto:<email>>"),
        ("Call +1 415 555 2671 now", "Call <phone> now"),
        ("call +44 (0)20 7946 0958.", "call <phone>."),
        ("office (415) 555-2671 or 415.555.2671", "office <phone> or <phone>"),
        ("toll free 1-800-555-0199", "toll free <phone>"),
        ("card 4111 1111 1111 1111 exp 12/25", "card <card> exp 12/25"),
        ("cards 4111111111111111, 5500-0000-0000-0004, 378282246310005", "cards <card>, <card>, <card>"),
        ("amex 3782 822463 10005 ok", "amex <card> ok"),
        ("ssn 123-45-6789 on file", "ssn <ssn> on file"),
        ("iban GB82WEST12345698765432 paid", "iban <iban> paid"),
        ("IBAN DE89 3704 0044 0532 0130 00 OK", "IBAN <iban> OK"),
        ("from 192.168.1.20.", "from <ip>."),
        ("connect 10.0.0.1:8080 refused", "connect <ip>:8080 refused"),
        ("host:10.0.0.2 down", "host:<ip> down"),
        ("v6 2001:db8::ff00:42:8329 and [::1]:443", "v6 <ip> and [<ip>]:443"),
        ("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334 fe80::1%eth0", "full <ip> <ip>%eth0"),
        ("mapped ::ffff:192.0.2.128", "mapped <ip>"),
    ],
)
def test_scrub_replaces_each_kind(text, expected):
    assert scrub(text) == expected
    assert contains_pii(text)


@pytest.mark.parametrize(
    "text",
    [
        "v1.2.3 released 2024-01-05 at 12:30:45, took 250 ms, HTTP 500",
        "2024-01-05T12:30:45.123456+01:00 epoch 1704412800 ms 1704412800123",
        "card-like but Luhn-invalid: 4111 1111 1111 1112, 4111111111111112",
        "iban-like but mod-97-invalid: GB82WEST12345698765433, DE89370400440532013001",
        "invalid SSNs 000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000",
        "not IPs: 256.1.1.1 1.2.3 01.2.3.4 12:30:45 dead::beef 00:1a:2b:3c:4d:5e",
        "ids 42, -7, 3.14159, 1e-9, 0x7ff8, #12345, order 1234567, shape (3, 224, 224)",
        "score 0.4111111111111111 and 99.5%",
        "ValueError: could not convert string to float: 'abc'",
        "",
    ],
)
def test_scrub_keeps_ordinary_text(text):
    assert scrub(text) == text
    assert not contains_pii(text)


def test_luhn_decides_cards():
    def luhn_ok(digits):
        total = 0
        for i, d in enumerate(int(c) for c in reversed(digits)):
            total += (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d
        return total % 10 == 0

    base = "45320151128336"
    for last in "0123456789":
        number = base + last + "0"  # 16 digits
        assert (scrub(f"n {number} n") == "n <card> n") == luhn_ok(number)


def test_scrub_attributes():
    attrs = {"user": "ann@example.com", "n": 3, "tags": ["ok", "ip 10.0.0.1"], "t": ("a",), "f": 1.5}
    out = scrub_attributes(attrs)
    assert out == {"user": "<email>", "n": 3, "tags": ["ok", "ip <ip>"], "t": ("a",), "f": 1.5}
    assert attrs["user"] == "ann@example.com"  # input untouched
    assert scrub_attributes(None) == {}


def test_scrub_never_raises_and_handles_non_text():
    assert scrub(None) == "" and scrub(b"ann@example.com") == "" and scrub(Hostile()) == ""
    assert not contains_pii(None) and not contains_pii(Hostile())

    class Text(str):
        pass

    assert scrub(Text("mail ann@example.com")) == "mail <email>"


def test_long_text_is_truncated_and_items_at_the_cut_are_replaced_whole():
    text = "x " * 3000
    out = scrub(text)
    assert out.endswith(TRUNCATION_MARKER) and len(out) == MAX_SCRUB_CHARS + len(TRUNCATION_MARKER)
    prefix = "a" * (MAX_SCRUB_CHARS - 10) + " "
    straddling = scrub(prefix + "john.doe@example.com and more text")
    assert straddling == prefix + "<email>" + TRUNCATION_MARKER
    assert "john" not in straddling and "example" not in straddling
    card = scrub("y" * (MAX_SCRUB_CHARS - 8) + " 4111 1111 1111 1111 " + "z" * 100)
    assert card.endswith(" <card>" + TRUNCATION_MARKER) and "1111" not in card
    assert contains_pii("q" * 10_000 + " ann@example.com") is False  # beyond what is recorded


ADVERSARIAL = [
    "a" * 100_000,
    "a@" * 50_000,
    "a." * 50_000,
    "1" * 100_000,
    "1-" * 50_000,
    "1 " * 50_000,
    "+1" * 50_000,
    "a:" * 50_000,
    ":" * 100_000,
    "1." * 50_000,
    ("a" * 60 + "@" + "b" * 60 + ".") * 1000,
    "AB12" + "A " * 50_000,
    "GB82 " * 20_000,
    "1.1.1.1." * 10_000,
    "1-2 3.4:5+6(7)8@a.b " * 5000,
    "x@" + "a." * 50_000,
    "(" * 100_000,
    "4111 " * 20_000,
]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=lambda t: repr(t[:8]))
def test_adversarial_text_is_fast(text):
    start = time.perf_counter()
    scrub(text)
    contains_pii(text)
    assert time.perf_counter() - start < 0.25  # ~1-5 ms here: linear patterns on a capped window


def test_patterns_are_linear_time():
    from modelotel.privacy import _find

    for unit in ("a:", "1 ", "a@", "GB82 ", "1.1.1.1."):
        times = []
        for n in (4_000, 16_000):
            text = unit * (n // len(unit))
            trials = []
            for _ in range(3):  # the fastest of three: a busy machine only adds time
                start = time.perf_counter()
                _find(text, False)
                trials.append(time.perf_counter() - start)
            times.append(min(trials))
        assert times[1] < 8 * times[0] + 0.002  # 4x the input: about 4x the time; quadratic would be 16x


# -- allow-list ------------------------------------------------------------------------------------


def test_allow_list_on_dicts():
    allow = AllowList(["age", "country"])
    features = {"age": 41, "country": "NO", "name": "Ann", "email": "ann@example.com"}
    assert allow.raw_features(features) == {"age": 41, "country": "NO"}
    assert "age" in allow and "name" not in allow and len(allow) == 2
    assert AllowList().raw_features(features) == {}


def test_allow_list_on_sequences_and_arrays():
    allow = AllowList(["age", "score", "flag", "city"])
    names = ["name", "age", "score", "flag"]
    assert allow.raw_features(["Ann", 41, 0.5, True], names) == {"age": 41, "score": 0.5, "flag": True}
    row = np.array([1.0, 41.0, 0.5, 1.0])
    assert allow.raw_features(row, names) == {"age": 41.0, "score": 0.5, "flag": 1.0}
    assert allow.raw_features(row.reshape(1, -1), names) == {"age": 41.0, "score": 0.5, "flag": 1.0}
    assert allow.raw_features([["Ann", 41, 0.5, True]], names)["age"] == 41
    assert allow.raw_features(np.zeros((2, 4)), names) == {}  # a batch: no single row to describe
    assert allow.raw_features([1.0, 2.0], None) == {}  # positions need names
    assert allow.raw_features(["Ann"], names) == {}  # shorter than the names
    ints = allow.raw_features(np.array([0, 41, 1, 0], dtype=np.int64), names)
    assert ints == {"age": 41, "score": 1, "flag": 0} and type(ints["age"]) is int


def test_allow_list_coerces_values():
    allow = AllowList(["s", "b", "i", "f", "n", "o", "big", "np"], max_str_len=8)
    features = {
        "s": "x" * 20,
        "b": np.bool_(True),
        "i": np.int32(7),
        "f": np.float32(0.5),
        "n": None,
        "o": object(),
        "big": 10**30,
        "np": np.str_("ok"),
        "secret": "never",
    }
    assert allow.raw_features(features) == {"s": "xxxxxxxx...", "b": True, "i": 7, "f": 0.5, "np": "ok"}
    out = allow.raw_features(features)
    assert type(out["b"]) is bool and type(out["i"]) is int and type(out["f"]) is float


def test_module_level_raw_features_and_hostile_inputs():
    names = ["a", "b"]
    assert raw_features({"a": 1, "b": 2, "c": 3}, ("a",)) == {"a": 1}
    assert raw_features([1, 2], ("b",), names) == {"b": 2}
    assert raw_features({"a": 1}, ()) == {}
    for bad in HOSTILE + [None, object()]:
        assert raw_features(bad, ("a",), names) in ({}, {"a": 1.0})
    assert raw_features([1.0, Hostile()], ("a", "b"), names) == {"a": 1.0}
