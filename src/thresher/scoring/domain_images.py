"""The domain classifier on images (000, section 3): a small CNN trained end to end to tell source from target.

k-fold cross-fitting: the pool and the target are split into k folds; the model of fold f trains on the other folds
(classes balanced by example weights, both sides through the same augmentation, so resolution or compression alone
is a weaker cue) and scores only the held-out source fold, so no source image is scored by a model that saw it.
"""

from __future__ import annotations

import numpy as np

from ..config import DataConfig
from ..data.views import ConcatView
from ..train.config import LRScheduleConfig, OptimConfig, TrainConfig
from .balance import balanced_accuracy, balanced_weights
from .base import Side, fold_ids
from .proxies import sample_size

#: a fold model that starts from a pool model is fine-tuned at a fifth of the feature models' rate: measured on
#: tiny-imagenet vs cifar10 (seed 0), top-10% share of cifar-like classes 0.14 at the full rate 0.1, 0.22 at 0.02 and
#: 0.22 at 0.005 (held-out accuracy 0.62 -> 0.65): the full rate wipes out what the pool model learned
FINETUNE_LR_FACTOR = 0.2


def fit_domain_images(source: Side, target: Side, *, folds: int, epochs: int, seed: int, init=None,
                      lr: float | None = None, pool_sample: float = 1.0) -> dict:  # fmt: skip
    """Out-of-fold P(target) for every source example and the balanced held-out accuracy of the fold models.

    ``init``: None (each fold's CNN from scratch) or a function ``positions -> checkpoint`` giving a model trained on
    those source examples only (or on none: the target model); fold f starts from the model of the source folds
    other than f, so no source image is ever scored by a model that saw it, in any task. ``pool_sample`` (a fraction
    of the pool or a count) caps the pool images each fold trains on, drawn from its training folds: scoring
    proxies (issue 17) keep the folds cheap, and every held-out image is still scored. Trained from scratch on our
    small budget, with compression and colour cues randomised, the CNN barely learns the domains (held-out accuracy
    0.61 on tiny-imagenet vs cifar10, no enrichment); from a pool-trained model it separates them by content. See
    issue 3's closing notes. The fold models, their held-out embeddings and predictions are workspace artefacts:
    the score stage's ledger counts them in the method's cost.
    """
    ctx = source.context
    ws, train = ctx.workspace, ctx.models
    rng = np.random.default_rng(seed)
    fs, ft = fold_ids(len(source), folds, rng), fold_ids(len(target), folds, rng)
    oof = np.full(len(source), np.nan)
    accs, pool_images = [], []
    for f in range(folds):
        tr_s, tr_t = np.flatnonzero(fs != f), np.flatnonzero(ft != f)
        start = init(tr_s) if init else None  # a model that never saw source fold f
        k = sample_size(pool_sample, len(source), "domain-classifier pool_sample")
        if k < len(tr_s):  # a seeded sample of the training folds' pool images
            tr_s = np.sort(np.random.default_rng([seed, f]).choice(tr_s, k, replace=False))
        pool_images.append(int(len(tr_s)))
        view = ConcatView(
            [
                (source.dataset, source.indices[tr_s], np.zeros(len(tr_s))),
                (target.dataset, target.indices[tr_t], np.ones(len(tr_t))),
            ],
            prefixes=["source", "target"],
            classes=["source", "target"],
            spec=f"domain:{source.name}|{target.name}|fold {f + 1}/{folds}",
        )
        # each side carries half the total weight (000: classes balanced); mean weight 1 keeps the loss scale
        n = len(view)
        weights = balanced_weights(np.arange(n) >= len(tr_s))
        tcfg = TrainConfig(
            data=DataConfig(spec=view.spec),
            backbone=train.backbone,
            resolution=train.resolution,
            epochs=epochs,
            batch_size=train.batch_size,
            optim=OptimConfig(lr=lr or (train.lr * FINETUNE_LR_FACTOR if start else train.lr)),
            lr_schedule=LRScheduleConfig(),
            seed=seed + f,
            transform="domain",  # randomises compression and colour cues on both sides (000: guard the shortcut)
            init=str(start) if start else None,
            runtime=ctx.runtime,
        )
        ckpt = ws.model(f"domain-fold{f}", tcfg, view, np.arange(n), weights=weights).path
        ho_s, ho_t = np.flatnonzero(fs == f), np.flatnonzero(ft == f)
        held = ConcatView(
            [
                (source.dataset, source.indices[ho_s], np.zeros(len(ho_s))),
                (target.dataset, target.indices[ho_t], np.ones(len(ho_t))),
            ],
            prefixes=["source", "target"],
            spec=f"domain-heldout:{source.name}|{target.name}|fold {f + 1}/{folds}",
        )
        emb = ws.embeddings(held, np.arange(len(held)), backbone=train.backbone, checkpoint=ckpt,
                            resolution=train.resolution)  # fmt: skip
        logits = np.asarray(ws.head_outputs(ckpt, emb).value)  # computed in blocks, kept memory-mapped
        p = np.full(len(held), np.nan)  # rows of unreadable images stay NaN
        p[emb.value.indices] = np.exp(logits[:, 1] - np.logaddexp(logits[:, 0], logits[:, 1]))  # softmax P(target)
        oof[ho_s] = p[: len(ho_s)]
        seen = ~np.isnan(p)
        accs.append(balanced_accuracy(p[seen], (np.arange(len(held)) >= len(ho_s))[seen]))
    unreadable = int(np.isnan(oof).sum())
    return {
        "oof": np.nan_to_num(oof, nan=0.0),
        "heldout_accuracy": float(np.mean(accs)),
        "fold_accuracy": [float(a) for a in accs],
        "unreadable_scored_zero": unreadable,
        "fold_pool_images": pool_images,
    }
