"""PromQL that only selects series -> ``model.Selector``: how OpenSLO and Sloth specs written for Prometheus load.

modelotel does not run PromQL. It counts the events of a metric itself (ledger.py), from OTLP files or from a
Prometheus server read by name (prometheus_source.py). So a query translates only when all it does is *select*
series of one metric whose increments are the events: a vector selector, optionally inside ``rate``, ``irate`` or
``increase`` (any range, Sloth's ``[{{.window}}]`` included) and ``sum`` (with ``by``/``without``). Those functions
are not run: ``sum(rate(x[5m]))`` and ``x`` count the same events once modelotel differences the counter over its
own windows. Everything else (binary operators, other functions and aggregations, subqueries, ``offset``, ``@``,
numbers, ``vector(1)``) raises ``PromQLError`` naming what is not a plain selector, because its result is not a
count of events of one metric and a translation would silently answer another question.

Labels map to attribute keys the way ``prometheus_source`` maps them back: ``job`` -> ``service.name`` (a
``namespace/name`` job -> ``service.namespace`` and ``service.name``), ``instance`` -> ``service.instance.id``,
known attribute labels (``http_response_status_code``) -> their dotted keys, other labels keep their names.
Matchers keep PromQL's semantics (model.AttributeFilter): ``=`` an equality pair (``=""``: absent or empty),
``!=`` ``ne``, ``=~`` ``regex`` and ``!~`` ``not_regex``, anchored at both ends.

The parser is small and hand-written (a tokenizer and a precedence-climbing parser over the whole PromQL
expression grammar), so that a query that does not translate is still read to its end and the error names the
outermost construct in the way, and so that ``selectors_in`` can offer the selector of a query that does not
translate as the starting point of a replacement.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ..semconv import attribute_key
from ..slo import AttributeFilter, Selector

__all__ = [
    "PromQLError",
    "Translation",
    "selector_yaml",
    "selectors_in",
    "translate",
    "translate_difference",
    "translation_note",
]

RATE_FUNCTIONS = ("rate", "irate", "increase")
AGGREGATIONS = (
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "count_values",
    "topk",
    "bottomk",
    "quantile",
    "limitk",
    "limit_ratio",
)
_BINARY = {  # operator -> precedence (higher binds tighter); '^' is right-associative
    "or": 1,
    "and": 2,
    "unless": 2,
    "==": 3,
    "!=": 3,
    "<=": 3,
    "<": 3,
    ">=": 3,
    ">": 3,
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
    "atan2": 5,
    "^": 6,
}
_MATCH_OPS = ("=~", "!~", "!=", "=")
_GROUP_MODIFIERS = ("on", "ignoring", "group_left", "group_right")


class PromQLError(ValueError):
    """A query that is not a plain selector (or not PromQL at all): ``what`` names the construct, ``column`` is
    1-based."""

    def __init__(self, what: str, column: int | None = None) -> None:
        self.what = what
        self.column = column
        super().__init__(what if column is None else f"{what} (column {column})")


# -- tokens ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # ident, number, string, op, punct, range, end
    text: str  # identifiers and operators as written; strings unquoted; ranges without brackets
    column: int  # 1-based


_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[A-Za-z0-9_]*")
_OPERATORS = ("=~", "!~", "!=", "==", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "%", "^", "@")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _unquote(text: str, start: int) -> tuple[str, int]:
    """The string starting at ``text[start]`` (a quote) with Go's escapes read, and the index after it."""
    quote = text[start]
    i = start + 1
    if quote == "`":  # raw string: no escapes
        end = text.find("`", i)
        if end < 0:
            raise PromQLError("unterminated string", start + 1)
        return text[i:end], end + 1
    out = []
    while i < len(text):
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\n":
            break
        if c != "\\":
            out.append(c)
            i += 1
            continue
        esc = text[i + 1 : i + 2]
        if esc in _ESCAPES or esc == quote:
            out.append(_ESCAPES.get(esc, esc))
            i += 2
        elif esc in ("x", "u", "U"):
            size = {"x": 2, "u": 4, "U": 8}[esc]
            digits = text[i + 2 : i + 2 + size]
            if len(digits) != size or not re.fullmatch(r"[0-9a-fA-F]+", digits):
                raise PromQLError(f"invalid escape \\{esc}{digits} in a string", i + 1)
            out.append(chr(int(digits, 16)))
            i += 2 + size
        elif esc.isdigit():
            digits = text[i + 1 : i + 4]
            if not re.fullmatch(r"[0-7]{3}", digits):
                raise PromQLError(f"invalid escape \\{digits} in a string", i + 1)
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise PromQLError(f"invalid escape \\{esc} in a string", i + 1)
    raise PromQLError("unterminated string", start + 1)


