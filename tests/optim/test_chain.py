"""Chains through ``O.Optimizer`` against torch.optim on seeded random gradients."""

from __future__ import annotations

import pytest
import torch

from torchdeck import optim as O

from ._helpers import assert_params_close, run_parity, small_model, twin


def _moved(model, initial):
    return any(not torch.equal(p, q) for p, q in zip(model.parameters(), initial.parameters()))


@pytest.mark.parametrize(("dtype", "rtol", "atol"), [(torch.float64, 1e-10, 1e-14), (torch.float32, 1e-5, 1e-7)])
@pytest.mark.parametrize("lr", [1e-3, 3e-2])
def test_adam_scale_lr_matches_torch_adam(dtype, rtol, atol, lr):
    m1 = small_model(dtype)
    m2, m0 = twin(m1), twin(m1)
    ours = O.Optimizer(m1.parameters(), O.chain(O.adam(), O.scale_lr(lr)))
    theirs = torch.optim.Adam(m2.parameters(), lr=lr)
    run_parity(ours, theirs, m1, m2, steps=100)
    assert _moved(m1, m0)
    assert_params_close(m1, m2, rtol=rtol, atol=atol)


def test_adam_hyperparameters_match_torch_adam():
    m1 = small_model()
    m2 = twin(m1)
    ours = O.Optimizer(m1.parameters(), O.chain(O.adam(b1=0.8, b2=0.99, eps=1e-6), O.scale_lr(1e-2)))
    theirs = torch.optim.Adam(m2.parameters(), lr=1e-2, betas=(0.8, 0.99), eps=1e-6)
    run_parity(ours, theirs, m1, m2, steps=100)
    assert_params_close(m1, m2, rtol=1e-10, atol=1e-14)


def test_adam_alone_with_lr_is_torch_adam():
    m1 = small_model()
    m2 = twin(m1)
    run_parity(O.Optimizer(m1.parameters(), O.adam(lr=1e-3)), torch.optim.Adam(m2.parameters(), lr=1e-3),
               m1, m2, steps=50)
    assert_params_close(m1, m2, rtol=1e-10, atol=1e-14)


def test_clip_norm_adam_matches_clip_grad_norm_then_torch_adam():
    m1 = small_model()
    m2, m0 = twin(m1), twin(m1)
    ours = O.Optimizer(m1.parameters(), O.chain(O.clip_norm(1.0), O.adam(), O.scale_lr(3e-3)))
    theirs = torch.optim.Adam(m2.parameters(), lr=3e-3)
    norms = []

    def clip_theirs(_, ref):
        norms.append(float(torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)))

    # Gradients of norm ~ 5 * sqrt(43): clipping is active at every step.
    run_parity(ours, theirs, m1, m2, steps=100, scale=5.0, before_step=clip_theirs)
    assert min(norms) > 1.0
    assert _moved(m1, m0)
    assert_params_close(m1, m2, rtol=1e-10, atol=1e-14)


def test_clip_norm_is_not_adam_without_clipping():
    """The clip matters: without clipping torch's Adam ends elsewhere (guards the test above)."""
    m1 = small_model()
    m2 = twin(m1)
    ours = O.Optimizer(m1.parameters(), O.chain(O.clip_norm(1.0), O.momentum(), O.scale_lr(1e-2)))
    theirs = torch.optim.SGD(m2.parameters(), lr=1e-2, momentum=0.9)
    run_parity(ours, theirs, m1, m2, steps=10, scale=5.0)
    with pytest.raises(AssertionError):
        assert_params_close(m1, m2, rtol=1e-6)


@pytest.mark.parametrize(("rho", "dampening"), [(0.9, 0.0), (0.5, 0.3), (0.0, 0.0)])
def test_momentum_matches_torch_sgd_momentum(rho, dampening):
    m1 = small_model()
    m2, m0 = twin(m1), twin(m1)
    ours = O.Optimizer(m1.parameters(), O.chain(O.momentum(rho=rho, dampening=dampening), O.scale_lr(1e-2)))
    theirs = torch.optim.SGD(m2.parameters(), lr=1e-2, momentum=rho, dampening=dampening)
    run_parity(ours, theirs, m1, m2, steps=100)
    assert _moved(m1, m0)
    assert_params_close(m1, m2, rtol=1e-10, atol=1e-14)


def test_sgd_matches_torch_sgd():
    m1 = small_model()
    m2, m0 = twin(m1), twin(m1)
    run_parity(O.Optimizer(m1.parameters(), O.sgd(0.05)), torch.optim.SGD(m2.parameters(), lr=0.05), m1, m2, steps=100)
    assert _moved(m1, m0)
    assert_params_close(m1, m2, rtol=1e-12, atol=1e-15)


def test_sgd_step_is_the_analytic_formula():
    p = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = O.Optimizer([p], O.sgd(0.5))
    p.grad = torch.tensor([0.2, 4.0], dtype=torch.float64)
    opt.step()
    assert p.detach().tolist() == [1.0 - 0.5 * 0.2, -2.0 - 0.5 * 4.0]


