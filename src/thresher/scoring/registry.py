"""The scorer registry, a leaf: scorer modules register here; ``thresher.scoring`` lists them (its roster)."""

from __future__ import annotations

from ..registry import Registry
from .base import Scorer

#: name -> scorer class; ``SCORERS.create("cluster-min", k=200)`` builds one
SCORERS: Registry[Scorer] = Registry("scorer", roster="thresher.scoring")
