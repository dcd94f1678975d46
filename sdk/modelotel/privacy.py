"""What may leave the process about a model's inputs: keyed hashes, missing counts, scrubbed text.

Nothing here alters its input or raises on the request path: a value we cannot handle yields
``None`` (the caller counts a miss). Four pieces:

* ``FeatureHasher``: HMAC-SHA256 of a canonical encoding of the features (``encode``), so equal
  inputs can be correlated without exporting them. Without a configured key the key is random
  per process, so the hashes cannot be linked across processes or reversed with a dictionary of
  likely inputs.
* ``count_missing``: None/NaN values among the features.
* ``scrub``/``contains_pii``/``scrub_attributes``: PII removal for text we record (exception
  messages, attribute values).
* ``AllowList``/``raw_features``: the opt-in, per-feature-name export of raw values.

Canonical encoding (``encode``), big-endian lengths; a value's encoding is its tag then payload:

==================  =====  ===========================================================
value               tag    payload
==================  =====  ===========================================================
None                ``N``  (none)
bool                ``T``  / ``F`` (no payload)
int                 ``i``  u32 byte count, two's complement big-endian (minimal)
float               ``f``  IEEE-754 binary64 big-endian; every NaN as 0x7ff8000000000000
str                 ``s``  u64 byte count, UTF-8 (lone surrogates passed through)
bytes-like          ``b``  u64 byte count, the bytes
list / tuple        ``l``  u64 item count, each item (a tuple hashes like the list)
dict                ``d``  u64 item count, (key, value) pairs sorted by encoded key
set / frozenset     ``e``  u64 item count, items sorted by their encodings
numpy array         ``a``  u64 length and ASCII dtype (``dtype.str``, or ``repr(dtype.descr)``
                           if structured), u32 ndim, u64 per dimension, u64 byte count, the
                           C-order bytes (little-endian; big-endian arrays are converted)
numpy object array  ``A``  u32 ndim, u64 per dimension, each element in C order
numpy scalar               as the equivalent Python value (``.item()``)
pandas DataFrame    ``D``  the column labels as a list, then each column as a Series
pandas Series       ``S``  its name, then ``to_numpy()`` as a numpy array
==================  =====  ===========================================================

``hash`` is ``hmac.new(key, encode(x), sha256).hexdigest()[:32]``. The encoding is exact:
``1`` and ``1.0`` differ, as do a list and an array of the same numbers; the pandas index is not
included. Nesting deeper than ``MAX_DEPTH`` or more than ``MAX_ITEMS`` Python-level values give
``None`` (arrays of any size are hashed as bytes, with no per-element work).
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import ipaddress
import logging
import math
import os
import re
import struct
import sys
import weakref
from collections.abc import Iterable, Mapping

import numpy as np

__all__ = [
    "FeatureHasher",
    "hasher_from_env",
    "encode",
    "count_missing",
    "is_missing",
    "missing_items",
    "scrub",
    "scrub_capped",
    "contains_pii",
    "scrub_attributes",
    "AllowList",
    "raw_features",
    "MAX_SCRUB_CHARS",
    "TRUNCATION_MARKER",
]

_log = logging.getLogger("modelotel")

HASH_HEX_CHARS = 32  # 128 bits: collision-safe for any realistic number of distinct inputs
MAX_DEPTH = 32
MAX_ITEMS = 1_000_000  # Python-level values per encoding (arrays count as one)
_BIG_BUFFER = 1 << 16  # array payloads above this are fed to the HMAC without copying

_ndarray = np.ndarray
_pack_q = struct.Struct(">Q").pack
_pack_i = struct.Struct(">I").pack
_pack_d = struct.Struct(">d").pack
_NAN_BYTES = b"f" + bytes.fromhex("7ff8000000000000")  # one canonical NaN, whatever its sign/payload
_isfinite = math.isfinite


class _TooBig(Exception):
    """The value has more Python-level items than ``MAX_ITEMS``."""


# -- canonical encoding and keyed hash ------------------------------------------------------------


def encode(features: object) -> bytes | None:
    """The canonical byte encoding ``FeatureHasher`` authenticates (see module docstring)."""
    parts = _encode_parts(features)
    if parts is None:
        return None
    return b"".join(bytes(p) if type(p) is not bytes else p for p in parts)


def _encode_parts(features: object) -> list | None:
    out: list = []
    try:
        _enc(features, out, 0, [MAX_ITEMS])
    except Exception:
        return None
    return out


def _enc(x: object, out: list, depth: int, budget: list[int]) -> None:
    """Append the encoding of ``x`` to ``out``; raises on anything unencodable (caught by caller)."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig
    t = type(x)
    if t is float:
        out.append(b"f" + _pack_d(x) if x == x else _NAN_BYTES)
    elif t is int:
        out.append(_int_bytes(x))
    elif t is str:
        b = x.encode("utf-8", "surrogatepass")
        out.append(b"s" + _pack_q(len(b)) + b)
    elif x is None:
        out.append(b"N")
    elif t is bool:
        out.append(b"T" if x else b"F")
    elif t is _ndarray:
        _enc_array(x, out, depth, budget)
    elif t is list or t is tuple:
        _enc_seq(x, out, depth, budget)
    elif t is dict:
        _enc_dict(x, out, depth, budget)
    else:
        _enc_other(x, out, depth, budget)


