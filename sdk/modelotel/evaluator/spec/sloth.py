"""Sloth SLO specs -> ``model.SLO``: ``version: prometheus/v1`` files and ``sloth.slok.dev/v1``
``PrometheusServiceLevel`` objects (the same fields in camelCase), so that a Sloth user's specs load as written.

Sloth (https://sloth.dev) turns each SLO into Prometheus rules from two PromQL queries, ``error_query`` and
``total_query``, with ``{{.window}}`` standing for each alert window. modelotel runs no PromQL: it counts the events
of a metric itself, from OTLP files or from Prometheus by name. So a Sloth SLO translates when each query only
selects the series whose increments are the events (promql.py: ``sum(rate(selector[{{.window}}]))``), which is how
Sloth's docs and most of its examples write them; ``error_query`` may also be the total minus a selector of good
events (``count - bucket{le="0.4"}``, Sloth's latency example). Then:

- ``sli: ratio`` with bad = ``error_query``'s selector (or good = the subtracted one), total = ``total_query``'s;
- ``objective`` is in percent, read exactly (``99.9`` is 999/1000 before it becomes a float);
- the window is 30 days, rolling: Sloth's default SLO period (a Sloth spec does not carry one);
- the tiers are the default ones: Sloth's page alert is page-fast (14.4x over 1h/5m) + page-slow (6x, 6h/30m), its
  ticket alert ticket-fast (3x, 1d/2h) + ticket-slow (1x, 3d/6h): the SRE workbook's windows and factors, which
  are Sloth's for a 30-day period; ``disable: true`` drops the alert's two tiers;
- the SLO is named ``<service>-<slo name>``, the ``sloth_id`` Sloth gives its rules;
- labels: the spec's, then the SLO's (which win), and ``service``.

What does not translate is one error naming the field and saying what modelotel needs instead: a query that is more
than a selector, ``sli.raw`` (a precomputed ratio), ``sli.plugin`` (PromQL written by a plugin when Sloth runs).
Rule-generation plugins and alert names, labels and annotations are ignored with a note; ``kind: AlertWindows``
documents (alert windows per SLO period) are not SLOs, and are ignored with a note.
"""

from __future__ import annotations

from typing import Any

from ..slo import DEFAULT_ALERT_TIERS, SLI, SLO, Window
from .errors import SpecError, SpecNote, Where
from .fields import RUNBOOK_ANNOTATIONS, Fields, attribute_value, check_slo, describe, fraction, runbook
from .promql import (
    PromQLError,
    Translation,
    selector_yaml,
    selectors_in,
    translate,
    translate_difference,
    translation_note,
)

__all__ = ["API_VERSION", "VERSION", "is_sloth", "translate_document"]

VERSION = "prometheus/v1"
API_VERSION = "sloth.slok.dev/v1"
SLOTH_WINDOW = 30 * 86400.0  # Sloth's --default-slo-period
_PAGE_TIERS = ("page-fast", "page-slow")
_TICKET_TIERS = ("ticket-fast", "ticket-slow")
_SNAKE = {
    "error": "error_query",
    "total": "total_query",
    "ratio": "error_ratio_query",
    "page": "page_alert",
    "ticket": "ticket_alert",
    "plugins": "slo_plugins",
}
_CAMEL = {
    "error": "errorQuery",
    "total": "totalQuery",
    "ratio": "errorRatioQuery",
    "page": "pageAlert",
    "ticket": "ticketAlert",
    "plugins": "sloPlugins",
}
_DOCUMENT_NOTE = (
    "a Sloth spec: each SLO is judged over a rolling 30-day window (Sloth's default period; a Sloth spec has "
    "none), with Sloth's page alert as the tiers page-fast + page-slow and its ticket alert as ticket-fast + "
    "ticket-slow (the same windows and burn rates at 30 days). The SLI over the window weighs every event, where "
    "Sloth's optimized period rule averages 5-minute ratios; below min_events (100) a verdict is inconclusive and "
    "no tier fires, where Sloth alerts on any traffic"
)


def is_sloth(doc: Any) -> bool:
    """Whether a YAML document is a Sloth spec: ``apiVersion: sloth.slok.dev/...``, or ``version:
    prometheus/...`` (a ``service:`` with ``slos:`` whose SLIs are Sloth's counts too, version or not)."""
    if not isinstance(doc, dict):
        return False
    api = doc.get("apiVersion")
    if isinstance(api, str):
        return api.startswith("sloth.slok.dev/")
    version = doc.get("version")
    if isinstance(version, str) and version.startswith("prometheus/"):
        return True
    slos = doc.get("slos")
    if "service" in doc and isinstance(slos, list):
        return any(isinstance(s, dict) and isinstance(s.get("sli"), dict) for s in slos)
    return False


