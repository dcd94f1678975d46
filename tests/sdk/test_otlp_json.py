"""Tests for modelotel.otlp_json: collector-format OTLP/JSON lines, the file exporters, the receiver.

Format facts are asserted against the OpenTelemetry Collector's sources (open-telemetry/
opentelemetry-collector ``pdata/internal/generated_proto_*.go`` and ``pdata/internal/json/stream.go``;
contrib ``exporter/fileexporter``). The golden strings below were produced by pdata v1.70.0's
``pmetric.JSONMarshaler`` / ``ptrace.JSONMarshaler`` from the binary protobuf of the same requests.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import re
import shutil

import pytest
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, TraceFlags

from modelotel.otlp.json import (
    OTLPJsonFileMetricExporter,
    OTLPJsonFileSpanExporter,
    _format_double,
    json_line_to_proto,
    message_to_json,
    metrics_to_json_line,
    read_json_lines,
    spans_to_json_line,
)

from otlp_receiver import OTLPReceiver

RESOURCE = Resource.create(
    {"service.name": "svc", "flag": True, "replicas": 3, "ratio": 0.5, "zones": ["a", "b"]},
    schema_url="https://opentelemetry.io/schemas/1.21.0",
)


# --------------------------------------------------------------------------- SDK fixtures


def _sdk_data(meter_provider: MeterProvider) -> TracerProvider:
    """Record a counter, gauge, up-down counter and both histogram kinds, partly inside a sampled span."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=RESOURCE)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = tracer_provider.get_tracer("tests.tracer", "1.2.3")
    meter = meter_provider.get_meter(
        "tests.meter", "0.1", schema_url="https://example.com/s", attributes={"scope.attr": "x"}
    )
    requests = meter.create_counter("requests", unit="1", description="requests served")
    gauge = meter.create_gauge("temperature", unit="Cel")
    inflight = meter.create_up_down_counter("inflight")
    latency = meter.create_histogram("latency", unit="s")  # exponential via View
    size = meter.create_histogram("size", unit="By")  # explicit buckets
    other = trace.SpanContext(0x1F * 2**100 + 7, 0xABC, is_remote=True, trace_flags=TraceFlags(1))
    with tracer.start_as_current_span("request", kind=SpanKind.SERVER) as root:
        root.set_attributes({"s": 'v\n"q"', "b": False, "i": -(2**63), "f": 1.0, "l": [1, 2, 3]})
        with tracer.start_as_current_span(
            "inference", links=[Link(other, {"link.attr": 1.5})], attributes={"bools": [True, False]}
        ) as child:
            child.add_event("batch", {"size": 8, "names": ["x", "ü"]})
            child.set_status(Status(StatusCode.ERROR, "boom"))
            # Recorded inside a sampled span: the default exemplar filter attaches trace/span ids.
            latency.record(0.25, {"model": "m1"})
            size.record(1500, {"model": "m1"})
        requests.add(5, {"model": "m1", "ok": True})
    requests.add(2, {"model": "m2", "ok": False})
    gauge.set(21.5)
    inflight.add(-3)
    for v in (0.001, 0.01, 0.1, 1.0, 10.0, 0.0):
        latency.record(v, {"model": "m1"})
    size.record(20, {"model": "m1"})
    size.record(7e9, {"model": "m1"})
    tracer_provider.sdk_spans = spans.get_finished_spans()  # type: ignore[attr-defined]
    return tracer_provider


def _meter_provider(*readers) -> MeterProvider:
    return MeterProvider(
        resource=RESOURCE,
        metric_readers=list(readers),
        # Instruments matching no view keep their default aggregation.
        views=[View(instrument_name="latency", aggregation=ExponentialBucketHistogramAggregation())],
    )


@pytest.fixture(scope="module")
def sdk_data():
    reader = InMemoryMetricReader()
    tracer_provider = _sdk_data(_meter_provider(reader))
    return reader.get_metrics_data(), tracer_provider.sdk_spans


