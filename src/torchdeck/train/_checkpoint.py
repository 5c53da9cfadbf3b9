"""Checkpoints: everything a run needs to continue bit for bit, written atomically.

A checkpoint is a directory holding two files:

- ``model.safetensors``: the model's weights and buffers (safetensors: no code runs on load);
- ``state.pt``: a ``torch.save`` of plain containers and tensors only (loadable with
  ``torch.load(..., weights_only=True)``): the optimiser's ``state_dict``, the state of every
  callback that has ``state_dict``/``load_state_dict`` (schedulers, early stopping, the
  gradient scaler, ...), the RNG states (torch, CUDA, numpy, Python ``random``), the
  shuffling state of each loader, the global step, the epochs done, the metrics and the
  history.

Both files are written into a temporary directory beside the target, which is then renamed
into place, so a crash mid-write never leaves a half checkpoint under the final name.

The same capture, kept in memory, lets ``lr_find`` and the sanity check put a learner back
exactly as it was (:func:`capture` / :func:`restore`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
import shutil
import tempfile
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from torchdeck.train._callback import Callback
from torchdeck.train._callbacks import Recorder
from torchdeck.train._monitor import Monitor
from torchdeck.train._state import History, TrainState

if TYPE_CHECKING:
    from torchdeck.train._learner import Learner

__all__ = ["Checkpointer", "save_checkpoint", "load_checkpoint", "resolve_checkpoint", "capture", "restore",
           "rng_state", "set_rng_state", "WEIGHTS_FILE", "STATE_FILE", "INDEX_FILE"]

FORMAT = "torchdeck.checkpoint"
VERSION = 1
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.pt"
INDEX_FILE = "checkpoints.json"  # a Checkpointer directory's list of what it kept

# Where a loader keeps the torch.Generator that drives its shuffling: our TensorLoader and a
# torch DataLoader given ``generator=`` (its RandomSampler, or a BatchSampler's sampler). A
# DataLoader without one draws from the global torch RNG, which is saved anyway.
_GENERATOR_PATHS: tuple[tuple[str, ...], ...] = (("generator",), ("sampler", "generator"),
                                                 ("batch_sampler", "sampler", "generator"))


# -- RNG states -------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain values (``weights_only``-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": list(py_state), "gauss_next": gauss_next},
    }
    # Only a CUDA context that exists has RNG state worth keeping; asking would create one.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# -- loaders and callbacks ----------------------------------------------------------------------
def _generator_of(loader: Any) -> torch.Generator | None:
    for path in _GENERATOR_PATHS:
        obj = loader
        for attr in path:
            obj = getattr(obj, attr, None)
        if isinstance(obj, torch.Generator):
            return obj
    return None


def _loader_state(loader: Any) -> dict[str, Any] | None:
    # A loader that saves its own position (torchdata's StatefulDataLoader) knows best.
    if callable(getattr(loader, "state_dict", None)) and callable(getattr(loader, "load_state_dict", None)):
        return {"kind": "state_dict", "state": loader.state_dict()}
    gen = _generator_of(loader)
    return None if gen is None else {"kind": "generator", "state": gen.get_state()}


def _set_loader_state(loader: Any, saved: dict[str, Any] | None) -> None:
    if saved is None:
        return
    if saved["kind"] == "state_dict":
        loader.load_state_dict(saved["state"])
        return
    gen = _generator_of(loader)
    if gen is None:
        raise ValueError(f"the checkpoint holds a shuffling generator state for a loader that has none ({loader!r})")
    gen.set_state(saved["state"])


def _stateful_callbacks(callbacks: list[Callback]) -> dict[str, Callback]:
    """Callbacks with ``state_dict``/``load_state_dict``, keyed ``Name`` (``Name#1``, ... for repeats)."""
    out: dict[str, Callback] = {}
    counts: dict[str, int] = {}
    for cb in callbacks:
        if callable(getattr(cb, "state_dict", None)) and callable(getattr(cb, "load_state_dict", None)):
            name = type(cb).__name__
            n = counts.get(name, 0)
            counts[name] = n + 1
            out[name if n == 0 else f"{name}#{n}"] = cb
    return out


# -- capture and restore ------------------------------------------------------------------------
def capture(learner: "Learner", *, weights: bool = True) -> dict[str, Any]:
    """A deep copy of everything a run depends on (weights too unless ``weights=False``)."""
    s = learner.state
    snap: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model": type(s.model).__name__,
        "step": s.step,
        "epochs_done": s.epochs_done,
        "metrics": dict(s.metrics),
        "history": dataclasses.asdict(s.history),
        # torch's state_dict hands out the live state tensors: copy them.
        "optimizer": copy.deepcopy(s.optimizer.state_dict()),
        "callbacks": {k: copy.deepcopy(cb.state_dict()) for k, cb in _stateful_callbacks(learner.callbacks).items()},
        "rng": rng_state(),
        "loaders": {name: _loader_state(loader) for name, loader in learner.loaders.items()},
    }
    if weights:
        snap["weights"] = {k: v.detach().clone() for k, v in s.model.state_dict().items()}
    return snap


