"""ASGI middleware and FastAPI/Starlette integration on a real uvicorn server with real httpx clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.routing import Mount, Route

import modelotel
from modelotel import conventions as conv
from modelotel.conventions import HTTP_SERVER_DURATION
from modelotel.integrations.asgi import CLIENT_DISCONNECT_EVENT, ModelotelMiddleware
from modelotel.integrations.fastapi import instrument_app, is_instrumented, uninstrument_app
from modelotel.otlp.json import read_json_lines

from collector_support import stop_process
from collector_support import wait_for as poll
from conftest import MemoryMetricExporter, total_count

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
ROOT = os.path.dirname(HERE)
METHOD = "http.request.method"
ROUTE = "http.route"
STATUS = "http.response.status_code"
DEADLINE_S = 5.0
METRIC_KEYS = {METHOD, ROUTE, STATUS, "url.scheme", "network.protocol.version"}


class Boom(Exception):
    """The endpoint's own failure; must reach the server unchanged."""


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def telemetry(spans):
    """modelotel exporting metrics to memory and spans through the session's SDK TracerProvider."""
    exporter = MemoryMetricExporter()
    modelotel.configure(service_name="asgi-test", exporter=exporter, export_interval=3600, traces="span")
    yield exporter
    modelotel.shutdown()


@contextlib.contextmanager
def serving(app):
    """uvicorn on an ephemeral loopback port in a background thread; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), what="uvicorn startup")
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(DEADLINE_S)


def wait_for(predicate, timeout=DEADLINE_S, what="condition"):
    """Poll fast: server spans end a few milliseconds after the client has the response."""
    return poll(predicate, timeout, what, interval=0.005)


def server_spans(spans, route=None, count=None):
    """modelotel's SERVER spans (optionally of one route); with count, wait until that many ended."""

    def matching():
        found = [
            s
            for s in spans.get_finished_spans()
            if s.kind is SpanKind.SERVER
            and s.instrumentation_scope.name == "modelotel"
            and (route is None or s.attributes.get(ROUTE) == route)
        ]
        return found if count is None or len(found) >= count else None

    if count is None:
        return matching()
    return wait_for(matching, what=f"{count} server spans of {route}")


def duration_points(exporter):
    modelotel.force_flush()
    return exporter.last_points(HTTP_SERVER_DURATION)


