"""``O.Optimizer`` as a torch optimiser: resume, LR schedulers, adjust, missing grads, named params."""

from __future__ import annotations

import io

import pytest
import torch

from torchdeck import optim as O
from torchdeck._tree import tree_leaves

from ._helpers import assert_params_close, run_parity, small_model, twin

RULE = O.chain(O.clip_norm(1.0), O.weight_decay(1e-2), O.adam(), O.scale_lr(3e-2))


def _train(model, opt, steps, *, start=0):
    """Deterministic steps on a real loss; the batch depends only on the step index."""
    for t in range(start, start + steps):
        gen = torch.Generator().manual_seed(1000 + t)
        x = torch.randn(8, 5, generator=gen, dtype=torch.float64)
        y = torch.randn(8, 3, generator=gen, dtype=torch.float64)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("rule", [RULE, O.chain(O.momentum(rho=0.9, dampening=0.2), O.scale_lr(0.1))])
def test_state_dict_resume_is_bit_exact(rule):
    m_ref = small_model()
    m_a = twin(m_ref)
    ref = O.Optimizer(m_ref.parameters(), rule)
    _train(m_ref, ref, 30)

    opt_a = O.Optimizer(m_a.parameters(), rule)
    _train(m_a, opt_a, 12)
    buf = io.BytesIO()
    torch.save({"model": m_a.state_dict(), "opt": opt_a.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    m_b = small_model(seed=123)  # different weights until loaded
    m_b.load_state_dict(saved["model"])
    opt_b = O.Optimizer(m_b.parameters(), rule)
    opt_b.load_state_dict(saved["opt"])
    _train(m_b, opt_b, 18, start=12)

    for a, b in zip(m_ref.parameters(), m_b.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(tree_leaves(ref.rule_state()), tree_leaves(opt_b.rule_state()), strict=True):
        assert torch.equal(a, b)


def test_load_state_dict_without_resume_differs():
    """Guards the resume test: a fresh optimiser (no state loaded) does not reproduce the run."""
    m_ref = small_model()
    m_b = twin(m_ref)
    ref = O.Optimizer(m_ref.parameters(), RULE)
    _train(m_ref, ref, 20)
    opt_b = O.Optimizer(m_b.parameters(), RULE)
    _train(m_b, opt_b, 10)
    opt_b = O.Optimizer(m_b.parameters(), RULE)
    _train(m_b, opt_b, 10, start=10)
    assert any(not torch.equal(a, b) for a, b in zip(m_ref.parameters(), m_b.parameters()))


def test_load_state_dict_restores_group_hyperparameters():
    m = small_model()
    opt = O.Optimizer(m.parameters(), RULE)
    O.adjust(opt, lr=1e-4)
    sd = opt.state_dict()
    fresh = O.Optimizer(twin(m).parameters(), RULE)
    fresh.load_state_dict(sd)
    assert fresh.param_groups[0]["lr"] == 1e-4


def test_load_state_dict_of_another_rule_is_refused():
    m = small_model()
    opt = O.Optimizer(m.parameters(), O.chain(O.adam(), O.scale_lr(1e-3)))
    _train(m, opt, 2)
    other = O.Optimizer(twin(m).parameters(), O.chain(O.momentum(), O.scale_lr(1e-3)))
    with pytest.raises(ValueError, match=r"state_dict holds 12 state tensors for a group, the rule .* needs 8"):
        other.load_state_dict(opt.state_dict())


def test_torch_cosine_annealing_lr_drives_the_chain_like_torch_adam():
    m1 = small_model()
    m2 = twin(m1)
    ours = O.Optimizer(m1.parameters(), O.chain(O.adam(), O.scale_lr(1e-2)))
    theirs = torch.optim.Adam(m2.parameters(), lr=1e-2)
    s1 = torch.optim.lr_scheduler.CosineAnnealingLR(ours, T_max=20, eta_min=1e-4)
    s2 = torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=20, eta_min=1e-4)
    lrs = []
    for t in range(30):
        run_parity(ours, theirs, m1, m2, steps=1, seed=t)
        s1.step()
        s2.step()
        assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
        lrs.append(ours.param_groups[0]["lr"])
    assert min(lrs) == pytest.approx(1e-4) and lrs[0] < 1e-2
    assert_params_close(m1, m2, rtol=1e-10, atol=1e-14)
    # adam's own "adam.lr" was left alone by the scheduler
    assert ours.param_groups[0]["adam.lr"] == 1.0


def test_adjust_changes_the_rate_used_from_the_next_step():
    m1 = small_model()
    m2 = twin(m1)
    ours = O.Optimizer(m1.parameters(), O.chain(O.adam(), O.scale_lr(1e-2)))
    theirs = torch.optim.Adam(m2.parameters(), lr=1e-2)
    run_parity(ours, theirs, m1, m2, steps=5)
    assert O.adjust(ours, lr=3e-4, b1=0.5) is ours
    for g in theirs.param_groups:
        g["lr"], g["betas"] = 3e-4, (0.5, 0.999)
    run_parity(ours, theirs, m1, m2, steps=5, seed=1)
    assert ours.param_groups[0]["lr"] == 3e-4
    assert_params_close(m1, m2, rtol=1e-10, atol=1e-14)


def test_adjust_validates_before_changing_anything():
    m = small_model()
    opt = O.Optimizer([{"params": [m[0].weight]}, {"params": [m[2].weight], "lr": 0.5}],
                      O.chain(O.adam(), O.scale_lr(1e-2)))
    with pytest.raises(ValueError, match=r"scale_lr: lr must be in \[0\.0, inf\), got -1"):
        O.adjust(opt, lr=-1)
    with pytest.raises(ValueError, match=r"chain: unknown hyperparameter 'momentum'; allowed: adam\.lr, b1, b2, eps, lr"):
        O.adjust(opt, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [1e-2, 0.5]
    with pytest.raises(TypeError, match=r"adjust: expected a torchdeck Optimizer or rule, got SGD"):
        O.adjust(torch.optim.SGD(m.parameters(), lr=0.1), lr=1.0)
    assert O.adjust(O.adam(), b1=0.5) == O.adam(b1=0.5)


def test_param_groups_with_their_own_lr_match_torch():
    m1 = small_model()
    m2 = twin(m1)
    ours = O.Optimizer([{"params": m1[0].parameters()}, {"params": m1[2].parameters(), "lr": 1e-1}],
                       O.chain(O.adam(), O.scale_lr(1e-2)))
    theirs = torch.optim.Adam([{"params": m2[0].parameters()}, {"params": m2[2].parameters(), "lr": 1e-1}], lr=1e-2)
    run_parity(ours, theirs, m1, m2, steps=30)
    assert_params_close(m1, m2, rtol=1e-10, atol=1e-14)


def test_group_with_invalid_hyperparameter_is_refused():
    m = small_model()
    with pytest.raises(ValueError, match=r"adam: b1 must be in \[0\.0, 1\.0\), got 1\.5"):
        O.Optimizer([{"params": m.parameters(), "b1": 1.5}], O.chain(O.adam(), O.scale_lr(1e-2)))


def test_params_without_grad_are_skipped_and_their_state_untouched():
    m1 = small_model()
    m2 = twin(m1)
    ours = O.Optimizer(m1.parameters(), O.chain(O.adam(), O.scale_lr(1e-2)))
    theirs = torch.optim.Adam(m2.parameters(), lr=1e-2)
    frozen_before = [p.clone() for p in m1[0].parameters()]
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        for a, b in zip(m1.parameters(), m2.parameters()):
            a.grad = b.grad = None
        for a, b in zip(m1[2].parameters(), m2[2].parameters()):  # only the last layer has grads
            g = torch.randn(a.shape, generator=gen, dtype=a.dtype)
            a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    for p, q in zip(m1[0].parameters(), frozen_before):
        assert torch.equal(p, q)
    state = ours.rule_state()[0]  # adam's state: count, mu, nu with one entry per parameter
    assert torch.count_nonzero(state.mu[0]) == 0 and torch.count_nonzero(state.nu[1]) == 0
    assert torch.count_nonzero(state.mu[2]) > 0
    assert_params_close(m1, m2, rtol=1e-10, atol=1e-14)


def test_no_grads_at_all_is_a_no_op():
    m = small_model()
    before = [p.clone() for p in m.parameters()]
    O.Optimizer(m.parameters(), O.chain(O.adam(), O.scale_lr(1e-2))).step()
    assert all(torch.equal(p, q) for p, q in zip(m.parameters(), before))


@pytest.mark.parametrize(("rule", "reference"), [
    (O.chain(O.adam(), O.scale_lr(1e-2)), lambda ps: torch.optim.Adam(ps, lr=1e-2)),
    (O.chain(O.momentum(rho=0.9, dampening=0.5), O.scale_lr(1e-2)),
     lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9, dampening=0.5)),
])
def test_param_that_gets_grads_late_matches_torch(rule, reference):
    """A parameter frozen for the first steps (grad None) then thawed starts its own state
    fresh, as torch's per-parameter state does."""
    m1 = small_model()
    m2 = twin(m1)
    ours, theirs = O.Optimizer(m1.parameters(), rule), reference(m2.parameters())
    gen = torch.Generator().manual_seed(0)
    for t in range(25):
        for (name, a), b in zip(m1.named_parameters(), m2.parameters()):
            if t < 10 and name.startswith("0."):
                a.grad = b.grad = None
            else:
                g = torch.randn(a.shape, generator=gen, dtype=a.dtype)
                a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    assert_params_close(m1, m2, rtol=1e-10, atol=1e-14)


def test_named_parameters_are_accepted():
    m1 = small_model()
    m2 = twin(m1)
    ours = O.Optimizer(m1.named_parameters(), O.chain(O.adam(), O.scale_lr(1e-2)))
    theirs = torch.optim.Adam(m2.parameters(), lr=1e-2)
    run_parity(ours, theirs, m1, m2, steps=10)
    assert_params_close(m1, m2, rtol=1e-10, atol=1e-14)
    names = ours.param_groups[0].get("param_names")
    if names is not None:  # torch >= 2.6 keeps the names
        assert names == [n for n, _ in m1.named_parameters()]


def test_named_parameters_are_kept_in_the_state_dict_as_torch_keeps_them():
    m = small_model()
    ours = O.Optimizer(m.named_parameters(), O.chain(O.adam(), O.scale_lr(1e-2)))
    theirs = torch.optim.Adam(m.named_parameters(), lr=1e-2)
    sd = ours.state_dict()
    assert sd["param_groups"][0]["param_names"] == theirs.state_dict()["param_groups"][0]["param_names"]
    assert sd["param_groups"][0]["params"] == theirs.state_dict()["param_groups"][0]["params"]
    unnamed = O.Optimizer(twin(m).parameters(), O.chain(O.adam(), O.scale_lr(1e-2)))
    unnamed.load_state_dict(sd)  # torch's rule: names in the loaded dict are taken over
    assert unnamed.param_groups[0]["param_names"] == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_optimizer_refuses_a_non_rule():
    with pytest.raises(TypeError, match=r"Optimizer: rule must be a torchdeck\.optim rule, got 'adam'"):
        O.Optimizer(small_model().parameters(), "adam")


def test_zero_grad_and_closure_work():
    m = small_model()
    opt = O.Optimizer(m.parameters(), O.sgd(0.1))
    x = torch.ones(2, 5, dtype=torch.float64)

    def closure():
        opt.zero_grad()
        loss = m(x).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss is not None and loss.requires_grad
    opt.zero_grad()
    assert all(p.grad is None for p in m.parameters())


# -- GradScaler -----------------------------------------------------------------------------

def _scaled_batch(t):
    gen = torch.Generator().manual_seed(2000 + t)
    return torch.randn(8, 5, generator=gen), torch.randn(8, 3, generator=gen)


def test_grad_scaler_steps_equal_the_unscaled_run_and_an_inf_step_is_skipped():
    """A power-of-2 scale is exact in float32, so scaled-then-unscaled gradients are the plain ones
    bit for bit; a step whose gradients hold an inf leaves parameters and state as they were."""
    m_scaled = small_model(dtype=torch.float32)
    m_plain = twin(m_scaled)
    rule = O.chain(O.clip_norm(1.0), O.adam(), O.scale_lr(1e-2))
    opt_scaled = O.Optimizer(m_scaled.named_parameters(), rule)
    opt_plain = O.Optimizer(m_plain.named_parameters(), rule)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=3)
    loss_fn = torch.nn.functional.mse_loss
    for t in range(12):
        x, y = _scaled_batch(t)
        opt_scaled.zero_grad()
        scaler.scale(loss_fn(m_scaled(x), y)).backward()
        if t == 5:  # an overflow: the scaler must skip this step and halve its scale
            m_scaled[0].weight.grad[0, 0] = float("inf")
            params_before = [p.detach().clone() for p in m_scaled.parameters()]
            state_before = [s.clone() for s in tree_leaves(opt_scaled.rule_state())]
            scale_before = scaler.get_scale()
        scaler.step(opt_scaled)
        scaler.update()
        if t == 5:
            assert all(torch.equal(p, q) for p, q in zip(m_scaled.parameters(), params_before))
            assert all(torch.equal(s, q) for s, q in zip(tree_leaves(opt_scaled.rule_state()), state_before))
            assert scaler.get_scale() == scale_before / 2
            continue  # the plain run never saw this step
        opt_plain.zero_grad()
        loss_fn(m_plain(x), y).backward()
        opt_plain.step()
        for a, b in zip(m_scaled.parameters(), m_plain.parameters()):
            assert torch.equal(a, b)
    assert scaler.get_scale() > 2.0**11  # it grew again after the skip: the growth path ran too
    for a, b in zip(tree_leaves(opt_scaled.rule_state()), tree_leaves(opt_plain.rule_state()), strict=True):
        assert torch.equal(a, b)
