"""Transfer metrics (000, 001, 002, 004): top-1, mean per-class accuracy, macro one-vs-rest AUROC for multi-label
targets, confusion matrix; spread over seeds (mean, std, 95% interval) and a paired bootstrap test of two models.

Plain NumPy on predictions, so every protocol reports the same numbers the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import ThresherError


def _labels(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ThresherError(
            f"labels and predictions must be equal-length vectors, got {y_true.shape} and {y_pred.shape}"
        )
    if len(y_true) == 0:
        raise ThresherError("no test examples to measure")
    return y_true.astype(np.int64), y_pred.astype(np.int64)


def top1(y_true, y_pred) -> float:
    """Fraction of examples whose predicted class is the true one."""
    y_true, y_pred = _labels(y_true, y_pred)
    return float((y_true == y_pred).mean())


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """(classes x classes) counts, rows = true class, columns = predicted class."""
    y_true, y_pred = _labels(y_true, y_pred)
    k = num_classes or int(max(y_true.max(), y_pred.max())) + 1
    if min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= k:
        raise ThresherError(f"confusion matrix: labels must lie in [0, {k}) (-1 = unlabeled cannot be scored)")
    out = np.zeros((k, k), np.int64)
    np.add.at(out, (y_true, y_pred), 1)
    return out


def mean_per_class_accuracy(y_true, y_pred) -> float:
    """Mean over the classes present in ``y_true`` of their recall (004's metric for Pets)."""
    y_true, y_pred = _labels(y_true, y_pred)
    classes = np.unique(y_true)
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in classes]))


def binary_auroc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting one half."""
    positive = np.asarray(positive, bool)
    scores = np.asarray(scores, np.float64)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x), np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2  # 1-based average rank of the tie block
    return ranks


def macro_auroc(targets: np.ndarray, scores: np.ndarray) -> float:
    """Macro one-vs-rest AUROC for multi-label (n, classes) 0/1 targets (001's metric); classes without both
    positives and negatives are left out."""
    targets, scores = np.asarray(targets), np.asarray(scores, np.float64)
    if targets.shape != scores.shape or targets.ndim != 2:
        raise ThresherError(
            f"multi-label targets and scores must both be (n, classes), got {targets.shape}, {scores.shape}"
        )
    values = [binary_auroc(targets[:, c] > 0, scores[:, c]) for c in range(targets.shape[1])]
    values = [v for v in values if not math.isnan(v)]
    if not values:
        raise ThresherError("no class has both positive and negative test examples; AUROC is undefined")
    return float(np.mean(values))


# t quantiles (two-sided 95%) for small samples; beyond the table the normal 1.96 is used
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}  # fmt: skip


def t_quantile(dof: int) -> float:
    """Two-sided 95% Student-t quantile for ``dof`` degrees of freedom (the nearest tabulated smaller dof)."""
    if dof < 1:
        return math.nan
    if dof > 30:
        return 1.96
    return _T975[max(k for k in _T975 if k <= dof)]


def summarize(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation and a 95% t-interval of the mean over seeds (n = 1: no spread)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        raise ThresherError("nothing to summarise")
    mean = float(v.mean())
    if v.size == 1:
        return {"mean": mean, "std": None, "ci95": None, "n": 1, "values": v.tolist()}
    std = float(v.std(ddof=1))
    half = t_quantile(v.size - 1) * std / math.sqrt(v.size)
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": int(v.size), "values": v.tolist()}


def paired_bootstrap(correct_a, correct_b, *, rounds: int = 10000, seed: int = 0) -> dict:
    """Paired bootstrap over test examples of accuracy(A) - accuracy(B): the difference, its 95% interval and the
    two-sided p-value (twice the smaller tail of the resampled differences around 0)."""
    a, b = np.asarray(correct_a, np.float64), np.asarray(correct_b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ThresherError("paired bootstrap needs two equal-length per-example correctness vectors of one test set")
    rng = np.random.default_rng(seed)
    diff = a - b
    means = np.empty(rounds)
    for start in range(0, rounds, 1000):  # bounded memory: 1000 resamples at a time
        k = min(1000, rounds - start)
        idx = rng.integers(0, len(diff), (k, len(diff)))
        means[start : start + k] = diff[idx].mean(1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    p = 2 * min((means <= 0).mean(), (means >= 0).mean())
    return {"difference": float(diff.mean()), "ci95": [float(lo), float(hi)], "p_value": float(min(1.0, p))}
