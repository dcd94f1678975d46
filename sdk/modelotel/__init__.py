"""modelotel: OpenTelemetry instrumentation for ML model serving.

Public API (everything else lives in modules documented as internal)::

    modelotel.configure(service_name=None, exporter=None, path=None, traces=None, ...)
    @modelotel.instrument_model(name=..., version=..., ...)
    modelotel.current_prediction_id()
    modelotel.record_feedback(prediction_id, *, label=None, correct=None)
    modelotel.force_flush()
    modelotel.shutdown()
"""

from ._version import __version__
from .config import ConfigError, Settings
from .feedback import record_feedback
from .instrument import current_prediction_id, instrument_model
from .runtime import configure, force_flush, shutdown
from .sketch import LogSketch

__all__ = [
    "ConfigError",
    "LogSketch",
    "Settings",
    "__version__",
    "configure",
    "current_prediction_id",
    "force_flush",
    "instrument_model",
    "record_feedback",
    "shutdown",
]
