"""OpenSLO objects (``openslo/v1``, ``openslo/v1alpha``) -> ``model.SLO``.

All objects of all files are indexed by kind and name first, so references (``indicatorRef``,
``alertPolicyRef``, ``conditionRef``, ``metricSourceRef``) resolve across files. Then every AlertCondition,
AlertPolicy, SLI and SLO is translated, unreferenced ones too so that their problems show, each up to its first
problem. One SLO object with n objectives gives n ``model.SLO`` (``name/objective``). docs/slo-spec.md maps every
field; the choices that are ours:

- ``metricSource`` names metrics: ``type: modelotel`` with ``spec: {metric, model, version, role, match,
  present, absent, threshold, op, unit}`` (v1alpha: ``source: modelotel`` with that mapping as ``query``). modelotel
  counts the events of a metric itself, from OTLP files or from a Prometheus server read by name; it runs no query
  language. So ``type: Prometheus`` whose query only selects series (``sum(rate(x{code=~"5.."}[5m]))``, promql.py)
  becomes that selector, with a note saying what of the query is not run; any other query, and other systems'
  sources (Datadog, AppDynamics, SQL, OpenSLO's placeholder ``Any``), are one error giving the ``type: modelotel``
  replacement when a selector can be read from the query. A PromQL thresholdMetric, or a ratio with
  ``counter: false``, is refused too: its values are samples of a gauge, not counts of events.
- ``thresholdMetric`` + objective ``op``/``value``: good = histogram values ``op value``, total = all values.
- AlertCondition ``burnrate``: ``lookbackWindow`` is the long window, ``alertAfter`` the short one (both windows
  must burn above the threshold, so the burn has to be current, not merely inside the lookback); when
  ``alertAfter`` is 0 the short window is lookbackWindow / 12, the ratio of the SRE workbook's tiers.
- No ``alertPolicies``: modelotel's default tiers (``model.DEFAULT_ALERT_TIERS``), with a note (OpenSLO itself
  would not alert).
- Two objects of one kind and name are an error, except Services and AlertNotificationTargets, which are only
  ignored anyway (a note).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from ... import conventions as conv
from ..durations import CALENDAR_UNIT_SECONDS, DurationError, parse_shorthand
from ..slo import DEFAULT_ALERT_TIERS, SLI, SLO, AlertTier, Budgeting, Selector, SLIKind, Window
from ..units import seconds_per_unit
from .errors import SpecError, SpecNote, Where
from .fields import (
    DEFAULT_WINDOW,
    OPS,
    RUNBOOK_ANNOTATIONS,
    Fields,
    attribute_value,
    calendar_window,
    check_slo,
    describe,
    did_you_mean,
    fraction,
    local_time,
    metric_unit,
    parse_selector,
    runbook,
    sequence,
    zone,
)
from .promql import PromQLError, selector_yaml, selectors_in, translation_note
from .promql import translate as translate_promql

__all__ = ["KINDS", "translate"]

KINDS = {
    "openslo/v1": ("SLO", "SLI", "AlertPolicy", "AlertCondition", "DataSource", "Service", "AlertNotificationTarget"),
    "openslo/v1alpha": ("SLO", "Service"),
}
_IGNORED = {
    "Service": "a Service only groups SLOs (their spec.service becomes the 'service' label)",
    "DataSource": "connection details are not used: modelotel reads the OTLP files or Prometheus server it is given",
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
_DUPLICATES_NOTED = ("Service", "AlertNotificationTarget")  # ignored kinds: a second one of a name is harmless
_PROMETHEUS = "prometheus"
_DEFAULT_TIERS_TEXT = (
    "modelotel's default tiers: page-fast, page-slow, ticket-fast, ticket-slow (burn rates 14.4, 6, 3, 1 over "
    "1h/5m, 6h/30m, 1d/2h, 3d/6h: the SRE workbook's for a 30-day window)"
)


def _metric_spec_text(v1: bool, selector: Selector | None) -> str:
    """How a metric source naming ``selector`` is written (``type: modelotel, spec: {...}`` in v1)."""
    body = (selector_yaml(selector) if selector is not None else None) or "{metric: ..., match: {...}}"
    return f"type: modelotel, spec: {body}" if v1 else f"source: modelotel, query: {body}"


def _foreign_source(kind: str, v1: bool) -> str:
    """The error for a metric source of another system: what modelotel does instead, and what to write."""
    if kind.lower() == "any":
        what = "type 'Any' is OpenSLO's placeholder" if v1 else "source 'Any' is OpenSLO's placeholder"
        return f"metric source {what}: name the metric modelotel counts: {_metric_spec_text(v1, None)}"
    return (
        f"metric source {kind!r}: modelotel does not query {kind}; it counts the events of a metric itself, from OTLP "
        "files or from a Prometheus server by name. Name the metric as it arrives there: "
        f"{_metric_spec_text(v1, None)} (docs/slo-spec.md#metric-sources)"
    )


def _untranslatable(query: str, exc: PromQLError, v1: bool) -> str:
    """The error for PromQL that is not a plain selector, with the replacement when a selector can be read."""
    found = selectors_in(query)
    message = (
        f"PromQL is not run by modelotel, and this query is more than a selector: {exc}. modelotel counts the events "
        "of one metric itself (OTLP files, or Prometheus by name): "
    )
    if len(found) == 1:
        return message + (
            f"if {found[0].metric} counts events (a counter or a histogram), write {_metric_spec_text(v1, found[0])} "
            "(docs/slo-spec.md#promql)"
        )
    if found:
        listed = "; ".join(selector_yaml(s) or s.metric for s in found[:3])
        return message + (
            f"name the metric and its filters, {_metric_spec_text(v1, None)}; the query's selectors are {listed} "
            "(docs/slo-spec.md#promql)"
        )
    return message + f"name the metric and its filters: {_metric_spec_text(v1, None)} (docs/slo-spec.md#promql)"


@dataclass(frozen=True)
class _Source:
    """A metric source read: the selector, the seconds per unit of numbers written for it (None: plain numbers),
    whether that unit was written (``spec.unit``), and the PromQL it came from (None for ``type: modelotel``)."""

    selector: Selector
    scale: float | None
    unit_given: bool = False
    promql: str | None = None


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
    unit_given: bool = False  # the thresholdMetric's spec.unit was written
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
        if isinstance(body, dict) and body.get("apiVersion") not in KINDS:  # before anything else is required
            api = body.get("apiVersion")
            at = Fields(body, where, list(body)).at("apiVersion")
            if isinstance(api, str) and "v2" in api.lower():
                raise at.error(
                    f"unsupported apiVersion {api!r}: OpenSLO v2alpha is a draft modelotel does not read; "
                    "it reads openslo/v1 and openslo/v1alpha"
                )
            hint = did_you_mean(api, KINDS) if isinstance(api, str) else ""
            raise at.error(
                f"unsupported apiVersion {describe(api)}{hint}: modelotel reads openslo/v1 and openslo/v1alpha"
            )
        f = Fields(body, where, ("apiVersion", "kind", "metadata", "spec"), ("apiVersion", "kind", "metadata"))
        api = f.get("apiVersion")
        kind = f.get("kind")
        if api == "openslo/v1alpha" and kind in KINDS["openslo/v1"] and kind not in KINDS[api]:
            raise f.at("kind").error(
                f"expected one of {', '.join(KINDS[api])}, got {kind!r}: {kind} is an openslo/v1 kind, not in "
                "openslo/v1alpha"
            )
        kind = f.choice("kind", KINDS[api])
        name = f.sub("metadata", _METADATA, ("name",)).text("name")
        placed = Where(where.file, f"{where.prefix} ({kind} {name})", "", where.line)
        obj = _Object(api, kind, name, body, Fields(body["metadata"], placed.key("metadata"), _METADATA), placed)
        if (kind, name) in self.objects:
            first = self.objects[kind, name].where
            if kind in _DUPLICATES_NOTED:
                self.notes.append(
                    placed.note(f"another {kind} is named {name!r} ({first.file}: {first.prefix}); both are ignored")
                )
                return
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

    def metric_source(self, value: Any, where: Where, with_threshold: bool) -> _Source:
        f = Fields(value, where, ("metricSourceRef", "type", "spec"))
        kind = f.text("type") if "type" in f else None
        if kind is None and "metricSourceRef" in f:
            source = self.ref("DataSource", f.get("metricSourceRef"), f.at("metricSourceRef"))
            spec = source.body.get("spec")
            kind = spec.get("type") if isinstance(spec, dict) else None
        if kind is None:
            raise f.at("type").error("missing: set type: modelotel")
        if str(kind).lower() == _PROMETHEUS:
            spec = f.sub("spec", ("query", "promql", "dimensions"), why="e.g. {query: 'sum(rate(x[5m]))'}")
            given = spec.present("query", "promql")
            if len(given) != 1:
                raise spec.where.error("needs exactly one of query or promql")
            if "dimensions" in spec:
                self.notes.append(spec.at("dimensions").note("ignored: each SLO is judged over all its series"))
            return self.promql_source(spec.text(given[0]), spec.at(given[0]), True)
        if str(kind).lower() != "modelotel":
            raise f.at("type").error(_foreign_source(str(kind), True))
        return self.modelotel_spec(
            f.require("spec", "e.g. {metric: ml.inference.duration, model: fraud}"), f.at("spec"), with_threshold
        )

    def promql_source(self, query: str, where: Where, v1: bool) -> _Source:
        """A selector translated from PromQL (with a note), or the error saying what to write instead."""
        try:
            translation = translate_promql(query)
        except PromQLError as exc:
            raise where.error(_untranslatable(query, exc, v1)) from None
        self.notes.append(where.note(translation_note(translation)))
        return _Source(translation.selector, None, promql=query)

    @staticmethod
    def modelotel_spec(value: Any, where: Where, with_threshold: bool) -> _Source:
        if isinstance(value, dict) and value.get("query") is not None:
            raise (
                Fields(value, where, list(value))
                .at("query")
                .error(
                    "queries are not supported here: name the metric and its filters, "
                    "e.g. {metric: ml.inference.duration, model: fraud, match: {http.route: /predict}}; "
                    "a PromQL query goes in a type: Prometheus metric source"
                )
            )
        selector, scale = parse_selector(value, where, with_model=True, with_threshold=with_threshold, with_unit=True)
        return _Source(selector, scale, unit_given=isinstance(value, dict) and value.get("unit") is not None)

    @staticmethod
    def threshold_source(source: _Source, where: Where, v1: bool) -> _Indicator:
        """A thresholdMetric's source: a histogram, whose observations are compared with the objective's value."""
        metric = source.selector.metric
        if source.promql is not None:
            raise where.error(
                "a PromQL thresholdMetric compares each sample of the query with the objective's value (a gauge, a "
                "percentile); modelotel compares each observation of a histogram. If "
                f"{metric} is a histogram, write {_metric_spec_text(v1, source.selector)}; a gauge has no events to "
                "count"
            )
        if metric in conv.METRICS and conv.METRICS[metric].kind == "counter":
            raise where.error(
                f"{metric} is a counter; a thresholdMetric compares histogram observations with the objective's "
                "value: count the counter in a ratioMetric"
            )
        return _Indicator(threshold=source.selector, scale=source.scale, unit_given=source.unit_given)

    def counted(self, flag: Fields, key: str, sources: list[_Source]) -> None:
        """``counter``/``incremental`` false: a gauge, refused for PromQL sources (its samples are not counts)."""
        if flag.boolean(key, None) is not False:
            return
        promql = [s for s in sources if s.promql is not None]
        if promql:
            raise flag.at(key).error(
                f"{key}: false says the query's values go up and down (a gauge): modelotel counts events, the "
                f"increments of a counter or histogram; {promql[0].selector.metric} read as a counter would turn "
                "every decrease into a reset. Point the metric source at a counter of the events"
            )
        self.notes.append(
            flag.at(key).note(
                f"{key}: false ignored: modelotel metrics are monotonic counters and histograms, "
                "which the sources turn into increments"
            )
        )

    def sli_spec(self, f: Fields) -> _Indicator:
        kinds = f.present("thresholdMetric", "ratioMetric")
        if len(kinds) != 1:
            raise f.where.error("needs exactly one of thresholdMetric or ratioMetric")
        if kinds[0] == "thresholdMetric":
            metric = f.sub("thresholdMetric", ("metricSource",), ("metricSource",))
            source = self.metric_source(metric.get("metricSource"), metric.at("metricSource"), False)
            return self.threshold_source(source, metric.at("metricSource"), True)
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
        sources = {}
        for key in (numerators[0], "total"):
            part = ratio.sub(key, ("metricSource",), ("metricSource",))
            sources[key] = self.metric_source(part.get("metricSource"), part.at("metricSource"), True)
        self.counted(ratio, "counter", list(sources.values()))
        return _Indicator(**{key: source.selector for key, source in sources.items()})

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

    def window(self, f: Fields, count: int, unit: str, text: str, shorthand_m: bool = False) -> Window:
        rolling = f.boolean("isRolling", None)
        if shorthand_m and unit == "minute" and "calendar" in f:
            months = "a month" if count == 1 else f"{count} months"
            raise f.at("duration").error(
                f"{text} is {count} minute(s) in OpenSLO's duration-shorthand ('m' is minutes), and a calendar "
                f"window of minutes is never meant: did you mean '{count}M' ({months})?"
            )
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
        count, unit = shorthand_parts(text, f.at("duration"))
        return self.window(f, count, unit, text=f"duration {describe(text)}", shorthand_m=True)

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
            if indicator.scale == 1.0 and not indicator.unit_given and threshold >= 60:
                self.notes.append(
                    of.at("value").note(
                        f"value {threshold:g} is read in seconds, the unit of {indicator.threshold.metric} "
                        f"({threshold / 60:g} minutes); if it is in milliseconds, write unit: ms in the metric "
                        "source's spec"
                    )
                )
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
            if not spec.items("alertPolicies"):
                self.notes.append(
                    spec.at("alertPolicies").note(f"none given: {_DEFAULT_TIERS_TEXT}; OpenSLO itself would not alert")
                )
        else:
            threshold = spec.fields("indicator", ("thresholdMetric",), ("thresholdMetric",))
            indicator = None
            if threshold is not None:
                source = self.v1alpha_metric(threshold.get("thresholdMetric"), threshold.at("thresholdMetric"), False)
                indicator = self.threshold_source(source, threshold.at("thresholdMetric"), False)
            window = self.window_v1alpha(spec)
            tiers = DEFAULT_ALERT_TIERS
            self.notes.append(spec.where.note(f"openslo/v1alpha has no alert policies: {_DEFAULT_TIERS_TEXT}"))
        objectives = spec.items("objectives")
        if not objectives:
            raise spec.at("objectives").error("empty: expected at least one objective")
        shared = {
            "window": window,
            "alert_tiers": tiers,
            "description": spec.text("description", ""),
            "runbook": self.runbook(obj),
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
                # the Go SDK spells it incremental, OpenSLO's v1alpha README counter; the README also has bad
                ratio = of.sub("ratioMetrics", ("incremental", "counter", "good", "bad", "total"), ("total",))
                numerators = ratio.present("good", "bad")
                if len(numerators) != 1:
                    raise ratio.where.error("needs exactly one of good or bad, with total")
                flags = ratio.present("incremental", "counter")
                if len(flags) == 2 and ratio.get("incremental") != ratio.get("counter"):
                    raise ratio.at("counter").error("incremental and counter say the same thing; they disagree")
                sources = {
                    key: self.v1alpha_metric(ratio.get(key), ratio.at(key), True) for key in (numerators[0], "total")
                }
                for flag in flags:
                    self.counted(ratio, flag, list(sources.values()))
                chosen = _Indicator(**{key: source.selector for key, source in sources.items()})
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

    def v1alpha_metric(self, value: Any, where: Where, with_threshold: bool) -> _Source:
        f = Fields(value, where, ("source", "queryType", "query"), ("source", "query"))
        source = f.text("source")
        f.text("queryType", None)  # free text in v1alpha ("a name for the type of query"): query, promql, metric
        query = f.get("query")
        if source.lower() == _PROMETHEUS:
            if not isinstance(query, str):
                raise f.at("query").error(f"expected a PromQL query, got {describe(query)}")
            return self.promql_source(query, f.at("query"), False)
        if source.lower() != "modelotel":
            raise f.at("source").error(_foreign_source(source, False))
        if not isinstance(query, dict):
            raise f.at("query").error(
                f"expected a mapping like {{metric: ml.inference.duration, model: fraud}}, got {describe(query)}; "
                "a PromQL query goes with source: prometheus"
            )
        return self.modelotel_spec(query, f.at("query"), with_threshold)

    def runbook(self, obj: _Object) -> str:
        """``metadata.annotations``: OpenSLO leaves them to implementations; ``runbook`` (or ``runbook_url``) is
        the SLO's runbook here."""
        for key, value, at in obj.meta.entries("annotations"):
            if key in RUNBOOK_ANNOTATIONS:
                return runbook(value, at)
        return ""

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
