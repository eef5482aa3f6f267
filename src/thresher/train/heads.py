"""A trained classifier's own head applied to stored embeddings: its predictions without a second pass over images."""

from __future__ import annotations

import numpy as np

from ..models.checkpoint import head_weights


def head_logits(checkpoint, features, block: int = 65536):
    """Logits of a trained supervised model's own linear head on its backbone features, in blocks (float64).

    Lets scorers read a model's predictions from stored embeddings without a second pass over the images.
    """
    weight, bias = head_weights(checkpoint)
    w, b = weight.double().numpy(), bias.double().numpy()
    out = np.empty((len(features), w.shape[0]), np.float64)
    for start in range(0, len(features), block):
        out[start : start + block] = np.asarray(features[start : start + block], np.float64) @ w.T + b
    return out
