"""The ``@instrument_model`` decorator (re-exports; see ``decorator``)."""

from .decorator import current_prediction_id, instrument_model, last_prediction_id
from .genai import GenAI

__all__ = ["GenAI", "current_prediction_id", "instrument_model", "last_prediction_id"]
