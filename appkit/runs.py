"""Streamlit widgets for mitigation runs, shared by the Mitigate and Run pages.

Runs live in the SQLite registry of :mod:`fairaudit.jobs`, so every widget
here reads them again on each (fragment) rerun: a page reload, a second tab
or the CLI all see the same runs.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import streamlit as st

from appkit.figures import chart
from appkit.pages import MITIGATE_PAGE, RUN_PAGE  # noqa: F401  (re-exported for the pages)
from appkit.widgets import USER_ERRORS, show_error
from fairaudit import jobs
from fairaudit.views.jobs_view import (ACTIVE_STATUSES, epoch_text, headline_comparisons, run_duration, run_label,
                                    training_curves)

POLL_SECONDS = 2.0


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def status_line(run: Mapping[str, Any]) -> None:
    """A progress bar for a queued or running run; the outcome message of a finished one."""
    status = run["status"]
    if status in ACTIVE_STATUSES:
        phase = run.get("phase") or ("waiting for a worker" if status == "queued" else status)
        epoch = f" · {epoch_text(run)}" if epoch_text(run) else ""
        st.progress(float(run.get("progress") or 0.0),
                    text=f"{status.capitalize()} · {phase}{epoch} · {100 * (run.get('progress') or 0):.0f} %"
                         f" · {format_seconds(run_duration(run))}")
        if run.get("cancel_requested"):
            st.caption("Cancel requested: the run stops at its next step.")
    elif status == "done":
        st.success(f"Finished in {format_seconds(run.get('seconds') or run_duration(run))} on "
                   f"{run.get('device') or 'the worker'}.", icon=":material/check_circle:")
    elif status == "failed":
        st.error(run.get("message") or "The run failed.", icon=":material/error:")
    else:  # cancelled or interrupted: both can be resumed
        st.warning(run.get("message") or f"The run was {status}.", icon=":material/pause_circle:")


def run_controls(run: Mapping[str, Any], key: str) -> bool:
    """Cancel (queued or running runs) or Resume (interrupted, failed or cancelled runs); returns whether the
    click changed the run."""
    try:
        if run["status"] in ACTIVE_STATUSES:
            if st.columns([1, 4])[0].button("Cancel", key=f"{key}-cancel", icon=":material/stop_circle:",
                                            width="stretch", disabled=bool(run.get("cancel_requested"))):
                status = jobs.cancel(run["id"])
                st.toast(f"Run {run['id']}: " + ("cancelled." if status == "cancelled" else
                                                  "stops at its next step."))
                return True
        elif run["status"] in jobs.RESUMABLE:
            if st.columns([1, 4])[0].button("Resume", key=f"{key}-resume", icon=":material/play_circle:",
                                            width="stretch",
                                            help="Continue from the last checkpoint; the before audit is kept."):
                jobs.resume(run["id"])
                st.toast(f"Run {run['id']} queued to resume.")
                return True
    except USER_ERRORS as exc:
        show_error(exc)
    return False


def before_after_card(run: Mapping[str, Any]) -> None:
    """Accuracy, DP difference, DEO and EOD after mitigation, with the change since before and both intervals."""
    before, after = run.get("before"), run.get("after")
    if not before or not after:
        st.caption("The before/after comparison appears when the run is done.")
        return
    cols = st.columns(4)
    for col, c in zip(cols, headline_comparisons(before, after)):
        goal = "higher" if c.higher_is_better else "lower"
        col.metric(c.label, c.value_text, delta=c.change_text or None,
                   delta_color="off" if c.improved is None else ("normal" if c.higher_is_better else "inverse"),
                   border=True,
                   help=f"After mitigation, change since before ({goal} is better). 95 % bootstrap intervals "
                        "below.")
        before_text = "n/a" if math.isnan(c.before) else f"{c.before:.3f}"
        col.caption(f"95 % CI {c.ci_text(c.after_ci) or '–'}  \n"
                    f"before {before_text} {c.ci_text(c.before_ci)}" + (f"  \n{c.note}." if c.note else ""))


def curves_chart(run: Mapping[str, Any], key: str) -> None:
    """The run's per-epoch curves, or a note while no epoch is recorded."""
    fig = training_curves(run.get("metrics") or [])
    if fig is None:
        waiting = run["status"] in ACTIVE_STATUSES
        st.caption("Curves appear after the first epoch." if waiting else "This run recorded no epochs.")
        return
    chart(fig, key=key)


def run_page_link(run_id: str, label: str = "Open the run page") -> None:
    st.page_link(RUN_PAGE, label=label, icon=":material/open_in_new:", query_params={"run": run_id})


def poll_interval(runs: Sequence[Mapping[str, Any]]) -> float:
    """Poll every :data:`POLL_SECONDS` while a run is queued or running, otherwise rarely (runs started
    from another tab or the CLI still show up)."""
    return POLL_SECONDS if any(r["status"] in ACTIVE_STATUSES for r in runs) else 15.0


def choose_run(key: str, *, done_only: bool = False, empty: str = "No runs yet.", query: str = "run") -> str | None:
    """The run named in the URL (``?run=<id>``), else the newest one, chosen in the sidebar; ``None`` with a
    message when there is none. ``done_only`` offers finished runs only; the URL follows the choice, so a
    reload or a bookmark shows the same run."""
    runs = jobs.list_runs(limit=200)
    if done_only:
        runs = [r for r in runs if r["status"] == jobs.DONE]
    if not runs:
        st.info(empty, icon=":material/info:")
        st.page_link(MITIGATE_PAGE, label="Launch one on the Mitigate page", icon=":material/healing:")
        return None
    by_id = {r["id"]: r for r in runs}
    ids = list(by_id)
    wanted = st.query_params.get(query)
    if wanted and wanted not in ids:
        st.warning(f"There is no {'finished ' if done_only else ''}run '{wanted}'; showing the newest one.")
    if st.session_state.get(key) not in ids:  # a fresh visit: the URL names the run
        st.session_state[key] = wanted if wanted in ids else ids[0]
    run_id = st.sidebar.selectbox("Run", ids, key=key, format_func=lambda i: run_label(by_id[i]))
    st.query_params[query] = run_id
    return run_id
