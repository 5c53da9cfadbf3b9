"""The callback base class and the dependency ordering of callbacks."""

from __future__ import annotations

from typing import ClassVar, Iterable

from torchdeck.train._events import EVENTS

__all__ = ["Callback", "order_callbacks"]


class Callback:
    """Subclass and define methods named after events (``step_end(self, state)``).

    Declare the :class:`TrainState` fields the callback reads and writes, and the callback
    classes it must run after; the learner orders callbacks from these declarations and
    refuses two callbacks that write the same field. In debug mode (``Learner(debug=True)``
    or ``TORCHDECK_DEBUG=1``) it also refuses access outside the declarations: reading a
    field in neither ``reads`` nor ``writes``, or changing one not in ``writes`` (see
    :class:`~torchdeck.train.StateAccessError`).
    """

    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    after: ClassVar[tuple[type["Callback"], ...]] = ()

    def handles(self) -> tuple[str, ...]:
        """The events this callback defines a method for."""
        return tuple(e for e in EVENTS if getattr(type(self), e, None) is not getattr(Callback, e, None))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def order_callbacks(callbacks: Iterable[Callback]) -> list[Callback]:
    """Topological order from ``after`` declarations, stable otherwise.

    Raises ValueError when two callbacks write one field or when ``after`` forms a cycle.
    """
    cbs = list(callbacks)
    writers: dict[str, Callback] = {}
    for cb in cbs:
        for field in cb.writes:
            if field in writers:
                raise ValueError(f"callbacks {writers[field]!r} and {cb!r} both write state.{field}; "
                                 "remove one or merge them")
            writers[field] = cb
    ordered: list[Callback] = []
    visiting: set[int] = set()

    def visit(cb: Callback) -> None:
        if any(cb is o for o in ordered):
            return
        if id(cb) in visiting:
            raise ValueError(f"callback ordering has a cycle through {cb!r}")
        visiting.add(id(cb))
        for dep in cbs:
            if dep is not cb and isinstance(dep, tuple(cb.after)):
                visit(dep)
        visiting.discard(id(cb))
        ordered.append(cb)

    for cb in cbs:
        visit(cb)
    return ordered
