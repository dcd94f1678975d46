"""Export paths: the real OTLP gRPC exporter into a real receiver, the OTLP-JSON file, temporality, fork, exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import modelotel
from modelotel import conventions as conv
from modelotel.sketch import LogSketch

from conftest import MemoryMetricExporter, total_count
from otlp_receiver import OTLPReceiver

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _file_points(path, metric):
    """(resource attributes, data point dict) for every point of `metric` in an OTLP-JSON-lines file."""
    out = []
    with open(path) as fh:
        for line in fh:
            obj = json.loads(line)
            for rm in obj.get("resourceMetrics", []):
                res = {a["key"]: next(iter(a["value"].values())) for a in rm["resource"].get("attributes", [])}
                for sm in rm.get("scopeMetrics", []):
                    for m in sm.get("metrics", []):
                        if m["name"] != metric:
                            continue
                        data = m.get("exponentialHistogram") or m.get("sum") or {}
                        for p in data.get("dataPoints", []):
                            out.append((res, p, data.get("aggregationTemporality")))
    return out


def test_file_exporter_quantiles_decode_within_accuracy(tmp_path):
    path = tmp_path / "telemetry.jsonl"
    rng = np.random.default_rng(7)
    confidences = rng.beta(8, 2, size=5000)
    modelotel.configure(service_name="file-svc", exporter="file", path=path, export_interval=3600, traces=False)
    try:

        @modelotel.instrument_model(name="file-model", version="1", confidence=lambda out: out)
        def predict(c):
            return c

        for c in confidences:
            predict(float(c))
    finally:
        modelotel.shutdown()
    points = _file_points(path, conv.PREDICTION_CONFIDENCE_METRIC)
    assert points, "no confidence histogram in the file"
    res, point, temporality = points[-1]
    assert res["service.name"] == "file-svc"
    assert temporality == 2  # CUMULATIVE, as an OTLP enum integer
    sketch = LogSketch.from_otlp_point(point)
    assert sketch.count == len(confidences)
    for q in (0.5, 0.9, 0.99):
        exact = np.quantile(confidences, q, method="lower")
        assert abs(sketch.quantile(q) - exact) <= sketch.relative_accuracy * exact + 1e-12
    durations = _file_points(path, conv.INFERENCE_DURATION)
    assert int(durations[-1][1]["count"]) == len(confidences)


def test_otlp_grpc_exporter_into_real_receiver(monkeypatch):
    with OTLPReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{receiver.endpoint}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        modelotel.configure(service_name="grpc-svc", exporter="otlp", export_interval=3600, traces=False)
        try:

            @modelotel.instrument_model(name="grpc-model", version="9")
            def predict(x):
                return np.array([0.25, 0.75])

            for _ in range(42):
                predict([1.0, 2.0])
            assert modelotel.force_flush()
        finally:
            modelotel.shutdown()
        assert receiver.wait_for(lambda r: r.metrics_requests, timeout=10)
        found = []
        for request in receiver.metrics_requests:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        if m.name == conv.INFERENCE_DURATION:
                            for p in m.exponential_histogram.data_points:
                                attrs = {a.key: a.value.string_value for a in p.attributes}
                                if attrs.get(conv.MODEL_NAME) == "grpc-model":
                                    found.append((rm.resource, p))
        resource, point = found[-1]
        assert point.count == 42
        assert point.scale == conv.DEFAULT_SCALE
        sketch = LogSketch.from_otlp_point(point)
        assert sketch.count == 42 and sketch.min > 0
        res_attrs = {a.key: a.value.string_value for a in resource.attributes}
        assert res_attrs["service.name"] == "grpc-svc"
        assert len(res_attrs["service.instance.id"]) == 36


def test_delta_temporality_windows(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    exporter = MemoryMetricExporter()
    modelotel.configure(exporter=exporter, export_interval=3600, traces=False)
    try:

        @modelotel.instrument_model(name="delta-model")
        def predict(x):
            return [0.4, 0.6]

        for _ in range(5):
            predict(1)
        modelotel.force_flush()
        for _ in range(3):
            predict(1)
        modelotel.force_flush()
        modelotel.force_flush()  # an empty window exports nothing for the model
    finally:
        modelotel.shutdown()
    windows = [
        [p for p in exporter.all_points(conv.INFERENCE_DURATION) if p.attributes[conv.MODEL_NAME] == "delta-model"]
        for _ in [0]
    ][0]
    assert [p.count for p in windows] == [5, 3]
    assert windows[1].start_time_unix_nano == windows[0].time_unix_nano
    from opentelemetry.sdk.metrics.export import AggregationTemporality

    batch = exporter.batches[0]
    metric = batch.resource_metrics[0].scope_metrics[0].metrics[0]
    assert metric.data.aggregation_temporality == AggregationTemporality.DELTA


def test_cumulative_accumulates(memory_exporter):
    @modelotel.instrument_model(name="cum-model")
    def predict(x):
        return x

    predict(1)
    modelotel.force_flush()
    predict(1)
    predict(1)
    modelotel.force_flush()
    points = [
        p for p in memory_exporter.all_points(conv.INFERENCE_DURATION) if p.attributes[conv.MODEL_NAME] == "cum-model"
    ]
    assert [p.count for p in points] == [1, 3]
    assert points[0].start_time_unix_nano == points[1].start_time_unix_nano


def test_cardinality_cap_sends_excess_to_overflow_series():
    exporter = MemoryMetricExporter()
    modelotel.configure(exporter=exporter, export_interval=3600, traces=False, max_series=4)
    try:
        models = [
            modelotel.instrument_model(name="capped", attributes={"shard": str(i)})(lambda x: x) for i in range(10)
        ]
        for m in models:
            m(1)
        modelotel.force_flush()
    finally:
        modelotel.shutdown()
    points = exporter.last_points(conv.INFERENCE_DURATION)
    assert len(points) <= 4 + 1
    overflow = [p for p in points if p.attributes.get(conv.OVERFLOW) is True]
    assert len(overflow) == 1
    assert sum(p.count for p in points) >= 10  # nothing lost: excess counted in the overflow series


def test_resource_from_standard_env(tmp_path):
    """Without an application TracerProvider or MeterProvider, the Resource comes from OTEL_* variables."""
    path = tmp_path / "res.jsonl"
    env = dict(
        os.environ,
        OTEL_SERVICE_NAME="env-svc",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=staging,team=ml",
        MODELOTEL_EXPORT_FILE=str(path),
    )
    script = "import modelotel\nmodelotel.instrument_model(name='res')(lambda x: x)(1)\nmodelotel.shutdown()\n"
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (res, _, _) = _file_points(path, conv.INFERENCE_DURATION)[-1]
    assert res["service.name"] == "env-svc"
    assert res["deployment.environment"] == "staging" and res["team"] == "ml"
    assert len(res["service.instance.id"]) == 36


def test_app_meter_provider_exporter_is_reused():
    """An application that already set an SDK MeterProvider gets our data through its exporter."""
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, "tests")
        from conftest import MemoryMetricExporter
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        exporter = MemoryMetricExporter()
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        provider = MeterProvider(resource=Resource({"service.name": "app-svc"}), metric_readers=[reader])
        metrics.set_meter_provider(provider)
        import modelotel
        modelotel.configure(traces=False)
        modelotel.instrument_model(name="reuse")(lambda x: x)(1)
        modelotel.force_flush()
        rms = [rm for b in exporter.batches for rm in b.resource_metrics]
        names = {m.name for rm in rms for sm in rm.scope_metrics for m in sm.metrics}
        svc = {rm.resource.attributes.get("service.name") for b in exporter.batches for rm in b.resource_metrics}
        assert "ml.inference.duration" in names, names
        assert svc == {"app-svc"}, svc
        print("OK")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout


def test_forked_child_exports_its_own_data(tmp_path):
    path = tmp_path / "fork.jsonl"
    script = textwrap.dedent(
        f"""
        import os, modelotel
        modelotel.configure(service_name="forky", exporter="file", path={str(path)!r}, export_interval=3600,
                            traces=False)
        predict = modelotel.instrument_model(name="forked")(lambda x: x)
        for _ in range(3):
            predict(1)
        pid = os.fork()
        if pid == 0:
            for _ in range(7):
                predict(1)
            modelotel.shutdown()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        modelotel.shutdown()
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    by_instance = {}
    for res, point, _ in _file_points(path, conv.INFERENCE_DURATION):
        by_instance.setdefault(res["service.instance.id"], []).append(int(point["count"]))
    assert sorted(max(v) for v in by_instance.values()) == [3, 7]


