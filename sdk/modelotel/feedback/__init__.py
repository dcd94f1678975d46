"""Ground truth joined to the prediction it judges, in whichever process the truth arrives (see record.py)."""

from .ids import IdProblem, Label, PredictionRecord
from .keys import KEYRING
from .pending import PENDING, Outcome, as_list, labels_of, new_prediction_id
from .record import FeedbackRefused, judge
from .remote import REMOTE_MODELS

__all__ = [
    "KEYRING",
    "PENDING",
    "REMOTE_MODELS",
    "FeedbackRefused",
    "IdProblem",
    "Label",
    "Outcome",
    "PredictionRecord",
    "as_list",
    "judge",
    "labels_of",
    "new_prediction_id",
]
