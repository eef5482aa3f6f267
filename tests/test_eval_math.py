"""Evaluation maths against independent references: metrics vs scikit-learn, the seed summary vs scipy's t, the
paired bootstrap, LogME vs a direct (slow) evidence maximisation, RV2 vs its definition, error IoU, and the seeded
validation split / few-shot draw of the protocols. Tiny arrays and fixed seeds: fast and deterministic."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn import metrics as skm

from thresher.analysis.similarity import error_iou, rv2
from thresher.errors import ThresherError
from thresher.evaluate.logme import log_evidence, logme
from thresher.evaluate.metrics import (
    binary_auroc,
    confusion_matrix,
    macro_auroc,
    mean_per_class_accuracy,
    paired_bootstrap,
    summarize,
    top1,
)
from thresher.evaluate.protocols import fewshot_draw, stratified_split


def _predictions(seed: int, n: int = 97, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Labels covering every class and predictions that are right about 60% of the time."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.arange(k), rng.integers(0, k, n - k)]
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, k, n))
    return y, pred


# --- 1. metrics vs scikit-learn ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top1_matches_sklearn(seed):
    y, pred = _predictions(seed)
    assert top1(y, pred) == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_per_class_accuracy_matches_balanced_accuracy(seed):
    y, pred = _predictions(seed)
    assert mean_per_class_accuracy(y, pred) == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-12)


def test_mean_per_class_accuracy_ignores_classes_only_predicted():
    y = np.array([0, 0, 1, 1, 1])
    pred = np.array([0, 2, 1, 1, 2])  # class 2 is never a true label
    assert mean_per_class_accuracy(y, pred) == pytest.approx((1 / 2 + 2 / 3) / 2)
    with pytest.warns(UserWarning):  # sklearn warns about the predicted-only class, then drops it the same way
        assert mean_per_class_accuracy(y, pred) == pytest.approx(skm.balanced_accuracy_score(y, pred))


@pytest.mark.parametrize("seed", [0, 1])
def test_confusion_matrix_matches_sklearn(seed):
    y, pred = _predictions(seed, k=6)
    expected = skm.confusion_matrix(y, pred, labels=range(6))
    np.testing.assert_array_equal(confusion_matrix(y, pred), expected)
    np.testing.assert_array_equal(confusion_matrix(y, pred, num_classes=6), expected)
    # a class absent from both vectors still gets its (zero) row and column when num_classes says so
    wide = confusion_matrix(y, pred, num_classes=8)
    np.testing.assert_array_equal(wide, skm.confusion_matrix(y, pred, labels=range(8)))
    assert wide.dtype == np.int64 and wide.sum() == len(y)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_binary_auroc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    positive = rng.random(60) < 0.4
    scores = rng.integers(0, 4, 60) + positive * rng.integers(0, 2, 60)  # integer scores: many ties
    assert len(np.unique(scores)) < len(scores)
    assert binary_auroc(positive, scores) == pytest.approx(skm.roc_auc_score(positive, scores), abs=1e-12)


def test_binary_auroc_hand_cases():
    assert binary_auroc([1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2]) == 1.0
    assert binary_auroc([1, 1, 0, 0], [0.1, 0.2, 0.9, 0.8]) == 0.0
    assert binary_auroc([1, 0], [0.5, 0.5]) == 0.5  # a tie counts one half
    assert math.isnan(binary_auroc([1, 1, 1], [0.1, 0.2, 0.3]))  # no negatives
    assert math.isnan(binary_auroc([0, 0], [0.1, 0.2]))  # no positives


@pytest.mark.parametrize("seed", [0, 1])
def test_macro_auroc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    targets = (rng.random((80, 6)) < 0.3).astype(int)
    assert targets.sum(0).min() > 0 and (1 - targets).sum(0).min() > 0
    scores = rng.normal(size=(80, 6)) + targets  # informative but imperfect
    scores[:, 0] = np.round(scores[:, 0])  # ties in one class
    expected = skm.roc_auc_score(targets, scores, average="macro")
    assert macro_auroc(targets, scores) == pytest.approx(expected, abs=1e-12)


def test_macro_auroc_skips_classes_without_positives_or_negatives():
    rng = np.random.default_rng(3)
    targets = (rng.random((50, 5)) < 0.4).astype(int)
    targets[:, 1] = 0  # no positives
    targets[:, 3] = 1  # no negatives
    scores = rng.normal(size=(50, 5)) + targets
    keep = [0, 2, 4]
    expected = skm.roc_auc_score(targets[:, keep], scores[:, keep], average="macro")
    assert macro_auroc(targets, scores) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("func", "args"),
    [
        (top1, ([0, 1, 2], [0, 1])),
        (top1, ([[0, 1]], [[0, 1]])),
        (top1, ([], [])),
        (mean_per_class_accuracy, ([0, 1], [0, 1, 1])),
        (mean_per_class_accuracy, ([], [])),
        (confusion_matrix, ([0, 1], [1])),
        (confusion_matrix, ([], [])),
        (macro_auroc, (np.ones((4, 2)), np.ones((4, 3)))),
        (macro_auroc, (np.ones(4), np.ones(4))),
        (macro_auroc, (np.zeros((4, 2)), np.ones((4, 2)))),  # no class has both positives and negatives
        (macro_auroc, (np.zeros((0, 2)), np.zeros((0, 2)))),
    ],
)
def test_metrics_reject_bad_input(func, args):
    with pytest.raises(ThresherError):
        func(*args)


@pytest.mark.parametrize(("y", "pred", "k"), [([-1, 0], [0, 0], None), ([0, 3], [0, 1], 2)])
def test_confusion_matrix_rejects_out_of_range_labels(y, pred, k):
    with pytest.raises(ThresherError):
        confusion_matrix(y, pred, num_classes=k)


# --- 2. summarize -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", range(2, 12))
def test_summarize_matches_numpy_and_student_t(n):
    values = np.random.default_rng(n).normal(0.7, 0.05, n)
    out = summarize(values)
    assert out["n"] == n and out["values"] == pytest.approx(values.tolist())
    assert out["mean"] == pytest.approx(values.mean(), abs=1e-12)
    assert out["std"] == pytest.approx(values.std(ddof=1), rel=1e-12)
    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)
    lo, hi = out["ci95"]
    assert lo == pytest.approx(values.mean() - half, rel=1e-3)
    assert hi == pytest.approx(values.mean() + half, rel=1e-3)
    assert hi - lo == pytest.approx(2 * half, rel=1e-3)


def test_summarize_single_value_and_empty():
    out = summarize([0.42])
    assert out["mean"] == 0.42 and out["std"] is None and out["ci95"] is None and out["n"] == 1
    with pytest.raises(ThresherError):
        summarize([])


def test_summarize_constant_values_have_zero_width():
    out = summarize([0.5, 0.5, 0.5])
    assert out["std"] == 0.0 and out["ci95"] == [0.5, 0.5]


# --- 3. paired bootstrap -------------------------------------------------------------------------------------------
def test_paired_bootstrap_identical_models():
    correct = np.random.default_rng(0).random(150) < 0.7
    out = paired_bootstrap(correct, correct, rounds=2000, seed=0)
    assert out["difference"] == 0.0 and out["ci95"] == [0.0, 0.0] and out["p_value"] == 1.0


def test_paired_bootstrap_one_model_always_right():
    out = paired_bootstrap(np.ones(200), np.zeros(200), rounds=2000, seed=0)
    assert out["difference"] == 1.0 and out["ci95"] == [1.0, 1.0] and out["p_value"] == 0.0
    flipped = paired_bootstrap(np.zeros(200), np.ones(200), rounds=2000, seed=0)
    assert flipped["difference"] == -1.0 and flipped["ci95"] == [-1.0, -1.0] and flipped["p_value"] == 0.0


def test_paired_bootstrap_moderate_difference():
    rng = np.random.default_rng(3)
    a, b = rng.random(200) < 0.8, rng.random(200) < 0.7  # population difference 0.1
    out = paired_bootstrap(a, b, rounds=3000, seed=1)
    lo, hi = out["ci95"]
    assert out["difference"] == pytest.approx(a.mean() - b.mean())
    assert lo < out["difference"] < hi
    assert lo < 0.1 < hi
    diff = a.astype(float) - b.astype(float)
    normal_half = 1.96 * diff.std() / math.sqrt(len(diff))
    assert (hi - lo) / 2 == pytest.approx(normal_half, rel=0.2)
    assert 0.0 <= out["p_value"] < 0.05  # the interval excludes 0, so the test rejects


def test_paired_bootstrap_deterministic_by_seed():
    rng = np.random.default_rng(5)
    a, b = rng.random(120) < 0.75, rng.random(120) < 0.7
    assert paired_bootstrap(a, b, rounds=1500, seed=7) == paired_bootstrap(a, b, rounds=1500, seed=7)
    assert paired_bootstrap(a, b, rounds=1500, seed=7)["ci95"] != paired_bootstrap(a, b, rounds=1500, seed=8)["ci95"]


@pytest.mark.parametrize(("a", "b"), [([1, 0], [1]), ([], []), ([[1, 0]], [[1, 0]])])
def test_paired_bootstrap_rejects_bad_input(a, b):
    with pytest.raises(ThresherError):
        paired_bootstrap(a, b)


# --- 4. LogME -----------------------------------------------------------------------------------------------------
def _evidence_direct(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> tuple[float, np.ndarray]:
    """L(alpha, beta) of METHODS.md with A built explicitly; returns (L, m)."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    sign, logdet = np.linalg.slogdet(a)
    assert sign > 0
    r = f @ m - y
    value = (
        n / 2 * math.log(beta)
        + d / 2 * math.log(alpha)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * float(r @ r)
        - alpha / 2 * float(m @ m)
        - logdet / 2
    )
    return value, m


