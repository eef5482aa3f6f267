"""``clip-score``: DataComp's CLIP-score filter aimed at the target (Gadre et al. 2023; issue 21): a pool image scores
the cosine similarity of its image embedding to the nearest text embedding of the target's class names.

The image-text model is a ``clip`` run thresher trained (``thresher score --encoder RUN``): the pool's embeddings are
its backbone's features (computed once in the workspace, with their cost), projected here by its image projection;
each target class is the average of its prompts (every template of the run, every synonym of the name) through its
text tower, as in zero-shot classification. A class name the vocabulary does not know reads as unknown words, alike
for every such class, so it ranks nothing: such classes are left out (``unknown="skip"``), and the report says which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..data.classes import class_words
from ..errors import ThresherError
from ..models.checkpoint import describe_checkpoint
from ..ops.neighbors import check_dims, feature_shape, iter_rows
from ..pretrain.objectives.clip import load_clip
from .base import Scorer, Side, check_target, side_features
from .registry import SCORERS

BLOCK = 65_536  # pool rows projected at once


@SCORERS.register("clip-score")
class ClipScoreScorer(Scorer):
    """score = max over the target's (known) classes of cos(image projection of the pool image's features, the
    class's text embedding); ``reduce="mean"`` averages over the classes instead (closeness to the target as a
    whole rather than to its nearest class)."""

    name = "clip-score"
    features_from = None  # no default model: the image-text model comes with --encoder

    def __init__(self, reduce: Literal["max", "mean"] = "max", unknown: Literal["skip", "keep"] = "skip"):
        self.reduce = reduce
        self.unknown = unknown

    def resolve_inputs(self, features_given: bool) -> None:
        if self.reduce not in ("max", "mean") or self.unknown not in ("skip", "keep"):
            raise ThresherError(f"clip-score: reduce is max or mean, unknown is skip or keep; got {self.reduce!r}, "
                                f"{self.unknown!r}")  # fmt: skip
        if not features_given:
            raise ThresherError("clip-score ranks the pool with an image-text model: give --encoder RUN, a thresher "
                                "pretrain --objective clip run or its checkpoint")  # fmt: skip

    def check_model(self, checkpoint: Path | None) -> None:
        if checkpoint is None:
            raise ThresherError(
                "clip-score needs the clip run the embeddings came from: give --encoder RUN (a thresher pretrain "
                "--objective clip run), not an embedding store or a public encoder"
            )
        objective = describe_checkpoint(checkpoint)["objective"]
        if objective != "clip":
            raise ThresherError(
                f"clip-score needs an image-text model, and {checkpoint} was trained with objective {objective!r}; "
                "give --encoder RUN of a thresher pretrain --objective clip run"
            )

    def fit(self, source: Side, target: Side) -> ClipScoreScorer:
        self.resolve_inputs(True)
        check_target(target, "clip-score")
        ckpt = target.context.features_checkpoint if target.context is not None else None
        self.check_model(ckpt)
        words = class_words(target.dataset) if target.dataset is not None else []
        labels = np.unique(target.labels[target.labels >= 0])
        wanted = labels if labels.size else np.arange(len(words))
        if not words or int(wanted.max(initial=-1)) >= len(words):
            raise ThresherError(f"clip-score reads the target's class names, and {target.name} does not name its "
                                "classes (give it a classes.txt)")  # fmt: skip
        names = [words[c] for c in wanted]
        model = load_clip(ckpt, names)
        known = [n for n in names if model.knows_class(n)]
        self.classes_ = known if self.unknown == "skip" else names
        self.unknown_classes_ = [n for n in names if n not in known]
        if not self.classes_:
            raise ThresherError(f"the clip model's vocabulary knows none of {target.name}'s class names "
                                f"({', '.join(names[:5])}...): it cannot rank the pool against them")  # fmt: skip
        feat_dim = model.image_projection.in_features
        if source.features is not None:
            check_dims(feature_shape(source.features)[1], feat_dim, "clip-score")
        with torch.no_grad():
            self.projection_ = model.image_projection.weight.detach().float().numpy().copy()  # (dim, features)
            self.text_ = model.class_embeddings(self.classes_).float().numpy()  # (classes, dim), unit rows
        dim, k = self.projection_.shape[0], len(self.classes_)
        self.own_flops_ = 2.0 * len(source) * (feat_dim * dim + dim * k)  # projection and similarities of the pool
        return self

    def score(self, source: Side) -> np.ndarray:
        self._check_fitted()
        feats = side_features(source, "clip-score", load=False)
        check_dims(feature_shape(feats)[1], self.projection_.shape[1], "clip-score")
        out = np.empty(len(source), np.float64)
        w, text = torch.from_numpy(self.projection_), torch.from_numpy(self.text_)
        with torch.no_grad():
            for start, block in iter_rows(feats, BLOCK, "clip-score features"):
                sims = F.normalize(torch.from_numpy(block) @ w.T, dim=1) @ text.T
                red = sims.max(dim=1).values if self.reduce == "max" else sims.mean(dim=1)
                out[start : start + len(block)] = red.double().numpy()
        return out

    def report(self) -> dict:
        return {
            "classes": list(getattr(self, "classes_", [])),
            "unknown_classes": list(getattr(self, "unknown_classes_", [])),
            "reduce": self.reduce,
        }
