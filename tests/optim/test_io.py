"""``save_state`` / ``load_state`` (safetensors) and ``state_dict`` resume with partition and freeze."""

from __future__ import annotations

import io
import json

import pytest
import torch
from safetensors import safe_open

from torchdeck import optim as O
from torchdeck._tree import tree_leaves

from ._helpers import random_grads, small_model, twin

RULE = O.chain(O.clip_norm(1.0), O.weight_decay(1e-2), O.adam(), O.scale_lr(3e-2))
PARTITION = O.partition({"*.bias": O.chain(O.momentum(0.9), O.scale_lr(1e-2)), "*": O.adamw(lr=3e-3)})


def _train(model, opt, steps, *, start=0):
    """Deterministic steps on a real loss; the batch depends only on the step index."""
    for t in range(start, start + steps):
        gen = torch.Generator().manual_seed(1000 + t)
        x = torch.randn(8, 5, generator=gen, dtype=torch.float64)
        y = torch.randn(8, 3, generator=gen, dtype=torch.float64)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _assert_same_state(a: O.Optimizer, b: O.Optimizer) -> None:
    assert len(a.param_groups) == len(b.param_groups)
    for i in range(len(a.param_groups)):
        for x, y in zip(tree_leaves(a.rule_state(i)), tree_leaves(b.rule_state(i)), strict=True):
            assert x.dtype == y.dtype and torch.equal(x, y)


def _resume(rule, tmp_path, *, between=None, save=None, load=None):
    """Train 30 steps in one go, and 12 + save + load into a fresh optimiser + 18; return both models."""
    m_ref = small_model()
    m_a = twin(m_ref)
    ref = O.Optimizer(m_ref.named_parameters(), rule)
    opt_a = O.Optimizer(m_a.named_parameters(), rule)
    for m, opt in ((m_ref, ref), (m_a, opt_a)):
        _train(m, opt, 12)
        if between is not None:
            between(m, opt)
    _train(m_ref, ref, 18, start=12)
    m_b = small_model(seed=123)
    m_b.load_state_dict(m_a.state_dict())
    opt_b = O.Optimizer(m_b.named_parameters(), rule)
    load(opt_b, save(opt_a))
    _train(m_b, opt_b, 18, start=12)
    return m_ref, ref, m_b, opt_b


def _via_safetensors(tmp_path):
    path = tmp_path / "opt.safetensors"

    def save(opt):
        O.save_state(path, opt)
        return path

    return save, lambda opt, p: O.load_state(p, opt)


def _via_state_dict():
    def save(opt):
        buf = io.BytesIO()
        torch.save(opt.state_dict(), buf)
        buf.seek(0)
        return torch.load(buf, weights_only=True)

    return save, lambda opt, sd: opt.load_state_dict(sd)


def _freeze_and_adjust(m, opt):
    O.freeze(opt, m[0])
    O.adjust(opt, group=1 if len(opt.param_groups) > 1 else None, lr=1e-3)


@pytest.mark.parametrize("how", ["safetensors", "state_dict"])
@pytest.mark.parametrize("rule", [RULE, PARTITION], ids=["chain", "partition"])
def test_resume_is_bit_exact_with_partition_and_freeze(rule, how, tmp_path):
    save, load = _via_safetensors(tmp_path) if how == "safetensors" else _via_state_dict()
    m_ref, ref, m_b, opt_b = _resume(rule, tmp_path, between=_freeze_and_adjust, save=save, load=load)
    for a, b in zip(m_ref.parameters(), m_b.parameters()):
        assert torch.equal(a, b)
    _assert_same_state(ref, opt_b)
    assert [g["lr"] for g in opt_b.param_groups] == [g["lr"] for g in ref.param_groups]
    assert {id(p) for p in opt_b.frozen_params()} == {id(p) for p in m_b[0].parameters()}


def test_a_fresh_optimiser_does_not_resume():
    """Guards the resume test: without the loaded state the run differs."""
    m_ref, _, m_b, _ = _resume(RULE, None, save=lambda opt: None, load=lambda opt, _: None)
    assert any(not torch.equal(a, b) for a, b in zip(m_ref.parameters(), m_b.parameters()))


def test_keys_are_readable_and_the_metadata_records_the_rules(tmp_path):
    m = small_model()
    opt = O.Optimizer(m.named_parameters(), RULE)
    _train(m, opt, 3)
    path = tmp_path / "opt.safetensors"
    O.save_state(path, opt)
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        meta = json.loads(f.metadata()["torchdeck.optim"])
        mu3 = f.get_tensor("group0.chain.2.adam.mu.3")
    assert keys == {f"group0.chain.2.adam.{field}.{j}" for field in ("count", "mu", "nu") for j in range(4)}
    assert torch.equal(mu3, opt.rule_state()[2].mu[3])
    assert meta["groups"][0]["rule"] == RULE.to_spec()
    assert meta["groups"][0]["entries"]["param_names"] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    p_opt = O.Optimizer(m.named_parameters(), PARTITION)
    _train(m, p_opt, 1)
    assert "group1.adamw.0.adam.nu.1" in O.state_keys(p_opt.rule_state(1), p_opt.group_rule(1), root="group1")
    assert "group0.chain.0.momentum.velocity.0" in O.state_keys(p_opt.rule_state(0), p_opt.group_rule(0), root="group0")


