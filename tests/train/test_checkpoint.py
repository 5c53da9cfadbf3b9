"""Checkpoints: bit-for-bit resume in a new process, keep best and last N, atomic writes,
clear errors for damaged or missing files."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from torchdeck.train import Checkpointer, save_checkpoint
from torchdeck.train import _checkpoint

from ._digits import digits_learner, digits_tensors, one_thread  # noqa: F401  (fixture)
from ._resume_child import outcome, resume_learner

pytestmark = pytest.mark.usefixtures("one_thread")


def assert_same(a, b, where="value"):
    """Exact equality of nested dicts/lists of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {a.keys()} != {b.keys()}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _scramble_global_rngs():
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)


def test_resume_in_a_new_process_is_bit_for_bit(tmp_path):
    # Reference: 3 epochs, a checkpoint, 2 more in the same process (fit(3) then fit(2)).
    learner = resume_learner(str(tmp_path / "ref"))
    learner.fit(3)
    ckpt = tmp_path / "epoch-3"
    shutil.copytree(tmp_path / "ref" / "epoch-0003", ckpt)
    # The resumed side runs in a fresh interpreter while this one continues.
    out, data = tmp_path / "resumed.pt", tmp_path / "digits.pt"
    torch.save(digits_tensors(), data)
    child = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "_resume_child.py"), str(ckpt),
                              str(tmp_path / "child"), str(out), "2", str(data)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    at_checkpoint = {k: v.clone() for k, v in learner.model.state_dict().items()}
    learner.fit(2)
    expected = outcome(learner)
    log, _ = child.communicate(timeout=120)
    assert child.returncode == 0, log
    got = torch.load(out, weights_only=True)
    assert_same(expected, got, "outcome")
    assert got["epochs_done"] == 5 and len(got["history"]["epochs"]) == 5
    # The two epochs did train (the comparison is not between two untouched models).
    assert not torch.equal(at_checkpoint["0.weight"], got["weights"]["0.weight"])


def test_resume_restores_the_shuffle_order(tmp_path):
    """Without the loader's generator state the continuation differs: the test above can fail."""
    ref = digits_learner(n_train=512, batch_size=128)
    ref.fit(1)
    ref.save_checkpoint(tmp_path / "c")
    ref.fit(1)

    resumed = digits_learner(n_train=512, batch_size=128)
    _scramble_global_rngs()
    resumed.load_checkpoint(tmp_path / "c")
    resumed.fit(1)
    for a, b in zip(ref.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)

    wrong = digits_learner(n_train=512, batch_size=128)
    wrong.load_checkpoint(tmp_path / "c")
    wrong.loaders["train"].generator.manual_seed(99)  # a different shuffle from here on
    wrong.fit(1)
    assert not torch.equal(ref.model[0].weight, wrong.model[0].weight)


@pytest.mark.parametrize("make_opt", [
    lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.1),
    lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True),
], ids=["AdamW", "SGD-nesterov"])
def test_resume_with_torch_optimizers(tmp_path, make_opt):
    ref = digits_learner(optimizer=make_opt, n_train=384, batch_size=64)
    ref.fit(2)
    ref.save_checkpoint(tmp_path / "c")
    ref.fit(1)

    resumed = digits_learner(optimizer=make_opt, n_train=384, batch_size=64)
    _scramble_global_rngs()
    resumed.fit(1, resume=tmp_path / "c")
    assert_same(outcome(ref)["weights"], outcome(resumed)["weights"], "weights")
    assert_same(ref.optimizer.state_dict(), resumed.optimizer.state_dict(), "optimizer")
    assert resumed.history.losses == ref.history.losses


def test_files_are_safetensors_and_weights_only_torch(tmp_path):
    learner = digits_learner(n_train=256)
    learner.fit(1)
    path = save_checkpoint(learner, tmp_path / "c")
    assert sorted(os.listdir(path)) == ["model.safetensors", "state.pt"]
    weights = load_file(os.path.join(path, "model.safetensors"))
    assert_same({k: v for k, v in learner.model.state_dict().items()}, weights, "weights")
    state = torch.load(os.path.join(path, "state.pt"), weights_only=True)
    assert state["step"] == learner.state.step and state["epochs_done"] == 1
    assert_same(state["optimizer"]["rule_state"], learner.optimizer.state_dict()["rule_state"], "rule_state")
    assert torch.equal(state["rng"]["torch"], torch.get_rng_state())
    assert torch.equal(state["loaders"]["train"]["state"], learner.loaders["train"].generator.get_state())
    assert state["history"]["losses"] == learner.history.losses
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temporary left behind


def test_keeps_the_best_and_the_last_n(tmp_path):
    # mode="max" on valid_loss: the "best" is the worst epoch, which is an early one here,
    # so it is kept besides the last two.
    cb = Checkpointer(tmp_path, keep_last=2, monitor="valid_loss", mode="max")
    learner = digits_learner([cb], n_train=256, batch_size=64)
    learner.fit(5)
    losses = [row["valid_loss"] for row in learner.history.epochs]
    best_epoch = int(np.argmax(losses)) + 1
    assert best_epoch < 4  # the set-up gives a best outside the last two
    expected = sorted({f"epoch-{e:04d}" for e in (best_epoch, 4, 5)})
    assert sorted(d for d in os.listdir(tmp_path) if d.startswith("epoch-")) == expected
    index = json.loads((tmp_path / "checkpoints.json").read_text())
    assert index["best"] == f"epoch-{best_epoch:04d}" and index["last"] == "epoch-0005"
    assert {e["name"]: e["value"] for e in index["checkpoints"]} == \
        {f"epoch-{e:04d}": losses[e - 1] for e in (best_epoch, 4, 5)}
    assert cb.best == str(tmp_path / f"epoch-{best_epoch:04d}") and cb.last == str(tmp_path / "epoch-0005")

    # A Checkpointer directory resumes from its last, or its best on request.
    other = digits_learner(n_train=256, batch_size=64)
    assert other.load_checkpoint(tmp_path) == cb.last
    assert other.state.epochs_done == 5
    assert other.load_checkpoint(tmp_path, which="best") == cb.best
    assert other.state.epochs_done == best_epoch
    assert other.history.epochs[-1]["valid_loss"] == losses[best_epoch - 1]


