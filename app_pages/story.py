"""Guided demo: the audit of the current setup told end to end, in eight steps on one scroll.

Every number comes from the engine (:mod:`fairaudit.views.story` says which
function computes each step). The steps that need computing start in the
background on the first visit (:mod:`appkit.background`, keyed by the setup)
and are kept, so a later visit, a second tab or a presenter jumping between
steps (``?step=<key>`` in the URL) finds them ready. The mitigation runs in a
background worker (:mod:`fairaudit.jobs`) and is followed live.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import streamlit as st

from appkit import background
from appkit.figures import chart
from appkit.launch import launch_buttons, planned, preset_caption, preset_choice, time_estimate
from appkit.query_state import sync, url_value
from appkit.runner import load_setup_model
from appkit.runs import before_after_card, curves_chart, run_page_link, status_line
from appkit.setup import MODEL_DEMO, MODEL_PATH, SOURCE_DATASET, AuditSetup
from appkit.state import cached_report, current_setup, remember_in_url, start_run, task_key
from appkit.widgets import USER_ERRORS, await_run, setting_input, show_error
from fairaudit import jobs
from fairaudit.compare.checks import composition_figure
from fairaudit.jobs.spec import load_methods
from fairaudit.mitigation import METHODS, config_help, get_method
from fairaudit.views import story as S
from fairaudit.views.jobs_view import ACTIVE_STATUSES, changed_settings, setting_fields
from fairaudit.views.tables import DEFAULT_TOLERANCES, disparity_checks

ALL = "all"
N_BOOT = 500
POLL_SECONDS = 0.3
STORY_RUN = "story-run"
STORY_LAUNCHED = "story-launched"  # the run the form has just queued, confirmed once
NUMBER = st.column_config.NumberColumn(format="%.3f")


# ---------------------------------------------------------------------------- background steps


def _audit_run(setup: AuditSetup):
    """The setup's audit pass (started if needed), waited for from a background thread."""
    state = background.wait(task_key(setup)) or start_run(setup)
    state = background.wait(task_key(setup))
    if state is None or state.failed:
        raise state.error if state is not None and state.error else RuntimeError("the audit pass did not finish")
    return state.result


def _composition(setup: AuditSetup, progress) -> Any:
    progress(0.1, "Counting the groups of every split")
    return S.composition(setup.dataset, setup.target, setup.sensitive, setup.data_dir, setup.option_dict)


def _looks(setup: AuditSetup, progress) -> Any:
    progress(0.0, "Waiting for the audit pass")
    run = _audit_run(setup)
    progress(0.3, "Explaining a few faces per group with Grad-CAM")
    model, _ = load_setup_model(setup, run.dataset)
    return S.explain_model(model, run.dataset, run.predictions)


def _latent(setup: AuditSetup, progress) -> Any:
    progress(0.0, "Waiting for the audit pass")
    run = _audit_run(setup)
    progress(0.3, "Reading the latents, projecting them with t-SNE and probing them")
    model, _ = load_setup_model(setup, run.dataset)
    return S.latent_map(model, run.dataset)


def _looks_after(run_id: str, progress) -> Any:
    progress(0.2, "Explaining the same faces with the mitigated model")
    return S.explain_after(run_id)


TASKS: dict[str, Callable] = {"data": _composition, "looks": _looks, "latent": _latent}


def task_name(step: str, key: str) -> str:
    return f"story:{step}:{key}"


def start_steps(setup: AuditSetup, steps: list[str], skipped: dict[str, str]) -> None:
    """Start in the background every computed step that is not running or done yet (first visit)."""
    for step in steps:
        if step in TASKS and step not in skipped:
            background.submit(task_name(step, setup.key()), TASKS[step], setup)


def await_task(key: str, start: Callable[[], background.TaskState]) -> Any:
    """Show the progress of background task ``key`` until it is done; its result, or ``None`` after showing
    the error."""
    state = background.get(key) or start()
    if state.running:
        slot = st.empty()
        while state.running:
            with slot.container():
                st.progress(state.fraction, text=state.message or "Starting…")
                st.caption(f"{state.elapsed:.0f} s elapsed · computed in the background and kept for the next "
                           "visit.")
            time.sleep(POLL_SECONDS)
            state = background.get(key) or start()
        slot.empty()
    if state.failed:
        show_error(state.error, state.traceback)
        if st.button("Try again", icon=":material/refresh:", key=f"retry-{key}"):
            background.forget(key)
            st.rerun()
        return None
    return state.result


