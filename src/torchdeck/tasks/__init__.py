"""Learning tasks (DLPipelines.jl): blocks, encodings, heads, losses, metrics, and their registry."""

from torchdeck.tasks._base import TASKS, Grid, Task, available, get, register_task
from torchdeck.tasks._classification import ImageClassification

__all__ = ["TASKS", "Grid", "Task", "available", "get", "register_task", "ImageClassification"]
