"""The Open Inference Protocol (v2): per-model telemetry for every model a server hosts, from the protocol alone.

An OIP server (KServe, MLServer, Triton, ...) names the model of each call in the protocol itself: REST
``POST /v2/models/{name}[/versions/{version}]/infer`` and gRPC ``inference.GRPCInferenceService/ModelInfer``
(``ModelInferRequest.model_name`` / ``model_version``). So one ASGI middleware (``OipMiddleware``) and one gRPC
wrapper (``oip_aio_server_interceptor``, or ``instrument_servicer`` for servers that build their gRPC server
themselves) record ``ml.inference.duration`` and ``ml.predictions`` per (model, version), with ``error.type`` on
failed calls, and decode the response's outputs (``InferTensor``: name, shape, datatype, data) where the shape
allows:

- the first FP32/FP64 output of shape ``[n, k]`` (k >= 2) is a probability tensor: per row, confidence = max and
  label = argmax (an index, or the model's name in ``labels``); rows that are not probability vectors (outside
  [0, 1] or not summing to 1) count as predictions without a label and in ``modelotel.extract.misses``;
- else the first BYTES output of shape ``[n]`` or ``[n, 1]`` gives n labels (text: exported only when declared in
  ``labels`` or with ``free_text_labels``, like ``@instrument_model``'s labels), else the first integer one n
  class ids;
- else n = the first output's first dimension predictions without a label (a regression, an embedding);
- a malformed response (no outputs, data not matching its shape, an unknown datatype, binary-extension data, an
  encoded or oversized body) counts one prediction without a label and one ``modelotel.extract.misses``.

The request path appends one tuple per call (the REST body's bytes or the gRPC response message); parsing,
decoding and the choice of series happen on the export thread (``OipModels.fold``). Instrumentation never
raises into the server: decoding errors are counted (``modelotel.internal.errors``).
A version the request path does not name is the response's ``model_version``, else ``unknown``. A call the
server answers "model not found" (404 / NOT_FOUND) makes no series (any client can send any name): it is counted
in ``modelotel.dropped{reason="oip_model_not_found"}``; at most ``max_models`` (name, version) pairs get series.
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from time import perf_counter_ns
from typing import Any

import numpy as np

import modelotel.config as config
import modelotel.conventions as conv

from ..labels import WITHHELD_REASON, LabelPolicy
from ..metrics.buffers import ModelBuffers, drain
from ..metrics.selftelemetry import SELF
from ..privacy import scrub_capped
from ..runtime import STATE, autostart

__all__ = [
    "GRPC_MODEL_INFER",
    "INFER_PATH",
    "GrpcResponse",
    "OipMiddleware",
    "OipModels",
    "RestResponse",
    "instrument_servicer",
    "oip_aio_server_interceptor",
]

INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
GRPC_MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"

DEFAULT_MAX_MODELS = 256  # (name, version) pairs with series per server; more are counted drops
MAX_RESPONSE_BYTES = 4 << 20  # REST bodies kept for decoding; larger ones are counted, not decoded
MAX_ROWS = 65_536  # rows of one output decoded per call
MAX_CLASSES = 1024  # columns of a probability tensor
MAX_NAME_CHARS = 128  # an exported model name or version, truncation marker included
NOT_FOUND_REASON = "oip_model_not_found"
MODEL_LIMIT_REASON = "oip_model_limit"

_FLOATS = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16}
_INTS = {
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
}
# gRPC InferTensorContents: the field holding each datatype's values
_CONTENTS = {
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "BOOL": "bool_contents",
    "BYTES": "bytes_contents",
}


class _Malformed(Exception):
    """An output the protocol does not allow (data not matching shape, unknown datatype): counted, not decoded."""


class Tensor:
    """One decoded output: its datatype, shape and values (a flat numpy array, or a list of str for BYTES)."""

    __slots__ = ("datatype", "shape", "data")

    def __init__(self, datatype: str, shape: Sequence[int], data: Any) -> None:
        self.datatype = datatype
        self.shape = [int(d) for d in shape]
        self.data = data
        n = 1
        for d in self.shape:
            if d < 0:
                raise _Malformed("negative dimension")
            n *= d
        if len(data) != n:
            raise _Malformed(f"{len(data)} values for shape {self.shape}")


def rest_tensor(output: Any) -> Tensor:
    """A REST ``outputs`` entry (``{"name", "shape", "datatype", "data"}``; data flat or nested row-major)."""
    if not isinstance(output, dict) or "data" not in output:
        raise _Malformed("no data (binary extension or not an output)")
    datatype = output.get("datatype")
    shape = output.get("shape")
    if not isinstance(datatype, str) or not isinstance(shape, list):
        raise _Malformed("no datatype or shape")
    data = output["data"]
    if datatype == "BYTES":
        flat = _flatten(data)
        return Tensor(datatype, shape, [v if type(v) is str else str(v) for v in flat])
    dtype = _FLOATS.get(datatype) or _INTS.get(datatype) or (np.bool_ if datatype == "BOOL" else None)
    if dtype is None:
        raise _Malformed(f"datatype {datatype!r}")
    try:
        values = np.asarray(data, dtype=dtype).ravel()
    except (TypeError, ValueError, OverflowError) as exc:
        raise _Malformed(str(exc)) from None
    return Tensor(datatype, shape, values)


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not data or not isinstance(data[0], list):
        return data
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item))
    return out


def grpc_tensor(output: Any, raw: bytes | None) -> Tensor:
    """An ``InferOutputTensor`` (and its ``raw_output_contents`` entry, if the server used those)."""
    datatype = output.datatype
    shape = list(output.shape)
    if raw is not None:
        if datatype == "BYTES":  # each element: a 4-byte little-endian length, then the bytes
            values, pos = [], 0
            while pos + 4 <= len(raw):
                n = int.from_bytes(raw[pos : pos + 4], "little")
                values.append(raw[pos + 4 : pos + 4 + n].decode("utf-8", "replace"))
                pos += 4 + n
            if pos != len(raw):
                raise _Malformed("truncated BYTES element")
            return Tensor(datatype, shape, values)
        dtype = _FLOATS.get(datatype) or _INTS.get(datatype) or (np.bool_ if datatype == "BOOL" else None)
        if dtype is None:
            raise _Malformed(f"datatype {datatype!r}")
        width = np.dtype(dtype).itemsize
        if len(raw) % width:
            raise _Malformed("raw contents not a whole number of elements")
        return Tensor(datatype, shape, np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")))
    field = _CONTENTS.get(datatype)
    if field is None:
        raise _Malformed(f"datatype {datatype!r}")
    values = getattr(output.contents, field)
    if datatype == "BYTES":
        return Tensor(datatype, shape, [v.decode("utf-8", "replace") for v in values])
    dtype = _FLOATS.get(datatype) or _INTS.get(datatype) or np.bool_
    return Tensor(datatype, shape, np.asarray(values, dtype=dtype))


class RestResponse:
    """A REST response body as the request path kept it (bytes); parsed on the export thread."""

    __slots__ = ("body", "_obj")

    def __init__(self, body: bytes | None) -> None:
        self.body = body
        self._obj: Any = None

    def _parsed(self) -> Any:
        if self._obj is None and self.body is not None:
            try:
                self._obj = _loads(self.body)
            except Exception:
                self._obj = False
            self.body = None
        return self._obj

    def version(self) -> str | None:
        obj = self._parsed()
        v = obj.get("model_version") if isinstance(obj, dict) else None
        return str(v) if v not in (None, "") else None

    def tensors(self) -> list[Tensor]:
        obj = self._parsed()
        if not isinstance(obj, dict) or not isinstance(obj.get("outputs"), list):
            raise _Malformed("no outputs")
        return [rest_tensor(o) for o in obj["outputs"]]


class GrpcResponse:
    """A ``ModelInferResponse`` as the servicer returned it (not copied: servers build a new one per call)."""

    __slots__ = ("message",)

    def __init__(self, message: Any) -> None:
        self.message = message

    def version(self) -> str | None:
        return str(self.message.model_version) or None

    def tensors(self) -> list[Tensor]:
        m = self.message
        raw = list(m.raw_output_contents)
        if raw and len(raw) != len(m.outputs):
            raise _Malformed("raw_output_contents and outputs differ in length")
        return [grpc_tensor(o, raw[i] if raw else None) for i, o in enumerate(m.outputs)]


MAX_PENDING = 100_000  # calls kept for the export thread; past this the request path decodes them itself


class OipModels:
    """The per-(model, version) buffers of one server, and the rule that turns a response into predictions.

    The request path appends one tuple per call (``record``); the export thread (``fold``, this object is a
    source of the recorder) parses the responses, picks the series and folds each model's buffers.
    ``labels``: per model name, the class names of its probability columns / class ids, which are also its
    declared labels (BYTES outputs among them are exported). ``free_text_labels``: export any BYTES label
    (scrubbed, capped). ``deployment_role``: of every model (default: MODELOTEL_DEPLOYMENT_ROLE, else primary).
    """

    def __init__(
        self,
        *,
        labels: Mapping[str, Sequence[Any]] | None = None,
        free_text_labels: bool = False,
        deployment_role: str | None = None,
        max_models: int = DEFAULT_MAX_MODELS,
    ) -> None:
        self.labels = {str(k): list(v) for k, v in (labels or {}).items()}
        self.free_text_labels = bool(free_text_labels)
        self.role = config.check_role(deployment_role) if deployment_role else config.default_role()
        if max_models < 1:
            raise config.ConfigError(f"max_models={max_models!r}: at least 1")
        self.max_models = max_models
        self.pending: list[tuple[str, str | None, int, Any, str | None]] = []
        self._buffers: dict[tuple[str, str], ModelBuffers] = {}
        self._lock = threading.Lock()
        STATE.recorder.register(self)

    def record(
        self,
        name: str,
        version: str | None,
        dt: int,
        response: RestResponse | GrpcResponse | None = None,
        error_type: str | None = None,
    ) -> None:
        """One call of model ``name`` that took ``dt`` ns: its response (None: none) or its ``error_type``.
        ``version`` None: the response's, else ``unknown``. One append; never raises."""
        pending = self.pending
        pending.append((name, version, dt, response, error_type))
        if len(pending) > MAX_PENDING:  # no export for a long while: do the work here rather than grow
            self.absorb()

    def models(self) -> list[tuple[str, str]]:
        """The (name, version) pairs with series so far."""
        return sorted(self._buffers)

    def fold(self, rec: Any) -> None:
        """Export thread: the pending calls into their models' buffers, then those buffers into ``rec``."""
        self.absorb()
        for b in list(self._buffers.values()):
            b.fold(rec)

    def clear(self) -> None:
        """A forked child starts from nothing."""
        self.pending.clear()
        for b in list(self._buffers.values()):
            b.clear()

    def absorb(self) -> None:
        """Decode the calls recorded so far into their models' buffers. Never raises."""
        if not STATE.started:
            autostart()
        for name, version, dt, response, error_type in drain(self.pending):
            try:
                if version is None and response is not None:
                    try:
                        version = response.version()
                    except Exception:
                        version = None
                b = self._model(name, version)
                if b is None:
                    continue
                if error_type is not None:
                    b.errors.append((error_type, dt))
                    continue
                b.durations.append(dt)
                try:
                    tensors = response.tensors() if response is not None else []
                except Exception:  # _Malformed, or whatever a hostile body makes numpy or int() raise
                    tensors = []
                self._predictions(b, tensors)
            except Exception as exc:
                SELF.error("oip_record", exc)

    def _model(self, name: str, version: str | None) -> ModelBuffers | None:
        """The buffers of (name, version), made on first use; None past ``max_models`` (a counted drop)."""
        key = (name, version or conv.UNKNOWN_VERSION)
        b = self._buffers.get(key)
        if b is not None:
            return b
        with self._lock:
            b = self._buffers.get(key)
            if b is not None:
                return b
            if len(self._buffers) >= self.max_models:
                SELF.drop(MODEL_LIMIT_REASON, 1, f"more than {self.max_models} OIP models: this call is not recorded")
                return None
            # names come from the client's request (a server may answer an unknown one with 400/500, not 404):
            # exported scrubbed and capped, like every text we did not choose
            attrs = {
                conv.MODEL_NAME: scrub_capped(key[0], MAX_NAME_CHARS),
                conv.MODEL_VERSION: scrub_capped(key[1], MAX_NAME_CHARS),
                conv.DEPLOYMENT_ROLE: self.role,
            }
            b = ModelBuffers(attrs)
            names = self.labels.get(name)
            b.class_names = names
            b.label_policy = LabelPolicy(names, self.free_text_labels, model=name)
            self._buffers[key] = b  # folded by fold(), not registered: after this call's values are in
            return b

    def _predictions(self, b: ModelBuffers, tensors: list[Tensor]) -> None:
        for t in tensors:  # a probability tensor first: it has both confidence and label
            if t.datatype in _FLOATS and len(t.shape) == 2 and 2 <= t.shape[1] <= MAX_CLASSES:
                n = min(t.shape[0], MAX_ROWS)
                rows = np.asarray(t.data[: n * t.shape[1]]).reshape(n, t.shape[1])
                raw = b.raw_outputs32 if rows.dtype == np.float32 else b.raw_outputs
                if rows.dtype == np.float16:
                    rows = rows.astype(np.float32)
                    raw = b.raw_outputs32
                raw.extend(row.tobytes() for row in rows)
                return
        for kinds in (("BYTES",), tuple(_INTS)):
            for t in tensors:
                if t.datatype in kinds and (len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1)):
                    self._labels(b, list(t.data[:MAX_ROWS]) if kinds == ("BYTES",) else t.data[:MAX_ROWS].tolist())
                    return
        if tensors and tensors[0].shape:
            b.labels.extend([None] * min(tensors[0].shape[0], MAX_ROWS))
            return
        b.labels.append(None)  # nothing we can read: one prediction, one miss
        b.misses.append(1)

    def _labels(self, b: ModelBuffers, labels: list[Any]) -> None:
        names = b.class_names
        if names is not None:
            labels = [names[v] if type(v) is int and 0 <= v < len(names) else v for v in labels]
        shown, withheld = b.label_policy.exported(labels, False)
        if withheld:
            SELF.drop(WITHHELD_REASON, withheld, b.label_policy.message, b.label_policy.log_key)
        b.labels.extend(shown)


