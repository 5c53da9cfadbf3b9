"""The command line: ``torchdeck train`` / ``torchdeck check`` and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchdeck import cli
from torchdeck.spec import Experiment

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits.yaml"


def _run(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "torchdeck", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


@pytest.mark.slow
def test_train_one_epoch_quiet(tmp_path):
    metrics = tmp_path / "m.json"
    weights = tmp_path / "w.safetensors"
    proc = _run("train", str(EXAMPLE), "--epochs", "1", "--quiet", "--threads", "2",
                "--metrics-out", str(metrics), "--save", str(weights))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("torchdeck: training 'digits': image-classification on digits, small_cnn, "
                               "clip_norm(1.0) → adam → scale_lr(3e-3), 1 epochs")
    final = next(line for line in reversed(lines) if "final" in line)
    assert "valid_accuracy" in final and "valid_loss" in final
    rows = json.loads(metrics.read_text())
    assert len(rows) == 1 and rows[0]["epoch"] == 1
    acc = float(final.split("valid_accuracy ")[1].split()[0])
    assert acc == pytest.approx(rows[0]["valid_accuracy"], abs=1e-4)
    assert "%|" not in proc.stderr  # --quiet: no progress bar
    from torchdeck import models
    learner = Experiment().build()
    report = models.load_weights(learner.model, weights)
    assert report.missing == [] and report.unexpected == []


def test_check_prints_canonical_yaml(capsys, tmp_path):
    spec = tmp_path / "short.yaml"
    spec.write_text("optim: sgd\nschedules: {}\ntrain: {epochs: 2}\n")
    assert cli.main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert out == Experiment.from_yaml(spec).to_yaml()
    assert "optim:\n  sgd:\n    lr: 0.001\n" in out and "epochs: 2" in out
    assert Experiment.parse_yaml(out) == Experiment.from_yaml(spec)
    assert cli.main(["check", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == EXAMPLE.read_text()


def test_check_python_prints_a_script(capsys):
    assert cli.main(["check", "--python", str(EXAMPLE)]) == 0
    script = capsys.readouterr().out
    compile(script, "<check>", "exec")
    assert script.startswith("import torchdeck as td") and "learner.fit()" in script


BAD = {
    "unknown_rule": ("optim: {adamz: {}}\n", ["optim:", "unknown rule 'adamz'", "allowed:"]),
    "negative_lr": ("optim:\n  chain:\n  - adam: {}\n  - scale_lr: {lr: -0.01}\n",
                    ["optim.chain[1].scale_lr:", "lr must be in [0.0, inf)", "got -0.01"]),
    "missing_weights": ("model: {weights: no/such/file.safetensors}\n",
                        ["model.weights:", "file not found", "no/such/file.safetensors"]),
    "unknown_field": ("epochs: 3\n", ["epochs: unknown field", "allowed: name, seed"]),
    "bad_device": ("train: {device: tpu}\n", ["train.device:", "'tpu'"]),
}


@pytest.mark.parametrize("command", ["check", "train"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_specs_exit_2_with_one_line(capsys, tmp_path, case, command):
    text, pieces = BAD[case]
    spec = tmp_path / f"{case}.yaml"
    spec.write_text(text)
    assert cli.main([command, str(spec)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("torchdeck: error: ")
    for piece in pieces:
        assert piece in lines[0]
    assert captured.out == ""


def test_missing_spec_file(capsys, tmp_path):
    missing = tmp_path / "nope.yaml"
    assert cli.main(["train", str(missing)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"torchdeck: error: spec: file not found: {str(missing)!r}"]


def test_bad_spec_in_a_subprocess_exits_2_with_one_stderr_line(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("optim: {adam: {lr: -1}}\n")
    proc = _run("train", str(spec), "--epochs", "1", "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["torchdeck: error: optim.adam: lr must be in [0.0, inf), got -1"]
    assert proc.stdout == ""


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as info:
        cli.main(["train"])
    assert info.value.code == 2


def test_export_writes_checked_onnx_with_the_given_weights(capsys, tmp_path):
    # Weights from another seed: the exported file must compute that model, not the spec's fresh one.
    import numpy as np
    import onnxruntime as ort
    import torch
    from safetensors.torch import save_file

    spec = str(EXAMPLE)
    other = Experiment.from_yaml(EXAMPLE).with_changes(seed=1).build().model.eval()
    weights, out = tmp_path / "w.safetensors", tmp_path / "m.onnx"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(weights))
    assert cli.main(["export", spec, "--weights", str(weights), "--out", str(out), "--exporter", "torchscript"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"torchdeck: weights {weights}: loaded ")
    assert lines[-1].startswith(f"torchdeck: exported small_cnn to {out}: torchscript exporter, opset ")
    diff = float(lines[-1].split("max abs diff ")[1].split()[0])
    assert 0.0 <= diff <= 1e-4
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, other(x).numpy(), atol=1e-4, rtol=0)
        assert not np.allclose(got, Experiment.from_yaml(EXAMPLE).build().model.eval()(x).numpy(), atol=1e-2)
    assert cli.main(["export", spec, "--weights", str(tmp_path / "nope.safetensors"), "--out", str(out)]) == 2
    assert "model.weights: file not found" in capsys.readouterr().err
