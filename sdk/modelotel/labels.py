"""Which predicted labels may leave the process as ``ml.prediction.label``, and in what form.

A model's output is free text as often as it is a class (a summary, an answer, a generated reply),
and free text is where names, addresses, emails and card numbers are. So a label is exported only
when it is one of these:

1. a number: an integer class id (``int``, ``bool``, numpy integers) or another real number;
2. a string among the model's declared classes: ``labels=`` (which also names class indices), the
   ``classes_`` of the estimator the decorator wraps (``instrument_model()(clf.predict)`` or the
   estimator object itself; looked up again later if it was not fitted yet), or the ``id2label``
   names of a wrapped Hugging Face pipeline or model;
3. a class-shaped string that came with its own probability (``{"label": "spam", "score": 0.9}``,
   a list of those, probabilities named by the output's own ``labels`` list): at most
   ``MAX_CLASS_SHAPED_CHARS`` characters of ASCII letters, digits and ``_ . : / + -``, in at most
   three space-separated words;
4. anything, on a model decorated with ``free_text_labels=True``.

Anything else is withheld: the prediction is still counted (without a label), and the caller counts
the withheld label in ``modelotel.dropped{modelotel.drop.reason="label_not_declared"}`` and logs the
first one per model with how to declare the classes or opt in. Whatever is exported, declared
classes included, goes through ``privacy.scrub`` and is at most ``MAX_LABEL_CHARS`` characters
(ending with ``privacy.TRUNCATION_MARKER`` when cut).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from .privacy import scrub_capped

__all__ = ["LabelPolicy", "MAX_LABEL_CHARS", "MAX_CLASS_SHAPED_CHARS", "WITHHELD_REASON", "withheld_message"]

MAX_LABEL_CHARS = 128  # an exported label, truncation marker included
MAX_CLASS_SHAPED_CHARS = 64
WITHHELD_REASON = "label_not_declared"
_CACHE_MAX = 1024  # exported texts remembered per model (accepted labels only; the series cap is lower)
_RETRY_S = 1.0  # how often an undeclared string makes us look for the wrapped estimator's classes again
_CLASS_SHAPED = re.compile(r"[A-Za-z0-9_.:/+\-]+(?: [A-Za-z0-9_.:/+\-]+){0,2}\Z", re.ASCII).match


def withheld_message(model: str) -> str:
    return (
        f"model {model!r} returned a string that is not one of its declared classes: the prediction is "
        "counted without ml.prediction.label. Declare the classes with labels=[...] (e.g. labels=clf.classes_), "
        f"or export free text with free_text_labels=True (scrubbed, at most {MAX_LABEL_CHARS} characters)"
    )


def discovered_classes(fn: Any) -> frozenset[str] | None:
    """The class names of the estimator or pipeline ``fn`` is (or is a bound method of), if it has any."""
    try:
        target = getattr(fn, "__self__", None)
        if target is None:
            target = fn
        classes = getattr(target, "classes_", None)
        if classes is None:
            config = getattr(getattr(target, "model", None), "config", None) or getattr(target, "config", None)
            id2label = getattr(config, "id2label", None)
            if isinstance(id2label, dict):
                classes = list(id2label.values())
        if classes is None or isinstance(classes, (str, bytes)):
            return None
        names = frozenset(_text(c) for c in list(classes)[:100_000])
        return names or None
    except Exception:  # a property that raises, an object that is not a model: no classes
        return None


def _text(value: Any) -> str:
    return value if type(value) is str else str(value)


class LabelPolicy:
    """The exported form of a model's labels (see the module docstring)."""

    __slots__ = ("declared", "free_text", "message", "log_key", "_owner", "_strs", "_ints", "_others", "_next_lookup")

    def __init__(
        self, declared: Iterable[Any] | None = None, free_text: bool = False, owner: Any = None, model: str = ""
    ) -> None:
        """``declared``: the ``labels=`` option; ``owner``: the wrapped callable (its classes are discovered);
        ``model``: the model's name, for the message logged when a label is withheld (``message``)."""
        self.declared = frozenset(_text(x) for x in declared) if declared is not None else frozenset()
        self.free_text = bool(free_text)
        self.message = withheld_message(model)
        self.log_key = f"{WITHHELD_REASON}:{model}"  # logged once per model
        self._owner = owner
        self._next_lookup = 0.0
        if owner is not None:
            self._discover()
        # exported text of accepted labels: str and int labels (nearly all) by value, others by (class, value)
        # since 1, 1.0 and True are equal keys
        self._strs: dict[str, str] = {}
        self._ints: dict[int, str] = {}
        self._others: dict[tuple, str] = {}

    def _discover(self) -> bool:
        """Add the owner's classes to ``declared``; True if there were any."""
        self._next_lookup = time.monotonic() + _RETRY_S
        found = discovered_classes(self._owner)
        if not found:
            return False
        self.declared = self.declared | found
        self._owner = None  # found once: an estimator's classes do not change while it serves
        return True

    def _discovered_now(self, text: str) -> bool:
        """Whether ``text`` is among the wrapped estimator's classes, looked up again (at most once a second)."""
        if self._owner is None or time.monotonic() < self._next_lookup or not self._discover():
            return False
        return text in self.declared

    def exported(self, labels: list[Any], scored: bool) -> tuple[list[str | None], int]:
        """(the exported text or None for each label, how many were withheld). ``scored``: each label
        came with its own probability. None stays None (unknown, not withheld). Never raises."""
        out: list[str | None] = []
        withheld = 0
        for label in labels:
            try:
                cls = label.__class__
                if cls is str:
                    text = self._strs.get(label)
                elif cls is int:
                    text = self._ints.get(label)
                elif label is None:
                    out.append(None)
                    continue
                else:
                    text = self._others.get((cls, label))
            except Exception:  # unhashable, or a hostile __class__/__hash__
                text = None
            if text is None:
                text = self._accept(label, scored)
                if text is None:
                    withheld += 1
            out.append(text)
        return out, withheld

    def _accept(self, label: Any, scored: bool) -> str | None:
        try:
            if isinstance(label, (bool, int, np.integer)) or (
                isinstance(label, (float, np.floating)) and math.isfinite(label)
            ):
                text = _text(label)
            else:
                text = _text(label)
                if not (
                    self.free_text
                    or text in self.declared
                    or (scored and len(text) <= MAX_CLASS_SHAPED_CHARS and _CLASS_SHAPED(text))
                    or self._discovered_now(text)
                ):
                    return None
            exported = scrub_capped(text, MAX_LABEL_CHARS)
        except Exception:  # str() of a hostile object: withheld like any unusable label
            return None
        try:
            cls = label.__class__
            if cls is str:
                if len(label) <= MAX_LABEL_CHARS and len(self._strs) < _CACHE_MAX:  # never keep a large text alive
                    self._strs[label] = exported
            elif cls is int:
                if len(self._ints) < _CACHE_MAX:
                    self._ints[label] = exported
            elif len(self._others) < _CACHE_MAX:
                self._others[(cls, label)] = exported
        except Exception:  # unhashable: not remembered
            pass
        return exported
