"""Debug mode: callbacks only reach the state fields they declare; normal mode hands over the
state itself. Every built-in callback is run in debug mode (the audit)."""

from __future__ import annotations

import io
import itertools
import math
import warnings

import pytest
import torch

import torchdeck.train as T
from torchdeck.schedules import Linear, ReduceOnPlateau, Scheduler
from torchdeck.train import (Callback, Checkpointer, CSVLogger, EarlyStopping, GradAccumulation, JSONLLogger,
                             MetricStream, Metrics, MixedPrecision, ProgressBar, Recorder, SanityCheck,
                             StateAccessError, StopOnNaN, TensorBoard, Throttle, TimeBudget, ToDevice)
from torchdeck.train._loggers import _EpochLogger
from torchdeck.train._runner import RunControl

from ._tiny import tiny_learner

@pytest.fixture(autouse=True)
def no_debug_env(monkeypatch):
    monkeypatch.delenv("TORCHDECK_DEBUG", raising=False)


def debug_learner(callbacks=(), **kwargs):
    learner = tiny_learner(callbacks, **kwargs)
    learner.debug = True
    return learner


def without_seconds(history):
    return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in history.epochs]


# -- normal mode -----------------------------------------------------------------------------
class Seen(Callback):
    """Keeps what each handler was given."""

    reads = ("phase",)

    def __init__(self):
        self.given = []

    def step_end(self, state):
        self.given.append(state)


def test_normal_mode_hands_over_the_state_itself_and_the_bound_method():
    seen = Seen()
    learner = tiny_learner([seen])
    assert learner.debug is False
    learner.fit(1)
    assert seen.given and all(s is learner.state for s in seen.given)
    # No wrapper between the learner and the handler: the per-event list holds the bound method.
    assert any(h == seen.step_end and h.__self__ is seen for h in learner._handlers["step_end"])
    assert all(hasattr(h, "__self__") for hs in learner._handlers.values() for h in hs)


def test_normal_mode_does_not_check_undeclared_access():
    class Sneaky(Callback):  # declares nothing, reads and writes anyway
        def step_end(self, state):
            state.stop_reason = f"saw step {state.step}"

    learner = tiny_learner([Sneaky()])
    learner.fit(1)
    assert learner.state.stop_reason == "saw step 3"  # the last valid step, after 3 training steps


# -- debug mode: reads and writes ------------------------------------------------------------
class ReadsStep(Callback):
    reads = ("phase",)

    def step_end(self, state):
        if state.phase.training:
            state.step


def test_an_undeclared_read_names_callback_field_event_and_declarations():
    learner = debug_learner([ReadsStep()])
    with pytest.raises(StateAccessError) as info:
        learner.fit(1)
    assert str(info.value) == ("ReadsStep read state.step in step_end but does not declare it; it declares "
                               "reads=('phase',), writes=(). Add 'step' to its reads (or to its writes if it "
                               "changes it)")
    assert not isinstance(info.value, AttributeError)  # getattr(state, f, default) must not hide it


def test_an_undeclared_write_is_refused_and_leaves_the_state_alone():
    class WritesLoss(Callback):
        reads = ("loss",)

        def backward_begin(self, state):
            state.loss = state.loss * 2

    learner = debug_learner([WritesLoss()])
    with pytest.raises(StateAccessError, match=r"^WritesLoss wrote state.loss in backward_begin but does not "
                                               r"declare it as a write; it declares reads=\('loss',\), "
                                               r"writes=\(\)\. Add 'loss' to its writes$"):
        learner.fit(1)
    assert learner.state.step == 0  # the first step stopped at the refused write


def test_declared_reads_and_writes_work_and_reach_the_state():
    class Doubler(Callback):
        reads = ("phase",)
        writes = ("loss",)

        def __init__(self):
            self.losses = []

        def backward_begin(self, state):
            state.loss = state.loss * 2
            self.losses.append(float(state.loss.detach()))

    learner, plain = debug_learner([Doubler()]), tiny_learner([Doubler()])
    learner.fit(2)
    plain.fit(2)
    # The doubled loss reached the state (the backward used it): same run as without checks.
    assert learner.callbacks[-1].losses == plain.callbacks[-1].losses
    for p, q in zip(learner.model.parameters(), plain.model.parameters()):
        assert torch.equal(p, q)


