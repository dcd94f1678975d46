"""Compatibility: moved to ``modelotel.evaluator.slo``."""

from .slo import (
    DEFAULT_ALERT_TIERS,
    SLI,
    SLICED_KINDS,
    SLO,
    AlertTier,
    AttributeFilter,
    Budgeting,
    Selector,
    SLIKind,
    Window,
)

__all__ = [
    "DEFAULT_ALERT_TIERS",
    "SLI",
    "SLICED_KINDS",
    "SLO",
    "AlertTier",
    "AttributeFilter",
    "Budgeting",
    "SLIKind",
    "Selector",
    "Window",
]
