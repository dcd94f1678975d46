"""Out-of-distribution (OOD) scorers to pass as ``@instrument_model(ood=...)``.

Four scorers, one contract (``OODScorer``)::

    scorer = MahalanobisScorer().fit(X_train, y_train)   # or RangeScorer, MaxSoftmaxScorer, EnergyScorer
    scorer.threshold_for_fpr(X_holdout, fpr=0.05)        # sets scorer.threshold
    scorer.save("model.ood.npz")                         # ships with the model
    scorer = load("model.ood.npz")                       # or MahalanobisScorer.load(...)

    @modelotel.instrument_model(name="fraud", ood=scorer)
    def predict(features): ...

* ``score(X)`` returns one float per row, **higher = more out of distribution**. ``X`` is a 2-D batch
  ``(n, d)`` or one 1-D sample ``(d,)`` (-> shape ``(1,)``). It is vectorised, and a single row takes a
  few microseconds (benchmarks/RESULTS.md, section "ood").
* ``input`` says what the decorator feeds it: ``"features"`` (Mahalanobis, Range) or ``"outputs"``
  (MaxSoftmax on probabilities, Energy on logits).
* Non-finite input, deterministically: a row with a NaN gets a NaN score, and so does a feature row
  with +-inf (the decorator drops NaN scores and counts them as ``non_finite`` drops). For logits, -inf
  is a masked class (probability 0) and is scored exactly; +inf gives NaN. Probabilities are not
  validated on the scoring path (a NaN or +inf gives NaN). Finite rows always get a finite score, or
  ``inf`` on float overflow. Scoring never emits numpy RuntimeWarnings.
* A wrong number of columns raises ``ValueError`` naming both widths (the decorator catches it and counts
  ``modelotel.internal.errors{kind=ood_score}``); so does scoring an unfitted feature scorer.
* ``threshold`` is ``None`` until ``threshold_for_fpr`` (or ``load`` of a file that has one) sets it.
  The decorator reads it when the function is *decorated*: set it first, or pass ``ood_threshold=``.

Files are ``numpy.savez`` archives read with ``allow_pickle=False``: fields ``format`` (``FORMAT``),
``version`` (``VERSION``), ``kind``, ``n_features``, ``threshold`` (NaN = none) and the scorer's
parameters. Anything else (another kind, a newer version, a truncated or foreign file) raises a
``ValueError`` that names the file and the problem.

No scikit-learn here: the Ledoit-Wolf shrinkage is computed in numpy (same formula as
``sklearn.covariance.ledoit_wolf_shrinkage``), and nothing but numpy runs on the scoring path.
"""

from __future__ import annotations

import io
import math
import os
import secrets
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "FORMAT",
    "VERSION",
    "OODScorer",
    "MahalanobisScorer",
    "RangeScorer",
    "MaxSoftmaxScorer",
    "EnergyScorer",
    "load",
    "ledoit_wolf",
]

FORMAT = "modelotel.ood"
VERSION = 1

_IQR_TO_SIGMA = 1.3489795003921634  # 2 * Phi^-1(0.75): the IQR of a standard normal
_MAD_TO_SIGMA = 1.482602218505602  # 1 / Phi^-1(0.75): the MAD of a standard normal, inverted
_F64 = np.dtype(np.float64)
_ndarray = np.ndarray
_isfinite = math.isfinite
_min = np.minimum.reduce  # the ufunc reductions, without ndarray.min's Python wrapper
_max = np.maximum.reduce
_sum = np.add.reduce


# -- helpers --------------------------------------------------------------------------------------


def _rows(X: ArrayLike, what: str) -> np.ndarray:
    """``X`` as a 2-D float64 array (a 1-D sample becomes one row)."""
    a = X if type(X) is _ndarray and X.dtype is _F64 else np.asarray(X, dtype=np.float64)
    if a.ndim == 2:
        return a
    if a.ndim == 1:
        return a.reshape(1, -1)
    raise ValueError(f"{what}: expected a 2-D array (n, d) or one 1-D sample, got shape {a.shape}")


def _finite_rows(X: ArrayLike, what: str) -> np.ndarray:
    """Reference data for fit/threshold: 2-D, at least one row, all finite."""
    a = _rows(X, what)
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{what}: need at least one row and one column, got shape {a.shape}")
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise ValueError(f"{what}: {int(bad.sum())} of {a.shape[0]} rows contain NaN or infinite values")
    return a


