"""Which parameters a run trains: ``all``, or ``bn`` (001's HPT-BN: only the batch-norm affine parameters).

``trainable_parameters(model, name)`` freezes everything else (``requires_grad = False``, so no gradient is even
computed) and returns the parameters to optimise. For an objective (a module with a ``backbone``), the objective's
own new layers (heads, projectors) stay trainable: they start from random and are not part of the backbone that
HPT-BN adapts. Batch-norm running statistics still follow the data in training mode, as in HPT-BN.
"""

from __future__ import annotations

from torch import nn

from ..errors import ThresherError
from ..registry import Registry

PARAMETER_SETS: Registry = Registry("trainable-parameter set")


@PARAMETER_SETS.register("all")
def _all(model: nn.Module) -> set[int]:
    return {id(p) for p in model.parameters() if p.requires_grad}


@PARAMETER_SETS.register("bn")
def _bn(model: nn.Module) -> set[int]:
    backbone = getattr(model, "backbone", model)
    keep = {id(p) for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for p in m.parameters()}
    if not keep:
        raise ThresherError("--train bn: the backbone has no batch-norm layers")
    if backbone is not model:  # the objective's own heads (everything trainable outside the backbone)
        in_backbone = {id(p) for p in backbone.parameters()}
        keep |= {id(p) for p in model.parameters() if p.requires_grad and id(p) not in in_backbone}
    return keep


def trainable_parameters(model: nn.Module, name: str = "all") -> list[nn.Parameter]:
    """Freeze every parameter outside the set ``name`` and return the set (in module order)."""
    keep = PARAMETER_SETS.get(name)(model)
    params = []
    for p in model.parameters():
        if id(p) in keep:
            params.append(p)
        else:
            p.requires_grad_(False)
    return params