def _int_bytes(x: int) -> bytes:
    b = int.to_bytes(x, (int.bit_length(x) + 8) // 8, "big", signed=True)
    return b"i" + _pack_i(len(b)) + b


def _enc_seq(x: list | tuple, out: list, depth: int, budget: list[int]) -> None:
    if depth >= MAX_DEPTH:
        raise RecursionError("features nested too deeply")
    n = len(x)
    if n > budget[0]:
        raise _TooBig
    out.append(b"l" + _pack_q(n))
    # Flat float lists (a feature vector) skip the per-item dispatch.
    for v in x:
        if type(v) is float and v == v:
            out.append(b"f" + _pack_d(v))
            budget[0] -= 1
        else:
            _enc(v, out, depth + 1, budget)
    if budget[0] < 0:
        raise _TooBig


def _enc_dict(x: dict, out: list, depth: int, budget: list[int]) -> None:
    if depth >= MAX_DEPTH:
        raise RecursionError("features nested too deeply")
    pairs = []
    for k, v in dict.items(x):
        kp: list = []
        _enc(k, kp, depth + 1, budget)
        pairs.append((b"".join(kp), v))
    pairs.sort(key=_first)
    out.append(b"d" + _pack_q(len(pairs)))
    for kb, v in pairs:
        out.append(kb)
        _enc(v, out, depth + 1, budget)


def _first(pair: tuple) -> bytes:
    return pair[0]


def _enc_array(a: np.ndarray, out: list, depth: int, budget: list[int]) -> None:
    dt = a.dtype
    nd = a.ndim
    shape_struct = _SHAPES.get(nd) or _shape_struct(nd)
    header = shape_struct.pack(nd, *a.shape)
    name = _DTYPE_NAMES.get(dt)
    if name is None:
        if dt.kind == "O":
            out.append(b"A" + header)
            if depth >= MAX_DEPTH:
                raise RecursionError("features nested too deeply")
            if a.size > budget[0]:
                raise _TooBig
            for v in a.ravel(order="C").tolist():
                _enc(v, out, depth + 1, budget)
            return
        if dt.hasobject:  # structured with object fields: the bytes would be pointers
            raise TypeError("structured arrays with object fields are not hashed")
        if dt.fields is None and (dt.byteorder == ">" or (dt.byteorder == "=" and _BIG_ENDIAN_HOST)):
            a = a.astype(dt.newbyteorder("<"))  # one canonical byte order across machines
            dt = a.dtype
        name = _dtype_name(dt)
    a = np.ascontiguousarray(a)
    nbytes = a.nbytes
    out.append(b"a" + name + header + _pack_q(nbytes))
    if nbytes > _BIG_BUFFER:
        out.append(memoryview(a.reshape(-1).view(np.uint8)))
    else:
        out.append(a.tobytes())


def _dtype_name(dt: np.dtype) -> bytes:
    """Length-prefixed dtype descriptor; cached for plain dtypes (``dtype.str`` costs ~170 ns)."""
    text = (dt.str if dt.fields is None else repr(dt.descr)).encode()
    name = _pack_q(len(text)) + text
    if dt.fields is None and dt.str[0] != ">" and len(_DTYPE_NAMES) < 256:
        _DTYPE_NAMES[dt] = name
    return name


def _shape_struct(nd: int) -> struct.Struct:
    st = struct.Struct(f">I{nd}Q")
    if nd <= 32:
        _SHAPES[nd] = st
    return st


_DTYPE_NAMES: dict[np.dtype, bytes] = {}
_SHAPES: dict[int, struct.Struct] = {}
_BIG_ENDIAN_HOST = sys.byteorder == "big"


def _enc_other(x: object, out: list, depth: int, budget: list[int]) -> None:
    """Subclasses, numpy scalars, bytes, sets and (duck-typed) pandas objects."""
    if isinstance(x, np.generic):
        if isinstance(x, np.void):
            _enc_array(np.asarray(x), out, depth, budget)
        else:
            _enc(x.item(), out, depth, budget)
    elif isinstance(x, (bytes, bytearray, memoryview)):
        b = bytes(x)
        out.append(b"b" + _pack_q(len(b)) + b)
    elif isinstance(x, bool):
        out.append(b"T" if x else b"F")
    elif isinstance(x, float):
        f = float.__float__(x)
        out.append(b"f" + _pack_d(f) if f == f else _NAN_BYTES)
    elif isinstance(x, int):
        out.append(_int_bytes(int.__index__(x)))
    elif isinstance(x, str):
        _enc(str.__str__(x), out, depth, budget)
    elif isinstance(x, _ndarray):
        _enc_array(np.asarray(x), out, depth, budget)
    elif isinstance(x, (list, tuple)):
        _enc_seq(x, out, depth, budget)
    elif isinstance(x, dict):
        _enc_dict(x, out, depth, budget)
    elif isinstance(x, (set, frozenset)):
        if depth >= MAX_DEPTH:
            raise RecursionError("features nested too deeply")
        items = []
        for v in x:
            p: list = []
            _enc(v, p, depth + 1, budget)
            items.append(b"".join(bytes(c) for c in p))
        items.sort()
        out.append(b"e" + _pack_q(len(items)))
        out.extend(items)
    elif _is_pandas(x, "DataFrame"):
        columns = list(x.columns)
        out.append(b"D")
        _enc(columns, out, depth + 1, budget)
        for c in columns:
            _enc_series(x[c], out, depth + 1, budget)
    elif _is_pandas(x, "Series"):
        _enc_series(x, out, depth, budget)
    else:
        raise TypeError(f"cannot encode {type(x).__name__}")


def _enc_series(s: object, out: list, depth: int, budget: list[int]) -> None:
    out.append(b"S")
    _enc(s.name, out, depth + 1, budget)
    values = s.to_numpy()
    if type(values) is not _ndarray:
        raise TypeError("Series.to_numpy() did not return an ndarray")
    _enc_array(values, out, depth + 1, budget)


def _is_pandas(x: object, name: str) -> bool:
    """Duck-typed pandas check: never imports pandas."""
    t = type(x)
    mod = t.__module__
    return type(mod) is str and mod.startswith("pandas") and any(c.__name__ == name for c in t.__mro__)


_process_key = os.urandom(32)
_ephemeral: weakref.WeakSet[FeatureHasher] = weakref.WeakSet()
_TRANS_5C = bytes(x ^ 0x5C for x in range(256))
_TRANS_36 = bytes(x ^ 0x36 for x in range(256))


class FeatureHasher:
    """Keyed 128-bit hash of model features, comparable across processes that share the key."""

    __slots__ = ("_inner", "_outer", "key_is_ephemeral", "__weakref__")

    def __init__(self, key: bytes | None = None) -> None:
        """``key``: bytes (or text, UTF-8 encoded); ``None`` or empty means a random per-process key."""
        if isinstance(key, str):
            key = key.encode("utf-8")
        elif isinstance(key, (bytes, bytearray, memoryview)):
            key = bytes(key)
        elif key is not None:
            raise TypeError(f"FeatureHasher key must be bytes or str, not {type(key).__name__}")
        # An empty key is as guessable as no key: treat it as none.
        self.key_is_ephemeral = not key
        if self.key_is_ephemeral:
            _ephemeral.add(self)
            key = _process_key
        self._set_key(key)

    def _set_key(self, key: bytes) -> None:
        # HMAC (RFC 2104) with the keyed inner and outer SHA-256 states precomputed: copying two
        # hashlib objects is ~40% cheaper per call than hmac.HMAC.copy(). Tests pin equality with
        # hmac.new(key, msg, sha256).
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(key.translate(_TRANS_36))
        self._outer = hashlib.sha256(key.translate(_TRANS_5C))

    def hash(self, features: object) -> str | None:
        """Hex HMAC-SHA256 (first 128 bits) of ``encode(features)``, or ``None`` if unencodable."""
        parts = _encode_parts(features)
        if parts is None:
            return None
        try:
            h = self._inner.copy()
            small: list = []
            for p in parts:
                if type(p) is bytes:
                    small.append(p)
                else:  # a large array buffer: no copy
                    if small:
                        h.update(b"".join(small))
                        small.clear()
                    h.update(p)
            if small:
                h.update(b"".join(small))
            o = self._outer.copy()
            o.update(h.digest())
            return o.hexdigest()[:HASH_HEX_CHARS]
        except Exception:
            return None

    def __repr__(self) -> str:
        return f"FeatureHasher(key_is_ephemeral={self.key_is_ephemeral})"


def _after_fork_in_child() -> None:
    """A forked worker is another process: give it, and its ephemeral hashers, a fresh key."""
    global _process_key
    _process_key = os.urandom(32)
    for h in list(_ephemeral):
        h._set_key(_process_key)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def hasher_from_env(env_value: str | None) -> FeatureHasher:
    """A hasher for ``MODELOTEL_HASH_KEY``: UTF-8 text, ``hex:<hex>`` or ``base64:<base64>``.

    Unset, empty or undecodable values give an ephemeral key (a bad value is logged, not raised:
    configuration must not take the model down).
    """
    if env_value is None or env_value == "":
        return FeatureHasher(None)
    try:
        if env_value.startswith("hex:"):
            key = bytes.fromhex(env_value[4:])
        elif env_value.startswith("base64:"):
            key = base64.b64decode(env_value[7:], validate=True)
        else:
            key = env_value.encode("utf-8")
    except Exception:  # ValueError, binascii.Error, UnicodeError, or not a str at all
        _log.warning("MODELOTEL_HASH_KEY is not valid hex:/base64:/UTF-8; using a random per-process key")
        return FeatureHasher(None)
    if not key:
        _log.warning("MODELOTEL_HASH_KEY decodes to an empty key; using a random per-process key")
    return FeatureHasher(key)


# -- missing values -------------------------------------------------------------------------------

SMALL = 64  # at or below this many elements, Python lists beat numpy's per-call overhead


def count_missing(features: object) -> int | None:
    """How many feature values are None or NaN (NaT for datetimes); ``None`` for unknown inputs.

    Lists, tuples and dict values are looked into one level deep (a batch of rows or records).
    A scalar is one feature: a float counts 1 if NaN, other scalars and strings count 0.
    """
    try:
        t = type(features)
        if t is _ndarray:
            return _missing_array(features)
        if t is list or t is tuple:
            if features and (type(features[0]) is float or type(features[0]) is int):
                # Fast path: a flat numeric vector. A finite sum proves there is no NaN.
                try:
                    s = sum(features)
                except Exception:
                    s = None
                if type(s) is int or (type(s) is float and _isfinite(s)):
                    return 0
            return missing_items(features, 1)
        if t is dict:
            return missing_items(dict.values(features), 1)
        if t is float:
            return 1 if features != features else 0
        if t is int or t is bool or t is str or t is bytes:
            return 0
        return _missing_other(features)
    except Exception:
        return None


def _missing_array(a: np.ndarray) -> int | None:
    kind = a.dtype.kind
    if kind == "f" or kind == "c":
        if a.size <= SMALL:
            vals = a.tolist() if a.ndim == 1 else a.ravel().tolist()
            if kind == "f" and _isfinite(sum(vals)):
                return 0
            return sum(1 for v in vals if v != v)
        return int(np.count_nonzero(np.isnan(a)))
    if kind in "iub" or kind in "SU":
        return 0
    if kind in "mM":
        return int(np.count_nonzero(np.isnat(a)))
    if kind == "O":
        if a.size > MAX_ITEMS:
            return None
        return sum(1 for v in a.ravel().tolist() if is_missing(v))
    return None  # structured and other dtypes


def is_missing(v: object) -> bool:
    if v is None:
        return True
    t = type(v)
    if t is float:
        return v != v
    if t is str or t is int or t is bool:
        return False
    if isinstance(v, (float, np.floating)):
        return bool(v != v)
    if isinstance(v, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(v))
    mod = t.__module__
    return type(mod) is str and mod.startswith("pandas") and t.__name__ in ("NAType", "NaTType")


def missing_items(items: Iterable, depth: int) -> int | None:
    """Missing values among ``items``; containers inside are looked into while ``depth`` > 0."""
    n = 0
    budget = MAX_ITEMS
    for v in items:
        budget -= 1
        if budget < 0:
            return None
        if v is None:
            n += 1
            continue
        t = type(v)
        if t is float:
            if v != v:
                n += 1
        elif depth and (t is list or t is tuple):
            inner = missing_items(v, depth - 1)
            if inner is None:
                return None
            n += inner
        elif depth and t is dict:
            inner = missing_items(dict.values(v), depth - 1)
            if inner is None:
                return None
            n += inner
        elif depth and t is _ndarray:
            inner = _missing_array(v)
            if inner is None:
                return None
            n += inner
        elif t is not int and t is not str and is_missing(v):
            n += 1
    return n


def _missing_other(x: object) -> int | None:
    if isinstance(x, _ndarray):
        return _missing_array(np.asarray(x))
    if isinstance(x, np.generic) or x is None:
        return None if x is None else int(is_missing(x))
    if _is_pandas(x, "DataFrame") or _is_pandas(x, "Series"):
        mask = x.isna().to_numpy()
        return int(np.count_nonzero(mask)) if type(mask) is _ndarray else None
    if isinstance(x, (list, tuple)):
        return missing_items(x, 1)
    if isinstance(x, dict):
        return missing_items(dict.values(x), 1)
    if isinstance(x, float):
        return int(float.__float__(x) != float.__float__(x))
    if isinstance(x, (int, str, bytes)):
        return 0
    return None


# -- PII scrubbing --------------------------------------------------------------------------------

MAX_SCRUB_CHARS = 4096
TRUNCATION_MARKER = "...[truncated]"
# Every pattern below matches at most a few hundred characters, so scanning this far past the
# cut point sees any PII item that starts before it in full (and replaces it whole).
_LOOKAHEAD_CHARS = 1024

# Linear time by construction: each pattern is entered only at the start of a run (a negative
# lookbehind on the run's own characters), every repetition is bounded or ends at a character the
# run cannot contain, and no two quantifiers can split the same characters between them. Patterns
# begin with a character class and put that lookbehind after it ("X(?<![...].)" means "the
# character before X is not in [...]"), so the regex engine skips ahead to candidate characters
# instead of trying every position; the keyword and prefix patterns cannot, and run only when
# their gate (below) matched.
_EMAIL = re.compile(
    r"[A-Za-z0-9._%+\-](?<![\w.%+\-].)[A-Za-z0-9._%+\-]{0,63}"
    r"(?:@|%40)[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,8}\.[A-Za-z]{2,63}(?![\w\-])",
    re.ASCII,
)
_IBAN = re.compile(r"[A-Z](?<!\w.)[A-Z][0-9]{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])", re.ASCII)
# Cards: 13-19 digits, contiguous or in the printed groups (4-4-4-4, 4-4-4-4-3, Amex 4-6-5, Diners
# 4-6-4) separated by spaces, dots, dashes or underscores, mixed or not; Luhn-checked. A letter or
# "_" may come right before ("card_4111..."): only a digit (inside a longer number) or "digit."
# (the fraction of a decimal such as 0.4111111111111111) may not.
_SEP = r"[ .\-_]"
_CARD = re.compile(
    r"[2-6](?<![0-9].)(?<![0-9]\..)(?:"  # major networks start with 2-6: epoch-ms and ids starting 1 stay
    r"[0-9]{12,18}"  # contiguous
    rf"|[0-9]{{3}}{_SEP}[0-9]{{4}}{_SEP}[0-9]{{4}}{_SEP}[0-9]{{4}}(?:{_SEP}[0-9]{{3}})?"  # 4-4-4-4(-3)
    rf"|(?<=3)[0-9]{{3}}{_SEP}[0-9]{{6}}{_SEP}[0-9]{{4,5}}"  # Amex 4-6-5, Diners 4-6-4
    r")(?![0-9]|\.[0-9])",
    re.ASCII,
)
_NON_DIGITS = re.compile(r"[^0-9]+", re.ASCII)
# SSNs written 3-2-4 with dashes, spaces or dots (mixed or not), anywhere, identifiers included.
# Areas 000, 666 and 9xx, group 00 and serial 0000 are never issued.
_SSN = re.compile(
    r"[0-8](?<![0-9].)(?<![0-9][\-.].)[0-9]{2}(?<!000)(?<!666)[ .\-](?!00)[0-9]{2}[ .\-](?!0000)[0-9]{4}"
    r"(?![0-9]|[\-.][0-9])",
    re.ASCII,
)
# Nine digits in a row are an SSN only after a keyword within 16 characters ("ssn=123456789",
# "SSN: 123 45 6789", "tax id 123456789"): bare nine-digit runs are far more often order ids,
# ZIP+4 codes or phone numbers. The keyword stays; the digits are replaced.
_SSN_KEYWORD = re.compile(
    r"([SsTtIi](?<![A-Za-z].)(?i:sn|s\#|ocial[ _\-]?sec(?:urity)?|ax[ _\-]?(?:payer[ _\-]?)?id|in|tin))(?![A-Za-z])"
    r"[^0-9\n]{0,16}([0-9]{3}[ .\-]?[0-9]{2}[ .\-]?[0-9]{4})(?![0-9])",
    re.ASCII,
)
_SSN_WORDS = re.compile(
    r"(?:ssn|ss\#|social[ _\-]?sec(?:urity)?|tax[ _\-]?(?:payer[ _\-]?)?id|i?tin)\Z", re.ASCII
).match


def _prefixed(*alternatives: str) -> str:
    """Alternatives that each begin with a literal character, with "not inside a word" after it: the
    regex engine then skips ahead to those characters."""
    return "|".join(f"{re.escape(a[0])}(?<![A-Za-z0-9].){a[1:]}" for a in alternatives)


# Credentials with a recognisable shape, wherever they are: vendor key prefixes and JWTs.
_SECRET_PREFIXED = re.compile(
    "(?:"
    + _prefixed(
        r"sk-(?:proj-|live-|test-)?[A-Za-z0-9_\-]{16,}",  # OpenAI and compatible APIs
        r"sk_(?:live|test)_[A-Za-z0-9]{10,}",  # Stripe secret, publishable and restricted keys
        r"pk_(?:live|test)_[A-Za-z0-9]{10,}",
        r"rk_(?:live|test)_[A-Za-z0-9]{10,}",
        r"gh[pousr]_[A-Za-z0-9]{20,}",  # GitHub tokens
        r"github_pat_[A-Za-z0-9_]{20,}",
        r"AKIA[0-9A-Z]{16}",  # AWS access key ids
        r"ASIA[0-9A-Z]{16}",
        r"xox[abposr]-[A-Za-z0-9\-]{10,}",  # Slack
        r"AIza[0-9A-Za-z_\-]{35}",  # Google API keys
        r"glpat-[A-Za-z0-9_\-]{20,}",  # GitLab
        r"hf_[A-Za-z0-9]{30,}",  # Hugging Face
        r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",  # JWTs: base64url('{"') twice
    )
    + r")(?![A-Za-z0-9_\-])",
    re.ASCII,
)
# "Bearer <token>", "Basic <base64>", "token <token>": the credential is replaced, the scheme stays.
_AUTH_SCHEME = re.compile(
    r"[BbTt](?<![A-Za-z].)(?i:earer|asic|oken)[ \t]+([A-Za-z0-9._~+/\-]{8,}=*)(?![A-Za-z0-9._~+/\-])",
    re.ASCII,
)
# A credential-named parameter's value: "?api_key=...", "password: hunter2", '"token": "..."'.
_SECRET_PARAM = re.compile(
    r"(?<![A-Za-z0-9])(?i:api[_\-]?key|x[_\-]api[_\-]key|(?:access|refresh|id|auth)[_\-]?token"
    r"|token|secret|client[_\-]?secret|password|passwd|pwd|session[_\-]?id|private[_\-]?key|signature)"
    r"(?![A-Za-z0-9])[\"']?[ \t]*([=:])[ \t]*[\"']?([^\s&#;,\"'<>]{1,1024})",
    re.ASCII,
)
# A whole URL path segment or parameter value that looks random: 32+ hex digits, or 20+ base64url
# characters with both cases and a digit, unless they read as words (a run of 7 lowercase letters
# in CamelCase: model names such as Meta-Llama-3-70B-Instruct keep theirs). UUIDs (with their
# dashes) are ids, kept.
_TOKEN_SEGMENT = re.compile(r"[/=]([A-Za-z0-9_\-+]{20,}=*)(?![^/?&#;\s\"'])", re.ASCII)
_HEX = re.compile(r"[0-9a-fA-F]{32,}\Z", re.ASCII).match
_WORD = re.compile(r"[a-z]{7}", re.ASCII).search
_DIGIT = re.compile(r"[0-9]", re.ASCII).search
# IP candidates are runs of hex digits, colons and dots, validated by ``ipaddress``. A run may
# start after a ":" ("host:10.0.0.1"), so a rejected run is retried from its colons.
_IP = re.compile(r"[0-9A-Fa-f:](?<![\w.].)(?<!::)[0-9A-Fa-f:.]{2,44}(?![\w:])", re.ASCII)
_PHONE_INTL = re.compile(r"\+(?<![\w+].)[0-9](?:[ .\-]?\(?[0-9]\)?){6,14}(?![0-9])", re.ASCII)  # 7-15 digits
_PHONE_US = re.compile(  # NANP, separators required: 415-555-2671, (415) 555 2671, 1-800-555-0199
    r"(?<![\w+.\-])(?:1[ .\-]?)?"
    r"(?:\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[\-. ][0-9]{4}"
    r"|[2-9][0-9]{2}(?P<ps>[\-. ])[2-9][0-9]{2}(?P=ps)[0-9]{4})"
    r"(?![\w\-]|\.[0-9])",
    re.ASCII,
)
# Cheap gates: a detector runs only if its gate matches somewhere in the text.
_DIGIT_RUN = re.compile(r"[0-9][0-9 .\-()_]{5,}[0-9]", re.ASCII).search  # 7+ chars: every numeric kind
_IBAN_START = re.compile(r"[A-Z][A-Z][0-9][0-9]", re.ASCII).search  # unrolled: lets re skip ahead
_HEX_COLONS = re.compile(r"::|:[0-9A-Fa-f]{1,4}:", re.ASCII).search
_IPV4_PART = re.compile(r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\Z", re.ASCII).match
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_\-]{16}", re.ASCII).search  # every prefixed key, JWT and random segment
# Names of credentials and of SSNs: supersets of the keywords above (any case), matched from a
# character class so the engine skips ahead.
_SECRET_WORD = re.compile(r"[BbTtPpSsKk](?i:earer|asic|oken|ass|wd|ecret|ession|ignature|ey)", re.ASCII).search
_SSN_WORD = re.compile(r"[SsTtIi](?i:sn|s\#|ocial|ax|in)", re.ASCII).search


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_span(m: re.Match) -> tuple[int, int] | None:
    digits = _NON_DIGITS.sub("", m.group())
    return m.span() if 13 <= len(digits) <= 19 and _luhn(digits) else None


def _ssn_after_keyword(m: re.Match) -> tuple[int, int] | None:
    """The digits only (the keyword stays), if the keyword is one of ``_SSN_WORDS``."""
    return m.span(2) if _SSN_WORDS(m.group(1).lower()) else None


def _param_value(m: re.Match) -> tuple[int, int] | None:
    """``name=value`` always; ``name: value`` only if the value looks like a credential, not a word
    ("token: expected int" stays): 6+ characters with a digit, a symbol or both letter cases."""
    value = m.group(2)
    if m.group(1) == ":" and not (
        len(value) >= 6 and (not value.isalpha() or (not value.islower() and not value.isupper()))
    ):
        return None
    return m.span(2)


def _credential(m: re.Match) -> tuple[int, int] | None:
    """An authorization scheme's credential, unless it is a plain word ("Bearer authentication")."""
    if m.group().split(None, 1)[0].lower() not in ("bearer", "basic", "token"):
        return None
    return None if m.group(1).isalpha() and m.group(1).islower() else m.span(1)


def _random_segment(m: re.Match) -> tuple[int, int] | None:
    text = m.group(1).rstrip("=")
    if len(text) >= 32 and _HEX(text):
        return m.span(1) if not text.isdigit() and not text.isalpha() else None
    if text == text.lower() or text == text.upper():  # one case only: words, ids, lowercase hex (UUIDs)
        return None
    if _DIGIT(text) is None:
        return None
    return m.span(1) if _WORD(text) is None or not _word_like(text) else None


def _word_like(text: str) -> bool:
    """Letters that change case less than 4 times in 10 adjacent pairs: CamelCase words such as
    ResNet50ImageClassifier, where random text changes case every other letter."""
    pairs = changes = 0
    prev = ""
    for ch in text:
        if ch.isalpha():
            if prev:
                pairs += 1
                changes += prev.isupper() != ch.isupper()
            prev = ch
        else:
            prev = ""
    return changes < 0.4 * pairs


def _iban_ok(compact: str) -> bool:
    if not 15 <= len(compact) <= 34:
        return False
    s = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in s)) % 97 == 1


