"""Debug mode: callbacks see the state only through what they declared.

``Learner(..., debug=True)`` hands each handler a :class:`StateView` instead of the
:class:`TrainState`: reading a field outside the callback's ``reads`` + ``writes``, or
assigning one outside its ``writes``, raises :class:`StateAccessError` naming the callback,
the field, the event and the declarations. Normal mode hands over the state itself, so the
checks cost nothing there.

What counts as a write: assigning the field (``state.loss = ...``) and changing a container
field in place — ``metrics``, ``batches`` (dicts) and ``history`` (lists of steps, losses,
lrs and epoch rows). A callback that may only read such a field gets a read-only view of it
(``MappingProxyType`` for dicts, :class:`ReadOnlyList` for lists), so
``state.metrics["x"] = 1`` fails with a ``TypeError`` at the offending line. Objects with
their own mutable state (the model, the optimiser, tensors, the phase) are handed over as
they are: changing a parameter's ``.grad`` or a param group's ``lr`` through a declared read
is not detected (there is no cheap, faithful read-only model).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any, Callable, Iterator

from torchdeck.train._state import History, TrainState

__all__ = ["StateAccessError", "StateView", "Access", "ReadOnlyList", "READ_ONLY_VIEWS", "read_only",
           "STATE_FIELDS", "debug_from_env", "check_declarations", "checked", "DEBUG_ENV"]

# The fields a callback may declare: TrainState's, in declaration order (for messages).
STATE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainState))
_FIELD_SET = frozenset(STATE_FIELDS)

DEBUG_ENV = "TORCHDECK_DEBUG"
# Values of TORCHDECK_DEBUG that switch debug mode on (anything else, or unset: off).
_ON = frozenset({"1", "true", "yes", "on"})


def debug_from_env() -> bool:
    """True when the environment asks for debug mode (``TORCHDECK_DEBUG=1``)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in _ON


class StateAccessError(Exception):
    """A callback touched a state field it did not declare (raised in debug mode only).

    Deliberately not an ``AttributeError``: ``getattr(state, name, default)`` or
    ``hasattr`` in a callback would swallow it and the callback would silently behave
    differently in debug mode than in normal mode.
    """


class ReadOnlyList(Sequence):
    """A list seen without the means to change it; items are read-only views too (so
    ``history.epochs[-1]["x"] = 1`` fails). Slices are copies."""

    __slots__ = ("_items",)

    def __init__(self, items: list[Any]) -> None:
        self._items = items

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [read_only(v) for v in self._items[index]]
        return read_only(self._items[index])

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return map(read_only, self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ReadOnlyList):
            other = other._items
        return self._items == other

    __hash__ = None  # type: ignore[assignment]  # equal to a list, which is unhashable

    def __repr__(self) -> str:
        return f"ReadOnlyList({self._items!r})"


@dataclasses.dataclass(frozen=True)
class _HistoryView:
    """A :class:`History` whose lists cannot be changed or replaced."""

    steps: ReadOnlyList
    losses: ReadOnlyList
    lrs: ReadOnlyList
    epochs: ReadOnlyList


def _history_view(h: History) -> _HistoryView:
    return _HistoryView(*(ReadOnlyList(getattr(h, f.name)) for f in dataclasses.fields(History)))


# Mutable container type -> its read-only view; looked up by exact type (a subclass may add
# mutators the view would not know about, so it is handed over as it is).
READ_ONLY_VIEWS: dict[type, Callable[[Any], Any]] = {
    dict: MappingProxyType,
    list: ReadOnlyList,
    History: _history_view,
}


def read_only(value: Any) -> Any:
    """``value`` seen read-only when it is a container we know how to wrap, else itself."""
    view = READ_ONLY_VIEWS.get(type(value))
    return value if view is None else view(value)


@dataclasses.dataclass(frozen=True)
class Access:
    """What one callback declared, as sets (checked on every access in debug mode)."""

    owner: str                  # how messages name the callback
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    readable: frozenset[str]    # reads + writes
    writable: frozenset[str]

    @classmethod
    def of(cls, callback: Any) -> "Access":
        reads, writes = tuple(callback.reads), tuple(callback.writes)
        return cls(owner=_owner(callback), reads=reads, writes=writes,
                   readable=frozenset(reads) | frozenset(writes), writable=frozenset(writes))

    def declared(self) -> str:
        return f"reads={self.reads!r}, writes={self.writes!r}"


def _owner(callback: Any) -> str:
    # The class name, plus the repr when it says more (a Throttle names what it wraps).
    name, text = type(callback).__name__, repr(callback)
    return name if text in (name, f"{name}()") else f"{name} {text}"


def check_declarations(callback: Any) -> None:
    """Refuse ``reads``/``writes`` entries that are not TrainState fields (a typo would
    otherwise surface as a confusing access error later)."""
    for kind in ("reads", "writes"):
        declared = getattr(callback, kind)
        if isinstance(declared, str):  # ("loss") instead of ("loss",): a string, not a tuple
            raise ValueError(f"{type(callback).__name__}.{kind} must be a tuple of field names, got {declared!r}; "
                             f"write ({declared!r},)")
        for field in declared:
            if field not in _FIELD_SET:
                raise ValueError(f"{type(callback).__name__}.{kind}: {field!r} is not a TrainState field; "
                                 f"allowed: {', '.join(STATE_FIELDS)}")


class StateView:
    """The state as one callback may see it during one event (debug mode)."""

    __slots__ = ("_state", "_access", "_event")

    def __init__(self, state: TrainState, access: Access, event: str) -> None:
        object.__setattr__(self, "_state", state)
        object.__setattr__(self, "_access", access)
        object.__setattr__(self, "_event", event)

    # Only called for names that are not slots: every state field comes through here.
    def __getattr__(self, name: str) -> Any:
        access = self._access
        if name in access.readable:
            value = getattr(self._state, name)
            return value if name in access.writable else read_only(value)
        if name in _FIELD_SET:
            raise StateAccessError(
                f"{access.owner} read state.{name} in {self._event} but does not declare it; it declares "
                f"{access.declared()}. Add {name!r} to its reads (or to its writes if it changes it)")
        raise AttributeError(f"'TrainState' object has no attribute {name!r}; fields: {', '.join(STATE_FIELDS)}")

    def __setattr__(self, name: str, value: Any) -> None:
        access = self._access
        if name in access.writable:
            setattr(self._state, name, value)
            return
        if name not in _FIELD_SET:
            raise StateAccessError(f"{access.owner} set state.{name} in {self._event}, which is not a TrainState "
                                   f"field; fields: {', '.join(STATE_FIELDS)}")
        raise StateAccessError(
            f"{access.owner} wrote state.{name} in {self._event} but does not declare it as a write; it declares "
            f"{access.declared()}. Add {name!r} to its writes")

    def __delattr__(self, name: str) -> None:
        raise StateAccessError(f"{self._access.owner} deleted state.{name} in {self._event}; "
                               "state fields cannot be deleted")

    def __repr__(self) -> str:
        return f"StateView({self._access.owner}, {self._event}, {self._access.declared()})"


def checked(handler: Callable[[Any], None], access: Access, event: str) -> Callable[[TrainState], None]:
    """``handler`` called with a :class:`StateView` of the state it is given."""
    def run(state: TrainState) -> None:
        handler(StateView(state, access, event))
    run.__wrapped__ = handler  # type: ignore[attr-defined]
    return run
