"""The example model served by FastAPI (uvicorn), instrumented with modelotel.

    python examples/fastapi_server.py --port 8000 [--allow-faults]

    curl -s localhost:8000/predict -H 'content-type: application/json' \
        -d '{"rows": [[42.5, 60.0, 0.708, 14, 700, 0, 3, 8.0, 0.25, 1, 0, 0]]}'
    -> {"prediction_id": "mo1.AcDz...", "labels": ["legit"], "confidences": [0.98]}
    curl -s localhost:8000/feedback -d '{"prediction_id": "mo1.AcDz...", "labels": ["legit"]}' ...  -> {"matched": true}

A row is one card payment, its 12 numbers in ``fraud_model.FEATURE_NAMES`` order (amount_usd,
avg_amount_30d_usd, amount_to_avg_ratio, hour_of_day, account_age_days, txns_last_1h, txns_last_24h,
distance_from_home_km, merchant_risk_score, card_present, foreign_merchant, failed_logins_24h).

Telemetry: ``@instrument_model`` records the model (latency, errors, confidence, labels, OOD scores, four
feature distributions, feedback) and ``instrument_app`` the HTTP requests (``http.server.request.duration``
by route). Where it goes is read from the environment: ``OTEL_EXPORTER_OTLP_ENDPOINT`` sends OTLP to a
collector, ``MODELOTEL_EXPORT_FILE`` (or nothing: ``./modelotel-telemetry.jsonl``) writes OTLP JSON lines.
``/healthz`` and the demo-only ``/admin/mode`` are excluded from telemetry.

The log (stderr, serving_log.py): the model loaded, where telemetry goes, uvicorn's startup with the
address, a request summary every 10 s (no access log line per request), fault-mode changes, and at
shutdown what was served and whether the final telemetry export went out.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
import serving_log
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
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
from modelotel.integrations.fastapi import instrument_app

model = load_model()
faults = Faults()


@modelotel.instrument_model(
    name=MODEL_NAME,
    version=model.version,
    labels=LABELS,  # class index i is reported as LABELS[i]
    ood=model.ood,  # scores every row; above model.ood.threshold counts in ml.ood.outliers
    feature_names=model.feature_names,  # the columns of the rows
    numeric_features=DRIFT_FEATURES,  # exported as distributions (sketches), for drift
)
def predict(rows: np.ndarray) -> np.ndarray:
    faults.apply()
    return model.predict_proba(rows)


OPERATIONS = {"/predict": "predict", "/feedback": "feedback"}  # what the request log counts, by path


def create_app(
    allow_faults: bool = False,
    requests: serving_log.RequestLog | None = None,
    on_shutdown: Callable[[], None] | None = None,
    log: logging.Logger | None = None,
) -> FastAPI:
    """The app; ``requests`` counts /predict and /feedback calls, ``on_shutdown`` runs when uvicorn stops it."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if on_shutdown is not None:
            on_shutdown()  # after the last request in flight, before uvicorn re-raises SIGTERM

    app = FastAPI(title="fraud model", lifespan=lifespan)

    if requests is not None:

        @app.middleware("http")
        async def count_requests(request: Request, call_next):
            operation = OPERATIONS.get(request.url.path)
            if operation is None:
                return await call_next(request)  # health checks and admin calls: not traffic
            started = time.perf_counter()
            response = await call_next(request)
            status = response.status_code
            requests.record(operation, status < 400, str(status), time.perf_counter() - started)
            return response

    @app.post("/predict")
    def predict_view(payload: dict) -> JSONResponse:  # a plain def: FastAPI runs it on its thread pool
        try:
            rows = parse_rows(payload, model.n_features)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        try:
            proba = predict(rows)
        except ModelFailure as exc:
            return JSONResponse({"error": str(exc)}, status_code=500)
        # Right after the call, in the same thread: an id that describes this prediction, signed, so any worker or
        # labelling job with the same MODELOTEL_FEEDBACK_KEY can judge it (docs/instrumentation.md).
        pid = modelotel.last_prediction_id()
        return JSONResponse(
            {
                "prediction_id": pid,
                "labels": [LABELS[i] for i in proba.argmax(axis=1)],
                "confidences": proba.max(axis=1).tolist(),
            }
        )

    @app.post("/feedback")
    def feedback_view(payload: dict) -> JSONResponse:
        try:
            pid, labels = parse_feedback(payload)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        matched = modelotel.record_feedback(pid, label=labels)
        return JSONResponse({"matched": matched}, status_code=200 if matched else 404)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/admin/mode")
    async def admin_mode(request: Request) -> JSONResponse:
        """DEMO ONLY: make the model slow or failing. Refused unless started with --allow-faults."""
        if not allow_faults:
            return JSONResponse({"error": "fault injection is off (start the server with --allow-faults)"}, 403)
        try:
            mode = faults.set(**parse_mode(await request.json()))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        if log is not None:
            serving_log.fault_mode(log, mode)
        return JSONResponse(mode)

    instrument_app(app, excluded_urls=["^/healthz$", "^/admin/"])
    return app


class Server(uvicorn.Server):
    """uvicorn's server, noting which signal stopped it, for the shutdown line."""

    stopped_by = "shutdown"

    def handle_exit(self, sig: int, frame: object) -> None:
        self.stopped_by = signal.Signals(sig).name
        super().handle_exit(sig, frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--allow-faults", action="store_true", help="enable the demo-only /admin/mode endpoint")
    args = parser.parse_args()
    log = serving_log.setup("fraud-fastapi")
    settings = modelotel.configure(service_name="fraud-fastapi")  # exporter, interval etc. from the environment
    log.info("%s", model.describe())
    log.info("telemetry: %s", serving_log.telemetry_destination(settings))
    if args.allow_faults:
        log.warning("fault injection ON: POST /admin/mode can make the model slow or fail (demo only)")
    requests = serving_log.RequestLog(log).start()
    server: Server | None = None

    def on_shutdown() -> None:
        serving_log.shut_down(log, requests, server.stopped_by if server else "shutdown")

    app = create_app(args.allow_faults, requests, on_shutdown, log)
    # log_config=None: uvicorn's loggers go through serving_log's format; its startup line names the address.
    # No access log: one line per request at 40 requests/s buries everything else (the summary replaces it).
    config = uvicorn.Config(app, host=args.host, port=args.port, log_config=None, log_level="info", access_log=False)
    server = Server(config)
    # uvicorn stops on SIGTERM/SIGINT: in-flight requests finish, then the lifespan's on_shutdown exports.
    server.run()


if __name__ == "__main__":
    main()