def translate_document(
    doc: dict, where: Where, notes: list[SpecNote], errors: list[SpecError], found: list[str]
) -> list[SLO]:
    """The SLOs of one Sloth document; problems of single SLOs go to ``errors``, a document-wide one is raised.

    ``found`` gets a description of what the document holds when it is not SLOs (for "no SLOs defined")."""
    if "apiVersion" in doc:
        top = Fields(doc, where, ("apiVersion", "kind", "metadata", "spec", "status"), ("apiVersion", "kind"))
        api = top.text("apiVersion")
        if api != API_VERSION:
            raise top.at("apiVersion").error(f"unsupported apiVersion {api!r}: modelotel reads Sloth's {API_VERSION}")
        kind = top.get("kind")
        if kind == "AlertWindows":
            notes.append(
                where.note(
                    "kind: AlertWindows is Sloth's alert-window catalog (windows and budget shares per SLO period), "
                    "not SLOs: ignored; modelotel's tiers are set per SLO under alerts: (docs/slo-spec.md#alerts)"
                )
            )
            found.append("Sloth AlertWindows (ignored)")
            return []
        top.choice("kind", ("PrometheusServiceLevel", "AlertWindows"))
        metadata = top.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        label = where.prefix or "document 1"
        where = Where(where.file, f"{label} (PrometheusServiceLevel {name})" if name else label, "", where.line)
        spec = Fields(doc.get("spec"), where.key("spec"), ("service", "labels", "sloPlugins", "slos"))
        names = _CAMEL
    else:
        spec = Fields(doc, where, ("version", "service", "labels", "slo_plugins", "slos"))
        version = spec.text("version", None)
        if version is None:
            raise spec.at("version").error(f"missing: a Sloth spec starts with version: {VERSION}")
        if version != VERSION:
            raise spec.at("version").error(
                f"unsupported Sloth spec version {version!r}: modelotel reads {VERSION} (and {API_VERSION} "
                "PrometheusServiceLevel objects)"
            )
        names = _SNAKE
    service = spec.text("service")
    labels = {key: attribute_value(value, at) for key, value, at in spec.entries("labels")}
    if names["plugins"] in spec:
        notes.append(spec.at(names["plugins"]).note(_plugins_note()))
    entries = spec.items("slos")
    if not entries:
        raise spec.at("slos").error("empty: expected a list of SLOs")
    notes.append(where.note(_DOCUMENT_NOTE))
    slos = []
    for entry, at in entries:
        try:
            slos.append(check_slo(_slo(entry, at, service, labels, names, notes), at, notes))
        except SpecError as exc:
            errors.append(exc)
    return slos


def _plugins_note() -> str:
    return (
        "ignored: Sloth plugins shape the Prometheus rules Sloth writes; modelotel counts the events of the SLI's "
        "metrics itself"
    )


def _objective(f: Fields, notes: list[SpecNote]) -> float:
    value = f.require("objective")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 100:
        why = " (100 leaves no error budget)" if value == 100 else ""
        raise f.at("objective").error(
            f"expected a percentage in (0, 100) like 99.9 (Sloth's objective), got {describe(value)}{why}"
        )
    if 0 < value <= 1:
        notes.append(
            f.at("objective").note(
                f"objective {value!r} is {value!r}% in Sloth (a percentage), as read here; "
                f"did you mean {value * 100:g}?"
            )
        )
    return fraction(f"{value!r}%", f.at("objective"), what="objective")


def _query(events: Fields, key: str) -> Translation:
    query = events.text(key)
    try:
        return translate(query)
    except PromQLError as exc:
        raise events.at(key).error(_untranslatable(query, exc)) from None


def _untranslatable(query: str, exc: PromQLError) -> str:
    found = selectors_in(query)
    listed = "; ".join(selector_yaml(s) or s.metric for s in found[:3])
    return (
        f"PromQL is not run by modelotel, and this query is more than a selector: {exc}. modelotel counts the events "
        "of one metric itself (OTLP files, or Prometheus by name); a Sloth query translates when it is "
        "sum(rate(<selector>[{{.window}}])) (error_query may also be the total minus a selector of good events). "
        "Otherwise write the SLO in modelotel's format, sli: ratio with bad and total selectors"
        + (f" (this query's selectors: {listed})" if listed else "")
        + " (docs/slo-spec.md#sloth)"
    )


def _note(where: Where, role: str, translation: Translation) -> SpecNote:
    return where.note(f"{role}: {translation_note(translation)}")


