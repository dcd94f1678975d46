"""GenAI streams: the ``genai=GenAI(...)`` option and the ``gen_ai.server.*`` metrics of a model's streams.

A generator or async-generator model decorated with ``genai=GenAI(provider=...)`` records, per stream, the
OpenTelemetry GenAI semantic conventions' model-server metrics (Development status):

* ``gen_ai.server.request.duration`` = ``D``, from the call to the stream's end (exhausted, failed or closed);
  failed streams carry ``error.type`` (the exception's class name).
* ``gen_ai.server.time_to_first_token`` = ``T``, from the call to the first item that holds a token.
* ``gen_ai.server.time_per_output_token`` = ``(D - T) / (N - 1)`` for a stream of ``N >= 2`` output tokens,
  as the conventions and vLLM define it (the decode phase: time per token after the first).
* ``ml.genai.tokens`` (modelotel's name: the conventions define only a client token metric), ``N`` with
  ``gen_ai.token.type=output`` and the reported input tokens with ``gen_ai.token.type=input``.

The last three are recorded for successful streams only, as the conventions say. A token is one yielded item,
unless ``tokens=`` counts them (``tokens=lambda chunk: len(chunk.token_ids)``; 0 for an item without tokens).
``usage=`` recognises a usage report among the items (``(input_tokens, output_tokens)``, either may be None, or
None for an ordinary item); a reported output count replaces the counted ``N``. A ``tokens``/``usage`` callable that
raises or returns something that is not a non-negative integer drops that stream's token figures (counted in
``modelotel.dropped``, reason ``genai_token_count``) and never reaches the model's caller.

The provider goes under ``gen_ai.system`` (conventions v1.36.0 and before) unless ``OTEL_SEMCONV_STABILITY_OPT_IN``
lists ``gen_ai_latest_experimental``, then under ``gen_ai.provider.name``, as OpenTelemetry's own GenAI
instrumentations do. modelotel's ``ml.*`` metrics of the stream are unchanged either way.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

import modelotel.config as config
import modelotel.conventions as conv

from ..metrics.buffers import SeriesSink, attr_key, drain
from ..metrics.exemplars import grouped
from ..metrics.selftelemetry import SELF

__all__ = ["GenAI", "GenAIBuffers", "check_genai", "token_count"]

DROP_REASON = "genai_token_count"
DURATION, TTFT = "duration", "ttft"  # which metric an exemplar candidate of a stream is for


@dataclasses.dataclass(frozen=True)
class GenAI:
    """What a streaming model generates, for the GenAI metrics: ``instrument_model(..., genai=GenAI(...))``."""

    provider: str  # gen_ai.provider.name / gen_ai.system: "openai", "aws.bedrock", or your own (e.g. "vllm")
    operation: str = "chat"  # gen_ai.operation.name: chat, text_completion, generate_content, ...
    request_model: str | None = None  # gen_ai.request.model (default: the model's ml.model.name)
    response_model: str | None = None  # gen_ai.response.model (default: not set)
    tokens: Callable[[Any], int] | None = None  # output tokens in one item (default: 1 per item)
    usage: Callable[[Any], tuple[int | None, int | None] | None] | None = None  # a usage item's (input, output)


def check_genai(genai: Any) -> GenAI | None:
    """``genai`` as given, checked at decoration time (``config.ConfigError`` names the bad field)."""
    if genai is None:
        return None
    if not isinstance(genai, GenAI):
        raise config.ConfigError(f"genai={genai!r}: pass modelotel.GenAI(provider=...)")
    for field in ("provider", "operation"):
        value = getattr(genai, field)
        if not isinstance(value, str) or not value:
            raise config.ConfigError(f"genai.{field}={value!r}: a non-empty string")
    for field in ("request_model", "response_model"):
        value = getattr(genai, field)
        if value is not None and (not isinstance(value, str) or not value):
            raise config.ConfigError(f"genai.{field}={value!r}: a non-empty string or None")
    for field in ("tokens", "usage"):
        value = getattr(genai, field)
        if value is not None and not callable(value):
            raise config.ConfigError(f"genai.{field}={value!r}: a callable on one streamed item")
    return genai


def token_count(value: Any) -> int:
    """A token count as an int; ``ValueError``/``TypeError`` unless a non-negative integer (not a bool)."""
    if isinstance(value, bool):
        raise TypeError("a token count, not a bool")
    n = operator.index(value)
    if n < 0:
        raise ValueError(f"negative token count {n}")
    return n


class GenAIBuffers:
    """One decorated streaming model's finished streams, folded into the ``gen_ai.server.*`` series.

    ``streams`` takes one tuple per stream (appended by ``streams.GenAIStream``, lock-free):
    ``(duration_ns, first_token_ns, output_tokens, input_tokens or None, error_type or None, counted)``;
    ``counted`` False: the token callables failed, only the request duration is kept.
    """

    __slots__ = ("attributes", "key", "tokens", "usage", "streams", "exemplars", "__weakref__")

    def __init__(self, genai: GenAI, base: Mapping[str, Any], latest: bool | None = None) -> None:
        latest = config.genai_latest() if latest is None else latest
        attrs = {
            **base,
            conv.GENAI_OPERATION: genai.operation,
            (conv.GENAI_PROVIDER if latest else conv.GENAI_SYSTEM): genai.provider,
            conv.GENAI_REQUEST_MODEL: genai.request_model or base[conv.MODEL_NAME],
        }
        if genai.response_model:
            attrs[conv.GENAI_RESPONSE_MODEL] = genai.response_model
        self.attributes = attrs
        self.key = attr_key(attrs)
        self.tokens = genai.tokens
        self.usage = genai.usage
        self.streams: list[tuple[int, int, int, int | None, str | None, bool]] = []
        # exemplar candidates of traced streams (metrics/exemplars.py), tagged (DURATION, error type or None) for
        # gen_ai.server.request.duration or (TTFT, None) for gen_ai.server.time_to_first_token
        self.exemplars: list[tuple] = []

    def clear(self) -> None:
        """Forget the streams not folded yet (a forked child exports nothing of its parent's)."""
        del self.streams[:]
        del self.exemplars[:]

    def fold(self, rec: SeriesSink) -> None:
        # exemplars first: a stream appends its row before its exemplars (see ModelBuffers.fold)
        exemplars = drain(self.exemplars) if self.exemplars else None
        rows = drain(self.streams)
        if rows:
            self._fold_rows(rec, rows)
        if exemplars:
            self._fold_exemplars(rec, exemplars)

    def _fold_exemplars(self, rec: SeriesSink, exemplars: list[tuple]) -> None:
        for (metric, error_type), candidates in grouped(exemplars).items():
            name = conv.GENAI_SERVER_TIME_TO_FIRST_TOKEN if metric == TTFT else conv.GENAI_SERVER_REQUEST_DURATION
            if error_type is None:
                rec.offer(name, self.key, self.attributes, candidates)
            else:
                err_attrs = {**self.attributes, conv.ERROR_TYPE: error_type}
                rec.offer(name, attr_key(err_attrs), err_attrs, candidates)

    def _fold_rows(self, rec: SeriesSink, rows: list[tuple[int, int, int, int | None, str | None, bool]]) -> None:
        attrs, key = self.attributes, self.key
        ok_durations, ttft, tpot, out_tokens, in_tokens = [], [], [], [], []
        failed: dict[str, list[int]] = {}
        for duration, first, output, given_input, error_type, counted in rows:
            if error_type is not None:
                failed.setdefault(error_type, []).append(duration)
                continue
            ok_durations.append(duration)
            if not counted:
                continue
            if first and output:
                ttft.append(first)
                if output > 1:
                    tpot.append((duration - first) / (output - 1))
            out_tokens.append(output)
            if given_input is not None:
                in_tokens.append(given_input)
        seconds = 1e-9
        if ok_durations:
            rec.observe(conv.GENAI_SERVER_REQUEST_DURATION, key, attrs, np.asarray(ok_durations, np.float64) * seconds)
        for error_type, values in failed.items():
            err_attrs = {**attrs, conv.ERROR_TYPE: error_type}
            err_values = np.asarray(values, np.float64) * seconds
            rec.observe(conv.GENAI_SERVER_REQUEST_DURATION, attr_key(err_attrs), err_attrs, err_values)
        if ttft:
            rec.observe(conv.GENAI_SERVER_TIME_TO_FIRST_TOKEN, key, attrs, np.asarray(ttft, np.float64) * seconds)
        if tpot:
            rec.observe(conv.GENAI_SERVER_TIME_PER_OUTPUT_TOKEN, key, attrs, np.asarray(tpot, np.float64) * seconds)
        for token_type, counts in zip(conv.GENAI_TOKEN_TYPES, (in_tokens, out_tokens), strict=True):
            if counts:
                typed = {**attrs, conv.GENAI_TOKEN_TYPE: token_type}
                rec.observe(conv.GENAI_TOKENS, attr_key(typed), typed, np.asarray(counts, np.float64))


def drop_counts(exc: BaseException) -> None:
    """A ``tokens``/``usage`` callable failed on one item: that stream keeps only its duration (counted)."""
    message = f"genai tokens/usage callable failed ({type(exc).__name__}); the stream's token figures are dropped"
    SELF.drop(DROP_REASON, 1, message)
