"""Schedules as pure functions of the step (ParameterSchedulers.jl and torch's LR schedulers
as closed forms), composites, and the Scheduler that applies them."""

from torchdeck.schedules._base import SCHEDULES, Schedule, register_schedule
from torchdeck.schedules._compose import Clamp, Interpolator, Loop, Product, Shifted, Sum, Warmup
from torchdeck.schedules._core import Constant, CosAnneal, Linear, Sequence
from torchdeck.schedules._curve import curve
from torchdeck.schedules._jl import Exp, Inv, Poly, Sin, SinDecay2, SinExp, Step, Triangle, TriangleDecay2, TriangleExp
from torchdeck.schedules._plateau import ReduceOnPlateau
from torchdeck.schedules._scheduler import Scheduler, check_groups, per_group, per_group_spec, plan
from torchdeck.schedules._spec import schedule_from_spec
from torchdeck.schedules._torch_adapter import TorchLR
from torchdeck.schedules._torchlike import CosineWarmRestarts, Cyclic, ExpDecay, MultiStep, OneCycle, Polynomial, StepDecay

__all__ = [
    "SCHEDULES", "Schedule", "register_schedule", "Scheduler", "TorchLR", "ReduceOnPlateau", "plan", "curve", "schedule_from_spec",
    "per_group", "per_group_spec", "check_groups",
    # the first four
    "Constant", "Linear", "CosAnneal", "Sequence",
    # ParameterSchedulers.jl
    "Step", "Exp", "Poly", "Inv", "Triangle", "TriangleDecay2", "TriangleExp", "Sin", "SinDecay2", "SinExp",
    # torch.optim.lr_scheduler, in closed form
    "StepDecay", "MultiStep", "ExpDecay", "Polynomial", "CosineWarmRestarts", "Cyclic", "OneCycle",
    # composites
    "Loop", "Shifted", "Interpolator", "Sum", "Product", "Clamp", "Warmup",
]
