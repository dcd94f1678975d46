"""A model server for the feedback-from-anywhere test (tests/e2e/test_feedback_anywhere.py), run under uvicorn.

``POST /predict {"p": 0.8}`` -> ``{"prediction_id", "label", "confidence", "pid"}``: the model answers the class
probabilities ``[1 - p, p]`` (so the client knows exactly what it predicted), and the handler returns the
self-describing id of that call (``last_prediction_id()``), which any process with the same
MODELOTEL_FEEDBACK_KEY can judge. modelotel configures itself from the environment (OTLP to the collector).
"""

from __future__ import annotations

import os

import numpy as np
from fastapi import FastAPI

import modelotel

CLASSES = ["legit", "fraud"]


@modelotel.instrument_model(name="fraud", version="5", labels=CLASSES)
def predict(p: float) -> np.ndarray:
    return np.array([1.0 - p, p])


app = FastAPI()


@app.post("/predict")
def predict_route(body: dict) -> dict:  # a sync route: FastAPI runs it in one worker thread, call and id alike
    probabilities = predict(float(body["p"]))
    best = int(np.argmax(probabilities))
    return {
        "prediction_id": modelotel.last_prediction_id(),
        "label": CLASSES[best],
        "confidence": float(probabilities[best]),
        "pid": os.getpid(),
    }
