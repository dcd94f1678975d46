"""modelotel: OpenTelemetry instrumentation for ML model serving.

Public API (everything else lives in modules documented as internal)::

    modelotel.configure(service_name=None, exporter=None, path=None, traces=None, ...)
    @modelotel.instrument_model(name=..., version=..., ...)
    @modelotel.instrument_model(name=..., genai=modelotel.GenAI(provider=...))  # token streams: gen_ai.server.*
    timer = modelotel.BatchTimer(name, version)         # batched models: ticket = modelotel.enqueue() on arrival,
    with timer.batch(tickets): predict(batch)           # ml.inference.duration per request, queue time, batch size
    modelotel.AsyncBatcher(predict, max_batch_size=..., max_wait=...)   # a ready-made asyncio batcher, timed
    modelotel.current_prediction_id()   # inside the call: an id this process can judge
    modelotel.last_prediction_id()      # after the call: an id any process with the key can judge
    modelotel.record_feedback(prediction_id, *, label=None, correct=None, group=None, positive_label=None, time=None)
    modelotel.force_flush()
    modelotel.shutdown()
"""

from ._version import __version__
from .config import ConfigError, Settings
from .feedback.api import record_feedback
from .instrument import (
    AsyncBatcher,
    BatchTimer,
    GenAI,
    current_prediction_id,
    enqueue,
    instrument_model,
    last_prediction_id,
)
from .runtime import configure, force_flush, shutdown
from .sketch import LogSketch

__all__ = [
    "AsyncBatcher",
    "BatchTimer",
    "ConfigError",
    "GenAI",
    "LogSketch",
    "Settings",
    "__version__",
    "configure",
    "current_prediction_id",
    "enqueue",
    "force_flush",
    "instrument_model",
    "last_prediction_id",
    "record_feedback",
    "shutdown",
]
