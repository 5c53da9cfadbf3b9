"""torchdeck: a PyTorch training environment driven from Jupyter widgets, Voila and a CLI.

The engine (everything but ``torchdeck.widgets``) needs only torch and light dependencies.
"""

from torchdeck import data, models, optim, schedules, tasks, train
from torchdeck.spec import Experiment, SpecError
from torchdeck.train import Learner

__version__ = "0.1.0"

__all__ = ["Experiment", "SpecError", "Learner", "data", "models", "optim", "schedules", "tasks", "train",
           "__version__"]
