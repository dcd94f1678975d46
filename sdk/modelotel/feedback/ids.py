"""Self-describing prediction ids: what ``record_feedback`` needs, signed, in the id itself.

A process that never saw the prediction (another replica, a labelling job, a batch import days later) judges it
from the id alone: no lookup, no shared state, no join. The id is ``mo1.`` followed by base64url (no padding) of

    version u8 = 1 | key id (4 bytes) | time u32 (epoch seconds of the prediction) | nonce (8 bytes)
    attributes   u8 count, then (key, value) pairs      the model's series attributes (name, version, role, ...)
    positive     u8 0/1, then a label when 1            the model's positive class (fairness flags)
    kind         u8: 0 labels (classification), 1 numbers (regression)
    items        u16 n
    labels:      u16 m distinct labels, each a tagged label and its exported form;
                 n indices (u8 when m <= 256, else u16); n confidences (f64; NaN = none)
    numbers:     n predicted values (f64)
    mac          HMAC-SHA256(key, every byte above), first 16 bytes

Strings are u16 length + UTF-8. A known attribute key is one byte (``_KEY_CODES``), others ``0`` + the string.
A label is a tag and its payload: ``s`` a string, ``i`` an integer (decimal), ``f`` a float (f64), ``b`` a bool,
``d`` a string over ``MAX_KEPT_LABEL_CHARS`` as its length (u32) and SHA-256: the id stays small and judging is
still exact (equal text, equal digest). The exported form is how ``ml.prediction.label`` showed it (``labels.py``:
scrubbed, capped, or withheld), so feedback series carry the same label text as the prediction's own.

Size: one prediction of a model named ``fraud``, version ``1.4.0``, role ``primary``, label ``legit`` with a
confidence is 84 bytes (116 characters with the prefix); each further batch item adds 9 bytes (an index and an f64).

Signing: the MAC makes a forged or altered id fail; the key id tells an id signed by a key this process does not
hold (another deployment, or an unset ``MODELOTEL_FEEDBACK_KEY``) from a forgery. The id is signed, not encrypted:
it shows what the prediction's own telemetry shows (model, version, exported label, confidence), never features.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import struct
from dataclasses import dataclass
from typing import Any

import modelotel.conventions as conv

PREFIX = "mo1."
VERSION = 1
MAC_BYTES = 16
KEY_ID_BYTES = 4
NONCE_BYTES = 8
MAX_ITEMS = 65_535
MAX_TEXT_BYTES = 65_535
MAX_KEPT_LABEL_CHARS = 256  # longer string labels travel as length + SHA-256
KIND_LABELS = 0
KIND_NUMBERS = 1
_NUMBER_TAGS = ("i", "f", "b")

# Attribute keys every model has, one byte each in the id (codes are part of the format: append only).
_KEY_CODES = {conv.MODEL_NAME: 1, conv.MODEL_VERSION: 2, conv.DEPLOYMENT_ROLE: 3}
_KEYS_BY_CODE = {code: key for key, code in _KEY_CODES.items()}
_FROM_URLSAFE = str.maketrans("-_", "+/")
_HEADER = struct.Struct(">B4sI8s")
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_F64 = struct.Struct(">d")


class IdProblem(ValueError):
    """Why an id cannot be judged; ``reason`` is the ``modelotel.dropped`` reason it is counted under."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Label:
    """A predicted label as the id carries it: ``tag`` (s, i, f, b, d), its text (the decimal, repr or string;
    for ``d`` the hex digest), the digested string's length (``d`` only) and its exported form (None: withheld)."""

    tag: str
    text: str
    shown: str | None
    length: int = 0

    @staticmethod
    def of(value: Any, shown: str | None) -> Label:
        if isinstance(value, bool):
            return Label("b", "1" if value else "0", shown)
        if isinstance(value, int) or type(value).__name__.startswith(("int", "uint")):
            try:
                return Label("i", str(int(value)), shown)
            except (TypeError, ValueError):
                pass
        if isinstance(value, float) or type(value).__name__.startswith("float"):
            try:
                return Label("f", repr(float(value)), shown)
            except (TypeError, ValueError):
                pass
        text = value if type(value) is str else str(value)
        if len(text) > MAX_KEPT_LABEL_CHARS:
            digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
            return Label("d", digest, shown, len(text))
        return Label("s", text, shown)

    def same_as(self, other: Label) -> bool:
        """Whether two labels are the same class (numbers by value, texts by text, digests by digest)."""
        if self.tag in _NUMBER_TAGS and other.tag in _NUMBER_TAGS:
            return float(self.text) == float(other.text)
        if "d" in (self.tag, other.tag):
            return self.tag == other.tag and self.text == other.text and self.length == other.length
        return self.text == other.text

    def matches(self, truth: Any) -> bool:
        """Whether a true label equals this predicted one: numbers by value (1 == 1.0 == True, as Python compares
        them), anything else by its text, a digested label by length and SHA-256."""
        if self.tag in _NUMBER_TAGS and (isinstance(truth, (int, float)) or _is_numpy_number(truth)):
            try:
                return float(truth) == float(self.text)
            except (TypeError, ValueError):
                return False
        text = truth if type(truth) is str else str(truth)
        if self.tag == "d":
            return len(text) == self.length and hashlib.sha256(
                text.encode("utf-8", "surrogatepass")
            ).hexdigest() == self.text
        if self.tag in _NUMBER_TAGS:  # a string truth for a number label: compare the texts ("1" == 1)
            return text == self.text or (self.tag == "f" and _float_text_equal(text, self.text))
        return text == self.text


