"""The scorer registry, a leaf: scorer modules register here; ``thresher.scoring`` lists them (its roster)."""

from __future__ import annotations

from ..registry import Registry
from .base import Scorer

#: name -> scorer class; ``SCORERS.create("cluster-min", k=200)`` builds one
SCORERS: Registry[Scorer] = Registry("scorer", roster="thresher.scoring")


def compared_methods(names: list[str]) -> list[str]:
    """The scorers a comparison (a study, a plan) names, checked, each once, without random: random is always in
    every comparison, as its baseline (a ValueError for config validators on an unknown name)."""
    SCORERS.validate(names)
    return [m for m in dict.fromkeys(names) if m != "random"]