def _logme_direct(f: np.ndarray, labels: np.ndarray, max_iter: int = 5000, tol: float = 1e-11) -> float:
    """Slow LogME: the fixed-point iteration of METHODS.md run to convergence from alpha = beta = 1."""
    keep = labels >= 0
    f, labels = f[keep], labels[keep]
    n, _ = f.shape
    s = np.linalg.eigvalsh(f.T @ f)
    per_class = []
    for k in np.unique(labels):
        y = (labels == k).astype(np.float64)
        alpha = beta = 1.0
        for _ in range(max_iter):
            _, m = _evidence_direct(f, y, alpha, beta)
            gamma = float((beta * s / (alpha + beta * s)).sum())
            r = f @ m - y
            new_alpha, new_beta = gamma / float(m @ m), (n - gamma) / float(r @ r)
            converged = abs(new_alpha - alpha) <= tol * alpha and abs(new_beta - beta) <= tol * beta
            alpha, beta = new_alpha, new_beta
            if converged:
                break
        else:
            raise AssertionError("reference LogME iteration did not converge; pick other test data")
        per_class.append(_evidence_direct(f, y, alpha, beta)[0] / n)
    return float(np.mean(per_class))


def _informative(seed: int, n: int, d: int, classes: int = 3, rank: int | None = None):
    """Features with a class signal plus noise; ``rank`` < n makes F rank-deficient (y not interpolable)."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.arange(classes), rng.integers(0, classes, n - classes)]
    width = rank or d
    g = rng.normal(size=(n, width)) + np.eye(classes)[labels] @ rng.normal(size=(classes, width))
    f = g @ rng.normal(size=(rank, d)) if rank else g
    return f, labels


@pytest.mark.parametrize("seed", [0, 1])
def test_logme_matches_direct_evidence_n_greater_than_d(seed):
    f, labels = _informative(seed, n=60, d=8)
    assert logme(f, labels) == pytest.approx(_logme_direct(f, labels), rel=1e-4)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_logme_matches_direct_evidence_n_less_than_d(seed):
    # n < d with F of rank 6 < n: F'F has d - rank zero eigenvalues (the d - len(sigma) log alpha term and the zero
    # singular values inside the thin SVD), while the labels stay out of reach of a perfect fit
    f, labels = _informative(seed, n=15, d=40, rank=6)
    assert f.shape[0] < f.shape[1] and np.linalg.matrix_rank(f) == 6
    assert logme(f, labels) == pytest.approx(_logme_direct(f, labels), rel=1e-4)


def _logme_interpolating_limit(f: np.ndarray, labels: np.ndarray) -> float:
    """For full-row-rank F (n <= d) every one-hot column is fit exactly; the evidence increases towards beta -> inf,
    where it becomes log N(y; 0, F F'/alpha) maximised at alpha = n / y'(FF')^-1 y."""
    n = len(f)
    k = f @ f.T
    logdet = np.linalg.slogdet(k)[1]
    out = []
    for c in np.unique(labels):
        y = (labels == c).astype(np.float64)
        alpha = n / float(y @ np.linalg.solve(k, y))
        out.append((-n / 2 * math.log(2 * math.pi) - logdet / 2 + n / 2 * math.log(alpha) - n / 2) / n)
    return float(np.mean(out))


def test_logme_full_rank_n_less_than_d_is_finite():
    f, labels = _informative(0, n=12, d=30)
    value = logme(f, labels)  # currently raises OverflowError
    assert math.isfinite(value)
    assert value == pytest.approx(_logme_interpolating_limit(f, labels), rel=1e-3)


def test_log_evidence_equals_direct_formula():
    f, labels = _informative(4, n=30, d=7)
    y = (labels == 1).astype(np.float64)
    n, d = f.shape
    for alpha, beta in [(1.0, 1.0), (0.3, 5.0), (40.0, 0.7)]:
        expected, m = _evidence_direct(f, y, alpha, beta)
        a = alpha * np.eye(d) + beta * f.T @ f
        r = f @ m - y
        got = log_evidence(n, d, alpha, beta, float(r @ r), float(m @ m), np.linalg.slogdet(a)[1])
        assert got == pytest.approx(expected, rel=1e-10)


def test_logme_prefers_features_that_carry_the_labels():
    rng = np.random.default_rng(0)
    labels = np.r_[np.arange(4), rng.integers(0, 4, 76)]
    noise = rng.normal(size=(80, 12))
    useful = np.hstack([np.eye(4)[labels] + 0.1 * rng.normal(size=(80, 4)), rng.normal(size=(80, 8))])
    assert logme(useful, labels) > logme(noise, labels) + 0.1


def test_logme_ignores_unlabeled_rows():
    f, labels = _informative(5, n=40, d=6)
    extra = np.random.default_rng(6).normal(size=(7, 6)) * 50
    f_all = np.vstack([f[:20], extra, f[20:]])
    labels_all = np.r_[labels[:20], np.full(7, -1), labels[20:]]
    assert logme(f_all, labels_all) == pytest.approx(logme(f, labels), rel=1e-12)


@pytest.mark.parametrize(
    ("features", "labels"),
    [
        (np.ones(5), np.array([0, 1, 0, 1, 0])),  # 1-D features
        (np.ones((5, 2)), np.array([0, 1, 0, 1])),  # one label short
        (np.array([[0.0, 1.0], [np.nan, 0.5], [1.0, 1.0]]), np.array([0, 1, 0])),
        (np.array([[0.0, 1.0], [np.inf, 0.5], [1.0, 1.0]]), np.array([0, 1, 0])),
        (np.ones((3, 2)), np.array([0, -1, -1])),  # fewer than two labeled examples
    ],
)
def test_logme_rejects_bad_input(features, labels):
    with pytest.raises(ThresherError):
        logme(features, labels)


# --- 5. RV2 -------------------------------------------------------------------------------------------------------
def _rv2_direct(x: np.ndarray, y: np.ndarray) -> float:
    x = x.reshape(len(x), -1) - x.reshape(len(x), -1).mean(0)
    y = y.reshape(len(y), -1) - y.reshape(len(y), -1).mean(0)
    a, b = x @ x.T, y @ y.T
    np.fill_diagonal(a, 0.0)
    np.fill_diagonal(b, 0.0)
    return float(np.trace(a @ b) / math.sqrt(np.trace(a @ a) * np.trace(b @ b)))


def _pair(seed: int, n: int = 30, p: int = 12, q: int = 9):
    """Two related representations: y is a noisy linear map of x."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    y = np.tanh(x @ rng.normal(size=(p, q))) + 0.5 * rng.normal(size=(n, q))
    return x, y


def test_rv2_of_itself_is_one():
    x, _ = _pair(0)
    assert rv2(x, x) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rv2_matches_direct_definition_and_is_symmetric(seed):
    x, y = _pair(seed)
    value = rv2(x, y)
    assert value == pytest.approx(_rv2_direct(x, y), rel=1e-10)
    assert rv2(y, x) == pytest.approx(value, rel=1e-12)
    assert 0.0 < value < 1.0


def test_rv2_invariant_to_orthogonal_transform_and_scaling():
    x, y = _pair(3)
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.normal(size=(x.shape[1], x.shape[1])))
    assert np.allclose(q.T @ q, np.eye(len(q)))
    base = rv2(x, y)
    assert rv2(x @ q, y) == pytest.approx(base, rel=1e-10)
    assert rv2(3.7 * x, y) == pytest.approx(base, rel=1e-10)
    assert rv2(x, 0.01 * y) == pytest.approx(base, rel=1e-10)
    assert rv2(x + 5.0, y - 2.0) == pytest.approx(base, rel=1e-10)  # column centring removes offsets
    assert rv2(x @ q * 2.5, x) == pytest.approx(1.0, abs=1e-10)


def test_rv2_small_for_independent_high_dimensional_representations():
    # RV2 (unlike RV) has no large positive bias for p, q >> n. Column centring leaves a small one: off-diagonal
    # entries of XX' share a mean of about -p/(n-1), giving roughly (p/(n-1))^2 / (p + (p/(n-1))^2) ~ 0.08 here;
    # over 20 seeds this setting gave 0.02..0.16
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 200)), rng.normal(size=(50, 200))
    assert abs(rv2(x, y)) < 0.3
    assert rv2(x, x + 0.3 * y) > 0.8


def test_rv2_flattens_conv_activations():
    rng = np.random.default_rng(7)
    x4 = rng.normal(size=(20, 3, 4, 4))
    y4 = x4 * 2 + 0.3 * rng.normal(size=(20, 3, 4, 4))
    assert rv2(x4, y4) == pytest.approx(rv2(x4.reshape(20, -1), y4.reshape(20, -1)), rel=1e-12)
    assert rv2(x4, y4) == pytest.approx(_rv2_direct(x4, y4), rel=1e-10)
    y2 = rng.normal(size=(20, 5))
    assert rv2(x4, y2) == pytest.approx(_rv2_direct(x4, y2), rel=1e-10)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        (np.zeros((6, 3)), np.random.default_rng(0).normal(size=(6, 4))),  # constant
        (np.full((6, 3), 0.5), np.random.default_rng(0).normal(size=(6, 4))),  # constant, exact mean
        (np.random.default_rng(0).normal(size=(6, 4)), np.ones((6, 2))),
        (np.ones((5, 3)), np.ones((6, 3))),  # different n
        (np.ones((1, 3)), np.ones((1, 3))),  # n < 2
    ],
)
def test_rv2_rejects_bad_input(x, y):
    with pytest.raises(ThresherError):
        rv2(x, y)


def test_rv2_rejects_constant_with_inexact_mean():
    x = np.full((7, 3), 0.1)
    with pytest.raises(ThresherError):
        rv2(x, np.random.default_rng(0).normal(size=(7, 4)))


# --- 6. error IoU -------------------------------------------------------------------------------------------------
def test_error_iou_hand_example():
    assert error_iou([1, 1, 0, 0, 1], [0, 1, 0, 1, 1]) == pytest.approx(2 / 4)
    assert error_iou([1, 0, 1], [1, 0, 1]) == 1.0
    assert error_iou([1, 0, 0], [0, 0, 1]) == 0.0
    assert error_iou(np.array([True, False]), np.array([True, True])) == 0.5


def test_error_iou_without_errors_is_nan():
    assert math.isnan(error_iou([0, 0, 0], [0, 0, 0]))


@pytest.mark.parametrize(("a", "b"), [([1, 0, 1], [1, 0]), ([[1, 0]], [[1, 0]])])
def test_error_iou_rejects_mismatched_masks(a, b):
    with pytest.raises(ThresherError):
        error_iou(a, b)


# --- 7. stratified split ------------------------------------------------------------------------------------------
def _split_data():
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 6, 300)
    labels[rng.random(300) < 0.1] = -1  # unlabeled rows, never in positions
    labels[[5, 6]] = 7  # a class of two
    labels[9] = 8  # a class of one
    positions = np.flatnonzero(labels >= 0)
    positions = positions[positions % 7 != 3]  # a subset of the labeled rows
    positions = np.union1d(positions, [5, 6, 9])
    return labels, positions


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5])
def test_stratified_split_partitions_every_class(fraction):
    labels, positions = _split_data()
    fit, val = stratified_split(labels, positions, fraction, seed=0)
    assert len(np.intersect1d(fit, val)) == 0
    np.testing.assert_array_equal(np.sort(np.r_[fit, val]), np.sort(positions))
    assert np.all(np.diff(fit) > 0) and np.all(np.diff(val) > 0)
    for c in np.unique(labels[positions]):
        count = int((labels[positions] == c).sum())
        n_val, n_fit = int((labels[val] == c).sum()), int((labels[fit] == c).sum())
        if count >= 2:
            assert n_val >= 1 and n_fit >= 1
            assert n_val == min(max(round(fraction * count), 1), count - 1)
            assert abs(n_val - fraction * count) <= 1
        else:
            assert (n_val, n_fit) == (0, 1)  # a singleton class stays in fit


def test_stratified_split_deterministic_by_seed():
    labels, positions = _split_data()
    a = stratified_split(labels, positions, 0.2, seed=3)
    b = stratified_split(labels, positions, 0.2, seed=3)
    c = stratified_split(labels, positions, 0.2, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert len(a[1]) == len(c[1])  # same per-class counts, different members


# --- 8. few-shot draw ---------------------------------------------------------------------------------------------
def _fewshot_labels():
    rng = np.random.default_rng(21)
    labels = rng.integers(0, 5, 120)
    labels[rng.random(120) < 0.2] = -1
    labels[[3, 4]] = 5  # a small class (two members)
    return labels


@pytest.mark.parametrize("total", [6, 7, 20, 50])
def test_fewshot_total(total):
    labels = _fewshot_labels()
    drawn = fewshot_draw(labels, total=total, seed=0)
    assert len(drawn) == total and len(np.unique(drawn)) == total
    assert np.all(labels[drawn] >= 0)
    assert set(labels[drawn]) == set(labels[labels >= 0])


def test_fewshot_total_can_take_every_labeled_example():
    labels = _fewshot_labels()
    labeled = np.flatnonzero(labels >= 0)
    np.testing.assert_array_equal(fewshot_draw(labels, total=len(labeled), seed=1), labeled)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_fewshot_per_class(k):
    labels = _fewshot_labels()
    drawn = fewshot_draw(labels, per_class=k, seed=0)
    assert len(np.unique(drawn)) == len(drawn)
    assert np.all(labels[drawn] >= 0)
    for c in np.unique(labels[labels >= 0]):
        available = int((labels == c).sum())
        assert int((labels[drawn] == c).sum()) == min(k, available)


def test_fewshot_rejects_impossible_totals():
    labels = _fewshot_labels()
    with pytest.raises(ThresherError):
        fewshot_draw(labels, total=5, seed=0)  # six classes
    with pytest.raises(ThresherError):
        fewshot_draw(labels, total=int((labels >= 0).sum()) + 1, seed=0)


def test_fewshot_deterministic_by_seed():
    labels = _fewshot_labels()
    np.testing.assert_array_equal(fewshot_draw(labels, total=15, seed=2), fewshot_draw(labels, total=15, seed=2))
    assert not np.array_equal(fewshot_draw(labels, total=15, seed=2), fewshot_draw(labels, total=15, seed=3))
    np.testing.assert_array_equal(fewshot_draw(labels, per_class=2, seed=2), fewshot_draw(labels, per_class=2, seed=2))
    assert not np.array_equal(fewshot_draw(labels, per_class=2, seed=2), fewshot_draw(labels, per_class=2, seed=3))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    labels=st.lists(st.integers(-1, 6), min_size=1, max_size=40).filter(lambda v: any(x >= 0 for x in v)),
    data=st.data(),
    seed=st.integers(0, 2**16),
)
def test_fewshot_total_property(labels, data, seed):
    labels = np.array(labels)
    classes = set(labels[labels >= 0].tolist())
    n_labeled = int((labels >= 0).sum())
    total = data.draw(st.integers(len(classes), n_labeled), label="total")
    drawn = fewshot_draw(labels, total=total, seed=seed)
    assert len(drawn) == total
    assert len(np.unique(drawn)) == total
    assert np.all((drawn >= 0) & (drawn < len(labels)))
    assert np.all(labels[drawn] >= 0)
    assert set(labels[drawn].tolist()) == classes
