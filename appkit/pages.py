"""Every page of the app, declared once: the file each page lives in and the navigation, grouped into sections.

Pages link to each other through these constants (``st.page_link(pages.RUN_PAGE, …)``,
``st.switch_page(pages.AUDIT_PAGE)``) so a page's path is spelled in one place.
"""

from __future__ import annotations

from typing import Callable

import streamlit as st

STORY_PAGE = "app_pages/story.py"
DATA_PAGE = "app_pages/data_and_model.py"
AUDIT_PAGE = "app_pages/audit.py"
FACES_PAGE = "app_pages/faces.py"
MITIGATE_PAGE = "app_pages/mitigate.py"
RUN_PAGE = "app_pages/run.py"
EXPLAIN_PAGE = "app_pages/explain.py"
EMBEDDINGS_PAGE = "app_pages/embeddings.py"
COMPARE_PAGE = "app_pages/compare.py"


def navigation(home: Callable[[], None]):
    """The app's ``st.navigation``: Home and the Guided demo first, then the pages in three sections
    (Audit · Mitigate · Analyse)."""
    return st.navigation({
        "": [st.Page(home, title="Home", icon=":material/home:", url_path="home", default=True),
             st.Page(STORY_PAGE, title="Guided demo", icon=":material/auto_stories:", url_path="story")],
        "Audit": [
            st.Page(DATA_PAGE, title="Data & Model", icon=":material/tune:", url_path="data"),
            st.Page(AUDIT_PAGE, title="Audit", icon=":material/analytics:", url_path="audit"),
            st.Page(FACES_PAGE, title="Face recognition", icon=":material/face:", url_path="faces"),
        ],
        "Mitigate": [
            st.Page(MITIGATE_PAGE, title="Mitigate", icon=":material/healing:", url_path="mitigate"),
            st.Page(RUN_PAGE, title="Run details", icon=":material/list_alt:", url_path="run"),
        ],
        "Analyse": [
            st.Page(EXPLAIN_PAGE, title="Explain", icon=":material/visibility:", url_path="explain"),
            st.Page(EMBEDDINGS_PAGE, title="Embeddings", icon=":material/scatter_plot:", url_path="embeddings"),
            st.Page(COMPARE_PAGE, title="Compare", icon=":material/compare_arrows:", url_path="compare"),
        ],
    })
