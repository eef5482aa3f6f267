"""Data schedules of pre-training (003): ``drop-and-pick`` (Algorithm 1) and its ``random-drop`` control, registered
in the engine's data-schedule registry (``train/data_schedule.py``, where the interface and ``full`` live).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ThresherError
from ..train.data_schedule import DATA_SCHEDULES, DataSchedule


@DATA_SCHEDULES.register("drop-and-pick")
class DropAndPick(DataSchedule):
    """003 Algorithm 1: warm up on all data for ``warmup`` epochs; then every ``interval`` epochs keep the ``keep``
    fraction of the current examples with the highest loss, for at most ``active`` epochs after the cycle's start;
    at each epoch in ``pick`` take all data back and start a new cycle.

    Defaults follow 003's CIFAR setting (W=40, I=10, p=0.9, no active limit, R={150} = the first LR decay), scaled to
    the run: ``pick`` = the first decay epoch of a step LR schedule, else the middle of the run; ``warmup`` = 4/15 of
    the first pick epoch (40/150); ``interval`` = 1/15 of it (10/150), at least 1.

    One deviation from the printed pseudo-code: a pick also restarts the interval count (``T_previous = tau``), as
    the text describes ("reuse all training examples followed by another drop stage"); taken literally, an
    ``active``-limited cycle would never drop again after the first pick.
    """

    def __init__(
        self,
        num_examples: int,
        epochs: int,
        decay_epochs: list[int] | None = None,
        warmup: int | None = None,
        interval: int | None = None,
        keep: float = 0.9,
        active: int | None = None,
        pick: list[int] | None = None,
        **_: Any,
    ):
        super().__init__(num_examples, epochs)
        if not 0 < keep <= 1:
            raise ThresherError(f"drop-and-pick keep must be in (0, 1], got {keep}")
        if pick is None:
            first = min(decay_epochs) if decay_epochs else max(1, epochs // 2)
            pick = [first]
        first_pick = min(pick) if pick else epochs
        self.pick = sorted({int(p) for p in pick})
        self.warmup = round(first_pick * 40 / 150) if warmup is None else int(warmup)
        self.interval = max(1, round(first_pick * 10 / 150)) if interval is None else int(interval)
        self.keep = float(keep)
        self.active_epochs = None if active is None else int(active)
        for name, v in (("warmup", self.warmup), ("interval", self.interval)):
            if v < 0 or (name == "interval" and v < 1):
                raise ThresherError(f"drop-and-pick {name} must be >= {0 if name == 'warmup' else 1}, got {v}")
        if self.active_epochs is not None and self.active_epochs < 1:
            raise ThresherError(f"drop-and-pick active must be >= 1 (or unset for no limit), got {active}")
        self.t_start = self.t_previous = self.warmup

    def _drop_due(self, tau: int) -> bool:
        return (
            tau > self.warmup
            and tau - self.t_previous == self.interval
            and (self.active_epochs is None or tau - self.t_start < self.active_epochs)
        )

    def _kept(self, size: int) -> int:
        return max(1, math.ceil(self.keep * size - 1e-9))

    def _decide(self, tau: int) -> None:
        if self._drop_due(tau):
            self.t_previous = tau
            current = self.active_positions
            k = self._kept(len(current))
            # highest loss first; ties (and never-measured examples, +inf) broken by position for determinism
            order = np.lexsort((current, -self.last_loss[current]))
            self.active_positions = np.sort(current[order[:k]])
        if tau in self.pick:
            self.t_start = self.t_previous = tau
            self.active_positions = np.arange(self.n, dtype=np.int64)

    def planned_sizes(self) -> list[int]:
        """Replays the schedule's counters (sizes only), so cost and LR progress are known before training."""
        t_start, t_previous, size, sizes = self.warmup, self.warmup, self.n, []
        for tau in range(1, self.epochs + 1):
            sizes.append(size)
            if (
                tau > self.warmup
                and tau - t_previous == self.interval
                and (self.active_epochs is None or tau - t_start < self.active_epochs)
            ):
                t_previous, size = tau, self._kept(size)
            if tau in self.pick:
                t_start = t_previous = tau
                size = self.n
        return sizes

    def report(self) -> dict:
        return {
            **super().report(),
            "warmup": self.warmup,
            "interval": self.interval,
            "keep": self.keep,
            "active": self.active_epochs,
            "pick": self.pick,
        }

    def _extra_state(self) -> dict:
        return {"t_start": self.t_start, "t_previous": self.t_previous}

    def _load_extra_state(self, state: dict) -> None:
        self.t_start, self.t_previous = int(state["t_start"]), int(state["t_previous"])


@DATA_SCHEDULES.register("random-drop")
class RandomDrop(DropAndPick):
    """003's control (Table 2f): drop-and-pick's timing and sizes, but the kept examples are a seeded random draw
    instead of the highest-loss ones, so the same computation is spent without hard-example mining."""

    def __init__(self, num_examples: int, epochs: int, decay_epochs: list[int] | None = None, seed: int = 0, **kw):
        super().__init__(num_examples, epochs, decay_epochs, **kw)
        self.seed = int(seed)

    def _decide(self, tau: int) -> None:
        if self._drop_due(tau):
            self.t_previous = tau
            current = self.active_positions
            rng = np.random.default_rng([self.seed, tau, 0xD0])
            self.active_positions = np.sort(rng.choice(current, self._kept(len(current)), replace=False))
        if tau in self.pick:
            self.t_start = self.t_previous = tau
            self.active_positions = np.arange(self.n, dtype=np.int64)
