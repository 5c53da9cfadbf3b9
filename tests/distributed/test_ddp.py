"""Two gloo ranks under torchrun against single-process references (one torchrun start for all)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

from . import _cases

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(os.path.dirname(HERE)), "src")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """``{case: (rank 0's results, rank 1's results, the reference learner after the same fit)}``."""
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           os.path.join(HERE, "_ddp_child.py"), str(out)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = {}
    for case in _cases.CASES:
        r0, r1 = (torch.load(out / f"{case}-rank{r}.pt") for r in (0, 1))
        ref = _cases.reference(case, r0["seed"])
        ref.fit(2)
        results[case] = (r0, r1, ref, out)
    return results


@pytest.mark.parametrize("case", _cases.CASES)
def test_ddp_weights_equal_single_process_with_the_global_batch(ranks, case):
    r0, r1, ref, _ = ranks[case]
    expected = ref.model.state_dict()
    assert r0["weights"].keys() == expected.keys()  # the plain module's names, no "module." prefix
    for name, value in expected.items():
        torch.testing.assert_close(r0["weights"][name], value, atol=1e-6, rtol=0)
        torch.testing.assert_close(r1["weights"][name], r0["weights"][name], atol=0, rtol=0)
    # Each rank stepped on half the samples, in batches of BATCH / 2.
    assert r0["batches"] == r1["batches"] == {"train": _cases.N_TRAIN // _cases.BATCH, "valid": 2}
    assert r0["samples"]["train"] == r1["samples"]["train"] == _cases.N_TRAIN  # 2 epochs of 16


@pytest.mark.parametrize("case", _cases.CASES)
def test_reduced_metrics_equal_the_full_validation_set(ranks, case):
    r0, r1, ref, _ = ranks[case]
    # 11 validation samples: rank 0 sees 6, rank 1 sees 5; no sample counted twice.
    assert (r0["samples"]["valid"], r1["samples"]["valid"]) == (2 * 6, 2 * 5)
    assert r0["metrics"] == r1["metrics"]
    assert set(r0["metrics"]) == set(ref.state.metrics) == {
        "train_loss", "valid_loss", "valid_accuracy", "valid_f1_macro", "valid_miou"}
    for name, value in ref.state.metrics.items():
        assert r0["metrics"][name] == pytest.approx(value, rel=1e-6, abs=1e-7), name
    # the accuracy is a count over 11 samples
    assert round(r0["metrics"]["valid_accuracy"] * _cases.N_VALID, 9) == int(round(
        ref.state.metrics["valid_accuracy"] * _cases.N_VALID))
    for row, ref_row in zip(r0["history"], ref.history.epochs, strict=True):
        assert row["valid_f1_macro"] == pytest.approx(ref_row["valid_f1_macro"], abs=1e-12)


@pytest.mark.parametrize("case", _cases.CASES)
def test_only_rank_0_keeps_progress_and_file_loggers(ranks, case):
    r0, r1, _, out = ranks[case]
    assert r0["callbacks"] == ["DDP", "Metrics", "Recorder", "Seen", "ProgressBar", "CSVLogger"]
    assert r1["callbacks"] == ["DDP", "Metrics", "Recorder", "Seen"]
    assert r0["model"] == r1["model"] == "Sequential"  # unwrapped outside training steps
    with open(out / f"{case}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["valid_loss"]) == pytest.approx(r0["metrics"]["valid_loss"], rel=1e-12)


def test_a_time_budget_spent_on_one_rank_stops_every_rank_at_the_same_step(ranks):
    out = next(iter(ranks.values()))[3]
    r0, r1 = (torch.load(out / f"budget-rank{r}.pt") for r in (0, 1))
    # rank 1's clock reads 0 at fit begin and 1 more after each step: over 3 s after the third
    # step (state.step counts from 0)
    assert r0["step"] == r1["step"] == 2
    assert r1["stop_reason"].startswith("TimeBudget: 3 s spent of 3 s")
    assert r0["stop_reason"].startswith("TimeBudget: another rank spent its 3 s")