def _metrics_by_name(obj: dict) -> dict[str, dict]:
    return {m["name"]: m for rm in obj["resourceMetrics"] for sm in rm["scopeMetrics"] for m in sm["metrics"]}


# --------------------------------------------------------------------------- round trips


def test_metrics_round_trip_is_exact(sdk_data):
    metrics_data, _ = sdk_data
    line = metrics_to_json_line(metrics_data)
    assert "\n" not in line
    expected = encode_metrics(metrics_data)
    assert json_line_to_proto(line) == expected
    # The generic json_format parser agrees once hex ids are base64 (done by json_line_to_proto).
    assert json_format.Parse(json_format.MessageToJson(expected), ExportMetricsServiceRequest()) == expected
    names = set(_metrics_by_name(json.loads(line)))
    assert names == {"requests", "temperature", "inflight", "latency", "size"}


def test_spans_round_trip_is_exact(sdk_data):
    _, spans = sdk_data
    line = spans_to_json_line(spans)
    assert "\n" not in line
    assert json_line_to_proto(line) == encode_spans(spans)
    assert isinstance(json_line_to_proto(line), ExportTraceServiceRequest)


def test_round_trip_keeps_negative_zero_and_specials():
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="g")
    for v in (-0.0, math.inf, -math.inf, 5e-324, 1e21, 123.0):
        metric.gauge.data_points.add(as_double=v)
    back = json_line_to_proto(message_to_json(request))
    values = [p.as_double for p in back.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points]
    assert values == [-0.0, math.inf, -math.inf, 5e-324, 1e21, 123.0]
    assert math.copysign(1.0, values[0]) == -1.0
    request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points.add(as_double=math.nan)
    back = json_line_to_proto(message_to_json(request))
    assert math.isnan(back.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[-1].as_double)


# --------------------------------------------------------------------------- format facts


