"""SimCLR's NT-Xent (Chen et al. 2020), the self-supervised objective of 002 (formula in METHODS.md).

Two views of N images give 2N projections; each view's positive is the other view of its image and its negatives
are the other 2N - 2 projections of the batch. Temperature 0.5 and a 2-layer MLP head to dim 128 (SimCLR's CIFAR
setting, suited to the small batches of one machine). ``per_sample_loss`` is, per image, the mean of its two
ordered pairs' losses, so the loss is its mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...train.objective import OBJECTIVES
from .heads import mlp


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-image NT-Xent (N,): mean over the two ordered positive pairs (i, j) and (j, i) of image i."""
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))  # k != i
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    per_view = F.cross_entropy(sim, target, reduction="none")
    return 0.5 * (per_view[:n] + per_view[n:])


@OBJECTIVES.register("simclr")
class SimCLR(nn.Module):
    transform = "ssl"
    needs_labels = False

    def __init__(self, backbone: nn.Module, dim: int = 128, temperature: float = 0.5, hidden: int | None = None):
        super().__init__()
        if temperature <= 0 or dim < 1 or (hidden is not None and hidden < 1):
            raise ValueError("simclr needs temperature > 0, dim >= 1 and hidden >= 1")
        self.backbone = backbone
        self.head = mlp(backbone.feature_dim, hidden or backbone.feature_dim, dim)
        self.temperature = temperature

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        v1, v2 = batch["images"]
        z = self.head(self.backbone.forward_features(torch.cat([v1, v2])))
        per_sample = nt_xent(*z.chunk(2), self.temperature)
        return {"loss": per_sample.mean(), "per_sample_loss": per_sample.detach()}
