"""A small softmax-regression (or one-hidden-layer MLP) trainer on fixed features, shared by the scorers.

The entropy (000 B.1), importance (004 3.3) and domain-classifier (000) scorers train a classifier on embeddings
when no network head is given. Features are standardised inside; the loss is the (optionally example-weighted) mean
cross-entropy plus ``l2/2 * ||W||^2`` on the weight matrices. Full-batch L-BFGS up to ``full_batch_max`` examples,
mini-batch Adam above. Deterministic given ``seed`` (own generator; the global torch RNG is not touched).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ThresherError
from .neighbors import check_finite, feature_shape, iter_rows


@dataclass
class LinearModel:
    """A trained classifier on standardised features: ``logits(x)`` and ``predict_proba(x)`` in row blocks."""

    module: nn.Module
    mean: torch.Tensor
    scale: torch.Tensor
    n_classes: int
    final_loss: float
    #: FLOPs spent fitting: forward + backward (3x the forward's 2 per multiply-add) per row per loss evaluation
    flops: float = 0.0

    def logits(self, x: Any, *, rows: int = 65536) -> np.ndarray:
        """(n, n_classes) float32 logits; ``x`` may be memory-mapped (read block by block)."""
        n, d = feature_shape(x)
        if d != len(self.mean):
            raise ThresherError(f"classifier expects {len(self.mean)}-dimensional features, got {d}")
        out = np.empty((n, self.n_classes), dtype=np.float32)
        with torch.inference_mode():
            for start, block in iter_rows(x, rows):
                z = (torch.from_numpy(block) - self.mean) / self.scale
                out[start : start + len(block)] = self.module(z).numpy()
        return out

    def predict_proba(self, x: Any, *, rows: int = 65536) -> np.ndarray:
        """(n, n_classes) float64 softmax probabilities."""
        return softmax(self.logits(x, rows=rows))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64 (max-subtracted, stable)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_linear(
    x: Any,
    y: Any,
    n_classes: int,
    *,
    rows: Any = None,
    weights: Any = None,
    l2: float = 1e-4,
    hidden: int = 0,
    max_iter: int = 100,
    epochs: int = 20,
    batch_size: int = 1024,
    lr: float = 1e-2,
    full_batch_max: int = 100_000,
    seed: int = 0,
    what: str = "classifier features",
) -> LinearModel:
    """Train softmax regression (``hidden=0``) or a ReLU MLP with one hidden layer of ``hidden`` units.

    ``rows``: optional indices of the training rows of ``x`` (no copy of the rest; ``x`` may be memory-mapped);
    ``y``/``weights``: one per training row, int labels in [0, n_classes) and optional non-negative weights (the loss
    is their weighted mean). L-BFGS runs ``max_iter`` iterations on the standardised rows held in memory when
    n <= ``full_batch_max``; above, Adam runs ``epochs`` epochs, reading and standardising one mini-batch at a time.
    """
    n_x, d = feature_shape(x, what)
    rows = np.arange(n_x) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
    n = len(rows)
    y = np.asarray(y)
    if n == 0:
        raise ThresherError("cannot train a classifier on zero examples")
    if y.shape != (n,):
        raise ThresherError(f"classifier labels have shape {y.shape}, expected ({n},)")
    if n_classes < 2:
        raise ThresherError(f"a classifier needs at least 2 classes, got {n_classes}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ThresherError(f"classifier labels must lie in [0, {n_classes}), got [{y.min()}, {y.max()}]")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ThresherError("classifier weights must be finite, non-negative, one per example, not all zero")
    mean, scale = _moments(x, rows, what)
    yt = torch.from_numpy(y.astype(np.int64))
    wt = torch.from_numpy((w / w.sum()).astype(np.float32))  # weighted mean = sum of normalised weights * loss

    gen = torch.Generator().manual_seed(int(seed))
    module = _build(d, n_classes, hidden, gen)
    macs_per_row = d * hidden + hidden * n_classes if hidden else d * n_classes
    evaluated = [0]  # rows through a forward and backward pass
    decay = [p for name, p in module.named_parameters() if name.endswith("weight")]

    def data_loss(zb: torch.Tensor, yb: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
        return (F.cross_entropy(module(zb), yb, reduction="none") * wb).sum()

    def penalty() -> torch.Tensor:
        return 0.5 * l2 * sum((p * p).sum() for p in decay)

    def batch(pos: Any) -> torch.Tensor:
        return (torch.from_numpy(_gather(x, rows[pos])) - mean) / scale

    if n <= full_batch_max:
        z = batch(slice(None))
        opt = torch.optim.LBFGS(
            module.parameters(), lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
            tolerance_grad=1e-7, tolerance_change=1e-10,
        )  # fmt: skip

        def closure() -> torch.Tensor:
            opt.zero_grad()
            evaluated[0] += n
            loss = data_loss(z, yt, wt) + penalty()
            loss.backward()
            return loss

        opt.step(closure)
    else:
        z = None
        opt = torch.optim.Adam(module.parameters(), lr=lr)
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            for s in range(0, n, batch_size):
                b = order[s : s + batch_size].sort().values  # sorted: sequential reads from a memory-mapped pool
                opt.zero_grad()
                wb = wt[b] * (n / len(b))  # per-batch estimate of the full weighted mean
                evaluated[0] += len(b)
                (data_loss(batch(b.numpy()), yt[b], wb) + penalty()).backward()
                opt.step()
    module.eval()
    with torch.no_grad():
        if z is not None:
            final = float(data_loss(z, yt, wt) + penalty())
        else:
            final = float(penalty())
            for s in range(0, n, 65536):
                block = slice(s, s + 65536)
                final += float(data_loss(batch(block), yt[block], wt[block]))
    if not np.isfinite(final):
        raise ThresherError("classifier training diverged (non-finite loss); check the features' scale")
    for p in module.parameters():
        p.requires_grad_(False)
    flops = 6.0 * macs_per_row * evaluated[0] + 2.0 * macs_per_row * n  # the fit, and the final loss's forward pass
    return LinearModel(module=module, mean=mean, scale=scale, n_classes=n_classes, final_loss=final, flops=flops)


def _gather(x: Any, idx: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x[idx]), dtype=np.float32)


def _moments(x: Any, rows: np.ndarray, what: str, block: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation (1 where a feature is constant) of the training rows, one block at a time,
    checking that every row is finite."""
    total = np.zeros(feature_shape(x)[1])
    total_sq = np.zeros_like(total)
    for s in range(0, len(rows), block):
        xb = _gather(x, rows[s : s + block])
        check_finite(xb, what)
        xb64 = xb.astype(np.float64)
        total += xb64.sum(0)
        total_sq += (xb64 * xb64).sum(0)
    mean = total / len(rows)
    std = np.sqrt(np.maximum(total_sq / len(rows) - mean * mean, 0.0))
    scale = np.where(std > 1e-6 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(scale.astype(np.float32))


def _build(d: int, n_classes: int, hidden: int, gen: torch.Generator) -> nn.Module:
    """Zero-initialised linear layer (the problem is convex), or an MLP with seeded He-uniform weights."""
    if hidden < 0:
        raise ThresherError(f"hidden must be >= 0, got {hidden}")
    if hidden == 0:
        layer = nn.Linear(d, n_classes)
        with torch.no_grad():
            layer.weight.zero_()
            layer.bias.zero_()
        return layer
    first, last = nn.Linear(d, hidden), nn.Linear(hidden, n_classes)
    with torch.no_grad():
        for layer, fan_in in ((first, d), (last, hidden)):
            bound = (6.0 / fan_in) ** 0.5
            layer.weight.copy_((torch.rand(layer.weight.shape, generator=gen) * 2 - 1) * bound)
            layer.bias.zero_()
    return nn.Sequential(first, nn.ReLU(), last)
