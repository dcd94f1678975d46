"""Chart axes for the HTML report: scales, tick positions and tick labels. Pure arithmetic, no drawing.

* Linear ticks: the multiples of a step ``s = m * 10**k`` (``m`` in 1, 2, 2.5, 5) inside ``[lo, hi]``, with
  ``s`` the smallest such step giving at most ``n`` intervals; every tick is distinct.
* Logarithmic ticks: the values ``m * 10**k`` (``m`` in 1, 2, 5) inside ``[lo, hi]``; when more than
  ``max_ticks`` of them fit, only the powers of ten (every other one, and so on, while still too many). A log
  scale maps ``v`` to ``(log10 v - log10 lo) / (log10 hi - log10 lo)``.
* ``spans_decade``: the positive values span more than a factor of ten (then a latency axis is logarithmic).
* Time ticks: multiples of a round step (1 s ... 1 d) in UTC, labelled ``HH:MM:SS`` (``HH:MM`` from a one-minute
  step, ``MM-DD HH:MM`` over a day or more); ticks whose labels would read the same are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

LINEAR_MANTISSAS = (1.0, 2.0, 2.5, 5.0, 10.0)
MIN_STEP = 1e-290  # a tenth of it and its multiples stay normal floats (the smallest normal double is ~2.2e-308)
LOG_MANTISSAS = (1.0, 2.0, 5.0)
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800)


def linear_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round values inside ``[lo, hi]``: the multiples of the smallest nice step giving at most ``n`` intervals,
    or of a smaller one when that leaves fewer than two ticks in the range. Ascending and distinct."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi - lo <= 1e-9 * max(abs(lo), abs(hi)):  # equal, or apart by a few ulps: no round step between them
        return [lo]
    raw = (hi - lo) / max(n, 1)
    if not MIN_STEP <= raw < math.inf:  # subnormal or overflowing: no power of ten to step by
        return [lo, hi]
    mag = 10.0 ** math.floor(math.log10(raw))
    steps = sorted(m * mag * f for m in LINEAR_MANTISSAS[:-1] for f in (0.1, 1.0, 10.0))
    chosen = next(i for i, s in enumerate(steps) if s >= raw * (1 - 1e-9))
    ticks: list[float] = []
    for step in reversed(steps[: chosen + 1]):
        ticks = _multiples(lo, hi, step)
        if len(ticks) >= 2:
            break
    return ticks


def _multiples(lo: float, hi: float, step: float) -> list[float]:
    ticks: list[float] = []
    k = math.ceil(lo / step - 1e-9)
    while k * step <= hi + step * 1e-9:
        v = round(k * step, 12) + 0.0  # + 0.0: no "-0"
        if not ticks or v > ticks[-1]:
            ticks.append(v)
        k += 1
    return ticks


def log_ticks(lo: float, hi: float, max_ticks: int = 9) -> list[float]:
    """1-2-5 values inside ``[lo, hi]`` (``0 < lo <= hi``); thinned to powers of ten when more than ``max_ticks``."""
    if not (lo > 0 and hi >= lo and math.isfinite(hi)):
        return []
    k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks = [float(f"{m}e{k}") for k in range(k0, k1 + 1) for m in LOG_MANTISSAS]
    ticks = [t for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]
    if len(ticks) <= max_ticks:
        return ticks
    powers = [float(f"1e{k}") for k in range(k0, k1 + 1) if lo * (1 - 1e-9) <= float(f"1e{k}") <= hi * (1 + 1e-9)]
    stride = math.ceil(len(powers) / max(max_ticks, 1))
    return powers[::stride]


def spans_decade(values: list[float]) -> bool:
    """The positive values' max is more than ten times their min."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return bool(positive) and max(positive) > 10 * min(positive)


def log_domain(lo: float, hi: float) -> tuple[float, float]:
    """``[lo, hi]`` (``0 < lo <= hi``) widened to the nearest 1-2-5 values outside it, so the axis starts and ends
    on a tick; never empty (a single value reaches to the next 1-2-5 value above)."""
    k_lo, k_hi = math.floor(math.log10(lo)), math.floor(math.log10(hi))
    below = [m * 10.0**k for k in (k_lo - 1, k_lo, k_lo + 1) for m in LOG_MANTISSAS]
    above = [m * 10.0**k for k in (k_hi - 1, k_hi, k_hi + 1, k_hi + 2) for m in LOG_MANTISSAS]
    a = max(v for v in below if v <= lo * (1 + 1e-12))
    b = min(v for v in above if v >= hi * (1 - 1e-12))
    if b <= a:
        b = min(v for v in above if v > a * (1 + 1e-9))
    return a, b


