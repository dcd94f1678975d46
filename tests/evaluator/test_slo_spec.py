"""Tests for the SLO spec layer: durations, the native format, OpenSLO (with the OpenSLO repository's own examples,
their metric sources pointed at modelotel metrics) and the error messages, which must name file, field and line.

Expected values are written from the spec texts (and docs/slo-spec.md), never read back from the parser.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import re
from fractions import Fraction

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from modelotel.evaluator.durations import (
    DurationError,
    format_duration,
    parse_duration,
    parse_duration_exact,
    parse_shorthand,
)
from modelotel.evaluator.slo import DEFAULT_ALERT_TIERS, SLO, AlertTier, Selector, Window
from modelotel.evaluator.spec import SpecError, Where, load_slos, load_specs
from modelotel.evaluator.spec.fields import fraction

DATA = pathlib.Path(__file__).parents[1] / "data" / "slo"
OPENSLO = DATA / "openslo"
GO_SDK = OPENSLO / "pkg" / "openslo"
DOCS = pathlib.Path(__file__).parents[2] / "docs" / "slo-spec.md"

NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
NS |= {"d": 24 * NS["h"], "w": 7 * 24 * NS["h"]}
DAY = 86400.0
NEW_YORK_2022 = dt.datetime(2022, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-5))).timestamp()  # EST
FRAUD = (("ml.model.name", "fraud"),)


def by_name(slos: list[SLO] | tuple[SLO, ...]) -> dict[str, SLO]:
    return {slo.name: slo for slo in slos}


def write(tmp_path: pathlib.Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- durations -------------------------------------------------------------------------------------

whole_ns = st.integers(min_value=0, max_value=10**20)


@given(whole_ns)
def test_format_parse_round_trip_of_whole_nanoseconds(ns: int) -> None:
    text = format_duration(Fraction(ns, 10**9))
    assert parse_duration_exact(text) == Fraction(ns, 10**9)
    assert parse_duration(text) == float(Fraction(ns, 10**9))
    assert re.fullmatch(r"(\d+(w|d|h|m|s|ms|us|ns))+", text)


@given(st.floats(min_value=0.0, max_value=1e15, allow_nan=False, allow_infinity=False))
def test_format_parse_round_trip_of_floats(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 999), st.sampled_from(sorted(NS))), min_size=1))
def test_go_terms_sum_exactly(terms: list[tuple[int, int, str]]) -> None:
    text = "".join(f"{whole}.{frac:03d}{unit}" for whole, frac, unit in terms)
    exact_ns = sum(Fraction(whole * 1000 + frac, 1000) * NS[unit] for whole, frac, unit in terms)
    assert parse_duration_exact(text) == exact_ns / 10**9
    assert parse_duration(text) == float(exact_ns / 10**9)


@given(st.integers(0, 400), st.integers(0, 100), st.integers(0, 100), st.integers(0, 100), st.integers(0, 10**4))
def test_iso_8601_equals_go_style(w: int, d: int, h: int, m: int, ms: int) -> None:
    iso = f"P{w}W{d}DT{h}H{m}M{ms // 1000}.{ms % 1000:03d}S"
    go = f"{w}w{d}d{h}h{m}m{ms}ms"
    assert (
        parse_duration_exact(iso)
        == parse_duration_exact(go)
        == Fraction(((w * 7 + d) * 24 + h) * 3600 + m * 60) + Fraction(ms, 1000)
    )


@given(st.integers(0, 10**6), st.sampled_from("mhdwMQY"))
def test_openslo_shorthand(count: int, postfix: str) -> None:
    names = {"m": "minute", "h": "hour", "d": "day", "w": "week", "M": "month", "Q": "quarter", "Y": "year"}
    assert parse_shorthand(f"{count}{postfix}") == (count, names[postfix])


@given(st.integers(1, 999_999), st.integers(0, 4))
def test_percentages_are_read_exactly(digits: int, decimals: int) -> None:
    """'99.95%' is the double nearest 0.9995, not 99.95 / 100 rounded twice."""
    text = f"{digits / 10**decimals:.{decimals}f}"
    if not 0 < Fraction(text) < 100:
        return
    assert fraction(f"{text}%", Where("t.yaml")) == float(Fraction(text) / 100)


@pytest.mark.parametrize(
    "text, hint",
    [
        ("fast", "got 'fast'"),
        ("250", "a number alone has no unit"),
        ("1M", "no fixed length"),
        ("P1M", "years or months"),
        ("P1Y2D", "years or months"),
        ("5 m", "got '5 m'"),
        ("-5m", "got '-5m'"),
        ("P", "got 'P'"),
        ("PT", "got 'PT'"),
        ("P1DT", "got 'P1DT'"),
        ("1.5.2s", "got '1.5.2s'"),
        ("", "got ''"),
    ],
)
def test_bad_durations(text: str, hint: str) -> None:
    with pytest.raises(DurationError, match=re.escape(hint)):
        parse_duration(text)


def test_duration_examples() -> None:
    assert parse_duration("250ms") == 0.25
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("7d") == 7 * DAY
    assert parse_duration("1w") == 7 * DAY
    assert parse_duration("P28D") == 28 * DAY
    assert parse_duration("PT0.25S") == 0.25
    assert parse_duration("100us") == parse_duration("100µs") == 1e-4
    assert format_duration(5400.0) == "1h30m"
    assert format_duration(0.25) == "250ms"
    assert format_duration(0) == "0s"
    with pytest.raises(DurationError):
        parse_shorthand("30s")  # OpenSLO has no seconds postfix


# -- the native format -----------------------------------------------------------------------------


def test_every_native_sli_kind() -> None:
    slos = by_name(load_slos([str(DATA / "native" / "every-kind.yaml")]))
    assert list(slos) == [
        "fraud-latency",
        "fraud-errors",
        "fraud-ood",
        "fraud-ood-outliers",
        "fraud-confidence",
        "fraud-accuracy",
        "checkout-latency",
        "fraud-slow-ratio",
    ]
    duration = Selector("ml.inference.duration", FRAUD)

    latency = slos["fraud-latency"]
    assert latency.sli.kind == "latency"
    assert latency.sli.total == duration
    assert latency.sli.good == Selector("ml.inference.duration", FRAUD, threshold=0.25, op="le", threshold_unit="s")
    assert latency.sli.bad is None and latency.sli.threshold == 0.25
    assert latency.objective == 0.99
    assert latency.window == Window(duration=7 * DAY)
    assert latency.budgeting == "occurrences" and latency.alert_tiers == DEFAULT_ALERT_TIERS
    assert latency.min_events == 100
    assert latency.description == "99% of fraud scoring calls within 250 ms"
    assert latency.source.endswith("every-kind.yaml: slos[0]")
    assert latency.metrics() == {"ml.inference.duration"}

    errors = slos["fraud-errors"]
    match = (("ml.model.name", "fraud"), ("ml.model.version", "3"), ("ml.deployment.role", "canary"))
    assert errors.sli.kind == "error_ratio"
    assert errors.sli.total == Selector("ml.inference.duration", match)
    assert errors.sli.bad == Selector("ml.inference.duration", match, present=("error.type",))
    assert errors.sli.good is None
    assert errors.objective == 0.999  # '99.9%'
    assert errors.window == Window(duration=28 * DAY)  # 'P28D'

    ood = slos["fraud-ood"]
    assert ood.sli.kind == "ood_rate"
    assert ood.sli.total == Selector("ml.ood.score", FRAUD)
    assert ood.sli.good == Selector("ml.ood.score", FRAUD, threshold=3.5, op="le")
    assert ood.window == Window(duration=28 * DAY)  # the default

    outliers = slos["fraud-ood-outliers"]
    assert outliers.sli.kind == "ood_rate"
    assert outliers.sli.total == Selector("ml.ood.score", FRAUD)
    assert outliers.sli.bad == Selector("ml.ood.outliers", FRAUD) and outliers.sli.good is None
    assert outliers.metrics() == {"ml.ood.score", "ml.ood.outliers"}

    confidence = slos["fraud-confidence"]
    match = (("ml.model.name", "fraud"), ("tenant", "acme"), ("premium", "true"))
    assert confidence.sli.kind == "low_confidence_rate"
    assert confidence.sli.good == Selector("ml.prediction.confidence", match, threshold=0.6, op="ge")
    assert confidence.sli.total == Selector("ml.prediction.confidence", match)
    assert confidence.objective == 0.9 and confidence.window == Window(duration=30 * DAY)

    accuracy = slos["fraud-accuracy"]
    assert accuracy.sli.kind == "accuracy"
    # regression feedback carries no ml.feedback.correct: not counted as a judged classification
    assert accuracy.sli.total == Selector("ml.feedback", FRAUD, present=("ml.feedback.correct",))
    assert accuracy.metrics() == {"ml.feedback", "ml.predictions"}  # ml.predictions: the label coverage
    assert accuracy.min_label_coverage == 0.5
    assert accuracy.sli.good == Selector("ml.feedback", (*FRAUD, ("ml.feedback.correct", "true")))
    assert accuracy.window == Window(duration=30 * DAY, rolling=False, unit="month", count=1, calendar_start=None)
    assert accuracy.min_events == 20 and accuracy.alert_tiers == ()

    checkout = slos["checkout-latency"]
    match = (("http.route", "/predict"), ("http.request.method", "POST"))
    assert checkout.sli.good == Selector(
        "http.server.request.duration", match, threshold=0.5, op="le", threshold_unit="s"
    )
    paris_monday = dt.datetime(2026, 1, 5, tzinfo=dt.timezone(dt.timedelta(hours=1))).timestamp()  # CET
    assert checkout.window == Window(
        duration=7 * DAY, rolling=False, unit="week", count=1, calendar_start=paris_monday, timezone="Europe/Paris"
    )

    ratio = slos["fraud-slow-ratio"]
    assert ratio.sli.kind == "ratio"
    assert ratio.sli.bad == Selector("ml.inference.duration", FRAUD, threshold=2.0, op="gt", threshold_unit="s")
    assert ratio.sli.total == duration and ratio.sli.good is None
    assert ratio.labels == {"team": "risk"} and ratio.objective == 0.999


def test_native_timeslices_percentile_and_alert_overrides() -> None:
    specs = load_specs([str(DATA / "native" / "timeslices.yaml")])
    slos = by_name(specs.slos)

    p95 = slos["fraud-p95"]
    assert p95.sli.kind == "percentile" and p95.sli.percentile == 0.95 and p95.sli.threshold == 0.3
    assert p95.sli.total == Selector("ml.inference.duration", FRAUD)
    assert p95.budgeting == "timeslices" and p95.timeslice_window == 60.0 and p95.timeslice_target is None

    slices = slos["fraud-latency-slices"]
    assert slices.sli.kind == "latency"
    assert slices.budgeting == "timeslices" and slices.timeslice_window == 300.0 and slices.timeslice_target == 0.95
    assert slices.window == Window(duration=90 * DAY, rolling=False, unit="quarter", count=1, timezone="UTC")

    ratio = slos["fraud-errors-ratio-slices"]
    assert ratio.budgeting == "ratio_timeslices" and ratio.timeslice_window == 300.0
    assert ratio.timeslice_target is None
    default = {tier.name: tier for tier in DEFAULT_ALERT_TIERS}
    assert ratio.alert_tiers == (
        default["page-slow"],
        default["ticket-fast"],
        AlertTier("ticket-slow", "ticket", 2.0, 3 * DAY, 6 * 3600.0),
        AlertTier("weekly-review", "ticket", 1.5, 7 * DAY, DAY),
    )
    assert specs.notes == ()


def test_directories_load_sorted_and_notes_name_the_place() -> None:
    specs = load_specs([str(DATA / "native")])
    names = [slo.name for slo in specs.slos]
    assert names[0] == "fraud-latency" and names[-1] == "fraud-errors-ratio-slices" and len(names) == 11
    # fraud-confidence: objective 0.9, and 14.4 * (1 - 0.9) > 1
    (note,) = specs.notes
    assert str(note).startswith(f"{DATA / 'native' / 'every-kind.yaml'}: slos[4]: alert tier page-fast can never fire")


def test_native_and_openslo_documents_in_one_file(tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path,
        "mixed.yaml",
        """
