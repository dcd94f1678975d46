"""Compatibility: moved to ``modelotel.evaluator.outputs.rules``."""

from .outputs.rules import *  # noqa: F403  (the moved module's public names, as its __all__ lists them)
from .outputs.rules import __all__  # noqa: F401
