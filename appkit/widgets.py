"""Streamlit widgets shared by the pages."""

from __future__ import annotations

import logging
import os
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import streamlit as st

from appkit.pages import DATA_PAGE
from appkit.state import start_run, task_key
from fairaudit import workspace
from fairaudit.errors import FairauditError
from appkit import background
from appkit.runner import AuditRun
from appkit.setup import AuditSetup
from fairaudit.views.jobs_view import SettingField
from fairaudit.views.tables import DisparityCheck

POLL_SECONDS = 0.3


# Errors a page expects and explains in one sentence: the user's input (FairauditError), an optional
# package that cannot be imported, a file that cannot be read or written.
USER_ERRORS = (FairauditError, ImportError, OSError)
# Import name -> what to pip install, for the optional paths whose import name differs.
DISTRIBUTIONS = {"umap": "umap-learn", "sklearn": "scikit-learn", "PIL": "pillow", "cv2": "opencv-python"}
APP_LOG = "app.log"
# Set (to 1) by the test suite so that an unexpected error fails an in-process app test instead of
# becoming a sentence on the page.
RAISE_ENV = "FAIRAUDIT_RAISE_APP_ERRORS"
UNEXPECTED_PREFIX = "Something went wrong"
_LOG = logging.getLogger("fairaudit.app")


def error_sentence(exc: BaseException) -> str | None:
    """The one sentence, with what to do, for an expected error; ``None`` for an unexpected one."""
    if isinstance(exc, FairauditError):
        return str(exc)
    if isinstance(exc, ImportError):
        module = (getattr(exc, "name", None) or "").split(".")[0]
        package = DISTRIBUTIONS.get(module, module)
        what = f"the Python package '{package}', which" if package else "a Python package that"
        return (f"This view needs {what} cannot be imported here: install the app's requirements with "
                "`pip install -r requirements.txt` in the app's environment and restart the app.")
    if isinstance(exc, OSError):
        where = f" '{exc.filename}'" if getattr(exc, "filename", None) else ""
        reason = exc.strerror or type(exc).__name__
        return (f"A file{where} cannot be read or written ({reason}): check that the path exists and that "
                "the app may use it, then try again.")
    return None


def log_unexpected(exc: BaseException, trace: str = "") -> Path:
    """Append the error's traceback to ``$FAIRAUDIT_HOME/logs/app.log`` (the system's temporary folder when the
    workspace cannot be written) and return that file."""
    text = trace or "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    _LOG.error("unexpected error in the app:\n%s", text)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for folder in (lambda: workspace.subdir("logs"), lambda: Path(tempfile.gettempdir())):
        try:
            path = folder() / APP_LOG
            with open(path, "a", encoding="utf-8") as out:
                out.write(f"--- {stamp}\n{text.rstrip()}\n")
            return path
        except (OSError, FairauditError):
            continue
    return Path(tempfile.gettempdir()) / APP_LOG


def show_error(exc: BaseException, trace: str = "") -> None:
    """An expected error shows its one sentence with what to do; anything else one sentence naming the log that
    holds its details. A page never shows a traceback."""
    sentence = error_sentence(exc)
    if sentence is not None:
        st.error(sentence, icon=":material/error:")
        return
    log = log_unexpected(exc, trace)
    st.error(f"{UNEXPECTED_PREFIX} ({type(exc).__name__}): the details are in the log `{log}`; try again, and "
             "report the problem with that log if it persists.", icon=":material/bug_report:")


def guard_page(run) -> None:
    """Run a page (``st.navigation(...).run``) so that any error it lets through is shown by :func:`show_error`
    rather than as a traceback (unless :data:`RAISE_ENV` is set)."""
    try:
        run()
    except Exception as exc:  # Streamlit's rerun/stop signals are BaseExceptions and pass through
        if os.environ.get(RAISE_ENV) == "1":
            raise
        show_error(exc, traceback.format_exc())


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
    st.page_link(DATA_PAGE, label="Change data or model", icon=":material/tune:")


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


def setting_input(field: SettingField, key: str, value: Any = None, where: Any = None) -> Any:
    """One widget generated from a setting's declaration (a method's setting or a dataset's option): a
    drop-down for choices, a number input whose help states the range and unit, a checkbox for a bool, text
    otherwise; ``value`` (default: the declared default) is where it starts. A number outside the range is
    refused when it is used, with the declaration's message (one error line, nothing queued or loaded); the
    widget itself does not clamp it, so the message says what was wrong instead of the value silently
    changing."""
    where = where if where is not None else st
    value = field.default if value is None else value
    if field.kind == "bool":
        return where.checkbox(field.label, value=bool(value), key=key, help=field.help)
    if field.kind == "int":
        return int(where.number_input(field.label, value=int(value), step=1, key=key, help=field.help_text))
    if field.kind == "float":
        return float(where.number_input(field.label, value=float(value), step=float(field.step), format="%g",
                                        key=key, help=field.help_text))
    if field.kind == "choice":
        index = field.choices.index(value) if value in field.choices else field.choices.index(field.default)
        return where.selectbox(field.label, field.choices, index=index, key=key, help=field.help)
    if field.kind == "optional":
        return where.text_input(field.label, key=key, placeholder="none", help=field.help).strip() or None
    return where.text_input(field.label, value=str(value), key=key, help=field.help)
