"""One registry class for every named thing (backbones, scorers, objectives, schedules, protocols, datasets)."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .errors import ThresherError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a name to a factory. A new method is one file and one ``@REGISTRY.register("name")`` decorator, listed in
    its package's roster.

    A registry lives in a leaf module that imports none of its members; ``roster`` names the module whose import
    registers them (the package listing its members), imported the first time a name is looked up or listed. So a
    member may import its registry without a cycle, and every name is known wherever the registry is used.
    """

    def __init__(self, kind: str, *, roster: str | None = None):
        self.kind = kind
        self.roster = roster
        self._items: dict[str, Callable[..., T]] = {}
        self._prefixes: dict[str, Callable[..., T]] = {}

    def _load_roster(self) -> None:
        """Import the roster once (its members register themselves on import). The roster is cleared first, so a
        member that looks a name up while the roster imports does not import it again; a roster that fails to
        import is restored (to be tried again) and reported in one line."""
        if self.roster is not None:
            roster, self.roster = self.roster, None
            try:
                importlib.import_module(roster)
            except ImportError as exc:
                self.roster = roster
                raise ThresherError(f"cannot load the {self.kind}s of {roster}: {exc}") from exc

    def register(self, name: str, *, prefix: bool = False) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Register a factory under ``name``; with ``prefix=True`` it serves every ``name:<rest>``."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            table = self._prefixes if prefix else self._items
            if name in table:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            table[name] = factory
            return factory

        return deco

    def get(self, name: str) -> Callable[..., T]:
        for attempt in range(2):
            if name in self._items:
                return self._items[name]
            head, sep, _ = name.partition(":")
            if sep and head in self._prefixes:
                return self._prefixes[head]
            if attempt == 0:
                self._load_roster()
        raise ThresherError(self._unknown(name))

    def validate(self, names: str | list[str]) -> None:
        """For config validators: ``ValueError`` (which the config system turns into a one-line error naming the key)
        when any of ``names`` is not registered."""
        for name in [names] if isinstance(names, str) else names:
            try:
                self.get(name)
            except ThresherError as exc:
                raise ValueError(str(exc)) from None

    def create(self, name: str, **kwargs: Any) -> T:
        """Build the thing registered as ``name``; prefix factories get the full name as ``name=``."""
        factory = self.get(name)
        if name not in self._items:
            return factory(name=name, **kwargs)
        return factory(**kwargs)

    def names(self) -> list[str]:
        self._load_roster()
        return sorted(self._items) + [f"{p}:<name>" for p in sorted(self._prefixes)]

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except ThresherError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        self._load_roster()
        return iter(sorted(self._items))

    def _unknown(self, name: str) -> str:
        self._load_roster()
        close = difflib.get_close_matches(name, list(self._items), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})"
