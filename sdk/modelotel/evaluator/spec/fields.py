"""What every spec loader shares: YAML read with line numbers, checked access to fields (``Fields``), value
parsers (durations, fractions, attribute values, time zones), selectors and the checks every SLO passes.

The loaders (``native``, ``openslo``, ``sloth``) are siblings that build on this module and ``errors`` only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import math
import os
import re
import stat
import zoneinfo
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from ... import conventions as conv
from ..durations import CALENDAR_UNIT_SECONDS, DurationError, parse_duration_exact
from ..semconv import known_unit
from ..slo import SLO, AttributeFilter, Selector, Window
from ..units import seconds_per_unit
from .errors import SpecError, SpecNote, Where

SLI_KINDS = (
    "latency",
    "error_ratio",
    "ood_rate",
    "low_confidence_rate",
    "accuracy",
    "ratio",
    "drift",
    "calibration",
    "estimated_accuracy",
    "abs_error",
)
DRIFT_STATISTICS = ("psi", "ks", "js", "hellinger")
CALIBRATION_STATISTICS = ("ece", "brier")
DEFAULT_WINDOW = 28 * 86400.0  # 4 whole weeks: every weekday counts equally
DEFAULT_TIMESLICE = 300.0
SERVER_METRICS = (conv.HTTP_SERVER_DURATION, conv.RPC_SERVER_DURATION)  # no ml.model.* attributes on these


# -- YAML with lines ---------------------------------------------------------------------------------


class _Map(dict):
    """A YAML mapping that remembers its line and the line of each key."""

    line: int = 0
    key_lines: dict[Any, int]


class _Seq(list):
    """A YAML list that remembers its line and the line of each item."""

    line: int = 0
    item_lines: list[int]


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when built with it: ~5x faster
    """SafeLoader whose mappings and lists carry line numbers, and which refuses duplicate keys."""


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Iterator[_Map]:
    data = _Map()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool, dt.date)) and key is not None:
            raise yaml.constructor.ConstructorError(None, None, "a key must be plain text", key_node.start_mark)
        if key in data.key_lines:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {data.key_lines[key]})", key_node.start_mark
            )
        data.key_lines[key] = key_node.start_mark.line + 1
    data.update(loader.construct_mapping(node))


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> Iterator[_Seq]:
    data = _Seq()
    data.line = node.start_mark.line + 1
    data.item_lines = [item.start_mark.line + 1 for item in node.value]
    yield data
    data.extend(loader.construct_sequence(node))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def line_of(value: Any) -> int | None:
    return getattr(value, "line", None) or None


MAX_SPEC_BYTES = 16 * 1024 * 1024  # a spec is read whole; real ones are kilobytes


def read_documents(path: str) -> list[Any]:
    """The YAML documents of a file (``None`` for empty ones). Only a regular file of at most MAX_SPEC_BYTES is
    read: a device (/dev/zero), a FIFO or a socket would never end or block."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            kinds = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device"}
            kind = kinds.get(stat.S_IFMT(info.st_mode), "not a regular file (a device?)")
            raise SpecError(path, "", f"is {kind}, not a regular file; expected a YAML spec file")
        if info.st_size > MAX_SPEC_BYTES:
            raise SpecError(path, "", f"{info.st_size} bytes, over the {MAX_SPEC_BYTES >> 20} MiB a spec may have")
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(path, "", "no such file") from None
    except UnicodeDecodeError as exc:
        raise SpecError(path, "", f"not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})") from None
    except OSError as exc:
        raise SpecError(path, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        documents = list(yaml.load_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "unreadable"
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        raise SpecError(path, "", f"invalid YAML: {problem}", line, column) from None
    except yaml.YAMLError as exc:
        raise SpecError(path, "", f"invalid YAML: {exc}") from None
    if all(doc is None for doc in documents):
        raise SpecError(path, "", "empty file: expected a top-level 'slos:' list or OpenSLO documents")
    return documents


# -- checked access to mappings ------------------------------------------------------------------


def describe(value: Any) -> str:
    """A value as an error message quotes it."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, str):
        return repr(value)
    return str(value)


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or ``""``."""
    options = list(options)
    lowered = {o.lower(): o for o in options}
    if str(word).lower() in lowered:
        return f" (did you mean '{lowered[str(word).lower()]}'?)"
    close = difflib.get_close_matches(str(word), options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


_REQUIRED: Any = object()  # default of the Fields getters: the field must be there


class Fields:
    """A YAML mapping checked against the fields a spec object allows; getters check types and ranges.

    A field whose value is null counts as absent. Getters raise "missing" for an absent field unless given a
    ``default``; test ``key in fields`` first for fields that are optional without one.
    """

    def __init__(
        self, value: Any, where: Where, allowed: Iterable[str], required: Iterable[str] = (), what: str = "a mapping"
    ) -> None:
        if not isinstance(value, dict):
            raise where.error(f"expected {what}, got {describe(value)}")
        self.value = value
        self.where = where
        self.allowed = tuple(allowed)
        for key in value:
            if key not in self.allowed:
                listed = ", ".join(self.allowed)
                raise self.at(key).error(f"unknown field{did_you_mean(key, self.allowed)}; allowed here: {listed}")
        for key in required:
            self.require(key)

    def __contains__(self, key: str) -> bool:
        return self.value.get(key) is not None

    def at(self, key: object) -> Where:
        lines = getattr(self.value, "key_lines", {})
        return self.where.key(key, lines.get(key, line_of(self.value)))

    def get(self, key: str, default: Any = None) -> Any:
        value = self.value.get(key)
        return default if value is None else value

    def require(self, key: str, why: str = "") -> Any:
        if key not in self:
            raise self.at(key).error("missing" + (f": {why}" if why else " (required)"))
        return self.value[key]

    def present(self, *keys: str) -> list[str]:
        return [key for key in keys if key in self]

    def _absent(self, key: str, default: Any) -> Any:
        return self.require(key) if default is _REQUIRED else default

    def text(self, key: str, default: Any = _REQUIRED) -> str:
        value = self.get(key)
        if value is None:
            return self._absent(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.at(key).error(f"expected text, got {describe(value)}")
        return value

    def number(self, key: str, default: Any = _REQUIRED) -> float:
        value = self.get(key)
        return self._absent(key, default) if value is None else number(value, self.at(key))

    def integer(self, key: str, default: Any = _REQUIRED, minimum: int = 0) -> int:
        value = self.get(key)
        if value is None:
            return self._absent(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.at(key).error(f"expected a whole number >= {minimum}, got {describe(value)}")
        return value

    def boolean(self, key: str, default: Any = _REQUIRED) -> bool:
        value = self.get(key)
        if value is None:
            return self._absent(key, default)
        if not isinstance(value, bool):
            raise self.at(key).error(f"expected true or false, got {describe(value)}")
        return value

    def choice(self, key: str, options: Sequence[str], default: Any = _REQUIRED) -> str:
        value = self.get(key)
        if value is None:
            return self._absent(key, default)
        if value not in options:
            hint = did_you_mean(value, options) if isinstance(value, str) else ""
            raise self.at(key).error(f"expected one of {', '.join(options)}, got {describe(value)}{hint}")
        return value

    def duration(self, key: str, default: Any = _REQUIRED, positive: bool = True) -> float:
        value = self.get(key)
        return self._absent(key, default) if value is None else duration(value, self.at(key), positive)

    def sub(self, key: str, allowed: Iterable[str], required: Iterable[str] = (), why: str = "") -> Fields:
        """The mapping under ``key``, which must be there."""
        return Fields(self.require(key, why), self.at(key), allowed, required)

    def fields(self, key: str, allowed: Iterable[str], required: Iterable[str] = ()) -> Fields | None:
        """The mapping under ``key``, or None when it is absent."""
        return self.sub(key, allowed, required) if key in self else None

    def items(self, key: str) -> list[tuple[Any, Where]]:
        value = self.get(key)
        return [] if value is None else sequence(value, self.at(key))

    def entries(self, key: str | None = None) -> list[tuple[str, Any, Where]]:
        """``(name, value, where)`` of a mapping with free-form keys (attributes, labels, alert tiers): the one under
        ``key``, or this one."""
        if key is not None:
            value = self.get(key)
            return [] if value is None else Fields(value, self.at(key), list(value)).entries()
        out = []
        for name, value in self.value.items():
            if not isinstance(name, str):
                raise self.at(name).error(f"expected a text key, got {describe(name)}")
            out.append((name, value, self.at(name)))
        return out


# Annotation keys read as an SLO's runbook in foreign specs (Sloth's examples write alerting.annotations.runbook;
# OpenSLO leaves metadata.annotations to implementations; runbook_url is the Prometheus-alert convention).
RUNBOOK_ANNOTATIONS = ("runbook", "runbook_url")


def runbook(value: Any, where: Where) -> str:
    """A runbook reference: one line of text, normally an http(s) URL (the report links it; other text, such as a
    wiki path, is shown as written)."""
    if not isinstance(value, str) or not value.strip():
        raise where.error(f"expected a URL or a path, got {describe(value)}")
    text = value.strip()
    if any(c in text for c in "\r\n\t"):
        raise where.error("expected one line: a URL or a path")
    return text


def sequence(value: Any, where: Where) -> list[tuple[Any, Where]]:
    if not isinstance(value, list):
        raise where.error(f"expected a list, got {describe(value)}")
    lines = getattr(value, "item_lines", [])
    return [(item, where.index(i, lines[i] if i < len(lines) else None)) for i, item in enumerate(value)]


def number(value: Any, where: Where) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise where.error(f"expected a number, got {describe(value)}")
    return float(value)


def duration(value: Any, where: Where, positive: bool = True) -> float:
    """Seconds of a Go-style or ISO 8601 duration text (``durations.parse_duration``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise where.error(f"expected a duration like '250ms', got {value} (a number alone has no unit)")
    try:
        exact = parse_duration_exact(value)
        seconds = float(exact)
    except DurationError as exc:
        raise where.error(str(exc)) from None
    except OverflowError:
        raise where.error(f"{value!r} is too long") from None
    if positive and seconds <= 0:
        raise where.error(f"expected a duration above zero, got {describe(value)}")
    return seconds


def fraction(value: Any, where: Where, *, allow_one: bool = False, what: str = "objective") -> float:
    """A fraction in (0, 1) (or (0, 1] when ``allow_one``), written as ``0.99`` or ``'99%'``; read exactly."""
    upper = "1]" if allow_one else "1)"
    expected = f"expected a fraction in (0, {upper} like 0.99 or a percentage like '99.9%', got {describe(value)}"
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*", value)
        if match is None:
            raise where.error(expected)
        exact = Fraction(match.group(1)) / 100
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        exact = Fraction(value)
    else:
        raise where.error(expected)
    if exact == 1 and not allow_one:
        raise where.error(f"{what} must be below 1: 100% leaves no error budget")
    if exact <= 0 or exact > 1:
        if isinstance(value, (int, float)) and 50 <= value < 100:  # a percentage without its '%'
            raise where.error(f"{expected} (for a percentage write '{value}%')")
        raise where.error(expected)
    return float(exact)


def attribute_value(value: Any, where: Where) -> str:
    """A filter value as the text it is compared as (the module docstring; the rule of ``ledger.matches``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        raise where.error(f"float value {value!r}: quote it as it appears in the data (YAML reads 1.10 as 1.1)")
    raise where.error(f"expected text, a whole number or true/false, got {describe(value)}")


def zone(name: Any, where: Where) -> str:
    """An IANA time zone name, checked against the system's time zone database."""
    if not isinstance(name, str):
        raise where.error(f"expected an IANA time zone name like 'UTC' or 'Europe/Paris', got {describe(name)}")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise where.error(f"unknown time zone {name!r} (expected an IANA name like 'Europe/Paris')") from None
    return name


def local_time(value: Any, timezone: str, where: Where) -> float:
    """UTC epoch seconds of a date or date-time written in ``timezone`` (an explicit offset wins)."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise where.error(f"expected a date like 2026-01-05 or 2026-01-05 12:00:00, got {value!r}") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise where.error(f"expected a date like 2026-01-05 or 2026-01-05 12:00:00, got {describe(value)}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    return value.timestamp()


def calendar_window(unit: str, count: int, start: float | None, timezone: str) -> Window:
    """A calendar window; ``duration`` is nominal (month 30 d, quarter 90 d, year 365 d)."""
    return Window(
        duration=float(CALENDAR_UNIT_SECONDS[unit] * count),
        rolling=False,
        unit=unit,  # type: ignore[arg-type]
        count=count,
        calendar_start=start,
        timezone=timezone,
    )


# -- selectors ------------------------------------------------------------------------------------

OPS = {"le": "le", "lt": "lt", "ge": "ge", "gt": "gt", "lte": "le", "gte": "ge"}
UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
FILTER_OPS = {"in": "in", "not_in": "not_in", "regex": "regex", "not_regex": "not_regex", "not": "ne"}


def metric_unit(metric: str) -> str | None:
    """The unit of a metric modelotel or the semantic conventions define, or None for metrics it does not know."""
    return known_unit(metric)


def is_duration(metric: str) -> bool | None:
    """True for a metric in a unit of time, False for another known unit, None when its unit is not known."""
    unit = metric_unit(metric)
    return None if unit is None else seconds_per_unit(unit) is not None


Filters = tuple[tuple[tuple[str, str], ...], tuple[AttributeFilter, ...]]


def attribute_filter(key: str, value: Any, where: Where) -> tuple[str, str] | AttributeFilter:
    """One attribute filter of a spec: a value is equality (``key: value``), a list is set membership
    (``key: [a, b]``), a mapping is one operator (``in``, ``not_in``, ``regex``, ``not_regex``, ``not``).
    Regular expressions are anchored at both ends (as PromQL's ``=~``)."""
    if isinstance(value, list):
        return AttributeFilter(key, "in", _values(value, where))
    if not isinstance(value, dict):
        return key, attribute_value(value, where)
    f = Fields(value, where, tuple(FILTER_OPS), what="a value, a list or a mapping like {regex: '5..'}")
    given = f.present(*FILTER_OPS)
    if len(given) != 1:
        raise where.error(f"expected one operator of {', '.join(FILTER_OPS)}, got {len(given)}")
    op = given[0]
    raw = f.get(op)
    if op in ("in", "not_in"):
        if not isinstance(raw, list):
            raise f.at(op).error(f"expected a list of values, got {describe(raw)}")
        return AttributeFilter(key, FILTER_OPS[op], _values(raw, f.at(op)))  # type: ignore[arg-type]
    text = attribute_value(raw, f.at(op))
    if op in ("regex", "not_regex"):
        try:
            re.compile(text)
        except re.error as exc:
            raise f.at(op).error(f"invalid regular expression {text!r}: {exc}") from None
    return AttributeFilter(key, FILTER_OPS[op], (text,))  # type: ignore[arg-type]


def _values(items: list[Any], where: Where) -> tuple[str, ...]:
    if not items:
        raise where.error("expected at least one value")
    return tuple(attribute_value(item, at) for item, at in sequence(items, where))


def _split(conditions: Iterable[tuple[str, str] | AttributeFilter]) -> Filters:
    pairs, filters = [], []
    for c in conditions:
        (filters if isinstance(c, AttributeFilter) else pairs).append(c)
    return tuple(pairs), tuple(filters)  # type: ignore[return-value]


def merge_match(selector: Selector, filters: Filters, where: Where) -> Selector:
    """``selector`` with ``filters`` (equality pairs, other filters) added; one key equal to two values is an
    error."""
    pairs, others = filters
    match = dict(pairs)
    for key, value in selector.match:
        if key in match and match[key] != value:
            raise where.error(f"attribute {key} is filtered both as {match[key]!r} and as {value!r}")
        match[key] = value
    return dataclasses.replace(selector, match=tuple(match.items()), filters=selector.filters + others)


def model_filters(f: Fields, metrics: Sequence[str], attributes_field: str) -> Filters:
    """``model``/``version``/``role``/``attributes_field`` of ``f`` as filters, with the model rules.

    ``model`` is required when a metric is an ``ml.*`` one (all of them are per model) and refused on the server
    metrics, which carry no ``ml.model.*`` attributes. On the GenAI conventions' ``gen_ai.*`` metrics alone it
    filters ``gen_ai.request.model``, which every producer of them sets (modelotel: the model's name by default).
    """
    server = [m for m in metrics if m in SERVER_METRICS or m.startswith(("http.", "rpc."))]
    given = f.present("model", "version", "role")
    if server and given:
        raise f.at(given[0]).error(
            f"{server[0]} has no ml.model.* attributes; filter it with {attributes_field}: (e.g. http.route)"
        )
    pairs: dict[str, str] = {}
    ml = [m for m in metrics if m.startswith("ml.")]
    if "model" in f:
        genai = bool(metrics) and all(m.startswith("gen_ai.") for m in metrics)
        key = conv.GENAI_REQUEST_MODEL if genai else conv.MODEL_NAME
        pairs[key] = attribute_value(f.get("model"), f.at("model"))
    elif ml:
        raise f.at("model").error(f"missing: {ml[0]} is recorded per model, name it (ml.model.name)")
    if "version" in f:
        pairs[conv.MODEL_VERSION] = attribute_value(f.get("version"), f.at("version"))
    if "role" in f:
        pairs[conv.DEPLOYMENT_ROLE] = f.choice("role", conv.DEPLOYMENT_ROLES)
    others: list[AttributeFilter] = []
    for key, value, where in f.entries(attributes_field):
        if key in pairs:
            raise where.error(f"{key} is already set by the model/version/role fields")
        condition = attribute_filter(key, value, where)
        if isinstance(condition, AttributeFilter):
            others.append(condition)
        else:
            pairs[key] = condition[1]
    return tuple(pairs.items()), tuple(others)


def _keys(f: Fields, key: str) -> tuple[str, ...]:
    out = []
    for item, where in f.items(key):
        if not isinstance(item, str) or not item:
            raise where.error(f"expected an attribute key, got {describe(item)}")
        out.append(item)
    return tuple(out)


SELECTOR_FIELDS = ("metric", "match", "present", "absent", "threshold", "op")
MODEL_FIELDS = ("model", "version", "role")


def parse_selector(
    value: Any, where: Where, *, with_model: bool, with_threshold: bool, with_unit: bool
) -> tuple[Selector, float | None]:
    """A selector spec -> ``(Selector, seconds per written unit)``; the second is None when numbers written for
    the metric are plain numbers in its own unit (not a duration).

    Fields: ``metric`` (required), ``match`` (attribute filters: values, lists, operators), ``present``/``absent``
    (attribute keys), with ``with_threshold`` also ``threshold``/``op`` (count histogram values on the good side),
    with ``with_model`` also ``model``/``version``/``role``, with ``with_unit`` also ``unit`` (the unit numbers are
    written in, for durations). A threshold on a duration metric is a duration text, or with ``unit`` a number in
    it; it is compared in each metric's own unit (units.py). Without ``unit``, numbers for a metric whose unit the
    conventions fix (``http.server.duration``: ms) are in that unit.
    """
    allowed = ["metric", "match", "present", "absent"]
    allowed += ["threshold", "op"] if with_threshold else []
    allowed += list(MODEL_FIELDS) if with_model else []
    allowed += ["unit"] if with_unit else []
    f = Fields(value, where, allowed, required=("metric",))
    metric = f.text("metric")
    unit = metric_unit(metric)
    duration_metric = is_duration(metric)
    scale: float | None = None
    if duration_metric:
        scale = seconds_per_unit(unit or "s")
    if "unit" in f:
        if duration_metric is False:
            raise f.at("unit").error(f"{metric} is in {unit!r}, not a duration; values are written in that unit")
        scale = UNIT_SECONDS[f.choice("unit", tuple(UNIT_SECONDS))]
    if with_model:
        filters = model_filters(f, [metric], "match")
    else:
        filters = _split(attribute_filter(key, value, at) for key, value, at in f.entries("match"))
    threshold: float | None = None
    threshold_unit: str | None = None
    if "threshold" in f:
        kind = conv.METRICS[metric].kind if metric in conv.METRICS else None
        if kind == "counter":
            raise f.at("threshold").error(f"{metric} is a counter; a threshold needs a histogram")
        raw = f.get("threshold")
        if isinstance(raw, str) and duration_metric is not False:
            threshold, threshold_unit = duration(raw, f.at("threshold"), positive=False), "s"
        elif duration_metric and "unit" not in f:
            hint = " or a number with unit: (e.g. unit: ms)" if with_unit else ""
            raise f.at("threshold").error(f"expected a duration like '250ms'{hint}, got {describe(raw)}")
        elif scale is not None:
            threshold, threshold_unit = number(raw, f.at("threshold")) * scale, "s"
        else:
            threshold = number(raw, f.at("threshold"))
    elif "op" in f:
        raise f.at("op").error("op needs a threshold")
    op = OPS[f.choice("op", tuple(OPS), "le")]
    pairs, others = filters
    selector = Selector(
        metric=metric,
        match=pairs,
        absent=_keys(f, "absent"),
        present=_keys(f, "present"),
        threshold=threshold,
        op=op,
        filters=others,
        threshold_unit=threshold_unit,
    )
    clash = set(selector.absent) & (set(selector.present) | {k for k, _ in pairs})
    if clash:
        raise f.at("absent").error(f"{sorted(clash)[0]} cannot be both required and absent")
    return selector, scale


# -- checks shared by both formats ------------------------------------------------------------------


def check_slo(slo: SLO, where: Where, notes: list[SpecNote]) -> SLO:
    """Notes on what loads but cannot work as meant: tiers that never fire, slices as long as the window."""
    budget = 1.0 - slo.objective
    for tier in slo.alert_tiers:
        if tier.burn_rate * budget > 1.0:
            notes.append(
                where.note(
                    f"alert tier {tier.name} can never fire: burn rate {tier.burn_rate:g} needs a bad fraction of "
                    f"{tier.burn_rate * budget:.3g} > 1 at objective {slo.objective:g}"
                )
            )
    if slo.timeslice_window is not None and slo.timeslice_window >= slo.window.duration:
        notes.append(where.note("the time slice is as long as the whole window: the SLO has a single slice"))
    return slo
