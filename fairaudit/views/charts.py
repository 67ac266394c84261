"""Plotly figures of the audit page (built from report tables, no metric computed here)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fairaudit.views.palette import PALETTE, colour  # noqa: F401  (re-exported: the pages' and reports' group colours)

FONT = dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif", size=13, color="#1f2937")


def _style(fig: go.Figure, title: str | None, height: int) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", font=dict(size=15)) if title else None,
                      template="plotly_white", font=FONT, height=height,
                      margin=dict(l=10, r=10, t=48 if title else 16, b=10), showlegend=False)
    return fig


def metric_bars(table: pd.DataFrame, *, title: str | None = None, height: int = 360) -> go.Figure:
    """Grouped bars: one cluster per metric, one coloured bar per group, CI error bars.

    ``table`` is the long table of :func:`fairaudit.views.tables.metric_with_errors`
    (``group, metric, value, err_minus, err_plus, n``).
    """
    fig = go.Figure()
    has_ci = not table["err_plus"].isna().all()
    for i, (group, rows) in enumerate(table.groupby("group", sort=False)):
        lo, hi = rows["value"] - rows["err_minus"], rows["value"] + rows["err_plus"]
        fig.add_trace(go.Bar(
            name=group, x=rows["metric"], y=rows["value"], marker_color=colour(i),
            error_y=dict(type="data", symmetric=False, array=rows["err_plus"], arrayminus=rows["err_minus"],
                         color="#374151", thickness=1.2, width=4, visible=has_ci),
            customdata=np.stack([rows["n"], lo, hi], 1),
            hovertemplate=(f"<b>{group}</b><br>%{{x}} %{{y:.3f}}"
                           + ("<br>CI [%{customdata[1]:.3f}, %{customdata[2]:.3f}]" if has_ci else "")
                           + "<br>n = %{customdata[0]:,}<extra></extra>"),
        ))
    top = float((table["value"] + table["err_plus"].fillna(0)).max()) if table["value"].notna().any() else 1.0
    fig.update_yaxes(range=[0, max(1.0, top * 1.05)], gridcolor="#e5e7eb", zeroline=False, title_text=None)
    fig.update_xaxes(title_text=None)
    fig.update_layout(barmode="group", bargap=0.25, bargroupgap=0.05)
    n_groups = table["group"].nunique()
    legend_rows = -(-n_groups // 3)  # about three legend entries fit on a line
    _style(fig, title, height + 24 * legend_rows)
    fig.update_layout(showlegend=True, legend=dict(orientation="h", yanchor="top", y=-0.08, xanchor="left", x=0,
                                                   title_text=None),
                      margin=dict(b=10 + 24 * legend_rows))
    return fig


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


# ---------------------------------------------------------------------------- figures out


def file_stem(text: str) -> str:
    """``"DEO by Male × Young"`` → ``"fairaudit-deo-by-male-young"``: a file name that says what the figure is."""
    import re

    words = re.sub(r"<[^>]+>", " ", str(text))  # plotly titles may hold <br> and <b>
    slug = re.sub(r"[^0-9A-Za-z]+", "-", words).strip("-").lower()[:80].strip("-")
    return "fairaudit-" + (slug or "chart")


def figure_title(fig: go.Figure) -> str:
    title = fig.layout.title.text if fig.layout.title is not None else None
    return str(title or "")


def export_config(name: str, image_format: str = "png") -> dict:
    """The plotly ``config`` of a chart whose modebar camera button downloads it as ``image_format`` (``png`` or
    ``svg``) under the file name :func:`file_stem` of ``name``."""
    if image_format not in ("png", "svg"):
        raise ValueError(f"image_format must be 'png' or 'svg', got {image_format!r}")
    return {"toImageButtonOptions": {"format": image_format, "filename": file_stem(name), "scale": 2},
            "displaylogo": False}


def figure_data(fig: go.Figure) -> pd.DataFrame:
    """The data behind a figure, one row per plotted point: trace name, x, y (and z, error bars, text when the
    trace has them). Image traces carry pixels, not data, and are left out."""
    frames = []
    for i, trace in enumerate(fig.data):
        if trace.type == "image":
            continue
        columns: dict[str, object] = {}
        for axis in ("x", "y", "z", "r", "theta"):
            value = getattr(trace, axis, None)
            if value is not None:
                array = np.asarray(value, dtype=object)
                if array.ndim == 2:  # a heatmap: one row per cell
                    ys = getattr(trace, "y", None)
                    xs = getattr(trace, "x", None)
                    rows, cols = array.shape
                    ys = list(ys) if ys is not None else list(range(rows))
                    xs = list(xs) if xs is not None else list(range(cols))
                    frames.append(pd.DataFrame({"trace": trace.name or f"trace {i}",
                                                "row": np.repeat(ys, cols), "column": np.tile(xs, rows),
                                                "value": array.ravel()}))
                    columns = {}
                    break
                columns[axis] = list(array.ravel())
        else:
            if not columns:
                continue
            n = max(len(v) for v in columns.values())
            columns = {k: v for k, v in columns.items() if len(v) == n}
            error = getattr(trace, "error_y", None)
            if error is not None and error.array is not None and len(error.array) == n:
                columns["error_plus"] = list(error.array)
                columns["error_minus"] = list(error.arrayminus if error.arrayminus is not None else error.array)
            frames.append(pd.DataFrame({"trace": trace.name or f"trace {i}", **columns}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["trace"])
