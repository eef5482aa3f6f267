"""``knn``: mean cosine similarity of a source example to its k nearest target embeddings (beyond the papers)."""

from __future__ import annotations

import warnings

import numpy as np

from ..ops.neighbors import check_dims, check_k, faiss_module, feature_shape, ivf_settings, knn_similarity
from .base import Scorer, Side, check_target, side_features
from .registry import SCORERS


@SCORERS.register("knn")
class KnnScorer(Scorer):
    """score = mean of the top-``k`` cosine similarities to the target (k capped by the target size, with a note).

    A target larger than ``ivf_threshold`` rows is searched with a FAISS IVF index (``neighbors.ivf_settings``;
    ``nprobe`` lists visited per query), within ``neighbors.IVF_TOLERANCE`` of the exact scores; the report says
    which search ran.
    """

    name = "knn"
    features_from = "source-model"

    def __init__(self, k: int = 10, backend: str = "auto", ivf_threshold: int = 100_000, nprobe: int | None = None):
        self.k = k
        self.backend = backend
        self.ivf_threshold = ivf_threshold
        self.nprobe = nprobe

    def fit(self, source: Side, target: Side) -> KnnScorer:
        check_k(self.k, "knn")
        check_k(self.ivf_threshold, "knn", "ivf_threshold")
        if self.nprobe is not None:
            check_k(self.nprobe, "knn", "nprobe")
        check_target(target, "knn")
        self.target_features_ = side_features(target, "knn")
        if source.features is not None:
            check_dims(feature_shape(source.features)[1], self.target_features_.shape[1], "knn")
        self.notes_: list[str] = []
        self.k_ = min(int(self.k), len(target))
        ivf = ivf_settings(len(target), self.ivf_threshold, nprobe=self.nprobe)
        self.search_ = ivf if ivf is not None and faiss_module(self.backend) is not None else {"index": "exact"}
        if self.k_ < self.k:
            note = f"knn: k={self.k} capped to the target size {self.k_}"
            warnings.warn(note, stacklevel=2)
            self.notes_.append(note)
        return self

    def score(self, source: Side) -> np.ndarray:
        self._check_fitted()
        feats = side_features(source, "knn", load=False)
        check_dims(feature_shape(feats)[1], self.target_features_.shape[1], "knn")
        sims = knn_similarity(
            feats, self.target_features_, self.k_, backend=self.backend, ivf_threshold=self.ivf_threshold,
            nprobe=self.nprobe,
        )  # fmt: skip
        return sims.astype(np.float64).mean(axis=1)

    def report(self) -> dict:
        return {
            "k": getattr(self, "k_", self.k),
            "search": getattr(self, "search_", None),
            "notes": list(getattr(self, "notes_", [])),
        }
