"""Every chart of the app through one function: modebar downloads named after the chart, its data as CSV,
and the look of the current theme and presenter mode."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import streamlit as st

from fairaudit.views.charts import export_config, figure_data, figure_title, file_stem

FORMAT_KEY = "figure-format"
FORMATS = {"png": "PNG", "svg": "SVG"}


def image_format() -> str:
    """The format the charts' camera button downloads (chosen once in the sidebar)."""
    value = st.session_state.get(FORMAT_KEY) or "png"
    return value if value in FORMATS else "png"


PRESENT_KEY = "presenter-mode"
DARK = {"font": "#e5e7eb", "grid": "#374151"}


def dark_theme() -> bool:
    try:
        return (st.context.theme.type or "light") == "dark"
    except Exception:  # outside a served session
        return False


def themed(fig: go.Figure) -> go.Figure:
    """A copy of ``fig`` in the look of the app's current theme (plotly's dark template, light text and grid
    on a transparent background in the dark theme) and, in presenter mode, with larger text and height."""
    dark, present = dark_theme(), bool(st.session_state.get(PRESENT_KEY))
    if not dark and not present:
        return fig
    fig = go.Figure(fig)
    if dark:
        fig.update_layout(template="plotly_dark", font_color=DARK["font"], paper_bgcolor="rgba(0,0,0,0)",
                          plot_bgcolor="rgba(0,0,0,0)")
        fig.update_xaxes(gridcolor=DARK["grid"], zerolinecolor=DARK["grid"])
        fig.update_yaxes(gridcolor=DARK["grid"], zerolinecolor=DARK["grid"])
    if present:
        size = (fig.layout.font.size or 13) + 5
        fig.update_layout(font_size=size, height=int((fig.layout.height or 420) * 1.3))
    return fig


PRESENTER_CSS = """<style>
html { font-size: 20px; }
.stMain h1 { font-size: 3rem; }
.stMain [data-testid="stMarkdownContainer"] p, .stMain [data-testid="stCaptionContainer"] { font-size: 1.3rem; }
.stMain [data-testid="stMetricValue"] { font-size: 3rem; }
.stMain [data-testid="stSelectbox"], .stMain [data-testid="stMultiSelect"], .stMain [data-testid="stSlider"],
.stMain [data-testid="stNumberInput"], .stMain [data-testid="stTextInput"], .stMain [data-testid="stRadio"],
.stMain [data-testid="stButtonGroup"], .stMain [data-testid="stCheckbox"], .stMain [data-testid="stDownloadButton"],
.stMain [data-testid="stForm"], [data-testid="stSidebar"], [data-testid="stToolbar"] { display: none; }
</style>"""


def presenter_styles() -> None:
    """In presenter mode: no sidebar, toolbar or widgets, larger text and charts (for a projector)."""
    if st.session_state.get(PRESENT_KEY):
        st.html(PRESENTER_CSS)


def chart(fig: go.Figure, *, key: str, name: str | None = None, where: Any = None, data: bool = True) -> None:
    """Show ``fig``: the camera button of its modebar downloads it as PNG or SVG (the sidebar's choice) under a
    file name made from ``name`` (else the figure's title, else ``key``), and a button below offers the data
    behind it as CSV."""
    where = where if where is not None else st
    label = name or figure_title(fig) or key
    fig = themed(fig)
    where.plotly_chart(fig, key=key, config=export_config(label, image_format()))
    if data:
        where.download_button("Chart data (CSV)", lambda: figure_data(fig).to_csv(index=False),
                              file_name=f"{file_stem(label)}.csv", mime="text/csv", key=f"{key}-csv",
                              icon=":material/download:", type="tertiary", on_click="ignore")


def chart_in(where: Any, fig: go.Figure, *, key: str, **kwargs: Any) -> None:
    """:func:`chart` inside a column or other container."""
    chart(fig, key=key, where=where, **kwargs)
