"""The torch.optim rules (nesterov, rmsprop, amsgrad, adamax, nadam, radam, adagrad, adadelta,
rprop, l2, adamw) against torch.optim itself: 200 steps of seeded random gradients."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch

from torchdeck import optim as O
from torchdeck._tree import tree_leaves, tree_map

from ._helpers import run_parity, small_model, twin

T = torch.optim

# id -> (our rule, torch optimiser factory). Each torch keyword is written out, so a case
# reads as the claim it checks: chain(l2(wd), <rule>, scale_lr(lr)) is torch's <Rule>(lr, weight_decay=wd).
CASES = {
    "sgd-momentum": (O.chain(O.momentum(0.9), O.scale_lr(0.05)),
                     lambda ps: T.SGD(ps, lr=0.05, momentum=0.9)),
    "sgd-momentum-dampening-l2": (O.chain(O.l2(1e-2), O.momentum(0.8, dampening=0.3), O.scale_lr(0.05)),
                                  lambda ps: T.SGD(ps, lr=0.05, momentum=0.8, dampening=0.3, weight_decay=1e-2)),
    "sgd-nesterov": (O.chain(O.nesterov(0.9), O.scale_lr(0.05)),
                     lambda ps: T.SGD(ps, lr=0.05, momentum=0.9, nesterov=True)),
    "sgd-nesterov-l2": (O.chain(O.l2(1e-2), O.nesterov(rho=0.7), O.scale_lr(0.05)),
                        lambda ps: T.SGD(ps, lr=0.05, momentum=0.7, nesterov=True, weight_decay=1e-2)),
    "adam-l2": (O.chain(O.l2(1e-2), O.adam(), O.scale_lr(1e-2)),
                lambda ps: T.Adam(ps, lr=1e-2, weight_decay=1e-2)),
    "adamw": (O.adamw(lr=1e-2, decay=0.1),
              lambda ps: T.AdamW(ps, lr=1e-2, weight_decay=0.1)),
    "adamw-explicit-chain": (O.chain(O.adam(b1=0.8, b2=0.99, eps=1e-6), O.weight_decay(0.1), O.scale_lr(1e-2)),
                             lambda ps: T.AdamW(ps, lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "amsgrad": (O.chain(O.amsgrad(), O.scale_lr(1e-2)),
                lambda ps: T.Adam(ps, lr=1e-2, amsgrad=True)),
    "amsgrad-decoupled": (O.chain(O.amsgrad(b1=0.8), O.weight_decay(0.1), O.scale_lr(1e-2)),
                          lambda ps: T.AdamW(ps, lr=1e-2, betas=(0.8, 0.999), weight_decay=0.1, amsgrad=True)),
    "adamax": (O.chain(O.adamax(), O.scale_lr(2e-2)),
               lambda ps: T.Adamax(ps, lr=2e-2)),
    "adamax-l2": (O.chain(O.l2(1e-2), O.adamax(b1=0.8, b2=0.99, eps=1e-6), O.scale_lr(2e-2)),
                  lambda ps: T.Adamax(ps, lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)),
    "nadam": (O.chain(O.nadam(), O.scale_lr(1e-2)),
              lambda ps: T.NAdam(ps, lr=1e-2)),
    "nadam-l2": (O.chain(O.l2(1e-2), O.nadam(momentum_decay=1e-2), O.scale_lr(1e-2)),
                 lambda ps: T.NAdam(ps, lr=1e-2, momentum_decay=1e-2, weight_decay=1e-2)),
    "nadam-decoupled": (O.chain(O.nadam(b2=0.99), O.weight_decay(0.1), O.scale_lr(1e-2)),
                        lambda ps: T.NAdam(ps, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1,
                                           decoupled_weight_decay=True)),
    "radam": (O.chain(O.radam(), O.scale_lr(1e-2)),
              lambda ps: T.RAdam(ps, lr=1e-2)),
    "radam-l2": (O.chain(O.l2(1e-2), O.radam(b1=0.8, b2=0.99), O.scale_lr(1e-2)),
                 lambda ps: T.RAdam(ps, lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-2)),
    "radam-decoupled": (O.chain(O.radam(), O.weight_decay(0.1), O.scale_lr(1e-2)),
                        lambda ps: T.RAdam(ps, lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)),
    "rmsprop": (O.chain(O.rmsprop(), O.scale_lr(1e-3)),
                lambda ps: T.RMSprop(ps, lr=1e-3)),
    "rmsprop-centered": (O.chain(O.rmsprop(alpha=0.9, centered=True), O.scale_lr(1e-3)),
                         lambda ps: T.RMSprop(ps, lr=1e-3, alpha=0.9, centered=True)),
    "rmsprop-momentum": (O.chain(O.rmsprop(momentum=0.9, eps=1e-6), O.scale_lr(1e-3)),
                         lambda ps: T.RMSprop(ps, lr=1e-3, momentum=0.9, eps=1e-6)),
    "rmsprop-centered-momentum-l2": (
        O.chain(O.l2(1e-2), O.rmsprop(alpha=0.95, centered=True, momentum=0.5), O.scale_lr(1e-3)),
        lambda ps: T.RMSprop(ps, lr=1e-3, alpha=0.95, centered=True, momentum=0.5, weight_decay=1e-2)),
    "adagrad": (O.chain(O.adagrad(), O.scale_lr(0.1)),
                lambda ps: T.Adagrad(ps, lr=0.1)),
    "adagrad-lr-decay-initial-l2": (
        O.chain(O.l2(1e-2), O.adagrad(lr_decay=1e-2, initial_accumulator_value=0.5, eps=1e-6), O.scale_lr(0.1)),
        lambda ps: T.Adagrad(ps, lr=0.1, lr_decay=1e-2, initial_accumulator_value=0.5, eps=1e-6, weight_decay=1e-2)),
    "adadelta": (O.adadelta(),
                 lambda ps: T.Adadelta(ps)),
    "adadelta-scaled-l2": (O.chain(O.l2(1e-2), O.adadelta(rho=0.95, eps=1e-5), O.scale_lr(0.5)),
                           lambda ps: T.Adadelta(ps, lr=0.5, rho=0.95, eps=1e-5, weight_decay=1e-2)),
    "rprop": (O.rprop(),
              lambda ps: T.Rprop(ps)),
    "rprop-custom": (O.rprop(lr=1e-3, eta_minus=0.3, eta_plus=1.5, step_min=1e-4, step_max=2e-2),
                     lambda ps: T.Rprop(ps, lr=1e-3, etas=(0.3, 1.5), step_sizes=(1e-4, 2e-2))),
}

RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def assert_close_to_scale(m1, m2, rtol):
    """Relative agreement, with elements near zero judged against their tensor's scale: after
    200 float32 steps an element that crossed zero keeps an absolute error of a few ulps of
    the values it came from, which is large relative to itself."""
    for (name, a), b in zip(m1.named_parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * b.abs().max().item(),
                                   msg=lambda m, name=name: f"{name}: {m}")


@contextlib.contextmanager
def default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _torch_scalar_dtype(case, dtype):
    # torch.optim.NAdam keeps its momentum product mu_1...mu_t in the *default* dtype
    # (float32 unless changed), which limits torch's own float64 NAdam to ~1e-8; ours keeps
    # it in float64. Against torch computing in float64 throughout, float64 agrees to 1e-10
    # (test_nadam_at_torchs_default_dtype pins the float32-product difference).
    return torch.float64 if case.startswith("nadam") and dtype == torch.float64 else torch.get_default_dtype()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch_optim_for_200_steps(case, dtype):
    rule, reference = CASES[case]
    m1 = small_model(dtype)
    m2 = twin(m1)
    start = [p.clone() for p in m1.parameters()]
    with default_dtype(_torch_scalar_dtype(case, dtype)):
        ours, theirs = O.Optimizer(m1.parameters(), rule), reference(m2.parameters())
        run_parity(ours, theirs, m1, m2, steps=200, seed=7)
    assert_close_to_scale(m1, m2, RTOL[dtype])
    # Guard: the run moved every parameter well beyond the tolerance, so agreement means something.
    for p, p0 in zip(m2.parameters(), start):
        assert (p - p0).abs().max() > 1e-2 * p0.abs().max()


def test_nadam_at_torchs_default_dtype():
    """With torch's float32 momentum product, float64 NAdam differs from ours by that rounding only."""
    rule, reference = CASES["nadam"]
    m1 = small_model()
    m2 = twin(m1)
    run_parity(O.Optimizer(m1.parameters(), rule), reference(m2.parameters()), m1, m2, steps=200, seed=7)
    assert_close_to_scale(m1, m2, 1e-7)


