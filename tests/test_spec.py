"""The Experiment spec: canonical YAML, deterministic build, exported Python, one-line errors."""

from __future__ import annotations

import math

import contextlib
import io
from pathlib import Path

import pytest
import torch

import torchdeck as td
from torchdeck import optim as O
from torchdeck import schedules as S
from torchdeck.spec import Experiment, SpecError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def task():
    return Experiment().build_task()


def test_canonical_yaml_round_trip_is_identical():
    text = Experiment().to_yaml()
    again = Experiment.parse_yaml(text)
    assert again == Experiment()
    assert again.to_yaml() == text


def test_example_digits_yaml_is_canonical():
    path = ROOT / "examples" / "digits.yaml"
    spec = Experiment.from_yaml(path)
    assert spec.to_yaml() == path.read_text()
    assert spec == Experiment()  # the example is the Studio's default run


def test_short_forms_are_stored_canonically(tmp_path):
    spec = Experiment.parse_yaml("optim: adam\nschedules:\n  lr: 0.01\ntrain: {epochs: 2}\n")
    assert spec.optim == {"adam": {"lr": 1.0, "b1": 0.9, "b2": 0.999, "eps": 1e-8}}
    assert spec.schedules == {"lr": {"constant": {"value": 0.01, "steps": None}}}
    assert spec.rule() == O.adam()
    assert spec.schedule_objects() == {"lr": S.Constant(0.01)}
    out = tmp_path / "run.yaml"
    text = spec.to_yaml(out)
    assert out.read_text() == text
    assert Experiment.from_yaml(out) == spec
    assert Experiment.parse_yaml(text).to_yaml() == text


def test_with_changes_validates_and_leaves_the_original():
    spec = Experiment()
    changed = spec.with_changes(**{"train.epochs": 3, "optim": "sgd", "schedules": {}})
    assert changed.train.epochs == 3 and changed.rule() == O.sgd() and spec.train.epochs == 8
    with pytest.raises(SpecError, match=r"^train\.epochs: .*greater than or equal to 1.*got 0$"):
        spec.with_changes(**{"train.epochs": 0})


def _weights(learner):
    return {k: v.clone() for k, v in learner.model.state_dict().items()}


def test_build_is_deterministic_in_the_seed_and_leaves_global_rng_alone(task):
    torch.manual_seed(1234)
    rng_before = torch.get_rng_state()
    a = _weights(Experiment(seed=7).build(task))
    assert torch.equal(torch.get_rng_state(), rng_before)
    torch.manual_seed(999)  # a different global state must not matter
    b = _weights(Experiment(seed=7).build(task))
    c = _weights(Experiment(seed=8).build(task))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    float_keys = [k for k in a if a[k].is_floating_point() and "running" not in k]
    assert any(not torch.equal(a[k], c[k]) for k in float_keys if k.endswith("weight"))


def test_build_wires_the_spec_into_the_learner(task):
    spec = Experiment().with_changes(**{"train.batch_size": 100, "train.epochs": 3})
    learner = spec.build(task)
    assert learner.epochs == 3
    assert learner.optimizer.rule == spec.rule()
    assert learner.loaders["train"].batch_size == 100
    assert len(learner.loaders["train"]) == -(-len(task.data.train_idx) // 100)
    schedulers = [cb for cb in learner.callbacks if isinstance(cb, S.Scheduler)]
    assert len(schedulers) == 1 and schedulers[0].schedules == {k: [s] for k, s in spec.schedule_objects().items()}


def test_build_loads_weights_from_the_spec(task, tmp_path):
    from safetensors.torch import save_file

    donor = Experiment(seed=3).build(task)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in donor.model.state_dict().items()}, str(path))
    learner = Experiment(seed=0, model={"weights": str(path)}).build(task)
    got, want = _weights(learner), _weights(donor)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_to_python_compiles_and_builds_the_same_model(task):
    spec = Experiment(seed=5)
    script = spec.to_python()
    compile(script, "<spec>", "exec")
    namespace: dict = {}
    # Everything up to the fit: the script's spec equals ours and builds identical weights.
    exec(script.split("learner = spec.build()")[0], namespace)
    assert namespace["spec"] == spec
    built = _weights(namespace["spec"].build(task))
    ours = _weights(spec.build(task))
    assert all(torch.equal(built[k], ours[k]) for k in ours)