def test_flush_at_interpreter_exit_without_shutdown(tmp_path):
    path = tmp_path / "exit.jsonl"
    env = dict(os.environ, MODELOTEL_EXPORT_FILE=str(path), OTEL_METRIC_EXPORT_INTERVAL="3600000")
    script = "import modelotel\np = modelotel.instrument_model(name='at-exit')(lambda x: x)\nfor _ in range(11): p(1)\n"
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    counts = [int(p["count"]) for _, p, _ in _file_points(path, conv.INFERENCE_DURATION)]
    assert counts and counts[-1] == 11


def test_bad_environment_is_a_clear_error_not_a_traceback(tmp_path):
    env = dict(os.environ, OTEL_METRIC_EXPORT_INTERVAL="soon", MODELOTEL_EXPORT_FILE=str(tmp_path / "x.jsonl"))
    script = "import modelotel\np = modelotel.instrument_model(name='m')(lambda x: x * 2)\nprint(p(21))\n"
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip() == "42"
    assert "OTEL_METRIC_EXPORT_INTERVAL='soon' is not a number" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_configure_rejects_bad_arguments():
    with pytest.raises(modelotel.ConfigError, match="exporter"):
        modelotel.configure(exporter="kafka")
    with pytest.raises(modelotel.ConfigError, match="scale"):
        modelotel.configure(exporter="none", scale=12)
    with pytest.raises(modelotel.ConfigError, match="temporality"):
        modelotel.configure(exporter="none", temporality="sometimes")


