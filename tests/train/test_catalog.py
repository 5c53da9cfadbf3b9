"""The callback catalog: spec names -> callbacks built as by hand, and back to the spec."""

from __future__ import annotations

import inspect
import math

import pytest
import yaml

from torchdeck.schedules import ReduceOnPlateau
from torchdeck.train import (CSVLogger, Checkpointer, EarlyStopping, GradAccumulation, JSONLLogger, MixedPrecision,
                             ProgressBar, SanityCheck, StopOnNaN, TensorBoard, Throttle, TimeBudget, ToDevice,
                             callback_arguments, callback_from_spec, callback_names, callback_to_spec,
                             callbacks_from_spec)

# name -> (spec arguments, the same callback constructed directly). Arguments differ from the
# defaults wherever the class allows, so a dropped or renamed argument shows.
CASES = {
    "early_stopping": ({"monitor": "valid_accuracy", "patience": 2, "min_delta": 0.01, "mode": "max"},
                       lambda: EarlyStopping("valid_accuracy", patience=2, min_delta=0.01, mode="max")),
    "checkpointer": ({"directory": "ck", "every": 2, "keep_last": 3, "monitor": None},
                     lambda: Checkpointer("ck", every=2, keep_last=3, monitor=None)),
    "tensorboard": ({"log_dir": "tb", "every": 5, "log_graph": True, "hparams": {"lr": 0.1, "opt": "adam"}},
                    lambda: TensorBoard("tb", every=5, log_graph=True, hparams={"lr": 0.1, "opt": "adam"})),
    "csv_logger": ({"path": "logs/run.csv", "append": True}, lambda: CSVLogger("logs/run.csv", append=True)),
    "jsonl_logger": ({"path": "run.jsonl", "steps": True}, lambda: JSONLLogger("run.jsonl", steps=True)),
    "stop_on_nan": ({"grads": "skip"}, lambda: StopOnNaN(grads="skip")),
    "time_budget": ({"seconds": 30}, lambda: TimeBudget(30)),
    "grad_accumulation": ({"n": 4}, lambda: GradAccumulation(4)),
    "mixed_precision": ({"dtype": "bfloat16", "scaler": False, "init_scale": 1024.0, "growth_interval": 10},
                        lambda: MixedPrecision("bfloat16", scaler=False, init_scale=1024.0, growth_interval=10)),
    "to_device": ({"device": "cpu"}, lambda: ToDevice("cpu")),
    "sanity_check": ({}, lambda: SanityCheck()),
    "progress_bar": ({"delay": 0.0}, lambda: ProgressBar(delay=0.0)),
    "reduce_on_plateau": ({"monitor": "valid_accuracy", "mode": "max", "factor": 0.5, "patience": 1, "cooldown": 2,
                           "min_value": [1e-5, 1e-6], "hyper": "momentum"},
                          lambda: ReduceOnPlateau("valid_accuracy", "max", 0.5, 1, cooldown=2, min_value=[1e-5, 1e-6],
                                                  hyper="momentum")),
    "throttle": ({"every_steps": 3, "every_seconds": 1.5, "callback": {"csv_logger": {"path": "t.csv"}}},
                 lambda: Throttle(CSVLogger("t.csv"), every_steps=3, every_seconds=1.5)),
}


def _public(obj):
    """An object's public attributes, nested objects opened up (callbacks have no __eq__)."""
    if isinstance(obj, (list, tuple)):
        return [_public(o) for o in obj]
    if hasattr(obj, "__dict__") and not inspect.isroutine(obj) and not isinstance(obj, type):
        return {type(obj).__name__: {k: _public(v) for k, v in vars(obj).items() if not k.startswith("_")}}
    return obj


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths resolve against the working directory


def test_every_catalog_name_has_a_case():
    assert sorted(CASES) == callback_names()


@pytest.mark.parametrize("name", sorted(CASES))
def test_entry_builds_the_class_with_the_arguments(name):
    args, direct = CASES[name]
    built = callback_from_spec({name: args}, where="callbacks[0]")
    expected = direct()
    assert type(built) is type(expected)
    assert _public(built) == _public(expected)


@pytest.mark.parametrize("name", sorted(CASES))
def test_to_spec_is_canonical_plain_data_and_round_trips(name):
    args, _ = CASES[name]
    spec = callback_to_spec(callback_from_spec({name: args}))
    (got_name, got_args), = spec.items()
    assert got_name == name
    # Every argument the spec can hold is present: the given ones as given, the rest defaults.
    defaults = callback_arguments(name)
    assert list(got_args) == list(defaults)
    for key, default in defaults.items():
        expected = args.get(key, default)
        if key == "callback":
            expected = callback_to_spec(callback_from_spec(expected))
        assert got_args[key] == expected
    assert yaml.safe_load(yaml.safe_dump(spec)) == spec  # YAML-safe
    again = callback_from_spec(spec)
    assert callback_to_spec(again) == spec
    assert _public(again) == _public(CASES[name][1]())


def test_short_forms_and_defaults():
    assert callback_to_spec(callback_from_spec("sanity_check")) == {"sanity_check": {}}
    assert callback_to_spec(callback_from_spec({"stop_on_nan": None})) == {"stop_on_nan": {"grads": "stop"}}
    built = callback_from_spec("early_stopping")
    assert _public(built) == _public(EarlyStopping())


