"""``modelotel dashboard``: a Grafana dashboard for our metrics and SLOs."""

from __future__ import annotations

import argparse

from .shared import (
    EXIT_PASS,
    EXIT_SPEC,
    SLO_HELP,
    Help,
    add_command,
    load_slos,
)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from ..evaluator.outputs.dashboard import dashboard_json

    slos = load_slos(args.slo) if args.slo else None
    print(dashboard_json(slos, args.datasource))
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
    ),
    exit_codes=((EXIT_PASS, "dashboard written"), (EXIT_SPEC, "unusable spec or arguments")),
)


def add_parser(sub) -> None:
    p = add_command(sub, "dashboard", HELP)
    p.add_argument(
        "--slo", action="append", metavar="FILE", help=SLO_HELP + ": adds budget and burn-rate panels (default: none)"
    )
    p.add_argument("--datasource", default="Prometheus", help="the name of the Prometheus datasource in Grafana")
    p.set_defaults(func=cmd_dashboard)
