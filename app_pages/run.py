"""Run: one mitigation run — status, configuration, timings, before/after audits, slices, artefacts, FAAP
samples.

The run is named in the URL (``/run?run=<id>``), so the page can be
bookmarked, reloaded or opened in a second tab.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import streamlit as st

from appkit.figures import chart
from appkit.pages import EMBEDDINGS_PAGE, EXPLAIN_PAGE
from appkit.query_state import sync, url_value
from appkit.runs import MITIGATE_PAGE, before_after_card, choose_run, curves_chart, run_controls, status_line
from appkit.widgets import USER_ERRORS, image_grid, show_error
from fairaudit import jobs
from fairaudit.errors import FairauditError
from fairaudit.jobs.spec import load_methods
from fairaudit.metrics import AuditReport
from fairaudit.mitigation import METHODS, config_help
from fairaudit.views import charts
from fairaudit.views.jobs_view import (ACTIVE_STATUSES, AMPLIFY, artifact_table, before_after_long, cli_command,
                                    comparison_table, comparison_text, config_table, faap_samples, short_model,
                                    stats_rows, timings_table)
from fairaudit.views.tables import group_table, metric_with_errors

QUERY = "run"
SELECTED = "run-page-run"
GROUP_METRICS = ("accuracy", "selection_rate", "tpr", "fpr")
DOWNLOAD_LIMIT = 50 * 2**20  # files larger than this are listed, not offered for download
FAAP_PER_GROUP = 3
NOT_DONE = "Available when the run is done."


def header(run: Mapping[str, Any]) -> None:
    st.title(f"Run {run['id']}")
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["created"]))
    st.caption(f"**{run['method']}** on **{run['dataset']}** · model {short_model(str(run['model']))} · seed "
               f"{run['seed']} · {run.get('device') or 'device not chosen yet'} · created {created} · backend "
               f"{run['backend']} · attempt {run.get('attempts') or 0}")


def live_status(run_id: str) -> None:
    """Progress and curves of an active run, polled; the whole page reruns once it finishes."""
    run = jobs.get_run(run_id)
    if run["status"] not in ACTIVE_STATUSES:
        st.rerun(scope="app")
    status_line(run)
    if run_controls(run, key="run-page"):
        st.rerun()
    curves_chart(run, key="run-live-curves")


def comparison_tab(run: Mapping[str, Any]) -> None:
    before, after = run["before"], run["after"]
    st.dataframe(comparison_text(comparison_table(before, after)), hide_index=True)
    chart(charts.metric_bars(before_after_long(before, after), title="Before and after (95 % intervals)"),
                    key="run-before-after-bars")


def groups_tab(run: Mapping[str, Any]) -> None:
    """The per-group tables and bars of both audits side by side."""
    cols = st.columns(2)
    for col, stage in zip(cols, ("before", "after")):
        frame = AuditReport.from_dict(run[stage]).groups_frame()
        with col:
            st.markdown(f"**{stage.capitalize()}** · {int(run[stage]['overall']['n']):,} test samples")
            chart(charts.metric_bars(metric_with_errors(frame, GROUP_METRICS), height=300),
                            key=f"run-groups-{stage}")
            table = group_table(frame, GROUP_METRICS)
            st.dataframe(table, hide_index=True, column_config={
                c: st.column_config.NumberColumn(c, format="%.3f") for c in table.columns
                if c not in ("Group", "n") and not c.endswith("CI")})


def configuration_tab(run: Mapping[str, Any]) -> None:
    load_methods()
    help_rows = config_help(METHODS[run["method"]]) if run["method"] in METHODS else []
    st.markdown("**Method settings**")
    settings = config_table(run.get("config") or {}, help_rows)
    st.dataframe(settings, hide_index=True, height=38 + 35 * len(settings),
                 column_config={"Changed": st.column_config.CheckboxColumn("Changed", width="small"),
                                "Help": st.column_config.TextColumn("Help", width="large")})
    spec = run.get("spec") or {}
    if spec:
        st.markdown("**Queue the same run from the command line**")
        st.code(cli_command(spec), language="bash", wrap_lines=True)
    left, right = st.columns(2)
    with left:
        st.markdown("**Timings**")
        timings = timings_table(run)
        if timings.empty:
            st.caption("No timings yet.")
        else:
            st.dataframe(timings, hide_index=True,
                         column_config={"Seconds": st.column_config.NumberColumn("Seconds", format="%.2f")})
    with right:
        stats = stats_rows(run.get("stats"))
        if stats:
            st.markdown("**Method statistics**")
            st.dataframe(pd.DataFrame(stats, columns=["Statistic", "Value"]), hide_index=True)
    if run.get("versions"):
        with st.expander("Library versions"):
            st.json(run["versions"])


def artifacts_tab(run: Mapping[str, Any]) -> None:
    table = artifact_table(run.get("artifacts"))
    if table.empty:
        st.caption("No artefacts recorded.")
        return
    st.dataframe(table, hide_index=True,
                 column_config={"Size (KB)": st.column_config.NumberColumn("Size (KB)", format="%.1f")})
    offered = [(row["Artefact"], Path(row["Path"])) for _, row in table.iterrows()
               if row["Size (KB)"] == row["Size (KB)"] and row["Size (KB)"] * 1024 <= DOWNLOAD_LIMIT]
    cols = st.columns(4)
    for i, (name, path) in enumerate(offered):
        # The file is read only when the button is clicked.
        cols[i % 4].download_button(name, path.read_bytes, file_name=f"{run['id']}-{path.name}",
                                    key=f"download-{name}", icon=":material/download:", width="stretch")


@st.cache_data(max_entries=8, show_spinner=False)
def cached_faap_samples(run_id: str, generator: str, spec: dict) -> list:
    """The FAAP grid of a run (``run_id`` keys the cache: a run's generator never changes once it is done)."""
    return faap_samples({"artifacts": {"generator": generator}, "spec": spec}, per_group=FAAP_PER_GROUP)


def faap_tab(run: Mapping[str, Any]) -> None:
    st.caption(f"Test images of each group: the original, the learned perturbation (×{AMPLIFY:g} around mid-grey, "
               "so that it is visible) and the perturbed image the deployed model sees.")
    try:
        with st.spinner("Perturbing test images…"):
            samples = cached_faap_samples(run["id"], (run.get("artifacts") or {}).get("generator") or "",
                                          run.get("spec") or {})
    except FairauditError as exc:
        st.info(str(exc), icon=":material/info:")
        return
    for group in dict.fromkeys(s.group for s in samples):
        rows = [s for s in samples if s.group == group]
        st.markdown(f"**{group}** · largest pixel change {max(s.linf for s in rows):.3f}")
        images, captions = [], []
        for s in rows:
            images += [s.original, s.perturbation, s.perturbed]
            captions += [f"#{s.index}", f"δ ×{AMPLIFY:g}", "perturbed"]
        image_grid(images, captions, per_row=3 * len(rows))


@st.cache_data(max_entries=16, show_spinner=False)
def recorded_slices(path: str, modified: float) -> dict | None:
    """The ``slices`` block of a run's ``result.json`` (``modified`` keys the cache: a resumed run rewrites it)."""
    return json.loads(Path(path).read_text()).get("slices")


def slices_section(run: Mapping[str, Any]) -> None:
    """The worst slice before with its gap before and after, and the top slices after: did the harm move?"""
    from fairaudit.views.slices_compare import available, metric_label, slices_chart, slices_summary, slices_table

    st.subheader("Slices before → after")
    name = (run.get("artifacts") or {}).get("result") or run.get("result_path")
    block = None
    if name and Path(name).is_file():
        try:
            block = recorded_slices(str(name), Path(name).stat().st_mtime)
        except (OSError, ValueError):  # unreadable or half-written: the rest of the page still shows
            block = None
    if block is None:
        st.caption("This run recorded no slices (its result file has none).")
        return
    if not available(block):
        st.info(slices_summary(block), icon=":material/info:")
        return
    st.markdown(slices_summary(block))
    table = slices_table(block)
    if table.empty:
        return
    chart(slices_chart(table, block), key="run-slices-chart")
    st.dataframe(table, hide_index=True, key="run-slices-table",
                 column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in ("Before", "After")}
                 | {c: st.column_config.NumberColumn(c, format="%+.3f")
                    for c in ("Gap before", "Gap after", "Gap change")}
                 | {c: st.column_config.NumberColumn(c, format="%.2e") for c in ("q before", "q after")})
    left_out = ", ".join(block.get("left_out") or []) or "none"
    st.caption(f"{metric_label(block)} of every slice of up to {block['max_depth']} attribute values with at least "
               f"{block['min_size']:,} of the {block['n_rows']:,} test rows, against the rest of the rows "
               f"({block['direction']}); {block['n_slices_tested']['before']:,} slices tested, "
               f"{block['n_significant']['before']:,} significant before and {block['n_significant']['after']:,} "
               f"after (Benjamini–Hochberg, FDR {block['alpha']:g}). Gaps: slice − rest; q: Benjamini–Hochberg "
               f"q-value of the two-proportion z-test. Same rows and attributes before and after, from the audits' "
               f"predictions; not sliced on: {left_out}.")


