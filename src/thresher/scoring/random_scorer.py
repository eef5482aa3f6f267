"""``random``: the baseline every comparison needs at the same budget (all papers; 000 tables, 004 section 4)."""

from __future__ import annotations

import numpy as np

from .base import Scorer, Side
from .registry import SCORERS


@SCORERS.register("random")
class RandomScorer(Scorer):
    """Seeded uniform scores in [0, 1): same seed and pool size, same scores."""

    name = "random"
    uses = None
    features_from = None

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, source: Side, target: Side) -> RandomScorer:
        self.n_fitted_ = len(source)
        return self

    def score(self, source: Side) -> np.ndarray:
        self._check_fitted()
        return np.random.default_rng(self.seed).random(len(source)).astype(np.float64)

    def report(self) -> dict:
        return {"seed": self.seed}