@pytest.mark.slow
def test_to_python_runs(tmp_path):
    spec = Experiment().with_changes(**{"train.epochs": 1})
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(spec.to_python(), "<spec>", "exec"), {})
    last = eval(out.getvalue().strip().splitlines()[-1])  # the script prints the last epoch's row
    assert last["epoch"] == 1 and 0.0 <= last["valid_accuracy"] <= 1.0 and last["step"] > 0


def _write_weights(tmp_path):
    return tmp_path / "does-not-exist.safetensors"


@pytest.mark.parametrize(("spec", "field", "pieces"), [
    ({"optim": {"adamz": {}}}, "optim", ["unknown rule 'adamz'", "allowed: chain, ", " adam, "]),
    ({"optim": {"chain": [{"adam": {}}, {"scale_lr": {"lr": -0.1}}]}}, "optim.chain[1].scale_lr",
     ["lr must be in [0.0, inf)", "got -0.1"]),
    ({"optim": {"adam": {"lr": -1}}}, "optim.adam", ["lr must be in [0.0, inf)", "got -1"]),
    ({"model": {"weights": "missing/w.safetensors"}}, "model.weights", ["file not found", "'missing/w.safetensors'"]),
    ({"optimizer": "adam"}, "optimizer", ["unknown field", "allowed: name, seed, task, data, model, optim, schedules, train"]),
    ({"train": {"device": "tpu"}}, "train.device", ["'cpu', 'cuda' or 'auto'", "'tpu'"]),
    ({"train": {"batchsize": 3}}, "train.batchsize", ["unknown field", "allowed: epochs, batch_size, device"]),
    ({"schedules": {"momentum": {"cos_anneal": {"start": 0.9, "end": 0.5}}}}, "schedules.momentum",
     ["no hyperparameter 'momentum'", "allowed: max_norm, adam.lr, b1, b2, eps, lr"]),
    ({"schedules": {"lr": {"cos_anneal": {"start": -1}}}}, "schedules.lr.cos_anneal", ["start must be >= 0.0", "got -1"]),
    ({"data": {"name": "mnist"}}, "data.name", ["unknown data set 'mnist'", "allowed: ", "digits"]),
    ({"model": {"backbone": "resnet9000"}}, "model.backbone", ["unknown backbone 'resnet9000'", "allowed:", "small_cnn"]),
    ({"model": {"options": {"depth": 3}}}, "model.options", ["unknown option 'depth'", "allowed: width"]),
    ({"task": {"name": "detection"}}, "task", ["unknown task 'detection'", "allowed: ", "image-classification"]),
    ({"optim": {"partition": {"*.bias": "sgd", "*": "adamw"}}, "schedules": {"lr": {"*.bias": 0.1, "head.*": 0.2}}},
     "schedules.lr", ["no param group named 'head.*'", "groups: '*.bias', '*'"]),
    ({"optim": {"partition": {"*.bias": "sgd", "*": "adamw"}}, "schedules": {"decay": 0.1}},
     "schedules.decay", ["the optimiser 0 ('*.bias') has no hyperparameter 'decay'", "allowed: lr"]),
])
def test_spec_errors_are_one_line_and_name_the_field(spec, field, pieces):
    with pytest.raises(SpecError) as info:
        Experiment.from_dict(spec)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{field}:") or msg.startswith(f"{field}.") or f"{field}:" in msg, msg
    for piece in pieces:
        assert piece in msg, msg


