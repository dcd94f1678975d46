"""The evaluator's OTLP JSON lines source (evaluator/otlp_source.py, cumulative.py, sources.py).

Property tests generate raw events per instance and export interval (values of an exponential histogram, values
of an explicit-bucket histogram, labelled counter increments), encode them as collector-format OTLP JSON lines in
DELTA or CUMULATIVE form the way an SDK does (cumulative sketches with a small bucket limit, so their scale drops
over time and differs per instance; restarts that keep the instance id, so the series resets, or take a new one),
read them back and compare with exact computations on the raw events: per series and export interval the counter
deltas sum to the raw counts, and all delta sketches merged equal a sketch built from the raw values at the
merged (smallest) scale, bucket for bucket.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import types
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from modelotel.evaluator import sources
from modelotel.evaluator.sources import cumulative
from modelotel.evaluator.sources import otlp_file as otlp_source
from modelotel.evaluator.sources.points import Delta, SourceError
from modelotel.otlp.json import OTLPJsonFileMetricExporter
from modelotel.sketch import LogSketch

from telemetry_gen import attr, expo_point

NS = 1_000_000_000
T0 = 1_790_000_000 * NS
INTERVAL = 10 * NS
HIST, EXPLICIT, COUNTER = "ml.inference.duration", "ml.prediction.confidence", "ml.predictions"
BOUNDS = (0.1, 1.0, 10.0)
fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- encoding raw events


def explicit_point(counts: np.ndarray, total: float, bounds: tuple, attrs: list, start: int, end: int) -> dict:
    return {
        "attributes": attrs,
        "startTimeUnixNano": str(start),
        "timeUnixNano": str(end),
        "count": str(int(counts.sum())),
        "sum": total,
        "bucketCounts": [str(c) for c in counts.tolist()],
        "explicitBounds": list(bounds),
    }


def sum_point(value: int, attrs: list, start: int, end: int) -> dict:
    p = {"attributes": attrs, "startTimeUnixNano": str(start), "timeUnixNano": str(end), "asInt": str(value)}
    if not start:
        del p["startTimeUnixNano"]
    return p


def request(resource: list, metrics: list) -> str:
    doc = {
        "resourceMetrics": [
            {
                "resource": {"attributes": resource},
                "scopeMetrics": [{"scope": {"name": "modelotel"}, "metrics": metrics}],
            }
        ]
    }
    return json.dumps(doc, separators=(",", ":"))


@dataclasses.dataclass
class Instance:
    """One process (or a chain of them, when it restarts) exporting every INTERVAL."""

    name: str
    scale: int  # its SDK's starting scale
    max_buckets: int  # small: the cumulative sketch downscales as its range grows
    bounds: tuple[float, ...]
    intervals: list[tuple[list[float], list[str]]]  # per export k = 1..K: histogram values, counter labels
    restarts: frozenset[int]  # restarted right after export k-1 (new start time, state from zero)
    keep_id: bool  # a restart keeps the instance id (same series: a reset) or takes a new one


def encode(instances: list[Instance], cumulative_form: bool) -> tuple[list[str], dict]:
    """The OTLP JSON lines, and the exact expectations: per (instance id, k) the raw values and label counts."""
    temporality = 2 if cumulative_form else 1
    expected: dict = {"values": defaultdict(list), "labels": defaultdict(int), "explicit": defaultdict(int)}
    last_start: dict = {}  # series -> start of its last exported point: a new one is a reset
    expected["resets"] = 0
    lines: list[tuple[int, int, str]] = []
    for ii, inst in enumerate(instances):
        incarnation = 0
        start = T0 - 5 * NS
        sk = LogSketch(inst.scale, max_buckets=inst.max_buckets)
        explicit = np.zeros(len(inst.bounds) + 1, dtype=np.int64)
        explicit_sum = 0.0
        labels: dict[str, int] = defaultdict(int)
        for k, (values, labs) in enumerate(inst.intervals, start=1):
            end = T0 + k * INTERVAL + ii  # instances export at slightly different times
            if k in inst.restarts:
                incarnation += 1
                start = end - INTERVAL + 1
                sk = LogSketch(inst.scale, max_buckets=inst.max_buckets)
                explicit[:] = 0
                explicit_sum = 0.0
                labels = defaultdict(int)
            if not cumulative_form:
                start = end - INTERVAL
                sk = LogSketch(inst.scale, max_buckets=inst.max_buckets)
                explicit = np.zeros(len(inst.bounds) + 1, dtype=np.int64)
                explicit_sum = 0.0
                labels = defaultdict(int)
            iid = inst.name if inst.keep_id or not incarnation else f"{inst.name}-{incarnation}"
            sk.add_many(values)
            if values:
                np.add.at(explicit, np.searchsorted(inst.bounds, values, side="left"), 1)
                explicit_sum += float(np.sum(values))
            for lab in labs:
                labels[lab] += 1
            expected["values"][(iid, k)].extend(values)
            for lab in labs:
                expected["labels"][(iid, lab, k)] += 1
            for i, c in enumerate(
                np.bincount(np.searchsorted(inst.bounds, values, side="left"), minlength=len(inst.bounds) + 1).tolist()
                if values
                else []
            ):
                expected["explicit"][(iid, i)] += c
            model = [attr("ml.model.name", "m")]
            metrics = [
                {
                    "name": HIST,
                    "unit": "s",
                    "exponentialHistogram": {
                        "dataPoints": [expo_point(sk, model, start, end)],
                        "aggregationTemporality": temporality,
                    },
                },
                {
                    "name": EXPLICIT,
                    "unit": "1",
                    "histogram": {
                        "dataPoints": [explicit_point(explicit.copy(), explicit_sum, inst.bounds, model, start, end)],
                        "aggregationTemporality": temporality,
                    },
                },
                {
                    "name": COUNTER,
                    "unit": "{prediction}",
                    "sum": {
                        "dataPoints": [
                            sum_point(v, [*model, attr("ml.prediction.label", lab)], start, end)
                            for lab, v in sorted(labels.items())
                        ],
                        "aggregationTemporality": temporality,
                        "isMonotonic": True,
                    },
                },
            ]
            if cumulative_form:
                for series in [(iid, HIST), (iid, EXPLICIT)] + [(iid, COUNTER, lab) for lab in labels]:
                    expected["resets"] += last_start.get(series, start) != start
                    last_start[series] = start
            resource = [attr("service.name", "svc"), attr("service.instance.id", iid)]
            lines.append((end, ii, request(resource, metrics)))
    lines.sort()
    return [text for _, _, text in lines], expected


values_st = st.lists(
    st.one_of(
        st.floats(1e-4, 1e4, allow_nan=False),
        st.floats(-100, -1e-3),
        st.sampled_from([0.0, 1.0, 2.0, 0.5, 0.25, 4.0, -1.0]),
    ),
    max_size=8,
)


@st.composite
def instances_st(draw) -> list[Instance]:
    n_intervals = draw(st.integers(1, 6))
    out = []
    for i in range(draw(st.integers(1, 3))):
        intervals = [
            (draw(values_st), draw(st.lists(st.sampled_from(["a", "b"]), max_size=4))) for _ in range(n_intervals)
        ]
        restarts = frozenset(draw(st.sets(st.integers(2, 6), max_size=2)) & set(range(2, n_intervals + 1)))
        out.append(
            Instance(
                name=f"inst-{i}",
                scale=draw(st.integers(0, 8)),
                max_buckets=draw(st.integers(3, 24)),
                bounds=draw(st.sampled_from([BOUNDS, (0.0, 5.0), (-1.0, 0.5, 2.0, 100.0)])),
                intervals=intervals,
                restarts=restarts,
                keep_id=draw(st.booleans()),
            )
        )
    return out


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def read(path, metrics=(HIST, EXPLICIT, COUNTER), **kw) -> tuple[list[Delta], object]:
    deltas, report = sources.read(str(path), None if metrics is None else set(metrics), **kw)
    return list(deltas), report


def exact_sketch(values: list[float], scale: int) -> LogSketch:
    """The raw values bucketed at ``scale`` directly (no bucket limit, so no downscaling)."""
    sk = LogSketch(scale, max_buckets=1 << 30)
    sk.add_many(values)
    assert sk.scale == scale
    return sk


def same_buckets(a: LogSketch, b: LogSketch) -> bool:
    return (
        a.scale == b.scale
        and a.count == b.count
        and a.zero_count == b.zero_count
        and (a.positive.offset, a.positive.counts.tolist()) == (b.positive.offset, b.positive.counts.tolist())
        and (a.negative.offset, a.negative.counts.tolist()) == (b.negative.offset, b.negative.counts.tolist())
    )


def bin_of(delta: Delta) -> int:
    return (delta.end_ns - T0) // INTERVAL


# --------------------------------------------------------------------------- properties


@fast
@given(instances=instances_st(), cumulative_form=st.booleans())
def test_deltas_sum_to_the_raw_events_per_series_and_interval(tmp_path_factory, instances, cumulative_form):
    lines, expected = encode(instances, cumulative_form)
    path = write(tmp_path_factory.mktemp("p") / "m.jsonl", lines)
    deltas, report = read(path)
    assert report.corrupt_lines == report.foreign_lines == report.bad_points == 0, report.problems
    assert report.first_cumulative == 0  # every start is known

    # counters: per instance id, label and export interval
    got: dict = defaultdict(int)
    for d in deltas:
        if d.metric == COUNTER:
            assert isinstance(d.value, int) and d.value > 0
            got[(d.attributes["service.instance.id"], d.attributes["ml.prediction.label"], bin_of(d))] += d.value
    assert dict(got) == {k: v for k, v in expected["labels"].items() if v}

    # exponential histograms: counts per interval, and all sketches merged == the raw values at that scale
    hist = [d for d in deltas if d.metric == HIST]
    per_bin: dict = defaultdict(int)
    for d in hist:
        assert d.sketch is not None and d.value == d.sketch.count > 0
        assert d.start_ns < d.end_ns
        per_bin[(d.attributes["service.instance.id"], bin_of(d))] += d.sketch.count
    assert dict(per_bin) == {k: len(v) for k, v in expected["values"].items() if v}
    all_values = [v for vs in expected["values"].values() for v in vs]
    if hist:
        merged = LogSketch(20)
        for d in hist:
            merged.merge(d.sketch)
        want = exact_sketch(all_values, merged.scale)
        assert same_buckets(merged, want), (merged, want)
        assert math.isclose(merged.sum, want.sum, rel_tol=1e-9, abs_tol=1e-6)
        assert merged.min <= min(all_values) and merged.max >= max(all_values)
        # per instance id too (each has its own scales)
        for iid in {d.attributes["service.instance.id"] for d in hist}:
            mine = LogSketch(20)
            for d in hist:
                if d.attributes["service.instance.id"] == iid:
                    mine.merge(d.sketch)
            raw = [v for (i, _), vs in expected["values"].items() if i == iid for v in vs]
            assert same_buckets(mine, exact_sketch(raw, mine.scale))
    else:
        assert not all_values

    # explicit-bucket histograms: bucket counts summed over deltas == raw bucket counts
    got_explicit: dict = defaultdict(int)
    for d in deltas:
        if d.metric == EXPLICIT:
            assert d.explicit is not None and d.value == sum(d.explicit.counts)
            for i, c in enumerate(d.explicit.counts):
                got_explicit[(d.attributes["service.instance.id"], i)] += c
    assert {k: v for k, v in got_explicit.items() if v} == {k: v for k, v in expected["explicit"].items() if v}

    # resets: a restart that kept the instance id restarts each of its series that exports again
    assert report.resets == expected["resets"]
    assert report.deltas == len(deltas)
    assert report.instances == {iid for (iid, _) in expected["values"]}


@fast
@given(instances=instances_st(), lo=st.integers(0, 7), width=st.integers(0, 7))
def test_time_filter_keeps_exactly_the_deltas_ending_in_the_window(tmp_path_factory, instances, lo, width):
    """Cumulative state is tracked through the whole file, so the window's deltas are still exact."""
    lines, expected = encode(instances, cumulative_form=True)
    path = write(tmp_path_factory.mktemp("w") / "m.jsonl", lines)
    start_ns, end_ns = T0 + lo * INTERVAL, T0 + (lo + width) * INTERVAL + 10  # +10: instances export at +ii
    deltas, _ = read(path, start_ns=start_ns, end_ns=end_ns)
    assert all(start_ns <= d.end_ns <= end_ns for d in deltas)
    got: dict = defaultdict(int)
    for d in deltas:
        if d.metric == HIST:
            got[(d.attributes["service.instance.id"], bin_of(d))] += d.value
    want = {k: len(v) for k, v in expected["values"].items() if v and lo <= k[1] <= lo + width}
    assert dict(got) == want