def test_writes_imply_reads():
    class OnlyWrites(Callback):
        writes = ("stop_reason",)

        def fit_end(self, state):
            state.stop_reason = state.stop_reason or "done"

    learner = debug_learner([OnlyWrites()])
    learner.fit(1)
    assert learner.state.stop_reason == "done"


def test_a_name_that_is_no_field():
    class Typo(Callback):
        reads = ("phase",)

        def fit_begin(self, state):
            state.phsae = 1

    with pytest.raises(StateAccessError, match=r"Typo set state.phsae in fit_begin, which is not a TrainState "
                                               r"field; fields: model, optimizer, loss_fn, phase"):
        debug_learner([Typo()]).fit(1)

    class ReadTypo(Callback):
        def fit_begin(self, state):
            state.lsos

    # Reading a missing attribute stays an AttributeError, as on the plain state.
    with pytest.raises(AttributeError, match=r"no attribute 'lsos'"):
        debug_learner([ReadTypo()]).fit(1)


@pytest.mark.parametrize("reads, message", [
    (("phase", "lsos"), r"Misdeclared.reads: 'lsos' is not a TrainState field; allowed: model, optimizer, "),
    ("loss", r"Misdeclared.reads must be a tuple of field names, got 'loss'; write \('loss',\)"),
])
def test_a_declaration_that_names_no_field_is_refused_in_debug_mode(reads, message):
    class Misdeclared(Callback):
        pass

    Misdeclared.reads = reads
    learner = tiny_learner([Misdeclared()])  # normal mode does not look
    with pytest.raises(ValueError, match=message):
        learner.debug = True
    assert learner.debug is False
    checked = debug_learner()
    with pytest.raises(ValueError, match=message):
        checked.add_callback(Misdeclared())
    assert not any(isinstance(cb, Misdeclared) for cb in checked.callbacks)


# -- debug mode: containers ------------------------------------------------------------------
def test_reading_a_container_gives_a_read_only_view():
    outcomes = {}

    class Meddler(Callback):
        reads = ("metrics", "history", "batches", "phase")

        def epoch_end(self, state):
            if state.phase.training:
                return
            for name, change in {"metrics": lambda: state.metrics.__setitem__("x", 1.0),
                                 "batches": lambda: state.batches.pop("train"),
                                 "history.steps": lambda: state.history.steps.append(99),
                                 "history.epochs row": lambda: state.history.epochs[-1].update(epoch=7),
                                 "history.lrs replaced": lambda: setattr(state.history, "lrs", [])}.items():
                try:
                    change()
                    outcomes[name] = "changed"
                except (TypeError, AttributeError):
                    outcomes[name] = "refused"
            # What it reads equals the real thing.
            outcomes["same"] = (dict(state.metrics) == learner.state.metrics
                                and list(state.history.steps) == learner.state.history.steps
                                and state.history.epochs == learner.state.history.epochs
                                and state.history.losses[-2:] == learner.state.history.losses[-2:])

    learner = debug_learner([Meddler()])
    learner.fit(1)
    assert outcomes == {"metrics": "refused", "batches": "refused", "history.steps": "refused",
                        "history.epochs row": "refused", "history.lrs replaced": "refused", "same": True}
    assert "x" not in learner.state.metrics and learner.state.history.epochs[-1]["epoch"] == 1


def test_a_declared_writer_changes_the_container_itself():
    class Extra(Callback):
        reads = ("phase",)
        writes = ("batches",)

        def fit_begin(self, state):
            state.batches["extra"] = 0

    learner = debug_learner([Extra()])
    learner.fit(1)
    assert learner.state.batches["extra"] == 0


