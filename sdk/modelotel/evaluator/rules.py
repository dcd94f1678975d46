"""Compatibility: moved to ``modelotel.evaluator.outputs.rules``."""

from .outputs.rules import (
    RulesError,
    duration_text,
    error_ratio_expr,
    events_expr,
    label_name,
    prometheus_metric,
    quantile_expr,
    rule_groups,
    rules_yaml,
    timeslice_expr,
)

__all__ = [
    "RulesError",
    "duration_text",
    "error_ratio_expr",
    "events_expr",
    "label_name",
    "prometheus_metric",
    "quantile_expr",
    "rule_groups",
    "rules_yaml",
    "timeslice_expr",
]
