"""The metric relay in one process: a learner's RelaySender -> socket -> RelayServer -> Replay -> MetricStream."""

from __future__ import annotations

import json
import socket
import time

import pytest

from torchdeck.distributed import RelaySender, RelayServer, Replay
from torchdeck.distributed._relay import connect, report_error
from torchdeck.train import Callback, MetricStream

from . import _cases


def tiny_learner(callbacks, *, batch_size, epochs):
    learner = _cases.learner("tensor")
    learner.loaders["train"].batch_size = batch_size
    learner.set_callbacks([*learner.callbacks, *callbacks])
    learner.epochs = epochs
    return learner


def _wait(cond, timeout=20.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out waiting for the relay"
        time.sleep(0.01)


class Events(Callback):
    """Records the events it hears and the phase / epoch at each."""

    def __init__(self):
        self.seen = []

    def fit_begin(self, state):
        self.seen.append(("fit_begin", state.epochs))

    def epoch_end(self, state):
        self.seen.append(("epoch_end", state.phase.name, state.epoch))

    def fit_end(self, state):
        self.seen.append(("fit_end", state.epochs))


@pytest.fixture
def relayed():
    stream, events = MetricStream(), Events()
    replay = Replay([stream, events])
    server = RelayServer(replay)
    yield server, replay, stream, events
    server.close(1)


def test_the_replayed_stream_holds_what_the_learner_recorded(relayed):
    server, replay, stream, events = relayed
    direct = MetricStream()
    sender = RelaySender(server.address, server.token, flush_seconds=0.0)
    learner = tiny_learner([sender, direct], batch_size=8, epochs=2)
    learner.fit()
    _wait(lambda: events.seen[-1:] == [("fit_end", 2)])
    h = learner.history
    snap = stream.snapshot()
    assert snap["loss"] == (h.steps, h.losses)
    assert snap["lr"] == (h.steps, h.lrs)
    assert replay.history.epochs == h.epochs
    assert snap["valid_accuracy"][1] == [row["valid_accuracy"] for row in h.epochs]
    # the same series as a MetricStream on the learner itself
    assert snap == direct.snapshot()
    assert events.seen == [("fit_begin", 2), ("epoch_end", "train", 0), ("epoch_end", "valid", 0),
                           ("epoch_end", "train", 1), ("epoch_end", "valid", 1), ("fit_end", 2)]
    assert stream.progress["status"] == "done" and stream.progress["epoch"] == 2


def test_steps_are_sent_in_groups_not_one_message_each(relayed):
    server, replay, stream, events = relayed
    learner = tiny_learner([RelaySender(server.address, server.token, flush_seconds=3600.0)], batch_size=4, epochs=1)
    learner.fit()
    _wait(lambda: events.seen[-1:] == [("fit_end", 1)])
    assert len(stream.snapshot()["loss"][0]) == 8
    # fit_begin, 2 x epoch_begin, 2 x epoch_end, fit_end and one group of 8 steps
    assert replay.events == 7


def test_a_connection_without_the_token_is_ignored(relayed):
    server, replay, _, _ = relayed
    with connect(server.address, "not-the-token", rank=1) as sock:
        sock.sendall((json.dumps({"event": "error", "rank": 1, "type": "X", "message": "m"}) + "\n").encode())
    report_error(RuntimeError("boom"), 1)  # no relay in this environment: does nothing, raises nothing
    time.sleep(0.3)
    assert replay.errors == []


def test_a_rank_error_reaches_the_parent(relayed, monkeypatch):
    server, replay, _, _ = relayed
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    try:
        raise ValueError("bad batch on rank 1")
    except ValueError as e:
        report_error(e, 1)
    _wait(lambda: replay.errors)
    err = replay.errors[0]
    assert (err["rank"], err["type"], err["message"]) == (1, "ValueError", "bad batch on rank 1")
    assert "raise ValueError" in err["traceback"]


def test_relay_address_must_be_host_port():
    with pytest.raises(ValueError, match="TORCHDECK_RELAY must be 'host:port', got 'nowhere'"):
        connect("nowhere", "t")


def test_nothing_listens_after_close():
    server = RelayServer(Replay())
    host, port = server.address.rsplit(":", 1)
    server.close(1)
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=1).close()
