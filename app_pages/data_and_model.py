"""Data & Model: choose what to audit, preview samples per group, start the audit."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from appkit.pages import AUDIT_PAGE
from appkit.query_state import sync, url_value
from appkit.state import current_setup, setup_dataset, start_run, use_setup
from appkit.widgets import USER_ERRORS, image_grid, setting_input, show_error
from fairaudit.audit.external import predictions_from_frame
from fairaudit.data import get_spec, list_datasets
from fairaudit.data.base import FairDataset
from fairaudit.data.registry import option_help, parse_options
from fairaudit.errors import FairauditError
from fairaudit.models.checkpoint_files import TORCHSCRIPT_CHECKBOX
from fairaudit.views import gallery
from fairaudit.views.jobs_view import setting_fields
from appkit.runner import load_setup_model, read_table
from appkit.setup import (MODEL_DEMO, MODEL_PATH, MODEL_UPLOAD, SOURCE_DATASET, SOURCE_PREDICTIONS,
                                AuditSetup, full_options)
from appkit.uploads import MANIFEST_NAME, stage_manifest

SOURCES = {
    "builtin": "Built-in dataset",
    "folder": "Dataset folder",
    "manifest": "Manifest CSV",
    "predictions": "Predictions CSV",
}
MODELS = {MODEL_DEMO: "Demo model", MODEL_UPLOAD: "Upload a checkpoint", MODEL_PATH: "Checkpoint path"}
PER_GROUP = 6
MAX_GROUPS = 12
NONE = "— none —"


def source_of(setup: AuditSetup) -> str:
    if setup.source == SOURCE_PREDICTIONS:
        return "predictions"
    if setup.dataset == "manifest" and setup.data_dir and "uploads" in setup.data_dir:
        return "manifest"
    return "builtin" if get_spec(setup.dataset).embedded else "folder"


def option_inputs(spec, current: dict, hidden: tuple[str, ...] = ()) -> dict | None:
    """One widget per dataset option, generated from the option's declaration (type, range, choices, unit);
    ``None`` after one error line when a value is refused (its range, in the declaration's words)."""
    values = dict(current)
    shown = [f for f in setting_fields(option_help(spec)) if f.name not in hidden]
    if not shown:
        return full_options(spec.name, values)
    cols = st.columns(min(3, len(shown)))
    for i, field in enumerate(shown):
        values[field.name] = setting_input(field, f"option:{spec.name}:{field.name}",
                                           value=current.get(field.name, field.default), where=cols[i % len(cols)])
    try:
        parse_options(spec, {k: v for k, v in values.items() if k in spec.options})
    except FairauditError as exc:
        show_error(exc)
        return None
    return full_options(spec.name, values)


def choose_split(spec, setup: AuditSetup) -> str:
    splits = list(spec.splits)
    default = setup.split if setup.dataset == spec.name and setup.split in splits else (
        "test" if "test" in splits else splits[-1])
    return st.selectbox("Split to audit", splits, index=splits.index(default), key=f"split:{spec.name}")


def dataset_choice(setup: AuditSetup, source: str) -> AuditSetup | None:
    """Widgets for a registered dataset (built-in, folder or uploaded manifest); ``None`` until complete."""
    specs = [s for s in list_datasets() if s.embedded == (source == "builtin")]
    if source == "folder":
        specs = [s for s in specs if s.name != "manifest"] + [s for s in specs if s.name == "manifest"]
    if source == "manifest":
        specs = [get_spec("manifest")]
    names = [s.name for s in specs]
    if source != "manifest":
        index = names.index(setup.dataset) if setup.dataset in names else 0
        name = st.selectbox("Dataset", names, index=index, key=f"dataset:{source}",
                            format_func=lambda n: f"{n} — {get_spec(n).description}")
    else:
        name = "manifest"
    spec = get_spec(name)
    same = setup.dataset == name and setup.source == SOURCE_DATASET
    current = setup.option_dict if same else {}
    data_dir = None
    hidden: tuple[str, ...] = ()
    if source == "folder":
        data_dir = st.text_input("Folder on this machine", value=(setup.data_dir or "") if same else "",
                                 key=f"folder:{name}", placeholder="/path/to/" + name,
                                 help="The folder that holds the dataset files; see the dataset's description.")
        if not data_dir:
            st.info("Enter the folder that holds the dataset.", icon=":material/folder_open:")
            return None
    if source == "manifest":
        st.caption("A CSV with one row per image: a path column and label / attribute columns "
                   "(e.g. `path,label,group`). Relative paths are resolved against the image folder, and "
                   "every image must lie inside it.")
        upload = st.file_uploader("Manifest CSV", type=["csv"], key="manifest-upload")
        folder = st.text_input("Image folder", key="manifest-folder", placeholder="/path/to/images")
        hidden = ("manifest",)
        if upload is None:
            return None
        path_column = current.get("path_column", spec.options["path_column"])
        data_dir = str(stage_manifest(upload.getvalue(), upload.name, folder or None, path_column))
        current = {**current, "manifest": MANIFEST_NAME}
    with st.expander("Dataset options", expanded=source == "builtin"):
        options = option_inputs(spec, current, hidden)
    if options is None:
        return None
    split = choose_split(spec, setup)
    return AuditSetup(source=SOURCE_DATASET, dataset=name, data_dir=data_dir or None, split=split,
                      target=setup.target if same else None, sensitive=setup.sensitive if same else ()
                      ).with_options(options)


def attribute_choice(candidate: AuditSetup, dataset: FairDataset) -> AuditSetup | None:
    """Target and sensitive attribute(s) among the dataset's attribute columns."""
    columns = list(dataset.attributes.columns)
    target_default = candidate.target if candidate.target in columns else dataset.default_target
    left, right = st.columns(2)
    target = left.selectbox("Target (what the model predicts)", columns, index=columns.index(target_default),
                            key=f"target:{candidate.dataset}")
    choices = [c for c in columns if c != target]
    default = [s for s in candidate.sensitive if s in choices] or [s for s in dataset.default_sensitive
                                                                  if s in choices] or choices[:1]
    sensitive = right.multiselect("Sensitive attribute(s)", choices, default=default,
                                  key=f"sensitive:{candidate.dataset}",
                                  help="Several attributes are audited jointly (intersectional groups).")
    if not sensitive:
        st.warning("Choose at least one sensitive attribute.")
        return None
    return replace(candidate, target=target, sensitive=tuple(sensitive))


def torchscript_opt_in(setup: AuditSetup, key: str) -> bool:
    """The explicit opt-in for TorchScript checkpoints, with what it means."""
    allowed = st.checkbox(TORCHSCRIPT_CHECKBOX, value=setup.allow_torchscript, key=key,
                          help="TorchScript checkpoints are refused unless this is ticked.")
    if allowed:
        st.warning("A TorchScript archive is a program, not just weights: loading and running it executes its "
                   "code with this app's permissions, and that code can read and write files on this machine. "
                   "Allow it only for a file whose author you trust.", icon=":material/warning:")
    return allowed


def model_choice(setup: AuditSetup, candidate: AuditSetup) -> AuditSetup | None:
    keys = list(MODELS)
    kind = st.radio("Model", keys, index=keys.index(setup.model) if setup.model in keys else 0,
                    format_func=MODELS.get, horizontal=True, key="model-kind")
    if kind == MODEL_DEMO:
        st.caption("A model trained with plain ERM on the train split of this dataset and target, on first use "
                   "(about a minute on a CPU), then cached in the workspace.")
        return replace(candidate, model=MODEL_DEMO)
    arch_help = ("Only needed without a sidecar: small_cnn, resnet18, mlp or a torchvision model name "
                 "such as mobilenet_v3_small.")
    if kind == MODEL_PATH:
        left, right = st.columns([3, 1])
        path = left.text_input("Checkpoint path", value=setup.model_path or "", key="model-path",
                               placeholder="/path/to/model.safetensors")
        arch = right.text_input("Architecture", value=setup.arch or "", key="model-arch-path", help=arch_help)
        allowed = torchscript_opt_in(setup, "model-torchscript-path")
        if not path:
            st.info("Enter the path of a checkpoint (safetensors or a PyTorch state dict; a TorchScript archive "
                    f"only with '{TORCHSCRIPT_CHECKBOX}' ticked).")
            return None
        return replace(candidate, model=MODEL_PATH, model_path=path.strip(), arch=arch.strip() or None,
                       allow_torchscript=allowed)
    left, middle, right = st.columns([2, 2, 1])
    weights = left.file_uploader("Checkpoint", key="model-upload",
                                 help="safetensors or a PyTorch state dict (.pt/.pth); a TorchScript archive only "
                                      f"with '{TORCHSCRIPT_CHECKBOX}' ticked.")
    sidecar = middle.file_uploader("JSON sidecar (optional)", type=["json"], key="model-sidecar")
    arch = right.text_input("Architecture", value=setup.arch or "", key="model-arch-upload", help=arch_help)
    allowed = torchscript_opt_in(setup, "model-torchscript-upload")
    if weights is None:
        return None
    return replace(candidate, model=MODEL_UPLOAD, upload_name=weights.name, upload_bytes=weights.getvalue(),
                   sidecar_bytes=sidecar.getvalue() if sidecar is not None else None, arch=arch.strip() or None,
                   allow_torchscript=allowed)


def preview_dataset(dataset: FairDataset, setup: AuditSetup) -> None:
    sizes = gallery.group_sizes(dataset, setup.sensitive)
    samples = gallery.dataset_samples(dataset, setup.sensitive, PER_GROUP)
    st.caption(f"{len(dataset):,} samples in the {dataset.split} split · {len(sizes)} groups · "
               f"target classes: {', '.join(dataset.value_names[setup.target])}")
    if dataset.kind != "image":
        # Tabular rows read best as one table with the group in the first column.
        frames = [gallery.attribute_rows(dataset, rows).assign(group=group) for group, rows in samples.items()]
        table = pd.concat(frames, ignore_index=True)
        st.dataframe(table[["group", *[c for c in table.columns if c != "group"]]], hide_index=True)
        return
    columns = [setup.target, *setup.sensitive]
    for group, rows in list(samples.items())[:MAX_GROUPS]:
        st.markdown(f"**{group}** · {sizes.get(group, 0):,} samples")
        image_grid([gallery.to_image(dataset.load_input(i)) for i in rows],
                   [gallery.sample_caption(dataset, i, columns) for i in rows], per_row=PER_GROUP)
    if len(samples) > MAX_GROUPS:
        st.caption(f"{len(samples) - MAX_GROUPS} more groups not shown.")


def predictions_choice(setup: AuditSetup) -> AuditSetup | None:
    st.caption("Audit predictions you already have (e.g. from an API): one row per sample with the true label, "
               "the prediction, optionally a score P(y = 1), and the sensitive attribute(s).")
    upload = st.file_uploader("Predictions CSV", type=["csv"], key="predictions-upload")
    if upload is None:
        return None
    table = read_table(upload.getvalue(), upload.name)
    columns = [str(c) for c in table.columns]

    def pick(label: str, guesses: tuple[str, ...], optional: bool = False, key: str = "") -> str | None:
        options = ([NONE] if optional else []) + columns
        index = next((options.index(c) for c in options if c.lower() in guesses), 0)
        value = st.selectbox(label, options, index=index, key=key)
        return None if value == NONE else value

    c1, c2, c3 = st.columns(3)
    with c1:
        label = pick("True label column", ("label", "y", "y_true", "target", "true"), key="pred-label")
    with c2:
        prediction = pick("Prediction column", ("prediction", "pred", "y_pred", "predicted"), key="pred-pred")
    with c3:
        score = pick("Score column (optional)", ("score", "prob", "probability", "p"), optional=True,
                     key="pred-score")
    rest = gallery.suggest_sensitive(table, (label, prediction, score))
    default = [c for c in setup.sensitive if c in rest] or rest[:1]
    sensitive = st.multiselect("Sensitive column(s)", rest, default=default, key="pred-sensitive")
    if not sensitive:
        st.warning("Choose at least one sensitive column.")
        return None
    many = [c for c in sensitive if table[c].nunique() > gallery.MAX_GROUP_VALUES]
    if many:
        st.warning(f"Column {', '.join(map(repr, many))} has more than {gallery.MAX_GROUP_VALUES} distinct values; "
                   "every value becomes a group.")
    preview = table.groupby(sensitive, sort=True, dropna=False).head(3)
    st.markdown("**Rows per group**")
    st.dataframe(preview.sort_values(sensitive), hide_index=True, height=min(400, 38 + 35 * len(preview)))
    return AuditSetup(source=SOURCE_PREDICTIONS, dataset="", options=(), target=None, sensitive=tuple(sensitive),
                      table_name=upload.name, table_bytes=upload.getvalue(), label_column=label,
                      prediction_column=prediction, score_column=score)


def validate(candidate: AuditSetup, dataset: FairDataset | None) -> None:
    """Fast checks that raise the user's error now rather than on the audit page."""
    if candidate.source == SOURCE_PREDICTIONS:
        table = read_table(candidate.table_bytes, candidate.table_name)
        predictions_from_frame(table, candidate.label_column, candidate.prediction_column,
                               list(candidate.sensitive), candidate.score_column, source=candidate.table_name)
    elif candidate.model != MODEL_DEMO:
        with st.spinner("Checking the model against the dataset…"):
            load_setup_model(candidate, dataset)


def main() -> None:
    setup = current_setup()
    st.title("Data & model")
    st.caption(f"Currently audited: {setup.title()}")

    keys = list(SOURCES)
    source = st.segmented_control("Data source", keys, default=url_value("source", source_of(setup), choices=keys),
                                  format_func=SOURCES.get, key="data-source") or source_of(setup)
    sync("source", source, source_of(setup))
    candidate: AuditSetup | None = None  # complete setup, ready to audit
    selected: AuditSetup | None = None  # data and attributes chosen (enough for the preview)
    dataset: FairDataset | None = None
    try:
        if source == "predictions":
            candidate = predictions_choice(setup)
        else:
            selected = dataset_choice(setup, source)
            if selected is not None:
                dataset = setup_dataset(selected)
                st.subheader("Attributes")
                selected = attribute_choice(selected, dataset)
            if selected is not None:
                st.subheader("Model")
                candidate = model_choice(setup, selected)
    except USER_ERRORS as exc:
        show_error(exc)
        candidate = None

    if st.button("Run audit", type="primary", icon=":material/play_arrow:", disabled=candidate is None):
        try:
            validate(candidate, dataset)
        except USER_ERRORS as exc:
            show_error(exc)
        else:
            use_setup(candidate)
            start_run(candidate)
            st.switch_page(AUDIT_PAGE)

    if dataset is not None and selected is not None:
        st.subheader("Samples per group")
        try:
            preview_dataset(dataset, selected)
        except USER_ERRORS as exc:
            show_error(exc)


main()
