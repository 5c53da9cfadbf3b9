"""Metric relay: rank 0 sends its events as JSON lines over a local socket; the parent
replays them to its own callbacks (a MetricStream, a ProgressBar), as if it ran the loop.

Protocol (one JSON object per line, UTF-8): the first line of a connection is
``{"token": ..., "rank": r}`` (the parent drops connections without its token: the port is
open to every local user); then events ``{"event": name, ...}``:

- ``fit_begin`` / ``epoch_begin`` / ``epoch_end`` / ``fit_end`` with a snapshot of the state
  fields callbacks read (``epoch``, ``epochs``, ``step``, ``phase``, ``batches``,
  ``metrics``; ``row``, the Recorder's history row, at a validation ``epoch_end``);
- ``steps``: training steps ``[step, batch_index, loss, hyper]`` gathered over
  ``flush_seconds`` (one host sync per message, not per step), sent before any other event;
- ``error`` from any rank whose run raised: ``rank``, ``type``, ``message``, ``traceback``.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import threading
import time
import traceback
from typing import Any, Callable, Sequence

import torch

from torchdeck.train import Callback, Metrics, Recorder
from torchdeck.train._phases import Phase
from torchdeck.train._state import History, TrainState

__all__ = ["RelaySender", "RelayServer", "Replay", "RelayedPhase", "RELAY_ENV", "TOKEN_ENV", "report_error",
           "connect"]

RELAY_ENV = "TORCHDECK_RELAY"        # "host:port" of the parent's server
TOKEN_ENV = "TORCHDECK_RELAY_TOKEN"  # the secret the first line must carry


def _number(v: Any) -> Any:
    """A JSON-safe copy of a hyperparameter: numbers (NaN and inf as strings), tuples of them."""
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, (tuple, list)) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        return [_number(x) for x in v]
    return None


def _hyper(state: TrainState) -> dict[str, Any]:
    """Param group 0's hyperparameters (lr, momentum, ...): what a stream reads of the optimiser."""
    groups = state.optimizer.param_groups
    return {k: n for k, v in (groups[0].items() if groups else ()) if (n := _number(v)) is not None}


def _float(v: Any) -> Any:
    return v if isinstance(v, (int, float)) and math.isfinite(v) else str(v)


def _unfloat(v: Any) -> Any:
    return float(v) if isinstance(v, str) and v in ("nan", "inf", "-inf") else v


def connect(address: str | None = None, token: str | None = None, rank: int = 0,
            timeout: float = 30.0) -> socket.socket:
    """A connection to the parent's :class:`RelayServer` (``address`` / ``token`` default to the
    environment the launcher set), the greeting already sent."""
    address = os.environ.get(RELAY_ENV) if address is None else address
    token = os.environ.get(TOKEN_ENV, "") if token is None else token
    if not address or ":" not in address:
        raise ValueError(f"relay: {RELAY_ENV} must be 'host:port', got {address!r}")
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.settimeout(None)
    sock.sendall((json.dumps({"token": token, "rank": rank}) + "\n").encode())
    return sock


def report_error(exc: BaseException, rank: int) -> None:
    """Tell the parent (when there is one) that this rank failed; never raises."""
    if not os.environ.get(RELAY_ENV):
        return
    try:
        with connect(rank=rank, timeout=5.0) as sock:
            msg = {"event": "error", "rank": rank, "type": type(exc).__name__, "message": str(exc),
                   "traceback": "".join(traceback.format_exception(exc))}
            sock.sendall((json.dumps(msg) + "\n").encode())
    except OSError:
        pass  # the parent is gone or never listened: torchrun's own report still shows the error