def traceparent(trace_id: int, span_id: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-01"


# -- the app under test -------------------------------------------------------------------------


def make_app() -> FastAPI:
    """Every endpoint shape the middleware must handle; ``app.state.seen`` records what handlers saw."""

    @contextlib.asynccontextmanager
    async def lifespan(app):  # proves lifespan messages pass through the middleware
        app.state.started = True
        app.state.seen["loop_thread"] = threading.current_thread().name
        yield

    app = FastAPI(lifespan=lifespan)
    app.state.seen = {}
    app.state.started = False

    @modelotel.instrument_model(name="scorer", version="1")
    def score(x):
        return [0.2, 0.8]

    @app.get("/items/{item_id}")
    async def item(item_id: int, q: str | None = None):
        return {"id": item_id, "q": q}

    @app.get("/model/async")
    async def model_async():
        return {"p": score([1.0])}

    @app.get("/model/sync")
    def model_sync():  # FastAPI runs it in a worker thread
        app.state.seen["sync_thread"] = threading.current_thread().name
        return {"p": score([1.0])}

    @app.post("/predict")
    async def predict(body: dict):
        return {"label": "ok", "n": len(body)}

    @app.get("/boom")
    async def boom():
        raised = Boom("card 4111 1111 1111 1111 declined")
        app.state.seen["raised"] = raised
        raise raised

    @app.get("/unavailable")
    async def unavailable():
        return JSONResponse({"detail": "try later"}, status_code=503)

    @app.get("/bad")
    async def bad():
        raise HTTPException(status_code=400, detail="bad input")

    @app.get("/health")
    async def health():
        return PlainTextResponse("ok")

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse("# metrics")

    @app.get("/stream")
    async def stream():
        async def chunks():
            for i in range(3):
                await asyncio.sleep(0.05)
                yield f"chunk-{i}\n".encode()
            await asyncio.sleep(0.15)  # work after the last chunk: the span must still be open

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/stream/forever")
    async def stream_forever():
        async def chunks():
            try:
                for i in range(500):  # bounded: 10 s at most
                    yield f"tick-{i}\n".encode()
                    await asyncio.sleep(0.02)
            finally:
                app.state.seen["stream_closed"] = True

        return StreamingResponse(chunks(), media_type="text/plain")

    return app


class RaisedThrough:
    """Outermost raw ASGI app: records what propagates from the application to the server."""

    def __init__(self, app):
        self.app = app
        self.raised: list[BaseException] = []

    async def __call__(self, scope, receive, send):
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            self.raised.append(exc)
            raise


@pytest.fixture(scope="module")
def server():
    """One instrumented app on one uvicorn server for the module (each test configures modelotel)."""
    app = instrument_app(make_app(), models={"/predict": ("fraud", "v2")})
    outer = RaisedThrough(app)
    with serving(outer) as url:
        yield app, outer, url


# -- spans and metrics ------------------------------------------------------------------------


def test_span_and_metric_per_request_use_the_route_template(server, telemetry, spans):
    app, _, url = server
    assert app.state.started  # lifespan reached the app through the middleware
    with httpx.Client(base_url=url) as client:
        for item_id in (42, 43, 44):
            r = client.get(f"/items/{item_id}", params={"q": "secret-query"})
            assert r.status_code == 200 and r.json() == {"id": item_id, "q": "secret-query"}

    finished = server_spans(spans, "/items/{item_id}", count=3)
    assert len(finished) == 3
    for span in finished:
        assert span.name == "GET /items/{item_id}"
        assert span.kind is SpanKind.SERVER
        assert span.status.status_code is StatusCode.UNSET
        assert span.attributes[METHOD] == "GET"
        assert span.attributes[STATUS] == 200
        assert span.attributes["url.scheme"] == "http"
        assert span.attributes["network.protocol.version"] == "1.1"
        assert span.attributes["url.path"] in ("/items/42", "/items/43", "/items/44")
        assert not any("secret-query" in str(v) for v in span.attributes.values())
    assert len(set(s.context.trace_id for s in finished)) == 3  # no client context: one new trace each

    points = duration_points(telemetry)
    mine = [p for p in points if p.attributes.get(ROUTE) == "/items/{item_id}"]
    assert len(mine) == 1
    assert mine[0].count == 3
    assert set(mine[0].attributes) == METRIC_KEYS
    assert mine[0].attributes[STATUS] == 200 and mine[0].attributes[METHOD] == "GET"
    assert 0 < mine[0].sum < 3 * DEADLINE_S
    assert not any("/items/4" in str(v) for p in points for v in p.attributes.values())


def test_client_traceparent_is_continued(server, telemetry, spans):
    _, _, url = server
    trace_id, span_id = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
    r = httpx.get(f"{url}/items/7", headers={"traceparent": traceparent(trace_id, span_id)})
    assert r.status_code == 200
    (span,) = server_spans(spans, "/items/{item_id}", count=1)
    assert span.context.trace_id == trace_id
    assert span.parent is not None and span.parent.span_id == span_id and span.parent.is_remote


@pytest.mark.parametrize("path", ["/model/async", "/model/sync"])
def test_model_span_is_a_child_of_the_server_span(server, telemetry, spans, path):
    app, _, url = server
    trace_id, span_id = 0x1234, 0x5678
    r = httpx.get(url + path, headers={"traceparent": traceparent(trace_id, span_id)})
    assert r.json() == {"p": [0.2, 0.8]}
    (server_span,) = server_spans(spans, path, count=1)
    (model_span,) = [s for s in spans.get_finished_spans() if s.name == "predict scorer"]
    assert model_span.parent is not None and model_span.parent.span_id == server_span.context.span_id
    assert model_span.context.trace_id == server_span.context.trace_id == trace_id
    assert server_span.parent.span_id == span_id
    if path == "/model/sync":  # the endpoint really ran in the threadpool, not the event loop's thread
        assert app.state.seen["sync_thread"] != app.state.seen["loop_thread"]


def test_concurrent_requests_keep_their_own_context(server, telemetry, spans):
    _, _, url = server
    n = 40

    def call(i):
        tid = 0xABC000 + i
        with httpx.Client(base_url=url) as client:
            assert client.get("/model/async", headers={"traceparent": traceparent(tid, 0x1000 + i)}).status_code == 200
        return tid

    with ThreadPoolExecutor(8) as pool:
        trace_ids = set(pool.map(call, range(n)))
    servers = server_spans(spans, "/model/async", count=n)
    models = [s for s in spans.get_finished_spans() if s.name == "predict scorer"]
    assert {s.context.trace_id for s in servers} == trace_ids
    by_id = {s.context.span_id: s for s in servers}
    assert len(models) == n
    for model_span in models:
        parent = by_id[model_span.parent.span_id]  # KeyError if a model span joined the wrong request
        assert parent.context.trace_id == model_span.context.trace_id
        assert parent.parent.span_id == 0x1000 + (parent.context.trace_id - 0xABC000)


# -- errors -----------------------------------------------------------------------------------


def test_exception_gives_500_error_type_and_propagates_unchanged(server, telemetry, spans):
    app, outer, url = server
    outer.raised.clear()
    r = httpx.get(f"{url}/boom")
    assert r.status_code == 500  # Starlette's ServerErrorMiddleware answered, after us
    (span,) = server_spans(spans, "/boom", count=1)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[STATUS] == 500
    assert span.attributes[conv.ERROR_TYPE] == "Boom"
    (event,) = [e for e in span.events if e.name == "exception"]
    assert "4111" not in event.attributes["exception.message"]  # scrubbed card number
    # the very object the endpoint raised went through our middleware up to the server
    wait_for(lambda: outer.raised, what="exception at the server")
    assert outer.raised[0] is app.state.seen["raised"]
    (point,) = [p for p in duration_points(telemetry) if p.attributes.get(ROUTE) == "/boom"]
    assert point.attributes[conv.ERROR_TYPE] == "Boom" and point.attributes[STATUS] == 500
    assert point.count == 1


def test_explicit_503_is_an_error_and_4xx_is_not(server, telemetry, spans):
    _, _, url = server
    r = httpx.get(f"{url}/unavailable")
    assert r.status_code == 503 and r.json() == {"detail": "try later"}
    assert httpx.get(f"{url}/bad").status_code == 400
    (span,) = server_spans(spans, "/unavailable", count=1)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[conv.ERROR_TYPE] == "503"
    (bad,) = server_spans(spans, "/bad", count=1)
    assert bad.status.status_code is StatusCode.UNSET and conv.ERROR_TYPE not in bad.attributes
    points = duration_points(telemetry)
    (p503,) = [p for p in points if p.attributes.get(ROUTE) == "/unavailable"]
    assert p503.attributes[conv.ERROR_TYPE] == "503" and p503.attributes[STATUS] == 503
    (p400,) = [p for p in points if p.attributes.get(ROUTE) == "/bad"]
    assert conv.ERROR_TYPE not in p400.attributes and p400.attributes[STATUS] == 400


def test_unknown_route_has_no_http_route(server, telemetry, spans):
    _, _, url = server
    assert httpx.get(f"{url}/no/such/thing/123").status_code == 404
    (span,) = wait_for(lambda: server_spans(spans), what="404 span")
    assert span.name == "GET"
    assert ROUTE not in span.attributes
    assert span.attributes[STATUS] == 404 and span.status.status_code is StatusCode.UNSET
    (point,) = [p for p in duration_points(telemetry) if p.attributes.get(STATUS) == 404]
    assert ROUTE not in point.attributes and conv.ERROR_TYPE not in point.attributes
    assert point.count == 1


# -- streaming --------------------------------------------------------------------------------


def test_streaming_span_ends_after_the_last_chunk(server, telemetry, spans, caplog):
    _, _, url = server
    received = []
    with httpx.Client(base_url=url) as client, client.stream("GET", "/stream") as r:
        for piece in r.iter_bytes():
            if piece:
                received.append((time.time_ns(), piece))
    assert b"".join(p for _, p in received) == b"chunk-0\nchunk-1\nchunk-2\n"
    last_chunk_ns = received[-1][0]
    (span,) = server_spans(spans, "/stream", count=1)
    assert span.end_time >= last_chunk_ns
    assert span.end_time - span.start_time >= 300_000_000  # 3 x 50 ms + 150 ms after the last chunk
    (point,) = [p for p in duration_points(telemetry) if p.attributes.get(ROUTE) == "/stream"]
    assert point.sum >= 0.3 and point.count == 1
    # the last chunk is sent from a child task: our context must be detached in the request's own task
    assert not [r for r in caplog.records if r.name == "opentelemetry.context"]


def test_client_disconnect_mid_stream_closes_the_span(server, telemetry, spans):
    app, _, url = server
    app.state.seen.pop("stream_closed", None)
    with httpx.Client(base_url=url) as client, client.stream("GET", "/stream/forever") as r:
        first = next(r.iter_bytes())
        assert first.startswith(b"tick-0")
    # leaving the block closed the connection mid-stream
    (span,) = server_spans(spans, "/stream/forever", count=1)
    assert span.end_time - span.start_time < 5_000_000_000  # well before the stream's natural end
    assert [e.name for e in span.events] == [CLIENT_DISCONNECT_EVENT]
    assert span.attributes[conv.ERROR_TYPE] == "ClientDisconnect"
    assert span.attributes[STATUS] == 200  # the status that was sent before the client left
    assert span.status.status_code is StatusCode.ERROR
    wait_for(lambda: app.state.seen.get("stream_closed"), what="the app's generator to close")
    (point,) = [p for p in duration_points(telemetry) if p.attributes.get(ROUTE) == "/stream/forever"]
    assert point.attributes[conv.ERROR_TYPE] == "ClientDisconnect" and point.count == 1


# -- options ----------------------------------------------------------------------------------


def test_excluded_routes_have_no_telemetry(telemetry, spans, monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "^/metrics$")
    app = instrument_app(make_app(), excluded_urls=["^/health$"])
    with serving(app) as url, httpx.Client(base_url=url) as client:
        for _ in range(3):
            assert client.get("/health").text == "ok"
            assert client.get("/metrics").text == "# metrics"
        assert client.get("/items/1").status_code == 200
        server_spans(spans, "/items/{item_id}", count=1)
    assert not [
        s for s in spans.get_finished_spans() if s.attributes.get("url.path") in ("/health", "/metrics")
    ]  # neither ours nor FastAPI's own
    assert {s.attributes.get(ROUTE) for s in server_spans(spans)} == {"/items/{item_id}"}
    points = duration_points(telemetry)
    assert not [p for p in points if p.attributes.get(ROUTE) in ("/health", "/metrics")]
    assert total_count(points, **{ROUTE: "/items/{item_id}"}) == 1


def test_lifespan_shutdown_exports_what_is_buffered(telemetry):
    app = instrument_app(make_app())
    with serving(app) as url:
        assert httpx.get(f"{url}/items/3").status_code == 200
        assert not telemetry.all_points(HTTP_SERVER_DURATION)  # export interval is an hour
    # leaving `serving` ran the lifespan shutdown, which exported without force_flush/atexit
    points = telemetry.last_points(HTTP_SERVER_DURATION)
    assert total_count(points, **{ROUTE: "/items/{item_id}"}) == 1


def test_route_models_record_inference_duration(server, telemetry, spans):
    _, _, url = server
    with httpx.Client(base_url=url) as client:
        for i in range(4):
            assert client.post("/predict", json={"f": i}).json() == {"label": "ok", "n": 1}
    server_spans(spans, "/predict", count=4)
    modelotel.force_flush()
    points = telemetry.last_points(conv.INFERENCE_DURATION)
    assert total_count(points, **{conv.MODEL_NAME: "fraud", conv.MODEL_VERSION: "v2"}) == 4
    (point,) = [p for p in points if p.attributes[conv.MODEL_NAME] == "fraud"]
    assert point.attributes[conv.DEPLOYMENT_ROLE] == "primary"


def test_responses_are_unchanged_byte_for_byte(server, telemetry):
    _, _, url = server
    requests_ = [
        ("GET", "/items/5?q=x", None),
        ("GET", "/items/not-an-int", None),
        ("POST", "/predict", {"a": 1, "b": [1, 2]}),
        ("GET", "/unavailable", None),
        ("GET", "/bad", None),
        ("GET", "/boom", None),
        ("GET", "/nope", None),
        ("GET", "/stream", None),
        ("HEAD", "/health", None),
    ]
    with serving(make_app()) as bare_url:

        def fetch(base):
            out = []
            # a fresh connection per request: uvicorn drops the connection of a request that raised
            with httpx.Client(base_url=base, headers={"Connection": "close"}) as client:
                for method, path, body in requests_:
                    r = client.request(method, path, json=body)
                    headers = {k: v for k, v in r.headers.items() if k not in ("date",)}
                    out.append((r.status_code, r.content, headers))
            return out

        assert fetch(url) == fetch(bare_url)


# -- instrument_app ---------------------------------------------------------------------------


def test_instrument_app_is_idempotent_on_starlette_and_uninstrument_removes_it(telemetry, spans):
    async def user(request):
        return PlainTextResponse(f"user {request.path_params['user_id']}")

    async def inner(request):
        return PlainTextResponse("inner")

    app = Starlette(
        routes=[
            Route("/users/{user_id:int}", user),
            Mount("/v1", routes=[Route("/things/{name}", inner)]),
        ]
    )
    assert instrument_app(app) is app
    instrument_app(app)  # second call: still one middleware
    assert is_instrumented(app)
    assert sum(m.cls is ModelotelMiddleware for m in app.user_middleware) == 1
    with serving(app) as url, httpx.Client(base_url=url) as client:
        assert client.get("/users/9").text == "user 9"
        assert client.get("/v1/things/abc").text == "inner"
        (span,) = server_spans(spans, "/users/{user_id}", count=1)
        assert span.name == "GET /users/{user_id}"
        (mounted,) = server_spans(spans, "/v1/things/{name}", count=1)
        assert mounted.name == "GET /v1/things/{name}"
        assert len(server_spans(spans)) == 2  # exactly one span per request

        uninstrument_app(app)
        assert not is_instrumented(app)
        assert client.get("/users/10").text == "user 10"  # the stack is rebuilt without us
        time.sleep(0.05)
        assert len(server_spans(spans)) == 2

        instrument_app(app)  # instrumenting a running app rebuilds the stack with us
        assert client.get("/users/11").text == "user 11"
        assert len(server_spans(spans, "/users/{user_id}", count=2)) == 2


def test_instrument_app_rejects_bad_options_up_front():
    with pytest.raises(modelotel.ConfigError):
        instrument_app(FastAPI(), excluded_urls=["("])
    with pytest.raises(modelotel.ConfigError):
        instrument_app(FastAPI(), deployment_role="blue")
    with pytest.raises(modelotel.ConfigError):
        instrument_app(FastAPI(), models={"/predict": ("a", "b", "c")})
    with pytest.raises(TypeError):
        instrument_app(object())


def test_plain_asgi_app_with_route_resolver_and_a_failing_resolver(telemetry, spans):
    async def raw_app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"part-", "more_body": True})
        await send({"type": "http.response.body", "body": b"end"})

    def resolver(scope):
        if scope["path"].startswith("/explode"):
            raise RuntimeError("resolver bug")
        return "/things/{id}"

    with serving(ModelotelMiddleware(raw_app, route_resolver=resolver)) as url, httpx.Client(base_url=url) as client:
        r = client.get("/things/77")
        assert (r.status_code, r.text) == (201, "part-end")
        r = client.get("/explode/1")  # our bug must not reach the client
        assert (r.status_code, r.text) == (201, "part-end")
        (span,) = server_spans(spans, "/things/{id}", count=1)
        assert span.name == "GET /things/{id}"
        wait_for(lambda: len(server_spans(spans)) == 2, what="second span")
    modelotel.force_flush()
    errors = telemetry.last_points(conv.INTERNAL_ERRORS)
    assert total_count(errors, **{conv.INTERNAL_ERROR_KIND: "asgi_route"}) >= 1
    points = duration_points(telemetry)
    assert total_count(points, **{ROUTE: "/things/{id}", STATUS: 201}) == 1
    assert total_count([p for p in points if ROUTE not in p.attributes], **{STATUS: 201}) == 1


