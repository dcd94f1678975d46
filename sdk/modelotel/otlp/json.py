"""OTLP/JSON lines, written the way the OpenTelemetry Collector's ``file`` exporter writes them.

The collector's ``file`` exporter (contrib ``exporter/fileexporter``, default ``format: json``)
marshals each batch with pdata's ``JSONMarshaler`` and appends it plus ``"\\n"``. This module builds
the OTLP protobuf request with the SDK's official encoders and walks it with a small serialiser
that follows pdata's generated marshalers (``pdata/internal/generated_proto_*.go``, string/number
rules in ``pdata/internal/json/stream.go`` on top of json-iterator's ``Stream``):

* compact JSON, no spaces; lowerCamelCase field names; fields in ``.proto`` declaration order,
  except ``Exemplar`` (pdata writes ``traceId`` before ``spanId``);
* proto3 scalars and repeated fields are omitted when zero/empty; oneof members and ``optional``
  fields (``sum``/``min``/``max``) are written whenever set, even when zero;
* non-oneof sub-messages are always written, even when empty: ``resource``, ``scope``,
  ``KeyValue.value``, exponential histogram ``positive``/``negative``, ``Span.status`` (``{}``);
* 64-bit integers (``*UnixNano``, ``count``, ``bucketCounts``, ``intValue``, ``asInt``) are JSON
  strings; 32-bit integers and enums (``kind``, ``code``, ``aggregationTemporality``) are numbers;
* ``traceId``/``spanId``/``parentSpanId`` are lowercase hex and omitted when all-zero; other bytes
  are standard padded base64;
* doubles use Go's shortest round-trip digits, in fixed notation unless ``|x| < 1e-6`` or
  ``|x| >= 1e21`` (``1.0`` -> ``1``, ``1e-7`` -> ``1e-07``, ``1e21`` -> ``1e+21``, ``-0.0`` -> ``-0``);
  NaN and infinities are the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
* strings escape only ``"``, ``\\``, ``\\n``, ``\\r``, ``\\t`` and other controls (``\\u00XX``,
  lowercase hex); everything else, including non-ASCII and ``<>&``, is written raw as UTF-8.

Checked byte-for-byte against pdata v1.70.0 for SDK-produced metrics and spans and for
hand-built requests covering every AnyValue kind and the float edge cases.

Remaining differences, by construction rather than by choice:

* The collector writes what *it* holds: fields its pdata version knows and the Python proto does
  not (e.g. ``deprecatedScopeMetrics``) never appear here, and a field newer than the collector's
  pdata would appear here but not there. For the protos this SDK ships the field sets are equal.
* An export with no resource metrics/spans writes no line (the collector would write ``{}``).
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.metrics.view import Aggregation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

from .._otel_compat import instrumentation_scope, metric_exporter_mixin, metrics_encoder, span_encoder
from ..config import DEFAULT_FILE_BACKUPS, DEFAULT_FILE_MAX_BYTES
from ..tracing.span import UNSET_STATUS
from .file_append import LineAppender

__all__ = [
    "OTLPJsonFileMetricExporter",
    "OTLPJsonFileSpanExporter",
    "json_line_to_proto",
    "light_spans_to_json_line",
    "light_spans_to_json_parts",
    "message_to_json",
    "metrics_to_json_line",
    "read_json_lines",
    "spans_to_json_line",
]

_logger = logging.getLogger("modelotel.otlp_json")  # its name before the move (users may filter on it)

encode_metrics = metrics_encoder()
encode_spans = span_encoder()
OTLPMetricExporterMixin = metric_exporter_mixin()

# --------------------------------------------------------------------------- serialiser

_F = FieldDescriptor
_INT64_TYPES = frozenset({_F.TYPE_INT64, _F.TYPE_UINT64, _F.TYPE_FIXED64, _F.TYPE_SFIXED64, _F.TYPE_SINT64})
_HEX_ID_FIELDS = frozenset({"trace_id", "span_id", "parent_span_id"})
_HEX_ID_JSON_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})
# pdata's generator does not follow declaration order here (proto declares span_id first).
_ORDER_OVERRIDES: dict[str, tuple[str, ...]] = {
    "opentelemetry.proto.metrics.v1.Exemplar": (
        "filtered_attributes",
        "time_unix_nano",
        "as_double",
        "as_int",
        "trace_id",
        "span_id",
    ),
}

# json-iterator (no HTML escaping): only '"', '\\' and bytes < 0x20 are escaped; \b and \f as \u00XX.
_ESCAPES = {c: f"\\u{c:04x}" for c in range(0x20)}
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def _quote(s: str) -> str:
    return '"' + s.translate(_ESCAPES) + '"'


def _format_double(v: float) -> str:
    """Go ``strconv.AppendFloat(v, 'f'|'e', -1, 64)`` as json-iterator picks it, plus pdata's specials."""
    if math.isnan(v):
        return '"NaN"'
    if math.isinf(v):
        return '"Infinity"' if v > 0 else '"-Infinity"'
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    r = repr(v)  # shortest round-trip digits, same digit string Go picks
    a = abs(v)
    if a < 1e-6 or a >= 1e21:
        # repr is already in exponent form with >= 2 exponent digits, exactly Go's 'e' format.
        # (json-iterator master shortens "e-07" to "e-7"; v1.1.12, which pdata pins, does not.)
        return r
    if "e" in r:
        r = format(Decimal(r), "f")
    if "." in r:
        r = r.rstrip("0").rstrip(".")
    return r


