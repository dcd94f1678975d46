"""Duration units: a threshold in seconds, in the unit a histogram was recorded in.

Specs state durations in seconds (``threshold: 100ms`` is 0.1); histograms count values in their own unit, which
OTLP carries as a UCUM text (``s``, ``ms``, ``us``, ``ns``, ``min``, ``h``, ``d``) and a Prometheus name as a suffix
(``_seconds``, ``_milliseconds``). A threshold is converted to the data's unit, never the data to seconds: bucket
bounds stay as recorded, so a threshold on a bucket bound (100 ms on the default explicit bounds in ms) still
counts exactly.

Where a metric carries no unit, the unit the semantic conventions give it is used (``semconv.KNOWN_UNITS``) and
the output says so; a metric with neither cannot be judged against a duration (the SLO says why).
"""

from __future__ import annotations

from .semconv import known_unit

__all__ = [
    "SECONDS_PER_UNIT",
    "UnitProblem",
    "in_unit",
    "resolve_unit",
    "seconds_per_unit",
    "unit_from_prometheus_name",
]

SECONDS_PER_UNIT: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_PROMETHEUS_SUFFIXES = {
    "_nanoseconds": "ns",
    "_microseconds": "us",
    "_milliseconds": "ms",
    "_seconds": "s",
    "_minutes": "min",
    "_hours": "h",
    "_days": "d",
}


class UnitProblem(ValueError):
    """A duration threshold that cannot be applied to a metric: its unit is unknown or not a duration."""


def seconds_per_unit(unit: str) -> float | None:
    """Seconds in one ``unit`` (UCUM; a ``{annotation}`` after it is ignored), or None if not a time unit."""
    text = unit.strip()
    if "{" in text:
        text = text[: text.index("{")].strip()
    return SECONDS_PER_UNIT.get(text)


def unit_from_prometheus_name(name: str) -> str:
    """The unit a Prometheus metric name's suffix gives (``x_milliseconds_count`` -> ``ms``), or ``""``."""
    for end in ("_total", "_count", "_sum", "_bucket"):
        if name.endswith(end):
            name = name[: -len(end)]
            break
    for suffix, unit in _PROMETHEUS_SUFFIXES.items():
        if name.endswith(suffix):
            return unit
    return ""


def resolve_unit(metric: str, unit: str) -> tuple[str, bool]:
    """``(unit, from_conventions)``: the data's unit, else the one the conventions give ``metric``, else ``""``."""
    if unit:
        return unit, False
    known = known_unit(metric)
    return (known, True) if known else ("", False)


def in_unit(seconds: float, metric: str, unit: str) -> float:
    """``seconds`` expressed in ``unit`` (the metric's resolved unit); ``UnitProblem`` when it has no time unit.

    The product is rounded to 12 significant digits: thresholds are decimals written in a spec, and 0.1 s * 1000
    must be the bucket bound 100, not 100.00000000000001.
    """
    if not unit:
        raise UnitProblem(
            f"{metric} carries no unit and none is known for it: a duration threshold cannot be applied "
            "(give the metric a unit, e.g. 'ms' or 's', where it is recorded)"
        )
    per = seconds_per_unit(unit)
    if per is None:
        raise UnitProblem(f"{metric} is in {unit!r}, not a unit of time: a duration threshold cannot be applied")
    if per == 1.0:
        return seconds
    return float(f"{seconds / per:.12g}")
