"""LogME (You et al., ICML 2021): how well target labels are explained by frozen features, without training.

Per class k, a Bayesian linear regression of the one-hot column y_k on the features F with prior precision alpha and
noise precision beta, both set by evidence maximisation (the fixed-point iteration in METHODS.md); LogME is the mean
over classes of the maximised log evidence divided by n. Higher is better; it ranks checkpoints or sources for one
target (001's cheap proxy for source search). Everything goes through one SVD of F, so the cost is that of the SVD.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ThresherError


def log_evidence(n: int, d: int, alpha: float, beta: float, res2: float, mtm: float, logdet_a: float) -> float:
    """L(alpha, beta) = n/2 log beta + d/2 log alpha - n/2 log 2pi - beta/2 ||Fm - y||^2 - alpha/2 m'm - 1/2 log|A|."""
    return (
        n / 2 * math.log(beta)
        + d / 2 * math.log(alpha)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * res2
        - alpha / 2 * mtm
        - logdet_a / 2
    )


def logme(features: np.ndarray, labels: np.ndarray, *, max_iter: int = 100, tol: float = 1e-5) -> float:
    """LogME of integer ``labels`` (n,) given ``features`` (n, d); labels < 0 (unlabeled) are ignored."""
    f = np.asarray(features, np.float64)
    y = np.asarray(labels)
    if f.ndim != 2 or y.shape != (len(f),):
        raise ThresherError(f"LogME needs (n, d) features and n labels, got {f.shape} and {y.shape}")
    keep = y >= 0
    f, y = f[keep], y[keep].astype(np.int64)
    n, d = f.shape
    if n < 2:
        raise ThresherError("LogME needs at least 2 labeled examples")
    if not np.isfinite(f).all():
        raise ThresherError("LogME: the features contain NaN or inf")
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2  # eigenvalues of F'F in the row space (the others are 0)
    evidences = []
    for k in np.unique(y):
        yk = (y == k).astype(np.float64)
        evidences.append(_class_evidence(u, sigma, yk, d, max_iter, tol) / n)
    return float(np.mean(evidences))


def _class_evidence(u: np.ndarray, sigma: np.ndarray, y: np.ndarray, d: int, max_iter: int, tol: float) -> float:
    n = len(y)
    z = u.T @ y  # coordinates of y in the column space of F
    if len(sigma) == n and sigma.min() > 1e-10 * sigma.max():
        # full row rank (n <= d): y is fitted exactly, the evidence grows towards beta -> inf, where it becomes
        # log N(y; 0, F F' / alpha), maximised at alpha = n / y' (F F')^-1 y
        q = float((z**2 / sigma).sum())
        alpha = n / q
        return -n / 2 * math.log(2 * math.pi) - float(np.log(sigma).sum()) / 2 + n / 2 * math.log(alpha) - n / 2
    outside = max(0.0, float(y @ y - z @ z))  # the part of y no weight vector can reach (>= 0 up to rounding)
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        t = alpha + beta * sigma
        gamma = float((beta * sigma / t).sum())
        mtm = float((beta**2 * sigma * z**2 / t**2).sum())
        res2 = float(((alpha / t) ** 2 * z**2).sum()) + outside
        new_alpha = gamma / max(mtm, 1e-300)
        new_beta = (n - gamma) / max(res2, 1e-300)
        done = abs(new_alpha - alpha) / alpha < tol and abs(new_beta - beta) / beta < tol
        alpha, beta = new_alpha, new_beta
        if done:
            break
    t = alpha + beta * sigma
    mtm = float((beta**2 * sigma * z**2 / t**2).sum())
    res2 = float(((alpha / t) ** 2 * z**2).sum()) + outside
    logdet_a = float(np.log(t).sum()) + (d - len(sigma)) * math.log(alpha)
    return log_evidence(n, d, alpha, beta, res2, mtm, logdet_a)
