"""OpenSLO objects (``openslo/v1``, ``openslo/v1alpha``) -> ``model.SLO``.

All objects of all files are indexed by kind and name first, so references (``indicatorRef``,
``alertPolicyRef``, ``conditionRef``, ``metricSourceRef``) resolve across files. Then every AlertCondition,
AlertPolicy, SLI and SLO is translated, unreferenced ones too so that their problems show, each up to its first
problem. One SLO object with n objectives gives n ``model.SLO`` (``name/objective``). docs/slo-spec.md maps every
field; the choices that are ours:

- ``metricSource`` names modelotel metrics: ``type: modelotel`` with ``spec: {metric, model, version, role, match,
  present, absent, threshold, op, unit}`` (v1alpha: ``source: modelotel`` with that mapping as ``query``). Queries
  for other systems (PromQL, Datadog...) are refused: we evaluate our own metric stream, not theirs.
- ``thresholdMetric`` + objective ``op``/``value``: good = histogram values ``op value``, total = all values.
- AlertCondition ``burnrate``: ``lookbackWindow`` is the long window, ``alertAfter`` the short one (both windows
  must burn above the threshold, so the burn has to be current, not merely inside the lookback); when
  ``alertAfter`` is 0 the short window is lookbackWindow / 12, the ratio of the SRE workbook's tiers.
- No ``alertPolicies``: modelotel's default tiers (``model.DEFAULT_ALERT_TIERS``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from .. import conventions as conv
from .durations import CALENDAR_UNIT_SECONDS, DurationError, parse_shorthand
from .model import DEFAULT_ALERT_TIERS, SLI, SLO, AlertTier, Budgeting, Selector, SLIKind, Window
from .spec import (
    DEFAULT_WINDOW,
    OPS,
    Fields,
    SpecError,
    SpecNote,
    Where,
    attribute_value,
    calendar_window,
    check_slo,
    describe,
    did_you_mean,
    fraction,
    local_time,
    metric_unit,
    parse_selector,
    sequence,
    zone,
)
from .units import seconds_per_unit

__all__ = ["KINDS", "translate"]

KINDS = {
    "openslo/v1": ("SLO", "SLI", "AlertPolicy", "AlertCondition", "DataSource", "Service", "AlertNotificationTarget"),
    "openslo/v1alpha": ("SLO", "Service"),
}
_IGNORED = {
    "Service": "a Service only groups SLOs (their spec.service becomes the 'service' label)",
    "DataSource": "modelotel reads its own metrics; connection details are not used",
    "AlertNotificationTarget": "alerts are reported in the evaluator output; notification targets are not used",
}
_METADATA = ("name", "displayName", "labels", "annotations")
_PAGE_SEVERITIES = ("page", "critical", "sev1", "sev-1", "p1")
_SLO_V1 = (
    "description",
    "service",
    "indicator",
    "indicatorRef",
    "timeWindow",
    "budgetingMethod",
    "objectives",
    "alertPolicies",
)
_OBJECTIVE_V1 = (
    "displayName",
    "op",
    "value",
    "target",
    "targetPercent",
    "timeSliceTarget",
    "timeSliceWindow",
    "indicator",
    "indicatorRef",
    "compositeWeight",
)
_SLO_V1ALPHA = ("description", "service", "indicator", "timeWindows", "budgetingMethod", "objectives")
_OBJECTIVE_V1ALPHA = ("displayName", "value", "op", "target", "timeSliceTarget", "timeSliceWindow", "ratioMetrics")
_POLICY = (
    "description",
    "alertWhenNoData",
    "alertWhenResolved",
    "alertWhenBreaching",
    "conditions",
    "notificationTargets",
)
_BUDGETING: dict[str, Budgeting] = {
    "Occurrences": "occurrences",
    "Timeslices": "timeslices",
    "RatioTimeslices": "ratio_timeslices",
}
_V1ALPHA_UNITS = {u.capitalize(): u for u in CALENDAR_UNIT_SECONDS}
_V1ALPHA_SLICE = 60.0  # v1alpha has no timeSliceWindow; one minute, as OpenSLO's Timeslices examples use


@dataclass
class _Object:
    """One indexed OpenSLO object."""

    api: str
    kind: str
    name: str
    body: dict
    meta: Fields
    where: Where  # prefix "document 2 (SLO search-slo)"
    used: bool = False

    def spec(self, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> Fields:
        return Fields(self.body.get("spec"), self.where.key("spec"), allowed, required)


@dataclass(frozen=True)
class _Indicator:
    """An SLI object: a thresholdMetric histogram (with the seconds per unit of objective values) or a ratio."""

    threshold: Selector | None = None
    scale: float | None = None  # seconds per unit of objective values; None: plain numbers in the metric's unit
    good: Selector | None = None
    bad: Selector | None = None
    total: Selector | None = None


@dataclass(frozen=True)
class _Condition:
    severity: Literal["page", "ticket"]
    burn_rate: float
    long_window: float
    short_window: float


@dataclass
class _Translator:
    notes: list[SpecNote]
    errors: list[SpecError]
    objects: dict[tuple[str, str], _Object] = field(default_factory=dict)
    done: dict[tuple[str, str], Any] = field(default_factory=dict)

    # -- index and references

    def add(self, body: Any, where: Where) -> None:
        f = Fields(body, where, ("apiVersion", "kind", "metadata", "spec"), ("apiVersion", "kind", "metadata"))
        api = f.get("apiVersion")
        if api not in KINDS:
            hint = did_you_mean(api, KINDS) if isinstance(api, str) else ""
            raise f.at("apiVersion").error(
                f"unsupported apiVersion {describe(api)}{hint}: modelotel reads openslo/v1 and openslo/v1alpha"
            )
        kind = f.choice("kind", KINDS[api])
        name = f.sub("metadata", _METADATA, ("name",)).text("name")
        placed = Where(where.file, f"{where.prefix} ({kind} {name})", "", where.line)
        obj = _Object(api, kind, name, body, Fields(body["metadata"], placed.key("metadata"), _METADATA), placed)
        if (kind, name) in self.objects:
            first = self.objects[kind, name].where
            raise placed.error(f"another {kind} is named {name!r}: {first.file}: {first.prefix}")
        self.objects[kind, name] = obj
        if kind in _IGNORED:
            self.notes.append(placed.note(f"ignored: {_IGNORED[kind]}"))
        elif kind != "SLO" and "spec" not in f:
            raise f.at("spec").error("missing (required)")

    def ref(self, kind: str, name: Any, where: Where) -> _Object:
        if not isinstance(name, str):
            raise where.error(f"expected the name of a {kind}, got {describe(name)}")
        obj = self.objects.get((kind, name))
        if obj is None:
            names = [n for k, n in self.objects if k == kind]
            raise where.error(f"no {kind} named {name!r} in the loaded files{did_you_mean(name, names)}")
        obj.used = True
        return obj

    def get(self, obj: _Object, translate: Callable[[_Object], Any], where: Where | None = None) -> Any:
        """``translate(obj)`` once; its error is recorded once, and referrers (``where``) fail with a pointer."""
        key = (obj.kind, obj.name)
        if key not in self.done:
            try:
                self.done[key] = translate(obj)
            except SpecError as exc:
                self.done[key] = exc
                self.errors.append(exc)
        result = self.done[key]
        if isinstance(result, SpecError) and where is not None:
            raise where.error(
                f"refers to {obj.kind} {obj.name!r}, which is invalid ({result.file}: {result.field_path})"
            )
        return result

    # -- metric sources and indicators

    def metric_source(self, value: Any, where: Where, with_threshold: bool) -> tuple[Selector, float]:
        f = Fields(value, where, ("metricSourceRef", "type", "spec"))
        kind = f.text("type") if "type" in f else None
        if kind is None and "metricSourceRef" in f:
            source = self.ref("DataSource", f.get("metricSourceRef"), f.at("metricSourceRef"))
            spec = source.body.get("spec")
            kind = spec.get("type") if isinstance(spec, dict) else None
        if kind is None:
            raise f.at("type").error("missing: set type: modelotel")
        if str(kind).lower() != "modelotel":
            raise f.at("type").error(
                f"metric source type {describe(kind)} is not supported: modelotel evaluates its own metrics; "
                "use type: modelotel with spec: {metric: ..., model: ...} (docs/slo-spec.md)"
            )
        return self.modelotel_spec(
            f.require("spec", "e.g. {metric: ml.inference.duration, model: fraud}"), f.at("spec"), with_threshold
        )

    @staticmethod
    def modelotel_spec(value: Any, where: Where, with_threshold: bool) -> tuple[Selector, float]:
        if isinstance(value, dict) and value.get("query") is not None:
            raise (
                Fields(value, where, list(value))
                .at("query")
                .error(
                    "queries are not supported: name the metric and its filters, "
                    "e.g. {metric: ml.inference.duration, model: fraud, match: {http.route: /predict}}"
                )
            )
        return parse_selector(value, where, with_model=True, with_threshold=with_threshold, with_unit=True)

    def sli_spec(self, f: Fields) -> _Indicator:
        kinds = f.present("thresholdMetric", "ratioMetric")
        if len(kinds) != 1:
            raise f.where.error("needs exactly one of thresholdMetric or ratioMetric")
        if kinds[0] == "thresholdMetric":
            metric = f.sub("thresholdMetric", ("metricSource",), ("metricSource",))
            selector, scale = self.metric_source(metric.get("metricSource"), metric.at("metricSource"), False)
            return _Indicator(threshold=selector, scale=scale)
        ratio = f.sub("ratioMetric", ("counter", "good", "bad", "total", "rawType", "raw"))
        raw = ratio.present("raw", "rawType")
        if raw:
            raise ratio.at(raw[0]).error(
                "precomputed (raw) ratios are not supported: modelotel counts good and total events itself; "
                "use good or bad, with total"
            )
        ratio.require("total")
        numerators = ratio.present("good", "bad")
        if len(numerators) != 1:
            raise ratio.where.error("needs exactly one of good or bad, with total")
        if ratio.boolean("counter", None) is False:
            self.notes.append(
                ratio.at("counter").note(
                    "counter: false ignored: modelotel metrics are monotonic counters and histograms, "
                    "which the sources turn into increments"
                )
            )
        selectors = {}
        for key in (numerators[0], "total"):
            part = ratio.sub(key, ("metricSource",), ("metricSource",))
            selectors[key] = self.metric_source(part.get("metricSource"), part.at("metricSource"), True)[0]
        return _Indicator(**selectors)

    def sli_object(self, obj: _Object) -> _Indicator:
        return self.sli_spec(obj.spec(("description", "thresholdMetric", "ratioMetric")))

    def indicator_of(self, f: Fields) -> _Indicator | None:
        """The ``indicator`` (inline) or ``indicatorRef`` of an SLO spec or a composite objective."""
        given = f.present("indicator", "indicatorRef")
        if len(given) == 2:
            raise f.at("indicatorRef").error("give indicator or indicatorRef, not both")
        if not given:
            return None
        if given[0] == "indicatorRef":
            return self.get(
                self.ref("SLI", f.get("indicatorRef"), f.at("indicatorRef")), self.sli_object, f.at("indicatorRef")
            )
        inline = f.sub("indicator", ("metadata", "spec"), ("spec",))
        inline.fields("metadata", _METADATA, ("name",))
        return self.sli_spec(inline.sub("spec", ("description", "thresholdMetric", "ratioMetric")))

    # -- alerting

    def condition_spec(self, spec: Fields) -> _Condition:
        severity = spec.text("severity")
        cond = spec.sub(
            "condition",
            ("kind", "op", "threshold", "lookbackWindow", "alertAfter"),
            ("op", "threshold", "lookbackWindow"),
        )
        cond.choice("kind", ("burnrate",), "burnrate")
        op = cond.choice("op", ("gt", "gte", "lt", "lte"))
        if op in ("lt", "lte"):
            raise cond.at("op").error(
                f"op: {op} would alert while the budget burns slowly; modelotel alerts fire when the burn rate "
                "exceeds the threshold: use op: gt (or gte)"
            )
        burn_rate = cond.number("threshold")
        if burn_rate <= 0:
            raise cond.at("threshold").error(f"expected a burn rate above 0, got {burn_rate:g}")
        long_window = shorthand(cond.get("lookbackWindow"), cond.at("lookbackWindow"))
        after = shorthand(cond.get("alertAfter", "0m"), cond.at("alertAfter"), allow_zero=True)
        if after >= long_window:
            self.notes.append(
                cond.at("alertAfter").note("alertAfter is not shorter than lookbackWindow: a single-window alert")
            )
        short_window = min(after, long_window) if after > 0 else long_window / 12
        page = severity.strip().lower() in _PAGE_SEVERITIES
        return _Condition("page" if page else "ticket", burn_rate, long_window, short_window)

    def condition_object(self, obj: _Object) -> _Condition:
        return self.condition_spec(obj.spec(("description", "severity", "condition"), ("severity", "condition")))

    def policy_spec(self, spec: Fields, name: str) -> AlertTier | None:
        conditions = spec.items("conditions")
        if len(conditions) != 1:
            raise spec.at("conditions").error(f"expected exactly one condition, got {len(conditions)}")
        item, at = conditions[0]
        c = Fields(item, at, ("conditionRef", "kind", "metadata", "spec"))
        if "conditionRef" in c:
            if c.present("kind", "metadata", "spec"):
                raise at.error("give conditionRef or an inline condition, not both")
            cond = self.get(
                self.ref("AlertCondition", c.get("conditionRef"), c.at("conditionRef")),
                self.condition_object,
                c.at("conditionRef"),
            )
        else:
            c.choice("kind", ("AlertCondition",))
            c.fields("metadata", _METADATA, ("name",))
            cond = self.condition_spec(
                c.sub("spec", ("description", "severity", "condition"), ("severity", "condition"))
            )
        for key in ("alertWhenNoData", "alertWhenResolved"):
            if spec.boolean(key, False):
                self.notes.append(spec.at(key).note("not supported (alerts fire on burn rates only); ignored"))
        if spec.items("notificationTargets"):
            self.notes.append(spec.at("notificationTargets").note(f"ignored: {_IGNORED['AlertNotificationTarget']}"))
        if spec.boolean("alertWhenBreaching", True) is False:
            self.notes.append(spec.at("alertWhenBreaching").note("false: this policy never alerts; no alert tier"))
            return None
        return AlertTier(name, cond.severity, cond.burn_rate, cond.long_window, cond.short_window)

    def policy_object(self, obj: _Object) -> AlertTier | None:
        return self.policy_spec(obj.spec(_POLICY, ("conditions",)), obj.name)

    def alert_policies(self, spec: Fields) -> tuple[AlertTier, ...]:
        items = spec.items("alertPolicies")
        if not items:
            return DEFAULT_ALERT_TIERS
        tiers: dict[str, AlertTier] = {}
        for item, at in items:
            f = Fields(item, at, ("alertPolicyRef", "kind", "metadata", "spec"))
            if "alertPolicyRef" in f:
                if f.present("kind", "metadata", "spec"):
                    raise at.error("give alertPolicyRef or an inline AlertPolicy, not both")
                obj = self.ref("AlertPolicy", f.get("alertPolicyRef"), f.at("alertPolicyRef"))
                tier = self.get(obj, self.policy_object, f.at("alertPolicyRef"))
            else:
                f.choice("kind", ("AlertPolicy",))
                name = f.sub("metadata", _METADATA, ("name",)).text("name")
                tier = self.policy_spec(f.sub("spec", _POLICY, ("conditions",)), name)
            if tier is None:
                continue
            if tier.name in tiers:
                raise at.error(f"alert policy {tier.name!r} is listed twice")
            tiers[tier.name] = tier
        return tuple(tiers.values())

    # -- SLOs

    def window(self, f: Fields, count: int, unit: str, text: str) -> Window:
        rolling = f.boolean("isRolling", None)
        if "calendar" in f:
            if rolling:
                raise f.at("isRolling").error("a calendar-aligned window is not rolling: drop calendar or isRolling")
            cal = f.sub("calendar", ("startTime", "timeZone"), ("startTime", "timeZone"))
            tz = zone(cal.get("timeZone"), cal.at("timeZone"))
            window = calendar_window(unit, count, local_time(cal.get("startTime"), tz, cal.at("startTime")), tz)
        elif rolling is False:
            raise f.at("calendar").error(
                "missing: isRolling is false, so the window needs calendar: {startTime, timeZone}"
            )
        else:
            window = Window(duration=float(count * CALENDAR_UNIT_SECONDS[unit]))
        if unit == "minute":
            self.notes.append(f.where.note(f"{text} is {count} minute(s): in OpenSLO 'm' is minutes, 'M' months"))
        return window

    def window_v1(self, spec: Fields) -> Window:
        items = spec.items("timeWindow")
        if not items:
            self.notes.append(spec.at("timeWindow").note("none given: a rolling 28-day window"))
            return Window(duration=DEFAULT_WINDOW)
        if len(items) != 1:
            raise spec.at("timeWindow").error(f"expected exactly one time window, got {len(items)}")
        f = Fields(items[0][0], items[0][1], ("duration", "isRolling", "calendar"), ("duration",))
        text = f.get("duration")
        return self.window(f, *shorthand_parts(text, f.at("duration")), text=f"duration {describe(text)}")

    def window_v1alpha(self, spec: Fields) -> Window:
        items = spec.items("timeWindows")
        if not items:
            self.notes.append(spec.at("timeWindows").note("none given: a rolling 28-day window"))
            return Window(duration=DEFAULT_WINDOW)
        if len(items) != 1:
            raise spec.at("timeWindows").error(f"expected exactly one time window, got {len(items)}")
        f = Fields(items[0][0], items[0][1], ("unit", "count", "isRolling", "calendar"), ("unit",))
        unit = _V1ALPHA_UNITS[f.choice("unit", tuple(_V1ALPHA_UNITS))]
        count = f.integer("count", 1, minimum=1)
        return self.window(f, count, unit, f"count {count} unit {unit}")

    def objective(
        self,
        of: Fields,
        indicator: _Indicator,
        budgeting: Budgeting,
        slice_default: float | None,
        **slo: Any,
    ) -> SLO:
        """One objective of an SLO object -> ``model.SLO``; ``slo`` holds the fields shared by all objectives."""
        if indicator.threshold is not None:
            of.require("op", "a thresholdMetric counts the values that compare to value with op (lt, lte, gt, gte)")
            op = OPS[of.choice("op", ("lt", "lte", "gt", "gte"))]
            of.require("value", "the threshold each value of the metric is compared with")
            threshold = of.number("value")
            seconds = indicator.scale is not None
            if seconds:
                threshold *= indicator.scale  # type: ignore[operator]
            good = dataclasses.replace(
                indicator.threshold, threshold=threshold, op=op, threshold_unit="s" if seconds else None
            )
            kind = _threshold_kind(indicator.threshold.metric, op)
            sli = SLI(kind, total=indicator.threshold, good=good, threshold=threshold)
        else:
            if "value" in of:
                self.notes.append(of.at("value").note("ignored: value and op only apply to a thresholdMetric"))
            assert indicator.total is not None  # sli_spec requires total for ratios
            sli = SLI("ratio", total=indicator.total, good=indicator.good, bad=indicator.bad)

        targets = of.present("target", "targetPercent")
        if len(targets) != 1:
            raise of.where.error("needs exactly one of target or targetPercent")
        if targets[0] == "target":
            objective = fraction(of.get("target"), of.at("target"), what="target")
        else:
            percent = of.get("targetPercent")
            if isinstance(percent, bool) or not isinstance(percent, (int, float)):
                raise of.at("targetPercent").error(f"expected a percentage like 99.9, got {describe(percent)}")
            objective = fraction(f"{percent!r}%", of.at("targetPercent"), what="targetPercent")

        target = window = None
        given = of.present("timeSliceTarget", "timeSliceWindow")
        if budgeting == "occurrences":
            if given:
                self.notes.append(of.at(given[0]).note("ignored: only used by Timeslices and RatioTimeslices"))
        else:
            if "timeSliceWindow" in of:
                window = slice_window(of.get("timeSliceWindow"), of.at("timeSliceWindow"))
            elif slice_default is not None:
                window = slice_default
                self.notes.append(of.at("timeSliceWindow").note(f"none given: {slice_default:g}s slices"))
            else:
                of.require("timeSliceWindow", f"{_budgeting_name(budgeting)} needs the length of a time slice")
            if budgeting == "timeslices":
                of.require("timeSliceTarget", "Timeslices needs the fraction that makes a slice good")
                target = fraction(of.get("timeSliceTarget"), of.at("timeSliceTarget"), allow_one=True, what="target")
            elif "timeSliceTarget" in of:
                self.notes.append(of.at("timeSliceTarget").note("ignored: RatioTimeslices averages the slice ratios"))
        return SLO(
            sli=sli,
            objective=objective,
            budgeting=budgeting,
            timeslice_target=target,
            timeslice_window=window,
            **slo,
        )

    def slo_object(self, obj: _Object) -> list[SLO]:
        v1 = obj.api == "openslo/v1"
        spec = obj.spec(_SLO_V1 if v1 else _SLO_V1ALPHA, ("budgetingMethod", "objectives"))
        budgeting = _BUDGETING[spec.choice("budgetingMethod", tuple(_BUDGETING) if v1 else tuple(_BUDGETING)[:2])]
        if v1:
            indicator = self.indicator_of(spec)
            window = self.window_v1(spec)
            tiers = self.alert_policies(spec)
        else:
            threshold = spec.fields("indicator", ("thresholdMetric",), ("thresholdMetric",))
            indicator = None
            if threshold is not None:
                selector, scale = self.v1alpha_metric(
                    threshold.get("thresholdMetric"), threshold.at("thresholdMetric"), False
                )
                indicator = _Indicator(threshold=selector, scale=scale)
            window = self.window_v1alpha(spec)
            tiers = DEFAULT_ALERT_TIERS
        objectives = spec.items("objectives")
        if not objectives:
            raise spec.at("objectives").error("empty: expected at least one objective")
        shared = {
            "window": window,
            "alert_tiers": tiers,
            "description": spec.text("description", ""),
            "labels": self.labels(obj, spec),
        }
        names = _objective_names(obj.name, [item for item, _ in objectives])
        out = []
        for (item, at), name in zip(objectives, names, strict=True):
            of = Fields(item, at, _OBJECTIVE_V1 if v1 else _OBJECTIVE_V1ALPHA)
            if v1:
                own = self.indicator_of(of)
                if own is not None and indicator is not None:
                    raise of.at("indicator").error(
                        "the SLO already has an indicator; composite objectives need their own and none on the SLO"
                    )
                if "compositeWeight" in of:
                    self.notes.append(
                        of.at("compositeWeight").note("ignored: each objective is evaluated as its own SLO")
                    )
                chosen = own or indicator
            elif "ratioMetrics" in of:
                ratio = of.sub("ratioMetrics", ("incremental", "good", "total"), ("good", "total"))
                if ratio.boolean("incremental", None) is False:
                    self.notes.append(
                        ratio.at("incremental").note(
                            "incremental: false ignored: modelotel metrics are monotonic; the sources turn them into "
                            "increments"
                        )
                    )
                chosen = _Indicator(
                    good=self.v1alpha_metric(ratio.get("good"), ratio.at("good"), True)[0],
                    total=self.v1alpha_metric(ratio.get("total"), ratio.at("total"), True)[0],
                )
            else:
                chosen = indicator
            if chosen is None:
                what = "indicator or indicatorRef" if v1 else "spec.indicator.thresholdMetric or ratioMetrics"
                raise of.where.error(f"no SLI: give {what}")
            source = (at if len(objectives) > 1 else obj.where).source()
            slo = self.objective(
                of, chosen, budgeting, None if v1 else _V1ALPHA_SLICE, name=name, source=source, **shared
            )
            out.append(check_slo(slo, at, self.notes))
        return out

    def v1alpha_metric(self, value: Any, where: Where, with_threshold: bool) -> tuple[Selector, float]:
        f = Fields(value, where, ("source", "queryType", "query"), ("source", "query"))
        source = f.text("source")
        if str(source).lower() != "modelotel":
            raise f.at("source").error(
                f"metric source {describe(source)} is not supported: modelotel evaluates its own metrics; "
                "use source: modelotel with query: {metric: ..., model: ...} (docs/slo-spec.md)"
            )
        f.choice("queryType", ("metric",), None)
        query = f.get("query")
        if not isinstance(query, dict):
            raise f.at("query").error(
                f"expected a mapping like {{metric: ml.inference.duration, model: fraud}}, got {describe(query)}; "
                "query languages are not supported"
            )
        return self.modelotel_spec(query, f.at("query"), with_threshold)

    def labels(self, obj: _Object, spec: Fields) -> dict[str, str]:
        labels = {}
        for key, value, at in obj.meta.entries("labels"):
            if isinstance(value, list):
                labels[key] = ",".join(attribute_value(v, w) for v, w in sequence(value, at))
            else:
                labels[key] = attribute_value(value, at)
        if "service" in spec:
            labels.setdefault("service", spec.text("service"))
        return labels


def _budgeting_name(budgeting: Budgeting) -> str:
    return {v: k for k, v in _BUDGETING.items()}[budgeting]


def _threshold_kind(metric: str, op: str) -> SLIKind:
    """The SLI kind a thresholdMetric amounts to; ``ratio`` when the comparison is not the kind's own."""
    if op in ("le", "lt"):
        unit = metric_unit(metric)
        if unit is not None and seconds_per_unit(unit) is not None:
            return "latency"
        if metric == conv.OOD_SCORE_METRIC:
            return "ood_rate"
    elif metric == conv.PREDICTION_CONFIDENCE_METRIC:
        return "low_confidence_rate"
    return "ratio"


