"""Scoring the source pool against a target (papers 000 and 004): one scorer per file, listed here (the roster of
``registry.SCORERS``), the ScoreTable they fill, and the ``thresher score`` stage (``pipeline``, imported where used).
"""

from . import clip_score, clustering, domain_classifier, entropy, importance, knn, random_scorer  # noqa: F401
from .base import Scorer, Side, check_scores
from .registry import SCORERS

__all__ = ["SCORERS", "Scorer", "Side", "check_scores"]
