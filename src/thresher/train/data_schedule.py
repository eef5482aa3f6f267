"""The data-schedule interface of the engine: which training examples each epoch sees, and the ``full`` schedule.

The schedules of pre-training (``drop-and-pick``, 003 Algorithm 1, and its ``random-drop`` control) live in
``pretrain/schedules.py`` and register here. A schedule is deterministic from its settings and the per-sample losses
it is shown, identical on every rank (losses are summed across ranks before it decides), and checkpointed with
``state_dict`` / ``load_state_dict``. Epochs are counted from 1 in the settings, as in the paper (``tau = 1..E``); the
loop's epoch ``e`` (from 0) is ``tau = e + 1``. A new schedule is one class with one
``@DATA_SCHEDULES.register("name")``; its keyword arguments are its settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..errors import ThresherError
from ..registry import Registry

#: drop-and-pick and random-drop register from ``thresher.pretrain``, imported on the first lookup
DATA_SCHEDULES: Registry = Registry("data schedule", roster="thresher.pretrain")

#: facts of the run a schedule may take (not user settings): examples, epochs, the LR schedule's decay epochs, seed
CONTEXT = ("num_examples", "epochs", "decay_epochs", "seed")


class DataSchedule:
    """The full schedule: every example in every epoch. Base class of the others."""

    def __init__(self, num_examples: int, epochs: int, **_: Any):
        self.n, self.epochs = int(num_examples), int(epochs)
        self.active_positions = np.arange(self.n, dtype=np.int64)
        # the latest loss of each example (+inf until seen: never dropped before it was measured)
        self.last_loss = np.full(self.n, np.inf)
        self.epoch_loss_sum = np.zeros(self.n)
        self.epoch_loss_count = np.zeros(self.n)

    def active(self, epoch: int) -> np.ndarray:
        """Positions (sorted) trained on in loop epoch ``epoch`` (from 0); call in increasing epoch order."""
        return self.active_positions

    def record(self, positions: np.ndarray, losses: np.ndarray) -> None:
        """Per-sample losses of the examples at ``positions``, measured on the fly (with augmentation)."""
        np.add.at(self.epoch_loss_sum, positions, np.asarray(losses, np.float64))
        np.add.at(self.epoch_loss_count, positions, 1.0)

    def end_epoch(self, epoch: int, all_reduce: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """Fold this epoch's losses in (summed over ranks by ``all_reduce``) and decide the next epoch's examples."""
        s, c = self.epoch_loss_sum, self.epoch_loss_count
        if all_reduce is not None:
            s, c = all_reduce(s), all_reduce(c)
        seen = c > 0
        self.last_loss[seen] = s[seen] / c[seen]
        self.epoch_loss_sum = np.zeros(self.n)
        self.epoch_loss_count = np.zeros(self.n)
        self._decide(epoch + 1)

    def _decide(self, tau: int) -> None:
        """After epoch ``tau`` (from 1): set ``active_positions`` for epoch ``tau + 1``."""

    def planned_sizes(self) -> list[int]:
        """Examples per epoch over the whole run (known in advance: only which examples depends on the losses)."""
        return [self.n] * self.epochs

    def computation(self) -> float:
        """Examples processed over the full schedule's (003's reported computation)."""
        return sum(self.planned_sizes()) / max(1, self.n * self.epochs)

    def report(self) -> dict:
        return {"computation": round(self.computation(), 6), "examples_per_epoch": self.planned_sizes()}

    def state_dict(self) -> dict:
        return {
            "active": torch.from_numpy(self.active_positions.copy()),
            "last_loss": torch.from_numpy(self.last_loss.copy()),
            "epoch_loss_sum": torch.from_numpy(self.epoch_loss_sum.copy()),
            "epoch_loss_count": torch.from_numpy(self.epoch_loss_count.copy()),
            **self._extra_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.active_positions = state["active"].numpy().astype(np.int64)
        self.last_loss = state["last_loss"].numpy().astype(np.float64)
        self.epoch_loss_sum = state["epoch_loss_sum"].numpy().astype(np.float64)
        self.epoch_loss_count = state["epoch_loss_count"].numpy().astype(np.float64)
        self._load_extra_state(state)

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass


DATA_SCHEDULES.register("full")(DataSchedule)


def schedule_params(name: str) -> list[str]:
    import inspect

    cls = DATA_SCHEDULES.get(name)
    names = [p for c in cls.__mro__ if c is not object and "__init__" in vars(c)
             for p in inspect.signature(c.__init__).parameters]  # fmt: skip
    return list(dict.fromkeys(p for p in names if p not in ("self", "_", "kw", *CONTEXT)))


def build_schedule(name: str, params: dict | None = None, **context: Any) -> DataSchedule:
    """Instantiate schedule ``name`` with the user's ``params`` (unknown names are a clear error) and the context."""
    cls = DATA_SCHEDULES.get(name)
    params = dict(params or {})
    unknown = sorted(set(params) - set(schedule_params(name)))
    if unknown:
        accepted = ", ".join(schedule_params(name)) or "no parameters"
        raise ThresherError(f"data schedule {name} has no parameter {', '.join(unknown)}; it accepts: {accepted}")
    return cls(**context, **params)
