"""Shared fixtures: a real in-memory MetricExporter and a process-wide SDK TracerProvider.

The OpenTelemetry API lets a process set its global TracerProvider once, so the tests install one
SDK provider with an in-memory span exporter for the whole session, as an application would.
"""

from __future__ import annotations

import os
import tempfile
import threading

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import modelotel
from modelotel.metrics.recorder import iter_points

# A decorated function called before any configure() configures from the environment; keep its
# embedded-default file out of the working tree.
os.environ.setdefault("MODELOTEL_EXPORT_FILE", os.path.join(tempfile.mkdtemp(prefix="modelotel-tests-"), "t.jsonl"))

SPANS = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(SPANS))
trace.set_tracer_provider(_provider)


class MemoryMetricExporter(MetricExporter):
    """Keeps every MetricsData it is given; a complete MetricExporter, used the way the SDK uses one."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.batches: list[MetricsData] = []
        self._lock = threading.Lock()

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        with self._lock:
            self.batches.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass

    def last_points(self, name: str) -> list:
        """Data points of `name` in the most recent batch that has it (cumulative view)."""
        for batch in reversed(self.batches):
            points = [p for n, p in iter_points(batch) if n == name]
            if points:
                return points
        return []

    def all_points(self, name: str) -> list:
        return [p for batch in self.batches for n, p in iter_points(batch) if n == name]


@pytest.fixture
def memory_exporter():
    exporter = MemoryMetricExporter()
    modelotel.configure(service_name="test-svc", exporter=exporter, export_interval=3600, traces=False)
    yield exporter
    modelotel.shutdown()


@pytest.fixture
def spans():
    SPANS.clear()
    yield SPANS
    SPANS.clear()


def total_count(points, **attrs) -> int:
    """Sum of `count` (histograms) or `value` (sums) over points whose attributes include `attrs`."""
    total = 0
    for p in points:
        if all(p.attributes.get(k) == v for k, v in attrs.items()):
            total += getattr(p, "count", None) if hasattr(p, "count") else p.value
    return total


# tests/ mirrors the package: tests/sdk/ and tests/evaluator/ hold the unit suites of each side, tests/e2e/ the
# end-to-end suites (the collector, Prometheus/promtool, Chromium, real servers and restarts, the wheel); the
# package-wide checks (tests/test_architecture.py) sit here. `make test` runs everything on the main venv and
# `-m "not e2e"` on the other supported Pythons. A test marked `collector` elsewhere is end-to-end too.
E2E_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.path).startswith(E2E_DIR + os.sep) or item.get_closest_marker("collector"):
            item.add_marker(pytest.mark.e2e)
