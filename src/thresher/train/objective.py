"""The objective interface of the engine: ``nn.Module``s whose ``forward(batch)`` returns ``loss`` and
``per_sample_loss``, found by name in one registry.

Each objective names the augmentation it needs (``transform``: a key of the transform registry), whether it needs
labels, whether it reads a dense dataset's targets (``reads_targets``: boxes, classes and masks in the batch) and,
when SGD at the config's defaults does not train it, its own optimiser settings (``optimizer``); the training loop
builds that transform and never asks which objective it runs. The engine's own objectives (``supervised``, which
every stage fits classifiers with, and the dense ``segmentation`` and ``detection``) are in ``train/``; the
pre-training objectives (MoCo, SimCLR, BYOL, CLIP) are in ``pretrain/objectives/``; ``pretrain/__init__.py`` lists
them all. A new objective is one file with one ``@OBJECTIVES.register("name")`` class and one line in that roster;
its keyword arguments are its hyper-parameters (``objective_params`` in the config), except the run facts the loop
offers every objective (``CONTEXT``).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from ..errors import ThresherError
from ..registry import Registry

#: the pre-training objectives register from ``thresher.pretrain``, imported on the first lookup
OBJECTIVES: Registry = Registry("objective", roster="thresher.pretrain")

#: facts of the run any objective may take as a keyword argument (not user parameters): ``captions`` are the training
#: examples' own captions (None without), ``class_names`` the dataset's class descriptions (``classes.txt``)
CONTEXT = ("num_classes", "num_examples", "total_steps", "captions", "class_names")


def objective_params(name: str) -> list[str]:
    """The user-settable hyper-parameters of objective ``name``."""
    sig = inspect.signature(OBJECTIVES.get(name))
    return [p for p in sig.parameters if p not in ("self", "backbone", *CONTEXT)]


def optimizer_defaults(name: str) -> dict[str, Any]:
    """The optimiser settings objective ``name`` trains with where a config leaves them unset (its ``optimizer``
    class attribute: clip's AdamW); empty for the SGD objectives, which take ``OptimConfig``'s defaults."""
    return dict(getattr(OBJECTIVES.get(name), "optimizer", None) or {})


def takes(name: str, fact: str) -> bool:
    """Whether objective ``name`` takes the run fact ``fact`` (one of CONTEXT): facts that cost a read (a pool's
    captions) are gathered only for the objectives that take them."""
    return fact in inspect.signature(OBJECTIVES.get(name)).parameters


def build_objective(name: str, backbone: nn.Module, params: dict[str, Any] | None = None, **context: Any) -> nn.Module:
    """Instantiate objective ``name`` on ``backbone`` with the user's ``params`` and the context it accepts."""
    cls = OBJECTIVES.get(name)
    accepted = inspect.signature(cls).parameters
    params = dict(params or {})
    unknown = sorted(set(params) - set(objective_params(name)))
    if unknown:
        raise ThresherError(
            f"objective {name} has no parameter {', '.join(unknown)}; it accepts: {', '.join(objective_params(name))}"
        )
    kwargs = {k: v for k, v in context.items() if k in accepted}
    try:
        return cls(backbone=backbone, **kwargs, **params)
    except (TypeError, ValueError) as exc:
        raise ThresherError(f"objective {name}: {exc}") from None
