"""Rules torch.optim lacks (lion, adabelief, lamb, sign_decay) against references written from
the papers' update equations, and the gradient-control rules (clip_value, accumulate,
skip_nonfinite) against torch / the plain rules fed what they should see."""

from __future__ import annotations

import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchdeck import optim as O
from torchdeck._tree import tree_leaves, tree_map

from ._helpers import assert_params_close, random_grads, run_parity, small_model, twin

TOLERANCES = [(torch.float64, 1e-10, 1e-14), (torch.float32, 1e-5, 1e-7)]


# -- references: one tensor at a time, plain torch ops, the papers' notation ----------------
class LionRef:
    """Chen et al. 2023, Algorithm 2 (without weight decay)."""

    def __init__(self, params, lr, b1=0.9, b2=0.99):
        self.params, self.lr, self.b1, self.b2 = params, lr, b1, b2
        self.m = [torch.zeros_like(p) for p in params]

    def step(self, grads):
        for p, g, m in zip(self.params, grads, self.m):
            c = self.b1 * m + (1 - self.b1) * g
            p -= self.lr * torch.sign(c)
            m.copy_(self.b2 * m + (1 - self.b2) * g)


class AdaBeliefRef:
    """Zhuang et al. 2020, Algorithm 2."""

    def __init__(self, params, lr, b1=0.9, b2=0.999, eps=1e-16):
        self.params, self.lr, self.b1, self.b2, self.eps = params, lr, b1, b2, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.s = [torch.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        for p, g, m, s in zip(self.params, grads, self.m, self.s):
            m.copy_(self.b1 * m + (1 - self.b1) * g)
            s.copy_(self.b2 * s + (1 - self.b2) * (g - m) ** 2 + self.eps)
            m_hat = m / (1 - self.b1**self.t)
            s_hat = s / (1 - self.b2**self.t)
            p -= self.lr * m_hat / (torch.sqrt(s_hat) + self.eps)


class LambRef:
    """You et al. 2019, Algorithm 2, with phi the identity."""

    def __init__(self, params, lr, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.0):
        self.params, self.lr, self.b1, self.b2, self.eps, self.wd = params, lr, b1, b2, eps, weight_decay
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.copy_(self.b1 * m + (1 - self.b1) * g)
            v.copy_(self.b2 * v + (1 - self.b2) * g * g)
            m_hat = m / (1 - self.b1**self.t)
            v_hat = v / (1 - self.b2**self.t)
            r = m_hat / (torch.sqrt(v_hat) + self.eps) + self.wd * p
            p_norm, r_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(r)
            ratio = p_norm / r_norm if p_norm > 0 and r_norm > 0 else 1.0
            p -= self.lr * ratio * r


class SignDecayRef:
    """SGD on loss + decay * ||p||_1 (the subgradient sign(0) = 0)."""

    def __init__(self, params, lr, decay):
        self.params, self.lr, self.decay = params, lr, decay

    def step(self, grads):
        for p, g in zip(self.params, grads):
            p -= self.lr * (g + self.decay * torch.sign(p))


PAPER_CASES = {
    "lion": (O.lion(), lambda ps, lr: LionRef(ps, lr), 1e-3),
    "lion-betas": (O.lion(b1=0.8, b2=0.95), lambda ps, lr: LionRef(ps, lr, b1=0.8, b2=0.95), 1e-3),
    "adabelief": (O.adabelief(), lambda ps, lr: AdaBeliefRef(ps, lr), 1e-2),
    "adabelief-hyper": (O.adabelief(b1=0.8, b2=0.99, eps=1e-8),
                        lambda ps, lr: AdaBeliefRef(ps, lr, b1=0.8, b2=0.99, eps=1e-8), 1e-2),
    "lamb": (O.lamb(), lambda ps, lr: LambRef(ps, lr), 1e-2),
    "lamb-decay": (O.lamb(b1=0.8, b2=0.99, eps=1e-8, weight_decay=0.1),
                   lambda ps, lr: LambRef(ps, lr, b1=0.8, b2=0.99, eps=1e-8, weight_decay=0.1), 1e-2),
    "sign_decay": (O.sign_decay(0.05), lambda ps, lr: SignDecayRef(ps, lr, 0.05), 1e-2),
}


@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
@pytest.mark.parametrize("case", list(PAPER_CASES))
def test_rule_matches_the_papers_update_equations(case, dtype, rtol, atol):
    rule, make_ref, lr = PAPER_CASES[case]
    model = small_model(dtype)
    with torch.no_grad():
        # A zero tensor: lamb's trust ratio falls back to 1 there, sign_decay leaves it be.
        model[2].bias.zero_()
    ref_params = [p.detach().clone() for p in model.parameters()]
    initial = [p.detach().clone() for p in model.parameters()]
    opt = O.Optimizer(model.parameters(), O.chain(rule, O.scale_lr(lr)))
    ref = make_ref(ref_params, lr)
    gen = torch.Generator().manual_seed(0)
    params = list(model.parameters())
    for _ in range(200):
        grads = random_grads(params, gen)
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        with torch.no_grad():
            ref.step(grads)
    for (name, p), q, p0 in zip(model.named_parameters(), ref_params, initial):
        assert not torch.equal(p, p0), f"{name} never moved"
        torch.testing.assert_close(p.detach(), q, rtol=rtol, atol=atol, msg=lambda m, name=name: f"{name}: {m}")


def test_lion_first_step_is_the_sign_of_the_gradient():
    p = [torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)]
    g = [torch.tensor([0.5, -4.0, 0.0], dtype=torch.float64)]
    (u,), state = O.lion(lr=0.1).update(g, O.lion().init(p), p)
    assert torch.equal(u, torch.tensor([0.1, -0.1, 0.0], dtype=torch.float64))
    torch.testing.assert_close(state.mu[0], 0.01 * g[0], rtol=1e-15, atol=0)