def test_coupled_and_decoupled_decay_differ():
    """Guards the decay cases: whether the decay sits before (l2) or after the rule matters."""
    finals = []
    for rule in (O.chain(O.l2(0.1), O.radam(), O.scale_lr(1e-2)),
                 O.chain(O.radam(), O.weight_decay(0.1), O.scale_lr(1e-2))):
        m = small_model()
        _run(O.Optimizer(m.parameters(), rule), list(m.parameters()), _grads(list(m.parameters()), 50))
        finals.append(torch.cat([p.flatten() for p in m.parameters()]))
    assert not torch.allclose(finals[0], finals[1], rtol=1e-3)


# -- defaults are torch's (except lr, which scale_lr carries) ---------------------------------
@pytest.mark.parametrize(("rule", "torch_cls", "fields"), [
    (O.rmsprop(), T.RMSprop, {"alpha": "alpha", "eps": "eps", "momentum": "momentum", "centered": "centered"}),
    (O.adagrad(), T.Adagrad, {"lr_decay": "lr_decay", "eps": "eps",
                              "initial_accumulator_value": "initial_accumulator_value"}),
    (O.adadelta(), T.Adadelta, {"lr": "lr", "rho": "rho", "eps": "eps"}),
    (O.rprop(), T.Rprop, {"lr": "lr", "eta_minus": ("etas", 0), "eta_plus": ("etas", 1),
                          "step_min": ("step_sizes", 0), "step_max": ("step_sizes", 1)}),
    (O.amsgrad(), T.Adam, {"b1": ("betas", 0), "b2": ("betas", 1), "eps": "eps"}),
    (O.adamax(), T.Adamax, {"b1": ("betas", 0), "b2": ("betas", 1), "eps": "eps"}),
    (O.nadam(), T.NAdam, {"b1": ("betas", 0), "b2": ("betas", 1), "eps": "eps", "momentum_decay": "momentum_decay"}),
    (O.radam(), T.RAdam, {"b1": ("betas", 0), "b2": ("betas", 1), "eps": "eps"}),
    (O.adamw(), T.AdamW, {"lr": "lr", "b1": ("betas", 0), "b2": ("betas", 1), "eps": "eps", "decay": "weight_decay"}),
])
def test_defaults_are_torchs(rule, torch_cls, fields):
    defaults = torch_cls([torch.zeros(1, requires_grad=True)]).defaults
    for ours, theirs in fields.items():
        value = defaults[theirs] if isinstance(theirs, str) else defaults[theirs[0]][theirs[1]]
        assert rule.hyper()[ours] == value, ours


