"""Prometheus recording and alerting rules for SLOs, over the series our collector's Prometheus route writes.

Names (``collector_config/grafana.yaml``: remote write, ``UnderscoreEscapingWithSuffixes``)
    An exponential histogram becomes a NATIVE histogram named after the metric plus its unit
    (``ml.inference.duration``, unit ``s`` -> ``ml_inference_duration_seconds``; unit ``1`` adds nothing); a
    monotonic sum becomes a counter ending in ``_total`` (``ml.feedback`` -> ``ml_feedback_total``; units in
    braces add nothing). Attribute keys: every character outside ``[a-zA-Z0-9_]`` becomes ``_``. Resource
    attributes: ``service.name`` (with ``service.namespace``: ``namespace/name``) -> ``job``,
    ``service.instance.id`` -> ``instance``; the others live only on ``target_info{job, instance}`` and are
    matched with ``and on (job, instance) target_info{...}``.

Semantics (those of ``engine/verdict.py``; ``docs/prometheus-rules.md`` lists where PromQL differs)
    With ``b = 1 - objective``, each window ``w`` is computed from its own rates, summed over every matching
    series (event-weighted, never an average of shorter-window ratios: sloth #241):

    * ``slo:sli_error:ratio_rate<w> = 1 - good_w / total_w`` (or ``bad_w / total_w``), where a histogram with a
      threshold counts ``histogram_fraction(-Inf, t, sum(rate(h[w]))) * histogram_count(sum(rate(h[w])))``
      values (``histogram_fraction(t, +Inf, ...)`` for ``ge``/``gt``) and a counter ``sum(rate(c[w]))``.
      A missing numerator (no error series yet) counts 0; no events at all gives no value or NaN (no alert).
    * ``slo:events:increase<w>``: total events over ``w`` (the ``min_events`` condition).
    * Burn rate over ``w`` = ``slo:sli_error:ratio_rate<w> / b``; a tier fires when the long and the short
      window burn at least ``burn_rate`` and the long window holds at least ``min_events`` events.
    * Time slices (``timeslices``/``ratio_timeslices`` budgets and ``percentile`` SLIs): the group runs every
      slice width ``s`` and records ``slo:timeslice_good:ratio`` (1/0 whether the slice ending now is good, or
      the slice SLI for ``ratio_timeslices``) only for slices with events;
      ``slo:sli_error:timeslices<w> = 1 - avg_over_time(slo:timeslice_good:ratio[w - 1ms])`` is the fraction of
      bad slices over the ``w / s`` slices ending now (``- 1ms``: a range includes both ends in Prometheus 2).
    * Period: ``slo:period_burn_rate:ratio`` = period error / ``b``;
      ``slo:period_error_budget_remaining:ratio = 1 - slo:period_burn_rate:ratio`` (``1 - consumed / budget``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

import numpy as np
import yaml

from ... import conventions as conv
from ..engine.diagnose import describe_filter
from ..engine.verdict import BURN_TOLERANCE, error_allowance
from ..semconv import known_unit, may_be_classic
from ..slo import SKETCH_KINDS, SLO, AttributeFilter, Selector
from ..units import in_unit, seconds_per_unit

__all__ = [
    "RulesError",
    "duration_text",
    "error_ratio_expr",
    "events_expr",
    "label_name",
    "prometheus_metric",
    "quantile_expr",
    "rule_groups",
    "rules_yaml",
    "timeslice_expr",
]

DEFAULT_TIMESLICE = 300.0  # seconds, as spec.py fills in; a slice must span 2 exports or more for rate()
RESOURCE_PREFIXES = (
    "service.",
    "deployment.",
    "host.",
    "process.",
    "telemetry.",
    "k8s.",
    "container.",
    "cloud.",
    "os.",
    "faas.",
    "device.",
)
RESERVED_LABELS = ("slo_name", "slo_window", "model", "severity", "slo_alert_tier", "quantile")
ALERT_NAME = "SLOErrorBudgetBurn"
# Unit suffixes the translation adds (prometheus/otlptranslator); units in braces and "1" add nothing.
UNIT_SUFFIXES = {
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "min": "minutes",
    "h": "hours",
    "d": "days",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "%": "percent",
}


class RulesError(ValueError):
    """An SLO the rules cannot express, with the SLO's source and name in the message."""


def _fail(slo: SLO, message: str) -> RulesError:
    where = f"{slo.source}: " if slo.source else ""
    return RulesError(f"{where}SLO {slo.name!r}: {message}")