def test_metric_format_facts(sdk_data):
    metrics_data, spans = sdk_data
    line = metrics_to_json_line(metrics_data)
    obj = json.loads(line)
    # Compact: jsoniter ConfigFastest without indentation writes no whitespace between tokens.
    assert line.startswith('{"resourceMetrics":[{"resource":{"attributes":[')
    assert ": " not in line and ", " not in line
    rm = obj["resourceMetrics"][0]
    assert list(rm) == ["resource", "scopeMetrics", "schemaUrl"]  # generated_proto_resourcemetrics.go
    assert rm["schemaUrl"] == "https://opentelemetry.io/schemas/1.21.0"
    sm = rm["scopeMetrics"][0]
    assert list(sm) == ["scope", "metrics", "schemaUrl"]
    assert sm["scope"] == {"name": "tests.meter", "version": "0.1", "attributes": [
        {"key": "scope.attr", "value": {"stringValue": "x"}}]}  # fmt: skip
    attrs = {a["key"]: a["value"] for a in rm["resource"]["attributes"]}
    # stream.go WriteInt64: int64 as decimal strings; bool/double as JSON literals.
    assert attrs["replicas"] == {"intValue": "3"}
    assert attrs["flag"] == {"boolValue": True}
    assert attrs["ratio"] == {"doubleValue": 0.5}
    assert attrs["zones"] == {"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}}

    metrics = _metrics_by_name(obj)
    requests = metrics["requests"]
    assert list(requests) == ["name", "description", "unit", "sum"]  # generated_proto_metric.go
    # generated_proto_sum.go: enum as integer (2 = CUMULATIVE), isMonotonic only when true.
    assert requests["sum"]["aggregationTemporality"] == 2
    assert requests["sum"]["isMonotonic"] is True
    assert "isMonotonic" not in metrics["inflight"]["sum"]
    point = requests["sum"]["dataPoints"][0]
    assert list(point)[:4] == ["attributes", "startTimeUnixNano", "timeUnixNano", "asInt"]
    assert isinstance(point["asInt"], str) and isinstance(point["timeUnixNano"], str)
    assert "flags" not in point  # generated_proto_numberdatapoint.go: flags omitted when 0
    assert metrics["inflight"]["sum"]["dataPoints"][0]["asInt"] == "-3"
    assert metrics["temperature"]["gauge"]["dataPoints"][0]["asDouble"] == 21.5
    assert "description" not in metrics["temperature"]  # empty strings are omitted

    hist = metrics["size"]["histogram"]
    hp = hist["dataPoints"][0]
    # generated_proto_histogramdatapoint.go order; sum/min/max written because they are set.
    expected_keys = ["attributes", "startTimeUnixNano", "timeUnixNano", "count", "sum", "bucketCounts"]
    assert list(hp)[:6] == expected_keys
    assert list(hp)[-2:] == ["min", "max"]
    assert hp["count"] == "3" and all(isinstance(c, str) for c in hp["bucketCounts"])
    assert all(isinstance(b, (int, float)) for b in hp["explicitBounds"])
    assert '"explicitBounds":[0,5,10,25,50,75,100,250,500,750,1000,2500,5000,7500,10000]' in line
    assert '"max":7000000000' in line  # Go 'f' formatting below 1e21: no exponent, no ".0"
    exemplar = hp["exemplars"][0]
    # generated_proto_exemplar.go: traceId before spanId, lowercase hex (traceid.go / spanid.go).
    assert list(exemplar)[-2:] == ["traceId", "spanId"]
    assert re.fullmatch(r"[0-9a-f]{32}", exemplar["traceId"])
    assert re.fullmatch(r"[0-9a-f]{16}", exemplar["spanId"])
    root = next(s for s in spans if s.name == "inference")
    assert exemplar["spanId"] == f"{root.context.span_id:016x}"

    exp = metrics["latency"]["exponentialHistogram"]
    ep = exp["dataPoints"][0]
    # generated_proto_exponentialhistogramdatapoint.go: positive/negative always written, then
    # flags (if set), exemplars, min, max, zeroThreshold (if non-zero).
    assert list(ep) == [
        "attributes", "startTimeUnixNano", "timeUnixNano", "count", "sum", "scale", "zeroCount",
        "positive", "negative", "exemplars", "min", "max",
    ]  # fmt: skip
    assert ep["scale"] == 3 and ep["zeroCount"] == "1" and ep["count"] == "7"
    assert isinstance(ep["positive"]["offset"], int) and ep["positive"]["bucketCounts"][0] == "1"
    assert exp["aggregationTemporality"] == 2


def test_exponential_histogram_empty_buckets_are_written():
    # generated_proto_exponentialhistogramdatapointbuckets.go: offset 0 and no counts -> {}.
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="e")
    metric.exponential_histogram.data_points.add(count=0, sum=0.0)
    assert message_to_json(request) == (
        '{"resourceMetrics":[{"resource":{},"scopeMetrics":[{"scope":{},"metrics":[{"name":"e",'
        '"exponentialHistogram":{"dataPoints":[{"sum":0,"positive":{},"negative":{}}]}}]}]}]}'
    )


