"""Feedback from anywhere, end to end: three serving processes behind a client, labels from separate processes
(some right away, some past an export interval, some after the servers restarted), everything through the real
collector into a file and into `modelotel serve`; the figures equal the client's own records exactly.

The client knows every prediction (it chooses p; the model answers [1 - p, p]) and every truth, so accuracy,
fairness rates and label coverage are computed from its records and compared with what `modelotel evaluate`,
`modelotel fairness` and `modelotel serve` report from the telemetry. ECE and Brier come from sketches: the raw
values must lie within the stated bounds (docs/quality.md).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from serve_support import COLLECTOR, Serve

import modelotel.conventions as conv
from modelotel.evaluator.quality.calibration import calibration
from modelotel.evaluator.sources import read
from modelotel.sketch import LogSketch

from collector_support import ROOT, Process, free_port, otelcol, run_collector, wait_for, wait_http

APPS = ROOT / "tests" / "apps"
KEY = "e2e-feedback-key-shared-by-all-processes"
SERVERS = 3
PER_PHASE = 150  # requests per phase, round robin over the servers
UNLABELLED = 40  # predictions of the second phase that never get a label (coverage < 100%)

SPEC = """
slos:
  - name: fraud-accuracy
    model: fraud
    sli: accuracy
    objective: 0.5
    window: 1h
    min_events: 10
    min_label_coverage: 0.5
  - name: fraud-accuracy-strict-coverage
    model: fraud
    sli: accuracy
    objective: 0.5
    window: 1h
    min_events: 10
    min_label_coverage: 0.95
"""

LABELLER = r"""
import json, sys, modelotel
modelotel.configure(service_name="labeller")
refused = 0
for row in json.load(sys.stdin):
    ok = modelotel.record_feedback(row["id"], label=row["truth"], group=row["group"], positive_label="fraud")
    refused += not ok
modelotel.shutdown()
print(json.dumps({"refused": refused}))
"""


def _env(collector_grpc: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELOTEL_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector_grpc}",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_METRIC_EXPORT_INTERVAL="500",
        MODELOTEL_FEEDBACK_KEY=KEY,
        PYTHONPATH=str(ROOT / "sdk"),
    )
    return env


class Servers:
    """Three uvicorn processes serving tests/apps/feedback_app.py, each on its own port; restartable."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        # Process adds os.environ under env: blank the test session's own OTEL_/MODELOTEL_ settings (empty = unset)
        blank = {k: "" for k in os.environ if k.startswith(("OTEL_", "MODELOTEL_")) and k not in env}
        self.tmp_path, self.env = tmp_path, {**blank, **env}
        self.ports = [free_port() for _ in range(SERVERS)]
        self.procs: list[Process] = []
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        for i, port in enumerate(self.ports):
            args = [sys.executable, "-m", "uvicorn", "feedback_app:app", "--port", str(port), "--log-level", "warning"]
            proc = Process(args, self.tmp_path / f"server-{i}-{self.starts}.log", env=self.env, cwd=APPS)
            self.procs.append(proc)
            wait_http(f"http://127.0.0.1:{port}/docs", timeout=30, proc=proc.proc)

    def stop(self) -> None:  # SIGTERM: uvicorn drains, modelotel exports what is pending
        for proc in self.procs:
            # uvicorn re-raises SIGTERM after its graceful shutdown (tests/e2e/test_restarts.py)
            assert proc.stop() == -signal.SIGTERM, proc.output()[-2000:]
        self.procs = []

    def predict(self, i: int, p: float) -> dict:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.ports[i % SERVERS]}/predict",
            data=json.dumps({"p": p}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())


def _label(rows: list[dict], env: dict[str, str]) -> int:
    """A separate labelling process records feedback for ``rows``; the number it refused."""
    out = subprocess.run(
        [sys.executable, "-c", LABELLER],
        input=json.dumps(rows),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])["refused"]


def _traffic(servers: Servers, rng: np.random.Generator, phase: int) -> list[dict]:
    rows = []
    for i in range(PER_PHASE):
        p = float(rng.uniform(0.02, 0.98))
        truth = "fraud" if rng.random() < p else "legit"  # a calibrated model: P(fraud) = p
        answer = servers.predict(i, p)
        assert answer["label"] == ("fraud" if p > 0.5 else "legit")
        rows.append(
            {
                "id": answer["prediction_id"],
                "predicted": answer["label"],
                "confidence": answer["confidence"],
                "truth": truth,
                "group": ["north", "south", "east"][int(rng.integers(3))],
                "server": answer["pid"],
                "phase": phase,
            }
        )
    return rows


