"""``tasks.check``: built-in tasks pass, a user's own small task passes, and each broken step is named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from torchdeck import data, tasks
from torchdeck import optim as O
from torchdeck.train import Learner


class VectorSum(tasks.Task):
    """A user's own task, whole: regress the sum of a 4-vector."""

    blocks = ("vector", "number")

    def __init__(self, n: int = 200, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(n, 4)).astype(np.float32)
        self.y = self.x.sum(axis=1)
        self.cut = int(0.8 * n)

    def samples(self, split):
        part = slice(None, self.cut) if split == "train" else slice(self.cut, None)
        return self.x[part], self.y[part]

    def input_channels(self):
        return 4

    def encode_inputs(self, x):
        return torch.as_tensor(x, dtype=torch.float32)

    def encode_targets(self, y):
        return torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1)

    def decode(self, outputs):
        return outputs[:, 0].tolist()

    def head(self, in_features):
        return nn.Linear(in_features, 1)

    def loss(self):
        return nn.MSELoss()


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread than on threads fighting over shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def registered():
    cls = tasks.register_task("vector-sum")(VectorSum)
    yield cls
    del tasks.TASKS["vector-sum"]  # leave the global registry as it was


def test_a_users_task_is_one_small_class(registered, one_thread):
    assert "vector-sum" in tasks.list() and tasks.get("vector-sum") is VectorSum
    task = tasks.get("vector-sum")()
    report = tasks.check(task, backbone="mlp", backbone_options={"in_features": 4, "hidden": 16})
    assert report.steps == list(tasks.STEPS)
    assert report.inputs_shape == (4, 4) and report.targets_shape == (4, 1) and report.output_shape == (4, 1)
    assert len(report.decoded) == 4 and "vector-sum task (VectorSum) passes" in str(report)
    # ...and it trains with the defaults the base class gives it (samples -> loaders -> model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = task.build_model("mlp", {"in_features": 4, "hidden": 16})
    learner = Learner(model, task.loaders(32, seed=0), task.loss(), O.chain(O.adam(), O.scale_lr(1e-2)), epochs=30)
    learner.fit()
    x, y = task.samples("valid")
    pred = np.array(task.decode(learner.predict(task.encode_inputs(x))))
    assert np.mean((pred - y) ** 2) < 0.05 * np.var(y)  # the variance of a sum of 4 N(0, 1) is 4


def test_built_in_tasks_pass():
    digits = tasks.ImageClassification(data.load("digits"))
    report = tasks.check(digits, backbone="small_cnn", backbone_options={"width": 4})
    assert report.inputs_shape == (4, 1, 8, 8) and report.output_shape == (4, 10)
    assert set(report.metrics) == {"accuracy"} and all(d in digits.classes for d in report.decoded)
    # the mock batch is n seeded draws from the training split
    images, labels = digits.mock_sample(6, seed=1)
    train_x, train_y = digits.data.split("train")
    assert all(any(np.array_equal(im, t) for t in train_x) for im in images) and len(labels) == 6
    assert np.array_equal(digits.mock_sample(6, seed=1)[0], images)


class _Broken(VectorSum):
    name = "broken"


def _variant(**methods):
    return type("Variant", (_Broken,), methods)()


@pytest.mark.parametrize(("methods", "step", "problem"), [
    ({"blocks": ("vector",)}, "blocks", "got ('vector',)"),
    ({"mock_sample": lambda self, n, seed=0: (self.x[:n], self.y[:n - 1])}, "mock_sample",
     "targets should hold 4 samples, got a ndarray of shape (3,) of length 3"),
    ({"mock_sample": lambda self, n, seed=0: self.x[:n]}, "mock_sample", "should return a pair (inputs, targets)"),
    ({"encode_inputs": lambda self, x: x}, "encode_inputs", "should be a torch.Tensor, got a ndarray of shape (4, 4)"),
    ({"encode_inputs": lambda self, x: torch.zeros(len(x), 4, dtype=torch.int64)}, "encode_inputs",
     "should be floating point, got a torch.int64 tensor"),
    ({"encode_inputs": lambda self, x: torch.full((len(x), 4), float("nan"))}, "encode_inputs", "16 NaN/inf values"),
    ({"encode_targets": lambda self, y: torch.zeros(2, 1)}, "encode_targets",
     "should have 4 rows (one per sample), got a torch.float32 tensor of shape (2, 1)"),
    ({"input_channels": lambda self: 0}, "input_channels", "got 0"),
    ({"head": lambda self, f: nn.Flatten(0)}, "head", "should have 4 rows"),
    ({"head": lambda self, f: "linear"}, "head", "should be an nn.Module, got a str"),
    ({"loss": lambda self: nn.MSELoss(reduction="none")}, "loss", "should be a scalar (0-d) tensor"),
    ({"loss": lambda self: lambda out, y: ((out.detach() - y) ** 2).mean()}, "loss", "does not depend on the output"),
    ({"loss": lambda self: lambda out, y: (out - y).mean() * float("inf")}, "loss", "the loss is"),
    ({"loss": lambda self: lambda out, y: (out @ y).sum()}, "loss", "raised RuntimeError"),
    ({"metrics": lambda self: ("f1",)}, "metrics", "raised ValueError: unknown metric 'f1'"),
    ({"metrics": lambda self: (lambda p, y: torch.tensor([1.0, 2.0]),)}, "metrics", "should give a scalar tensor"),
    ({"decode": lambda self, out: out[:2, 0].tolist()}, "decode", "got a list of length 2"),
    ({"decode": lambda self, out: 3.0}, "decode", "got a float of length None"),
    ({"decode": tasks.Task.decode}, "decode", "raised NotImplementedError: Variant does not define decode(outputs)"),
])
def test_each_broken_step_is_named(methods, step, problem):
    with pytest.raises(tasks.TaskCheckError) as info:
        tasks.check(_variant(**methods))
    assert info.value.step == step
    msg = str(info.value)
    assert msg.startswith(f"broken task (Variant) fails the task check at step {step!r} ({tasks.STEPS[step]}): ")
    assert problem in msg, msg


def test_model_step_runs_the_built_model():
    task = VectorSum()
    # a backbone built for 5 inputs cannot read this task's 4
    with pytest.raises(tasks.TaskCheckError,
                       match=r"at step 'model' .*raised RuntimeError: .*shapes cannot be multiplied"):
        tasks.check(task, backbone="mlp", backbone_options={"in_features": 5})
    with pytest.raises(tasks.TaskCheckError, match=r"at step 'model' .*raised ValueError: unknown backbone 'vit'"):
        tasks.check(task, backbone="vit")
    # without a backbone, the model step is skipped
    assert "model" not in tasks.check(task).steps


def test_check_refuses_what_is_not_a_task_instance():
    with pytest.raises(ValueError, match=r"check: pass a task instance, got the class VectorSum"):
        tasks.check(VectorSum)
    with pytest.raises(ValueError, match=r"check: task must be a torchdeck.tasks.Task, got str"):
        tasks.check("vector-sum")
    with pytest.raises(ValueError, match=r"check: n must be an integer >= 2, got 1"):
        tasks.check(VectorSum(), n=1)
