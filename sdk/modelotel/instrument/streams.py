"""Streaming calls: the wrappers of generator and async-generator models (one record per stream).

A stream's span is current only while the generator body runs; the record (time to first item, item
count, outcome) is written once, when the stream finishes, fails or is abandoned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from threading import get_ident
from time import perf_counter_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

import modelotel.conventions as conv

from ..feedback import PENDING, Outcome
from ..metrics.exemplars import offer as offer_exemplar
from ..metrics.selftelemetry import SELF
from ..runtime import STATE, autostart
from ..tracing.span import record_exception
from .decorations import FRAME_PIDS, LAST_CALLS, WRAPPER_CODES, getframe
from .genai import DURATION, TTFT, drop_counts, token_count

# ``inst`` below is a ``decorator.Instrumented`` (typed Any: decorator imports this module).


class Stream:
    """Bookkeeping for one streaming call: time to first item, item count, the single final record."""

    __slots__ = ("inst", "t0", "first", "items", "done", "span", "token", "pid", "key", "missing", "elapsed")

    def __init__(self, inst: Any, key: int, args: tuple, kwargs: dict) -> None:
        self.inst = inst
        self.key = key
        self.items = 0
        self.first = 0
        self.done = False
        self.elapsed = 0
        self.span = self.token = self.pid = None
        if not STATE.started:
            autostart()
        if inst.tracing():
            self.span, self.token, self.pid = inst.open_span()
            FRAME_PIDS[key] = self.pid
            self._suspend()
        # Counted when the stream starts, so a stream that fails or is abandoned half-way counts them too.
        self.missing = inst.missing_inputs(args, kwargs, self.span is None)
        self.t0 = perf_counter_ns()

    # A span of a generator is current only while the generator body runs.
    def _resume(self) -> None:
        if self.span is not None and self.token is None:
            try:
                self.token = otel_context.attach(trace.set_span_in_context(self.span))
            except Exception as exc:
                SELF.error("span_resume", exc)

    def _suspend(self) -> None:
        if self.token is not None:
            try:
                otel_context.detach(self.token)
            except Exception as exc:
                SELF.error("span_suspend", exc)
            self.token = None

    def item(self, value: Any = None) -> None:
        if not self.items:
            self.first = perf_counter_ns() - self.t0
        self.items += 1

    def finish(self, exc: BaseException | None) -> None:
        if self.done:
            return
        self.done = True
        dt = self.elapsed = perf_counter_ns() - self.t0
        inst = self.inst
        pid = FRAME_PIDS.pop(self.key, self.pid) if FRAME_PIDS else self.pid
        if LAST_CALLS.armed:
            LAST_CALLS[get_ident()] = None  # a stream has no output to describe: last_prediction_id() gives None
        try:
            b = inst.buffers
            if self.items:
                b.first_item.append(self.first)
            if exc is not None:
                inst.error(exc, dt)
            else:
                b.durations.append(dt)
                b.labels.append(None)
                if pid is not None:
                    PENDING.put(pid, Outcome(b, (), (), (), time.time()))
            span = self.span
            if span is not None:
                # an exemplar of the duration just recorded, on the series it went to (metrics/exemplars.py)
                offer_exemplar(b.exemplars, span, dt, None if exc is None else type(exc).__name__)
                if span.is_recording():
                    attrs = {**inst.span_attributes, conv.STREAM_ITEMS: self.items}
                    if pid is not None:
                        attrs[conv.PREDICTION_ID] = pid
                    if self.missing:
                        attrs[conv.FEATURES_MISSING] = self.missing
                    span.set_attributes(attrs)
                if exc is not None and span.is_recording():
                    record_exception(span, exc)
                span.end()
        except Exception as inner:
            SELF.error("stream_finish", inner)


class GenAIStream(Stream):
    """A stream of a model given ``genai=`` without callables: one item is one token, so the item count and the
    time to the first item are the token figures, and nothing is added per item."""

    __slots__ = ()

    def token_figures(self) -> tuple[int, int, int | None, bool]:
        """(output tokens, ns to the first token, reported input tokens, counted)."""
        return self.items, self.first, None, True

    def finish(self, exc: BaseException | None) -> None:
        if self.done:
            return
        super().finish(exc)
        try:
            output, first_token, input_tokens, counted = self.token_figures()
            error_type = None if exc is None else type(exc).__name__
            genai = self.inst.genai
            genai.streams.append((self.elapsed, first_token, output, input_tokens, error_type, counted))
            span = self.span
            if span is not None:  # exemplars (metrics/exemplars.py), after the row they belong to
                offer_exemplar(genai.exemplars, span, self.elapsed, (DURATION, error_type))
                if error_type is None and counted and first_token and output:
                    offer_exemplar(genai.exemplars, span, first_token, (TTFT, None))
        except Exception as inner:
            SELF.error("genai_finish", inner)


class CountedGenAIStream(GenAIStream):
    """A stream of a model given ``genai=GenAI(tokens=..., usage=...)``: the user's callables count each item."""

    __slots__ = ("tokens", "first_token", "input_tokens", "output_tokens", "counted")

    def __init__(self, inst: Any, key: int, args: tuple, kwargs: dict) -> None:
        self.tokens = self.first_token = 0
        self.input_tokens = self.output_tokens = None
        self.counted = True
        super().__init__(inst, key, args, kwargs)

    def item(self, value: Any = None) -> None:
        Stream.item(self)
        if not self.counted:
            return
        genai = self.inst.genai
        try:  # user callables: whatever they do stays here (a counted drop)
            if genai.usage is not None:
                reported = genai.usage(value)
                if reported is not None:
                    given_input, given_output = reported
                    if given_input is not None:
                        self.input_tokens = token_count(given_input)
                    if given_output is not None:
                        self.output_tokens = token_count(given_output)
                    return
            n = 1 if genai.tokens is None else token_count(genai.tokens(value))
        except Exception as exc:
            self.counted = False
            drop_counts(exc)
            return
        if n:
            if not self.tokens:
                self.first_token = perf_counter_ns() - self.t0
            self.tokens += n

    def token_figures(self) -> tuple[int, int, int | None, bool]:
        output = self.tokens if self.output_tokens is None else self.output_tokens
        return output, self.first_token, self.input_tokens, self.counted


