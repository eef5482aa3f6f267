"""Backbones (one registry) and checkpoint loading for them."""

import torch

from .backbones import BACKBONES, backbone_names, create_backbone
from .checkpoint import LoadReport, load_backbone_weights


def build_backbone(name: str, checkpoint: str | None, seed: int) -> torch.nn.Module:
    """Create a backbone (seeded random init) and load weights when given."""
    torch.manual_seed(seed)
    model = create_backbone(name)
    if checkpoint:
        load_backbone_weights(model, checkpoint)
    return model


__all__ = ["BACKBONES", "LoadReport", "backbone_names", "build_backbone", "create_backbone", "load_backbone_weights"]