# --------------------------------------------------------------------------- cumulative edge cases


def lines_for(points_by_line: list[list[dict]], kind: str = "sum", name: str = COUNTER, temporality: int = 2) -> list:
    resource = [attr("service.instance.id", "i-1")]
    out = []
    for pts in points_by_line:
        data = {"dataPoints": pts, "aggregationTemporality": temporality}
        if kind == "sum":
            data["isMonotonic"] = True
        out.append(request(resource, [{"name": name, kind: data}]))
    return out


def test_unknown_start_first_point_is_a_baseline_and_decrease_is_a_reset(tmp_path):
    attrs = [attr("ml.prediction.label", "a")]
    totals = [5, 8, 8, 2, 7]  # no start times: 5 is the baseline; 8 -> 2 is a restart
    lines = lines_for([[sum_point(v, attrs, 0, T0 + k * INTERVAL)] for k, v in enumerate(totals, 1)])
    deltas, report = read(write(tmp_path / "m.jsonl", lines))
    assert [(bin_of(d), d.value) for d in deltas] == [(2, 3), (4, 2), (5, 5)]
    assert report.first_cumulative == 1 and report.resets == 1
    assert deltas[1].start_ns == T0 + 3 * INTERVAL  # a reset by decrease covers (previous point, this one]


def test_first_point_with_known_start_counts_fully(tmp_path):
    attrs = [attr("ml.prediction.label", "a")]
    lines = lines_for([[sum_point(4, attrs, T0, T0 + INTERVAL)], [sum_point(9, attrs, T0, T0 + 2 * INTERVAL)]])
    deltas, report = read(write(tmp_path / "m.jsonl", lines))
    assert [(d.start_ns, d.end_ns, d.value) for d in deltas] == [
        (T0, T0 + INTERVAL, 4),
        (T0 + INTERVAL, T0 + 2 * INTERVAL, 5),
    ]
    assert report.first_cumulative == 0


