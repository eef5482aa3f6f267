"""The planner's answer (issue 19): every candidate's curve extrapolated to what the budget leaves, and a choice.

The plan has spent scoring and pilots; what is left, R = B - spent, is the recommended run's pre-training. The whole
pool's honest competitor is the whole pool trained for all of B (no planning at all): it is predicted at B from its
own pilots. The recommendation is the candidate with the highest predicted accuracy at R, unless the pilots cannot
tell it apart from others (their intervals overlap its interval): then it is the one of those with the lowest total
cost (its own scoring, as if run alone, plus R), as the issue asks, and the plan says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from ..errors import ThresherError
from .curves import Points, fit_curves, predict, shares_exponent
from .grid import Candidate


@dataclass(frozen=True)
class Piloted:
    """A candidate, what its scoring cost as if run alone (in C; 0 for random and the whole pool), its pilots."""

    candidate: Candidate
    scoring: float
    points: Points


def recommend(piloted: Mapping[str, Piloted], budget: float, spent: float, *, whole_pool: str, seed: int = 0) -> dict:
    """Curves, predictions at R = budget - spent (and the whole pool's at the full budget), the recommendation, the
    runner-up and whether the pilots told them apart. All compute in C."""
    left = budget - spent
    if left <= 0:
        raise ThresherError(
            f"scoring and pilots spent {spent:.3g} C of the {budget:.3g} C budget: nothing is left to pre-train; give "
            "a larger budget or a smaller --share"
        )
    if whole_pool not in piloted:
        raise ThresherError("the whole pool must be among the piloted candidates (it is the competitor)")
    points = {name: p.points for name, p in piloted.items()}
    shared = shares_exponent(points)  # (not read off the fitted exponents: two own exponents can coincide)
    curves = fit_curves(points, shared=shared)
    rows = {}
    for name, p in piloted.items():
        alpha = curves[name].alpha if shared else None
        pred = predict(p.points, left, alpha=alpha, seed=seed)
        rows[name] = {
            "candidate": asdict(p.candidate),
            "name": name,
            "curve": asdict(curves[name]),
            "prediction": asdict(pred),
            "scoring_C": p.scoring,
            "total_C": p.scoring + left,  # as if a user ran it alone: its scoring and the pre-training
        }
    whole = piloted[whole_pool]
    at_budget = predict(whole.points, budget, alpha=curves[whole_pool].alpha if shared else None, seed=seed)
    leader = max(rows, key=lambda n: rows[n]["prediction"]["mean"])
    low = rows[leader]["prediction"]["low"]
    tied = [n for n in rows if rows[n]["prediction"]["high"] >= low]  # intervals overlapping the leader's
    if len(tied) > 1:
        chosen = min(tied, key=lambda n: (rows[n]["total_C"], -rows[n]["prediction"]["mean"]))
    else:
        chosen = leader
    runner_up = max((n for n in rows if n != chosen), key=lambda n: rows[n]["prediction"]["mean"], default=None)
    largest = max(float(p.points.compute.max()) for p in piloted.values())
    return {
        "budget_C": budget,
        "extrapolation": left / largest,  # how far past its largest pilot the recommendation is predicted
        "spent_C": spent,
        "left_C": left,
        "shared_exponent": shared,
        "candidates": rows,
        "leader": leader,
        "recommended": chosen,
        "runner_up": runner_up,
        "told_apart": len(tied) == 1,
        "indistinguishable": sorted(tied) if len(tied) > 1 else [],
        "whole_pool_at_budget": asdict(at_budget),
    }
