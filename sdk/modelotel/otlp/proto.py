"""modelotel's spans as an OTLP ``ExportTraceServiceRequest`` in protobuf wire format, written directly.

The OTLP exporters of modelotel's own TracerProvider send LightSpans (tracing/span.py) without building
the SDK's ReadableSpan and protobuf message objects one field at a time (about 30 us per span in
Python): ``light_spans_to_request`` writes the wire bytes itself and lets the C protobuf runtime
parse them once. The result equals the SDK's ``encode_spans`` of the same spans as ReadableSpans
(tests compare the messages), including what the SDK leaves out: attribute values it cannot encode
(other types, integers outside int64, strings that are not valid UTF-8) are dropped and logged.

Wire format (protobuf encoding guide): a field is ``varint(number << 3 | wire type)`` then its value;
LEN fields (strings, bytes, sub-messages) carry a varint length; ``fixed64`` times and the ``fixed32``
span flags are little-endian; proto3 fields at their default are omitted, sub-messages (``status``,
``KeyValue.value``) and oneof members are written whenever set.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

from .._otel_compat import instrumentation_scope, span_encoder
from ..tracing.span import UNSET_STATUS

__all__ = ["light_spans_to_request"]

_logger = logging.getLogger("modelotel.otlp_proto")  # its name before the move

encode_spans = span_encoder()

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_TIMES = struct.Struct("<BQBQ")  # start (field 7) and end (field 8), fixed64
_FLAGS = struct.Struct("<BBI")  # flags (field 16, fixed32): tag 0x85 0x01
_DOUBLE = struct.Struct("<d")
_EVENT_TIME = struct.Struct("<BQ")
_PROTO_KIND = {id(kind): bytes((0x30, kind.value + 1)) for kind in SpanKind}  # field 6; OTLP INTERNAL is 1
_CACHE_MAX = 16_384
_CACHE_PER_KEY = 256


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len_field(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


class _Unencodable(Exception):
    """A value the SDK's encoder refuses (it drops the attribute and logs)."""


def _utf8(s: str) -> bytes:
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates: not a valid protobuf string
        raise _Unencodable("not valid UTF-8") from exc


def _any_value(v: Any) -> bytes:
    """The serialized ``AnyValue`` of the SDK's ``_encode_value(v)``."""
    if v is None:
        return b""
    if v is True:
        return b"\x10\x01"
    if v is False:
        return b"\x10\x00"
    if isinstance(v, str):
        return _len_field(b"\x0a", _utf8(v))
    if isinstance(v, int):
        if not _INT64_MIN <= v <= _INT64_MAX:
            raise _Unencodable(f"integer {v} is outside int64")
        return b"\x18" + _varint(v & 0xFFFFFFFFFFFFFFFF)  # negative: two's complement, 10 bytes
    if isinstance(v, float):
        return b"\x21" + _DOUBLE.pack(v)
    if isinstance(v, bytes):
        return _len_field(b"\x3a", v)
    if isinstance(v, Sequence):
        return _len_field(b"\x2a", b"".join(_len_field(b"\x0a", _any_value(x)) for x in v))
    if isinstance(v, Mapping):
        return _len_field(b"\x32", b"".join(_len_field(b"\x0a", _key_value(str(k), x)) for k, x in v.items()))
    raise _Unencodable(f"invalid type {type(v).__name__}")


def _key_value(key: str, value: Any) -> bytes:
    head = _len_field(b"\x0a", _utf8(key)) if key else b""
    return head + _len_field(b"\x12", _any_value(value))


# Per field tag (span and event attributes are different fields): (key, type, value) -> the whole
# repeated-field entry (tag, length, KeyValue), or b"" if unencodable.
_FIELD_CACHES: dict[bytes, dict[tuple[str, type, Any], bytes]] = {b"\x4a": {}, b"\x1a": {}}
_FIELD_SEEN: dict[str, int] = {}
_FIELD_UNCACHED: set[str] = set()


def _attribute_fields(tag: bytes, attributes: Mapping[str, Any]) -> bytes:
    """Every attribute as a ``tag``-numbered KeyValue field, left out when the SDK could not encode it."""
    out = []
    cache = _FIELD_CACHES[tag]
    cached = cache.get
    for key, value in attributes.items():
        t = type(value)
        cacheable = (t is str or t is int or t is bool) and key not in _FIELD_UNCACHED
        if cacheable:
            encoded = cached((key, t, value))
            if encoded is not None:
                out.append(encoded)
                continue
        try:
            encoded = _len_field(tag, _key_value(key, value))
        except _Unencodable as exc:
            _logger.warning("Failed to encode key %s: %s", key, exc)
            encoded = b""
        if cacheable:
            seen = _FIELD_SEEN.get(key, 0)
            if seen >= _CACHE_PER_KEY or len(cache) >= _CACHE_MAX:
                _FIELD_UNCACHED.add(key)  # high cardinality (ids, paths): stop caching this key
            else:
                _FIELD_SEEN[key] = seen + 1
                cache[(key, t, value)] = encoded
        out.append(encoded)
    return b"".join(out)