# ---------------------------------------------------------------------------- the steps


def step_header(step: str) -> None:
    st.subheader(S.STEP_TITLES[step], anchor=f"step-{step}")


def data_step(setup: AuditSetup, results: S.StoryResults) -> None:
    st.markdown("Every model learns from its training data. Here is how the sensitive groups are represented in "
                "each split, and how often each group carries the positive label (its *base rate*). A group that "
                "is rare, or whose base rate differs, is where a model learns a shortcut.")
    result = await_task(task_name("data", setup.key()),
                        lambda: background.submit(task_name("data", setup.key()), _composition, setup))
    if result is None:
        return
    results.composition = result
    st.markdown(S.composition_sentence(result.table))
    chart(composition_figure(result.table), key="story-composition")
    for warning in result.warnings:
        st.warning(warning, icon=":material/warning:")


def audit_step(setup: AuditSetup, results: S.StoryResults):
    st.markdown("The deployed model is run once over the split and its decisions are compared across groups. "
                "Each card is one disparity between groups with its 95 % bootstrap interval; red ones are "
                "outside the usual tolerance.")
    run = await_run(setup)
    if run is None:
        return None
    try:
        report = cached_report(setup.key(), 0.5, N_BOOT, run.predictions)
    except USER_ERRORS as exc:
        show_error(exc)
        return run
    results.audit, results.tolerances = report, dict(DEFAULT_TOLERANCES)
    checks = disparity_checks(report.disparities, DEFAULT_TOLERANCES, report.undefined)
    st.markdown(f"Accuracy **{report.overall['accuracy']:.3f}** on {int(report.overall['n']):,} samples.")
    for start in range(0, len(checks), 4):
        cols = st.columns(4)
        for col, check in zip(cols, checks[start:start + 4]):
            color = "gray" if check.passes is None else ("green" if check.passes else "red")
            col.metric(check.label, check.value_text, delta=check.verdict, delta_color=color, delta_arrow="off",
                       help=check.help_text, border=True)
            low, high = (report.ci.get(check.name) or (None, None))[:2]
            col.caption(f"95 % CI [{low:.3f}, {high:.3f}]" if low is not None and high is not None
                        and low == low and high == high else "no interval")
            if check.reason:
                col.caption(f"n/a: {check.reason}.")
    failing = [c.label for c in checks if c.passes is False]
    st.markdown(("**Outside tolerance:** " + ", ".join(failing)) if failing else
                "Every disparity is within tolerance.")
    return run


def grid_view(grid, key: str) -> None:
    if grid.note:
        st.info(grid.note, icon=":material/info:")
    if len(grid):
        chart(grid.figure(0.5), key=key, name=key, data=False)


def bias_view(table, key: str) -> None:
    if table is None:
        st.caption("This dataset has no region masks for its target and sensitive attributes, so the maps cannot "
                   "be scored by region.")
        return
    st.markdown(S.bias_sentence(table, "after" if "after" in set(table["stage"]) else "before"))
    st.dataframe(table, hide_index=True, key=key,
                 column_config={c: NUMBER for c in table.columns if c.endswith(("share", "area"))})


def looks_step(setup: AuditSetup, results: S.StoryResults) -> None:
    st.markdown(f"What in the picture drives the decision? Grad-CAM colours the pixels that push the model towards "
                f"each face's true class, for {S.FACES_PER_GROUP} faces of every group. The table says how much of "
                "that evidence falls on the region of the target attribute and how much on the region of the "
                "sensitive attribute.")
    grid = await_task(task_name("looks", setup.key()),
                      lambda: background.submit(task_name("looks", setup.key()), _looks, setup))
    if grid is None:
        return
    results.looks = grid
    grid_view(grid, "story-looks")
    bias_view(grid.attribution_bias, "story-looks-bias")


