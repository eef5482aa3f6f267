"""``thresher pretrain``: build dataset, backbone and objective from a TrainConfig and run the one loop."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.loader import data_identity, open_data
from ..device import resolve_device, set_threads
from ..models import build_backbone
from ..runs import RunFolder, file_digest
from .config import TrainConfig
from .loop import Trainer
from .objectives import OBJECTIVES


def pretrain(cfg: TrainConfig, out: str | Path, *, force: bool = False, log=print) -> dict:
    """Run (or resume) a training run into ``out``; returns its summary (losses per epoch, cost)."""
    set_threads(cfg.runtime.threads)
    device = resolve_device(cfg.runtime.device)
    OBJECTIVES.get(cfg.objective)  # fail on a typo before touching the folder
    ds, indices = open_data(cfg.data)
    inputs = {"data": data_identity(ds, indices)}
    if cfg.init:
        inputs["init_sha256"] = file_digest(cfg.init)
    # everything that can fail on bad input fails before the run folder is claimed
    backbone = build_backbone(cfg.backbone, cfg.init, cfg.seed)
    torch.manual_seed(cfg.seed + 1)
    objective = OBJECTIVES.create(cfg.objective, backbone=backbone, num_classes=max(1, ds.num_classes))
    with RunFolder(out, "pretrain", cfg, force=force, inputs=inputs, device=str(device)) as run:
        return Trainer(objective, ds, indices, cfg, run.path, device, log=log).run()
