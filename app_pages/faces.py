"""Face recognition: does the model find, and falsely match, every group's people equally well?

The page embeds a split of photos grouped by person (``synthetic-identities`` or your own
``root/<identity>/<image>`` folder) with the model's feature extractor and shows, per group of a sensitive
attribute, leave-one-out identification (rank-1 / rank-k with intervals, the error ratio, the L2 ratio),
verification at one global threshold (FNMR, FMR, worst-to-best ratios), the score distributions, the DET
curves, how rank-1 moves with the gallery's composition, and the probes a group's people were missed on, and
offers the same sections as one HTML report. Every number comes from :mod:`fairaudit.faces`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from appkit import background
from appkit.figures import chart
from appkit.query_state import sync, url_value
from appkit.widgets import USER_ERRORS, image_grid, show_error
from fairaudit.data import load_dataset
from fairaudit.faces.audit import FaceAudit, run_face_audit
from fairaudit.faces.charts import ci_text, det_curves, score_distributions, sweep_chart, training_chart
from fairaudit.faces.demo import resolve_face_model
from fairaudit.faces.engine import check_identity_dataset
from fairaudit.faces.report import face_report_html
from fairaudit.faces.train_sweep import ID_MIXES, IMAGE_MIXES, training_sweep
from fairaudit.views.gallery import to_image

DATASETS = {"synthetic-identities": "Synthetic identities (built in)", "identity-folders": "Your folder of people"}
FMR_TARGETS = (1e-2, 1e-3, 1e-4)
SWEEPS = {"none": "None", "ids": "Identities", "images": "Images per identity"}
BOOTSTRAP = 500
TRAIN_SWEEPS = {"ids": "Identities", "images": "Photos per person"}
TRAIN_POLL_SECONDS = 2.0


@st.cache_resource(max_entries=8, show_spinner=False)
def cached_dataset(name: str, data_dir: str | None, sensitive: str | None):
    ds = load_dataset(name, "test", sensitive=sensitive, data_dir=data_dir or None)
    check_identity_dataset(ds)
    return ds


@st.cache_resource(max_entries=8, show_spinner="Embedding the photos and comparing every pair…")
def cached_audit(name: str, data_dir: str | None, sensitive: str, model: str, rank_k: int, fmr: float,
                 sweep: str | None, sweep_group: str | None) -> FaceAudit:
    """The audit per settings (datasets and shipped models do not change while the app runs)."""
    ds = cached_dataset(name, data_dir, sensitive)
    net, description = resolve_face_model(model, ds)
    return run_face_audit(ds, net, ranks=(1, rank_k), fmr=fmr, sweep=sweep, sweep_group=sweep_group,
                          n_boot=BOOTSTRAP, meta={"model": description})


def person_attributes(ds) -> list[str]:
    return [c for c in ds.identity_attributes().columns]


def settings() -> dict[str, Any] | None:
    left, middle, right = st.columns([3, 3, 2])
    names = list(DATASETS)
    name = left.selectbox("Dataset", names, index=names.index(url_value("dataset", names[0], choices=names)),
                          format_func=DATASETS.get, key="faces-dataset")
    sync("dataset", name, names[0])
    data_dir = None
    if name == "identity-folders":
        data_dir = left.text_input("Folder", key="faces-folder", placeholder="/data/lfw",
                                   help="root/<identity>/<image> with identities.csv (column 'identity' and "
                                        "one column per attribute)")
        if not data_dir:
            st.info("Name a folder of people: one sub-folder of photos per person and an identities.csv beside "
                    "them.")
            return None
    model = middle.text_input("Model", "demo", key="faces-model",
                              help="'demo' (synthetic identities only) or the path of a checkpoint whose feature "
                                   "extractor g gives one embedding per image")
    ds = cached_dataset(name, data_dir, None)
    attributes = person_attributes(ds)
    sensitive = right.selectbox("Sensitive attribute", attributes, key="faces-sensitive",
                                index=attributes.index(url_value("sensitive", attributes[0], choices=attributes)))
    sync("sensitive", sensitive, attributes[0])
    a, b, c, d = st.columns([2, 2, 3, 3])
    rank_k = int(a.number_input("Rank k", 2, 50, url_value("rank", 5, bounds=(2, 50)), key="faces-rank"))
    sync("rank", rank_k, 5)
    fmr = b.selectbox("Target FMR", FMR_TARGETS, format_func=lambda v: f"{v:g}", key="faces-fmr",
                      index=FMR_TARGETS.index(url_value("fmr", FMR_TARGETS[1], choices=FMR_TARGETS)))
    sync("fmr", fmr, FMR_TARGETS[1])
    sweeps = list(SWEEPS)
    sweep = c.segmented_control("Gallery sweep", sweeps, format_func=SWEEPS.get, key="faces-sweep",
                                default=url_value("sweep", "none", choices=sweeps)) or "none"
    sync("sweep", sweep, "none")
    groups = [str(v) for v in ds.value_names[sensitive]]
    sweep_group = d.selectbox("Group whose share varies", groups, key="faces-sweep-group",
                              index=groups.index(url_value("group", groups[0], choices=groups)),
                              disabled=sweep == "none")
    sync("group", sweep_group, groups[0])
    return {"name": name, "data_dir": data_dir, "sensitive": sensitive, "model": model, "rank_k": rank_k,
            "fmr": float(fmr), "sweep": None if sweep == "none" else sweep,
            "sweep_group": None if sweep == "none" else sweep_group}


def identification_cards(audit: FaceAudit, rank_k: int) -> None:
    summary = audit.identification.summary
    ratio = summary["error_ratio"]
    st.subheader("Identification")
    st.caption(f"Leave-one-out search of {summary['n_probes']:,} probes among {summary['n_identities']:,} people: "
               "each photo is searched among all the others by cosine similarity. Intervals: bootstrap over probes.")
    columns = st.columns(len(summary["groups"]) + 1)
    for col, (group, entry) in zip(columns, summary["groups"].items()):
        with col:
            st.metric(f"Rank-1 · {group}", f"{entry['rank1']:.3f}", help=ci_text(entry["ci"].get("rank1")))
            st.caption(f"{ci_text(entry['ci'].get('rank1'))} · {entry['n_probes']:,} probes of "
                       f"{entry['n_identities']:,} people")
            st.metric(f"Rank-{rank_k} · {group}", f"{entry[f'rank{rank_k}']:.3f}")
            st.caption(ci_text(entry["ci"].get(f"rank{rank_k}")))
            st.metric(f"L2 ratio · {group}", f"{entry['l2_ratio']:.3f}",
                      help="distance to the nearest wrong person over the sum of the distances to the nearest "
                           "right and wrong person; above 0.5 the right person is nearer")
    with columns[-1]:
        value = "n/a" if ratio["max"] is None else f"{ratio['max']:.2f}"
        st.metric("Error ratio (worst / best)", value,
                  help="(1 − rank-1 of a group) / (1 − rank-1 of the best group): 1 is parity")
        st.caption(f"best group: {ratio['best_group']} · {ci_text(ratio.get('max_ci'))}")


def verification_cards(audit: FaceAudit) -> None:
    summary = audit.verification.summary
    st.subheader("Verification")
    st.caption(f"One global threshold {summary['threshold']:.3f}, chosen for a false-match rate of "
               f"{summary['target_fmr']:g} over all {summary['n_impostor']:,} impostor pairs (measured "
               f"{summary['overall_fmr']:.2e}); per group, FMR counts impostor pairs within the group. Intervals: "
               "bootstrap over people.")
    columns = st.columns(len(summary["groups"]) + 1)
    for col, (group, entry) in zip(columns, summary["groups"].items()):
        with col:
            st.metric(f"FNMR · {group}", f"{entry['fnmr']:.3f}")
            st.caption(f"{ci_text(entry['ci'].get('fnmr'))} · {entry['n_genuine']:,} genuine pairs")
            st.metric(f"FMR · {group}", f"{entry['fmr']:.2e}")
            st.caption(f"{ci_text(entry['ci'].get('fmr'), '.2e')} · {entry['n_impostor']:,} impostor pairs")
    with columns[-1]:
        for rate in ("fnmr", "fmr"):
            value = summary[f"{rate}_ratio"]
            st.metric(f"{rate.upper()} ratio (worst / best)", "n/a" if value is None else f"{value:.2f}")
            st.caption(ci_text(summary.get(f"{rate}_ratio_ci")))


def composition_table(audit: FaceAudit) -> None:
    from fairaudit.faces.audit import gallery_composition

    table = pd.DataFrame([{"Group": group, "identities": e["identities"], "images": e["images"],
                           "images per identity": e["images_per_identity"]}
                          for group, e in gallery_composition(audit.embeddings).items()])
    st.dataframe(table, hide_index=True, key="faces-composition",
                 column_config={"images per identity": st.column_config.NumberColumn(format="%.1f")})


def failed_probes(audit: FaceAudit, ds) -> None:
    groups = audit.identification.group_names
    group = st.selectbox("Group", groups, key="faces-failed-group")
    pairs = audit.identification.failed(group, limit=9)
    if not pairs:
        st.info(f"No probe of {group} was missed at rank 1.")
        return
    names = ds.value_names["identity"]
    images, captions = [], []
    for probe, match in pairs:
        images += [to_image(ds[probe][0]), to_image(ds[match][0])]
        captions += [f"probe: {names[ds.identities[probe]]}", f"matched: {names[ds.identities[match]]}"]
    st.caption(f"Photos of {group} whose nearest other photo shows someone else (probe, then its wrong match).")
    image_grid(images, captions, per_row=6)


def train_task_key(chosen: dict[str, Any]) -> str:
    return "faces-train:" + ":".join(f"{k}={v}" for k, v in sorted(chosen.items()))


def _train(kind: str, mixes: tuple[float, ...], seeds: int, epochs: int, n_train_ids: int, train_images: int,
           sensitive: str, progress) -> dict[str, Any]:
    return training_sweep(kind, mixes, tuple(range(seeds)), data_options={"n_train_ids": n_train_ids,
                                                                           "train_images": train_images},
                          sensitive=sensitive, epochs=epochs, progress=progress)


def _mixes(text: str) -> tuple[float, ...]:
    from fairaudit.errors import FairauditError

    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise FairauditError(f"the men's shares must be numbers separated by commas, e.g. 0,0.5,1; got {text!r}.") \
            from None


def training_composition(sensitive: str) -> None:
    """Train the demo recipe at several men's shares of the training data, in the background, and plot rank-1."""
    st.subheader("Training composition")
    st.caption("Trains the demo model's recipe once per men's share of the training identities (or of the "
               "training photos, with as many men as women) and seed, and audits every model on the same test "
               "people. It runs in the background: leave the page and come back.")
    a, b, c, d, e, f = st.columns([3, 3, 2, 2, 2, 2])
    kind = a.segmented_control("Vary", list(TRAIN_SWEEPS), format_func=TRAIN_SWEEPS.get, default="ids",
                               key="faces-train-kind") or "ids"
    default = ",".join(f"{m:g}" for m in (ID_MIXES if kind == "ids" else IMAGE_MIXES))
    mixes_text = b.text_input("Men's shares", default, key=f"faces-train-mixes-{kind}")
    seeds = int(c.number_input("Seeds", 1, 5, 3, key="faces-train-seeds"))
    epochs = int(d.number_input("Epochs", 1, 50, 10, key="faces-train-epochs"))
    n_ids = int(e.number_input("Training people", 4, 2000, 200, key="faces-train-ids"))
    images = int(f.number_input("Photos per person", 2, 100, 10, key="faces-train-images"))
    try:
        chosen = {"kind": kind, "mixes": _mixes(mixes_text), "seeds": seeds, "epochs": epochs, "n_train_ids": n_ids,
                  "train_images": images, "sensitive": sensitive}
    except USER_ERRORS as exc:
        show_error(exc)
        return
    key = train_task_key(chosen)
    if background.get(key) is None:
        if st.button(f"Train {len(chosen['mixes']) * seeds} models in the background", key="faces-train-start",
                     icon=":material/model_training:"):
            background.submit(key, _train, **chosen)
        else:
            return
    state = background.get(key)
    st.fragment(training_result, run_every=TRAIN_POLL_SECONDS if state is not None and state.running else None)(key)


