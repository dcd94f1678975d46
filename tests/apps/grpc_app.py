"""A small gRPC model service (generic handlers, bytes in and out) for the interceptor tests and benchmarks.

Service ``pkg.Model``, the same behaviour on ``grpc`` (threads) and ``grpc.aio``:

* ``Predict`` (unary-unary): ``b"x"`` -> ``b"ok:x"`` through the ``@instrument_model`` scorer;
  ``missing`` aborts NOT_FOUND, ``invalid`` sets INVALID_ARGUMENT and returns, ``boom`` raises
  ``ModelFailure``, ``wait`` polls until the client is gone (deadline tests).
* ``SyncPredict``: ``Predict`` as a plain function (grpc.aio runs those on its thread pool).
* ``Stream`` (unary-stream): ``b"3"`` -> ``b"0", b"1", b"2"``; ``fail``/``abort`` after one item;
  ``slow`` yields ``first`` and then waits (cancellation tests; ``RELEASE`` lets it go); ``big``
  yields 1 MiB items, so a client that stops reading leaves the server blocked in a write.
* ``Collect`` (stream-unary): requests joined with ``|``.
* ``Chat`` (stream-stream): ``echo:`` + each request (grpc.aio: with ``context.write``).
* ``Health``: ``SERVING`` (the tests exclude it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from typing import Any

import grpc

import modelotel

SERVICE = "pkg.Model"
RELEASE = threading.Event()  # set by the tests to let a waiting "slow" stream (sync server) finish
WAIT_LIMIT_S = 10.0
BIG = b"x" * (1 << 20)  # a client that stops reading these blocks the server's writes (flow control)
BIG_ITEMS = 64


class ModelFailure(Exception):
    pass


@modelotel.instrument_model(name="scorer", version="1")
def score(payload: bytes) -> list[float]:
    return [0.25, 0.75]


# -- grpc (threads) -----------------------------------------------------------------------------------


def predict(request: bytes, context: grpc.ServicerContext) -> bytes:
    if request == b"missing":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such model")
    if request == b"invalid":
        context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
        context.set_details("bad input")
        return b""
    if request == b"boom":
        raise ModelFailure("boom")
    if request == b"wait":
        deadline = time.monotonic() + WAIT_LIMIT_S
        while context.is_active() and time.monotonic() < deadline:
            time.sleep(0.005)
        return b"late"
    score(request)
    return b"ok:" + request


def stream(request: bytes, context: grpc.ServicerContext):
    if request == b"big":
        for _ in range(BIG_ITEMS):
            yield BIG
        return
    if request == b"slow":
        yield b"first"
        RELEASE.wait(WAIT_LIMIT_S)
        yield b"second"
        return
    if request in (b"fail", b"abort"):
        yield b"one"
        if request == b"fail":
            raise ModelFailure("mid-stream")
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "nope")
    for i in range(int(request)):
        score(request)
        yield str(i).encode()


def collect(requests, context: grpc.ServicerContext) -> bytes:
    return b"|".join(requests)


def chat(requests, context: grpc.ServicerContext):
    for r in requests:
        yield b"echo:" + r


def health(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b"SERVING"


def sync_handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Predict": grpc.unary_unary_rpc_method_handler(predict),
            "SyncPredict": grpc.unary_unary_rpc_method_handler(predict),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
            "Collect": grpc.stream_unary_rpc_method_handler(collect),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
            "Health": grpc.unary_unary_rpc_method_handler(health),
        },
    )


def start_sync_server(interceptors: Sequence[Any] = (), workers: int = 8) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), interceptors=list(interceptors))
    server.add_generic_rpc_handlers((sync_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


# -- grpc.aio ---------------------------------------------------------------------------------------------


async def aio_predict(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    if request == b"missing":
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such model")
    if request == b"invalid":
        context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
        context.set_details("bad input")
        return b""
    if request == b"boom":
        raise ModelFailure("boom")
    if request == b"wait":
        await asyncio.sleep(WAIT_LIMIT_S)  # cancelled when the deadline passes
        return b"late"
    score(request)
    return b"ok:" + request


async def aio_stream(request: bytes, context: grpc.aio.ServicerContext):
    if request == b"big":
        for _ in range(BIG_ITEMS):
            yield BIG
        return
    if request == b"slow":
        yield b"first"
        await asyncio.sleep(WAIT_LIMIT_S)  # cancelled when the client cancels
        yield b"second"
        return
    if request in (b"fail", b"abort"):
        yield b"one"
        if request == b"fail":
            raise ModelFailure("mid-stream")
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "nope")
    for i in range(int(request)):
        score(request)
        yield str(i).encode()


async def aio_collect(requests, context: grpc.aio.ServicerContext) -> bytes:
    return b"|".join([r async for r in requests])


async def aio_chat(requests, context: grpc.aio.ServicerContext) -> None:
    async for r in requests:
        await context.write(b"echo:" + r)


async def aio_health(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"SERVING"


def aio_handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Predict": grpc.unary_unary_rpc_method_handler(aio_predict),
            "SyncPredict": grpc.unary_unary_rpc_method_handler(predict),
            "Stream": grpc.unary_stream_rpc_method_handler(aio_stream),
            "Collect": grpc.stream_unary_rpc_method_handler(aio_collect),
            "Chat": grpc.stream_stream_rpc_method_handler(aio_chat),
            "Health": grpc.unary_unary_rpc_method_handler(aio_health),
        },
    )


class AioServer:
    """A grpc.aio server on its own event loop thread, so that tests and clients stay synchronous."""

    def __init__(self, interceptors: Sequence[Any] = ()) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="grpc-aio-server", daemon=True)
        self._thread.start()
        self.server, self.port = self._run(self._start(list(interceptors)))

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    async def _start(self, interceptors: list[Any]) -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=interceptors or None)
        server.add_generic_rpc_handlers((aio_handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    def stop(self) -> None:
        self._run(self.server.stop(None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
