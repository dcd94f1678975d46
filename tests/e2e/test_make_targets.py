"""The README's two commands install what each needs: `make demo` the demo's extras only (not the test tools),
`make test` everything; a venv that `make test` set up also satisfies `make demo` (no second install)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def dry_run(target: str, venv: Path) -> list[str]:
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed: the README's commands need it")
    proc = subprocess.run(
        [make, "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    return proc.stdout.splitlines()


def declared_extras() -> set[str]:
    """The extras pyproject.toml declares (read by hand: tomllib is 3.11+, and this module is collected on 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([A-Za-z0-9_-]+)\s*=", section, re.M))


def installed_extras(lines: list[str]) -> set[str]:
    found = [m.group(1) for line in lines if (m := re.search(r"pip install --quiet -e '\.\[([^\]]*)\]'", line))]
    assert len(found) == 1, lines
    return set(found[0].split(","))


def test_demo_installs_the_examples_extras_without_the_test_tools(tmp_path):
    extras = installed_extras(dry_run("demo", tmp_path / "venv"))
    declared = declared_extras()
    assert "dev" not in extras and {"examples", "fastapi"} <= extras <= set(declared)
    assert installed_extras(dry_run("install", tmp_path / "venv")) == extras | {"dev"}


def test_a_test_venv_satisfies_the_demo(tmp_path):
    venv = tmp_path / "venv"
    stamps = [stamp for line in dry_run("install", venv) if line.startswith("touch ") for stamp in line.split()[1:]]
    assert len(stamps) == 2, stamps  # the test venv's stamp and the demo's
    (venv / "bin").mkdir(parents=True)
    for stamp in stamps:
        Path(stamp).touch()
    assert not any("pip install" in line for line in dry_run("demo", venv))
