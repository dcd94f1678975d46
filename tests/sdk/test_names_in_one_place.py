"""config.py is the SDK's only reader of the environment, conventions.py the only home of attribute keys.

Scans the SDK's source (the evaluator and the CLI have their own rules): no ``os.environ``/``getenv``
outside config.py, no ``MODELOTEL_*``/``OTEL_*`` name written out elsewhere, and no literal that looks
like a telemetry attribute key (``ml.*``, ``http.*``, ``rpc.*`` ...) outside conventions.py.
"""

from __future__ import annotations

import ast
import pathlib
import re

import modelotel.config as config

SDK = pathlib.Path(__file__).resolve().parents[2] / "sdk" / "modelotel"
OUTSIDE = ("evaluator", "cli", "__main__.py")

ENV_NAME = re.compile(r"^(MODELOTEL|OTEL)_[A-Z0-9_]+$")
ATTRIBUTE_KEY = re.compile(r"^(ml|http|rpc|url|network|server|client|user_agent|exception|service|error)\.[a-z_.]+$")
# ASGI message types look like keys but are the protocol's, not telemetry's.
ASGI_MESSAGES = {
    "http.request",
    "http.disconnect",
    "http.response.start",
    "http.response.body",
    "http.response.trailers",
    "http.response.pathsend",
}


def _sdk_modules():
    for path in sorted(SDK.rglob("*.py")):
        rel = path.relative_to(SDK)
        if rel.parts[0] in OUTSIDE:
            continue
        yield rel, ast.parse(path.read_text())


def _strings(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node


def test_only_config_reads_the_environment():
    found = []
    for rel, tree in _sdk_modules():
        if rel.as_posix() == "config.py":
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("environ", "getenv", "environb")
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ):
                found.append(f"{rel}:{node.lineno}: os.{node.attr}")
        for node in _strings(tree):
            if ENV_NAME.match(node.value):
                found.append(f"{rel}:{node.lineno}: {node.value!r} (a config constant?)")
    assert not found, "\n".join(found)


def test_every_env_var_is_a_documented_constant():
    source = (SDK / "config.py").read_text()
    tree = ast.parse(source)
    body = tree.body
    names = []
    for i, node in enumerate(body):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            target = node.targets[0]
            if isinstance(target, ast.Name) and ENV_NAME.match(node.value.value.replace("{framework}", "X")):
                names.append(target.id)
                documented = (
                    i + 1 < len(body)
                    and isinstance(body[i + 1], ast.Expr)
                    and isinstance(body[i + 1].value, ast.Constant)
                ) or _comment_above(source, node.lineno)
                assert documented, f"config.{target.id}: document the variable (a docstring below or a comment above)"
    assert len(names) >= 20
    # every literal env var name in config.py is one of the constants
    constants = {getattr(config, n) for n in names}
    for node in _strings(tree):
        if ENV_NAME.match(node.value):
            assert node.value in constants, node.value


def _comment_above(source: str, lineno: int) -> bool:
    lines = source.splitlines()
    j = lineno - 2
    while j >= 0 and lines[j].startswith(("ENV_", "DEFAULT_")):
        j -= 1
    return j >= 0 and lines[j].startswith("#")


def test_attribute_keys_live_in_conventions():
    found = []
    for rel, tree in _sdk_modules():
        if rel.as_posix() == "conventions.py":
            continue
        for node in _strings(tree):
            if ATTRIBUTE_KEY.match(node.value) and node.value not in ASGI_MESSAGES:
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert not found, "\n".join(found)