# -- adamw is a named chain -----------------------------------------------------------------
def test_adamw_is_the_chain_adam_weight_decay_scale_lr():
    rule = O.adamw(lr=3e-3, b1=0.8, b2=0.99, eps=1e-7, decay=0.05)
    assert isinstance(rule, O.Chain)
    assert rule.rules == (O.Adam(lr=1.0, b1=0.8, b2=0.99, eps=1e-7), O.WeightDecay(0.05), O.ScaleLR(3e-3))
    assert rule == O.chain(O.adam(b1=0.8, b2=0.99, eps=1e-7), O.weight_decay(0.05), O.scale_lr(3e-3))
    assert rule.hyper() == {"lr": 3e-3, "b1": 0.8, "b2": 0.99, "eps": 1e-7, "decay": 0.05}
    assert str(rule) == "adamw(lr=3e-3, b1=0.8, b2=0.99, eps=1e-7, decay=0.05)" and str(O.adamw()) == "adamw"
    assert repr(rule) == "AdamW(lr=0.003, b1=0.8, b2=0.99, eps=1e-07, decay=0.05)"
    assert rule.to_spec() == {"adamw": {"lr": 3e-3, "b1": 0.8, "b2": 0.99, "eps": 1e-7, "decay": 0.05}}
    # Inside a larger chain it is its three rules, so the chain's structure is plain to see.
    outer = O.chain(O.clip_norm(1.0), O.adamw())
    assert [r.name for r in outer.rules] == ["clip_norm", "adam", "weight_decay", "scale_lr"]