def _iban_span(m: re.Match) -> tuple[int, int] | None:
    """The longest valid IBAN in the candidate (it may have taken trailing capitalised words)."""
    text = m.group()
    cut = len(text)
    while cut > 0:
        if _iban_ok(text[:cut].replace(" ", "")):
            return m.start(), m.start() + cut
        cut = text.rfind(" ", 0, cut)
    return None


def _is_ipv4(s: str) -> bool:
    parts = s.split(".")
    return len(parts) == 4 and all(_IPV4_PART(p) for p in parts)


def _ip_span(m: re.Match) -> tuple[int, int] | None:
    start = m.start()
    core = m.group().rstrip(".")  # a sentence-final dot is not part of the address
    colons = core.count(":")
    if colons == 0:
        return (start, start + len(core)) if _is_ipv4(core) else None
    if colons == 1:  # IPv4:port
        host, _, port = core.partition(":")
        return (start, start + len(host)) if port.isdigit() and _is_ipv4(host) else None
    if "::" not in core and colons < 6:  # full IPv6 has 7 colons (6 before a dotted IPv4 tail)
        return None
    if not any(c.isdigit() for c in core):
        return None  # "dead::beef"-like words: valid, but far likelier prose or code than an address
    try:
        ipaddress.IPv6Address(core)
    except ValueError:
        return None
    return start, start + len(core)


