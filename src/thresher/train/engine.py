"""``train_on``: the one entry to the engine. Any stage that fits a model (pre-training, the scorers' feature models,
the domain classifier's folds, fine-tuning) builds backbone and objective from a ``TrainConfig`` and runs the one loop
into a resumable run folder; under ``torchrun`` every process calls it and rank 0 owns the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from ..data.base import ImageDataset
from ..data.loader import data_identity
from ..device import resolve_device, set_threads
from ..distributed import agree, init_from_env
from ..errors import ThresherError
from ..models import build_backbone
from ..models.checkpoint import read_checkpoint
from ..runs import RunFolder, file_digest
from . import supervised  # noqa: F401  (the engine's own objective: every stage fits classifiers with it)
from .config import TrainConfig
from .loop import Trainer, plan
from .objective import build_objective, takes


def load_head(objective: torch.nn.Module, path: str | None) -> None:
    """Copy ``head.*`` from a thresher checkpoint into the objective's head (LP-FT: fine-tuning from the probe)."""
    if not path:
        raise ThresherError("init_head needs --init, the checkpoint holding the head")
    model = read_checkpoint(path)["model"]
    head = {k.removeprefix("head."): v for k, v in model.items() if k.startswith("head.")}
    target = getattr(objective, "head", None)
    if target is None or not head:
        raise ThresherError(f"init_head: {path} has no head weights, or the objective has no head")
    try:
        target.load_state_dict(head)
    except RuntimeError as exc:
        raise ThresherError(
            f"init_head: the head in {path} does not fit this objective's ({' '.join(str(exc).split())[:200]})"
        ) from None


def train_on(
    ds: ImageDataset,
    indices: np.ndarray,
    cfg: TrainConfig,
    out: str | Path,
    *,
    force: bool = False,
    log=print,
    weights: np.ndarray | None = None,
) -> dict:
    """Train on ``ds[indices]`` (any dataset or view, optionally weighted per example) into the run folder ``out``.

    Under ``torchrun`` every process calls this; rank 0 owns the run folder and writes, all ranks train.
    """
    device = resolve_device(cfg.runtime.device)
    dinfo = init_from_env(device)
    local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    set_threads(cfg.runtime.threads or max(1, len(os.sched_getaffinity(0)) // local_procs))
    if dinfo.active and device.type == "cuda":
        device = torch.device("cuda", dinfo.local_rank)
        torch.cuda.set_device(device)
    if device.type == "cuda":  # each run's peak memory is its own (on the CPU, ru_maxrss is the process's: see loop)
        torch.cuda.reset_peak_memory_stats(device)
    inputs = {"data": data_identity(ds, indices)}
    if cfg.init:
        inputs["init_sha256"] = file_digest(cfg.init)
    if cfg.manifest:
        inputs["manifest_sha256"] = file_digest(Path(cfg.manifest) / "manifest.parquet")
    # everything that can fail on bad input fails before the run folder is claimed
    steps = plan(cfg, len(indices)).total_steps
    backbone = build_backbone(cfg.backbone, cfg.init, cfg.seed)
    torch.manual_seed(cfg.seed + 1)
    objective = build_objective(
        cfg.objective,
        backbone,
        cfg.objective_params,
        num_classes=max(1, ds.num_classes),
        num_examples=len(indices),
        total_steps=steps,
        class_names=getattr(ds, "descriptions", None) or ds.classes,
        **({"captions": ds.captions_of(indices)} if takes(cfg.objective, "captions") else {}),
    )
    if cfg.init_head:
        load_head(objective, cfg.init)
    if weights is not None:
        inputs["weights_sha256"] = hashlib.sha256(np.ascontiguousarray(weights, np.float64).tobytes()).hexdigest()
    folder = RunFolder(out, "pretrain", cfg, force=force, inputs=inputs, device=str(device))
    if not dinfo.active:
        with folder as run:
            return Trainer(objective, ds, indices, cfg, run.path, device, log=log, weights=weights).run()
    with contextlib.ExitStack() as stack:  # rank 0 claims the folder; every rank learns whether it could
        error = None
        if dinfo.main:
            try:
                stack.enter_context(folder)
            except ThresherError as exc:
                error = str(exc)
        agree(error)
        quiet = log if dinfo.main else (lambda *_: None)
        return Trainer(objective, ds, indices, cfg, folder.path, device, log=quiet, weights=weights).run()
