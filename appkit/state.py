"""Session state and caches of the app.

The current :class:`~appkit.setup.AuditSetup` lives in
``st.session_state`` (default: the demo audit). Predictions live in the
process-wide background registry, keyed by the setup; reports are cached per
(setup, grouping, threshold, bootstrap size), so returning to a page or to a
threshold already seen is instant.
"""

from __future__ import annotations

import streamlit as st

from fairaudit.audit import Predictions, audit_predictions
from fairaudit.data.base import FairDataset
from fairaudit.metrics import AuditReport
from appkit import background
from appkit.runner import open_dataset, run_setup
from appkit.setup import AuditSetup, demo_setup

SETUP_KEY = "audit_setup"
QUERY_KEY = "audit"
MAX_KNOWN_SETUPS = 32


@st.cache_resource(show_spinner=False)
def _known_setups() -> dict[str, AuditSetup]:
    """Setups used in this server process, by key, so a reloaded page can find its audit again."""
    return {}


def current_setup() -> AuditSetup:
    """The session's setup; a fresh session (e.g. a reload) resumes the audit named in the URL, else the demo."""
    setup = st.session_state.get(SETUP_KEY)
    if setup is None:
        wanted = st.query_params.get(QUERY_KEY, "")
        setup = _known_setups().get(wanted) or demo_setup()
        if wanted and wanted not in _known_setups():
            st.caption(f":material/link_off: The link's audit `{wanted}` is not known to this server (it was "
                       "started before the server restarted); showing the demo audit instead.")
        st.session_state[SETUP_KEY] = setup
    return setup


def use_setup(setup: AuditSetup) -> None:
    known = _known_setups()
    known[setup.key()] = setup
    for key in list(known)[:max(0, len(known) - MAX_KNOWN_SETUPS)]:
        del known[key]
    st.session_state[SETUP_KEY] = setup


def remember_in_url(setup: AuditSetup) -> None:
    """Name the setup in the page URL (``?audit=<key>``) so reloading the page resumes it."""
    if setup == demo_setup():
        st.query_params.pop(QUERY_KEY, None)
    else:
        st.query_params[QUERY_KEY] = setup.key()


def task_key(setup: AuditSetup) -> str:
    return f"audit:{setup.key()}"


def start_run(setup: AuditSetup) -> background.TaskState:
    """Start (or find) the background pass that produces the setup's predictions."""
    return background.submit(task_key(setup), run_setup, setup)


def setup_dataset(setup: AuditSetup, split: str | None = None) -> FairDataset:
    """The dataset split of ``setup``, cached (shared across sessions; never re-``select`` it)."""
    return _cached_dataset(setup.dataset, split or setup.split, setup.target, tuple(setup.sensitive),
                           setup.data_dir, setup.options)


@st.cache_resource(max_entries=8, show_spinner=False)
def _cached_dataset(name: str, split: str, target: str | None, sensitive: tuple[str, ...], data_dir: str | None,
                    options: tuple) -> FairDataset:
    return open_dataset(AuditSetup(dataset=name, split=split, target=target, sensitive=sensitive,
                                   data_dir=data_dir, options=options))


@st.cache_data(max_entries=512, show_spinner=False)
def cached_report(run_key: str, threshold: float, n_boot: int, _preds: Predictions) -> AuditReport:
    """The report of stored predictions at ``threshold``; ``run_key`` identifies ``_preds``."""
    return audit_predictions(_preds, threshold=threshold, n_boot=n_boot, seed=0)