def _whole(m: re.Match) -> tuple[int, int] | None:
    return m.span()


# (pattern, validator returning the span to replace or None, placeholder, gate), in priority
# order: a span claimed by an earlier detector is not matched again by a later one.
_EMAIL_GATE, _IBAN_GATE, _DIGIT_GATE, _IP_GATE, _TOKEN_GATE, _SECRET_WORD_GATE, _SSN_WORD_GATE = 1, 2, 4, 8, 16, 32, 64
_DETECTORS = (
    (_EMAIL, _whole, "<email>", _EMAIL_GATE),
    (_SECRET_PREFIXED, _whole, "<secret>", _TOKEN_GATE),
    (_AUTH_SCHEME, _credential, "<secret>", _SECRET_WORD_GATE),
    (_SECRET_PARAM, _param_value, "<secret>", _SECRET_WORD_GATE),
    (_TOKEN_SEGMENT, _random_segment, "<secret>", _TOKEN_GATE),
    (_IBAN, _iban_span, "<iban>", _IBAN_GATE),
    (_CARD, _card_span, "<card>", _DIGIT_GATE),
    (_SSN, _whole, "<ssn>", _DIGIT_GATE),
    (_SSN_KEYWORD, _ssn_after_keyword, "<ssn>", _SSN_WORD_GATE),
    (_IP, _ip_span, "<ip>", _IP_GATE),
    (_PHONE_INTL, _whole, "<phone>", _DIGIT_GATE),
    (_PHONE_US, _whole, "<phone>", _DIGIT_GATE),
)