def _format_int64(v: int) -> str:
    return f'"{v}"'


def _format_bool(v: bool) -> str:
    return "true" if v else "false"


def _format_bytes(v: bytes) -> str:
    return '"' + base64.b64encode(v).decode("ascii") + '"'


def _scalar_formatter(field: FieldDescriptor) -> Any:
    t = field.type
    if t in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        return _format_double
    if t in _INT64_TYPES:
        return _format_int64
    if t == _F.TYPE_BOOL:
        return _format_bool
    if t == _F.TYPE_STRING:
        return _quote
    if t == _F.TYPE_BYTES:
        return _format_bytes
    return str  # 32-bit ints and enums: plain JSON numbers


# Field kinds of the precomputed per-message plan.
_K_SCALAR, _K_PRESENCE, _K_HEX_ID, _K_REPEATED, _K_REPEATED_MSG, _K_MSG, _K_MSG_ALWAYS = range(7)
_PLANS: dict[str, list[tuple[str, str, int, Any]]] = {}


def _is_repeated(field: FieldDescriptor) -> bool:
    # protobuf >= 5 has is_repeated; protobuf 7 dropped .label.
    is_repeated = getattr(field, "is_repeated", None)
    return bool(is_repeated) if is_repeated is not None else field.label == _F.LABEL_REPEATED


def _plan(desc: Descriptor) -> list[tuple[str, str, int, Any]]:
    plan = _PLANS.get(desc.full_name)
    if plan is not None:
        return plan
    fields = list(desc.fields)
    order = _ORDER_OVERRIDES.get(desc.full_name)
    if order is not None:
        fields.sort(key=lambda f: order.index(f.name) if f.name in order else len(order) + f.index)
    plan = []
    for f in fields:
        key = _quote(f.json_name) + ":"
        is_msg = f.type == _F.TYPE_MESSAGE
        if _is_repeated(f):
            kind = _K_REPEATED_MSG if is_msg else _K_REPEATED
        elif is_msg:
            # pdata embeds non-oneof sub-messages by value, so it always writes them.
            kind = _K_MSG if f.containing_oneof is not None else _K_MSG_ALWAYS
        elif f.type == _F.TYPE_BYTES and f.name in _HEX_ID_FIELDS:
            kind = _K_HEX_ID
        elif f.containing_oneof is not None:  # real oneofs and proto3 `optional` (synthetic oneof)
            kind = _K_PRESENCE
        else:
            kind = _K_SCALAR
        plan.append((f.name, key, kind, None if is_msg else _scalar_formatter(f)))
    _PLANS[desc.full_name] = plan  # a racing thread at worst builds the same plan twice
    return plan