@pytest.mark.parametrize("wd", [1e-2, 0.3])
def test_weight_decay_before_momentum_matches_torch_sgd_weight_decay(wd):
    m1 = small_model()
    m2 = twin(m1)
    ours = O.Optimizer(m1.parameters(), O.chain(O.weight_decay(wd), O.momentum(rho=0.9), O.scale_lr(1e-2)))
    theirs = torch.optim.SGD(m2.parameters(), lr=1e-2, momentum=0.9, weight_decay=wd)
    run_parity(ours, theirs, m1, m2, steps=100)
    assert_params_close(m1, m2, rtol=1e-10, atol=1e-14)


def test_decoupled_weight_decay_after_adam_matches_torch_adamw():
    m1 = small_model()
    m2 = twin(m1)
    lr, wd = 1e-2, 0.1
    # AdamW: p -= lr * (adam_update + wd * p); so decay = wd after adam, before scale_lr.
    ours = O.Optimizer(m1.parameters(), O.chain(O.adam(), O.weight_decay(wd), O.scale_lr(lr)))
    theirs = torch.optim.AdamW(m2.parameters(), lr=lr, weight_decay=wd)
    run_parity(ours, theirs, m1, m2, steps=100)
    assert_params_close(m1, m2, rtol=1e-10, atol=1e-14)


# -- hyperparameter naming and display ------------------------------------------------------
def test_chain_hyper_names_lr_belongs_to_the_last_rule_that_has_it():
    c = O.chain(O.clip_norm(1.0), O.adam(), O.scale_lr(3e-3))
    h = c.hyper()
    assert h == {"max_norm": 1.0, "adam.lr": 1.0, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "lr": 3e-3}
    changed = c.replace(lr=1e-4, **{"adam.lr": 0.5}, b1=0.8)
    assert changed.rules[2] == O.scale_lr(1e-4)
    assert changed.rules[1] == O.adam(lr=0.5, b1=0.8)
    assert changed.rules[0] == c.rules[0]
    assert c.rules[2].lr == 3e-3  # the original is unchanged


def test_chain_hyper_names_disambiguate_repeated_rules_by_index():
    c = O.chain(O.scale_lr(2.0), O.adam(), O.scale_lr(3e-3))
    assert set(c.hyper()) == {"0.scale_lr.lr", "adam.lr", "b1", "b2", "eps", "lr"}
    assert c.hyper()["0.scale_lr.lr"] == 2.0 and c.hyper()["lr"] == 3e-3


def test_chain_replace_unknown_hyperparameter_names_it_and_the_allowed():
    c = O.chain(O.adam(), O.scale_lr(3e-3))
    with pytest.raises(ValueError, match=r"chain: unknown hyperparameter 'momentum'; allowed: adam\.lr, b1, b2, eps, lr"):
        c.replace(momentum=0.9)


def test_chain_str():
    assert str(O.chain(O.clip_norm(1.0), O.adam(), O.scale_lr(3e-3))) == "clip_norm(1.0) → adam → scale_lr(3e-3)"
    assert str(O.chain(O.momentum(rho=0.95), O.weight_decay(1e-4))) == "momentum(rho=0.95) → weight_decay(1e-4)"


def test_chain_is_immutable_and_rejects_non_rules():
    c = O.chain(O.adam())
    with pytest.raises(AttributeError):
        c.rules = ()
    with pytest.raises(TypeError, match=r"chain: item 1 must be a rule, got 'adam'"):
        O.chain(O.sgd(), "adam")


def test_optimizer_param_groups_carry_the_chain_hyperparameters():
    m = small_model()
    opt = O.Optimizer(m.parameters(), O.chain(O.clip_norm(1.0), O.adam(), O.scale_lr(3e-3)))
    g = opt.param_groups[0]
    assert g["lr"] == 3e-3 and g["adam.lr"] == 1.0 and g["max_norm"] == 1.0 and g["b1"] == 0.9


def test_a_chain_inside_a_chain_is_flattened():
    inner = O.chain(O.adam(), O.scale_lr(1e-2))
    outer = O.chain(O.clip_norm(1.0), inner)
    assert outer == O.chain(O.clip_norm(1.0), O.adam(), O.scale_lr(1e-2))
    assert outer.hyper()["lr"] == 1e-2


def test_a_refused_param_group_is_not_kept():
    opt = O.Optimizer([torch.zeros(2, requires_grad=True)], O.chain(O.adam(), O.scale_lr(1e-3)))
    with pytest.raises(ValueError, match=r"scale_lr: lr must be in \[0\.0, inf\), got -1"):
        opt.add_param_group({"params": [torch.zeros(3, requires_grad=True)], "lr": -1})
    assert len(opt.param_groups) == 1
    opt.param_groups[0]["params"][0].grad = torch.ones(2)
    opt.step()
