"""The example model served by FastAPI (uvicorn), instrumented with modelotel.

    python examples/fastapi_server.py --port 8000 [--allow-faults]

    curl -s localhost:8000/predict -d '{"rows": [[...30 numbers...]]}' -H 'content-type: application/json'
    -> {"prediction_id": "mo1.AcDz...", "labels": ["legit"], "confidences": [0.98]}
    curl -s localhost:8000/feedback -d '{"prediction_id": "mo1.AcDz...", "labels": ["legit"]}' ...  -> {"matched": true}

Telemetry: ``@instrument_model`` records the model (latency, errors, confidence, labels, OOD scores, four
feature distributions, feedback) and ``instrument_app`` the HTTP requests (``http.server.request.duration``
by route). Where it goes is read from the environment: ``OTEL_EXPORTER_OTLP_ENDPOINT`` sends OTLP to a
collector, ``MODELOTEL_EXPORT_FILE`` (or nothing: ``./modelotel-telemetry.jsonl``) writes OTLP JSON lines.
``/healthz`` and the demo-only ``/admin/mode`` are excluded from telemetry.
"""

from __future__ import annotations

import argparse

import numpy as np
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


def create_app(allow_faults: bool = False) -> FastAPI:
    app = FastAPI(title="fraud model")

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
            return JSONResponse(faults.set(**parse_mode(await request.json())))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)

    instrument_app(app, excluded_urls=["^/healthz$", "^/admin/"])
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--allow-faults", action="store_true", help="enable the demo-only /admin/mode endpoint")
    args = parser.parse_args()
    modelotel.configure(service_name="fraud-fastapi")  # exporter, interval etc. from the environment
    # uvicorn stops on SIGTERM/SIGINT; the middleware flushes telemetry when the app's lifespan ends.
    uvicorn.run(create_app(args.allow_faults), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
