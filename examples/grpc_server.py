"""The example model served over gRPC, instrumented with modelotel.

    python examples/grpc_server.py --port 50051 [--allow-faults]

Service ``fraud.v1.FraudModel``, unary methods whose messages are JSON bytes (generic handlers, so there is
no .proto to compile and no generated code; a real service would use protobuf messages, and the
instrumentation would not change):

* ``Predict`` ``{"rows": [[...12 numbers...]]}`` -> ``{"prediction_id", "labels", "confidences"}``;
  INVALID_ARGUMENT for bad rows, INTERNAL when the model fails;
* ``Feedback`` ``{"prediction_id", "labels"}`` -> ``{"matched": true}``, NOT_FOUND for an unknown id;
* ``Health`` -> ``{"status": "ok"}`` and the demo-only ``SetMode`` ``{"slow_ms", "error_rate", "seed"}``
  (PERMISSION_DENIED unless started with ``--allow-faults``), both excluded from telemetry.

The interceptor records ``rpc.server.call.duration`` by method and status; ``@instrument_model`` the model.
Export settings come from the environment, as in fastapi_server.py, and so does the log: startup lines
(the model, where telemetry goes, the address), a request summary every 10 s, fault-mode changes, and at
shutdown what was served and whether the final export went out.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import serving_log
from fraud_model import (
    DRIFT_FEATURES,
    LABELS,
    MODEL_NAME,
    Faults,
    ModelFailure,
    load_model,
    parse_feedback,
    parse_mode,
    parse_rows,
)

import modelotel
from modelotel.integrations.grpc import server_interceptor

SERVICE = "fraud.v1.FraudModel"

model = load_model()
faults = Faults()


@modelotel.instrument_model(
    name=MODEL_NAME,
    version=model.version,
    labels=LABELS,
    ood=model.ood,
    feature_names=model.feature_names,
    numeric_features=DRIFT_FEATURES,
)
def predict(rows: np.ndarray) -> dict[str, Any]:
    faults.apply()
    return {"probabilities": model.predict_proba(rows), "prediction_id": modelotel.current_prediction_id()}


def decode(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None  # the handlers answer INVALID_ARGUMENT


def encode(message: Any) -> bytes:
    return json.dumps(message).encode()


OPERATIONS = {"Predict": "predict", "Feedback": "feedback"}  # what the request log counts, by method


class FraudModelService:
    def __init__(
        self,
        allow_faults: bool,
        requests: serving_log.RequestLog | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.allow_faults = allow_faults
        self.requests = requests
        self.log = log

    def predict(self, request: Any, context: grpc.ServicerContext) -> dict:
        try:
            rows = parse_rows(request, model.n_features)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            out = predict(rows)
        except ModelFailure as exc:
            context.abort(grpc.StatusCode.INTERNAL, str(exc))
        proba = out["probabilities"]
        return {
            "prediction_id": out["prediction_id"],
            "labels": [LABELS[i] for i in proba.argmax(axis=1)],
            "confidences": proba.max(axis=1).tolist(),
        }

    def feedback(self, request: Any, context: grpc.ServicerContext) -> dict:
        try:
            pid, labels = parse_feedback(request)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if not modelotel.record_feedback(pid, label=labels):
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown or expired prediction_id")
        return {"matched": True}

    def health(self, request: Any, context: grpc.ServicerContext) -> dict:
        return {"status": "ok"}

    def set_mode(self, request: Any, context: grpc.ServicerContext) -> dict:
        """DEMO ONLY: make the model slow or failing."""
        if not self.allow_faults:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "fault injection is off (start with --allow-faults)")
        try:
            mode = faults.set(**parse_mode(request))
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if self.log is not None:
            serving_log.fault_mode(self.log, mode)
        return mode

    def counted(self, method: str, fn: Callable[[Any, grpc.ServicerContext], dict]) -> Callable:
        """``fn``, recording each call's status and duration in the request log (Predict and Feedback only)."""
        requests, operation = self.requests, OPERATIONS.get(method)
        if requests is None or operation is None:
            return fn

        def call(request: Any, context: grpc.ServicerContext) -> dict:
            started = time.perf_counter()
            try:
                response = fn(request, context)
            except BaseException:  # context.abort raises after setting the code
                code = context.code() or grpc.StatusCode.UNKNOWN
                requests.record(operation, False, code.name, time.perf_counter() - started)
                raise
            requests.record(operation, True, "OK", time.perf_counter() - started)
            return response

        return call

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(fn: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=decode, response_serializer=encode)

        methods = {"Predict": self.predict, "Feedback": self.feedback, "Health": self.health, "SetMode": self.set_mode}
        handlers = {name: unary(self.counted(name, fn)) for name, fn in methods.items()}
        return grpc.method_handlers_generic_handler(SERVICE, handlers)


def serve(
    host: str,
    port: int,
    allow_faults: bool = False,
    requests: serving_log.RequestLog | None = None,
    log: logging.Logger | None = None,
) -> tuple[grpc.Server, int]:
    interceptor = server_interceptor(excluded_urls=[f"^/{SERVICE}/(Health|SetMode)$"])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), interceptors=[interceptor])
    server.add_generic_rpc_handlers((FraudModelService(allow_faults, requests, log).handler(),))
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    return server, bound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--allow-faults", action="store_true", help="enable the demo-only SetMode method")
    args = parser.parse_args()
    log = serving_log.setup("fraud-grpc")
    settings = modelotel.configure(service_name="fraud-grpc")
    log.info("%s", model.describe())
    log.info("telemetry: %s", serving_log.telemetry_destination(settings))
    if args.allow_faults:
        log.warning("fault injection ON: the SetMode method can make the model slow or fail (demo only)")
    requests = serving_log.RequestLog(log).start()
    server, port = serve(args.host, args.port, args.allow_faults, requests, log)
    log.info("listening on %s:%d (gRPC service %s, 32 worker threads)", args.host, port, SERVICE)
    stop = threading.Event()
    stopped_by: list[str] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _: (stopped_by.append(signal.Signals(signum).name), stop.set()))
    stop.wait()
    server.stop(grace=5).wait()  # finish calls in flight, then export what is left
    serving_log.shut_down(log, requests, stopped_by[0] if stopped_by else "shutdown")


if __name__ == "__main__":
    main()