def _gates(text: str) -> int:
    """Bit set of the gates ``text`` passes; 0 means no detector can match."""
    gates = 0
    if "@" in text or "%40" in text:
        gates |= _EMAIL_GATE
    if _TOKEN_RUN(text) is not None:
        gates |= _TOKEN_GATE
    if ("=" in text or ":" in text or " " in text or "\t" in text) and _SECRET_WORD(text) is not None:
        gates |= _SECRET_WORD_GATE
    if _DIGIT_RUN(text) is not None:
        gates |= _DIGIT_GATE | _IP_GATE
        if _SSN_WORD(text) is not None:
            gates |= _SSN_WORD_GATE
    if _IBAN_START(text) is not None:
        gates |= _IBAN_GATE
    if ":" in text and _HEX_COLONS(text) is not None:
        gates |= _IP_GATE
    return gates


def _find(text: str, first_only: bool) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, placeholder) PII spans, sorted by start."""
    gates = _gates(text)
    if not gates:
        return []
    starts: list[int] = []
    spans: list[tuple[int, int, str]] = []
    for pattern, validate, placeholder, gate in _DETECTORS:
        if not gates & gate:
            continue
        for m in pattern.finditer(text):
            span = validate(m)
            if span is None:
                continue
            start, end = span
            i = bisect.bisect_right(starts, start)
            if i and spans[i - 1][1] > start:
                continue
            if i < len(spans) and spans[i][0] < end:
                continue
            starts.insert(i, start)
            spans.insert(i, (start, end, placeholder))
            if first_only:
                return spans
    return spans


def scrub(text: str) -> str:
    """``text`` with emails, phones, cards, SSNs, IBANs, IP addresses and credentials replaced by placeholders.

    What each detector catches, and what it cannot: docs/guarantees.md.

    Texts longer than ``MAX_SCRUB_CHARS`` are cut there and end with ``TRUNCATION_MARKER``; an
    item straddling the cut is replaced whole. Non-``str`` input gives ``""``. Never raises.
    """
    try:
        if type(text) is not str:
            if not isinstance(text, str):
                return ""
            text = str.__str__(text)
        n = len(text)
        truncated = n > MAX_SCRUB_CHARS
        cut = MAX_SCRUB_CHARS if truncated else n
        window = text[: cut + _LOOKAHEAD_CHARS] if truncated else text
        spans = _find(window, False)
        if not spans and not truncated:
            return text
        parts = []
        pos = 0
        for start, end, placeholder in spans:
            if start >= cut:
                break
            parts.append(window[pos:start])
            parts.append(placeholder)
            pos = end
        if pos < cut:
            parts.append(window[pos:cut])
        if truncated:
            parts.append(TRUNCATION_MARKER)
        return "".join(parts)
    except Exception:
        return ""


def scrub_capped(text: str, max_chars: int) -> str:
    """``scrub(text)`` in at most ``max_chars`` characters, ending with ``TRUNCATION_MARKER`` when cut.

    For attribute values with a length limit of their own (prediction labels). Never raises.
    """
    try:
        if type(text) is not str:
            if not isinstance(text, str):
                return ""
            text = str.__str__(text)
        # Enough past the cut for any PII item that starts before it to be seen whole.
        out = scrub(text[: max_chars + _LOOKAHEAD_CHARS])
        if len(out) <= max_chars and len(text) <= max_chars + _LOOKAHEAD_CHARS:
            return out
        return out[: max(0, max_chars - len(TRUNCATION_MARKER))] + TRUNCATION_MARKER
    except Exception:
        return ""


def contains_pii(text: str) -> bool:
    """Whether ``scrub`` would replace anything in ``text`` (only its first ``MAX_SCRUB_CHARS``)."""
    try:
        if not isinstance(text, str):
            return False
        text = str.__str__(text)
        if len(text) <= MAX_SCRUB_CHARS:
            return bool(_find(text, True))
        window = text[: MAX_SCRUB_CHARS + _LOOKAHEAD_CHARS]
        return any(start < MAX_SCRUB_CHARS for start, _, _ in _find(window, False))
    except Exception:
        return False


def scrub_attributes(attrs: Mapping[str, object]) -> dict[str, object]:
    """A copy of ``attrs`` with string values (and strings in sequence values) scrubbed."""
    out: dict[str, object] = {}
    try:
        for key, value in attrs.items():
            t = type(value)
            if t is str or isinstance(value, str):
                out[key] = scrub(value)
            elif t is list or t is tuple:
                out[key] = t(scrub(v) if isinstance(v, str) else v for v in value)
            else:
                out[key] = value
    except Exception:
        return out
    return out


# -- allow-listed raw features --------------------------------------------------------------------

MAX_RAW_STR = 256


class AllowList:
    """Feature names whose raw values may be exported (opt-in, per name; empty by default)."""

    __slots__ = ("names", "max_str_len", "_cache")

    def __init__(self, names: Iterable[str] = (), max_str_len: int = MAX_RAW_STR) -> None:
        self.names = tuple(dict.fromkeys(n for n in names if isinstance(n, str)))
        self.max_str_len = max_str_len
        self._cache: tuple[tuple, list[tuple[str, int]]] | None = None  # feature_names -> positions

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __len__(self) -> int:
        return len(self.names)

    def raw_features(self, features: object, feature_names: Iterable[str] | None = None) -> dict[str, object]:
        """Allow-listed values of one input, coerced to str/int/float/bool; ``{}`` if none apply.

        Strings are scrubbed (``scrub``) and cut to ``max_str_len`` characters (then "..." marks the cut).

        ``features`` is a mapping (looked up by name) or a sequence/1-D array (positions given by
        ``feature_names``); a single-row batch is unwrapped, larger batches give ``{}``. Names
        not on the list never appear; values of other types are skipped.
        """
        out: dict[str, object] = {}
        if not self.names:
            return out
        try:
            row = _single_row(features)
            if row is None:
                return out
            if isinstance(row, Mapping):
                get = dict.get if isinstance(row, dict) else type(row).get
                for name in self.names:
                    v = _coerce(get(row, name, None), self.max_str_len)
                    if v is not None:
                        out[name] = v
                return out
            if feature_names is None:
                return out
            n = len(row)
            for name, i in self._positions(feature_names):
                if i < n:
                    v = _coerce(row[i], self.max_str_len)
                    if v is not None:
                        out[name] = v
        except Exception:
            return {}
        return out

    def _positions(self, feature_names: Iterable[str]) -> list[tuple[str, int]]:
        key = tuple(feature_names)
        cache = self._cache
        if cache is not None and cache[0] == key:
            return cache[1]
        index = {}
        for i, name in enumerate(key):
            index.setdefault(name, i)
        positions = [(name, index[name]) for name in self.names if name in index]
        self._cache = (key, positions)
        return positions


def _single_row(x: object) -> object:
    """The one input in ``x`` (unwrapping a batch of one); ``None`` for larger batches."""
    t = type(x)
    if t is dict:
        return x
    if t is _ndarray or isinstance(x, _ndarray):
        if x.ndim == 1:
            return x
        if x.ndim == 2 and x.shape[0] == 1:
            return x[0]
        return None
    if t is list or t is tuple or isinstance(x, (list, tuple)):
        if len(x) == 1 and isinstance(x[0], (list, tuple, dict, _ndarray)):
            return _single_row(x[0])
        if x and isinstance(x[0], (list, tuple, dict, _ndarray)):
            return None
        return x
    if isinstance(x, Mapping):
        return x
    return None


def _coerce(v: object, max_len: int) -> str | int | float | bool | None:
    """An OTel-exportable scalar, or ``None`` to skip the value."""
    t = type(v)
    if t is float or t is bool:
        return v
    if t is int:
        return v if -(1 << 63) <= v < (1 << 63) else None
    if t is str:  # scrubbed like every exported text, opted-in values included; cut after scrubbing
        return scrub(v) if len(v) <= max_len else scrub(v[: max_len + _LOOKAHEAD_CHARS])[:max_len] + "..."
    if isinstance(v, np.generic):
        return _coerce(v.item(), max_len) if not isinstance(v, (np.void, np.bytes_)) else None
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, float):
        return float.__float__(v)
    if isinstance(v, int):
        return _coerce(int.__index__(v), max_len)
    if isinstance(v, str):
        return _coerce(str.__str__(v), max_len)
    return None


_ALLOW_LISTS: dict[tuple, AllowList] = {}


def raw_features(
    features: object, allowed: Iterable[str], feature_names: Iterable[str] | None = None
) -> dict[str, object]:
    """``AllowList(allowed).raw_features(features, feature_names)``, reusing the list per ``allowed``."""
    try:
        key = tuple(allowed)
        if not key:
            return {}
        allow = _ALLOW_LISTS.get(key)
        if allow is None:
            if len(_ALLOW_LISTS) >= 256:
                _ALLOW_LISTS.clear()
            allow = _ALLOW_LISTS[key] = AllowList(key)
        return allow.raw_features(features, feature_names)
    except Exception:
        return {}
