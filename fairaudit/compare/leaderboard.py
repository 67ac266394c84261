"""A benchmark on the Compare page: the leaderboard, the comparisons with ✓ / ✗ and the trade-off scatter
with one point per method (mean over seeds, ± one standard deviation as error bars).

Every function takes the benchmark JSON of :func:`fairaudit.benchmark.aggregate`.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
import plotly.graph_objects as go

from fairaudit.benchmark.markdown import TABLE_METRICS, comparison_mark, metric_cell, seeds_cell, settings_text
from fairaudit.compare.table import METRICS
from fairaudit.compare.tradeoff import COLORS, trade_off_layout
from fairaudit.errors import FairauditError
from fairaudit.metrics import catalogue

BASELINE = "baseline"


def _metrics_present(result: Mapping[str, Any]) -> list[str]:
    rows = result.get("rows") or []
    return [m for m in TABLE_METRICS if any(m in (r.get("metrics") or {}) for r in rows)]


def leaderboard_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """One line per row: method, what it is a control of, settings, seeds, status and per metric
    ``mean ± std [95 % interval]`` over seeds."""
    metrics = _metrics_present(result)
    lines = []
    for row in result.get("rows") or []:
        line = {"Method": row["method"], "Control of": row.get("control_of") or "",
                "Settings": "no mitigation" if row["method"] == BASELINE else settings_text(row.get("settings")),
                "Seeds": int(row.get("n_seeds") or 0), "Status": row.get("status", "")}
        for m in metrics:
            line[catalogue.label(m)] = metric_cell((row.get("metrics") or {}).get(m))
        line["Seconds / run"] = (row.get("seconds") or {}).get("mean")
        line["Message"] = row.get("message") or ""
        lines.append(line)
    return pd.DataFrame(lines)


def comparisons_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """The comparisons: method, against, metric, which direction is better, mean difference, interval,
    paired seeds (with the seeds left out because the metric was undefined), and ✓ / ✗."""
    lines = []
    for c in result.get("comparisons") or []:
        ci = c.get("ci")
        lines.append({"Method": c["method"], "Against": c["against"], "Metric": catalogue.label(c["metric"]),
                      "Better if": c.get("direction", ""), "Mean difference": c.get("mean_diff"),
                      "95 % CI": "n/a" if not ci else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]", "Seeds": seeds_cell(c),
                      "Holds": comparison_mark(c)})
    return pd.DataFrame(lines, columns=["Method", "Against", "Metric", "Better if", "Mean difference", "95 % CI",
                                        "Seeds", "Holds"])


def _point(row: Mapping[str, Any], metric: str) -> tuple[float | None, float]:
    summary = (row.get("metrics") or {}).get(metric) or {}
    return summary.get("mean"), summary.get("std") or 0.0


def benchmark_figure(result: Mapping[str, Any], fairness: str = "deo", accuracy: str = "accuracy",
                     height: int = 480) -> go.Figure:
    """The trade-off of a benchmark: x = ``accuracy``, y = ``fairness``, one point per row (mean over
    seeds), error bars ± one standard deviation over seeds, the baseline as a black star and controls as
    open markers in the colour of their method."""
    if fairness not in METRICS:
        raise FairauditError(f"unknown metric '{fairness}'; choose one of {', '.join(METRICS)}.")
    fig = go.Figure()
    rows = result.get("rows") or []
    methods = [r["method"] for r in rows if r["method"] != BASELINE and not r.get("control_of")]
    colour = {m: COLORS[i % len(COLORS)] for i, m in enumerate(methods)}
    for i, row in enumerate(rows):
        (x, dx), (y, dy) = _point(row, accuracy), _point(row, fairness)
        if x is None or y is None:
            continue
        name = row["method"]
        if name == BASELINE:
            marker = {"symbol": "star", "size": 18, "color": "black"}
        elif row.get("control_of"):
            marker = {"symbol": "circle-open", "size": 13, "line": {"width": 2},
                      "color": colour.get(row["control_of"], COLORS[i % len(COLORS)])}
        else:
            marker = {"symbol": "circle", "size": 13, "color": colour[name]}
        label = name if name == BASELINE else f"{name} ({row.get('n_seeds', 0)} seeds)"
        fig.add_trace(go.Scatter(
            x=[x], y=[y], mode="markers+text", name=label, text=[name], textposition="top center", marker=marker,
            error_x={"type": "data", "array": [dx], "visible": True, "thickness": 1},
            error_y={"type": "data", "array": [dy], "visible": True, "thickness": 1},
            hovertext=[f"<b>{name}</b><br>{settings_text(row.get('settings'))}<br>"
                       f"{catalogue.label(accuracy)} {metric_cell((row.get('metrics') or {}).get(accuracy))}"
                       f"<br>{catalogue.label(fairness)} "
                       f"{metric_cell((row.get('metrics') or {}).get(fairness))}"], hoverinfo="text"))
    return trade_off_layout(fig, fairness, accuracy, height, "(higher is better): mean ± std over seeds",
                            "filled: method · open: control")