# -- switching, environment, callbacks between runs --------------------------------------------
def test_debug_switches_between_runs_and_callbacks_can_change():
    seen = Seen()
    learner = tiny_learner([seen])
    learner.fit(1)
    learner.debug = True
    learner.fit(1)
    assert seen.given[0] is learner.state and isinstance(seen.given[-1], T.StateView)
    learner.add_callback(ReadsStep())  # added while in debug mode: checked too
    with pytest.raises(StateAccessError, match="ReadsStep read state.step"):
        learner.fit(1)
    learner.remove_callback(ReadsStep)
    learner.fit(1)
    learner.debug = False
    seen.given.clear()
    learner.fit(1)
    assert all(s is learner.state for s in seen.given)


@pytest.mark.parametrize("value", ["yes please", 1, None])
def test_debug_must_be_a_bool_when_set(value):
    learner = tiny_learner()
    with pytest.raises(ValueError, match=rf"Learner: debug must be True or False, got {value!r}"):
        learner.debug = value


def test_debug_constructor_argument_and_environment(monkeypatch):
    from torchdeck.train import Learner
    (x, y) = torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
    from torchdeck.data import TensorLoader

    def make(**kwargs):
        loaders = {"train": TensorLoader(x, y, 2), "valid": TensorLoader(x, y, 2)}
        return Learner(torch.nn.Linear(2, 2), loaders, torch.nn.functional.cross_entropy,
                       torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1), **kwargs)

    assert make().debug is False and make(debug=True).debug is True
    monkeypatch.setenv("TORCHDECK_DEBUG", "1")
    assert make().debug is True and make(debug=False).debug is False
    monkeypatch.setenv("TORCHDECK_DEBUG", "0")
    assert make().debug is False
    with pytest.raises(ValueError, match=r"debug must be True, False or None \(read TORCHDECK_DEBUG\), got 'on'"):
        make(debug="on")


def test_probe_steps_and_background_runs_are_checked_too():
    class ReadsLossInProbes(Callback):
        reads = ("phase",)
        in_probes = True

        def step_end(self, state):
            state.loss

    learner = debug_learner([ReadsLossInProbes()])
    with pytest.raises(RuntimeError, match=r"SanityCheck: .*StateAccessError: ReadsLossInProbes read state.loss "
                                           r"in step_end"):
        learner.sanity_check()
    run = debug_learner([ReadsStep()]).fit_async(1)
    run.join(30)
    assert run.status == "failed" and isinstance(run.error, StateAccessError)


def test_a_throttled_callback_is_checked_with_its_own_declarations():
    learner = debug_learner([Throttle(ReadsStep(), every_steps=2)])
    with pytest.raises(StateAccessError, match=r"^Throttle Throttle\(ReadsStep\(\), every_steps=2\) read "
                                               r"state.step in step_end"):
        learner.fit(1)


# -- the audit: every built-in callback, in debug mode -----------------------------------------
def nan_loss_at(step):
    counter = itertools.count()

    def loss(pred, y):
        value = torch.nn.functional.cross_entropy(pred, y)
        return value * math.nan if torch.is_grad_enabled() and next(counter) == step else value
    return loss


def nan_grad_at(step):
    counter = itertools.count()

    def loss(pred, y):
        value = torch.nn.functional.cross_entropy(pred, y)
        if torch.is_grad_enabled() and next(counter) == step:
            value = value + 0.0 * torch.sqrt(pred[0, 0] - pred[0, 0])
        return value
    return loss


