"""Zero-shot classification (issue 21; 002, METHODS.md): a ``clip`` model classifies the target's test images by the
cosine similarity of their embeddings to each class's text embedding, the mean of its prompts (every template filled
with every synonym of the class name, ``classes.txt``), with no training on the target.

The image side reads the backbone's frozen features from the workspace (the same cached pass as the linear probe)
and applies the checkpoint's image projection. The result says which class names the model's vocabulary knows: a
name it does not know is read as "unknown" words, so its class can only be guessed (of cifar10's ten names, only cat,
dog and frog occur among the pool's class names).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.classes import class_words
from ..errors import ThresherError
from ..pretrain.objectives.clip import load_clip
from .protocols import PROTOCOLS, Outcome


@PROTOCOLS.register("zeroshot")
def zeroshot(ctx, seed: int) -> Outcome:
    """Classify the test split by similarity to the class names' prompts; deterministic, so evaluated once."""
    t0 = time.perf_counter()
    if ctx.checkpoint is None or ctx.multilabel:
        raise ThresherError("zeroshot classifies single-label targets with an image-text checkpoint (a clip run); "
                            "give --checkpoint")  # fmt: skip
    names = class_words(ctx.train_ds)
    if len(names) < ctx.num_classes:
        raise ThresherError(f"{ctx.train_ds.spec} does not name its classes (classes.txt): zeroshot reads the names")
    model = load_clip(Path(ctx.checkpoint), names)
    with torch.no_grad():
        feats = torch.from_numpy(np.asarray(ctx.features("test")[:], np.float32))
        images = F.normalize(model.image_projection(feats), dim=1)
        scale = float(model.logit_scale.exp().clamp(max=100.0))
        logits = scale * images @ model.class_embeddings(names).T
    probs = torch.softmax(logits.double(), dim=1).numpy()
    pred, labels = probs.argmax(1), ctx.test_labels
    per_class = {names[c]: float((pred[labels == c] == c).mean()) for c in np.unique(labels) if c >= 0}
    known = [n for n in names if model.knows_class(n)]
    return Outcome(
        probs=probs,
        hparams={
            "templates": len(model.templates),
            "known_classes": known,
            "per_class_accuracy": per_class,
            "logit_scale": scale,
        },  # fmt: skip
        tuned=False,
        cost={"seconds": time.perf_counter() - t0, "images": 0},
        note=f"zero-shot: no training; the vocabulary knows {len(known)} of {len(names)} class names",
    )


zeroshot.seeded = False  # no training, no draw: the evaluation runs once whatever --seeds says