def _write(msg: Message, out: list[str]) -> None:
    out.append("{")
    sep = ""
    for name, key, kind, fmt in _plan(msg.DESCRIPTOR):
        if kind == _K_SCALAR:
            value = getattr(msg, name)
            if not value:
                continue
            out.append(sep + key + fmt(value))
        elif kind == _K_PRESENCE:
            if not msg.HasField(name):
                continue
            out.append(sep + key + fmt(getattr(msg, name)))
        elif kind == _K_HEX_ID:
            value = getattr(msg, name)
            if not any(value):
                continue
            out.append(sep + key + '"' + value.hex() + '"')
        elif kind == _K_REPEATED:
            values = getattr(msg, name)
            if not values:
                continue
            out.append(sep + key + "[" + ",".join(map(fmt, values)) + "]")
        elif kind == _K_REPEATED_MSG:
            values = getattr(msg, name)
            if not values:
                continue
            out.append(sep + key + "[")
            for i, item in enumerate(values):
                if i:
                    out.append(",")
                _write(item, out)
            out.append("]")
        else:
            if kind == _K_MSG and not msg.HasField(name):
                continue
            out.append(sep + key)
            _write(getattr(msg, name), out)
        sep = ","
    out.append("}")


def message_to_json(msg: Message) -> str:
    """Serialise any OTLP protobuf message the way pdata's JSONMarshaler does (no trailing newline)."""
    out: list[str] = []
    _write(msg, out)
    return "".join(out)


def metrics_to_json_line(metrics_data: MetricsData) -> str:
    """One collector-style OTLP/JSON line (without the trailing newline) for SDK ``MetricsData``."""
    return message_to_json(encode_metrics(metrics_data))


def spans_to_json_line(spans: Sequence[ReadableSpan]) -> str:
    """One collector-style OTLP/JSON line (without the trailing newline) for SDK spans.

    The resource of each ``ResourceSpans`` is the spans' own ``ReadableSpan.resource``, grouped
    exactly as the SDK's OTLP exporters group them.
    """
    return message_to_json(encode_spans(spans))


# --------------------------------------------------------------------------- modelotel's spans, fast
#
# ``light_spans_to_json_line`` writes modelotel's LightSpans (tracing/span.py) straight to the same bytes
# that ``spans_to_json_line`` produces for the equivalent ReadableSpans, without building protobuf
# messages: the resource/scope framing is made once per tracer by the generic serialiser above, and
# each span is one f-string. Attribute values repeat (methods, routes, status codes, model names),
# so their encodings are cached per key until a key shows more than _KV_CACHE_PER_KEY distinct values.

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_KV_CACHE_PER_KEY = 256
_KV_CACHE_MAX = 16_384
_STR_KV: dict[tuple[str, str], str] = {}  # (key, string value) -> '{"key":..,"value":{"stringValue":..}}'
_STR_KV_GET = _STR_KV.get
_TYPED_KV: dict[tuple[str, type, Any], str] = {}  # (key, int or bool, value) -> its KeyValue JSON, or ""
_KEY_HEADS: dict[str, str] = {}  # key -> '{"key":"..","value":'
_KV_SEEN: dict[str, int] = {}  # key -> string values cached
_KV_UNCACHED: set[str] = set()
_encode_basestring = json.encoder.encode_basestring  # C; escapes like pdata except \b and \f


def _quote_fast(s: str) -> str:
    q = _encode_basestring(s)
    # json writes \b and \f where pdata writes \u0008 and \u000c (a literal backslash followed by
    # b or f also matches here; _quote is exact either way).
    return _quote(s) if ("\\b" in q or "\\f" in q) else q


class _Unencodable(Exception):
    """A value the SDK's OTLP encoder would refuse (and drop, with a log line)."""


