"""``partition``: rules by parameter name, one param group per pattern; the functional core via ``bind``."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from torchdeck import optim as O
from torchdeck._tree import tree_leaves

from ._helpers import assert_params_close, random_grads, run_parity, small_model, twin

NO_DECAY_ON_BIASES = {"*.bias": O.chain(O.adam(), O.scale_lr(1e-2)), "*": O.adamw(lr=3e-3, decay=0.1)}


def _torch_adamw_two_groups(model: nn.Module) -> torch.optim.AdamW:
    biases = [p for n, p in model.named_parameters() if n.endswith(".bias")]
    weights = [p for n, p in model.named_parameters() if not n.endswith(".bias")]
    return torch.optim.AdamW([{"params": biases, "lr": 1e-2, "weight_decay": 0.0},
                              {"params": weights, "lr": 3e-3, "weight_decay": 0.1}])


def test_partition_matches_torch_adamw_with_a_no_decay_bias_group_under_a_scheduler():
    m1 = small_model()
    m2 = twin(m1)
    ours = O.Optimizer(m1.named_parameters(), O.partition(NO_DECAY_ON_BIASES))
    theirs = _torch_adamw_two_groups(m2)
    s1 = torch.optim.lr_scheduler.CosineAnnealingLR(ours, T_max=300, eta_min=1e-4)
    s2 = torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=300, eta_min=1e-4)
    for t in range(200):
        run_parity(ours, theirs, m1, m2, steps=1, seed=t)
        s1.step()
        s2.step()
        assert [g["lr"] for g in ours.param_groups] == [g["lr"] for g in theirs.param_groups]
    assert_params_close(m1, m2, rtol=1e-10, atol=1e-14)
    # the guard: the two groups really ran different rates and decays
    assert ours.param_groups[0]["lr"] != ours.param_groups[1]["lr"]


def test_one_param_group_per_pattern_with_its_rules_hyperparameters():
    m = small_model()
    opt = O.Optimizer(m.named_parameters(), O.partition(NO_DECAY_ON_BIASES))
    bias_group, rest = opt.param_groups
    assert bias_group["name"] == "*.bias" and rest["name"] == "*"
    assert bias_group["param_names"] == ["0.bias", "2.bias"]
    assert rest["param_names"] == ["0.weight", "2.weight"]
    assert bias_group["params"][0] is m[0].bias
    assert "decay" not in bias_group and rest["decay"] == 0.1
    assert bias_group["lr"] == 1e-2 and rest["lr"] == 3e-3
    assert opt.group_rule(1) == O.adamw(lr=3e-3, decay=0.1)


def test_adjust_per_group_and_per_hyperparameter_owner():
    m = small_model()
    opt = O.Optimizer(m.named_parameters(), O.partition(NO_DECAY_ON_BIASES))
    O.adjust(opt, group="*.bias", lr=1e-4)
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 3e-3]
    O.adjust(opt, decay=0.5)  # only the adamw group has a decay
    assert opt.param_groups[1]["decay"] == 0.5 and "decay" not in opt.param_groups[0]
    O.adjust(opt, group=[0, "*"], b1=0.5)
    assert [g["b1"] for g in opt.param_groups] == [0.5, 0.5]
    with pytest.raises(ValueError, match=r"adjust: no param group has hyperparameter 'rho'; "
                                         r"allowed: adam\.lr, b1, b2, decay, eps, lr"):
        O.adjust(opt, rho=0.9)
    with pytest.raises(ValueError, match=r"adjust: no param group named 'bias'; named groups: '\*\.bias', '\*'"):
        O.adjust(opt, group="bias", lr=1.0)
    with pytest.raises(ValueError, match=r"adamw: decay must be in \[0\.0, inf\), got -1"):
        O.adjust(opt, lr=0.1, decay=-1)
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 3e-3]  # a refused adjust changes nothing
    # the adjusted values are what the step uses: one step of the bias group's adam at lr 1e-4
    m[0].bias.grad = torch.ones_like(m[0].bias)
    before = m[0].bias.detach().clone()
    opt.step()
    torch.testing.assert_close(before - m[0].bias, torch.full_like(before, 1e-4), rtol=1e-6, atol=0)


def test_catch_all_takes_only_what_the_others_leave_and_alternatives_share_a_group():
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3), nn.Linear(3, 2))
    names = [n for n, _ in model.named_parameters()]
    rule = O.partition({"*.bias|1.*": O.sgd(0.1), "*": O.adamw()})
    opt = O.Optimizer(model.named_parameters(), rule)
    assert opt.param_groups[0]["param_names"] == ["0.bias", "1.weight", "1.bias", "2.bias"]
    assert opt.param_groups[1]["param_names"] == ["0.weight", "2.weight"]
    assert sorted(opt.param_groups[0]["param_names"] + opt.param_groups[1]["param_names"]) == sorted(names)


@pytest.mark.parametrize(("parts", "message"), [
    ({"*.bias": O.sgd(), "0.*": O.adam()},
     r"partition: parameter '0\.bias' matches both '\*\.bias' and '0\.\*'; each parameter must match exactly one pattern"),
    ({"*.bias": O.sgd()},
     r"partition: parameters '0\.weight', '2\.weight' match no pattern \(patterns: '\*\.bias'\); add a pattern for them "
     r"or a catch-all '\*'"),
    ({"*.bias": O.sgd(), "*norm*": O.sgd(), "*": O.adam()},
     r"partition: pattern '\*norm\*' is unused: it matches no parameter; parameters are '0\.weight', '0\.bias', "),
    ({"*.weight": O.sgd(), "*.bias": O.sgd(), "*": O.adam()},
     r"partition: pattern '\*' is unused: no parameter is left for the catch-all"),
])
def test_partition_errors_name_the_parameters_and_patterns(parts, message):
    m = small_model()
    with pytest.raises(ValueError, match=message):
        O.Optimizer(m.named_parameters(), O.partition(parts))


def test_partition_needs_names():
    m = small_model()
    with pytest.raises(ValueError, match=r"partition matches parameter names, but the parameters came without names; "
                                         r"pass model\.named_parameters\(\) instead of model\.parameters\(\)"):
        O.Optimizer(m.parameters(), O.partition(NO_DECAY_ON_BIASES))
    with pytest.raises(ValueError, match=r"a partition makes the param groups itself"):
        O.Optimizer([{"params": list(m.named_parameters())}], O.partition(NO_DECAY_ON_BIASES))
    with pytest.raises(ValueError, match=r"partition matches parameter names: pass model\.named_parameters\(\) to "
                                         r"Optimizer, or bind the names"):
        O.partition(NO_DECAY_ON_BIASES).init(list(m.parameters()))


def test_partition_must_be_outermost_in_an_optimizer_and_not_nested():
    m = small_model()
    with pytest.raises(ValueError, match=r"a partition must be the outermost rule; put chains inside it"):
        O.Optimizer(m.named_parameters(), O.chain(O.clip_norm(1.0), O.partition(NO_DECAY_ON_BIASES)))
    with pytest.raises(ValueError, match=r"partition: the rule for '\*' is itself a partition"):
        O.partition({"*": O.partition({"*": O.sgd()})})
    with pytest.raises(ValueError, match=r"partition: expected a non-empty mapping"):
        O.partition({})
    with pytest.raises(ValueError, match=r"partition: patterns must be non-empty glob strings, got '\*\|'"):
        O.partition({"*|": O.sgd()})
    with pytest.raises(TypeError, match=r"partition: the rule for '\*' must be a rule, got 'adam'"):
        O.partition({"*": "adam"})


def test_add_param_group_to_a_partition_needs_a_pattern_name():
    m = small_model()
    extra = nn.Linear(2, 2).to(torch.float64)
    opt = O.Optimizer(m.named_parameters(), O.partition(NO_DECAY_ON_BIASES))
    with pytest.raises(ValueError, match=r"a partitioned optimiser's group needs 'name' set to one of its patterns "
                                         r"\('\*\.bias', '\*'\), got None"):
        opt.add_param_group({"params": list(extra.named_parameters())})
    assert len(opt.param_groups) == 2
    opt.add_param_group({"params": [("extra.bias", extra.bias)], "name": "*.bias", "lr": 0.5})
    assert opt.group_rule(2) == O.chain(O.adam(), O.scale_lr(0.5))


def test_bound_partition_equals_its_rules_on_their_parameters():
    """Functional core: ``bind(names)`` fixes the split; each part's rule sees only its parameters."""
    m = small_model()
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach() for p in m.parameters()]
    bias_rule, rest_rule = NO_DECAY_ON_BIASES["*.bias"], NO_DECAY_ON_BIASES["*"]
    rule = O.partition(NO_DECAY_ON_BIASES).bind(names)
    bias_ix, rest_ix = [1, 3], [0, 2]
    state = rule.init(params)
    s_bias, s_rest = bias_rule.init([params[j] for j in bias_ix]), rest_rule.init([params[j] for j in rest_ix])
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        grads = random_grads(params, gen)
        snapshot = [g.clone() for g in grads]
        updates, state = rule.update(grads, state, params)
        assert all(torch.equal(a, b) for a, b in zip(grads, snapshot))  # pure: inputs untouched
        u_bias, s_bias = bias_rule.update([grads[j] for j in bias_ix], s_bias, [params[j] for j in bias_ix])
        u_rest, s_rest = rest_rule.update([grads[j] for j in rest_ix], s_rest, [params[j] for j in rest_ix])
        for j, u in zip(bias_ix + rest_ix, u_bias + u_rest):
            assert torch.equal(updates[j], u)
    assert all(torch.equal(a, b) for a, b in zip(tree_leaves(state), tree_leaves((s_bias, s_rest))))
    with pytest.raises(ValueError, match=r"partition: bound to 4 parameter names, got 3 tensors"):
        rule.init(params[:3])