def test_scale_drop_and_bounds_change(tmp_path):
    """A cumulative sketch whose scale drops is differenced at the smaller scale; new explicit bounds reset."""
    a = LogSketch(6, max_buckets=1 << 20)
    a.add_many([1.0, 1.01, 1.02, 3.0])
    b = a.copy()
    b.add_many([1.03, 50.0])
    b.downscale(3)
    attrs = [attr("ml.model.name", "m")]
    lines = lines_for(
        [[expo_point(a, attrs, T0, T0 + INTERVAL)], [expo_point(b, attrs, T0, T0 + 2 * INTERVAL)]],
        "exponentialHistogram",
        HIST,
    )
    deltas, _ = read(write(tmp_path / "e.jsonl", lines))
    assert [d.sketch.scale for d in deltas] == [6, 3]
    assert same_buckets(deltas[1].sketch, exact_sketch([1.03, 50.0], 3))

    h1 = explicit_point(np.array([1, 2, 0, 0]), 3.0, BOUNDS, attrs, T0, T0 + INTERVAL)
    h2 = explicit_point(np.array([2, 2, 1, 0]), 9.0, BOUNDS, attrs, T0, T0 + 2 * INTERVAL)
    h3 = explicit_point(np.array([1, 1]), 2.0, (0.5,), attrs, T0, T0 + 3 * INTERVAL)  # new bounds: a reset
    deltas, report = read(write(tmp_path / "x.jsonl", lines_for([[h1], [h2], [h3]], "histogram", EXPLICIT)))
    assert [d.explicit.counts for d in deltas] == [(1, 2, 0, 0), (1, 0, 1, 0), (1, 1)]
    assert [d.explicit.bounds for d in deltas] == [BOUNDS, BOUNDS, (0.5,)]
    assert deltas[1].explicit.sum == 6.0 and report.resets == 1


