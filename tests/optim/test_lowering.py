"""Lowered chains (torch's fused kernels) against the generic path and torch.optim.

Each lowered optimiser runs beside the same rule under ``no_lowering()`` and beside torch's
own optimiser on the same seeded gradients; the kernels are wrapped to prove which path ran.
"""

from __future__ import annotations

import gc
import threading

import pytest
import torch
from torch import nn

from torchdeck import optim as O
from torchdeck._tree import tree_leaves
from torchdeck.optim import _lowering as L
from torchdeck.optim._lowering import describe_lowering, lowering_enabled, lowering_for, no_lowering, register_lowering

from ._helpers import small_model, twin

KERNELS = ("_fused_adam_", "_fused_adamw_", "_fused_sgd_")


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: every tensor goes to the kernels (see test_small_tensors_take_the_rules_own_update),
    and no parallel region waits for a busy core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def kernel_calls(monkeypatch):
    """Count calls of torch's fused optimiser kernels (the lowering looks them up per call)."""
    calls = dict.fromkeys(KERNELS, 0)
    for name in KERNELS:
        real = getattr(torch, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(torch, name, counted)
    return calls


def _clip_then(factory, max_norm):
    """torch's own composition: clip_grad_norm_ on the grads, then the optimiser."""
    class Clipped:
        def __init__(self, params):
            self.params = list(params)
            self.opt = factory(self.params)

        def step(self):
            torch.nn.utils.clip_grad_norm_(self.params, max_norm)
            self.opt.step()
    return Clipped


CASES = {
    # name: (rule, torch reference, kernel that must run)
    "adamw chain": (O.chain(O.adam(), O.weight_decay(1e-2), O.scale_lr(1e-2)),
                    lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=1e-2), "_fused_adamw_"),
    "adamw": (O.adamw(2e-2, b1=0.8, b2=0.99, eps=1e-6, decay=0.1),
              lambda ps: torch.optim.AdamW(ps, lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
              "_fused_adamw_"),
    "adam chain": (O.chain(O.adam(), O.scale_lr(1e-2)), lambda ps: torch.optim.Adam(ps, lr=1e-2), "_fused_adam_"),
    "adam alone": (O.adam(lr=1e-2), lambda ps: torch.optim.Adam(ps, lr=1e-2), "_fused_adam_"),
    "adam with its own lr": (O.chain(O.adam(lr=0.5), O.weight_decay(1e-2), O.scale_lr(2e-2)),
                             lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=2e-2), "_fused_adamw_"),
    "l2 adam": (O.chain(O.weight_decay(1e-2), O.adam(), O.scale_lr(1e-2)),
                lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-2), "_fused_adam_"),
    "clip adamw": (O.chain(O.clip_norm(1.0), O.adamw(1e-2, decay=1e-2)),
                   _clip_then(lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=1e-2), 1.0), "_fused_adamw_"),
    "clip l2 adam": (O.chain(O.clip_norm(0.5), O.weight_decay(1e-2), O.adam(), O.scale_lr(1e-2)),
                     _clip_then(lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-2), 0.5), "_fused_adam_"),
    "clip above the norm": (O.chain(O.clip_norm(1e4), O.adamw(1e-2)),
                            lambda ps: torch.optim.AdamW(ps, lr=1e-2), "_fused_adamw_"),
    "momentum": (O.chain(O.momentum(0.9, dampening=0.2), O.scale_lr(0.1)),
                 lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.2), "_fused_sgd_"),
    "momentum alone": (O.momentum(0.5, lr=0.05), lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.5), "_fused_sgd_"),
    "l2 momentum": (O.chain(O.weight_decay(1e-2), O.momentum(0.9), O.scale_lr(0.1)),
                    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-2), "_fused_sgd_"),
    "clip momentum": (O.chain(O.clip_norm(0.5), O.momentum(0.9), O.scale_lr(0.1)),
                      _clip_then(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), 0.5), "_fused_sgd_"),
    "sgd": (O.sgd(0.1), lambda ps: torch.optim.SGD(ps, lr=0.1), "_fused_sgd_"),
    "l2 sgd": (O.chain(O.weight_decay(1e-2), O.scale_lr(0.1)),
               lambda ps: torch.optim.SGD(ps, lr=0.1, weight_decay=1e-2), "_fused_sgd_"),
}


