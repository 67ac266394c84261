"""Plotly figures of robustness results (built from the report tables; nothing is computed here)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from fairaudit.views.charts import FONT, PALETTE

CONDITION_LABELS = {"clean": "Clean", "fgsm": "FGSM", "pgd": "PGD"}


def _layout(fig: go.Figure, title: str | None, height: int, x_title: str | None) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", font=dict(size=15)) if title else None,
                      template="plotly_white", font=FONT, height=height,
                      margin=dict(l=10, r=10, t=48 if title else 16, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.15, xanchor="left", x=0, title_text=None))
    fig.update_yaxes(range=[0, 1.02], gridcolor="#e5e7eb", zeroline=False, title_text="accuracy")
    fig.update_xaxes(title_text=x_title)
    return fig


def accuracy_bars(groups: pd.DataFrame, *, title: str | None = None, height: int = 380) -> go.Figure:
    """Clean vs. adversarial accuracy: one cluster per group, one bar per condition.

    ``groups`` is :meth:`fairaudit.robustness.RobustnessReport.groups_frame`
    (``condition, group, n, accuracy``).
    """
    fig = go.Figure()
    for i, (condition, rows) in enumerate(groups.groupby("condition", sort=False)):
        fig.add_trace(go.Bar(name=CONDITION_LABELS.get(condition, condition), x=rows["group"], y=rows["accuracy"],
                             marker_color=PALETTE[i % len(PALETTE)], customdata=rows[["n"]],
                             hovertemplate=f"<b>%{{x}}</b><br>{CONDITION_LABELS.get(condition, condition)} "
                                           "accuracy %{y:.3f}<br>n = %{customdata[0]:,}<extra></extra>"))
    fig.update_layout(barmode="group", bargap=0.25, bargroupgap=0.05)
    return _layout(fig, title, height, None)


def sweep_curves(sweep: pd.DataFrame, *, title: str | None = None, height: int = 380) -> go.Figure:
    """Adversarial accuracy against ε, one line per group (dashed: the whole population).

    ``sweep`` is the table of :func:`fairaudit.robustness.epsilon_sweep`
    (``eps, group, n, accuracy``).
    """
    fig = go.Figure()
    groups = [g for g in sweep["group"].unique() if g != "overall"]
    for i, group in enumerate(groups):
        rows = sweep[sweep["group"] == group]
        fig.add_trace(go.Scatter(name=group, x=rows["eps"], y=rows["accuracy"], mode="lines+markers",
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=2),
                                 hovertemplate=f"<b>{group}</b><br>ε %{{x:.4g}}<br>accuracy %{{y:.3f}}"
                                               "<extra></extra>"))
    rows = sweep[sweep["group"] == "overall"]
    if len(rows):
        fig.add_trace(go.Scatter(name="all samples", x=rows["eps"], y=rows["accuracy"], mode="lines",
                                 line=dict(color="#6b7280", width=2, dash="dash"),
                                 hovertemplate="<b>all samples</b><br>ε %{x:.4g}<br>accuracy %{y:.3f}<extra></extra>"))
    return _layout(fig, title, height, "ε (attack radius)")