def test_lamb_trust_ratio_is_one_where_a_norm_is_zero():
    g = [torch.tensor([0.5, -4.0], dtype=torch.float64), torch.zeros(3, dtype=torch.float64)]
    p = [torch.zeros(2, dtype=torch.float64), torch.ones(3, dtype=torch.float64)]
    rule = O.lamb(lr=0.1)
    (u0, u1), _ = rule.update(g, rule.init(p), p)
    # ||p|| = 0: the Adam direction g / (|g| + eps) scaled by lr alone.
    torch.testing.assert_close(u0, 0.1 * g[0] / (g[0].abs() + 1e-6), rtol=1e-14, atol=0)
    # ||r|| = 0 (no gradient, no decay): no update and no NaN from 0 / 0.
    assert torch.equal(u1, torch.zeros(3, dtype=torch.float64))


def test_lamb_trust_ratio_makes_the_step_size_relative_to_the_weights():
    g = [torch.tensor([0.5, -4.0], dtype=torch.float64)]
    p = [torch.tensor([3.0, 4.0], dtype=torch.float64)]
    (u,), _ = O.lamb().update(g, O.lamb().init(p), p)
    # Whatever the Adam direction, the update of each tensor has the norm of its weights.
    torch.testing.assert_close(torch.linalg.vector_norm(u), torch.tensor(5.0, dtype=torch.float64), rtol=1e-14, atol=0)


# -- clip_value ------------------------------------------------------------------------------
@pytest.mark.parametrize("delta", [0.1, 1.0])
def test_clip_value_matches_torch_clip_grad_value(delta):
    m1 = small_model()
    m2 = twin(m1)
    ours = O.Optimizer(m1.parameters(), O.chain(O.clip_value(delta), O.scale_lr(0.1)))
    theirs = torch.optim.SGD(m2.parameters(), lr=0.1)
    clipped = []

    def clip_theirs(_m1, m2):
        clipped.append(sum(int((p.grad.abs() > delta).sum()) for p in m2.parameters()))
        torch.nn.utils.clip_grad_value_(m2.parameters(), delta)

    run_parity(ours, theirs, m1, m2, steps=20, scale=2.0, before_step=clip_theirs)
    assert all(c > 0 for c in clipped)  # the clip did act on every step
    assert_params_close(m1, m2, rtol=1e-12, atol=1e-15)


