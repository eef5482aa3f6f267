"""``thresher evaluate``: a protocol over seeds on a target's train/test split, written to ``metrics.json``.

Frozen features are computed once per (model, split) and cached; fine-tuning runs go through the one training loop
and are cached as run folders, so a killed evaluation resumes seed by seed. ``metrics.json`` holds every seed's top-1,
mean per-class accuracy, one-vs-rest AUROC and confusion matrix, their mean, standard deviation and 95% interval,
the hyper-parameters chosen (or the note that defaults were used), the cost of the evaluation and, read from the
run that produced the checkpoint, the cost of pre-training. ``predictions.npz`` keeps the test ids, labels and
every seed's probabilities for ``thresher compare``.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import atomic
from ..config import build_config
from ..data.loader import open_data
from ..embed import EmbeddingStore
from ..errors import ThresherError
from ..models import build_backbone
from ..models.checkpoint import (
    training_cost,
    write_checkpoint,
)
from ..runs import RunFolder
from ..train.config import TrainConfig
from ..workspace import Artefact, Cost, Workspace
from . import metrics as M
from .config import EvalConfig
from .dense import DenseProtocol, evaluate_dense
from .protocols import PROTOCOLS, Outcome, stratified_split
from .weights import evaluation_inputs, starting_weights

METRICS = "metrics.json"
#: per-seed entries that depend on the run's history (what was computed now or reused, and when), kept in the seed
#: files and summed into ``cost``, not listed with the seed's results
BOOKKEEPING = ("artefacts", "own_seconds")
PREDICTIONS = "predictions.npz"


class EvalContext:
    """What protocols share: the splits and their labels, and the workspace from which frozen features, fine-tuning
    runs and predictions come (computed once, shared with scoring and other evaluations, each with its cost)."""

    def __init__(self, cfg: EvalConfig, train: tuple, test: tuple | None, checkpoint: Path | None, backbone: str,
                 ws: Workspace):  # fmt: skip
        self.cfg, self.ws, self.log = cfg, ws, ws.log
        self.checkpoint, self.backbone = checkpoint, backbone
        self.train_ds, idx = train
        self.test_ds, tidx = test if test is not None else (None, np.zeros(0, np.int64))  # None: validation only
        self.multilabel = self.train_ds.multilabels is not None
        if self.multilabel:  # (n, classes) 0/1 targets; the int labels are not used
            self.train_idx, self.test_idx = idx, tidx
            self.train_targets = self.train_ds.multilabels[idx]
            self.test_targets = self.test_ds.multilabels[tidx] if test is not None else None
            self.train_labels = np.zeros(len(idx), np.int64)  # one stratum for the validation split
            self.test_labels = np.zeros(len(tidx), np.int64)
            self.num_classes = int(self.train_targets.shape[1])
        else:
            self.train_idx = idx[self.train_ds.labels[idx] >= 0]  # unlabeled training examples cannot be used
            self.test_idx = tidx
            self.train_labels = self.train_ds.labels[self.train_idx]
            self.test_labels = self.test_ds.labels[self.test_idx] if test is not None else np.zeros(0, np.int64)
            self.num_classes = int(max(self.train_ds.num_classes, self.train_labels.max() + 1))

    def train_positions(self) -> np.ndarray:
        return np.arange(len(self.train_idx))

    def _side(self, side: str) -> tuple[Any, np.ndarray]:
        if side == "train":
            return self.train_ds, self.train_idx
        if self.test_ds is None:
            raise RuntimeError("this evaluation context has no test split (validation only)")
        return self.test_ds, self.test_idx

    def _embed(self, side: str, checkpoint: Path | None, rows: np.ndarray | None) -> Artefact:
        ds, idx = self._side(side)
        idx = idx if rows is None else idx[rows]
        return self.ws.embeddings(ds, idx, backbone=self.backbone, checkpoint=checkpoint,
                                  resolution=self.cfg.resolution, seed=self.cfg.seed)  # fmt: skip

    def features(self, side: str) -> EmbeddingStore:
        """Frozen features of the whole split (the pre-trained, or randomly initialised, backbone), computed once."""
        return self._embed(side, self.checkpoint, None).value

    def predict(self, checkpoint: Path, side: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Logits of a fine-tuned model (its own head) on the split's rows."""
        return np.asarray(self.ws.head_outputs(checkpoint, self._embed(side, checkpoint, rows)).value)

    def finetune_run(self, rows: np.ndarray, lr: float, seed: int, head_init: dict | None = None) -> dict:
        """Fine-tune all layers on the training rows (the engine); returns the run's checkpoint and its cost."""
        fc = self.cfg.finetune
        init = str(self.checkpoint) if self.checkpoint else None
        if head_init is not None:  # LP-FT: a checkpoint holding the backbone and the probe's head
            init = str(self._head_checkpoint(head_init, seed))
        values = self.cfg.finetune_values(backbone=self.backbone, init=init, lr=lr, seed=seed)
        tcfg = build_config(TrainConfig, values={**values, "init_head": head_init is not None,
                                                 "transform": fc.transform, "crop_scale": fc.crop_scale})  # fmt: skip
        run = self.ws.model("finetune", tcfg, self.train_ds, self.train_idx[rows])
        return {"checkpoint": run.path, "cost": run.cost.as_dict()}

    def _head_checkpoint(self, head: dict, seed: int) -> Path:
        backbone = build_backbone(self.backbone, str(self.checkpoint) if self.checkpoint else None, self.cfg.seed)
        model = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
        model.update({f"head.{k}": v for k, v in head.items()})
        h = hashlib.sha256()
        for t in (head["weight"], head["bias"]):
            h.update(t.detach().cpu().numpy().tobytes())
        h.update(json.dumps([self.backbone, self.ws.digest(self.checkpoint) if self.checkpoint else None,
                             seed]).encode())  # fmt: skip
        path = self.ws.root / f"lpft-init-{h.hexdigest()[:16]}.pt"  # named by its content: never a stale reuse
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_checkpoint(path, backbone=self.backbone, model=model)
        return path


