"""``modelotel serve --otlp-endpoint``: the SLO gauges (outputs/exposition.py ``GAUGES``) of the latest evaluation
as OTLP gauges (``modelotel.slo.*``), through the OpenTelemetry SDK."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..._version import __version__
from ..outputs.exposition import GAUGES, Gauge, slo_labels
from .receiver import Receiver

__all__ = ["EXPORT_TIMEOUT_S", "meter_provider"]

EXPORT_TIMEOUT_S = 5  # an OTLP export (with its retries) to --otlp-endpoint; bounds the wait at shutdown too


def meter_provider(receiver: Receiver, endpoint: str, protocol: str, every: float) -> Any:
    """A MeterProvider whose observable gauges read the latest evaluation, exported every ``every`` seconds."""
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(
            endpoint=endpoint, insecure=endpoint.startswith("http://"), timeout=EXPORT_TIMEOUT_S
        )
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HTTPExporter

        url = endpoint if endpoint.rstrip("/").endswith("/v1/metrics") else endpoint.rstrip("/") + "/v1/metrics"
        exporter = HTTPExporter(endpoint=url, timeout=EXPORT_TIMEOUT_S)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=every * 1000)
    provider = MeterProvider(resource=Resource.create({"service.name": "modelotel-serve"}), metric_readers=[reader])
    meter = provider.get_meter("modelotel.serve", __version__)

    def observe(gauge: Gauge) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            evaluation = receiver.latest
            if evaluation is None:
                return []
            return [
                Observation(value, slo_labels(r.slo) | labels)
                for r in evaluation.results
                for labels, value in gauge.samples(r)
            ]

        return callback

    for gauge in GAUGES:
        meter.create_observable_gauge(gauge.otlp_name, [observe(gauge)], unit=gauge.unit, description=gauge.help)
    return provider
