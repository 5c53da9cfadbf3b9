"""Tabular tasks: trained end to end on the built-in tables, scored independently of the learner.

Accuracy is counted from decoded predictions against the labels; the regression baseline
is the training targets' mean, and both MSEs are computed here with numpy.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from torchdeck import Experiment, SpecError, data, tasks
from torchdeck import optim as O
from torchdeck.train import Learner

# One small recipe for every table: a 32-wide MLP, Adam with a little weight decay.
EPOCHS = {"iris": 20, "wine": 20, "breast_cancer": 10, "diabetes": 10}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train faster on one thread than on threads fighting over shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train(task, epochs, seed=0, batch_size=32):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = task.build_model("tabular_mlp", {"hidden": [32]})
    rule = O.chain(O.weight_decay(1e-2), O.adam(), O.scale_lr(3e-2))
    learner = Learner(model, task.loaders(batch_size, seed=seed), task.loss(), rule, metrics=task.metrics(),
                      epochs=epochs)
    return learner.fit()


def _predict(task, learner, split="valid"):
    table, targets = task.data.split(split)
    return task.decode(learner.predict(task.encode_inputs(table))), targets


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer"])
@pytest.mark.parametrize("split_seed", [0, 1])
def test_classification_reaches_90_percent(name, split_seed):
    task = tasks.get("tabular-classification")(data.load(name, seed=split_seed))
    learner = _train(task, EPOCHS[name], seed=split_seed)
    preds, labels = _predict(task, learner)
    correct = sum(p == task.classes[t] for p, t in zip(preds, labels))
    assert correct >= 0.9 * len(labels), f"{name}: {correct}/{len(labels)}"
    assert learner.history.epochs[-1]["valid_accuracy"] == pytest.approx(correct / len(labels), abs=1e-6)


@pytest.mark.parametrize("split_seed", [0, 1])
def test_regression_beats_the_mean_by_30_percent(split_seed):
    task = tasks.get("tabular-regression")(data.load("diabetes", seed=split_seed))
    learner = _train(task, EPOCHS["diabetes"], seed=split_seed)
    preds, targets = _predict(task, learner)
    _, train_targets = task.data.split("train")
    mse = np.mean((np.array(preds) - targets) ** 2)
    baseline = np.mean((train_targets.mean() - targets) ** 2)
    assert mse <= 0.7 * baseline, f"mse {mse:.0f} vs predicting the mean {baseline:.0f}"
    # the metric and the loss speak the target's units
    assert learner.history.epochs[-1]["valid_mse"] == pytest.approx(mse, rel=1e-4)
    assert learner.history.epochs[-1]["valid_loss"] == pytest.approx(mse, rel=1e-4)


def test_categorical_columns_go_through_embeddings(tmp_path):
    # The class is decided by the city (a category) unless x is large: learnable only if the
    # model reads the city, and the city carries missing values.
    rng = np.random.default_rng(0)
    cities = np.array(["oslo", "rome", "lima", "pune", "kiev", "baku"])
    path = tmp_path / "trips.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["city", "x", "label"])
        for _ in range(400):
            c, x = rng.integers(6), rng.normal()
            label = "far" if (c < 3) != (x > 1.2) else "near"
            w.writerow(["" if rng.random() < 0.02 else cities[c], "" if rng.random() < 0.05 else f"{x:.3f}", label])
    ds = data.read_csv(path, target="label")
    assert ds.categorical == ("city",) and ds.continuous == ("x",)
    task = tasks.TabularClassification(ds)
    assert task.encoding.columns == ("city", "x_na", "x") and task.encoding.cardinalities == (7, 3)
    learner = _train(task, 15)
    embeddings = learner.model.backbone.embeddings
    assert [e.num_embeddings for e in embeddings] == [7, 3]
    preds, labels = _predict(task, learner)
    accuracy = np.mean([p == task.classes[t] for p, t in zip(preds, labels)])
    assert accuracy >= 0.85


def test_encoding_head_and_interface():
    task = tasks.TabularRegression(data.load("diabetes"))
    assert task.blocks == ("table", "number") and task.input_channels() == 10
    table, targets = task.data.split("train")
    x = task.encode_inputs(table)
    assert x.shape == (len(targets), 10) and x.dtype == torch.float32
    assert set(x[:, 0].tolist()) == {1.0, 2.0}  # the sex column's codes (0 is #na#)
    y = task.encode_targets(targets)
    assert y.shape == (len(targets), 1)
    head = task.head(8)
    with torch.no_grad():
        head[0].weight.zero_()
        head[0].bias.fill_(1.0)
    # one standard deviation above the training mean
    assert head(torch.zeros(1, 8)).item() == pytest.approx(targets.mean() + targets.std(), rel=1e-5)
    report = tasks.check(task, backbone="tabular_mlp")
    assert report.output_shape == (4, 1) and "mse" in report.metrics
    clf = tasks.TabularClassification(data.load("iris"))
    assert tasks.check(clf, backbone="tabular_mlp").output_shape == (4, 3)
    assert clf.decode(torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])) == ["versicolor", "setosa"]


def test_show_batch_and_results_are_text_tables():
    task = tasks.TabularClassification(data.load("iris"))
    shown = task.show_batch(3)
    assert shown.columns[-1] == "target" and len(shown.rows) == 3
    table, labels = task.data.split("train")
    assert shown.rows[0][:-1] == [f"{table[c][0]:.4g}" for c in table.names]
    assert shown.rows[0][-1] == task.classes[labels[0]]

    def always_setosa(x):
        return torch.tensor([[1.0, 0.0, 0.0]]).repeat(len(x), 1)

    results = task.show_results(always_setosa, 4)
    assert results.columns[-1] == "prediction" and all(r[-1] == "setosa" for r in results.rows)
    text = str(results)
    assert "prediction" in text.splitlines()[0] and len(text.splitlines()) == 6
    assert "<table>" in results._repr_html_()


def test_bad_data_and_backbones_get_clear_errors():
    with pytest.raises(ValueError, match=r"tabular-classification: the target 'target' of 'diabetes' is continuous, "
                                         r"this task needs a categorical one; use tabular-regression"):
        tasks.TabularClassification(data.load("diabetes"))
    with pytest.raises(ValueError, match=r"tabular-regression: the target 'target' of 'iris' is categorical.*"
                                         r"use tabular-classification"):
        tasks.TabularRegression(data.load("iris"))
    with pytest.raises(ValueError, match=r"tabular-classification: data must be a TabularDataset .*got ImageDataset"):
        tasks.TabularClassification(data.load("digits"))
    task = tasks.TabularClassification(data.load("iris"))
    with pytest.raises(ValueError, match=r"backbone 'small_cnn' does not read tables; allowed: tabular_mlp"):
        task.build_model("small_cnn")
    with pytest.raises(ValueError, match=r"cardinalities come from the data \(\[\]\); remove it"):
        task.build_model("tabular_mlp", {"cardinalities": [3]})
    with pytest.raises(ValueError, match=r"tabular_mlp: dropout must be in \[0, 1\), got 1\.5"):
        task.build_model("tabular_mlp", {"dropout": 1.5})
    with pytest.raises(ValueError, match=r"inputs must be a data.Table, got ndarray"):
        task.encode_inputs(np.zeros((2, 4)))


SPEC = {"task": {"name": "tabular-classification"}, "data": {"name": "iris"},
        "model": {"backbone": "tabular_mlp", "options": {"hidden": [32]}}, "train": {"epochs": 30, "batch_size": 16}}


def test_the_spec_names_a_tabular_task_and_its_data():
    spec = Experiment.from_dict(SPEC)
    task = spec.build_task()
    assert isinstance(task, tasks.TabularClassification) and task.data.name == "iris"
    assert Experiment.parse_yaml(spec.to_yaml()) == spec
    csv_spec = Experiment.from_dict({**SPEC, "data": {"name": "csv", "options": {"path": "x.csv", "target": "y"}}})
    with pytest.raises(SpecError, match=r"^data.options: csv: path: file not found: 'x.csv'"):
        csv_spec.build_task()


def test_the_spec_trains_a_tabular_task():
    learner = Experiment.from_dict(SPEC).build()
    learner.fit()
    assert learner.history.epochs[-1]["valid_accuracy"] > 0.5