def test_self_metrics_are_exported_with_totals(memory_exporter):
    @modelotel.instrument_model(name="selfm", confidence=lambda out: 1 / 0)
    def predict(x):
        return x

    for _ in range(3):
        predict(1)
    modelotel.force_flush()
    errors = memory_exporter.last_points(conv.INTERNAL_ERRORS)
    assert total_count(errors, **{conv.INTERNAL_ERROR_KIND: "confidence_callable"}) == 3


def test_background_thread_exports_on_its_interval():
    import time

    exporter = MemoryMetricExporter()
    modelotel.configure(exporter=exporter, export_interval=0.2, traces=False)
    try:
        modelotel.instrument_model(name="periodic")(lambda x: x)(1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not exporter.last_points(conv.INFERENCE_DURATION):
            time.sleep(0.05)
        points = exporter.last_points(conv.INFERENCE_DURATION)
    finally:
        modelotel.shutdown()
    assert total_count(points, **{conv.MODEL_NAME: "periodic"}) == 1


def test_a_burst_of_traced_calls_loses_no_span(tmp_path):
    """modelotel's own TracerProvider queues bursts (the SDK's default 2,048-span queue drops them)."""
    path = tmp_path / "burst.jsonl"
    script = textwrap.dedent(
        f"""
        import modelotel
        modelotel.configure(exporter="file", path={str(path)!r}, traces=True, export_interval=3600)
        predict = modelotel.instrument_model(name="burst")(lambda x: [0.5, 0.5])
        for i in range(5000):
            predict([float(i)])
        modelotel.shutdown()
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELOTEL_"))}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "dropping" not in proc.stderr.lower()
    spans = 0
    with open(path) as fh:
        for line in fh:
            for rs in json.loads(line).get("resourceSpans", []):
                for ss in rs["scopeSpans"]:
                    spans += sum(1 for s in ss["spans"] if s["name"] == "predict burst")
    assert spans == 5000
