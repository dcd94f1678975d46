"""Settings from arguments and the environment: the only module that reads environment variables.

Standard OpenTelemetry variables come first (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
OTEL_METRICS_EXPORTER, OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_*, OTEL_METRIC_EXPORT_INTERVAL,
OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, OTEL_SDK_DISABLED, OTEL_PYTHON_EXCLUDED_URLS);
``MODELOTEL_*`` variables cover what OTel has no name for. An explicit argument always wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import modelotel.conventions as conv

DEFAULT_EXPORT_FILE = "modelotel-telemetry.jsonl"

# -- The environment variables modelotel reads (this module is the only reader) -----------------------------
# Each constant's value is the variable's name. Standard OpenTelemetry variables are named as in
# ``opentelemetry.sdk.environment_variables``; modelotel's own are ``ENV_<name without MODELOTEL_>``.

OTEL_SDK_DISABLED = "OTEL_SDK_DISABLED"
"""``true``: record nothing, export nothing (as the OTel SDK); so does ``MODELOTEL_DISABLED``."""
OTEL_METRICS_EXPORTER = "OTEL_METRICS_EXPORTER"
"""``otlp``, ``console`` or ``none`` (the first of a list); unset: the file exporter unless an endpoint is set."""
OTEL_TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
"""Any value but ``none`` turns spans on when neither ``traces=`` nor ``MODELOTEL_TRACES`` says."""
OTEL_EXPORTER_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
"""A collector: set (or the metrics-specific one), it makes OTLP the default exporter."""
OTEL_EXPORTER_OTLP_METRICS_ENDPOINT = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
"""As ``OTEL_EXPORTER_OTLP_ENDPOINT``, for metrics only."""
OTEL_EXPORTER_OTLP_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
"""``grpc`` (default) or ``http/protobuf``."""
OTEL_EXPORTER_OTLP_METRICS_PROTOCOL = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
"""As ``OTEL_EXPORTER_OTLP_PROTOCOL``, for metrics only (wins over it)."""
OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"
"""``cumulative`` (default), ``delta`` or ``lowmemory`` (delta for modelotel's instruments)."""
OTEL_METRIC_EXPORT_INTERVAL = "OTEL_METRIC_EXPORT_INTERVAL"
"""Milliseconds between exports (default 60000)."""
OTEL_METRIC_EXPORT_TIMEOUT = "OTEL_METRIC_EXPORT_TIMEOUT"
"""Milliseconds an export may take (default 30000)."""
OTEL_BSP_MAX_QUEUE_SIZE = "OTEL_BSP_MAX_QUEUE_SIZE"
"""Spans queued for export before new ones are dropped (default 16384, not the SDK's 2048)."""
OTEL_BSP_MAX_EXPORT_BATCH_SIZE = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
"""Spans per export (default 512)."""
OTEL_BSP_SCHEDULE_DELAY = "OTEL_BSP_SCHEDULE_DELAY"
"""Milliseconds between span exports (default 5000)."""
OTEL_METRICS_EXEMPLAR_FILTER = "OTEL_METRICS_EXEMPLAR_FILTER"
"""Which measurements may become exemplars: ``trace_based`` (default: made inside a sampled span), ``always_on``
(inside any span, sampled or not) or ``always_off``; see ``metrics/exemplars.py``."""
OTEL_PYTHON_EXCLUDED_URLS = "OTEL_PYTHON_EXCLUDED_URLS"
"""Comma-separated URL regexes the HTTP integrations skip (``OTEL_PYTHON_<FRAMEWORK>_EXCLUDED_URLS`` first)."""
OTEL_PYTHON_FRAMEWORK_EXCLUDED_URLS = "OTEL_PYTHON_{framework}_EXCLUDED_URLS"
"""The per-framework form of ``OTEL_PYTHON_EXCLUDED_URLS`` (``{framework}``: FASTAPI, FLASK, ...)."""
OTEL_PYTHON_GRPC_EXCLUDED_SERVICES = "OTEL_PYTHON_GRPC_EXCLUDED_SERVICES"
"""Comma-separated gRPC services the server interceptor skips, as the official instrumentation reads it."""
OTEL_SEMCONV_STABILITY_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
"""Comma-separated semantic-convention opt-ins; modelotel reads ``gen_ai_latest_experimental`` (GENAI_LATEST) as
OpenTelemetry's Python instrumentations do: the GenAI metrics name the provider ``gen_ai.provider.name`` (latest
experimental conventions) instead of ``gen_ai.system`` (v1.36.0 and before, the default). Read at decoration time."""
GENAI_LATEST = "gen_ai_latest_experimental"

ENV_DISABLED = "MODELOTEL_DISABLED"
"""``true``: as ``OTEL_SDK_DISABLED``, for modelotel alone."""
ENV_EXPORT_FILE = "MODELOTEL_EXPORT_FILE"
"""The file exporter's path (set, it chooses the file exporter); default ``DEFAULT_EXPORT_FILE``."""
ENV_TRACES = "MODELOTEL_TRACES"
"""``span``, ``enrich`` or ``off`` (or true/false): the process's trace mode."""
ENV_SCALE = "MODELOTEL_SCALE"
"""The exponential histograms' scale (``conventions.DEFAULT_SCALE``; within MIN/MAX_EXPORT_SCALE)."""
ENV_MAX_SERIES = "MODELOTEL_MAX_SERIES"
"""Series per metric before new attribute sets fold into the overflow series."""
ENV_DEPLOYMENT_ROLE = "MODELOTEL_DEPLOYMENT_ROLE"
"""``primary`` (default), ``canary`` or ``shadow``: the role of models decorated without ``deployment_role=``."""
ENV_HASH_KEY = "MODELOTEL_HASH_KEY"
"""The key of the feature hash on spans (unset: a random per-process key)."""
ENV_DEBUG = "MODELOTEL_DEBUG"
"""``true``: the CLI shows internal tracebacks instead of one-line errors."""

# The file exporter's size bound: a write that would take the file past MODELOTEL_FILE_MAX_BYTES first renames
# it to ``<path>.1`` (older backups shift to ``.2`` ... up to MODELOTEL_FILE_BACKUPS, the oldest is deleted), so
# the telemetry on disk stays under about (backups + 1) x max bytes. 0 turns rotation off. ``modelotel evaluate``
# given ``<path>`` reads the backups first, as one stream.
ENV_FILE_MAX_BYTES = "MODELOTEL_FILE_MAX_BYTES"
DEFAULT_FILE_MAX_BYTES = 100 * 1024 * 1024
ENV_FILE_BACKUPS = "MODELOTEL_FILE_BACKUPS"
DEFAULT_FILE_BACKUPS = 5
# How long a write waits for the file's lock (another thread or process writing) before it gives up and the
# export counts as failed (modelotel.dropped{reason=export_failed}): a stuck writer must never hang serving.
FILE_LOCK_TIMEOUT_S = 5.0
TRACE_MODES = ("span", "enrich", "off")
EXEMPLAR_FILTERS = ("trace_based", "always_on", "always_off")

# SIGTERM (docker stop, systemd, Kubernetes) kills a Python process without running atexit. Where modelotel runs,
# a SIGTERM handler exports what is pending (bounded by SIGTERM_FLUSH_TIMEOUT_S) and then does what the previous
# handler would have done. MODELOTEL_SIGTERM_FLUSH=0 (or configure(sigterm_flush=False)) leaves SIGTERM alone.
ENV_SIGTERM_FLUSH = "MODELOTEL_SIGTERM_FLUSH"
SIGTERM_FLUSH_TIMEOUT_S = 5.0


ENV_FEEDBACK_KEY = "MODELOTEL_FEEDBACK_KEY"
"""The secret prediction ids are signed with (any text; at least 16 characters). Set the same value in every
serving and labelling process: unset, each process signs with a random key of its own and only it can judge its
ids (feedback elsewhere is counted in ``modelotel.dropped{feedback_id_unknown_key}``)."""
ENV_FEEDBACK_PREVIOUS_KEYS = "MODELOTEL_FEEDBACK_PREVIOUS_KEYS"
"""Comma-separated keys ids may still be signed with (key rotation): accepted, never used to sign."""
ENV_FEEDBACK_HORIZON = "MODELOTEL_FEEDBACK_HORIZON"
"""Seconds after a prediction that its feedback is accepted (default 90 days; later: ``feedback_id_expired``)."""
ENV_FEEDBACK_TIME_BUCKET = "MODELOTEL_FEEDBACK_TIME_BUCKET"
"""Seconds per prediction-time bucket on feedback series (``ml.prediction.time_bucket_end``; default 300; predictions
judged over a day late get hour buckets; 0: none, feedback then counts when it arrives)."""
ENV_FEEDBACK_DEDUPE = "MODELOTEL_FEEDBACK_DEDUPE"
"""How many judged ids a process remembers to count a repeated feedback once (default 100000)."""


class ConfigError(ValueError):
    """A setting is unusable; the message names the setting and what is wrong."""



@dataclass(frozen=True)
class Settings:
    """Everything configure() decided, resolved once."""

    service_name: str | None = None
    exporter: Any = "file"  # "otlp" | "file" | "console" | "none" | a MetricExporter instance
    path: str = DEFAULT_EXPORT_FILE
    path_default: bool = True  # nothing chose the exporter or the path: the file in the working directory
    file_max_bytes: int = DEFAULT_FILE_MAX_BYTES
    file_backups: int = DEFAULT_FILE_BACKUPS
    otlp_protocol: str = "grpc"  # "grpc" | "http/protobuf"
    traces: str = "off"  # "span" | "enrich" | "off"
    traces_explicit: bool = False  # the user asked for traces (argument or env), not the auto choice
    export_interval_s: float = 60.0
    export_timeout_s: float = 30.0
    temporality: str = "cumulative"  # "cumulative" | "delta"
    scale: int = conv.DEFAULT_SCALE
    max_buckets: int = conv.DEFAULT_MAX_BUCKETS
    max_series: int = conv.DEFAULT_MAX_SERIES
    hash_key: str | None = None
    deployment_role: str = "primary"
    disabled: bool = False
    span_queue_size: int = 16384  # our span queue (the SDK's default of 2048 drops bursts)
    span_batch_size: int = 512  # OTEL_BSP_MAX_EXPORT_BATCH_SIZE
    span_schedule_delay_s: float = 5.0  # OTEL_BSP_SCHEDULE_DELAY (milliseconds in the environment)
    resource_attributes: Mapping[str, Any] = field(default_factory=dict)
    sigterm_flush: bool = True  # ENV_SIGTERM_FLUSH
    exemplar_filter: str = "trace_based"  # OTEL_METRICS_EXEMPLAR_FILTER: one of EXEMPLAR_FILTERS


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _env_number(environ: Mapping[str, str], name: str, default: float, *, lo: float, hi: float) -> float:
    raw = _env(environ, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={raw!r} is outside [{lo:g}, {hi:g}]")
    return value


def _truthy(raw: str | None) -> bool:
    return raw is not None and raw.lower() in ("1", "true", "yes", "on")


def _pick_exporter(environ: Mapping[str, str]) -> str:
    """The embedded default is the file exporter; OTLP when the environment points at a collector."""
    if _env(environ, ENV_EXPORT_FILE):
        return "file"
    named = _env(environ, OTEL_METRICS_EXPORTER)
    if named:
        first = named.split(",")[0].strip().lower()
        if first in ("otlp", "console", "none"):
            return first
        raise ConfigError(f"OTEL_METRICS_EXPORTER={named!r}: modelotel supports otlp, console or none")
    if _env(environ, OTEL_EXPORTER_OTLP_ENDPOINT) or _env(environ, OTEL_EXPORTER_OTLP_METRICS_ENDPOINT):
        return "otlp"
    return "file"


def _pick_traces(traces: bool | str | None, environ: Mapping[str, str], app_has_tracer: bool) -> tuple[str, bool]:
    if traces is None:
        raw = _env(environ, ENV_TRACES)
        if raw is not None:
            traces = raw.lower()
        elif app_has_tracer:
            return "span", False
        else:
            named = (_env(environ, OTEL_TRACES_EXPORTER) or "").lower()
            return ("span", False) if named and named != "none" else ("off", False)
    if traces is True:
        return "span", True
    if traces is False:
        return "off", True
    mode = str(traces).lower()
    if mode in ("true", "on", "1"):
        mode = "span"
    elif mode in ("false", "0", "none"):
        mode = "off"
    if mode not in TRACE_MODES:
        raise ConfigError(f"traces={traces!r}: use True/False or one of {', '.join(TRACE_MODES)}")
    return mode, True


def resolve(
    *,
    service_name: str | None = None,
    exporter: Any = None,
    path: str | os.PathLike[str] | None = None,
    traces: bool | str | None = None,
    export_interval: float | None = None,
    temporality: str | None = None,
    scale: int | None = None,
    max_series: int | None = None,
    deployment_role: str | None = None,
    resource_attributes: Mapping[str, Any] | None = None,
    app_has_tracer: bool = False,
    environ: Mapping[str, str] | None = None,
    sigterm_flush: bool | None = None,
) -> Settings:
    """Merge explicit arguments over the environment; raise ConfigError naming the bad setting."""
    env = os.environ if environ is None else environ
    disabled = _truthy(_env(env, OTEL_SDK_DISABLED)) or _truthy(_env(env, ENV_DISABLED))

    if exporter is None:
        exporter = "none" if disabled else _pick_exporter(env)
    if isinstance(exporter, str):
        exporter = exporter.lower()
        if exporter not in ("otlp", "file", "console", "none"):
            raise ConfigError(f"exporter={exporter!r}: use otlp, file, console, none or a MetricExporter")
    elif not hasattr(exporter, "export"):
        raise ConfigError(f"exporter={exporter!r} is neither a name nor an OpenTelemetry MetricExporter")

    env_path = _env(env, ENV_EXPORT_FILE)
    file_path = os.fspath(path) if path is not None else (env_path or DEFAULT_EXPORT_FILE)
    path_default = path is None and env_path is None
    file_max_bytes = int(_env_number(env, ENV_FILE_MAX_BYTES, DEFAULT_FILE_MAX_BYTES, lo=0, hi=2**62))
    file_backups = int(_env_number(env, ENV_FILE_BACKUPS, DEFAULT_FILE_BACKUPS, lo=1, hi=1000))

    protocol = (
        _env(env, OTEL_EXPORTER_OTLP_METRICS_PROTOCOL) or _env(env, OTEL_EXPORTER_OTLP_PROTOCOL) or "grpc"
    ).lower()
    if protocol not in ("grpc", "http/protobuf"):
        raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: modelotel supports grpc and http/protobuf")

    trace_mode, traces_explicit = _pick_traces(traces, env, app_has_tracer)
    if disabled:
        trace_mode = "off"

    if export_interval is None:
        interval_s = _env_number(env, OTEL_METRIC_EXPORT_INTERVAL, 60000, lo=1, hi=86_400_000) / 1000
    else:
        interval_s = float(export_interval)
        if not 0.001 <= interval_s <= 86_400:
            raise ConfigError(f"export_interval={export_interval!r} seconds is outside [0.001, 86400]")
    timeout_s = _env_number(env, OTEL_METRIC_EXPORT_TIMEOUT, 30000, lo=1, hi=3_600_000) / 1000

    temp = (temporality or _env(env, OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE) or "cumulative").lower()
    # All modelotel instruments are synchronous counters and histograms, which "lowmemory" makes delta.
    if temp == "lowmemory":
        temp = "delta"
    if temp not in ("cumulative", "delta"):
        raise ConfigError(
            f"temporality {temp!r}: use cumulative, delta or lowmemory "
            "(OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE)"
        )

    sketch_scale = (
        int(_env_number(env, ENV_SCALE, conv.DEFAULT_SCALE, lo=conv.MIN_EXPORT_SCALE, hi=conv.MAX_EXPORT_SCALE))
        if scale is None
        else scale
    )
    if not isinstance(sketch_scale, int) or not conv.MIN_EXPORT_SCALE <= sketch_scale <= conv.MAX_EXPORT_SCALE:
        raise ConfigError(
            f"scale={sketch_scale!r}: must be an integer in [{conv.MIN_EXPORT_SCALE}, {conv.MAX_EXPORT_SCALE}] "
            "(the range Datadog and Prometheus accept)"
        )
    series_cap = (
        int(_env_number(env, ENV_MAX_SERIES, conv.DEFAULT_MAX_SERIES, lo=1, hi=1_000_000))
        if max_series is None
        else int(max_series)
    )
    if series_cap < 1:
        raise ConfigError(f"max_series={max_series!r}: must be at least 1")

    role = deployment_role or _env(env, ENV_DEPLOYMENT_ROLE) or "primary"
    check_role(role, ENV_DEPLOYMENT_ROLE if deployment_role is None else "deployment_role")

    span_queue = int(_env_number(env, OTEL_BSP_MAX_QUEUE_SIZE, 16384, lo=1, hi=10_000_000))
    span_batch = int(_env_number(env, OTEL_BSP_MAX_EXPORT_BATCH_SIZE, 512, lo=1, hi=10_000_000))
    span_delay_ms = _env_number(env, OTEL_BSP_SCHEDULE_DELAY, 5000, lo=0, hi=86_400_000)

    exemplar_filter = (_env(env, OTEL_METRICS_EXEMPLAR_FILTER) or "trace_based").lower()
    if exemplar_filter not in EXEMPLAR_FILTERS:
        raise ConfigError(f"OTEL_METRICS_EXEMPLAR_FILTER={exemplar_filter!r}: use one of {', '.join(EXEMPLAR_FILTERS)}")

    return Settings(
        exemplar_filter=exemplar_filter,
        span_queue_size=span_queue,
        span_batch_size=span_batch,
        span_schedule_delay_s=span_delay_ms / 1000,
        service_name=service_name,
        exporter=exporter,
        path=file_path,
        path_default=path_default,
        file_max_bytes=file_max_bytes,
        file_backups=file_backups,
        otlp_protocol=protocol,
        traces=trace_mode,
        traces_explicit=traces_explicit,
        export_interval_s=interval_s,
        export_timeout_s=timeout_s,
        temporality=temp,
        scale=sketch_scale,
        max_series=series_cap,
        hash_key=_env(env, ENV_HASH_KEY),
        deployment_role=role,
        disabled=disabled,
        resource_attributes=dict(resource_attributes or {}),
        sigterm_flush=sigterm_flush_enabled(env) if sigterm_flush is None else bool(sigterm_flush),
    )


def sigterm_flush_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """ENV_SIGTERM_FLUSH: on unless set to 0, false, no or off."""
    env = os.environ if environ is None else environ
    raw = _env(env, ENV_SIGTERM_FLUSH)
    return raw is None or raw.lower() not in ("0", "false", "no", "off")


def trace_mode_of(value: bool | str) -> str:
    """A per-model ``traces=`` option as one of TRACE_MODES."""
    return _pick_traces(value, {}, False)[0]


def default_role(environ: Mapping[str, str] | None = None) -> str:
    """MODELOTEL_DEPLOYMENT_ROLE, else primary (read when a model is decorated)."""
    env = os.environ if environ is None else environ
    return check_role(_env(env, ENV_DEPLOYMENT_ROLE) or "primary", ENV_DEPLOYMENT_ROLE)


def check_role(role: str, where: str = "deployment_role") -> str:
    if role not in conv.DEPLOYMENT_ROLES:
        raise ConfigError(f"{where}={role!r}: use one of {', '.join(conv.DEPLOYMENT_ROLES)}")
    return role


def excluded_urls(environ: Mapping[str, str] | None = None, framework: str | None = None) -> list[str]:
    """Comma-separated regexes from OTEL_PYTHON_<FRAMEWORK>_EXCLUDED_URLS or OTEL_PYTHON_EXCLUDED_URLS."""
    env = os.environ if environ is None else environ
    raw = None
    if framework:
        raw = _env(env, OTEL_PYTHON_FRAMEWORK_EXCLUDED_URLS.format(framework=framework.upper()))
    raw = raw or _env(env, OTEL_PYTHON_EXCLUDED_URLS) or ""
    return [part.strip() for part in raw.split(",") if part.strip()]


def grpc_excluded_services(environ: Mapping[str, str] | None = None) -> list[str]:
    """The service names in ``OTEL_PYTHON_GRPC_EXCLUDED_SERVICES`` (comma-separated)."""
    env = os.environ if environ is None else environ
    raw = env.get(OTEL_PYTHON_GRPC_EXCLUDED_SERVICES, "")
    return [s.strip() for s in raw.split(",") if s.strip()]


def genai_latest(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``OTEL_SEMCONV_STABILITY_OPT_IN`` lists ``gen_ai_latest_experimental`` (items stripped, exact)."""
    env = os.environ if environ is None else environ
    raw = env.get(OTEL_SEMCONV_STABILITY_OPT_IN, "")
    return GENAI_LATEST in [part.strip() for part in raw.split(",")]


def debug_tracebacks(environ: Mapping[str, str] | None = None) -> bool:
    """``MODELOTEL_DEBUG``: the CLI shows internal tracebacks instead of one-line errors."""
    env = os.environ if environ is None else environ
    return _truthy(_env(env, ENV_DEBUG))


# Bounds on what the evaluator reads from a file (``modelotel evaluate``, ``gate``, ``drift`` ...): a line (one
# export request) longer than MODELOTEL_MAX_LINE_BYTES is skipped unread and counted as a corrupt line, so memory
# never follows an input's worst line; a compressed file (gzip, zstd) may inflate to at most
# MODELOTEL_MAX_INFLATION times its own size (never less than MIN_INFLATED_BYTES), past which it is refused as a
# compression bomb. Collector files compress 15-25x with gzip -9; a gzip bomb is ~1000x.
ENV_MAX_LINE_BYTES = "MODELOTEL_MAX_LINE_BYTES"
DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024  # modelotel serve's request body cap: one export request
ENV_MAX_INFLATION = "MODELOTEL_MAX_INFLATION"
DEFAULT_MAX_INFLATION = 200
MIN_INFLATED_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class InputLimits:
    """What the evaluator's file reader accepts (see ENV_MAX_LINE_BYTES and ENV_MAX_INFLATION)."""

    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_inflation: float = DEFAULT_MAX_INFLATION

    def max_inflated_bytes(self, compressed_bytes: int) -> int:
        return max(MIN_INFLATED_BYTES, int(self.max_inflation * compressed_bytes))


def input_limits(environ: Mapping[str, str] | None = None) -> InputLimits:
    """The reader's bounds from MODELOTEL_MAX_LINE_BYTES and MODELOTEL_MAX_INFLATION (ConfigError if unusable)."""
    env = os.environ if environ is None else environ
    return InputLimits(
        max_line_bytes=int(_env_number(env, ENV_MAX_LINE_BYTES, DEFAULT_MAX_LINE_BYTES, lo=1024, hi=2**40)),
        max_inflation=_env_number(env, ENV_MAX_INFLATION, DEFAULT_MAX_INFLATION, lo=1, hi=1e9),
    )


# -- Feedback (feedback/*) -----------------------------------------------------------------------------------

DEFAULT_FEEDBACK_HORIZON_S = 90 * 86400.0
DEFAULT_FEEDBACK_TIME_BUCKET_S = 300  # 5 min: a month of labels is 8,640 buckets of series, not 43,200
DEFAULT_FEEDBACK_DEDUPE = 100_000
MIN_FEEDBACK_KEY_CHARS = 16


@dataclass(frozen=True)
class FeedbackSettings:
    """How prediction ids are signed and judged (ENV_FEEDBACK_*). ``key`` None: no shared key is configured."""

    key: str | None
    previous_keys: tuple[str, ...]
    horizon_s: float
    time_bucket_s: int
    dedupe: int


def feedback_settings(environ: Mapping[str, str] | None = None) -> FeedbackSettings:
    """ENV_FEEDBACK_*; raises ConfigError for a key shorter than MIN_FEEDBACK_KEY_CHARS."""
    env = os.environ if environ is None else environ
    key = _env(env, ENV_FEEDBACK_KEY)
    previous = tuple(k.strip() for k in (_env(env, ENV_FEEDBACK_PREVIOUS_KEYS) or "").split(",") if k.strip())
    for name, value in [(ENV_FEEDBACK_KEY, key), *((ENV_FEEDBACK_PREVIOUS_KEYS, k) for k in previous)]:
        if value is not None and len(value) < MIN_FEEDBACK_KEY_CHARS:
            raise ConfigError(f"{name}: a key needs at least {MIN_FEEDBACK_KEY_CHARS} characters")
    return FeedbackSettings(
        key=key,
        previous_keys=previous,
        horizon_s=_env_number(env, ENV_FEEDBACK_HORIZON, DEFAULT_FEEDBACK_HORIZON_S, lo=1, hi=10 * 365 * 86400.0),
        time_bucket_s=int(
            _env_number(env, ENV_FEEDBACK_TIME_BUCKET, DEFAULT_FEEDBACK_TIME_BUCKET_S, lo=0, hi=366 * 86400.0)
        ),
        dedupe=int(_env_number(env, ENV_FEEDBACK_DEDUPE, DEFAULT_FEEDBACK_DEDUPE, lo=0, hi=100_000_000)),
    )
