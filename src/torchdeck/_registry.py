"""Registries: name -> thing, so specs can name components and nothing branches on names."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(dict):
    """A dict that refuses a name registered twice and explains a name it lacks."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@DATASETS.register("digits")``."""
        def deco(obj: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice ({self[name]!r}, {obj!r})")
            self[name] = obj
            return obj
        return deco

    def lookup(self, name: str) -> Any:
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")
        return self[name]

    def names(self) -> list[str]:
        return sorted(self)