def latent_step(setup: AuditSetup, results: S.StoryResults) -> None:
    st.markdown("Inside the model, every input becomes a vector of features g(x). The map places similar vectors "
                "close together (t-SNE) and colours them by sensitive group; the probe is a linear classifier that "
                "tries to read the group from the features. Reading it well above chance means the model encodes "
                "the group, whether or not its decisions use it.")
    result = await_task(task_name("latent", setup.key()),
                        lambda: background.submit(task_name("latent", setup.key()), _latent, setup))
    if result is None:
        return
    results.latent = result
    chart(result.figure(), key="story-latent")
    st.markdown(S.leakage_sentence(result))
    st.dataframe(result.table(), hide_index=True, key="story-leakage",
                 column_config={c: NUMBER for c in ("Probe accuracy", "Accuracy CI low", "Accuracy CI high", "AUC",
                                                    "Chance")})


def _model_of(setup: AuditSetup) -> str | None:
    if setup.model == MODEL_DEMO:
        return "demo"
    if setup.model == MODEL_PATH:
        return setup.model_path
    return None


def identity(setup: AuditSetup) -> dict:
    return S.setup_identity(setup.dataset, setup.target, setup.sensitive, setup.option_dict, _model_of(setup) or "")


def launch_form(setup: AuditSetup) -> None:
    from fairaudit.data import get_spec

    load_methods()
    kind = get_spec(setup.dataset).kind
    names = sorted(n for n in METHODS if kind in get_method(n).kinds)
    if not names:
        st.info(f"No registered mitigation method works on {kind} data.", icon=":material/info:")
        return
    default = S.DEFAULT_METHOD if S.DEFAULT_METHOD in names else names[0]
    method = st.selectbox("Method", names, index=names.index(url_value("method", default, choices=names)),
                          key="story-method", format_func=lambda n: f"{n} — {get_method(n).summary[:70]}")
    sync("method", method, default)
    st.caption(get_method(method).summary)
    sentences = S.effect_sentences(method)
    if sentences:
        with st.expander(f"What the shipped benchmark measured for {method}"):
            st.markdown("\n".join(f"- {s}" for s in sentences))
    else:
        st.caption(f"`{method}` has not been benchmarked against its controls, so no effect is claimed for it.")
    fields = setting_fields(config_help(get_method(method)))
    preset, preset_values, preset_key = preset_choice(method, f"story-preset:{method}")
    with st.form(f"story-form:{method}", border=True):
        st.caption(f"Settings start from {preset_caption(preset)}.")
        values: dict[str, Any] = {}
        editable = [f for f in fields if f.kind != "fixed"]
        for start in range(0, len(editable), 4):
            for col, field in zip(st.columns(4), editable[start:start + 4]):
                with col:
                    values[field.name] = setting_input(field, f"story-setting:{method}:{preset_key}{field.name}",
                                                       value=preset_values.get(field.name))
        st.markdown("**Run**")
        c1, c2, c3, c4 = st.columns(4)
        seed = int(c1.number_input("Seed", value=0, step=1, key="story-seed"))
        n_boot = int(c2.number_input("Bootstrap resamples", value=200, step=50, min_value=0, key="story-boot"))
        robust = int(c3.number_input("Robustness samples", value=0, step=32, min_value=0, key="story-robust",
                                     help="Test samples attacked for the robustness audit of the run; 0 skips it."))
        splits = int(c4.number_input("Split-audit samples", value=0, step=100, min_value=0, key="story-splits",
                                     help="Rows per split for the train/val/test audits of the run; 0 skips them."))
        submitted, measure = launch_buttons()

    def job_spec():
        return S.launch_spec(method, setup.dataset, model=_model_of(setup), target=setup.target,
                             sensitive=setup.sensitive, data_options=setup.option_dict, data_dir=setup.data_dir,
                             arch=setup.arch, settings=changed_settings(fields, values), seed=seed, n_boot=n_boot,
                             robustness_samples=robust, split_samples=splits)

    spec = planned(job_spec, submitted)
    if spec is None:
        return
    time_estimate([spec], measure)
    if not submitted:
        return
    try:
        run_id = jobs.submit(spec)
    except USER_ERRORS as exc:
        show_error(exc)
        return
    st.session_state[STORY_RUN] = st.session_state[STORY_LAUNCHED] = run_id
    st.query_params["run"] = run_id
    st.rerun(scope="app")  # the whole page again, so the run steps poll while the run is active


def launched_notice() -> None:
    """The confirmation of the run just launched from the form (shown once, after the page's rerun)."""
    run_id = st.session_state.pop(STORY_LAUNCHED, None)
    if run_id:
        st.success(f"Run {run_id} queued: a background worker runs it; it keeps going if you leave this page.",
                   icon=":material/rocket_launch:")


