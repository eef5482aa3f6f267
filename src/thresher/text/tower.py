"""The text tower of the ``clip`` objective (issue 21): token embeddings, learnt positions, a few pre-norm
transformer layers (none: a bag of embeddings), mean over the words present, a linear projection. Sized for CPUs: at
width 128, 2 layers and 16 tokens a caption costs about 1 MFLOP, less than a 32 px image through small-cnn."""

from __future__ import annotations

import torch
from torch import nn

from .tokenizer import PAD


class TextTower(nn.Module):
    """Token ids (B, L) -> embeddings (B, dim)."""

    def __init__(self, vocab_size: int, dim: int, *, width: int = 128, layers: int = 2, heads: int = 4,
                 length: int = 16):  # fmt: skip
        super().__init__()
        if vocab_size < 3 or dim < 1 or width < 1 or layers < 0 or length < 1 or width % heads:
            raise ValueError(f"text tower: vocab_size >= 3, dim, width, length >= 1, layers >= 0 and width divisible "
                             f"by heads, got {vocab_size}, {dim}, {width}, {length}, {layers}, {heads}")  # fmt: skip
        self.length = length
        self.embed = nn.Embedding(vocab_size, width, padding_idx=PAD)
        self.position = nn.Parameter(torch.zeros(length, width))
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.position, std=0.01)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False) if layers else None
        self.norm = nn.LayerNorm(width)
        self.project = nn.Linear(width, dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens[:, : self.length]
        present = tokens != PAD
        x = self.embed(tokens) + self.position[: tokens.shape[1]]
        if self.layers is not None:
            # a caption of padding alone attends to itself rather than to nothing (no NaN)
            x = self.layers(x, src_key_padding_mask=~present & present.any(1, keepdim=True))
        x = self.norm(x)
        weights = present.float().unsqueeze(-1)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.project(pooled)