slos:
  - {name: a, model: fraud, sli: accuracy, objective: 0.8, alerts: off}
---
apiVersion: openslo/v1
kind: SLO
metadata: {name: b}
spec:
  budgetingMethod: Occurrences
  indicator:
    spec:
      thresholdMetric:
        metricSource: {type: modelotel, spec: {metric: ml.prediction.confidence, model: fraud}}
  objectives: [{op: gte, value: 0.7, target: 0.9}]
  alertPolicies: []
""",
    )
    a, b = load_slos([path])
    assert a.name == "a" and a.source == f"{path}: document 1: slos[0]"
    assert b.name == "b" and b.source == f"{path}: document 2 (SLO b)"
    assert b.alert_tiers == DEFAULT_ALERT_TIERS  # an empty alertPolicies list keeps the defaults
    assert b.sli.kind == "low_confidence_rate"
    assert b.sli.good == Selector("ml.prediction.confidence", FRAUD, threshold=0.7, op="ge")
    assert b.window == Window(duration=28 * DAY)


# -- the OpenSLO repository's examples -----------------------------------------------------------


def test_openslo_occurrences_example() -> None:
    (slo,) = load_slos([str(OPENSLO / "examples" / "budgeting-method" / "occurences-slo.yaml")])
    search = (("ml.model.name", "search"),)
    assert slo.name == "search-slo"
    assert slo.sli.kind == "latency"  # op lt on a duration histogram
    assert slo.sli.total == Selector("ml.inference.duration", search)
    # 500 ms
    assert slo.sli.good == Selector("ml.inference.duration", search, threshold=0.5, op="lt", threshold_unit="s")
    assert slo.objective == 0.99 and slo.budgeting == "occurrences"
    assert slo.window == Window(duration=14 * DAY)  # 2w rolling
    assert slo.alert_tiers == DEFAULT_ALERT_TIERS  # 'alertPolicies:' is empty
    assert slo.labels == {"service": "web-shop"}
    assert slo.description.startswith("Regardless of the number of paraller searches")


def test_openslo_ratio_timeslices_example() -> None:
    (slo,) = load_slos([str(OPENSLO / "examples" / "budgeting-method" / "ratio-timeslices.yaml")])
    route = (("http.route", "/"),)
    assert slo.name == "main-page"
    assert slo.sli.kind == "ratio"
    assert slo.sli.good == Selector("http.server.request.duration", route, absent=("error.type",))
    assert slo.sli.total == Selector("http.server.request.duration", route)
    assert slo.budgeting == "ratio_timeslices" and slo.timeslice_window == 60.0 and slo.timeslice_target is None
    assert slo.objective == 0.99 and slo.window == Window(duration=14 * DAY)


def test_openslo_timeslices_example_with_two_objectives(tmp_path: pathlib.Path) -> None:
    example = OPENSLO / "examples" / "budgeting-method" / "timeslices-slo.yaml"
    # 'duration: 1m' is one minute in OpenSLO's duration-shorthand: with calendar: the upstream typo for '1M'
    with pytest.raises(SpecError, match=re.escape("did you mean '1M' (a month)?")) as info:
        load_specs([str(example)])
    assert info.value.field_path.endswith("spec.timeWindow[0].duration") and info.value.line is not None
    text = example.read_text()
    assert text.count("- duration: 1m ") == 1
    fixed = write(tmp_path, "timeslices-slo.yaml", text.replace("- duration: 1m ", "- duration: 1M "))
    specs = load_specs([fixed])
    internal, sla = specs.slos
    assert (internal.name, sla.name) == ("service-availability/internal-objective", "service-availability/sla")
    window = Window(
        30 * DAY, rolling=False, unit="month", count=1, calendar_start=NEW_YORK_2022, timezone="America/New_York"
    )
    web = (("ml.model.name", "web"),)
    for slo, objective in ((internal, 0.995), (sla, 0.99)):
        assert slo.objective == objective
        assert slo.budgeting == "timeslices" and slo.timeslice_target == 0.99 and slo.timeslice_window == 60.0
        assert slo.window == window
        assert slo.sli.good == Selector("ml.inference.duration", web, absent=("error.type",))
        assert slo.sli.total == Selector("ml.inference.duration", web)
        assert slo.labels == {"service": "web-availability"}
    assert sla.source.endswith("timeslices-slo.yaml: document 1 (SLO service-availability): spec.objectives[1]")
    notes = [str(note) for note in specs.notes]
    assert not any("minute" in note or "as long as the whole window" in note for note in notes)


def test_openslo_low_traffic_example() -> None:
    (slo,) = load_slos([str(OPENSLO / "examples" / "treat-low-traffic-as-equally-important" / "timeslices-slo.yaml")])
    method = (("rpc.method", "help.Dispatch/Call"),)
    assert slo.name == "service-availability"
    assert slo.sli.good == Selector("rpc.server.call.duration", method, absent=("error.type",))
    assert slo.objective == 0.9995 and slo.budgeting == "timeslices"
    assert slo.timeslice_target == 0.95 and slo.timeslice_window == 60.0
    assert slo.window == Window(
        7 * DAY, rolling=False, unit="week", count=1, calendar_start=NEW_YORK_2022, timezone="America/New_York"
    )
    # error budget of the README: (1 - 0.9995) * 10080 minutes = 5.04 slices
    assert (1 - slo.objective) * slo.window.duration / slo.timeslice_window == pytest.approx(5.04)


def test_openslo_same_slo_name_in_two_files_is_an_error() -> None:
    files = [
        str(OPENSLO / "examples" / "budgeting-method" / "timeslices-slo.yaml"),
        str(OPENSLO / "examples" / "treat-low-traffic-as-equally-important" / "timeslices-slo.yaml"),
    ]
    with pytest.raises(SpecError) as info:
        load_slos(files)
    assert info.value.file == files[1]
    assert "another SLO is named 'service-availability'" in info.value.message


def test_go_sdk_v1_slo_example() -> None:
    (slo,) = load_slos([str(GO_SDK / "v1" / "examples" / "slos.yaml")])
    assert slo.name == "web-availability"
    assert slo.labels == {"env": "prod", "team": "team-a,team-b", "service": "web"}
    assert slo.sli.good == Selector("http.server.request.duration", absent=("error.type",))
    assert slo.budgeting == "timeslices" and slo.timeslice_target == 0.95 and slo.timeslice_window == 60.0
    assert slo.objective == 0.995
    assert slo.window.unit == "week" and slo.window.calendar_start == NEW_YORK_2022
    assert slo.source.endswith("slos.yaml: document 1, item 1 (SLO web-availability)")


def test_go_sdk_v1_slis_example_rejects_only_the_raw_ratio() -> None:
    with pytest.raises(SpecError) as info:
        load_slos([str(GO_SDK / "v1" / "examples" / "slis.yaml")])
    error = info.value
    assert error.others == []
    assert error.field_path == "document 1, item 3 (SLI wifi-client-satisfaction): spec.ratioMetric.raw"
    assert "precomputed (raw) ratios are not supported" in error.message and error.line is not None


def test_go_sdk_v1_slis_referenced_by_slos(tmp_path: pathlib.Path) -> None:
    items = yaml.safe_load((GO_SDK / "v1" / "examples" / "slis.yaml").read_text())
    slis = write(
        tmp_path, "slis.yaml", yaml.safe_dump([i for i in items if "raw" not in i["spec"].get("ratioMetric", {})])
    )
    slos = write(
        tmp_path,
        "slos.yaml",
        """