def restore(learner: "Learner", snap: dict[str, Any], *, where: str = "snapshot") -> None:
    """Put ``learner`` back to ``snap`` (from :func:`capture` or a checkpoint file)."""
    s = learner.state
    if "weights" in snap:
        s.model.load_state_dict(snap["weights"])
    s.optimizer.load_state_dict(snap["optimizer"])
    stateful = _stateful_callbacks(learner.callbacks)
    saved = snap["callbacks"]
    for key, cb in stateful.items():
        if key in saved:
            cb.load_state_dict(saved[key])
    # Saved state without a callback here is fine (evaluating without the checkpointer);
    # a stateful callback the checkpoint does not know starts fresh, which a resume should say.
    fresh = sorted(set(stateful) - set(saved))
    if fresh:
        warnings.warn(f"{where}: holds no state for {', '.join(fresh)}; they start fresh", stacklevel=3)
    for name, loader in learner.loaders.items():
        _set_loader_state(loader, snap["loaders"].get(name))
    set_rng_state(snap["rng"])
    s.step = int(snap["step"])
    s.epochs_done = int(snap["epochs_done"])
    s.metrics = dict(snap["metrics"])
    s.history = History(**copy.deepcopy(snap["history"]))


# -- files ------------------------------------------------------------------------------------
def _fsync_file(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: str) -> None:
    # Makes a rename durable; not every platform can open a directory (Windows), which is fine.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish_dir(tmp: str, final: str) -> None:
    """Rename the finished ``tmp`` directory to ``final``, replacing an older one."""
    parent = os.path.dirname(final)
    if os.path.lexists(final):
        # os.replace cannot put a directory over a non-empty one: move the old one aside
        # first. Between the two renames the name is briefly absent, never half-written.
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(final)}.old-", dir=parent)
        os.rmdir(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(parent)


def _write_json_atomic(path: str, obj: Any) -> None:
    parent = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_checkpoint(learner: "Learner", path: str | os.PathLike) -> str:
    """Write ``learner``'s checkpoint directory at ``path`` (atomically); returns the path."""
    from safetensors.torch import save_model

    final = os.path.abspath(os.fspath(path))
    if os.path.exists(final) and not os.path.isdir(final):
        raise ValueError(f"save_checkpoint: {final!r} is a file; a checkpoint is a directory (give a new name)")
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(final)}.tmp-", dir=parent)
    try:
        weights_file = os.path.join(tmp, WEIGHTS_FILE)
        # save_model (not save_file) copes with tied weights: it stores a shared tensor once.
        save_model(learner.state.model, weights_file, metadata={"format": FORMAT})
        _fsync_file(weights_file)
        state_file = os.path.join(tmp, STATE_FILE)
        with open(state_file, "wb") as f:
            torch.save(capture(learner, weights=False), f)
            f.flush()
            os.fsync(f.fileno())
        _publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def resolve_checkpoint(path: str | os.PathLike, which: str = "last") -> str:
    """The checkpoint directory ``path`` names: itself, the directory of one of its files, or
    the ``which`` (``"last"``/``"best"``) entry of a Checkpointer directory."""
    if which not in ("last", "best"):
        raise ValueError(f"load_checkpoint: which must be 'last' or 'best', got {which!r}")
    p = os.path.abspath(os.fspath(path))
    if not os.path.exists(p):
        raise FileNotFoundError(f"checkpoint {p!r} does not exist")
    if os.path.isfile(p):
        if os.path.basename(p) not in (WEIGHTS_FILE, STATE_FILE):
            raise ValueError(f"checkpoint {p!r} is a file; give its checkpoint directory (holding "
                             f"{WEIGHTS_FILE} and {STATE_FILE}) or a Checkpointer directory")
        return os.path.dirname(p)
    if os.path.exists(os.path.join(p, STATE_FILE)) or os.path.exists(os.path.join(p, WEIGHTS_FILE)):
        return p
    index_file = os.path.join(p, INDEX_FILE)
    if not os.path.exists(index_file):
        raise FileNotFoundError(f"checkpoint {p!r} holds neither {WEIGHTS_FILE} + {STATE_FILE} (a checkpoint) "
                                f"nor {INDEX_FILE} (a Checkpointer directory)")
    try:
        with open(index_file, encoding="utf-8") as f:
            name = json.load(f)[which]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"checkpoint index {index_file!r} cannot be read ({type(e).__name__}: {e})") from None
    if name is None:
        raise ValueError(f"checkpoint index {index_file!r} has no {which!r} checkpoint"
                         + (" (the Checkpointer had monitor=None)" if which == "best" else ""))
    return os.path.join(p, name)


