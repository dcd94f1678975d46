"""The ``@instrument_model`` decorator (re-exports; see ``decorator``)."""

from .decorator import current_prediction_id, instrument_model

__all__ = ["current_prediction_id", "instrument_model"]
