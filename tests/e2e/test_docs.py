"""Every fenced code block of README.md, docs/*.md and collector_config/README.md runs here: one test per block,
with the id ``path:line`` (the line of the opening fence).

**Workspace.** The blocks of one file run in document order in one temporary directory and share its files
(never variables): running block k first runs blocks 1..k-1 of its file, once per session. The directory
starts with these fixtures, which the docs refer to by name:

- ``telemetry.jsonl`` (and ``telemetry.jsonl.gz``): a short real SDK run (``FIXTURE_RUN``): model ``fraud``,
  1,500 calls each of a primary (version 1) and a canary (version 2) that fails 1% of its calls; OOD scores,
  feedback for half the calls, and in the last third the ``amount`` feature 3x too large (drift);
- ``slo.yaml``: two SLOs on it (latency under 250 ms and errors, both 99% over 1 h), which pass;
- ``app.py``: a FastAPI app with no modelotel code, which exits 1 unless auto-instrumentation added
  modelotel's middleware (for ``opentelemetry-instrument python app.py``);
- ``collector_config/`` and ``examples/``: links into the repository.

**By language:**

- ``python``: run with the project's interpreter in the workspace (``python -``, so workspace files import);
  ``MODELOTEL_EXPORT_FILE`` points into the workspace, other ``OTEL_*``/``MODELOTEL_*`` variables are cleared.
  It must exit 0, and every ``*.jsonl`` file it writes must be OTLP JSON lines.
- ``sh``/``bash``: run with ``bash -e -o pipefail`` in the workspace, the project's ``.venv/bin`` first on
  PATH (``modelotel``, ``python``, ``uvicorn``, ``opentelemetry-instrument`` are the real ones). Every command
  must exit 0, except a command followed by a ``# exit N`` comment, which must exit N (a failing gate).
  ``make TARGET`` runs as ``make -n TARGET`` in the repository (a dry run: ``make test`` inside the tests
  would recurse, and ``make demo`` takes a minute and has its own test in test_examples.py), except
  ``make collector``, which is real (a cached build that prints the binary's path). ``$BIN`` is the collector
  binary. The literal ports 8000, 4317, 4318 and 9464 become free loopback ports (one per number and block);
  background jobs are stopped when the block ends. The OTel SDK's own exporters default to ``none`` (no
  collector listens here), and the collector's listen ports (``MODELOTEL_OTLP_*_ENDPOINT``, ...) are free
  loopback ports.
- ``yaml``: SLO specs (``slos:`` or OpenSLO) load with ``load_specs``; Prometheus rules (``groups:``) pass
  ``promtool check rules``; Prometheus configs (``rule_files:``/``scrape_configs:``) pass ``promtool check
  config`` in the workspace; collector configs (``receivers:``/``exporters:``) pass the collector's
  ``validate`` (a fragment without ``receivers:`` merged on top of ``collector_config/agent.yaml``, as the
  collector merges several ``--config`` files); GitHub Actions workflows (``jobs:``) have ``runs-on`` and
  steps, and their ``run`` scripts pass ``bash -n``; Kubernetes objects (``apiVersion``/``kind``) have
  ``metadata.name``; anything else loads with ``yaml.safe_load_all``. In every YAML block (and every shell
  block), each ``modelotel ...`` command line (container ``command``/``args``, a Flagger ``cmd``, a
  workflow ``run``) must parse with the CLI's own argument parser.
- ``text``: sample output; not executed, so there is no test for it (``test_every_block_has_a_known_language``
  only checks that each block has a language this file knows).

**Markers**, an HTML comment on the line before the fence:

- ``<!-- docs-test: skip (reason) -->``: the block cannot run here (network, docker, a Kubernetes cluster);
  it is only parsed: ``compile`` (python), ``bash -n`` plus the modelotel command check (sh),
  ``yaml.safe_load_all`` (yaml).
- ``<!-- docs-test: file NAME -->``: the block is written to NAME in the workspace for later blocks instead of
  being run (``.py`` must compile, ``.yaml`` must load as above).
- ``<!-- docs-test: long-running -->``: a shell block whose last command is a server: it must still be
  running after ``LONG_RUNNING_S`` seconds (the commands before it ran, and the server did not exit); then
  it is stopped.

Binaries: promtool and the collector are required like everywhere else (collector_support: a failure when
MODELOTEL_CI is set, a skip with the reason otherwise), and only by the blocks that use them.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from modelotel.cli import build_parser
from modelotel.evaluator.spec import load_specs

from collector_support import free_port, otelcol, which

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "collector_config" / "README.md"]
RUNNABLE = {"python", "sh", "bash", "yaml"}
SAMPLE = {"text"}
LONG_RUNNING_S = 3.0
BLOCK_TIMEOUT_S = 120.0
DOC_PORTS = ("8000", "4317", "4318", "9464")  # each becomes a free loopback port in shell blocks

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)[^`]*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<kind>[\w-]+)\s*(?P<arg>.*?)\s*-->\s*$")
EXIT_COMMENT = re.compile(r"^(?P<cmd>.*?\S)[ \t]+#\s*exit\s+(?P<code>\d+)\b[^\n]*$", re.S)
HEREDOC = re.compile(r"<<-?\s*(['\"]?)(?P<word>\w+)\1")

FIXTURE_SLO = """\
slos:
  - name: fraud-latency
    description: 99% of predictions within 250 ms
    model: fraud
    sli: latency
    threshold: 250ms
    objective: 0.99
    window: 1h
  - name: fraud-errors
    description: 99% of predictions succeed
    model: fraud
    sli: error_ratio
    objective: 0.99
    window: 1h