def find_run(setup: AuditSetup):
    chosen = st.session_state.get(STORY_RUN) or st.query_params.get("run")
    try:
        runs = jobs.list_runs(limit=50, dataset=setup.dataset)
        run = S.story_run(runs, identity(setup), chosen=chosen)
    except USER_ERRORS as exc:
        show_error(exc)
        return None
    if chosen and (run is None or run["id"] != chosen):
        st.caption(f":material/link_off: The link's `run={chosen}` is not a run of this setup; "
                   + ("showing its newest run instead." if run else "no run of this setup yet."))
        st.session_state.pop(STORY_RUN, None)
        st.query_params.pop("run", None)
    if run is not None:
        st.session_state[STORY_RUN] = run["id"]
        st.query_params["run"] = run["id"]
    return run


def mitigate_step(setup: AuditSetup, run) -> None:
    st.markdown("Now one bias-mitigation method is applied to this model. FAAP (the default) leaves the deployed "
                "model untouched and trains a small perturbation of its inputs against a discriminator that tries to "
                "read the sensitive group from the model's features; any other registered method can be chosen. "
                "Whether a method helps is measured, not assumed: what the shipped benchmark found for it is "
                "below the method. The run goes to a background worker, so the page can be left while it trains.")
    if _model_of(setup) is None:
        st.info("An uploaded checkpoint cannot be handed to a worker: give it by path on the Data & Model page to "
                "mitigate it.", icon=":material/info:")
        return
    with st.expander("Launch a mitigation run", expanded=run is None):
        launch_form(setup)
    launched_notice()
    if run is None:
        st.caption("No run of this setup yet: launch one above.")
        return
    st.markdown(f"**Run {run['id']}** · {run['method']}")
    status_line(run)
    curves_chart(run, key="story-curves")
    run_page_link(run["id"])


def after_step(run) -> None:
    st.markdown("The same audit, before and after mitigation, on the same test split. Each card shows the value "
                "after, the change since before, and both 95 % intervals: a change inside the intervals is not "
                "evidence of an effect.")
    if run is None or run["status"] != jobs.DONE:
        st.caption("Appears when the mitigation run is done.")
        return
    st.markdown("**Before → after mitigation** (test split)")
    before_after_card(run)


def looks_after_step(run, results: S.StoryResults) -> None:
    st.markdown("The faces of step 3, explained again: *before* is the deployed model, *after* the mitigated one "
                "(for FAAP, the same model on the perturbed face).")
    if run is None or run["status"] != jobs.DONE:
        st.caption("Appears when the mitigation run is done.")
        return
    grid = await_task(task_name("looks-after", run["id"]),
                      lambda: background.submit(task_name("looks-after", run["id"]), _looks_after, run["id"]))
    if grid is None:
        return
    results.looks_after = grid
    grid_view(grid, "story-looks-after")
    bias_view(grid.attribution_bias, "story-looks-after-bias")


def tradeoff_step(setup: AuditSetup, run, results: S.StoryResults) -> None:
    st.markdown("Accuracy against DEO (the equal-opportunity gap, lower is fairer): this run's model before and "
                "after mitigation, next to the methods of the shipped benchmark of the same setup, where there is "
                "one (mean over seeds, ± one standard deviation).")
    if run is None or run["status"] != jobs.DONE:
        st.caption("Appears when the mitigation run is done.")
        return
    found = S.matching_benchmark(identity(setup), run["method"])
    results.benchmark = found
    stem, result = found or (None, None)
    chart(S.tradeoff_figure(result, run), key="story-tradeoff")
    if stem is None:
        st.caption("No shipped benchmark matches this setup, so only this run is plotted.")
        return
    sentences = S.effect_sentences(run["method"], stem)
    st.caption(f"Benchmark `{stem}`." + ("" if sentences else f" It has no comparison for {run['method']}."))
    if sentences:
        st.markdown("What that benchmark measured for " + run["method"] + ":\n" +
                    "\n".join(f"- {s}" for s in sentences))


# ---------------------------------------------------------------------------- the page


