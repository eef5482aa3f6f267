"""Which weights an evaluation starts from: a thresher checkpoint, a public encoder by name (issue 20: detection from
torchvision's or timm's ImageNet models), or none (random init)."""

from __future__ import annotations

from pathlib import Path

from ..data.loader import data_identity
from ..errors import ThresherError
from ..models.checkpoint import checkpoint_backbone, resolve_checkpoint
from ..models.encoders import encoder_weights
from ..runs import file_digest
from .config import EvalConfig


def starting_weights(cfg: EvalConfig) -> tuple[Path | None, str]:
    """(weights file or None, backbone name) of the evaluated model: ``--checkpoint`` (its recorded backbone unless
    ``--backbone`` names one), ``--encoder`` (its file in the library's cache, loaded into the thresher backbone of its
    architecture) or ``--random-init`` (``--backbone``)."""
    if cfg.random_init:
        return None, str(cfg.backbone)
    if cfg.encoder:
        path, backbone = encoder_weights(cfg.encoder)
        if cfg.backbone and cfg.backbone != backbone:
            raise ThresherError(f"--encoder {cfg.encoder} loads into backbone {backbone}, not {cfg.backbone}; drop "
                                "--backbone")  # fmt: skip
        return path, backbone
    checkpoint = resolve_checkpoint(cfg.checkpoint)
    assert checkpoint is not None  # the config requires one of the three
    return checkpoint, cfg.backbone or checkpoint_backbone(checkpoint)


def evaluation_inputs(train: tuple, test: tuple, checkpoint: Path | None) -> dict:
    """What an evaluation folder's fingerprint reads besides its config: the splits' identities and the starting
    weights' content (every protocol's)."""
    inputs = {"train": data_identity(*train), "test": data_identity(*test)}
    if checkpoint:
        inputs["checkpoint_sha256"] = file_digest(checkpoint)
    return inputs
