"""Explain: Grad-CAM or Integrated Gradients heat maps of a run's test images, before and after mitigation.

The run is named in the URL (``/explain?run=<id>``) like on the Run page. The
maps, the selection of images and the attribution-bias table all come from
:func:`fairaudit.explain.explain_run`; this page only chooses and shows.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
import streamlit as st

from appkit.figures import chart
from appkit.query_state import sync, url_value
from appkit.runs import RUN_PAGE, choose_run
from appkit.widgets import USER_ERRORS, show_error
from fairaudit import jobs
from fairaudit.explain import EXPLAINERS, RULES, ExplanationGrid, explain_bias, explain_run

QUERY = "run"
SELECTED = "explain-page-run"
ALL_GROUPS = "All groups"
BIAS_FORMAT = {c: st.column_config.NumberColumn(c, format="%.3f") for c in
               ("target_region_share", "sensitive_region_share", "target_region_area", "sensitive_region_area")}


@st.cache_data(max_entries=16, show_spinner=False)
def cached_explanation(run_id: str, method: str, selection: str, group: str | None, n: int, baseline: str,
                       n_steps: int, seed: int) -> ExplanationGrid:
    """The heat-map grid per run and settings (a finished run's models never change)."""
    return explain_run(run_id, method=method, selection=selection, group=group, n=n, seed=seed, baseline=baseline,
                       n_steps=n_steps, bias_samples=0)


@st.cache_data(max_entries=16, show_spinner=False)
def cached_bias(run_id: str, method: str, per_group: int, baseline: str, n_steps: int,
                seed: int) -> pd.DataFrame | None:
    """The attribution-bias table, cached apart from the grid: choosing other images does not recompute it."""
    return explain_bias(run_id, method=method, per_group=per_group, seed=seed, baseline=baseline, n_steps=n_steps)


def group_names(run: Mapping[str, Any]) -> list[str]:
    return [g["group"] for g in (run.get("before") or {}).get("groups") or []]


def controls(run: Mapping[str, Any]) -> dict:
    left, middle, right = st.columns([2, 3, 2])
    methods, rules, groups = list(EXPLAINERS), list(RULES), [ALL_GROUPS, *group_names(run)]
    method = left.segmented_control("Method", methods, format_func=lambda name: EXPLAINERS[name].label,
                                    default=url_value("method", "gradcam", choices=methods),
                                    key="explain-method") or "gradcam"
    selection = middle.selectbox("Images", rules, format_func=RULES.get, key="explain-selection",
                                 index=rules.index(url_value("images", rules[0], choices=rules)))
    group = right.selectbox("Group", groups, key="explain-group",
                            index=groups.index(url_value("group", ALL_GROUPS, choices=groups)))
    with st.sidebar:
        n = st.slider("Images to show", 1, 16, url_value("n", 6, bounds=(1, 16)), key="explain-n")
        seed = st.number_input("Seed", 0, 10_000, 0, key="explain-seed")
        bias_samples = st.slider("Images per group for the bias table", 0, 128, 32, step=8, key="explain-bias-n",
                                 help="A seeded random sample of each group's test images; 0 skips the table.")
        with st.expander("Integrated Gradients", expanded=method == "ig"):
            baseline = st.radio("Baseline", ["black", "blur"], horizontal=True, key="explain-baseline")
            n_steps = st.slider("Steps", 8, 128, 32, step=8, key="explain-steps")
    for param, value, default in (("method", method, "gradcam"), ("images", selection, rules[0]),
                                  ("group", group, ALL_GROUPS), ("n", n, 6)):
        sync(param, value, default)
    return {"method": method, "selection": selection, "group": None if group == ALL_GROUPS else group, "n": n,
            "baseline": baseline, "n_steps": n_steps, "bias_samples": bias_samples, "seed": int(seed)}


def bias_section(run_id: str, settings: dict) -> None:
    st.subheader("Attribution bias")
    per_group = settings["bias_samples"]
    if per_group == 0:
        st.caption("Choose the number of images per group in the sidebar to compute the table.")
        return
    try:
        with st.spinner("Scoring attributions by region…"):
            table = cached_bias(run_id, settings["method"], per_group, settings["baseline"], settings["n_steps"],
                                settings["seed"])
    except USER_ERRORS as exc:
        show_error(exc)
        return
    if table is None:
        st.caption("This dataset has no region masks for its target and sensitive attributes, so the maps cannot "
                   "be scored by region.")
        return
    regions = table.attrs.get("regions") or {}
    where = (f" (target: {', '.join(regions['target'])}; sensitive: {', '.join(regions['sensitive'])})"
             if regions else "")
    st.caption(f"Share of the positive attribution mass inside the target region and inside the sensitive-attribute "
               f"region{where}, averaged over {per_group} random test images per group; the *area* columns are the "
               "share of the image each region covers, i.e. what a uniform map would give.")
    st.dataframe(table, hide_index=True, column_config=BIAS_FORMAT)


def main() -> None:
    run_id = choose_run(SELECTED, done_only=True,
                        empty="No finished runs yet: explanations compare the models of a finished mitigation run.")
    if run_id is None:
        return
    run = jobs.get_run(run_id)
    st.title(f"Explain run {run['id']}")
    st.caption(f"**{run['method']}** on **{run['dataset']}** · each map explains the image's true class; "
               "*before* is the deployed model on the clean image, *after* is the mitigated model on the clean "
               "image or, for FAAP, the same deployed model on the perturbed image.")
    settings = controls(run)
    opacity = st.slider("Heat-map opacity", 0.0, 1.0, 0.5, step=0.05, key="explain-opacity")
    grid_settings = {k: v for k, v in settings.items() if k != "bias_samples"}
    try:
        with st.spinner("Computing attributions…"):
            grid = cached_explanation(run["id"], **grid_settings)
    except USER_ERRORS as exc:
        show_error(exc)
        return
    if grid.note:
        st.info(grid.note, icon=":material/info:")
    if len(grid):
        chart(grid.figure(opacity), key="explain-grid")
    bias_section(run["id"], settings)
    st.page_link(RUN_PAGE, label="Back to the run", icon=":material/list_alt:", query_params={"run": run["id"]})


main()
