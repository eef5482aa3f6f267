"""Scoring the source pool against a target (papers 000 and 004): one scorer per file, one registry.

``SCORERS.create("cluster-min", k=200)`` builds a scorer; the modules below register themselves on import.
"""

from ..registry import Registry
from .base import Scorer, Side, check_scores

SCORERS: Registry[Scorer] = Registry("scorer")


def _register() -> None:
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):  # every module of this package; scorer modules self-register
        if mod.name != "pipeline":  # the pipeline imports the training stack; it is imported where used
            importlib.import_module(f"{__name__}.{mod.name}")


_register()

__all__ = ["SCORERS", "Scorer", "Side", "check_scores"]
