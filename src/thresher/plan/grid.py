"""The planner's pilot grid (issue 19): which short pre-trainings to run, at which compute levels, so that scoring
and pilots together stay within a share of the budget.

Every candidate (a method and fraction, or the whole pool, at a resolution) is piloted at ``levels`` compute levels
c_1 r^k (k = 0 .. levels - 1, ratio r): separate complete runs, each with its own learning-rate schedule, because
the curve describes what a run of that length gives (the checkpoints of one longer run are taken at a high rate and
would bend it). With K candidates piloted S times each (seeds), scoring s and a transfer measurement e per pilot (all
in C), the levels satisfy s + K S L e + K S c_1 (1 + r + ... + r^(L-1)) = share x B. The smallest pilot must take
``min_steps`` optimizer steps; below the budget that allows it the planner refuses and names that minimum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ThresherError


@dataclass(frozen=True)
class Candidate:
    """What a recommendation can be: ``method`` (a scorer, random, or "whole pool") at ``fraction`` of the pool,
    pre-trained at ``resolution``."""

    method: str
    fraction: float
    resolution: int

    @property
    def name(self) -> str:
        what = "whole pool" if self.method == "whole pool" else f"{self.method} @ {self.fraction:g}"
        return f"{what}, {self.resolution} px"


@dataclass(frozen=True)
class PilotGrid:
    """The pilots: every candidate at every level (in C), and what the grid costs in C."""

    candidates: tuple[Candidate, ...]
    levels: tuple[float, ...]
    scoring: float
    per_measurement: float
    seeds: int = 1

    @property
    def cost(self) -> float:
        k, n = len(self.candidates) * self.seeds, len(self.levels)
        return self.scoring + k * n * self.per_measurement + k * sum(self.levels)


def minimum_budget(
    n_candidates: int,
    *,
    scoring: float,
    per_measurement: float,
    smallest: float,
    levels: int,
    ratio: float,
    share: float,
    seeds: int = 1,
) -> float:
    """The smallest budget (in C) whose ``share`` pays for scoring, every measurement and pilots whose first level is
    ``smallest``."""
    ladder = sum(ratio**k for k in range(levels))
    runs = n_candidates * seeds
    return (scoring + runs * levels * per_measurement + runs * smallest * ladder) / share


def pilot_grid(
    candidates: Sequence[Candidate],
    budget: float,
    *,
    scoring: float,
    per_measurement: float,
    smallest: float,
    levels: int = 4,
    ratio: float = 2.0,
    share: float = 0.25,
    seeds: int = 1,
) -> PilotGrid:
    """The grid for ``budget`` (in C): ``levels`` geometric compute levels (ratio ``ratio``) that spend what
    ``share`` of the budget leaves after scoring and the pilots' transfer measurements. ``smallest``: the least a
    pilot may be (in C: ``min_steps`` optimizer steps, say); below it, a one-line error names the minimum budget."""
    if not candidates:
        raise ThresherError("the planner needs candidates (methods x fractions, and the whole pool)")
    if levels < 4:
        raise ThresherError(f"the planner pilots at 4 compute levels at least (a curve from {levels} is a guess)")
    if not (0 < share < 1) or ratio <= 1:
        raise ThresherError(f"pilot share must be in (0, 1) and the level ratio above 1, got {share} and {ratio}")
    k = len(candidates)
    ladder = [ratio**i for i in range(levels)]
    runs = k * seeds
    first = (share * budget - scoring - runs * levels * per_measurement) / (runs * sum(ladder))
    if first < smallest * (1 - 1e-9):  # (a budget of exactly the minimum is enough)
        need = minimum_budget(k, scoring=scoring, per_measurement=per_measurement, smallest=smallest,
                              levels=levels, ratio=ratio, share=share, seeds=seeds)  # fmt: skip
        raise ThresherError(
            f"a budget of {budget:.3g} C is too small to plan: scoring and {k} candidates x {levels} levels x "
            f"{seeds} seed(s) of pilots need at least {need:.3g} C ({share:.0%} of it for them); give at least that, "
            "or fewer candidates"
        )
    return PilotGrid(tuple(candidates), tuple(first * r for r in ladder), scoring, per_measurement, seeds)
