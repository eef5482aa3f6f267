"""Representation similarity (001 appendix C.7): IoU of two models' errors, and RV2 between two activations.

RV2 (modified RV coefficient, Smilde et al. 2009): for activations X (n x p) and Y (n x q) of the same n inputs,
column-centred, A = X X' and B = Y Y' with zeroed diagonals; RV2 = tr(AB) / sqrt(tr(AA) tr(BB)). It is 1 for
identical representations and invariant to orthogonal transforms and isotropic scaling of either side. Computed
through p x q cross-products, so n may be large.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ThresherError


def error_iou(wrong_a, wrong_b) -> float:
    """|A and B| / |A or B| of the sets of misclassified test examples (boolean masks over one test set)."""
    a, b = np.asarray(wrong_a, bool), np.asarray(wrong_b, bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ThresherError("error IoU needs two equal-length masks over the same test examples")
    union = int((a | b).sum())
    return math.nan if union == 0 else float((a & b).sum() / union)


def _gram_terms(x: np.ndarray, y: np.ndarray) -> float:
    """tr(AB) with A = XX', B = YY' and zeroed diagonals: ||X'Y||_F^2 - sum_i |x_i|^2 |y_i|^2."""
    return float(((x.T @ y) ** 2).sum() - ((x**2).sum(1) * (y**2).sum(1)).sum())


def rv2(x, y) -> float:
    """RV2 between activations ``x`` (n, p) and ``y`` (n, q) of the same n inputs (flattened beyond axis 1)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    if len(x) != len(y) or len(x) < 2:
        raise ThresherError(f"RV2 needs activations of the same n >= 2 inputs, got {len(x)} and {len(y)}")
    for a in (x, y):  # constant up to rounding (a column mean is rarely exact): RV2 is undefined
        if np.abs(a - a.mean(0)).max() <= 1e-9 * max(1.0, float(np.abs(a).max())):
            raise ThresherError("RV2 is undefined for a constant representation")
    x = x - x.mean(0)
    y = y - y.mean(0)
    xy, xx, yy = _gram_terms(x, y), _gram_terms(x, x), _gram_terms(y, y)
    return xy / math.sqrt(xx * yy)


def layer_activations(model, layer: str | None, images, *, batch: int = 256) -> np.ndarray:
    """(n, features) activations of the module named ``layer`` (``None``: the pooled features) on uint8 images
    (n, 3, R, R), flattened per image; read through a forward hook, in eval mode, without gradients."""
    import torch

    from ..data.transforms import build_transform

    modules = dict(model.named_modules())
    if layer is not None and layer not in modules:
        names = ", ".join(n for n in modules if n)[:300]
        raise ThresherError(f"the model has no layer {layer!r}; layers: {names}")
    transform = build_transform("eval", images.shape[-1])
    captured: list[np.ndarray] = []
    hook = None
    if layer is not None:
        hook = modules[layer].register_forward_hook(
            lambda _m, _i, out: captured.append(out.detach().float().flatten(1).numpy())
        )
    model.eval()
    outs = []
    try:
        with torch.inference_mode():
            for s in range(0, len(images), batch):
                feats = model.forward_features(transform(images[s : s + batch]))
                if layer is None:
                    outs.append(feats.float().numpy())
    finally:
        if hook is not None:
            hook.remove()
    return np.concatenate(captured if layer is not None else outs)
