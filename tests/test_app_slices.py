"""The Audit page's Slices tab on the demo audit, driven with ``streamlit.testing.v1.AppTest``."""

from __future__ import annotations

from fairaudit.slices import find_slices
from appkit import background
from appkit.slices_view import slice_attributes
from tests.test_app import AUDIT, app, open_page  # noqa: F401  (app: the demo AppTest fixture)


def test_slices_tab_renders_the_top_slices(app):
    at = open_page(app, AUDIT)
    assert "Slices" in [t.label for t in at.tabs]
    charts = [c for c in at.get("plotly_chart") if "slice-bars" in c.proto.id]
    assert len(charts) == 1
    table = next(d for d in at.dataframe if "Slice" in d.value.columns)
    run = next(background.get(k).result for k in background.keys()
               if background.get(k).done and background.get(k).result.setup.is_demo)
    n_boot = at.select_slider(key="n-boot").value
    expected = find_slices(run.predictions, slice_attributes(run), metric="accuracy", max_depth=3, min_size=50,
                           n_boot=n_boot, seed=0)
    top = expected.frame(15)
    assert table.value["Slice"].tolist() == top["slice"].tolist()
    assert table.value["Gap"].round(6).tolist() == top["gap"].round(6).tolist()
    assert any(f"of {expected.n_slices_tested:,} slices tested" in c.value for c in at.caption)
    # The demo model's errors concentrate where Smiling and Male disagree with its learnt shortcut.
    assert table.value["Significant"].iloc[0]

    at.selectbox(key="sl-metric").set_value("tpr").run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d for d in at.dataframe if "Slice" in d.value.columns)
    tpr = find_slices(run.predictions, slice_attributes(run), metric="tpr", max_depth=3, min_size=50,
                      n_boot=n_boot, seed=0).frame(15)
    assert table.value["Slice"].tolist() == tpr["slice"].tolist()
