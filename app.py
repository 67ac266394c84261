"""fairaudit — the Streamlit app. Run with ``streamlit run app.py``.

This file is the entry point: it sets the page configuration, declares the
pages with ``st.navigation`` and renders the home page. The other views are
in ``app_pages/`` (not ``pages/``, a folder name that would switch Streamlit to
its older multipage mode and bypass ``st.navigation``); every number they show
comes from the ``fairaudit`` engine.
"""

from __future__ import annotations

import streamlit as st

from appkit import pages
from appkit.figures import FORMAT_KEY, FORMATS, PRESENT_KEY, presenter_styles
from appkit.query_state import copy_link, sync, url_value
from appkit.state import current_setup, start_run, use_setup
from appkit.widgets import guard_page
from appkit.setup import demo_setup

PRESENTING = st.query_params.get("present") == "1"
st.set_page_config(page_title="fairaudit", page_icon=":material/balance:", layout="wide",
                   initial_sidebar_state="collapsed" if PRESENTING else "expanded")



def home() -> None:
    # Warm up the demo audit in the background so the first click finds it ready.
    if current_setup() == demo_setup():
        start_run(demo_setup())

    st.title("fairaudit")
    st.markdown("#### Group-fairness auditing for vision and tabular classifiers")
    st.markdown(
        "fairaudit runs your model once over a dataset split and breaks its behaviour down by sensitive "
        "group: accuracy, selection rate, true and false positive rates with bootstrap confidence intervals, "
        "and the disparities between groups (statistical parity, equalized odds, accuracy gaps, the 80 % rule). "
        "Move the decision threshold and every number updates instantly from the stored predictions."
    )
    if st.button("Open the demo audit", type="primary", icon=":material/play_arrow:"):
        use_setup(demo_setup())
        st.switch_page(pages.AUDIT_PAGE)
    st.caption("The demo audits a deliberately biased *Smiling* classifier on the synthetic-faces dataset "
               "(bias 0.9, sensitive attribute *Male*, test split). The first visit trains the demo model, "
               "which takes about a minute on a CPU; afterwards it is cached.")

    st.divider()
    left, middle, right = st.columns(3)
    with left:
        st.markdown("##### :material/database: Data")
        st.markdown("Built-in datasets (synthetic faces, coloured digits, UCI Adult), local folders "
                    "(CelebA, UTKFace, FairFace, …), a manifest CSV of your own images, or a CSV of "
                    "predictions you already have.")
    with middle:
        st.markdown("##### :material/neurology: Model")
        st.markdown("The demo model, or your own checkpoint (safetensors or a PyTorch state dict, "
                    "with an optional JSON sidecar naming its architecture). Checkpoints are loaded safely "
                    "and checked against the dataset's classes and input shape.")
    with right:
        st.markdown("##### :material/analytics: Audit")
        st.markdown("Per-group metrics with confidence intervals, disparity cards with pass/fail "
                    "tolerances, confusion matrices, intersectional heatmaps, misclassified samples "
                    "per group, and CSV / JSON downloads.")
    st.page_link(pages.DATA_PAGE, label="Choose another dataset or model", icon=":material/tune:")


navigation = pages.navigation(home)
with st.sidebar:
    present = st.toggle("Presenter mode", value=url_value("present", False), key=PRESENT_KEY,
                        help="Hides the sidebar and the widgets and enlarges text and charts, for a projector. "
                             "Leave it by removing present=1 from the address.")
    sync("present", present, False)
    st.segmented_control("Chart downloads", list(FORMATS), format_func=FORMATS.get, key=FORMAT_KEY,
                         default=url_value("figures", "png", choices=list(FORMATS)),
                         help="What the camera button of every chart's toolbar downloads.")
    sync("figures", st.session_state.get(FORMAT_KEY) or "png", "png")
presenter_styles()
link_slot = st.sidebar.empty()  # filled after the page has put its state in the URL
guard_page(navigation.run)
with link_slot.container():
    copy_link(navigation.url_path)