# -- names ----------------------------------------------------------------------------------------


def label_name(key: str) -> str:
    """An attribute key as the collector writes it as a label: invalid characters become ``_``."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", key)
    return f"key_{name}" if name[:1].isdigit() else name


def prometheus_metric(metric: str, histogram_hint: bool = False) -> tuple[str, bool]:
    """``(Prometheus name, is_histogram)`` of an OTel metric.

    Metrics modelotel defines (``conventions.METRICS``) are named from their kind and unit. Others are named from
    the unit the semantic conventions give them (``http.server.duration``, ms -> ``http_server_duration_milliseconds``)
    and are histograms when that unit is a duration; without a known unit, a histogram (``histogram_hint``: the
    selector has a threshold) keeps the bare name, anything else is taken as a counter (``_total`` appended).
    """
    spec = conv.METRICS.get(metric)
    base = label_name(metric)
    if spec is None:
        unit = known_unit(metric)
        if unit is not None and seconds_per_unit(unit) is not None:
            suffix = UNIT_SUFFIXES.get(unit, "")
            return (f"{base}_{suffix}" if suffix and not base.endswith(f"_{suffix}") else base), True
        if histogram_hint:
            return base, True
        if base.endswith(("_total", "_count", "_sum", "_bucket")):  # already a Prometheus series name
            return base, False
        return f"{base}_total", False
    suffix = UNIT_SUFFIXES.get(spec.unit, "")
    if suffix and not base.endswith(f"_{suffix}"):
        base = f"{base}_{suffix}"
    if spec.kind == "histogram":
        return base, True
    return f"{base}_total", False


def _bound_text(x: float) -> str:
    """A bucket bound as the collector writes it in the ``le`` label: the shortest digits that read back as the
    same double, without an exponent (Go's ``FormatFloat(x, 'f', -1, 64)``): 100, 0.25, 0.00001."""
    return np.format_float_positional(x, trim="-")


def _quote(value: str) -> str:
    """A PromQL string literal (Go escapes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _num(x: float) -> str:
    """A PromQL number literal that reads back as exactly ``x``."""
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x))


def duration_text(seconds: float) -> str:
    """A PromQL duration: the largest of d/h/m/s dividing exactly, else milliseconds (``300 -> '5m'``).

    Days rather than weeks, so a 28-day window is ``28d`` in rule names, as people write it."""
    ms = round(seconds * 1000)
    if ms <= 0 or abs(ms - seconds * 1000) > 1e-6:
        raise ValueError(f"{seconds!r} s is not a whole positive number of milliseconds")
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _just_under(seconds: float) -> str:
    """``seconds`` minus 1 ms, so a Prometheus 2 range (both ends included) holds ``seconds / step`` samples."""
    return f"{round(seconds * 1000) - 1}ms"


# -- selectors ------------------------------------------------------------------------------------


def _is_resource(key: str) -> bool:
    return key.startswith(RESOURCE_PREFIXES)


def _matchers(slo: SLO, sel: Selector, alternative: tuple[AttributeFilter, ...] = ()) -> tuple[list[str], list[str]]:
    """``(label matchers on the series, target_info joins)`` for a selector's filters (and one ``any_of``
    alternative)."""
    series: list[str] = []
    joins: list[str] = []
    match = dict(sel.match)
    name, namespace = match.pop("service.name", None), match.pop("service.namespace", None)
    if name is not None and namespace is not None:
        series.append(f"job={_quote(f'{namespace}/{name}')}")
    elif name is not None:
        series.append(f"job=~{_quote('(?:.+/)?' + re.escape(name))}")
    elif namespace is not None:
        series.append(f"job=~{_quote(re.escape(namespace) + '/.+')}")
    instance = match.pop("service.instance.id", None)
    if instance is not None:
        series.append(f"instance={_quote(instance)}")
    for key, value in match.items():
        if _is_resource(key):
            joins.append(f"and on (job, instance) target_info{{{label_name(key)}={_quote(value)}}}")
        else:
            series.append(f"{label_name(key)}={_quote(value)}")
    for keys, op, join in ((sel.absent, '=""', "unless"), (sel.present, '!=""', "and")):
        for key in keys:
            if key in ("service.name", "service.namespace", "service.instance.id"):
                raise _fail(slo, f"{key} is always set on our series (job/instance); it cannot be absent or present")
            if _is_resource(key):
                joins.append(f'{join} on (job, instance) target_info{{{label_name(key)}!=""}}')
            else:
                series.append(f"{label_name(key)}{op}")
    for condition in (*sel.filters, *alternative):
        if condition.key in ("service.name", "service.namespace", "service.instance.id"):
            raise _fail(
                slo, f"{describe_filter(condition)}: only equality can filter {condition.key} (job/instance) in PromQL"
            )
        matcher = f"{label_name(condition.key)}{_promql_op(condition)}"
        if _is_resource(condition.key):
            joins.append(f"and on (job, instance) target_info{{{matcher}}}")
        else:
            series.append(matcher)
    return series, joins


def _promql_op(condition: AttributeFilter) -> str:
    """The label matcher of a filter: ``="v"``, ``!="v"``, ``=~"a|b"``, ``!~"re"`` (PromQL anchors regexes too)."""
    values = condition.values
    if condition.op in ("eq", "ne"):
        return ("=" if condition.op == "eq" else "!=") + _quote(values[0])
    if condition.op in ("in", "not_in"):
        pattern = "|".join(re.escape(v) for v in values)
        return ("=~" if condition.op == "in" else "!~") + _quote(pattern)
    return ("=~" if condition.op == "regex" else "!~") + _quote(values[0])


def _range(
    slo: SLO, sel: Selector, window: float, fn: str, alternative: tuple[AttributeFilter, ...] = (), suffix: str = ""
) -> tuple[str, bool]:
    """``(fn(series[window]) with joins, is_histogram)``: per-series rates or increases, before summing;
    ``suffix`` picks a classic histogram's ``_count`` or ``_bucket`` series."""
    metric, histogram = prometheus_metric(sel.metric, histogram_hint=sel.threshold is not None)
    if sel.threshold is not None and not histogram:
        raise _fail(slo, f"{sel.metric} is a counter ({metric}); a threshold needs a histogram")
    series, joins = _matchers(slo, sel, alternative)
    expr = f"{fn}({metric}{suffix}{{{', '.join(series)}}}[{duration_text(window)}])"
    if joins:
        expr = " ".join([expr, *joins])
    return expr, histogram


