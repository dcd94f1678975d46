"""The span pipeline of modelotel's own TracerProvider: a lock-free queue drained by one export thread.

``SpanQueue`` is that provider's only span processor. A span of ours ends with one ``list.append``
(``put``); the SDK's spans (the application's, on the provider we installed) arrive through
``on_end`` and join the same list. The thread wakes every ``POLL_S``, and exports when a batch is
full (``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``, 512) or ``OTEL_BSP_SCHEDULE_DELAY`` (5 s) has passed since
the last export; ``force_flush`` and ``shutdown`` export everything at once. Appends that race with
a drain land after the drained prefix and go with the next one (see ``recorder.drain``). A full
queue (``OTEL_BSP_MAX_QUEUE_SIZE``, 16384) drops the span and counts it (``modelotel.dropped``,
reason ``span_queue_full``) rather than blocking the request.

Exporters that can encode modelotel's spans themselves (``export_light``: the OTLP-JSON file exporter)
get them as they are; any other SpanExporter gets the SDK's ``ReadableSpan``, built on this thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ..config import Settings
from ..metrics.buffers import drain
from ..metrics.selftelemetry import SELF

_log = logging.getLogger("modelotel")

POLL_S = 0.2


def make_span_exporter(settings: Settings) -> SpanExporter | None:
    """The SpanExporter matching the metric exporter choice, or None when there is nowhere to send spans."""
    kind = settings.exporter
    if kind == "file":
        from ..otlp.json import OTLPJsonFileSpanExporter

        return OTLPJsonFileSpanExporter(settings.path, max_bytes=settings.file_max_bytes, backups=settings.file_backups)
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if kind == "otlp" or not isinstance(kind, str):
        if settings.otlp_protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter()
        return otlp_grpc_span_exporter()
    return None


class EncodedSpans(Sequence[ReadableSpan]):
    """A batch of LightSpans with their OTLP request encoded once (otlp_proto); as a sequence, the SDK's spans.

    Exporters that know it send ``request``; any code that iterates it instead gets ReadableSpans,
    so an SDK version that encodes differently still exports the right data (just more slowly).
    """

    def __init__(self, spans: Sequence[Any]) -> None:
        self.spans = spans
        self._request: Any = None

    @property
    def request(self) -> Any:
        if self._request is None:
            from ..otlp.proto import light_spans_to_request

            self._request = light_spans_to_request(self.spans)
        return self._request

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [s.to_readable() for s in self.spans[index]]
        return self.spans[index].to_readable()


def otlp_grpc_span_exporter(**options: Any) -> SpanExporter:
    """The SDK's OTLP/gRPC span exporter (its endpoint, headers, TLS, retries, OTEL_EXPORTER_OTLP_* settings),
    also taking modelotel's spans through ``export_light`` without converting them to ReadableSpans."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    class ModelotelOTLPSpanExporter(OTLPSpanExporter):
        def _translate_data(self, data: Any) -> Any:
            if isinstance(data, EncodedSpans):
                return data.request
            return super()._translate_data(data)

        def export_light(self, spans: Sequence[Any]) -> SpanExportResult:
            return self.export(EncodedSpans(spans))

    return ModelotelOTLPSpanExporter(**options)