_NAMES: dict[str, bytes] = {}  # span name -> its field 5


def _status(status: Any) -> bytes:
    if status is UNSET_STATUS:
        return b"\x7a\x00"
    code = status.status_code
    message = status.description
    body = _len_field(b"\x12", message.encode("utf-8", "replace")) if message else b""
    if code is not StatusCode.UNSET:
        body += b"\x18\x02" if code is StatusCode.ERROR else b"\x18\x01"
    return _len_field(b"\x7a", body)


def _span(s: Any) -> bytes:
    """The serialized ``Span`` of the SDK's ``_encode_span`` for the ReadableSpan of LightSpan ``s``."""
    parts = [b"\x0a\x10", s.trace_id.to_bytes(16, "big"), b"\x12\x08", s.span_id.to_bytes(8, "big")]
    ts = s.trace_state
    if ts:
        parts.append(_len_field(b"\x1a", ",".join(f"{k}={v}" for k, v in ts.items()).encode("utf-8", "replace")))
    parent_id = s.parent_id
    if parent_id:
        parts.append(b"\x22\x08" + parent_id.to_bytes(8, "big"))
    name = s.name
    field = _NAMES.get(name)
    if field is None:
        field = _len_field(b"\x2a", name.encode("utf-8", "replace")) if name else b""
        if len(_NAMES) < 4096:
            _NAMES[name] = field
    parts.append(field)
    parts.append(_PROTO_KIND[id(s.kind)])
    parts.append(_TIMES.pack(0x39, s.start_time, 0x41, s.end_time))
    if s.attributes:
        parts.append(_attribute_fields(b"\x4a", s.attributes))
    if s.events:
        for ev_name, ev_attrs, ev_time in s.events:
            event = _EVENT_TIME.pack(0x09, ev_time)
            if ev_name:
                event += _len_field(b"\x12", ev_name.encode("utf-8", "replace"))
            if ev_attrs:
                event += _attribute_fields(b"\x1a", ev_attrs)
            parts.append(_len_field(b"\x5a", event))
    parts.append(_status(s.status))
    parts.append(_FLAGS.pack(0x85, 0x01, 0x300 if parent_id and s.parent_remote else 0x100))
    return b"".join(parts)


# tracer (by identity) -> (tracer, resource, scope, resource field, scope field, scope schema field,
# resource schema field), from the SDK's own encoding of a span with that resource and scope.
_FRAMINGS: dict[int, tuple[Any, ...]] = {}


def _framing(tracer: Any) -> tuple[Any, ...]:
    entry = _FRAMINGS.get(id(tracer))
    if entry is None or entry[0] is not tracer:
        resource, scope = tracer.resource, instrumentation_scope(tracer)
        context = SpanContext(1, 1, False)
        placeholder = ReadableSpan(name="x", context=context, resource=resource, instrumentation_scope=scope)
        rs = encode_spans([placeholder]).resource_spans[0]
        ss = rs.scope_spans[0]
        entry = (
            tracer,
            resource,
            scope,
            _len_field(b"\x0a", rs.resource.SerializeToString()),
            _len_field(b"\x0a", ss.scope.SerializeToString()),
            _len_field(b"\x1a", ss.schema_url.encode("utf-8")) if ss.schema_url else b"",
            _len_field(b"\x1a", rs.schema_url.encode("utf-8")) if rs.schema_url else b"",
        )
        if len(_FRAMINGS) > 64:
            _FRAMINGS.clear()
        _FRAMINGS[id(tracer)] = entry
    return entry


def light_spans_to_bytes(spans: Sequence[Any]) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` of LightSpans, grouped by resource then scope as the SDK does."""
    groups: dict[int, tuple[tuple[Any, ...], dict[int, tuple[tuple[Any, ...], list[bytes]]]]] = {}
    last_tracer: Any = None
    encoded: list[bytes] = []
    for s in spans:
        tracer = s.tracer
        if tracer is not last_tracer:
            last_tracer = tracer
            frame = _framing(tracer)
            scopes = groups.setdefault(id(frame[1]), (frame, {}))[1]
            encoded = scopes.setdefault(id(frame[2]), (frame, []))[1]
        encoded.append(_len_field(b"\x12", _span(s)))
    out = []
    for frame, scopes in groups.values():
        body = [frame[3]]
        for scope_frame, spans_bytes in scopes.values():
            body.append(_len_field(b"\x12", scope_frame[4] + b"".join(spans_bytes) + scope_frame[5]))
        body.append(frame[6])
        out.append(_len_field(b"\x0a", b"".join(body)))
    return b"".join(out)


def light_spans_to_request(spans: Sequence[Any]) -> ExportTraceServiceRequest:
    """The ``ExportTraceServiceRequest`` the SDK's ``encode_spans`` gives for these LightSpans' ReadableSpans."""
    return ExportTraceServiceRequest.FromString(light_spans_to_bytes(spans))