def _is_numpy_number(value: Any) -> bool:
    name = type(value).__name__
    return type(value).__module__ == "numpy" and name.startswith(("int", "uint", "float", "bool"))


def _float_text_equal(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


@dataclass(frozen=True)
class PredictionRecord:
    """What a prediction id says: the model's attributes, when, and per item its label and confidence (or, for a
    regression model, its predicted number)."""

    attributes: tuple[tuple[str, str], ...]
    time_s: int
    nonce: bytes
    positive: Label | None
    labels: tuple[Label | None, ...] = ()  # per item (classification)
    confidences: tuple[float | None, ...] = ()  # per item (classification)
    numbers: tuple[float, ...] = ()  # per item (regression)
    key_id: bytes = b""

    @property
    def items(self) -> int:
        return len(self.numbers) if self.numbers else len(self.labels)

    @property
    def regression(self) -> bool:
        return bool(self.numbers)


# -- signing -------------------------------------------------------------------------------------------

_KEYED: dict[bytes, Any] = {}  # key -> an HMAC with the key already absorbed (copying it saves two hash blocks)


def _mac(key: bytes, data: bytes) -> bytes:
    keyed = _KEYED.get(key)
    if keyed is None:
        if len(_KEYED) > 64:  # keys come from configuration: a handful per process
            _KEYED.clear()
        keyed = _KEYED[key] = hmac.new(key, digestmod=hashlib.sha256)
    h = keyed.copy()
    h.update(data)
    return h.digest()[:MAC_BYTES]


# -- encoding -----------------------------------------------------------------------------------------


def _text(out: bytearray, value: str) -> None:
    raw = value.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_TEXT_BYTES:
        raise ValueError(f"a text of {len(raw)} bytes does not fit in a prediction id")
    out += _U16.pack(len(raw))
    out += raw


def _label(out: bytearray, label: Label) -> None:
    out += label.tag.encode("ascii")
    if label.tag == "d":
        out += _U32.pack(label.length)
        out += bytes.fromhex(label.text)
    elif label.tag == "f":
        out += _F64.pack(float(label.text))
    else:
        _text(out, label.text)
    if label.shown is None:
        out += b"\x00"
    elif label.shown == label.text and label.tag != "d":
        out += b"\x01"
    else:
        out += b"\x02"
        _text(out, label.shown)


def encode(record: PredictionRecord, key: bytes, key_id: bytes) -> str:
    """The id of ``record`` signed with ``key``. Raises ValueError when it cannot be encoded (too many items)."""
    n = record.items
    if n > MAX_ITEMS:
        raise ValueError(f"{n} items: a prediction id holds at most {MAX_ITEMS}")
    out = bytearray(_HEADER.pack(VERSION, key_id, record.time_s & 0xFFFFFFFF, record.nonce))
    out += _U8.pack(len(record.attributes))
    for k, v in record.attributes:
        code = _KEY_CODES.get(k)
        if code is None:
            out += b"\x00"
            _text(out, k)
        else:
            out += _U8.pack(code)
        _text(out, v)
    if record.positive is None:
        out += b"\x00"
    else:
        out += b"\x01"
        _label(out, record.positive)
    if record.numbers:
        out += _U8.pack(KIND_NUMBERS)
        out += _U16.pack(n)
        out += struct.pack(f">{n}d", *record.numbers)
    else:
        out += _U8.pack(KIND_LABELS)
        out += _U16.pack(n)
        distinct: dict[Label | None, int] = {}
        index = [distinct.setdefault(lab, len(distinct)) for lab in record.labels]
        out += _U16.pack(len(distinct))
        for lab in distinct:
            if lab is None:
                out += b"n"
            else:
                _label(out, lab)
        out += struct.pack(f">{n}{'B' if len(distinct) <= 256 else 'H'}", *index)
        confs = [math.nan if c is None else c for c in record.confidences] or [math.nan] * n
        out += struct.pack(f">{n}d", *confs)
    out += _mac(key, bytes(out))
    return PREFIX + base64.urlsafe_b64encode(bytes(out)).rstrip(b"=").decode("ascii")


# -- decoding -----------------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise IdProblem("feedback_id_truncated", "the prediction id ends early (cut or truncated)")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return _U16.unpack(self.take(2))[0]

    def text(self) -> str:
        raw = self.take(self.u16())
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise IdProblem("feedback_id_malformed", "the prediction id holds text that is not UTF-8") from None

    def label(self) -> Label | None:
        tag = chr(self.u8())
        if tag == "n":
            return None
        length = 0
        if tag == "d":
            length = _U32.unpack(self.take(4))[0]
            text = self.take(32).hex()
        elif tag == "f":
            text = repr(_F64.unpack(self.take(8))[0])
        elif tag in ("s", "i", "b"):
            text = self.text()
        else:
            raise IdProblem("feedback_id_malformed", f"unknown label tag {tag!r} in the prediction id")
        flag = self.u8()
        if flag == 0:
            shown = None
        elif flag == 1:
            shown = text
        elif flag == 2:
            shown = self.text()
        else:
            raise IdProblem("feedback_id_malformed", "bad exported-label flag in the prediction id")
        return Label(tag, text, shown, length)


def looks_like_id(text: str) -> bool:
    return text.startswith(PREFIX)


def decode(text: str, keys: dict[bytes, bytes]) -> PredictionRecord:
    """The record an id describes, after checking its signature with the key its key id names.

    Raises ``IdProblem`` with the reason: ``feedback_id_foreign`` (not a modelotel id),
    ``feedback_id_truncated``, ``feedback_id_malformed``, ``feedback_id_unknown_key`` (signed with a key this
    process does not hold), ``feedback_id_forged`` (the signature does not match: altered or made up).
    """
    if not looks_like_id(text):
        raise IdProblem("feedback_id_foreign", "not a modelotel prediction id (they start with 'mo1.')")
    body = text[len(PREFIX) :]
    try:
        data = base64.b64decode(body.translate(_FROM_URLSAFE) + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        if len(body) % 4 == 1:  # no base64 text has this length: characters were cut off
            raise IdProblem("feedback_id_truncated", "the prediction id was cut (not a whole base64 text)") from None
        raise IdProblem("feedback_id_malformed", "the prediction id is not base64url") from None
    if len(data) < _HEADER.size + MAC_BYTES:
        raise IdProblem("feedback_id_truncated", "the prediction id is too short (cut or truncated)")
    r = _Reader(data)
    version, key_id, time_s, nonce = _HEADER.unpack(r.take(_HEADER.size))
    if version != VERSION:
        raise IdProblem("feedback_id_malformed", f"prediction id version {version} (this modelotel reads {VERSION})")
    record = _body(r, key_id, time_s, nonce)
    mac = data[r.pos :]
    if len(mac) < MAC_BYTES:
        raise IdProblem("feedback_id_truncated", "the prediction id ends inside its signature (cut or truncated)")
    if len(mac) > MAC_BYTES:
        raise IdProblem("feedback_id_malformed", "the prediction id has bytes after its signature")
    key = keys.get(key_id)
    if key is None:
        raise IdProblem(
            "feedback_id_unknown_key",
            "the prediction id was signed with a key this process does not hold: set the same "
            "MODELOTEL_FEEDBACK_KEY in the serving and the labelling processes",
        )
    if not hmac.compare_digest(_mac(key, data[: r.pos]), mac):
        raise IdProblem("feedback_id_forged", "the prediction id's signature does not match (altered or made up)")
    return record


def _body(r: _Reader, key_id: bytes, time_s: int, nonce: bytes) -> PredictionRecord:
    attrs = []
    for _ in range(r.u8()):
        code = r.u8()
        key = r.text() if code == 0 else _KEYS_BY_CODE.get(code)
        if key is None:
            raise IdProblem("feedback_id_malformed", f"unknown attribute code {code} in the prediction id")
        attrs.append((key, r.text()))
    flag = r.u8()
    positive = r.label() if flag == 1 else None
    if flag not in (0, 1):
        raise IdProblem("feedback_id_malformed", "bad positive-class flag in the prediction id")
    kind = r.u8()
    n = r.u16()
    if kind == KIND_NUMBERS:
        numbers = struct.unpack(f">{n}d", r.take(8 * n))
        return PredictionRecord(tuple(attrs), time_s, nonce, positive, numbers=numbers, key_id=key_id)
    if kind != KIND_LABELS:
        raise IdProblem("feedback_id_malformed", f"unknown prediction kind {kind} in the prediction id")
    m = r.u16()
    distinct = [r.label() for _ in range(m)]
    fmt = "B" if m <= 256 else "H"
    index = struct.unpack(f">{n}{fmt}", r.take(n * (1 if fmt == "B" else 2)))
    confs = struct.unpack(f">{n}d", r.take(8 * n))
    if any(i >= m for i in index):
        raise IdProblem("feedback_id_malformed", "a label index past the label table in the prediction id")
    labels = tuple(distinct[i] for i in index)
    confidences = tuple(None if math.isnan(c) else c for c in confs)
    return PredictionRecord(tuple(attrs), time_s, nonce, positive, labels, confidences, key_id=key_id)