# -- multi-worker -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request_counts(path: str) -> dict[str, int]:
    """Last cumulative http.server.request.duration count per service.instance.id in an OTLP-JSON file."""
    last: dict[str, int] = {}
    for _, obj in read_json_lines(path):
        assert obj is not None, "corrupt line"
        for rm in obj.get("resourceMetrics", []):
            attrs = {a["key"]: a["value"].get("stringValue") for a in rm["resource"]["attributes"]}
            for sm in rm["scopeMetrics"]:
                for metric in sm["metrics"]:
                    if metric["name"] == HTTP_SERVER_DURATION:
                        points = metric["exponentialHistogram"]["dataPoints"]
                        last[attrs["service.instance.id"]] = sum(int(p["count"]) for p in points)
    return last


def test_two_uvicorn_workers_export_distinct_instances(tmp_path):
    out = tmp_path / "telemetry.jsonl"
    port = _free_port()
    env = dict(
        os.environ,
        MODELOTEL_EXPORT_FILE=str(out),
        OTEL_METRIC_EXPORT_INTERVAL="500",
        MODELOTEL_TRACES="off",
        PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "sdk"), os.environ.get("PYTHONPATH", "")]),
    )
    cmd = [sys.executable, "-m", "uvicorn", "asgi_app:app", "--app-dir", os.path.join(HERE, "apps")]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, cwd=str(tmp_path))
    sent = 0
    pids: set[int] = set()
    try:

        def accepting():
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
            assert proc.poll() is None, "uvicorn exited"
            return False

        wait_for(accepting, timeout=20, what="uvicorn workers")
        # Fresh connections so the kernel hands them to either worker; keep going until both served.
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Connection": "close"}) as client:
            while sent < 200 or (len(pids) < 2 and time.monotonic() < deadline):
                r = client.get(f"/items/{sent}")
                assert r.status_code == 200
                sent += 1
                pids.add(r.json()["pid"])
                if sent >= 2000:
                    break
        assert len(pids) == 2, f"only {len(pids)} worker served {sent} requests"
    finally:
        # The parent SIGTERMs its workers; each flushes when its lifespan shutdown completes (uvicorn
        # then re-raises SIGTERM with the default handler, so atexit alone would lose the last data).
        stop_process(proc, signal.SIGINT, timeout=20)
    counts = _request_counts(str(out))
    assert len(counts) == 2, (counts, proc.returncode)
    assert sum(counts.values()) == sent, (counts, sent)
    assert all(c > 0 for c in counts.values())
