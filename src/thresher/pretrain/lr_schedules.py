"""Learning-rate schedules as multipliers of the base rate per optimizer step (linear warm-up, then decay)."""

from __future__ import annotations

import math
from collections.abc import Callable

from ..registry import Registry

LR_SCHEDULES: Registry = Registry("learning-rate schedule")


@LR_SCHEDULES.register("cosine")
def cosine(total_steps: int, warmup_steps: int, min_factor: float = 0.0, **_: object) -> Callable[[int], float]:
    """Linear warm-up to the base rate, then half-cosine decay to ``min_factor`` (SGDR without restarts)."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@LR_SCHEDULES.register("constant")
def constant(total_steps: int, warmup_steps: int, **_: object) -> Callable[[int], float]:
    """Linear warm-up, then the base rate (used for short probes and tests)."""
    return lambda step: (step + 1) / warmup_steps if warmup_steps and step < warmup_steps else 1.0
