"""ToDevice, MixedPrecision and GradAccumulation against hand-written torch loops."""

from __future__ import annotations

import itertools

import pytest
import torch

from torchdeck.data import TensorLoader
from torchdeck.train import (Callback, GradAccumulation, MixedPrecision, StopOnNaN, ToDevice, available_devices,
                             resolve_device)

from ._digits import digits_learner, digits_model, digits_tensors, one_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

N_TRAIN, BATCH = 256, 32


def reference_amp_loop(dtype, *, scaler, epochs=2, lr=1e-2, accumulate=1, batch_size=BATCH, n_train=N_TRAIN,
                       **scaler_options):
    """torch's documented AMP recipe: autocast around forward and loss, GradScaler's
    scale/step/update (with gradient accumulation: loss / n and a step every n batches)."""
    x, y = digits_tensors()["train"]
    model = digits_model(dropout=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loader = TensorLoader(x[:n_train], y[:n_train], batch_size, shuffle=True, seed=0)
    grad_scaler = torch.amp.GradScaler("cpu", **scaler_options) if scaler else None
    for _ in range(epochs):
        batches = list(loader)
        for i, (xb, yb) in enumerate(batches):
            with torch.autocast("cpu", dtype=dtype):
                loss = torch.nn.functional.cross_entropy(model(xb), yb)
            if accumulate > 1:
                loss = loss / accumulate
            (grad_scaler.scale(loss) if scaler else loss).backward()
            if (i + 1) % accumulate == 0 or i == len(batches) - 1:
                if scaler:
                    grad_scaler.step(opt)
                    grad_scaler.update()
                else:
                    opt.step()
                opt.zero_grad(set_to_none=True)
    return model, grad_scaler


def amp_learner(callbacks, n_train=N_TRAIN):
    return digits_learner(callbacks, optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=1e-2, momentum=0.9),
                          n_train=n_train, batch_size=BATCH, dropout=0.0)


class Dtypes(Callback):
    """Records the prediction's and the loss's dtype on the first training step."""

    def __init__(self):
        self.seen = {}

    def backward_begin(self, state):
        self.seen.setdefault("pred", state.pred.dtype)
        self.seen.setdefault("loss", state.loss.dtype)


def test_bf16_autocast_on_cpu_matches_torch_autocast():
    dtypes = Dtypes()
    amp = MixedPrecision()
    learner = amp_learner([amp, dtypes])
    learner.fit(2)
    assert amp.autocast_dtype == torch.bfloat16 and amp.grad_scaler is None
    assert dtypes.seen == {"pred": torch.bfloat16, "loss": torch.float32}
    reference, _ = reference_amp_loop(torch.bfloat16, scaler=False)
    for a, b in zip(learner.model.parameters(), reference.parameters()):
        assert torch.equal(a, b)
    assert not torch.is_autocast_enabled("cpu")  # nothing left switched on after the fit


def test_float16_with_loss_scaling_matches_torch_gradscaler():
    """Started at 2**28 the scaled fp16 gradients overflow: GradScaler skips those steps and
    backs off, then grows again every 4 clean steps; the learner must skip the same steps
    and end with the same scale and weights."""
    amp = MixedPrecision("float16", init_scale=2.0 ** 28, growth_interval=4)
    learner = amp_learner([amp])
    learner.fit(2)
    reference, ref_scaler = reference_amp_loop(torch.float16, scaler=True, init_scale=2.0 ** 28, growth_interval=4)
    assert amp.grad_scaler.state_dict() == ref_scaler.state_dict()
    assert amp.skipped > 0
    for a, b in zip(learner.model.parameters(), reference.parameters()):
        assert torch.equal(a, b)
    # the losses recorded are the true (unscaled) ones
    assert max(learner.history.losses) < 10


def test_accumulation_with_loss_scaling_matches_the_torch_recipe():
    # 288 samples: 9 batches of 32 per epoch, three full groups of 3
    amp = MixedPrecision("bfloat16", scaler=True)
    learner = amp_learner([amp, GradAccumulation(3)], n_train=288)
    learner.fit(2)
    reference, ref_scaler = reference_amp_loop(torch.bfloat16, scaler=True, accumulate=3, n_train=288)
    assert amp.grad_scaler.state_dict() == ref_scaler.state_dict()
    for a, b in zip(learner.model.parameters(), reference.parameters()):
        # loss / n before backward (the recipe) vs the mean of the gradients after: the last bits
        # differ, and a bf16 forward turns that into differences near its resolution (a
        # wrong grouping or a missing unscale would differ by the size of an update, ~1e-3)
        torch.testing.assert_close(a, b, rtol=1e-3, atol=5e-5)


def test_mixed_precision_scaler_state_is_checkpointed(tmp_path):
    amp = MixedPrecision("float16", init_scale=2.0 ** 28, growth_interval=3)
    learner = amp_learner([amp])
    learner.fit(1)
    learner.save_checkpoint(tmp_path / "c")
    other = MixedPrecision("float16")  # torch's default scale: the checkpoint's must replace it
    resumed = amp_learner([other])
    resumed.load_checkpoint(tmp_path / "c")
    resumed.fit(1)
    learner.fit(1)
    assert other.grad_scaler.state_dict() == amp.grad_scaler.state_dict() and other.skipped == amp.skipped
    for a, b in zip(learner.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs, message", [
    ({"dtype": "float32"}, r"MixedPrecision: dtype must be one of 'float16', 'bfloat16' or None"),
    ({"scaler": "yes"}, r"MixedPrecision: scaler must be True, False or None \(auto\), got 'yes'"),
    ({"init_scale": 0}, r"MixedPrecision: init_scale must be a positive number, got 0"),
    ({"growth_interval": 0.5}, r"MixedPrecision: growth_interval must be a positive integer, got 0.5"),
])
def test_mixed_precision_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MixedPrecision(**kwargs)