# -- accumulate ------------------------------------------------------------------------------
def test_accumulate_feeds_adam_the_mean_of_every_n_grads():
    m1 = small_model()
    m2 = twin(m1)
    ours = O.Optimizer(m1.parameters(), O.chain(O.accumulate(4), O.adam(), O.scale_lr(1e-2)))
    plain = O.Optimizer(m2.parameters(), O.chain(O.adam(), O.scale_lr(1e-2)))
    p1, p2 = list(m1.parameters()), list(m2.parameters())
    gen = torch.Generator().manual_seed(0)
    window: list[list[torch.Tensor]] = []
    for call in range(1, 41):
        before = [p.detach().clone() for p in p1]
        grads = random_grads(p1, gen)
        window.append(grads)
        for p, g in zip(p1, grads):
            p.grad = g.clone()
        ours.step()
        accum_state, adam_state, _ = ours.rule_state()
        assert [int(c) for c in adam_state.count] == [call // 4] * len(p1)
        if call % 4:
            assert int(accum_state.calls) == call % 4
            assert all(torch.equal(p, q) for p, q in zip(p1, before))
            continue
        for i, p in enumerate(p2):
            p.grad = sum(w[i] for w in window) / 4
        plain.step()
        window.clear()
        assert int(accum_state.calls) == 0
        assert all(torch.count_nonzero(s) == 0 for s in accum_state.sums)
        assert_params_close(m1, m2, rtol=1e-12, atol=1e-15)
    assert not torch.equal(p1[0], small_model()[0].weight)


def test_accumulate_three_is_the_mean_and_one_passes_through():
    gen = torch.Generator().manual_seed(1)
    p = [torch.randn(3, 2, generator=gen, dtype=torch.float64)]
    gs = [[torch.randn(3, 2, generator=gen, dtype=torch.float64)] for _ in range(3)]
    rule = O.accumulate(3)
    state = rule.init(p)
    for g in gs[:2]:
        out, state = rule.update(g, state, p)
        assert out is None
    (u,), state = rule.update(gs[2], state, p)
    torch.testing.assert_close(u, (gs[0][0] + gs[1][0] + gs[2][0]) / 3, rtol=1e-15, atol=0)
    (u,), _ = O.accumulate(1).update(gs[0], O.accumulate(1).init(p), p)
    assert torch.equal(u, gs[0][0])


def test_accumulate_lowered_mid_cycle_emits_the_mean_of_what_it_summed():
    p = [torch.zeros(2, dtype=torch.float64)]
    gs = [[torch.tensor([1.0, 2.0], dtype=torch.float64) * k] for k in (1, 2, 6)]
    rule = O.accumulate(4)
    state = rule.init(p)
    for g in gs[:2]:
        assert rule.update_([t.clone() for t in g], state, p)[0] is None
    (u,), state = O.adjust(rule, n=2).update_([t.clone() for t in gs[2]], state, p)
    torch.testing.assert_close(u, torch.tensor([3.0, 6.0], dtype=torch.float64), rtol=1e-15, atol=0)
    assert int(state.calls) == 0


# -- skip_nonfinite --------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_skip_nonfinite_leaves_params_and_later_state_and_counts(bad):
    m1 = small_model()
    m2 = twin(m1)
    ours = O.Optimizer(m1.parameters(), O.chain(O.skip_nonfinite(), O.adam(), O.scale_lr(1e-2)))
    clean = O.Optimizer(m2.parameters(), O.chain(O.adam(), O.scale_lr(1e-2)))
    p1, p2 = list(m1.parameters()), list(m2.parameters())
    gen = torch.Generator().manual_seed(0)
    skips = 0
    for t in range(12):
        grads = random_grads(p1, gen)
        poisoned = t in (3, 7, 8)
        for p, q, g in zip(p1, p2, grads):
            p.grad, q.grad = g.clone(), g.clone()
        if poisoned:
            p1[t % len(p1)].grad.view(-1)[0] = bad
        params_before = [p.detach().clone() for p in p1]
        adam_before = [s.clone() for s in tree_leaves(ours.rule_state()[1])] if t else None
        ours.step()
        if poisoned:
            skips += 1
            assert all(torch.equal(p, q) for p, q in zip(p1, params_before))
            assert all(torch.equal(a, b) for a, b in zip(tree_leaves(ours.rule_state()[1]), adam_before, strict=True))
        else:
            clean.step()  # the clean run never sees the poisoned steps
        assert int(ours.rule_state()[0].skipped) == skips
    assert skips == 3
    assert_params_close(m1, m2, rtol=1e-12, atol=1e-15)
    assert [int(c) for c in ours.rule_state()[1].count] == [9] * len(p1)


def test_skip_nonfinite_lets_large_finite_values_through():
    # Their sum and L2 norm overflow float32; they are still finite and must pass.
    u = [torch.full((4,), 3e38, dtype=torch.float32), torch.tensor([-3e38, 1.0], dtype=torch.float32),
         torch.zeros(0, dtype=torch.float32)]
    rule = O.skip_nonfinite()
    out, state = rule.update(u, rule.init(u), u)
    assert all(torch.equal(a, b) for a, b in zip(out, u))
    assert int(state.skipped) == 0
    # ... but an Inf beside them is caught, also where +Inf and -Inf would cancel in a sum.
    for bad in ([math.inf, 1.0], [math.inf, -math.inf]):
        v = [u[0], torch.tensor(bad, dtype=torch.float32), u[2]]
        out, state = rule.update(v, state, v)
        assert out is None
    assert int(state.skipped) == 2


def test_pure_skip_leaves_the_input_state_and_returns_none():
    rule = O.chain(O.skip_nonfinite(), O.lion())
    p = [torch.ones(3, dtype=torch.float64)]
    state = rule.init(p)
    updates, new_state = rule.update([torch.tensor([1.0, math.nan, 0.0], dtype=torch.float64)], state, p)
    assert updates is None
    assert int(new_state[0].skipped) == 1 and int(state[0].skipped) == 0


# -- optimiser state of the new rules saves and resumes exactly --------------------------------
def test_state_dict_resume_mid_accumulation_is_bit_exact():
    rule = O.chain(O.skip_nonfinite(), O.accumulate(3), O.lamb(weight_decay=0.01), O.scale_lr(1e-2))
    m_ref = small_model()
    m_a = twin(m_ref)

    def train(model, opt, calls, start):
        for t in range(start, start + calls):
            gen = torch.Generator().manual_seed(t)
            for p in model.parameters():
                p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            opt.step()

    ref = O.Optimizer(m_ref.parameters(), rule)
    train(m_ref, ref, 14, 0)
    opt_a = O.Optimizer(m_a.parameters(), rule)
    train(m_a, opt_a, 7, 0)  # 7 calls: one pending gradient in the accumulator
    buf = io.BytesIO()
    torch.save({"model": m_a.state_dict(), "opt": opt_a.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    m_b = small_model(seed=5)
    m_b.load_state_dict(saved["model"])
    opt_b = O.Optimizer(m_b.parameters(), rule)
    opt_b.load_state_dict(saved["opt"])
    assert int(opt_b.rule_state()[1].calls) == 1
    train(m_b, opt_b, 7, 7)
    assert all(torch.equal(a, b) for a, b in zip(m_ref.parameters(), m_b.parameters()))


def test_states_round_trip_through_safetensors(tmp_path):
    rule = O.chain(O.skip_nonfinite(), O.accumulate(3), O.lion(), O.adabelief(), O.lamb(), O.scale_lr(1e-2))
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(3, 2, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen)]
    state = rule.init(params)
    for t in range(4):
        grads = random_grads(params, gen)
        if t == 1:
            grads[0][0, 0] = math.nan
        _, state = rule.update_(grads, state, params)
    O.save_state(tmp_path / "state.safetensors", state, rule=rule)
    loaded = O.load_state(tmp_path / "state.safetensors", rule.init(params), rule=rule)
    assert int(loaded[0].skipped) == 1 and int(loaded[1].calls) == 0
    for a, b in zip(tree_leaves(state), tree_leaves(loaded), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)


# -- pure update vs update_ -------------------------------------------------------------------
RULES = [
    O.lion(), O.adabelief(), O.lamb(weight_decay=0.1), O.sign_decay(0.1), O.clip_value(0.5),
    O.accumulate(2), O.skip_nonfinite(),
    O.chain(O.skip_nonfinite(), O.accumulate(3), O.adabelief(), O.scale_lr(1e-2)),
    O.chain(O.clip_value(1.0), O.sign_decay(1e-2), O.lion(), O.scale_lr(1e-3)),
]

shapes = st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple), min_size=1, max_size=4)


