"""BYOL (Grill et al. 2020; 001 appendix C.6): an online network predicts an EMA target network's projection.

loss = 2 - 2 cos(prediction(view 1), target(view 2)), symmetrised over the views (METHODS.md). Paper defaults:
projector and predictor MLPs with batch norm, hidden 4096, output 256; the target's EMA rate rises from 0.996 to 1
along a cosine over training (``total_steps``, given by the loop; the step count is a buffer, so resume is exact).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ...train.objective import OBJECTIVES
from .heads import ema_update, mlp


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-row 2 - 2 cos(p, z); the target projection ``z`` carries no gradient."""
    return 2 - 2 * F.cosine_similarity(p.float(), z.detach().float(), dim=1)


@OBJECTIVES.register("byol")
class BYOL(nn.Module):
    transform = "ssl"
    needs_labels = False

    def __init__(
        self,
        backbone: nn.Module,
        total_steps: int = 1,
        dim: int = 256,
        hidden: int = 4096,
        base_momentum: float = 0.996,
    ):
        super().__init__()
        if not 0 <= base_momentum <= 1 or dim < 1 or hidden < 1:
            raise ValueError("byol needs 0 <= base_momentum <= 1, dim >= 1 and hidden >= 1")
        self.backbone = backbone
        self.projector = mlp(backbone.feature_dim, hidden, dim, batch_norm=True)
        self.predictor = mlp(dim, hidden, dim, batch_norm=True)
        self.target_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.base_momentum, self.total_steps = base_momentum, max(1, total_steps)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def momentum(self) -> float:
        """tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2 at step k of K (BYOL section 3.2)."""
        k = min(int(self.step), self.total_steps)
        return 1 - (1 - self.base_momentum) * (math.cos(math.pi * k / self.total_steps) + 1) / 2

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        v1, v2 = batch["images"]
        if self.training:  # the target follows the online weights of the previous step
            if int(self.step) > 0:
                ema_update(self.target_backbone, self.backbone, self.momentum())
                ema_update(self.target_projector, self.projector, self.momentum())
            self.step += 1
        both = torch.cat([v1, v2])
        p1, p2 = self.predictor(self.projector(self.backbone.forward_features(both))).chunk(2)
        with torch.no_grad():
            z1, z2 = self.target_projector(self.target_backbone.forward_features(both)).chunk(2)
        per_sample = byol_loss(p1, z2) + byol_loss(p2, z1)
        return {"loss": per_sample.mean(), "per_sample_loss": per_sample.detach()}