def test_bound_partition_where_one_part_skips_leaves_its_parameters():
    names = ["a.weight", "a.bias"]
    params = [torch.ones(2, dtype=torch.float64), torch.ones(1, dtype=torch.float64)]
    rule = O.partition({"*.bias": O.accumulate(2), "*": O.sgd(0.5)}).bind(names)
    state = rule.init(params)
    grads = [torch.full((2,), 2.0, dtype=torch.float64), torch.full((1,), 2.0, dtype=torch.float64)]
    updates, state = rule.update(grads, state, params)
    torch.testing.assert_close(updates[0], torch.full((2,), 1.0, dtype=torch.float64))
    assert torch.equal(updates[1], torch.zeros(1, dtype=torch.float64))  # accumulating: nothing yet
    only_skipping = O.partition({"*": O.accumulate(2)}).bind(names)
    assert only_skipping.update(grads, only_skipping.init(params), params)[0] is None


def test_partition_spec_round_trip_and_errors_name_the_place():
    rule = O.partition(NO_DECAY_ON_BIASES)
    spec = rule.to_spec()
    assert spec == {"partition": {"*.bias": {"chain": [{"adam": O.adam().hyper()}, {"scale_lr": {"lr": 1e-2}}]},
                                  "*": O.adamw(lr=3e-3, decay=0.1).to_spec()}}
    assert O.rule_from_spec(spec) == rule
    assert O.rule_from_spec(yaml.safe_load(yaml.safe_dump(spec))) == rule
    assert O.rule_from_spec({"chain": [{"partition": {"*": "sgd"}}]}) == O.chain(O.partition({"*": O.sgd()}))
    with pytest.raises(ValueError, match=r"^optim\.partition\['bias'\]\.adam: b1 must be in \[0\.0, 1\.0\), got 1\.5$"):
        O.rule_from_spec({"partition": {"bias": {"adam": {"b1": 1.5}}, "*": "sgd"}})
    with pytest.raises(ValueError, match=r"^optim\.partition\['\*'\]: unknown rule 'adma'; allowed: chain, (\w+, )+partition$"):
        O.rule_from_spec({"partition": {"*": "adma"}})
    with pytest.raises(ValueError, match=r"^optim\.partition: expected a non-empty mapping \{pattern: rule\}, got \['sgd'\]$"):
        O.rule_from_spec({"partition": ["sgd"]})
    with pytest.raises(ValueError, match=r"^optim\.chain\[1\]\.partition: the rule for '\*' is itself a partition"):
        O.rule_from_spec({"chain": ["sgd", {"partition": {"*": {"partition": {"*": "sgd"}}}}]})


def test_partition_prints_and_writes_code():
    rule = O.partition({"*.bias": O.sgd(0.1), "*": O.chain(O.adam(), O.scale_lr(3e-3))})
    assert str(rule) == "partition(*.bias: sgd(0.1); *: adam → scale_lr(3e-3))"
    code = rule.to_code()
    assert code == "O.partition({'*.bias': O.sgd(0.1), '*': O.chain(O.adam(), O.scale_lr(3e-3))})"
    assert eval(code, {"O": O}) == rule  # noqa: S307 - our own generated code, checked to round trip
    with pytest.raises(ValueError, match=r"partition: hyperparameters belong to its parts; got 'lr'"):
        rule.replace(lr=1.0)