def test_adamw_replace_and_adjust_keep_the_name_and_validate():
    replaced = O.adamw().replace(lr=1e-2, decay=0.0)
    assert type(replaced) is O.AdamW and replaced.to_spec() == {"adamw": {"lr": 1e-2, "b1": 0.9, "b2": 0.999,
                                                                           "eps": 1e-8, "decay": 0.0}}
    assert replaced.rules[0].lr == 1.0
    with pytest.raises(ValueError,
                       match=r"^adamw: unknown hyperparameter 'adam\.lr'; allowed: lr, b1, b2, eps, decay$"):
        O.adamw().replace(**{"adam.lr": 0.5})
    with pytest.raises(ValueError, match=r"^adamw: b1 must be in \[0\.0, 1\.0\), got 1\.0$"):
        O.adamw().replace(b1=1.0)
    m = small_model()
    opt = O.Optimizer(m.parameters(), O.adamw())
    assert {k: opt.param_groups[0][k] for k in ("lr", "b1", "b2", "eps", "decay")} == O.adamw().hyper()
    O.adjust(opt, decay=0.5)
    assert opt.param_groups[0]["decay"] == 0.5


def test_adamw_under_a_torch_lr_scheduler_matches_torch_adamw():
    m1 = small_model()
    m2 = twin(m1)
    ours = O.Optimizer(m1.parameters(), O.adamw(lr=1e-2, decay=0.1))
    theirs = T.AdamW(m2.parameters(), lr=1e-2, weight_decay=0.1)
    s1 = T.lr_scheduler.CosineAnnealingLR(ours, T_max=20, eta_min=1e-4)
    s2 = T.lr_scheduler.CosineAnnealingLR(theirs, T_max=20, eta_min=1e-4)
    for t in range(30):
        run_parity(ours, theirs, m1, m2, steps=1, seed=t)
        s1.step()
        s2.step()
        assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
    assert_close_to_scale(m1, m2, 1e-10)


# -- state_dict resume ----------------------------------------------------------------------
def _grads(params, steps, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params] for _ in range(steps)]


def _run(opt, params, grads):
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()


