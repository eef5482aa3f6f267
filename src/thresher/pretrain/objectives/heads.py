"""Projection and prediction heads and the InfoNCE loss shared by the self-supervised objectives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, *, batch_norm: bool = False) -> nn.Sequential:
    """Linear -> [BN] -> ReLU -> Linear: MoCo-v2 / SimCLR projection (no BN), BYOL projector/predictor (BN)."""
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(hidden))
    layers += [nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)]
    return nn.Sequential(*layers)


def info_nce(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-query InfoNCE, -log(exp(q.k+/t) / (exp(q.k+/t) + sum_k- exp(q.k-/t))), inputs L2-normalised (MoCo eq. 1)."""
    l_pos = (query * positive).sum(1, keepdim=True)
    l_neg = query @ negatives.T
    logits = torch.cat([l_pos, l_neg], 1).float() / temperature
    return F.cross_entropy(logits, torch.zeros(len(query), dtype=torch.long, device=query.device), reduction="none")


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, parameters only (buffers follow their own BN)."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
