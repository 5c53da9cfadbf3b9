"""What the training monitor shows besides its charts, as plain functions of the run's numbers:
the epoch table, the error of a failed run, and the sample predictions.

Pure (no widgets): the monitor sets the returned HTML / PNG into its widgets at a redraw.
"""

from __future__ import annotations

import dataclasses
import html
import math
from typing import Any, Callable, Mapping, Sequence

from torchdeck.render import grid_image, to_png
from torchdeck.tasks import Grid, TextTable

__all__ = ["epoch_table_html", "table_columns", "failure_html", "PredictionView", "RESULT_VIEWS",
           "prediction_view", "TABLE_SKIP", "TIME_KEY"]

TIME_KEY = "epoch_seconds"
# Row keys the table does not show as columns: "epoch" leads, the time comes last, and the
# step is on the charts' x axis already.
TABLE_SKIP = ("epoch", "step", TIME_KEY)


def _label(key: str) -> str:
    return key.replace("_", " ")


def _cell(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return html.escape(str(value))
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}" if math.isfinite(value) else str(value)


def table_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The metric columns, in the order they first appear (train loss, valid loss, metrics)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in TABLE_SKIP and k not in columns)
    return columns


def epoch_table_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """An HTML table, one row per epoch: epoch, each metric (4 decimals), time in seconds.

    ``rows`` are history rows (``learner.history.epochs``, ``MetricStream.epoch_rows()``); a
    value a row lacks is left blank. No rows: an empty string.
    """
    if not rows:
        return ""
    columns = table_columns(rows)
    head = "".join(f"<th>{html.escape(_label(c))}</th>" for c in ("epoch", *columns, "time"))
    body = []
    for row in rows:
        cells = [_cell(row.get("epoch", ""))] + [_cell(row[c]) if c in row else "" for c in columns]
        seconds = row.get(TIME_KEY)
        cells.append(f"{seconds:.2f} s" if isinstance(seconds, (int, float)) else "")
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def failure_html(error: BaseException, traceback_text: str) -> str:
    """The error of a failed run in one line, its traceback folded in a ``<details>``.

    Everything from the exception is escaped: a message may hold ``<`` (a tensor's repr, a
    shape such as ``<lambda>``) that the page must show, not parse.
    """
    message = f"{type(error).__name__}: {error}"
    return (f"<div class=\"td-run-error\"><b>the run failed</b>: <code>{html.escape(message)}</code>"
            f"<details><summary>traceback</summary><pre>{html.escape(traceback_text)}</pre></details></div>")


@dataclasses.dataclass(frozen=True)
class PredictionView:
    """Sample predictions ready for the page: a PNG (image tasks) or an HTML table (tabular)."""

    png: bytes = b""
    html: str = ""


def _grid_view(grid: Grid, *, scale: int = 6) -> PredictionView:
    return PredictionView(png=to_png(grid_image(grid.images, grid.captions, columns=8, scale=scale)))


def _text_table_view(table: TextTable) -> PredictionView:
    return PredictionView(html=table._repr_html_())


# What a task's show_results returns -> how the monitor shows it. Looked up along the
# result's class hierarchy, so a task returning a Grid subclass needs no entry.
RESULT_VIEWS: dict[type, Callable[[Any], PredictionView]] = {
    Grid: _grid_view,
    TextTable: _text_table_view,
}


def prediction_view(result: Any) -> PredictionView:
    """Render what ``task.show_results(predict, n)`` returned."""
    for cls in type(result).__mro__:
        view = RESULT_VIEWS.get(cls)
        if view is not None:
            return view(result)
    allowed = ", ".join(c.__name__ for c in RESULT_VIEWS)
    raise ValueError(f"show_results: returned a {type(result).__name__}, which the monitor cannot show; "
                     f"allowed: {allowed} (or register a view in RESULT_VIEWS)")
