"""``modelotel serve``'s options: their defaults, the ``Options`` the service runs with, and ``parse_options``,
which checks the values as given on the command line (ports, durations, sizes, the state directory) and raises
``ServeError`` naming the flag of the first unusable one. The flags themselves are the CLI's (cli/serve.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..durations import DurationError, parse_duration
from ..engine.stream import SNAPSHOT_NAME
from .admission import parse_size
from .errors import ServeError

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_MAX_SERIES",
    "DEFAULT_REQUEST_TIMEOUT",
    "IN_FLIGHT_REQUESTS",
    "Options",
    "address",
    "parse_options",
]

# A request's bytes, compressed or not: the collector's own OTLP/gRPC receiver limit (4 MiB, grpc-go's default),
# which collector-to-collector pipelines already fit their batches under. Decoding takes up to ~26x this (a
# protobuf bucket count is 1 byte on the wire, 16 once parsed, more as JSON and arrays; docs/serve.md "Limits").
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
IN_FLIGHT_REQUESTS = 2  # request bytes read or decoded at once: this many requests of --max-request-bytes
DEFAULT_MAX_SERIES = 50_000  # a cumulative histogram series holds ~7 KB: ~350 MB at the cap
DEFAULT_MAX_CONNECTIONS = 64  # per HTTP port (one thread each); a collector uses a few
DEFAULT_REQUEST_TIMEOUT = "30s"


@dataclass
class Options:
    host: str
    grpc_port: int
    http_port: int
    metrics_port: int
    state_dir: Path | None
    evaluate_every: float
    snapshot_every: float
    series_ttl: float
    otlp_endpoint: str | None
    otlp_protocol: str
    max_series: int = DEFAULT_MAX_SERIES
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    request_timeout: float = 30.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES


def parse_options(
    *,
    host: str,
    grpc_port: int,
    http_port: int,
    metrics_port: int,
    state: str | None,
    evaluate_every: str,
    snapshot_every: str,
    series_ttl: str,
    max_series: int,
    max_connections: int,
    request_timeout: str,
    max_request_bytes: str,
    otlp_endpoint: str | None,
    otlp_protocol: str,
) -> Options:
    """``Options`` from the values of serve's flags (durations and sizes as text); ``ServeError`` naming the flag
    otherwise. Creates the ``state`` directory and checks that it is writable."""

    def seconds(flag: str, text: str, minimum: float) -> float:
        try:
            value = parse_duration(text)
        except (DurationError, ValueError) as exc:
            raise ServeError(f"{flag}: {exc}") from None
        if value < minimum:
            raise ServeError(f"{flag}: {text!r} is shorter than {minimum:g} s")
        return value

    for flag, port in (("--grpc-port", grpc_port), ("--http-port", http_port)):
        if not 0 <= port <= 65535:
            raise ServeError(f"{flag}: {port} is not a port number (0 turns the receiver off)")
    if not 0 <= metrics_port <= 65535:
        raise ServeError(f"--metrics-port: {metrics_port} is not a port number")
    if not grpc_port and not http_port:
        raise ServeError("--grpc-port and --http-port are both 0: nothing would receive data")
    if grpc_port and grpc_port in (http_port, metrics_port):
        raise ServeError(f"--grpc-port {grpc_port} is also used for HTTP")
    if max_series < 1:
        raise ServeError(f"--max-series: {max_series} (at least 1)")
    if max_connections < 1:
        raise ServeError(f"--max-connections: {max_connections} (at least 1)")
    try:
        request_bytes = parse_size(max_request_bytes)
    except ValueError as exc:
        raise ServeError(f"--max-request-bytes: {exc}") from None
    if not 1024 <= request_bytes <= 1 << 30:
        raise ServeError(f"--max-request-bytes: {max_request_bytes} (between 1 KiB and 1 GiB)")
    if otlp_endpoint and not otlp_endpoint.startswith(("http://", "https://")):
        raise ServeError(f"--otlp-endpoint: expected an http:// or https:// URL, got {otlp_endpoint!r}")
    state_dir = None
    if state:
        state_dir = Path(state)
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ServeError(f"--state {state_dir}: cannot create the directory ({exc.strerror or exc})") from None
        probe = state_dir / f".{SNAPSHOT_NAME}.probe"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ServeError(f"--state {state_dir}: not writable ({exc.strerror or exc})") from None
    return Options(
        host=host,
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        state_dir=state_dir,
        evaluate_every=seconds("--evaluate-every", evaluate_every, 0.1),
        snapshot_every=seconds("--snapshot-every", snapshot_every, 1.0),
        series_ttl=seconds("--series-ttl", series_ttl, 60.0),
        otlp_endpoint=otlp_endpoint,
        otlp_protocol=otlp_protocol,
        max_series=max_series,
        max_connections=max_connections,
        request_timeout=seconds("--request-timeout", request_timeout, 0.5),
        max_request_bytes=request_bytes,
    )


def address(host: str, port: int) -> str:
    """``host:port`` as gRPC takes it and the log says it (``[::1]:4317`` for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
