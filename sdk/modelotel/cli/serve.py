"""``modelotel serve``: the streaming SLO evaluator (the flags of ``evaluator.serve.parse_options``)."""

from __future__ import annotations

import argparse

from .shared import (
    EXIT_PASS,
)


def add_parser(sub) -> None:
    """The ``serve`` subcommand: the flags of ``evaluator.serve.parse_options``."""
    from ..evaluator.serve import options as serve  # its receivers import lazily

    p = sub.add_parser(
        "serve", help="streaming SLO evaluator: an OTLP receiver with Prometheus /metrics, /status and OTLP output"
    )
    p.add_argument("--slo", action="append", required=True, metavar="FILE", help="SLO spec (native or OpenSLO)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: loopback only)")
    p.add_argument("--grpc-port", type=int, default=4317, metavar="PORT", help="OTLP/gRPC port (0: off)")
    p.add_argument("--http-port", type=int, default=4318, metavar="PORT", help="OTLP/HTTP port (0: off)")
    p.add_argument(
        "--metrics-port", type=int, default=9464, metavar="PORT", help="/metrics, /status and /healthz (0: off)"
    )
    p.add_argument("--state", metavar="DIR", help="directory for the state snapshot (default: no persistence)")
    p.add_argument("--evaluate-every", default="10s", metavar="DURATION", help="evaluation interval (default 10s)")
    p.add_argument("--snapshot-every", default="60s", metavar="DURATION", help="snapshot interval (default 60s)")
    p.add_argument(
        "--series-ttl",
        default="6h",
        metavar="DURATION",
        help="forget cumulative series silent this long (default 6h; must exceed any collector outage)",
    )
    p.add_argument(
        "--max-series",
        type=int,
        default=serve.DEFAULT_MAX_SERIES,
        metavar="N",
        help="series held at most; points of new series past it are refused, counted "
        f"(default {serve.DEFAULT_MAX_SERIES})",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=serve.DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help=f"open HTTP connections per port, one thread each (default {serve.DEFAULT_MAX_CONNECTIONS})",
    )
    p.add_argument(
        "--request-timeout",
        default=serve.DEFAULT_REQUEST_TIMEOUT,
        metavar="DURATION",
        help="an HTTP request must be read within this, idle keep-alive included "
        f"(default {serve.DEFAULT_REQUEST_TIMEOUT})",
    )
    p.add_argument(
        "--max-request-bytes",
        default=str(serve.DEFAULT_MAX_REQUEST_BYTES),
        metavar="SIZE",
        help="largest export request, compressed or not "
        f"(bytes, or e.g. 8MiB; default {serve.DEFAULT_MAX_REQUEST_BYTES}); "
        f"at most {serve.IN_FLIGHT_REQUESTS}x this is read or decoded at once",
    )
    p.add_argument("--otlp-endpoint", metavar="URL", help="also export the SLO status as OTLP gauges to this URL")
    p.add_argument("--otlp-protocol", choices=("grpc", "http/protobuf"), default="grpc")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; exit 0. Its typed errors (``ServeError``: 3, ``StateNotSaved``: 4) are mapped
    in ``main``."""
    from ..evaluator import serve

    options = serve.parse_options(
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        state=args.state,
        evaluate_every=args.evaluate_every,
        snapshot_every=args.snapshot_every,
        series_ttl=args.series_ttl,
        max_series=args.max_series,
        max_connections=args.max_connections,
        request_timeout=args.request_timeout,
        max_request_bytes=args.max_request_bytes,
        otlp_endpoint=args.otlp_endpoint,
        otlp_protocol=args.otlp_protocol,
    )
    serve.run(args.slo, options)
    return EXIT_PASS
