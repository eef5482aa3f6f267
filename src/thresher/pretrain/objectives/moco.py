"""MoCo-v2 (He et al. 2020; Chen et al. 2020), the self-supervised objective of 000 and 001.

A query encoder (backbone + 2-layer MLP head) and a momentum-updated key encoder; negatives are the keys of earlier
batches kept in a queue. Defaults are the paper's: queue 65536, momentum 0.999, temperature 0.2, dim 128. The queue is
capped at a tenth of the training examples (ImageNet's ratio is 1/20; common CIFAR recipes use 4096 of 50000): a
queue as large as the data would always hold a stale key of each query's own image among its negatives. The momentum
update happens at the start of each training forward (as in the reference code), so the loop treats MoCo like any
other objective; queue and pointer are buffers, hence in every checkpoint. Under ``torchrun`` the keys of all ranks
are gathered before they are enqueued (as in the reference code), so every rank holds the same queue. Shuffle-BN
is not implemented: on one device the batch is normalised as a whole.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ...distributed import gather_rows
from ...train.objective import OBJECTIVES
from .heads import ema_update, info_nce, mlp


@OBJECTIVES.register("moco")
class MoCo(nn.Module):
    transform = "ssl"
    needs_labels = False

    def __init__(
        self,
        backbone: nn.Module,
        num_examples: int = 65536,
        dim: int = 128,
        queue_size: int = 65536,
        momentum: float = 0.999,
        temperature: float = 0.2,
        hidden: int | None = None,
    ):
        super().__init__()
        if (
            not 0 <= momentum < 1
            or temperature <= 0
            or queue_size < 1
            or dim < 1
            or (hidden is not None and hidden < 1)
        ):
            raise ValueError("moco needs 0 <= momentum < 1, temperature > 0, queue_size, dim and hidden >= 1")
        self.backbone = backbone
        self.head = mlp(backbone.feature_dim, hidden or backbone.feature_dim, dim)
        self.key_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.key_head = copy.deepcopy(self.head).requires_grad_(False)
        self.momentum, self.temperature = momentum, temperature
        self.queue_size = max(1, min(queue_size, num_examples // 10))
        self.register_buffer("queue", F.normalize(torch.randn(self.queue_size, dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.backbone.forward_features(images)).float(), dim=1)

    @torch.no_grad()
    def keys(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.key_head(self.key_backbone.forward_features(images)).float(), dim=1)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        view_q, view_k = batch["images"]
        if self.training:
            ema_update(self.key_backbone, self.backbone, self.momentum)
            ema_update(self.key_head, self.head, self.momentum)
        q = self.encode(view_q)
        k = self.keys(view_k)
        per_sample = info_nce(q, k, self.queue.clone(), self.temperature)
        if self.training:
            self._enqueue(k)
        return {"loss": per_sample.mean(), "per_sample_loss": per_sample.detach()}

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        keys = gather_rows(keys)[-self.queue_size :]  # every rank enqueues the keys of the global batch
        rows = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % self.queue_size
        self.queue[rows] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % self.queue_size)