def _any_value_json(v: Any) -> str:
    """``message_to_json`` of the SDK's ``_encode_value(v)``."""
    if v is None:
        return "{}"
    if v is True:
        return '{"boolValue":true}'
    if v is False:
        return '{"boolValue":false}'
    if isinstance(v, str):
        if not v.isascii() and not _is_utf8(v):
            raise _Unencodable("not valid UTF-8")
        return '{"stringValue":' + _quote_fast(v) + "}"
    if isinstance(v, int):
        if not _INT64_MIN <= v <= _INT64_MAX:
            raise _Unencodable(f"integer {v} is outside int64")
        return '{"intValue":"' + str(int(v)) + '"}'
    if isinstance(v, float):
        return '{"doubleValue":' + _format_double(v) + "}"
    if isinstance(v, bytes):
        return '{"bytesValue":' + _format_bytes(v) + "}" if v else '{"bytesValue":""}'
    if isinstance(v, Sequence):
        if not v:
            return '{"arrayValue":{}}'
        return '{"arrayValue":{"values":[' + ",".join(map(_any_value_json, v)) + "]}}"
    if isinstance(v, Mapping):
        if not v:
            return '{"kvlistValue":{}}'
        return '{"kvlistValue":{"values":[' + ",".join(_kv_json(str(k), x) for k, x in v.items()) + "]}}"
    raise _Unencodable(f"invalid type {type(v).__name__}")


def _kv_json(key: str, value: Any) -> str:
    head = '{"key":' + _quote_fast(key) + ',"value":' if key else '{"value":'
    return head + _any_value_json(value) + "}"


def _kv_json_or_empty(key: str, value: Any) -> str:
    try:
        return _kv_json(key, value)
    except _Unencodable as exc:
        _logger.warning("Failed to encode key %s: %s", key, exc)
        return ""


def _double_json(v: float) -> str:
    """``_format_double``, with a shortcut where ``repr`` already gives Go's digits (1e-4 <= |v| < 1e16)."""
    if 1e-4 <= abs(v) < 1e16:
        r = repr(v)  # fixed notation here, shortest round-trip digits, no trailing zeros but ".0"
        return r[:-2] if r.endswith(".0") else r
    return _format_double(v)


def _is_utf8(text: str) -> bool:
    """False for strings with lone surrogates, which protobuf (so the SDK's encoder) refuses."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _kv_miss(key: str, value: Any) -> str:
    """One KeyValue's JSON (``""`` if unencodable), remembering string values of low-cardinality keys."""
    t = type(value)
    if t is str:
        if not value.isascii() and not _is_utf8(value):
            _logger.warning("Failed to encode key %s: not valid UTF-8", key)  # as the SDK: dropped
            return ""
        head = _KEY_HEADS.get(key)
        if head is None:
            head = '{"key":' + _quote_fast(key) + ',"value":' if key else '{"value":'
            if len(_KEY_HEADS) < _KV_CACHE_MAX:
                _KEY_HEADS[key] = head
        encoded = head + '{"stringValue":' + _quote_fast(value) + "}}"
        if key not in _KV_UNCACHED:
            seen = _KV_SEEN.get(key, 0)
            if seen >= _KV_CACHE_PER_KEY or len(_STR_KV) >= _KV_CACHE_MAX:
                _KV_UNCACHED.add(key)  # a high-cardinality key (ids, paths), or a full cache: stop caching it
            else:
                _KV_SEEN[key] = seen + 1
                _STR_KV[(key, value)] = encoded
        return encoded
    if t is int or t is bool:
        typed_key = (key, t, value)  # with the type: True == 1
        encoded = _TYPED_KV.get(typed_key)
        if encoded is None:
            encoded = _kv_json_or_empty(key, value)
            if len(_TYPED_KV) < _KV_CACHE_MAX:
                _TYPED_KV[typed_key] = encoded
        return encoded
    if t is float:
        head = _KEY_HEADS.get(key) or ('{"key":' + _quote_fast(key) + ',"value":' if key else '{"value":')
        return head + '{"doubleValue":' + _double_json(value) + "}}"
    return _kv_json_or_empty(key, value)


