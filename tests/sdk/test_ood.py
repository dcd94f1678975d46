"""OOD scorers: exact math, detection quality on scikit-learn's digits, thresholds, files, the decorator.

Quality floors are the AUROCs measured on this fixed split (seed 0, see docs/ood.md) minus a margin of
0.05 (0.03 where the measured value is >= 0.98), which absorbs BLAS/library-version differences.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.special
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.covariance import LedoitWolf
from sklearn.datasets import load_digits, load_wine
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

import modelotel
from modelotel import conventions as conv
from modelotel import ood
from modelotel.ood import EnergyScorer, MahalanobisScorer, MaxSoftmaxScorer, OODScorer, RangeScorer

from conftest import total_count

HYP = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _data(seed: int, n: int, d: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Correlated Gaussian classes with per-feature scales spanning 1e-3..1e3."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d))
    scales = np.exp(rng.uniform(np.log(1e-3), np.log(1e3), d))
    y = np.arange(n) % k
    centers = rng.normal(0, 3, (k, d))
    X = (rng.normal(size=(n, d)) @ A + centers[y]) * scales
    return X, y


# -- exactness ------------------------------------------------------------------------------------


@HYP
@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.integers(1, 12),
    k=st.integers(1, 4),
    n_extra=st.integers(2, 60),
    labelled=st.booleans(),
    standardize=st.booleans(),
)
def test_mahalanobis_matches_direct_computation(seed, d, k, n_extra, labelled, standardize):
    X, y = _data(seed, k * 2 + n_extra, d, k)
    scorer = MahalanobisScorer(standardize=standardize).fit(X, y if labelled else None)
    # The model, rebuilt independently: class means, pooled residuals, sklearn's Ledoit-Wolf.
    labels = y if labelled else np.zeros(len(y), dtype=int)
    classes = np.unique(labels)
    means = np.array([X[labels == c].mean(axis=0) for c in classes])
    R = X - means[np.searchsorted(classes, labels)]
    s = np.sqrt((R**2).mean(axis=0)) if standardize else np.ones(d)
    s[s <= 1e-12 * s.max()] = 1.0
    lw = LedoitWolf(assume_centered=True).fit(R / s)
    C = lw.covariance_.copy()
    C[np.diag_indices(d)] += scorer.reg * np.trace(C) / d
    sigma = C * np.outer(s, s)
    assert scorer.shrinkage_ == pytest.approx(lw.shrinkage_, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(scorer.means_, means, rtol=1e-12, atol=1e-12 * np.abs(X).max())
    np.testing.assert_allclose(scorer.covariance_, sigma, rtol=1e-9, atol=1e-12 * np.abs(sigma).max())

    rng = np.random.default_rng(seed + 1)
    Q = np.vstack([X[:5], X[:5] + rng.normal(size=X[:5].shape) * X.std(axis=0) * 3])
    inv = np.linalg.inv(sigma)
    direct = np.array([min((x - m) @ inv @ (x - m) for m in means) for x in Q])
    tol = 1e-7 * max(1.0, direct.max())
    np.testing.assert_allclose(scorer.score(Q), direct, rtol=1e-7, atol=tol)
    single = np.concatenate([scorer.score(x) for x in Q])  # 1-D samples: the fast path
    np.testing.assert_allclose(single, direct, rtol=1e-7, atol=tol)
    assert scorer.distances(Q).shape == (len(Q), len(classes))


def test_mahalanobis_whitening_is_the_inverse_covariance():
    X, y = _data(3, 400, 16, 5)
    scorer = MahalanobisScorer().fit(X, y)
    W = scorer.whitening_
    np.testing.assert_allclose(W @ W.T @ scorer.covariance_, np.eye(16), atol=1e-8)
    # in-distribution scores of a Gaussian class are about chi^2_d: mean ~ d
    assert 12 < np.mean(scorer.score(X)) < 20


def test_mahalanobis_fixed_shrinkage_and_constant_feature():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=200), np.full(200, 3.0), rng.normal(size=200)])
    scorer = MahalanobisScorer(shrinkage=0.1).fit(X)
    assert scorer.shrinkage_ == 0.1
    assert np.isfinite(scorer.score(X)).all()
    base = scorer.score(np.array([0.0, 3.0, 0.0]))[0]
    moved = scorer.score(np.array([0.0, 4.0, 0.0]))[0]
    assert moved > base + 1.0  # the never-varying feature changed: more OOD
    with pytest.raises(ValueError, match="more rows"):
        MahalanobisScorer().fit(X[:2], [0, 1])
    with pytest.raises(ValueError, match="shrinkage"):
        MahalanobisScorer(shrinkage=1.5)


@HYP
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 10), n=st.integers(3, 80), clip=st.sampled_from([None, 3.0]))
def test_range_matches_direct_median_iqr(seed, d, n, clip):
    rng = np.random.default_rng(seed)
    X = rng.standard_t(3, size=(n, d)) * np.exp(rng.uniform(-5, 5, d))
    X[:, 0] = np.round(X[:, 0])  # ties, possibly a zero IQR
    scorer = RangeScorer(clip=clip).fit(X)
    med = np.median(X, axis=0)
    iqr = np.percentile(X, 75, axis=0) - np.percentile(X, 25, axis=0)
    scale = iqr / 1.3489795003921634
    for j in range(d):
        if scale[j] == 0:
            mad = np.median(np.abs(X[:, j] - med[j])) * 1.482602218505602
            scale[j] = mad if mad > 0 else X[:, j].std()
    scale = np.maximum(scale, 1e-6 * np.maximum(1, np.abs(med)))
    Q = np.vstack([X[:5], rng.normal(size=(5, d)) * 10 * scale + med])
    direct = np.max(np.abs(Q - med) / scale, axis=1)
    if clip is not None:
        direct = np.minimum(direct, clip)
    np.testing.assert_allclose(scorer.score(Q), direct, rtol=1e-12)
    lo, hi = np.quantile(X, [0.005, 0.995], axis=0)
    np.testing.assert_array_equal(scorer.score_components(Q), (~((lo <= Q) & (hi >= Q))).sum(axis=1))


logits_st = st.integers(0, 2**32 - 1).flatmap(
    lambda seed: st.tuples(st.just(seed), st.integers(1, 12), st.integers(1, 20), st.sampled_from([1e-2, 1, 30, 1e3]))
)


@HYP
@given(args=logits_st, T=st.sampled_from([0.5, 1.0, 7.0]))
def test_energy_and_max_softmax_match_scipy(args, T):
    seed, k, n, spread = args
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, k)) * spread
    # a binary model's single logit z is the pair (0, z)
    pair = np.column_stack([np.zeros(n), Z[:, 0]]) if k == 1 else Z
    energy = -T * scipy.special.logsumexp(pair / T, axis=1)
    np.testing.assert_allclose(EnergyScorer(temperature=T).score(Z), energy, rtol=1e-12, atol=1e-12)
    P = scipy.special.softmax(pair, axis=1)
    msp = 1 - P.max(axis=1)
    np.testing.assert_allclose(MaxSoftmaxScorer(from_logits=True).score(Z), msp, rtol=1e-9, atol=1e-15)
    probs = P if k > 1 else P[:, 1:]
    np.testing.assert_allclose(MaxSoftmaxScorer().score(probs), msp, rtol=1e-9, atol=1e-15)


def test_energy_sign_in_distribution_is_lower():
    confident = np.array([[12.0, -3.0, -4.0]])
    unsure = np.array([[0.1, 0.0, -0.1]])
    scorer = EnergyScorer()
    assert scorer.score(confident)[0] < scorer.score(unsure)[0]
    assert scorer.score(confident)[0] == pytest.approx(-scipy.special.logsumexp(confident))


def _fitted_feature_scorers(d: int = 4) -> list[OODScorer]:
    X, y = _data(0, 200, d, 3)
    return [MahalanobisScorer().fit(X, y), MahalanobisScorer().fit(X), RangeScorer().fit(X)]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_score_nan_and_others_are_unaffected(bad):
    X, y = _data(0, 200, 4, 3)
    logits = np.random.default_rng(0).normal(size=(6, 4))
    cases = [(s, X[:6].copy()) for s in _fitted_feature_scorers()]
    cases += [(EnergyScorer(), logits.copy()), (MaxSoftmaxScorer(from_logits=True), logits.copy())]
    cases += [(MaxSoftmaxScorer(), scipy.special.softmax(logits, axis=1))]
    if bad == -np.inf:  # logits: a masked class, scored exactly (below); probabilities: not validated
        cases = cases[:3]
    for scorer, Q in cases:
        clean = scorer.score(Q)
        Q[[1, 4], [0, 3]] = bad
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no RuntimeWarning reaches the caller
            got = scorer.score(Q)
        assert np.isnan(got[[1, 4]]).all(), (scorer, got)
        np.testing.assert_array_equal(np.delete(got, [1, 4]), np.delete(clean, [1, 4]))
        assert np.isnan(scorer.score(Q[1])).all()  # single sample, fast path
        assert np.isnan(scorer.score(Q[1:2])).all()


def test_minus_inf_logit_is_a_masked_class():
    logits = np.array([[2.0, -np.inf, 0.5], [-np.inf, -np.inf, -np.inf]])
    kept = logits[:1, [0, 2]]
    energy, msp = EnergyScorer(), MaxSoftmaxScorer(from_logits=True)
    assert energy.score(logits)[0] == pytest.approx(energy.score(kept)[0], rel=1e-15)
    assert msp.score(logits)[0] == pytest.approx(msp.score(kept)[0], rel=1e-15)
    assert np.isnan(energy.score(logits)[1]) and np.isnan(msp.score(logits)[1])


def test_shapes_and_clear_errors():
    for scorer in _fitted_feature_scorers():
        assert scorer.input == "features" and scorer.threshold is None and scorer.n_features_ == 4
        assert scorer.score(np.zeros(4)).shape == (1,)
        assert scorer.score([[0, 0, 0, 0], [1, 1, 1, 1]]).shape == (2,)
        assert scorer.score(np.zeros((0, 4))).shape == (0,)
        assert scorer.score(np.zeros((3, 4), dtype=np.float32)).dtype == np.float64
        with pytest.raises(ValueError, match="expected 4 features, got 5"):
            scorer.score(np.zeros((1, 5)))
        with pytest.raises(ValueError, match="2-D"):
            scorer.score(np.zeros((1, 2, 4)))
    for unfitted in (MahalanobisScorer(), RangeScorer()):
        with pytest.raises(ValueError, match="not fitted"):
            unfitted.score(np.zeros((1, 4)))
    for scorer in (MaxSoftmaxScorer(), EnergyScorer()):
        assert scorer.input == "outputs"
        assert scorer.score(np.array([0.2, 0.8])).shape == (1,)  # unfitted: any width
        scorer.fit(np.array([[0.2, 0.3, 0.5]]))
        assert scorer.n_features_ == 3
        with pytest.raises(ValueError, match="expected 3 output columns, got 2"):
            scorer.score(np.array([[0.2, 0.8]]))
    with pytest.raises(ValueError, match="from_logits"):
        MaxSoftmaxScorer().fit(np.array([[3.0, -1.0]]))
    with pytest.raises(ValueError, match="NaN"):
        RangeScorer().fit(np.array([[1.0], [np.nan]]))
    with pytest.raises(ValueError, match="temperature"):
        EnergyScorer(temperature=0)


def test_no_sklearn_or_scipy_on_import_fit_or_score():
    code = (
        "import sys, numpy as np; from modelotel import ood; "
        "X = np.random.default_rng(0).normal(size=(50, 3)); "
        "[s.fit(X).score(X) for s in (ood.MahalanobisScorer(), ood.RangeScorer(), ood.EnergyScorer())]; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- quality on real data -------------------------------------------------------------------------


class Digits:
    """load_digits: classes 0-7 in distribution (train 50% / holdout 25% / test 25%), 8 and 9 held out."""

    def __init__(self) -> None:
        X, y = load_digits(return_X_y=True)
        inside = y < 8
        Xi, yi = X[inside], y[inside]
        self.held_out = X[~inside]
        self.X_train, rest, self.y_train, y_rest = train_test_split(Xi, yi, test_size=0.5, random_state=0, stratify=yi)
        self.X_holdout, self.X_test, _, _ = train_test_split(
            rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest
        )
        rng = np.random.default_rng(0)
        t = self.X_test
        self.ood = {
            "held-out classes 8, 9": self.held_out,
            "Gaussian noise (sd 3, clipped to 0..16)": np.clip(t + rng.normal(0, 3, t.shape), 0, 16),
            "features scaled x[1/2, 2] (clipped)": np.clip(t * np.exp(rng.uniform(np.log(0.5), np.log(2), 64)), 0, 16),
            "pixels permuted": t[:, rng.permutation(64)],
        }
        self.pca = PCA(32, random_state=0).fit(self.X_train)
        self.clf = LogisticRegression(max_iter=2000).fit(self.X_train / 16, self.y_train)
        pca, clf = self.pca.transform, self.clf
        self.scorers = {
            "Mahalanobis, per class (PCA 32)": (MahalanobisScorer().fit(pca(self.X_train), self.y_train), pca),
            "Mahalanobis, one mean (PCA 32)": (MahalanobisScorer().fit(pca(self.X_train)), pca),
            "Range (PCA 32)": (RangeScorer().fit(pca(self.X_train)), pca),
            "Range (64 raw pixels)": (RangeScorer().fit(self.X_train), lambda a: a),
            "MaxSoftmax (LogisticRegression)": (MaxSoftmaxScorer(), lambda a: clf.predict_proba(a / 16)),
            "Energy (LogisticRegression)": (EnergyScorer(), lambda a: clf.decision_function(a / 16)),
        }

    def auroc(self, scorer_name: str, ood_name: str) -> float:
        scorer, transform = self.scorers[scorer_name]
        s_in = scorer.score(transform(self.X_test))
        s_out = scorer.score(transform(self.ood[ood_name]))
        truth = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
        return float(roc_auc_score(truth, np.r_[s_in, s_out]))


@pytest.fixture(scope="module")
def digits() -> Digits:
    return Digits()


H, N, S, P = (
    "held-out classes 8, 9",
    "Gaussian noise (sd 3, clipped to 0..16)",
    "features scaled x[1/2, 2] (clipped)",
    "pixels permuted",
)
# measured on this split: see docs/ood.md
FLOORS = {  # measured AUROC minus the margin; the measured table is in docs/ood.md
    "Mahalanobis, per class (PCA 32)": {H: 0.84, N: 0.64, S: 0.64, P: 0.97},
    "Mahalanobis, one mean (PCA 32)": {H: 0.77, N: 0.63, S: 0.63, P: 0.96},
    "Range (PCA 32)": {H: 0.70, N: 0.60, S: 0.63, P: 0.95},
    "Range (64 raw pixels)": {N: 0.96, P: 0.97},  # held-out classes: 0.486, chance
    "MaxSoftmax (LogisticRegression)": {H: 0.90, N: 0.60, P: 0.91},
    "Energy (LogisticRegression)": {H: 0.90, N: 0.63, P: 0.89},
}


@pytest.mark.parametrize("scorer_name", list(FLOORS))
def test_auroc_floors_on_digits(digits, scorer_name):
    got = {ood_name: digits.auroc(scorer_name, ood_name) for ood_name in digits.ood}
    for ood_name, floor in FLOORS[scorer_name].items():
        assert got[ood_name] >= floor, (scorer_name, got)


def test_class_conditional_mahalanobis_beats_one_mean_on_new_classes(digits):
    assert digits.auroc("Mahalanobis, per class (PCA 32)", H) > digits.auroc("Mahalanobis, one mean (PCA 32)", H)


def test_feature_and_output_scorers_are_complementary(digits):
    """Documented in docs/ood.md: output scores see new classes better, feature scores see rescaled inputs."""
    maha = "Mahalanobis, per class (PCA 32)"
    for output_scorer in ("MaxSoftmax (LogisticRegression)", "Energy (LogisticRegression)"):
        assert digits.auroc(output_scorer, H) > digits.auroc(maha, H) + 0.03
        assert digits.auroc(maha, S) > digits.auroc(output_scorer, S) + 0.03


def test_wine_held_out_cultivar_and_why_features_are_standardized():
    """Wine: fit on cultivars 0-1 (91 rows), test 39 in-distribution rows vs the 48 rows of cultivar 2.

    Features span 0.1 (hue) to 1,680 (proline): shrinking towards a scaled identity in raw units wipes
    out the small-variance features (measured AUROC 0.52), standardizing first keeps them (0.98).
    """
    X, y = load_wine(return_X_y=True)
    inside = y < 2
    X_train, X_test, y_train, _ = train_test_split(
        X[inside], y[inside], test_size=0.3, random_state=0, stratify=y[inside]
    )

    def auroc(scorer: OODScorer) -> float:
        s_in, s_out = scorer.score(X_test), scorer.score(X[~inside])
        return float(roc_auc_score(np.r_[np.zeros(len(s_in)), np.ones(len(s_out))], np.r_[s_in, s_out]))

    standardized = auroc(MahalanobisScorer().fit(X_train, y_train))
    raw_units = auroc(MahalanobisScorer(standardize=False).fit(X_train, y_train))
    assert standardized >= 0.93  # measured 0.980
    assert raw_units < standardized - 0.2  # measured 0.517
    assert auroc(RangeScorer().fit(X_train)) >= 0.85  # measured 0.900


# -- thresholds -----------------------------------------------------------------------------------


def _fpr_tolerance(n_holdout: int, n_test: int, fpr: float = 0.05) -> float:
    """3 sigma of (threshold's Beta noise + test-set binomial noise) plus the conformal rounding 1/(n+1)."""
    return 3 * math.sqrt(fpr * (1 - fpr) * (1 / n_holdout + 1 / n_test)) + 1 / (n_holdout + 1)


@pytest.mark.parametrize("scorer_name", list(FLOORS))
def test_threshold_fpr_on_separate_digits_split(digits, scorer_name):
    scorer, transform = digits.scorers[scorer_name]
    t = scorer.threshold_for_fpr(transform(digits.X_holdout), fpr=0.05)
    assert scorer.threshold == t and isinstance(t, float)
    observed = float(np.mean(scorer.score(transform(digits.X_test)) > t))
    tol = _fpr_tolerance(len(digits.X_holdout), len(digits.X_test))  # 361 and 361 rows: 0.051
    assert abs(observed - 0.05) <= tol, (scorer_name, observed, tol)


def test_threshold_fpr_large_sample():
    rng = np.random.default_rng(0)
    d = 8
    cov = np.eye(d) + 0.5
    draw = lambda n: rng.multivariate_normal(np.zeros(d), cov, n)  # noqa: E731
    scorer = MahalanobisScorer().fit(draw(5000))
    n, m = 20_000, 20_000
    t = scorer.threshold_for_fpr(draw(n), fpr=0.05)
    observed = float(np.mean(scorer.score(draw(m)) > t))
    assert abs(observed - 0.05) <= _fpr_tolerance(n, m)  # 0.0067


def test_threshold_is_the_conformal_order_statistic_and_its_guarantee_holds():
    rng = np.random.default_rng(1)
    scorer = RangeScorer().fit(rng.normal(size=(500, 1)))
    n, fpr = 99, 0.05
    k = math.ceil((1 - fpr) * (n + 1))  # 95: expected FPR (n + 1 - k) / (n + 1) = 0.05 exactly
    holdout = rng.normal(size=(n, 1))
    t = scorer.threshold_for_fpr(holdout, fpr)
    assert t == np.sort(scorer.score(holdout))[k - 1]
    # averaged over holdout draws the FPR is (n + 1 - k) / (n + 1); 400 reps x 400 test rows: sd ~ 0.0013
    rates = []
    for _ in range(400):
        t = scorer.threshold_for_fpr(rng.normal(size=(n, 1)), fpr)
        rates.append(np.mean(scorer.score(rng.normal(size=(400, 1))) > t))
    assert abs(np.mean(rates) - (n + 1 - k) / (n + 1)) < 0.005
    with pytest.raises(ValueError, match="at least 19 holdout rows"):
        scorer.threshold_for_fpr(holdout[:18], 0.05)
    assert scorer.threshold_for_fpr(holdout[:19], 0.05) == scorer.score(holdout[:19]).max()
    with pytest.raises(ValueError, match="fpr"):
        scorer.threshold_for_fpr(holdout, 0.0)
    bad = holdout.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        scorer.threshold_for_fpr(bad)


# -- files ----------------------------------------------------------------------------------------


def _all_fitted() -> list[OODScorer]:
    X, y = _data(0, 300, 6, 3)
    labels = np.array(["cat", "dog", "eel"])[y]
    logits = np.random.default_rng(0).normal(size=(300, 5))
    scorers = [
        MahalanobisScorer().fit(X, labels),
        MahalanobisScorer(shrinkage=0.2, standardize=False).fit(X),
        RangeScorer(clip=50.0, quantiles=(0.01, 0.99)).fit(X),
        MaxSoftmaxScorer().fit(scipy.special.softmax(logits, axis=1)),
        MaxSoftmaxScorer(from_logits=True),
        EnergyScorer(temperature=2.5).fit(logits),
    ]
    for s in scorers[::2]:
        s.threshold_for_fpr(X if s.input == "features" else _outputs_for(s, logits), 0.1)
    return scorers


def _outputs_for(scorer: OODScorer, logits: np.ndarray) -> np.ndarray:
    if isinstance(scorer, MaxSoftmaxScorer) and not scorer.from_logits:
        return scipy.special.softmax(logits, axis=1)
    return logits


def test_save_load_round_trip_is_exact(tmp_path):
    X, _ = _data(1, 50, 6, 3)
    logits = np.random.default_rng(1).normal(size=(50, 5))
    for i, scorer in enumerate(_all_fitted()):
        path = tmp_path / f"scorer-{i}.ood"  # no .npz suffix: written under exactly this name
        scorer.save(path)
        assert path.exists() and not Path(str(path) + ".npz").exists()
        assert zipfile.is_zipfile(path)
        again = type(scorer).load(path)
        also = ood.load(str(path))
        assert type(again) is type(also) is type(scorer)
        assert again.threshold == scorer.threshold and again.n_features_ == scorer.n_features_
        Q = X if scorer.input == "features" else _outputs_for(scorer, logits)
        np.testing.assert_array_equal(again.score(Q), scorer.score(Q))
        np.testing.assert_array_equal(again.score(Q[0]), scorer.score(Q[0]))
        np.testing.assert_array_equal(also.score(Q), scorer.score(Q))
    maha = _all_fitted()[0]
    maha.save(tmp_path / "m.npz")
    loaded = MahalanobisScorer.load(tmp_path / "m.npz")
    assert list(loaded.classes_) == ["cat", "dog", "eel"] and loaded.shrinkage_ == maha.shrinkage_
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        assert str(f["format"]) == ood.FORMAT and int(f["version"]) == ood.VERSION and str(f["kind"]) == "mahalanobis"


def test_unfitted_feature_scorer_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        RangeScorer().save(tmp_path / "x.npz")


def _rewrite(src: Path, dst: Path, **changes) -> Path:
    with np.load(src, allow_pickle=False) as f:
        fields = {k: f[k] for k in f.files}
    for key, value in changes.items():
        if value is None:
            fields.pop(key)
        else:
            fields[key] = value
    with open(dst, "wb") as fh:
        np.savez(fh, **fields)
    return dst


def test_bad_files_raise_clear_value_errors(tmp_path):
    good = tmp_path / "good.npz"
    MahalanobisScorer().fit(_data(0, 100, 4, 2)[0]).save(good)
    data = good.read_bytes()
    cases = {
        "random.npz": (b"\x00\x01garbage" * 50, "not a numpy .npz archive"),
        "text.npz": (b"hello world\n", "not a numpy .npz archive"),
        "truncated.npz": (data[: len(data) // 2], "corrupt or truncated"),
        "zip-header-only.npz": (data[:40], "corrupt or truncated"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match=message) as info:
            ood.load(path)
        assert str(path) in str(info.value)
        assert not isinstance(info.value, zipfile.BadZipFile)

    npy = tmp_path / "array.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ValueError, match=r"array\.npy: not a modelotel OOD scorer file"):
        ood.load(npy)
    pickled = tmp_path / "pickled.npz"
    with open(pickled, "wb") as fh:
        np.savez(fh, format=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"pickled\.npz: corrupt or truncated"):
        ood.load(pickled)
    other = tmp_path / "other.npz"
    with open(other, "wb") as fh:
        np.savez(fh, weights=np.zeros(3))
    with pytest.raises(ValueError, match=r"other\.npz: not a modelotel OOD scorer file"):
        ood.load(other)

    future = _rewrite(good, tmp_path / "future.npz", version=np.array(2))
    with pytest.raises(
        ValueError, match=r"future\.npz: OOD scorer file version 2 is newer than this modelotel reads \(1\)"
    ):
        ood.load(future)
    with pytest.raises(ValueError, match=r"holds a 'mahalanobis' scorer \(MahalanobisScorer\), not 'range'"):
        RangeScorer.load(good)
    with pytest.raises(ValueError, match="unknown OOD scorer kind 'knn'"):
        ood.load(_rewrite(good, tmp_path / "knn.npz", kind=np.array("knn")))
    with pytest.raises(ValueError, match="field 'whitening' is missing"):
        ood.load(_rewrite(good, tmp_path / "missing.npz", whitening=None))
    with pytest.raises(ValueError, match=r"field 'whitening' has shape \(3, 3\)"):
        ood.load(_rewrite(good, tmp_path / "shape.npz", whitening=np.eye(3)))
    with pytest.raises(ValueError, match="field 'means' holds NaN"):
        ood.load(_rewrite(good, tmp_path / "nan.npz", means=np.full((1, 4), np.nan)))
    with pytest.raises(ValueError, match="field 'version' is not an integer"):
        ood.load(_rewrite(good, tmp_path / "v.npz", version=np.array("1")))
    with pytest.raises(ValueError, match="shrinkage"):
        ood.load(_rewrite(good, tmp_path / "shr.npz", fixed_shrinkage=np.array(7.0)))
    with pytest.raises(FileNotFoundError):
        ood.load(tmp_path / "does-not-exist.npz")


# -- through the real decorator -------------------------------------------------------------------


def test_end_to_end_with_the_decorator(memory_exporter, digits):
    clf = digits.clf
    scorer = MahalanobisScorer().fit(digits.X_train, digits.y_train)  # raw 64 pixels: what predict() gets
    scorer.threshold_for_fpr(digits.X_holdout, 0.05)  # before decorating: the decorator reads it then

    @modelotel.instrument_model(name="digits", ood=scorer)
    def predict(row):
        return clf.predict_proba(row.reshape(1, -1) / 16)

    msp = MaxSoftmaxScorer()
    msp.threshold_for_fpr(clf.predict_proba(digits.X_holdout / 16), 0.05)

    @modelotel.instrument_model(name="digits-msp", ood=msp)
    def predict_msp(row):
        return clf.predict_proba(row.reshape(1, -1) / 16)

    rows = np.vstack([digits.X_test[:40], digits.held_out[:40]])
    for row in rows:
        predict(row)
        predict_msp(row)
    expected = sum(scorer.score(row.reshape(1, -1))[0] > scorer.threshold for row in rows)
    expected_msp = sum(msp.score(clf.predict_proba(row.reshape(1, -1) / 16))[0] > msp.threshold for row in rows)
    assert 0 < expected_msp < len(rows) and 0 < expected < len(rows)

    @modelotel.instrument_model(name="digits-nan", ood=scorer)
    def constant(row):
        return np.full(8, 1 / 8)

    constant(np.full(64, np.nan))  # NaN features -> NaN score -> dropped, not an error
    constant(digits.X_test[0])
    constant(np.zeros(3))  # wrong width -> ValueError inside modelotel -> counted, never raised

    modelotel.force_flush()
    scores = memory_exporter.last_points(conv.OOD_SCORE_METRIC)
    outliers = memory_exporter.last_points(conv.OOD_OUTLIERS)
    for name, exp in (("digits", expected), ("digits-msp", expected_msp)):
        assert total_count(scores, **{conv.MODEL_NAME: name}) == len(rows)
        assert total_count(outliers, **{conv.MODEL_NAME: name}) == exp
    assert total_count(scores, **{conv.MODEL_NAME: "digits-nan"}) == 1
    dropped = memory_exporter.last_points(conv.DROPPED)
    assert total_count(dropped, **{conv.DROP_REASON: "non_finite"}) >= 1
    errors = memory_exporter.last_points(conv.INTERNAL_ERRORS)
    assert total_count(errors, **{conv.INTERNAL_ERROR_KIND: "ood_score"}) >= 1
