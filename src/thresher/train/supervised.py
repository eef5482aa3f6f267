"""Supervised cross-entropy pre-training (000 section 4: a linear head on the backbone, optionally weighted)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .objective import OBJECTIVES


@OBJECTIVES.register("supervised")
class Supervised(nn.Module):
    """Backbone + linear head trained with cross-entropy; ``batch['weights']`` (manifest weights) weight the mean."""

    transform = "train"
    needs_labels = True

    def __init__(self, backbone: nn.Module, num_classes: int, label_smoothing: float = 0.0):
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.backbone = backbone
        self.head = nn.Linear(backbone.feature_dim, num_classes)
        self.label_smoothing = label_smoothing

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        logits = self.head(self.backbone.forward_features(batch["images"]))
        per_sample = F.cross_entropy(
            logits.float(), batch["labels"], reduction="none", label_smoothing=self.label_smoothing
        )
        w = batch.get("weights")
        loss = per_sample.mean() if w is None else (per_sample * w).sum() / w.sum().clamp_min(1e-12)
        correct = (logits.argmax(1) == batch["labels"]).float()
        return {
            "loss": loss,
            "per_sample_loss": per_sample.detach(),
            "logits": logits.detach(),
            "accuracy": correct.mean(),
        }
