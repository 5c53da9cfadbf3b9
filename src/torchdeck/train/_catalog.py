"""Callbacks by spec name, to and from plain data: ``{"early_stopping": {"patience": 2}}``.

The Experiment spec lists its callbacks this way, so a YAML file (and the CLI) can add early
stopping, checkpoints and loggers. The callback classes stay as they are: the catalog
remembers the arguments of each callback it builds, which is what makes the way back
(:func:`callback_to_spec`) possible without each class having to describe itself.

Paths in arguments (``checkpointer.directory``, ``csv_logger.path``, ``tensorboard.log_dir``)
are taken relative to the working directory when the callback is built.
"""

from __future__ import annotations

import inspect
import os
import re
import weakref
from typing import Any, Mapping, Sequence

from torchdeck._registry import Registry
from torchdeck.train._callback import Callback
from torchdeck.train._callbacks import ProgressBar
from torchdeck.train._checkpoint import Checkpointer
from torchdeck.train._control import EarlyStopping, StopOnNaN, TimeBudget
from torchdeck.train._loggers import CSVLogger, JSONLLogger
from torchdeck.train._precision import GradAccumulation, MixedPrecision, ToDevice
from torchdeck.train._probe import SanityCheck
from torchdeck.train._tensorboard import TensorBoard
from torchdeck.train._throttle import Throttle

__all__ = ["CALLBACKS", "callback_from_spec", "callback_to_spec", "callbacks_from_spec", "callback_names",
           "callback_arguments"]

CALLBACKS = Registry("callback")


def _register_built_in() -> None:
    # Registered here rather than by decorators in their modules, which this catalog leaves as they are.
    for name, cls in (("early_stopping", EarlyStopping), ("checkpointer", Checkpointer), ("tensorboard", TensorBoard),
                      ("csv_logger", CSVLogger), ("jsonl_logger", JSONLLogger), ("stop_on_nan", StopOnNaN),
                      ("time_budget", TimeBudget), ("grad_accumulation", GradAccumulation),
                      ("mixed_precision", MixedPrecision), ("to_device", ToDevice), ("sanity_check", SanityCheck),
                      ("progress_bar", ProgressBar), ("throttle", Throttle)):
        CALLBACKS.register(name)(cls)


_register_built_in()

# Constructor parameters a spec cannot hold: live objects (a time source, an open stream, an
# optimiser) that tests or the learner supply. They keep their defaults in a spec-built callback.
_LIVE = frozenset({"clock", "file", "optimizer"})
# Parameters whose value is itself a callback: in a spec, a nested callback spec.
_NESTED = frozenset({"callback"})

# The arguments each spec-built callback was made with: (spec name, canonical arguments).
# Weak keys: the catalog must not keep a learner's callbacks alive.
_MADE: "weakref.WeakKeyDictionary[Callback, tuple[str, dict[str, Any]]]" = weakref.WeakKeyDictionary()


def _register_late() -> None:
    """Register callbacks from packages that themselves import ``torchdeck.train``.

    ``torchdeck.schedules`` imports ``torchdeck.train`` (ReduceOnPlateau is a Callback), so
    importing it from here at module level would be an import cycle; it is registered on
    first use instead (by then ``import torchdeck`` has loaded both).
    """
    if "reduce_on_plateau" not in CALLBACKS:
        from torchdeck.schedules import ReduceOnPlateau
        CALLBACKS.register("reduce_on_plateau")(ReduceOnPlateau)


def callback_names() -> list[str]:
    """Every callback a spec can name, sorted."""
    _register_late()
    return CALLBACKS.names()


def callback_arguments(name: str) -> dict[str, Any]:
    """``{argument: default}`` of the callback ``name`` as a spec writes it (required
    arguments map to ``inspect.Parameter.empty``)."""
    _register_late()
    return {p.name: p.default for p in _spec_params(CALLBACKS.lookup(name))}


