"""TensorBoard: the event files, read back with TensorBoard's own reader, hold what the
Recorder recorded and what the optimiser used."""

from __future__ import annotations

import os

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from torchdeck.data import TensorLoader
from torchdeck.schedules import CosAnneal, Scheduler
from torchdeck.train import Callback, Learner, TensorBoard

from ._tiny import tiny_data, tiny_learner


def read_back(log_dir):
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    return events


def scalars(events, tag):
    return [(e.step, e.value) for e in events.Scalars(tag)]


def f32(values):
    # Event files store scalars as float32.
    return torch.tensor(values, dtype=torch.float32).tolist()


def test_step_loss_and_lr_equal_the_history(tmp_path):
    learner = tiny_learner([Scheduler({"lr": CosAnneal(1e-2, 1e-4, period=9)}), TensorBoard(tmp_path)],
                           n_train=24, batch_size=8)
    learner.fit(3)
    h = learner.history
    events = read_back(tmp_path)
    assert scalars(events, "step/loss") == list(zip(h.steps, f32(h.losses)))
    assert scalars(events, "step/lr") == list(zip(h.steps, f32(h.lrs)))
    assert len(set(h.lrs)) > 5  # the schedule moved the lr: the comparison means something


def test_every_n_steps_keeps_every_nth_step_from_the_first(tmp_path):
    learner = tiny_learner([TensorBoard(tmp_path, every=4)], n_train=40, batch_size=8)  # 5 steps per epoch
    learner.fit(2)
    h = learner.history
    events = read_back(tmp_path)
    assert [s for s, _ in scalars(events, "step/loss")] == [0, 4, 8]
    assert scalars(events, "step/loss") == [(s, v) for s, v in zip(h.steps, f32(h.losses)) if s % 4 == 0]


def test_epoch_metrics_equal_the_recorder_rows(tmp_path):
    learner = tiny_learner([TensorBoard(tmp_path)])
    learner.fit(3)
    events = read_back(tmp_path)
    rows = learner.history.epochs
    for tag, key in {"train/loss": "train_loss", "valid/loss": "valid_loss",
                     "valid/accuracy": "valid_accuracy"}.items():
        assert scalars(events, tag) == [(r["step"], *f32([r[key]])) for r in rows], tag
    assert set(events.Tags()["scalars"]) == {"step/loss", "step/lr", "train/loss", "valid/loss", "valid/accuracy"}


def test_later_fits_add_to_the_same_curves(tmp_path):
    learner = tiny_learner([TensorBoard(tmp_path)])
    learner.fit(1)
    learner.fit(2)
    h = learner.history
    events = read_back(tmp_path)
    assert scalars(events, "step/loss") == list(zip(h.steps, f32(h.losses)))
    assert [s for s, _ in scalars(events, "valid/loss")] == [r["step"] for r in h.epochs] == [3, 6, 9]


def test_one_lr_curve_per_param_group(tmp_path):
    (xt, yt), (xv, yv) = tiny_data()
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    opt = torch.optim.SGD([{"params": model[0].parameters()},
                           {"params": model[2].parameters(), "lr": 0.05, "name": "head"}], lr=0.01)
    loaders = {"train": TensorLoader(xt, yt, 8), "valid": TensorLoader(xv, yv, 8)}
    learner = Learner(model, loaders, torch.nn.functional.cross_entropy, opt, callbacks=[TensorBoard(tmp_path)])
    learner.fit(1)
    events = read_back(tmp_path)
    steps = learner.history.steps
    assert scalars(events, "step/lr/0") == [(s, *f32([0.01])) for s in steps]
    assert scalars(events, "step/lr/head") == [(s, *f32([0.05])) for s in steps]


def test_hparams_are_recorded_with_the_epoch_metrics_as_results(tmp_path):
    hparams = {"lr": 0.01, "batch_size": 8, "optimizer": "adam", "augment": False}
    learner = tiny_learner([TensorBoard(tmp_path, hparams=hparams)])
    learner.fit(2)
    content = read_back(tmp_path).PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    got = start.session_start_info.hparams
    # torch's hparams summary records a bool as a number (bool is an int to its type check).
    assert {k: got[k].WhichOneof("kind") for k in hparams} == {"lr": "number_value", "batch_size": "number_value",
                                                              "optimizer": "string_value", "augment": "number_value"}
    assert (got["lr"].number_value, got["batch_size"].number_value, got["augment"].number_value) == (0.01, 8, 0)
    assert got["optimizer"].string_value == "adam"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert sorted(m.name.tag for m in experiment.metric_infos) == ["train/loss", "valid/accuracy", "valid/loss"]


class Fails(Callback):
    """Raises at training step ``at``; keeps the TensorBoard writer it saw."""

    reads = ("phase", "step")

    def __init__(self, tb, at):
        self.tb, self.at, self.writer = tb, at, None

    def step_end(self, state):
        self.writer = self.tb.writer
        if state.phase.training and state.step == self.at:
            raise RuntimeError("boom")


