"""The Experiment spec: one validated, serialisable description of a run.

The spec is the single source of truth: the Studio edits it, the CLI reads it from YAML,
and ``build()`` turns it into a ready Learner. Errors name the field, the value and what
is allowed, in one line (:class:`SpecError`).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import pprint
import re
from typing import Any, Callable, Iterator, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from torchdeck import augment as _augment
from torchdeck import data as _data
from torchdeck import models as _models
from torchdeck import optim as _optim
from torchdeck import schedules as _schedules
from torchdeck import tasks as _tasks

__all__ = ["Experiment", "SpecError", "TaskSpec", "DataSpec", "ModelSpec", "TrainSpec"]


class SpecError(ValueError):
    """A spec that does not validate; the message is one line naming the field."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@contextlib.contextmanager
def _field(where: str) -> Iterator[None]:
    """Builders check option values; their errors get the spec field they came from."""
    try:
        yield
    except (ValueError, TypeError) as e:
        raise SpecError(f"{where}: {e}") from e


def _lookup(where: str, registry: Any, name: str) -> Any:
    try:
        return registry.lookup(name)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def _check_options(where: str, fn: Callable[..., Any], options: dict[str, Any], skip: int) -> None:
    """Refuse options ``fn`` does not take (``skip`` leading positional parameters are ours)."""
    params = list(inspect.signature(fn).parameters.values())[skip:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    allowed = [p.name for p in params]
    for key in options:
        if key not in allowed:
            raise ValueError(f"{where}: unknown option {key!r}; allowed: {', '.join(allowed) or 'none'}")


class TaskSpec(_Part):
    name: str = Field("image-classification", description="a registered task")
    options: dict[str, Any] = Field(default_factory=dict, description="task arguments, e.g. size")

    @model_validator(mode="after")
    def _known(self) -> "TaskSpec":
        cls = _lookup("task.name", _tasks.TASKS, self.name)
        _check_options("task.options", cls.__init__, self.options, skip=2)
        return self


class DataSpec(_Part):
    name: str = Field("digits", description="a built-in data set")
    options: dict[str, Any] = Field(default_factory=dict, description="data set arguments, e.g. valid_fraction")

    @model_validator(mode="after")
    def _known(self) -> "DataSpec":
        _check_options("data.options", _lookup("data.name", _data.DATASETS, self.name), self.options, skip=0)
        return self


class ModelSpec(_Part):
    backbone: str = Field("small_cnn", description="a registered backbone")
    options: dict[str, Any] = Field(default_factory=dict, description="backbone arguments, e.g. width")
    weights: str | None = Field(None, description="local weights file (.safetensors or torch state dict)")

    @model_validator(mode="after")
    def _known(self) -> "ModelSpec":
        _check_options("model.options", _lookup("model.backbone", _models.BACKBONES, self.backbone), self.options,
                       skip=1)
        if self.weights is not None and not os.path.isfile(self.weights):
            raise ValueError(f"model.weights: file not found: {self.weights!r} (relative paths are from the "
                             "working directory; weights are never downloaded)")
        return self


class TrainSpec(_Part):
    epochs: int = Field(8, ge=1, description="passes over the training data")
    batch_size: int = Field(64, ge=1, description="samples per step")
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="where to train")


def _default_optim() -> dict[str, Any]:
    return _optim.chain(_optim.clip_norm(1.0), _optim.adam(), _optim.scale_lr(3e-3)).to_spec()


def _default_schedules() -> dict[str, Any]:
    lr = _schedules.Sequence([_schedules.Linear(3e-4, 3e-3, steps=50), _schedules.CosAnneal(3e-3, 1e-5)])
    return {"lr": lr.to_spec()}


