"""Training: the Learner, events, callbacks, metrics and background runs (FluxTraining.jl)."""

from torchdeck.train._access import StateAccessError, StateView
from torchdeck.train._callback import Callback, order_callbacks
from torchdeck.train._callbacks import Metrics, ProgressBar, Recorder
from torchdeck.train._catalog import (CALLBACKS, callback_arguments, callback_from_spec, callback_names,
                                       callback_to_spec, callbacks_from_spec)
from torchdeck.train._checkpoint import Checkpointer, load_checkpoint, resolve_checkpoint, save_checkpoint
from torchdeck.train._control import EarlyStopping, StopOnNaN, TimeBudget
from torchdeck.train._events import EVENTS, CancelEpoch, CancelFit, CancelStep
from torchdeck.train._finetune import FineTunePlan, fine_tune
from torchdeck.train._learner import Learner, resolve_device
from torchdeck.train._loggers import CSVLogger, JSONLLogger
from torchdeck.train._lr_find import LRFindResult, lr_find, suggest_lrs
from torchdeck.train._metrics import METRICS, accuracy, get_metric, register_metric
from torchdeck.train._phases import Phase, TrainingPhase, ValidationPhase
from torchdeck.train._precision import GradAccumulation, MixedPrecision, ToDevice, available_devices
from torchdeck.train._probe import SanityCheck, sanity_check
from torchdeck.train._runner import BackgroundRun, Run
from torchdeck.train._state import History, TrainState
from torchdeck.train._stream import MOMENTUM_KEYS, MetricStream, Series, momentum_key
from torchdeck.train._tensorboard import TensorBoard
from torchdeck.train._throttle import Throttle

__all__ = [
    "Learner", "resolve_device", "Callback", "order_callbacks", "EVENTS", "CancelStep", "CancelEpoch", "CancelFit",
    "Metrics", "Recorder", "ProgressBar", "MetricStream", "Series", "Run", "TrainState", "History",
    "Phase", "TrainingPhase", "ValidationPhase", "METRICS", "accuracy", "get_metric", "register_metric",
    "Checkpointer", "save_checkpoint", "load_checkpoint", "resolve_checkpoint",
    "EarlyStopping", "StopOnNaN", "TimeBudget", "Throttle", "SanityCheck", "sanity_check",
    "CSVLogger", "JSONLLogger", "ToDevice", "MixedPrecision", "GradAccumulation", "available_devices",
    "LRFindResult", "lr_find", "suggest_lrs", "StateAccessError", "StateView", "TensorBoard",
    "MOMENTUM_KEYS", "momentum_key", "fine_tune", "FineTunePlan",
    "CALLBACKS", "callback_from_spec", "callback_to_spec", "callbacks_from_spec", "callback_names",
    "callback_arguments", "BackgroundRun",
]