- apiVersion: openslo/v1
  kind: SLO
  metadata: {name: search}
  spec: {indicatorRef: search-availability, budgetingMethod: Occurrences, objectives: [{target: 0.99}]}
- apiVersion: openslo/v1
  kind: SLO
  metadata: {name: end-user}
  spec: {indicatorRef: end-user-response, budgetingMethod: Occurrences, objectives: [{targetPercent: 99.5}]}
- apiVersion: openslo/v1
  kind: SLO
  metadata: {name: annotator}
  spec:
    indicatorRef: annotator-throughput
    budgetingMethod: Occurrences
    objectives: [{op: lte, value: 2, target: 0.9}]
""",
    )
    specs = load_specs([slis, slos])
    slo = by_name(specs.slos)
    search = (("ml.model.name", "search"),)
    assert slo["search"].sli.good == Selector("ml.inference.duration", search, absent=("error.type",))
    app = (("ml.model.name", "my-app"),)
    assert slo["end-user"].sli.bad == Selector(
        "ml.inference.duration", app, threshold=1.0, op="gt", threshold_unit="s"
    )
    assert slo["end-user"].sli.total == Selector("ml.inference.duration", app) and slo["end-user"].objective == 0.995
    annotator = slo["annotator"].sli
    assert annotator.kind == "latency" and annotator.threshold == 2.0
    assert annotator.good == Selector(
        "ml.inference.time_to_first_item", (("ml.model.name", "annotator"),), threshold=2.0, threshold_unit="s"
    )
    assert any("counter: false ignored" in str(note) for note in specs.notes)


def test_go_sdk_alert_examples_reject_the_lte_condition() -> None:
    files = [str(GO_SDK / "v1" / "examples" / f) for f in ("alert_conditions.yaml", "alert_policies.yaml")]
    with pytest.raises(SpecError) as info:
        load_slos(files)
    problems = [info.value, *info.value.others]
    assert [(p.file, p.field_path) for p in problems] == [
        (files[0], "document 1, item 1 (AlertCondition cpu-usage-breach): spec.condition.op"),
        (files[1], "document 1, item 1 (AlertPolicy low-priority): spec.conditions[0].conditionRef"),
        (files[1], "document 1, item 3 (AlertPolicy medium-priority): spec.conditions[0].conditionRef"),
    ]
    assert "use op: gt" in problems[0].message
    assert "refers to AlertCondition 'cpu-usage-breach', which is invalid" in problems[1].message


def test_go_sdk_alert_examples_map_to_tiers(tmp_path: pathlib.Path) -> None:
    """The examples without the lte condition (and the two policies using it), used by an SLO."""
    conditions = yaml.safe_load((GO_SDK / "v1" / "examples" / "alert_conditions.yaml").read_text())
    policies = yaml.safe_load((GO_SDK / "v1" / "examples" / "alert_policies.yaml").read_text())
    kept = [c for c in conditions if c["spec"]["condition"]["op"] != "lte"]
    kept += [p for p in policies if "conditionRef" not in p["spec"]["conditions"][0]]
    slo = """