def test_every_n_epochs_and_monitor_none(tmp_path):
    cb = Checkpointer(tmp_path, every=2, keep_last=10, monitor=None)
    digits_learner([cb], n_train=128).fit(5)
    assert sorted(d for d in os.listdir(tmp_path) if d.startswith("epoch-")) == ["epoch-0002", "epoch-0004"]
    assert json.loads((tmp_path / "checkpoints.json").read_text())["best"] is None
    with pytest.raises(ValueError, match=r"has no 'best' checkpoint \(the Checkpointer had monitor=None\)"):
        digits_learner().load_checkpoint(tmp_path, which="best")


def test_pruning_continues_after_a_resume(tmp_path):
    digits_learner([Checkpointer(tmp_path, keep_last=1, monitor=None)], n_train=128).fit(2)
    resumed = digits_learner([Checkpointer(tmp_path, keep_last=1, monitor=None)], n_train=128)
    resumed.fit(1, resume=tmp_path)
    assert sorted(d for d in os.listdir(tmp_path) if d.startswith("epoch-")) == ["epoch-0003"]


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    learner = digits_learner(n_train=128)
    learner.fit(1)
    path = save_checkpoint(learner, tmp_path / "c")
    before = (tmp_path / "c" / "state.pt").read_bytes()
    learner.fit(1)

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(_checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(learner, path)
    assert (tmp_path / "c" / "state.pt").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c"]  # the temporary directory is gone


def test_missing_and_damaged_checkpoints_name_the_file(tmp_path):
    learner = digits_learner(n_train=128)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match=r"save_checkpoint: '.*a_file' is a file; a checkpoint is a directory"):
        learner.save_checkpoint(tmp_path / "a_file")
    with pytest.raises(FileNotFoundError, match=r"checkpoint '.*nowhere' does not exist"):
        learner.load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds neither model.safetensors \+ state.pt"):
        learner.load_checkpoint(tmp_path / "empty")

    learner.fit(1)
    good = save_checkpoint(learner, tmp_path / "good")
    w0 = learner.model[0].weight.detach().clone()

    part = tmp_path / "part"
    shutil.copytree(good, part)
    os.remove(part / "model.safetensors")
    with pytest.raises(FileNotFoundError, match=r"checkpoint file '.*part/model.safetensors' is missing"):
        learner.load_checkpoint(part)

    cut = tmp_path / "cut"
    shutil.copytree(good, cut)
    data = (cut / "state.pt").read_bytes()
    (cut / "state.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"checkpoint file '.*cut/state.pt' cannot be read .*damaged"):
        learner.load_checkpoint(cut)

    junk = tmp_path / "junk"
    shutil.copytree(good, junk)
    (junk / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"checkpoint file '.*junk/model.safetensors' cannot be read"):
        learner.load_checkpoint(junk)
    assert torch.equal(learner.model[0].weight, w0)


def test_a_checkpoint_of_another_model_is_refused_and_changes_nothing(tmp_path):
    small = digits_learner(hidden=16, n_train=128)
    small.fit(1)
    save_checkpoint(small, tmp_path / "small")
    learner = digits_learner(n_train=128)
    learner.fit(1)
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    opt_before = learner.optimizer.state_dict()["rule_state"]
    history = list(learner.history.losses)
    with pytest.raises(ValueError, match=r"checkpoint '.*small' does not fit this learner .* the learner is unchanged"):
        learner.load_checkpoint(tmp_path / "small")
    assert_same(before, dict(learner.model.state_dict()), "weights")
    assert_same(opt_before, learner.optimizer.state_dict()["rule_state"], "rule_state")
    assert learner.history.losses == history


@pytest.mark.parametrize("kwargs, message", [
    ({"every": 0}, r"every must be 'epoch' or a positive number of epochs, got 0"),
    ({"every": "step"}, r"every must be 'epoch' or a positive number of epochs, got 'step'"),
    ({"keep_last": -1}, r"keep_last must be an integer >= 0, got -1"),
    ({"keep_last": 0, "monitor": None}, r"would keep nothing"),
    ({"mode": "lowest"}, r"mode must be one of 'min', 'max', got 'lowest'"),
])
def test_checkpointer_validates_its_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Checkpointer(tmp_path, **kwargs)


def test_unknown_monitor_names_the_metrics_there_are(tmp_path):
    learner = digits_learner([Checkpointer(tmp_path, monitor="valid_f1")], n_train=128)
    with pytest.raises(ValueError, match=r"monitor 'valid_f1' is not among this epoch's metrics "
                                         r"\(train_loss, valid_accuracy, valid_loss\)"):
        learner.fit(1)


@pytest.mark.parametrize("epochs, keep_last", [(2, 3), (4, 3), (3, 1)])
def test_keep_last_counts_from_the_newest(tmp_path, epochs, keep_last):
    digits_learner([Checkpointer(tmp_path, keep_last=keep_last, monitor=None)], n_train=128).fit(epochs)
    expected = [f"epoch-{e:04d}" for e in range(1, epochs + 1)][-keep_last:]
    assert sorted(d for d in os.listdir(tmp_path) if d.startswith("epoch-")) == expected
