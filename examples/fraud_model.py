"""The model every example server serves: a card-fraud classifier with an OOD scorer, cached on disk.

The data are synthetic card transactions, generated deterministically with numpy (``transactions``; nothing
is downloaded): 3,000 rows of 12 features a fraud team would recognise, one row per card payment:

=========================  =========================================================================
feature                    how it is drawn
=========================  =========================================================================
amount_usd                 ``avg_amount_30d_usd x amount_to_avg_ratio``, rounded to cents
avg_amount_30d_usd         the card's 30-day mean payment: lognormal, median 60, sigma 0.6
amount_to_avg_ratio        lognormal, median 1, sigma 0.8 (then recomputed from the rounded amount)
hour_of_day                ``floor(Normal(14, 4.5) mod 24)``: mostly daytime, a thin night tail
account_age_days           ``ceil(lognormal)``, median 700 days, sigma 1.1
txns_last_1h               Poisson(0.4)
txns_last_24h              ``txns_last_1h + Poisson(3)``
distance_from_home_km      lognormal, median 8 km, sigma 1.2
merchant_risk_score        Beta(2, 6), mean 0.25
card_present               Bernoulli(0.55)
foreign_merchant           Bernoulli(0.06)
failed_logins_24h          Poisson(0.15)
=========================  =========================================================================

The label is a documented rule with noise: a transaction is fraud when ``s + e > 0``, with
``e ~ Logistic(0, 0.2)`` and the log-odds

    s = -1.5 + 0.28 ln(amount_usd / 60) + 1.4 ln(amount_to_avg_ratio) + 0.9 txns_last_1h + 0.15 txns_last_24h
        + 5 merchant_risk_score + 1.6 foreign_merchant - 1.8 card_present + 0.9 failed_logins_24h
        - 0.6 log10(account_age_days) + 0.5 log10(distance_from_home_km) + 0.7 [hour_of_day < 6]

(larger and unusual amounts, bursts of payments, risky or foreign merchants, card-not-present, failed
logins, new accounts, far from home and at night all raise the odds). About 25% of the rows are fraud
(``dataset().fraud_share``). Real card fraud is 0.1-2% of payments, but at that rate the demo's minute of
traffic (about 2,000 labelled predictions) would hold 2 to 40 frauds, and a model answering "legit" every
time would meet any accuracy objective: the accuracy SLO would say nothing. So, like the case-control
samples fraud models are often trained on, the data set oversamples fraud.

The classifier (``log1p``, standardise, logistic regression) is right on about 95% of unseen rows; it
never sees ``hour_of_day < 6`` as such, which is part of its error. The rows are split once,
deterministically, into three parts:

* **train** (50%): fits the classifier and the OOD scorer (class-conditional Mahalanobis,
  ``modelotel.ood.MahalanobisScorer``);
* **holdout** (25%): sets the scorer's threshold at a 5% false-positive rate (``threshold_for_fpr``);
* **serve** (25%): what the traffic generator sends (the model never saw these rows).

``load_model()`` trains on first use (0.4 s measured, imports aside) and caches the classifier (joblib) and
the scorer (``scorer.save``: a numpy archive, no pickle) under ``$MODELOTEL_EXAMPLES_CACHE`` or
``~/.cache/modelotel/examples``, keyed by the recipe and the scikit-learn version, as a real server would
load a trained model and the scorer shipped next to it.

``Faults`` is demo-only fault injection (slow or failing model), switched at run time by the traffic
generator through each server's admin endpoint.
"""

from __future__ import annotations

import dataclasses
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
LABELS = ("legit", "fraud")  # class 0, class 1
OOD_FPR = 0.05
FEATURE_NAMES = (
    "amount_usd",
    "avg_amount_30d_usd",
    "amount_to_avg_ratio",
    "hour_of_day",
    "account_age_days",
    "txns_last_1h",
    "txns_last_24h",
    "distance_from_home_km",
    "merchant_risk_score",
    "card_present",
    "foreign_merchant",
    "failed_logins_24h",
)
AMOUNT_FEATURES = ("amount_usd", "avg_amount_30d_usd")  # money, in dollars
# Measured quantities (the traffic generator adds measurement noise to these only); counts and flags stay exact.
CONTINUOUS_FEATURES = (*AMOUNT_FEATURES, "amount_to_avg_ratio", "distance_from_home_km", "merchant_risk_score")
# Numeric features whose distributions are exported (docs/signals.md): allow-listed, never all by default.
# The ones a fraud team watches: the amounts (a unit or currency change upstream shows here first), the ratio
# (should not move when only the unit does) and the payment velocity.
DRIFT_FEATURES = ("amount_usd", "avg_amount_30d_usd", "amount_to_avg_ratio", "txns_last_24h")
N_ROWS = 3000
DATA_SEED = 0
LABEL_NOISE = 0.2  # scale of the logistic noise added to the log-odds
RECIPE = 2  # bump when the data or the training recipe changes, so old caches are not reused
SPLIT_SEED = 0


class ModelFailure(Exception):
    """What the model raises when the demo's fault injection says so."""


