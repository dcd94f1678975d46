"""``modelotel feedback``: a labels file ingested by the real command, in its own process, against prediction ids made
by a real instrumented model in another process; the exported OTLP JSON lines are read back and the ml.feedback
counts checked exactly against what the rows say, and every bad row against its reason and line."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import random
import re
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelotel.cli import RowProgress
from modelotel.feedback.ingest import IngestSummary
from modelotel.feedback.labels_file import parse_bool, parse_time

from collector_support import free_port

ROOT = Path(__file__).resolve().parents[2]
KEY = "ingest-test-key-0123456789"
OTHER_KEY = "another-deployment-key-9876543210"

# A serving process: two models, every prediction's id printed with what it predicted.
SERVING = textwrap.dedent(
    """
    import json, random, sys
    import modelotel

    n, seed = int(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)

    @modelotel.instrument_model(name="churn", version="3", labels=["stay", "leave"])
    def churn(p):
        return {"probabilities": [1 - p, p]}

    @modelotel.instrument_model(name="risk", labels=[0, 1])
    def risk(p):
        return {"probabilities": [1 - p, p]}

    out = []
    for i in range(n):
        p = rng.random()
        model, classes = (churn, ("stay", "leave")) if i % 3 else (risk, (0, 1))
        model(p)
        out.append({"id": modelotel.last_prediction_id(), "model": model.__name__, "predicted": classes[p >= 0.5],
                    "other": classes[p < 0.5]})
    json.dump(out, sys.stdout)
    """
)


def _env(tmp: Path, key: str | None = KEY, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELOTEL_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "sdk"), env.get("PYTHONPATH", "")])
    env["MODELOTEL_EXPORT_FILE"] = str(tmp / "unused.jsonl")
    if key is not None:
        env["MODELOTEL_FEEDBACK_KEY"] = key
    env.update(extra)
    return env


def _predictions(tmp: Path, n: int, seed: int, key: str) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-c", SERVING, str(n), str(seed)],
        env=_env(tmp, key, MODELOTEL_EXPORT_FILE=str(tmp / f"serving-{seed}.jsonl")),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serving")
    return {"ours": _predictions(tmp, 240, 1, KEY), "theirs": _predictions(tmp, 3, 2, OTHER_KEY), "at": time.time()}


def _ingest(tmp: Path, args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = env or _env(tmp, MODELOTEL_EXPORT_FILE=str(tmp / "feedback.jsonl"))
    return subprocess.run(
        [sys.executable, "-m", "modelotel", "feedback", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp,
    )


def _exported(path: Path, metric: str) -> dict[tuple, int]:
    """The last cumulative value of every ``metric`` series in an OTLP JSON lines file, by its attributes."""
    last: dict[tuple, tuple[int, int]] = {}
    for line in path.read_text().splitlines():
        for rm in json.loads(line).get("resourceMetrics", []):
            for sm in rm.get("scopeMetrics", []):
                for m in sm.get("metrics", []):
                    if m["name"] != metric:
                        continue
                    for p in m["sum"]["dataPoints"]:
                        attrs = tuple(sorted((a["key"], next(iter(a["value"].values()))) for a in p["attributes"]))
                        when = int(p["timeUnixNano"])
                        if attrs not in last or last[attrs][0] <= when:
                            last[attrs] = (when, int(p["asInt"]))
    return {attrs: value for attrs, (_, value) in last.items()}


def _feedback_counts(path: Path) -> Counter:
    """ml.feedback by (model, correct, group)."""
    out: Counter = Counter()
    for attrs, value in _exported(path, "ml.feedback").items():
        a = dict(attrs)
        out[(a["ml.model.name"], a["ml.feedback.correct"], a.get("ml.fairness.group"))] += value
    return out


def _forged(pid: str) -> str:
    """One character of the base64 part changed (inside the signature, so it still decodes)."""
    i = len(pid) - 10
    return pid[:i] + ("A" if pid[i] != "A" else "B") + pid[i + 1 :]


def _labels_table(made: dict, rng: random.Random) -> tuple[pd.DataFrame, Counter, dict[str, list[int]]]:
    """Rows for every prediction (truth right ~60% of the time) and one bad row of each kind at known places;
    returns the frame, the expected ml.feedback counts and the expected bad rows by reason (0-based row index)."""
    ours = made["ours"]
    now = time.time()
    rows, expected, bad = [], Counter(), {}
    spare = ours[-4:]  # ids whose only row is bad: never judged
    for i, p in enumerate(ours[:-4]):
        right = rng.random() < 0.6
        group = rng.choice(["eu", "us", "apac"])
        # time: ISO 8601 for some rows, epoch seconds for others
        when = dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat() if i % 2 else f"{now:.3f}"
        rows.append(
            {
                "prediction_id": p["id"],
                "label": p["predicted"] if right else p["other"],
                "region": group,
                "known_at": when,
            }
        )
        expected[(p["model"], right, group)] += 1

    def bad_row(reason: str, at: int, **row) -> None:
        row = {"prediction_id": spare[0]["id"], "label": spare[0]["predicted"], "region": "eu", "known_at": "", **row}
        rows.insert(at, row)
        for positions in bad.values():  # rows after the insertion move down one
            positions[:] = [x + 1 if x >= at else x for x in positions]
        bad.setdefault(reason, []).append(at)

    bad_row("feedback_id_forged", 3, prediction_id=_forged(ours[0]["id"]))  # ours[0] is still judged below it
    bad_row("feedback_id_truncated", 10, prediction_id=spare[1]["id"][:-5])
    bad_row("feedback_id_foreign", 20, prediction_id="abc")
    bad_row("feedback_id_unknown_key", 30, prediction_id=made["theirs"][0]["id"])
    bad_row("missing_label", 40, prediction_id=spare[2]["id"], label=None)
    bad_row("bad_time", 50, prediction_id=spare[3]["id"], known_at="the day after tomorrow")
    bad_row("missing_id", 60, prediction_id=None)
    dup = dict(rows[100])  # a repeated row: the second is refused
    bad_row("feedback_duplicate", 150, **dup)
    return pd.DataFrame(rows), expected, bad


def _write(frame: pd.DataFrame, path: Path) -> None:
    name = path.name
    if ".csv" in name or ".tsv" in name:
        frame.to_csv(path, index=False, sep="\t" if ".tsv" in name else ",")
    elif ".parquet" in name:
        frame.astype({"label": "string", "known_at": "string"}).to_parquet(path, row_group_size=50)
    else:
        frame.to_json(path, orient="records", lines=True)


@pytest.mark.parametrize("name", ["labels.csv", "labels.tsv.gz", "labels.jsonl", "labels.ndjson.gz", "labels.parquet"])
def test_labels_file_is_recorded_exactly_and_every_bad_row_is_reported(made, tmp_path, name):
    frame, expected, bad = _labels_table(made, random.Random(name))
    path = tmp_path / name
    _write(frame, path)
    parquet = name.endswith(".parquet")
    # file lines: the header is line 1 (CSV) or rows start at line 1 (JSONL); Parquet: the 0-based row index
    offset = 0 if parquet else 2 if ".csv" in name or ".tsv" in name else 1
    errors = tmp_path / "bad_rows.csv"
    done = _ingest(
        tmp_path,
        [
            name,
            "--group-column",
            "region",
            "--time-column",
            "known_at",
            "--errors",
            str(errors),
            "--json",
            "--progress",
            "none",
        ],
    )
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    where = "rows" if parquet else "lines"
    assert summary["rows_read"] == len(frame) == summary["recorded"] + summary["refused"]
    assert summary["recorded"] == summary["items_judged"] == sum(expected.values())
    assert {r: (v["count"], v[f"first_{where}"]) for r, v in summary["reasons"].items()} == {
        r: (len(at), [x + offset for x in at]) for r, at in bad.items()
    }
    assert summary["export_ok"] is True
    with open(errors, newline="") as fh:
        written = list(csv.reader(fh))
    assert written[0] == [where[:-1], "reason", "message"]
    assert sorted((int(w), r) for w, r, _ in written[1:]) == sorted(
        (x + offset, r) for r, at in bad.items() for x in at
    )
    exported = tmp_path / "feedback.jsonl"
    assert _feedback_counts(exported) == expected
    dropped = {dict(a)["modelotel.drop.reason"]: v for a, v in _exported(exported, "modelotel.dropped").items()}
    for reason in bad:
        if reason.startswith("feedback_"):
            assert dropped[reason] == len(bad[reason])


def test_a_boolean_correct_column_and_every_row_good_exits_0(made, tmp_path):
    ours = made["ours"][:50]
    rng = random.Random(7)
    verdicts = [rng.random() < 0.3 for _ in ours]
    pd.DataFrame({"pid": [p["id"] for p in ours], "ok": verdicts}).to_csv(tmp_path / "verdicts.csv", index=False)
    done = _ingest(tmp_path, ["verdicts.csv", "--id-column", "pid", "--correct-column", "ok", "--progress", "lines"])
    assert done.returncode == 0, done.stderr
    assert "50 rows read = 50 recorded" in done.stdout
    assert "50 rows (100%), 0 refused" in done.stderr  # --progress lines: at least the final line
    want = Counter((p["model"], ok, None) for p, ok in zip(ours, verdicts, strict=True))
    assert _feedback_counts(tmp_path / "feedback.jsonl") == want


def test_ids_past_the_horizon_are_refused_as_expired(made, tmp_path):
    ours = made["ours"][:5]
    time.sleep(max(0.0, made["at"] + 2.5 - time.time()))  # ids carry whole seconds; the horizon below is 1 s
    pd.DataFrame({"prediction_id": [p["id"] for p in ours], "label": [p["predicted"] for p in ours]}).to_json(
        tmp_path / "late.jsonl", orient="records", lines=True
    )
    env = _env(tmp_path, MODELOTEL_EXPORT_FILE=str(tmp_path / "feedback.jsonl"), MODELOTEL_FEEDBACK_HORIZON="1")
    done = _ingest(tmp_path, ["late.jsonl", "--json"], env)
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert summary["reasons"]["feedback_id_expired"]["count"] == 5
    assert summary["reasons"]["feedback_id_expired"]["first_lines"] == [1, 2, 3, 4, 5]
    assert summary["recorded"] == 0


def test_a_failed_export_exits_3_after_reporting_the_rows(made, tmp_path):
    ours = made["ours"][:5]
    pd.DataFrame({"prediction_id": [p["id"] for p in ours], "label": [p["predicted"] for p in ours]}).to_csv(
        tmp_path / "labels.csv", index=False
    )
    env = _env(
        tmp_path,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_METRIC_EXPORT_TIMEOUT="1000",
        OTEL_EXPORTER_OTLP_TIMEOUT="1",
    )
    env.pop("MODELOTEL_EXPORT_FILE")
    done = _ingest(tmp_path, ["labels.csv"], env)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "5 rows read = 5 recorded" in done.stdout and "export: FAILED" in done.stdout


@pytest.mark.parametrize(
    ("content", "args", "env_key", "message"),
    [
        (None, [], KEY, "No such file"),
        ("id,label\nx,1\n", [], KEY, "no id column 'prediction_id'"),
        ("prediction_id,truth\nx,1\n", [], KEY, "no label column 'label'"),
        ("prediction_id,label\nx,1\n", ["--time-column", "when"], KEY, "no column 'when' for --time-column"),
        ("prediction_id,label\nx,1\n", [], None, "MODELOTEL_FEEDBACK_KEY is not set"),
        ("prediction_id,label\nx,1\n", [], "short", "at least 16 characters"),
        ("prediction_id,label\nx,1\n", ["--format", "xml"], KEY, "invalid choice"),
        ("prediction_id,label\nx,1\n", ["--no-such-option"], KEY, "unrecognized arguments"),
        ('{"id": "x", "label": 1}\n', ["--format", "jsonl"], KEY, "line 1 has no id column 'prediction_id'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, content, args, env_key, message):
    if content is not None:
        (tmp_path / "labels.csv").write_text(content)
    done = _ingest(tmp_path, ["labels.csv", *args], _env(tmp_path, env_key))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr and "Traceback" not in done.stderr


def test_parquet_without_pyarrow_names_the_install(made, tmp_path):
    pd.DataFrame({"prediction_id": ["x"], "label": ["y"]}).to_parquet(tmp_path / "labels.parquet")
    code = "import sys; sys.modules['pyarrow'] = None; from modelotel.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, "feedback", "labels.parquet"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "pip install pyarrow" in done.stderr, done.stderr


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1)),
    st.sampled_from(["Z", "+00:00", "+05:30", "-08:00", ""]),
)
def test_iso_times_parse_to_their_exact_epoch_seconds(when, zone):
    tz = dt.timezone.utc if zone in ("Z", "+00:00", "") else dt.datetime.strptime(zone, "%z").tzinfo
    aware = when.replace(tzinfo=tz)
    text = when.isoformat() + zone
    assert parse_time(text) == aware.timestamp()
    assert parse_time(repr(aware.timestamp())) == aware.timestamp()


@pytest.mark.parametrize("bad", ["", "soon", "nan", "inf", True])
def test_unparseable_times_are_refused(bad):
    with pytest.raises(ValueError):
        parse_time(bad)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("False", False),
        ("1", True),
        ("0", False),
        (1, True),
        ("yes", True),
        ("n", False),
        (0.0, False),
        ("1.0", True),
    ],
)
def test_booleans(text, value):
    assert parse_bool(text) is value


@pytest.mark.parametrize("bad", ["maybe", 2, "", math.nan])
def test_not_booleans(bad):
    with pytest.raises(ValueError):
        parse_bool(bad)


class _Clock:
    """A clock the test moves (RowProgress takes its clock as a parameter)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _summary(read: int, refused: int = 0) -> IngestSummary:
    summary = IngestSummary(read=read, recorded=read - refused)
    for i in range(refused):
        summary.refuse(i, "feedback_id_forged", "forged")
    return summary


