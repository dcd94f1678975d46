"""``modelotel evaluate``: SLO compliance, error budgets and burn rates of exported telemetry."""

from __future__ import annotations

import argparse

from .shared import (
    EXIT_PASS,
    add_inputs,
    evaluate_inputs,
    print_evaluation,
)


def cmd_evaluate(args: argparse.Namespace) -> int:
    print_evaluation(args, evaluate_inputs(args))
    return EXIT_PASS


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="SLO compliance, error budgets and burn rates from exported telemetry")
    add_inputs(p)
    p.set_defaults(func=cmd_evaluate)
