"""Dense evaluation protocols (issue 20): ``detection`` (Faster R-CNN), ``instance-segmentation`` (Mask R-CNN) and
``segmentation`` (an FCN head), each fine-tuning the whole model from a checkpoint (or random init) through the one
training loop.

Per seed: the learning rate is chosen on a validation split of the training images (carved at random, seeded), by
the protocol's primary metric (box AP, mask AP, mIoU); the run trained without that split at the chosen rate is the
one that predicts the test split, only after the choice (000, 001). The metrics (``dense_metrics``) are reported per
seed with their mean, standard deviation and median over seeds (001 reports the median of three runs), next to the
cost of every fine-tuning run and prediction pass. Images and targets are evaluated at the evaluation's resolution
(``to_square``'s geometry for both).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import atomic
from ..config import build_config
from ..data.dense import DenseDataset, area_ranges, square_target
from ..data.loader import open_data
from ..data.transforms import build_transform
from ..errors import ThresherError
from ..models import build_backbone
from ..models.checkpoint import read_checkpoint, training_cost
from ..runs import RunFolder
from ..train.config import TrainConfig
from ..train.objective import build_objective, objective_params
from ..workspace import Cost, Workspace
from . import dense_metrics as DM
from . import metrics as M
from .config import EvalConfig
from .protocols import PROTOCOLS
from .weights import evaluation_inputs, starting_weights

METRICS = "metrics.json"


@dataclass(frozen=True)
class DenseProtocol:
    """A dense protocol: the objective it fine-tunes, its parameters, what its predictions are scored by."""

    objective: str
    params: dict = field(default_factory=dict)
    kind: str = "bbox"  # bbox, segm or semantic

    @property
    def primary(self) -> str:
        return "mIoU" if self.kind == "semantic" else "AP"


PROTOCOLS.register("detection")(DenseProtocol("detection", {"masks": False}, "bbox"))
PROTOCOLS.register("instance-segmentation")(DenseProtocol("detection", {"masks": True}, "segm"))
PROTOCOLS.register("segmentation")(DenseProtocol("segmentation", {}, "semantic"))


def _dense(split: tuple, what: str) -> tuple[DenseDataset, np.ndarray]:
    ds, idx = split
    if not isinstance(ds, DenseDataset):
        raise ThresherError(f"the {what} split {ds.spec} has no boxes or masks: dense protocols read a dense dataset "
                            "(coco:..., e.g. one written by thresher data make-dense)")  # fmt: skip
    return ds, idx


class DenseRun:
    """One dense evaluation's splits, workspace and models: fine-tunes (cached runs) and predicts."""

    def __init__(self, cfg: EvalConfig, protocol: DenseProtocol, checkpoint: Path | None, backbone: str, ws: Workspace,
                 train: tuple, test: tuple):  # fmt: skip
        self.cfg, self.protocol, self.checkpoint, self.backbone, self.ws = cfg, protocol, checkpoint, backbone, ws
        self.train_ds, self.train_idx = train
        self.test_ds, self.test_idx = test
        if protocol.kind in ("segm", "semantic") and not (self.train_ds.has_masks and self.test_ds.has_masks):
            raise ThresherError(f"protocol {cfg.protocol} needs masks; {self.train_ds.spec} or {self.test_ds.spec} has "
                                "boxes only (use detection)")  # fmt: skip
        if protocol.kind != "semantic" and not self.train_ds.instances:
            raise ThresherError(f"{self.train_ds.spec} holds class masks, not objects: protocol {cfg.protocol} needs "
                                "object annotations; use segmentation")  # fmt: skip
        self.num_classes = len(self.train_ds.categories)
        accepted = objective_params(protocol.objective)  # the dense settings this protocol's objective takes
        self.params = {**{k: v for k, v in cfg.dense.model_dump().items() if k in accepted}, **protocol.params}

    def finetune(self, rows: np.ndarray, lr: float, seed: int) -> dict:
        init = str(self.checkpoint) if self.checkpoint else None
        values = self.cfg.finetune_values(backbone=self.backbone, init=init, lr=lr, seed=seed)
        tcfg = build_config(TrainConfig, values={**values, "objective": self.protocol.objective,
                                                 "objective_params": self.params})  # fmt: skip
        run = self.ws.model(f"dense-{self.protocol.objective}", tcfg, self.train_ds, self.train_idx[rows])
        return {"checkpoint": run.path, "cost": run.cost.as_dict()}

    def _model(self, checkpoint: Path) -> torch.nn.Module:
        backbone = build_backbone(self.backbone, None, 0)
        model = build_objective(self.protocol.objective, backbone, self.params, num_classes=self.num_classes)
        model.load_state_dict(read_checkpoint(checkpoint)["model"])
        return model.eval()

    def predict(self, checkpoint: Path, ds: DenseDataset, idx: np.ndarray) -> tuple[list, dict]:
        """Predictions for ``ds[idx]`` at the evaluation's resolution (detections, or class maps) and their cost:
        images, seconds, and FLOPs (the first batch's, counted by ``torch.utils.flop_counter``, per image; the
        detectors' RoIAlign and NMS are not counted)."""
        from torch.utils.flop_counter import FlopCounterMode

        model = self._model(checkpoint)
        tf = build_transform("eval", self.cfg.resolution)
        out: list = []
        flops_per_image = 0.0
        t0 = time.perf_counter()
        with torch.no_grad():
            for start in range(0, len(idx), 32):
                x, ok = ds.load_batch(idx[start : start + 32], self.cfg.resolution, strict=True)
                images = tf(x)
                with FlopCounterMode(display=False) if start == 0 else contextlib.nullcontext() as counter:
                    if self.protocol.kind == "semantic":
                        out += list(model.logits(images).argmax(1).numpy().astype(np.uint8))
                    else:
                        out += model.predict(images)
                if start == 0:
                    flops_per_image = counter.get_total_flops() / len(images)
        return out, {"images": len(idx), "seconds": time.perf_counter() - t0, "flops": flops_per_image * len(idx)}

    def truth(self, ds: DenseDataset, idx: np.ndarray) -> list:
        return [square_target(ds.dense(int(i)), self.cfg.resolution) for i in idx]

    def score(self, predictions: list, truth: list) -> dict[str, float]:
        if self.protocol.kind == "semantic":
            return DM.segmentation_metrics(predictions, [t.semantic() for t in truth], self.num_classes + 1)
        return DM.coco_ap(truth, predictions, self.num_classes, iou_type=self.protocol.kind)

    def seed(self, seed: int) -> dict:
        """Choose the learning rate on validation, then predict the test split with the run trained at it."""
        fc, rng = self.cfg.finetune, np.random.default_rng([seed, 0xDE45])
        order = rng.permutation(len(self.train_idx))
        n_val = int(round(self.cfg.val_fraction * len(order)))
        val, fit = np.sort(order[:n_val]), np.sort(order[n_val:])
        costs: list[dict] = []
        val_scores: dict[str, float] = {}
        tuned = n_val >= 2 and len(fc.lr_grid) > 1
        if tuned:
            truth = self.truth(self.train_ds, self.train_idx[val])
            for lr in fc.lr_grid:
                run = self.finetune(fit, lr, seed)
                costs.append(run["cost"])
                preds, cost = self.predict(run["checkpoint"], self.train_ds, self.train_idx[val])
                costs.append(cost)
                val_scores[str(lr)] = round(self.score(preds, truth)[self.protocol.primary], 6)
            lr = max(fc.lr_grid, key=lambda v: (val_scores[str(v)], -fc.lr_grid.index(v)))
        else:
            lr, fit = (fc.lr_grid[0] if len(fc.lr_grid) == 1 else fc.default_lr), np.arange(len(self.train_idx))
        run = self.finetune(fit, lr, seed)
        if not tuned:
            costs.append(run["cost"])
        preds, cost = self.predict(run["checkpoint"], self.test_ds, self.test_idx)
        costs.append(cost)
        scores = self.score(preds, self.truth(self.test_ds, self.test_idx))
        cost = {k: float(sum(c.get(k, 0.0) for c in costs)) for k in ("images", "seconds", "flops")}
        note = "" if tuned else ("one learning rate in finetune.lr_grid" if len(fc.lr_grid) == 1
                                 else "validation split too small: finetune.default_lr")  # fmt: skip
        return {"seed": seed, **scores, "lr": lr, "tuned": tuned, "note": note, "validation": val_scores,
                "train_examples": len(fit), "cost": cost}  # fmt: skip