def _threshold(sel: Selector) -> float:
    """The selector's threshold in the unit of the metric's Prometheus series (its name's unit suffix)."""
    t = float(sel.threshold)  # type: ignore[arg-type]
    if sel.threshold_unit != "s":
        return t
    spec = conv.METRICS.get(sel.metric)
    unit = spec.unit if spec is not None else (known_unit(sel.metric) or "s")
    return in_unit(t, sel.metric, unit)


def _fraction(sel: Selector, summed: str) -> str:
    """Fraction of a summed native histogram's values on the selector's good side of its threshold."""
    t = _num(_threshold(sel))
    if sel.op in ("le", "lt"):
        return f"histogram_fraction(-Inf, {t}, {summed})"
    return f"histogram_fraction({t}, +Inf, {summed})"


def _count_one(slo: SLO, sel: Selector, window: float, fn: str, alternative: tuple[AttributeFilter, ...]) -> str:
    inner, histogram = _range(slo, sel, window, fn, alternative)
    if not histogram:
        return f"sum({inner})"
    summed = f"sum({inner})"
    native = f"histogram_count({summed})"
    if sel.threshold is not None:
        native = f"{_fraction(sel, summed)} * {native}"
    if not may_be_classic(sel.metric):
        return native
    # explicit buckets (the OTel SDK's default) arrive as a classic histogram: _count, and _bucket{le} for a
    # threshold, which counts exactly at a bucket bound and gives no value elsewhere
    count = f"sum({_range(slo, sel, window, fn, alternative, '_count')[0]})"
    if sel.threshold is None:
        classic = count
    elif sel.op in ("le", "gt"):
        le = dataclasses.replace(sel, match=(*sel.match, ("le", _bound_text(_threshold(sel)))))
        at_or_below = f"sum({_range(slo, le, window, fn, alternative, '_bucket')[0]})"
        classic = at_or_below if sel.op == "le" else f"({count} - {at_or_below})"
    else:
        return native  # lt / ge are not expressible with cumulative le buckets
    return f"({native} or {classic})"


