"""The package as a user installs it: the wheel built from a copy of the sources, installed (not editable) into a
fresh venv with its dependencies, and used from outside the checkout.

The smoke script imports modelotel, decorates a function, exports to a file, and the installed `modelotel`
command evaluates that file against a one-SLO spec and prints its help; `py.typed` (PEP 561) is in the installed
package. Cost: about a minute (pip downloads come from pip's own cache after the first run). End-to-end: it runs
on the main Python only (tests/conftest.py marks it `e2e`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SMOKE = """
import pathlib, sys

import modelotel

here = pathlib.Path.cwd()
assert not str(pathlib.Path(modelotel.__file__)).startswith(sys.argv[1]), modelotel.__file__
assert (pathlib.Path(modelotel.__file__).parent / "py.typed").is_file(), "py.typed not installed"
modelotel.configure(service_name="wheel-smoke", exporter="file", path=str(here / "telemetry.jsonl"))


@modelotel.instrument_model(name="smoke", version="1", labels=["no", "yes"])
def predict(x):
    return [1 - x, x]


for i in range(100):
    predict(i / 100)
modelotel.shutdown()
print(modelotel.__version__)
"""

SLO = """slos:
  - name: smoke-errors
    model: smoke
    sli: error_ratio
    objective: 0.99
    window: 1h
"""


def run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MODELOTEL_EXPORT_FILE")}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    # a copy of what the wheel is built from, so the build leaves nothing in the checkout
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "sdk" / "modelotel", src / "sdk" / "modelotel", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(src)], tmp_path)
    (wheel,) = dist.glob("modelotel-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "modelotel/py.typed" in names
    assert "modelotel/evaluator/__init__.py" in names  # subpackages are found
    assert not any("tests/" in n or n.startswith("sdk/") for n in names), names

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)], tmp_path)

    work = tmp_path / "work"
    work.mkdir()
    (work / "smoke.py").write_text(SMOKE)
    version = run([str(python), "smoke.py", str(ROOT)], work).stdout.strip()
    assert version == run([sys.executable, "-c", "import modelotel; print(modelotel.__version__)"], ROOT).stdout.strip()
    assert (work / "telemetry.jsonl").stat().st_size > 0

    (work / "slo.yaml").write_text(SLO)
    cli = venv / "bin" / "modelotel"
    out = run([str(cli), "evaluate", "--slo", "slo.yaml", "--data", "telemetry.jsonl", "--format", "json"], work)
    (result,) = [s for s in json.loads(out.stdout)["slos"] if s["name"] == "smoke-errors"]
    assert result["events"] == 100, result
    assert "evaluate" in run([str(cli), "--help"], work).stdout
