"""``torchdeck train spec.yaml --nproc 2``: torchrun, relayed metrics, exit status, a failing rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from torchdeck import cli
from torchdeck.spec import Experiment

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# 1438 training samples and a batch of 64: two ranks of 32 make exactly the single process's batches.
SPEC = {"name": "tiny", "task": {"name": "image-classification"},
        "data": {"name": "digits", "options": {"valid_fraction": 0.2}},
        "model": {"backbone": "mlp", "options": {"in_features": 64, "hidden": 16}},
        "optim": {"chain": [{"adam": {}}, {"scale_lr": {"lr": 0.01}}]}, "schedules": {},
        "train": {"epochs": 1, "batch_size": 64, "device": "cpu"}}


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    Experiment.from_dict(SPEC).to_yaml(path)
    return path


def _run(*args):
    path = os.pathsep.join([os.path.join(ROOT, "src"), HERE, os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "torchdeck", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": path}, timeout=300)


def test_two_processes_relay_epoch_metrics_equal_to_one_process(spec_file, tmp_path):
    out = tmp_path / "m.json"
    proc = _run("train", str(spec_file), "--nproc", "2", "--metrics-out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "on 2 processes (torchrun)" in proc.stdout
    # rank 0's epoch line, printed here by a ProgressBar fed from the relay
    epoch_line = next(line for line in proc.stdout.splitlines() if line.startswith("epoch 1/1"))
    assert "valid_accuracy" in epoch_line and "valid_loss" in epoch_line
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and rows[0]["epoch"] == 1
    reference = Experiment.from_dict(SPEC).build().fit().history.epochs[0]
    for name in ("train_loss", "valid_loss", "valid_accuracy"):
        assert rows[0][name] == pytest.approx(reference[name], rel=1e-5), name
    assert f"valid_accuracy {rows[0]['valid_accuracy']:.4f}" in proc.stdout.splitlines()[-1]


def test_a_failing_rank_fails_the_run_with_its_error(spec_file):
    proc = _run("train", str(spec_file), "--nproc", "2", "--quiet", "--setup", "_hooks:fail_on_rank_1")
    assert proc.returncode != 0
    assert "torchdeck: error: rank 1 failed: RuntimeError: planned failure on rank 1" in proc.stderr
    assert "done in" not in proc.stdout


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_nproc_is_refused_naming_the_option(spec_file, value, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", str(spec_file), "--nproc", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --nproc: must be a positive integer (processes to start), got" in err
    assert value in err.splitlines()[-1]


@pytest.mark.parametrize("ref,message", [("nope", "expected 'module:function', got 'nope'"),
                                         ("json:nope", "'json' has no function 'nope'"),
                                         ("no_such_module_here:f", "cannot import 'no_such_module_here'")])
def test_bad_setup_is_refused_before_anything_starts(spec_file, ref, message, capsys):
    assert cli.main(["train", str(spec_file), "--nproc", "2", "--setup", ref]) == 2
    assert capsys.readouterr().err.strip().startswith(f"torchdeck: error: --setup: {message}")
