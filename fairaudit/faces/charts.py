"""Plotly figures of a face-recognition audit (drawn from the engine's results; nothing is computed here)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go

from fairaudit.faces.engine import Verification
from fairaudit.views.palette import colour

FONT = dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif", size=13, color="#1f2937")


def _style(fig: go.Figure, title: str, height: int, **layout) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", font=dict(size=15)), template="plotly_white",
                      font=FONT, height=height, margin=dict(l=10, r=10, t=48, b=10),
                      legend=dict(orientation="h", y=-0.2), **layout)
    return fig


def score_distributions(ver: Verification, group_names: Sequence[str], height: int = 380) -> go.Figure:
    """Density of the genuine (solid) and within-group impostor (dotted) cosines of every group, with the
    global threshold."""
    centres = (ver.edges[:-1] + ver.edges[1:]) / 2
    width = float(ver.edges[1] - ver.edges[0])
    fig = go.Figure()
    for g, name in enumerate(group_names):
        for hist, kind, dash in ((ver.genuine_hist[g], "genuine", "solid"), (ver.impostor_hist[g], "impostor", "dot")):
            total = hist.sum()
            if not total:
                continue
            fig.add_trace(go.Scatter(x=centres, y=hist / total / width, mode="lines", name=f"{name} · {kind}",
                                     line=dict(color=colour(g), dash=dash, width=2),
                                     hovertemplate=f"{name} {kind}<br>cosine %{{x:.3f}}<br>density %{{y:.2f}}"
                                                   "<extra></extra>"))
    t = ver.summary["threshold"]
    fig.add_vline(x=t, line=dict(color="#111827", dash="dash", width=1),
                  annotation_text=f"threshold {t:.3f}", annotation_position="top left")
    return _style(fig, "Score distributions (cosine similarity of image pairs)", height,
                  xaxis_title="cosine similarity", yaxis_title="density")


def det_curves(ver: Verification, group_names: Sequence[str], height: int = 380) -> go.Figure:
    """FNMR against FMR of every group as the threshold moves (log axes), the global threshold marked."""
    fig = go.Figure()
    floor = 1e-5
    for g, name in enumerate(group_names):
        fmr, fnmr = ver.det(g)
        keep = (fmr > 0) & (fnmr > 0)
        if not keep.any():
            continue
        fig.add_trace(go.Scatter(x=fmr[keep], y=fnmr[keep], mode="lines", name=name,
                                 line=dict(color=colour(g), width=2),
                                 hovertemplate=f"{name}<br>FMR %{{x:.2e}}<br>FNMR %{{y:.3f}}<extra></extra>"))
        point = ver.summary["groups"][name]
        if point["fmr"] and point["fnmr"]:
            fig.add_trace(go.Scatter(x=[max(point["fmr"], floor)], y=[point["fnmr"]], mode="markers",
                                     name=f"{name} at the threshold", showlegend=False,
                                     marker=dict(color=colour(g), size=10, symbol="x"),
                                     hovertemplate=f"{name} at the threshold<br>FMR %{{x:.2e}}<br>FNMR %{{y:.3f}}"
                                                   "<extra></extra>"))
    return _style(fig, "DET curves per group (× = the global threshold)", height,
                  xaxis=dict(type="log", title="false-match rate (within group)"),
                  yaxis=dict(type="log", title="false non-match rate"))


def _rank1_traces(fig: go.Figure, sweep: dict[str, Any], share_label: str) -> None:
    """One line per group: mean rank-1 with ± standard deviation bars over seeds, against ``sweep["share"]``."""
    for g, (name, means) in enumerate(sweep["rank1"].items()):
        std = [s or 0.0 for s in sweep["rank1_std"][name]]
        fig.add_trace(go.Scatter(x=sweep["share"], y=means, mode="lines+markers", name=name,
                                 line=dict(color=colour(g), width=2),
                                 error_y=dict(type="data", array=std, visible=True, thickness=1.2, width=4),
                                 hovertemplate=f"{name}<br>{share_label} %{{x:.2f}}<br>rank-1 %{{y:.3f}}"
                                               "<extra></extra>"))


def sweep_chart(sweep: dict[str, Any], height: int = 380) -> go.Figure:
    """Mean rank-1 (± standard deviation over seeds) of every group against the varied group's share."""
    fig = go.Figure()
    what = "identities" if sweep["kind"] == "ids" else "images"
    _rank1_traces(fig, sweep, "share")
    return _style(fig, f"Rank-1 against {sweep['varied_group']}'s share of the gallery {what}", height,
                  xaxis=dict(title=f"{sweep['varied_group']}'s share of the gallery {what}", autorange="reversed"),
                  yaxis=dict(title="rank-1 accuracy (mean ± sd over seeds)"))


def training_chart(sweep: dict[str, Any], height: int = 380) -> go.Figure:
    """Mean rank-1 (± standard deviation over seeds) of every group against the men's share of the training data
    (a :func:`fairaudit.faces.train_sweep.training_sweep` result)."""
    fig = go.Figure()
    what = "identities" if sweep["kind"] == "ids" else "photos"
    _rank1_traces(fig, sweep, "men's share")
    return _style(fig, f"Rank-1 against the men's share of the training {what}", height,
                  xaxis=dict(title=f"men's share of the training {what}"),
                  yaxis=dict(title="rank-1 accuracy (mean ± sd over seeds)"))


def ci_text(ci: Sequence[float | None] | None, fmt: str = ".3f") -> str:
    """``95 % CI [low, high]`` with both ends in ``fmt`` (``".2e"`` for false-match rates of order 1e-3)."""
    if not ci or any(v is None or not np.isfinite(v) for v in ci):
        return "CI n/a"
    return f"95 % CI [{ci[0]:{fmt}}, {ci[1]:{fmt}}]"