def _attributes_json(attributes: Mapping[str, Any]) -> str:
    """The inside of a KeyValue list; values the SDK could not encode are left out (and logged), as it does.

    Each (key, value) item is looked up as it is in ``_STR_KV``; only string values are stored there,
    so an int, bool or float never meets another type's encoding (True == 1 == 1.0).
    """
    out = []
    try:
        for item in attributes.items():
            encoded = _STR_KV_GET(item)
            if encoded is None:
                encoded = _kv_miss(*item)
                if not encoded:
                    continue
            out.append(encoded)
    except TypeError:  # an unhashable value (a list): no lookups at all
        out = [e for e in (_kv_miss(k, v) for k, v in attributes.items()) if e]
    return ",".join(out)


# OTLP numbers INTERNAL as 1, the API as 0; keyed by identity (Enum.__hash__ is Python code).
_PROTO_KIND = {id(kind): kind.value + 1 for kind in SpanKind}
_UNSET_CODE = StatusCode.UNSET
_ERROR_CODE = StatusCode.ERROR


_QUOTED_NAMES: dict[str, str] = {}  # span name -> ',"name":"..."' (names are few: method + route, model)


def _status_json(status: Any) -> str:
    code = status.status_code
    message = status.description
    code_json = "" if code is _UNSET_CODE else (',"code":2' if code is _ERROR_CODE else ',"code":1')
    if message:
        return '{"message":' + _quote_fast(message) + code_json + "}"
    return "{" + code_json[1:] + "}"


def _light_span_json(s: Any, end: str = "}") -> str:
    """``message_to_json`` of the SDK's ``_encode_span`` for the ReadableSpan of LightSpan ``s``.

    ``end`` closes the object: ``"},"`` puts the list separator in the same string (one allocation less).
    """
    ts = s.trace_state
    parent_id = s.parent_id
    name = s.name
    quoted = _QUOTED_NAMES.get(name)
    if quoted is None:
        quoted = (',"name":' + _quote_fast(name)) if name else ""
        if len(_QUOTED_NAMES) < 4096:
            _QUOTED_NAMES[name] = quoted
    attrs = s.attributes
    status = s.status
    return "".join(
        (
            '{"traceId":"',
            s.trace_id.to_bytes(16, "big").hex(),
            '","spanId":"',
            s.span_id.to_bytes(8, "big").hex(),
            '"',
            (',"traceState":' + _quote_fast(",".join(f"{k}={v}" for k, v in ts.items()))) if ts else "",
            (
                ',"parentSpanId":"'
                + parent_id.to_bytes(8, "big").hex()
                + ('","flags":768' if s.parent_remote else '","flags":256')
            )
            if parent_id
            else ',"flags":256',
            quoted,
            f',"kind":{_PROTO_KIND[id(s.kind)]},"startTimeUnixNano":"{s.start_time}","endTimeUnixNano":"{s.end_time}"',
            (',"attributes":[' + _attributes_json(attrs) + "]") if attrs else "",
            _events_json(s.events) if s.events else "",
            ',"status":{}' if status is UNSET_STATUS else ',"status":' + _status_json(status),
            end,
        )
    )


def _events_json(events: Sequence[tuple[str, Mapping[str, Any], int]]) -> str:
    out = []
    for name, attrs, time_ns in events:
        encoded = _attributes_json(attrs) if attrs else ""
        out.append(
            f'{{"timeUnixNano":"{time_ns}"'
            + ((',"name":' + _quote_fast(name)) if name else "")
            + ((',"attributes":[' + encoded + "]}") if encoded else "}")
        )
    return ',"events":[' + ",".join(out) + "]"


_MARK = "modelotel-framing-\x01"


