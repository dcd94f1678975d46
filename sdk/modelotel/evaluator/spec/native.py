"""The native spec format: a top-level ``slos:`` list (docs/slo-spec.md). ``load_document`` turns one document
into ``SLO`` objects."""

from __future__ import annotations

import dataclasses
import re
from fractions import Fraction
from typing import Any

from ... import conventions as conv
from ..semconv import error_alternatives
from ..slo import (
    DEFAULT_ALERT_TIERS,
    DEFAULT_MIN_LABEL_COVERAGE,
    FEEDBACK_KINDS,
    SLI,
    SLICED_KINDS,
    SLO,
    AlertTier,
    Selector,
    Window,
)
from .errors import SpecError, SpecNote, Where
from .fields import (
    CALIBRATION_STATISTICS,
    DEFAULT_TIMESLICE,
    DRIFT_STATISTICS,
    SLI_KINDS,
    Fields,
    attribute_value,
    calendar_window,
    check_slo,
    describe,
    did_you_mean,
    duration,
    fraction,
    is_duration,
    local_time,
    merge_match,
    metric_unit,
    model_filters,
    parse_selector,
    runbook,
    zone,
)

# -- the native format -----------------------------------------------------------------------------

NATIVE_FIELDS = (
    "name",
    "description",
    "runbook",
    "labels",
    "model",
    "version",
    "role",
    "attributes",
    "metric",
    "sli",
    "threshold",
    "percentile",
    "objective",
    "window",
    "budgeting",
    "timeslice",
    "alerts",
    "min_events",
    "min_label_coverage",
    "ratio",
    "signal",
    "statistic",
    "reference",
)
_KIND_FIELDS = {  # fields that only some SLI kinds use
    "latency": {"threshold", "percentile", "metric"},
    "error_ratio": {"metric"},
    "ood_rate": {"threshold"},
    "low_confidence_rate": {"threshold"},
    "accuracy": set(),
    "ratio": {"ratio"},
    "drift": {"threshold", "signal", "statistic", "reference"},
    "calibration": {"threshold", "statistic"},
    "estimated_accuracy": {"threshold"},
    "abs_error": {"threshold"},
}
_WINDOW_UNITS = ("hour", "day", "week", "month", "quarter", "year")
_TIER_FIELDS = ("severity", "burn_rate", "long_window", "short_window")
_CALENDAR_FIELDS = ("calendar", "count", "start", "timezone")


def _off(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.lower() in ("off", "none", "disabled"))


def _on(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("on", "default"))


def percentile(value: Any, where: Where) -> float:
    """``p95`` -> 0.95, ``p99.9`` -> 0.999, ``0.95`` -> 0.95, ``'95%'`` -> 0.95 (read exactly)."""
    if isinstance(value, str) and re.fullmatch(r"p(\d+(?:\.\d+)?)", value.strip()):
        exact = Fraction(value.strip()[1:]) / 100
    elif isinstance(value, str) and value.strip().endswith("%"):
        return fraction(value, where, what="percentile")
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1:
        exact = Fraction(value)
    else:
        raise where.error(f"expected a percentile like 'p95', 'p99.9' or 0.95, got {describe(value)}")
    if not 0 < exact < 1:
        raise where.error(f"a percentile must be strictly between p0 and p100, got {describe(value)}")
    return float(exact)


def _native_window(value: Any, where: Where) -> Window:
    if isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return Window(duration=duration(value, where))
    what = "a duration like '28d' or a mapping like {calendar: month}"
    f = Fields(value, where, _CALENDAR_FIELDS, ("calendar",), what)
    unit = f.choice("calendar", _WINDOW_UNITS)
    count = f.integer("count", 1, minimum=1)
    timezone = zone(f.get("timezone", "UTC"), f.at("timezone"))
    start = local_time(f.get("start"), timezone, f.at("start")) if "start" in f else None
    return calendar_window(unit, count, start, timezone)


