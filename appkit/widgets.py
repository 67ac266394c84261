"""Streamlit widgets shared by the pages."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import streamlit as st

from appkit.state import start_run, task_key
from fairaudit.errors import FairauditError
from fairaudit.ui import background
from fairaudit.ui.runner import AuditRun
from fairaudit.ui.setup import AuditSetup
from fairaudit.ui.tables import DisparityCheck

POLL_SECONDS = 0.3


def show_error(exc: BaseException, trace: str = "") -> None:
    """A user error shows its one-sentence message; anything else also offers the traceback."""
    if isinstance(exc, FairauditError):
        st.error(str(exc), icon=":material/error:")
        return
    st.error(f"Unexpected error ({type(exc).__name__}): {exc}", icon=":material/bug_report:")
    if trace:
        with st.expander("Details"):
            st.code(trace, language="text")


def await_run(setup: AuditSetup) -> AuditRun | None:
    """Start or find the setup's background pass and show its progress until it is done.

    The pass runs in a thread keyed by the setup, so reloading the page
    reattaches to it instead of starting over. Returns ``None`` (after
    showing the error) when the pass failed.
    """
    key = task_key(setup)
    state = background.get(key) or start_run(setup)
    if state.running:
        slot = st.empty()
        while state.running:
            with slot.container():
                st.progress(state.fraction, text=state.message or "Starting…")
                st.caption(f"{state.elapsed:.0f} s elapsed · this keeps running if you leave or reload the page.")
            time.sleep(POLL_SECONDS)
            state = background.get(key) or start_run(setup)
        slot.empty()
    if state.failed:
        show_error(state.error, state.traceback)
        if st.button("Try again", icon=":material/refresh:"):
            background.forget(key)
            st.rerun()
        return None
    return state.result


def setup_summary(setup: AuditSetup) -> None:
    """The current setup (call inside the sidebar), with a link to change it."""
    st.markdown("**Current audit**")
    if setup.source == "predictions":
        st.caption(f"Predictions table `{setup.table_name}` · label `{setup.label_column}`")
    else:
        opts = ", ".join(f"{k}={v}" for k, v in setup.changed_options().items())
        st.caption(f"Dataset `{setup.dataset}`" + (f" ({opts})" if opts else "") + f" · split `{setup.split}`")
        st.caption(f"Target `{setup.target}` · {setup.model_title()}")
    st.caption(f"Sensitive `{', '.join(setup.sensitive)}`")
    st.page_link("app_pages/data_and_model.py", label="Change data or model", icon=":material/tune:")


def disparity_cards(checks: Sequence[DisparityCheck], per_row: int = 4) -> None:
    """One ``st.metric`` per disparity: value, and pass/fail against its tolerance; an undefined one reads
    "n/a" with the reason below it."""
    for start in range(0, len(checks), per_row):
        cols = st.columns(per_row)
        for col, check in zip(cols, checks[start:start + per_row]):
            color = "gray" if check.passes is None else ("green" if check.passes else "red")
            col.metric(check.label, check.value_text, delta=check.verdict, delta_color=color, delta_arrow="off",
                       help=check.help_text, border=True)
            if check.reason:
                col.caption(f"n/a: {check.reason}.")


def image_grid(images: Sequence[np.ndarray], captions: Sequence[str], per_row: int = 6) -> None:
    """Images in rows of ``per_row`` columns, each with its caption."""
    for start in range(0, len(images), per_row):
        cols = st.columns(per_row)
        for col, image, caption in zip(cols, images[start:start + per_row], captions[start:start + per_row]):
            col.image(image, caption=caption, width="stretch")