def _tokens(text: str) -> list[_Token]:
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c == "#":  # a comment runs to the end of the line
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        if c in "\"'`":
            value, end = _unquote(text, i)
            out.append(_Token("string", value, i + 1))
            i = end
            continue
        if c == "[":  # a range or subquery: read as written up to ']' (Sloth's {{.window}} included)
            end = text.find("]", i)
            if end < 0:
                raise PromQLError("unterminated '['", i + 1)
            out.append(_Token("range", text[i + 1 : end].strip(), i + 1))
            i = end + 1
            continue
        if c in "(){},":
            out.append(_Token("punct", c, i + 1))
            i += 1
            continue
        number = _NUMBER.match(text, i)
        if number and (c.isdigit() or c == "."):
            out.append(_Token("number", number.group(), i + 1))
            i = number.end()
            continue
        ident = _IDENT.match(text, i)
        if ident:
            out.append(_Token("ident", ident.group(), i + 1))
            i = ident.end()
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op is None:
            raise PromQLError(f"unexpected character {c!r}", i + 1)
        out.append(_Token("op", op, i + 1))
        i += len(op)
    out.append(_Token("end", "", len(text) + 1))
    return out


# -- syntax tree --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    column: int


@dataclass(frozen=True)
class _Selector(_Node):
    name: str | None
    matchers: tuple[tuple[str, str, str, int], ...]  # (label, op, value, column)
    range: str | None = None


@dataclass(frozen=True)
class _Call(_Node):
    name: str
    args: tuple[_Node, ...]
    grouping: tuple[str, tuple[str, ...]] | None = None  # aggregations: ("by" | "without", labels)


@dataclass(frozen=True)
class _Binary(_Node):
    op: str
    left: _Node
    right: _Node
    modifiers: bool = False  # bool, on/ignoring, group_left/right


@dataclass(frozen=True)
class _Literal(_Node):
    text: str  # a number or a string


@dataclass(frozen=True)
class _Unary(_Node):
    op: str
    operand: _Node


@dataclass(frozen=True)
class _Paren(_Node):
    inner: _Node


