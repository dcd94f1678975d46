"""The evaluator's Prometheus source against a real Prometheus fed by our real collector (grafana.yaml route).

Known data goes in through OTel SDK meter providers in this process, OTLP/gRPC, cumulative (what grafana.yaml
requires): instance ``inst-a`` records two batches (the second with a wider range, so its exponential histogram
downscales between the two exports), then "restarts" (a new provider with the same resource: the same series, its
totals drop, a reset) and records a third; ``inst-b`` records at a coarser scale, zeros included. The collector
writes native histograms and counters into Prometheus (2.42, remote-write receiver, native histograms on). Read
back as deltas, per instance: counter increments sum to the exact counts, and the merged delta sketches equal the
raw values bucketed at the merged scale, bucket for bucket. The collector's file exporter writes the same data as
OTLP JSON lines, which the OTLP source must read to the same totals.

Cost: ~3 s wall (Prometheus and collector start ~1.5 s, the collector's 1 s batch timeout, polling). Needs
``prometheus`` on PATH and the collector (``make collector``): missing ones fail under MODELOTEL_CI=1, skip otherwise.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections import defaultdict

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from modelotel.evaluator import sources
from modelotel.evaluator.sources import prometheus as prometheus_source
from modelotel.evaluator.sources.points import SourceError
from modelotel.sketch import LogSketch

from collector_support import CONFIGS, free_port, run_collector, run_prometheus

pytestmark = pytest.mark.collector

HIST, COUNTER = "ml.inference.duration", "ml.predictions"
DEADLINE_S = 60.0  # a loaded machine: the collector's remote write retries with backoff


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """Prometheus (remote-write receiver, native histograms) + our collector on grafana.yaml; yields the URLs."""
    tmp = tmp_path_factory.mktemp("prom-source")
    with run_prometheus(tmp) as (prom_url, prom):
        grpc_port = free_port()
        env = {
            "MODELOTEL_PROM_REMOTE_WRITE_URL": f"{prom_url}/api/v1/write",
            "MODELOTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}",
            "MODELOTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
            "MODELOTEL_COLLECTOR_METRICS_PORT": str(free_port()),
            "MODELOTEL_TRACES_EXPORTERS": "[debug]",
            "MODELOTEL_LOGS_EXPORTERS": "[debug]",
            # the same metrics also go to the collector's file exporter: the OTLP JSON lines source reads them
            "MODELOTEL_METRICS_EXPORTERS": "[prometheus_remote_write, file]",
            "MODELOTEL_FILE_EXPORT_PATH": str(tmp / "collector.jsonl"),
        }
        with run_collector(CONFIGS / "grafana.yaml", env, tmp / "collector.log", free_port()) as collector:
            yield {
                "url": prom_url,
                "otlp": f"127.0.0.1:{grpc_port}",
                "collector": collector,
                "file": tmp / "collector.jsonl",
            }


def provider(otlp: str, instance: str, max_size: int, max_scale: int) -> tuple[MeterProvider, object, object]:
    exporter = OTLPMetricExporter(
        endpoint=otlp,
        insecure=True,
        preferred_temporality={
            Counter: AggregationTemporality.CUMULATIVE,
            Histogram: AggregationTemporality.CUMULATIVE,
        },
    )
    mp = MeterProvider(
        resource=Resource.create({"service.name": "prom-source", "service.instance.id": instance}),
        metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)],
        views=[
            View(
                instrument_name=HIST,
                aggregation=ExponentialBucketHistogramAggregation(max_size=max_size, max_scale=max_scale),
            )
        ],
    )
    meter = mp.get_meter("modelotel")
    return mp, meter.create_histogram(HIST, unit="s"), meter.create_counter(COUNTER, unit="{prediction}")


def record(hist, counter, values, labels, expected: dict, instance: str) -> None:
    for v in values:
        hist.record(float(v), {"ml.model.name": "fraud"})
    for lab in labels:
        counter.add(1, {"ml.model.name": "fraud", "ml.prediction.label": lab})
        expected["labels"][(instance, lab)] += 1
    expected["values"][instance].extend(float(v) for v in values)


def query(url: str, promql: str) -> list:
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}", timeout=10) as r:
        return json.load(r)["data"]["result"]


@pytest.fixture(scope="module")
def pushed(prometheus):
    """Push the known data; wait until Prometheus holds the final samples. Returns expectations and times."""
    rng = np.random.default_rng(11)
    expected: dict = {"values": defaultdict(list), "labels": defaultdict(int)}
    t_begin = time.time()
    mp, hist, counter = provider(prometheus["otlp"], "inst-a", max_size=160, max_scale=5)
    record(hist, counter, rng.lognormal(-4, 0.3, 300), rng.choice(["a", "b"], 40), expected, "inst-a")
    assert mp.force_flush()
    time.sleep(0.3)
    t_second = time.time()
    record(hist, counter, rng.lognormal(-2, 2.0, 500), rng.choice(["a", "b"], 60), expected, "inst-a")
    assert mp.force_flush()
    mp.shutdown()
    time.sleep(0.3)
    # inst-a restarts: same resource, so the same Prometheus series, its totals start again from zero
    mp, hist, counter = provider(prometheus["otlp"], "inst-a", max_size=160, max_scale=5)
    record(hist, counter, rng.lognormal(-3, 0.5, 100), ["a"] * 7, expected, "inst-a")
    mp.shutdown()
    mp, hist, counter = provider(prometheus["otlp"], "inst-b", max_size=20, max_scale=3)
    values_b = np.concatenate([rng.lognormal(-3, 1.5, 200), np.zeros(5)])  # (the SDK drops negative values)
    record(hist, counter, values_b, ["b"] * 11, expected, "inst-b")
    mp.shutdown()

    url = prometheus["url"]
    want = {"inst-a": 100, "inst-b": len(values_b)}  # the final samples: inst-a's last run holds 100 values
    deadline = time.monotonic() + DEADLINE_S
    while True:
        got = {
            r["metric"]["instance"]: float(r["value"][1])
            for r in query(url, 'histogram_count(ml_inference_duration_seconds{job="prom-source"})')
        }
        # the latest counter samples (inst-a's label "b" series keeps its pre-restart value: not checked here)
        counters = query(url, 'ml_predictions_total{job="prom-source", ml_prediction_label=~"a|b"}')
        latest = {(r["metric"]["instance"], r["metric"]["ml_prediction_label"]): r["value"][1] for r in counters}
        if got == want and latest.get(("inst-a", "a")) == "7" and latest.get(("inst-b", "b")) == "11":
            break
        assert time.monotonic() < deadline, (got, counters, prometheus["collector"].output()[-3000:])
        time.sleep(0.25)
    return {"expected": expected, "t_begin": t_begin, "t_second": t_second, "t_end": time.time() + 1}


def exact_sketch(values: list[float], scale: int) -> LogSketch:
    sk = LogSketch(scale, max_buckets=1 << 30)
    sk.add_many(values)
    return sk


def check_totals(deltas, expected, skip_first_a: int = 0) -> None:
    labels: dict = defaultdict(int)
    for d in deltas:
        if d.metric == COUNTER:
            assert isinstance(d.value, int)
            labels[(d.attributes["service.instance.id"], d.attributes["ml.prediction.label"])] += d.value
    want = dict(expected["labels"])
    if not skip_first_a:
        assert dict(labels) == want
    for instance, values in expected["values"].items():
        mine = [d for d in deltas if d.metric == HIST and d.attributes["service.instance.id"] == instance]
        merged = LogSketch(8)
        for d in mine:
            assert d.value == d.sketch.count
            merged.merge(d.sketch)
        if instance == "inst-a" and skip_first_a:
            values = values[skip_first_a:]
        assert merged.count == len(values), instance
        exact = exact_sketch(values, merged.scale)
        assert (merged.positive.offset, merged.positive.counts.tolist()) == (
            exact.positive.offset,
            exact.positive.counts.tolist(),
        ), instance
        assert (merged.negative.offset, merged.negative.counts.tolist()) == (
            exact.negative.offset,
            exact.negative.counts.tolist(),
        ), instance
        assert merged.zero_count == exact.zero_count
        assert abs(merged.sum - sum(values)) <= 1e-9 * max(1.0, abs(sum(values)))


def test_deltas_sum_to_what_was_recorded(prometheus, pushed):
    ns = 1_000_000_000
    deltas, report = sources.read(
        prometheus["url"], {HIST, COUNTER}, start_ns=int(pushed["t_begin"] * ns), end_ns=int(pushed["t_end"] * ns)
    )
    deltas = list(deltas)
    check_totals(deltas, pushed["expected"])
    # inst-a's histogram downscaled between its two exports, inst-b is coarser: mixed scales
    scales = {(d.attributes["service.instance.id"], d.sketch.scale) for d in deltas if d.sketch is not None}
    assert len({s for _, s in scales}) >= 2, scales
    assert report.resets >= 2  # inst-a's restart: its histogram and its counter series
    assert report.instances == {"inst-a", "inst-b"} and report.bad_points == 0
    d = next(d for d in deltas if d.metric == COUNTER)
    assert d.attributes["service.name"] == "prom-source" and d.attributes["ml.model.name"] == "fraud"
    assert not any(k.startswith("otel_scope") for k in d.attributes)


def test_the_collectors_file_exporter_output_gives_the_same_totals(prometheus, pushed):
    """The real collector's file exporter (format json) wrote the same data: the OTLP source reads it exactly."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        deltas, report = sources.read(str(prometheus["file"]), {HIST, COUNTER})
        deltas = list(deltas)
        try:
            check_totals(deltas, pushed["expected"])
            break
        except AssertionError:  # the file exporter flushes every second
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)
    assert report.corrupt_lines == report.bad_points == 0 and report.resets >= 2
    assert report.instances == {"inst-a", "inst-b"}