def step_choice() -> str:
    options = [ALL, *S.STEP_KEYS]
    if st.session_state.get("story-step") not in options:  # a fresh visit: the URL names the step
        st.session_state["story-step"] = url_value("step", ALL, choices=options)
    chosen = st.selectbox("Jump to step", options, key="story-step", format_func=lambda k: "Every step (one scroll)" if k == ALL
                          else S.STEP_TITLES[k])
    sync("step", chosen, ALL)
    return chosen


def go_to(step: str) -> None:
    st.session_state["story-step"] = step


def run_steps(setup: AuditSetup) -> None:
    """Steps 5–8, rerun every two seconds while the mitigation run is queued or running."""
    results = st.session_state.setdefault("story-results", {}).get(setup.key()) or S.StoryResults(setup.title())
    shown = st.session_state.get("story-shown") or list(S.STEP_KEYS)
    run = find_run(setup)
    skipped = st.session_state.get("story-skipped") or {}
    if run is not None and run["status"] in ACTIVE_STATUSES:
        st.session_state["story-was-active"] = run["id"]
    elif run is not None and st.session_state.pop("story-was-active", None) == run["id"]:
        st.rerun()  # the run just finished: redraw the page without polling
    results.run = run
    for step, draw in (("mitigate", lambda: mitigate_step(setup, run)), ("after", lambda: after_step(run)),
                       ("looks-after", lambda: looks_after_step(run, results)),
                       ("tradeoff", lambda: tradeoff_step(setup, run, results))):
        if step not in shown:
            continue
        step_header(step)
        if step in skipped:
            st.info(skipped[step] + ".", icon=":material/skip_next:")
            continue
        draw()


def main() -> None:
    setup = current_setup()
    remember_in_url(setup)
    st.title("Guided demo")
    st.caption(f"The story of **{setup.title()}**: what the data holds, what the model does, what it looks at and "
               "knows, and what one mitigation changes. Every number is computed by fairaudit on this setup; change "
               "the setup on the Data & Model page to tell the story of your own model.")
    chosen = step_choice()
    shown = list(S.STEP_KEYS) if chosen == ALL else [chosen]
    results = S.StoryResults(setup.title())
    st.session_state.setdefault("story-results", {})[setup.key()] = results
    st.session_state["story-shown"] = shown

    background.get(task_key(setup)) or start_run(setup)
    has_dataset = setup.source == SOURCE_DATASET
    from fairaudit.data import get_spec

    kind = get_spec(setup.dataset).kind if has_dataset else "tabular"
    skipped = S.skipped_steps(kind, has_dataset)
    results.skipped = skipped
    st.session_state["story-skipped"] = skipped
    if has_dataset:
        start_steps(setup, list(TASKS), skipped)
    export = st.empty()

    for step in ("data", "audit", "looks", "latent"):
        if step not in shown:
            continue
        step_header(step)
        if step in skipped:
            st.info(skipped[step] + ".", icon=":material/skip_next:")
            continue
        if step == "data":
            data_step(setup, results)
        elif step == "audit":
            audit_step(setup, results)
        elif step == "looks":
            looks_step(setup, results)
        else:
            latent_step(setup, results)

    if any(s in shown for s in ("mitigate", "after", "looks-after", "tradeoff")):
        try:
            runs = jobs.list_runs(limit=50, dataset=setup.dataset) if has_dataset else []
        except USER_ERRORS:
            runs = []
        active = any(r["status"] in ACTIVE_STATUSES for r in runs)
        st.fragment(run_steps, run_every=2.0 if active else None)(setup)

    if chosen != ALL:
        index = S.STEP_KEYS.index(chosen)
        left, _, right = st.columns([1, 3, 1])
        if index > 0:
            left.button("← " + S.STEP_TITLES[S.STEP_KEYS[index - 1]], key="story-previous",
                        on_click=go_to, args=(S.STEP_KEYS[index - 1],))
        if index + 1 < len(S.STEP_KEYS):
            right.button(S.STEP_TITLES[S.STEP_KEYS[index + 1]] + " →", key="story-next", on_click=go_to,
                         args=(S.STEP_KEYS[index + 1],))

    with export.container():
        st.download_button("Download the story (HTML)", lambda: S.story_document(results).to_html(),
                           file_name=f"fairaudit-story-{setup.key()}.html", mime="text/html",
                           icon=":material/download:", key="story-export", on_click="ignore",
                           help="One self-contained file with every step computed so far; it opens offline.")


main()