REPORT_SAMPLES = 1000  # embedding points in the downloaded report: a few seconds on a CPU


def report_download(run: Mapping[str, Any]) -> None:
    """The self-contained HTML audit report of the run, built only when the button is clicked."""
    from fairaudit.report import report_bytes

    run_id = run["id"]
    st.download_button("Download audit report (HTML)", lambda: report_bytes([run_id], samples=REPORT_SAMPLES),
                       file_name=f"fairaudit-report-{run_id}.html", mime="text/html", key="run-report-download",
                       icon=":material/description:", on_click="ignore",
                       help="One HTML file that opens offline: data and model, metrics with intervals, verdicts, "
                            "robustness, explanations, embeddings, settings and library versions. Building it "
                            "takes a few seconds.")


def main() -> None:
    run_id = choose_run(SELECTED)
    if run_id is None:
        return
    try:
        run = jobs.get_run(run_id)
    except USER_ERRORS as exc:
        show_error(exc)
        return
    header(run)
    if run["status"] in ACTIVE_STATUSES:
        st.fragment(live_status, run_every=2.0)(run_id)
    else:
        status_line(run)
        if run["status"] != "done" and run_controls(run, key="run-page"):
            st.rerun()
    if run["status"] == "done":
        st.subheader("Before → after mitigation")
        before_after_card(run)
        st.page_link(EXPLAIN_PAGE, label="Explain this run", icon=":material/visibility:",
                     query_params={QUERY: run_id})
        report_download(run)
    names = ["Before / after", "Groups", "Training", "Configuration", "Artefacts"]
    if run["method"] == "faap":
        names.append("Samples")
    tabs = dict(zip(names, st.tabs(names, default=url_value("tab", names[0], choices=names), key="run-tab",
                                   on_change="rerun")))
    sync("tab", st.session_state.get("run-tab") or names[0], names[0])
    done = run["status"] == "done"
    with tabs["Before / after"]:
        if done:
            comparison_tab(run)
        else:
            st.caption(NOT_DONE)
    with tabs["Groups"]:
        if done:
            groups_tab(run)
        else:
            st.caption(NOT_DONE)
    with tabs["Training"]:
        if run["status"] in ACTIVE_STATUSES:
            st.caption("Live curves are shown above while the run is active.")
        else:
            curves_chart(run, key="run-curves")
        if run.get("history"):
            with st.expander("History (one row per epoch)"):
                st.dataframe(pd.DataFrame(run["history"]), hide_index=True)
    with tabs["Configuration"]:
        configuration_tab(run)
    with tabs["Artefacts"]:
        artifacts_tab(run)
    if "Samples" in tabs:
        with tabs["Samples"]:
            if done:
                faap_tab(run)
            else:
                st.caption(NOT_DONE)
    if run.get("traceback") and run["status"] == "failed":
        with st.expander("Traceback"):
            st.code(run["traceback"], language="text")
    if done:
        slices_section(run)
        st.page_link(EMBEDDINGS_PAGE, label="Embeddings of this run", icon=":material/scatter_plot:",
                     query_params={"run": run["id"]})
    st.page_link(MITIGATE_PAGE, label="Back to the Mitigate page", icon=":material/healing:")


main()