def _count(slo: SLO, sel: Selector, window: float, fn: str = "rate") -> str:
    """Events the selector counts over ``window``, summed over every matching series (a label-less vector); the
    disjoint ``any_of`` alternatives add up."""
    if not sel.any_of:
        return _count_one(slo, sel, window, fn, ())
    parts = [f"({_count_one(slo, sel, window, fn, alt)} or vector(0))" for alt in sel.any_of]
    return "(" + " + ".join(parts) + ")"


def _same_series(a: Selector, b: Selector) -> bool:
    """Whether two selectors pick the same series (a histogram's good side vs all of its values)."""
    return (
        a.metric == b.metric
        and sorted(a.match) == sorted(b.match)
        and sorted(a.absent) == sorted(b.absent)
        and sorted(a.present) == sorted(b.present)
        and a.filters == b.filters
        and a.any_of == b.any_of
        and not may_be_classic(a.metric)
    )


# -- expressions ----------------------------------------------------------------------------------


def error_ratio_expr(slo: SLO, window: float) -> str:
    """PromQL for the event-weighted bad fraction ``1 - good/total`` over the last ``window`` seconds."""
    sli = slo.sli
    total = sli.total
    numerator = sli.good if sli.good is not None else sli.bad
    if numerator is None:
        raise _fail(slo, "the SLI has neither good nor bad events")
    if numerator.threshold is not None and total.threshold is None and _same_series(numerator, total):
        # One histogram: the fraction of its values is the ratio itself (rate extrapolation cancels).
        inner, _ = _range(slo, numerator, window, "rate")  # the same series; checks it is a histogram
        fraction = _fraction(numerator, f"sum({inner})")
        return f"1 - {fraction}" if sli.good is not None else fraction
    ratio = f"({_count(slo, numerator, window)} or vector(0))\n/\n{_count(slo, total, window)}"
    return f"1 - (\n{ratio}\n)" if sli.good is not None else ratio


def events_expr(slo: SLO, window: float) -> str:
    """PromQL for the number of events (the SLI's total) over the last ``window`` seconds."""
    return _count(slo, slo.sli.total, window, "increase")


def quantile_expr(slo: SLO, window: float) -> str:
    """PromQL for the SLI's percentile of the total histogram over ``window`` (``percentile`` SLIs)."""
    inner, histogram = _range(slo, slo.sli.total, window, "rate")
    if not histogram:
        raise _fail(slo, f"{slo.sli.total.metric} is not a histogram; a percentile needs one")
    q = _num(slo.sli.percentile or 0.5)
    native = f"histogram_quantile({q}, sum({inner}))"
    if not may_be_classic(slo.sli.total.metric):
        return native
    # explicit buckets (the OTel SDK's default; vLLM's TTFT) arrive as a classic histogram: without this
    # alternative the quantile has no value there and no slice is ever recorded. At a bucket bound both say the same
    # (the quantile is <= a bound exactly when that bucket holds the percentile); between bounds Prometheus
    # interpolates linearly where the evaluator bounds the SLI (docs/prometheus-rules.md)
    buckets, _ = _range(slo, slo.sli.total, window, "rate", suffix="_bucket")
    return f"({native} or histogram_quantile({q}, sum by (le) ({buckets})))"


def _sliced(slo: SLO) -> bool:
    return slo.sli.kind == "percentile" or slo.budgeting != "occurrences"


def _slice_width(slo: SLO) -> float:
    return slo.timeslice_window or DEFAULT_TIMESLICE


def timeslice_expr(slo: SLO, width: float | None = None) -> str:
    """PromQL for the slice of ``width`` (default: the SLO's) ending now, only when it holds events.

    1 or 0 (good or not) for ``timeslices`` and ``percentile`` SLIs; the slice's SLI for ``ratio_timeslices``.
    A percentile slice is good when its quantile is ``<=`` the threshold; other slices when their SLI is
    ``>=`` ``timeslice_target`` (the objective when unset), as in ``budget.slice_good``.
    """
    width = width or _slice_width(slo)
    if slo.sli.kind == "percentile":
        t = slo.sli.threshold if slo.sli.threshold is not None else math.inf
        value = f"({quantile_expr(slo, width)} <= bool {_num(t)})"
    elif slo.budgeting == "ratio_timeslices":
        value = f"(1 - (\n{error_ratio_expr(slo, width)}\n))"
    else:
        target = slo.timeslice_target if slo.timeslice_target is not None else slo.objective
        value = f"((1 - (\n{error_ratio_expr(slo, width)}\n)) >= bool {_num(target)})"
    return f"{value}\nand on ()\n({_count(slo, slo.sli.total, width)} > 0)"


