"""Dynamic batching: each request's queue time and latency, each batch's execution time and size.

A batched model has a queue in front of a predict that takes many requests at once. Its latency SLO must be
judged per request (a request waits for its batch to fill, then for the whole batch to run), so a model
timed with ``BatchTimer`` records ``ml.inference.duration`` once per request, never once per batch.

Clocks: every time is ``time.perf_counter_ns()`` (monotonic, 1 ns resolution on Linux). A request is enqueued
at ``e_i`` (``enqueue()`` when it arrives), its batch of ``n`` requests starts at ``S`` and returns at ``E``
(``with timer.batch(tickets):`` around the batched predict). Then, exactly (integer nanoseconds, then seconds):

* per request ``i``: ``ml.batch.queue.duration = S - e_i`` and ``ml.inference.duration = E - e_i``
  (its result is ready when the batch returns);
* per batch: ``ml.batch.execution.duration = E - S`` and ``ml.batch.size = n``.

A batch whose predict raised gives every request's ``ml.inference.duration`` and the batch's execution duration
``error.type`` (the exception's class name); the exception itself propagates unchanged (``__exit__`` never
swallows it). Queue time does not depend on the outcome and carries no ``error.type``.

Bad input never raises: a ticket that is not an integer ``perf_counter_ns()`` (negative included), or that is
later than its batch's start, drops that request's two values (counted in ``modelotel.dropped``, reason
``batch_ticket_invalid``); ``batch(x)`` with ``x`` not iterable drops the batch (reason ``batch_invalid``).

A predict decorated with ``@instrument_model(..., batched=True)`` records its per-item metrics but no duration
(its durations go to ``Untimed``); it carries its model's ``BatchTimer`` as ``predict.batch``. The block makes
its ``Batch`` the current one of its context (``CURRENT_BATCH``), so a ``batched=True`` call outside any block
is a counted drop (``batched_call_untimed``) rather than a silent gap.

``AsyncBatcher`` is a ready-made asyncio queue in front of a batched predict, timed by a ``BatchTimer``.
Cost: see benchmarks/RESULTS.md ("Dynamic batching").
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

import numpy as np

import modelotel.config as config
import modelotel.conventions as conv

from ..metrics.buffers import SeriesSink, attr_key, drain
from ..metrics.selftelemetry import SELF
from ..runtime import STATE, arm_sigterm, autostart
from .options import check_attributes

if TYPE_CHECKING:
    import asyncio

__all__ = ["AsyncBatcher", "Batch", "BatchTimer", "enqueue"]

INVALID_TICKET = "batch_ticket_invalid"
INVALID_BATCH = "batch_invalid"
UNTIMED_CALL = "batched_call_untimed"
_NS = 1e-9
# The batch whose block is running in this thread or task (asyncio.to_thread copies it to the worker thread).
CURRENT_BATCH: contextvars.ContextVar[Batch | None] = contextvars.ContextVar("modelotel_batch", default=None)


class Untimed(list):
    """What a ``batched=True`` model's calls append their durations and errors to instead of
    ``ml.inference.duration``: nothing is kept (the batch's block times each request). A call outside any batch
    block is counted in ``modelotel.dropped{batched_call_untimed}``: its requests' latency is unknown."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def append(self, value: Any) -> None:
        if CURRENT_BATCH.get() is None:
            SELF.drop(
                UNTIMED_CALL,
                1,
                f"model {self.name!r} is batched=True: a call outside `with predict.batch(tickets):` (or an "
                "AsyncBatcher) records no latency",
            )


class Discarded(list):
    """A list that keeps nothing (a batched model's per-call exemplars: its latency series holds requests)."""

    __slots__ = ()

    def append(self, value: Any) -> None:
        return None


def enqueue() -> int:
    """A request's ticket: ``time.perf_counter_ns()`` when it joins the queue. Keep it with the request."""
    return perf_counter_ns()


class BatchBuffers:
    """One batched model's finished batches, folded into the per-request and per-batch series.

    ``batches`` takes one tuple per batch, appended lock-free by ``Batch.__exit__``:
    ``(start_ns, end_ns, tickets, error_type or None)``.
    """

    __slots__ = ("attributes", "key", "batches", "__weakref__")

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        self.attributes = dict(attributes)
        self.key = attr_key(self.attributes)
        self.batches: list[tuple[int, int, tuple, str | None]] = []

    def clear(self) -> None:
        """Forget the batches not folded yet (a forked child exports nothing of its parent's)."""
        del self.batches[:]

    def fold(self, rec: SeriesSink) -> None:
        """All batches since the last fold at once: numpy over every request (per-batch Python work is only
        gathering the rows), so the export thread's cost per request falls with the number of batches folded."""
        rows = drain(self.batches)
        if not rows:
            return
        attrs, key = self.attributes, self.key
        count = len(rows)
        starts = np.fromiter((r[0] for r in rows), np.int64, count)
        ends = np.fromiter((r[1] for r in rows), np.int64, count)
        sizes = np.fromiter((len(r[2]) for r in rows), np.int64, count)
        error_types = sorted({r[3] for r in rows if r[3] is not None})
        codes = {None: 0, **{e: i + 1 for i, e in enumerate(error_types)}}
        batch_codes = np.fromiter((codes[r[3]] for r in rows), np.int64, count)
        enqueued = _ticket_array([t for r in rows for t in r[2]])
        request_starts = np.repeat(starts, sizes)
        # an invalid ticket is INT64_MAX: never valid; perf_counter_ns() is never negative (and S - e cannot overflow)
        valid = (enqueued >= 0) & (enqueued <= request_starts)
        invalid = int(enqueued.size - np.count_nonzero(valid))
        if invalid:
            SELF.drop(
                INVALID_TICKET,
                invalid,
                "batch tickets must be time.perf_counter_ns() integers taken before the batch started",
            )
        enqueued = enqueued[valid]
        request_codes = np.repeat(batch_codes, sizes)[valid]
        if enqueued.size:
            rec.observe(conv.BATCH_QUEUE_DURATION, key, attrs, _seconds(request_starts[valid] - enqueued))
            latency = _seconds(np.repeat(ends, sizes)[valid] - enqueued)
            for error_type, code in codes.items():
                values = latency[request_codes == code]
                if values.size:
                    rec.observe(conv.INFERENCE_DURATION, *_with_error(key, attrs, error_type), values)
        rec.observe(conv.BATCH_SIZE_METRIC, key, attrs, sizes.astype(np.float64))
        execution = _seconds(ends - starts)
        for error_type, code in codes.items():
            values = execution[batch_codes == code]
            if values.size:
                rec.observe(conv.BATCH_EXECUTION_DURATION, *_with_error(key, attrs, error_type), values)


def _with_error(key: Any, attrs: dict[str, Any], error_type: str | None) -> tuple[Any, dict[str, Any]]:
    if error_type is None:
        return key, attrs
    err_attrs = {**attrs, conv.ERROR_TYPE: error_type}
    return attr_key(err_attrs), err_attrs


def _ticket_array(tickets: list) -> np.ndarray:
    """The tickets as int64 nanoseconds; a ticket that is not an integer (a float from perf_counter(), None, a
    string: the request's place in time is unknown) becomes INT64_MAX, later than any batch start (dropped)."""
    if all(type(t) is int for t in tickets):
        try:
            return np.asarray(tickets, dtype=np.int64)
        except OverflowError:
            pass
    late = np.iinfo(np.int64).max
    ok = (int, np.integer)
    return np.asarray(
        [t if isinstance(t, ok) and not isinstance(t, bool) and 0 <= t < late else late for t in tickets],
        dtype=np.int64,
    )


def _seconds(ns: np.ndarray) -> np.ndarray:
    # int64 differences first (exact), then one conversion to float seconds
    return ns.astype(np.float64) * _NS


class Batch:
    """One batch being timed: ``with timer.batch(tickets) as b:`` around the batched predict (``b.size``)."""

    __slots__ = ("buffers", "tickets", "start", "size", "token")

    def __init__(self, buffers: BatchBuffers | None, tickets: tuple) -> None:
        self.buffers = buffers
        self.tickets = tickets
        self.size = len(tickets)
        self.start = 0
        self.token: Any = None

    def __enter__(self) -> Batch:
        if not STATE.started:
            try:
                autostart()
            except Exception as exc:  # pragma: no cover - autostart logs its own failures
                SELF.error("batch_start", exc)
        try:
            self.token = CURRENT_BATCH.set(self)
        except Exception as exc:  # pragma: no cover - a ContextVar.set
            SELF.error("batch_start", exc)
        self.start = perf_counter_ns()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        end = perf_counter_ns()
        if self.token is not None:
            try:
                CURRENT_BATCH.reset(self.token)
            except Exception as inner:  # a block exited in another context than it entered: nothing to undo
                SELF.error("batch_context", inner)
            self.token = None
        buffers = self.buffers
        if buffers is not None:
            try:
                buffers.batches.append((self.start, end, self.tickets, None if exc_type is None else exc_type.__name__))
            except Exception as inner:  # pragma: no cover - a list append
                SELF.error("batch_record", inner)
        return False  # the model's exception, if any, propagates unchanged


class BatchTimer:
    """Times a batched model: ``timer.batch(tickets)`` around each batch (see the module docstring).

    ``name``/``version``/``deployment_role``/``attributes`` are the model's attributes, as for
    ``@instrument_model``: the per-request ``ml.inference.duration`` lands in the model's series, so a latency SLO
    on the model judges requests. Do not also decorate the batched predict with ``@instrument_model``: that
    counts one inference per batch (a second, per-batch value in the same series).
    """

    def __init__(
        self,
        name: str,
        version: str | None = None,
        *,
        deployment_role: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise config.ConfigError(f"BatchTimer: name={name!r}: a non-empty string")
        role = config.check_role(deployment_role) if deployment_role else config.default_role()
        base = {
            conv.MODEL_NAME: name,
            conv.MODEL_VERSION: str(version) if version is not None else conv.UNKNOWN_VERSION,
            conv.DEPLOYMENT_ROLE: role,
            **check_attributes(attributes),
        }
        self.start_recording(base)

    @classmethod
    def with_attributes(cls, attributes: Mapping[str, Any]) -> BatchTimer:
        """The timer of a model whose attributes are already checked (``@instrument_model(batched=True)``)."""
        timer = cls.__new__(cls)
        timer.start_recording(dict(attributes))
        return timer

    def start_recording(self, base: dict[str, Any]) -> None:
        self.name = str(base[conv.MODEL_NAME])
        self.buffers = BatchBuffers(base)
        STATE.recorder.register(self.buffers)
        weakref.finalize(self, STATE.recorder.release, self.buffers).atexit = False
        arm_sigterm()

    enqueue = staticmethod(enqueue)

    def batch(self, tickets: Iterable[int]) -> Batch:
        """A context manager timing one batch of the requests whose ``enqueue()`` tickets are given. Never raises."""
        try:
            return Batch(self.buffers, tuple(tickets))
        except Exception as exc:
            SELF.drop(INVALID_BATCH, 1, f"BatchTimer.batch() of {self.name!r}: tickets not iterable ({exc})")
            return Batch(None, ())


class AsyncBatcher:
    """An asyncio queue in front of a batched predict: ``result = await batcher(item)``.

    Requests are gathered until ``max_batch_size`` are waiting or ``max_wait`` seconds have passed since the
    first of them arrived, then ``predict(items)`` runs on the list (an ``async def`` predict is awaited; a
    plain one runs in a worker thread, so requests keep queueing meanwhile) and must return one result per
    item, in order. Each caller gets its own result, or the very exception object ``predict`` raised (every
    request of that batch gets it); a result count that differs from the batch size gives every caller of the
    batch a ``ValueError``. Timed by a ``BatchTimer``: ``timer=``, the model's own when ``predict`` is decorated
    with ``@instrument_model(..., batched=True)``, or one made from ``name``/``version``/....

    The queue and its batch loop belong to the running event loop; a call from another loop starts new ones.
    """

    def __init__(
        self,
        predict: Callable[[list[Any]], Any],
        *,
        max_batch_size: int,
        max_wait: float,
        name: str | None = None,
        version: str | None = None,
        deployment_role: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        timer: BatchTimer | None = None,
    ) -> None:
        if not callable(predict):
            raise config.ConfigError(f"AsyncBatcher: predict={predict!r} is not callable")
        own = getattr(predict, "batch_timer", None)
        if hasattr(predict, "__modelotel__") and not isinstance(own, BatchTimer):
            raise config.ConfigError(
                "AsyncBatcher: predict is decorated with @instrument_model, which times each call, a batch: "
                "decorate it with batched=True (its requests are then timed by the batcher), or pass it undecorated"
            )
        if timer is None and isinstance(own, BatchTimer):
            timer = own
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise config.ConfigError(f"AsyncBatcher: max_batch_size={max_batch_size!r}: an integer >= 1")
        if isinstance(max_wait, bool) or not isinstance(max_wait, (int, float)) or not 0 <= max_wait < float("inf"):
            raise config.ConfigError(f"AsyncBatcher: max_wait={max_wait!r}: seconds, >= 0")
        if timer is None:
            default = getattr(predict, "__qualname__", type(predict).__name__)
            timer = BatchTimer(name or default, version, deployment_role=deployment_role, attributes=attributes)
        elif not isinstance(timer, BatchTimer):
            raise config.ConfigError(f"AsyncBatcher: timer={timer!r}: a modelotel BatchTimer")
        self.predict = predict
        self.is_async = inspect.iscoroutinefunction(predict) or inspect.iscoroutinefunction(
            getattr(predict, "__call__", None)  # noqa: B004 - an object with an async __call__
        )
        self.max_batch_size = max_batch_size
        self.max_wait = float(max_wait)
        self.timer = timer
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queue: asyncio.Queue[tuple[Any, int, asyncio.Future]] | None = None
        self.worker: asyncio.Task | None = None

    async def __call__(self, item: Any) -> Any:
        import asyncio  # here, not at import: `import modelotel` stays light (tests/sdk/test_import_cost.py)

        ticket = perf_counter_ns()
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # first call, or a new loop (a queue and a task belong to one loop)
            self.loop, self.queue, self.worker = loop, asyncio.Queue(), None
        if self.worker is None or self.worker.done():
            self.worker = loop.create_task(self.run())
        future = loop.create_future()
        self.queue.put_nowait((item, ticket, future))
        return await future

    async def aclose(self) -> None:
        """Stop the batch loop (at the server's shutdown); requests still queued are cancelled."""
        import asyncio

        worker, self.worker = self.worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        queue = self.queue
        while queue is not None and not queue.empty():
            queue.get_nowait()[2].cancel()

    async def run(self) -> None:
        """The batch loop (started by the first call)."""
        import asyncio

        queue = self.queue
        assert queue is not None
        loop = asyncio.get_running_loop()
        while True:
            waiting = [await queue.get()]
            deadline = loop.time() + self.max_wait
            while len(waiting) < self.max_batch_size:
                if not queue.empty():
                    waiting.append(queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    waiting.append(await asyncio.wait_for(queue.get(), left))
                except asyncio.TimeoutError:
                    break
            await self.run_batch(waiting)

    async def run_batch(self, waiting: Sequence[tuple[Any, int, asyncio.Future]]) -> None:
        import asyncio

        items = [w[0] for w in waiting]
        futures = [w[2] for w in waiting]
        try:
            with self.timer.batch([w[1] for w in waiting]):
                if self.is_async:
                    results = await self.predict(items)
                else:
                    results = await asyncio.to_thread(self.predict, items)
                results = _one_per_item(results, len(items))
        except asyncio.CancelledError:  # the batcher itself is cancelled (shutdown): so are its requests
            for future in futures:
                future.cancel()
            raise
        except BaseException as exc:  # the model's own exception object, to every request of the batch
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return
        for future, result in zip(futures, results, strict=True):
            if not future.done():  # a caller that gave up (cancelled) has no one to hand it to
                future.set_result(result)


def _one_per_item(results: Any, n: int) -> Sequence[Any]:
    try:
        count = len(results)
    except TypeError:
        raise ValueError(f"AsyncBatcher: predict returned {type(results).__name__}, not one result per item") from None
    if count != n:
        raise ValueError(f"AsyncBatcher: predict returned {count} results for a batch of {n}")
    return results
