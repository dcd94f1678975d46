"""The example model served by Flask (werkzeug's threaded server), instrumented with modelotel.

    python examples/flask_server.py --port 8000 [--allow-faults]

Same HTTP API as fastapi_server.py: ``POST /predict {"rows": [[...30 numbers...]]}`` ->
``{"prediction_id", "labels", "confidences"}``, ``POST /feedback {"prediction_id", "labels"}``,
``GET /healthz``, and the demo-only ``POST /admin/mode``. In production, run the app under gunicorn
(``gunicorn -w 4 --chdir examples 'flask_server:create_app()'``): each worker exports its own telemetry.
Export settings come from the environment, as in fastapi_server.py.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

import numpy as np
from flask import Flask, request
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
from werkzeug.serving import make_server

import modelotel
from modelotel.integrations.flask import instrument_app

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


def create_app(allow_faults: bool = False) -> Flask:
    app = Flask("fraud-model")

    @app.post("/predict")
    def predict_view():
        try:
            rows = parse_rows(request.get_json(silent=True), model.n_features)
        except ValueError as exc:
            return {"error": str(exc)}, 422
        try:
            out = predict(rows)
        except ModelFailure as exc:
            return {"error": str(exc)}, 500
        proba = out["probabilities"]
        return {
            "prediction_id": out["prediction_id"],
            "labels": [LABELS[i] for i in proba.argmax(axis=1)],
            "confidences": proba.max(axis=1).tolist(),
        }

    @app.post("/feedback")
    def feedback_view():
        try:
            pid, labels = parse_feedback(request.get_json(silent=True))
        except ValueError as exc:
            return {"error": str(exc)}, 422
        matched = modelotel.record_feedback(pid, label=labels)
        return {"matched": matched}, 200 if matched else 404

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.post("/admin/mode")
    def admin_mode():
        """DEMO ONLY: make the model slow or failing. Refused unless started with --allow-faults."""
        if not allow_faults:
            return {"error": "fault injection is off (start the server with --allow-faults)"}, 403
        try:
            return faults.set(**parse_mode(request.get_json(silent=True)))
        except ValueError as exc:
            return {"error": str(exc)}, 422

    return instrument_app(app, excluded_urls=["^/healthz$", "^/admin/"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--allow-faults", action="store_true", help="enable the demo-only /admin/mode endpoint")
    args = parser.parse_args()
    modelotel.configure(service_name="fraud-flask")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request
    server = make_server(args.host, args.port, create_app(args.allow_faults), threaded=True)
    # SIGTERM would otherwise end the process without exit hooks, losing the telemetry of the last seconds.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        modelotel.shutdown()  # exports what is left


if __name__ == "__main__":
    main()