def test_span_format_facts(sdk_data):
    _, spans = sdk_data
    obj = json.loads(spans_to_json_line(spans))
    rs = obj["resourceSpans"][0]
    ss = rs["scopeSpans"][0]
    assert ss["scope"] == {"name": "tests.tracer", "version": "1.2.3"}
    by_name = {s["name"]: s for s in ss["spans"]}
    root, child = by_name["request"], by_name["inference"]
    # generated_proto_span.go: ids are hex, parentSpanId omitted when empty, flags/kind as numbers,
    # status always written (even empty) and last.
    assert "parentSpanId" not in root
    assert child["parentSpanId"] == root["spanId"]
    assert child["traceId"] == root["traceId"] and re.fullmatch(r"[0-9a-f]{32}", root["traceId"])
    assert list(child)[:6] == ["traceId", "spanId", "parentSpanId", "flags", "name", "kind"]
    assert root["kind"] == 2 and child["kind"] == 1  # SPAN_KIND_SERVER, SPAN_KIND_INTERNAL
    assert root["flags"] == 256  # SDK encoder: "has is_remote" bit, parent not remote
    assert list(root)[-1] == "status" and root["status"] == {}
    assert child["status"] == {"message": "boom", "code": 2}
    attrs = {a["key"]: a["value"] for a in root["attributes"]}
    assert attrs["i"] == {"intValue": "-9223372036854775808"}
    assert attrs["f"] == {"doubleValue": 1}
    assert attrs["l"] == {"arrayValue": {"values": [{"intValue": "1"}, {"intValue": "2"}, {"intValue": "3"}]}}
    event = child["events"][0]
    assert list(event) == ["timeUnixNano", "name", "attributes"] and isinstance(event["timeUnixNano"], str)
    link = child["links"][0]
    assert link["traceId"] == f"{0x1F * 2**100 + 7:032x}" and link["spanId"] == "0000000000000abc"
    assert link["flags"] == 768  # has-is-remote + is-remote
    assert link["attributes"] == [{"key": "link.attr", "value": {"doubleValue": 1.5}}]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        # stream.go WriteFloat64 -> json-iterator v1.1.12 Stream.WriteFloat64: shortest digits,
        # 'f' format unless |v| < 1e-6 or >= 1e21; NaN/Inf as strings.
        (1.0, "1"),
        (-1.0, "-1"),
        (0.0, "0"),
        (-0.0, "-0"),
        (0.1, "0.1"),
        (1e-6, "0.000001"),
        (1e-7, "1e-07"),
        (1.5e-10, "1.5e-10"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
        (123456789.125, "123456789.125"),
        (math.nan, '"NaN"'),
        (math.inf, '"Infinity"'),
        (-math.inf, '"-Infinity"'),
    ],
)
def test_double_formatting(value, text):
    assert _format_double(value) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_double_formatting_round_trips(value):
    text = _format_double(value)
    assert float(text) == value
    assert ("e" in text) == (value != 0 and not 1e-6 <= abs(value) < 1e21)
    assert not text.endswith(".0") and "E" not in text


def test_string_escaping_matches_json_iterator():
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.name = 'q"b\\n\nr\rt\tb\bf\f\x00\x1f\x7f<>&é😀\u2028'
    # Only '"', '\\', \n, \r, \t get short escapes; other controls \u00XX (lowercase); rest raw.
    assert message_to_json(request) == (
        '{"resourceSpans":[{"resource":{},"scopeSpans":[{"scope":{},"spans":[{"name":'
        '"q\\"b\\\\n\\nr\\rt\\tb\\u0008f\\u000c\\u0000\\u001f\x7f<>&é😀\u2028","status":{}}]}]}]}'
    )


# --------------------------------------------------------------------------- golden lines


def _kv(key: str, **value) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(**value))


def _all_any_values() -> list[common_pb2.KeyValue]:
    return [
        _kv("str", string_value="s"),
        _kv("empty_str", string_value=""),
        _kv("bool", bool_value=False),
        _kv("int", int_value=0),
        _kv("big", int_value=2**63 - 1),
        _kv("dbl", double_value=0.0),
        _kv("nan", double_value=math.nan),
        _kv("bytes", bytes_value=b"\x00\xffhi"),
        _kv("empty_bytes", bytes_value=b""),
        _kv("arr", array_value=common_pb2.ArrayValue(values=[common_pb2.AnyValue(int_value=-1)])),
        _kv("empty_arr", array_value=common_pb2.ArrayValue()),
        _kv("kvl", kvlist_value=common_pb2.KeyValueList(values=[_kv("in", double_value=2.5)])),
        common_pb2.KeyValue(key="unset"),
    ]


