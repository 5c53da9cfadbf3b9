"""Optimiser rules with explicit state (Optimisers.jl / optax for PyTorch).

>>> from torchdeck import optim as O
>>> rule = O.chain(O.clip_norm(1.0), O.adam(), O.scale_lr(3e-3))
>>> opt = O.Optimizer(model.parameters(), rule)          # doctest: +SKIP
"""

from torchdeck.optim._base import RULES, EmptyState, Rule, format_number, hyper, register_rule
from torchdeck.optim._chain import Chain, chain
from torchdeck.optim._optimizer import Optimizer, adjust
from torchdeck.optim._rules import SGD, Adam, AdamState, ClipNorm, Momentum, MomentumState, ScaleLR, WeightDecay
from torchdeck.optim._spec import rule_from_spec

# Lower-case names as in the API sketch: ``O.adam()`` reads like optax / Optimisers.jl.
sgd = SGD
momentum = Momentum
adam = Adam
weight_decay = WeightDecay
clip_norm = ClipNorm
scale_lr = ScaleLR

__all__ = [
    "RULES", "Rule", "EmptyState", "hyper", "register_rule", "format_number",
    "Chain", "chain", "Optimizer", "adjust", "rule_from_spec",
    "SGD", "Momentum", "Adam", "WeightDecay", "ClipNorm", "ScaleLR", "AdamState", "MomentumState",
    "sgd", "momentum", "adam", "weight_decay", "clip_norm", "scale_lr",
]
