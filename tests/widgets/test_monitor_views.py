"""The monitor's views as plain functions: the epoch table, the failure box, the prediction
renderers (no widgets, no training)."""

from __future__ import annotations

import html
import io
import re

import numpy as np
import pytest
from PIL import Image

from torchdeck.tasks import Grid, TextTable
from torchdeck.widgets._monitor_gate import RedrawGate
from torchdeck.widgets._monitor_views import epoch_table_html, failure_html, prediction_view


def _cells(table: str) -> list[list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    return [[html.unescape(c) for c in re.findall(r"<t[hd]>(.*?)</t[hd]>", r)] for r in rows]


def test_the_epoch_table_has_a_column_per_metric_in_first_seen_order_and_blanks_for_missing_values():
    rows = [{"epoch": 1, "step": 10, "train_loss": 0.5, "valid_loss": 0.25, "epoch_seconds": 1.234},
            {"epoch": 2, "step": 20, "train_loss": float("nan"), "valid_loss": 0.125, "valid_<f1>": 0.75,
             "epoch_seconds": 0.5}]
    assert _cells(epoch_table_html(rows)) == [
        ["epoch", "train loss", "valid loss", "valid <f1>", "time"],
        ["1", "0.5000", "0.2500", "", "1.23 s"],
        ["2", "nan", "0.1250", "0.7500", "0.50 s"],
    ]
    assert "valid &lt;f1&gt;" in epoch_table_html(rows)
    assert epoch_table_html([]) == ""


def test_the_failure_box_escapes_the_message_and_folds_the_traceback():
    try:
        raise RuntimeError("bad <b>input</b>")
    except RuntimeError as e:
        import traceback
        error, text = e, traceback.format_exc()
    shown = failure_html(error, text)
    assert "<code>RuntimeError: bad &lt;b&gt;input&lt;/b&gt;</code>" in shown
    folded = re.search(r"<details><summary>traceback</summary><pre>(.*)</pre></details>", shown, re.S)
    assert folded and html.unescape(folded.group(1)) == text and "<b>" not in folded.group(1)
    assert shown.index("<code>") < shown.index("<details>")  # the message shows, the traceback is folded


def test_predictions_render_by_the_type_show_results_returns():
    images = np.zeros((3, 8, 8, 1), np.uint8)
    images[1] = 255
    view = prediction_view(Grid(images, ["0", "1≠7", "2"]))
    picture = np.asarray(Image.open(io.BytesIO(view.png)).convert("L"))
    assert view.html == "" and picture.shape[1] == 3 * (8 * 6 + 4) + 4
    assert picture.max() == 255 and picture.min() == 0
    table = TextTable(["x", "prediction"], [["1", "a<b"]])
    assert prediction_view(table).html == table._repr_html_() and prediction_view(table).png == b""
    with pytest.raises(ValueError, match=r"show_results: returned a dict, which the monitor cannot show; "
                                         r"allowed: Grid, TextTable"):
        prediction_view({"not": "a grid"})


def test_the_gate_lets_one_redraw_through_per_interval_and_remembers_the_ones_it_held():
    now = [0.0]
    gate = RedrawGate(0.5, lambda: now[0])
    assert gate.due()  # nothing drawn yet
    gate.drawn()
    now[0] = 0.49
    assert not gate.due() and gate.pending
    now[0] = 0.5
    assert gate.due()
    gate.drawn()
    assert not gate.pending and gate.last == 0.5
    with pytest.raises(ValueError, match=r"clock must be a function returning seconds, got 3"):
        RedrawGate(0.1, 3)
