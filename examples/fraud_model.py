"""The model every example server serves: a scikit-learn classifier with an OOD scorer, cached on disk.

scikit-learn ships no fraud data set, so the examples stand in its breast-cancer data set for one: 569 rows
of 30 numeric features and a binary label (37% positives, here called ``fraud``). Nothing is downloaded.

The rows are split once, deterministically, into three parts:

* **train** (50%): fits the classifier (standardise + logistic regression) and the OOD scorer
  (class-conditional Mahalanobis, ``modelotel.ood.MahalanobisScorer``);
* **holdout** (25%): sets the scorer's threshold at a 5% false-positive rate (``threshold_for_fpr``);
* **serve** (25%): what the traffic generator sends (the model never saw these rows).

``load_model()`` trains on first use (about 0.1 s) and caches the classifier (joblib) and the scorer
(``scorer.save``: a numpy archive, no pickle) under ``$MODELOTEL_EXAMPLES_CACHE`` or
``~/.cache/modelotel/examples``, keyed by the recipe and the scikit-learn version, as a real server would
load a trained model and the scorer shipped next to it.

``Faults`` is demo-only fault injection (slow or failing model), switched at run time by the traffic
generator through each server's admin endpoint.
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelotel.ood import MahalanobisScorer

MODEL_NAME = "fraud"
MODEL_VERSION = "1"
LABELS = ("legit", "fraud")  # class 0, class 1 (the data set's "malignant")
OOD_FPR = 0.05
# Numeric features whose distributions are exported (docs/signals.md): allow-listed, never all by default.
DRIFT_FEATURES = ("mean_radius", "mean_texture", "mean_area", "worst_area")
RECIPE = 1  # bump when the training recipe changes, so old caches are not reused
SPLIT_SEED = 0


class ModelFailure(Exception):
    """What the model raises when the demo's fault injection says so."""


@dataclass(frozen=True)
class Split:
    """One part of the data set: features (n, 30) and labels (n,) as indices into LABELS."""

    X: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class DataSet:
    feature_names: tuple[str, ...]
    train: Split
    holdout: Split
    serve: Split


@functools.lru_cache(maxsize=1)
def dataset() -> DataSet:
    """The breast-cancer data split 50/25/25 (stratified, fixed seed) into train, holdout and serve."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    X = np.asarray(data.data, dtype=np.float64)
    y = 1 - np.asarray(data.target)  # scikit-learn's 0 = malignant; we call that class 1, "fraud"
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, train_size=0.5, stratify=y, random_state=SPLIT_SEED)
    X_hold, X_serve, y_hold, y_serve = train_test_split(
        X_rest, y_rest, train_size=0.5, stratify=y_rest, random_state=SPLIT_SEED
    )
    names = tuple(str(n).replace(" ", "_") for n in data.feature_names)
    return DataSet(names, Split(X_train, y_train), Split(X_hold, y_hold), Split(X_serve, y_serve))


@dataclass(frozen=True)
class FraudModel:
    """The trained classifier, its OOD scorer (thresholded) and the names the servers need."""

    classifier: Any  # a fitted scikit-learn Pipeline
    ood: MahalanobisScorer
    feature_names: tuple[str, ...]
    version: str = MODEL_VERSION

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """(n, 30) float rows -> (n, 2) class probabilities [legit, fraud]."""
        return self.classifier.predict_proba(rows)


def cache_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Where this recipe's model is cached under ``root`` (default: the environment or ~/.cache)."""
    import sklearn

    root = root or os.environ.get("MODELOTEL_EXAMPLES_CACHE") or Path.home() / ".cache" / "modelotel" / "examples"
    return Path(root) / f"{MODEL_NAME}-r{RECIPE}-sklearn{sklearn.__version__}"


def train(data: DataSet) -> FraudModel:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    classifier.fit(data.train.X, data.train.y)
    scorer = MahalanobisScorer().fit(data.train.X, data.train.y)
    scorer.threshold_for_fpr(data.holdout.X, fpr=OOD_FPR)  # on rows fit() did not see
    return FraudModel(classifier, scorer, data.feature_names)