class HeldOut:
    """A protocol's view of a context in which a validation split carved from train (per class, seeded, as the
    protocols carve theirs) stands in for the test split: the probe trains on the rest and predicts only validation
    rows, so a choice made on it never reads the test split (001 section 3 selects the source on validation)."""

    def __init__(self, ctx: EvalContext, seed: int):
        self.ctx, self.cfg, self.multilabel, self.num_classes = ctx, ctx.cfg, ctx.multilabel, ctx.num_classes
        self.fit, self.val = stratified_split(ctx.train_labels, ctx.train_positions(), ctx.cfg.val_fraction, seed)
        if len(self.val) == 0:
            raise ThresherError(f"{ctx.cfg.train.spec} is too small to carve a validation split from")
        self.train_labels = ctx.train_labels
        self.test_labels = ctx.train_labels[self.val]
        if ctx.multilabel:
            self.train_targets, self.test_targets = ctx.train_targets, ctx.train_targets[self.val]

    def train_positions(self) -> np.ndarray:
        return self.fit

    def features(self, side: str):
        x = self.ctx.features("train")  # one cached embedding of the training split serves both parts
        return x if side == "train" else x.take(self.val)


def validation_metric(cfg: EvalConfig, *, log=print) -> dict:
    """The linear probe's primary metric (top-1, or macro AUROC) on a validation split carved from the training split,
    one value per seed (``values``), and what computing them cost (``cost``). The test split is not even opened: what
    is chosen on this is chosen before any test prediction. The features come from the workspace ``cfg.cache``, where
    a later evaluation of the same model and split finds them."""
    if cfg.protocol != "linear":
        raise ThresherError(f"validation ranking uses the linear protocol, not {cfg.protocol}")
    if not cfg.cache:
        raise ThresherError("validation_metric needs cfg.cache, the workspace its features go to")
    checkpoint, backbone, train, _ = _open(cfg, with_test=False)
    ws = Workspace(cfg.cache, runtime=cfg.runtime, log=log)
    protocol = PROTOCOLS.get(cfg.protocol)
    values, seeds = [], []
    t0 = time.perf_counter()
    with ws.ledger() as used:
        ctx = EvalContext(cfg, _readable(train, "train", ws, cfg.resolution), None, checkpoint, backbone, ws)
        for seed in range(cfg.seed, cfg.seed + cfg.seeds):
            torch.manual_seed(seed)
            view = HeldOut(ctx, seed)
            outcome = protocol(view, seed)
            doc = seed_metrics(outcome, view.test_labels, view.num_classes,
                               view.test_targets if view.multilabel else None)  # fmt: skip
            values.append(float(doc["auroc_macro" if ctx.multilabel else "top1"]))
    own = max(0.0, time.perf_counter() - t0 - used.paid_seconds)
    seeds.append({"artefacts": used.records(), "own_seconds": own})
    return {"values": values, "cost": evaluation_cost(seeds)}


def _open(cfg: EvalConfig, *, with_test: bool = True) -> tuple:
    """(checkpoint, backbone, train, test) of an evaluation, its splits checked; ``test`` is None unless asked."""
    checkpoint, backbone = starting_weights(cfg)
    train = open_data(cfg.train)
    test = open_data(cfg.test) if with_test else None
    _check_splits(cfg, train, test)
    return checkpoint, backbone, train, test


