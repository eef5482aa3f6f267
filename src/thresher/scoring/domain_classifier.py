"""``domain-classifier`` (000): a binary source(0)-vs-target(1) classifier; a source example scores P(target).

Embedding mode (here): a logistic or small-MLP head on features. Classes are balanced by per-example weights (each
side carries the same total weight), and every source example of the fitted pool is scored OUT OF FOLD: k stratified
folds over both sides, fold f's model trains on the other folds and scores only fold f. The held-out balanced
accuracy is reported; near-perfect separation suggests low-level shortcuts (resolution, compression) and is warned
about. The image mode (a CNN per fold trained end to end on pixels, as in 000) is trained by ``domain_images``; it
needs the sides' datasets, which ``thresher score`` provides.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import ThresherError
from ..ops.linear import LinearModel, fit_linear
from ..ops.neighbors import check_dims, check_k, feature_shape, iter_rows
from .balance import balanced_accuracy, balanced_weights
from .base import Scorer, Side, check_target, fold_ids, side_features
from .proxies import FOLD_INITS, sample_size
from .registry import SCORERS

HEADS = ("logistic", "mlp")
MODES = ("auto", "embedding", "image")
DEFAULT_L2_LOGISTIC = 1e-4  # l2 = None picks these (penalty 0.5 * l2 * ||W||^2 on the mean loss, standardised inputs)
DEFAULT_L2_MLP = 1e-1  # measured on synthetic pools: 1e-4 lets the MLP memorise, and its out-of-fold ranking suffers
SEPARATION_WARNING = (
    "near-perfect separation: the classifier may use low-level shortcuts such as resolution or compression; "
    "its ranking within the pool may still be useful but check the top images"
)


def fold_start(init: str, pool_labeled: bool, target_labeled: bool) -> str:
    """What the fold CNNs start from, given which sides have labels (shared with the dry-run estimate)."""
    if init == "source-model" and not pool_labeled:
        return "target-model" if target_labeled else "none"
    if init == "target-model" and not target_labeled:
        return "source-model" if pool_labeled else "none"
    return init


#: how, for each start, no pool image is scored by a model that trained on it (written in the report)
OUT_OF_FOLD = {
    "target-model": "fold CNNs start from the target model (trained on target images only) and train on pool images "
    "of the other folds; each scores only its held-out fold",
    "source-model": "fold CNNs start from a pool model trained on the other folds only and train on pool images of "
    "the other folds; each scores only its held-out fold",
    "none": "fold CNNs start from random weights and train on pool images of the other folds; each scores only its "
    "held-out fold",
}


class _Stacked:
    """Source rows then target rows, indexable by row-index arrays like one array, without concatenating them."""

    def __init__(self, first, second):
        self.first, self.second = first, second
        self.n_first = feature_shape(first)[0]
        self.shape = (self.n_first + len(second), feature_shape(first)[1])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx) -> np.ndarray:
        idx = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx, dtype=np.int64)
        out = np.empty((len(idx), self.shape[1]), dtype=np.float32)
        lo = idx < self.n_first
        if lo.any():
            out[lo] = self.first[idx[lo]]
        if not lo.all():
            out[~lo] = self.second[idx[~lo] - self.n_first]
        return out


def _p_target(model: LinearModel, x, idx: np.ndarray, block: int = 65536) -> np.ndarray:
    """P(target) of rows ``idx`` of ``x``, gathered one block at a time."""
    out = np.empty(len(idx), dtype=np.float64)
    for s in range(0, len(idx), block):
        out[s : s + block] = model.predict_proba(np.asarray(x[idx[s : s + block]], dtype=np.float32))[:, 1]
    return out


@SCORERS.register("domain-classifier")
class DomainClassifier(Scorer):
    """000: score = out-of-fold P(target) from a balanced source-vs-target classifier on embeddings."""

    name = "domain-classifier"
    features_from = "source-model"

    @property
    def uses(self) -> str:  # type: ignore[override]
        return "images" if self.mode == "image" else "features"

    def resolve_inputs(self, features_given: bool) -> None:
        """``auto``: on given embeddings when --features is given, else on images, as 000 trained it."""
        if self.mode == "auto":
            self.mode = "embedding" if features_given else "image"

    def __init__(
        self,
        mode: str = "auto",
        head: str = "logistic",
        folds: int | None = None,
        seed: int = 0,
        hidden: int = 64,
        l2: float | None = None,
        max_iter: int = 100,
        epochs: int = 4,
        init: str | None = None,
        lr: float | None = None,
        pool_sample: float | None = None,
    ):
        self.mode = mode
        self.head = head
        self.folds = folds
        self.seed = seed
        self.hidden = hidden
        self.l2 = l2
        self.max_iter = max_iter
        self.epochs = epochs  # image mode only: CNN training epochs per fold
        # image mode: "source-model" (a pool model that never saw the fold; the target model on an unlabeled pool),
        # "target-model" (trained on the target only) or "none"; None: the score run's models.fold_init
        self.init = init
        self.lr = lr  # image mode: learning rate (default: a fifth of the feature models' rate from a pool model)
        # image mode: pool examples each fold CNN trains on, a fraction or a count of the pool (drawn from the other
        # folds); None: the score run's models.fold_pool_sample
        self.pool_sample = pool_sample

    def fit(self, source: Side, target: Side) -> DomainClassifier:
        if self.mode not in MODES:
            raise ThresherError(f"domain-classifier mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.head not in HEADS:
            raise ThresherError(f"domain-classifier head must be one of {', '.join(HEADS)}, got {self.head!r}")
        # default folds: 5 on embeddings (cheap), 2 on images (a CNN each; from source-model also a pool model each,
        # trained on the other folds: k folds cost k - 1 pool trainings)
        folds = check_k(
            self.folds if self.folds is not None else (2 if self.mode == "image" else 5), self.name, "folds"
        )
        if folds < 2:
            raise ThresherError(f"domain-classifier needs folds >= 2 for out-of-fold scores, got {folds}")
        check_target(target, self.name)
        if len(source) < 2 or len(target) < 2:
            raise ThresherError("domain-classifier needs at least 2 source and 2 target examples for cross-fitting")
        if self.mode == "auto":  # used directly, without the pipeline: images if there are no features
            self.resolve_inputs(features_given=source.features is not None)
        if self.mode == "image":
            return self._fit_images(source, target, min(folds, len(source), len(target)))
        xs = side_features(source, self.name, load=False)  # the pool stays where it is (e.g. memory-mapped)
        xt = side_features(target, self.name)
        n_s, n_t = len(source), len(target)
        check_dims(feature_shape(xs)[1], xt.shape[1], self.name)
        for _ in iter_rows(xs, 65536, f"{source.name} features"):  # finite, checked block by block
            pass
        both = _Stacked(xs, xt)  # rows [0, n_s) are the source, [n_s, n_s + n_t) the target; nothing is copied
        folds = min(folds, n_s, n_t)
        rng = np.random.default_rng(self.seed)
        self.source_fold_ = fold_ids(n_s, folds, rng)
        self.target_fold_ = fold_ids(n_t, folds, rng)
        hidden = self.hidden if self.head == "mlp" else 0
        # the MLP memorises its training pool at a weak penalty, which makes held-out P(target) noisy: regularise more
        self.l2_ = float(self.l2) if self.l2 is not None else (DEFAULT_L2_MLP if hidden else DEFAULT_L2_LOGISTIC)
        self.models_: list[LinearModel] = []
        self.own_flops_ = 0.0
        self.oof_scores_ = np.full(n_s, np.nan)
        self.fold_accuracies_: list[float] = []
        for f in range(folds):
            s_tr, t_tr = np.flatnonzero(self.source_fold_ != f), np.flatnonzero(self.target_fold_ != f)
            rows = np.concatenate([s_tr, n_s + t_tr])
            y = np.concatenate([np.zeros(len(s_tr), np.int64), np.ones(len(t_tr), np.int64)])
            model = fit_linear(
                both, y, 2, rows=rows, weights=balanced_weights(y == 1), l2=self.l2_, hidden=hidden,
                max_iter=self.max_iter, seed=self.seed + f, what="domain-classifier features",
            )  # fmt: skip
            s_held = np.flatnonzero(self.source_fold_ == f)
            p_s = _p_target(model, xs, s_held)
            p_t = _p_target(model, xt, np.flatnonzero(self.target_fold_ == f))
            self.oof_scores_[s_held] = p_s
            held = np.concatenate([np.zeros(len(p_s), bool), np.ones(len(p_t), bool)])
            self.fold_accuracies_.append(balanced_accuracy(np.concatenate([p_s, p_t]), held))
            self.models_.append(model)
            self.own_flops_ += model.flops
        self.heldout_accuracy_ = float(np.mean(self.fold_accuracies_))
        self.source_ids_ = np.asarray(source.ids).copy()
        if self.heldout_accuracy_ >= 0.99:
            warnings.warn(f"domain-classifier: {SEPARATION_WARNING}", stacklevel=2)
        return self

    def plan_work(self, plan) -> None:
        """Image mode: the start model, and per fold a CNN on its pool sample and training target images, then a
        pass over its held-out images (``fit_domain_images``)."""
        if self.mode != "image":
            return super().plan_work(plan)
        m = plan.models
        n_s, n_t = plan.n_source, plan.n_target
        folds = min(self.folds or 2, n_s, n_t)
        init = fold_start(self.init or m.fold_init, plan.source_labeled, plan.target_labeled)
        k = min(sample_size(self.pool_sample or m.fold_pool_sample, n_s, "pool_sample"), n_s * (folds - 1) // folds)
        if init == "target-model":
            plan.model("target-model")
        if init == "source-model" and m.source_init == "target-model" and plan.target_labeled:
            plan.model("target-model")  # the pool models of the folds start from it
        for f in range(folds):
            if init == "source-model":
                plan.train(f"source-model-part (fold {f + 1})", n_s * (folds - 1) // folds, m.source_epochs)
            plan.train(f"domain fold {f + 1}", k + n_t * (folds - 1) // folds, self.epochs)
            plan.forward(f"domain fold {f + 1} held out", (n_s + n_t) / folds, m.resolution)

    def _fit_images(self, source: Side, target: Side, folds: int) -> DomainClassifier:
        """000's setting: a CNN per fold on pixels, trained by ``domain_images`` (which needs the sides' datasets)."""
        if source.dataset is None or target.dataset is None or source.context is None:
            raise ThresherError(
                "domain-classifier mode 'image' needs the images of both sides; run it via thresher score"
            )
        from .domain_images import fit_domain_images  # the training stack, imported only when used

        if self.init is not None and self.init not in FOLD_INITS:
            raise ThresherError(f"domain-classifier init must be one of {', '.join(FOLD_INITS)}, got {self.init!r}")
        ctx = source.context  # the score stage's workspace and default models
        self.init_ = self._start(source, target, self.init or ctx.models.fold_init)
        self.pool_sample_ = self.pool_sample if self.pool_sample is not None else ctx.models.fold_pool_sample
        if not self.pool_sample_ > 0:
            raise ThresherError(f"domain-classifier pool_sample must be > 0, got {self.pool_sample_!r}")
        init = None
        if self.init_ == "source-model":  # fold f starts from a pool model trained without source fold f
            init = lambda pos: ctx.default_model("source-model", pos)  # noqa: E731
        elif self.init_ == "target-model":  # trained on the target only: it never saw a pool image
            init = lambda pos: ctx.default_model("target-model")  # noqa: E731
        epochs = check_k(self.epochs, self.name, "epochs")
        res = fit_domain_images(source, target, folds=folds, epochs=epochs, init=init, seed=self.seed, lr=self.lr,
                                pool_sample=self.pool_sample_)  # fmt: skip
        self.fold_pool_images_ = res["fold_pool_images"]
        self.models_ = []  # the CNN checkpoints live in the pipeline's cache; a new pool cannot be scored here
        self.oof_scores_ = np.asarray(res["oof"], dtype=np.float64)
        self.fold_accuracies_ = [float(a) for a in res["fold_accuracy"]]
        self.heldout_accuracy_ = float(res["heldout_accuracy"])
        self.unreadable_scored_zero_ = int(res.get("unreadable_scored_zero", 0))
        self.source_ids_ = np.asarray(source.ids).copy()
        self.l2_ = None
        if self.heldout_accuracy_ >= 0.99:
            warnings.warn(f"domain-classifier: {SEPARATION_WARNING}", stacklevel=3)
        return self

    @staticmethod
    def _start(source: Side, target: Side, init: str) -> str:
        """The model the fold CNNs start from. 000's method needs no labels: a start model trained on labels one side
        lacks gives way to the other side's model (the target model on an unlabeled pool, a pool model on an
        unlabeled target), else to no model at all."""
        return fold_start(init, bool((source.labels >= 0).any()), bool((target.labels >= 0).any()))

    def score(self, source: Side) -> np.ndarray:
        self._check_fitted()
        if len(source) == len(self.source_ids_) and np.array_equal(np.asarray(source.ids), self.source_ids_):
            return self.oof_scores_.copy()
        if not self.models_:
            raise ThresherError("domain-classifier in image mode scores only the pool it was fitted on; refit")
        feats = side_features(source, self.name, load=False)
        out = np.zeros(len(source), dtype=np.float64)
        for model in self.models_:
            out += model.predict_proba(feats)[:, 1]
        return out / len(self.models_)

    def report(self) -> dict:
        rep: dict = {"mode": self.mode, "head": self.head, "folds": self.folds}
        if hasattr(self, "heldout_accuracy_"):
            rep["folds"] = len(self.fold_accuracies_)
            if self.mode == "embedding":
                rep["l2"] = self.l2_
            else:
                rep["init"] = self.init_  # the model the fold CNNs started from
                rep["pool_sample"] = self.pool_sample_
                rep["fold_pool_images"] = self.fold_pool_images_
                rep["out_of_fold"] = OUT_OF_FOLD[self.init_]
                rep["unreadable_scored_zero"] = self.unreadable_scored_zero_
            rep["heldout_accuracy"] = round(self.heldout_accuracy_, 6)  # balanced: mean of the per-side accuracies
            rep["fold_accuracies"] = [round(a, 6) for a in self.fold_accuracies_]
            if self.heldout_accuracy_ >= 0.99:
                rep["warning"] = SEPARATION_WARNING
        return rep