apiVersion: openslo/v1
kind: SLO
metadata: {name: fraud}
spec:
  budgetingMethod: Occurrences
  indicator:
    spec:
      ratioMetric:
        good:
          metricSource: {type: modelotel, spec: {metric: ml.feedback, model: fraud, match: {ml.feedback.correct: true}}}
        total: {metricSource: {type: modelotel, spec: {metric: ml.feedback, model: fraud}}}
  objectives: [{target: 0.99}]
  alertPolicies:
    - alertPolicyRef: high-priority
    - kind: AlertPolicy
      metadata: {name: daily}
      spec:
        conditions: [{conditionRef: latency-too-high}]
        notificationTargets: []
"""
    specs = load_specs([write(tmp_path, "alerts.yaml", yaml.safe_dump(kept)), write(tmp_path, "slo.yaml", slo)])
    (fraud,) = specs.slos
    assert fraud.sli.good == Selector("ml.feedback", (*FRAUD, ("ml.feedback.correct", "true")))
    assert fraud.alert_tiers == (
        AlertTier("high-priority", "page", 2.0, 3600.0, 300.0),  # severity page, lookback 1h, alertAfter 5m
        AlertTier("daily", "ticket", 200.0, DAY, 1800.0),  # severity warning, lookback 1d, alertAfter 30m
    )
    notes = [str(note) for note in specs.notes]
    assert any("alert tier daily can never fire: burn rate 200" in note for note in notes)
    assert any("(AlertPolicy high-priority): spec.notificationTargets: ignored" in note for note in notes)


def test_go_sdk_data_sources_and_services_are_ignored_with_notes() -> None:
    files = [
        str(GO_SDK / "v1" / "examples" / "data_sources.yaml"),
        str(GO_SDK / "v1alpha" / "examples" / "services.yaml"),
        str(GO_SDK / "v1" / "examples" / "slos.yaml"),
    ]
    specs = load_specs(files)
    assert [slo.name for slo in specs.slos] == ["web-availability"]
    ignored = [str(note) for note in specs.notes if ": ignored: " in str(note)]
    assert [re.search(r"\((\w+ [\w-]+)\)", note).group(1) for note in ignored] == [
        "DataSource prometheus",
        "DataSource datadog",
        "Service example-service",
    ]


def test_go_sdk_v1alpha_examples() -> None:
    specs = load_specs([str(GO_SDK / "v1alpha" / "examples" / "slos.yaml")])
    threshold, ratio = specs.slos
    web = (("ml.model.name", "web"),)
    week = Window(
        7 * DAY, rolling=False, unit="week", count=1, calendar_start=NEW_YORK_2022, timezone="America/New_York"
    )

    assert threshold.name == "web-latency-threshold"
    assert threshold.sli.kind == "ratio"  # op gt on latency is not the latency kind's comparison
    # 200.0 ms
    assert threshold.sli.good == Selector("ml.inference.duration", web, threshold=0.2, op="gt", threshold_unit="s")
    assert threshold.objective == 0.98 and threshold.budgeting == "occurrences" and threshold.window == week

    assert ratio.name == "web-availability-ratio"
    assert ratio.sli.good == Selector("ml.inference.duration", web, absent=("error.type",))
    assert ratio.budgeting == "timeslices" and ratio.timeslice_target == 0.95
    assert ratio.timeslice_window == 60.0  # v1alpha has no timeSliceWindow: one minute, with a note
    assert ratio.objective == 0.995 and ratio.window == week
    notes = [str(note) for note in specs.notes]
    assert any("spec.objectives[0].timeSliceWindow: none given: 60s slices" in note for note in notes)
    assert any("spec.objectives[0].value: ignored" in note for note in notes)


# -- errors --------------------------------------------------------------------------------------

NATIVE_ERRORS = [
    (
        "bad duration",
        "slos:\n  - name: a\n    model: fraud\n    sli: latency\n    threshold: fast\n    objective: 0.99\n",
        "slos[0].threshold",
        "expected a duration like '250ms', '7d' or 'PT5M', got 'fast'",
        5,
    ),
    (
        "number without unit",
        "slos:\n  - name: a\n    model: fraud\n    sli: latency\n    threshold: 250\n    objective: 0.99\n",
        "slos[0].threshold",
        "a number alone has no unit",
        5,
    ),
    (
        "objective 1.5",
        "slos:\n  - name: a\n    model: fraud\n    sli: error_ratio\n    objective: 1.5\n",
        "slos[0].objective",
        "expected a fraction in (0, 1) like 0.99 or a percentage like '99.9%', got 1.5",
        5,
    ),
    (
        "objective 99",
        "slos:\n  - name: a\n    model: fraud\n    sli: error_ratio\n    objective: 99\n",
        "slos[0].objective",
        "for a percentage write '99%'",
        5,
    ),
    (
        "objective 100%",
        "slos:\n  - name: a\n    model: fraud\n    sli: error_ratio\n    objective: 100%\n",
        "slos[0].objective",
        "100% leaves no error budget",
        5,
    ),
    (
        "missing model",
        "slos:\n  - name: a\n    sli: error_ratio\n    objective: 0.99\n",
        "slos[0].model",
        "missing: ml.inference.duration is recorded per model",
        2,
    ),
    (
        "unknown sli",
        "slos:\n  - name: a\n    model: m\n    sli: latncy\n    objective: 0.99\n",
        "slos[0].sli",
        "got 'latncy' (did you mean 'latency'?)",
        4,
    ),
    (
        "unknown field",
        "slos:\n  - name: a\n    model: m\n    sli: latency\n    treshold: 250ms\n    objective: 0.99\n",
        "slos[0].treshold",
        "unknown field (did you mean 'threshold'?)",
        5,
    ),
    (
        "field of another kind",
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    threshold: 0.5\n    objective: 0.99\n",
        "slos[0].threshold",
        "not used by sli accuracy",
        5,
    ),
    (
        "model on an HTTP metric",
        "slos:\n  - name: a\n    model: m\n    metric: http.server.request.duration\n    sli: latency\n"
        "    threshold: 1s\n    objective: 0.9\n",
        "slos[0].model",
        "http.server.request.duration has no ml.model.* attributes",
        3,
    ),
    (
        "latency on a non-duration metric",
        "slos:\n  - name: a\n    model: m\n    metric: ml.prediction.confidence\n    sli: latency\n"
        "    threshold: 1s\n    objective: 0.9\n",
        "slos[0].metric",
        "ml.prediction.confidence is not a duration",
        4,
    ),
    (
        "float filter",
        "slos:\n  - name: a\n    model: m\n    version: 1.10\n    sli: accuracy\n    objective: 0.9\n",
        "slos[0].version",
        "quote it as it appears in the data",
        4,
    ),
    (
        "unknown time zone",
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.9\n"
        "    window: {calendar: month, timezone: Mars/Olympus}\n",
        "slos[0].window.timezone",
        "unknown time zone 'Mars/Olympus'",
        6,
    ),
    (
        "month as a rolling window",
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.9\n    window: 1M\n",
        "slos[0].window",
        "no fixed length",
        6,
    ),
    (
        "percentile with occurrences",
        "slos:\n  - name: a\n    model: m\n    sli: latency\n    threshold: 1s\n    percentile: p95\n"
        "    budgeting: occurrences\n    objective: 0.9\n",
        "slos[0].budgeting",
        "use budgeting: timeslices",
        7,
    ),
    (
        "timeslices without target",
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.9\n    budgeting: timeslices\n",
        "slos[0].timeslice.target",
        "missing",
        2,
    ),
    (
        "alert tier typo",
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.9\n    alerts: {page-fsat: off}\n",
        "slos[0].alerts.page-fsat",
        "unknown alert tier (did you mean 'page-fast'?)",
        6,
    ),
    (
        "short window longer than long",
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.9\n"
        "    alerts: {page-fast: {short_window: 2h}}\n",
        "slos[0].alerts.page-fast",
        "short_window (7200s) must not be longer than long_window (3600s)",
        6,
    ),
    (
        "ratio with good and bad",
        "slos:\n  - name: a\n    sli: ratio\n    objective: 0.9\n    ratio:\n      good: {metric: x}\n"
        "      bad: {metric: x}\n      total: {metric: x}\n",
        "slos[0].ratio",
        "needs exactly one of good or bad",
        5,
    ),
    (
        "not an SLO file",
        "slo:\n  - name: a\n",
        "",
        "not an SLO spec: expected a top-level 'slos:' list (native format), 'apiVersion: openslo/v1' (OpenSLO) or "
        "'version: prometheus/v1' (Sloth), got a mapping with keys slo (did you mean 'slos'?)",
        1,
    ),
    (
        "duplicate key",
        "slos:\n  - name: a\n    name: b\n",
        "",
        "invalid YAML: duplicate key 'name' (first on line 2)",
        3,
    ),
    (
        "YAML syntax error",
        "slos:\n  - name: a\n    model: [m\n",
        "",
        "expected ',' or ']'",
        4,
    ),  # libyaml says "did not find expected"
    ("YAML indentation", "slos:\n  - name: a\n   sli: latency\n", "", "invalid YAML:", 3),
    ("empty file", "", "", "empty file: expected a top-level 'slos:' list or OpenSLO documents", None),
    ("only comments", "# nothing yet\n---\n", "", "empty file", None),
]


@pytest.mark.parametrize("case, text, field_path, message, line", NATIVE_ERRORS, ids=[c[0] for c in NATIVE_ERRORS])
def test_native_errors_name_file_field_and_line(
    tmp_path: pathlib.Path, case: str, text: str, field_path: str, message: str, line: int | None
) -> None:
    path = write(tmp_path, "slo.yaml", text)
    with pytest.raises(SpecError) as info:
        load_slos([path])
    error = info.value
    assert (error.file, error.field_path, error.line) == (path, field_path, line)
    assert message in error.message
    prefix = f"{path}: {field_path}: " if field_path else f"{path}: "
    assert str(error).startswith(prefix + error.message)
    assert error.others == []


def test_error_str_matches_the_documented_format(tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path,
        "slo.yaml",
        "slos:\n  - name: a\n    model: m\n    sli: latency\n    threshold: fast\n    objective: 0.99\n",
    )
    with pytest.raises(SpecError) as info:
        load_slos([path])
    assert str(info.value) == (
        f"{path}: slos[0].threshold: expected a duration like '250ms', '7d' or 'PT5M', got 'fast' (line 5)"
    )


def test_every_slo_reports_its_first_problem(tmp_path: pathlib.Path) -> None:
    first = write(
        tmp_path,
        "a.yaml",
        "slos:\n  - name: a\n    sli: accuracy\n    objective: 2\n"  # two problems: only the first is reported
        "  - name: b\n    model: x\n    sli: accuracy\n    objective: 0.9\n"
        "  - name: c\n    model: x\n    sli: accuracy\n    objective: 0.9\n    min_events: -1\n",
    )
    second = write(tmp_path, "b.yaml", "slos: [\n")
    with pytest.raises(SpecError) as info:
        load_slos([first, second])
    lines = str(info.value).splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{first}: slos[0].model: missing")
    assert lines[1].startswith(f"{first}: slos[2].min_events: expected a whole number >= 0, got -1")
    assert lines[2].startswith(f"{second}: invalid YAML")


def test_duplicate_slo_names_name_both_places(tmp_path: pathlib.Path) -> None:
    entry = "  - {name: a, model: x, sli: accuracy, objective: 0.9}\n"
    path = write(tmp_path, "slo.yaml", "slos:\n" + entry + entry)
    with pytest.raises(SpecError) as info:
        load_slos([path])
    assert str(info.value) == f"{path}: slos[1]: SLO name 'a' is already used by {path}: slos[0]"


def test_file_problems(tmp_path: pathlib.Path) -> None:
    missing = str(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match=re.escape(f"{missing}: no such file")):
        load_slos([missing])
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"slos:\n  - name: caf\xe9\n")
    with pytest.raises(SpecError, match=re.escape(f"{latin1}: not UTF-8 text (byte 19 is 0xe9)")):
        load_slos([str(latin1)])
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(SpecError, match=re.escape(f"{empty_dir}: directory has no .yaml or .yml files")):
        load_slos([str(empty_dir)])
    conditions = str(GO_SDK / "v1alpha" / "examples" / "services.yaml")
    with pytest.raises(SpecError, match=re.escape(f"{conditions}: no SLOs defined")):
        load_slos([conditions])


OPENSLO_SLO = """apiVersion: openslo/v1
kind: SLO
metadata: {{name: x}}
spec:
  budgetingMethod: Occurrences
  indicator:
    spec:
      ratioMetric:
        good: {{metricSource: {good}}}
        total: {{metricSource: {{type: modelotel, spec: {{metric: ml.feedback, model: m}}}}}}
  objectives: [{objective}]