def test_idle_and_stale_points(tmp_path):
    """An unchanged cumulative point yields nothing; a point not after the previous one is already contained in
    the newer total: a duplicate, dropped and counted (not a problem)."""
    sk = LogSketch(4)
    sk.add_many([0.5, 2.0])
    attrs = [attr("ml.model.name", "m")]
    times = [1, 2, 3, 2]  # the last one goes back in time
    lines = lines_for([[expo_point(sk, attrs, T0, T0 + t * INTERVAL)] for t in times], "exponentialHistogram", HIST)
    deltas, report = read(write(tmp_path / "m.jsonl", lines))
    assert [d.value for d in deltas] == [2]
    assert report.bad_points == 0 and report.duplicate_points == 1 and report.first_duplicate_line == 4


def test_delta_sketch_does_not_share_state_with_the_tracker(tmp_path):
    """Mutating a delta's sketch (merging into it) must not change later increments."""
    a, b = LogSketch(4), LogSketch(4)
    a.add_many([1.0, 2.0])
    b.add_many([1.0, 2.0, 2.0])
    attrs = [attr("ml.model.name", "m")]
    lines = lines_for(
        [[expo_point(a, attrs, T0, T0 + INTERVAL)], [expo_point(b, attrs, T0, T0 + 2 * INTERVAL)]],
        "exponentialHistogram",
        HIST,
    )
    deltas, _ = otlp_source.read_otlp_file(write(tmp_path / "m.jsonl", lines), {HIST})
    first = next(deltas)
    first.sketch.merge(first.sketch)  # in place
    second = next(deltas)
    assert same_buckets(second.sketch, exact_sketch([2.0], 4))