def _not_found(name: str) -> None:
    SELF.drop(NOT_FOUND_REASON, 1, f"an OIP call for model {name[:64]!r}, which the server does not have")


# -- REST: an ASGI middleware ----------------------------------------------------------------------------


class OipMiddleware:
    """ASGI middleware recording every OIP REST inference call per model and version.

    ``app.add_middleware(OipMiddleware)`` (FastAPI/Starlette) or ``OipMiddleware(app)``. With ``http=True``
    (the default) it also is a ``ModelotelMiddleware`` (the HTTP server span and
    ``http.server.request.duration`` of every request), whose keyword options (``excluded_urls``, ``traces``)
    it passes on. ``labels``, ``free_text_labels``, ``deployment_role``, ``max_models``: see ``OipModels``.
    """

    def __init__(
        self,
        app: Any,
        *,
        models: OipModels | None = None,
        labels: Mapping[str, Sequence[Any]] | None = None,
        free_text_labels: bool = False,
        deployment_role: str | None = None,
        max_models: int = DEFAULT_MAX_MODELS,
        http: bool = True,
        **http_options: Any,
    ) -> None:
        self.models = models or OipModels(
            labels=labels, free_text_labels=free_text_labels, deployment_role=deployment_role, max_models=max_models
        )
        self.app = app
        entry: Any = self._oip
        if http:
            from .asgi import ModelotelMiddleware

            entry = ModelotelMiddleware(self._oip, deployment_role=deployment_role, **http_options)
        self._entry = entry

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        await self._entry(scope, receive, send)

    async def _oip(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        match = INFER_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        t0 = perf_counter_ns()
        name, version = match.group(1), match.group(2)
        status = 0
        decodable = True
        chunks: list[bytes] = []
        size = 0
        done = False

        async def send_wrapper(message: Any) -> None:
            nonlocal status, decodable, size, done
            last = False
            if not done:
                # read before passing it on: middleware further out may rewrite the message in place
                # (Starlette's GZip middleware replaces message["body"] with the compressed bytes)
                try:
                    mtype = message["type"]
                    if mtype == "http.response.start":
                        status = int(message.get("status", 0))
                        for k, v in message.get("headers") or ():
                            if k.lower() == b"content-encoding" and v.lower() != b"identity":
                                decodable = False  # an app that encodes its own bodies: not inflated here
                    elif mtype == "http.response.body":
                        body = message.get("body", b"")
                        if decodable and body:
                            size += len(body)
                            if size > MAX_RESPONSE_BYTES:
                                decodable = False
                                chunks.clear()
                            else:
                                chunks.append(bytes(body))
                        last = not message.get("more_body", False)
                except Exception as exc:
                    SELF.error("oip_rest", exc)
            await send(message)
            if last:  # after the last chunk went out: the call's duration includes sending it
                done = True
                try:
                    self._finish(name, version, t0, status, chunks if decodable else None)
                except Exception as exc:
                    SELF.error("oip_rest", exc)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            if not done:
                done = True
                self.models.record(name, version, perf_counter_ns() - t0, None, type(exc).__name__)
            raise
        if not done:  # the app returned without completing the response: the server answers 500
            self.models.record(name, version, perf_counter_ns() - t0, None, "500")

    def _finish(self, name: str, version: str | None, t0: int, status: int, chunks: list[bytes] | None) -> None:
        dt = perf_counter_ns() - t0
        if status == 404:
            _not_found(name)
            return
        if status >= 400 or status < 200:
            self.models.record(name, version, dt, None, str(status))
            return
        # parsed on the export thread (RestResponse): the request path only joins the chunks
        self.models.record(name, version, dt, RestResponse(b"".join(chunks) if chunks is not None else None))


def _json_loads() -> Callable[[bytes], Any]:
    try:
        import orjson

        return orjson.loads
    except ImportError:  # pragma: no cover - orjson is a dependency
        import json

        return json.loads


_loads = _json_loads()


# -- gRPC: ModelInfer ---------------------------------------------------------------------------------------


def _grpc_error(exc: BaseException | None, context: Any) -> str | None:
    """error.type of a failed call: the status code's name, else the exception's class; None: not found."""
    code = None
    try:
        code_fn = getattr(context, "code", None)
        code = code_fn() if code_fn is not None else None
    except Exception:
        code = None
    if code is not None and getattr(code, "name", "OK") != "OK":
        return None if code.name == "NOT_FOUND" else code.name
    if exc is None:
        return ""  # OK
    return None if type(exc).__name__ in ("ModelNotFound", "ModelNotFoundError") else type(exc).__name__


def _model_infer(models: OipModels, inner: Callable[..., Any]) -> Callable[..., Any]:
    """``inner(request, context)`` (a coroutine function or a plain one), recorded per model and version."""

    def done(request: Any, context: Any, t0: int, response: Any, exc: BaseException | None) -> None:
        dt = perf_counter_ns() - t0
        try:
            name = str(request.model_name)
            version = str(request.model_version) or None
            error_type = _grpc_error(exc, context)
            if error_type is None:
                _not_found(name)
                return
            if error_type:
                models.record(name, version, dt, None, error_type)
                return
            models.record(name, version, dt, GrpcResponse(response))
        except Exception as exc2:
            SELF.error("oip_grpc", exc2)

    if inspect.iscoroutinefunction(inner):

        async def model_infer_async(*args: Any) -> Any:
            request, context = args[-2], args[-1]
            t0 = perf_counter_ns()
            try:
                response = await inner(*args)
            except BaseException as exc:
                done(request, context, t0, None, exc)
                raise
            done(request, context, t0, response, None)
            return response

        model_infer_async.__wrapped__ = inner  # type: ignore[attr-defined]
        return model_infer_async

    def model_infer(*args: Any) -> Any:
        request, context = args[-2], args[-1]
        t0 = perf_counter_ns()
        try:
            response = inner(*args)
        except BaseException as exc:
            done(request, context, t0, None, exc)
            raise
        done(request, context, t0, response, None)
        return response

    model_infer.__wrapped__ = inner  # type: ignore[attr-defined]
    return model_infer


def instrument_servicer(servicer_class: type, models: OipModels | None = None, **options: Any) -> OipModels:
    """Wrap ``servicer_class.ModelInfer`` (a ``GRPCInferenceServiceServicer``): for servers that create their
    ``grpc.aio.server`` themselves, with no way to add an interceptor. Idempotent; returns the ``OipModels``
    (``options``: its keyword arguments, when ``models`` is None)."""
    current = servicer_class.__dict__.get("ModelInfer")
    if current is None:
        raise config.ConfigError(f"{servicer_class.__name__} has no ModelInfer method: not an OIP servicer")
    existing = getattr(current, "modelotel_oip_models", None)
    if existing is not None:
        return existing
    models = models if models is not None else OipModels(**options)
    wrapped = _model_infer(models, current)
    wrapped.modelotel_oip_models = models  # type: ignore[attr-defined]
    servicer_class.ModelInfer = wrapped  # type: ignore[attr-defined]
    return models


def oip_aio_server_interceptor(models: OipModels | None = None, **options: Any) -> Any:
    """A ``grpc.aio.ServerInterceptor`` recording ``ModelInfer`` calls per model and version (other methods pass
    through): ``grpc.aio.server(interceptors=[oip_aio_server_interceptor()])``. ``options``: ``OipModels``'s."""
    import grpc

    models = models if models is not None else OipModels(**options)

    class _OipInterceptor(grpc.aio.ServerInterceptor):
        def __init__(self) -> None:
            self.models = models
            self._cache: dict[int, Any] = {}

        async def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
            handler = await continuation(details)
            if handler is None or details.method != GRPC_MODEL_INFER or handler.unary_unary is None:
                return handler
            try:
                served = self._cache.get(id(handler))
                if served is None or served[0] is not handler:
                    wrapped = _model_infer(models, handler.unary_unary)
                    new = grpc.unary_unary_rpc_method_handler(
                        wrapped, handler.request_deserializer, handler.response_serializer
                    )
                    served = self._cache[id(handler)] = (handler, new)
                return served[1]
            except Exception as exc:
                SELF.error("oip_intercept", exc)
                return handler

    return _OipInterceptor()