def _race(models, optimisers, steps, *, seed=0, scale=3.0, generic=(), missing=True):
    """Same seeded grads for every model; some parameters go without a grad on some steps
    (the first layer's bias until step 20, then every 7th step), as torch's state handles.
    Checks that no step changes ``.grad``."""
    gen = torch.Generator().manual_seed(seed)
    params = [list(m.parameters()) for m in models]
    for t in range(steps):
        for j, p0 in enumerate(params[0]):
            skip = missing and j == 1 and (t < 20 or t % 7 == 3)
            g = None if skip else torch.randn(p0.shape, generator=gen, dtype=p0.dtype) * scale
            for ps in params:
                ps[j].grad = None if g is None else g.clone()
        for k, opt in enumerate(optimisers):
            if k in generic:
                with no_lowering():
                    opt.step()
            elif not isinstance(opt, O.Optimizer):  # torch's (clip_grad_norm_ rewrites .grad)
                opt.step()
            else:
                given = [p.grad for p in params[k]]
                saved = [None if g is None else g.clone() for g in given]
                opt.step()
                for g, s in zip((p.grad for p in params[k]), saved):
                    assert (g is None and s is None) or torch.equal(g, s), "a lowered step changed .grad"


def _assert_close(m1, m2, rtol, atol=0.0):
    for (name, a), b in zip(m1.named_parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("case", list(CASES))
def test_lowered_matches_generic_path_and_torch(case, kernel_calls):
    rule, reference, kernel = CASES[case]
    assert describe_lowering(rule).endswith(f"torch.{kernel}")
    lowered = small_model()
    generic, theirs, start = twin(lowered), twin(lowered), twin(lowered)
    opts = [O.Optimizer(lowered.parameters(), rule), O.Optimizer(generic.parameters(), rule),
            reference(theirs.parameters())]

    _race([lowered, generic, theirs], opts, steps=200, generic=(1,))

    assert kernel_calls[kernel] >= 200 and sum(kernel_calls.values()) == kernel_calls[kernel]
    assert any(not torch.equal(a, b) for a, b in zip(lowered.parameters(), start.parameters()))
    _assert_close(lowered, generic, rtol=1e-10, atol=1e-14)
    _assert_close(lowered, theirs, rtol=1e-10, atol=1e-14)
    # The state stays in the rule's own format and agrees with the generic path's.
    ours, ref = opts[0].rule_state(), opts[1].rule_state()
    assert type(ours) is type(ref)
    for a, b in zip(tree_leaves(ours), tree_leaves(ref), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


def test_switching_paths_mid_run_changes_nothing():
    rule = O.chain(O.clip_norm(1.0), O.adamw(1e-2))
    a = small_model()
    b = twin(a)
    opt_a, opt_b = O.Optimizer(a.parameters(), rule), O.Optimizer(b.parameters(), rule)
    _race([a, b], [opt_a, opt_b], steps=60, generic=(1,))
    _race([a, b], [opt_a, opt_b], steps=60, seed=1, generic=(0,))
    _race([a, b], [opt_a, opt_b], steps=60, seed=2, generic=(1,))
    _assert_close(a, b, rtol=1e-10, atol=1e-14)
    counts = opt_a.rule_state()[1].count  # adam's per-parameter step counts, in int64 as the rule keeps them
    assert all(c.dtype == torch.int64 for c in counts)
    assert [int(c) for c in counts] == [int(c) for c in opt_b.rule_state()[1].count]
    assert int(counts[0]) == 180 and int(counts[1]) < 180  # the bias went without grads on some steps


def test_channels_last_weights_are_walked_in_memory_order(kernel_calls):
    """A channels-last conv weight (and its channels-last state and clip scratch) goes to the
    kernels, which pair elements by memory order: the numbers match the generic path."""
    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 2 * 2, 3)).double()
    lowered = model().to(memory_format=torch.channels_last)
    generic = twin(lowered)
    assert not lowered[0].weight.is_contiguous()
    for rule in (O.chain(O.clip_norm(0.5), O.adamw(1e-2)), O.chain(O.clip_norm(0.5), O.momentum(0.9), O.scale_lr(0.1))):
        opts = [O.Optimizer(m.parameters(), rule) for m in (lowered, generic)]
        gen = torch.Generator().manual_seed(0)
        for _ in range(30):
            for a, b in zip(lowered.parameters(), generic.parameters()):
                g = torch.randn(a.shape, generator=gen, dtype=a.dtype) * 3
                a.grad = g.contiguous(memory_format=torch.channels_last) if a.dim() == 4 else g.clone()
                b.grad = a.grad.clone()
            opts[0].step()
            with no_lowering():
                opts[1].step()
        _assert_close(lowered, generic, rtol=1e-10, atol=1e-14)
    assert kernel_calls["_fused_adamw_"] == 30 and kernel_calls["_fused_sgd_"] >= 30


WRITE_GRADS = {
    "adamw": (O.chain(O.clip_norm(1.0), O.adamw(1e-2)), "adamw",
              lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=1e-2)),
    "momentum": (O.chain(O.clip_norm(1.0), O.weight_decay(1e-2), O.momentum(0.9), O.scale_lr(0.1)), "sgd",
                 lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-2, foreach=True)),
}


