"""Plotly figures of the audit page (built from report tables, no metric computed here)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

# A calm qualitative palette (colour-blind safe, Okabe–Ito order).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
FONT = dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif", size=13, color="#1f2937")


def _style(fig: go.Figure, title: str | None, height: int) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", font=dict(size=15)) if title else None,
                      template="plotly_white", font=FONT, height=height,
                      margin=dict(l=10, r=10, t=48 if title else 16, b=10), showlegend=False)
    return fig


def metric_bars(table: pd.DataFrame, metric_label: str, *, reference: float | None = None,
                title: str | None = None, height: int = 340) -> go.Figure:
    """One bar per group with asymmetric CI error bars.

    ``table`` has columns ``group, value, err_minus, err_plus, n`` (see
    :func:`fairaudit.ui.tables.metric_with_errors`); ``reference`` draws a
    dashed line, e.g. the overall value.
    """
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(table))]
    has_ci = not table["err_plus"].isna().all()
    fig = go.Figure(go.Bar(
        x=table["group"], y=table["value"], marker_color=colors,
        error_y=dict(type="data", symmetric=False, array=table["err_plus"], arrayminus=table["err_minus"],
                     color="#374151", thickness=1.5, width=6, visible=has_ci),
        customdata=np.stack([table["n"], table["value"] - table["err_minus"], table["value"] + table["err_plus"]], 1),
        hovertemplate=("%{x}<br>" + metric_label + " %{y:.3f}" + ("<br>CI [%{customdata[1]:.3f}, %{customdata[2]:.3f}]"
                                                                   if has_ci else "") + "<br>n = %{customdata[0]:,}<extra></extra>"),
        texttemplate="%{y:.3f}", textposition="inside", insidetextanchor="start",
        textfont=dict(color="white"),
    ))
    finite = table["value"].dropna()
    top = float((table["value"] + table["err_plus"].fillna(0)).max()) if len(finite) else 1.0
    fig.update_yaxes(title_text=metric_label, range=[0, max(1.0, top * 1.05)] if top <= 1.0 else None,
                     gridcolor="#e5e7eb", zeroline=False)
    fig.update_xaxes(title_text=None)
    if reference is not None and np.isfinite(reference):
        fig.add_hline(y=reference, line_dash="dash", line_color="#6b7280",
                      annotation_text=f"overall {reference:.3f}", annotation_position="top right",
                      annotation_font_color="#6b7280")
    return _style(fig, title, height)


def confusion_heatmap(matrix: Sequence[Sequence[float]], class_names: Sequence[str], *, title: str | None = None,
                      height: int = 280) -> go.Figure:
    """A ``C × C`` confusion matrix (rows = true class) with counts and row percentages."""
    counts = np.asarray(matrix, dtype=float)
    row_sums = counts.sum(1, keepdims=True)
    share = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    text = [[f"{int(c):,}<br>{s:.0%}" for c, s in zip(crow, srow)] for crow, srow in zip(counts, share)]
    names = [str(c) for c in class_names]
    fig = go.Figure(go.Heatmap(
        z=share, x=names, y=names, text=text, texttemplate="%{text}", zmin=0, zmax=1,
        colorscale=[[0, "#f8fafc"], [1, "#1d4ed8"]], showscale=False,
        hovertemplate="true %{y} → predicted %{x}<br>%{text}<extra></extra>",
    ))
    fig.update_xaxes(title_text="predicted", side="bottom", type="category")
    fig.update_yaxes(title_text="true", autorange="reversed", type="category")
    return _style(fig, title, height)


def intersection_heatmap(values: pd.DataFrame, counts: pd.DataFrame, metric_label: str, *,
                         title: str | None = None, height: int = 360) -> go.Figure:
    """``metric`` per cell of two sensitive attributes (rows × columns), annotated with ``n``."""
    z = values.to_numpy(dtype=float)
    n = counts.reindex(index=values.index, columns=values.columns).fillna(0).to_numpy(dtype=int)
    text = [["–" if np.isnan(v) else f"{v:.3f}<br>n={c:,}" for v, c in zip(vrow, crow)] for vrow, crow in zip(z, n)]
    fig = go.Figure(go.Heatmap(
        z=z, x=[str(c) for c in values.columns], y=[str(r) for r in values.index], text=text,
        texttemplate="%{text}", colorscale="RdYlBu", colorbar=dict(title=dict(text=metric_label, side="right")),
        hovertemplate=f"{values.index.name}=%{{y}} & {values.columns.name}=%{{x}}<br>%{{text}}<extra></extra>",
    ))
    fig.update_xaxes(title_text=str(values.columns.name), type="category")
    fig.update_yaxes(title_text=str(values.index.name), type="category", autorange="reversed")
    return _style(fig, title, height)