# -- GradAccumulation -----------------------------------------------------------------------------
def test_accumulating_4_batches_of_8_equals_batches_of_32():
    # 72 samples: batches of 8 group as 4 + 4 + 1, exactly like batches of 32, 32 and 8.
    def learner(batch_size, callbacks):
        return digits_learner(callbacks, n_train=72, batch_size=batch_size, shuffle=False, dropout=0.0)

    accumulated = learner(8, [GradAccumulation(4)])
    accumulated.fit(3)
    big = learner(32, [])
    big.fit(3)
    for a, b in zip(accumulated.model.parameters(), big.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert accumulated.state.step == 27 and big.state.step == 9  # steps count batches
    assert len(accumulated.history.losses) == 27  # every micro-batch's loss is recorded


def test_accumulation_of_one_is_plain_training():
    a = digits_learner([GradAccumulation(1)], n_train=128, dropout=0.0)
    b = digits_learner([], n_train=128, dropout=0.0)
    a.fit(1)
    b.fit(1)
    for x, y in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(x, y)


def test_nan_in_an_accumulated_batch_is_caught_at_the_real_step():
    counter = itertools.count()

    def loss(pred, y):
        value = torch.nn.functional.cross_entropy(pred, y)
        if torch.is_grad_enabled() and next(counter) == 1:  # the second micro-batch of the first group
            value = value + 0.0 * torch.sqrt(pred[0, 0] - pred[0, 0])
        return value

    learner = digits_learner([StopOnNaN(), GradAccumulation(4)], n_train=256, batch_size=32, dropout=0.0)
    learner.state.loss_fn = loss
    w0 = [p.detach().clone() for p in learner.model.parameters()]
    with pytest.warns(RuntimeWarning, match=r"non-finite gradient .* at step 3 \(epoch 1, train batch 4\)"):
        learner.fit(1)
    for a, b in zip(learner.model.parameters(), w0):
        assert torch.equal(a, b)


def test_grad_accumulation_validates():
    with pytest.raises(ValueError, match=r"GradAccumulation: n must be a positive integer .*, got 0"):
        GradAccumulation(0)


# -- ToDevice -------------------------------------------------------------------------------------
def test_to_device_auto_picks_the_best_device_here():
    learner = digits_learner([ToDevice("auto")], n_train=64)
    learner.fit(1)
    assert learner.device == resolve_device("auto") == torch.device(available_devices()[0])
    assert next(learner.model.parameters()).device.type == learner.device.type


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_to_device_refuses_a_device_this_machine_lacks():
    learner = digits_learner([ToDevice("cuda")], n_train=64)
    with pytest.raises(ValueError, match=r"ToDevice: device 'cuda' is not available on this machine; "
                                         r"allowed here: 'auto', 'cpu'"):
        learner.fit(1)
    assert learner.state.step == 0


def test_to_device_refuses_a_malformed_name():
    with pytest.raises(ValueError, match=r"device: 'gpu0' is not a device; allowed: 'auto', 'cpu'"):
        ToDevice("gpu0")


# -- on a GPU -------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_to_device_moves_a_trained_learner_to_cuda_and_trains_on():
    learner = digits_learner([], n_train=512)
    learner.fit(1)
    learner.add_callback(ToDevice("cuda"))
    learner.fit(2)
    assert learner.device.type == "cuda" and next(learner.model.parameters()).is_cuda
    state = learner.optimizer.state_dict()["rule_state"][0]
    assert all(t.is_cuda for t in state if t.dim() > 0)
    assert learner.history.epochs[-1]["valid_accuracy"] > 0.8


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, scaled", [(None, True), ("bfloat16", False)])
def test_mixed_precision_on_cuda_trains(dtype, scaled):
    dtypes = Dtypes()
    amp = MixedPrecision(dtype)
    learner = digits_learner([ToDevice("cuda"), amp, dtypes, StopOnNaN()], n_train=1024, batch_size=64)
    learner.fit(4)
    assert (amp.grad_scaler is not None) == scaled
    assert dtypes.seen["pred"] == (torch.float16 if dtype is None else torch.bfloat16)
    assert learner.history.epochs[-1]["valid_accuracy"] > 0.85
    assert learner.state.stop_reason == ""


@pytest.mark.gpu
def test_cuda_checkpoint_round_trip(tmp_path):
    learner = digits_learner([ToDevice("cuda"), MixedPrecision()], n_train=512)
    learner.fit(1)
    learner.save_checkpoint(tmp_path / "c")
    learner.fit(1)
    resumed = digits_learner([ToDevice("cuda"), MixedPrecision()], n_train=512)
    resumed.to("cuda")
    resumed.fit(1, resume=tmp_path / "c")
    for a, b in zip(learner.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