def _objective_names(base: str, items: list[Any]) -> list[str]:
    """``base`` for one objective; else ``base/<displayName as a slug>``, or ``base/<index>`` when that is empty
    or taken twice."""
    if len(items) == 1:
        return [base]
    slugs = []
    for item in items:
        display = item.get("displayName") if isinstance(item, dict) else None
        slugs.append(re.sub(r"[^a-z0-9]+", "-", str(display).lower()).strip("-") if display else "")
    return [f"{base}/{s}" if s and slugs.count(s) == 1 else f"{base}/{i}" for i, s in enumerate(slugs)]


def shorthand_parts(value: Any, where: Where, allow_zero: bool = False) -> tuple[int, str]:
    try:
        count, unit = parse_shorthand(value)
    except DurationError as exc:
        raise where.error(str(exc)) from None
    if count == 0 and not allow_zero:
        raise where.error(f"expected a duration above zero, got {describe(value)}")
    return count, unit


def shorthand(value: Any, where: Where, allow_zero: bool = False) -> float:
    """Seconds of an OpenSLO duration-shorthand (M, Q, Y nominal: 30, 90, 365 days)."""
    count, unit = shorthand_parts(value, where, allow_zero)
    return float(count * CALENDAR_UNIT_SECONDS[unit])


def slice_window(value: Any, where: Where) -> float:
    """``timeSliceWindow``: a duration-shorthand, or a number of minutes (OpenSLO's default unit)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise where.error(f"expected a time slice above zero, got {value}")
        return float(Fraction(repr(value)) * 60)
    return shorthand(value, where)


def translate(objects: list[tuple[Any, Where]], notes: list[SpecNote], errors: list[SpecError]) -> list[SLO]:
    """Every OpenSLO object (body, where it is) -> the SLOs they define; problems go to ``errors``."""
    t = _Translator(notes, errors)
    for body, where in objects:
        try:
            t.add(body, where)
        except SpecError as exc:
            errors.append(exc)
    steps = (("AlertCondition", t.condition_object), ("AlertPolicy", t.policy_object), ("SLI", t.sli_object))
    for kind, step in steps:
        for obj in [o for o in t.objects.values() if o.kind == kind]:
            t.get(obj, step)
    slos: list[SLO] = []
    for obj in [o for o in t.objects.values() if o.kind == "SLO"]:
        result = t.get(obj, t.slo_object)
        if not isinstance(result, SpecError):
            slos += result
    for obj in t.objects.values():
        if obj.kind in ("SLI", "AlertPolicy", "AlertCondition") and not obj.used:
            notes.append(obj.where.note("not referenced by any SLO"))
    return slos
