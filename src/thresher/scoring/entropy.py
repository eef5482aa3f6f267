"""``entropy`` and ``inverse-entropy`` (000 appendix B.1): entropy of a target-trained classifier's prediction on each
source example; high entropy first = active learning, low entropy first = inverse active learning.

The classifier is the target-trained network's own head when the pipeline gives ``source.logits``; otherwise a
softmax regression (``fit_linear``) is trained on the labeled target features and applied to the source features.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..errors import ThresherError
from ..ops.linear import fit_linear
from ..ops.neighbors import check_dims, feature_shape
from .base import Scorer, Side, check_target, side_features
from .registry import SCORERS


def entropy_from_logits(logits: np.ndarray) -> np.ndarray:
    """Entropy in nats of softmax(logits), row by row, float64 (from log-softmax, stable for large logits)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -(np.exp(log_p) * log_p).sum(axis=1)


class _EntropyScorer(Scorer):
    sign: ClassVar[float] = 1.0
    features_from = "target-model"

    def __init__(self, l2: float = 1e-4, hidden: int = 0, max_iter: int = 100, seed: int = 0):
        self.l2 = l2
        self.hidden = hidden
        self.max_iter = max_iter
        self.seed = seed

    def fit(self, source: Side, target: Side) -> _EntropyScorer:
        check_target(target, self.name)
        labels = np.asarray(target.require_labels(self.name))
        keep = labels >= 0
        classes = np.unique(labels[keep])
        if len(classes) < 2:
            raise ThresherError(f"{self.name} needs a target with at least 2 labeled classes, got {len(classes)}")
        self.n_classes_ = int(labels.max()) + 1
        self.model_ = None
        if source.logits is not None:  # the target-trained network's head: nothing to train here
            self.head_ = "source.logits"
            return self
        x = side_features(target, self.name)
        if source.features is not None:
            check_dims(feature_shape(source.features)[1], x.shape[1], self.name)
        self.model_ = fit_linear(
            x, labels[keep], self.n_classes_, rows=np.flatnonzero(keep), l2=self.l2, hidden=self.hidden,
            max_iter=self.max_iter, seed=self.seed,
        )  # fmt: skip
        self.own_flops_ = self.model_.flops
        self.head_ = "classifier on target features" + (f" (MLP, {self.hidden} hidden)" if self.hidden else "")
        return self

    def score(self, source: Side) -> np.ndarray:
        self._check_fitted()
        if source.logits is not None:
            logits = np.asarray(source.logits)
            if logits.ndim != 2 or len(logits) != len(source):
                want = f"({len(source)}, C)"
                raise ThresherError(f"{self.name}: source logits have shape {logits.shape}, expected {want}")
            if not np.isfinite(logits).all():
                raise ThresherError(f"{self.name}: source logits contain non-finite values (NaN or inf)")
        elif self.model_ is not None:
            logits = self.model_.logits(side_features(source, self.name, load=False))
        else:
            raise ThresherError(f"{self.name} was fitted with source logits; score() needs source.logits as well")
        return self.sign * entropy_from_logits(logits)

    def report(self) -> dict:
        rep = {"classifier": getattr(self, "head_", None), "classes": getattr(self, "n_classes_", None)}
        if getattr(self, "model_", None) is not None:
            rep["train_loss"] = round(self.model_.final_loss, 6)
        return rep


@SCORERS.register("entropy")
class Entropy(_EntropyScorer):
    """000 B.1 active learning: score = entropy (nats) of the target classifier's prediction; uncertain first."""

    name = "entropy"
    sign = 1.0


@SCORERS.register("inverse-entropy")
class InverseEntropy(_EntropyScorer):
    """000 B.1 inverse active learning: score = minus the entropy; confidently classified examples first."""

    name = "inverse-entropy"
    sign = -1.0
