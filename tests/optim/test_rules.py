"""Rules on their own: pure vs in-place update, validation errors, spec round trip."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchdeck import optim as O
from torchdeck._tree import tree_leaves, tree_map

RULES = [
    O.sgd(0.1),
    O.momentum(rho=0.9, dampening=0.1),
    O.adam(),
    O.weight_decay(0.1),
    O.clip_norm(0.5),
    O.scale_lr(3e-3),
    O.chain(O.clip_norm(1.0), O.weight_decay(1e-2), O.adam(), O.scale_lr(3e-3)),
    O.chain(O.weight_decay(0.1), O.momentum(rho=0.5), O.scale_lr(0.1)),
]

shapes = st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple), min_size=1, max_size=4)


@settings(max_examples=25, deadline=None)
@given(shapes=shapes, dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**16),
       rule_index=st.integers(0, len(RULES) - 1), warm=st.booleans())
def test_pure_update_leaves_inputs_untouched_and_equals_update_(shapes, dtype, seed, rule_index, warm):
    rule = RULES[rule_index]
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    grads = [torch.randn(s, generator=gen, dtype=dtype) * 3 for s in shapes]
    state = rule.init(params)
    if warm:  # a state with non-zero moments and count > 0
        _, state = rule.update_([g.clone() for g in grads], state, params)
    saved = ([g.clone() for g in grads], [t.clone() for t in tree_leaves(state)], [p.clone() for p in params])

    updates, new_state = rule.update(grads, state, params)

    for before, after in zip(saved, (grads, tree_leaves(state), params)):
        assert len(before) == len(after)
        for b, a in zip(before, after):
            assert torch.equal(b, a)
    # The fast path on copies gives the same numbers.
    updates_, state_ = rule.update_([g.clone() for g in grads], tree_map(torch.clone, state),
                                    [p.clone() for p in params])
    assert len(updates) == len(updates_) == len(params)
    for u, v, p in zip(updates, updates_, params):
        assert u.dtype == p.dtype and u.shape == p.shape
        assert torch.equal(u, v)
    for a, b in zip(tree_leaves(new_state), tree_leaves(state_)):
        assert torch.equal(a, b)


def test_pure_update_matches_the_analytic_adam_first_step():
    p = [torch.tensor([1.0, 2.0], dtype=torch.float64)]
    g = [torch.tensor([0.5, -4.0], dtype=torch.float64)]
    rule = O.adam(lr=0.1, eps=1e-8)
    (u,), state = rule.update(g, rule.init(p), p)
    # After one step m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps).
    expected = 0.1 * g[0] / (g[0].abs() + 1e-8)
    torch.testing.assert_close(u, expected, rtol=1e-12, atol=0)
    assert [int(c) for c in state.count] == [1]


def test_clip_norm_scales_to_max_norm_and_leaves_small_updates():
    big = [torch.tensor([3.0, 4.0], dtype=torch.float64)]
    (u,), _ = O.clip_norm(1.0).update(big, O.EmptyState(), big)
    torch.testing.assert_close(u, torch.tensor([0.6, 0.8], dtype=torch.float64), rtol=1e-5, atol=0)
    small = [torch.tensor([0.3, 0.4], dtype=torch.float64)]
    (u,), _ = O.clip_norm(1.0).update(small, O.EmptyState(), small)
    assert torch.equal(u, small[0])


# -- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize(("make", "pattern"), [
    (lambda: O.adam(lr=-1e-3), r"^adam: lr must be in \[0\.0, inf\), got -0\.001$"),
    (lambda: O.scale_lr(-1.0), r"^scale_lr: lr must be in \[0\.0, inf\), got -1\.0$"),
    (lambda: O.sgd(-0.5), r"^sgd: lr must be in \[0\.0, inf\), got -0\.5$"),
    (lambda: O.adam(b1=1.0), r"^adam: b1 must be in \[0\.0, 1\.0\), got 1\.0$"),
    (lambda: O.adam(b1=-0.1), r"^adam: b1 must be in \[0\.0, 1\.0\), got -0\.1$"),
    (lambda: O.adam(b2=1.5), r"^adam: b2 must be in \[0\.0, 1\.0\), got 1\.5$"),
    (lambda: O.adam(eps=0.0), r"^adam: eps must be in \(0\.0, inf\), got 0\.0$"),
    (lambda: O.adam(eps=-1e-8), r"^adam: eps must be in \(0\.0, inf\), got -1e-08$"),
    (lambda: O.momentum(rho=1.0), r"^momentum: rho must be in \[0\.0, 1\.0\), got 1\.0$"),
    (lambda: O.momentum(dampening=1.5), r"^momentum: dampening must be in \[0\.0, 1\.0\], got 1\.5$"),
    (lambda: O.clip_norm(0.0), r"^clip_norm: max_norm must be in \(0\.0, inf\), got 0\.0$"),
    (lambda: O.weight_decay(-1e-4), r"^weight_decay: decay must be in \[0\.0, inf\), got -0\.0001$"),
    (lambda: O.adam(lr=float("nan")), r"^adam: lr must be a number, got nan$"),
    (lambda: O.adam(lr="fast"), r"^adam: lr must be a number, got 'fast'$"),
    (lambda: O.adam(b1=True), r"^adam: b1 must be a number, got True$"),
])
def test_hyperparameter_errors_name_rule_field_value_and_range(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


@pytest.mark.parametrize(("spec", "pattern"), [
    ({"adamz": {}}, r"^optim: unknown rule 'adamz'; allowed: chain, .*\badam, .*\bweight_decay\b"),
    ("rms_prop", r"^optim: unknown rule 'rms_prop'; allowed: chain, "),
    ({"adam": {"beta1": 0.9}}, r"^optim\.adam: unknown hyperparameter 'beta1'; allowed: lr, b1, b2, eps$"),
    ({"chain": [{"adam": {}}, {"scale_lr": {"lr": -1}}]},
     r"^optim\.chain\[1\]\.scale_lr: lr must be in \[0\.0, inf\), got -1$"),
    ({"chain": [{"clip_norm": {"max_norm": 1}}, {"adam": {"b1": 2}}]},
     r"^optim\.chain\[1\]\.adam: b1 must be in \[0\.0, 1\.0\), got 2$"),
    ({"chain": [{"sgd": {}}, {"nesterow": {}}]}, r"^optim\.chain\[1\]: unknown rule 'nesterow'; allowed: "),
    ({"chain": {"adam": {}}}, r"^optim\.chain: expected a list of rules, got "),
    ({"adam": {}, "sgd": {}}, r"^optim: expected a rule name or a one-key mapping"),
    ({"adam": [0.9]}, r"^optim\.adam: expected a mapping of hyperparameters, got \[0\.9\]$"),
])
def test_rule_from_spec_errors_name_the_place_value_and_allowed(spec, pattern):
    with pytest.raises(ValueError, match=pattern):
        O.rule_from_spec(spec)


def test_replace_validates_and_names_unknown_hyperparameter():
    with pytest.raises(ValueError, match=r"^adam: unknown hyperparameter 'momentum'; allowed: lr, b1, b2, eps$"):
        O.adam().replace(momentum=0.9)
    with pytest.raises(ValueError, match=r"^adam: lr must be in \[0\.0, inf\), got -1$"):
        O.adam().replace(lr=-1)


# -- spec round trip -----------------------------------------------------------------------
@pytest.mark.parametrize("rule", RULES + [O.adam(lr=1e-3, b1=0.8, b2=0.95, eps=1e-6)])
def test_spec_round_trip(rule):
    spec = rule.to_spec()
    assert O.rule_from_spec(spec) == rule
    assert O.rule_from_spec(spec).to_spec() == spec
    assert str(O.rule_from_spec(spec)) == str(rule)


def test_rule_from_spec_short_forms():
    assert O.rule_from_spec("adam") == O.adam()
    assert O.rule_from_spec({"adam": None}) == O.adam()
    assert O.rule_from_spec({"scale_lr": {"lr": 1}}) == O.scale_lr(1.0)
    assert isinstance(O.rule_from_spec({"scale_lr": {"lr": 1}}).lr, float)


def test_spec_round_trip_through_yaml():
    yaml = pytest.importorskip("yaml")
    rule = O.chain(O.clip_norm(1.0), O.adam(eps=1e-7), O.scale_lr(3e-3))
    assert O.rule_from_spec(yaml.safe_load(yaml.safe_dump(rule.to_spec()))) == rule


def test_str_short_forms():
    assert str(O.adam()) == "adam"
    assert str(O.adam(b1=0.8)) == "adam(b1=0.8)"
    assert str(O.clip_norm(1.0)) == "clip_norm(1.0)"
    assert str(O.scale_lr(3e-3)) == "scale_lr(3e-3)"
    assert str(O.momentum(rho=0.95)) == "momentum(rho=0.95)"
    assert str(O.weight_decay(1e-2)) == "weight_decay(0.01)"