@dataclass(frozen=True)
class _Postfix(_Node):
    what: str  # "subquery [5m:1m]", "offset 5m", "@ 1700000000"
    inner: _Node
    inner_first: bool = False  # the error names what is inside rather than this


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def next(self) -> _Token:
        token = self.peek()
        self.i += 1
        return token

    def expect(self, text: str) -> _Token:
        token = self.next()
        if token.text != text or token.kind not in ("punct", "op"):
            raise PromQLError(f"expected '{text}', got {_shown(token)}", token.column)
        return token

    def query(self) -> _Node:
        node = self.expr(0)
        end = self.peek()
        if end.kind != "end":
            raise PromQLError(f"unexpected {_shown(end)}", end.column)
        return node

    def binary_op(self) -> str | None:
        token = self.peek()
        if token.kind == "op" and token.text in _BINARY:
            return token.text
        if token.kind == "ident" and token.text.lower() in ("and", "or", "unless", "atan2"):
            return token.text.lower()
        return None

    def expr(self, min_precedence: int) -> _Node:
        left = self.unary()
        while True:
            op = self.binary_op()
            if op is None or _BINARY[op] < min_precedence:
                return left
            token = self.next()
            modifiers = False
            if self.peek().kind == "ident" and self.peek().text == "bool":
                self.next()
                modifiers = True
            while self.peek().kind == "ident" and self.peek().text in _GROUP_MODIFIERS:
                self.next()
                modifiers = True
                if self.peek().text == "(":
                    self.labels()
            right = self.expr(_BINARY[op] + (0 if op == "^" else 1))
            left = _Binary(token.column, op, left, right, modifiers)

    def unary(self) -> _Node:
        token = self.peek()
        if token.kind == "op" and token.text in ("+", "-"):
            self.next()
            return _Unary(token.column, token.text, self.unary())
        return self.postfix(self.primary())

    def postfix(self, node: _Node) -> _Node:
        while True:
            token = self.peek()
            if token.kind == "range":
                self.next()
                if ":" in token.text:
                    node = _Postfix(token.column, f"the subquery [{token.text}]", node)
                elif isinstance(node, _Selector) and node.range is None:
                    node = _Selector(node.column, node.name, node.matchers, token.text)
                else:  # valid MetricsQL, not PromQL: name what the range is on (vector(1)[{{.window}}])
                    node = _Postfix(token.column, f"the range [{token.text}] on an expression", node, inner_first=True)
            elif token.kind == "ident" and token.text == "offset":
                self.next()
                amount = self.next()
                sign = ""
                if amount.kind == "op" and amount.text in ("+", "-"):
                    sign, amount = amount.text, self.next()
                node = _Postfix(token.column, f"the offset modifier (offset {sign}{amount.text})", node)
            elif token.kind == "op" and token.text == "@":
                self.next()
                at = self.next()
                if at.kind == "ident" and self.peek().text == "(":  # start() / end()
                    self.expect("(")
                    self.expect(")")
                node = _Postfix(token.column, f"the @ modifier (@ {at.text})", node)
            else:
                return node

    def primary(self) -> _Node:
        token = self.peek()
        if token.kind == "punct" and token.text == "(":
            self.next()
            inner = self.expr(0)
            self.expect(")")
            return _Paren(token.column, inner)
        if token.kind == "punct" and token.text == "{":
            return self.selector(None, token.column)
        if token.kind in ("number", "string"):
            self.next()
            return _Literal(token.column, token.text)
        if token.kind == "ident":
            self.next()
            name = token.text
            if name.lower() in ("inf", "nan"):
                return _Literal(token.column, name)
            after = self.peek()
            if name in AGGREGATIONS and (after.text == "(" or after.text in ("by", "without")):
                return self.aggregation(name, token.column)
            if after.kind == "punct" and after.text == "(":
                return _Call(token.column, name, self.arguments())
            return self.selector(name, token.column)
        raise PromQLError(f"unexpected {_shown(token)}", token.column)

    def arguments(self) -> tuple[_Node, ...]:
        self.expect("(")
        args: list[_Node] = []
        while self.peek().text != ")" or self.peek().kind != "punct":
            args.append(self.expr(0))
            if self.peek().text == ",":
                self.next()
            elif self.peek().text != ")":
                raise PromQLError(f"expected ',' or ')', got {_shown(self.peek())}", self.peek().column)
        self.expect(")")
        return tuple(args)

    def labels(self) -> tuple[str, ...]:
        self.expect("(")
        names = []
        while self.peek().text != ")":
            token = self.next()
            if token.kind not in ("ident", "string"):
                raise PromQLError(f"expected a label name, got {_shown(token)}", token.column)
            names.append(token.text)
            if self.peek().text == ",":
                self.next()
        self.expect(")")
        return tuple(names)

    def aggregation(self, name: str, column: int) -> _Call:
        grouping = None
        if self.peek().text in ("by", "without"):
            grouping = (self.next().text, self.labels())
        args = self.arguments()
        if self.peek().kind == "ident" and self.peek().text in ("by", "without"):
            if grouping is not None:
                raise PromQLError("a second by/without clause", self.peek().column)
            grouping = (self.next().text, self.labels())
        return _Call(column, name, args, grouping)

    def selector(self, name: str | None, column: int) -> _Selector:
        matchers: list[tuple[str, str, str, int]] = []
        if self.peek().kind == "punct" and self.peek().text == "{":
            self.next()
            while not (self.peek().kind == "punct" and self.peek().text == "}"):
                label = self.next()
                if label.kind not in ("ident", "string"):
                    raise PromQLError(f"expected a label name, got {_shown(label)}", label.column)
                op = self.peek()
                if label.kind == "string" and op.text in (",", "}"):  # {"metric.name", ...}: a quoted name
                    if name is not None:
                        raise PromQLError(f"a second metric name {label.text!r}", label.column)
                    name = label.text
                else:
                    self.next()
                    if op.kind != "op" or op.text not in _MATCH_OPS:
                        raise PromQLError(f"expected =, !=, =~ or !~, got {_shown(op)}", op.column)
                    value = self.next()
                    if value.kind != "string":
                        raise PromQLError(f"expected a quoted label value, got {_shown(value)}", value.column)
                    matchers.append((label.text, op.text, value.text, label.column))
                if self.peek().text == ",":
                    self.next()
                elif self.peek().text != "}":
                    raise PromQLError(f"expected ',' or '}}', got {_shown(self.peek())}", self.peek().column)
            self.next()
        return _Selector(column, name, tuple(matchers))