@settings(max_examples=20, deadline=None)
@given(shapes=shapes, dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**16),
       rule_index=st.integers(0, len(RULES) - 1), warm=st.integers(0, 2))
def test_pure_update_leaves_inputs_untouched_and_equals_update_(shapes, dtype, seed, rule_index, warm):
    rule = RULES[rule_index]
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    grads = [torch.randn(s, generator=gen, dtype=dtype) * 3 for s in shapes]
    state = rule.init(params)
    for _ in range(warm):  # non-zero moments, counts > 0, an accumulator part-way
        _, state = rule.update_([g.clone() for g in grads], state, params)
    saved = ([g.clone() for g in grads], [t.clone() for t in tree_leaves(state)], [p.clone() for p in params])

    updates, new_state = rule.update(grads, state, params)

    for before, after in zip(saved, (grads, tree_leaves(state), params)):
        assert len(before) == len(after)
        for b, a in zip(before, after):
            assert torch.equal(b, a)
    updates_, state_ = rule.update_([g.clone() for g in grads], tree_map(torch.clone, state),
                                    [p.clone() for p in params])
    assert (updates is None) == (updates_ is None)
    if updates is not None:
        assert len(updates) == len(updates_) == len(params)
        for u, v, p in zip(updates, updates_, params):
            assert u.dtype == p.dtype and u.shape == p.shape
            assert torch.equal(u, v)
    for a, b in zip(tree_leaves(new_state), tree_leaves(state_), strict=True):
        assert torch.equal(a, b)


