"""The package's architecture, checked on its source (docs/architecture.md describes it).

* No import cycle among the package's modules, lazy imports inside functions included.
* No import from a lower layer to a higher one (the layer table below; within one layer, modules may import each
  other). The evaluator uses only `_version`, `conventions`, `config` and `sketch` of the SDK; the SDK never uses
  the evaluator or the CLI; the spec loaders (native, OpenSLO, Sloth) do not import each other. Compatibility
  modules (old import paths, docstring "Compatibility: moved to ...") are imported by no module of the package.
* No module uses another module's underscore names: `from x import _y`, `x._y` on an imported module, or
  `obj._y` where only other modules define `_y` (the `_version` and `_otel_compat` modules are meant to be shared).
* OpenTelemetry SDK privates only in `_otel_compat.py`: `opentelemetry...._internal` or `_name` imports, and
  `obj._name` where `obj` comes from an `opentelemetry` import or `_name` is defined by no module of ours (a
  heuristic: an OpenTelemetry object held in a variable; other libraries' privates are listed in
  FOREIGN_PRIVATES).

Imports are read with `ast` (nothing is imported), the way Python resolves them: `from a import b` depends on the
module `a.b` when there is one, else on `a`.
"""

from __future__ import annotations

import ast
import fnmatch
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "sdk" / "modelotel"
PKG = "modelotel"

# Module names relative to the package ("" is the package's __init__); a pattern "x.*" matches x's submodules and
# an exact name wins over a pattern. Lower layers come first and may never import a later one.
SDK_LAYERS: list[list[str]] = [
    ["_version", "conventions"],
    ["config", "_otel_compat", "sketch", "privacy", "extract", "ood"],
    [
        "labels",
        "metrics",
        "metrics.selftelemetry",
        "metrics.buffers",
        "metrics.exemplars",
        "metrics.recorder",
        "features",
        "distributions",
        "feedback",
        "feedback.*",
    ],
    ["tracing.span", "otlp", "otlp.*"],
    ["tracing", "tracing.*"],
    ["metrics.export", "sigterm"],
    ["runtime"],
    ["feedback.api"],
    ["instrument", "instrument.*"],
    ["integrations", "integrations.*"],
    [""],
]
EVALUATOR_LAYERS: list[list[str]] = [
    ["evaluator", "evaluator.slo", "evaluator.units", "evaluator.semconv", "evaluator.durations"],
    ["evaluator.spec", "evaluator.spec.*"],
    ["evaluator.sources", "evaluator.sources.*"],
    ["evaluator.quality", "evaluator.quality.*"],
    ["evaluator.engine", "evaluator.engine.*"],
    ["evaluator.outputs", "evaluator.outputs.*"],
    ["evaluator.serve", "evaluator.serve.*"],
]
# Above both sides: the command line.
TOP_LAYERS: list[list[str]] = [["cli", "cli.*"], ["__main__"]]
# The SDK modules the evaluator may use: names and pure data structures, no runtime.
EVALUATOR_MAY_USE = {"_version", "conventions", "config", "sketch"}
# Spec loaders are siblings: each translates one format into `slo.SLO` and none imports another.
SPEC_LOADERS = {"evaluator.spec.native", "evaluator.spec.openslo", "evaluator.spec.sloth"}
# Underscore modules that are meant to be imported across the package.
SHARED_PRIVATE_MODULES = {"_version", "_otel_compat"}
OTEL_COMPAT = "_otel_compat"


@dataclass(frozen=True)
class Module:
    name: str  # relative to the package: "" for modelotel/__init__.py, "metrics.export", ...
    path: Path
    is_package: bool
    tree: ast.Module

    @property
    def is_compat_shim(self) -> bool:
        doc = ast.get_docstring(self.tree) or ""
        return doc.startswith("Compatibility: moved to")


def load_modules() -> dict[str, Module]:
    mods = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        name = ".".join(parts)
        mods[name] = Module(name, path, is_package, ast.parse(path.read_text(), str(path)))
    return mods


MODULES = load_modules()


def absolute(name: str) -> str:
    return f"{PKG}.{name}" if name else PKG


def relative(full: str) -> str | None:
    if full == PKG:
        return ""
    if full.startswith(PKG + "."):
        return full[len(PKG) + 1 :]
    return None