def _native_alerts(value: Any, where: Where) -> tuple[AlertTier, ...]:
    if _off(value):
        return ()
    if _on(value):
        return DEFAULT_ALERT_TIERS
    if not isinstance(value, dict):
        raise where.error(f"expected off or a mapping of alert tier names to off or overrides, got {describe(value)}")
    tiers = {tier.name: tier for tier in DEFAULT_ALERT_TIERS}
    for name, override, at in Fields(value, where, list(value)).entries():
        base = tiers.get(name)
        if _off(override) or _on(override):
            if base is None:
                raise at.error(f"unknown alert tier{did_you_mean(name, tiers)}; built-in tiers: {', '.join(tiers)}")
            if _off(override):
                del tiers[name]
            continue
        spec = Fields(override, at, _TIER_FIELDS, what="off or a mapping of tier fields")
        if base is None:
            missing = [key for key in _TIER_FIELDS if key not in spec]
            if missing:
                raise at.error(
                    f"unknown alert tier{did_you_mean(name, tiers)}; a new tier needs {', '.join(_TIER_FIELDS)} "
                    f"(missing {', '.join(missing)})"
                )
            base = AlertTier(name, "ticket", 1.0, 1.0, 1.0)
        tier = AlertTier(
            name=name,
            severity=spec.choice("severity", ("page", "ticket"), base.severity),  # type: ignore[arg-type]
            burn_rate=spec.number("burn_rate", base.burn_rate),
            long_window=spec.duration("long_window", base.long_window),
            short_window=spec.duration("short_window", base.short_window),
        )
        if tier.burn_rate <= 0:
            raise spec.at("burn_rate").error(f"expected a burn rate above 0, got {tier.burn_rate:g}")
        if tier.short_window > tier.long_window:
            raise at.error(
                f"short_window ({tier.short_window:g}s) must not be longer than long_window ({tier.long_window:g}s)"
            )
        tiers[name] = tier
    return tuple(tiers.values())


