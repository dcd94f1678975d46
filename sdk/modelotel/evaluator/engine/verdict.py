"""From a ledger to a verdict: the SLI over the SLO window, the error budget, burn rates and alerts.

Everything is event-weighted: an SLI over any window is ``sum(good) / sum(total)`` over that window's bins, never
an average of shorter-window ratios (sloth #241). With ``b = 1 - objective``:

* Occurrences: SLI = good / total. Budget total = ``b * total`` bad events; consumed = ``total - good``;
  remaining ratio = ``1 - consumed / budget_total`` (negative once overspent).
* Timeslices: the window is cut into slices of ``timeslice_window`` ending at the evaluation time; a slice with
  events is good when its own SLI ``>= timeslice_target`` (for ``percentile`` SLIs: when the slice's quantile
  meets the threshold). SLI = good slices / slices with events; the budget is counted in slices.
* RatioTimeslices: SLI = mean of the per-slice SLIs (OpenSLO's definition; each slice weighs the same).
* Burn rate over a window ``w`` = ``(1 - SLI_w) / b`` with ``SLI_w`` the event-weighted SLI over the last ``w``
  (slice-weighted for ``percentile`` SLIs). A burn rate of 1 spends exactly the budget over the SLO window.
* An alert tier fires when the burn rates over both its long and short window are ``>= burn_rate`` and the long
  window holds at least ``min_events`` events (low traffic: a tier without enough data never fires and says so).
* Time to exhaustion, at the burn rate ``r`` over the first tier's long window (the whole SLO window without
  tiers), assuming that burn and the traffic rate hold: a budget counted in events grows with them, so it can
  run out only when ``r > 1``. Calendar window: the period's burn so far is ``1 - remaining``; after ``x`` more
  seconds it is ``((1 - remaining) * elapsed + r * x) / (elapsed + x)``, which reaches 1 at
  ``x = remaining * elapsed / (r - 1)`` (reported only when that is before the period ends). Rolling window of
  length ``W``: the events leaving it burn ``1 - remaining`` on average, so it reaches 1 at
  ``x = remaining * W / (r - 1 + remaining)`` (reported only when ``x < W``; beyond that the window burns ``r``
  throughout). None when ``r <= 1``.
* Status (``STATUSES``): ``invalid`` when points matched but could not be counted (a duration threshold on a metric
  without a unit of time); ``inconclusive`` below ``min_events`` events in the window; otherwise ``fail`` when the
  SLI is below the objective, else ``pass``. The engine sets ``no_match`` when no series of the input matches the
  SLO's selector. The SLI's bounds (from partially counted histogram buckets) are reported beside; the SLI is
  kept within them.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ...sketch import LogSketch
from ..durations import format_duration, parse_duration, parse_instant
from ..slo import FEEDBACK_KINDS, SLICED_KINDS, SLO, Window
from .ledger import Bin, Ledger

UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}
STATUSES = ("pass", "fail", "inconclusive", "no_match", "invalid")


def _add_months(dt: datetime, months: int) -> datetime:
    y, m = divmod(dt.month - 1 + months, 12)
    year, month = dt.year + y, m + 1
    return dt.replace(year=year, month=month, day=min(dt.day, calendar.monthrange(year, month)[1]))


def _step(dt: datetime, unit: str, n: int) -> datetime:
    if unit == "month":
        return _add_months(dt, n)
    if unit == "quarter":
        return _add_months(dt, 3 * n)
    if unit == "year":
        return _add_months(dt, 12 * n)
    return dt + timedelta(seconds=UNIT_SECONDS[unit] * n)


def window_bounds(window: Window, at: float) -> tuple[float, float]:
    """``(start, end)`` in epoch seconds of the window evaluated at ``at``.

    Rolling: ``(at - duration, at]``. Calendar: from the start of the current period (natural boundaries of the
    unit in the window's time zone, weeks on Monday, or ``calendar_start`` stepped by ``count`` units) to ``at``.
    """
    if window.rolling or window.unit is None:
        return at - window.duration, at
    tz = ZoneInfo(window.timezone)
    now = datetime.fromtimestamp(at, tz)
    if window.calendar_start is not None:
        anchor = datetime.fromtimestamp(window.calendar_start, tz)
    else:
        anchor = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if window.unit in ("second", "minute", "hour"):
            anchor = datetime.fromtimestamp(at - at % UNIT_SECONDS[window.unit], tz)
        elif window.unit == "week":
            anchor -= timedelta(days=anchor.weekday())
        elif window.unit == "month":
            anchor = anchor.replace(day=1)
        elif window.unit == "quarter":
            anchor = anchor.replace(day=1, month=3 * ((anchor.month - 1) // 3) + 1)
        elif window.unit == "year":
            anchor = anchor.replace(day=1, month=1)
    # periods are (start, next]: like bins, an evaluation exactly at a boundary closes the period ending there
    start = anchor
    if start >= now:  # a start in the future: walk back
        while start >= now:
            start = _step(start, window.unit, -window.count)
    else:
        while True:
            nxt = _step(start, window.unit, window.count)
            if nxt >= now:
                break
            start = nxt
    return start.timestamp(), at


@dataclass
class AlertState:
    name: str
    severity: str
    burn_rate: float
    long_window: float
    short_window: float
    long_burn: float | None
    short_burn: float | None
    long_events: float
    firing: bool
    enough_data: bool


@dataclass
class SLOResult:
    slo: SLO
    status: str  # pass | fail | inconclusive
    reason: str
    at: float
    window_start: float
    events: float
    good: float
    good_lower: float
    good_upper: float
    sli: float | None
    sli_lower: float | None
    sli_upper: float | None
    budget_unit: str  # "events" or "slices"
    budget_total: float
    budget_consumed: float
    budget_remaining_ratio: float | None
    burn_rates: dict[str, float | None] = field(default_factory=dict)
    alerts: list[AlertState] = field(default_factory=list)
    time_to_exhaustion: float | None = None
    relative_accuracy: float | None = None
    slices_good: int | None = None
    slices_total: int | None = None
    notes: list[str] = field(default_factory=list)  # what the reader should know: error rule, units, ...
    # feedback kinds: judged items / the model's predictions in the window (None: not a feedback kind, or no
    # ml.predictions to divide by), and that denominator
    label_coverage: float | None = None
    predictions: float | None = None
    units: dict[str, tuple[str, bool]] = field(default_factory=dict)  # metric -> (unit read, from conventions)


def error_allowance(objective: float) -> float:
    """``1 - objective``, rounded to 12 decimals so that 0.95 gives the double nearest 0.05 (not 0.05000000000000004).

    Objectives are written as decimals; without this a burn rate of exactly 2 would read 1.9999999999999982.
    """
    return round(1.0 - objective, 12)


BURN_TOLERANCE = 1e-9  # relative: a burn rate this close under an alert tier's threshold fires (float rounding)


def at_least(value: float | None, threshold: float) -> bool:
    """``value >= threshold`` up to float rounding (``BURN_TOLERANCE``); the Prometheus rules compare the same way."""
    return value is not None and value >= threshold * (1.0 - BURN_TOLERANCE)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def slice_good(slo: SLO, b: Bin, reference: LogSketch | None = None) -> tuple[bool, bool, bool]:
    """(estimate, lower, upper) of whether one slice is good."""
    kind = slo.sli.kind
    t = slo.sli.threshold if slo.sli.threshold is not None else math.inf
    if kind == "percentile":
        # The value of rank r = floor(q (n - 1)) (the sketch's convention) is <= t exactly when at least r + 1
        # values are <= t: the good count and its bounds decide, for exponential and explicit buckets alike.
        if b.total <= 0:
            return False, False, False
        need = math.floor((slo.sli.percentile or 0.5) * (b.total - 1)) + 1
        return b.good >= need, b.good_lower >= need, b.good_upper >= need
    if kind == "drift":
        if b.sketch is None or not b.sketch.count or reference is None or not reference.count:
            return False, False, False
        value = drift_statistic(reference, b.sketch, slo.sli.statistic or "psi")
        return value <= t, value <= t, value <= t
    if kind == "calibration":
        from ..quality.calibration import calibration

        cal = calibration(b.sketch, b.sketch_bad)
        if not cal.count:
            return False, False, False
        if slo.sli.statistic == "brier":
            return cal.brier <= t, cal.brier_high <= t, cal.brier_low <= t
        slack = cal.ece_bound + cal.binning_bound
        return cal.ece <= t, cal.ece + slack <= t, cal.ece - slack <= t
    if kind == "estimated_accuracy":
        from ..quality.cbpe import estimated_accuracy

        if b.sketch is None or not b.sketch.count:
            return False, False, False
        try:
            estimate = estimated_accuracy(b.sketch).accuracy
        except ValueError:  # every confidence outside [0, 1]: nothing to estimate from, the slice is not good
            return False, False, False
        return estimate.value >= t, estimate.low >= t, estimate.high >= t
    target = slo.timeslice_target if slo.timeslice_target is not None else slo.objective
    if b.total <= 0:
        return False, False, False
    return b.good / b.total >= target, b.good_lower / b.total >= target, b.good_upper / b.total >= target


def drift_statistic(reference: LogSketch, current: LogSketch, statistic: str) -> float:
    from ..quality import drift

    if statistic == "ks":
        return drift.ks(reference, current).statistic
    result = drift.psi(reference, current)
    if statistic == "psi":
        return result.value
    js, hellinger = drift.binned_js_hellinger(result)
    return js if statistic == "js" else hellinger


def reference_range(slo: SLO, ledger: Ledger) -> tuple[float, float] | None:
    """The drift reference: ``first:DURATION`` of the ledger's data, or ``FROM..TO`` (ISO 8601 or epoch s)."""
    text = slo.sli.reference or ""
    if text.startswith("first:"):
        if not ledger.bins:
            return None
        first = (min(ledger.bins) - 1) * ledger.resolution
        return first, first + parse_duration(text[len("first:") :])
    a, _, b = text.partition("..")
    return parse_instant(a), parse_instant(b)


def _reference(slo: SLO, ledger: Ledger) -> LogSketch | None:
    if slo.sli.kind != "drift":
        return None
    span = reference_range(slo, ledger)
    return None if span is None else ledger.merged_sketch(*span)


def burn_rate(slo: SLO, ledger: Ledger, at: float, w: float) -> tuple[float | None, float]:
    """Burn rate over the last ``w`` seconds and the number of events in it."""
    allowed = error_allowance(slo.objective)
    if slo.sli.kind in SLICED_KINDS:
        width = slo.timeslice_window or ledger.resolution
        slices = ledger.slices(at - w, at, min(width, w))
        reference = _reference(slo, ledger)
        marks = [slice_good(slo, b, reference)[0] for _, b in slices]
        events = sum(b.total for _, b in slices)
        return (_ratio(marks.count(False), len(marks)) or 0.0) / allowed if marks else None, events
    b = ledger.window(at - w, at)
    bad = _ratio(b.total - b.good, b.total)
    return (None if bad is None else max(0.0, bad) / allowed), b.total


def evaluate_slo(ledger: Ledger, at: float) -> SLOResult:
    slo = ledger.slo
    start, end = window_bounds(slo.window, at)
    whole = ledger.window(start, end)
    allowed = error_allowance(slo.objective)
    sliced = slo.sli.kind in SLICED_KINDS or slo.budgeting != "occurrences"
    slices_good = slices_total = None
    if sliced:
        width = slo.timeslice_window or ledger.resolution
        slices = ledger.slices(start, end, width)
        reference = _reference(slo, ledger)
        marks = [slice_good(slo, b, reference) for _, b in slices]
        slices_total = len(marks)
        slices_good = sum(m[0] for m in marks)
        if slo.budgeting == "ratio_timeslices" and slo.sli.kind not in SLICED_KINDS:
            ratios = [(b.good / b.total, b.good_lower / b.total, b.good_upper / b.total) for _, b in slices]
            n = len(ratios)
            sli = sum(r[0] for r in ratios) / n if n else None
            sli_lower = sum(r[1] for r in ratios) / n if n else None
            sli_upper = sum(r[2] for r in ratios) / n if n else None
        else:
            sli = _ratio(slices_good, slices_total)
            sli_lower = _ratio(sum(m[1] for m in marks), slices_total)
            sli_upper = _ratio(sum(m[2] for m in marks), slices_total)
        budget_unit = "slices"
        budget_total = allowed * slices_total
        budget_consumed = (1.0 - sli) * slices_total if sli is not None else 0.0
    else:
        sli = _ratio(whole.good, whole.total)
        sli_lower = _ratio(whole.good_lower, whole.total)
        sli_upper = _ratio(whole.good_upper, whole.total)
        budget_unit = "events"
        budget_total = allowed * whole.total
        budget_consumed = whole.total - whole.good
    remaining = 1.0 - budget_consumed / budget_total if budget_total > 0 else None

    feedback = slo.sli.kind in FEEDBACK_KINDS
    coverage = label_coverage(whole) if feedback else None
    windows = sorted({w for t in slo.alert_tiers for w in (t.long_window, t.short_window)})
    burns: dict[float, tuple[float | None, float]] = {w: burn_rate(slo, ledger, at, w) for w in windows}
    alerts = []
    for tier in slo.alert_tiers:
        long_burn, long_events = burns[tier.long_window]
        short_burn, _ = burns[tier.short_window]
        enough = long_events >= slo.min_events
        if feedback and enough:  # a long window whose predictions mostly await their labels cannot fire yet
            covered = label_coverage(ledger.window(at - tier.long_window, at))
            enough = covered is None or covered >= slo.min_label_coverage
        firing = enough and at_least(long_burn, tier.burn_rate) and at_least(short_burn, tier.burn_rate)
        alerts.append(
            AlertState(
                tier.name,
                tier.severity,
                tier.burn_rate,
                tier.long_window,
                tier.short_window,
                long_burn,
                short_burn,
                long_events,
                firing,
                enough,
            )
        )
    burn_rates = {format_duration(w): burns[w][0] for w in windows}
    whole_burn = None if sli is None else max(0.0, 1.0 - sli) / allowed
    if not sliced and whole.total > 0:
        whole_burn = max(0.0, whole.total - whole.good) / whole.total / allowed
    burn_rates[f"window ({format_duration(slo.window.duration)})"] = whole_burn

    ref_burn = burns[slo.alert_tiers[0].long_window][0] if slo.alert_tiers else whole_burn
    tte = time_to_exhaustion(slo.window, start, at, remaining, ref_burn)
    if sli is not None:  # float sums must not put the estimate outside its own bounds
        if sli_lower is not None:
            sli = max(sli, sli_lower)
        if sli_upper is not None:
            sli = min(sli, sli_upper)

    if ledger.errors:
        status = "invalid"
        reason = (
            f"{ledger.errors} matching points ({ledger.error_events:g} events) could not be counted: "
            f"{ledger.first_error}"
        )
    elif whole.total < slo.min_events:
        status = "inconclusive"
        reason = f"{whole.total:g} events in the window, fewer than min_events={slo.min_events}"
        if coverage is not None:
            reason += f" (label coverage {coverage:.1%} of {whole.predictions:g} predictions)"
    elif coverage is not None and coverage < slo.min_label_coverage:
        status = "inconclusive"
        reason = (
            f"label coverage {coverage:.1%}: {whole.total:g} of the {whole.predictions:g} predictions made in the "
            f"window have feedback so far, below min_label_coverage {slo.min_label_coverage:.0%}"
        )
    elif sli is None:
        status, reason = "inconclusive", "no time slice with events in the window"
    elif sli < slo.objective - 1e-12:  # tolerance for float sums of integer counts
        status, reason = "fail", f"SLI {sli:.4%} below objective {slo.objective:.4%}"
    else:
        status, reason = "pass", f"SLI {sli:.4%} meets objective {slo.objective:.4%}"

    notes = []
    if slo.sli.definition:
        notes.append(slo.sli.definition)
    if feedback and coverage is None:
        notes.append(
            "label coverage unknown: no ml.predictions of this model in the window to divide by "
            "(the verdict counts the feedback alone)"
        )
    elif coverage is not None and coverage > 1.0 + 1e-9:
        notes.append(
            f"label coverage {coverage:.1%} is above 100%: more feedback than predictions in the window (feedback "
            "from a replica whose ml.predictions are not in the data, or predictions attributed to the next window)"
        )
    for metric, (unit, conventional) in sorted(ledger.units.items()):
        if conventional:
            notes.append(f"{metric} carries no unit: read in {unit!r}, the unit the semantic conventions give it")

    return SLOResult(
        slo=slo,
        status=status,
        reason=reason,
        at=at,
        window_start=start,
        events=whole.total,
        good=whole.good,
        good_lower=whole.good_lower,
        good_upper=whole.good_upper,
        sli=sli,
        sli_lower=sli_lower,
        sli_upper=sli_upper,
        budget_unit=budget_unit,
        budget_total=budget_total,
        budget_consumed=budget_consumed,
        budget_remaining_ratio=remaining,
        burn_rates=burn_rates,
        alerts=alerts,
        time_to_exhaustion=tte,
        slices_good=slices_good,
        slices_total=slices_total,
        notes=notes,
        units=dict(ledger.units),
        label_coverage=coverage,
        predictions=whole.predictions if feedback else None,
    )


def label_coverage(b: Bin) -> float | None:
    """Judged items over the predictions made in the same bins; None without predictions to divide by."""
    return b.total / b.predictions if b.predictions > 0 else None


def time_to_exhaustion(
    window: Window, start: float, at: float, remaining: float | None, burn: float | None
) -> float | None:
    """Seconds until the budget runs out at ``burn`` (the module docstring), or None when it will not."""
    if remaining is None or burn is None or burn <= 1.0:
        return None
    if remaining <= 0.0:
        return 0.0
    if window.rolling:
        x = remaining * window.duration / (burn - 1.0 + remaining)
        return x if x < window.duration else None
    elapsed = at - start
    x = remaining * elapsed / (burn - 1.0)
    period_end = window_end(window, start)
    return x if at + x < period_end else None


def window_end(window: Window, start: float) -> float:
    """End of the calendar period that starts at ``start``."""
    tz = ZoneInfo(window.timezone)
    return _step(datetime.fromtimestamp(start, tz), window.unit or "day", window.count).timestamp()