@pytest.mark.parametrize("rule", [
    O.chain(O.l2(1e-2), O.rmsprop(centered=True, momentum=0.5), O.scale_lr(1e-3)),
    O.chain(O.nadam(), O.weight_decay(0.1), O.scale_lr(1e-2)),
    O.rprop(),
], ids=["rmsprop-centered-momentum", "nadamw", "rprop"])
def test_state_dict_resume_equals_an_uninterrupted_run(rule):
    m_ref = small_model()
    m_a = twin(m_ref)
    grads = _grads(list(m_ref.parameters()), 200)
    ref = O.Optimizer(m_ref.parameters(), rule)
    _run(ref, list(m_ref.parameters()), grads)

    opt_a = O.Optimizer(m_a.parameters(), rule)
    _run(opt_a, list(m_a.parameters()), grads[:100])
    buf = io.BytesIO()
    torch.save({"model": m_a.state_dict(), "opt": opt_a.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    m_b = small_model(seed=123)
    m_b.load_state_dict(saved["model"])
    opt_b = O.Optimizer(m_b.parameters(), rule)
    opt_b.load_state_dict(saved["opt"])
    _run(opt_b, list(m_b.parameters()), grads[100:])

    for a, b in zip(m_ref.parameters(), m_b.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(tree_leaves(ref.rule_state()), tree_leaves(opt_b.rule_state()), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("rule", [O.rmsprop(), O.rmsprop(centered=True, momentum=0.5), O.nadam(), O.rprop(),
                                  O.adamw()], ids=str)
def test_states_round_trip_through_safetensors(rule, tmp_path):
    """States with empty parts (plain rmsprop), float64 scalars (nadam) and a named chain save exactly."""
    params = [torch.randn(3, 2, dtype=torch.float32), torch.randn(4, dtype=torch.float32)]
    _, state = rule.update_([torch.randn_like(p) for p in params], rule.init(params), params)
    O.save_state(tmp_path / "state.safetensors", state, rule=rule)
    back = O.load_state(tmp_path / "state.safetensors", rule.init(params), rule=rule)
    assert type(back) is type(state)
    for a, b in zip(tree_leaves(state), tree_leaves(back), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)


@pytest.mark.parametrize(("rule", "reference"), [
    (O.chain(O.nadam(), O.scale_lr(1e-2)), lambda ps: T.NAdam(ps, lr=1e-2)),
    (O.chain(O.radam(), O.scale_lr(1e-2)), lambda ps: T.RAdam(ps, lr=1e-2)),
    (O.chain(O.adagrad(lr_decay=0.1), O.scale_lr(0.1)), lambda ps: T.Adagrad(ps, lr=0.1, lr_decay=0.1)),
    (O.chain(O.nesterov(), O.scale_lr(0.05)), lambda ps: T.SGD(ps, lr=0.05, momentum=0.9, nesterov=True)),
    (O.rprop(), lambda ps: T.Rprop(ps)),
], ids=["nadam", "radam", "adagrad", "nesterov", "rprop"])
def test_param_that_gets_grads_late_matches_torch(rule, reference):
    """Step counts are per parameter, as torch keeps them: a parameter thawed late starts at step 1."""
    m1 = small_model()
    m2 = twin(m1)
    gen = torch.Generator().manual_seed(0)
    with default_dtype(torch.float64):  # torch's NAdam product in float64 too (see _torch_scalar_dtype)
        ours, theirs = O.Optimizer(m1.parameters(), rule), reference(m2.parameters())
        for t in range(25):
            for (name, a), b in zip(m1.named_parameters(), m2.parameters()):
                if t < 10 and name.startswith("0."):
                    a.grad = b.grad = None
                else:
                    g = torch.randn(a.shape, generator=gen, dtype=a.dtype)
                    a.grad, b.grad = g.clone(), g.clone()
            ours.step()
            theirs.step()
    assert_close_to_scale(m1, m2, 1e-10)


# -- the rules on their own ------------------------------------------------------------------
NEW_RULES = [
    O.l2(1e-3), O.nesterov(rho=0.8), O.rmsprop(), O.rmsprop(centered=True, momentum=0.9),
    O.adagrad(lr_decay=0.1, initial_accumulator_value=0.2), O.adadelta(rho=0.95), O.rprop(lr=1e-3, step_max=1.0),
    O.amsgrad(b1=0.8), O.adamax(eps=1e-6), O.nadam(momentum_decay=1e-2), O.radam(b2=0.99),
    O.adamw(lr=3e-3, decay=0.1),
]


@pytest.mark.parametrize("rule", NEW_RULES, ids=str)
def test_spec_and_code_round_trip(rule):
    spec = rule.to_spec()
    back = O.rule_from_spec(spec)
    assert back == rule and type(back) is type(rule)
    assert back.to_spec() == spec and str(back) == str(rule)
    assert eval(rule.to_code(), {"O": O}) == rule  # the generated Python makes the same rule


@pytest.mark.parametrize("rule", NEW_RULES, ids=str)
def test_pure_update_leaves_inputs_untouched_and_equals_update_(rule):
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen, dtype=torch.float64) for s in ((3, 2), (4,), ())]
    grads = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    state = rule.init(params)
    _, state = rule.update_([g.clone() for g in grads], state, params)  # a warm state: counts > 0, moments != 0
    saved = [t.clone() for t in grads + params + tree_leaves(state)]
    updates, new_state = rule.update(grads, state, params)
    assert all(torch.equal(a, b) for a, b in zip(saved, grads + params + tree_leaves(state), strict=True))
    updates_, state_ = rule.update_([g.clone() for g in grads], tree_map(torch.clone, state), params)
    assert all(torch.equal(a, b) for a, b in zip(updates, updates_, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(tree_leaves(new_state), tree_leaves(state_), strict=True))
    # the returned updates never share memory with the state (a later rule may overwrite them)
    state_ptrs = {t.data_ptr() for t in tree_leaves(state_)}
    assert not any(u.data_ptr() in state_ptrs for u in updates_)


def test_rmsprop_refuses_momentum_switched_on_after_its_state_was_made():
    params = [torch.ones(2, dtype=torch.float64)]
    state = O.rmsprop().init(params)
    with pytest.raises(ValueError, match=r"^rmsprop: momentum=0\.9 needs a state made with it"):
        O.rmsprop(momentum=0.9).update(params, state, params)


# -- bad hyperparameters ---------------------------------------------------------------------
@pytest.mark.parametrize(("make", "pattern"), [
    *[(lambda n=n: getattr(O, n)(lr=-1e-3), rf"^{n}: lr must be in \[0\.0, inf\), got -0\.001$")
      for n in ("nesterov", "rmsprop", "adagrad", "adadelta", "rprop", "amsgrad", "adamax", "nadam", "radam", "adamw")],
    *[(lambda n=n, f=f, v=v: getattr(O, n)(**{f: v}), rf"^{n}: {f} must be in \[0\.0, 1\.0\), got {v}$")
      for n in ("amsgrad", "adamax", "nadam", "radam", "adamw") for f in ("b1", "b2") for v in (1.0, -0.1)],
    *[(lambda n=n, v=v: getattr(O, n)(eps=v), rf"^{n}: eps must be in \(0\.0, inf\), got {v}$")
      for n in ("rmsprop", "adagrad", "adadelta", "amsgrad", "adamax", "nadam", "radam", "adamw")
      for v in (0.0, -1e-8)],
    (lambda: O.nesterov(rho=1.0), r"^nesterov: rho must be in \[0\.0, 1\.0\), got 1\.0$"),
    (lambda: O.rmsprop(alpha=1.5), r"^rmsprop: alpha must be in \[0\.0, 1\.0\], got 1\.5$"),
    (lambda: O.rmsprop(momentum=-0.1), r"^rmsprop: momentum must be in \[0\.0, 1\.0\), got -0\.1$"),
    (lambda: O.rmsprop(centered="yes"), r"^rmsprop: centered must be True or False, got 'yes'$"),
    (lambda: O.adagrad(lr_decay=-1), r"^adagrad: lr_decay must be in \[0\.0, inf\), got -1$"),
    (lambda: O.adagrad(initial_accumulator_value=-0.1),
     r"^adagrad: initial_accumulator_value must be in \[0\.0, inf\), got -0\.1$"),
    (lambda: O.adadelta(rho=1.1), r"^adadelta: rho must be in \[0\.0, 1\.0\], got 1\.1$"),
    (lambda: O.rprop(eta_minus=1.0), r"^rprop: eta_minus must be in \(0\.0, 1\.0\), got 1\.0$"),
    (lambda: O.rprop(eta_plus=1.0), r"^rprop: eta_plus must be in \(1\.0, inf\), got 1\.0$"),
    (lambda: O.rprop(step_min=1.0, step_max=0.5),
     r"^rprop: step_min must be <= step_max, got step_min=1\.0 > step_max=0\.5$"),
    (lambda: O.rprop().replace(step_min=100.0), r"^rprop: step_min must be <= step_max, got step_min=100\.0 > "),
    (lambda: O.nadam(momentum_decay=-1e-3), r"^nadam: momentum_decay must be in \[0\.0, inf\), got -0\.001$"),
    (lambda: O.l2(-1e-4), r"^l2: decay must be in \[0\.0, inf\), got -0\.0001$"),
    (lambda: O.adamw(decay=-0.1), r"^adamw: decay must be in \[0\.0, inf\), got -0\.1$"),
    (lambda: O.rule_from_spec({"adamw": {"b1": 2}}), r"^optim\.adamw: b1 must be in \[0\.0, 1\.0\), got 2$"),
    (lambda: O.rule_from_spec({"adamw": {"weight_decay": 0.1}}),
     r"^optim\.adamw: unknown hyperparameter 'weight_decay'; allowed: lr, b1, b2, eps, decay$"),
    (lambda: O.rule_from_spec({"chain": [{"rmsprop": {"eps": 0}}]}),
     r"^optim\.chain\[0\]\.rmsprop: eps must be in \(0\.0, inf\), got 0$"),
])
def test_bad_hyperparameters_raise_naming_rule_field_value_and_range(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()
