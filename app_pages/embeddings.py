"""Embeddings: the latent space g(x) of a finished run before and after mitigation, and how much of the
sensitive attribute a linear probe still reads from it, next to the run's behavioural disparities.

The run is named in the URL (``/embeddings?run=<id>``). Every number comes
from :mod:`fairaudit.embed`, which caches its results in the run's folder.
"""

from __future__ import annotations

from typing import Any, Mapping

import streamlit as st

from appkit.figures import chart
from appkit.query_state import sync, url_value
from appkit.runs import choose_run, run_page_link
from appkit.widgets import USER_ERRORS, show_error
from fairaudit import embed, jobs

QUERY = "run"
SELECTED = "embeddings-run"
COLOR_LABELS = {"sensitive": "Sensitive group", "target": "Target", "prediction": "Prediction",
                "correct": "Correct / wrong"}
METHOD_LABELS = {"tsne": "t-SNE", "umap": "UMAP"}
AXES_HELP = ("FAAP keeps the deployed extractor, so one projection is fitted on both latent sets; a retrained "
             "model has a latent space of its own, so its map is aligned onto the before map (Procrustes).")


def settings_panel() -> dict[str, Any]:
    sidebar = st.sidebar
    methods = list(METHOD_LABELS)
    method = sidebar.radio("Projection", methods, format_func=METHOD_LABELS.get, horizontal=True,
                           index=methods.index(url_value("projection", "tsne", choices=methods)),
                           key="embeddings-method")
    sync("projection", method, "tsne")
    settings: dict[str, Any] = {"method": method}
    if method == "tsne":
        settings["perplexity"] = sidebar.slider("Perplexity", 5, 100, 30, key="embeddings-perplexity",
                                                help="effective number of neighbours of each point")
    else:
        settings["n_neighbors"] = sidebar.slider("Neighbours", 2, 100, 15, key="embeddings-neighbors",
                                                 help="UMAP's n_neighbors: larger values keep more global shape")
    settings["n"] = int(sidebar.number_input("Sample size", 100, embed.MAX_SAMPLE, embed.DEFAULT_SAMPLE, step=500,
                                             key="embeddings-n",
                                             help="test samples, stratified by sensitive group × label"))
    settings["shared_axes"] = sidebar.checkbox("Shared axes", True, key="embeddings-shared", help=AXES_HELP)
    return settings


@st.cache_data(max_entries=16, show_spinner=False)
def cached(run_id: str, settings: Mapping[str, Any]) -> embed.RunEmbedding:
    """``embed_run`` of maps already stored with the run (a finished run never changes, so run id + settings key
    the cache). No element is drawn in here: a cached result replays the elements its first call drew, and a
    progress bar made outside it cannot be replayed."""
    return embed.embed_run(run_id, **settings)


def compute_with_progress(run_id: str, settings: Mapping[str, Any]) -> embed.RunEmbedding:
    """``embed_run`` with a progress bar (it stores the maps with the run, so later reruns use :func:`cached`)."""
    bar = st.progress(0.0, text="Starting…")

    def progress(fraction: float, message: str) -> None:
        bar.progress(min(1.0, max(0.0, fraction)), text=message)

    try:
        return embed.embed_run(run_id, **settings, progress=progress)
    finally:
        bar.empty()


def leakage_panel(result: embed.RunEmbedding) -> None:
    left, right = st.columns([3, 2])
    number = st.column_config.NumberColumn(format="%.3f")
    with left:
        st.markdown("**Sensitive-attribute leakage** (linear probe on g(x), cross-validated)")
        table = result.leakage.drop(columns=["n"])
        st.dataframe(table, hide_index=True, key="embeddings-leakage",
                     column_config={c: number for c in table.columns if c not in ("Attribute", "Stage")})
        info = result.leakage_result
        st.caption(f"{info['n']:,} stratified test samples, {info['settings']['folds']}-fold standardised "
                   "logistic regression; accuracy with Wilson 95 % intervals, AUC with bootstrap intervals. "
                   "Chance: the share of the most common value.")
    with right:
        st.markdown("**Behaviour** (the run's before/after audits)")
        st.dataframe(result.behaviour, hide_index=True, key="embeddings-behaviour",
                     column_config={c: number for c in ("SPD", "DEO", "Accuracy")})
        st.caption("Latents that hide the sensitive attribute need not give fair decisions, and the reverse: "
                   "read the two tables together.")


def main() -> None:
    st.title("Embeddings")
    run_id = choose_run(SELECTED, done_only=True,
                        empty="No finished runs yet: the latent space of a run is shown once it is done.")
    if run_id is None:
        return
    settings = settings_panel()
    run = jobs.get_run(run_id)
    st.caption(f"Run **{run_id}** · **{run['method']}** on **{run['dataset']}** · latents g(x) of the test split "
               "before and after mitigation.")
    run_page_link(run_id, label="Open the run page")
    color = st.segmented_control("Colour by", list(COLOR_LABELS), format_func=COLOR_LABELS.get,
                                 default=url_value("color", "sensitive", choices=list(COLOR_LABELS)),
                                 key="embeddings-color") or "sensitive"
    sync("color", color, "sensitive")
    try:
        ready = embed.embedding_cached(run_id, **settings)
    except USER_ERRORS as exc:
        show_error(exc)
        return
    if not ready and not st.button("Compute", type="primary", icon=":material/scatter_plot:",
                                   key="embeddings-compute"):
        st.caption(f"Computing the {METHOD_LABELS[settings['method']]} maps of {settings['n']:,} samples takes "
                   "from seconds (GPU) to a few minutes (CPU); the result is kept with the run.")
        return
    try:
        result = cached(run_id, settings) if ready else compute_with_progress(run_id, settings)
    except USER_ERRORS as exc:
        show_error(exc)
        return
    chart(result.figure(color), key="embeddings-figure")
    leakage_panel(result)


main()