@dataclass(frozen=True)
class Scale:
    """Maps a value to a fraction of the axis, 0 at ``lo`` and 1 at ``hi`` (``log``: in log10 of the value)."""

    lo: float
    hi: float
    log: bool = False

    def frac(self, v: float) -> float:
        if self.log:
            v = max(v, self.lo)
            return (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return (v - self.lo) / (self.hi - self.lo)

    def ticks(self, max_ticks: int) -> list[float]:
        if self.log:
            return log_ticks(self.lo, self.hi, max_ticks)
        return linear_ticks(self.lo, self.hi, max(1, max_ticks - 1))


def value_scale(values: list[float], *, log: bool, include: tuple[float, ...] = (), pad: float = 0.05) -> Scale:
    """An axis holding every finite value and ``include`` (reference lines): log on the positive ones when asked
    and possible, else linear with ``pad`` of the range added at the ends that are not pinned by ``include``."""
    finite = [v for v in values if math.isfinite(v)]
    if log:
        positive = [v for v in [*finite, *include] if v > 0]
        if positive:
            return Scale(*log_domain(min(positive), max(positive)), log=True)
    everything = finite + list(include)
    if not everything:
        return Scale(0.0, 1.0)
    lo, hi = min(everything), max(everything)
    if hi - lo <= 1e-9 * max(abs(lo), abs(hi)):
        lo, hi = (lo - abs(lo) * 0.5, hi + abs(hi) * 0.5) if lo else (0.0, 1.0)
    span = hi - lo
    if lo not in include and lo != 0:
        lo -= span * pad
    hi += span * pad
    return Scale(lo, hi)


def format_seconds(v: float) -> str:
    """A duration with its unit: ``800 µs``, ``2 ms``, ``250 ms``, ``1.5 s``, ``2 min``."""
    a = abs(v)
    if a == 0:
        return "0"
    if a < 1e-3:
        return f"{_short(v * 1e6)} µs"
    if a < 1:
        return f"{_short(v * 1e3)} ms"
    if a < 120:
        return f"{_short(v)} s"
    return f"{_short(v / 60)} min"


def format_number(v: float) -> str:
    """A tick value: up to three significant digits, no trailing zeros, no ``-0``."""
    if v == 0:
        return "0"
    return _short(v)


def format_percent(v: float) -> str:
    """A fraction as a percentage tick: 0.25 -> ``25%``, -19 -> ``-1900%``."""
    return f"{_short(v * 100)}%"


def _short(v: float) -> str:
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        return f"{v:.3g}"
    if a >= 100:
        return f"{v:.0f}"
    text = f"{v:.3g}"
    return text


def time_ticks(t0: float, t1: float, n: int = 7) -> list[tuple[float, str]]:
    """Round UTC times inside ``[t0, t1]``, at most about ``n``, with labels; distinct labels only."""
    if t1 <= t0:
        return [(t0, time_label(t0, 0.0))]
    span = t1 - t0
    step = next((s for s in TIME_STEPS if span / s <= n), TIME_STEPS[-1] * math.ceil(span / (TIME_STEPS[-1] * n)))
    first = math.ceil(t0 / step - 1e-9) * step
    out: list[tuple[float, str]] = []
    t = float(first)
    while t <= t1 + 1e-9:
        label = time_label(t, span, step)
        if not out or label != out[-1][1]:
            out.append((t, label))
        t += step
    if not out:  # a span shorter than the smallest step with no round time inside: label the ends
        out = [(t0, time_label(t0, span)), (t1, time_label(t1, span))]
        if out[0][1] == out[1][1]:
            out = out[:1]
    return out


def time_label(t: float, span: float, step: float = 1.0) -> str:
    dt = datetime.fromtimestamp(t, timezone.utc)
    if span >= 86400:  # a day or more: a clock time alone would repeat
        return dt.strftime("%m-%d %H:%M")
    if step >= 60 and span > 0:
        return dt.strftime("%H:%M")
    return dt.strftime("%H:%M:%S")