def resolve_from(mod: Module, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names."""
    if not node.level:
        return node.module or ""
    base = absolute(mod.name).split(".")
    if not mod.is_package:
        base = base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{absolute(self.source)} -> {absolute(self.target)} (line {self.line})"


def edges_of(mod: Module) -> list[Edge]:
    """Every import of a package module by `mod`, at any depth (functions included)."""
    out = []
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.ImportFrom):
            target = relative(resolve_from(mod, node))
            if target is None:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                dep = sub if sub in MODULES else target
                if dep in MODULES and dep != mod.name:
                    out.append(Edge(mod.name, dep, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                dep = relative(alias.name)
                if dep is not None and dep in MODULES and dep != mod.name:
                    out.append(Edge(mod.name, dep, node.lineno))
    return out


EDGES = sorted({e for m in MODULES.values() for e in edges_of(m)}, key=str)


def layer_of(name: str) -> tuple[str, int] | None:
    """(side, rank): side "sdk", "evaluator" or "top"; ranks compare within a side (and "top" is above all)."""
    tables = (("sdk", SDK_LAYERS), ("evaluator", EVALUATOR_LAYERS), ("top", TOP_LAYERS))
    for side, table in tables:
        for rank, names in enumerate(table):
            if name in names:
                return side, rank
    best = None
    for side, table in tables:
        for rank, names in enumerate(table):
            for pattern in names:
                matches = pattern.endswith(".*") and fnmatch.fnmatchcase(name, pattern)
                if matches and (best is None or len(pattern) > best[0]):
                    best = (len(pattern), side, rank)
    return (best[1], best[2]) if best else None


def layer_problem(edge: Edge) -> str | None:
    source, target = MODULES[edge.source], MODULES[edge.target]
    if target.is_compat_shim:
        return "imports a compatibility module: use the new path"
    if source.is_compat_shim:
        return None
    src, dst = layer_of(edge.source), layer_of(edge.target)
    if src is None or dst is None:
        return None  # reported by test_every_module_has_a_layer
    if src[0] == "top":
        return None if dst[0] != "top" or dst[1] <= src[1] else "the CLI layers upwards"
    if dst[0] == "top":
        return "imports the CLI"
    if src[0] == "sdk" and dst[0] == "evaluator":
        return "the SDK imports the evaluator"
    if src[0] == "evaluator" and dst[0] == "sdk":
        return None if edge.target in EVALUATOR_MAY_USE else f"the evaluator uses only {sorted(EVALUATOR_MAY_USE)}"
    if dst[1] > src[1]:
        return f"layer {src[1]} imports layer {dst[1]} ({src[0]})"
    if edge.source in SPEC_LOADERS and edge.target in SPEC_LOADERS:
        return "one spec loader imports another"
    return None


def test_every_module_has_a_layer():
    missing = [absolute(n) for n, m in MODULES.items() if layer_of(n) is None and not m.is_compat_shim]
    assert missing == [], "add these to the layer table in tests/test_architecture.py and docs/architecture.md"


def test_no_import_from_a_lower_layer_to_a_higher_one():
    problems = [f"{e}: {p}" for e in EDGES if (p := layer_problem(e))]
    assert problems == [], "\n".join(problems)


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module, or a module importing itself (Tarjan)."""
    graph: dict[str, set[str]] = {n: set() for n in MODULES}
    for e in edges:
        graph[e.source].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        # iterative, so deep graphs do not hit the recursion limit
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        while work:
            node, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        found.append(sorted(absolute(c) for c in comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_cycle_finder_finds_a_lazy_cycle():
    a, b = next(iter(MODULES)), list(MODULES)[1]
    assert cycles([Edge(a, b, 1), Edge(b, a, 2)]) == [sorted([absolute(a), absolute(b)])]


def test_no_import_cycle():
    found = cycles(EDGES)
    detail = [str(e) for e in EDGES if any(absolute(e.source) in c and absolute(e.target) in c for c in found)]
    assert found == [], "\n".join(detail)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_reach_ins(mod: Module) -> list[str]:
    out = []
    bound_modules: dict[str, str] = {}  # local name -> package module it is bound to
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.ImportFrom):
            target = relative(resolve_from(mod, node))
            if target is None:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                if sub in MODULES:
                    bound_modules[alias.asname or alias.name] = sub
                    if is_private(alias.name) and alias.name not in SHARED_PRIVATE_MODULES:
                        out.append(f"line {node.lineno}: imports the private module {absolute(sub)}")
                elif is_private(alias.name) and target != mod.name:
                    out.append(f"line {node.lineno}: from {absolute(target)} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                dep = relative(alias.name)
                if dep is None or dep not in MODULES:
                    continue
                if alias.asname:
                    bound_modules[alias.asname] = dep
                last = dep.rsplit(".", 1)[-1]
                if is_private(last) and last not in SHARED_PRIVATE_MODULES:
                    out.append(f"line {node.lineno}: imports the private module {alias.name}")
    for node in ast.walk(mod.tree):
        if (
            isinstance(node, ast.Attribute)
            and is_private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound_modules
            and bound_modules[node.value.id] != mod.name
        ):
            out.append(f"line {node.lineno}: {node.value.id}.{node.attr} ({absolute(bound_modules[node.value.id])})")
    return out


def private_attributes_defined(mod: Module) -> set[str]:
    """Underscore attributes `mod` defines: methods and class attributes, `obj._x = ...` and `__slots__` entries."""
    out = set()
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and is_private(item.name):
                    out.add(item.name)
                targets = item.targets if isinstance(item, ast.Assign) else [getattr(item, "target", None)]
                for t in targets:
                    if isinstance(t, ast.Name) and is_private(t.id):
                        out.add(t.id)
                    slots = isinstance(t, ast.Name) and t.id == "__slots__"
                    if slots and isinstance(item.value, (ast.Tuple, ast.List)):
                        out.update(e.value for e in item.value.elts if isinstance(e, ast.Constant))
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for sub in ast.walk(t):
                    if isinstance(sub, ast.Attribute) and is_private(sub.attr) and is_self(sub.value):
                        out.add(sub.attr)
    return {name for name in out if is_private(name)}


def is_self(node: ast.expr) -> bool:
    """`self`, `cls` or `super()`: an object's own attributes."""
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


DEFINED_BY = {m.name: private_attributes_defined(m) for m in MODULES.values()}
DEFINED_ANYWHERE = set().union(*DEFINED_BY.values())


def private_attribute_uses(mod: Module) -> list[tuple[ast.Attribute, str | None]]:
    """`obj._x` on something other than self/cls/super(): (node, the name the chain starts from)."""
    out = []
    for node in ast.walk(mod.tree):
        if not isinstance(node, ast.Attribute) or not is_private(node.attr):
            continue
        if is_self(node.value):
            continue
        out.append((node, root_name(node.value)))
    return out


def instance_reach_ins(mod: Module) -> list[str]:
    """`obj._x` where only other modules of the package define `_x` (e.g. a module setting another's private)."""
    out = []
    for node, _root in private_attribute_uses(mod):
        owners = [n for n, names in DEFINED_BY.items() if node.attr in names]
        if owners and mod.name not in owners:
            out.append(f"line {node.lineno}: .{node.attr} (defined in {', '.join(absolute(o) for o in owners)})")
    return out


def test_no_module_imports_another_modules_private_names():
    problems = [
        f"{m.path.relative_to(PACKAGE_DIR.parent)}: {p}"
        for m in MODULES.values()
        for p in private_reach_ins(m) + instance_reach_ins(m)
    ]
    assert problems == [], "\n".join(problems)


def root_name(node: ast.expr) -> str | None:
    """The name an attribute chain starts from: `trace.get_tracer_provider()._x` -> "trace"."""
    while True:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        else:
            return None


# Underscore attributes of other libraries than OpenTelemetry, where the package uses them on purpose.
FOREIGN_PRIVATES = {
    "sketch": {
        "_mapping",
        "_multiplier",
        "_offset",
        "_store",
        "_negative_store",
        "_zero_count",
        "_count",
        "_sum",
        "_min",
        "_max",
    },  # ddsketch: LogSketch.to_ddsketch/from_ddsketch copy its buckets exactly
}


def otel_privates(mod: Module) -> list[str]:
    out = []
    otel_names: set[str] = set()
    other_names: set[str] = set()
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("opentelemetry"):
            if any(is_private(part) for part in node.module.split(".")):
                out.append(f"line {node.lineno}: from {node.module} import ...")
            for alias in node.names:
                otel_names.add(alias.asname or alias.name)
                if is_private(alias.name):
                    out.append(f"line {node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and not node.level and not (node.module or "").startswith(PKG):
            other_names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("opentelemetry"):
                    otel_names.add(alias.asname or alias.name.split(".")[0])
                    if any(is_private(part) for part in alias.name.split(".")):
                        out.append(f"line {node.lineno}: import {alias.name}")
                elif not alias.name.startswith(PKG):
                    other_names.add(alias.asname or alias.name.split(".")[0])
    allowed = FOREIGN_PRIVATES.get(mod.name, set())
    for node, root in private_attribute_uses(mod):
        if root in otel_names:
            out.append(f"line {node.lineno}: .{node.attr} on {root}")
        elif node.attr not in DEFINED_ANYWHERE and root not in other_names and node.attr not in allowed:
            # an underscore attribute no module of ours defines, on an object we did not get from another library:
            # an OpenTelemetry object (a tracer, a provider, a span processor)
            out.append(f"line {node.lineno}: .{node.attr} (not ours: OpenTelemetry's?)")
    return out


def test_opentelemetry_sdk_privates_only_in_the_compat_module():
    problems = [
        f"{m.path.relative_to(PACKAGE_DIR.parent)}: {p}"
        for m in MODULES.values()
        if m.name != OTEL_COMPAT
        for p in otel_privates(m)
    ]
    assert problems == [], "\n".join(problems)


def test_the_checks_see_what_they_check():
    """The table and the readers find the package's modules and edges (a renamed folder would silence them)."""
    assert "" in MODULES and "cli" in MODULES and "evaluator" in MODULES
    assert any(e.source == "cli" for e in EDGES)
    assert len(EDGES) > 100


def synthetic(name: str, source: str) -> Module:
    return Module(name, PACKAGE_DIR / (name.replace(".", "/") + ".py"), False, ast.parse(source))


def test_the_private_checks_fire():
    reach = synthetic("evaluator.engine.fake", "from ...sketch import _private\nfrom ... import sketch\nsketch._x\n")
    assert len(private_reach_ins(reach)) == 2
    otel = synthetic(
        "metrics.fake",
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.metrics._internal import point\n"
        "TracerProvider()._active_span_processor\n",
    )
    assert len(otel_privates(otel)) == 2
    upwards = Edge("sketch", "runtime", 1)
    assert "layer 1 imports layer 6" in (layer_problem(upwards) or "")
