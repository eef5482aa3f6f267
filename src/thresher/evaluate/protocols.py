"""Transfer protocols (000, 001, 002, 004): ``linear``, ``finetune``, ``fewshot`` and ``lpft``, one function each.

A protocol gets the evaluation context and a seed and returns the test-set class probabilities, the hyper-parameters
it used and what it cost. Hyper-parameters are chosen on a validation split carved from the training split (per
class, seeded); the test split is only ever predicted, after the choice. When the validation split would hold fewer
than ``min_val_per_class`` examples of some class (a few shots), the documented fixed defaults are used and the result
says so. Every arm of a comparison gets the same grids, hence the same tuning budget. A protocol whose result cannot
depend on the seed says so with ``seeded = False`` (zero-shot) and is evaluated once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..registry import Registry

#: the classification protocols register below; the dense ones in ``dense.py``, zero-shot in ``zeroshot.py``
PROTOCOLS: Registry = Registry("evaluation protocol", roster="thresher.evaluate.roster")


@dataclass
class Outcome:
    """What one protocol run produced on the test split."""

    probs: np.ndarray  # (n_test, classes) float64
    hparams: dict[str, Any]
    tuned: bool  # chosen on validation (True) or fixed defaults (False)
    cost: dict[str, float] = field(default_factory=dict)
    note: str = ""
    model: Any = None  # the fitted probe (linear), reused by LP-FT; never serialised


def stratified_split(labels: np.ndarray, positions: np.ndarray, fraction: float, seed: int) -> tuple:
    """(fit, val) positions: ``fraction`` of each class (at least one when the class has two or more) to val."""
    if len(positions) == 0:
        from ..errors import ThresherError

        raise ThresherError("no labeled training examples to split")
    rng = np.random.default_rng([seed, 0x5A1])
    fit, val = [], []
    for c in np.unique(labels[positions]):
        members = rng.permutation(positions[labels[positions] == c])
        k = int(round(fraction * len(members)))
        k = min(max(k, 1 if len(members) >= 2 else 0), len(members) - 1)
        val.append(members[:k])
        fit.append(members[k:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(val))


def fewshot_draw(
    labels: np.ndarray, *, total: int | None = None, per_class: int | None = None, seed: int
) -> np.ndarray:
    """Positions of a few-shot training set: ``total`` labels with every class at least once (001), or
    ``per_class`` labels of every class (002); classes with fewer examples give all they have."""
    from ..errors import ThresherError

    if (total is None) == (per_class is None) or (total or per_class) < 1:
        raise ThresherError("a few-shot draw needs exactly one of total >= 1 or per_class >= 1")
    rng = np.random.default_rng([seed, 0xF5])
    labeled = np.flatnonzero(labels >= 0)
    classes = np.unique(labels[labeled])
    if per_class is not None:
        picks = [rng.permutation(labeled[labels[labeled] == c])[:per_class] for c in classes]
        return np.sort(np.concatenate(picks))
    if total < len(classes):
        raise ThresherError(f"--shots {total} is fewer than the {len(classes)} classes; every class needs a label")
    if total > len(labeled):
        raise ThresherError(f"--shots {total} is more than the {len(labeled)} labeled training examples")
    first = np.array([rng.choice(labeled[labels[labeled] == c]) for c in classes])
    rest = rng.permutation(np.setdiff1d(labeled, first))[: total - len(first)]
    return np.sort(np.concatenate([first, rest]))


def _choose(ctx, positions: np.ndarray, seed: int, grid: list, train_and_score) -> tuple[Any, bool, np.ndarray, dict]:
    """Try every grid value on the validation split; returns (best value, tuned, fit positions, val accuracies)."""
    fit, val = stratified_split(ctx.train_labels, positions, ctx.cfg.val_fraction, seed)
    per_class = np.bincount(ctx.train_labels[val], minlength=ctx.num_classes)[np.unique(ctx.train_labels[positions])]
    if len(val) == 0 or per_class.min() < ctx.cfg.min_val_per_class:
        return None, False, positions, {}
    scores = {value: train_and_score(fit, val, value) for value in grid}
    best = max(grid, key=lambda v: (scores[v], -grid.index(v)))  # ties: the first (smallest) grid value
    return best, True, fit, {str(k): round(v, 6) for k, v in scores.items()}


# --- linear -------------------------------------------------------------------------------------------------------
def linear_probe(ctx, seed: int, positions: np.ndarray | None = None) -> Outcome:
    """Softmax regression on frozen features, L2 chosen on validation, refit on all training positions."""
    from ..ops.linear import fit_linear

    if getattr(ctx, "multilabel", False):
        return _linear_multilabel(ctx, seed, positions)
    lc = ctx.cfg.linear
    positions = ctx.train_positions() if positions is None else positions
    xtr, xte = ctx.features("train"), ctx.features("test")  # cached; their cost is the context's
    t0 = time.perf_counter()
    y = ctx.train_labels

    def fit(rows, l2):
        return fit_linear(
            xtr, y[rows], ctx.num_classes, rows=rows, l2=l2, max_iter=lc.max_iter, seed=seed, what="train features"
        )

    def val_accuracy(fit_rows, val_rows, l2):
        model = fit(fit_rows, l2)
        return float((model.logits(xtr[val_rows]).argmax(1) == y[val_rows]).mean())

    best, tuned, _, val_scores = _choose(ctx, positions, seed, lc.l2_grid, val_accuracy)
    l2 = best if tuned else lc.default_l2
    model = fit(positions, l2)  # refit on every training position once the penalty is chosen
    probs = model.predict_proba(xte)
    return Outcome(
        probs=probs,
        hparams={"l2": l2, "validation_accuracy": val_scores, "train_examples": len(positions)},
        tuned=tuned,
        cost={"seconds": time.perf_counter() - t0, "images": 0},
        note="" if tuned else "validation split too small: fixed default l2",
        model=model,
    )


PROTOCOLS.register("linear")(linear_probe)


def _linear_multilabel(ctx, seed: int, positions: np.ndarray | None) -> Outcome:
    """Multi-label targets (001's AUROC setting): one binary logistic probe per class on the frozen features, one
    L2 penalty for all chosen on validation by macro AUROC; a class constant in training predicts its frequency."""
    from ..ops.linear import fit_linear
    from .metrics import macro_auroc

    lc = ctx.cfg.linear
    positions = ctx.train_positions() if positions is None else positions
    xtr, xte = ctx.features("train"), ctx.features("test")
    t0 = time.perf_counter()
    y = ctx.train_targets

    def fit_predict(rows, l2, x, predict_rows=None):
        out = np.empty((len(predict_rows) if predict_rows is not None else len(x), y.shape[1]))
        for c in range(y.shape[1]):
            yc = y[rows, c].astype(np.int64)
            if yc.min() == yc.max():
                out[:, c] = float(yc[0])
                continue
            m = fit_linear(xtr, yc, 2, rows=rows, l2=l2, max_iter=lc.max_iter, seed=seed, what="train features")
            out[:, c] = m.predict_proba(x if predict_rows is None else x[predict_rows])[:, 1]
        return out

    fit_rows, val_rows = stratified_split(ctx.train_labels, positions, ctx.cfg.val_fraction, seed)
    pos_val = y[val_rows].sum(0) if len(val_rows) else np.zeros(y.shape[1])
    tuned = len(val_rows) > 0 and min(pos_val.min(), (len(val_rows) - pos_val).min()) >= ctx.cfg.min_val_per_class
    val_scores = {}
    if tuned:
        for l2 in lc.l2_grid:
            val_scores[str(l2)] = round(macro_auroc(y[val_rows], fit_predict(fit_rows, l2, xtr, val_rows)), 6)
        l2 = max(lc.l2_grid, key=lambda v: (val_scores[str(v)], -lc.l2_grid.index(v)))
    else:
        l2 = lc.default_l2
    probs = fit_predict(positions, l2, xte)
    return Outcome(
        probs=probs,
        hparams={"l2": l2, "validation_auroc": val_scores, "train_examples": len(positions)},
        tuned=tuned,
        cost={"seconds": time.perf_counter() - t0, "images": 0},
        note="" if tuned else "validation split too small: fixed default l2",
    )


# --- fine-tuning ---------------------------------------------------------------------------------------------------
def finetune(ctx, seed: int, positions: np.ndarray | None = None, head_init: dict | None = None) -> Outcome:
    """All layers and a new linear head trained through the one loop; learning rate chosen on validation. The chosen
    run (trained without the validation split) is the one evaluated on test."""
    fc = ctx.cfg.finetune
    positions = ctx.train_positions() if positions is None else positions
    runs: dict[float, dict] = {}

    def train(rows, lr):
        if lr not in runs:
            runs[lr] = ctx.finetune_run(rows, lr, seed, head_init=head_init)
        return runs[lr]

    def val_accuracy(fit_rows, val_rows, lr):
        run = train(fit_rows, lr)
        logits = ctx.predict(run["checkpoint"], "train", val_rows)
        return float((logits.argmax(1) == ctx.train_labels[val_rows]).mean())

    best, tuned, fit_rows, val_scores = _choose(ctx, positions, seed, fc.lr_grid, val_accuracy)
    lr = best if tuned else fc.default_lr
    run = train(fit_rows, lr)
    logits = ctx.predict(run["checkpoint"], "test")
    cost = {key: sum(r["cost"][key] for r in runs.values()) for key in ("images", "seconds", "flops")}
    return Outcome(
        probs=_softmax(logits),
        hparams={"lr": lr, "epochs": fc.epochs, "validation_accuracy": val_scores, "train_examples": len(fit_rows)},
        tuned=tuned,
        cost=cost,
        note="" if tuned else "validation split too small: fixed default learning rate",
    )


PROTOCOLS.register("finetune")(finetune)


# --- few-shot and LP-FT -----------------------------------------------------------------------------------------------
@PROTOCOLS.register("fewshot")
def fewshot(ctx, seed: int) -> Outcome:
    """A seeded few-shot draw of the training split (001: N labels, every class once; 002: k per class), then the
    linear probe or fine-tuning on it."""
    cfg = ctx.cfg
    shots = fewshot_draw(ctx.train_labels, total=cfg.shots, per_class=cfg.shots_per_class, seed=seed)
    inner = linear_probe if cfg.fewshot_protocol == "linear" else finetune
    out = inner(ctx, seed, positions=shots)
    out.hparams["shots"] = len(shots)
    return out


@PROTOCOLS.register("lpft")
def lpft(ctx, seed: int) -> Outcome:
    """LP-FT (002 appendix E): the linear probe first, then fine-tuning of every layer starting from its head."""
    positions = ctx.train_positions()
    # the probe never sees the validation split on which fine-tuning's rate is then chosen (finetune carves the
    # same seeded split of the same positions)
    fit_rows, _ = stratified_split(ctx.train_labels, positions, ctx.cfg.val_fraction, seed)
    probe = linear_probe(ctx, seed, fit_rows)
    model = probe.model
    # the probe works on standardised features z = (x - mean) / scale: fold that into the head's weights
    layer = model.module if hasattr(model.module, "weight") else model.module[-1]
    w = layer.weight.detach().double() / model.scale.double()
    b = layer.bias.detach().double() - w @ model.mean.double()
    head = {"weight": w.float(), "bias": b.float()}
    ft = finetune(ctx, seed, positions, head_init=head)
    ft.hparams = {"probe_l2": probe.hparams["l2"], **ft.hparams}
    ft.cost = {k: ft.cost.get(k, 0) + probe.cost.get(k, 0) for k in ("images", "seconds", "flops")}
    ft.tuned = ft.tuned and probe.tuned
    return ft


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)
