"""CSVLogger and JSONLLogger: a row per epoch with every metric, written at each epoch's end,
per-step lines from the history, resume-consistent appends."""

from __future__ import annotations

import csv
import json
import math
import shutil

import pytest
import torch

from torchdeck.train import Callback, Checkpointer, CSVLogger, JSONLLogger, Metrics

from ._digits import digits_learner, one_thread  # noqa: F401  (fixture)
from ._tiny import tiny_learner

pytestmark = pytest.mark.usefixtures("one_thread")


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_jsonl(path):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")
    with open(path) as f:
        return [json.loads(line, parse_constant=refuse) for line in f]


def without_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_csv_has_one_row_per_epoch_with_every_metric(tmp_path):
    path = tmp_path / "log.csv"
    learner = tiny_learner([CSVLogger(path)])
    learner.fit(3)
    rows = read_csv(path)
    assert list(rows[0]) == ["epoch", "step", "train_loss", "valid_loss", "valid_accuracy", "seconds"]
    for row, hist in zip(rows, learner.history.epochs, strict=True):
        assert int(row["step"]) == hist["step"]
        for key in ("train_loss", "valid_loss", "valid_accuracy"):
            assert float(row[key]) == hist[key]  # str(float) round-trips exactly
        assert float(row["seconds"]) >= 0
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    learner.fit(2)  # a later fit continues the file and the epoch count
    assert [int(r["epoch"]) for r in read_csv(path)] == [1, 2, 3, 4, 5]


def test_rows_are_on_disk_at_each_epoch_end(tmp_path):
    path = tmp_path / "log.csv"
    jpath = tmp_path / "log.jsonl"
    seen = []

    class ReadBack(Callback):
        after = (CSVLogger, JSONLLogger)

        def epoch_end(self, state):
            if state.epoch_complete:
                seen.append((len(read_csv(path)), len(read_jsonl(jpath))))

    tiny_learner([ReadBack(), CSVLogger(path), JSONLLogger(jpath)]).fit(3)
    assert seen == [(1, 1), (2, 2), (3, 3)]


def test_a_new_logger_starts_the_file_afresh(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("old,content\n1,2\n")
    tiny_learner([CSVLogger(path)]).fit(1)
    assert [int(r["epoch"]) for r in read_csv(path)] == [1]


def test_a_metric_that_appears_later_widens_the_header(tmp_path):
    path = tmp_path / "log.csv"
    learner = tiny_learner([CSVLogger(path)])
    learner.fit(1)
    learner.set_callbacks([Metrics("accuracy", train_metrics=True) if isinstance(c, Metrics) else c
                           for c in learner.callbacks])
    learner.fit(1)
    rows = read_csv(path)
    assert rows[0]["train_accuracy"] == "" and float(rows[1]["train_accuracy"]) == \
        learner.history.epochs[-1]["train_accuracy"]
    assert float(rows[0]["valid_loss"]) == learner.history.epochs[0]["valid_loss"]


def test_jsonl_epochs_and_steps_match_the_history(tmp_path):
    path = tmp_path / "log.jsonl"
    learner = tiny_learner([JSONLLogger(path, steps=True)], n_train=24, batch_size=8)
    learner.fit(2)
    lines = read_jsonl(path)
    steps = [line for line in lines if line["type"] == "step"]
    epochs = [line for line in lines if line["type"] == "epoch"]
    h = learner.history
    assert [(s["step"], s["loss"], s["lr"]) for s in steps] == list(zip(h.steps, h.losses, h.lrs))
    assert without_seconds(epochs) == [{"type": "epoch", **{k: v for k, v in row.items() if k != "epoch_seconds"},
                                        "epoch": i + 1} for i, row in enumerate(h.epochs)]
    # each epoch's step lines come before its epoch line
    assert [line["type"] for line in lines] == ["step"] * 3 + ["epoch"] + ["step"] * 3 + ["epoch"]


def test_jsonl_writes_nan_as_null(tmp_path):
    def loss(pred, y):
        value = torch.nn.functional.cross_entropy(pred, y)
        return value if torch.is_grad_enabled() else value * math.nan

    path = tmp_path / "log.jsonl"
    tiny_learner([JSONLLogger(path)], loss_fn=loss).fit(1)
    (line,) = read_jsonl(path)
    assert line["valid_loss"] is None and isinstance(line["train_loss"], float)


def test_append_after_a_resume_logs_as_if_never_interrupted(tmp_path):
    def run(log_dir, ckpt_dir, jsonl=True):
        return digits_learner([Checkpointer(ckpt_dir, keep_last=5), CSVLogger(log_dir / "log.csv", append=True),
                               JSONLLogger(log_dir / "log.jsonl", steps=jsonl, append=True)],
                              n_train=256, batch_size=64)

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    torch.manual_seed(0)
    uninterrupted = run(tmp_path / "a", tmp_path / "ck")
    uninterrupted.fit(3)
    uninterrupted.fit(1)
    # the run "crashes" here, after logging epoch 4; it is resumed from the epoch-3 checkpoint
    for name in ("log.csv", "log.jsonl"):
        shutil.copy(tmp_path / "a" / name, tmp_path / "b" / name)
    uninterrupted.fit(1)
    resumed = run(tmp_path / "b", tmp_path / "ck2")
    resumed.fit(2, resume=tmp_path / "ck" / "epoch-0003")
    assert without_seconds(read_csv(tmp_path / "b" / "log.csv")) == \
        without_seconds(read_csv(tmp_path / "a" / "log.csv"))
    assert without_seconds(read_jsonl(tmp_path / "b" / "log.jsonl")) == \
        without_seconds(read_jsonl(tmp_path / "a" / "log.jsonl"))
    assert [r["epoch"] for r in read_csv(tmp_path / "b" / "log.csv")] == ["1", "2", "3", "4", "5"]


@pytest.mark.parametrize("make, message", [
    (lambda p: CSVLogger(p), r"CSVLogger: path '.*' is a directory; give a file name"),
    (lambda p: JSONLLogger(p / "x.jsonl", steps="yes"), r"JSONLLogger: steps must be True or False, got 'yes'"),
    (lambda p: CSVLogger(p / "x.csv", append=1), r"CSVLogger: append must be True or False, got 1"),
])
def test_loggers_validate(tmp_path, make, message):
    with pytest.raises(ValueError, match=message):
        make(tmp_path)