def _framing(resource: Any, scope: Any) -> tuple[str, str, str, str]:
    """(resource head, scope head, scope tail, resource tail) around the spans of one resource/scope."""
    placeholder = ReadableSpan(
        name=_MARK, context=SpanContext(1, 1, False), resource=resource, instrumentation_scope=scope
    )
    rs = encode_spans([placeholder]).resource_spans[0]
    ss = rs.scope_spans[0]
    rs_json, ss_json, span_json = message_to_json(rs), message_to_json(ss), message_to_json(ss.spans[0])
    scope_head, scope_tail = ss_json.split(span_json)
    resource_head, resource_tail = rs_json.split(ss_json)
    return resource_head, scope_head, scope_tail, resource_tail


_FRAMINGS: dict[int, tuple[Any, Any, tuple[str, str, str, str]]] = {}


def light_spans_to_json_parts(spans: Sequence[Any]) -> list[bytes]:
    """One collector-style OTLP/JSON line for LightSpans, as UTF-8 pieces to write one after the other.

    Joined, they are the bytes ``spans_to_json_line`` gives for the same spans as ReadableSpans
    (grouped by resource, then instrumentation scope, in first-seen order). Pieces, not one string:
    a batch is some 300 kB, and every fresh allocation of that size costs page faults (``mmap``),
    which measured more than the encoding itself. A name that is not valid UTF-8 is written with
    ``?`` in place of its lone surrogates (the SDK's encoder would fail the whole batch).
    """
    # resource -> scope -> span pieces; keyed by identity (Resource.__hash__ serialises the resource).
    groups: dict[int, dict[int, tuple[tuple[bytes, bytes, bytes, bytes], list[bytes]]]] = {}
    last_tracer: Any = None
    group: Any = None
    for s in spans:
        tracer = s.tracer
        if tracer is not last_tracer:
            last_tracer = tracer
            entry = _FRAMINGS.get(id(tracer))
            if entry is None or entry[0] is not tracer:
                scope = instrumentation_scope(tracer)
                framing = tuple(p.encode("utf-8", "replace") for p in _framing(tracer.resource, scope))
                entry = (tracer, scope, framing)
                if len(_FRAMINGS) > 64:
                    _FRAMINGS.clear()
                _FRAMINGS[id(tracer)] = entry
            scopes = groups.get(id(tracer.resource))
            if scopes is None:
                scopes = groups[id(tracer.resource)] = {}
            group = scopes.get(id(entry[1]))
            if group is None:
                group = scopes[id(entry[1])] = (entry[2], [])
            group = group[1]
        group.append(_light_span_json(s, "},").encode("utf-8", "replace"))
    out = [b'{"resourceSpans":[']
    for i, scopes in enumerate(groups.values()):
        for j, ((r_head, s_head, s_tail, _), encoded) in enumerate(scopes.values()):
            if j == 0:
                out.append(b"," + r_head if i else r_head)
            out.append(b"," + s_head if j else s_head)
            encoded[-1] = encoded[-1][:-1]  # each span carries its separator, the last one none
            out += encoded
            out.append(s_tail)
        out.append(next(iter(scopes.values()))[0][3])  # the resource's tail
    out.append(b"]}")
    return out


def light_spans_to_json_line(spans: Sequence[Any]) -> str:
    """``light_spans_to_json_parts`` as one string (without the trailing newline)."""
    return b"".join(light_spans_to_json_parts(spans)).decode("utf-8")