def test_small_chunks_give_the_same_totals(prometheus, pushed):
    """Chunk boundaries (samples seen twice by closed range selectors) are counted once."""
    ns = 1_000_000_000
    deltas, report = prometheus_source.read_prometheus(
        prometheus["url"],
        [HIST, COUNTER],
        start_ns=int(pushed["t_begin"] * ns),
        end_ns=int(pushed["t_end"] * ns),
        chunk_s=0.2,
        lookback_s=1.0,
    )
    check_totals(list(deltas), pushed["expected"])


def test_a_series_seen_before_the_range_starts_from_its_baseline(prometheus, pushed):
    ns = 1_000_000_000
    deltas, report = sources.read(
        prometheus["url"], {HIST}, start_ns=int(pushed["t_second"] * ns), end_ns=int(pushed["t_end"] * ns)
    )
    check_totals(list(deltas), pushed["expected"], skip_first_a=300)  # the first export (300 values) is a baseline
    assert report.first_cumulative == 1


def test_unreachable_or_wrong_servers_raise_source_errors(prometheus):
    with pytest.raises(SourceError, match="cannot reach the Prometheus API"):
        sources.read(f"http://127.0.0.1:{free_port()}", {COUNTER})
    with pytest.raises(SourceError, match="HTTP 404"):
        sources.read(prometheus["url"] + "/not-prometheus", {COUNTER})