def _nan_for_nonfinite_rows(X: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Make rows of ``X`` holding NaN/inf score NaN (whatever the arithmetic gave them)."""
    if X.shape[0] == 1:
        v = float(s[0])
        if not _isfinite(v) and not np.isfinite(X).all():
            s[0] = np.nan
        return s
    finite = np.isfinite(s)
    if not finite.all():
        idx = np.flatnonzero(~finite)
        bad = idx[~np.isfinite(X[idx]).all(axis=1)]
        s[bad] = np.nan
    return s


def ledoit_wolf(R: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrunk covariance of already-centred rows ``R`` (n, d) and its shrinkage.

    With ``S = R'R / n``, ``mu = tr(S) / d``, ``delta = ||S - mu I||_F^2 / d`` and
    ``beta = min(delta, (sum_k ||r_k r_k' - S||_F^2) / (n^2 d))``, the estimate is
    ``(1 - a) S + a mu I`` with ``a = beta / delta`` (Ledoit & Wolf 2004; the same numbers as
    ``sklearn.covariance.LedoitWolf(assume_centered=True)``).
    """
    n, d = R.shape
    S = (R.T @ R) / n
    mu = float(np.trace(S)) / d
    R2 = R * R
    beta_ = float((R2.T @ R2).sum())
    delta_ = float((S * S).sum())
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - d * mu * mu) / d
    beta = min(beta, delta)
    a = 0.0 if beta <= 0.0 or delta <= 0.0 else beta / delta
    cov = (1.0 - a) * S
    cov.flat[:: d + 1] += a * mu
    return cov, a


# -- the contract ---------------------------------------------------------------------------------


