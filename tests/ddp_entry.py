"""``thresher`` CLI entry for the torchrun tests, with one extra backbone registered: a CNN without batch norm.

Batch-norm statistics are per process under DDP (SyncBatchNorm needs a GPU), so only a model without them can match
a single-process run to float rounding; the test uses it to check the data split, gradient all-reduce and schedules.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from thresher.cli import main
from thresher.models.backbones import BACKBONES


class NoNormCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU()
        )
        self.feature_dim = 32

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean((2, 3))

    forward = forward_features


BACKBONES.register("test-nonorm-cnn")(NoNormCNN)

if __name__ == "__main__":
    main(sys.argv[1:])