def test_live_arguments_are_not_spec_arguments():
    # A clock, an output stream or an optimiser cannot be written in YAML.
    assert "clock" not in callback_arguments("time_budget")
    assert "file" not in callback_arguments("progress_bar")
    assert "optimizer" not in callback_arguments("reduce_on_plateau")
    assert callback_arguments("time_budget")["seconds"] is inspect.Parameter.empty


def test_each_build_is_a_fresh_callback():
    spec = {"early_stopping": {"patience": 2}}
    a, b = callbacks_from_spec([spec, spec])
    assert a is not b and callback_to_spec(a) == callback_to_spec(b)


def test_returned_spec_is_a_copy():
    cb = callback_from_spec({"reduce_on_plateau": {"min_value": [0.1, 0.2]}})
    spec = callback_to_spec(cb)
    spec["reduce_on_plateau"]["min_value"].append(0.3)
    spec["reduce_on_plateau"]["factor"] = 0.9
    assert callback_to_spec(cb)["reduce_on_plateau"]["min_value"] == [0.1, 0.2]
    assert callback_to_spec(cb)["reduce_on_plateau"]["factor"] == 0.1


def test_paths_in_the_spec_stay_as_written(tmp_path):
    from pathlib import Path
    cb = callback_from_spec({"csv_logger": {"path": Path("out") / "log.csv"}})
    assert callback_to_spec(cb) == {"csv_logger": {"path": "out/log.csv", "append": False}}
    assert cb.path == str(tmp_path / "out" / "log.csv")  # resolved against the working directory


def test_callback_instances_pass_through_and_direct_ones_have_no_spec():
    cb = EarlyStopping()
    assert callback_from_spec(cb) is cb
    with pytest.raises(ValueError, match=r"^callbacks\[2\]: EarlyStopping\(.*\) was not built from a spec.*"
                                         r"names: checkpointer, csv_logger"):
        callback_to_spec(cb, where="callbacks[2]")


@pytest.mark.parametrize("spec, message", [
    ({"early_stopping": {"patiense": 1}},
     r"^callbacks\[1\]\.early_stopping: unknown argument 'patiense'; allowed: monitor, patience, min_delta, mode$"),
    ({"early_stopping": {"patience": 0}},
     r"^callbacks\[1\]\.early_stopping: patience must be a positive integer \(epochs\), got 0$"),
    ({"reduce_on_plateau": {"factor": 2}}, r"^callbacks\[1\]\.reduce_on_plateau: factor must be .*< 1.0, got 2$"),
    ({"early_stoping": {}}, r"^callbacks\[1\]: unknown callback 'early_stoping'; allowed: checkpointer, .*throttle, "
                            r"time_budget, to_device$"),
    ("nope", r"^callbacks\[1\]: unknown callback 'nope'; allowed: "),
    (3, r"^callbacks\[1\]: expected a callback name or a one-key mapping .*got 3$"),
    ({"a": {}, "b": {}}, r"^callbacks\[1\]: expected a callback name or a one-key mapping"),
    ({"csv_logger": ["log.csv"]}, r"^callbacks\[1\]\.csv_logger: expected a mapping of arguments, got \['log.csv'\]$"),
    ({"csv_logger": {}}, r"^callbacks\[1\]\.csv_logger: missing required argument 'path'; required: path$"),
    ({"csv_logger": {"path": object()}}, r"^callbacks\[1\]\.csv_logger\.path: <object object .*> is not plain data; "
                                         r"allowed: None, bool"),
    ({"time_budget": {"seconds": 30, "clock": 1}},
     r"^callbacks\[1\]\.time_budget: unknown argument 'clock'; allowed: seconds$"),
    ({"throttle": {"every_steps": 2, "callback": {"csv_logger": {"paht": "x"}}}},
     r"^callbacks\[1\]\.throttle\.callback\.csv_logger: unknown argument 'paht'; allowed: path, append$"),
    ({"throttle": {"every_steps": 0, "callback": "sanity_check"}},
     r"^callbacks\[1\]\.throttle: every_steps must be a positive integer, got 0$"),
    ({"mixed_precision": {"dtype": "float8"}}, r"^callbacks\[1\]\.mixed_precision: dtype must be one of .*'float8'$"),
])
def test_errors_name_the_path_the_value_and_what_is_allowed(spec, message):
    with pytest.raises(ValueError, match=message):
        callback_from_spec(spec, where="callbacks[1]")


def test_a_list_spec_must_be_a_list():
    with pytest.raises(ValueError, match=r"^callbacks: expected a list of callback specs, got 'stop_on_nan'$"):
        callbacks_from_spec("stop_on_nan")
    assert callbacks_from_spec(None) == []
    with pytest.raises(ValueError, match=r"^callbacks\[1\]: unknown callback 'x'"):
        callbacks_from_spec(["sanity_check", "x"])


def test_non_finite_numbers_are_refused_by_the_callback():
    with pytest.raises(ValueError, match=r"^callback\.time_budget: seconds must be a positive number, got inf$"):
        callback_from_spec({"time_budget": {"seconds": math.inf}})