def _golden_metrics_request() -> ExportMetricsServiceRequest:
    r = ExportMetricsServiceRequest()
    rm = r.resource_metrics.add(schema_url="https://s/r")
    rm.resource.attributes.extend(_all_any_values())
    rm.resource.dropped_attributes_count = 2
    sm = rm.scope_metrics.add()
    sm.scope.name = "sc"
    m = sm.metrics.add(name="sum", unit="1")
    m.sum.aggregation_temporality = 1
    m.sum.is_monotonic = True
    p = m.sum.data_points.add(start_time_unix_nano=1, time_unix_nano=2**64 - 1, as_int=0, flags=1)
    p.exemplars.add(time_unix_nano=3, as_double=1.0, trace_id=bytes(range(16)), span_id=bytes(range(8)))
    p.exemplars.add(as_int=4, trace_id=bytes(16), span_id=bytes(8))
    g = sm.metrics.add(name="gauge", description="d")
    g.gauge.data_points.add(as_double=-0.0)
    g.gauge.data_points.add(as_double=1e-7)
    g.gauge.data_points.add(as_double=math.inf)
    g.gauge.data_points.add()
    h = sm.metrics.add(name="hist")
    h.histogram.aggregation_temporality = 2
    h.histogram.data_points.add(count=3, sum=0.0, bucket_counts=[0, 3], explicit_bounds=[0.5], min=0.0)
    h.histogram.data_points.add(count=1)
    e = sm.metrics.add(name="exp")
    ep = e.exponential_histogram.data_points.add(count=5, scale=-2, zero_count=1, zero_threshold=1e-9)
    ep.positive.offset = -3
    ep.positive.bucket_counts.extend([1, 0, 3])
    ep.max = 1e300
    s = sm.metrics.add(name="summary")
    sp = s.summary.data_points.add(count=2, sum=3.5)
    sp.quantile_values.add(quantile=0.0, value=1.0)
    sp.quantile_values.add(quantile=1.0, value=2.5)
    sm.metrics.add(name="nodata")
    return r


def _golden_trace_request() -> ExportTraceServiceRequest:
    r = ExportTraceServiceRequest()
    rs = r.resource_spans.add()
    ss = rs.scope_spans.add(schema_url="https://s/s")
    ss.scope.attributes.append(_kv("a", string_value="b"))
    ss.scope.dropped_attributes_count = 1
    span = ss.spans.add(
        trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
        span_id=bytes.fromhex("b7ad6b7169203331"),
        parent_span_id=bytes(8),
        trace_state="k=v",
        flags=0x301,
        name="op",
        kind=3,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_000_500_000_000,
        dropped_attributes_count=1,
        dropped_events_count=2,
        dropped_links_count=3,
    )
    span.attributes.extend(_all_any_values())
    span.events.add(time_unix_nano=5, name="ev").attributes.append(_kv("x", int_value=1))
    span.events.add()
    span.links.add(trace_id=bytes([255] * 16), span_id=bytes([1] * 8), trace_state="a=b", flags=1)
    span.status.code = 1
    ss.spans.add(name="bare")
    return r


