"""SLO spec files -> ``slo.SLO``: ``load_specs`` reads the files and hands each document to its loader.

Loaders, siblings that build only on ``errors`` and ``fields``: ``native`` (a ``slos:`` list), ``openslo``, ``sloth``;
``promql`` translates the PromQL both foreign formats may carry.

A file holds one or more YAML documents. Each is native (a mapping with a top-level ``slos:`` list), OpenSLO
(``apiVersion: openslo/v1`` or ``openslo/v1alpha``, one object per document or a list of objects) or Sloth
(``version: prometheus/v1``, or ``apiVersion: sloth.slok.dev/v1``; sloth.py). The OpenSLO objects of all files form
one namespace, so ``indicatorRef``, ``alertPolicyRef`` and ``conditionRef`` may point into another file.
docs/slo-spec.md documents the formats and how every field maps.

Errors
    Each SLO (a native ``slos[i]`` entry, an OpenSLO document) is checked up to its first problem; the problems of
    all SLOs and files are gathered into one ``SpecError`` (the first, with the rest in ``others``). Problems name
    the file, the field path and, when known, the line.
Notes
    What loads but deserves a word (ignored OpenSLO kinds and fields, alert tiers that can never fire) is a
    ``SpecNote``. ``load_specs`` returns them; ``load_slos`` logs them as warnings.

Attribute filters
    Filter values are compared as text (as ``ledger.matches`` does): strings as written, booleans as ``true`` /
    ``false``, integers in decimal. Float values are refused because YAML reads ``1.10`` as ``1.1``; quote them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..slo import SLO
from . import native, openslo, sloth
from .errors import SpecError, SpecNote, Where
from .fields import SLI_KINDS, describe, did_you_mean, line_of, read_documents, sequence

__all__ = [
    "SLI_KINDS",
    "SpecError",
    "SpecNote",
    "SpecSet",
    "Where",
    "load_slos",
    "load_specs",
]

log = logging.getLogger(__name__)


# -- loading --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecSet:
    """What a set of spec files defines: the SLOs in file order, and notes worth showing the user."""

    slos: tuple[SLO, ...]
    notes: tuple[SpecNote, ...]


def _expand(paths: Sequence[str], errors: list[SpecError]) -> list[str]:
    """Files of ``paths``; a directory stands for its ``*.yaml``/``*.yml`` files, recursively, sorted."""
    files = []
    for path in paths:
        path = str(path)
        if Path(path).is_dir():
            found = sorted(str(p) for p in Path(path).rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                errors.append(SpecError(path, "", "directory has no .yaml or .yml files"))
            files += found
        else:
            files.append(path)
    return files


def _split_documents(path: str, documents: list[Any], errors: list[SpecError]) -> list[tuple[str, Any, Where]]:
    """``("native" | "openslo" | "sloth", body, where)`` per non-empty document; lists of objects give one per
    object."""
    out = []
    for number_, doc in enumerate(documents, 1):
        if doc is None:
            continue
        label = f"document {number_}"
        where = Where(path, label if len(documents) > 1 else "", "", line_of(doc))
        if isinstance(doc, dict) and "apiVersion" in doc:
            out.append(("sloth" if sloth.is_sloth(doc) else "openslo", doc, Where(path, label, "", line_of(doc))))
        elif isinstance(doc, list) and doc and isinstance(doc[0], dict) and "apiVersion" in doc[0]:
            for index, (item, at) in enumerate(sequence(doc, Where(path, label, "", line_of(doc)))):
                kind = "sloth" if sloth.is_sloth(item) else "openslo"
                out.append((kind, item, Where(path, f"{label}, item {index + 1}", "", at.line)))
        elif sloth.is_sloth(doc):  # version: prometheus/v1, before "slos" makes it look native
            out.append(("sloth", doc, where))
        elif isinstance(doc, dict) and "slos" in doc:
            out.append(("native", doc, where))
        else:
            keys = [k for k in doc if isinstance(k, str)] if isinstance(doc, dict) else []
            hint = next((h for h in (did_you_mean(k, ("slos", "apiVersion")) for k in keys) if h), "")
            errors.append(
                where.error(
                    "not an SLO spec: expected a top-level 'slos:' list (native format), 'apiVersion: openslo/v1' "
                    f"(OpenSLO) or 'version: prometheus/v1' (Sloth), got {describe(doc)}"
                    + (f" with keys {', '.join(keys)}{hint}" if keys else "")
                )
            )
    return out


def load_specs(paths: Sequence[str]) -> SpecSet:
    """Read every SLO of the native and OpenSLO spec files (or directories of them) in ``paths``.

    Raises ``SpecError`` listing every problem found (the first per SLO), or when no SLO is defined at all.
    """
    notes: list[SpecNote] = []
    errors: list[SpecError] = []
    slos: list[SLO] = []
    objects: list[tuple[Any, Where]] = []
    found: list[str] = []  # what the files hold besides SLOs, for "no SLOs defined"
    for path in _expand(paths, errors):
        try:
            documents = read_documents(path)
        except SpecError as exc:
            errors.append(exc)
            continue
        for fmt, body, where in _split_documents(path, documents, errors):
            if fmt == "openslo":
                objects.append((body, where))
                continue
            try:
                if fmt == "sloth":
                    slos += sloth.translate_document(body, where, notes, errors, found)
                else:
                    slos += native.load_document(body, where, notes, errors)
            except SpecError as exc:
                errors.append(exc)
    slos += openslo.translate(objects, notes, errors)

    seen: dict[str, SLO] = {}
    for slo in slos:
        if slo.name in seen:
            file, _, rest = slo.source.partition(": ")
            errors.append(SpecError(file, rest, f"SLO name {slo.name!r} is already used by {seen[slo.name].source}"))
        seen.setdefault(slo.name, slo)
    if errors:
        raise SpecError(
            errors[0].file, errors[0].field_path, errors[0].message, errors[0].line, errors[0].column, errors[1:]
        )
    if not slos:
        raise SpecError(", ".join(map(str, paths)) or "(no files)", "", "no SLOs defined" + _found(objects, found))
    return SpecSet(tuple(slos), tuple(notes))


def _found(objects: list[tuple[Any, Where]], found: list[str]) -> str:
    """``": found 2 DataSource (a, b), ..."``: what the files held instead of SLOs."""
    kinds: dict[str, list[str]] = {}
    for body, _ in objects:
        if isinstance(body, dict):
            metadata = body.get("metadata")
            name = metadata.get("name") if isinstance(metadata, dict) else None
            kinds.setdefault(str(body.get("kind")), []).append(str(name))
    parts = [f"{len(names)} {kind} ({', '.join(names)})" for kind, names in kinds.items()]
    parts += [f"{found.count(what)} {what}" for what in dict.fromkeys(found)]
    if not parts:
        return ""
    return (
        f": found {', '.join(parts)}; an SLO is an entry of a native 'slos:' list, an OpenSLO 'kind: SLO' or an SLO "
        "of a Sloth spec"
    )


def load_slos(paths: list[str]) -> list[SLO]:
    """The SLOs of the spec files in ``paths`` (see ``load_specs``); notes are logged as warnings."""
    specs = load_specs(paths)
    for note in specs.notes:
        log.warning("%s", note)
    return list(specs.slos)
