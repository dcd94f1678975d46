"""The ``@instrument_model`` decorator and the batching timers (re-exports; see ``decorator``, ``batching``)."""

from .batching import AsyncBatcher, BatchTimer, enqueue
from .decorator import current_prediction_id, instrument_model, last_prediction_id
from .genai import GenAI

__all__ = [
    "AsyncBatcher",
    "BatchTimer",
    "GenAI",
    "current_prediction_id",
    "enqueue",
    "instrument_model",
    "last_prediction_id",
]