def _feedback_totals(path: Path) -> tuple[Counter, dict[bool, LogSketch]]:
    deltas, report = read(str(path), {conv.FEEDBACK, conv.FEEDBACK_CONFIDENCE})
    counts: Counter = Counter()
    sketches: dict[bool, LogSketch] = {}
    for d in deltas:
        if d.attributes.get(conv.MODEL_NAME) != "fraud":
            continue
        if d.metric == conv.FEEDBACK:
            counts[d.attributes.get(conv.FEEDBACK_CORRECT)] += d.value
        else:
            ok = d.attributes[conv.FEEDBACK_CORRECT]
            sketches.setdefault(ok, LogSketch(d.sketch.scale)).merge(d.sketch)
    assert report.usable, report
    return counts, sketches


def test_labels_from_other_processes_and_after_restarts_equal_the_clients_records(tmp_path):
    otelcol()  # fails under MODELOTEL_CI=1 when missing, before anything starts
    spec = tmp_path / "slo.yaml"
    spec.write_text(SPEC)
    collector_grpc = free_port()
    file_path = tmp_path / "collector.jsonl"
    serve = Serve(tmp_path, spec, tmp_path / "serve-state")
    config = tmp_path / "collector.yaml"
    config.write_text(COLLECTOR)
    env = _env(collector_grpc)
    rng = np.random.default_rng(17)
    servers = Servers(tmp_path, env)
    collector_env = {
        "COLLECTOR_GRPC_PORT": str(collector_grpc),
        "FILE_PATH": str(file_path),
        "SERVE_GRPC_PORT": str(serve.grpc_port),
        "SERVE_HTTP_PORT": str(serve.http_port),  # both exporters to the one serve: it drops retried duplicates
    }
    serve.start()
    try:
        with run_collector(config, collector_env, tmp_path / "collector.log", free_port()):
            servers.start()
            first = _traffic(servers, rng, 1)
            assert len({r["server"] for r in first}) == SERVERS
            assert _label(first[:60], env) == 0  # right away, from another process
            time.sleep(1.5)  # past an export interval of every process
            # these labels come as a file, the way a labelling pipeline produces them
            labels_csv = tmp_path / "labels.csv"
            pd.DataFrame(
                {
                    "prediction_id": [r["id"] for r in first[60:100]],
                    "label": [r["truth"] for r in first[60:100]],
                    "region": [r["group"] for r in first[60:100]],
                }
            ).to_csv(labels_csv, index=False)
            ingest = subprocess.run(
                [sys.executable, "-m", "modelotel", "feedback", str(labels_csv), "--group-column", "region"]
                + ["--positive-label", "fraud", "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                cwd=ROOT,
            )
            assert ingest.returncode == 0, ingest.stderr[-3000:]
            servers.stop()  # SIGTERM: the servers are gone, their ids still judge
            servers.start()
            second = _traffic(servers, rng, 2)
            assert not {r["server"] for r in second} & {r["server"] for r in first}
            labelled_second = second[: PER_PHASE - UNLABELLED]
            assert _label(first[100:] + labelled_second, env) == 0  # after the restart: old and new predictions
            # hostile ids: counted per reason, never matched
            good = first[0]["id"]
            bad = [
                {"id": good[:-1] + ("A" if good[-1] != "A" else "B"), "truth": "fraud", "group": "north"},
                {"id": good[:50], "truth": "fraud", "group": "north"},
                {"id": "not-a-prediction-id", "truth": "fraud", "group": "north"},
                {"id": good, "truth": "fraud", "group": "north"},  # a second label for a judged id
            ]
            assert _label(bad, env) == 3  # the repeat is judged: another process cannot know it was judged
            servers.stop()

            labelled = first + labelled_second
            labelled.append({**first[0], "truth": "fraud", "group": "north"})  # the repeat above: judged again
            judged_right = sum(r["predicted"] == r["truth"] for r in labelled)
            expected = Counter({True: judged_right, False: len(labelled) - judged_right})
            counts = wait_for(
                lambda: (c := _feedback_totals(file_path)[0]) == expected and c,
                30,
                f"the collector file to hold every feedback ({expected})",
            )
            assert counts == expected
            # the hostile ids: each counted under its reason in the labelling process's telemetry, none matched
            dropped, _ = read(str(file_path), {conv.DROPPED})
            reasons = Counter()
            for d in dropped:
                reasons[d.attributes.get(conv.DROP_REASON)] += d.value
            assert {r: reasons[r] for r in ("feedback_id_forged", "feedback_id_truncated", "feedback_id_foreign")} == {
                "feedback_id_forged": 1,
                "feedback_id_truncated": 1,
                "feedback_id_foreign": 1,
            }, reasons

            # -- modelotel evaluate over the collector file
            result = subprocess.run(
                [sys.executable, "-m", "modelotel", "evaluate", "--slo", str(spec), "--data", str(file_path)]
                + ["--format", "json"],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=ROOT,
            )
            assert result.returncode in (0, 1), result.stderr
            slos = {s["name"]: s for s in json.loads(result.stdout)["slos"]}
            acc = slos["fraud-accuracy"]
            assert acc["events"] == len(labelled) and acc["good"] == judged_right
            assert acc["sli"] == judged_right / len(labelled)
            predictions = 2 * PER_PHASE
            assert acc["label_coverage"]["predictions"] == predictions
            assert acc["label_coverage"]["coverage"] == len(labelled) / predictions
            strict = slos["fraud-accuracy-strict-coverage"]
            assert strict["status"] == "inconclusive" and "label coverage" in strict["reason"], strict

            # -- fairness: every rate equals the client's, exactly
            fair = subprocess.run(
                [sys.executable, "-m", "modelotel", "fairness", "--data", str(file_path), "--format", "json"],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=ROOT,
            )
            assert fair.returncode == 0, fair.stderr
            groups = {g["group"]: g for g in json.loads(fair.stdout)["models"][0]["groups"]}
            for name in ("north", "south", "east"):
                rows = [r for r in labelled if r["group"] == name]
                tp = sum(r["predicted"] == "fraud" and r["truth"] == "fraud" for r in rows)
                fp = sum(r["predicted"] == "fraud" and r["truth"] == "legit" for r in rows)
                fn = sum(r["predicted"] == "legit" and r["truth"] == "fraud" for r in rows)
                tn = len(rows) - tp - fp - fn
                g = groups[name]
                assert g["feedback"] == len(rows)
                assert g["accuracy"] == (tp + tn) / len(rows)
                assert g["selection_rate"] == (tp + fp) / len(rows)
                assert g["tpr"] == tp / (tp + fn) and g["fpr"] == fp / (fp + tn)

            # -- modelotel performance: confusion matrix and per-class precision/recall equal the client's, exactly
            perf = subprocess.run(
                [sys.executable, "-m", "modelotel", "performance", "--data", str(file_path), "--json"],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=ROOT,
            )
            assert perf.returncode == 0, perf.stderr
            model = json.loads(perf.stdout)["models"][0]
            assert model["judged"] == len(labelled) and model["accuracy"] == judged_right / len(labelled)
            assert model["coverage"]["ratio"] == len(labelled) / predictions
            classes = {c["label"]: c for c in model["classification"]["classes"]}
            for name in ("fraud", "legit"):
                tp = sum(r["predicted"] == name and r["truth"] == name for r in labelled)
                predicted_as = sum(r["predicted"] == name for r in labelled)
                support = sum(r["truth"] == name for r in labelled)
                assert classes[name]["precision"] == tp / predicted_as
                assert classes[name]["recall"] == tp / support and classes[name]["support"] == support

            # -- calibration from the sketches: the raw figures lie within the stated bounds
            _, sketches = _feedback_totals(file_path)
            cal = calibration(sketches.get(True), sketches.get(False))
            conf = np.array([r["confidence"] for r in labelled])
            right = np.array([r["predicted"] == r["truth"] for r in labelled], dtype=float)
            assert cal.count == len(labelled) and cal.correct == judged_right
            brier = float(np.mean((conf - right) ** 2))
            assert cal.brier_low - 1e-12 <= brier <= cal.brier_high + 1e-12
            edges = np.linspace(0, 1, 11)
            which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, 9)
            ece = sum(
                abs(right[which == b].mean() - conf[which == b].mean()) * (which == b).sum()
                for b in range(10)
                if (which == b).any()
            ) / len(conf)
            assert abs(cal.ece - ece) <= cal.ece_bound + cal.binning_bound + 1e-12

            # -- the same through modelotel serve (streaming, fed by the collector)
            status = wait_for(
                lambda: (
                    (s := {x["name"]: x for x in serve.status()["slos"]})["fraud-accuracy"]["events"] == len(labelled)
                    and s
                ),
                30,
                "serve to count every feedback",
            )
            live = status["fraud-accuracy"]
            assert live["good"] == judged_right and live["sli"] == judged_right / len(labelled)
            assert live["label_coverage"]["coverage"] == len(labelled) / predictions
            # CBPE beside it, in serve as in evaluate: the mean top-label confidence of every prediction made
            every = first + second
            for estimate in (live["estimated_accuracy"], acc["estimated_accuracy"]):
                assert estimate["predictions"] == predictions
                assert abs(estimate["value"] - float(np.mean([r["confidence"] for r in every]))) < 1e-9
                assert estimate["realized"] == judged_right / len(labelled)
                assert not estimate["gap_flagged"]  # a calibrated model: the gap is within noise
    finally:
        for proc in servers.procs:
            proc.stop()
        serve.stop()
