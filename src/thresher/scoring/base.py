"""The scorer interface (scikit-learn style) and the ``Side`` a scorer sees of the source pool or the target.

``fit(source, target)`` learns and keeps learned state in attributes ending in ``_``; ``score(source)`` returns one
float per source example (higher = more relevant to the target) and has no side effects (DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import ThresherError
from ..ops.neighbors import feature_shape, load_rows

if TYPE_CHECKING:
    from ..config import RuntimeConfig
    from ..workspace import Workspace


@dataclass(frozen=True)
class ScoringContext:
    """What the score stage offers a scorer that trains models itself (the domain classifier on images): the
    workspace (models, embeddings and head outputs computed once, each with its cost), the feature models'
    settings, how to run, where to log, the stage's default models (``default_model(which, positions)``), and the
    thresher checkpoint the given features came from (an --encoder run or a --features checkpoint; None otherwise),
    for scorers that read more of it than its backbone (clip-score: its projections and text tower)."""

    workspace: Workspace
    models: Any  # scoring.pipeline.FeatureModelConfig: backbone, resolution, epochs, batch size, rate
    runtime: RuntimeConfig
    log: Callable[[str], None]
    default_model: Callable[..., Path]
    features_checkpoint: Path | None = None


@dataclass
class Side:
    """One side of a scoring problem, aligned row by row.

    ``features``: (n, d) embeddings (any array-like, e.g. a memory-mapped EmbeddingStore) or None;
    ``labels``: int64 (n,), -1 = unlabeled; ``logits``: (n, c) predictions of the model that produced the features,
    when it has a head for the relevant label space (the target's classes for the source side, the source's classes
    for the target side), else None; ``dataset``/``indices``: the images, for scorers that train on pixels;
    ``context``: the score stage's offer to such scorers (None when a scorer is used on its own).
    """

    name: str
    ids: np.ndarray
    labels: np.ndarray
    features: Any = None
    logits: np.ndarray | None = None
    dataset: Any = None
    indices: np.ndarray | None = None
    context: ScoringContext | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def require_features(self, who: str) -> np.ndarray:
        if self.features is None:
            raise ThresherError(f"{who} needs embeddings of {self.name}; give --features or let it train its model")
        return np.asarray(self.features, dtype=np.float32)

    def require_labels(self, who: str) -> np.ndarray:
        if not (self.labels >= 0).any():
            raise ThresherError(f"{who} needs the labels of {self.name}, which has none")
        return self.labels


class Scorer:
    """Base class: ``__init__`` stores hyper-parameters only; subclasses implement ``fit`` and ``score``.

    ``uses`` says what the default pipeline must prepare: ``"features"`` (embeddings of both sides),
    ``"images"`` (datasets, for scorers that train on pixels) or nothing (``random``). ``features_from`` names the
    default model whose embeddings the scorer wants when no --features is given: ``"target-model"`` (trained on the
    labeled target, 000), ``"source-model"`` (trained on the source labels, 004) or None.
    """

    name: ClassVar[str] = ""
    uses: ClassVar[str] = "features"
    features_from: ClassVar[str | None] = "source-model"
    #: with the default model, does the scorer read the pool's embeddings? (importance reads only the target's
    #: logits, so the pool is not embedded for it)
    reads_source_features: ClassVar[bool] = True
    #: FLOPs of the scorer's own fitting (classifier heads), counted by ``fit`` into its cost (k-means and
    #: nearest-neighbour searches are left out: under 0.002 C on the demo's pool)
    own_flops_: float = 0.0
    #: why the scorer cannot work without the pool's labels (None: it can, through the target model or an encoder)
    needs_source_labels: ClassVar[str | None] = None

    def resolve_inputs(self, features_given: bool) -> None:
        """Settle 'auto' hyper-parameters that depend on what the user gave (e.g. image vs embedding mode)."""

    def check_model(self, checkpoint: Path | None) -> None:
        """Check, before any work, the thresher checkpoint the given features come from (None: no such checkpoint;
        ``ScoringContext.features_checkpoint``), for scorers that read more of it than its backbone."""

    def plan_work(self, plan) -> None:
        """Ask ``plan`` (``scoring.estimate.WorkPlan``) for the default models and passes ``fit`` would use, for
        ``thresher score --dry-run``; mirrors what the score run prepares for ``uses``/``features_from``."""
        which = plan.feature_model(self)
        if self.uses != "features" or which is None:
            return
        plan.model(which)
        if which == "target-model" or self.reads_source_features:
            plan.embed("source", which)
        plan.embed("target", which)
        self.plan_own(plan, which)

    def plan_own(self, plan, features_from: str) -> None:
        """The scorer's own fitting on embeddings from ``features_from`` (classifier heads), when it counts it."""

    def fit(self, source: Side, target: Side) -> Scorer:
        raise NotImplementedError

    def score(self, source: Side) -> np.ndarray:
        raise NotImplementedError

    def fit_score(self, source: Side, target: Side) -> np.ndarray:
        return self.fit(source, target).score(source)

    def report(self) -> dict:
        """Diagnostics of the fitted scorer (e.g. a held-out accuracy), written beside the scores."""
        return {}

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def _check_fitted(self) -> None:
        if not any(k.endswith("_") for k in vars(self)):
            raise ThresherError(f"scorer {self.name} is not fitted; call fit(source, target) first")


def check_scores(name: str, scores: np.ndarray, n: int) -> np.ndarray:
    """Scores must be one finite float per source example; anything else is a clear error."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (n,):
        raise ThresherError(f"scorer {name} returned shape {scores.shape}, expected ({n},)")
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ThresherError(f"scorer {name} produced {int(bad.sum())} non-finite scores (NaN or inf)")
    return scores


def fold_ids(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A fold number in 0..k-1 for each of n examples (cross-fitting), fold sizes within 1, in random order."""
    return rng.permutation(np.arange(n) % k)


def side_features(side: Side, who: str, *, load: bool = True) -> Any:
    """The validated features of one side: non-empty, 2-D, finite (checked block by block when ``load`` is False).

    ``load=True`` returns a float32 ndarray (for the small side or when a model trains on it); ``load=False`` returns
    the original array-like untouched, for the pool, which is then read in blocks with ``iter_rows``.
    """
    if side.features is None:
        side.require_features(who)  # raises the standard message
    what = f"{side.name} features"
    n, _ = feature_shape(side.features, what)
    if n != len(side):
        raise ThresherError(f"{what} have {n} rows but {side.name} has {len(side)} examples")
    if not load:
        return side.features
    return load_rows(side.features, what)


def check_target(target: Side, who: str) -> None:
    if len(target) == 0:
        raise ThresherError(f"{who}: target {target.name!r} is empty; scoring needs at least one target example")