# -- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize(("make", "pattern"), [
    (lambda: O.lion(lr=-1.0), r"^lion: lr must be in \[0\.0, inf\), got -1\.0$"),
    (lambda: O.lion(b1=1.0), r"^lion: b1 must be in \[0\.0, 1\.0\), got 1\.0$"),
    (lambda: O.lion(b2=-0.1), r"^lion: b2 must be in \[0\.0, 1\.0\), got -0\.1$"),
    (lambda: O.adabelief(b2=1.0), r"^adabelief: b2 must be in \[0\.0, 1\.0\), got 1\.0$"),
    (lambda: O.adabelief(eps=0.0), r"^adabelief: eps must be in \(0\.0, inf\), got 0\.0$"),
    (lambda: O.lamb(eps=-1e-6), r"^lamb: eps must be in \(0\.0, inf\), got -1e-06$"),
    (lambda: O.lamb(weight_decay=-0.1), r"^lamb: weight_decay must be in \[0\.0, inf\), got -0\.1$"),
    (lambda: O.lamb(b1=float("nan")), r"^lamb: b1 must be a number, got nan$"),
    (lambda: O.sign_decay(-1e-3), r"^sign_decay: decay must be in \[0\.0, inf\), got -0\.001$"),
    (lambda: O.clip_value(0.0), r"^clip_value: delta must be in \(0\.0, inf\), got 0\.0$"),
    (lambda: O.clip_value("big"), r"^clip_value: delta must be a number, got 'big'$"),
    (lambda: O.accumulate(0), r"^accumulate: n must be in \[1, inf\), got 0$"),
    (lambda: O.accumulate(2.5), r"^accumulate: n must be a whole number >= 1, got 2\.5$"),
    (lambda: O.accumulate(math.inf), r"^accumulate: n must be a whole number >= 1, got inf$"),
    (lambda: O.accumulate(True), r"^accumulate: n must be a number, got True$"),
    (lambda: O.accumulate(4).replace(n=1.5), r"^accumulate: n must be a whole number >= 1, got 1\.5$"),
])
def test_hyperparameter_errors_name_rule_field_value_and_range(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_accumulate_n_stays_an_int():
    assert type(O.accumulate(4.0).n) is int and O.accumulate(4.0) == O.accumulate(4)
    assert type(O.accumulate(4).replace(n=2.0).n) is int


def test_spec_errors_name_the_place():
    with pytest.raises(ValueError, match=r"^optim\.chain\[0\]\.accumulate: n must be in \[1, inf\), got 0$"):
        O.rule_from_spec({"chain": [{"accumulate": {"n": 0}}, "adam"]})
    with pytest.raises(ValueError, match=r"^optim\.lion: unknown hyperparameter 'eps'; allowed: lr, b1, b2$"):
        O.rule_from_spec({"lion": {"eps": 1e-8}})


# -- spec, str, code ------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", RULES + [O.lion(lr=1e-4, b1=0.95, b2=0.98), O.accumulate(8)], ids=str)
def test_spec_round_trip_and_code(rule):
    spec = rule.to_spec()
    assert O.rule_from_spec(spec) == rule
    assert O.rule_from_spec(spec).to_spec() == spec
    assert str(O.rule_from_spec(spec)) == str(rule)
    assert eval(rule.to_code(), {"O": O}) == rule  # the code shown to users makes the same rule
    assert rule.may_skip == any(r.name in ("accumulate", "skip_nonfinite") for r in getattr(rule, "rules", (rule,)))


def test_str_and_repr_short_forms():
    assert str(O.lion()) == "lion"
    assert str(O.lion(b2=0.98)) == "lion(b2=0.98)"
    assert str(O.adabelief(eps=1e-8)) == "adabelief(eps=1e-8)"
    assert str(O.lamb(weight_decay=0.01)) == "lamb(weight_decay=0.01)"
    assert str(O.sign_decay()) == "sign_decay(1e-3)"
    assert str(O.clip_value(1.0)) == "clip_value(1.0)"
    assert str(O.accumulate(4)) == "accumulate(4)"
    assert str(O.skip_nonfinite()) == "skip_nonfinite"
    assert O.skip_nonfinite().to_code() == "O.skip_nonfinite()"
    assert repr(O.accumulate(4)) == "Accumulate(n=4)"
    assert repr(O.lion()) == "Lion(lr=1.0, b1=0.9, b2=0.99)"


def test_rules_are_registered_by_name():
    for name in ("lion", "adabelief", "lamb", "sign_decay", "clip_value", "accumulate", "skip_nonfinite"):
        assert O.rule_from_spec(name).name == name
