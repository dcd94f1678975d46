"""Duration texts in SLO specs, read exactly.

Formats
    Go style: one or more ``<decimal><unit>`` terms, units ``ns``, ``us`` (or ``µs``), ``ms``, ``s``, ``m``, ``h``,
    ``d`` (24 h) and ``w`` (7 d): ``250ms``, ``1h30m``, ``1.5s``, ``7d``.
    ISO 8601: ``P[nW][nD][T[nH][nM][nS]]``: ``P28D``, ``PT5M``, ``P1W``, ``P1DT12H``, ``PT0.25S``. Years and months
    are rejected because they have no fixed length (use a calendar window for them).
    OpenSLO duration-shorthand: a whole number and one of ``m h d w M Q Y``; ``M``, ``Q``, ``Y`` are 30, 90 and 365
    days, as in the OpenSLO Go SDK.

Exactness
    Every number is read as a ``fractions.Fraction`` and the terms are summed exactly; the result is
    ``float(total)``, the double nearest the exact value. ``format_duration`` writes whole nanoseconds as Go-style
    terms and anything else as the shortest decimal seconds that reads back to the same double, so
    ``parse_duration(format_duration(x)) == x`` for every finite ``x >= 0``.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from decimal import Decimal
from fractions import Fraction

__all__ = [
    "CALENDAR_UNIT_SECONDS",
    "SHORTHAND_UNITS",
    "DurationError",
    "format_duration",
    "parse_duration",
    "parse_duration_exact",
    "parse_shorthand",
]

NS_PER_S = 10**9

_GO_UNITS_NS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": NS_PER_S,
    "m": 60 * NS_PER_S,
    "h": 3600 * NS_PER_S,
    "d": 86400 * NS_PER_S,
    "w": 7 * 86400 * NS_PER_S,
}
_FORMAT_ORDER = ("w", "d", "h", "m", "s", "ms", "us", "ns")

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_GO_TERM = re.compile(rf"({_NUMBER})(ns|us|µs|ms|s|m|h|d|w)")
_GO_FULL = re.compile(rf"(?:{_NUMBER}(?:ns|us|µs|ms|s|m|h|d|w))+")
_ISO = re.compile(
    rf"P(?:({_NUMBER})Y)?(?:({_NUMBER})M)?(?:({_NUMBER})W)?(?:({_NUMBER})D)?"
    rf"(?:T(?:({_NUMBER})H)?(?:({_NUMBER})M)?(?:({_NUMBER})S)?)?"
)
_ISO_SECONDS = (None, None, 7 * 86400, 86400, 3600, 60, 1)  # per group; Y and M have no fixed length

CALENDAR_UNIT_SECONDS: dict[str, int] = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 30 * 86400,  # nominal, as the OpenSLO Go SDK; calendar windows use real period bounds
    "quarter": 90 * 86400,
    "year": 365 * 86400,
}
SHORTHAND_UNITS: dict[str, str] = {
    "m": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "M": "month",
    "Q": "quarter",
    "Y": "year",
}
_SHORTHAND = re.compile(r"(\d+)([mhdwMQY])")

EXAMPLES = "'250ms', '7d' or 'PT5M'"


class DurationError(ValueError):
    """A text that is not a duration; the message says what was expected."""


def parse_duration_exact(text: str) -> Fraction:
    """Seconds of a Go-style or ISO 8601 duration, as an exact fraction."""
    if not isinstance(text, str):
        raise DurationError(f"expected a duration like {EXAMPLES}, got {text!r}")
    if _GO_FULL.fullmatch(text):
        return (
            sum((Fraction(number) * _GO_UNITS_NS[unit] for number, unit in _GO_TERM.findall(text)), Fraction(0))
            / NS_PER_S
        )
    iso = _ISO.fullmatch(text)
    if iso and text not in ("P", "PT") and not text.endswith("T"):
        if iso.group(1) or iso.group(2):
            raise DurationError(
                f"{text!r} has years or months, which have no fixed length: use days ('P30D') or a calendar window"
            )
        return sum(
            (
                Fraction(g) * factor
                for g, factor in zip(iso.groups(), _ISO_SECONDS, strict=True)
                if g is not None and factor
            ),
            Fraction(0),
        )
    hint = ""
    if re.fullmatch(rf"{_NUMBER}[MQY]", text):
        hint = " (M, Q and Y have no fixed length: use days, e.g. '30d', or a calendar window)"
    elif re.fullmatch(_NUMBER, text):
        hint = " (a number alone has no unit: write e.g. '250ms' or '0.25s')"
    raise DurationError(f"expected a duration like {EXAMPLES}, got {text!r}{hint}")


def parse_duration(text: str) -> float:
    """Seconds of a Go-style (``1h30m``) or ISO 8601 (``PT1H30M``) duration: the double nearest the exact value."""
    exact = parse_duration_exact(text)
    try:
        return float(exact)
    except OverflowError:
        raise DurationError(f"{text!r} is too long to be a duration") from None


def parse_shorthand(text: str) -> tuple[int, str]:
    """OpenSLO duration-shorthand ``<whole number><m|h|d|w|M|Q|Y>`` as ``(count, calendar unit name)``."""
    match = _SHORTHAND.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise DurationError(
            f"expected an OpenSLO duration-shorthand (a whole number and one of m, h, d, w, M, Q, Y, e.g. '28d'), "
            f"got {text!r}"
        )
    return int(match.group(1)), SHORTHAND_UNITS[match.group(2)]


def format_duration(seconds: float | Fraction) -> str:
    """Shortest Go-style text for whole nanoseconds (``5400`` -> ``'1h30m'``), else exact decimal seconds."""
    if seconds < 0:
        raise DurationError(f"durations are never negative, got {seconds!r}")
    exact = Fraction(seconds)
    ns = exact * NS_PER_S
    if ns.denominator != 1:
        # repr is the shortest decimal that reads back to the same double; Decimal spells it without an exponent
        return f"{format(Decimal(repr(float(seconds))), 'f')}s"
    left = ns.numerator
    if left == 0:
        return "0s"
    parts = []
    for unit in _FORMAT_ORDER:
        count, left = divmod(left, _GO_UNITS_NS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_instant(text: str) -> float:
    """A point in time as epoch seconds: ``now``, epoch seconds, or ISO 8601 (``2026-11-22T10:00:00Z``; naive
    times are UTC). Raises ``ValueError`` naming what was expected."""
    text = text.strip()
    if text == "now":
        return time.time()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected 'now', epoch seconds or an ISO 8601 time, got {text!r}") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
