"""``modelotel rules``: Prometheus recording and alerting rules for SLO specs."""

from __future__ import annotations

import argparse

from .shared import (
    EXIT_PASS,
    EXIT_SPEC,
    UsageError,
    load_slos,
)


def cmd_rules(args: argparse.Namespace) -> int:
    from ..evaluator.outputs.rules import RulesError, rules_yaml

    try:
        print(rules_yaml(load_slos(args.slo)), end="")
    except RulesError as exc:
        raise UsageError(str(exc), EXIT_SPEC) from None
    return EXIT_PASS


def add_parser(sub) -> None:
    p = sub.add_parser("rules", help="Prometheus recording and multi-window burn-rate alerting rules (stdout)")
    p.add_argument("--slo", action="append", required=True, metavar="FILE")
    p.set_defaults(func=cmd_rules)
