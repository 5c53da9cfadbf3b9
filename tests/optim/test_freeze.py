"""``freeze`` / ``thaw``: frozen parameters get no update and keep their state, as if their grad were None."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from torchdeck import optim as O
from torchdeck._tree import tree_leaves

from ._helpers import assert_params_close, small_model, twin

RULE = O.chain(O.adam(), O.scale_lr(1e-2))


def _race(model, opt, reference_model, reference, steps, *, start, skip_in_reference=()):
    """Same seeded grads for both; the reference gets ``None`` for parameters named in ``skip_in_reference``."""
    for t in range(start, start + steps):
        gen = torch.Generator().manual_seed(t)
        for (name, a), b in zip(model.named_parameters(), reference_model.parameters()):
            g = torch.randn(a.shape, generator=gen, dtype=a.dtype)
            a.grad = g.clone()  # the frozen ones get grads too: freeze must ignore them
            b.grad = None if name in skip_in_reference else g.clone()
        opt.step()
        reference.step()


@pytest.mark.parametrize("target", ["module", "pattern"])
def test_freeze_then_thaw_matches_torch_with_grads_none_for_those_steps(target):
    m1 = small_model()
    m2 = twin(m1)
    ours = O.Optimizer(m1.named_parameters(), RULE)
    theirs = torch.optim.Adam(m2.parameters(), lr=1e-2)
    _race(m1, ours, m2, theirs, 5, start=0)
    assert O.freeze(ours, m1[0] if target == "module" else "0.*") is ours
    assert [p is q for p, q in zip(ours.frozen_params(), m1[0].parameters())] == [True, True]
    frozen_params = [p.detach().clone() for p in m1[0].parameters()]
    frozen_state = [t.clone() for t in tree_leaves(ours.rule_state())]
    _race(m1, ours, m2, theirs, 7, start=5, skip_in_reference={"0.weight", "0.bias"})
    assert all(torch.equal(p, q) for p, q in zip(m1[0].parameters(), frozen_params))
    # the frozen parameters' state (entries 0 and 1 of count, mu, nu) did not move; the others did
    state = ours.rule_state()[0]
    for field, before in zip(state, (frozen_state[0:4], frozen_state[4:8], frozen_state[8:12])):
        assert torch.equal(field[0], before[0]) and torch.equal(field[1], before[1])
        assert not torch.equal(field[2], before[2])
    O.thaw(ours, m1[0] if target == "module" else "0.*")
    assert ours.frozen_params() == []
    _race(m1, ours, m2, theirs, 8, start=12)
    assert_params_close(m1, m2, rtol=1e-10, atol=1e-14)
    assert not torch.equal(m1[0].weight, frozen_params[0])


def test_thaw_without_target_thaws_everything_and_tensors_work_as_targets():
    m = small_model()
    opt = O.Optimizer(m.parameters(), RULE)
    O.freeze(opt, m[2].weight)
    O.freeze(opt, [m[0].bias])
    assert [p is q for p, q in zip(opt.frozen_params(), [m[0].bias, m[2].weight])] == [True, True]
    O.thaw(opt, m[2].parameters())  # thawing a parameter that is not frozen is fine
    assert len(opt.frozen_params()) == 1
    O.thaw(opt)
    assert opt.frozen_params() == []


def test_freeze_with_a_partition_by_pattern_across_groups():
    m1 = small_model()
    m2 = twin(m1)
    rule = O.partition({"*.bias": O.chain(O.adam(), O.scale_lr(1e-2)), "*": O.chain(O.adam(), O.scale_lr(3e-3))})
    ours = O.Optimizer(m1.named_parameters(), rule)
    theirs = torch.optim.Adam([{"params": [m2[0].bias, m2[2].bias], "lr": 1e-2},
                               {"params": [m2[0].weight, m2[2].weight], "lr": 3e-3}])
    O.freeze(ours, "2.*")  # one parameter in each group
    assert {id(p) for p in ours.frozen_params()} == {id(m1[2].weight), id(m1[2].bias)}
    _race(m1, ours, m2, theirs, 6, start=0, skip_in_reference={"2.weight", "2.bias"})
    O.thaw(ours, m1)
    _race(m1, ours, m2, theirs, 6, start=6)
    assert_params_close(m1, m2, rtol=1e-10, atol=1e-14)


def test_frozen_parameters_survive_state_dict_and_load_state_dict():
    m1 = small_model()
    opt = O.Optimizer(m1.named_parameters(), RULE)
    O.freeze(opt, m1[2])
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    m2 = twin(m1)
    fresh = O.Optimizer(m2.named_parameters(), RULE)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert [p is q for p, q in zip(fresh.frozen_params(), m2[2].parameters())] == [True, True]
    before = m2[2].weight.detach().clone()
    for p in m2.parameters():
        p.grad = torch.ones_like(p)
    fresh.step()
    assert torch.equal(m2[2].weight, before) and not torch.equal(m2[0].weight, m1[0].weight)


def test_freeze_errors_name_what_is_wrong():
    m = small_model()
    opt = O.Optimizer(m.named_parameters(), RULE)
    with pytest.raises(ValueError, match=r"freeze: pattern 'encoder\.\*' matches no parameter .*; names are "
                                         r"'0\.weight', '0\.bias', '2\.weight', '2\.bias'"):
        O.freeze(opt, "encoder.*")
    with pytest.raises(ValueError, match=r"freeze: the module Tanh has no parameters"):
        O.freeze(opt, m[1])
    with pytest.raises(ValueError, match=r"thaw: none of the 2 parameters of the module Linear are in this optimiser"):
        O.thaw(opt, nn.Linear(2, 3))
    with pytest.raises(TypeError, match=r"freeze: expected a module, a name pattern \(str\) or tensors, got int"):
        O.freeze(opt, 3)
    with pytest.raises(TypeError, match=r"freeze: expected a torchdeck Optimizer, got SGD"):
        O.freeze(torch.optim.SGD(m.parameters(), lr=0.1), m[0])
    unnamed = O.Optimizer(m.parameters(), RULE)
    with pytest.raises(ValueError, match=r"freeze: matching '0\.\*' needs parameter names; build the Optimizer from "
                                         r"model\.named_parameters\(\), or pass the module"):
        O.freeze(unnamed, "0.*")
    assert opt.frozen_params() == [] and unnamed.frozen_params() == []