"""
MODELOTEL_GOOD = "{type: modelotel, spec: {metric: ml.feedback, model: m}}"
GOOD = "document 1 (SLO x): spec.indicator.spec.ratioMetric.good.metricSource"

OPENSLO_ERRORS = [
    (
        "PromQL that is more than a selector",
        OPENSLO_SLO.format(good="{type: Prometheus, spec: {query: 'sum(up) / 2'}}", objective="{target: 0.9}"),
        f"{GOOD}.spec.query",
        "PromQL is not run by modelotel, and this query is more than a selector: the binary operator '/'",
    ),
    (
        "query",
        OPENSLO_SLO.format(good="{type: modelotel, spec: {query: 'sum(up)'}}", objective="{target: 0.9}"),
        f"{GOOD}.spec.query",
        "queries are not supported",
    ),
    (
        "missing metric",
        OPENSLO_SLO.format(good="{type: modelotel, spec: {model: m}}", objective="{target: 0.9}"),
        f"{GOOD}.spec.metric",
        "missing",
    ),
    (
        "target 1.5",
        OPENSLO_SLO.format(good=MODELOTEL_GOOD, objective="{target: 1.5}"),
        "document 1 (SLO x): spec.objectives[0].target",
        "expected a fraction in (0, 1)",
    ),
    (
        "target and targetPercent",
        OPENSLO_SLO.format(good=MODELOTEL_GOOD, objective="{target: 0.9, targetPercent: 90}"),
        "document 1 (SLO x): spec.objectives[0]",
        "needs exactly one of target or targetPercent",
    ),
    (
        "typo in an objective",
        OPENSLO_SLO.format(good=MODELOTEL_GOOD, objective="{taget: 0.9}"),
        "document 1 (SLO x): spec.objectives[0].taget",
        "unknown field (did you mean 'target'?)",
    ),
    (
        "unsupported apiVersion",
        "apiVersion: openslo/v2alpha\nkind: SLO\nmetadata: {name: x}\n",
        "document 1: apiVersion",
        "unsupported apiVersion 'openslo/v2alpha': OpenSLO v2alpha is a draft modelotel does not read",
    ),
    (
        "kind of another version",
        "apiVersion: openslo/v1alpha\nkind: SLI\nmetadata: {name: x}\n",
        "document 1: kind",
        "expected one of SLO, Service, got 'SLI'",
    ),
    (
        "budgeting method case",
        "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x}\n"
        "spec: {budgetingMethod: occurrences, objectives: []}\n",
        "document 1 (SLO x): spec.budgetingMethod",
        "got 'occurrences' (did you mean 'Occurrences'?)",
    ),
    (
        "unknown SLI reference",
        "apiVersion: openslo/v1\nkind: SLI\nmetadata: {name: fraud-errors}\nspec:\n  ratioMetric:\n"
        f"    good: {{metricSource: {MODELOTEL_GOOD}}}\n    total: {{metricSource: {MODELOTEL_GOOD}}}\n---\n"
        "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x}\n"
        "spec: {budgetingMethod: Occurrences, indicatorRef: fraud-error, objectives: [{target: 0.9}]}\n",
        "document 2 (SLO x): spec.indicatorRef",
        "no SLI named 'fraud-error' in the loaded files (did you mean 'fraud-errors'?)",
    ),
    (
        "Timeslices without timeSliceWindow",
        OPENSLO_SLO.replace("Occurrences", "Timeslices").format(
            good=MODELOTEL_GOOD, objective="{target: 0.9, timeSliceTarget: 0.9}"
        ),
        "document 1 (SLO x): spec.objectives[0].timeSliceWindow",
        "missing: Timeslices needs the length of a time slice",
    ),
    (
        "rolling calendar window",
        OPENSLO_SLO.format(good=MODELOTEL_GOOD, objective="{target: 0.9}")
        + "  timeWindow:\n    - {duration: 1M, isRolling: true, calendar: {startTime: 2026-01-01 00:00:00, "
        "timeZone: UTC}}\n",
        "document 1 (SLO x): spec.timeWindow[0].isRolling",
        "a calendar-aligned window is not rolling",
    ),
    (
        "threshold objective without op",
        "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x}\nspec:\n  budgetingMethod: Occurrences\n"
        "  indicator: {spec: {thresholdMetric: {metricSource: {type: modelotel, spec: {metric: ml.ood.score, "
        "model: m}}}}}\n  objectives: [{value: 3, target: 0.9}]\n",
        "document 1 (SLO x): spec.objectives[0].op",
        "missing: a thresholdMetric counts the values",
    ),
    (
        "lte burn-rate alert",
        OPENSLO_SLO.format(good=MODELOTEL_GOOD, objective="{target: 0.9}")
        + "  alertPolicies:\n    - kind: AlertPolicy\n      metadata: {name: p}\n      spec:\n        conditions:\n"
        "          - kind: AlertCondition\n            metadata: {name: c}\n            spec:\n"
        "              severity: page\n              condition: {op: lte, threshold: 2, lookbackWindow: 1h}\n",
        "document 1 (SLO x): spec.alertPolicies[0].spec.conditions[0].spec.condition.op",
        "op: lte would alert while the budget burns slowly",
    ),
]


@pytest.mark.parametrize("case, text, field_path, message", OPENSLO_ERRORS, ids=[c[0] for c in OPENSLO_ERRORS])
def test_openslo_errors_name_file_document_and_field(
    tmp_path: pathlib.Path, case: str, text: str, field_path: str, message: str
) -> None:
    path = write(tmp_path, "openslo.yaml", text)
    with pytest.raises(SpecError) as info:
        load_slos([path])
    error = info.value
    assert (error.file, error.field_path) == (path, field_path)
    assert message in error.message
    assert isinstance(error.line, int) and error.line >= 1
    assert str(error).startswith(f"{path}: {field_path}: {error.message}")


def test_error_lines_point_at_the_field(tmp_path: pathlib.Path) -> None:
    text = OPENSLO_SLO.format(good="{type: Prometheus, spec: {query: 'sum(up) / 2'}}", objective="{target: 0.9}")
    path = write(tmp_path, "openslo.yaml", text)
    with pytest.raises(SpecError) as info:
        load_slos([path])
    assert "type: Prometheus" in text.splitlines()[info.value.line - 1]


# -- docs ----------------------------------------------------------------------------------------


def test_every_code_block_of_the_docs_runs(tmp_path: pathlib.Path) -> None:
    blocks = re.findall(r"```(\w+)\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert {lang for lang, _ in blocks} == {"python", "yaml", "text"}
    loaded = 0
    for index, (lang, body) in enumerate(blocks):
        if lang == "yaml":
            assert load_specs([write(tmp_path, f"block{index}.yaml", body)]).slos
            loaded += 1
        elif lang == "python":
            exec(compile(body, f"{DOCS}:block{index}", "exec"), {})
    assert loaded >= 8


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(["latency", "error_ratio", "accuracy"]), st.integers(1, 9999))
def test_objectives_written_as_percentages_equal_fractions(tmp_path_factory, kind: str, basis_points: int) -> None:
    """'99.5%' and 0.995 load to the same SLO (both are read exactly)."""
    threshold = "    threshold: 1s\n" if kind == "latency" else ""
    text = "slos:\n  - name: a\n    model: m\n    sli: {kind}\n{threshold}    objective: {objective}\n"
    percent = f"{basis_points // 100}.{basis_points % 100:02d}%"
    decimal = f"0.{basis_points:04d}"
    directory = tmp_path_factory.mktemp("pct")
    (a,) = load_slos([write(directory, "a.yaml", text.format(kind=kind, threshold=threshold, objective=percent))])
    (b,) = load_slos([write(directory, "b.yaml", text.format(kind=kind, threshold=threshold, objective=decimal))])
    assert a.objective == b.objective == float(Fraction(basis_points, 10**4))


def test_the_documented_openslo_alerting_example_loads_as_described(tmp_path: pathlib.Path) -> None:
    (block,) = [b for lang, b in re.findall(r"```(\w+)\n(.*?)```", DOCS.read_text(), re.S) if "page-on-fast-burn" in b]
    fast, slow = load_slos([write(tmp_path, "doc.yaml", block)])
    assert (fast.name, slow.name) == ("fraud-latency/under-250-ms", "fraud-latency/under-1-s")
    tiers = (
        AlertTier("page-on-fast-burn", "page", 14.4, 3600.0, 300.0),  # lookbackWindow 1h, alertAfter 5m
        AlertTier("ticket-on-slow-burn", "ticket", 1.0, 3 * DAY, 3 * DAY / 12),  # severity warning, no alertAfter
    )
    paris_new_year = dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))).timestamp()
    month = Window(
        30 * DAY, rolling=False, unit="month", count=1, calendar_start=paris_new_year, timezone="Europe/Paris"
    )
    for slo, threshold, op, objective in ((fast, 0.25, "le", 0.99), (slow, 1.0, "lt", 0.999)):
        assert slo.alert_tiers == tiers and slo.window == month
        assert slo.sli.kind == "latency" and slo.sli.good.threshold == threshold and slo.sli.good.op == op
        assert slo.objective == objective  # targetPercent 99.9 -> 0.999
        assert slo.labels == {"team": "risk,ml-platform", "service": "fraud"}
        assert slo.budgeting == "timeslices" and slo.timeslice_window == 300.0


def test_yaml_anchors_and_merge_keys(tmp_path: pathlib.Path) -> None:
    text = (
        "x-fraud: &fraud {model: fraud, window: 7d, min_events: 50}\n"
        "slos:\n"
        "  - {<<: *fraud, name: a, sli: error_ratio, objective: 0.999}\n"
        "  - {<<: *fraud, name: b, sli: accuracy, objective: 0.9, min_events: 10}\n"
    )
    a, b = load_slos([write(tmp_path, "anchors.yaml", text)])
    assert a.sli.total == Selector("ml.inference.duration", FRAUD) and a.window == Window(7 * DAY)
    assert (a.min_events, b.min_events) == (50, 10)  # an entry's own key wins over the merged one
    with pytest.raises(SpecError, match=r"defaults: unknown field; allowed here: slos \(line 1\)"):
        load_slos([write(tmp_path, "bad.yaml", text.replace("x-fraud", "defaults"))])