def test_progress_auto_draws_a_bar_on_a_terminal():
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as tty:
            clock = _Clock()
            progress = RowProgress("auto", "labels.csv", lambda: 0.5, tty, clock)
            assert progress.mode == "bar"
            progress(_summary(1024))  # too soon after the start
            clock.now += 0.3
            progress(_summary(1000))  # not at a 1,024-row step
            progress(_summary(2048, refused=3))
            progress.close(_summary(2050, refused=3))
        seen = os.read(master, 4096).decode()
    finally:
        os.close(master)
        os.close(slave)
    assert seen.count("\rlabels.csv [") == 2, seen  # the one redraw and the final one
    assert "[###############...............] 2,048 rows (50%), 3 refused" in seen
    assert "2,050 rows (50%), 3 refused" in seen


def test_progress_auto_off_a_terminal_prints_lines_only_for_a_large_file(tmp_path):
    with open(tmp_path / "stderr.txt", "w+") as pipe:
        clock = _Clock()
        progress = RowProgress("auto", "labels.csv", lambda: 1.0, pipe, clock)
        assert progress.mode == "auto-lines"
        progress(_summary(1024))
        clock.now += 4.9
        progress.close(_summary(99_999))  # small and quick: silent
        pipe.seek(0)
        assert pipe.read() == ""
    with open(tmp_path / "stderr.txt", "w+") as pipe:
        clock = _Clock()
        progress = RowProgress("auto", "labels.csv", lambda: 0.25, pipe, clock)
        clock.now += 5.0
        progress(_summary(5 * 1024))  # 5 s: large enough, one line
        clock.now += 1.0
        progress(_summary(6 * 1024))  # the next only 5 s later
        clock.now += 4.0
        progress(_summary(7 * 1024))
        progress.close(_summary(7 * 1024 + 1))
        pipe.seek(0)
        lines = pipe.read().splitlines()
    assert lines == [
        "labels.csv: 5,120 rows (25%), 0 refused, 1,024 rows/s",
        "labels.csv: 7,168 rows (25%), 0 refused, 717 rows/s",
        "labels.csv: 7,169 rows (25%), 0 refused, 717 rows/s",
    ]