class OODScorer:
    """Common contract: ``fit``, ``score``, ``threshold_for_fpr``, ``save``/``load``.

    Subclasses set ``kind`` and ``input`` and implement ``fit``, ``score``, ``_params`` and
    ``_from_params``.
    """

    kind: ClassVar[str] = ""
    input: ClassVar[str] = "features"

    threshold: float | None
    n_features_: int | None

    def __init__(self) -> None:
        self.threshold = None
        self.n_features_ = None

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> OODScorer:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, X: ArrayLike) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _width(self, X: np.ndarray) -> None:
        d = self.n_features_
        if X.shape[1] != d:
            if d is None:
                raise ValueError(f"{type(self).__name__} is not fitted: call fit(X) first")
            raise ValueError(f"{type(self).__name__}: expected {d} {self._unit()}, got {X.shape[1]}")

    def _unit(self) -> str:
        return "features" if self.input == "features" else "output columns"

    # -- threshold ----------------------------------------------------------------------------
    def threshold_for_fpr(self, X_holdout: ArrayLike, fpr: float = 0.05) -> float:
        """Set and return ``self.threshold`` so that about a fraction ``fpr`` of in-distribution data exceeds it.

        ``X_holdout``: in-distribution data *not* used by ``fit`` (for output scorers: the model's
        outputs on it). With its ``n`` scores sorted, ``s_(1) <= ... <= s_(n)``, the threshold is the
        order statistic ``s_(k)``, ``k = ceil((1 - fpr) * (n + 1))`` -- the split-conformal quantile, i.e.
        ``numpy.quantile(scores, (1 - fpr) * (n + 1) / n, method="inverted_cdf")``.
        An item counts as an outlier when its score is ``> threshold``.

        Guarantee (holdout and future in-distribution items exchangeable, e.g. i.i.d.): the false
        positive rate averaged over the holdout draw is ``(n + 1 - k) / (n + 1)``, which lies in
        ``(fpr - 1/(n+1), fpr]`` (ties only lower it). For one given holdout the realised FPR is
        ``Beta(n + 1 - k, k)``-distributed, standard deviation ~ ``sqrt(fpr (1 - fpr) / n)``: measured on a
        separate test split of ``m`` items, the observed rate is within
        ``3 * sqrt(fpr (1 - fpr) (1/n + 1/m)) + 1/(n+1)`` of ``fpr`` with probability ~99.7% (3 sigma of
        the threshold's and the test split's noise, normal approximation, plus the rounding of ``k``).

        Raises ``ValueError`` if ``fpr`` is not in (0, 1), if ``n < ceil(1/fpr) - 1`` (too few rows for
        any order statistic to guarantee ``fpr``), or if any holdout row scores NaN/inf.
        """
        if not (0.0 < fpr < 1.0):
            raise ValueError(f"fpr must be in (0, 1), got {fpr!r}")
        scores = np.asarray(self.score(X_holdout), dtype=np.float64)
        n = scores.shape[0]
        if not np.isfinite(scores).all():
            bad = int((~np.isfinite(scores)).sum())
            raise ValueError(f"threshold_for_fpr: {bad} of {n} holdout rows have a NaN/inf score (NaN/inf inputs?)")
        k = math.ceil((1.0 - fpr) * (n + 1) - 1e-9)  # tolerance: (1 - 0.05) * 20 is 18.999999999999996
        if k > n:
            need = math.ceil((1.0 - fpr) / fpr - 1e-9)
            raise ValueError(f"threshold_for_fpr: fpr={fpr} needs at least {need} holdout rows, got {n}")
        self.threshold = float(np.partition(scores, k - 1)[k - 1])
        return self.threshold

    # -- files --------------------------------------------------------------------------------
    def _params(self) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def _from_params(cls, p: _Fields) -> OODScorer:  # pragma: no cover - abstract
        raise NotImplementedError

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write this scorer to ``path`` (exactly that name; written to a temporary file, then renamed)."""
        if self.n_features_ is None and self.input == "features":
            raise ValueError(f"{type(self).__name__} is not fitted: nothing to save")
        fields = {
            "format": np.array(FORMAT),
            "version": np.array(VERSION, dtype=np.int64),
            "kind": np.array(self.kind),
            "n_features": np.array(-1 if self.n_features_ is None else self.n_features_, dtype=np.int64),
            "threshold": np.array(np.nan if self.threshold is None else self.threshold, dtype=np.float64),
            **self._params(),
        }
        path = os.fspath(path)
        tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"  # same directory; the umask applies
        try:
            with open(tmp, "xb") as fh:  # a file object: savez does not append ".npz"
                np.savez(fh, **fields)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> OODScorer:
        """Read a scorer written by ``save``; ``ValueError`` naming the file if it is not one of this kind.

        On the base class (or via the module-level ``load``) any kind is accepted.
        """
        return _read(path, None if cls is OODScorer else cls)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_features_={self.n_features_}, threshold={self.threshold})"


class _Fields:
    """Typed access to the arrays of a scorer file; every problem becomes a ValueError naming the file."""

    def __init__(self, path: str, arrays: dict[str, np.ndarray]) -> None:
        self.path = path
        self.arrays = arrays

    def fail(self, problem: str) -> ValueError:
        return ValueError(f"{self.path}: {problem}")

    def get(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            raise self.fail(f"corrupt OOD scorer file: field {name!r} is missing")
        return self.arrays[name]

    def text(self, name: str) -> str:
        a = self.get(name)
        if a.shape != () or a.dtype.kind != "U":
            raise self.fail(f"corrupt OOD scorer file: field {name!r} is not a string")
        return str(a)

    def integer(self, name: str) -> int:
        a = self.get(name)
        if a.shape != () or a.dtype.kind not in "iu":
            raise self.fail(f"corrupt OOD scorer file: field {name!r} is not an integer")
        return int(a)

    def number(self, name: str, allow_nan: bool = False) -> float:
        a = self.get(name)
        if a.shape != () or a.dtype.kind not in "fiu":
            raise self.fail(f"corrupt OOD scorer file: field {name!r} is not a number")
        v = float(a)
        if not (_isfinite(v) or (allow_nan and v != v)):
            raise self.fail(f"corrupt OOD scorer file: field {name!r} is {v}")
        return v

    def floats(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        a = self.get(name)
        if a.dtype != _F64 or a.shape != shape:
            raise self.fail(
                f"corrupt OOD scorer file: field {name!r} has shape {a.shape} ({a.dtype}), expected {shape} (float64)"
            )
        if not np.isfinite(a).all():
            raise self.fail(f"corrupt OOD scorer file: field {name!r} holds NaN/inf")
        return np.ascontiguousarray(a)


def _read(path: str | os.PathLike[str], cls: type[OODScorer] | None) -> OODScorer:
    name = os.fspath(path)
    with open(name, "rb") as fh:  # a missing or unreadable file raises its OSError unchanged
        data = fh.read()
    if not data.startswith(b"PK\x03\x04"):
        raise ValueError(f"{name}: not a modelotel OOD scorer file (not a numpy .npz archive)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as exc:  # BadZipFile, zlib.error, EOFError, ValueError (pickled/bad header), ...
        raise ValueError(f"{name}: corrupt or truncated OOD scorer file ({type(exc).__name__}: {exc})") from exc
    f = _Fields(name, arrays)
    if "format" not in arrays or f.text("format") != FORMAT:
        raise f.fail(f"not a modelotel OOD scorer file (no format={FORMAT!r} field)")
    version = f.integer("version")
    if version > VERSION:
        raise f.fail(f"OOD scorer file version {version} is newer than this modelotel reads ({VERSION}): upgrade")
    if version < 1:
        raise f.fail(f"corrupt OOD scorer file: version {version}")
    kind = f.text("kind")
    target = _KINDS.get(kind)
    if target is None:
        raise f.fail(f"unknown OOD scorer kind {kind!r} (known: {', '.join(sorted(_KINDS))})")
    if cls is not None and target is not cls:
        raise f.fail(f"holds a {kind!r} scorer ({target.__name__}), not {cls.kind!r} ({cls.__name__})")
    try:
        scorer = target._from_params(f)
    except ValueError as exc:
        if str(exc).startswith(f"{name}: "):
            raise
        raise f.fail(f"corrupt OOD scorer file ({exc})") from exc
    except Exception as exc:
        raise f.fail(f"corrupt OOD scorer file ({type(exc).__name__}: {exc})") from exc
    t = f.number("threshold", allow_nan=True)
    scorer.threshold = None if t != t else t
    return scorer


def load(path: str | os.PathLike[str]) -> OODScorer:
    """Read a scorer file of any kind written by ``save``."""
    return _read(path, None)


# -- feature scorers ------------------------------------------------------------------------------


class MahalanobisScorer(OODScorer):
    """Squared Mahalanobis distance to the nearest class mean under one shared, shrunk covariance.

    ``fit(X, y)``: class means ``mu_c`` (one mean if ``y`` is None) and the pooled within-class
    residuals ``r_i = x_i - mu_{y_i}``. With ``standardize=True`` (default) each feature is divided by
    its residual standard deviation ``s_j`` (1 where a feature is constant), the Ledoit-Wolf estimate
    ``C`` is computed on those standardised residuals (or ``(1 - a) S + a mu I`` for a fixed
    ``shrinkage=a``), a ridge ``reg * mu * I`` is added, and ``Sigma = diag(s) C diag(s)``
    (``covariance_``). Standardising makes the shrinkage target a scaled *diagonal* rather than a
    scaled identity, which matters when features have different units.

    ``score(x) = min_c (x - mu_c)' Sigma^-1 (x - mu_c)`` (Lee et al. 2018, "A simple unified framework
    for detecting out-of-distribution samples"). ``Sigma^-1 = W W'`` with ``W = diag(1/s) L^-T``,
    ``C = L L'`` (Cholesky), precomputed at fit, so a score is ``min_c ||x W - mu_c W||^2``, computed for a
    single sample with one ``(1, d) @ (d, d + k)`` product (see ``_prepare``). For an in-distribution
    Gaussian class the score is about ``chi^2_d`` (mean ``d``). ``distances(X)`` gives all ``k`` of them.
    """

    kind: ClassVar[str] = "mahalanobis"
    input: ClassVar[str] = "features"

    def __init__(self, *, shrinkage: float | None = None, standardize: bool = True, reg: float = 1e-9) -> None:
        super().__init__()
        if shrinkage is not None and not (0.0 <= shrinkage <= 1.0):
            raise ValueError(f"shrinkage must be None (Ledoit-Wolf) or in [0, 1], got {shrinkage!r}")
        if not (reg >= 0.0 and _isfinite(reg)):
            raise ValueError(f"reg must be a finite number >= 0, got {reg!r}")
        self.shrinkage = shrinkage
        self.standardize = standardize
        self.reg = reg
        self.classes_: np.ndarray | None = None
        self.means_: np.ndarray | None = None
        self.covariance_: np.ndarray | None = None
        self.whitening_: np.ndarray | None = None
        self.shrinkage_: float | None = None

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> MahalanobisScorer:
        """Fit class means and the shared shrunk covariance on in-distribution ``X`` (labels ``y`` optional)."""
        X = _finite_rows(X, "MahalanobisScorer.fit X")
        n, d = X.shape
        if y is None:
            classes = np.zeros(1, dtype=np.int64)
            inverse = np.zeros(n, dtype=np.intp)
        else:
            y = np.asarray(y)
            if y.ndim != 1 or y.shape[0] != n:
                raise ValueError(f"MahalanobisScorer.fit: y must have shape ({n},), got {y.shape}")
            classes, inverse = np.unique(y, return_inverse=True)
            inverse = inverse.reshape(-1)
        k = classes.shape[0]
        if n <= k:
            raise ValueError(f"MahalanobisScorer.fit: need more rows ({n}) than classes ({k})")
        counts = np.bincount(inverse, minlength=k).astype(np.float64)
        means = np.zeros((k, d))
        np.add.at(means, inverse, X)
        means /= counts[:, None]
        R = X - means[inverse]
        if self.standardize:
            s = np.sqrt((R * R).mean(axis=0))
            s[~(s > 1e-12 * max(float(s.max()), 1e-300))] = 1.0
        else:
            s = np.ones(d)
        Z = R / s
        if self.shrinkage is None:
            C, a = ledoit_wolf(Z)
        else:
            a = float(self.shrinkage)
            S = (Z.T @ Z) / n
            C = (1.0 - a) * S
            C.flat[:: d + 1] += a * float(np.trace(S)) / d
        mu = float(np.trace(C)) / d
        C.flat[:: d + 1] += self.reg * (mu if mu > 0.0 else 1.0)
        try:
            L = np.linalg.cholesky(C)
        except np.linalg.LinAlgError as exc:
            raise ValueError(
                "MahalanobisScorer.fit: the covariance is singular; use shrinkage > 0 or a larger reg"
            ) from exc
        W = np.linalg.inv(L).T / s[:, None]
        self.classes_ = classes
        self.means_ = means
        self.covariance_ = (C * s[:, None]) * s[None, :]
        self.whitening_ = np.ascontiguousarray(W)
        self.shrinkage_ = float(a)
        self.n_features_ = d
        self._prepare()
        return self

    def _prepare(self) -> None:
        """Scoring arrays: everything but one product with ``x`` is done here.

        With the centre ``c`` of the class means, ``z = (x - c) W`` and ``m_c = (mu_c - c) W``:
        ``||z - m_c||^2 = ||z||^2 + (||m_c||^2 - 2 z.m_c)``, and ``z`` and the bracket come out of the
        single product ``x A - b`` with ``A = [W | -2 W M']``, ``b = [c W | -2 c W M' - ||m||^2]``.
        Centring keeps ``||z||`` near ``sqrt(d)`` in distribution, so the expansion loses nothing to
        cancellation (the tests compare it with the direct formula to 1e-7).
        """
        W = self.whitening_
        assert W is not None and self.means_ is not None
        center = self.means_.mean(axis=0)
        cW = center @ W
        mW = (self.means_ - center) @ W  # (k, d)
        self._d = W.shape[0]
        self._k = mW.shape[0]
        if self._k == 1:
            self._A = W
            self._b = cW + mW[0]  # z = x W - mu W
        else:
            M2 = -2.0 * mW.T  # (d, k)
            self._A = np.ascontiguousarray(np.hstack([W, W @ M2]))
            self._b = np.concatenate([cW, cW @ M2 - np.einsum("ij,ij->i", mW, mW)])

    def _distances(self, X: np.ndarray) -> np.ndarray:
        U = X @ self._A
        U -= self._b
        if self._k == 1:
            return np.einsum("ij,ij->i", U, U)[:, None]
        d = self._d
        Z = U[:, :d]
        D = U[:, d:]
        D += np.einsum("ij,ij->i", Z, Z)[:, None]
        np.maximum(D, 0.0, out=D)  # rounding can give -1e-15 at a class mean; NaN stays NaN
        return D

    def distances(self, X: ArrayLike) -> np.ndarray:
        """Squared Mahalanobis distance of every row to every class mean: shape (n, k)."""
        X = _rows(X, "MahalanobisScorer.distances")
        self._width(X)
        with np.errstate(all="ignore"):
            return self._distances(X)

    def score(self, X: ArrayLike) -> np.ndarray:
        """``min_c (x - mu_c)' Sigma^-1 (x - mu_c)`` per row, shape (n,); NaN for rows with NaN/inf."""
        X = X if type(X) is _ndarray and X.dtype is _F64 and X.ndim == 2 else _rows(X, "MahalanobisScorer.score")
        if X.shape[1] != self.n_features_:
            self._width(X)
        with np.errstate(all="ignore"):  # inf inputs: no RuntimeWarning into the caller's code
            if X.shape[0] == 1:  # fast path: one vector-matrix product
                u = X[0] @ self._A
                u -= self._b
                if self._k == 1:
                    v = float(u @ u)
                else:
                    z = u[: self._d]
                    v = float(z @ z + _min(u[self._d :]))
                    if v < 0.0:
                        v = 0.0
                s = np.array([v])
            else:
                D = self._distances(X)
                s = D[:, 0].copy() if self._k == 1 else _min(D, axis=1)
            return _nan_for_nonfinite_rows(X, s)

    def _params(self) -> dict[str, np.ndarray]:
        classes = self.classes_
        assert classes is not None
        if classes.dtype.kind not in "iufbU":
            classes = classes.astype(str)
        return {
            "classes": classes,
            "means": self.means_,
            "covariance": self.covariance_,
            "whitening": self.whitening_,
            "shrinkage": np.array(self.shrinkage_, dtype=np.float64),
            "fixed_shrinkage": np.array(np.nan if self.shrinkage is None else self.shrinkage, dtype=np.float64),
            "standardize": np.array(int(self.standardize), dtype=np.int64),
            "reg": np.array(self.reg, dtype=np.float64),
        }

    @classmethod
    def _from_params(cls, p: _Fields) -> MahalanobisScorer:
        d = p.integer("n_features")
        if d < 1:
            raise p.fail(f"corrupt OOD scorer file: n_features = {d}")
        classes = p.get("classes")
        if classes.ndim != 1 or classes.shape[0] < 1 or classes.dtype.kind not in "iufbU":
            raise p.fail("corrupt OOD scorer file: field 'classes' is not a 1-D array of labels")
        k = classes.shape[0]
        fixed = p.number("fixed_shrinkage", allow_nan=True)
        scorer = cls(
            shrinkage=None if fixed != fixed else fixed,
            standardize=bool(p.integer("standardize")),
            reg=p.number("reg"),
        )
        scorer.classes_ = classes
        scorer.means_ = p.floats("means", (k, d))
        scorer.covariance_ = p.floats("covariance", (d, d))
        scorer.whitening_ = p.floats("whitening", (d, d))
        scorer.shrinkage_ = p.number("shrinkage")
        scorer.n_features_ = d
        scorer._prepare()
        return scorer


