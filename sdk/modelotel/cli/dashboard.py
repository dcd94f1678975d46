"""``modelotel dashboard``: a Grafana dashboard for our metrics and SLOs."""

from __future__ import annotations

import argparse

from .shared import (
    EXIT_PASS,
    EXIT_SPEC,
    SLO_HELP,
    Help,
    UsageError,
    add_command,
    load_slos,
)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from ..evaluator.durations import parse_duration
    from ..evaluator.outputs.dashboard import dashboard_json

    try:
        export_interval = parse_duration(args.export_interval)
    except ValueError as exc:
        raise UsageError(f"--export-interval: {exc}", EXIT_SPEC) from None
    if export_interval <= 0:
        raise UsageError(f"--export-interval: must be positive, got {args.export_interval!r}", EXIT_SPEC)
    slos = load_slos(args.slo) if args.slo else None
    print(dashboard_json(slos, args.datasource, export_interval))
    return EXIT_PASS


HELP = Help(
    summary="a Grafana dashboard (JSON on stdout) for our metrics and SLOs",
    description="""
        Write a Grafana dashboard (JSON, to import or provision) for the metrics modelotel records, as Prometheus
        stores them: request rate, errors, latency quantiles, confidence, OOD rate, drift and feedback per model;
        with --slo also an error budget and a burn-rate panel per SLO.

        Reads only the SLO specs given (none needed).
    """,
    examples=(
        ("the model panels", "modelotel dashboard > modelotel-dashboard.json"),
        (
            "with SLO panels, for a datasource named prom",
            "modelotel dashboard --slo slo.yaml --datasource prom > modelotel-dashboard.json",
        ),
        (
            "for services exporting every 10 s",
            "modelotel dashboard --slo slo.yaml --export-interval 10s > modelotel-dashboard.json",
        ),
    ),
    exit_codes=((EXIT_PASS, "dashboard written"), (EXIT_SPEC, "unusable spec or arguments")),
)


def add_parser(sub) -> None:
    p = add_command(sub, "dashboard", HELP)
    p.add_argument(
        "--slo", action="append", metavar="FILE", help=SLO_HELP + ": adds budget and burn-rate panels (default: none)"
    )
    p.add_argument("--datasource", default="Prometheus", help="the name of the Prometheus datasource in Grafana")
    p.add_argument(
        "--export-interval",
        default="60s",
        metavar="DURATION",
        help="the services' metric export interval (OTEL_METRIC_EXPORT_INTERVAL; default 60s, the SDK's): the "
        "default of the dashboard's export_interval variable; each rate() window spans at least four of them",
    )
    p.set_defaults(func=cmd_dashboard)