# -- rules ----------------------------------------------------------------------------------------


def _model(slo: SLO) -> str | None:
    return dict(slo.sli.total.match).get(conv.MODEL_NAME)


def _labels(slo: SLO, **extra: str) -> dict[str, str]:
    labels = {"slo_name": slo.name}
    model = _model(slo)
    if model is not None:
        labels["model"] = model
    for key, value in slo.labels.items():
        name = label_name(key)
        if name in RESERVED_LABELS or name.startswith("__"):
            raise _fail(slo, f"label {key!r} is reserved for the generated rules")
        labels[name] = str(value)
    labels.update(extra)
    return labels


def _ref(slo: SLO, record: str) -> str:
    return f"{record}{{slo_name={_quote(slo.name)}}}"


def _error_record(slo: SLO, window: float) -> str:
    """The recorded series holding the bad fraction that burn rates over ``window`` use."""
    if slo.sli.kind == "percentile":
        return f"slo:sli_error:timeslices{duration_text(window)}"
    return f"slo:sli_error:ratio_rate{duration_text(window)}"


def _slug(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", name).strip("-") or "slo"


def _human(seconds: float) -> str:
    """``'46.7h'``, ``'9.33d'``: a readable length for annotations."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= 2 * size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.3g}s"


def _slo_rules(slo: SLO) -> dict:
    budget = error_allowance(slo.objective)
    if not 0.0 < budget < 1.0:
        raise _fail(slo, f"objective {slo.objective!r} is not in (0, 1)")
    try:
        period = duration_text(slo.window.duration)
        windows = sorted({w for t in slo.alert_tiers for w in (t.long_window, t.short_window)})
        for w in windows:
            duration_text(w)
        if _sliced(slo):
            duration_text(_slice_width(slo))
    except ValueError as exc:
        raise _fail(slo, str(exc)) from None
    rules: list[dict] = []
    sliced = _sliced(slo)
    width = _slice_width(slo)

    def record(name: str, expr: str, **labels: str) -> None:
        if any(r.get("record") == name for r in rules):
            return  # e.g. the period is also an alert window
        rules.append({"record": name, "expr": expr, "labels": _labels(slo, **labels)})

    if sliced:
        record("slo:timeslice_good:ratio", timeslice_expr(slo), slo_window=duration_text(width))
    for w in windows:
        text = duration_text(w)
        if slo.sli.kind == "percentile":
            record(
                f"slo:sli_quantile:rate{text}",
                quantile_expr(slo, w),
                slo_window=text,
                quantile=_num(slo.sli.percentile or 0.5),
            )
            if w <= width:  # one slice of width w, as verdict.burn_rate uses min(slice, w)
                expr = f"1 - (\n{timeslice_expr(slo, w)}\n)"
            else:
                expr = f"1 - avg_over_time({_ref(slo, 'slo:timeslice_good:ratio')}[{_just_under(w)}])"
            record(f"slo:sli_error:timeslices{text}", expr, slo_window=text)
        else:
            record(f"slo:sli_error:ratio_rate{text}", error_ratio_expr(slo, w), slo_window=text)
    for w in sorted({t.long_window for t in slo.alert_tiers} | {slo.window.duration}):
        text = duration_text(w)
        record(f"slo:events:increase{text}", events_expr(slo, w), slo_window=text)

    # The period: event-weighted, or counted in slices for sliced budgets.
    if sliced:
        period_record = f"slo:sli_error:timeslices{period}"
        period_expr = f"1 - avg_over_time({_ref(slo, 'slo:timeslice_good:ratio')}[{_just_under(slo.window.duration)}])"
    else:
        period_record = f"slo:sli_error:ratio_rate{period}"
        period_expr = error_ratio_expr(slo, slo.window.duration)
    record(period_record, period_expr, slo_window=period)
    record("slo:objective:ratio", f"vector({_num(slo.objective)})")
    record("slo:error_budget:ratio", f"vector({_num(budget)})")
    record("slo:time_period:days", f"vector({_num(slo.window.duration / 86400)})")
    if windows:
        record(
            "slo:current_burn_rate:ratio",
            f"{_ref(slo, _error_record(slo, windows[0]))} / {_num(budget)}",
            slo_window=duration_text(windows[0]),
        )
    record("slo:period_burn_rate:ratio", f"{_ref(slo, period_record)} / {_num(budget)}", slo_window=period)
    record(
        "slo:period_error_budget_remaining:ratio",
        f"1 - {_ref(slo, 'slo:period_burn_rate:ratio')}",
        slo_window=period,
    )

    rules += _alert_rules(slo)
    group: dict = {"name": f"modelotel-slo-{_slug(slo.name)}"}
    if sliced:
        group["interval"] = duration_text(width)  # slices end on evaluations: one slice per evaluation
    group["rules"] = rules
    return group


def _alert_rules(slo: SLO) -> list[dict]:
    """One ``SLOErrorBudgetBurn`` rule per tier: long and short burn rates >= the tier's, ``min_events`` in long.

    As in the evaluator: the budget is ``1 - objective`` rounded to 12 decimals (0.001, not
    0.0010000000000000009) and a burn rate counts as reaching the tier's within a relative 1e-9, so a burn of
    exactly 14.4 fires in both."""
    budget = error_allowance(slo.objective)
    period = duration_text(slo.window.duration)
    rules: list[dict] = []
    unit = "slices" if _sliced(slo) else "events"
    model = _model(slo)
    what = f"SLO {slo.name}" + (f" (model {model})" if model else "")
    for tier in slo.alert_tiers:
        long, short = duration_text(tier.long_window), duration_text(tier.short_window)
        rate = _num(tier.burn_rate * (1.0 - BURN_TOLERANCE))
        expr = (
            f"(\n  {_ref(slo, _error_record(slo, tier.long_window))} / {_num(budget)} >= {rate}\n)\n"
            f"and on (slo_name)\n"
            f"(\n  {_ref(slo, _error_record(slo, tier.short_window))} / {_num(budget)} >= {rate}\n)\n"
            f"and on (slo_name)\n"
            f"(\n  {_ref(slo, f'slo:events:increase{long}')} >= {_num(float(slo.min_events))}\n)"
        )
        lasts = _human(slo.window.duration / tier.burn_rate)
        description = (
            f"{what} burns its error budget at least {tier.burn_rate:g}x over both {long} and {short} "
            f"(objective {slo.objective:.6g}, budget {budget:.6g} of {unit} over {period}; "
            f"{slo.min_events} or more events in {long}). At {tier.burn_rate:g}x the whole {period} budget "
            f"lasts {lasts}."
        )
        if slo.description:
            description += f" {slo.description}"
        rules.append(
            {
                "alert": ALERT_NAME,
                "expr": expr,
                "labels": _labels(slo, severity=tier.severity, slo_alert_tier=tier.name),
                "annotations": {
                    "summary": f"{what}: error budget burn rate {{{{ $value | humanize }}}}x over {long} "
                    f"(tier {tier.name}: >= {tier.burn_rate:g}x over {long} and {short})",
                    "description": description,
                    **({"runbook_url": slo.runbook} if slo.runbook else {}),
                },
            }
        )
    return rules


def rule_groups(slos: Sequence[SLO]) -> list[dict]:
    """One rule group per SLO (recording rules first, then its alerts: a group evaluates in order)."""
    seen: dict[str, SLO] = {}
    groups = []
    for slo in slos:
        slug = _slug(slo.name)
        if slo.name in seen or slug in (_slug(n) for n in seen):
            other = next(s for n, s in seen.items() if n == slo.name or _slug(n) == slug)
            raise _fail(slo, f"its name clashes with the SLO {other.name!r} of {other.source or 'the input'}")
        seen[slo.name] = slo
        groups.append(_slo_rules(slo))
    return groups


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def rules_yaml(slos: Sequence[SLO]) -> str:
    """A Prometheus rule file (``rule_files:``) for ``slos``: recording rules and burn-rate alerts."""
    # drift, calibration and estimated accuracy judge merged distributions per slice: no PromQL expresses them
    skipped = [s for s in slos if s.sli.kind in SKETCH_KINDS]
    groups = rule_groups([s for s in slos if s not in skipped])
    sources = sorted({s.source.split(":")[0] for s in slos if s.source})
    header = "# Generated by `modelotel rules`" + (f" from {', '.join(sources)}" if sources else "") + "."
    header += " Do not edit: regenerate.\n# Rule names and PromQL semantics: docs/prometheus-rules.md\n"
    for s in skipped:
        header += f"# {s.name}: sli {s.sli.kind} has no PromQL form; `modelotel evaluate` or `serve` judges it\n"
    body = yaml.dump({"groups": groups}, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)
    return header + body