def test_names_and_labels_map_to_our_conventions():
    assert prometheus_source.prometheus_name("ml.inference.duration") == ["ml_inference_duration_seconds"]
    assert prometheus_source.prometheus_name("ml.prediction.confidence") == ["ml_prediction_confidence"]
    assert prometheus_source.prometheus_name("ml.predictions") == ["ml_predictions_total"]
    assert prometheus_source.prometheus_name("my.thing") == [
        "my_thing",
        "my_thing_total",
        "my_thing_seconds",
        "my_thing_milliseconds",  # e.g. the old http.server.duration, in ms
    ]
    assert prometheus_source.attribute_key("ml_model_name") == "ml.model.name"
    assert prometheus_source.attribute_key("error_type") == "error.type"
    assert prometheus_source.attribute_key("http_route") == "http.route"
    assert prometheus_source.attribute_key("custom_label") == "custom_label"


def test_native_histogram_buckets_map_to_exponential_indices():
    """Buckets as Prometheus's API shows them, built from known indices at scale 2, both signs and zero."""
    scale, base = 2, 2 ** (2**-2)
    pos = {-3: 2, 0: 1, 5: 4}
    neg = {1: 3}
    buckets = [[3, "-1e-128", "1e-128", "6"]]
    buckets += [[0, repr(base**i), repr(base ** (i + 1)), str(c)] for i, c in pos.items()]
    buckets += [[1, repr(-(base ** (i + 1))), repr(-(base**i)), str(c)] for i, c in neg.items()]
    counts = prometheus_source._native_histogram({"count": "16", "sum": "1.5", "buckets": buckets})
    assert counts.scale == scale and counts.zero_count == 6
    assert counts.pos_offset == -3 and counts.pos.tolist() == [2, 0, 0, 1, 0, 0, 0, 0, 4]
    assert counts.neg_offset == 1 and counts.neg.tolist() == [3]
    with pytest.raises(ValueError, match="count 17"):
        prometheus_source._native_histogram({"count": "17", "sum": "0", "buckets": buckets})