class RangeScorer(OODScorer):
    """Largest robust z-score over the features: ``max_j |x_j - median_j| / scale_j``.

    ``scale_j = IQR_j / 1.349`` (the IQR of a normal is 1.349 sigma); where that is 0, ``1.4826 * MAD_j``;
    where that is 0 too, the standard deviation; and never below ``min_scale * max(1, |median_j|)``
    (so a feature that was constant in the reference data flags any visible change without dividing
    by zero). Quantiles use numpy's default (linear) method. ``clip`` caps the score (NaN stays NaN).

    ``score_components(X)`` counts, per row, the features outside the reference range
    ``[q_low, q_high]`` (quantiles ``quantiles``, default 0.5% and 99.5%).
    """

    kind: ClassVar[str] = "range"
    input: ClassVar[str] = "features"

    def __init__(
        self, *, clip: float | None = None, min_scale: float = 1e-6, quantiles: tuple[float, float] = (0.005, 0.995)
    ) -> None:
        super().__init__()
        if clip is not None and not (clip > 0):
            raise ValueError(f"clip must be None or > 0, got {clip!r}")
        if not (min_scale > 0 and _isfinite(min_scale)):
            raise ValueError(f"min_scale must be a finite number > 0, got {min_scale!r}")
        q_low, q_high = quantiles
        if not (0.0 <= q_low < q_high <= 1.0):
            raise ValueError(f"quantiles must satisfy 0 <= q_low < q_high <= 1, got {quantiles!r}")
        self.clip = clip
        self.min_scale = min_scale
        self.quantiles = (float(q_low), float(q_high))
        self.median_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.low_: np.ndarray | None = None
        self.high_: np.ndarray | None = None

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> RangeScorer:
        """Per-feature median, robust scale and reference range of in-distribution ``X`` (``y`` is ignored)."""
        X = _finite_rows(X, "RangeScorer.fit X")
        q25, med, q75 = np.quantile(X, [0.25, 0.5, 0.75], axis=0)
        scale = (q75 - q25) / _IQR_TO_SIGMA
        zero = ~(scale > 0)
        if zero.any():
            mad = np.median(np.abs(X[:, zero] - med[zero]), axis=0) * _MAD_TO_SIGMA
            std = X[:, zero].std(axis=0)
            scale[zero] = np.where(mad > 0, mad, std)
        scale = np.maximum(scale, self.min_scale * np.maximum(1.0, np.abs(med)))
        low, high = np.quantile(X, list(self.quantiles), axis=0)
        self.median_ = med
        self.scale_ = scale
        self.low_ = low
        self.high_ = high
        self.n_features_ = X.shape[1]
        self._prepare()
        return self

    def _prepare(self) -> None:
        self._inv = 1.0 / self.scale_

    def zscores(self, X: ArrayLike) -> np.ndarray:
        """``|x_j - median_j| / scale_j`` for every row and feature: shape (n, d)."""
        X = _rows(X, "RangeScorer.zscores")
        self._width(X)
        Z = X - self.median_
        np.abs(Z, out=Z)
        Z *= self._inv
        return Z

    def score(self, X: ArrayLike) -> np.ndarray:
        """``max_j |x_j - median_j| / scale_j`` per row (capped at ``clip``), shape (n,); NaN for NaN/inf rows."""
        X = X if type(X) is _ndarray and X.dtype is _F64 and X.ndim == 2 else _rows(X, "RangeScorer.score")
        if X.shape[1] != self.n_features_:
            self._width(X)
        with np.errstate(all="ignore"):
            Z = X - self.median_
            np.abs(Z, out=Z)
            Z *= self._inv
            s = _max(Z, axis=1)  # propagates NaN
            if self.clip is not None:
                np.minimum(s, self.clip, out=s)
        return _nan_for_nonfinite_rows(X, s)

    def score_components(self, X: ArrayLike) -> np.ndarray:
        """Number of features outside the reference range ``[q_low, q_high]`` per row (NaN counts as outside)."""
        X = _rows(X, "RangeScorer.score_components")
        self._width(X)
        inside = (self.low_ <= X) & (self.high_ >= X)
        return X.shape[1] - inside.sum(axis=1)

    def _params(self) -> dict[str, np.ndarray]:
        return {
            "median": self.median_,
            "scale": self.scale_,
            "low": self.low_,
            "high": self.high_,
            "clip": np.array(np.nan if self.clip is None else self.clip, dtype=np.float64),
            "min_scale": np.array(self.min_scale, dtype=np.float64),
            "quantiles": np.array(self.quantiles, dtype=np.float64),
        }

    @classmethod
    def _from_params(cls, p: _Fields) -> RangeScorer:
        d = p.integer("n_features")
        if d < 1:
            raise p.fail(f"corrupt OOD scorer file: n_features = {d}")
        clip = p.number("clip", allow_nan=True)
        q = p.floats("quantiles", (2,))
        scorer = cls(clip=None if clip != clip else clip, min_scale=p.number("min_scale"), quantiles=(q[0], q[1]))
        scorer.median_ = p.floats("median", (d,))
        scorer.scale_ = p.floats("scale", (d,))
        if not (scorer.scale_ > 0).all():
            raise p.fail("corrupt OOD scorer file: field 'scale' has values <= 0")
        scorer.low_ = p.floats("low", (d,))
        scorer.high_ = p.floats("high", (d,))
        scorer.n_features_ = d
        scorer._prepare()
        return scorer


