"""Process-wide state: configure(), shutdown(), force_flush(), lazy start and fork handling.

``STATE`` is read by every instrumented call (one global and two attribute lookups), so it holds
plain attributes only. Decorated functions work before configure(): their first call configures
from the environment.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from typing import Any

import modelotel.config as config
import modelotel.sigterm as sigterm

from ._otel_compat import meter_provider_resource_and_readers, reader_exporter
from .feedback.remote import REMOTE_MODELS
from .metrics.exemplars import FILTER as EXEMPLAR_FILTER
from .metrics.export import ExportLoop, build_resource, exporter_temporality, make_metric_exporter
from .metrics.recorder import Recorder
from .metrics.selftelemetry import SELF
from .privacy import FeatureHasher, hasher_from_env

_log = logging.getLogger("modelotel")

OFF = "off"


class _State:
    def __init__(self) -> None:
        self.started = False
        self.fast = False  # started and not tracing: the instrumented call's one-check fast path
        self.trace_mode = OFF
        self.tracer: Any = None
        self.hasher: FeatureHasher = hasher_from_env(None)
        self.settings: config.Settings | None = None
        self.explicit = False  # configure() was called by the application
        self.recorder = Recorder()
        self.recorder.register(REMOTE_MODELS)  # feedback for models known only from their prediction ids
        self.loop: ExportLoop | None = None
        self.span_provider: Any = None  # ours, shut down by us; None when the app owns tracing
        self.resource: Any = None
        self.lock = threading.RLock()
        self.atexit_registered = False
        self.closed = False  # shutdown() was called: record nothing until configure() again
        self.deployment_role = "primary"
        # A forked child's inherited TracerProvider when it was ours in the parent: the child adopts it.
        self.forked_span_provider: Any = None
        self.mp_finalizer_registered = False  # this multiprocessing child flushes at its exit


STATE = _State()


def configure(
    service_name: str | None = None,
    exporter: Any = None,
    path: str | os.PathLike[str] | None = None,
    traces: bool | str | None = None,
    *,
    export_interval: float | None = None,
    temporality: str | None = None,
    scale: int | None = None,
    max_series: int | None = None,
    deployment_role: str | None = None,
    resource_attributes: dict[str, Any] | None = None,
    sigterm_flush: bool | None = None,
) -> config.Settings:
    """Set up export (and tracing) for this process; returns the resolved settings.

    Without arguments everything comes from the environment (see config.py). ``sigterm_flush=False``
    leaves SIGTERM's handler alone (default: export on SIGTERM, see sigterm.py). Raises
    ``modelotel.ConfigError`` naming the bad setting; this is the only modelotel call that raises.
    """
    from .tracing.provider import app_tracer_provider

    app_tp = app_tracer_provider()
    app_mp_resource, app_exporter = _app_meter_pipeline()
    if exporter is None and app_exporter is not None:
        exporter = app_exporter
    if temporality is None and exporter is not None and not isinstance(exporter, str):
        temporality = exporter_temporality(exporter)
    settings = config.resolve(
        service_name=service_name,
        exporter=exporter,
        path=path,
        traces=traces,
        export_interval=export_interval,
        temporality=temporality,
        scale=scale,
        max_series=max_series,
        deployment_role=deployment_role,
        resource_attributes=resource_attributes,
        app_has_tracer=app_tp is not None and app_tp is not STATE.forked_span_provider,
        sigterm_flush=sigterm_flush,
    )
    with STATE.lock:
        _stop_locked()
        _start_locked(settings, app_tp=app_tp, base_resource=app_mp_resource or _resource_of(app_tp))
        STATE.explicit = True
        STATE.closed = False
    return settings


def _resource_of(provider: Any) -> Any:
    return getattr(provider, "resource", None) if provider is not None else None


def _app_meter_pipeline() -> tuple[Any, Any]:
    """(resource, exporter) of an application's SDK MeterProvider with a periodic reader, if any.

    The OTel Python SDK has no public hook for an external metric producer, so we send our data
    through the same exporter the application configured rather than replacing its provider.
    """
    try:
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider

        provider = metrics.get_meter_provider()
        if not isinstance(provider, MeterProvider):
            return None, None
        resource, readers = meter_provider_resource_and_readers(provider)
        for reader in readers:
            exporter = reader_exporter(reader)
            if exporter is not None and hasattr(exporter, "export"):
                return resource, exporter
        return resource, None
    except Exception as exc:  # private attributes may move between SDK versions
        SELF.error("app_meter_provider", exc)
        return None, None


def _start_locked(settings: config.Settings, *, app_tp: Any = None, base_resource: Any = None) -> None:
    from .tracing import provider as tracing

    STATE.settings = settings
    STATE.hasher = hasher_from_env(settings.hash_key)
    STATE.deployment_role = settings.deployment_role
    rec = STATE.recorder
    rec.scale = settings.scale
    rec.max_buckets = settings.max_buckets
    rec.max_series = settings.max_series
    rec.delta = settings.temporality == "delta"
    EXEMPLAR_FILTER.mode = settings.exemplar_filter
    rec.reset_series()  # the previous pipeline (if any) exported its last data in _stop_locked
    resource = build_resource(settings, base_resource)
    STATE.resource = resource
    exporter, owned = make_metric_exporter(settings)
    if settings.path_default and settings.exporter == "file" and exporter is not None:
        _say_where_telemetry_goes(settings, exporter.path)
    STATE.loop = ExportLoop(
        rec,
        resource,
        exporter,
        interval_s=settings.export_interval_s,
        timeout_s=settings.export_timeout_s,
        owns_exporter=owned,
    )
    STATE.loop.start()

    STATE.tracer = None
    STATE.span_provider = None
    mode = settings.traces
    forked_provider, STATE.forked_span_provider = STATE.forked_span_provider, None
    if mode != OFF:
        provider = app_tp
        if provider is not None and provider is forked_provider:
            # Our parent's provider, inherited by fork: still ours (flushed at shutdown), and its spans
            # carry this process's service.instance.id, the one the metrics carry.
            tracing.set_provider_resource(provider, resource)
            STATE.span_provider = provider
        elif provider is None:
            provider = tracing.make_tracer_provider(settings, resource)
            if provider is None:
                if settings.traces_explicit:
                    _log.warning("modelotel: traces requested but exporter %r has no span route", settings.exporter)
                mode = OFF
            else:
                STATE.span_provider = provider
                from opentelemetry import trace

                trace.set_tracer_provider(provider)  # a no-op with a warning if someone raced us
        if provider is not None:
            from ._version import __version__

            STATE.tracer = provider.get_tracer("modelotel", __version__)
    STATE.trace_mode = mode
    STATE.started = True
    STATE.fast = mode == OFF
    if not STATE.atexit_registered:
        atexit.register(shutdown)
        STATE.atexit_registered = True
    if settings.sigterm_flush:
        sigterm.install()
        sigterm.start_flusher(force_flush)
    else:
        sigterm.uninstall()
    _flush_at_multiprocessing_exit()


def _flush_at_multiprocessing_exit() -> None:
    """multiprocessing children end with os._exit (no atexit); their exit path runs util.Finalize hooks."""
    if STATE.mp_finalizer_registered or "multiprocessing" not in sys.modules:
        return
    import multiprocessing
    import multiprocessing.util

    if multiprocessing.parent_process() is None:
        return  # the main process: atexit runs shutdown()
    multiprocessing.util.Finalize(None, shutdown, exitpriority=0)
    STATE.mp_finalizer_registered = True


def arm_sigterm() -> None:
    """Install the SIGTERM export now if this is the main thread (a decorator or middleware being set up):
    the first instrumented call, which starts export, may come on a server's request thread, where Python
    allows no signal handler to be installed."""
    settings = STATE.settings
    if settings.sigterm_flush if settings is not None else config.sigterm_flush_enabled():
        sigterm.install()


_said_where = False  # once per process (a forked child inherits it)


def _say_where_telemetry_goes(settings: config.Settings, path: str) -> None:
    """Nothing chose where telemetry goes: say so once, with the absolute path and how to change it."""
    global _said_where
    if _said_where:
        return
    _said_where = True
    bound = (
        f"rotated at {settings.file_max_bytes} bytes, {settings.file_backups} backups kept"
        if settings.file_max_bytes
        else "no size bound"
    )
    _log.warning(
        "modelotel: no exporter configured: telemetry is appended to %s (%s); set %s=<path> or "
        "%s=<collector>, or call modelotel.configure(exporter=..., path=...), to change it",
        path,
        bound,
        config.ENV_EXPORT_FILE,
        config.OTEL_EXPORTER_OTLP_ENDPOINT,
    )


def _stop_locked(timeout_s: float = 30.0) -> bool:
    ok = True
    loop, STATE.loop = STATE.loop, None
    if loop is not None:
        ok = loop.stop(timeout_s)
    provider, STATE.span_provider = STATE.span_provider, None
    if provider is not None:
        try:
            provider.force_flush(int(timeout_s * 1000))
        except Exception as exc:
            SELF.error("span_flush", exc)
    STATE.started = False
    STATE.fast = False
    STATE.trace_mode = OFF
    STATE.tracer = None
    return ok


def autostart() -> None:
    """First instrumented call before configure(): configure from the environment, never raise."""
    with STATE.lock:
        if STATE.started or STATE.closed:
            return
        try:
            if STATE.settings is not None:  # a forked child, or after shutdown(): same settings again
                from .tracing.provider import app_tracer_provider

                _start_locked(STATE.settings, app_tp=app_tracer_provider())
            else:
                configure()
        except Exception as exc:
            _log.error(
                "modelotel: cannot configure from the environment (%s); telemetry is NOT exported "
                "until configure() succeeds",
                exc,
            )
            STATE.settings = config.resolve(exporter="none", environ={})
            _start_locked(STATE.settings)


def shutdown(timeout: float = 30.0) -> bool:
    """Export everything pending, stop the background thread and flush spans. Idempotent."""
    with STATE.lock, sigterm.final_export():
        STATE.closed = True
        ok = _stop_locked(timeout)
        provider = None
        if STATE.settings is not None and STATE.span_provider is not None:
            provider = STATE.span_provider
        if provider is not None:
            provider.shutdown()
        return ok


def force_flush(timeout: float = 30.0) -> bool:
    """Export everything recorded so far (metrics and spans) now; True on success."""
    loop = STATE.loop
    ok = True
    if loop is not None:
        ok = loop.force_flush(timeout)
    provider = STATE.span_provider
    if provider is None and STATE.tracer is not None:
        from .tracing.provider import app_tracer_provider

        provider = app_tracer_provider()
    if provider is not None:
        try:
            ok = bool(provider.force_flush(int(timeout * 1000))) and ok
        except Exception as exc:
            SELF.error("span_flush", exc)
            ok = False
    return ok


def _after_fork_child() -> None:
    """The child exports its own data under its own service.instance.id; nothing of the parent's."""
    STATE.lock = threading.RLock()
    STATE.forked_span_provider = STATE.span_provider
    STATE.mp_finalizer_registered = False  # the parent's Finalize is not this process's
    SELF.__init__()
    STATE.recorder.reset()
    # The parent's thread does not exist here; the next instrumented call restarts the pipeline
    # with the same settings (new thread, new exporter unless the application passed one, new
    # service.instance.id). Spans keep going through the inherited TracerProvider.
    STATE.loop = None
    STATE.span_provider = None
    STATE.started = False
    STATE.fast = False


os.register_at_fork(after_in_child=_after_fork_child)
