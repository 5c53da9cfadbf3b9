"""``tasks.check(task)``: the interface test every task passes (DLPipelines.jl's ``checktask``).

It walks one small batch through the whole interface, in order: a mock sample, its encoding,
a mock model output (the task's head applied to random features), the loss and its
gradient, the metrics, and the decoding. The first step that misbehaves stops the check with
a :class:`TaskCheckError` naming the step, what the step must do, and what it did instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from torchdeck.tasks._base import Task

__all__ = ["check", "CheckReport", "TaskCheckError", "STEPS"]

# step -> what it must do; listed once, in the order the check runs them
STEPS: dict[str, str] = {
    "blocks": "task.blocks names the input and target kinds: a pair of non-empty strings",
    "mock_sample": "task.mock_sample(n, seed=...) gives (inputs, targets) with n of each",
    "encode_inputs": "task.encode_inputs(inputs) gives a floating-point tensor of n finite rows",
    "encode_targets": "task.encode_targets(targets) gives a tensor of n rows",
    "input_channels": "task.input_channels() gives a positive integer",
    "head": "task.head(features) maps (n, features) backbone features to an output tensor of n rows",
    "loss": "task.loss()(output, encoded targets) gives a finite scalar tensor that reaches the head's parameters",
    "metrics": "each of task.metrics() (a registered metric name or a function) gives a finite scalar",
    "decode": "task.decode(output) gives one prediction per sample (n in all)",
    "model": "task.build_model(backbone) maps the encoded inputs to outputs shaped like the head's",
}

_FEATURES = 16  # width of the mock backbone features fed to the head


class TaskCheckError(ValueError):
    """A task that fails the interface check; ``step`` names the failing step."""

    def __init__(self, task: str, step: str, problem: str) -> None:
        self.task, self.step, self.problem = task, step, problem
        super().__init__(f"{task} fails the task check at step {step!r} ({STEPS[step]}): {problem}")


@dataclasses.dataclass
class CheckReport:
    """What a passing check saw; ``str()`` prints one line per step."""

    task: str
    steps: list[str]
    inputs_shape: tuple[int, ...]
    targets_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    loss: float
    metrics: dict[str, float]
    decoded: list[Any]

    def __str__(self) -> str:
        return "\n".join([f"{self.task} passes the task check:",
                          f"  inputs {self.inputs_shape} -> targets {self.targets_shape} -> output "
                          f"{self.output_shape}",
                          f"  loss {self.loss:.4g}; metrics {self.metrics}; decoded {self.decoded[:4]}",
                          f"  steps: {', '.join(self.steps)}"])


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    shape = getattr(x, "shape", None)
    return f"a {type(x).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")


class _Checker:
    def __init__(self, task: Task) -> None:
        self.name = f"{task.name or 'unregistered'} task ({type(task).__name__})"
        self.passed: list[str] = []

    def fail(self, step: str, problem: str) -> TaskCheckError:
        return TaskCheckError(self.name, step, problem)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Any exception the task raises inside a step is reported as that step's failure."""
        try:
            yield
        except TaskCheckError:
            raise
        except Exception as e:  # noqa: BLE001  (the task's own code may raise anything)
            raise self.fail(name, f"raised {type(e).__name__}: {e}") from e
        self.passed.append(name)

    def rows(self, step: str, x: Any, n: int, what: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise self.fail(step, f"{what} should be a torch.Tensor, got {_describe(x)}")
        if x.ndim == 0 or x.shape[0] != n:
            raise self.fail(step, f"{what} should have {n} rows (one per sample), got {_describe(x)}")


def _length(x: Any) -> int | None:
    try:
        return len(x)
    except TypeError:
        return None


def check(task: Task, *, n: int = 4, seed: int = 0, backbone: str | None = None,
          backbone_options: dict[str, Any] | None = None) -> CheckReport:
    """Run the interface test on ``task``; raises :class:`TaskCheckError` at the first failing step.

    Args:
        task: a task instance (built-in or your own :class:`Task` subclass).
        n: samples in the mock batch (>= 2, so batch statistics and losses are well defined).
        seed: seeds the mock sample and the mock features.
        backbone: also build ``task.build_model(backbone, backbone_options)`` and run the encoded
            inputs through it (step ``model``); skipped when None.
    """
    if isinstance(task, type):
        raise ValueError(f"check: pass a task instance, got the class {task.__name__}; "
                         f"e.g. check({task.__name__}(data))")
    if not isinstance(task, Task):
        raise ValueError(f"check: task must be a torchdeck.tasks.Task, got {type(task).__name__}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"check: n must be an integer >= 2, got {n!r}")
    c = _Checker(task)
    gen = torch.Generator().manual_seed(seed)

    with c.step("blocks"):
        blocks = task.blocks
        if not (isinstance(blocks, tuple) and len(blocks) == 2 and all(isinstance(b, str) and b for b in blocks)):
            raise c.fail("blocks", f"got {blocks!r}")

    with c.step("mock_sample"):
        sample = task.mock_sample(n, seed=seed)
        if not (isinstance(sample, tuple) and len(sample) == 2):
            raise c.fail("mock_sample", f"should return a pair (inputs, targets), got {_describe(sample)}")
        inputs, targets = sample
        for what, part in (("inputs", inputs), ("targets", targets)):
            if _length(part) != n:
                raise c.fail("mock_sample", f"{what} should hold {n} samples, got {_describe(part)} "
                                            f"of length {_length(part)}")

    with c.step("encode_inputs"):
        x = task.encode_inputs(inputs)
        c.rows("encode_inputs", x, n, "the encoded inputs")
        if not x.is_floating_point():
            raise c.fail("encode_inputs", f"the encoded inputs should be floating point, got {_describe(x)}")
        if not torch.isfinite(x).all():
            raise c.fail("encode_inputs", f"the encoded inputs hold {int((~torch.isfinite(x)).sum())} NaN/inf values")

    with c.step("encode_targets"):
        y = task.encode_targets(targets)
        c.rows("encode_targets", y, n, "the encoded targets")

    with c.step("input_channels"):
        channels = task.input_channels()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise c.fail("input_channels", f"got {channels!r}")

    with c.step("head"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = task.head(_FEATURES)
        if not isinstance(head, nn.Module):
            raise c.fail("head", f"task.head({_FEATURES}) should be an nn.Module, got {_describe(head)}")
        features = torch.randn(n, _FEATURES, generator=gen)
        output = head(features)
        c.rows("head", output, n, f"head(features of shape {(n, _FEATURES)})")

    with c.step("loss"):
        loss = task.loss()(output, y)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise c.fail("loss", f"the loss should be a scalar (0-d) tensor, got {_describe(loss)}")
        if not torch.isfinite(loss):
            raise c.fail("loss", f"the loss is {loss.item()} for output {_describe(output)} and targets {_describe(y)}")
        params = [p for p in head.parameters() if p.requires_grad]
        if params:
            if not loss.requires_grad:
                raise c.fail("loss", "the loss does not depend on the output (no gradient); "
                                     "is it computed from detached or decoded values?")
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            if all(g is None for g in grads) or not all(torch.isfinite(g).all() for g in grads if g is not None):
                raise c.fail("loss", "the loss has no finite gradient with respect to the head's parameters")

    metric_values: dict[str, float] = {}
    with c.step("metrics"):
        from torchdeck.train import get_metric

        names = task.metrics()
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise c.fail("metrics", f"task.metrics() should be a sequence of names or functions, got {names!r}")
        detached = output.detach()
        for m in names:
            label, fn = get_metric(m)
            value = fn(detached, y)
            if not isinstance(value, torch.Tensor) or value.ndim != 0:
                raise c.fail("metrics", f"metric {label!r} should give a scalar tensor, got {_describe(value)}")
            if not torch.isfinite(value):
                raise c.fail("metrics", f"metric {label!r} gave {value.item()}")
            metric_values[label] = float(value)

    with c.step("decode"):
        decoded = task.decode(output.detach())
        length = _length(decoded)
        if length != n:
            raise c.fail("decode", f"got {_describe(decoded)} of length {length}")
        decoded = list(decoded)

    if backbone is not None:
        with c.step("model"):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = task.build_model(backbone, backbone_options)
            model.eval()
            with torch.no_grad():
                out = model(x)
            c.rows("model", out, n, f"the output of backbone {backbone!r} + head")
            if out.shape[1:] != output.shape[1:]:
                raise c.fail("model", f"the model gives {_describe(out)}, the head alone {_describe(output)}")

    return CheckReport(c.name, c.passed, tuple(x.shape), tuple(y.shape), tuple(output.shape), float(loss.detach()),
                       metric_values, decoded)