def _hex_ids_to_base64(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {
            k: (
                base64.b64encode(bytes.fromhex(v)).decode("ascii")
                if k in _HEX_ID_JSON_KEYS and isinstance(v, str)
                else _hex_ids_to_base64(v)
            )
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_hex_ids_to_base64(v) for v in obj]
    return obj


def _parse_int(text: str) -> int | float:
    return -0.0 if text == "-0" else int(text)


def json_line_to_proto(
    line: str | bytes | Mapping[str, Any],
    message: Message | None = None,
    *,
    ignore_unknown_fields: bool = False,
) -> Message:
    """Parse one OTLP/JSON line (collector form) back into its protobuf export request.

    ``message`` defaults to an ``ExportTraceServiceRequest`` when the line has ``resourceSpans`` and
    an ``ExportMetricsServiceRequest`` otherwise. Hex ids are converted to the base64 that
    ``google.protobuf.json_format`` expects for bytes.
    """
    # pdata writes the double -0.0 as "-0"; keep its sign (integer fields never contain "-0").
    obj = json.loads(line, parse_int=_parse_int) if isinstance(line, (str, bytes)) else dict(line)
    if message is None:
        message = ExportTraceServiceRequest() if "resourceSpans" in obj else ExportMetricsServiceRequest()
    return json_format.ParseDict(_hex_ids_to_base64(obj), message, ignore_unknown_fields=ignore_unknown_fields)


def read_json_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """Yield ``(line_number, obj)`` per non-blank line of a plain or gzip file; ``obj`` is None if corrupt."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    with opener(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:  # JSONDecodeError and UnicodeDecodeError
                obj = None
            yield number, obj if isinstance(obj, dict) else None


# --------------------------------------------------------------------------- exporters


class OTLPJsonFileMetricExporter(MetricExporter, OTLPMetricExporterMixin):
    """Appends one collector-format OTLP/JSON line per export to ``path`` (file_append.LineAppender: locked,
    fork-safe, rotated past ``max_bytes`` into ``path.1`` ... ``path.<backups>``; 0 turns rotation off).

    Temporality and aggregation preferences (and their ``OTEL_EXPORTER_OTLP_METRICS_*`` environment
    variables) behave as in the SDK's OTLP metric exporters.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        preferred_temporality: dict[type, AggregationTemporality] | None = None,
        preferred_aggregation: dict[type, Aggregation] | None = None,
        *,
        max_bytes: int = DEFAULT_FILE_MAX_BYTES,
        backups: int = DEFAULT_FILE_BACKUPS,
    ) -> None:
        self._common_configuration(preferred_temporality, preferred_aggregation)
        self._appender = LineAppender(path, type(self).__name__, max_bytes=max_bytes, backups=backups)

    @property
    def path(self) -> str:
        return self._appender.path

    @property
    def failure(self) -> str | None:
        """Why the last failed export failed (None after a success)."""
        return self._appender.failure

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        if not self._appender.accepting():
            return MetricExportResult.FAILURE
        try:
            request = encode_metrics(metrics_data)
        except Exception:
            _logger.exception("%s: could not encode metrics", type(self).__name__)
            return MetricExportResult.FAILURE
        if not request.resource_metrics:
            return MetricExportResult.SUCCESS
        ok = self._appender.append(message_to_json(request))
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True  # every export is a completed os.write; nothing is buffered here

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._appender.shutdown()


class OTLPJsonFileSpanExporter(SpanExporter):
    """Appends one collector-format OTLP/JSON line per export to ``path`` (as OTLPJsonFileMetricExporter)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_FILE_MAX_BYTES,
        backups: int = DEFAULT_FILE_BACKUPS,
    ) -> None:
        self._appender = LineAppender(path, type(self).__name__, max_bytes=max_bytes, backups=backups)

    @property
    def path(self) -> str:
        return self._appender.path

    @property
    def failure(self) -> str | None:
        """Why the last failed export failed (None after a success)."""
        return self._appender.failure

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self._appender.accepting():
            return SpanExportResult.FAILURE
        try:
            request = encode_spans(spans)
        except Exception:
            _logger.exception("%s: could not encode spans", type(self).__name__)
            return SpanExportResult.FAILURE
        if not request.resource_spans:
            return SpanExportResult.SUCCESS
        ok = self._appender.append(message_to_json(request))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def export_light(self, spans: Sequence[Any]) -> SpanExportResult:
        """Export modelotel's LightSpans (tracing.queue.SpanQueue calls this): same line, far less work."""
        if not spans:
            return SpanExportResult.SUCCESS
        if not self._appender.accepting():
            return SpanExportResult.FAILURE
        try:
            parts = light_spans_to_json_parts(spans)
        except Exception:
            _logger.exception("%s: could not encode spans", type(self).__name__)
            return SpanExportResult.FAILURE
        ok = self._appender.append_parts(parts)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        self._appender.shutdown()
