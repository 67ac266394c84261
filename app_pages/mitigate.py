"""Mitigate: launch a bias-mitigation run in a background worker and follow it live.

The run is queued in the job registry and executed by a detached worker
process (:func:`fairaudit.jobs.submit`), never in this script's thread, so
leaving or reloading the page does not stop it. The job list is a fragment
that polls the registry every two seconds while a run is active; only the
fragment reruns.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from appkit.runs import (before_after_card, curves_chart, poll_interval, run_controls, run_page_link,
                         status_line)
from appkit.launch import launch_buttons, planned, preset_caption, preset_choice, time_estimate
from appkit.query_state import sync, url_value
from appkit.state import current_setup
from appkit.widgets import USER_ERRORS, setting_input, show_error
from fairaudit import jobs
from fairaudit.benchmark.published import published_effects
from fairaudit.data import get_spec, list_datasets
from fairaudit.errors import FairauditError
from fairaudit.metrics import catalogue
from fairaudit.jobs.spec import load_methods
from fairaudit.mitigation import METHODS, config_help, get_method
from fairaudit.views.jobs_view import (changed_settings, cli_command, job_table, run_label,
                                    setting_fields)
from appkit.setup import MODEL_DEMO, MODEL_PATH, SOURCE_DATASET, AuditSetup

SELECTED = "mitigate-run"  # the run shown below the job table
TABLE = "mitigate-table"
MODELS = {MODEL_DEMO: "Demo model", MODEL_PATH: "Checkpoint path"}
DEVICES = ("auto", "cpu", "cuda")
MAX_RUNS = 50
PREFERRED_METHOD = "faap"


# ---------------------------------------------------------------------------- the launch form


def _shorten(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


def method_choice() -> str:
    load_methods()
    names = sorted(METHODS)
    default = PREFERRED_METHOD if PREFERRED_METHOD in names else names[0]
    name = st.selectbox("Method", names, index=names.index(url_value("method", default, choices=names)),
                        key="mitigate-method", format_func=lambda n: f"{n} — {_shorten(get_method(n).summary)}")
    sync("method", name, default)
    st.caption(get_method(name).summary)
    measured_effects(name)
    return name


def measured_effects(name: str) -> None:
    """What the shipped benchmark measured for this method, so the page claims no effect it did not measure."""
    effects = published_effects(name)
    if not effects:
        st.caption(f"Measured effect: none yet — `{name}` has not been benchmarked against its controls over "
                   "seeds, so no effect is claimed for it.")
        return
    verdict = control_verdict(effects)
    with st.expander(f"Measured effect of {name}: {verdict} (fairaudit benchmark)"):
        st.markdown("\n".join(f"- {e.sentence()}" for e in effects))
        st.code("\n".join(sorted({e.command for e in effects})), language="bash")


def control_verdict(effects) -> str:
    """``beats its controls on SPD (not on DEO)``: per target metric, whether every control comparison holds.

    Only the benchmarks of the method's default settings count when there are any: a run with other settings
    says what those settings do, not what the method does as launched."""
    by_metric: dict[str, list[bool]] = {}
    defaults = [e for e in effects if not e.settings]
    for e in defaults or effects:
        if e.against != "baseline" and e.metric != "accuracy":
            by_metric.setdefault(catalogue.label(e.metric), []).append(e.holds)
    if not by_metric:
        return "compared with the deployed model only"
    wins = [m for m, holds in by_metric.items() if all(holds)]
    losses = [m for m in by_metric if m not in wins]
    if not wins:
        return "does not beat its controls"
    return f"beats its controls on {', '.join(wins)}" + (f" (not on {', '.join(losses)})" if losses else "")


def dataset_choice(method: str, setup: AuditSetup) -> str:
    """Datasets the method can work on: the built-in ones, plus the audited one (with its folder)."""
    kinds = get_method(method).kinds
    audited = setup.dataset if setup.source == SOURCE_DATASET else None
    names = [s.name for s in list_datasets() if s.kind in kinds and (s.embedded or s.name == audited)]
    if not names:
        raise FairauditError(f"no dataset of kind {' or '.join(kinds)} is available for '{method}'.")
    default = audited if audited in names else names[0]
    chosen = st.selectbox("Dataset", names, index=names.index(url_value("dataset", default, choices=names)),
                          key=f"mitigate-dataset:{method}", format_func=lambda n: f"{n} — {get_spec(n).description}")
    sync("dataset", chosen, default)
    return chosen


def data_options(dataset: str, setup: AuditSetup) -> dict[str, Any]:
    """The dataset's options, starting from the audited setup's when it is the same dataset."""
    spec = get_spec(dataset)
    current = {**spec.options, **(setup.option_dict if setup.dataset == dataset else {})}
    if not spec.options:
        return {}
    values = {}
    with st.expander("Dataset options: " + ", ".join(f"{k}={v}" for k, v in current.items())):
        cols = st.columns(min(3, len(current)))
        for i, (name, value) in enumerate(current.items()):
            col, key, default = cols[i % len(cols)], f"mitigate-opt:{dataset}:{name}", spec.options[name]
            if isinstance(default, bool):
                values[name] = col.checkbox(name, value=bool(value), key=key)
            elif isinstance(default, int):
                values[name] = int(col.number_input(name, value=int(value), step=1, key=key))
            elif isinstance(default, float):
                values[name] = float(col.number_input(name, value=float(value), step=0.05, format="%.2f", key=key))
            else:
                values[name] = col.text_input(name, value=str(value), key=key)
    return values


def model_choice(setup: AuditSetup) -> tuple[str, str | None]:
    """``(model, arch)``: ``"demo"`` or a checkpoint path (an uploaded checkpoint must be given by path)."""
    keys = list(MODELS)
    default = MODEL_PATH if setup.model == MODEL_PATH else MODEL_DEMO
    kind = st.radio("Model", keys, index=keys.index(default), format_func=MODELS.get, horizontal=True,
                    key="mitigate-model")
    if kind == MODEL_DEMO:
        st.caption("The dataset's demo model (trained by the worker on first use, then cached).")
        return "demo", None
    left, right = st.columns([3, 1])
    path = left.text_input("Checkpoint path", value=setup.model_path or "", key="mitigate-model-path",
                           placeholder="/path/to/model.safetensors",
                           help="The worker reads the checkpoint from this path on this machine.")
    arch = right.text_input("Architecture", value=setup.arch or "", key="mitigate-arch",
                            help="Only needed without a JSON sidecar: small_cnn, resnet18, mlp or a torchvision name.")
    return path.strip(), arch.strip() or None


def launch_form(method: str, dataset: str, setup: AuditSetup) -> None:
    """Hyper-parameters (the method's defaults), run settings and the Launch button."""
    target = setup.target if setup.dataset == dataset else None
    sensitive = list(setup.sensitive) if setup.dataset == dataset and setup.sensitive else None
    spec = get_spec(dataset)
    shown = ", ".join(sensitive or spec.default_sensitive)
    st.caption(f"Target `{target or spec.default_target}` · sensitive `{shown}`"
               + (" (from the current audit)" if target else " (the dataset's defaults)"))
    options = data_options(dataset, setup)
    model, arch = model_choice(setup)
    fields = setting_fields(config_help(get_method(method)))
    preset, preset_values, preset_key = preset_choice(method, f"mitigate-preset:{method}")
    prefix = f"setting:{method}:{preset_key}"
    with st.form(f"mitigate-form:{method}", border=True):
        st.markdown(f"**Hyper-parameters** · {preset_caption(preset)}; the **?** of each setting says what it does")
        values: dict[str, Any] = {}
        per_row = 4
        for start in range(0, len(fields), per_row):
            cols = st.columns(per_row)
            for col, field in zip(cols, fields[start:start + per_row]):
                with col:
                    if field.kind == "fixed":  # not a scalar: the method's default is used as is
                        st.text_input(field.label, "default", disabled=True, help=field.help,
                                      key=f"{prefix}{field.name}")
                    else:
                        values[field.name] = setting_input(field, f"{prefix}{field.name}",
                                                           value=preset_values.get(field.name))
        st.markdown("**Run**")
        c1, c2, c3, _ = st.columns(4)
        seed = int(c1.number_input("Seed", value=0, step=1, key="mitigate-seed"))
        device = c2.selectbox("Device", DEVICES, key="mitigate-device",
                              help="auto: the GPU when there is one, else the CPU.")
        n_boot = int(c3.number_input("Bootstrap resamples", value=200, step=100, min_value=0, key="mitigate-boot",
                                     help="Resamples for the 95 % intervals of the before/after audits."))
        submitted, measure = launch_buttons()

    def job_spec() -> jobs.JobSpec:
        if not model:
            raise FairauditError("enter the path of a model checkpoint, or choose the demo model.")
        return jobs.JobSpec(method=method, dataset=dataset, model=model, target=target, sensitive=sensitive,
                            data_options=options, data_dir=setup.data_dir if setup.dataset == dataset else None,
                            settings=changed_settings(fields, values), device=device, seed=seed, arch=arch,
                            n_boot=n_boot)

    job = planned(job_spec, submitted)
    if job is None:
        return
    time_estimate([job], measure)
    if not submitted:
        return
    try:
        run_id = jobs.submit(job)
    except USER_ERRORS as exc:
        show_error(exc)
        return
    st.session_state[SELECTED] = run_id
    st.query_params["run"] = run_id
    st.success(f"Run {run_id} queued: a background worker runs it; it keeps going if you leave this page.",
               icon=":material/rocket_launch:")
    with st.expander("The same run from the command line"):
        st.code(cli_command(job.to_dict()), language="bash")


# ---------------------------------------------------------------------------- the job list


def _select_from_table(ids: list[str]) -> None:
    rows = st.session_state[TABLE].selection.rows
    if rows and rows[0] < len(ids):
        st.session_state[SELECTED] = ids[rows[0]]


def jobs_panel() -> None:
    """The job table, then the selected run: progress, controls, live curves and, when done, the card."""
    runs = jobs.list_runs(limit=MAX_RUNS)
    if not runs:
        st.info("No runs yet: choose a method above and launch one.", icon=":material/info:")
        return
    ids = [r["id"] for r in runs]
    table = job_table(runs)
    st.dataframe(table, hide_index=True, key=TABLE, on_select=lambda: _select_from_table(ids),
                 selection_mode="single-row", height=min(38 + 35 * len(table), 320),
                 column_config={
                     "Progress": st.column_config.ProgressColumn("Progress", min_value=0.0, max_value=1.0,
                                                                 format="percent"),
                     "Created": st.column_config.DatetimeColumn("Created", format="YYYY-MM-DD HH:mm:ss"),
                     "Seconds": st.column_config.NumberColumn("Seconds", format="%.1f"),
                 })
    linked = st.query_params.get("run")
    wanted = st.session_state.get(SELECTED) or linked
    if wanted not in ids and wanted == linked:
        st.caption(f":material/link_off: The link's `run={linked}` is not among the runs here; showing the newest "
                   "one instead.")
    st.session_state[SELECTED] = wanted if wanted in ids else ids[0]
    by_id = {r["id"]: r for r in runs}
    run_id = st.selectbox("Selected run", ids, key=SELECTED, format_func=lambda i: run_label(by_id[i]),
                          help="Or click a row of the table.")
    st.query_params["run"] = run_id  # a reload shows the same run
    try:
        run = jobs.get_run(run_id)
    except USER_ERRORS as exc:
        show_error(exc)
        return
    status_line(run)
    if run_controls(run, key="mitigate"):
        st.rerun()
    curves_chart(run, key="mitigate-curves")
    if run["status"] == "done":
        st.markdown("**Before → after mitigation** (test split)")
        before_after_card(run)
    run_page_link(run["id"])


def main() -> None:
    setup = current_setup()
    st.title("Mitigate bias")
    st.caption("Run a bias-mitigation method on a model and compare the audits before and after. Runs go to "
               "background workers: they keep running when you leave or reload the page, and every tab sees them.")
    try:
        left, right = st.columns(2)
        with left:
            method = method_choice()
        with right:
            dataset = dataset_choice(method, setup)
        launch_form(method, dataset, setup)
    except USER_ERRORS as exc:
        show_error(exc)

    st.subheader("Runs")
    runs = jobs.list_runs(limit=MAX_RUNS)
    st.fragment(jobs_panel, run_every=poll_interval(runs))()


main()