# Produced by go.opentelemetry.io/collector/pdata v1.70.0 (ProtoUnmarshaler -> JSONMarshaler).
GOLDEN_METRICS = (
    '{"resourceMetrics":[{"resource":{"attributes":[{"key":"str","value":{"stringValue":"s"}},{'
    '"key":"empty_str","value":{"stringValue":""}},{"key":"bool","value":{"boolValue":false}},{'
    '"key":"int","value":{"intValue":"0"}},{"key":"big","value":{"intValue":"922337203685477580'
    '7"}},{"key":"dbl","value":{"doubleValue":0}},{"key":"nan","value":{"doubleValue":"NaN"}},{'
    '"key":"bytes","value":{"bytesValue":"AP9oaQ=="}},{"key":"empty_bytes","value":{"bytesValue'
    '":""}},{"key":"arr","value":{"arrayValue":{"values":[{"intValue":"-1"}]}}},{"key":"empty_a'
    'rr","value":{"arrayValue":{}}},{"key":"kvl","value":{"kvlistValue":{"values":[{"key":"in",'
    '"value":{"doubleValue":2.5}}]}}},{"key":"unset","value":{}}],"droppedAttributesCount":2},"'
    'scopeMetrics":[{"scope":{"name":"sc"},"metrics":[{"name":"sum","unit":"1","sum":{"dataPoin'
    'ts":[{"startTimeUnixNano":"1","timeUnixNano":"18446744073709551615","asInt":"0","exemplars'
    '":[{"timeUnixNano":"3","asDouble":1,"traceId":"000102030405060708090a0b0c0d0e0f","spanId":'
    '"0001020304050607"},{"asInt":"4"}],"flags":1}],"aggregationTemporality":1,"isMonotonic":tr'
    'ue}},{"name":"gauge","description":"d","gauge":{"dataPoints":[{"asDouble":-0},{"asDouble":'
    '1e-07},{"asDouble":"Infinity"},{}]}},{"name":"hist","histogram":{"dataPoints":[{"count":"3'
    '","sum":0,"bucketCounts":["0","3"],"explicitBounds":[0.5],"min":0},{"count":"1"}],"aggrega'
    'tionTemporality":2}},{"name":"exp","exponentialHistogram":{"dataPoints":[{"count":"5","sca'
    'le":-2,"zeroCount":"1","positive":{"offset":-3,"bucketCounts":["1","0","3"]},"negative":{}'
    ',"max":1e+300,"zeroThreshold":1e-09}]}},{"name":"summary","summary":{"dataPoints":[{"count'
    '":"2","sum":3.5,"quantileValues":[{"value":1},{"quantile":1,"value":2.5}]}]}},{"name":"nod'
    'ata"}]}],"schemaUrl":"https://s/r"}]}'
)
GOLDEN_TRACES = (
    '{"resourceSpans":[{"resource":{},"scopeSpans":[{"scope":{"attributes":[{"key":"a","value":'
    '{"stringValue":"b"}}],"droppedAttributesCount":1},"spans":[{"traceId":"0af7651916cd43dd844'
    '8eb211c80319c","spanId":"b7ad6b7169203331","traceState":"k=v","flags":769,"name":"op","kin'
    'd":3,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000500000000","at'
    'tributes":[{"key":"str","value":{"stringValue":"s"}},{"key":"empty_str","value":{"stringVa'
    'lue":""}},{"key":"bool","value":{"boolValue":false}},{"key":"int","value":{"intValue":"0"}'
    '},{"key":"big","value":{"intValue":"9223372036854775807"}},{"key":"dbl","value":{"doubleVa'
    'lue":0}},{"key":"nan","value":{"doubleValue":"NaN"}},{"key":"bytes","value":{"bytesValue":'
    '"AP9oaQ=="}},{"key":"empty_bytes","value":{"bytesValue":""}},{"key":"arr","value":{"arrayV'
    'alue":{"values":[{"intValue":"-1"}]}}},{"key":"empty_arr","value":{"arrayValue":{}}},{"key'
    '":"kvl","value":{"kvlistValue":{"values":[{"key":"in","value":{"doubleValue":2.5}}]}}},{"k'
    'ey":"unset","value":{}}],"droppedAttributesCount":1,"events":[{"timeUnixNano":"5","name":"'
    'ev","attributes":[{"key":"x","value":{"intValue":"1"}}]},{}],"droppedEventsCount":2,"links'
    '":[{"traceId":"ffffffffffffffffffffffffffffffff","spanId":"0101010101010101","traceState":'
    '"a=b","flags":1}],"droppedLinksCount":3,"status":{"code":1}},{"name":"bare","status":{}}],'
    '"schemaUrl":"https://s/s"}]}]}'
)


def test_golden_lines_match_collector_pdata():
    assert message_to_json(_golden_metrics_request()) == GOLDEN_METRICS
    assert message_to_json(_golden_trace_request()) == GOLDEN_TRACES


# --------------------------------------------------------------------------- read_json_lines


def test_read_json_lines_plain_gzip_and_corrupt(tmp_path):
    lines = b'{"a":1}\n\n{"b":\n[1]\n{"c":"\xff"}\n{"d":2}'
    plain = tmp_path / "x.jsonl"
    plain.write_bytes(lines)
    zipped = tmp_path / "x.jsonl.gz"
    zipped.write_bytes(gzip.compress(lines))
    expected = [(1, {"a": 1}), (3, None), (4, None), (5, None), (6, {"d": 2})]
    assert list(read_json_lines(plain)) == expected
    assert list(read_json_lines(zipped)) == expected


