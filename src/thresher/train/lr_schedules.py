"""Learning-rate schedules: the multiplier of the base rate as a function of training progress in epochs.

Progress is measured in epochs (``t = epoch + fraction of its steps done``), not steps, because a data schedule such
as drop-and-pick (003) changes the number of steps per epoch while the rate must follow the epochs, as in the paper.
Every schedule starts with a linear warm-up over ``warmup_epochs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ..registry import Registry

LR_SCHEDULES: Registry = Registry("learning-rate schedule")


def _warmup(t: float, warmup_epochs: float) -> float | None:
    return t / warmup_epochs if warmup_epochs and t < warmup_epochs else None


@LR_SCHEDULES.register("cosine")
def cosine(epochs: int, warmup_epochs: float = 0.0, min_factor: float = 0.0, **_: object) -> Callable[[float], float]:
    """Linear warm-up to the base rate, then half-cosine decay to ``min_factor`` at the last epoch (no restarts)."""

    def factor(t: float) -> float:
        w = _warmup(t, warmup_epochs)
        if w is not None:
            return w
        progress = min(1.0, (t - warmup_epochs) / max(1e-12, epochs - warmup_epochs))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@LR_SCHEDULES.register("step")
def step(
    epochs: int, warmup_epochs: float = 0.0, milestones: Sequence[int] | None = None, gamma: float = 0.1, **_: object
) -> Callable[[float], float]:
    """Warm-up, then the rate times ``gamma`` at each milestone epoch (000: 0.1 every 30 of 90 epochs)."""
    marks = sorted(default_milestones(epochs) if milestones is None else milestones)

    def factor(t: float) -> float:
        w = _warmup(t, warmup_epochs)
        if w is not None:
            return w
        return gamma ** sum(t >= m for m in marks)

    return factor


def default_milestones(epochs: int) -> list[int]:
    """Decays at one and two thirds of the run (000's 30 and 60 of 90 epochs)."""
    return sorted({max(1, round(epochs / 3)), max(1, round(2 * epochs / 3))})


@LR_SCHEDULES.register("constant")
def constant(epochs: int, warmup_epochs: float = 0.0, **_: object) -> Callable[[float], float]:
    """Linear warm-up, then the base rate (short probes and tests)."""
    return lambda t: t / warmup_epochs if warmup_epochs and t < warmup_epochs else 1.0
