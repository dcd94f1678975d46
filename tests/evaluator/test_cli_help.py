"""``modelotel <command> --help`` for every subcommand, as a user runs it: a real subprocess.

The subcommands are discovered from the parser (``build_parser().commands``), so a new one cannot escape. Each
help must have a description (what the command does and what it reads), at least one example that the real
parser accepts, an exit-code section, and every option a non-empty help that names its default when it has one.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys

import pytest

from modelotel.cli import build_parser
from modelotel.cli.shared import shown_default

COMMANDS = sorted(build_parser().commands)
ENV = {**os.environ, "COLUMNS": "100"}


def help_text(command: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "modelotel", command, "--help"], capture_output=True, text=True, timeout=60, env=ENV
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def section(text: str, title: str) -> list[str]:
    """The lines of the section that starts with ``title:`` up to the next unindented line."""
    lines = text.splitlines()
    start = lines.index(f"{title}:")
    out = []
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break
        out.append(line)
    return out


def examples(text: str) -> list[str]:
    """The example command lines, continuations (`` \\``) joined, environment assignments dropped."""
    commands, current = [], ""
    for line in section(text, "examples"):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += " " + stripped
        if current.endswith("\\"):
            current = current[:-1]
            continue
        commands.append(current.strip())
        current = ""
    return commands


def option_help(text: str, option: str) -> str:
    """The help of one option in the ``options:`` section: after the option and its metavar on its line (two
    spaces apart), and the more indented lines after it."""
    lines = section(text, "options")
    pattern = re.compile(rf"^  (?:-\w, )?{re.escape(option)}(?:[ ,]|$)")
    for i, line in enumerate(lines):
        if pattern.match(line):
            first = re.split(r"\s{2,}", line.strip(), maxsplit=1)
            block = first[1:]
            for more in lines[i + 1 :]:
                if not more.startswith(" " * 5):
                    break
                block.append(more.strip())
            return " ".join(block)
    raise AssertionError(f"{option} is not in the options section")


def test_every_subcommand_is_found():
    assert {"evaluate", "gate", "drift", "compare", "fairness", "performance", "report", "serve"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_subcommand_help_has_description_examples_exit_codes_and_defaults(command):
    text = help_text(command)
    parser = build_parser()
    sub = parser.commands[command]

    # a description between the usage and the options: at least a couple of sentences, about reading something
    head = re.split(r"\n(?:positional arguments|options):", text)[0]
    description = head.split("\n\n", 1)[1] if "\n\n" in head else ""
    assert len(description.split()) >= 25, description
    assert re.search(r"\bReads?\b", description), "the description says what the command reads"

    # examples the real parser accepts, for this very command
    found = examples(text)
    assert found, "no example"
    for line in found:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
        if ">" in words:
            words = words[: words.index(">")]  # the output redirected to a file
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            words.pop(0)  # MODELOTEL_FEEDBACK_KEY=... before the command
        assert words[:2] == ["modelotel", command], line
        args = build_parser().parse_args(words[1:])
        assert args.command == command and args.func

    # exit codes: 0 and the internal error at least, each with its meaning, in order
    codes = []
    for line in section(text, "exit codes"):
        m = re.match(r"^  (\d+)\s+(\S.*)$", line)
        if m:
            codes.append(int(m.group(1)))
    assert codes == sorted(codes) and 0 in codes and 5 in codes and len(codes) >= 3, codes

    # every option: a help, naming its default when it has one
    for action in sub._actions:  # argparse lists a parser's options only here
        if action.help == argparse.SUPPRESS or not action.option_strings:
            continue
        option = max(action.option_strings, key=len)
        help_ = option_help(text, option)
        assert len(help_.split()) >= 2, f"{command} {option}: no help ({help_!r})"
        default = shown_default(action)
        if default is not None:
            assert default in help_, f"{command} {option}: the help does not name its default {default!r}: {help_!r}"


def test_top_level_help_lists_every_subcommand_with_its_summary():
    proc = subprocess.run(
        [sys.executable, "-m", "modelotel", "--help"], capture_output=True, text=True, timeout=60, env=ENV
    )
    assert proc.returncode == 0
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\b", proc.stdout, re.M), command


def test_a_default_is_added_to_an_option_help_that_does_not_name_it():
    sub = build_parser().commands["compare"]
    (alpha,) = [a for a in sub._actions if "--alpha" in a.option_strings]
    assert alpha.help.endswith("(default: 0.05)")
    (fail_on,) = [a for a in build_parser().commands["drift"]._actions if "--fail-on" in a.option_strings]
    assert fail_on.help.endswith("(default: psi)")