# --------------------------------------------------------------------------- file exporters


def test_metric_exporter_honours_preferences_and_appends(tmp_path):
    path = tmp_path / "deep" / "dir" / "metrics.jsonl"
    exporter = OTLPJsonFileMetricExporter(
        path,
        preferred_temporality={Counter: AggregationTemporality.DELTA},
        preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()},
    )
    assert exporter._preferred_temporality[Counter] is AggregationTemporality.DELTA
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = provider.get_meter("m")
    meter.create_counter("c").add(1)
    meter.create_histogram("h").record(2.0)
    assert provider.force_flush()
    meter.create_counter("c").add(2)
    assert provider.force_flush()
    provider.shutdown()
    rows = list(read_json_lines(path))
    assert [n for n, _ in rows] == [1, 2, 3]  # the reader collects once more on shutdown
    first = _metrics_by_name(rows[0][1])
    assert first["c"]["sum"]["aggregationTemporality"] == 1  # DELTA
    assert "exponentialHistogram" in first["h"]
    assert _metrics_by_name(rows[1][1])["c"]["sum"]["dataPoints"][0]["asInt"] == "2"  # delta
    assert path.read_bytes().endswith(b"}\n")  # file_writer.go: message then "\n"


def test_span_exporter_lines_and_shutdown(tmp_path, caplog):
    path = tmp_path / "spans.jsonl"
    exporter = OTLPJsonFileSpanExporter(str(path))
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("a"), tracer.start_as_current_span("b"):
        pass
    assert exporter.force_flush()
    rows = list(read_json_lines(path))
    assert len(rows) == 2 and all(obj["resourceSpans"] for _, obj in rows)
    spans = [json_line_to_proto(path.read_text().splitlines()[0]).resource_spans[0].scope_spans[0].spans[0]]
    assert spans[0].name == "b"
    assert exporter.export([]) is SpanExportResult.SUCCESS  # nothing to write, no empty line
    exporter.shutdown()
    exporter.shutdown()  # idempotent
    size = path.stat().st_size
    with caplog.at_level(logging.WARNING, logger="modelotel.otlp_json"):
        assert exporter.export(InMemorySpanExporter().get_finished_spans()) is SpanExportResult.FAILURE
        assert exporter.export([]) is SpanExportResult.FAILURE
    assert path.stat().st_size == size
    assert len([r for r in caplog.records if "after shutdown" in r.getMessage()]) == 1


def test_metric_exporter_shutdown_semantics(tmp_path, sdk_data):
    metrics_data, _ = sdk_data
    path = tmp_path / "m.jsonl"
    exporter = OTLPJsonFileMetricExporter(path)
    assert exporter.export(metrics_data) is MetricExportResult.SUCCESS
    assert exporter.force_flush()
    exporter.shutdown()
    exporter.shutdown()
    assert exporter.export(metrics_data) is MetricExportResult.FAILURE
    assert [json_line_to_proto(line) for line in path.read_text().splitlines()] == [encode_metrics(metrics_data)]


