"""The training monitor's chart: loss, metrics, and lr with momentum, in three rows of one figure
on one shared step axis (one figure, so a redraw is one message)."""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple, Sequence

import plotly.graph_objects as go

from torchdeck.widgets._figure import LiveFigure

__all__ = ["TraceSpec", "ROW_AXES", "UNIT_RANGE", "chart_traces", "build_chart", "metric_axis"]


class TraceSpec(NamedTuple):
    key: str      # the MetricStream series it draws
    label: str    # legend entry
    mode: str     # plotly scatter mode
    row: str      # a key of ROW_AXES


# Row -> the (x, y) axes its traces use. The first two rows keep plotly's default names
# ("xy", "x2y2"): the browser test finds the loss line and the accuracy markers by them.
ROW_AXES: dict[str, tuple[str, str]] = {
    "loss": ("x", "y"),
    "metric": ("x2", "y2"),
    "lr": ("x3", "y3"),
    "momentum": ("x3", "y4"),  # overlays the lr row, its scale on the right
}


# The metric row's fixed range while every value is a share (accuracy, F1, IoU): a steady axis
# whose top is "perfect", a little above 1 so markers at 1.0 are not cut in half.
UNIT_RANGE = (0.0, 1.02)


def metric_axis(values: Iterable[Sequence[float]]) -> dict[str, object]:
    """The metric y axis for the values drawn on it (one sequence per trace): ``UNIT_RANGE``
    while every finite value lies in [0, 1], else autorange, so that an error in units
    (MSE, MAE, keypoint error in pixels) is not clipped off the top of the row."""
    finite = [v for ys in values for v in ys if v is not None and math.isfinite(v)]
    if all(0.0 <= v <= 1.0 for v in finite):
        return {"autorange": False, "range": list(UNIT_RANGE)}
    return {"autorange": True, "range": None}


def chart_traces(metrics: Sequence[str], momentum_label: str = "momentum") -> list[TraceSpec]:
    """Every trace of a run whose task reports ``metrics`` (names without the phase prefix)."""
    return [
        TraceSpec("loss", "train loss (step)", "lines", "loss"),
        TraceSpec("train_loss", "train loss (epoch)", "lines+markers", "loss"),
        TraceSpec("valid_loss", "valid loss (epoch)", "lines+markers", "loss"),
        # Labelled as the epoch table heads its columns ("valid multilabel f1").
        *(TraceSpec(f"valid_{m}", f"valid {m}".replace("_", " "), "lines+markers", "metric") for m in metrics),
        TraceSpec("lr", "lr (step)", "lines", "lr"),
        TraceSpec("momentum", momentum_label, "lines", "momentum"),
    ]


def _scatter(spec: TraceSpec) -> go.Scatter:
    x, y = ROW_AXES[spec.row]
    return go.Scatter(x=[], y=[], name=spec.label, mode=spec.mode, legendgroup=spec.row, xaxis=x, yaxis=y)


def build_chart(traces: Sequence[TraceSpec]) -> LiveFigure:
    """Loss (log scale) on top, metrics in the middle, lr (left axis) and momentum (right) below."""
    # Traces go in at construction: Voila renders widgets from their state after the
    # notebook ran, so trace additions sent before the page existed would be lost.
    fig = LiveFigure(data=[_scatter(t) for t in traces], layout=go.Layout(
        height=640, width=520, margin=dict(l=55, r=45, t=30, b=40),
        xaxis=dict(anchor="y", matches="x3", showticklabels=False),
        yaxis=dict(domain=[0.68, 1.0], type="log", exponentformat="e", title="loss"),
        xaxis2=dict(anchor="y2", matches="x3", showticklabels=False),
        yaxis2=dict(domain=[0.35, 0.63], title="metric", **metric_axis(())),
        xaxis3=dict(anchor="y3", title="step"),
        yaxis3=dict(domain=[0.0, 0.28], exponentformat="e", title="lr"),
        yaxis4=dict(anchor="x3", overlaying="y3", side="right", range=[0, 1.02], title="momentum", showgrid=False),
        legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom")))
    fig.add_class("td-train-chart")
    return fig