def _check_splits(cfg: EvalConfig, train: tuple, test: tuple | None) -> None:
    tr_ds, tr_idx = train
    te_ds, te_idx = test if test is not None else (tr_ds, None)  # validation only: the test checks do not apply
    if (tr_ds.multilabels is None) != (te_ds.multilabels is None):
        raise ThresherError(f"{cfg.train.spec} and {cfg.test.spec}: one is multi-label and the other is not")
    if tr_ds.multilabels is not None:
        if tr_ds.multilabels.shape[1] != te_ds.multilabels.shape[1]:
            raise ThresherError("the training and test splits have different numbers of multi-label classes")
        if len(tr_idx) == 0 or (te_idx is not None and len(te_idx) == 0):
            raise ThresherError("the training and test splits must both be non-empty")
        if cfg.protocol != "linear":
            raise ThresherError(f"multi-label targets support the linear protocol (macro AUROC), not {cfg.protocol}")
        return
    if not (tr_ds.labels[tr_idx] >= 0).any():
        raise ThresherError(f"the training split {cfg.train.spec} has no labels; evaluation needs a labeled target")
    if te_idx is None:
        return
    if len(te_idx) == 0 or (te_ds.labels[te_idx] < 0).any():
        raise ThresherError(f"the test split {cfg.test.spec} must be non-empty and fully labeled")
    known = int(tr_ds.labels[tr_idx].max()) + 1
    if int(te_ds.labels[te_idx].max()) >= max(known, tr_ds.num_classes):
        raise ThresherError(f"{cfg.test.spec} has labels the training split {cfg.train.spec} never shows")
    if set(tr_ds.ids[tr_idx]) & set(te_ds.ids[te_idx]) and tr_ds.source == te_ds.source:
        raise ThresherError("the training and test splits share examples; give disjoint splits")


def seed_metrics(outcome: Outcome, labels: np.ndarray, num_classes: int, targets: np.ndarray | None = None) -> dict:
    if targets is not None:  # multi-label: one-vs-rest AUROC, macro over classes (001)
        return {
            "auroc_macro": M.macro_auroc(targets, outcome.probs),
            "hparams": outcome.hparams,
            "tuned": outcome.tuned,
            "note": outcome.note,
            "cost": {k: float(v) for k, v in outcome.cost.items()},
        }
    pred = outcome.probs.argmax(1)
    onehot = np.eye(num_classes)[labels]
    return {
        "top1": M.top1(labels, pred),
        "mean_per_class": M.mean_per_class_accuracy(labels, pred),
        "auroc_ovr": _auroc_or_none(onehot, outcome.probs),
        "confusion": M.confusion_matrix(labels, pred, num_classes).tolist(),
        "hparams": outcome.hparams,
        "tuned": outcome.tuned,
        "note": outcome.note,
        "cost": {k: float(v) for k, v in outcome.cost.items()},
    }


def _readable(split: tuple, name: str, ws: Workspace, size: int) -> tuple:
    """The split as (dataset, indices) of its readable images, decoded once at the evaluation resolution."""
    ds, idx = split
    dec, rows, ok = ws.decoded(ds, idx, size)
    if not ok.all():
        ws.log(f"warning: {int((~ok).sum())} unreadable {name} image(s) of {ds.spec} left out of the evaluation "
               f"(first: {', '.join(map(str, ds.ids[idx[~ok][:5]]))})")  # fmt: skip
    if not ok.any():
        raise ThresherError(f"no image of the {name} split {ds.spec} can be read")
    return dec, rows[ok]


def evaluation_cost(per_seed: list[dict]) -> dict:
    """What the evaluation cost over all its seeds, as if it ran alone: every artefact it used once (features shared
    by the seeds count once), plus each seed's own work (probe fitting, bookkeeping)."""
    records: dict[str, dict] = {}
    for doc in per_seed:
        for art in doc.get("artefacts", []):
            records.setdefault(art["key"], art)  # the first seed to use it says whether this evaluation made it
    used = {k: Cost.from_record(r["cost"], r["cost"].get("kind", "forward"), reused=r["reused"])
            for k, r in records.items()}  # fmt: skip
    own = sum(float(d.get("own_seconds", d.get("cost", {}).get("seconds", 0.0))) for d in per_seed)
    total = Cost.total(used.values()) + Cost(seconds=own, kind="own")
    forward = sum(c.images for c in used.values() if c.kind == "forward")
    return {**total.as_dict(), "forward_images": forward, "reused_artefacts": sum(c.reused for c in used.values()),
            "artefacts": list(records.values())}  # fmt: skip