def _spec_params(cls: type) -> list[inspect.Parameter]:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    return [p for p in params if p.name not in _LIVE and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _plain(where: str, value: Any) -> Any:
    """``value`` as YAML-safe plain data (paths become strings, tuples lists), or a ValueError."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(f"{where}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _plain(f"{where}.{k}", v) for k, v in value.items()}
    raise ValueError(f"{where}: {value!r} is not plain data; allowed: None, bool, int, float, str, paths, "
                     "lists and string-keyed mappings of these")


def _own_message(e: ValueError, cls: type, name: str) -> str:
    """The callback's own message without its ``ClassName:`` / ``spec_name:`` prefix (the
    spec path replaces it)."""
    return re.sub(rf"^(?:{re.escape(cls.__name__)}|{re.escape(name)}): ", "", str(e))


def callback_from_spec(spec: Any, *, where: str = "callback") -> Callback:
    """Build a callback from its spec: ``"stop_on_nan"``, ``{"early_stopping": {"patience": 2}}``,
    ``{"throttle": {"every_steps": 10, "callback": {"csv_logger": {"path": "log.csv"}}}}``.

    A Callback instance is returned as it is. Errors are ValueErrors naming the place in the
    spec, the value and what is allowed (``callbacks[1].early_stopping: unknown argument
    'patiense'; allowed: monitor, patience, min_delta, mode``).
    """
    if isinstance(spec, Callback):
        return spec
    if isinstance(spec, str):
        name, args = spec, {}
    elif isinstance(spec, Mapping) and len(spec) == 1:
        (name, args), = spec.items()
    else:
        raise ValueError(f"{where}: expected a callback name or a one-key mapping {{callback: {{argument: value}}}}, "
                         f"got {spec!r}")
    _register_late()
    if not isinstance(name, str) or name not in CALLBACKS:
        raise ValueError(f"{where}: unknown callback {name!r}; allowed: {', '.join(CALLBACKS.names())}")
    here = f"{where}.{name}"
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise ValueError(f"{here}: expected a mapping of arguments, got {args!r}")
    cls = CALLBACKS[name]
    params = _spec_params(cls)
    allowed = [p.name for p in params]
    for key in args:
        if key not in allowed:
            raise ValueError(f"{here}: unknown argument {key!r}; allowed: {', '.join(allowed) or 'none'}")
    missing = [p.name for p in params if p.default is p.empty and p.name not in args]
    if missing:
        raise ValueError(f"{here}: missing required argument {missing[0]!r}; required: "
                         f"{', '.join(p.name for p in params if p.default is p.empty)}")
    kwargs: dict[str, Any] = {}
    canonical: dict[str, Any] = {}
    for p in params:
        value = args.get(p.name, p.default)
        if p.name in _NESTED:
            inner = callback_from_spec(value, where=f"{here}.{p.name}")
            kwargs[p.name], canonical[p.name] = inner, callback_to_spec(inner, where=f"{here}.{p.name}")
        else:
            kwargs[p.name] = canonical[p.name] = _plain(f"{here}.{p.name}", value)
    # Only what was given goes to the constructor: the rest keep the class's own defaults (the
    # same values the canonical spec shows).
    try:
        built = cls(**{k: v for k, v in kwargs.items() if k in args or k in _NESTED})
    except (ValueError, TypeError) as e:
        raise ValueError(f"{here}: {_own_message(e, cls, name)}") from None
    _MADE[built] = (name, canonical)
    return built


def callback_to_spec(callback: Callback, *, where: str = "callback") -> dict[str, dict[str, Any]]:
    """The spec ``{name: {argument: value}}`` a catalog-built callback was made from, with
    every argument present (defaults filled in): the canonical form.

    A callback constructed directly has no recorded arguments and is refused: build it with
    :func:`callback_from_spec` (or list its spec in ``Experiment.callbacks``).
    """
    made = _MADE.get(callback) if isinstance(callback, Callback) else None
    if made is None:
        raise ValueError(f"{where}: {callback!r} was not built from a spec, so its arguments are unknown; "
                         f"build it with callback_from_spec({{name: {{...}}}}); names: {', '.join(callback_names())}")
    name, args = made
    # Copies: the caller may edit the spec it gets without changing what we recorded.
    return {name: _plain(f"{where}.{name}", args)}


def callbacks_from_spec(specs: Any, *, where: str = "callbacks") -> list[Callback]:
    """A list of callback specs -> callbacks; item ``i``'s errors name ``callbacks[i]``."""
    if specs is None:
        return []
    if isinstance(specs, (str, Mapping)) or not isinstance(specs, Sequence):
        raise ValueError(f"{where}: expected a list of callback specs, got {specs!r}")
    return [callback_from_spec(s, where=f"{where}[{i}]") for i, s in enumerate(specs)]
