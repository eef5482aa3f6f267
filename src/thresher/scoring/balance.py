"""Two sides held in balance (000's domain classifier): per-example weights giving source and target the same total,
and the accuracy averaged over the two sides; shared by its embedding and image modes."""

from __future__ import annotations

import numpy as np

from ..errors import ThresherError


def balanced_weights(is_target: np.ndarray) -> np.ndarray:
    """Per-example weights giving each side the same total (n/2 each, so the mean weight is 1)."""
    is_target = np.asarray(is_target, dtype=bool)
    n, n_t = len(is_target), int(is_target.sum())
    if n_t == 0 or n_t == n:
        raise ThresherError("balanced weights need examples of both sides")
    return np.where(is_target, n / (2.0 * n_t), n / (2.0 * (n - n_t)))


def balanced_accuracy(p_target: np.ndarray, is_target: np.ndarray) -> float:
    """Mean of the per-side accuracies at threshold 0.5."""
    pred = np.asarray(p_target) >= 0.5
    return 0.5 * (float(pred[is_target].mean()) + float((~pred[~is_target]).mean()))
