"""Registries: name -> thing, so specs can name components and nothing branches on names."""

from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

__all__ = ["Registry", "construct"]

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


def construct(where: str, name: str, cls: Callable[..., T], kwargs: Mapping[str, Any], allowed: list[str],
              noun: str) -> T:
    """``cls(**kwargs)`` for one entry of a spec; errors say where in the spec, and what is allowed."""
    for key in kwargs:
        if key not in allowed:
            raise ValueError(f"{where}.{name}: unknown {noun} {key!r}; allowed: {', '.join(allowed) or 'none'}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"{where}.{name}: {e}") from None
    except ValueError as e:
        # The component says "<name>: <field> must be ..."; prefix where it sits in the spec.
        raise ValueError(f"{where}.{e}") from None
