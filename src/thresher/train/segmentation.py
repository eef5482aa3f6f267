"""Semantic segmentation as a fine-tuning objective (issue 20; 000 transfers to VOC12 segmentation): an FCN head on
the backbone's feature map, trained on the classes drawn from a dense dataset's instance masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dense import IGNORE, semantic_maps
from .objective import OBJECTIVES


def freeze_bn(module: nn.Module) -> None:
    """Batch norm of ``module`` frozen: running statistics kept (eval mode) and affine parameters not trained."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


def feature_map_of(backbone: nn.Module, what: str) -> int:
    """The channels of ``backbone``'s feature map, or a ValueError naming the backbones that have one."""
    if not hasattr(backbone, "forward_map"):
        raise ValueError(f"{what} needs a backbone with a feature map (small-cnn, resnet20, resnet32, resnet18/34/50), "
                         f"not {type(backbone).__name__}")  # fmt: skip
    return int(backbone.feature_dim)


@OBJECTIVES.register("segmentation")
class Segmentation(nn.Module):
    """Backbone + FCN head (3x3 conv, batch norm, ReLU, 1x1 classifier over background and every category), its
    logits upsampled bilinearly to the input; per-pixel cross-entropy, pixels labelled 255 ignored."""

    transform = "dense"
    reads_targets = True  # the loop adds the dataset's boxes, classes and masks to each batch

    def __init__(self, backbone: nn.Module, num_classes: int, hidden: int = 128, frozen_bn: bool = False):
        super().__init__()
        channels = feature_map_of(backbone, "the segmentation objective")
        if hidden < 1:
            raise ValueError(f"hidden must be positive, got {hidden}")
        self.backbone = backbone
        self.head = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_classes + 1, 1),
        )
        self.frozen_bn = frozen_bn
        if frozen_bn:
            freeze_bn(backbone)

    def train(self, mode: bool = True) -> Segmentation:
        super().train(mode)
        if self.frozen_bn:
            freeze_bn(self.backbone)
        return self

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, classes + 1, H, W) per-pixel logits at the input's size."""
        out = self.head(self.backbone.forward_map(images))
        return F.interpolate(out, size=images.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        images = batch["images"]
        if "masks" not in batch:
            raise ValueError("segmentation trains on masks; this dataset has boxes only")
        height, width = images.shape[-2:]
        target = semantic_maps(batch["masks"], batch["classes"], height, width, batch.get("ignore"))
        logits = self.logits(images)
        per_pixel = F.cross_entropy(logits.float(), target, ignore_index=IGNORE, reduction="none")
        valid = (target != IGNORE).float()
        per_sample = (per_pixel * valid).sum((1, 2)) / valid.sum((1, 2)).clamp_min(1.0)
        correct = ((logits.argmax(1) == target).float() * valid).sum() / valid.sum().clamp_min(1.0)
        return {
            "loss": (per_pixel * valid).sum() / valid.sum().clamp_min(1.0),
            "per_sample_loss": per_sample.detach(),
            "accuracy": correct.detach(),
        }
