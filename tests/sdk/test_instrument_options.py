"""``@instrument_model``'s options are defined once (modelotel.instrument.options.ModelOptions).

instrument_model's signature is written out (for IDEs and type checkers); these tests fail when it,
the re-decoration cache key or the options table in docs/instrumentation.md drift from the definition.
"""

from __future__ import annotations

import dataclasses
import inspect
import pathlib
import re

import pytest

from modelotel import instrument_model
from modelotel.instrument.decorations import options_key
from modelotel.instrument.options import OPTION_NAMES, POSITIONAL, ModelOptions

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "instrumentation.md"


def test_signature_is_the_definition():
    params = list(inspect.signature(instrument_model).parameters.values())
    fields = dataclasses.fields(ModelOptions)
    assert [p.name for p in params] == [f.name for f in fields] == list(OPTION_NAMES)
    for p, f in zip(params, fields, strict=True):
        assert p.default == f.default, p.name
        assert p.annotation == f.type, p.name  # both strings (from __future__ import annotations)
        expected = p.POSITIONAL_OR_KEYWORD if p.name in POSITIONAL else p.KEYWORD_ONLY
        assert p.kind is expected, p.name


def _distinct(name: str) -> object:
    """A value for option ``name`` different from its default (any type: the key only needs to differ)."""
    default = getattr(ModelOptions(), name)
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1
    if isinstance(default, tuple):
        return ("x",)
    return f"other-{name}"


@pytest.mark.parametrize("name", OPTION_NAMES)
def test_cache_key_covers_every_option(name):
    base = ModelOptions()
    changed = dataclasses.replace(base, **{name: _distinct(name)})
    assert options_key(*changed.values()) != options_key(*base.values())


def test_docs_table_lists_every_option():
    text = DOCS.read_text()
    table = text.split("| option | default | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = set()
    for row in table.splitlines()[2:]:
        first = row.split("|")[1]
        documented.update(re.findall(r"`([a-z_]+)`", first))
    assert documented == set(OPTION_NAMES)
