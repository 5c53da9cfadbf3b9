"""Optimiser rules with explicit state (Optimisers.jl / optax for PyTorch).

>>> from torchdeck import optim as O
>>> rule = O.chain(O.clip_norm(1.0), O.adam(), O.scale_lr(3e-3))
>>> opt = O.Optimizer(model.parameters(), rule)          # doctest: +SKIP
"""

from torchdeck.optim._base import RULES, EmptyState, Rule, format_number, hyper, register_rule
from torchdeck.optim._chain import Chain, chain
from torchdeck.optim._io import load_state, save_state, state_keys
from torchdeck.optim._lowering import describe_lowering, no_lowering
from torchdeck.optim._optimizer import Optimizer, adjust, freeze, thaw
from torchdeck.optim._partition import Partition, partition
from torchdeck.optim._rules import SGD, Adam, AdamState, ClipNorm, Momentum, MomentumState, ScaleLR, WeightDecay
from torchdeck.optim._rules_extra import (Accumulate, AccumulateState, AdaBelief, AdaBeliefState, ClipValue, Lamb, Lion,
                                         LionState, SignDecay, SkipNonfinite, SkipNonfiniteState)
from torchdeck.optim._rules_torch import (L2, Adadelta, AdadeltaState, Adagrad, AdagradState, Nesterov, RMSprop,
                                         RMSpropState, Rprop, RpropState)
from torchdeck.optim._rules_torch_adam import (AMSGrad, AMSGradState, Adamax, AdamaxState, AdamW, NAdam, NAdamState, RAdam,
                                              RAdamState)
from torchdeck.optim._spec import rule_from_spec

# Lower-case names as in the API sketch: ``O.adam()`` reads like optax / Optimisers.jl.
sgd = SGD
momentum = Momentum
adam = Adam
weight_decay = WeightDecay
clip_norm = ClipNorm
scale_lr = ScaleLR
lion = Lion
adabelief = AdaBelief
lamb = Lamb
sign_decay = SignDecay
clip_value = ClipValue
accumulate = Accumulate
skip_nonfinite = SkipNonfinite
nesterov = Nesterov
rmsprop = RMSprop
adagrad = Adagrad
adadelta = Adadelta
rprop = Rprop
l2 = L2
amsgrad = AMSGrad
adamax = Adamax
nadam = NAdam
radam = RAdam
adamw = AdamW

__all__ = [
    "RULES", "Rule", "EmptyState", "hyper", "register_rule", "format_number",
    "Chain", "chain", "Optimizer", "adjust", "rule_from_spec",
    "Partition", "partition", "freeze", "thaw", "save_state", "load_state", "state_keys",
    "describe_lowering", "no_lowering",
    "SGD", "Momentum", "Adam", "WeightDecay", "ClipNorm", "ScaleLR", "AdamState", "MomentumState",
    "sgd", "momentum", "adam", "weight_decay", "clip_norm", "scale_lr",
    "Lion", "AdaBelief", "Lamb", "SignDecay", "ClipValue", "Accumulate", "SkipNonfinite",
    "LionState", "AdaBeliefState", "AccumulateState", "SkipNonfiniteState",
    "lion", "adabelief", "lamb", "sign_decay", "clip_value", "accumulate", "skip_nonfinite",
    "L2", "Nesterov", "RMSprop", "Adagrad", "Adadelta", "Rprop", "AMSGrad", "Adamax", "NAdam", "RAdam", "AdamW",
    "RMSpropState", "AdagradState", "AdadeltaState", "RpropState", "AMSGradState", "AdamaxState", "NAdamState",
    "RAdamState",
    "l2", "nesterov", "rmsprop", "adagrad", "adadelta", "rprop", "amsgrad", "adamax", "nadam", "radam", "adamw",
]
