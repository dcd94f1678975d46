"""``modelotel rules``: Prometheus recording and alerting rules for SLO specs."""

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


def cmd_rules(args: argparse.Namespace) -> int:
    from ..evaluator.outputs.rules import RulesError, rules_yaml

    try:
        print(rules_yaml(load_slos(args.slo)), end="")
    except RulesError as exc:
        raise UsageError(str(exc), EXIT_SPEC) from None
    return EXIT_PASS


HELP = Help(
    summary="Prometheus recording and multi-window burn-rate alerting rules (YAML on stdout)",
    description="""
        Write the Prometheus rules of the SLOs in --slo: recording rules for each SLI over each alert window, and
        one multi-window multi-burn-rate alert per tier (Google's SRE workbook), with the runbook and the SLO in
        their annotations. Load them into Prometheus (rule_files) and check them with promtool.

        Reads only the SLO specs: native, OpenSLO or Sloth YAML.
    """,
    examples=(
        ("rules for Prometheus, checked by promtool", "modelotel rules --slo slo.yaml > slo-rules.yaml"),
        ("the rules of two spec files", "modelotel rules --slo fraud.yaml --slo churn.yaml"),
    ),
    exit_codes=(
        (EXIT_PASS, "rules written"),
        (EXIT_SPEC, "unusable spec or arguments, or an SLO that Prometheus rules cannot express"),
    ),
)


def add_parser(sub) -> None:
    p = add_command(sub, "rules", HELP)
    p.add_argument("--slo", action="append", required=True, metavar="FILE", help=SLO_HELP)
    p.set_defaults(func=cmd_rules)