def test_classic_histograms_of_other_instrumentations_are_judged_exactly(prometheus, tmp_path):
    """The old HTTP conventions' http.server.duration (ms), with the OTel SDK's default explicit buckets, reaches
    Prometheus as a classic histogram (_bucket/_count/_sum). Read back from Prometheus, an SLO on it gives the
    exact counts: latency at a bucket bound (100 ms) and 5xx errors (issue 14: foreign telemetry; before, the
    source read native histograms only and found nothing)."""
    from modelotel.evaluator import engine
    from modelotel.evaluator.spec import load_slos

    rng = np.random.default_rng(21)
    durations_ms = rng.lognormal(np.log(80.0), 0.8, 400)
    statuses = rng.choice([200, 200, 200, 404, 500, 503], 400)
    exporter = OTLPMetricExporter(
        endpoint=prometheus["otlp"], insecure=True, preferred_temporality={Histogram: AggregationTemporality.CUMULATIVE}
    )
    mp = MeterProvider(
        resource=Resource.create({"service.name": "classic-http", "service.instance.id": "web-1"}),
        metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)],
    )
    hist = mp.get_meter("opentelemetry.instrumentation.flask").create_histogram("http.server.duration", unit="ms")
    t0 = time.time()
    for half in (slice(0, 200), slice(200, 400)):
        for d, status in zip(durations_ms[half], statuses[half], strict=True):
            hist.record(float(d), {"http.method": "POST", "http.status_code": int(status)})
        assert mp.force_flush()
        time.sleep(0.3)
    mp.shutdown()
    url = prometheus["url"]
    deadline = time.monotonic() + DEADLINE_S
    count = 'http_server_duration_milliseconds_count{job="classic-http"}'
    while sum(float(r["value"][1]) for r in query(url, count)) != 400:
        assert time.monotonic() < deadline, prometheus["collector"].output()[-3000:]
        time.sleep(0.25)
    spec = tmp_path / "slo.yaml"
    spec.write_text(
        "slos:\n"
        "  - {name: fast, metric: http.server.duration, sli: latency, threshold: 100ms, objective: 0.5, window: 1h,"
        " alerts: off, attributes: {service.name: classic-http}}\n"
        "  - {name: errors, metric: http.server.duration, sli: error_ratio, objective: 0.5, window: 1h, alerts: off,"
        " attributes: {service.name: classic-http}}\n"
    )
    ev = engine.evaluate(load_slos([str(spec)]), [url], at=time.time() + 1)
    fast, errors = ev.results
    assert fast.events == 400 and fast.units == {"http.server.duration": ("ms", False)}
    assert fast.sli == fast.sli_lower == fast.sli_upper == pytest.approx(np.mean(durations_ms <= 100.0), abs=1e-12)
    assert errors.sli == pytest.approx(np.mean(statuses < 500), abs=1e-12)
    assert ev.reports[0].bad_points == 0 and t0 < ev.at


def test_span_metrics_labels_map_back_only_on_the_connectors_metrics():
    assert prometheus_source.attribute_key("status_code", "traces.span.metrics.duration") == "status.code"
    assert prometheus_source.attribute_key("status_code", "http_requests_total") == "status_code"
    assert prometheus_source.attribute_key("http_status_code", "http.server.duration") == "http.status_code"
