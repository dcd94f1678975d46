"""``modelotel dashboard``: a Grafana dashboard for our metrics and SLOs."""

from __future__ import annotations

import argparse

from .shared import (
    EXIT_PASS,
    load_slos,
)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from ..evaluator.outputs.dashboard import dashboard_json

    slos = load_slos(args.slo) if args.slo else None
    print(dashboard_json(slos, args.datasource))
    return EXIT_PASS


def add_parser(sub) -> None:
    p = sub.add_parser("dashboard", help="a Grafana dashboard (JSON on stdout) for our metrics and SLOs")
    p.add_argument("--slo", action="append", metavar="FILE", help="add budget and burn-rate panels per SLO")
    p.add_argument("--datasource", default="Prometheus", help="Prometheus datasource name (default Prometheus)")
    p.set_defaults(func=cmd_dashboard)