class SpanQueue(SpanProcessor):
    """Spans appended by the request path, exported in batches by one daemon thread."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = 16384,
        max_export_batch_size: int | None = None,
        schedule_delay_s: float | None = None,
    ) -> None:
        self.exporter = exporter
        self.max_queue_size = max(1, int(max_queue_size))
        batch = max_export_batch_size or 512
        self.max_export_batch_size = max(1, min(batch, self.max_queue_size))
        self.schedule_delay_s = schedule_delay_s if schedule_delay_s is not None else 5.0
        self.spans: list[Any] = []
        self._full_message = f"more than {self.max_queue_size} spans waiting (OTEL_BSP_MAX_QUEUE_SIZE)"
        self._export_lock = threading.Lock()
        self._stop = threading.Event()
        self._shutdown = False
        self.exported = 0
        self._start_thread()
        weak_reinit = weakref.WeakMethod(self._after_fork)

        def after_in_child() -> None:
            reinit = weak_reinit()
            if reinit is not None:
                reinit()

        os.register_at_fork(after_in_child=after_in_child)

    # -- the request path ------------------------------------------------------------------------
    def put(self, span: Any) -> None:
        """Queue one ended span (a LightSpan or a ReadableSpan): one append, or a counted drop when full.

        modelotel's own spans skip this: tracing.start_span checks the bound when a span starts and
        ends it with ``spans.append`` (or ``drop``), so at most the spans in flight exceed the bound.
        """
        spans = self.spans
        if len(spans) < self.max_queue_size:
            spans.append(span)
        else:
            self.drop(span)

    def drop(self, span: Any = None) -> None:
        SELF.drop("span_queue_full", 1, self._full_message)

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not self._shutdown and span.context is not None and span.context.trace_flags.sampled:
            self.put(span)

    # -- the export thread -----------------------------------------------------------------------
    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="modelotel-spans", daemon=True)
        self._thread.start()

    def _after_fork(self) -> None:
        # The parent's spans are the parent's to export; the child starts empty with its own thread.
        self._export_lock = threading.Lock()
        self._stop = threading.Event()
        self.spans.clear()
        if not self._shutdown:
            self._start_thread()

    def _run(self) -> None:
        next_export = time.monotonic() + self.schedule_delay_s
        stop = self._stop
        while not stop.wait(min(POLL_S, max(0.0, next_export - time.monotonic()))):
            if len(self.spans) >= self.max_export_batch_size or time.monotonic() >= next_export:
                self._export_all()
                next_export = time.monotonic() + self.schedule_delay_s

    def _export_all(self) -> bool:
        """Export everything queued so far, in batches. Never raises."""
        ok = True
        with self._export_lock:
            spans = drain(self.spans)
            size = self.max_export_batch_size
            for i in range(0, len(spans), size):
                ok = self._export(spans[i : i + size]) and ok
        return ok

    def _export(self, batch: Sequence[Any]) -> bool:
        exporter = self.exporter
        try:
            for s in batch:  # traced calls whose attributes were left to be worked out off the request path
                owner = getattr(s, "deferred_owner", None)
                if owner is not None:
                    owner.complete_traced()
            light = [s for s in batch if not isinstance(s, ReadableSpan)]
            sdk = [s for s in batch if isinstance(s, ReadableSpan)] if len(light) < len(batch) else []
            export_light = getattr(exporter, "export_light", None)
            if export_light is None:
                sdk += [s.to_readable() for s in light]
                light = []
            ok = True
            if light:
                ok = export_light(light) is SpanExportResult.SUCCESS
            if sdk:
                ok = exporter.export(sdk) is SpanExportResult.SUCCESS and ok
            if ok:
                self.exported += len(batch)
            else:
                SELF.drop("span_export_failed", len(batch), f"{type(exporter).__name__} did not accept the spans")
            return ok
        except Exception as exc:
            SELF.error("span_export", exc)
            SELF.drop("span_export_failed", len(batch), f"{type(exporter).__name__} raised {type(exc).__name__}")
            return False

    # -- SpanProcessor -----------------------------------------------------------------------------
    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        ok = self._export_all()
        try:
            ok = bool(self.exporter.force_flush(timeout_millis)) and ok
        except Exception as exc:
            SELF.error("span_flush", exc)
            ok = False
        return ok

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self._stop.set()
        thread = self._thread
        if thread.is_alive() and thread is not threading.current_thread():
            thread.join(30)
        self._export_all()
        try:
            self.exporter.shutdown()
        except Exception as exc:
            SELF.error("span_exporter_shutdown", exc)