def test_unwritable_path_fails_at_construction(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    with pytest.raises(OSError, match=r"Exporter: cannot create directory '.*not_a_dir' .*not a directory"):
        OTLPJsonFileMetricExporter(blocker / "x.jsonl")
    with pytest.raises(NotADirectoryError, match=r"cannot create directory '.*not_a_dir/sub'"):
        OTLPJsonFileMetricExporter(blocker / "sub" / "x.jsonl")
    with pytest.raises(IsADirectoryError, match=r"OTLPJsonFileSpanExporter: cannot open '.*' for appending"):
        OTLPJsonFileSpanExporter(tmp_path)


def test_write_failure_returns_failure_and_logs_once(tmp_path, sdk_data, caplog):
    metrics_data, _ = sdk_data
    folder = tmp_path / "out"
    exporter = OTLPJsonFileMetricExporter(folder / "m.jsonl")
    shutil.rmtree(folder)
    folder.write_text("now a file")
    with caplog.at_level(logging.DEBUG, logger="modelotel.otlp_json"):
        assert exporter.export(metrics_data) is MetricExportResult.FAILURE
        assert exporter.export(metrics_data) is MetricExportResult.FAILURE
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "m.jsonl" in errors[0].getMessage()


def test_forked_writers_append_whole_lines(tmp_path):
    path = tmp_path / "shared.jsonl"
    exporter = OTLPJsonFileMetricExporter(path)  # created before fork, like a preloaded server
    payloads = {}
    for worker in ("w0", "w1"):
        reader = InMemoryMetricReader()
        meter = MeterProvider(metric_readers=[reader]).get_meter("fork")
        # ~100 KB lines, written in many chunks below.
        meter.create_counter("c").add(1, {"worker": worker, "pad": worker * 50_000})
        payloads[worker] = reader.get_metrics_data()
    pids = []
    for worker in payloads:
        pid = os.fork()
        if pid == 0:  # child: write and leave without running pytest's teardown
            code = 0
            real_write = os.write
            # Force partial writes (as on NFS or after signals): only the lock keeps lines whole.
            os.write = lambda fd, data, _write=real_write: _write(fd, data[:4096])
            try:
                for _ in range(200):
                    if exporter.export(payloads[worker]) is not MetricExportResult.SUCCESS:
                        code = 1
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    counts = {"w0": 0, "w1": 0}
    rows = list(read_json_lines(path))
    assert len(rows) == 400
    for _, obj in rows:
        assert obj is not None
        point = _metrics_by_name(obj)["c"]["sum"]["dataPoints"][0]
        counts[point["attributes"][0]["value"]["stringValue"]] += 1
    assert counts == {"w0": 200, "w1": 200}


# --------------------------------------------------------------------------- receiver


def test_receiver_gets_sdk_grpc_metric_export():
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    with OTLPReceiver() as rx:
        exporter = OTLPMetricExporter(endpoint=rx.endpoint, insecure=True, timeout=5)
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
        meter = provider.get_meter("rx")
        meter.create_counter("hits").add(4, {"route": "/predict"})
        meter.create_histogram("lat", unit="s").record(0.5)
        assert provider.force_flush(10_000)
        assert rx.wait_for(lambda r: r.metrics_requests, timeout=5)
        provider.shutdown()
    request = rx.metrics_requests[0]
    metrics = {m.name: m for m in request.resource_metrics[0].scope_metrics[0].metrics}
    hits = metrics["hits"].sum.data_points[0]
    assert hits.as_int == 4 and hits.attributes[0].key == "route"
    assert hits.attributes[0].value.string_value == "/predict"
    lat = metrics["lat"].histogram.data_points[0]
    assert (lat.count, lat.sum, lat.min, lat.max) == (1, 0.5, 0.5, 0.5)
    # What crossed the wire serialises to a line that parses back to the identical request.
    assert json_line_to_proto(message_to_json(request)) == request


def test_receiver_gets_sdk_http_span_export():
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    with OTLPReceiver(http=True) as rx:
        provider = TracerProvider(resource=RESOURCE)
        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{rx.http_endpoint}/v1/traces", timeout=5))
        )
        with provider.get_tracer("rx").start_as_current_span("served") as span:
            span.set_attribute("k", 1)
        assert rx.wait_for(lambda r: r.trace_requests, timeout=5)
        provider.shutdown()
    got = rx.trace_requests[0].resource_spans[0].scope_spans[0].spans[0]
    assert got.name == "served" and got.span_id == span.get_span_context().span_id.to_bytes(8, "big")
    assert not rx.wait_for(lambda r: r.metrics_requests, timeout=0.01)


def test_hex_id_conversion_only_touches_id_fields():
    line = json.dumps(
        {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "00" * 15 + "01", "name": "traceId"}]}]}]}
    )
    span = json_line_to_proto(line).resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes(15) + b"\x01" and span.name == "traceId"
