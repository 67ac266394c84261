"""Figures out: every chart's camera button downloads PNG or SVG under a name that says what the chart is, and
the data behind it downloads as CSV."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest

from fairaudit.views.charts import export_config, figure_data, file_stem, metric_bars


def test_file_names_say_what_the_chart_is():
    assert file_stem("DEO by Male × Young") == "fairaudit-deo-by-male-young"
    assert file_stem("<b>Clean</b> vs. adversarial<br>accuracy") == "fairaudit-clean-vs-adversarial-accuracy"
    assert file_stem("") == "fairaudit-chart"
    assert export_config("Metrics per group", "svg")["toImageButtonOptions"] == {
        "format": "svg", "filename": "fairaudit-metrics-per-group", "scale": 2}
    with pytest.raises(ValueError):
        export_config("x", "gif")


def test_figure_data_is_one_row_per_plotted_point_with_its_error_bars():
    frame = pd.DataFrame({"group": ["F", "M", "F", "M"], "metric": ["TPR", "TPR", "FPR", "FPR"],
                          "value": [0.6, 0.8, 0.1, 0.3], "err_plus": [0.05, 0.04, 0.02, 0.03],
                          "err_minus": [0.01, 0.02, 0.02, 0.03], "n": [10, 12, 10, 12]})
    fig = metric_bars(frame, title="Metrics per group")
    data = figure_data(fig)
    assert data[["trace", "x", "y", "error_plus", "error_minus"]].values.tolist() == [
        ["F", "TPR", 0.6, 0.05, 0.01], ["F", "FPR", 0.1, 0.02, 0.02],
        ["M", "TPR", 0.8, 0.04, 0.02], ["M", "FPR", 0.3, 0.03, 0.03]]
    heat = go.Figure(go.Heatmap(z=[[1, 2], [3, 4]], x=["a", "b"], y=["u", "v"], name="cells"))
    cells = figure_data(heat)
    assert cells[["row", "column", "value"]].values.tolist() == [["u", "a", 1], ["u", "b", 2], ["v", "a", 3],
                                                                  ["v", "b", 4]]