def test_progress_none_prints_nothing(tmp_path):
    with open(tmp_path / "stderr.txt", "w+") as pipe:
        clock = _Clock()
        progress = RowProgress("none", "labels.csv", lambda: 1.0, pipe, clock)
        clock.now += 100
        progress(_summary(200_704))
        progress.close(_summary(200_704))
        pipe.seek(0)
        assert pipe.read() == ""


def test_a_file_cut_midway_exits_2_and_says_what_was_recorded_before(made, tmp_path):
    ours = made["ours"]
    frame = pd.DataFrame({"prediction_id": [p["id"] for p in ours], "label": [p["predicted"] for p in ours]})
    frame.to_csv(tmp_path / "whole.csv.gz", index=False)
    data = (tmp_path / "whole.csv.gz").read_bytes()
    (tmp_path / "cut.csv.gz").write_bytes(data[: len(data) * 3 // 4])
    done = _ingest(tmp_path, ["cut.csv.gz"])
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "cut.csv.gz: unreadable" in done.stderr and "Traceback" not in done.stderr
    recorded = int(re.search(r"rows read before it: ([\d,]+) recorded and exported", done.stderr)[1].replace(",", ""))
    assert 0 < recorded < len(ours)
    exported = _feedback_counts(tmp_path / "feedback.jsonl")
    assert sum(exported.values()) == recorded