def load_model(directory: Path | None = None) -> FraudModel:
    """The cached model, or a freshly trained one (then cached). Safe when several processes start at once."""
    import joblib

    directory = directory or cache_dir()
    model_path, ood_path = directory / "model.joblib", directory / "ood.npz"
    try:
        classifier, feature_names = joblib.load(model_path)
        return FraudModel(classifier, MahalanobisScorer.load(ood_path), tuple(feature_names))
    except (OSError, ValueError, EOFError, TypeError):
        pass  # missing or unreadable: train again
    model = train(dataset())
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"model.joblib.{os.getpid()}.tmp"
    joblib.dump((model.classifier, list(model.feature_names)), tmp)
    os.replace(tmp, model_path)  # readers see the old file or the new one, never half of one
    model.ood.save(ood_path)  # writes through a temporary file and a rename itself
    return model


class Faults:
    """DEMO ONLY: makes the model slow or fail on request, so the demo has something to detect.

    ``slow_ms`` adds that much sleep to every call; ``error_rate`` makes that fraction of calls raise
    ModelFailure, drawn from a generator seeded by ``seed`` so a given sequence of calls fails the same way
    every run. Thread-safe: one instance is shared by all request threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.slow_ms = 0.0
        self.error_rate = 0.0
        self._rng = random.Random(0)

    def set(self, slow_ms: float | None = None, error_rate: float | None = None, seed: int | None = None) -> dict:
        """Change the mode; raises ValueError for out-of-range values. Returns the mode now in force."""
        with self._lock:
            if slow_ms is not None:
                if not 0 <= float(slow_ms) <= 60_000:
                    raise ValueError(f"slow_ms={slow_ms!r}: must be in [0, 60000]")
                self.slow_ms = float(slow_ms)
            if error_rate is not None:
                if not 0 <= float(error_rate) <= 1:
                    raise ValueError(f"error_rate={error_rate!r}: must be in [0, 1]")
                self.error_rate = float(error_rate)
            if seed is not None:
                self._rng = random.Random(int(seed))
            return self.mode()

    def mode(self) -> dict:
        return {"slow_ms": self.slow_ms, "error_rate": self.error_rate}

    def apply(self) -> None:
        """Called inside the model: fail (at the configured rate), then sleep (if configured)."""
        with self._lock:
            fail = self.error_rate > 0 and self._rng.random() < self.error_rate
            slow_s = self.slow_ms / 1000
        if fail:
            raise ModelFailure("injected failure (demo fault mode)")
        if slow_s:
            time.sleep(slow_s)


def parse_rows(payload: Any, n_features: int) -> np.ndarray:
    """A request's ``rows`` (a list of lists of numbers) as an (n, d) float array; ValueError says what is wrong."""
    rows = payload.get("rows") if isinstance(payload, dict) else None
    if not isinstance(rows, list) or not rows:
        raise ValueError('expected a JSON object {"rows": [[...30 numbers...], ...]} with at least one row')
    try:
        X = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("rows must be lists of numbers") from None
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"each row must have {n_features} numbers, got shape {list(X.shape)}")
    return X


def parse_feedback(payload: Any) -> tuple[str, list[str]]:
    """A feedback request ``{"prediction_id": str, "labels": [one true label per row]}``."""
    if not isinstance(payload, dict):
        raise ValueError('expected a JSON object {"prediction_id": ..., "labels": [...]}')
    pid, labels = payload.get("prediction_id"), payload.get("labels")
    if not isinstance(pid, str) or not pid:
        raise ValueError("prediction_id must be a non-empty string")
    if not isinstance(labels, list) or not labels or any(lab not in LABELS for lab in labels):
        raise ValueError(f"labels must be a non-empty list of {list(LABELS)}")
    return pid, labels


def parse_mode(payload: Any) -> dict:
    """An admin request ``{"slow_ms": 300, "error_rate": 0.3, "seed": 1}`` (every key optional)."""
    if not isinstance(payload, dict) or set(payload) - {"slow_ms", "error_rate", "seed"}:
        raise ValueError('expected a JSON object with keys among "slow_ms", "error_rate", "seed"')
    return payload