def test_a_lone_state_round_trips_exactly(tmp_path):
    """The functional API: a state from rule.update saved and loaded against a template from rule.init."""
    m = small_model()
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach() for p in m.parameters()]
    rule = O.chain(O.clip_norm(1.0), PARTITION.bind(names))
    state = rule.init(params)
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        _, state = rule.update(random_grads(params, gen), state, params)
    for with_rule in (True, False):
        path = tmp_path / f"state{with_rule}.safetensors"
        O.save_state(path, state, rule=rule if with_rule else None)
        loaded = O.load_state(path, rule.init(params))
        assert type(loaded[1][0][0]) is type(state[1][0][0])  # MomentumState again
        for a, b in zip(tree_leaves(loaded), tree_leaves(state), strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b)
    with safe_open(str(tmp_path / "stateTrue.safetensors"), framework="pt") as f:
        assert "state.chain.1.partition[*].adamw.0.adam.mu.0" in set(f.keys())


def test_loading_another_rule_fails_clearly_and_changes_nothing(tmp_path):
    m = small_model()
    opt = O.Optimizer(m.named_parameters(), O.chain(O.adam(), O.scale_lr(1e-3)))
    _train(m, opt, 2)
    path = tmp_path / "adam.safetensors"
    O.save_state(path, opt)
    m_other = small_model()
    other = O.Optimizer(m_other.named_parameters(), O.chain(O.momentum(), O.scale_lr(1e-3)))
    _train(m_other, other, 1)
    before = [t.clone() for t in tree_leaves(other.rule_state())]
    with pytest.raises(ValueError, match=r"holds the state of another rule structure \(saved rule: adam → scale_lr\(1e-3\); "
                                         r"this rule: momentum → scale_lr\(1e-3\)\)\. Keys missing from the file: "
                                         r"group0\.chain\.0\.momentum\.count\.0"):
        O.load_state(path, other)
    assert all(torch.equal(a, b) for a, b in zip(tree_leaves(other.rule_state()), before))
    wider = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    with pytest.raises(ValueError, match=r"group0\.chain\.0\.adam\.count\.0|has shape \(4, 5\) in the file, \(6, 5\) here"):
        O.load_state(path, O.Optimizer(wider.named_parameters(), O.chain(O.adam(), O.scale_lr(1e-3))))
    with pytest.raises(ValueError, match=r"group 0 parameter 0 is '0\.weight' in the file, 'w' here"):
        O.load_state(path, O.Optimizer([(n.replace("0.weight", "w"), p) for n, p in m.named_parameters()], O.adam()))
    with pytest.raises(ValueError, match=r"holds 1 param groups, the optimiser has 2"):
        O.load_state(path, O.Optimizer(m.named_parameters(), PARTITION))
    with pytest.raises(ValueError, match=r"holds an Optimizer's state; load it with load_state\(path, opt\)"):
        O.load_state(path, O.adam().init(list(m.parameters())))


def test_load_state_rejects_files_it_did_not_write(tmp_path):
    m = small_model()
    opt = O.Optimizer(m.named_parameters(), O.adam())
    with pytest.raises(ValueError, match=r"load_state: no file at '.*missing\.safetensors'"):
        O.load_state(tmp_path / "missing.safetensors", opt)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"is not a readable safetensors file"):
        O.load_state(junk, opt)
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(tmp_path / "weights.safetensors"))
    with pytest.raises(ValueError, match=r"has no 'torchdeck\.optim' metadata; it was not written by save_state"):
        O.load_state(tmp_path / "weights.safetensors", opt)
    with pytest.raises(ValueError, match=r"save_state: SGD is not a torchdeck Optimizer"):
        O.save_state(tmp_path / "x.safetensors", torch.optim.SGD(m.parameters(), lr=0.1))


def test_state_before_the_first_step_round_trips(tmp_path):
    m = small_model()
    opt = O.Optimizer(m.named_parameters(), PARTITION)
    O.adjust(opt, group="*", lr=0.5)
    O.save_state(tmp_path / "s.safetensors", opt)
    fresh = O.Optimizer(twin(m).named_parameters(), PARTITION)
    O.load_state(tmp_path / "s.safetensors", fresh)
    assert fresh.rule_state(0) is None and fresh.param_groups[1]["lr"] == 0.5


def test_state_dict_of_another_partition_is_refused_before_anything_changes():
    m = small_model()
    opt = O.Optimizer(m.named_parameters(), PARTITION)
    _train(m, opt, 2)
    other_rule = O.partition({"*.weight": O.adamw(), "*": O.chain(O.momentum(0.9), O.scale_lr(1e-2))})
    other = O.Optimizer(twin(m).named_parameters(), other_rule)
    with pytest.raises(ValueError, match=r"state_dict param group 0 is named '\*\.bias', the optimiser's is '\*\.weight'; "
                                         r"was it saved from another partition\?"):
        other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["name"] == "*.weight" and other.rule_state(0) is None


@pytest.mark.parametrize("copy_with", ["deepcopy", "pickle"])
def test_a_copied_optimiser_keeps_its_rules_state_and_frozen_parameters(copy_with):
    import copy
    import pickle

    m = small_model()
    opt = O.Optimizer(m.named_parameters(), PARTITION)
    _train(m, opt, 3)
    O.freeze(opt, "0.*")
    if copy_with == "deepcopy":
        m2, opt2 = copy.deepcopy((m, opt))
    else:
        m2, opt2 = pickle.loads(pickle.dumps((m, opt)))
    _train(m, opt, 4, start=3)
    _train(m2, opt2, 4, start=3)
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), m2.parameters()))
    _assert_same_state(opt, opt2)
    assert {id(p) for p in opt2.frozen_params()} == {id(p) for p in m2[0].parameters()}