def _native_sli(f: Fields, kind: str) -> SLI:
    """The selectors of one native SLI kind, before the model/attribute filters are added."""
    if kind in ("latency", "error_ratio"):
        metric = f.text("metric", conv.INFERENCE_DURATION)
        unit = metric_unit(metric)
        if kind == "latency" and is_duration(metric) is False:
            raise f.at("metric").error(
                f"{metric} is not a duration (unit {unit!r}); latency needs a histogram in a unit of time such as "
                f"{conv.INFERENCE_DURATION}, {conv.HTTP_SERVER_DURATION} or {conv.RPC_SERVER_DURATION}"
            )
        if kind == "error_ratio" and metric in conv.METRICS and conv.METRICS[metric].kind != "histogram":
            raise f.at("metric").error(f"{metric} is a counter; error_ratio counts calls of a duration histogram")
        total = Selector(metric)
        if kind == "error_ratio":
            if metric.startswith("ml."):  # our own metrics: a failed call carries error.type
                return SLI("error_ratio", total=total, bad=dataclasses.replace(total, present=(conv.ERROR_TYPE,)))
            alternatives, why = error_alternatives(metric)
            bad = dataclasses.replace(total, any_of=alternatives)
            return SLI("error_ratio", total=total, bad=bad, definition=why)
        f.require("threshold", "latency needs one, e.g. threshold: 250ms")
        threshold = f.duration("threshold")
        good = dataclasses.replace(total, threshold=threshold, op="le", threshold_unit="s")
        if "percentile" in f:
            p = percentile(f.get("percentile"), f.at("percentile"))
            return SLI("percentile", total=total, good=good, threshold=threshold, percentile=p)
        return SLI("latency", total=total, good=good, threshold=threshold)
    if kind == "ood_rate":
        total = Selector(conv.OOD_SCORE_METRIC)
        if "threshold" not in f:
            return SLI("ood_rate", total=total, bad=Selector(conv.OOD_OUTLIERS))
        score = f.number("threshold")
        return SLI("ood_rate", total=total, good=dataclasses.replace(total, threshold=score, op="le"), threshold=score)
    if kind == "low_confidence_rate":
        f.require("threshold", "the lowest acceptable confidence, e.g. threshold: 0.6")
        confidence = f.number("threshold")
        if not 0 <= confidence <= 1:
            raise f.at("threshold").error(f"a confidence threshold is in [0, 1], got {confidence:g}")
        total = Selector(conv.PREDICTION_CONFIDENCE_METRIC)
        good = dataclasses.replace(total, threshold=confidence, op="ge")
        return SLI("low_confidence_rate", total=total, good=good, threshold=confidence)
    if kind == "accuracy":  # regression feedback (no correctness) is not counted
        good = Selector(conv.FEEDBACK, match=((conv.FEEDBACK_CORRECT, "true"),))
        return SLI("accuracy", total=Selector(conv.FEEDBACK, present=(conv.FEEDBACK_CORRECT,)), good=good)
    if kind == "abs_error":
        f.require("threshold", "the largest acceptable absolute error of a regression prediction, e.g. threshold: 5")
        bound = f.number("threshold")
        if not bound >= 0:
            raise f.at("threshold").error(f"an absolute error bound is at least 0, got {bound:g}")
        total = Selector(conv.FEEDBACK_ABS_ERROR)
        return SLI("abs_error", total=total, good=dataclasses.replace(total, threshold=bound, op="le"), threshold=bound)
    if kind == "drift":
        signal = f.text("signal", "")
        if signal == "confidence":
            total = Selector(conv.PREDICTION_CONFIDENCE_METRIC)
        elif signal == "ood_score":
            total = Selector(conv.OOD_SCORE_METRIC)
        elif signal.startswith("feature:") and len(signal) > len("feature:"):
            total = Selector(conv.FEATURE_VALUE, match=((conv.FEATURE_NAME, signal[len("feature:") :]),))
        else:
            raise f.at("signal").error(
                f"expected confidence, ood_score or feature:NAME (an allow-listed numeric feature), got {signal!r}"
            )
        statistic = f.choice("statistic", DRIFT_STATISTICS, "psi")
        f.require("threshold", "the largest acceptable statistic, e.g. threshold: 0.25 (PSI's 'significant' tier)")
        reference = f.text("reference", "")
        if not (reference.startswith("first:") or ".." in reference):
            raise f.at("reference").error(
                f"expected first:DURATION (of the data) or FROM..TO (ISO 8601 or epoch seconds), got {reference!r}"
            )
        threshold = f.number("threshold")
        return SLI("drift", total=total, threshold=threshold, statistic=statistic, reference=reference)
    if kind == "calibration":
        statistic = f.choice("statistic", CALIBRATION_STATISTICS, "ece")
        f.require("threshold", "the largest acceptable ECE (or Brier score), e.g. threshold: 0.05")
        total = Selector(conv.FEEDBACK_CONFIDENCE)
        good = Selector(conv.FEEDBACK_CONFIDENCE, match=((conv.FEEDBACK_CORRECT, "true"),))
        return SLI("calibration", total=total, good=good, threshold=f.number("threshold"), statistic=statistic)
    if kind == "estimated_accuracy":
        # Judged per time slice, a slice good when the CBPE estimate of its predictions reaches the threshold,
        # rather than as occurrences with good = sum of confidences: the ledger counts events (good <= total,
        # with bucket bounds) and keeps merged sketches for sliced kinds, and a target is stated the same way
        # ("each hour's estimated accuracy >= 0.9"), beside an accuracy SLO on the labels when they arrive.
        f.require("threshold", "the lowest acceptable estimated accuracy, e.g. threshold: 0.9")
        target = f.number("threshold")
        if not 0 <= target <= 1:
            raise f.at("threshold").error(f"an accuracy threshold is in [0, 1], got {target:g}")
        return SLI("estimated_accuracy", total=Selector(conv.PREDICTION_CONFIDENCE_METRIC), threshold=target)
    ratio = f.sub("ratio", ("good", "bad", "total"), ("total",), "e.g. {good: {metric: ...}, total: {metric: ...}}")
    numerators = ratio.present("good", "bad")
    if len(numerators) != 1:
        raise ratio.where.error("needs exactly one of good or bad, and total")
    selectors = {
        key: parse_selector(ratio.get(key), ratio.at(key), with_model=False, with_threshold=True, with_unit=False)[0]
        for key in (numerators[0], "total")
    }
    return SLI("ratio", total=selectors["total"], **{numerators[0]: selectors[numerators[0]]})