@pytest.mark.parametrize("case", list(WRITE_GRADS))
@pytest.mark.parametrize(("dtype", "rtol", "atol"), [(torch.float64, 1e-10, 1e-14), (torch.float32, 1e-5, 1e-6)])
def test_write_grads_leaves_the_clipped_gradient_in_grad_like_torch(case, dtype, rtol, atol, kernel_calls):
    """``lowering_for(rule, write_grads=True)`` may leave the clipped gradients in ``.grad``
    (below float64, through the kernel's ``grad_scale``), as clip_grad_norm_ + torch's optimiser does."""
    rule, kind, make_reference = WRITE_GRADS[case]
    kernel = f"_fused_{kind}_"
    step = lowering_for(rule, write_grads=True)
    ours, theirs = small_model(dtype), small_model(dtype)
    ps, qs = list(ours.parameters()), list(theirs.parameters())
    state = rule.init(ps)
    reference = make_reference(qs)
    assert L._kernel_works(kind, "cpu", dtype)  # the first check tries the kernel once
    gen = torch.Generator().manual_seed(0)
    for _ in range(100):
        for p, q in zip(ps, qs):
            p.grad = torch.randn(p.shape, generator=gen, dtype=dtype) * 3
            q.grad = p.grad.clone()
        calls = kernel_calls[kernel]
        with torch.no_grad():
            step(ps, [p.grad for p in ps], state)
        assert kernel_calls[kernel] == calls + 1
        torch.nn.utils.clip_grad_norm_(qs, 1.0)
        reference.step()
        for p, q in zip(ps, qs):
            torch.testing.assert_close(p.grad, q.grad, rtol=rtol, atol=atol)
    _assert_close(ours, theirs, rtol=rtol, atol=atol)


def test_clip_scratch_goes_with_its_parameter():
    rule = O.chain(O.clip_norm(0.1), O.momentum(0.9), O.scale_lr(0.1))
    p = torch.zeros(5, requires_grad=True)
    p.grad = torch.ones(5)
    opt = O.Optimizer([p], rule)
    opt.step()
    assert p in L._SCRATCH and torch.equal(p.grad, torch.ones(5))
    before = len(L._SCRATCH)
    del opt, p
    gc.collect()
    assert len(L._SCRATCH) == before - 1


@pytest.mark.parametrize(("dtype", "layout"), [
    (torch.float64, lambda g: g.t().contiguous().t()),  # grad laid out unlike its parameter
    (torch.complex128, lambda g: g),                    # a dtype the kernels don't take
])
def test_tensors_the_kernel_cannot_take_run_the_generic_update(dtype, layout, kernel_calls):
    """The kernels walk memory linearly and would pair wrong elements of a gradient whose
    strides differ from its parameter's: such steps go through the rule's own update."""
    rule = O.chain(O.adam(), O.weight_decay(1e-2), O.scale_lr(1e-2))
    p = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=dtype)
    a, b = p.clone().requires_grad_(), p.clone().requires_grad_()
    opt_a, opt_b = O.Optimizer([a], rule), O.Optimizer([b], rule)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        g = torch.randn(p.shape, generator=gen, dtype=dtype)
        a.grad, b.grad = layout(g.clone()), g.clone()
        opt_a.step()
        with no_lowering():
            opt_b.step()
    assert sum(kernel_calls.values()) == 0
    torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