"""

FIXTURE_RUN = '''\
"""A short staging run through the real SDK: model fraud, a primary (v1) and a canary (v2), file export."""
import sys
import time

import numpy as np

import modelotel
from modelotel.ood import RangeScorer

CALLS = 1500  # per arm
DRIFT_FROM = 1000  # the last third: "amount" arrives 3x too large
CANARY_FAILS_EVERY = 100  # the canary fails 1% of its calls, the primary none

modelotel.configure(service_name="fraud-api", exporter="file", path=sys.argv[1], export_interval=0.25)
rng = np.random.default_rng(7)
mean, sd = np.array([100.0, 40.0, 0.5]), np.array([20.0, 10.0, 0.1])
scorer = RangeScorer().fit(rng.normal(mean, sd, size=(2000, 3)))
scorer.threshold_for_fpr(rng.normal(mean, sd, size=(500, 3)), fpr=0.05)


def make_model(version, role):
    calls = [0]

    @modelotel.instrument_model(
        name="fraud", version=version, deployment_role=role, labels=["legit", "fraud"], ood=scorer,
        feature_names=["amount", "age", "ratio"], numeric_features=["amount", "age"],
    )
    def predict(x):
        calls[0] += 1
        if role == "canary" and calls[0] % CANARY_FAILS_EVERY == 0:
            raise RuntimeError("canary failure")
        p = 1 / (1 + np.exp(-((x[0] - 100) / 20 + (x[1] - 40) / 10)))
        return {"probabilities": np.array([1 - p, p]), "prediction_id": modelotel.current_prediction_id()}

    return predict


arms = [make_model("1", "primary"), make_model("2", "canary")]
for i in range(CALLS):
    x = rng.normal(mean, sd)
    if i >= DRIFT_FROM:
        x[0] *= 3
    for predict in arms:
        try:
            out = predict(x)
        except RuntimeError:
            continue
        if i % 2 == 0:  # the truth agrees with the model 90% of the time
            modelotel.record_feedback(out["prediction_id"], correct=bool(rng.random() < 0.9))
    time.sleep(0.002)
modelotel.shutdown()
'''

FIXTURE_APP = '''\
"""A FastAPI app without modelotel code: exits 1 unless opentelemetry-instrument added modelotel's middleware."""
import sys

from fastapi import FastAPI

from modelotel.integrations.fastapi import is_instrumented

app = FastAPI()
if not is_instrumented(app):
    sys.exit("app.py: modelotel's middleware was not added (run it under opentelemetry-instrument)")
