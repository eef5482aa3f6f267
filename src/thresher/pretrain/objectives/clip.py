"""CLIP's symmetric InfoNCE (Radford et al. 2021; 002; formula in METHODS.md), the image-text objective of issue 21.

N matching (image, caption) pairs: unit-length image and text embeddings u_i and v_i, logits L = U V^T / tau with a
learnt temperature stored as log(1/tau) (initialised at log(1/0.07), the scale 1/tau clipped at 100); the loss is the
mean of the cross-entropies over rows (each image's caption among the batch's) and over columns (each caption's
image). ``per_sample_loss`` is, per pair, the mean of its row's and its column's terms, so the loss is its mean.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: log(1/tau) at the start (tau = 0.07) and the largest scale 1/tau may reach
INIT_LOGIT_SCALE = math.log(1 / 0.07)
MAX_SCALE = 100.0


def clip_loss(u: torch.Tensor, v: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Per-pair symmetric InfoNCE (N,) of image embeddings ``u`` and text embeddings ``v`` (N, d), matched by row,
    at scale exp(``logit_scale``) clipped at 100."""
    if u.shape != v.shape or u.dim() != 2:
        raise ValueError(f"image and text embeddings must both be (N, d), got {tuple(u.shape)} and {tuple(v.shape)}")
    u, v = F.normalize(u.float(), dim=1), F.normalize(v.float(), dim=1)
    logits = logit_scale.float().exp().clamp(max=MAX_SCALE) * (u @ v.T)
    target = torch.arange(len(u), device=u.device)
    rows = F.cross_entropy(logits, target, reduction="none")  # image i: which caption is its own
    cols = F.cross_entropy(logits.T, target, reduction="none")  # caption i: which image is its own
    return 0.5 * (rows + cols)
