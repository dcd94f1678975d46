"""Compatibility: moved to modelotel.otlp.proto."""

from .otlp.proto import light_spans_to_request

__all__ = ["light_spans_to_request"]
