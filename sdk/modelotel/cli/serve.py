"""``modelotel serve``: the streaming SLO evaluator (the flags of ``evaluator.serve.parse_options``)."""

from __future__ import annotations

import argparse

from .shared import (
    EXIT_INPUT,
    EXIT_PASS,
    EXIT_SPEC,
    SLO_HELP,
    Help,
    add_command,
)

HELP = Help(
    summary="streaming SLO evaluator: an OTLP receiver with Prometheus /metrics, /status and OTLP output",
    description="""
        Receive OTLP metrics (gRPC and HTTP, as a collector's otlp exporter sends them) and keep the SLOs of --slo
        judged as they arrive: every --evaluate-every, the SLI, budget, burn rates and alerts of each SLO are
        served as Prometheus metrics on /metrics, as JSON on /status, and optionally exported as OTLP gauges. With
        --state the ledgers survive a restart. Runs until SIGTERM or SIGINT.

        Reads the SLO specs of --slo (native, OpenSLO or Sloth YAML) and what is sent to its ports; listens on
        loopback unless --host says otherwise.
    """,
    examples=(
        (
            "behind a collector whose otlp exporter points at localhost:4317",
            "modelotel serve --slo slo.yaml --state /var/lib/modelotel",
        ),
        (
            "HTTP only, on other ports, judging every 30 s",
            "modelotel serve --slo slo.yaml --grpc-port 0 --http-port 14318 --metrics-port 19464 --evaluate-every 30s",
        ),
    ),
    exit_codes=(
        (EXIT_PASS, "stopped by SIGTERM or SIGINT (the state saved when --state is given)"),
        (EXIT_SPEC, "unusable spec or options (a port in use included)"),
        (EXIT_INPUT, "the state could not be saved on the way out"),
    ),
)


def add_parser(sub) -> None:
    """The ``serve`` subcommand: the flags of ``evaluator.serve.parse_options``."""
    from ..evaluator.serve import options as serve  # its receivers import lazily

    p = add_command(sub, "serve", HELP)
    p.add_argument("--slo", action="append", required=True, metavar="FILE", help=SLO_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: loopback only)")
    p.add_argument("--grpc-port", type=int, default=4317, metavar="PORT", help="OTLP/gRPC port (0: off)")
    p.add_argument("--http-port", type=int, default=4318, metavar="PORT", help="OTLP/HTTP port (0: off)")
    p.add_argument(
        "--metrics-port", type=int, default=9464, metavar="PORT", help="/metrics, /status and /healthz (0: off)"
    )
    p.add_argument("--state", metavar="DIR", help="directory for the state snapshot (default: no persistence)")
    p.add_argument("--evaluate-every", default="10s", metavar="DURATION", help="how often the SLOs are judged")
    p.add_argument(
        "--snapshot-every", default="60s", metavar="DURATION", help="how often the state is saved to --state"
    )
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
    p.add_argument(
        "--otlp-protocol", choices=("grpc", "http/protobuf"), default="grpc", help="the protocol of --otlp-endpoint"
    )
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