def stream_class(inst: Any) -> type[Stream]:
    """The bookkeeping a decorated generator's streams need (decided once, at decoration)."""
    genai = inst.genai
    if genai is None:
        return Stream
    return GenAIStream if genai.tokens is None and genai.usage is None else CountedGenAIStream


def gen_wrapper(inst: Any) -> Callable[..., Any]:
    fn = inst.fn
    new_stream = stream_class(inst)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        stream = new_stream(inst, id(getframe()), args, kwargs)
        try:
            stream._resume()
            try:
                gen = fn(*args, **kwargs)
                item = next(gen)
            finally:
                stream._suspend()
        except StopIteration as stop:
            stream.finish(None)
            return stop.value
        except BaseException as exc:
            stream.finish(exc)
            raise
        # PEP 380's expansion of ``yield from``, with the item count and the span made current per resume.
        while True:
            stream.item(item)
            try:
                sent = yield item
            except GeneratorExit:
                try:
                    stream._resume()
                    try:
                        gen.close()
                    finally:
                        stream._suspend()
                except BaseException as exc:
                    stream.finish(exc)
                    raise
                stream.finish(None)
                raise
            except BaseException as thrown:
                try:
                    stream._resume()
                    try:
                        item = gen.throw(thrown)
                    finally:
                        stream._suspend()
                except StopIteration as stop:
                    stream.finish(None)
                    return stop.value
                except BaseException as exc:
                    stream.finish(exc)
                    raise
            else:
                try:
                    stream._resume()
                    try:
                        item = next(gen) if sent is None else gen.send(sent)
                    finally:
                        stream._suspend()
                except StopIteration as stop:
                    stream.finish(None)
                    return stop.value
                except BaseException as exc:
                    stream.finish(exc)
                    raise

    WRAPPER_CODES.add(wrapper.__code__)
    return wrapper


def async_gen_wrapper(inst: Any) -> Callable[..., Any]:
    fn = inst.fn
    new_stream = stream_class(inst)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        stream = new_stream(inst, id(getframe()), args, kwargs)
        try:
            stream._resume()
            try:
                agen = fn(*args, **kwargs)
                item = await agen.__anext__()
            finally:
                stream._suspend()
        except StopAsyncIteration:
            stream.finish(None)
            return
        except BaseException as exc:
            stream.finish(exc)
            raise
        while True:
            stream.item(item)
            try:
                sent = yield item
            except GeneratorExit:
                try:
                    stream._resume()
                    try:
                        await agen.aclose()
                    finally:
                        stream._suspend()
                except BaseException as exc:
                    stream.finish(exc)
                    raise
                stream.finish(None)
                raise
            except BaseException as thrown:
                try:
                    stream._resume()
                    try:
                        item = await agen.athrow(thrown)
                    finally:
                        stream._suspend()
                except StopAsyncIteration:
                    stream.finish(None)
                    return
                except BaseException as exc:
                    stream.finish(exc)
                    raise
            else:
                try:
                    stream._resume()
                    try:
                        item = await (agen.__anext__() if sent is None else agen.asend(sent))
                    finally:
                        stream._suspend()
                except StopAsyncIteration:
                    stream.finish(None)
                    return
                except BaseException as exc:
                    stream.finish(exc)
                    raise

    WRAPPER_CODES.add(wrapper.__code__)
    return wrapper
