"""Why a selector matched nothing: the filter no series passes, and what the input holds instead.

A typo (``model: fraudd``, ``http.status_code`` on stable-convention data) must not read as "not enough data":
``unmatched_reason`` names the first condition that no series of the metric passes and lists the values (or
metric names) the input does hold, with a "did you mean" when one is close. It works on the reader's
``Inventory`` (the attributes of every series read), not on the deltas, so a series that exists but had no
events in the window still counts as a match.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from ..slo import AttributeFilter, Selector
from ..sources.points import MAX_INVENTORY_SERIES, AttrValue, Inventory, attribute_text
from .ledger import matches, passes

__all__ = ["describe_filter", "describe_selector", "key_never_seen", "listing", "unmatched_reason", "values_of"]

MAX_LISTED = 12


def listing(values: Iterable[str], limit: int = MAX_LISTED) -> str:
    """``a, b, c`` (sorted), with ``and N more`` past ``limit``; ``(none)`` when empty."""
    values = sorted(set(values))
    if not values:
        return "(none)"
    shown = ", ".join(repr(v) if v else "''" for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _hint(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def values_of(series: list[dict[str, AttrValue]], key: str) -> set[str]:
    return {attribute_text(attrs.get(key)) for attrs in series if key in attrs}


def _needs_key(condition: AttributeFilter) -> bool:
    """Whether only a series with the key set can pass the condition."""
    return not passes(condition, {})


def describe_filter(condition: AttributeFilter) -> str:
    values = condition.values
    return {
        "eq": f"{condition.key}={values[0]!r}" if values[0] else f"{condition.key} absent",
        "ne": f"{condition.key}!={values[0]!r}" if values[0] else f"{condition.key} set",
        "in": f"{condition.key} in {list(values)}",
        "not_in": f"{condition.key} not in {list(values)}",
        "regex": f"{condition.key}=~{values[0]!r}",
        "not_regex": f"{condition.key}!~{values[0]!r}",
    }[condition.op]


def describe_selector(selector: Selector) -> str:
    """The selector's filters as one line, e.g. ``ml.inference.duration{ml.model.name='fraud', error.type set}``."""
    parts = [f"{key}={value!r}" for key, value in selector.match]
    parts += [f"{key} set" for key in selector.present] + [f"{key} absent" for key in selector.absent]
    parts += [describe_filter(c) for c in selector.filters]
    if selector.any_of:
        parts.append(" or ".join("(" + ", ".join(describe_filter(c) for c in alt) + ")" for alt in selector.any_of))
    return f"{selector.metric}{{{', '.join(parts)}}}" if parts else selector.metric


def unmatched_reason(selector: Selector, inventory: Inventory) -> str | None:
    """Why no series of the inputs passes ``selector``; None when one does, or when the inventory cannot tell
    (more series than it keeps)."""
    metric = selector.metric
    series = inventory.series.get(metric) or []
    if any(matches(selector, metric, attrs) for attrs in series):
        return None
    if len(series) >= MAX_INVENTORY_SERIES:
        return None
    if not series:
        held = [m for m, n in inventory.metrics.items() if n]
        if metric in inventory.metrics:
            return f"the input has points of {metric} but no usable series (see the input's problems)"
        return f"no metric {metric!r} in the input{_hint(metric, held)}; it holds: {listing(held)}"
    where = f"no series of {metric}"
    keys = sorted({k for attrs in series for k in attrs})
    for key, want in selector.match:
        seen = values_of(series, key)
        if not seen:
            return f"{where} has the attribute {key!r}{_hint(key, keys)}; its attributes: {listing(keys)}"
        if want not in seen:
            return f"{where} has {key}={want!r}{_hint(want, seen)}; {key} values in the input: {listing(seen)}"
    for key in selector.present:
        if not any(key in attrs for attrs in series):
            return f"{where} has the attribute {key!r} set{_hint(key, keys)}; its attributes: {listing(keys)}"
    for key in selector.absent:
        if all(key in attrs for attrs in series):
            return f"every series of {metric} has {key!r} set (the selector wants it absent)"
    for condition in selector.filters:
        if not any(passes(condition, attrs) for attrs in series):
            seen = values_of(series, condition.key)
            if not seen and _needs_key(condition):
                hint = _hint(condition.key, keys)
                return f"{where} has the attribute {condition.key!r}{hint}; its attributes: {listing(keys)}"
            return (
                f"{where} passes {describe_filter(condition)}; {condition.key} values in the input: {listing(seen)}"
            )
    return f"{where} matches all of {describe_selector(selector)} together (each filter alone matches some)"


def key_never_seen(selector: Selector, inventory: Inventory) -> str | None:
    """A note for a good/bad selector that matched nothing because a key it filters on never occurs on its
    metric (a likely typo); None otherwise (e.g. no errors yet is not worth a word)."""
    series = inventory.series.get(selector.metric) or []
    if not series or len(series) >= MAX_INVENTORY_SERIES or any(matches(selector, selector.metric, a) for a in series):
        return None
    keys = {k for attrs in series for k in attrs}
    named = [key for key, _ in selector.match] + [c.key for c in selector.filters if _needs_key(c)]
    for key in named:
        if key not in keys:
            return (
                f"the selector {describe_selector(selector)} matched nothing: no series of {selector.metric} has "
                f"the attribute {key!r}{_hint(key, keys)}; its attributes: {listing(keys)}"
            )
    return None