def _sli(f: Fields, names: dict[str, str], notes: list[SpecNote]) -> SLI:
    sli = f.sub("sli", ("events", "raw", "plugin"))
    given = sli.present("events", "raw", "plugin")
    if len(given) != 1:
        raise sli.where.error("needs exactly one of events, raw or plugin")
    if given[0] == "raw":
        raise sli.at("raw").error(
            f"a raw SLI ({names['ratio']}) is an error ratio computed elsewhere: modelotel counts bad and total "
            f"events itself and cannot take a ratio apart. Write sli.events with {names['error']} and "
            f"{names['total']} selecting the counters the ratio is made of, e.g. "
            'sum(rate(http_requests_total{code=~"5.."}[{{.window}}])) and sum(rate(http_requests_total[{{.window}}]))'
        )
    if given[0] == "plugin":
        plugin = sli.get("plugin")
        plugin_id = plugin.get("id") if isinstance(plugin, dict) else None
        raise sli.at("plugin").error(
            f"the SLI plugin {describe(plugin_id)} writes its PromQL when sloth generate runs; modelotel does not run "
            f"Sloth plugins. Write sli.events with the {names['error']} and {names['total']} the plugin generates "
            "(each translates when it is sum(rate(<selector>[{{.window}}])))"
        )
    events = sli.sub("events", (names["error"], names["total"]), (names["error"], names["total"]))
    total = _query(events, names["total"])
    notes.append(_note(events.at(names["total"]), "total", total))
    error_query = events.text(names["error"])
    role, numerator = _error_side(error_query, total, events.at(names["error"]), names)
    if role == "good":
        notes.append(_note(events.at(names["error"]), "the total minus good events; good", numerator))
        return SLI("ratio", total=total.selector, good=numerator.selector)
    notes.append(_note(events.at(names["error"]), "bad", numerator))
    return SLI("ratio", total=total.selector, bad=numerator.selector)


def _error_side(query: str, total: Translation, where: Where, names: dict[str, str]) -> tuple[str, Translation]:
    """``("bad", selector)`` for a plain error query; ``("good", selector)`` for total minus good events."""
    try:
        return "bad", translate(query)
    except PromQLError as exc:
        refusal = exc
    try:
        minuend, good = translate_difference(query)
    except PromQLError:
        raise where.error(_untranslatable(query, refusal)) from None
    if minuend.selector != total.selector:
        raise where.error(
            f"{names['error']} subtracts from {selector_yaml(minuend.selector) or minuend.selector.metric}, which "
            f"is not {names['total']}'s selector ({selector_yaml(total.selector) or total.selector.metric}): "
            "bad = total - good only translates when the total is the same; write the SLO in modelotel's format"
        )
    return "good", good


def _alert_tiers(f: Fields, names: dict[str, str], notes: list[SpecNote]) -> tuple:
    tiers = list(DEFAULT_ALERT_TIERS)
    alerting = f.fields("alerting", ("name", "labels", "annotations", names["page"], names["ticket"]))
    if alerting is None:
        return tuple(tiers)
    ignored = alerting.present("name", "labels") + _other_annotations(alerting, "annotations")
    for key, dropped in ((names["page"], _PAGE_TIERS), (names["ticket"], _TICKET_TIERS)):
        alert = alerting.fields(key, ("disable", "labels", "annotations"))
        if alert is None:
            continue
        if alert.boolean("disable", False):
            tiers = [tier for tier in tiers if tier.name not in dropped]
        ignored += [f"{key}.{field}" for field in alert.present("labels", "annotations")]
    if ignored:
        notes.append(
            alerting.where.note(
                f"ignored: {', '.join(ignored)}; modelotel's alerts are its tiers (page-fast, page-slow: severity "
                "page; ticket-fast, ticket-slow: ticket), named and labelled by modelotel rules"
            )
        )
    return tuple(tiers)




def _other_annotations(alerting: Fields, key: str) -> list[str]:
    """``alerting.annotations`` entries other than the runbook: they are ignored (modelotel writes its own)."""
    return [f"{key}.{name}" for name, _, _ in alerting.entries(key) if name not in RUNBOOK_ANNOTATIONS]


def _runbook(f: Fields) -> str:
    """The SLO's runbook: ``alerting.annotations.runbook`` (or ``runbook_url``), as in Sloth's own examples."""
    alerting = f.get("alerting")
    annotations = alerting.get("annotations") if isinstance(alerting, dict) else None
    if not isinstance(annotations, dict):
        return ""
    where = f.at("alerting").key("annotations", None)
    for key in RUNBOOK_ANNOTATIONS:
        if annotations.get(key) is not None:
            return runbook(annotations[key], where.key(key, None))
    return ""


def _slo(
    entry: Any, where: Where, service: str, labels: dict[str, str], names: dict[str, str], notes: list[SpecNote]
) -> SLO:
    f = Fields(
        entry,
        where,
        ("name", "description", "objective", "labels", "sli", "alerting", "plugins"),
        ("name", "objective", "sli"),
    )
    name = f.text("name")
    objective = _objective(f, notes)
    sli = _sli(f, names, notes)
    tiers = _alert_tiers(f, names, notes)
    if "plugins" in f:
        notes.append(f.at("plugins").note(_plugins_note()))
    own = {key: attribute_value(value, at) for key, value, at in f.entries("labels")}
    merged = {**labels, **own}
    merged.setdefault("service", service)
    return SLO(
        name=f"{service}-{name}",
        sli=sli,
        objective=objective,
        window=Window(duration=SLOTH_WINDOW),
        alert_tiers=tiers,
        description=f.text("description", ""),
        runbook=_runbook(f),
        source=where.source(),
        labels=merged,
    )
