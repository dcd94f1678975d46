"""Spec problems and where they are: ``SpecError`` (one or many problems, each ``file: field.path: message
(line N)``), ``SpecNote`` (loaded, but worth a word) and ``Where`` (a position in a spec file). Every loader
reports through these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def _headline(file: str, field_path: str, message: str, line: int | None, column: int | None) -> str:
    text = ": ".join(part for part in (file, field_path, message) if part)
    if line is not None:
        text += f" (line {line}" + (f", column {column})" if column is not None else ")")
    return text


class SpecError(ValueError):
    """A spec problem: ``str()`` is ``"file: field.path: message (line N)"``, one line per problem."""

    def __init__(
        self,
        file: str,
        field_path: str,
        message: str,
        line: int | None = None,
        column: int | None = None,
        others: Sequence[SpecError] = (),
    ) -> None:
        self.file = file
        self.field_path = field_path
        self.message = message
        self.line = line
        self.column = column
        self.others = list(others)
        super().__init__(str(self))

    def headline(self) -> str:
        return _headline(self.file, self.field_path, self.message, self.line, self.column)

    def __str__(self) -> str:
        return "\n".join([self.headline(), *(other.headline() for other in self.others)])


@dataclass(frozen=True)
class SpecNote:
    """Something that loaded but deserves a word, e.g. an ignored OpenSLO kind."""

    file: str
    field_path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return _headline(self.file, self.field_path, self.message, self.line, None)


@dataclass(frozen=True)
class Where:
    """A position in a spec file: file, an optional document label, a field path and the line."""

    file: str
    prefix: str = ""  # "document 2 (SLO search-slo)"; "" for a single native document
    path: str = ""  # "slos[0].threshold", "spec.objectives[1].target"
    line: int | None = None

    @property
    def field_path(self) -> str:
        return ": ".join(part for part in (self.prefix, self.path) if part)

    def key(self, key: object, line: int | None = None) -> Where:
        path = f"{self.path}.{key}" if self.path else str(key)
        return Where(self.file, self.prefix, path, line if line is not None else self.line)

    def index(self, index: int, line: int | None = None) -> Where:
        return Where(self.file, self.prefix, f"{self.path}[{index}]", line if line is not None else self.line)

    def error(self, message: str) -> SpecError:
        return SpecError(self.file, self.field_path, message, self.line)

    def note(self, message: str) -> SpecNote:
        return SpecNote(self.file, self.field_path, message, self.line)

    def source(self) -> str:
        return f"{self.file}: {self.field_path}"


