"""Compatibility: moved to ``modelotel.evaluator.outputs.dashboard``."""

from .outputs.dashboard import dashboard, dashboard_json, panel_queries

__all__ = ["dashboard", "dashboard_json", "panel_queries"]