# --------------------------------------------------------------------------- bad input


NO_TIME = {"aggregationTemporality": 1, "isMonotonic": True, "dataPoints": [{"asInt": "2"}]}  # a point without a time


def test_corrupt_foreign_and_bad_points_are_counted_with_line_numbers(tmp_path):
    good = lines_for([[sum_point(3, [], T0, T0 + INTERVAL)]])[0]
    bad_count = {
        "attributes": [],
        "startTimeUnixNano": str(T0),
        "timeUnixNano": str(T0 + INTERVAL),
        "count": "5",
        "scale": 3,
        "positive": {"offset": 1, "bucketCounts": ["1", "2"]},
    }
    lines = [
        good,  # 1
        "",  # 2: blank, not counted
        "{}",  # 3: the collector's empty request
        '{"resourceSpans":[{"resource":{},"scopeSpans":[]}]}',  # 4: traces (file route)
        '{"resourceLogs":[]}',  # 5: logs
        '{"hello": "world"}',  # 6: other JSON
        "[1, 2, 3]",  # 7: not an object
        "not json at all",  # 8
        lines_for([[bad_count]], "exponentialHistogram", HIST)[0],  # 9: count 5 != 3
        lines_for([[sum_point(1, [], T0, T0 + INTERVAL)]], temporality=0)[0],  # 10: no temporality
        request([], [{"name": COUNTER, "gauge": {"dataPoints": [{"asInt": "1", "timeUnixNano": "5"}]}}]),  # 11
        request(
            [],
            [
                {
                    "name": HIST,
                    "exponentialHistogram": {
                        "aggregationTemporality": 1,
                        "dataPoints": [{"timeUnixNano": "7", "count": "1", "positive": {"bucketCounts": ["x"]}}],
                    },
                }
            ],
        ),  # 12
        request([], [{"name": COUNTER, "sum": NO_TIME}]),  # 13
        good[: len(good) // 2],  # 14: truncated last line (no newline)
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines))
    deltas, report = read(path)
    assert [d.value for d in deltas] == [3]
    assert report.lines == 13
    # traces and logs lines (the collector's file route) are other signals, not problems
    assert report.corrupt_lines == 2 and report.foreign_lines == 2 and report.bad_points == 5
    assert report.signal_lines == {"traces": 1, "logs": 1}
    where = {p.line: p.reason for p in report.problems}
    assert set(where) == {6, 7, 8, 9, 10, 11, 12, 13, 14}, where
    assert "count 5 != zeroCount 0 + positive 3" in where[9]
    assert "aggregationTemporality 0" in where[10]
    assert "gauge" in where[11]
    assert "bucketCounts not all non-negative integers" in where[12]
    assert "missing field 'timeUnixNano'" in where[13]
    assert "truncated last line" in where[14]
    assert all(p.source == str(path) for p in report.problems)