def evaluate_dense(
    cfg: EvalConfig, protocol: DenseProtocol, out: str | Path, *, force: bool = False, log=print
) -> dict:
    """Run (or resume, seed by seed) a dense protocol into ``out``; returns the metrics document."""
    checkpoint, backbone = starting_weights(cfg)
    train, test = _dense(open_data(cfg.train), "training"), _dense(open_data(cfg.test), "test")
    if train[0].categories != test[0].categories:
        raise ThresherError(f"{cfg.train.spec} and {cfg.test.spec} name different categories; a test split must "
                            "share its training split's")  # fmt: skip
    inputs = evaluation_inputs(train, test, checkpoint)
    with RunFolder(out, "evaluate", cfg, force=force, inputs=inputs, keep=("cache",)) as run:
        ws = Workspace(Path(cfg.cache) if cfg.cache else run.path / "cache", runtime=cfg.runtime, log=log)
        dense = DenseRun(cfg, protocol, checkpoint, backbone, ws, train, test)
        parts = run.file(".seeds")
        parts.mkdir(exist_ok=True)
        per_seed = []
        for seed in range(cfg.seed, cfg.seed + cfg.seeds):
            f = parts / f"{seed}.json"
            if f.is_file():
                per_seed.append(atomic.read_json(f, fix=f"delete it to evaluate seed {seed} again"))
                continue
            torch.manual_seed(seed)
            doc = dense.seed(seed)
            atomic.write_json(f, doc)
            per_seed.append(doc)
            log(f"{cfg.protocol} seed {seed}: {protocol.primary} {doc[protocol.primary]:.4f} (lr {doc['lr']:g}, "
                f"{'tuned' if doc['tuned'] else 'default'})")  # fmt: skip
        names = [k for k in per_seed[0] if isinstance(per_seed[0][k], float) and k != "lr"]
        summary = {m: {**M.summarize([d[m] for d in per_seed]), "median": float(np.median([d[m] for d in per_seed]))}
                   for m in names}  # fmt: skip
        total = Cost.total(Cost(images=d["cost"]["images"], seconds=d["cost"]["seconds"], flops=d["cost"]["flops"],
                                kind="trained") for d in per_seed)  # fmt: skip
        doc: dict[str, Any] = {
            "protocol": cfg.protocol,
            "model": {"checkpoint": str(checkpoint) if checkpoint else None, "backbone": backbone,
                      "random_init": cfg.random_init, "encoder": cfg.encoder, "resolution": cfg.resolution,
                      "seed": cfg.seed},
            "target": {"train": cfg.train.spec, "test": cfg.test.spec, "categories": train[0].categories},
            "primary": protocol.primary,
            # AP_S / AP_M / AP_L's area ranges in the evaluated images' pixels (COCO's, scaled to their size)
            "area_ranges": area_ranges(cfg.resolution, cfg.resolution) if protocol.kind != "semantic" else None,
            "summary": summary,
            "seeds": per_seed,
            "tuned": all(d["tuned"] for d in per_seed),
            "cost": {"evaluation": total.as_dict(), "pretraining": training_cost(checkpoint, cfg.checkpoint)},
        }  # fmt: skip
        atomic.write_json(run.file(METRICS), doc)
        return doc
