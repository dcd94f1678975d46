"""Periodic export: the background thread, exporter construction, the Resource, and temporality.

The loop wakes every OTEL_METRIC_EXPORT_INTERVAL, asks the recorder for one MetricsData and hands it
to a standard OpenTelemetry ``MetricExporter`` (OTLP gRPC/HTTP, console, our OTLP-JSON file exporter,
or any instance the application passes).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.metrics import Counter, Histogram, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExporter, MetricExportResult
from opentelemetry.sdk.resources import Resource

import modelotel.conventions as conv

from .._otel_compat import preferred_temporality
from ..config import Settings
from .recorder import Recorder, iter_points
from .selftelemetry import SELF

_log = logging.getLogger("modelotel")


def build_resource(settings: Settings, base: Resource | None = None) -> Resource:
    """The application's Resource when it has one, else OTEL_* env; always a per-process instance id.

    ``service.instance.id`` is a fresh UUID per process (and per forked child), so multi-worker
    servers export distinguishable series instead of overwriting one another.
    """
    ours: dict[str, Any] = dict(settings.resource_attributes)
    if settings.service_name:
        ours[conv.SERVICE_NAME] = settings.service_name
    resource = Resource.create(ours) if base is None else base.merge(Resource(ours))
    attrs = dict(resource.attributes)
    attrs[conv.SERVICE_INSTANCE_ID] = str(uuid.uuid4())
    return Resource(attrs, resource.schema_url)


def temporality_map(temporality: str) -> dict[type, AggregationTemporality]:
    value = AggregationTemporality.DELTA if temporality == "delta" else AggregationTemporality.CUMULATIVE
    return {Counter: value, Histogram: value, UpDownCounter: AggregationTemporality.CUMULATIVE}


def exporter_temporality(exporter: Any) -> str | None:
    """What an exporter instance asked for, if it says (SDK exporters keep it privately: _otel_compat)."""
    preferred = preferred_temporality(exporter)
    if isinstance(preferred, Mapping):
        value = preferred.get(Histogram)
        if value is AggregationTemporality.DELTA:
            return "delta"
        if value is AggregationTemporality.CUMULATIVE:
            return "cumulative"
    return None


def make_metric_exporter(settings: Settings) -> tuple[MetricExporter | None, bool]:
    """(exporter, owned): owned exporters are shut down by us, an application's are not."""
    kind = settings.exporter
    if not isinstance(kind, str):
        return kind, False
    temporality = temporality_map(settings.temporality)
    if kind == "none":
        return None, True
    if kind == "file":
        from ..otlp.json import OTLPJsonFileMetricExporter

        exporter = OTLPJsonFileMetricExporter(
            settings.path,
            preferred_temporality=temporality,
            max_bytes=settings.file_max_bytes,
            backups=settings.file_backups,
        )
        return exporter, True
    if kind == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter(preferred_temporality=temporality), True
    if settings.otlp_protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    return OTLPMetricExporter(preferred_temporality=temporality), True


class ExportLoop:
    """One daemon thread: collect, export, sleep. ``stop()`` does a final collect and export."""

    def __init__(
        self,
        recorder: Recorder,
        resource: Resource,
        exporter: MetricExporter | None,
        *,
        interval_s: float,
        timeout_s: float,
        owns_exporter: bool,
    ) -> None:
        self.recorder = recorder
        self.resource = resource
        self.exporter = exporter
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.owns_exporter = owns_exporter
        self._stop = threading.Event()
        self._export_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.exports = 0
        self.failures = 0

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="modelotel-export", daemon=True)
        self._thread.start()

    FOLD_INTERVAL_S = 1.0

    def _run(self) -> None:
        next_export = time.monotonic() + self.interval_s
        while True:
            wait = min(self.FOLD_INTERVAL_S, max(0.0, next_export - time.monotonic()))
            if self._stop.wait(wait):
                return
            if time.monotonic() >= next_export:
                self.export_once(periodic=True)
                next_export += self.interval_s * max(1, int((time.monotonic() - next_export) // self.interval_s) + 1)
            else:
                try:
                    self.recorder.fold()
                except Exception as exc:
                    SELF.error("fold", exc)

    def export_once(self, timeout_s: float | None = None, periodic: bool = False) -> bool:
        """Collect and export now; True when the data (if any) was accepted. Never raises. Only a periodic export
        holds new feedback series at zero for one more export (recorder.EXPIRING_ATTRIBUTE): a flush or the last
        export shows everything."""
        try:
            with self._export_lock:
                data = self.recorder.collect(self.resource, hold=periodic)
                if data is None or self.exporter is None:
                    return True
                timeout_ms = 1000 * (timeout_s if timeout_s is not None else self.timeout_s)
                result = self.exporter.export(data, timeout_millis=timeout_ms)
                self.exports += 1
                if result is MetricExportResult.SUCCESS:
                    return True
                self.failures += 1
                SELF.drop(
                    "export_failed",
                    sum(1 for _ in iter_points(data)),
                    f"exporter {type(self.exporter).__name__} returned {result}",
                )
                return False
        except Exception as exc:
            self.failures += 1
            SELF.error("export", exc)
            return False

    def stop(self, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        ok = self.export_once(max(0.5, deadline - time.monotonic()))
        if self.exporter is not None:
            try:
                if self.owns_exporter:
                    self.exporter.shutdown(timeout_millis=max(500.0, 1000 * (deadline - time.monotonic())))
                else:
                    self.exporter.force_flush(timeout_millis=max(500.0, 1000 * (deadline - time.monotonic())))
            except Exception as exc:
                SELF.error("exporter_shutdown", exc)
        return ok

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        ok = self.export_once(timeout_s)
        if self.exporter is not None:
            try:
                self.exporter.force_flush(timeout_millis=1000 * timeout_s)
            except Exception as exc:
                SELF.error("exporter_flush", exc)
                return False
        return ok
