"""The fairness–accuracy trade-off: Pareto front, scatter of all runs, sweep curves and a radar view.

Accuracy is better when higher; a disparity (``spd``, ``deo``, ...) when
lower; worst-group accuracy, balanced accuracy and ``s_r`` when higher. A run
is on the Pareto front when no other run (or baseline) is at least as good on
both axes and strictly better on one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fairaudit.compare.table import BASELINE, done_runs, seed_summary, undefined_text
from fairaudit.errors import FairauditError
from fairaudit.metrics import catalogue
from fairaudit.metrics.catalogue import lower_is_better
from fairaudit.views.palette import PALETTE_NO_BLACK

FAIRNESS_CHOICES = ("deo", "spd", "eod", "aaod", "aed", "worst_group_accuracy", "leakage")
RADAR_METRICS = ("accuracy", "balanced_accuracy", "worst_group_accuracy", "spd", "deo", "eod", "aed", "s_r")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "triangle-down", "pentagon", "hexagon", "cross")
COLORS = PALETTE_NO_BLACK  # method colours; black marks the baseline
BASE_SIZE, SIZE_RANGE = 9.0, 16.0


def pareto_front(x: Sequence[float], y: Sequence[float], *, minimize_y: bool = True) -> np.ndarray:
    """Boolean mask of the non-dominated points when ``x`` is maximised and ``y`` minimised (or maximised
    with ``minimize_y=False``). Points with a NaN coordinate are never on the front; ties are kept."""
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float) * (1.0 if minimize_y else -1.0)
    ok = ~(np.isnan(xs) | np.isnan(ys))
    mask = np.zeros(len(xs), dtype=bool)
    for i in np.flatnonzero(ok):
        others = ok.copy()
        others[i] = False
        dominated = others & (xs >= xs[i]) & (ys <= ys[i]) & ((xs > xs[i]) | (ys < ys[i]))
        mask[i] = not dominated.any()
    return mask


def _check_metric(table: pd.DataFrame, name: str) -> None:
    if name not in table.columns:
        raise FairauditError(f"unknown metric '{name}'; choose one of {', '.join(FAIRNESS_CHOICES)}.")


def pareto_table(table: pd.DataFrame, fairness: str = "deo", accuracy: str = "accuracy") -> pd.DataFrame:
    """The finished runs and baselines on the Pareto front of (``accuracy`` ↑, ``fairness``), by accuracy."""
    _check_metric(table, fairness)
    points = done_runs(table)
    mask = pareto_front(points[accuracy], points[fairness], minimize_y=lower_is_better(fairness))
    return points[mask].sort_values(accuracy)


def short_model(model: str) -> str:
    return "demo" if model in ("", "demo") else Path(str(model)).name


def _hover(frame: pd.DataFrame, fairness: str, accuracy: str, aggregated: bool) -> list[str]:
    lines = []
    for _, r in frame.iterrows():
        head = f"<b>{r['method']}</b> · {r['dataset']} · {short_model(r['model'])}"
        where = f"run {r['run_id']}" if not aggregated else f"{int(r['n_seeds'])} seed(s): {r['seeds']}"
        settings = r.get("settings") or "defaults"
        values = f"{catalogue.label(accuracy)} {r[accuracy]:.3f} · {catalogue.label(fairness)} " \
                 f"{r[fairness]:.3f}"
        extra = "" if math.isnan(r.get("s_r", math.nan)) else f" · S_R {r['s_r']:.3f}"
        flag = "<br><b>collapsed</b> (chance-level or one predicted class)" if r.get("collapsed") else ""
        lines.append(f"{head}<br>{where}<br>{settings}<br>{values}{extra}{flag}")
    return lines


def _errors(frame: pd.DataFrame, metric: str, aggregated: bool) -> dict[str, Any] | None:
    """Error bars: the 95 % bootstrap interval of single runs, ± one standard deviation over seeds."""
    if aggregated:
        std = frame.get(f"{metric}_std")
        if std is None or std.isna().all():
            return None
        return {"type": "data", "array": std.fillna(0).to_numpy(), "visible": True, "thickness": 1}
    low, high = frame.get(f"{metric}_low"), frame.get(f"{metric}_high")
    if low is None or high is None or low.isna().all():
        return None
    plus = (high - frame[metric]).clip(lower=0).fillna(0).to_numpy()
    minus = (frame[metric] - low).clip(lower=0).fillna(0).to_numpy()
    return {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "visible": True,
            "thickness": 1}


def _sizes(values: pd.Series) -> np.ndarray:
    """Marker size grows with robustness S_R ∈ [0, 1]; runs without S_R get the base size."""
    s = pd.to_numeric(values, errors="coerce").clip(0, 1)
    return (BASE_SIZE + SIZE_RANGE * s).fillna(BASE_SIZE).to_numpy()


def swept_value(config: Any, key: str) -> Any:
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            return None
    return (config or {}).get(key) if isinstance(config, dict) else None


def sweep_points(table: pd.DataFrame, sweep: str | None = None) -> pd.DataFrame:
    """The points of each sweep (seed repeats averaged), in order of the swept value(s).

    Columns: those of :func:`~fairaudit.compare.table.seed_summary` plus ``param`` / ``value`` (the first
    swept setting), ``param2`` / ``value2`` (the second one, if any) and ``label`` (``"beta=0.5"``).
    """
    runs = table[(table["kind"] == "run") & (table["sweep"] != "")]
    if sweep is not None:
        runs = runs[runs["sweep"] == sweep]
    summary = seed_summary(runs)
    if summary.empty:
        return summary.assign(param=[], value=[], param2=[], value2=[], label=[])
    configs = runs.drop_duplicates("config_key").set_index("config_key")["config"]
    params = summary["swept"].str.split(",")
    summary["param"] = [p[0] if p and p[0] else "" for p in params]
    summary["param2"] = [p[1] if len(p) > 1 else "" for p in params]
    summary["value"] = [swept_value(configs[k], p) for k, p in zip(summary["config_key"], summary["param"])]
    summary["value2"] = [swept_value(configs[k], p) if p else None
                         for k, p in zip(summary["config_key"], summary["param2"])]
    summary["label"] = [", ".join(f"{p}={v}" for p, v in ((p1, v1), (p2, v2)) if p)
                        for p1, v1, p2, v2 in zip(summary["param"], summary["value"], summary["param2"],
                                                  summary["value2"])]

    def order(v: Any) -> tuple:
        return (0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, str(v))

    summary["_order"] = [order(v) for v in summary["value"]]
    summary["_order2"] = [order(v) for v in summary["value2"]]
    return summary.sort_values(["sweep", "_order2", "_order"]).drop(columns=["_order", "_order2"]).reset_index(
        drop=True)


def unplotted_runs(table: pd.DataFrame, fairness: str = "deo", *, accuracy: str = "accuracy") -> list[str]:
    """One line per finished run the trade-off plot cannot place because its audit left ``fairness`` or
    ``accuracy`` undefined, with the audit's reason (e.g. ``run ab12 (reweight): DEO n/a: only group
    'Male=0' has positives``), so a missing point is never mistaken for a missing run."""
    _check_metric(table, fairness)
    lines = []
    for _, r in done_runs(table).iterrows():
        missing = [m for m in (accuracy, fairness) if pd.isna(r.get(m))]
        if not missing:
            continue
        reasons = r.get("undefined") if isinstance(r.get("undefined"), dict) else {}
        why = undefined_text({m: reasons[m] for m in missing if m in reasons}) or \
            ", ".join(f"{catalogue.label(m)} not recorded" for m in missing)
        who = "baseline" if r.get("kind") == BASELINE else f"run {r['run_id']} ({r['method']})"
        lines.append(f"{who}: {why}")
    return lines


def tradeoff_figure(table: pd.DataFrame, fairness: str = "deo", *, accuracy: str = "accuracy",
                    aggregate_seeds: bool = False, sweeps: bool = True, height: int = 520) -> go.Figure:
    """Scatter of every finished run: x = ``accuracy``, y = ``fairness``, colour = method, symbol = model,
    size = robustness S_R, hover = settings; the baselines (no mitigation) as black stars, the Pareto
    front as a dashed line, error bars from the audits' 95 % intervals (or ± std over seeds with
    ``aggregate_seeds``), collapsed runs circled in red, and each sweep's points joined in order of the
    swept value.
    """
    _check_metric(table, fairness)
    _check_metric(table, accuracy)
    points = seed_summary(table) if aggregate_seeds else done_runs(table).copy()
    if aggregate_seeds and not points.empty:
        points["run_id"] = [ids[0] for ids in points["run_ids"]]
    fig = go.Figure()
    runs = points[points["kind"] != BASELINE]
    methods = sorted(runs["method"].dropna().unique())
    models = sorted(points["model"].map(short_model).unique())
    for m, method in enumerate(methods):
        for model in models:
            part = runs[(runs["method"] == method) & (runs["model"].map(short_model) == model)]
            if part.empty:
                continue
            fig.add_trace(go.Scatter(
                x=part[accuracy], y=part[fairness], mode="markers", name=method,
                legendgroup=method, showlegend=bool(model == models[0] or len(models) == 1),
                marker={"color": COLORS[m % len(COLORS)], "symbol": SYMBOLS[models.index(model) % len(SYMBOLS)],
                        "size": _sizes(part["s_r"]), "line": {"width": 1, "color": "white"}},
                error_x=_errors(part, accuracy, aggregate_seeds), error_y=_errors(part, fairness, aggregate_seeds),
                hovertext=_hover(part, fairness, accuracy, aggregate_seeds), hoverinfo="text",
                customdata=part["run_id"]))
    collapsed = runs[runs["collapsed"].astype(bool)]
    if not collapsed.empty:
        fig.add_trace(go.Scatter(x=collapsed[accuracy], y=collapsed[fairness], mode="markers", name="collapsed",
                                 marker={"symbol": "circle-open", "size": 22, "color": "#d62728",
                                         "line": {"width": 2}}, hoverinfo="skip"))
    if sweeps:
        for sweep, part in sweep_points(table).groupby(["sweep", "param2", "value2"], dropna=False, sort=False):
            if len(part) < 2:
                continue
            label = f"sweep {part['param'].iloc[0]}" + (f" ({part['param2'].iloc[0]}={part['value2'].iloc[0]})"
                                                       if part["param2"].iloc[0] else "")
            fig.add_trace(go.Scatter(x=part[accuracy], y=part[fairness], mode="lines+text", name=label,
                                     text=[str(v) for v in part["value"]], textposition="top center",
                                     line={"width": 1, "color": "#888"}, hoverinfo="skip", legendgroup="sweeps"))
    baselines = points[points["kind"] == BASELINE]
    if not baselines.empty:
        fig.add_trace(go.Scatter(x=baselines[accuracy], y=baselines[fairness], mode="markers",
                                 name="baseline (no mitigation)",
                                 marker={"symbol": "star", "size": 18, "color": "black"},
                                 error_x=_errors(baselines, accuracy, False),
                                 error_y=_errors(baselines, fairness, False),
                                 hovertext=_hover(baselines, fairness, accuracy, aggregate_seeds),
                                 hoverinfo="text", customdata=baselines["run_id"]))
    front_mask = pareto_front(points[accuracy], points[fairness], minimize_y=lower_is_better(fairness))
    front = points[front_mask].sort_values(accuracy)
    if len(front):
        fig.add_trace(go.Scatter(x=front[accuracy], y=front[fairness], mode="lines", name="Pareto front",
                                 # "vh": the staircase bounding the region the front dominates
                                 line={"dash": "dash", "color": "#444", "width": 1.5, "shape": "vh"},
                                 hoverinfo="skip"))
    return trade_off_layout(fig, fairness, accuracy, height, "(higher is better)",
                            "method · symbol = model · size = S_R")


def trade_off_layout(fig: go.Figure, fairness: str, accuracy: str, height: int, note: str, legend: str) -> go.Figure:
    """Axis titles, size and the title "<fairness> (lower is better) vs <accuracy> <note>" of a trade-off chart."""
    better = "lower" if lower_is_better(fairness) else "higher"
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      title=f"{catalogue.label(fairness)} ({better} is better) vs "
                            f"{catalogue.label(accuracy).lower()} {note}",
                      xaxis_title=catalogue.label(accuracy), yaxis_title=catalogue.label(fairness),
                      legend={"title": legend})
    return fig


def sweep_figure(table: pd.DataFrame, sweep: str, fairness: str = "deo", *,
                 accuracy: str = "accuracy", height: int = 440) -> go.Figure:
    """One sweep on the trade-off plane: every value tried (seed repeats averaged, ± std bars), joined in
    order of the swept value, with the baseline star and collapsed points circled in red."""
    points = sweep_points(table, sweep)
    if points.empty:
        raise FairauditError(f"there is no finished run of sweep '{sweep}'.")
    fig = go.Figure()
    for i, ((method, value2), part) in enumerate(points.groupby(["method", "value2"], dropna=False, sort=False)):
        name = method + (f" · {part['param2'].iloc[0]}={value2}" if part["param2"].iloc[0] else "")
        fig.add_trace(go.Scatter(x=part[accuracy], y=part[fairness], mode="lines+markers+text", name=name,
                                 text=part["label"], textposition="top center",
                                 marker={"size": 10, "color": COLORS[i % len(COLORS)]},
                                 error_x=_errors(part, accuracy, True), error_y=_errors(part, fairness, True),
                                 hovertext=[f"{lab}<br>{int(n)} seed(s)" for lab, n in
                                            zip(part["label"], part["n_seeds"])], hoverinfo="text+x+y"))
    collapsed = points[points["collapsed"].astype(bool)]
    if not collapsed.empty:
        fig.add_trace(go.Scatter(x=collapsed[accuracy], y=collapsed[fairness], mode="markers", name="collapsed",
                                 marker={"symbol": "x", "size": 16, "color": "#d62728"}, hoverinfo="skip"))
    setups = set(table.loc[table["sweep"] == sweep, "setup_key"])
    baselines = table[(table["kind"] == BASELINE) & table["setup_key"].isin(setups)]
    if not baselines.empty:
        fig.add_trace(go.Scatter(x=baselines[accuracy], y=baselines[fairness], mode="markers",
                                 name="baseline (no mitigation)",
                                 marker={"symbol": "star", "size": 18, "color": "black"}))
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      title=f"Sweep {sweep}: every value tried",
                      xaxis_title=catalogue.label(accuracy), yaxis_title=catalogue.label(fairness))
    return fig


def radar_figure(table: pd.DataFrame, run_ids: Sequence[str], metrics: Sequence[str] = RADAR_METRICS, *,
                 height: int = 460) -> go.Figure:
    """Radar of several metrics for the chosen rows (runs or baselines); outward is better everywhere:
    disparities and leakage are drawn as 1 − value."""
    rows = table[table["run_id"].isin(list(run_ids))]
    if rows.empty:
        raise FairauditError("choose at least one run for the radar view.")
    metrics = [m for m in metrics if m in rows.columns and rows[m].notna().any()]
    axes = [f"1 − {catalogue.label(m)}" if lower_is_better(m) else catalogue.label(m) for m in metrics]
    fig = go.Figure()
    for _, row in rows.iterrows():
        values = [1 - row[m] if lower_is_better(m) else row[m] for m in metrics]
        label = row["method"] if row["kind"] == BASELINE else f"{row['method']} · {row['run_id']}"
        fig.add_trace(go.Scatterpolar(r=values + values[:1], theta=axes + axes[:1], name=label,
                                      fill="toself", opacity=0.55,
                                      line={"color": COLORS[len(fig.data) % len(COLORS)]}))
    fig.update_layout(height=height, polar={"radialaxis": {"range": [0, 1]}},
                      margin={"l": 30, "r": 30, "t": 40, "b": 30}, title="Selected runs (outward is better)")
    return fig