def _auroc_or_none(onehot: np.ndarray, probs: np.ndarray) -> float | None:
    """One-vs-rest macro AUROC, or None when no class has both positive and negative test examples."""
    try:
        return M.macro_auroc(onehot, probs)
    except ThresherError:
        return None


def evaluate(cfg: EvalConfig, out: str | Path, *, force: bool = False, log=print) -> dict:
    """Run (or resume) an evaluation into ``out``; returns the metrics document."""
    protocol = PROTOCOLS.get(cfg.protocol)
    if isinstance(protocol, DenseProtocol):  # detection and segmentation score boxes and masks, not class scores
        return evaluate_dense(cfg, protocol, out, force=force, log=log)
    checkpoint, backbone, train, test = _open(cfg)
    inputs = evaluation_inputs(train, test, checkpoint)
    # the cache (features, fine-tuning runs) is keyed by its own inputs: --force keeps it
    with RunFolder(out, "evaluate", cfg, force=force, inputs=inputs, keep=("cache",)) as run:
        ws = Workspace(Path(cfg.cache) if cfg.cache else run.path / "cache", runtime=cfg.runtime, log=log)
        # one decoding pass per split (none for array datasets): unreadable images are left out, with a warning, and
        # every later pass (features, fine-tuning epochs, predictions) reads decoded pixels
        train, test = (_readable(split, name, ws, cfg.resolution) for split, name in ((train, "train"), (test, "test")))
        ctx = EvalContext(cfg, train, test, checkpoint, backbone, ws)
        parts = run.file(".seeds")
        parts.mkdir(exist_ok=True)
        per_seed, probs = [], []
        seeds = cfg.seeds if getattr(protocol, "seeded", True) else 1  # zero-shot: every seed the same
        if seeds < cfg.seeds:
            log(f"{cfg.protocol} does not depend on the seed: evaluated once, not {cfg.seeds} times")
        for seed in range(cfg.seed, cfg.seed + seeds):
            doc_file, probs_file = parts / f"{seed}.json", parts / f"{seed}.npy"
            if doc_file.is_file() and probs_file.is_file():
                per_seed.append(atomic.read_json(doc_file, fix=f"delete it to evaluate seed {seed} again"))
                probs.append(np.load(probs_file))
                continue
            torch.manual_seed(seed)
            t0 = time.perf_counter()
            with ws.ledger() as used:  # features, fine-tuning runs and predictions this seed needed
                outcome = protocol(ctx, seed)
            own = max(0.0, time.perf_counter() - t0 - used.paid_seconds)
            targets = ctx.test_targets if ctx.multilabel else None
            doc = {"seed": seed, **seed_metrics(outcome, ctx.test_labels, ctx.num_classes, targets),
                   "own_seconds": round(own, 3), "artefacts": used.records()}  # fmt: skip
            atomic.save_npy(probs_file, outcome.probs.astype(np.float32))
            atomic.write_json(doc_file, doc)
            per_seed.append(doc)
            probs.append(outcome.probs.astype(np.float32))
            primary = "auroc_macro" if ctx.multilabel else "top1"
            log(f"{cfg.protocol} seed {seed}: {primary} {doc[primary]:.4f} ({'tuned' if doc['tuned'] else 'defaults'})")
        cost_eval = evaluation_cost(per_seed)
        doc = {
            "protocol": cfg.protocol,
            "model": {
                "checkpoint": str(checkpoint) if checkpoint else None,
                "backbone": backbone,
                "random_init": cfg.random_init,
                "encoder": cfg.encoder,
                "resolution": cfg.resolution,
                "seed": cfg.seed,  # the random-init baseline's weights
            },
            "target": {"train": cfg.train.spec, "test": cfg.test.spec, "classes": ctx.num_classes},
            "test_identity": inputs["test"],
            "primary": "auroc_macro" if ctx.multilabel else "top1",
            "summary": {
                m: M.summarize([d[m] for d in per_seed])
                for m in (("auroc_macro",) if ctx.multilabel else ("top1", "mean_per_class", "auroc_ovr"))
                if all(d[m] is not None for d in per_seed)
            },
            "seeds": [{k: v for k, v in d.items() if k not in BOOKKEEPING} for d in per_seed],
            "tuned": all(d["tuned"] for d in per_seed),
            "cost": {"evaluation": cost_eval, "pretraining": training_cost(checkpoint, cfg.checkpoint)},
        }
        test_ds, test_idx = test

        def write_predictions(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a path
                labels = ctx.test_targets if ctx.multilabel else ctx.test_labels
                np.savez(f, ids=test_ds.ids[test_idx].astype(str), labels=labels, probs=np.stack(probs))

        atomic.write_with(run.file(PREDICTIONS), write_predictions)
        atomic.write_json(run.file(METRICS), doc)
        return doc
