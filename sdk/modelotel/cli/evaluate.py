"""``modelotel evaluate``: SLO compliance, error budgets and burn rates of exported telemetry."""

from __future__ import annotations

import argparse

from .shared import (
    EXIT_PASS,
    INPUT_EXITS,
    Help,
    add_command,
    add_inputs,
    evaluate_inputs,
    print_evaluation,
)


def cmd_evaluate(args: argparse.Namespace) -> int:
    print_evaluation(args, evaluate_inputs(args))
    return EXIT_PASS


HELP = Help(
    summary="SLO compliance, error budgets and burn rates from exported telemetry",
    description="""
        Judge SLOs on exported telemetry and print, per SLO, its status, the SLI with its uncertainty interval, the
        error budget left, the burn rate of each alert window and the alerts firing, then what to know about each
        SLO and each input. Exits 0 whatever the verdict: use `modelotel gate` to fail a pipeline.

        Reads the SLO specs of --slo (native, OpenSLO or Sloth YAML) and the metrics of --data: OTLP JSON lines
        files (the collector's file exporter, modelotel's own file exporter; plain, gzip or zstd) or a Prometheus
        HTTP API. The evaluation time is the end of the data unless --at says otherwise.
    """,
    examples=(
        ("the SLOs of slo.yaml on a collector's file", "modelotel evaluate --slo slo.yaml --data telemetry.jsonl"),
        (
            "as they stood at 10:00 UTC, as JSON at full precision",
            "modelotel evaluate --slo slo.yaml --data telemetry.jsonl --at 2026-11-22T10:00:00Z --format json",
        ),
        ("from Prometheus", "modelotel evaluate --slo slo.yaml --data http://localhost:9090"),
    ),
    exit_codes=((EXIT_PASS, "evaluated (whatever the verdict)"), *INPUT_EXITS),
)


def add_parser(sub) -> None:
    p = add_command(sub, "evaluate", HELP)
    add_inputs(p)
    p.set_defaults(func=cmd_evaluate)
