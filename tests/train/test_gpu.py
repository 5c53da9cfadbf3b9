"""The CUDA paths: training on the GPU and the optimiser's kernels there (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch

import torchdeck as td
from torchdeck import optim as O
from torchdeck._tree import tree_leaves

pytestmark = pytest.mark.gpu


def test_default_spec_trains_on_cuda():
    learner = td.Experiment().with_changes(**{"train.device": "cuda", "train.epochs": 3}).build()
    learner.fit()
    assert next(learner.model.parameters()).is_cuda
    assert all(t.is_cuda for t in tree_leaves(learner.optimizer.rule_state()) if t.dim() > 0)
    assert learner.history.epochs[-1]["valid_accuracy"] > 0.9


def test_chain_matches_torch_adam_on_cuda():
    torch.manual_seed(0)
    ours = [torch.randn(256, 128, device="cuda", requires_grad=True) for _ in range(3)]
    ref = [p.detach().clone().requires_grad_(True) for p in ours]
    opt = O.Optimizer(ours, O.chain(O.adam(), O.scale_lr(1e-3)))
    ref_opt = torch.optim.Adam(ref, lr=1e-3)
    for _ in range(50):
        for a, b in zip(ours, ref):
            g = torch.randn_like(a)
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        ref_opt.step()
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
