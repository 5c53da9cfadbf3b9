"""A plotly FigureWidget that a background thread may update.

ipywidgets applies every message from the browser on the kernel's main thread inside
``hold_trait_notifications``; a trait the training thread sets on the same widget
meanwhile is folded into that hold, and plotly's message traits (set to an edit, then
straight back to None) would reach the browser as None: the edit lost. plotly's figure
gets such messages after every edit (``_js2py_traceDeltas``, ``_js2py_layoutDelta``), so
they are applied here under a lock that the trainer's redraw holds too.
"""

from __future__ import annotations

import threading
from typing import Any

import plotly.graph_objects as go

__all__ = ["LiveFigure"]


class LiveFigure(go.FigureWidget):
    """A FigureWidget whose edits from another thread go under ``with fig.lock:``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._edit_lock = threading.RLock()  # plotly figures take only "_" names as new attributes
        super().__init__(*args, **kwargs)

    @property
    def lock(self) -> threading.RLock:
        return self._edit_lock

    def set_state(self, sync_data: dict[str, Any]) -> None:
        with self._edit_lock:
            super().set_state(sync_data)