def _native_slo(entry: Any, where: Where) -> SLO:
    f = Fields(entry, where, NATIVE_FIELDS, required=("name", "sli", "objective"))
    name = f.text("name")
    if f.get("sli") in ("percentile", "p95", "p99"):
        raise f.at("sli").error("use sli: latency with percentile: p95")
    kind = f.choice("sli", SLI_KINDS)
    for key in ("threshold", "percentile", "metric", "ratio", "signal", "statistic", "reference"):
        if key in f and key not in _KIND_FIELDS[kind]:
            raise f.at(key).error(f"not used by sli {kind}")
    sli = _native_sli(f, kind)
    selectors = {key: getattr(sli, key) for key in ("total", "good", "bad") if getattr(sli, key) is not None}
    filters = model_filters(f, [s.metric for s in selectors.values()], "attributes")
    sli = dataclasses.replace(sli, **{key: merge_match(s, filters, where) for key, s in selectors.items()})
    objective = fraction(f.require("objective"), f.at("objective"))
    window = _native_window(f.get("window", "28d"), f.at("window"))

    sliced = sli.kind in SLICED_KINDS  # judged per time slice from merged sketches
    default = "timeslices" if sliced else "occurrences"
    budgeting = f.choice("budgeting", ("occurrences", "timeslices", "ratio_timeslices"), default)
    slices = f.fields("timeslice", ("window", "target"))
    timeslice_window = timeslice_target = None
    if sliced and budgeting != "timeslices":
        raise f.at("budgeting").error(f"sli {sli.kind} is judged per time slice: use budgeting: timeslices")
    if budgeting == "occurrences":
        if slices is not None:
            raise f.at("timeslice").error("only used with budgeting: timeslices or ratio_timeslices")
    else:
        slices = slices or Fields({}, f.at("timeslice"), ("window", "target"))
        timeslice_window = slices.duration("window", DEFAULT_TIMESLICE)
        if budgeting == "timeslices" and not sliced:
            target = slices.require("target", "a slice is good when its SLI reaches this, e.g. target: 0.95")
            timeslice_target = fraction(target, slices.at("target"), allow_one=True, what="target")
        elif "target" in slices:
            if sliced:
                raise slices.at("target").error(f"not used: a slice is good when its {sli.kind} meets the threshold")
            raise slices.at("target").error("not used: ratio_timeslices averages the slice ratios")

    labels = {key: attribute_value(value, at) for key, value, at in f.entries("labels")}
    return SLO(
        name=name,
        sli=sli,
        objective=objective,
        window=window,
        budgeting=budgeting,  # type: ignore[arg-type]
        timeslice_target=timeslice_target,
        timeslice_window=timeslice_window,
        alert_tiers=_native_alerts(f.value["alerts"], f.at("alerts")) if "alerts" in f.value else DEFAULT_ALERT_TIERS,
        min_events=f.integer("min_events", 100),
        min_label_coverage=_min_label_coverage(f, kind),
        description=f.text("description", ""),
        runbook=runbook(f.value["runbook"], f.at("runbook")) if "runbook" in f else "",
        source=where.source(),
        labels=labels,
    )


def _min_label_coverage(f: Fields, kind: str) -> float:
    """``min_label_coverage``: a fraction in [0, 1], for the SLI kinds judged from feedback only."""
    if "min_label_coverage" not in f:
        return DEFAULT_MIN_LABEL_COVERAGE
    if kind not in FEEDBACK_KINDS:
        raise f.at("min_label_coverage").error(
            f"not used: only SLIs judged from feedback ({', '.join(FEEDBACK_KINDS)}) have a label coverage"
        )
    value = f.number("min_label_coverage")
    if not 0 <= value <= 1:
        raise f.at("min_label_coverage").error(f"a share of the window's predictions, in [0, 1]; got {value:g}")
    return value


def load_document(doc: Any, where: Where, notes: list[SpecNote], errors: list[SpecError]) -> list[SLO]:
    # top-level x-* keys are free, a place for YAML anchors (as docker-compose does)
    free = [key for key in doc if isinstance(key, str) and key.startswith("x-")]
    top = Fields(doc, where, ("slos", *free), ("slos",))
    entries = top.items("slos")
    if not entries:
        raise top.at("slos").error("empty: expected a list of SLOs")
    slos = []
    for entry, at in entries:
        try:
            slos.append(check_slo(_native_slo(entry, at), at, notes))
        except SpecError as exc:
            errors.append(exc)
    return slos