def training_result(key: str) -> None:
    state = background.get(key)
    if state is None:
        return
    if state.running:
        st.progress(state.fraction, text=state.message or "Loading the training people…")
        st.caption(f"{state.elapsed:.0f} s elapsed")
        return
    if state.failed:
        show_error(state.error, state.traceback)
        if st.button("Try again", key="faces-train-retry", icon=":material/refresh:"):
            background.forget(key)
            st.rerun()
        return
    sweep = state.result
    chart(training_chart(sweep), key="faces-train-chart")
    rows = []
    for i, share in enumerate(sweep["share"]):
        row = {"men's share": share}
        for g in sweep["groups"]:
            row[f"rank-1 · {g}"] = sweep["rank1"][g][i]
            row[f"sd · {g}"] = sweep["rank1_std"][g][i]
            row[f"FNMR · {g}"] = sweep["fnmr"][g][i]
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="faces-train-table")
    st.caption(f"{len(sweep['seeds'])} seed(s) per share, {sweep['epochs']} epochs; test: "
               f"{sweep['test']['identities']} people, {sweep['test']['images']} photos; FNMR at a global threshold "
               f"for an FMR of {sweep['fmr']:g}.")


def main() -> None:
    st.title("Face recognition")
    st.caption("Identification and verification per group, and how the gallery's make-up moves them.")
    try:
        chosen = settings()
        if chosen is None:
            return
        audit = cached_audit(**chosen)
    except USER_ERRORS as exc:
        show_error(exc)
        return
    ds = cached_dataset(chosen["name"], chosen["data_dir"], chosen["sensitive"])
    st.caption(f"Model: {audit.meta['model']} · {len(ds):,} photos of {ds.num_classes:,} people.")
    identification_cards(audit, chosen["rank_k"])
    verification_cards(audit)
    tab_names = ["Score distributions", "DET curves", "Gallery composition", "Failed probes"]
    tabs = st.tabs(tab_names, default=url_value("tab", tab_names[0], choices=tab_names), key="faces-tab",
                   on_change="rerun")
    sync("tab", st.session_state.get("faces-tab") or tab_names[0], tab_names[0])
    with tabs[0]:
        chart(score_distributions(audit.verification, audit.embeddings.group_names), key="faces-scores")
    with tabs[1]:
        chart(det_curves(audit.verification, audit.embeddings.group_names), key="faces-det")
    with tabs[2]:
        composition_table(audit)
        if audit.sweep is None:
            st.caption("Choose a gallery sweep above to see rank-1 against a group's share of the gallery's "
                       "identities or of its images per identity (fixed gallery size, 3 seeds).")
        else:
            chart(sweep_chart(audit.sweep), key="faces-sweep-chart")
    with tabs[3]:
        failed_probes(audit, ds)
    st.download_button("Download the report (HTML)", data=lambda: face_report_html(audit, ds),
                       file_name="face-recognition-report.html", mime="text/html", key="faces-report",
                       icon=":material/download:",
                       help="these sections in one self-contained file that opens offline (built when clicked)")
    if chosen["name"] == "synthetic-identities":
        training_composition(chosen["sensitive"])


main()