# name -> (directory -> (callbacks to add, learner options)); each run covers the callback's usual path and,
# where it has one, the path that ends the fit.
AUDIT = {
    "Metrics(train_metrics)": lambda d: ([], {"metrics": ("accuracy",)}),
    "ProgressBar": lambda d: ([ProgressBar(file=io.StringIO(), delay=0)], {}),
    "MetricStream": lambda d: ([MetricStream()], {}),
    "Checkpointer": lambda d: ([Checkpointer(d / "ck", monitor="valid_accuracy", mode="max")], {}),
    "EarlyStopping": lambda d: ([EarlyStopping("valid_accuracy", patience=1, mode="max", min_delta=1.0)], {}),
    "StopOnNaN(loss)": lambda d: ([StopOnNaN()], {"loss_fn": nan_loss_at(2)}),
    "StopOnNaN(skip)": lambda d: ([StopOnNaN(grads="skip")], {"loss_fn": nan_grad_at(1)}),
    "TimeBudget": lambda d: ([TimeBudget(2.5, clock=lambda c=itertools.count(): float(next(c)))], {}),
    "Throttle": lambda d: ([Throttle(MetricStream(), every_steps=2)], {}),
    "SanityCheck": lambda d: ([SanityCheck()], {}),
    "CSVLogger": lambda d: ([CSVLogger(d / "log.csv")], {}),
    "JSONLLogger": lambda d: ([JSONLLogger(d / "log.jsonl", steps=True)], {}),
    "ToDevice": lambda d: ([ToDevice("cpu")], {}),
    "MixedPrecision(float16)": lambda d: ([MixedPrecision("float16", scaler=True)], {}),
    "MixedPrecision(bfloat16)": lambda d: ([MixedPrecision()], {}),
    "GradAccumulation": lambda d: ([GradAccumulation(2), MixedPrecision("float16", scaler=True), StopOnNaN()], {}),
    "Scheduler": lambda d: ([Scheduler({"lr": Linear(1e-2, 1e-3, steps=6)})], {}),
    "ReduceOnPlateau": lambda d: ([ReduceOnPlateau(patience=0, threshold=1.0)], {}),
    "TensorBoard": lambda d: ([TensorBoard(d / "tb", every=2, log_graph=True, hparams={"bs": 8})], {}),
}

# The cases whose run ends early, and how the stop reason begins.
STOPS = {"EarlyStopping": "EarlyStopping:", "StopOnNaN(loss)": "StopOnNaN: the loss is nan",
         "TimeBudget": "TimeBudget:"}


def audit_run(name, tmp_path, debug):
    # Made afresh per run: the NaN losses and the fake clock count their calls.
    callbacks, options = AUDIT[name](tmp_path / ("debug" if debug else "plain"))
    learner = tiny_learner(callbacks, **{"metrics": ("accuracy",), **options})
    if name.startswith("Metrics"):
        learner.set_callbacks([Metrics("accuracy", train_metrics=True), Recorder()])
    learner.debug = debug
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # StopOnNaN's, on purpose here
        learner.fit(3)
    return learner, callbacks


def classes_of(name, tmp_path):
    cbs, _ = AUDIT[name](tmp_path / "probe")
    return [type(cb) for cb in cbs] + [type(cb.callback) for cb in cbs if isinstance(cb, Throttle)]


@pytest.mark.parametrize("name", list(AUDIT))
def test_every_built_in_callback_passes_in_debug_mode(name, tmp_path):
    checked, _ = audit_run(name, tmp_path, debug=True)
    plain, _ = audit_run(name, tmp_path, debug=False)
    # Debug mode changes nothing about the run: the same history, stop reason and weights.
    assert checked.history.steps == plain.history.steps and checked.history.losses == plain.history.losses
    assert checked.history.lrs == plain.history.lrs
    assert without_seconds(checked.history) == without_seconds(plain.history)
    assert checked.state.stop_reason == plain.state.stop_reason
    assert checked.state.stop_reason.startswith(STOPS[name]) if name in STOPS else checked.state.stop_reason == ""
    for p, q in zip(checked.model.parameters(), plain.model.parameters()):
        assert torch.equal(p, q)


def test_the_audit_covers_every_built_in_callback(tmp_path):
    import torchdeck.schedules as S
    exported = {obj for mod in (T, S) for obj in (getattr(mod, n) for n in mod.__all__)
                if isinstance(obj, type) and issubclass(obj, Callback) and obj is not Callback}
    covered = {Metrics, Recorder, RunControl}  # in every learner / every background run
    for name in AUDIT:
        covered |= set(classes_of(name, tmp_path))
    assert exported - covered == set()