def _read_state(state_file: str) -> dict[str, Any]:
    try:
        snap = torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a damaged or foreign file
        raise ValueError(f"checkpoint file {state_file!r} cannot be read ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}); it is damaged or not a torchdeck "
                         "checkpoint") from e
    if not isinstance(snap, dict) or snap.get("format") != FORMAT:
        raise ValueError(f"checkpoint file {state_file!r} is not a torchdeck checkpoint (no format {FORMAT!r})")
    if snap.get("version") != VERSION:
        raise ValueError(f"checkpoint file {state_file!r} has format version {snap.get('version')!r}; "
                         f"this torchdeck reads version {VERSION}")
    return snap


def _read_weights(weights_file: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(weights_file)
    except Exception as e:
        raise ValueError(f"checkpoint file {weights_file!r} cannot be read ({type(e).__name__}: {e}); "
                         "it is damaged or not a safetensors file") from e


def load_checkpoint(learner: "Learner", path: str | os.PathLike, *, which: str = "last") -> str:
    """Restore ``learner`` from a checkpoint; a failed load leaves the learner as it was."""
    from safetensors.torch import load_model

    ckpt = resolve_checkpoint(path, which)
    weights_file, state_file = os.path.join(ckpt, WEIGHTS_FILE), os.path.join(ckpt, STATE_FILE)
    for f in (weights_file, state_file):
        if not os.path.isfile(f):
            raise FileNotFoundError(f"checkpoint file {f!r} is missing; a checkpoint directory holds "
                                    f"{WEIGHTS_FILE} and {STATE_FILE}")
    snap = _read_state(state_file)
    _read_weights(weights_file)  # a damaged file is named before anything changes
    backup = capture(learner)
    try:
        # load_model (not load_state_dict of load_file) knows which tied weights save_model merged.
        load_model(learner.state.model, weights_file, strict=True, device=str(next(
            (t.device for t in learner.state.model.state_dict().values()), "cpu")))
        restore(learner, snap, where=f"checkpoint {ckpt!r}")
    except Exception as e:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            restore(learner, backup)
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"checkpoint {ckpt!r} does not fit this learner ({type(e).__name__}: {first_line}); "
                         "the learner is unchanged") from e
    return ckpt


