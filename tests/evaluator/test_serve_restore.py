"""``modelotel serve`` across a restart: the series cap and the record of delta points (issue 15, finding 10).

A real ``modelotel serve`` subprocess with ``--state``, stopped by SIGTERM (its last snapshot) and started again:

* a snapshot holding more series than ``--max-series`` restores only the ones updated last; the others are
  dropped, counted in ``modelotel_serve_series_refused_points_total`` and said at start-up;
* a delta request counted before the restart and sent again after it (a collector retrying a request whose
  answer it never saw) is recognised as a duplicate and counted once, over HTTP and over gRPC.
"""

from __future__ import annotations

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from test_serve import sample
from test_serve_limits import events_at, lines_of, metrics, post_json, serve

from telemetry_gen import EPOCH, Event, export_lines


def cumulative_lines(instances: int, end: int) -> list[str]:
    """As test_serve_limits.lines_of, cumulative: 20 events per instance and 10 s, two series per instance."""
    events = [Event(f"i{k}", 0.25 + j * 0.5, 0.05, error=j % 5 == 0) for k in range(instances) for j in range(2 * end)]
    return export_lines(events, interval=10, end=end, cumulative=True)


def test_a_snapshot_with_more_series_than_max_series_restores_the_ones_updated_last(tmp_path):
    state = tmp_path / "state"
    lines = cumulative_lines(4, end=30)  # 4 instances x 2 series, one line per instance and 10 s
    early = [ln for ln in lines if '"timeUnixNano":"1800000010000000000"' in ln]
    late = [ln for ln in lines if '"timeUnixNano":"1800000020000000000"' in ln and '"stringValue":"i3"' in ln]
    s = serve(tmp_path, state=state)
    try:
        for line in early + late:  # i3's two series are updated last
            assert post_json(s, line) == (200, {})
        assert sample(metrics(s), "modelotel_serve_series") == 8
    finally:
        assert s.stop() == 0, s.output()
    s = serve(tmp_path, "--max-series", "2", state=state, name="capped")
    try:
        m = metrics(s)
        assert sample(m, "modelotel_serve_series") == 2, m
        assert sample(m, "modelotel_serve_series_refused_points_total") == 6
        notes = [ln for ln in s.output().splitlines() if "over --max-series 2" in ln]
        assert len(notes) == 1 and "6 dropped" in notes[0], s.output()
        # the two kept are i3's: its next points are counted, a dropped series' are refused at the cap
        i3 = next(ln for ln in lines if '"timeUnixNano":"1800000030000000000"' in ln and '"i3"' in ln)
        i0 = next(ln for ln in lines if '"timeUnixNano":"1800000030000000000"' in ln and '"i0"' in ln)
        before = events_at(s, EPOCH + 30)
        assert post_json(s, i3) == (200, {})
        code, answer = post_json(s, i0)
        assert code == 200 and "--max-series" in answer["partialSuccess"]["errorMessage"], answer
        assert events_at(s, EPOCH + 30) == before + 20
    finally:
        assert s.stop() == 0, s.output()
    assert "Traceback" not in s.output()


def test_a_delta_request_sent_again_after_a_restart_is_counted_once(tmp_path):
    state = tmp_path / "state"
    lines = lines_of(1, end=20)
    first, second = lines[0], lines[1]
    s = serve(tmp_path, state=state)
    try:
        assert post_json(s, first) == (200, {})
        assert events_at(s, EPOCH + 20) == 20
    finally:
        assert s.stop() == 0, s.output()  # SIGTERM: the last snapshot
    s.start()
    try:
        assert events_at(s, EPOCH + 20) == 20  # restored
        assert post_json(s, first) == (200, {})  # the collector's retry over HTTP
        with grpc.insecure_channel(f"127.0.0.1:{s.grpc_port}") as channel:  # and over gRPC
            stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)
            stub.Export(json_format.Parse(first, metrics_service_pb2.ExportMetricsServiceRequest()), timeout=10)
        assert events_at(s, EPOCH + 20) == 20, "a retried delta request was counted again after the restart"
        assert sample(metrics(s), "modelotel_serve_requests_total", protocol="http", outcome="ok") >= 1
        assert post_json(s, second) == (200, {})  # new data still counts
        assert events_at(s, EPOCH + 20) == 40
    finally:
        assert s.stop() == 0, s.output()
    assert "Traceback" not in s.output()


def test_a_delta_request_sent_again_after_compaction_is_counted_once(tmp_path):
    """serve compacts its series table before every periodic snapshot: delta series keep their identity."""
    import time

    from test_serve import SERVE_SPEC, load_slos

    from modelotel.evaluator.engine.stream import StreamState

    state = StreamState(load_slos(tmp_path, SERVE_SPEC))
    first = lines_of(1)[0].encode() + b"\n"
    assert state.ingest(first).deltas > 0
    state.compact(time.time(), 6 * 3600)
    again = state.ingest(first)
    assert again.deltas == 0 and state.report.duplicate_points > 0, again
    assert state.series == 2
