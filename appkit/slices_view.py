"""The Audit page's "Slices" tab: slice discovery on the stored predictions (the model is not run again)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from appkit.figures import chart

from fairaudit.errors import FairauditError
from fairaudit.metrics import catalogue
from fairaudit.slices import METRICS, SliceReport, dataset_attributes, describe, find_slices
from fairaudit.views.charts import FONT

TOP = 15
GALLERY = 8


def slice_attributes(run) -> pd.DataFrame:
    """Every attribute of the run's rows: the dataset's (and tabular inputs), or the table's other columns."""
    if run.dataset is not None:
        return dataset_attributes(run.dataset, run.predictions.indices)
    used = {run.setup.label_column, run.setup.prediction_column, run.setup.score_column}
    return run.table[[c for c in run.table.columns if c not in used]].reset_index(drop=True)


def gap_bars(frame: pd.DataFrame, metric_label: str, title: str | None = None) -> go.Figure:
    """Horizontal bars of each slice's gap to its complement with its bootstrap interval."""
    frame = frame.iloc[::-1]
    colours = np.where(frame["significant"], np.where(frame["gap"] < 0, "#dc2626", "#2563eb"), "#9ca3af")
    has_ci = frame["ci_low"].notna().any()
    error = dict(type="data", symmetric=False, array=(frame["ci_high"] - frame["gap"]).to_numpy(),
                 arrayminus=(frame["gap"] - frame["ci_low"]).to_numpy(), color="#374151") if has_ci else None
    fig = go.Figure(go.Bar(x=frame["gap"], y=frame["slice"], orientation="h", marker_color=colours, error_x=error,
                           customdata=np.stack([frame["n"], frame["value"], frame["complement"], frame["q_value"]], 1),
                           hovertemplate="%{y}<br>n = %{customdata[0]}<br>slice %{customdata[1]:.3f} vs rest "
                                         "%{customdata[2]:.3f}<br>gap %{x:+.3f}<br>q = %{customdata[3]:.2g}"
                                         "<extra></extra>"))
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", font=dict(size=15)) if title else None,
                      template="plotly_white", font=FONT, height=max(260, 28 * len(frame) + 80),
                      margin=dict(l=10, r=10, t=48 if title else 16, b=10), showlegend=False,
                      xaxis_title=f"{metric_label}: slice − rest")
    return fig


def _report(key: tuple, run, threshold: float, metric: str, depth: int, min_size: int, n_boot: int) -> SliceReport:
    cache = st.session_state.setdefault("_slice_reports", {})
    if key not in cache:
        cache.clear()  # one run's reports at a time: they are cheap to recompute
        cache[key] = find_slices(run.predictions, slice_attributes(run), metric=metric, max_depth=depth,
                                 min_size=min_size, n_boot=n_boot, threshold=threshold, seed=0)
    return cache[key]


def slices_tab(run, threshold: float, run_key: str, n_boot: int) -> None:
    binary = run.predictions.probs.shape[1] == 2
    metrics = [m for m, (_, _, needs_binary) in METRICS.items() if binary or not needs_binary]
    left, middle, right = st.columns(3)
    metric = left.selectbox("Metric", metrics, format_func=catalogue.label, key="sl-metric")
    depth = middle.selectbox("Most conditions per slice", [1, 2, 3], index=2, key="sl-depth")
    min_size = right.number_input("Smallest slice", 5, 100000, 50, 5, key="sl-min",
                                  help="Slices with fewer rows are not tested.")
    try:
        with st.spinner("Searching slices…"):
            report = _report((run_key, round(float(threshold), 4), metric, int(depth), int(min_size), n_boot),
                             run, threshold, metric, int(depth), int(min_size), n_boot)
    except FairauditError as exc:
        st.error(str(exc))
        return
    meta = report.meta
    st.caption(f"{meta['n_significant']:,} of {report.n_slices_tested:,} slices tested differ significantly from "
               f"the rest (Benjamini–Hochberg, FDR {report.alpha:g}) over {len(meta['attributes'])} attributes; "
               f"{meta['n_implied']:,} of them are implied by a more general slice. p-values: two-proportion "
               f"z-test of the slice against the rest; intervals: {meta['n_boot']:,} Poisson-bootstrap resamples "
               f"of the gap.")
    frame = report.frame(TOP)
    if frame.empty:
        st.info("No slice is large enough to test; lower the smallest slice size.")
        return
    chart(gap_bars(frame, catalogue.label(metric), title=f"Top slices by {catalogue.label(metric)} gap"),
                    key="slice-bars")
    table = frame.rename(columns={"slice": "Slice", "value": "Slice value", "complement": "Rest", "gap": "Gap",
                                  "ci_low": "Gap CI low", "ci_high": "Gap CI high", "p_value": "p",
                                  "q_value": "q", "significant": "Significant", "implied_by": "Implied by"})
    st.dataframe(table, hide_index=True, key="slice-table",
                 column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                for c in ("Slice value", "Rest", "Gap", "Gap CI low", "Gap CI high")}
                 | {c: st.column_config.NumberColumn(c, format="%.2e") for c in ("p", "q")})
    if run.dataset is not None and run.dataset.kind == "image":
        _slice_gallery(run, report, threshold)


def _slice_gallery(run, report: SliceReport, threshold: float) -> None:
    from appkit.widgets import image_grid
    from fairaudit.views import gallery

    choices = list(range(min(TOP, len(report.slices))))
    pick = st.selectbox("Show samples of", choices, format_func=lambda i: describe(report.slices[i]["slice"]),
                        key="sl-gallery")
    if pick is None:
        return
    attributes = slice_attributes(run)
    mask = np.ones(len(attributes), dtype=bool)
    for column, value in report.slices[pick]["slice"].items():
        mask &= attributes[column].astype(str).to_numpy() == value
    preds = run.predictions
    wrong = preds.predictions(threshold) != preds.labels
    rows = np.concatenate([np.flatnonzero(mask & wrong), np.flatnonzero(mask & ~wrong)])[:GALLERY]
    info = gallery.prediction_rows(preds, rows, threshold)
    images = [gallery.to_image(run.dataset.load_input(int(i))) for i in info["sample"]]
    image_grid(images, [f"#{s} · {t} → {p}" for s, t, p in zip(info["sample"], info["true"], info["predicted"])],
               per_row=GALLERY)