def _shown(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the query"
    if token.kind == "string":
        return f"the string {json.dumps(token.text)}"
    if token.kind == "range":
        return f"[{token.text}]"
    return f"'{token.text}'"


# -- translation -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Translation:
    """A query that selects the series of one metric: the ``selector``, and what of the query is not run.

    ``functions``: the functions around the selector, outermost first (``("sum", "rate")``); ``range``: the range
    of ``rate``/``irate``/``increase`` as written (``"5m"``, ``"{{.window}}"``); ``grouping``: ``by (...)`` or
    ``without (...)`` of a ``sum``, as written; ``warnings``: what is likely not meant (``host="*"`` matches the
    text ``*``: PromQL has no wildcard values).
    """

    selector: Selector
    functions: tuple[str, ...] = ()
    range: str | None = None
    grouping: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    def not_run(self) -> str:
        """``"sum, rate and the range [5m]"``: what of the query modelotel does not run (for notes)."""
        parts = [", ".join(dict.fromkeys(self.functions))] if self.functions else []
        if self.range is not None:
            parts.append(f"the range [{self.range}]")
        return " and ".join(parts) if parts else "nothing"


def _strip(node: _Node) -> _Node:
    while isinstance(node, _Paren):
        node = node.inner
    return node


def _refusal(node: _Node) -> PromQLError:
    """The error naming ``node``, the construct that is not a plain selector."""
    node = _strip(node)
    if isinstance(node, _Binary):
        return PromQLError(f"the binary operator '{node.op}' (modelotel does not run arithmetic)", node.column)
    if isinstance(node, _Unary):
        return PromQLError(f"the unary '{node.op}'", node.column)
    if isinstance(node, _Literal):
        try:
            float(node.text)
            return PromQLError(f"the number {node.text} (scalar arithmetic)", node.column)
        except ValueError:
            return PromQLError(f"the literal {json.dumps(node.text)}", node.column)
    if isinstance(node, _Postfix):
        return _refusal(node.inner) if node.inner_first else PromQLError(node.what, node.column)
    if isinstance(node, _Call):
        if node.name in AGGREGATIONS:
            return PromQLError(f"the aggregation {node.name}() (only sum() translates)", node.column)
        return PromQLError(
            f"the function {node.name}() (only {', '.join(RATE_FUNCTIONS)} and sum() translate)", node.column
        )
    if isinstance(node, _Selector) and node.range is not None:
        return PromQLError(f"the range vector [{node.range}] outside rate, irate or increase", node.column)
    return PromQLError("not a plain selector", node.column)


def _unwrap(node: _Node) -> tuple[_Selector, tuple[str, ...], str | None, tuple[str, ...]]:
    functions: list[str] = []
    grouping: list[str] = []
    node = _strip(node)
    while isinstance(node, _Call) and node.name == "sum":
        if len(node.args) != 1:
            raise PromQLError(f"sum() with {len(node.args)} arguments", node.column)
        functions.append("sum")
        if node.grouping is not None:
            grouping.append(f"{node.grouping[0]} ({', '.join(node.grouping[1])})")
        node = _strip(node.args[0])
    range_ = None
    if isinstance(node, _Call) and node.name in RATE_FUNCTIONS:
        if len(node.args) != 1:
            raise PromQLError(f"{node.name}() with {len(node.args)} arguments", node.column)
        functions.append(node.name)
        inner = _strip(node.args[0])
        if not isinstance(inner, _Selector) or inner.range is None:
            if isinstance(inner, _Selector):
                raise PromQLError(f"{node.name}() of a selector without a range", inner.column)
            raise _refusal(inner)
        range_ = inner.range
        node = inner
    elif isinstance(node, _Selector) and node.range is not None:
        raise _refusal(node)
    if not isinstance(node, _Selector):
        raise _refusal(node)
    return node, tuple(functions), range_, tuple(grouping)


def _key(label: str, metric: str) -> str:
    if label == "instance":
        return "service.instance.id"
    return attribute_key(label, metric)


def _selector(node: _Selector) -> tuple[Selector, tuple[str, ...]]:
    name = node.name
    pairs: dict[str, str] = {}
    filters: list[AttributeFilter] = []
    warnings: list[str] = []
    for label, op, value, column in node.matchers:
        if label == "__name__":
            if op != "=":
                raise PromQLError(f"__name__{op}{json.dumps(value)}: a pattern of metric names, not one metric", column)
            if name is not None and name != value:
                raise PromQLError(f"two metric names, {name!r} and {value!r}", column)
            name = value
            continue
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise PromQLError(
                    f"invalid regular expression {json.dumps(value)} for {label}: {exc}", column
                ) from None
        if value == "*" and op in ("=", "!="):
            warnings.append(f'{label}{op}"*" compares with the text "*" (PromQL has no wildcard: =~".*" is any value)')
        if label == "job":
            namespace, slash, job = value.rpartition("/")
            if slash and op != "=":
                raise PromQLError(
                    f"job{op}{json.dumps(value)}: a job with a namespace ('/') only translates with '=' "
                    "(it is service.namespace and service.name); filter those two instead",
                    column,
                )
            conditions = (
                [("service.namespace", namespace), ("service.name", job)] if slash else [("service.name", value)]
            )
        else:
            conditions = [(_key(label, node.name or ""), value)]
        for key, text in conditions:
            if op == "=" and text != "":
                if pairs.get(key, text) != text:
                    raise PromQLError(f"{label} must equal both {pairs[key]!r} and {text!r}: matches nothing", column)
                pairs[key] = text
            elif op == "=":  # ="" is absent (or empty), as Prometheus has no empty labels
                filters.append(AttributeFilter(key, "in", ("",)))
            else:
                kind = {"!=": "ne", "=~": "regex", "!~": "not_regex"}[op]
                filters.append(AttributeFilter(key, kind, (text,)))  # type: ignore[arg-type]
    if name is None:
        raise PromQLError("a selector without a metric name", node.column)
    return Selector(name, match=tuple(pairs.items()), filters=tuple(dict.fromkeys(filters))), tuple(warnings)


def translate(query: str) -> Translation:
    """The selector of a PromQL query that only selects series (module docstring); ``PromQLError`` otherwise."""
    if not isinstance(query, str) or not query.strip():
        raise PromQLError("an empty query")
    node, functions, range_, grouping = _unwrap(_Parser(query).query())
    selector, warnings = _selector(node)
    return Translation(selector, functions, range_, grouping, warnings)


def translate_difference(query: str) -> tuple[Translation, Translation]:
    """``A - B`` (outer parentheses allowed), both sides plain selectors as ``translate`` takes them: Sloth's way
    of counting bad events as all minus good (``count - bucket{le="0.4"}``). ``PromQLError`` for anything else."""
    if not isinstance(query, str) or not query.strip():
        raise PromQLError("an empty query")
    node = _strip(_Parser(query).query())
    if not isinstance(node, _Binary) or node.op != "-":
        raise _refusal(node)
    if node.modifiers:
        raise PromQLError("the binary operator '-' with on/ignoring/group/bool modifiers", node.column)
    sides = []
    for side in (node.left, node.right):
        selector_node, functions, range_, grouping = _unwrap(side)
        selector, warnings = _selector(selector_node)
        sides.append(Translation(selector, functions, range_, grouping, warnings))
    return sides[0], sides[1]


def _walk(node: _Node):
    yield node
    children: tuple[_Node, ...] = ()
    if isinstance(node, _Call):
        children = node.args
    elif isinstance(node, _Binary):
        children = (node.left, node.right)
    elif isinstance(node, (_Paren,)):
        children = (node.inner,)
    elif isinstance(node, _Unary):
        children = (node.operand,)
    elif isinstance(node, _Postfix):
        children = (node.inner,)
    for child in children:
        yield from _walk(child)


def selectors_in(query: str) -> list[Selector]:
    """Every distinct selector of a query, translated as ``translate`` would (for suggesting a replacement when the
    query itself does not translate); empty when the query does not parse or a selector does not translate."""
    try:
        root = _Parser(query).query()
        found = [_selector(n)[0] for n in _walk(root) if isinstance(n, _Selector)]
    except PromQLError:
        return []
    return list(dict.fromkeys(found))


# -- the replacement, as a spec writes it ---------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}
_FILTER_WORDS = {"ne": "not", "in": "in", "not_in": "not_in", "regex": "regex", "not_regex": "not_regex"}


def _scalar(text: str) -> str:
    """``text`` as a YAML flow scalar that reads back as this exact string: plain when safe, else double-quoted
    with YAML's escapes for anything not printable (YAML refuses raw control characters)."""
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    out = []
    for c in text:
        code = ord(c)
        if c in ('"', "\\"):
            out.append("\\" + c)
        elif c.isprintable() and code < 0xFFFE and not 0xD800 <= code < 0xE000:
            out.append(c)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def selector_yaml(selector: Selector) -> str | None:
    """``{metric: M, match: {k: v, code: {regex: "5.."}}}``: the selector as a spec's ``metricSource.spec`` or
    native selector writes it (it loads back into the same ``Selector``). None when it cannot be one mapping: two
    conditions on one key, or fields a translation never sets."""
    if selector.absent or selector.present or selector.any_of or selector.threshold is not None:
        return None
    items: dict[str, str] = {}
    for key, value in selector.match:
        items[key] = _scalar(value)
    for condition in selector.filters:
        if condition.key in items:
            return None
        if condition.op == "eq":
            return None
        if condition.op in ("in", "not_in"):
            value = "[" + ", ".join(_scalar(v) for v in condition.values) + "]"
        else:
            value = _scalar(condition.values[0])
        items[condition.key] = f"{{{_FILTER_WORDS[condition.op]}: {value}}}"
    text = f"{{metric: {_scalar(selector.metric)}"
    if items:
        text += ", match: {" + ", ".join(f"{_scalar(k)}: {v}" for k, v in items.items()) + "}"
    return text + "}"


def translation_note(translation: Translation) -> str:
    """The note on a query translated into a selector: what it became and what of it is not run."""
    selector = translation.selector
    text = f"translated from PromQL to {selector_yaml(selector) or selector.metric}"
    if translation.functions or translation.range is not None:
        text += f"; {translation.not_run()} not run"
    text += f": modelotel counts the events of {selector.metric} itself, from OTLP files or from Prometheus by name"
    if translation.grouping:
        text += f" (all matching series together: the groups of {' and '.join(translation.grouping)} are not kept)"
    return "; ".join([text, *translation.warnings])