def test_unreadable_locations_raise_one_clear_error(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        sources.read(str(tmp_path / "missing.jsonl"), {COUNTER})
    with pytest.raises(SourceError, match="is a directory"):
        sources.read(str(tmp_path), {COUNTER})
    binary = tmp_path / "model.onnx"
    binary.write_bytes(b"\x08\x01\x12\x00\x00\x00binary")
    with pytest.raises(SourceError, match="not a text file"):
        sources.read(str(binary), {COUNTER})
    bad_gzip = tmp_path / "bad.gz"
    bad_gzip.write_bytes(b"\x1f\x8b\x09garbage")
    with pytest.raises(SourceError, match="bad.gz"):
        sources.read(str(bad_gzip), {COUNTER})


def test_unreadable_file_permission(tmp_path):
    path = tmp_path / "secret.jsonl"
    path.write_text("{}\n")
    path.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(SourceError, match="permission denied"):
            sources.read(str(path), {COUNTER})
        return
    # root reads anything: check in a child that runs without the capabilities that bypass file permissions
    # (util-linux's setpriv drops them from the bounding set before exec)
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to test permissions as root"
    probe = (
        "import sys\nfrom modelotel.evaluator import sources\n"
        "try:\n    sources.read(sys.argv[1], {'x'})\nexcept sources.SourceError as exc:\n    print(exc)\n"
    )
    proc = subprocess.run(
        [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--", sys.executable, "-c", probe, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "permission denied" in proc.stdout, proc.stdout


def test_gzip_and_truncated_gzip(tmp_path):
    lines = lines_for([[sum_point(v, [], T0, T0 + k * INTERVAL)] for k, v in enumerate([2, 5, 9], 1)])
    data = gzip.compress("".join(line + "\n" for line in lines).encode())
    full = tmp_path / "m.jsonl.gz"
    full.write_bytes(data)
    deltas, report = read(full)
    assert [d.value for d in deltas] == [2, 3, 4] and report.bytes_read == len(data)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data[: len(data) - 12])  # the trailer and some of the stream are missing
    deltas, report = read(cut)
    assert report.corrupt_lines == 1 and "compressed data unreadable" in report.problems[-1].reason
    assert [d.value for d in deltas] == [2, 3, 4][: len(deltas)]


def test_zstd_is_read_or_named(tmp_path):
    try:
        import zstandard
    except ImportError:
        path = tmp_path / "m.jsonl.zst"
        path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 16)
        with pytest.raises(SourceError, match="zstandard"):
            sources.read(str(path), {COUNTER})
        return
    lines = lines_for([[sum_point(4, [], T0, T0 + INTERVAL)]])
    path = tmp_path / "m.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress("\n".join(lines).encode()))
    deltas, _ = read(path)
    assert [d.value for d in deltas] == [4]


def test_unwanted_metrics_are_skipped_and_counted(tmp_path):
    instances = [Instance("i", 3, 16, BOUNDS, [([1.0, 2.0], ["a", "b"])] * 3, frozenset(), True)]
    lines, _ = encode(instances, cumulative_form=True)
    deltas, report = read(write(tmp_path / "m.jsonl", lines), metrics=[COUNTER])
    assert {d.metric for d in deltas} == {COUNTER}
    assert report.skipped_metrics == 6 and report.points == 6  # 3 lines x (1 expo + 1 explicit); 3 x 2 labels


# --------------------------------------------------------------------------- attributes, progress, helpers


def test_attributes_merge_resource_and_point_and_flatten_any_values(tmp_path):
    resource = [
        attr("service.instance.id", "i-9"),
        attr("ml.model.name", "resource-wins-not"),
        {"key": "replicas", "value": {"intValue": "3"}},
    ]
    point_attrs = [
        attr("ml.model.name", "fraud"),
        attr("ok", True),
        {"key": "ratio", "value": {"doubleValue": 0.5}},
        {"key": "zones", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}}},
        {"key": "kv", "value": {"kvlistValue": {"values": [{"key": "x", "value": {"boolValue": False}}]}}},
        {"key": "raw", "value": {"bytesValue": "AAE="}},
        {"key": "empty", "value": {}},
    ]
    line = request(
        resource,
        [
            {
                "name": COUNTER,
                "sum": {
                    "aggregationTemporality": 1,
                    "isMonotonic": True,
                    "dataPoints": [sum_point(2, point_attrs, T0, T0 + INTERVAL)],
                },
            }
        ],
    )
    (delta,), report = read(write(tmp_path / "m.jsonl", [line]))
    assert delta.attributes == {
        "service.instance.id": "i-9",
        "ml.model.name": "fraud",
        "replicas": 3,
        "ok": True,
        "ratio": 0.5,
        "zones": '["a",2]',
        "kv": '{"x":false}',
        "raw": "AAE=",
        "empty": "",
    }
    assert report.instances == {"i-9"} and report.series == 1