def test_mixed_dtypes_run_one_kernel_call_per_dtype(kernel_calls):
    lowered = small_model()
    lowered[2].float()  # second layer in float32
    generic = twin(lowered)
    rule = O.chain(O.clip_norm(1.0), O.adamw(1e-2))
    opts = [O.Optimizer(m.parameters(), rule) for m in (lowered, generic)]
    assert L._kernel_works("adamw", "cpu", torch.float32) and L._kernel_works("adamw", "cpu", torch.float64)
    kernel_calls["_fused_adamw_"] = 0  # the checks above may have tried the kernel once
    _race([lowered, generic], opts, steps=50, generic=(1,), missing=False)
    assert kernel_calls["_fused_adamw_"] == 50 * 2
    _assert_close(lowered, generic, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", ["clip adamw", "clip momentum"])
def test_small_tensors_take_the_rules_own_update(case, monkeypatch, kernel_calls):
    """With several CPU threads, tensors under SERIAL_NUMEL elements take the rules' foreach
    update (torch's fused CPU kernels open a parallel region for each tensor, however small);
    the rest take the kernel, all with one clip factor over every gradient."""
    monkeypatch.setattr(L, "_serial_numel", lambda device: 10)  # the biases (4 and 3 elements) are small
    rule, reference, _ = CASES[case]
    lowered = small_model()
    generic, theirs = twin(lowered), twin(lowered)
    opts = [O.Optimizer(lowered.parameters(), rule), O.Optimizer(generic.parameters(), rule),
            reference(theirs.parameters())]
    _race([lowered, generic, theirs], opts, steps=100, generic=(1,))
    assert sum(kernel_calls.values()) == 100  # one call a step, for the two weights
    _assert_close(lowered, generic, rtol=1e-10, atol=1e-14)
    _assert_close(lowered, theirs, rtol=1e-10, atol=1e-14)


def test_small_tensors_are_serial_only_with_several_cpu_threads():
    assert L._serial_numel(torch.device("cpu")) == 0  # one thread here (the fixture)
    torch.set_num_threads(2)
    assert L._serial_numel(torch.device("cpu")) == L.SERIAL_NUMEL
    assert L._serial_numel(torch.device("cuda")) == 0


@pytest.mark.parametrize("rule", [
    O.chain(O.adam(), O.scale_lr(1e-2), O.weight_decay(1e-2)),           # decay outside the learning rate
    O.chain(O.weight_decay(1e-2), O.clip_norm(1.0), O.adam(), O.scale_lr(1e-2)),  # clip after the decay
    O.chain(O.adam(lr=0.0), O.weight_decay(1e-2), O.scale_lr(1e-2)),     # decay the kernel ties to a zero lr
    O.chain(O.momentum(0.0), O.scale_lr(1e-2)),                          # torch's kernel keeps no buffer at rho 0
    O.chain(O.adam(), O.adam(), O.scale_lr(1e-2)),
    O.chain(O.skip_nonfinite(), O.adam(), O.scale_lr(1e-2)),             # may skip a step: a kernel can't
    O.weight_decay(1e-2),
])
def test_other_chains_are_not_lowered(rule):
    assert lowering_for(rule) is None and describe_lowering(rule) is None


def test_no_lowering_is_scoped_to_the_block_and_the_thread():
    rule = O.adamw(1e-3)
    seen = []
    with no_lowering():
        assert not lowering_enabled() and lowering_for(rule) is None
        worker = threading.Thread(target=lambda: seen.append(lowering_for(rule) is not None))
        worker.start()
        worker.join()
    assert seen == [True]
    assert lowering_enabled() and lowering_for(rule) is not None
    assert describe_lowering(O.chain(O.clip_norm(1.0), rule)) == "torch._foreach_norm (clip at 1) + torch._fused_adamw_"


def test_not_lowered_under_torch_compile(monkeypatch):
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert lowering_for(O.adamw(1e-3)) is None


def test_register_lowering_refuses_a_pattern_twice_and_non_rules():
    with pytest.raises(ValueError, match=r"a lowering for \(adam, weight_decay, scale_lr\) is already registered"):
        register_lowering(O.Adam, O.WeightDecay, O.ScaleLR)(lambda rules: None)
    with pytest.raises(TypeError, match=r"register_lowering: expected rule classes, got \('adam',\)"):
        register_lowering("adam")


def test_kernel_probe_accepts_floats_only():
    assert L._kernel_works("adamw", "cpu", torch.float64) and L._kernel_works("sgd", "cpu", torch.float32)
    assert not L._kernel_works("adam", "cpu", torch.int64) and not L._kernel_works("sgd", "cpu", torch.complex64)


def test_optimizer_write_grads_matches_clip_grad_norm_then_adamw_grads_included():
    """``Optimizer(..., write_grads=True)`` is torch's composition: same parameters, and the
    clipped gradients left in ``.grad``; the default leaves ``.grad`` as it was."""
    rule = O.chain(O.clip_norm(0.5), O.adamw(lr=1e-2, decay=0.1))
    for write_grads in (True, False):
        ours, theirs = small_model(torch.float64), small_model(torch.float64)
        opt = O.Optimizer(ours.parameters(), rule, write_grads=write_grads)
        ref = torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.1)
        gen = torch.Generator().manual_seed(3)
        for _ in range(50):
            for a, b in zip(ours.parameters(), theirs.parameters()):
                g = torch.randn(a.shape, generator=gen, dtype=a.dtype) * 3
                a.grad, b.grad = g.clone(), g.clone()
            raw = [a.grad.clone() for a in ours.parameters()]
            opt.step()
            torch.nn.utils.clip_grad_norm_(list(theirs.parameters()), 0.5)
            ref.step()
            for a, b, r in zip(ours.parameters(), theirs.parameters(), raw):
                torch.testing.assert_close(a.grad, b.grad if write_grads else r, rtol=1e-10, atol=1e-14)
        for a, b in zip(ours.parameters(), theirs.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