print("app.py: modelotel middleware installed by opentelemetry-instrument")
'''


# -- blocks --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    doc: str  # path relative to the repository
    index: int  # position among the blocks of its file
    line: int  # of the opening fence, 1-based
    lang: str
    body: str
    marker: str | None = None  # skip, file, long-running
    marker_arg: str = ""

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def parse_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with the docs-test marker on the line before each (if any)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    doc = path.relative_to(ROOT).as_posix()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        start, body = i, []
        i += 1
        while i < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[i]):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        prev = start - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        marker = MARKER.match(lines[prev]) if prev >= 0 else None
        blocks.append(
            Block(
                doc,
                len(blocks),
                start + 1,
                m["lang"].lower(),
                "\n".join(body) + "\n",
                marker["kind"] if marker else None,
                marker["arg"].strip("() ") if marker else "",
            )
        )
    return blocks


ALL_BLOCKS = [b for path in DOC_FILES for b in parse_blocks(path)]
RUN_BLOCKS = [b for b in ALL_BLOCKS if b.lang not in SAMPLE]


def test_every_block_has_a_known_language() -> None:
    assert len(DOC_FILES) >= 10 and len(ALL_BLOCKS) >= 40
    unknown = [f"{b.id} ```{b.lang or '(none)'}" for b in ALL_BLOCKS if b.lang not in RUNNABLE | SAMPLE]
    assert not unknown, f"blocks this test does not know how to check (use python, sh, yaml or text): {unknown}"
    markers = [f"{b.id}: {b.marker}" for b in ALL_BLOCKS if b.marker not in (None, "skip", "file", "long-running")]
    assert not markers, f"unknown docs-test markers: {markers}"
    reasonless = [b.id for b in ALL_BLOCKS if b.marker in ("skip", "file") and not b.marker_arg]
    assert not reasonless, f"skip markers need a reason and file markers a name: {reasonless}"


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FIGURE = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)+|\d+(?:\.\d+)?(?=x\b|%))")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def prose(path: Path) -> str:
    """The Markdown outside fenced blocks."""
    return re.sub(r"^[ \t]*(`{3,}|~{3,}).*?^[ \t]*\1[ \t]*$", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)


def test_relative_links_resolve() -> None:
    """Every relative link of the docs names an existing file and, with #anchor, one of its headings."""
    broken = []
    for path in DOC_FILES:
        for target in LINK.findall(prose(path)):
            if re.match(r"^[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            if not dest.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md":
                headings = {slug(h) for h in re.findall(r"^#+\s+(.*)$", prose(dest), re.M)}
                if anchor not in headings:
                    broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_readme_links_every_doc() -> None:
    linked = set(LINK.findall((ROOT / "README.md").read_text()))
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if f"docs/{p.name}" not in linked]
    assert not missing, f"README.md does not link {missing}"


def test_benchmark_figures_match_results() -> None:
    """The figures quoted in docs/benchmarks.md and the README's cost section are those of RESULTS.md."""
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    readme = (ROOT / "README.md").read_text()
    cost = readme[readme.index("## What it costs") : readme.index("## Documentation")]
    quoted = {
        (name, f)
        for name, text in (("docs/benchmarks.md", prose(ROOT / "docs" / "benchmarks.md")), ("README.md", cost))
        for f in FIGURE.findall(text)
    }
    assert len(quoted) >= 30
    missing = sorted(
        f"{name}: {figure}"
        for name, figure in quoted
        if not re.search(rf"(?<![\d.]){re.escape(figure)}(?![\d])", results)
    )
    assert not missing, f"figures not found in benchmarks/RESULTS.md: {missing}"


# -- modelotel command lines ---------------------------------------------------------------------------------


def shell_commands(script: str) -> list[list[str]]:
    """Each simple command of a shell script as words: continuations joined, comments, heredoc bodies and
    redirections dropped, split at ``|``, ``&&``, ``;``, ``&`` and parentheses."""
    out: list[list[str]] = []
    heredoc_end = None
    for line in re.sub(r"\\\n", " ", script).splitlines():
        if heredoc_end is not None:
            heredoc_end = None if line.strip() == heredoc_end else heredoc_end
            continue
        heredoc = HEREDOC.search(line)
        if heredoc:
            heredoc_end = heredoc["word"]
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            words = list(lexer)
        except ValueError:  # an unbalanced quote: not a command we can check
            continue
        current: list[str] = []
        redirect_target = False
        for word in words:
            if redirect_target:
                redirect_target = False
            elif set(word) <= set("<>&") and ("<" in word or ">" in word):
                if current and current[-1].isdigit():
                    current.pop()  # the file descriptor of 2>
                redirect_target = True
            elif set(word) <= set("|&;()"):
                out.append(current)
                current = []
            else:
                current.append(word)
        out.append(current)
    return [c for c in out if c]


def modelotel_argv(words: list[str]) -> list[str] | None:
    """The arguments after ``modelotel`` (or ``python -m modelotel``), skipping VAR=value prefixes."""
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        words = words[1:]
    if words[:1] == ["modelotel"]:
        return words[1:]
    if len(words) >= 3 and words[0] in ("python", "python3") and words[1:3] == ["-m", "modelotel"]:
        return words[3:]
    return None


def check_modelotel_args(argv: list[str], where: str) -> None:
    """The CLI's own parser accepts the command line (a typo in a flag fails here)."""
    argv = [re.sub(r"\$?\{\{[^}]*\}\}", "X", a) for a in argv]  # Argo and Actions placeholders
    if any(a in ("-h", "--help", "--version") for a in argv):
        return
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code:
            message = err.getvalue().strip().splitlines()[-1:] or ["refused"]
            raise AssertionError(f"{where}: `modelotel {' '.join(argv)}`: {message[0]}") from None


def check_shell_modelotel(script: str, where: str) -> None:
    for words in shell_commands(script):
        argv = modelotel_argv(words)
        if argv is not None:
            check_modelotel_args(argv, where)


def yaml_modelotel_commands(node: object) -> list[list[str]]:
    """modelotel command lines in a YAML document: a container's command + args, and shell strings."""
    found: list[list[str]] = []
    if isinstance(node, dict):
        command, args = node.get("command"), node.get("args")
        direct = isinstance(command, list) and command[:1] == ["modelotel"]
        if direct:
            found.append([str(c) for c in command[1:]] + ([str(a) for a in args] if isinstance(args, list) else []))
        for key, value in node.items():
            if not (direct and key in ("command", "args")):
                found += yaml_modelotel_commands(value)
    elif isinstance(node, list):
        for item in node:
            found += yaml_modelotel_commands(item)
    elif isinstance(node, str) and "modelotel " in node:
        found += [argv for words in shell_commands(node) if (argv := modelotel_argv(words)) is not None]
    return found


# -- the workspace of one doc file ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory) -> Path:
    """The fixture files every workspace starts with (one real SDK run per session, about 4 s)."""
    out = tmp_path_factory.mktemp("docs-fixtures")
    (out / "slo.yaml").write_text(FIXTURE_SLO)
    (out / "app.py").write_text(FIXTURE_APP)
    env = clean_env()
    proc = subprocess.run(
        [sys.executable, "-", str(out / "telemetry.jsonl")],
        input=FIXTURE_RUN,
        capture_output=True,
        text=True,
        cwd=out,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    data = (out / "telemetry.jsonl").read_bytes()
    assert data.count(b"\n") >= 5, "the fixture run exported too little"
    (out / "telemetry.jsonl.gz").write_bytes(gzip.compress(data))
    return out


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELOTEL_"))}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    env.pop("VIRTUAL_ENV", None)
    return env


@dataclass
class Workspace:
    """One doc file's directory and what became of each of its blocks (by index): None = ran, else an
    Outcome."""

    doc: str
    path: Path
    shims: Path
    done: dict[int, Outcome | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    skipped: bool
    message: str


def make_workspace(doc: str, path: Path, fixtures: Path) -> Workspace:
    for item in fixtures.iterdir():
        shutil.copy(item, path / item.name)
    for name in ("collector_config", "examples"):
        (path / name).symlink_to(ROOT / name)
    shims = path / ".docs-test" / "bin"
    shims.mkdir(parents=True)
    make = shutil.which("make")
    shim = shims / "make"
    shim.write_text(
        "#!/bin/bash\n"
        "# docs-test: `make X` is a dry run in the repository, except `make collector` (a cached build).\n"
        "unset MAKEFLAGS MFLAGS MAKELEVEL\n"
        f"cd {shlex.quote(str(ROOT))}\n"
        f'for arg in "$@"; do [ "$arg" = collector ] && exec {make} "$@"; done\n'
        f'exec {make} -n "$@"\n'
    )
    shim.chmod(0o755)
    return Workspace(doc, path, shims)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory, fixtures):
    """``workspace(doc)``: the doc file's workspace, made on first use."""
    made: dict[str, Workspace] = {}

    def get(doc: str) -> Workspace:
        if doc not in made:
            made[doc] = make_workspace(doc, tmp_path_factory.mktemp("docs-" + re.sub(r"\W", "-", doc)), fixtures)
        return made[doc]

    return get


# -- running blocks ------------------------------------------------------------------------------------------


class Skip(Exception):
    """The block cannot run on this machine (a missing binary, on a developer machine)."""


def needs_collector(body: str) -> bool:
    return bool(re.search(r"\$BIN\b|build\.sh|make (-s )?collector|otelcol", body))


def collector_binary() -> str:
    try:
        return otelcol()
    except pytest.skip.Exception as exc:
        raise Skip(str(exc)) from None


def require(name: str, how: str) -> str:
    try:
        return which(name, how)
    except pytest.skip.Exception as exc:
        raise Skip(str(exc)) from None


def jsonl_state(ws: Workspace) -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in ws.path.glob("*.jsonl")}


def check_jsonl(before: dict[Path, float], ws: Workspace, where: str) -> None:
    """Every OTLP-JSON-lines file the block wrote is whole lines of OTLP JSON."""
    for path, mtime in jsonl_state(ws).items():
        if before.get(path) == mtime:
            continue
        lines = path.read_text().splitlines()
        assert lines, f"{where}: wrote an empty {path.name}"
        for n, line in enumerate(lines, 1):
            obj = json.loads(line)
            assert {"resourceMetrics", "resourceSpans", "resourceLogs"} & set(obj), f"{path.name}:{n}: not OTLP"


def run_python(block: Block, ws: Workspace) -> None:
    env = clean_env()
    env["MODELOTEL_EXPORT_FILE"] = str(ws.path / "modelotel-telemetry.jsonl")
    before = jsonl_state(ws)
    try:
        proc = subprocess.run(
            [sys.executable, "-"],
            input=block.body,
            capture_output=True,
            text=True,
            cwd=ws.path,
            env=env,
            timeout=BLOCK_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{block.id}: still running after {BLOCK_TIMEOUT_S:g} s") from None
    assert proc.returncode == 0, (
        f"{block.id}: exit {proc.returncode} (line N of <stdin> is line {block.line}+N of the doc)\n"
        f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    )
    check_jsonl(before, ws, block.id)


def shell_script(block: Block) -> str:
    """The block as a bash script: `# exit N` comments become checks, the documented ports free ports."""
    ports = {port: str(free_port()) for port in DOC_PORTS}
    out: list[str] = []
    heredoc_end, pending, first = None, "", 0
    for n, line in enumerate(block.body.splitlines()):
        if heredoc_end is not None:
            out.append(line)
            heredoc_end = None if line.strip() == heredoc_end else heredoc_end
            continue
        line = re.sub(r"\b(" + "|".join(DOC_PORTS) + r")\b", lambda m: ports[m[1]], line)
        if not pending:
            first = n
        if line.endswith("\\"):  # a continued command: judge it whole
            pending += line + "\n"
            continue
        command, pending = pending + line, ""
        heredoc = HEREDOC.search(command)
        if heredoc:
            heredoc_end = heredoc["word"]
        m = EXIT_COMMENT.match(command)
        if m and not heredoc:
            where = f"{block.doc}:{block.line + 1 + first}"
            out.append(
                f'__rc=0; {{ {m["cmd"]} ; }} || __rc=$?; [ "$__rc" -eq {m["code"]} ] || '
                f'{{ echo "docs-test: {where}: expected exit {m["code"]}, got $__rc" >&2; exit 97; }}'
            )
        else:
            out.append(command)
    prelude = "set -eo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
    return prelude + "\n".join(out) + (pending and "\n" + pending) + "\n"


def shell_env(ws: Workspace, needs_bin: bool) -> dict[str, str]:
    env = clean_env()
    env["PATH"] = os.pathsep.join([str(ws.shims), env["PATH"]])
    env.update(
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        MODELOTEL_EXPORT_FILE=str(ws.path / "modelotel-telemetry.jsonl"),
        MODELOTEL_OTLP_GRPC_ENDPOINT=f"127.0.0.1:{free_port()}",
        MODELOTEL_OTLP_HTTP_ENDPOINT=f"127.0.0.1:{free_port()}",
        MODELOTEL_HEALTH_ENDPOINT=f"127.0.0.1:{free_port()}",
        MODELOTEL_COLLECTOR_METRICS_PORT=str(free_port()),
        MODELOTEL_QUEUE_DIR=str(ws.path / ".docs-test" / "queue"),
    )
    if needs_bin:
        env["BIN"] = collector_binary()
    return env


def stop_group(proc: subprocess.Popen) -> None:
    """Stop the block's process group (the shell and everything it started)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers that outlived the shell


def run_shell(block: Block, ws: Workspace) -> None:
    check_shell_modelotel(block.body, block.id)
    if "promtool" in block.body:
        require("promtool", "install Debian's prometheus package (make test-deps)")
    env = shell_env(ws, needs_collector(block.body))
    script = ws.path / ".docs-test" / f"block{block.index}.sh"
    script.write_text(shell_script(block))
    log = ws.path / ".docs-test" / f"block{block.index}.log"
    before = jsonl_state(ws)
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            ["bash", str(script)], cwd=ws.path, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            if block.marker == "long-running":
                try:
                    code = proc.wait(LONG_RUNNING_S)
                except subprocess.TimeoutExpired:
                    code = None
                assert code is None, f"{block.id}: exited {code} within {LONG_RUNNING_S:g} s\n{log.read_text()[-4000:]}"
            else:
                try:
                    code = proc.wait(BLOCK_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    raise AssertionError(
                        f"{block.id}: still running after {BLOCK_TIMEOUT_S:g} s (a server? mark the block "
                        f"long-running)\n{log.read_text()[-4000:]}"
                    ) from None
                assert code == 0, f"{block.id}: exit {code}\n{log.read_text()[-4000:]}"
        finally:
            stop_group(proc)
    if block.marker != "long-running":
        check_jsonl(before, ws, block.id)


def classify_yaml(docs: list) -> str:
    first = next((d for d in docs if d is not None), None)
    if isinstance(first, dict):
        if "slos" in first or str(first.get("apiVersion", "")).startswith("openslo/"):
            return "slo"
        if "groups" in first:
            return "prometheus-rules"
        if {"rule_files", "scrape_configs"} & set(first):
            return "prometheus-config"
        if "receivers" in first or ("exporters" in first and "service" in first):
            return "collector"
        if "jobs" in first:
            return "workflow"
        if "apiVersion" in first and "kind" in first:
            return "kubernetes"
    elif isinstance(first, list) and first and isinstance(first[0], dict) and "apiVersion" in first[0]:
        return "slo" if str(first[0]["apiVersion"]).startswith("openslo/") else "kubernetes"
    return "yaml"


def run_yaml(block: Block, ws: Workspace, path: Path | None = None) -> None:
    docs = list(yaml.safe_load_all(block.body))
    assert any(d is not None for d in docs), f"{block.id}: empty YAML"
    for argv in yaml_modelotel_commands(docs):
        check_modelotel_args(argv, block.id)
    path = path or ws.path / ".docs-test" / f"block{block.index}.yaml"
    path.write_text(block.body)
    kind = classify_yaml(docs)
    if kind == "slo":
        assert load_specs([str(path)]).slos, f"{block.id}: no SLOs"
    elif kind == "prometheus-rules":
        run_tool([require("promtool", "make test-deps"), "check", "rules", str(path)], block, ws)
    elif kind == "prometheus-config":
        config = ws.path / f".docs-test-prometheus-{block.index}.yml"  # rule_files are relative to the config
        config.write_text(block.body)
        run_tool([require("promtool", "make test-deps"), "check", "config", str(config)], block, ws)
    elif kind == "collector":
        base = [] if "receivers" in docs[0] else ["--config", str(ROOT / "collector_config" / "agent.yaml")]
        run_tool([collector_binary(), "validate", *base, "--config", str(path)], block, ws)
    elif kind == "workflow":
        for doc in docs:
            for name, job in doc["jobs"].items():
                assert job.get("runs-on") and job.get("steps"), f"{block.id}: job {name} needs runs-on and steps"
                for step in job["steps"]:
                    assert "run" in step or "uses" in step, f"{block.id}: job {name}: a step needs run or uses"
                    if "run" in step:
                        proc = subprocess.run(["bash", "-n"], input=step["run"], capture_output=True, text=True)
                        assert proc.returncode == 0, f"{block.id}: job {name}: {proc.stderr}"
    elif kind == "kubernetes":
        objects = [o for d in docs for o in (d if isinstance(d, list) else [d]) if o is not None]
        for obj in objects:
            assert obj.get("apiVersion") and obj.get("kind"), f"{block.id}: an object without apiVersion/kind"
            assert (obj.get("metadata") or {}).get("name"), f"{block.id}: a {obj['kind']} without metadata.name"


def run_tool(argv: list[str], block: Block, ws: Workspace) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ws.path, timeout=BLOCK_TIMEOUT_S)
    what = " ".join(argv[1:3])
    assert proc.returncode == 0, f"{block.id}: {what}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"


def parse_only(block: Block) -> None:
    """A block marked skip: what can be checked without running it."""
    if block.lang == "python":
        compile(block.body, block.id, "exec")
    elif block.lang in ("sh", "bash"):
        proc = subprocess.run(["bash", "-n"], input=block.body, capture_output=True, text=True)
        assert proc.returncode == 0, f"{block.id}: {proc.stderr}"
        check_shell_modelotel(block.body, block.id)
    elif block.lang == "yaml":
        docs = list(yaml.safe_load_all(block.body))
        assert any(d is not None for d in docs)
        for argv in yaml_modelotel_commands(docs):
            check_modelotel_args(argv, block.id)


def write_file(block: Block, ws: Workspace) -> None:
    target = ws.path / block.marker_arg
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(block.body)
    if target.suffix == ".py":
        compile(block.body, block.id, "exec")
    elif target.suffix in (".yaml", ".yml"):
        run_yaml(block, ws, target)


def execute(block: Block, ws: Workspace) -> None:
    if block.marker == "skip":
        parse_only(block)
    elif block.marker == "file":
        write_file(block, ws)
    elif block.lang == "python":
        run_python(block, ws)
    elif block.lang in ("sh", "bash"):
        run_shell(block, ws)
    elif block.lang == "yaml":
        run_yaml(block, ws)


def run_in_order(block: Block, ws: Workspace) -> Outcome | None:
    """Run the blocks of the file up to this one that have not run yet; this block's outcome."""
    for earlier in [b for b in RUN_BLOCKS if b.doc == block.doc and b.index <= block.index]:
        if earlier.index in ws.done:
            continue
        failed = [b.id for b in RUN_BLOCKS if b.doc == block.doc and (o := ws.done.get(b.index)) and not o.skipped]
        try:
            execute(earlier, ws)
            ws.done[earlier.index] = None
        except Skip as exc:
            ws.done[earlier.index] = Outcome(True, str(exc))
        except (Exception, pytest.fail.Exception) as exc:  # remembered: later blocks of the file depend on it
            note = f"\n(earlier blocks of this file failed: {', '.join(failed)})" if failed else ""
            ws.done[earlier.index] = Outcome(False, f"{exc}{note}")
    return ws.done[block.index]


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[b.id for b in RUN_BLOCKS])
def test_doc_block(block: Block, workspace) -> None:
    outcome = run_in_order(block, workspace(block.doc))
    if outcome is not None:
        if outcome.skipped:
            pytest.skip(outcome.message)
        pytest.fail(outcome.message, pytrace=False)