class RelaySender(Callback):
    """Rank 0's side: sends the run's events to the parent (see the module docstring)."""

    reads = ("phase", "loss", "step", "epoch", "epochs", "batch_index", "batches", "metrics", "optimizer",
             "history", "stop_reason")
    after = (Metrics, Recorder)

    def __init__(self, address: str | None = None, token: str | None = None, *, flush_seconds: float = 0.2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.address, self.token = address, token
        self.flush_seconds = flush_seconds
        self.clock = clock
        self._sock: socket.socket | None = None
        self._steps: list[tuple[int, int, torch.Tensor, dict[str, Any]]] = []
        self._last = 0.0

    def _send(self, msg: dict[str, Any]) -> None:
        if self._sock is None:
            self._sock = connect(self.address, self.token, rank=0)
        self._sock.sendall((json.dumps(msg) + "\n").encode())

    def _flush(self) -> None:
        steps, self._steps = self._steps, []
        if steps:
            losses = torch.stack([s[2] for s in steps]).float().reshape(-1).tolist()  # one host sync
            self._send({"event": "steps", "items": [[s, i, _float(loss), hyper]
                                                    for (s, i, _, hyper), loss in zip(steps, losses)]})
        self._last = self.clock()

    def _event(self, event: str, state: TrainState, **extra: Any) -> None:
        self._flush()
        phase = state.phase
        self._send({"event": event, "epoch": state.epoch, "epochs": state.epochs, "step": state.step,
                    "batches": dict(state.batches), "hyper": _hyper(state),
                    "phase": None if phase is None else [phase.name, bool(phase.training)],
                    "metrics": {k: _float(v) for k, v in state.metrics.items()}, **extra})

    def fit_begin(self, state: TrainState) -> None:
        self._last = self.clock()
        self._event("fit_begin", state)

    def epoch_begin(self, state: TrainState) -> None:
        self._event("epoch_begin", state)

    def step_end(self, state: TrainState) -> None:
        if state.phase.training:
            self._steps.append((state.step, state.batch_index, state.loss.detach(), _hyper(state)))
            if self.clock() - self._last >= self.flush_seconds:
                self._flush()

    def epoch_end(self, state: TrainState) -> None:
        row = state.history.epochs[-1] if not state.phase.training and state.history.epochs else None
        self._event("epoch_end", state, row=None if row is None else {k: _float(v) for k, v in row.items()})

    def fit_end(self, state: TrainState) -> None:
        try:
            self._event("fit_end", state, stop_reason=state.stop_reason)
        finally:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


class RelayedPhase(Phase):
    """A phase seen from the parent: a name and whether it trains; it runs nothing here."""

    def __init__(self, name: str, training: bool) -> None:
        self.name = name          # type: ignore[misc]  (a ClassVar on real phases)
        self.training = training  # type: ignore[misc]

    def step(self, learner: Any) -> None:
        raise RuntimeError("a relayed phase runs in the worker processes, not here")


class _Groups:
    """Stands in for the optimiser: only ``param_groups`` (group 0's hyperparameters) is relayed."""

    def __init__(self) -> None:
        self.param_groups: list[dict[str, Any]] = [{}]


def _group(hyper: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(_unfloat(x) for x in v) if isinstance(v, list) else _unfloat(v) for k, v in hyper.items()}


class Replay:
    """The parent's side of the relay: keeps a :class:`TrainState` in step with rank 0's and
    fires each relayed event to ``callbacks`` (those that read only relayed fields: a
    MetricStream, a ProgressBar, ...). ``history`` gathers the epochs' rows; ``errors`` the
    ranks' error reports."""

    def __init__(self, callbacks: Sequence[Callback] = ()) -> None:
        self.callbacks = list(callbacks)
        self.state = TrainState(model=torch.nn.Identity(), optimizer=_Groups(), loss_fn=None)  # type: ignore[arg-type]
        self.errors: list[dict[str, Any]] = []
        self.events = 0
        self._phases: dict[tuple[str, bool], RelayedPhase] = {}
        self._lock = threading.Lock()

    @property
    def history(self) -> History:
        return self.state.history

    def _fire(self, event: str) -> None:
        for cb in self.callbacks:
            if event in cb.handles():
                getattr(cb, event)(self.state)

    def _take(self, msg: dict[str, Any]) -> None:
        s = self.state
        s.epoch, s.epochs, s.step = int(msg["epoch"]), int(msg["epochs"]), int(msg["step"])
        s.batches = {k: int(v) for k, v in msg["batches"].items()}
        if msg.get("phase") is not None:
            name, training = msg["phase"]
            s.phase = self._phases.setdefault((name, training), RelayedPhase(name, bool(training)))
        s.metrics = {k: _unfloat(v) for k, v in msg["metrics"].items()}
        s.optimizer.param_groups[0] = _group(msg.get("hyper", {}))

    def handle(self, msg: dict[str, Any]) -> None:
        """Apply one relayed message (called by the server's reader threads, one at a time)."""
        with self._lock:
            self.events += 1
            event = msg.get("event")
            if event == "error":
                self.errors.append(msg)
                return
            if event == "steps":
                s = self.state
                for step, index, loss, hyper in msg["items"]:
                    s.step, s.batch_index = int(step), int(index)
                    s.loss = torch.tensor(float(_unfloat(loss)))
                    s.optimizer.param_groups[0] = _group(hyper)
                    self._fire("step_end")
                return
            if event not in ("fit_begin", "epoch_begin", "epoch_end", "fit_end"):
                return  # a newer sender's event: skip, don't fail the run's display
            self._take(msg)
            if event == "fit_begin":
                self.state.history = History()
            if event == "epoch_end" and msg.get("row") is not None:
                self.state.history.epochs.append({k: _unfloat(v) for k, v in msg["row"].items()})
            if event == "fit_end":
                self.state.stop_reason = str(msg.get("stop_reason", ""))
            self._fire(event)


class RelayServer:
    """Listens on ``127.0.0.1`` (an ephemeral port) for the workers' connections and hands each
    message to ``replay`` on reader threads. ``address`` and ``token`` go to the workers in
    ``RELAY_ENV`` / ``TOKEN_ENV``."""

    def __init__(self, replay: Replay, host: str = "127.0.0.1") -> None:
        self.replay = replay
        self.token = secrets.token_hex(16)
        self._server = socket.create_server((host, 0))
        self._server.settimeout(0.2)
        self.address = f"{host}:{self._server.getsockname()[1]}"
        self._closed = threading.Event()
        self._readers: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="torchdeck-relay", daemon=True)
        self._acceptor.start()

    def env(self) -> dict[str, str]:
        return {RELAY_ENV: self.address, TOKEN_ENV: self.token}

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            reader = threading.Thread(target=self._read, args=(conn,), daemon=True)
            self._readers.append(reader)
            reader.start()

    def _read(self, conn: socket.socket) -> None:
        with conn, conn.makefile("r", encoding="utf-8") as lines:
            greeting = _json_line(next(iter(lines), ""))
            if not isinstance(greeting, dict) or not secrets.compare_digest(str(greeting.get("token", "")), self.token):
                return
            for line in lines:
                msg = _json_line(line)
                if isinstance(msg, dict):
                    self.replay.handle(msg)

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, then wait (up to ``timeout`` s) for open connections to finish."""
        self._closed.set()
        self._acceptor.join(timeout)
        self._server.close()
        for reader in self._readers:
            reader.join(timeout)


def _json_line(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


