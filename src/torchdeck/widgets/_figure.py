"""A plotly FigureWidget that a background thread may update, and that a loaded page draws.

Two fixes over ``go.FigureWidget``:

- Edits from another thread. ipywidgets applies every message from the browser on the
  kernel's main thread inside ``hold_trait_notifications``; a trait the training thread sets
  on the same widget meanwhile is folded into that hold, and plotly's message traits (set to
  an edit, then straight back to None) would reach the browser as None: the edit lost.
  plotly's figure gets such messages after every edit (``_js2py_traceDeltas``,
  ``_js2py_layoutDelta``), so they are applied here under a lock that the trainer's redraw
  holds too.
- Figures that never updated. anywidget's front end gives a model 2 s from its creation to
  load its ESM; a model that misses it silently drops every later message. Plotly's ESM is a
  4.9 MB bundle, imported once per figure at page load: under CPU load the Studio's second or
  third figure missed the 2 s and stayed as first drawn (measured: the training chart empty in
  5 of 5 runs at load ~10 on 2 cores; none with the deadline lifted). Here ``_esm`` is a small
  loader (live_figure.js) that is ready at once and imports plotly's bundle, sent in
  ``_plotly_esm``, once per page.
"""

from __future__ import annotations

import functools
import hashlib
import pathlib
import threading
from typing import Any

import plotly.graph_objects as go
import traitlets

__all__ = ["LiveFigure"]


@functools.cache
def _plotly_bundle() -> tuple[str, str]:
    """Plotly's front-end bundle (the ESM of ``go.FigureWidget``) and a key naming it."""
    source = str(go.FigureWidget._esm)
    return source, hashlib.sha256(source.encode()).hexdigest()[:16]


class LiveFigure(go.FigureWidget):
    """A FigureWidget whose edits from another thread go under ``with fig.lock:``."""

    _esm = pathlib.Path(__file__).with_name("live_figure.js")
    _plotly_esm = traitlets.Unicode(help="plotly's front-end bundle, imported once per page").tag(sync=True)
    _plotly_key = traitlets.Unicode(help="names the bundle: figures with the same key share one import").tag(sync=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._edit_lock = threading.RLock()  # plotly figures take only "_" names as new attributes
        super().__init__(*args, **kwargs)

    # Defaults, not constructor arguments: they must be in the state the comm opens with (the
    # loader reads them in `initialize`), and plotly's constructor takes figure properties only.
    @traitlets.default("_plotly_esm")
    def _default_plotly_esm(self) -> str:
        return _plotly_bundle()[0]

    @traitlets.default("_plotly_key")
    def _default_plotly_key(self) -> str:
        return _plotly_bundle()[1]

    @property
    def lock(self) -> threading.RLock:
        return self._edit_lock

    def set_state(self, sync_data: dict[str, Any]) -> None:
        with self._edit_lock:
            super().set_state(sync_data)
