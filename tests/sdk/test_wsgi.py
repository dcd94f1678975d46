"""WSGI middleware and Flask integration on a real werkzeug server (and gunicorn), with real HTTP clients."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from flask import Response, got_request_exception, stream_with_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from werkzeug.serving import make_server

import modelotel
from modelotel import conventions as conv
from modelotel.conventions import HTTP_SERVER_DURATION
from modelotel.integrations import wsgi as wsgi_module
from modelotel.integrations.flask import instrument_app, uninstrument_app
from modelotel.integrations.wsgi import ModelotelWSGIMiddleware

from apps.wsgi_app import AppError, create_app
from collector_support import stop_process
from collector_support import wait_for as poll
from conftest import MemoryMetricExporter, total_count

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROUTE = "http.route"
STATUS = "http.response.status_code"
METHOD = "http.request.method"
DEADLINE_S = 5.0


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def telemetry(spans):
    """modelotel exporting metrics to memory and spans through the session's SDK TracerProvider."""
    exporter = MemoryMetricExporter()
    modelotel.configure(service_name="wsgi-test", exporter=exporter, export_interval=3600, traces="span")
    yield exporter
    modelotel.shutdown()


@contextlib.contextmanager
def serving(app):
    """A real threaded werkzeug server on an ephemeral loopback port; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(DEADLINE_S)


def wait_for(predicate, timeout=DEADLINE_S, what="condition"):
    """Poll fast: server spans end a few milliseconds after the client has the response."""
    return poll(predicate, timeout, what, interval=0.005)


def server_spans(spans, name=None):
    return [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER and (name is None or s.name == name)]


def wait_server_spans(spans, n, name=None):
    found = wait_for(lambda: len(server_spans(spans, name)) >= n and server_spans(spans, name), what=f"{n} spans")
    assert len(found) == n, [s.name for s in found]
    return found


def http_points(exporter):
    modelotel.force_flush()
    return exporter.last_points(HTTP_SERVER_DURATION)


def instrumented(app=None, **options):
    return instrument_app(app if app is not None else create_app(), **options)


# -- spans and metrics ------------------------------------------------------------------------


def test_span_and_metric_per_request_with_route_template(telemetry, spans):
    app = instrumented()
    with serving(app) as url:
        for i in range(5):
            r = requests.get(f"{url}/items/{i}?email=bob@example.com&token=s3cret")
            assert r.status_code == 200 and r.json() == {"item": i}
        finished = wait_server_spans(spans, 5)
    for span in finished:
        assert span.name == "GET /items/<int:item_id>"
        assert span.kind is SpanKind.SERVER
        assert span.status.status_code is StatusCode.UNSET
        attrs = dict(span.attributes)
        assert attrs[ROUTE] == "/items/<int:item_id>"
        assert attrs[METHOD] == "GET" and attrs[STATUS] == 200
        assert attrs["url.scheme"] == "http" and attrs["network.protocol.version"] == "1.1"
        assert re.fullmatch(r"/items/\d", attrs["url.path"])
        assert not any(s in str(v) for v in attrs.values() for s in ("bob", "s3cret", "?"))
        assert conv.ERROR_TYPE not in attrs
    points = http_points(telemetry)
    assert total_count(points, **{ROUTE: "/items/<int:item_id>"}) == 5
    (point,) = [p for p in points if p.attributes.get(ROUTE) == "/items/<int:item_id>"]
    assert dict(point.attributes) == {
        METHOD: "GET",
        ROUTE: "/items/<int:item_id>",
        STATUS: 200,
        "url.scheme": "http",
        "network.protocol.version": "1.1",
    }
    assert point.sum > 0 and point.min > 0


def test_traceparent_continued_and_model_span_is_a_child(telemetry, spans):
    app = instrumented()
    trace_id, parent_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    with serving(app) as url:
        r = requests.post(f"{url}/predict", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
        assert r.status_code == 200 and r.json() == {"p": [0.2, 0.8]}
        (server,) = wait_server_spans(spans, 1)
    assert server.name == "POST /predict"
    assert format(server.context.trace_id, "032x") == trace_id
    assert format(server.parent.span_id, "016x") == parent_id and server.parent.is_remote
    (model,) = [s for s in spans.get_finished_spans() if s.name == "predict wsgi-model"]
    assert model.parent is not None and model.parent.span_id == server.context.span_id
    assert model.context.trace_id == server.context.trace_id


def test_unhandled_exception_is_a_500_with_its_class_and_flask_sees_the_same_object(telemetry, spans):
    app = instrumented()
    seen = []

    @app.errorhandler(500)
    def on_500(error):
        seen.append(error.original_exception)
        return "custom failure page", 500

    with serving(app) as url:
        r = requests.get(f"{url}/fail")
        assert r.status_code == 500 and r.text == "custom failure page"
        (span,) = wait_server_spans(spans, 1)
    (raised,) = app.config["RAISED"]
    assert seen == [raised] and seen[0] is raised
    assert isinstance(raised, AppError)
    assert span.name == "GET /fail"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[STATUS] == 500 and span.attributes[conv.ERROR_TYPE] == "AppError"
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.type"].endswith("AppError")
    points = http_points(telemetry)
    assert total_count(points, **{ROUTE: "/fail", STATUS: 500, conv.ERROR_TYPE: "AppError"}) == 1


def test_route_known_when_a_hook_answers_early_or_the_exception_propagates(telemetry, spans):
    # The route is read when the response starts (Flask's request is still in the environ then), or
    # by the got_request_exception receiver when an exception leaves Flask before any response.
    app = instrumented()

    @app.before_request
    def gate():
        if requests_flag["deny"]:
            return "denied by hook", 401
        return None

    requests_flag = {"deny": True}
    with serving(app) as url:
        assert requests.get(f"{url}/items/7").status_code == 401
        wait_server_spans(spans, 1)
    (denied,) = server_spans(spans)
    assert denied.name == "GET /items/<int:item_id>" and denied.attributes[ROUTE] == "/items/<int:item_id>"
    assert denied.attributes[STATUS] == 401

    spans.clear()
    requests_flag["deny"] = False
    app.config["PROPAGATE_EXCEPTIONS"] = True  # Flask re-raises instead of answering 500 itself
    with serving(app) as url:
        assert requests.get(f"{url}/fail").status_code == 500  # werkzeug answers for the crashed app
        (failed,) = wait_server_spans(spans, 1)
    assert failed.name == "GET /fail" and failed.attributes[ROUTE] == "/fail"
    assert failed.attributes[STATUS] == 500 and failed.attributes[conv.ERROR_TYPE] == "AppError"
    points = http_points(telemetry)
    assert total_count(points, **{ROUTE: "/items/<int:item_id>", STATUS: 401}) == 1
    assert total_count(points, **{ROUTE: "/fail", STATUS: 500, conv.ERROR_TYPE: "AppError"}) == 1


def test_plain_wsgi_app_exception_is_reraised_unchanged(telemetry, spans):
    raised = RuntimeError("raw app failed")

    def raw_app(environ, start_response):
        raise raised

    middleware = ModelotelWSGIMiddleware(raw_app)
    caught = []

    def outer(environ, start_response):  # what the server would see
        try:
            return middleware(environ, start_response)
        except BaseException as exc:
            caught.append(exc)
            raise

    with serving(outer) as url:
        assert requests.get(f"{url}/raw").status_code == 500
        (span,) = wait_server_spans(spans, 1)
    assert caught == [raised] and caught[0] is raised
    assert span.name == "GET" and ROUTE not in span.attributes
    assert span.status.status_code is StatusCode.ERROR and span.attributes[STATUS] == 500
    points = http_points(telemetry)
    assert total_count(points, **{STATUS: 500, conv.ERROR_TYPE: "RuntimeError"}) == 1


def test_explicit_503_and_403_status_handling(telemetry, spans):
    app = instrumented()
    with serving(app) as url:
        assert requests.get(f"{url}/busy").status_code == 503
        assert requests.get(f"{url}/forbidden").status_code == 403
        wait_server_spans(spans, 2)
    (busy,) = server_spans(spans, "GET /busy")
    assert busy.status.status_code is StatusCode.ERROR and busy.attributes[conv.ERROR_TYPE] == "503"
    assert not busy.events
    (forbidden,) = server_spans(spans, "GET /forbidden")
    assert forbidden.status.status_code is StatusCode.UNSET and conv.ERROR_TYPE not in forbidden.attributes
    points = http_points(telemetry)
    assert total_count(points, **{ROUTE: "/busy", STATUS: 503, conv.ERROR_TYPE: "503"}) == 1
    (point,) = [p for p in points if p.attributes.get(ROUTE) == "/forbidden"]
    assert point.attributes[STATUS] == 403 and conv.ERROR_TYPE not in point.attributes


def test_unmatched_route_has_no_route_attribute(telemetry, spans):
    app = instrumented()
    with serving(app) as url:
        assert requests.get(f"{url}/users/bob@example.com").status_code == 404
        assert requests.delete(f"{url}/items/3").status_code == 405
        assert requests.get(f"{url}/users/bob@example.com").status_code == 404  # scrubbed again, not remembered
        wait_server_spans(spans, 3)
    not_found, again, not_allowed = sorted(server_spans(spans), key=lambda s: s.attributes[STATUS])
    assert not_found.name == "GET" and ROUTE not in not_found.attributes
    assert not_found.attributes["url.path"] == again.attributes["url.path"] == "/users/<email>"
    assert not_found.status.status_code is StatusCode.UNSET
    assert not_allowed.name == "DELETE" and not_allowed.attributes[STATUS] == 405
    points = http_points(telemetry)
    unrouted = [p for p in points if ROUTE not in p.attributes]
    assert {p.attributes[STATUS] for p in unrouted} == {404, 405}
    assert total_count(unrouted) == 3
    assert all("url.path" not in p.attributes and conv.ERROR_TYPE not in p.attributes for p in points)


# -- streaming, context and disconnects --------------------------------------------------------


def test_streaming_span_stays_open_until_the_last_chunk(telemetry, spans):
    app = instrumented()
    gate = threading.Event()
    last_chunk_ns = []

    @app.get("/stream")
    def stream():
        @stream_with_context
        def generate():
            yield b"first\n"
            gate.wait(DEADLINE_S)
            for i in range(3):
                yield f"chunk {i}\n".encode()
            last_chunk_ns.append(time.time_ns())

        return Response(generate(), mimetype="text/plain")

    with serving(app) as url, requests.get(f"{url}/stream", stream=True) as r:
        chunks = r.iter_content(chunk_size=None)
        assert next(chunks) == b"first\n"
        # The view returned long ago; the span must still be open while the stream is.
        assert not server_spans(spans, "GET /stream")
        time.sleep(0.05)
        gate.set()
        rest = b"".join(chunks)
        assert rest == b"chunk 0\nchunk 1\nchunk 2\n"
        (span,) = wait_server_spans(spans, 1, "GET /stream")
    assert span.end_time >= last_chunk_ns[0]
    assert span.status.status_code is StatusCode.UNSET and conv.ERROR_TYPE not in span.attributes
    (point,) = [p for p in http_points(telemetry) if p.attributes.get(ROUTE) == "/stream"]
    assert point.count == 1 and point.sum >= 0.05  # the duration covers the whole stream


def test_context_is_current_only_in_app_code_and_chunks(telemetry, spans):
    app = instrumented()
    inside, outside = [], []
    predict = app.config["PREDICT"]

    @app.get("/ctx")
    def ctx():
        inside.append(trace.get_current_span().get_span_context().span_id)

        def generate():  # no stream_with_context: runs in the server's loop, after the view returned
            for i in range(3):
                inside.append(trace.get_current_span().get_span_context().span_id)
                yield json.dumps(predict([float(i)])).encode()

        return Response(generate())

    wrapped = app.wsgi_app

    class Observed:
        """Between the server and the middleware: what is current around each call into it."""

        def __init__(self, body):
            self.body = body
            self.it = iter(body)

        def __iter__(self):
            return self

        def __next__(self):
            try:
                return next(self.it)
            finally:
                outside.append(trace.get_current_span().get_span_context().span_id)

        def close(self):
            self.body.close()
            outside.append(trace.get_current_span().get_span_context().span_id)

    def observer(environ, start_response):
        body = wrapped(environ, start_response)
        outside.append(trace.get_current_span().get_span_context().span_id)
        return Observed(body)

    app.wsgi_app = observer
    with serving(app) as url:
        assert requests.get(f"{url}/ctx").status_code == 200
        (server,) = wait_server_spans(spans, 1)
    assert inside == [server.context.span_id] * 4
    assert len(outside) >= 5 and set(outside) == {0}  # never leaked to the server's thread
    models = [s for s in spans.get_finished_spans() if s.name == "predict wsgi-model"]
    assert len(models) == 3 and all(m.parent.span_id == server.context.span_id for m in models)


def test_client_disconnect_mid_stream_closes_the_span(telemetry, spans):
    app = instrumented()
    produced = []
    generator_closed = threading.Event()

    @app.get("/endless")
    def endless():
        @stream_with_context
        def generate():
            try:
                for i in range(2000):  # bounded: ~4 s at most if the disconnect went unnoticed
                    produced.append(i)
                    yield b"x" * 1024
                    time.sleep(0.002)
            finally:
                generator_closed.set()

        return Response(generate())

    with serving(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as sock:
            sock.sendall(b"GET /endless HTTP/1.1\r\nHost: localhost\r\n\r\n")
            received = b""
            while b"xxxx" not in received:
                received += sock.recv(4096)
            # Reset rather than FIN, so the server's next write fails at once.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert received.startswith(b"HTTP/1.1 200")
        (span,) = wait_server_spans(spans, 1, "GET /endless")
        assert generator_closed.wait(DEADLINE_S)
    assert len(produced) < 2000
    assert span.attributes[conv.ERROR_TYPE] == wsgi_module.DISCONNECT_ERROR == "ClientDisconnect"
    assert [e.name for e in span.events] == [wsgi_module.CLIENT_DISCONNECT_EVENT]
    assert span.status.status_code is StatusCode.ERROR
    points = http_points(telemetry)
    assert total_count(points, **{ROUTE: "/endless", STATUS: 200, conv.ERROR_TYPE: "ClientDisconnect"}) == 1


def test_exception_mid_stream_keeps_status_and_records_the_class(telemetry, spans):
    app = instrumented()

    @app.get("/broken")
    def broken():
        def generate():
            yield b"partial"
            raise ValueError("stream broke")

        return Response(generate())

    with serving(app) as url:
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(f"{url}/broken").content  # noqa: B018 - the body is cut short
        (span,) = wait_server_spans(spans, 1)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[STATUS] == 200 and span.attributes[conv.ERROR_TYPE] == "ValueError"
    assert [e.attributes["exception.type"] for e in span.events] == ["ValueError"]
    points = http_points(telemetry)
    assert total_count(points, **{ROUTE: "/broken", STATUS: 200, conv.ERROR_TYPE: "ValueError"}) == 1


def test_file_wrapper_passes_through_for_sendfile(telemetry, spans, tmp_path):
    from werkzeug.wsgi import FileWrapper

    payload = tmp_path / "model.bin"
    payload.write_bytes(bytes(range(256)) * 64)
    app = instrumented()

    @app.get("/download")
    def download():
        from flask import send_file

        return send_file(payload)

    wrapped = app.wsgi_app
    returned = []

    def server_with_file_wrapper(environ, start_response):  # as gunicorn offers it
        environ["wsgi.file_wrapper"] = FileWrapper
        body = wrapped(environ, start_response)
        returned.append(body)
        return body

    app.wsgi_app = server_with_file_wrapper
    with serving(app) as url:
        r = requests.get(f"{url}/download")
        (span,) = wait_server_spans(spans, 1)
    assert r.status_code == 200 and r.content == payload.read_bytes()
    assert isinstance(returned[0], FileWrapper)  # not hidden behind our iterable
    assert span.name == "GET /download" and span.attributes[STATUS] == 200
    assert conv.ERROR_TYPE not in span.attributes


# -- options ----------------------------------------------------------------------------------


def test_exclusions_by_option_and_environment(telemetry, spans, monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_FLASK_EXCLUDED_URLS", "^/pid$")
    app = create_app()

    @app.get("/health")
    def health():
        return "ok"

    instrumented(app, excluded_urls=["^/health"])
    with serving(app) as url:
        for path in ("/health", "/pid", "/health", "/items/1"):
            assert requests.get(url + path).status_code == 200
        wait_server_spans(spans, 1)
        time.sleep(0.05)  # the excluded requests finished before /items/1 began; give stragglers a chance
    assert [s.name for s in server_spans(spans)] == ["GET /items/<int:item_id>"]
    points = http_points(telemetry)
    assert total_count(points) == 1 and points[0].attributes[ROUTE] == "/items/<int:item_id>"


def test_per_route_models(telemetry, spans):
    app = instrumented(models={"/items/<int:item_id>": ("items-model", "7"), "/fail": "fail-model"})
    with serving(app) as url:
        for i in range(3):
            assert requests.get(f"{url}/items/{i}").status_code == 200
        assert requests.get(f"{url}/fail").status_code == 500
        assert requests.get(f"{url}/busy").status_code == 503  # not a model route
        wait_server_spans(spans, 5)
    modelotel.force_flush()
    points = telemetry.last_points(conv.INFERENCE_DURATION)
    assert total_count(points, **{conv.MODEL_NAME: "items-model", conv.MODEL_VERSION: "7"}) == 3
    assert total_count(points, **{conv.MODEL_NAME: "fail-model", conv.ERROR_TYPE: "AppError"}) == 1
    assert {p.attributes[conv.MODEL_NAME] for p in points} == {"items-model", "fail-model"}


def test_responses_are_unchanged_by_instrumentation(telemetry, spans):
    plain, traced = create_app(), instrumented()
    requests_to_make = [
        ("GET", "/items/5"),
        ("HEAD", "/items/5"),
        ("POST", "/predict"),
        ("GET", "/lines"),
        ("GET", "/busy"),
        ("GET", "/forbidden"),
        ("GET", "/fail"),
        ("GET", "/missing?q=1"),
        ("PUT", "/items/5"),
    ]
    with serving(plain) as plain_url, serving(traced) as traced_url:
        for method, path in requests_to_make:
            a = requests.request(method, plain_url + path)
            b = requests.request(method, traced_url + path)
            assert (a.status_code, a.content) == (b.status_code, b.content), path
            for header in ("Content-Type", "Content-Length", "Transfer-Encoding", "Allow"):
                assert a.headers.get(header) == b.headers.get(header), (path, header)
        wait_server_spans(spans, len(requests_to_make))


def test_instrument_is_idempotent_and_uninstrument_restores(telemetry, spans):
    app = create_app()
    original = app.wsgi_app
    receivers_before = list(got_request_exception.receivers_for(app))
    assert instrumented(app) is app and instrumented(app) is app
    middleware = app.wsgi_app
    assert isinstance(middleware, ModelotelWSGIMiddleware) and middleware.wsgi_app == original
    hook = app.extensions["modelotel"].on_exception  # receives only this app's unhandled exceptions
    assert list(got_request_exception.receivers_for(app)) == [*receivers_before, hook]
    with serving(app) as url:
        assert requests.get(f"{url}/items/1").status_code == 200
        wait_server_spans(spans, 1)
        uninstrument_app(app)
        assert app.wsgi_app == original
        assert list(got_request_exception.receivers_for(app)) == receivers_before
        assert requests.get(f"{url}/items/2").json() == {"item": 2}
        time.sleep(0.05)
    assert len(server_spans(spans)) == 1
    assert total_count(http_points(telemetry)) == 1


def test_internal_failures_are_counted_never_raised(telemetry, spans, monkeypatch):
    def raw_app(environ, start_response):
        environ["modelotel.route"] = ["not", "hashable"]  # a hostile route value: the metric key fails
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"still served"]

    with serving(ModelotelWSGIMiddleware(raw_app)) as url:
        assert requests.get(f"{url}/a").text == "still served"
        wait_server_spans(spans, 1)

        def broken_scrub(text):
            raise RuntimeError("scrubber down")

        monkeypatch.setattr(wsgi_module, "scrubbed_path", broken_scrub)  # now the request start fails
        # A path no request has used (clean paths already seen are remembered, not scrubbed again).
        assert requests.get(f"{url}/b-{uuid.uuid4().hex}").text == "still served"
        time.sleep(0.05)
    assert len(server_spans(spans)) == 1
    modelotel.force_flush()
    errors = telemetry.last_points(conv.INTERNAL_ERRORS)
    assert total_count(errors, **{conv.INTERNAL_ERROR_KIND: "server_metric"}) == 1
    assert total_count(errors, **{conv.INTERNAL_ERROR_KIND: "wsgi_start"}) == 1


def test_a_request_whose_metric_key_fails_costs_only_its_own_value(telemetry, spans):
    """Metric keys are worked out on the export thread in batches: one bad request must not take the others."""

    def raw_app(environ, start_response):
        if environ["PATH_INFO"] == "/bad":
            environ["modelotel.route"] = ["not", "hashable"]
        else:
            environ["modelotel.route"] = "/good"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with serving(ModelotelWSGIMiddleware(raw_app)) as url:
        for path in ("/good", "/bad", "/good", "/good"):
            assert requests.get(f"{url}{path}").text == "ok"
        wait_server_spans(spans, 4)
    points = http_points(telemetry)
    assert total_count(points, **{"http.route": "/good"}) == 3
    assert total_count(points) == 3
    errors = telemetry.last_points(conv.INTERNAL_ERRORS)
    assert total_count(errors, **{conv.INTERNAL_ERROR_KIND: "server_metric"}) == 1


# -- gunicorn, two workers ----------------------------------------------------------------------


def _file_totals(path):
    """service.instance.id -> (highest cumulative request count, routes seen) from an OTLP-JSON file."""
    totals: dict[str, int] = {}
    routes: set[str] = set()
    with open(path) as fh:
        for line in fh:
            for rm in json.loads(line).get("resourceMetrics", []):
                res = {a["key"]: next(iter(a["value"].values())) for a in rm["resource"].get("attributes", [])}
                count = 0
                for sm in rm.get("scopeMetrics", []):
                    for m in sm.get("metrics", []):
                        if m["name"] != HTTP_SERVER_DURATION:
                            continue
                        for p in m["exponentialHistogram"]["dataPoints"]:
                            attrs = {a["key"]: next(iter(a["value"].values())) for a in p.get("attributes", [])}
                            assert "url.path" not in attrs
                            routes.add(attrs.get(ROUTE))
                            count += int(p["count"])
                if count:
                    iid = res["service.instance.id"]
                    totals[iid] = max(totals.get(iid, 0), count)
    return totals, routes


@pytest.mark.parametrize("preload", [False, True], ids=["fork-then-import", "preload"])
def test_gunicorn_two_workers_export_their_own_counts(tmp_path, preload):
    path = tmp_path / "gunicorn.jsonl"
    log = tmp_path / "gunicorn.log"
    env = dict(
        os.environ,
        MODELOTEL_EXPORT_FILE=str(path),
        OTEL_METRIC_EXPORT_INTERVAL="200",
        OTEL_SERVICE_NAME="wsgi-gunicorn",
        WSGI_APP_CONFIGURE="1" if preload else "0",  # preload: modelotel runs in the master before fork
    )
    cmd = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:0", "--chdir", ROOT]
    cmd += ["--graceful-timeout", "10", *(["--preload"] if preload else []), "tests.apps.wsgi_app:app"]
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen(cmd, env=env, stdout=log_fh, stderr=subprocess.STDOUT)
    try:
        listening = wait_for(
            lambda: re.search(rb"Listening at: http://127\.0\.0\.1:(\d+)", log.read_bytes()), 20, "gunicorn to listen"
        )
        url = f"http://127.0.0.1:{int(listening.group(1))}"
        pids: set[int] = set()
        sent = 0
        deadline = time.monotonic() + 20
        with ThreadPoolExecutor(2) as pool:
            while len(pids) < 2 or sent < 6:
                assert time.monotonic() < deadline, f"only workers {pids} served traffic"
                # Two concurrent slow requests on fresh connections: a busy sync worker cannot take both.
                for r in pool.map(lambda _: requests.get(f"{url}/slow", headers={"Connection": "close"}), range(2)):
                    assert r.status_code == 200
                    pids.add(r.json()["pid"])
                    sent += 1
    finally:
        stop_process(proc, signal.SIGTERM)
    assert proc.returncode == 0, log.read_text()
    totals, routes = _file_totals(path)
    assert len(totals) == 2, (totals, log.read_text())
    assert sum(totals.values()) == sent
    assert routes == {"/slow"}
