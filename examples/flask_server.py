"""The example model served by Flask (werkzeug's threaded server), instrumented with modelotel.

    python examples/flask_server.py --port 8000 [--allow-faults]

Same HTTP API as fastapi_server.py: ``POST /predict {"rows": [[...12 numbers...]]}`` ->
``{"prediction_id", "labels", "confidences"}``, ``POST /feedback {"prediction_id", "labels"}``,
``GET /healthz``, and the demo-only ``POST /admin/mode``. In production, run the app under gunicorn
(``gunicorn -w 4 --chdir examples 'flask_server:create_app()'``): each worker exports its own telemetry.
Export settings come from the environment, as in fastapi_server.py, and so does the log: startup lines
(the model, where telemetry goes, the address), a request summary every 10 s instead of werkzeug's access
log, fault-mode changes, and at shutdown what was served and whether the final export went out.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from typing import Any

import numpy as np
import serving_log
from flask import Flask, g, request
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


OPERATIONS = {"/predict": "predict", "/feedback": "feedback"}  # what the request log counts, by path


def create_app(
    allow_faults: bool = False, requests: serving_log.RequestLog | None = None, log: logging.Logger | None = None
) -> Flask:
    """The app; ``requests`` counts /predict and /feedback calls."""
    app = Flask("fraud-model")

    if requests is not None:

        @app.before_request
        def start_timer() -> None:
            g.request_started = time.perf_counter()

        @app.after_request
        def count_request(response):  # also runs for a 500 from an unhandled exception
            operation = OPERATIONS.get(request.path)
            started = g.get("request_started")
            if operation is not None and started is not None:
                ok = response.status_code < 400
                requests.record(operation, ok, str(response.status_code), time.perf_counter() - started)
            return response

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
            mode = faults.set(**parse_mode(request.get_json(silent=True)))
        except ValueError as exc:
            return {"error": str(exc)}, 422
        if log is not None:
            serving_log.fault_mode(log, mode)
        return mode

    return instrument_app(app, excluded_urls=["^/healthz$", "^/admin/"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--allow-faults", action="store_true", help="enable the demo-only /admin/mode endpoint")
    args = parser.parse_args()
    log = serving_log.setup("fraud-flask")
    settings = modelotel.configure(service_name="fraud-flask")
    # No access log line per request: at 40 requests/s it buries everything else (the summary replaces it).
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    log.info("%s", model.describe())
    log.info("telemetry: %s", serving_log.telemetry_destination(settings))
    if args.allow_faults:
        log.warning("fault injection ON: POST /admin/mode can make the model slow or fail (demo only)")
    requests = serving_log.RequestLog(log).start()
    server = make_server(args.host, args.port, create_app(args.allow_faults, requests, log), threaded=True)
    log.info("listening on http://%s:%d (werkzeug, a thread per request)", args.host, server.server_port)
    stopped_by = "shutdown"

    def on_sigterm(signum: int, frame: object) -> None:
        # SIGTERM would otherwise end the process without exit hooks, losing the telemetry of the last seconds.
        nonlocal stopped_by
        stopped_by = "SIGTERM"
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        stopped_by = "SIGINT"
    finally:
        server.server_close()
        serving_log.shut_down(log, requests, stopped_by)  # logs what was served, exports what is left


if __name__ == "__main__":
    main()
