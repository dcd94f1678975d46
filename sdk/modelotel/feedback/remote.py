"""Buffers for models this process knows only from their prediction ids (feedback judged in a labelling process).

Their feedback is folded into series with the model's own attributes (from the id), so it adds up with feedback
judged where the model runs. Bounded: ``MAX_REMOTE_MODELS`` distinct attribute sets, then feedback for a new
model is counted in ``modelotel.dropped{feedback_too_many_models}``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ..metrics.buffers import ModelBuffers, attr_key
from ..metrics.selftelemetry import SELF

MAX_REMOTE_MODELS = 1000


class RemoteModels:
    """attribute key -> ModelBuffers; a recorder source (``fold``) that runtime registers once."""

    def __init__(self) -> None:
        self._buffers: dict[tuple, ModelBuffers] = {}
        self._by_pairs: dict[tuple, ModelBuffers] = {}  # the id's (key, value) pairs as they come: no sorting
        self._lock = threading.Lock()

    def buffers_for_pairs(self, pairs: tuple[tuple[str, str], ...]) -> ModelBuffers | None:
        """``buffers_for`` of the attributes an id carries, looked up by the pairs themselves first."""
        found = self._by_pairs.get(pairs)
        if found is None:
            found = self.buffers_for(dict(pairs))
            if found is not None and len(self._by_pairs) < 4 * MAX_REMOTE_MODELS:
                self._by_pairs[pairs] = found
        return found

    def buffers_for(self, attributes: dict[str, str]) -> ModelBuffers | None:
        key = attr_key(attributes)
        found = self._buffers.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._buffers.get(key)
            if found is None:
                if len(self._buffers) >= MAX_REMOTE_MODELS:
                    SELF.drop(
                        "feedback_too_many_models",
                        1,
                        f"feedback for more than {MAX_REMOTE_MODELS} distinct models in one process",
                    )
                    return None
                found = self._buffers[key] = ModelBuffers(attributes)
        return found

    def fold(self, rec: Any) -> None:
        for buffers in list(self._buffers.values()):
            buffers.fold(rec)

    def clear(self) -> None:
        for buffers in list(self._buffers.values()):
            buffers.clear()

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()


REMOTE_MODELS = RemoteModels()
os.register_at_fork(after_in_child=REMOTE_MODELS.after_fork_in_child)