# -- output scorers -------------------------------------------------------------------------------


class _OutputScorer(OODScorer):
    """Scorers of the model's output; usable unfitted (``fit`` only pins the number of columns)."""

    input: ClassVar[str] = "outputs"

    def _outputs(self, X: ArrayLike) -> np.ndarray:
        X = X if type(X) is _ndarray and X.dtype is _F64 and X.ndim == 2 else _rows(X, type(self).__name__)
        d = self.n_features_
        if (d is not None and X.shape[1] != d) or X.shape[1] == 0:
            raise ValueError(f"{type(self).__name__}: expected {d or 'at least 1'} output columns, got {X.shape[1]}")
        return X

    def _fit_width(self, X: ArrayLike) -> np.ndarray:
        X = _finite_rows(X, f"{type(self).__name__}.fit X")
        self.n_features_ = X.shape[1]
        return X

    @classmethod
    def _width_from(cls, p: _Fields) -> int | None:
        d = p.integer("n_features")
        if d == -1:
            return None
        if d < 1:
            raise p.fail(f"corrupt OOD scorer file: n_features = {d}")
        return d


class MaxSoftmaxScorer(_OutputScorer):
    """``1 - max_c p_c``: one minus the top class probability (Hendrycks & Gimpel 2017), in [0, 1 - 1/K].

    Input: the model's probabilities ``(n, K)``; with ``from_logits=True``, its logits (a softmax is
    applied: ``max_c p_c = 1 / sum_c exp(z_c - max z)``). A single column is a binary model's
    positive-class probability (or logit): ``max p = max(p, 1 - p)``. Probabilities are not checked
    on the scoring path; ``fit`` checks them (rows in [0, 1] summing to 1 within 1e-3).
    """

    kind: ClassVar[str] = "max_softmax"

    def __init__(self, *, from_logits: bool = False) -> None:
        super().__init__()
        self.from_logits = from_logits

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> MaxSoftmaxScorer:
        """Pin the number of output columns from reference outputs ``X`` (and check they are probabilities)."""
        X = self._fit_width(X)
        if not self.from_logits:
            sums = X.sum(axis=1) if X.shape[1] > 1 else np.ones(X.shape[0])
            if X.min() < 0.0 or X.max() > 1.0 or np.abs(sums - 1.0).max() > 1e-3:
                self.n_features_ = None
                raise ValueError(
                    "MaxSoftmaxScorer.fit: X is not probabilities (rows in [0, 1] summing to 1); "
                    "pass from_logits=True for logits"
                )
        return self

    def score(self, X: ArrayLike) -> np.ndarray:
        """``1 - max_c p_c`` per row, shape (n,); NaN for rows with NaN/inf."""
        X = self._outputs(X)
        with np.errstate(all="ignore"):
            if X.shape[1] == 1:
                v = X[:, 0]
                # logits: 1 - sigmoid(|v|); probabilities: 1 - max(p, 1 - p)
                s = 1.0 / (1.0 + np.exp(np.abs(v))) if self.from_logits else 0.5 - np.abs(v - 0.5)
            elif self.from_logits:
                E = X - _max(X, axis=1, keepdims=True)
                np.exp(E, out=E)
                s = 1.0 - 1.0 / _sum(E, axis=1)
            else:
                s = 1.0 - _max(X, axis=1)
        return _nan_for_nonfinite_rows(X, s)

    def _params(self) -> dict[str, np.ndarray]:
        return {"from_logits": np.array(int(self.from_logits), dtype=np.int64)}

    @classmethod
    def _from_params(cls, p: _Fields) -> MaxSoftmaxScorer:
        scorer = cls(from_logits=bool(p.integer("from_logits")))
        scorer.n_features_ = cls._width_from(p)
        return scorer


