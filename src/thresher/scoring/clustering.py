"""``cluster-avg`` and ``cluster-min`` (000): k-means on the target features; a source example scores minus its
average (resp. minimum) Euclidean distance to the target's centres.

``normalize=True`` L2-normalises both sides first, so distances lie in [0, 2] whatever the backbone's feature scale
(features of different backbones, or of a model trained longer, are then comparable, and a few large-norm outliers
cannot dominate the centres). Distances to the pool are computed in bounded row blocks (millions of rows).
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np

from ..ops.kmeans import iter_sq_dists, kmeans
from ..ops.neighbors import check_dims, check_k, feature_shape, l2_normalize
from .base import Scorer, Side, check_target, side_features
from .registry import SCORERS


class _ClusterScorer(Scorer):
    """k-means on the target (K capped by its size with a note), then a reduction of the distances to the centres."""

    reduce: ClassVar[str] = "mean"
    features_from = "target-model"

    def __init__(self, k: int = 200, normalize: bool = True, seed: int = 0, iters: int = 50, backend: str = "auto"):
        self.k = k
        self.normalize = normalize
        self.seed = seed
        self.iters = iters
        self.backend = backend

    def fit(self, source: Side, target: Side) -> _ClusterScorer:
        check_k(self.k, self.name)
        check_target(target, self.name)
        x = side_features(target, self.name)
        if source.features is not None:
            check_dims(feature_shape(source.features)[1], x.shape[1], self.name)
        if self.normalize:
            x = l2_normalize(x)
        self.notes_: list[str] = []
        self.k_ = min(int(self.k), len(x))
        if self.k_ < self.k:
            note = f"{self.name}: k={self.k} capped to the number of target examples ({self.k_})"
            warnings.warn(note, stacklevel=2)
            self.notes_.append(note)
        self.centres_, assignment = kmeans(x, self.k_, iters=self.iters, seed=self.seed, backend=self.backend)
        self.cluster_sizes_ = np.bincount(assignment, minlength=self.k_)
        return self

    def score(self, source: Side) -> np.ndarray:
        self._check_fitted()
        feats = side_features(source, self.name, load=False)
        check_dims(feature_shape(feats)[1], self.centres_.shape[1], self.name)
        out = np.empty(len(source), dtype=np.float64)
        transform = l2_normalize if self.normalize else None
        what = f"{source.name} features"
        for start, sq in iter_sq_dists(feats, self.centres_, transform=transform, what=what):
            dist = sq.double().sqrt_()
            red = dist.mean(1) if self.reduce == "mean" else dist.min(1).values
            out[start : start + len(sq)] = -red.numpy()
        return out

    def report(self) -> dict:
        notes = list(getattr(self, "notes_", []))
        rep: dict = {"k": getattr(self, "k_", self.k), "normalize": self.normalize, "notes": notes}
        if hasattr(self, "cluster_sizes_"):
            sizes = self.cluster_sizes_
            rep["cluster_sizes"] = {"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max())}
        return rep


@SCORERS.register("cluster-avg")
class ClusterAvg(_ClusterScorer):
    """000: score = - mean over the K target centres of the Euclidean distance."""

    name = "cluster-avg"
    reduce = "mean"


@SCORERS.register("cluster-min")
class ClusterMin(_ClusterScorer):
    """000: score = - distance to the nearest target centre."""

    name = "cluster-min"
    reduce = "min"
