"""Compatibility: moved to modelotel.metrics.buffers (ModelBuffers), .selftelemetry (SELF) and .recorder (Recorder)."""

from .metrics.buffers import ModelBuffers, attr_key, drain
from .metrics.recorder import Recorder, iter_points
from .metrics.selftelemetry import SELF

__all__ = ["SELF", "ModelBuffers", "Recorder", "attr_key", "drain", "iter_points"]