def test_the_writer_is_closed_at_fit_end_also_after_an_error(tmp_path):
    tb = TensorBoard(tmp_path)
    fails = Fails(tb, at=7)  # 5 training steps per epoch: the third step of epoch 2
    learner = tiny_learner([tb, fails], n_train=40, batch_size=8)
    with pytest.raises(RuntimeError, match="boom"):
        learner.fit(2)
    assert tb.writer is None and fails.writer.file_writer is None  # SummaryWriter.close() ran
    # What was logged before the error is on disk: the first epoch and the steps before the failing one.
    events = read_back(tmp_path)
    h = learner.history
    assert [s for s, _ in scalars(events, "step/loss")] == list(range(8)) == h.steps
    assert [s for s, _ in scalars(events, "valid/loss")] == [5]


@pytest.mark.parametrize("rank, writes", [(0, True), (1, False)])
def test_only_rank_0_writes(tmp_path, monkeypatch, rank, writes):
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: rank)
    # One process playing one rank of a group (the metrics' all-reduce then has nothing to do).
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 1)
    learner = tiny_learner([TensorBoard(tmp_path / "tb")])
    learner.fit(1)
    files = os.listdir(tmp_path / "tb") if os.path.isdir(tmp_path / "tb") else []
    assert bool(files) is writes
    assert learner.history.epochs  # the run itself is the same on every rank


def graph_learner(callbacks):
    (xt, yt), (xv, yv) = tiny_data()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        # BatchNorm (running stats) and Dropout (the RNG): what a traced extra forward would change.
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                    torch.nn.Dropout(0.5), torch.nn.Linear(8, 3))
    loaders = {"train": TensorLoader(xt, yt, 8, shuffle=True, seed=0), "valid": TensorLoader(xv, yv, 8)}
    return Learner(model, loaders, torch.nn.functional.cross_entropy, torch.optim.SGD(model.parameters(), lr=0.1),
                   callbacks=callbacks)


def test_log_graph_writes_the_graph_and_leaves_the_run_unchanged(tmp_path):
    torch.manual_seed(1)
    with_graph = graph_learner([TensorBoard(tmp_path, log_graph=True)]).fit(2)
    torch.manual_seed(1)
    without = graph_learner([]).fit(2)
    assert read_back(tmp_path).Tags()["graph"] is True
    assert with_graph.history.losses == without.history.losses
    for a, b in zip(with_graph.model.state_dict().values(), without.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_model_that_cannot_be_traced_warns_and_trains_on(tmp_path):
    class DictOut(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.lin(x) if torch.jit.is_tracing() is False else {"out": self.lin(x), "n": x.shape[0]}

    (xt, yt), (xv, yv) = tiny_data()
    loaders = {"train": TensorLoader(xt, yt, 8), "valid": TensorLoader(xv, yv, 8)}
    model = DictOut()
    learner = Learner(model, loaders, torch.nn.functional.cross_entropy, torch.optim.SGD(model.parameters(), lr=0.1),
                      callbacks=[TensorBoard(tmp_path, log_graph=True)])
    with pytest.warns(RuntimeWarning, match=r"TensorBoard: could not trace the model's graph"):
        learner.fit(1)
    assert len(learner.history.epochs) == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"log_dir": 3}, r"TensorBoard: log_dir must be a directory path \(str or os.PathLike\), got 3"),
    ({"log_dir": None}, r"log_dir must be a directory path .*, got None"),
    ({"log_dir": ""}, r"log_dir must be a directory path .*, got ''"),
    ({"every": 0}, r"TensorBoard: every must be a positive integer \(training steps\), got 0"),
    ({"every": -2}, r"every must be a positive integer .*, got -2"),
    ({"every": 1.5}, r"every must be a positive integer .*, got 1.5"),
    ({"every": True}, r"every must be a positive integer .*, got True"),
    ({"log_graph": "yes"}, r"TensorBoard: log_graph must be True or False, got 'yes'"),
    ({"hparams": [("lr", 1)]}, r"TensorBoard: hparams must be a mapping of name -> value, got \[\('lr', 1\)\]"),
    ({"hparams": {"layers": [1, 2]}}, r"TensorBoard: hparams\['layers'\] = \[1, 2\]; names must be strings and "
                                      r"values one of bool, int, float, str"),
])
def test_bad_arguments_are_refused(tmp_path, kwargs, message):
    kwargs = {"log_dir": tmp_path, **kwargs}
    with pytest.raises(ValueError, match=message):
        TensorBoard(**kwargs)


def test_log_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"TensorBoard: log_dir .*file.txt' is a file; give a directory"):
        TensorBoard(path)
