"""Tables, chart and summary of a run's slices before → after (no metric computed here).

They read the ``"slices"`` block a mitigation run records (see
:mod:`fairaudit.slices.compare`); the Run page and the audit report show the same table.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
import plotly.graph_objects as go

from fairaudit.metrics import catalogue
from fairaudit.slices import describe
from fairaudit.views.charts import FONT
from fairaudit.views.palette import colour

COLUMNS = ["Slice", "Role", "n", "Before", "After", "Gap before", "Gap after", "Gap change", "q before", "q after",
           "Significant before", "Significant after"]


def metric_label(block: Mapping[str, Any]) -> str:
    return catalogue.label(str(block.get("metric")))


def available(block: Mapping[str, Any] | None) -> bool:
    return bool(block) and not block.get("reason") and block.get("before") is not None


def _row(conditions: Mapping, role: str, n: Any, before: Mapping | None, after: Mapping | None) -> dict:
    b, a = before or {}, after or {}
    gb, ga = b.get("gap"), a.get("gap")
    return {"Slice": describe(dict(conditions)), "Role": role, "n": n, "Before": b.get("value"),
            "After": a.get("value"), "Gap before": gb, "Gap after": ga,
            "Gap change": None if gb is None or ga is None else ga - gb, "q before": b.get("q_value"),
            "q after": a.get("q_value"), "Significant before": b.get("significant"),
            "Significant after": a.get("significant")}


def slices_table(block: Mapping[str, Any] | None) -> pd.DataFrame:
    """The worst slice before (its metric and gap to the rest before and after), then the top slices after.

    A top slice after that is the worst slice before is one row (``Role`` names both). Empty when the run
    recorded no slices.
    """
    if not available(block):
        return pd.DataFrame(columns=COLUMNS)
    rows, worst = [], block.get("worst_before_after")
    worst_key = None
    if worst:
        worst_key = describe(worst["slice"])
        rows.append(_row(worst["slice"], "worst before", worst["n"], worst["before"], worst["after"]))
    for rank, (entry, before) in enumerate(zip(block.get("after") or [], block.get("after_top_before") or []), 1):
        if describe(entry["slice"]) == worst_key:
            rows[0]["Role"] = f"worst before, #{rank} after"
            continue
        rows.append(_row(entry["slice"], f"#{rank} after", entry["n"], before, entry))
    return pd.DataFrame(rows, columns=COLUMNS)


def _gap_text(entry: Mapping | None) -> str:
    if not entry or entry.get("gap") is None:
        return "not tested"
    q = entry.get("q_value")
    return f"gap {entry['gap']:+.3f}" + (f", q = {q:.2g}" if q is not None else "")


def slices_summary(block: Mapping[str, Any] | None) -> str:
    """One or two sentences: was the worst slice before fixed, is it still the worst, or did the harm move?"""
    if not block:
        return "This run recorded no slices."
    if block.get("reason"):
        return f"Slices were not computed: {block['reason']}"
    metric = metric_label(block)
    worst, top_after = block.get("worst_before_after"), block.get("after") or []
    if not worst:
        return f"No slice had a worse {metric} than the rest of the test rows before mitigation."
    name = describe(worst["slice"])
    before, after = worst["before"], worst.get("after")
    if not before.get("significant"):
        text = (f"No slice was significantly worse off before mitigation (FDR {block['alpha']:g}); the largest "
                f"{metric} gap was {name} ({_gap_text(before)}), after: {_gap_text(after)}.")
    elif worst.get("still_significant"):
        rank = worst.get("rank_after")
        place = "still the worst slice" if rank == 1 else "still significantly worse off"
        implied = (after or {}).get("implied_by")
        where = (f"; #{rank} of the harmful slices" if rank and rank > 1
                 else f"; implied by {describe(implied)}" if implied and not rank else "")
        text = (f"The worst slice before, {name} ({_gap_text(before)}), is {place} after mitigation "
                f"({_gap_text(after)}{where}).")
    else:
        text = (f"The worst slice before, {name} ({_gap_text(before)}), is no longer significantly worse off "
                f"after mitigation ({_gap_text(after)}).")
    first = top_after[0] if top_after else None
    if first and first.get("significant") and describe(first["slice"]) != name:
        text += (f" The worst slice after is {describe(first['slice'])} ({_gap_text(first)})"
                 + (": the harm moved there." if not worst.get("still_significant") else "."))
    elif first is None or not first.get("significant"):
        text += " No slice is significantly worse off after mitigation."
    return text


def slices_chart(table: pd.DataFrame, block: Mapping[str, Any], *, height: int | None = None) -> go.Figure:
    """Horizontal bars of each slice's gap to the rest, before (first palette colour) and after (second)."""
    frame = table.iloc[::-1]
    labels = [f"{s} ({r})" for s, r in zip(frame["Slice"], frame["Role"])]
    fig = go.Figure()
    for i, stage in enumerate(("before", "after")):
        column = f"Gap {stage}"
        fig.add_trace(go.Bar(name=stage.capitalize(), x=frame[column], y=labels, orientation="h",
                             marker_color=colour(i),
                             hovertemplate=f"%{{y}}<br>{stage}: gap %{{x:+.3f}}<extra></extra>"))
    fig.update_layout(barmode="group", template="plotly_white", font=FONT,
                      height=height or max(240, 56 * len(frame) + 90), margin=dict(l=10, r=10, t=40, b=10),
                      title=dict(text=f"{metric_label(block)} gap to the rest, before and after", x=0,
                                 xanchor="left", font=dict(size=15)),
                      xaxis_title=f"{metric_label(block)}: slice − rest",
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1))
    return fig