def test_progress_is_throttled_and_ends_at_the_file_size(tmp_path, monkeypatch):
    instances = [Instance("i", 3, 16, BOUNDS, [([1.0], ["a"])] * 40, frozenset(), True)]
    path = write(tmp_path / "m.jsonl", encode(instances, cumulative_form=True)[0])
    clock = iter(range(10**6))
    fake_time = types.SimpleNamespace(monotonic=lambda: next(clock) * 0.1)  # each line "takes" 0.1 s
    monkeypatch.setattr(otlp_source, "time", fake_time)
    calls = []
    deltas, _ = sources.read(str(path), {COUNTER}, progress=lambda done, total: calls.append((done, total)))
    list(deltas)
    size = path.stat().st_size
    assert calls[-1] == (size, size)
    assert 10 <= len(calls) <= 40 // 2 + 2  # at most one call per 0.25 s of (fake) time, plus the final one
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_series_ids_are_unique_across_reads(tmp_path):
    path = write(tmp_path / "m.jsonl", lines_for([[sum_point(1, [], T0, T0 + INTERVAL)]]))
    (a,), _ = read(path)
    (b,), _ = read(path)
    assert a.series != b.series and a.series > 0


def test_fast_constructors_build_the_same_objects():
    """otlp_source builds Deltas and cumulative.py LogSketches without their __init__ (speed); same objects."""
    args = ("m", {"a": 1}, 1, 2, 3, None, None, 7, "ms")
    assert otlp_source._delta(*args) == Delta(*args)
    with pytest.raises(dataclasses.FrozenInstanceError):
        otlp_source._delta(*args).value = 4
    counts = cumulative.ExpoCounts(4, 3, 1, 10, np.array([1, 0, 1]), 0, np.zeros(0, dtype=np.int64), 2.5)
    sk = counts.sketch()
    assert set(vars(sk)) == set(vars(LogSketch(4)))
    assert same_buckets(
        sk,
        LogSketch.from_otlp_point(
            {
                "scale": 4,
                "count": "3",
                "zeroCount": "1",
                "sum": 2.5,
                "positive": {"offset": 10, "bucketCounts": [1, 0, 1]},
            }
        ),
    )


# --------------------------------------------------------------------------- real producers


@pytest.mark.parametrize("temporality", [AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA])
def test_embedded_exporter_output(tmp_path, temporality):
    """Our OTLP JSON file exporter (the SDK's encoders), cumulative and delta, several exports."""
    path = tmp_path / "sdk.jsonl"
    prefs = {Counter: temporality, Histogram: temporality}
    reader = PeriodicExportingMetricReader(OTLPJsonFileMetricExporter(path, preferred_temporality=prefs), 10**9)
    provider = MeterProvider(
        resource=Resource.create({"service.name": "sdk", "service.instance.id": "sdk-1"}),
        metric_readers=[reader],
        views=[View(instrument_name=HIST, aggregation=ExponentialBucketHistogramAggregation(max_size=20))],
    )
    meter = provider.get_meter("modelotel")
    hist = meter.create_histogram(HIST, unit="s")
    counter = meter.create_counter(COUNTER)
    rng = np.random.default_rng(3)
    batches = [rng.lognormal(-3, 2, 50), rng.lognormal(0, 3, 80), rng.lognormal(2, 1, 30)]  # range grows: downscales
    for values in batches:
        for v in values:
            hist.record(float(v), {"ml.model.name": "m"})
        counter.add(len(values), {"ml.prediction.label": "a"})
        reader.collect()
    provider.shutdown()
    deltas, report = read(path)
    assert report.deltas == len(deltas) and report.bad_points == 0 and report.corrupt_lines == 0
    assert sum(d.value for d in deltas if d.metric == COUNTER) == 160
    sketches = [d.sketch for d in deltas if d.metric == HIST]
    assert len(sketches) == 3  # one increment per export
    merged = LogSketch(20)
    for sk in sketches:
        merged.merge(sk)
    assert same_buckets(merged, exact_sketch(np.concatenate(batches).tolist(), merged.scale))
    assert report.instances == {"sdk-1"}