def test_yaml_level_errors_are_one_line(tmp_path):
    with pytest.raises(SpecError, match=r"^spec: file not found: '.*nope\.yaml'$"):
        Experiment.from_yaml(tmp_path / "nope.yaml")
    with pytest.raises(SpecError) as info:
        Experiment.parse_yaml("optim: [unclosed\n  seed: 1\n")
    assert str(info.value).startswith("spec: not valid YAML:") and "\n" not in str(info.value)
    with pytest.raises(SpecError, match=r"^spec: expected a mapping at the top level, got list$"):
        Experiment.parse_yaml("- 1\n- 2\n")


def test_spec_error_is_a_value_error():
    assert issubclass(SpecError, ValueError)
    assert td.SpecError is SpecError


def test_the_engine_imports_no_ui_packages():
    # The engine must run on a GPU box or under torchrun without Jupyter installed.
    import subprocess
    import sys

    code = ("import sys, torchdeck, torchdeck.cli; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ipywidgets', 'plotly', 'voila', 'IPython')); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_yaml_numbers_in_exponent_form_are_numbers():
    # YAML 1.1 (PyYAML) reads 1e-3 as a string; a spec must not.
    spec = Experiment.parse_yaml("optim: {chain: [adam, {scale_lr: {lr: 1e-3}}]}\nseed: 7\n")
    assert spec.rule().hyper()["lr"] == 1e-3
    assert spec.seed == 7


def test_builder_errors_name_the_spec_field():
    with pytest.raises(SpecError, match=r"^model: small_cnn: width must be a positive integer, got 3\.5$"):
        Experiment().with_changes(**{"model.options": {"width": 3.5}}).build()
    with pytest.raises(SpecError, match=r"^task\.options: image-classification: size must be an integer >= 2"):
        Experiment().with_changes(**{"task.options": {"size": 1}}).build_task()


def test_schedules_per_param_group_by_name_round_trip_and_train():
    spec = Experiment.from_dict({
        "train": {"epochs": 1},
        "optim": {"partition": {"*.bias": {"chain": ["adam", {"scale_lr": {"lr": 1e-3}}]}, "*": {"adamw": {"lr": 3e-3}}}},
        "schedules": {"lr": {"*.bias": {"linear": {"start": 0.0, "end": 1e-3, "steps": 10}},
                             "*": {"cos_anneal": {"start": 3e-3, "end": 0.0}}}},
    })
    assert Experiment.parse_yaml(spec.to_yaml()) == spec
    learner = spec.build()
    assert [g["name"] for g in learner.optimizer.param_groups] == ["*.bias", "*"]
    learner.fit()
    lrs = [g["lr"] for g in learner.optimizer.param_groups]
    steps = learner.state.step
    # The last training step set each group's lr from its own schedule (step steps - 1 of a run `steps` long).
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[1] == pytest.approx(3e-3 * (1 + math.cos(math.pi * (steps - 1) / steps)) / 2, rel=1e-9)


def test_augment_round_trips_builds_into_the_task_and_errors_name_the_field():
    from torchdeck import augment as A

    spec = Experiment.parse_yaml("augment:\n- flip_x\n- rotate: {degrees: 10}\n")
    pipe = A.Pipeline(A.FlipX(), A.Rotate(10))
    assert spec.augment == pipe.to_spec()  # stored canonical
    text = spec.to_yaml()
    again = Experiment.parse_yaml(text)
    assert again == spec and again.to_yaml() == text
    assert Experiment.from_dict({"augment": pipe.to_spec()}) == spec
    ns: dict = {}
    exec(spec.to_python().split("learner = spec.build()")[0], ns)
    assert ns["spec"] == spec
    assert spec.build_task().augment == pipe
    # No augmentation is the default and stays out of the YAML.
    assert "augment" not in Experiment().to_yaml() and Experiment().build_task().augment is None
    with pytest.raises(SpecError, match=r"^augment\[1\]: unknown transform 'rotat'; allowed: .*rotate"):
        Experiment.from_dict({"augment": ["flip_x", {"rotat": {"degrees": 10}}]})
    with pytest.raises(SpecError, match=r"^augment\[0\]\.Rotate: degrees must be a number .*got 'x'$"):
        Experiment.from_dict({"augment": [{"rotate": {"degrees": "x"}}]})
    with pytest.raises(SpecError, match=r"^augment: expected a transform name, .*got 5$"):
        Experiment.from_dict({"augment": 5})
    with pytest.raises(SpecError, match=r"^augment: task 'tabular-classification' takes no augmentation"):
        Experiment.from_dict({"augment": "flip_x", "task": {"name": "tabular-classification"},
                              "data": {"name": "iris"}})
    with pytest.raises(SpecError, match=r"^augment: given twice"):
        Experiment.from_dict({"augment": "flip_x", "task": {"options": {"augment": "flip_y"}}})
    with pytest.raises(SpecError, match=r"^augment: image-classification: augment fails on a training image: "
                                        r"Normalize: mean has 3 values"):
        spec.with_changes(augment=["normalize"]).build_task()


# -- callbacks ------------------------------------------------------------------------------------
# A tiny run whose spec callbacks change its course: min_delta 10 means no later epoch counts as
# better, so early stopping ends it after epoch 2 of 3.
CALLBACK_RUN = {
    "name": "callbacks", "train": {"epochs": 3, "batch_size": 128},
    "model": {"options": {"width": 8}}, "task": {"options": {"size": 16}},
    "callbacks": [{"early_stopping": {"monitor": "valid_loss", "patience": 1, "min_delta": 10}},
                  {"csv_logger": {"path": "logs/run.csv"}}],
}


def _csv_rows(path):
    import csv
    with open(path, newline="", encoding="utf-8") as f:
        # seconds is wall time: the one column two identical runs do not share.
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def _no_time(rows):
    return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in rows]


