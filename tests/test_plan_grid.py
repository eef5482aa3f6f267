"""The planner's pilot grid (issue 19): geometric levels within the pilots' share of the budget, and the refusal
below the smallest budget that can be planned, naming it."""

from __future__ import annotations

import pytest

from thresher.errors import ThresherError
from thresher.plan.grid import Candidate, minimum_budget, pilot_grid

CANDS = [Candidate("whole pool", 1.0, 32), Candidate("random", 0.1, 32), Candidate("importance", 0.1, 32)]


def test_levels_spend_the_share_left_after_scoring_and_measurements():
    grid = pilot_grid(CANDS, 4.0, scoring=0.1, per_measurement=0.01, smallest=0.001)
    # 25% of 4 C = 1 C; minus 0.1 scoring and 3 x 4 x 0.01 measurements = 0.78 C over 3 x (1 + 2 + 4 + 8) c_1
    assert grid.levels[0] == pytest.approx(0.78 / 45)
    assert [b / a for a, b in zip(grid.levels, grid.levels[1:], strict=False)] == pytest.approx([2, 2, 2])
    assert grid.cost == pytest.approx(1.0)  # exactly the pilots' share
    assert CANDS[1].name == "random @ 0.1, 32 px" and CANDS[0].name == "whole pool, 32 px"


def test_below_the_minimum_budget_the_planner_refuses_and_names_it():
    need = minimum_budget(3, scoring=0.1, per_measurement=0.01, smallest=0.02, levels=4, ratio=2.0, share=0.25)
    assert need == pytest.approx((0.1 + 0.12 + 3 * 0.02 * 15) / 0.25)
    grid = pilot_grid(CANDS, need, scoring=0.1, per_measurement=0.01, smallest=0.02)  # exactly enough
    assert grid.levels[0] == pytest.approx(0.02)
    with pytest.raises(ThresherError, match=f"too small to plan: .* need at least {need:.3g} C"):
        pilot_grid(CANDS, need * 0.9, scoring=0.1, per_measurement=0.01, smallest=0.02)


def test_grid_settings_are_checked():
    with pytest.raises(ThresherError, match="4 compute levels at least"):
        pilot_grid(CANDS, 10.0, scoring=0.0, per_measurement=0.0, smallest=0.001, levels=3)
    with pytest.raises(ThresherError, match="needs candidates"):
        pilot_grid([], 10.0, scoring=0.0, per_measurement=0.0, smallest=0.001)
    with pytest.raises(ThresherError, match="share must be in"):
        pilot_grid(CANDS, 10.0, scoring=0.0, per_measurement=0.0, smallest=0.001, share=1.5)