# -- the callback -------------------------------------------------------------------------------
class Checkpointer(Callback):
    """Saves a checkpoint at the end of every ``every``-th complete epoch into ``directory``
    (``epoch-0003/``, ...), keeping the last ``keep_last`` and the best by ``monitor``.

    ``directory/checkpoints.json`` lists what is kept, the ``last`` and the ``best``; give the
    directory to ``Learner.load_checkpoint`` / ``fit(resume=...)`` to continue from the last.

    Args:
        directory: where the checkpoints go (created when missing).
        every: ``"epoch"`` or a number of epochs between checkpoints.
        keep_last: how many recent checkpoints to keep (0: only the best).
        monitor: the metric that picks the best (``None``: no best, keep only the last ones).
        mode: ``"min"`` or ``"max"``: which way is better for ``monitor``.
    """

    reads = ("epoch_complete", "epochs_done", "step", "metrics", "model", "optimizer", "history")
    after = (Recorder,)

    def __init__(self, directory: str | os.PathLike, *, every: int | str = "epoch", keep_last: int = 1,
                 monitor: str | None = "valid_loss", mode: str = "min") -> None:
        if every == "epoch":
            every = 1
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"Checkpointer: every must be 'epoch' or a positive number of epochs, got {every!r}")
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
            raise ValueError(f"Checkpointer: keep_last must be an integer >= 0, got {keep_last!r}")
        if keep_last == 0 and monitor is None:
            raise ValueError("Checkpointer: keep_last=0 with monitor=None would keep nothing; "
                             "keep at least one, or monitor a metric to keep the best")
        self.directory = os.path.abspath(os.fspath(directory))
        self.every = every
        self.keep_last = keep_last
        self.monitor = None if monitor is None else Monitor("Checkpointer", monitor, mode)
        self._entries: list[dict[str, Any]] = []  # the kept checkpoints, oldest first
        self._best: str | None = None
        self._learner: "Learner | None" = None

    def attach(self, learner: "Learner") -> None:
        self._learner = learner

    @property
    def last(self) -> str | None:
        """The newest checkpoint's directory (None before the first)."""
        return os.path.join(self.directory, self._entries[-1]["name"]) if self._entries else None

    @property
    def best(self) -> str | None:
        """The best checkpoint's directory by ``monitor`` (None without a finite value yet)."""
        return None if self._best is None else os.path.join(self.directory, self._best)

    def epoch_end(self, state: TrainState) -> None:
        if not state.epoch_complete or state.epochs_done % self.every:
            return
        if self._learner is None:
            raise RuntimeError("Checkpointer: not attached to a learner; add it with Learner(callbacks=[...])")
        value = self.monitor.value(state) if self.monitor is not None else None
        name = f"epoch-{state.epochs_done:04d}"
        entry = {"name": name, "epoch": state.epochs_done, "step": state.step,
                 "value": value if value is None or math.isfinite(value) else None}
        self._entries = [e for e in self._entries if e["name"] != name] + [entry]
        if self.monitor is not None and self._best == name:
            self._best = None  # rewritten from a resumed earlier point: compare afresh
        if self.monitor is not None and value is not None:
            best = next((e["value"] for e in self._entries if e["name"] == self._best), None)
            if self.monitor.improved(value, best):
                self._best = name
        dropped = self._prune()
        # The checkpoint carries this callback's state with the new list in it, so a run
        # resumed from it keeps pruning the same list.
        save_checkpoint(self._learner, os.path.join(self.directory, name))
        for gone in dropped:
            shutil.rmtree(os.path.join(self.directory, gone), ignore_errors=True)
        _write_json_atomic(os.path.join(self.directory, INDEX_FILE), self._index())

    def _prune(self) -> list[str]:
        """Drop from the list what is neither among the last ``keep_last`` nor the best;
        returns the dropped names (deleted once the new checkpoint is safely written)."""
        recent = self._entries[max(len(self._entries) - self.keep_last, 0):] if self.keep_last else []
        keep = {e["name"] for e in recent}
        if self._best is not None:
            keep.add(self._best)
        dropped = [e["name"] for e in self._entries if e["name"] not in keep]
        self._entries = [e for e in self._entries if e["name"] in keep]
        return dropped

    def _index(self) -> dict[str, Any]:
        return {"format": FORMAT, "monitor": None if self.monitor is None else self.monitor.metric,
                "mode": None if self.monitor is None else self.monitor.mode,
                "last": self._entries[-1]["name"] if self._entries else None, "best": self._best,
                "checkpoints": self._entries}

    def state_dict(self) -> dict[str, Any]:
        return {"directory": self.directory, "entries": copy.deepcopy(self._entries), "best": self._best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The list names checkpoints in the directory that wrote it; a Checkpointer writing
        # elsewhere starts its own list.
        if state.get("directory") == self.directory:
            self._entries = copy.deepcopy(list(state["entries"]))
            self._best = state["best"]

    def __repr__(self) -> str:
        monitor = "None" if self.monitor is None else f"{self.monitor.metric!r}, mode={self.monitor.mode!r}"
        return f"Checkpointer({self.directory!r}, every={self.every}, keep_last={self.keep_last}, monitor={monitor})"