class Experiment(_Part):
    """Everything that defines a run. ``Experiment()`` is the Studio's default (digits)."""

    name: str = Field("digits", description="a label for the run")
    seed: int = Field(0, description="seeds model init and data order")
    task: TaskSpec = Field(default_factory=TaskSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    optim: Any = Field(default_factory=_default_optim, description="a rule or chain spec")
    schedules: dict[str, Any] = Field(default_factory=_default_schedules,
                                      description="hyperparameter name -> schedule spec, a list with one per param "
                                                  "group, or {group name: schedule} (open lengths span the run)")
    train: TrainSpec = Field(default_factory=TrainSpec)
    callbacks: list[dict[str, Any]] = Field(
        default_factory=list, description="callbacks by name, each {name: {argument: value}}, e.g. "
                                          "[{early_stopping: {patience: 2}}, {csv_logger: {path: log.csv}}]; "
                                          "paths are relative to the working directory")
    augment: list | dict | str | None = Field(None, description="training augmentation: a transform spec or a list "
                                                                "of them (a pipeline), applied to training samples")

    @field_validator("optim", mode="before")
    @classmethod
    def _rule(cls, v: Any) -> dict[str, Any]:
        return _optim.rule_from_spec(v, where="optim").to_spec()  # stored in canonical form

    @field_validator("augment", mode="before")
    @classmethod
    def _canonical_augment(cls, v: Any) -> dict[str, Any] | None:
        if v is None:
            return None
        return _augment.transform_from_spec(v, where="augment").to_spec()  # stored in canonical form

    @model_validator(mode="after")
    def _task_takes_augment(self) -> "Experiment":
        if self.augment is None:
            return self
        if "augment" in self.task.options:
            raise ValueError("augment: given twice (top level and task.options.augment); keep the top-level one")
        if not _tasks.takes_augment(self.task.name):
            raise ValueError(f"augment: task {self.task.name!r} takes no augmentation; set augment to null")
        return self

    @field_validator("callbacks", mode="before")
    @classmethod
    def _canonical_callbacks(cls, v: Any) -> list[dict[str, Any]]:
        from torchdeck.train import callback_to_spec, callbacks_from_spec, order_callbacks

        # Building them is the validation (each constructor checks its arguments); what is
        # stored is the canonical form, every argument present, as for optim and augment.
        built = callbacks_from_spec(v, where="callbacks")
        try:
            order_callbacks(built)  # two writers of one state field, found now rather than at build
        except ValueError as e:
            raise ValueError(f"callbacks: {e}") from None
        return [callback_to_spec(cb, where=f"callbacks[{i}]") for i, cb in enumerate(built)]

    @field_validator("schedules", mode="before")
    @classmethod
    def _schedules(cls, v: Any) -> dict[str, Any]:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise ValueError(f"schedules: expected a mapping of hyperparameter -> schedule, got {v!r}")
        return {k: _schedules.per_group_spec(k, s) for k, s in v.items()}

    @model_validator(mode="after")
    def _schedules_drive_known_hyper(self) -> "Experiment":
        rule = self.rule()
        # The param groups the optimiser will have: one per partition pattern, else one.
        parts = rule.parts if isinstance(rule, _optim.Partition) else {None: rule}
        groups = [{**({"name": n} if n is not None else {}), **r.hyper()} for n, r in parts.items()]
        for key, spec in self.schedules.items():
            _schedules.check_groups(key, spec, groups)
        return self

    # -- engine objects ---------------------------------------------------------------------
    def rule(self) -> _optim.Rule:
        return _optim.rule_from_spec(self.optim)

    def schedule_objects(self) -> dict[str, Any]:
        """Per hyperparameter: a schedule, a list (one per param group) or ``{group: schedule}``."""
        built = {k: _schedules.per_group(k, s) for k, s in self.schedules.items()}
        # One schedule for every group comes back as a one-item list: give the schedule itself.
        return {k: b[0] if isinstance(b, list) and not isinstance(self.schedules[k], list) else b
                for k, b in built.items()}

    def callback_objects(self) -> list[Any]:
        """Fresh callbacks from ``callbacks`` (a learner's callbacks hold state: never share them).
        Relative paths resolve against the working directory now."""
        from torchdeck.train import callbacks_from_spec

        return callbacks_from_spec(self.callbacks, where="callbacks")

    def augment_pipeline(self) -> _augment.Transform | None:
        return None if self.augment is None else _augment.transform_from_spec(self.augment, where="augment")

    def schedule_curves(self) -> dict[str, _schedules.Schedule]:
        """One schedule per curve to draw: ``lr``, or ``lr [*.bias]`` / ``lr [0]`` for schedules
        given per param group."""
        out: dict[str, _schedules.Schedule] = {}
        for key, built in self.schedule_objects().items():
            if isinstance(built, _schedules.Schedule):
                out[key] = built
            else:
                items = built.items() if isinstance(built, dict) else enumerate(built)
                out.update({f"{key} [{group}]": s for group, s in items})
        return out

    def build_task(self) -> _tasks.Task:
        with _field("data.options"):
            dataset = _data.load(self.data.name, **self.data.options)
        task_cls = _tasks.get(self.task.name)
        if self.augment is None:
            with _field("task.options"):
                return task_cls(dataset, **self.task.options)
        with _field("augment"):
            return task_cls(dataset, **self.task.options, augment=self.augment_pipeline())

    def build(self, task: _tasks.Task | None = None) -> Any:
        """A ready :class:`~torchdeck.train.Learner`; ``fit()`` runs ``train.epochs`` epochs."""
        from torchdeck.train import Learner

        task = task if task is not None else self.build_task()
        try:
            callbacks = self.callback_objects()
        except ValueError as e:  # already names callbacks[i]; a path may have become a directory since
            raise SpecError(str(e)) from e
        with _field("model"):
            return Learner.from_task(
                task, backbone=self.model.backbone, backbone_options=self.model.options, rule=self.rule(),
                schedules=self.schedule_objects(), batch_size=self.train.batch_size, epochs=self.train.epochs,
                seed=self.seed, device=self.train.device, weights=self.model.weights, callbacks=callbacks)

    # -- serialisation ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Any) -> "Experiment":
        if not isinstance(d, dict):
            raise SpecError(f"spec: expected a mapping at the top level, got {type(d).__name__}")
        try:
            return cls.model_validate(d)
        except pydantic.ValidationError as e:
            raise SpecError(_one_line(e)) from None

    @classmethod
    def parse_yaml(cls, text: str) -> "Experiment":
        try:
            d = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as e:
            raise SpecError(f"spec: not valid YAML: {' '.join(str(e).split())}") from None
        return cls.from_dict({} if d is None else d)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "Experiment":
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise SpecError(f"spec: file not found: {path!r}")
        with open(path, encoding="utf-8") as f:
            return cls.parse_yaml(f.read())

    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        # No augmentation is the default and is left out, so specs written before the field
        # existed stay canonical (and the YAML shows augment only when a run uses it).
        if d["augment"] is None:
            del d["augment"]
        if not d["callbacks"]:  # likewise: no callbacks is the default
            del d["callbacks"]
        return d

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return text

    def to_python(self) -> str:
        """A script that reproduces this run."""
        body = pprint.pformat(self.to_dict(), indent=1, width=100, sort_dicts=False)
        where = "# Paths in callbacks are relative to the working directory.\n" if self.callbacks else ""
        return ("import torchdeck as td\n\n" + where +
                f"spec = td.Experiment.from_dict({body})\n"
                "learner = spec.build()\n"
                "learner.fit()\n"
                "print(learner.history.epochs[-1])\n")

    def with_changes(self, **changes: Any) -> "Experiment":
        """A validated copy with dotted-path changes: ``spec.with_changes(**{"train.epochs": 3})``."""
        d = self.to_dict()
        for dotted, value in changes.items():
            node: Any = d
            *parents, last = dotted.split(".")
            for p in parents:
                node = node.get(p) if isinstance(node, dict) else None
            if not isinstance(node, dict) or (last not in node and parents and "options" not in parents[-1:]):
                raise SpecError(f"{dotted}: no such field in the spec")
            node[last] = value
        return Experiment.from_dict(d)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; people write learning rates that way."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                 |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                 |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                 |[-+]?\.(?:inf|Inf|INF)
                 |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def _one_line(e: pydantic.ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"{loc}: unknown field; allowed: {', '.join(_fields_at(err['loc'][:-1]))}"
    first = str(err["loc"][0]) if err["loc"] else ""
    if first and msg.startswith(first):  # our own messages already say where
        return msg
    if loc and not msg.startswith(f"{loc}:") and not msg.split(":")[0].startswith(first or "\0"):
        got = f", got {err['input']!r}" if "input" in err and not isinstance(err["input"], dict) else ""
        return f"{loc}: {msg}{got}" if loc else msg
    return msg


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Experiment
    for part in loc:
        ann = model.model_fields[str(part)].annotation
        model = ann
    return list(model.model_fields)
