"""Learning tasks (DLPipelines.jl): blocks, encodings, heads, losses, metrics, and their registry.

``tasks.get(name)`` finds a task class, ``tasks.list()`` names them all, ``tasks.check(task)``
runs the interface test every task passes.
"""

from torchdeck.tasks._base import TASKS, Grid, Task, TextTable, available, get, register_task, takes_augment
from torchdeck.tasks._check import STEPS, CheckReport, TaskCheckError, check
from torchdeck.tasks._classification import ImageClassification
from torchdeck.tasks._keypoints import KEYPOINT_SETS, KeypointRegression, KeypointSet, VisibleKeypointError, VisibleL1Loss
from torchdeck.tasks._multilabel import MultilabelClassification
from torchdeck.tasks._segmentation import IGNORE_INDEX, IgnoringConfusion, Segmentation
from torchdeck.tasks._tabular import Rescale, TabularClassification, TabularRegression, tabular_backbones
from torchdeck.tasks._vision import ShapesTask
from torchdeck.tasks._vision_metrics import MultilabelF1, multilabel_f1

# ``tasks.list()`` reads as the catalogue it is; it shadows the builtin only inside this
# package's namespace, which holds no code.
list = available  # noqa: A001

__all__ = ["TASKS", "Grid", "Task", "TextTable", "available", "get", "list", "register_task", "takes_augment", "STEPS",
           "CheckReport", "TaskCheckError", "check", "ImageClassification", "Rescale", "TabularClassification",
           "TabularRegression", "tabular_backbones", "ShapesTask", "MultilabelClassification", "Segmentation",
           "KeypointRegression", "KEYPOINT_SETS", "MultilabelF1", "multilabel_f1", "KeypointSet", "VisibleL1Loss",
           "VisibleKeypointError", "IGNORE_INDEX", "IgnoringConfusion"]