def test_callbacks_are_stored_canonically_and_round_trip_through_yaml():
    spec = Experiment.from_dict(CALLBACK_RUN)
    assert spec.callbacks == [
        {"early_stopping": {"monitor": "valid_loss", "patience": 1, "min_delta": 10, "mode": "min"}},
        {"csv_logger": {"path": "logs/run.csv", "append": False}}]
    text = spec.to_yaml()
    again = Experiment.parse_yaml(text)
    assert again == spec and again.to_yaml() == text
    assert Experiment.from_dict(spec.to_dict()) == spec
    assert Experiment.parse_yaml("callbacks: [stop_on_nan]\n").callbacks == [{"stop_on_nan": {"grads": "stop"}}]
    # No callbacks is the default and stays out of the YAML (older specs stay canonical).
    assert "callbacks" not in Experiment().to_dict()
    assert Experiment.parse_yaml("callbacks: []\n") == Experiment()
    assert Experiment().with_changes(callbacks=["sanity_check"]).callbacks == [{"sanity_check": {}}]


def test_build_adds_fresh_spec_callbacks_to_the_learner(task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = Experiment().with_changes(callbacks=CALLBACK_RUN["callbacks"])
    first, second = spec.build(task), spec.build(task)
    stop = [cb for cb in first.callbacks if isinstance(cb, td.train.EarlyStopping)]
    log = [cb for cb in first.callbacks if isinstance(cb, td.train.CSVLogger)]
    assert len(stop) == 1 and stop[0].patience == 1 and stop[0].monitor.min_delta == 10
    assert len(log) == 1 and log[0].path == str(tmp_path / "logs" / "run.csv")  # relative to the working directory
    # Callbacks hold state (best so far, open files): every build makes its own.
    assert not any(a is b for a in first.callbacks for b in second.callbacks)
    assert not any(isinstance(cb, td.train.EarlyStopping) for cb in Experiment().build(task).callbacks)


@pytest.mark.slow
def test_to_python_with_callbacks_reproduces_build_and_fit(tmp_path, monkeypatch):
    spec = Experiment.from_dict(CALLBACK_RUN)
    script = spec.to_python()
    assert "relative to the working directory" in script
    (tmp_path / "script").mkdir()
    (tmp_path / "build").mkdir()
    monkeypatch.chdir(tmp_path / "script")
    ns: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(script, "<spec>", "exec"), ns)
    monkeypatch.chdir(tmp_path / "build")
    learner = spec.build()
    learner.fit()
    rows = _no_time(learner.history.epochs)
    assert len(rows) == 2  # early stopping from the spec ended the 3-epoch run
    assert _no_time(ns["learner"].history.epochs) == rows
    # Each wrote its CSV log under its own working directory, with the same rows.
    logged = _csv_rows(tmp_path / "build" / "logs" / "run.csv")
    assert [int(r["epoch"]) for r in logged] == [1, 2]
    assert [float(r["valid_loss"]) for r in logged] == pytest.approx([r["valid_loss"] for r in rows], rel=1e-6)
    assert _csv_rows(tmp_path / "script" / "logs" / "run.csv") == logged


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("callbacks: [{early_stopping: {monitor: valid_loss, patiense: 1}}]\n",
     r"^callbacks\[0\]\.early_stopping: unknown argument 'patiense'; allowed: monitor, patience, min_delta, mode$"),
    ("callbacks: [stop_on_nan, {early_stoping: {}}]\n",
     r"^callbacks\[1\]: unknown callback 'early_stoping'; allowed: checkpointer, csv_logger, early_stopping, "),
    ("callbacks: [{csv_logger: {}}]\n",
     r"^callbacks\[0\]\.csv_logger: missing required argument 'path'; required: path$"),
    ("callbacks: [{early_stopping: {mode: up}}]\n",
     r"^callbacks\[0\]\.early_stopping: mode must be one of 'min', 'max', got 'up'$"),
    ("callbacks: [{throttle: {every_steps: 5, callback: {csv_logger: {path: 3}}}}]\n",
     r"^callbacks\[0\]\.throttle\.callback\.csv_logger: "),
    ("callbacks: stop_on_nan\n", r"^callbacks: expected a list of callback specs, got 'stop_on_nan'$"),
    ("callbacks: [{to_device: {device: cpu}}, {to_device: {device: cpu}}]\n",
     r"^callbacks: callbacks ToDevice\('cpu'\) and ToDevice\('cpu'\) both write state\.model"),
])
def test_callback_spec_errors_are_one_line_and_name_the_path(yaml_text, message):
    with pytest.raises(SpecError, match=message) as info:
        Experiment.parse_yaml(yaml_text)
    assert "\n" not in str(info.value)


def test_a_callback_path_that_became_a_directory_fails_the_build_naming_the_field(task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = Experiment().with_changes(callbacks=[{"csv_logger": {"path": "log.csv"}}])
    (tmp_path / "log.csv").mkdir()
    with pytest.raises(SpecError, match=r"^callbacks\[0\]\.csv_logger: path '.*log\.csv' is a directory"):
        spec.build(task)


@pytest.mark.slow
def test_cli_train_applies_the_spec_callbacks(tmp_path):
    import json
    import os
    import subprocess
    import sys

    (tmp_path / "run.yaml").write_text(Experiment.from_dict(CALLBACK_RUN).to_yaml())
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "torchdeck", "train", "run.yaml", "--quiet", "--threads", "1",
                           "--metrics-out", "m.json"], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "m.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]  # early stopping ended the 3-epoch run
    logged = _csv_rows(tmp_path / "logs" / "run.csv")  # written relative to the CLI's working directory
    assert [int(r["epoch"]) for r in logged] == [1, 2]
    assert [float(r["valid_loss"]) for r in logged] == pytest.approx([r["valid_loss"] for r in rows], rel=1e-6)