class EnergyScorer(_OutputScorer):
    """The free energy of the logits: ``E(x) = -T * logsumexp(f(x) / T)`` (Liu et al. 2020).

    In-distribution inputs have *large* logits, hence *low* (more negative) energy, so ``E(x)`` itself
    is the OOD score (higher = more OOD); it is unbounded and usually negative. ``temperature`` is ``T``
    (default 1). Input: logits ``(n, K)``, e.g. ``decision_function``; computed with the max shift
    (``m + log sum exp(z - m)``), so large logits do not overflow. A single column is a binary model's
    logit ``z``, treated as the pair ``(0, z)``: ``E = -T * log(1 + exp(z / T))``.
    """

    kind: ClassVar[str] = "energy"

    def __init__(self, *, temperature: float = 1.0) -> None:
        super().__init__()
        if not (temperature > 0 and _isfinite(temperature)):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> EnergyScorer:
        """Pin the number of logit columns from reference logits ``X``."""
        self._fit_width(X)
        return self

    def score(self, X: ArrayLike) -> np.ndarray:
        """``-T * logsumexp(x / T)`` per row, shape (n,); NaN for rows with NaN/inf."""
        X = self._outputs(X)
        T = self.temperature
        with np.errstate(all="ignore"):
            if X.shape[1] == 1:
                s = -T * np.logaddexp(0.0, X[:, 0] / T)
            else:
                Z = X / T if T != 1.0 else X.copy()
                m = _max(Z, axis=1)
                Z -= m[:, None]
                np.exp(Z, out=Z)
                s = -T * (np.log(_sum(Z, axis=1)) + m)
        return _nan_for_nonfinite_rows(X, s)

    def _params(self) -> dict[str, np.ndarray]:
        return {"temperature": np.array(self.temperature, dtype=np.float64)}

    @classmethod
    def _from_params(cls, p: _Fields) -> EnergyScorer:
        T = p.number("temperature")
        if not T > 0:
            raise p.fail(f"corrupt OOD scorer file: temperature = {T}")
        scorer = cls(temperature=T)
        scorer.n_features_ = cls._width_from(p)
        return scorer


_KINDS: dict[str, type[OODScorer]] = {
    c.kind: c for c in (MahalanobisScorer, RangeScorer, MaxSoftmaxScorer, EnergyScorer)
}