@dataclass(frozen=True)
class Split:
    """One part of the data set: features (n, 12) in FEATURE_NAMES order and labels (n,) as indices into LABELS."""

    X: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class DataSet:
    feature_names: tuple[str, ...]
    train: Split
    holdout: Split
    serve: Split

    @property
    def fraud_share(self) -> float:
        y = np.concatenate([self.train.y, self.holdout.y, self.serve.y])
        return float(y.mean())


def transactions(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic card payments (features in FEATURE_NAMES order) and their labels (1 = fraud).

    The distributions and the labelling rule are the module docstring's table and formula.
    """
    rng = np.random.default_rng(seed)
    avg = rng.lognormal(np.log(60), 0.6, n)
    amount = np.maximum(np.round(avg * rng.lognormal(0.0, 0.8, n), 2), 0.01)
    ratio = amount / avg
    hour = np.floor(rng.normal(14, 4.5, n) % 24)
    age = np.ceil(rng.lognormal(np.log(700), 1.1, n))
    txns_1h = rng.poisson(0.4, n)
    txns_24h = txns_1h + rng.poisson(3.0, n)  # the last hour is part of the last day
    distance = rng.lognormal(np.log(8), 1.2, n)
    risk = rng.beta(2, 6, n)
    card_present = rng.binomial(1, 0.55, n)
    foreign = rng.binomial(1, 0.06, n)
    failed_logins = rng.poisson(0.15, n)
    log_odds = (
        -1.5
        + 0.28 * np.log(amount / 60)
        + 1.4 * np.log(ratio)
        + 0.9 * txns_1h
        + 0.15 * txns_24h
        + 5.0 * risk
        + 1.6 * foreign
        - 1.8 * card_present
        + 0.9 * failed_logins
        - 0.6 * np.log10(age)
        + 0.5 * np.log10(distance)
        + 0.7 * (hour < 6)
    )
    y = (log_odds + rng.logistic(0.0, LABEL_NOISE, n) > 0).astype(np.int64)
    columns = (amount, avg, ratio, hour, age, txns_1h, txns_24h, distance, risk, card_present, foreign, failed_logins)
    return np.column_stack(columns).astype(np.float64), y


@functools.lru_cache(maxsize=1)
def dataset() -> DataSet:
    """The synthetic transactions split 50/25/25 (stratified, fixed seed) into train, holdout and serve."""
    from sklearn.model_selection import train_test_split

    X, y = transactions(N_ROWS, DATA_SEED)
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, train_size=0.5, stratify=y, random_state=SPLIT_SEED)
    X_hold, X_serve, y_hold, y_serve = train_test_split(
        X_rest, y_rest, train_size=0.5, stratify=y_rest, random_state=SPLIT_SEED
    )
    return DataSet(FEATURE_NAMES, Split(X_train, y_train), Split(X_hold, y_hold), Split(X_serve, y_serve))


@dataclass(frozen=True)
class FraudModel:
    """The trained classifier, its OOD scorer (thresholded) and the names the servers need."""

    classifier: Any  # a fitted scikit-learn Pipeline
    ood: MahalanobisScorer
    feature_names: tuple[str, ...]
    version: str = MODEL_VERSION
    origin: str = "trained in this process"  # where it came from, for the server's startup line

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def describe(self) -> str:
        """One line for a server's log: name, version, where it came from, what it takes, the OOD threshold."""
        return (
            f"model {MODEL_NAME} v{self.version} {self.origin} ({self.n_features} features; OOD threshold "
            f"{self.ood.threshold:.2f}, {OOD_FPR:.0%} false positives on the holdout rows)"
        )

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """(n, 12) float rows -> (n, 2) class probabilities [legit, fraud]."""
        return self.classifier.predict_proba(rows)


def cache_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Where this recipe's model is cached under ``root`` (default: the environment or ~/.cache)."""
    import sklearn

    root = root or os.environ.get("MODELOTEL_EXAMPLES_CACHE") or Path.home() / ".cache" / "modelotel" / "examples"
    return Path(root) / f"{MODEL_NAME}-r{RECIPE}-sklearn{sklearn.__version__}"


def train(data: DataSet) -> FraudModel:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    # log1p: amounts, ages and distances are lognormal, and the labelling rule is linear in their logs
    # (every feature is >= 0, so log1p is defined and monotone on all of them).
    classifier = make_pipeline(FunctionTransformer(np.log1p), StandardScaler(), LogisticRegression(max_iter=1000))
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
        ood = MahalanobisScorer.load(ood_path)
        return FraudModel(classifier, ood, tuple(feature_names), origin=f"loaded from {directory}")
    except (OSError, ValueError, EOFError, TypeError):
        pass  # missing or unreadable: train again
    started = time.perf_counter()
    model = train(dataset())
    took = time.perf_counter() - started
    model = dataclasses.replace(model, origin=f"trained in {took:.1f} s and cached in {directory}")
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
        raise ValueError(f'expected a JSON object {{"rows": [[...{n_features} numbers...], ...]}}, at least one row')
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
