"""Compare: every mitigation run in one table, the fairness–accuracy trade-off, sweeps and audit checks.

All numbers come from :mod:`fairaudit.compare`; this page only lays them
out. Sweeps are batches of ordinary jobs (:func:`fairaudit.jobs.submit`), so
they run in the background workers and survive a page reload.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import streamlit as st

from appkit.figures import chart, chart_in
from appkit.launch import launch_buttons, planned, time_estimate
from appkit.query_state import sync, url_value, url_values
from appkit.runs import format_seconds, poll_interval, run_page_link
from appkit.state import current_setup
from appkit.widgets import USER_ERRORS, show_error
from fairaudit import benchmark, compare, jobs
from fairaudit.compare.checks import composition_figure, split_display
from fairaudit.compare.leaderboard import benchmark_figure, comparisons_frame, leaderboard_frame
from fairaudit.compare.sweeps import sweep_progress as progress_of
from fairaudit.compare.table import display_table, done_runs, filter_table, threat_model_caption
from fairaudit.data import list_datasets
from fairaudit.errors import FairauditError
from fairaudit.metrics import catalogue
from fairaudit.jobs.spec import load_methods
from fairaudit.mitigation import METHODS, config_help, get_method
from fairaudit.views.jobs_view import job_table, setting_fields

MAX_RUNS = 300
TABLE = "compare-table"
SWEEP = "compare-sweep"  # the id of the sweep launched from this page
SWEEP_RUNS = "compare-sweep-runs"
NONE = "(none)"
REPORT_SAMPLES = 1000  # latents per run in the report's embeddings


def load_runs() -> list[dict]:
    records = []
    for listed in jobs.list_runs(limit=MAX_RUNS):
        try:
            records.append(jobs.get_run(listed["id"]))
        except FairauditError:
            continue
    return records


# ---------------------------------------------------------------------------- table and charts


def filters(table) -> dict[str, list[str]]:
    runs = table[table["kind"] == "run"]
    cols = st.columns(4)
    chosen = {}
    for col, (column, label) in zip(cols, (("dataset", "Dataset"), ("model", "Model"), ("method", "Method"),
                                           ("status", "Status"))):
        options = sorted(runs[column].dropna().astype(str).unique())
        chosen[column] = col.multiselect(label, options, key=f"compare-filter-{column}",
                                         default=url_values(column, [], options), placeholder="all")
        sync(column, chosen[column], [])
    return chosen


def runs_panel(table, aggregate: bool) -> list[str]:
    """The table with row selection; returns the selected run ids (baselines included)."""
    shown = display_table(table, aggregate_seeds=aggregate)
    number = st.column_config.NumberColumn(format="%.3f")
    config = {c: number for c in shown.columns if c not in ("Run", "Runs", "Seed", "Seeds", "Collapsed")
              and shown[c].dtype.kind == "f"}
    config["Seconds"] = st.column_config.NumberColumn("Seconds", format="%.1f")
    event = st.dataframe(shown, hide_index=True, key=TABLE, on_select="rerun", selection_mode="multi-row",
                         column_config=config, height=min(38 + 35 * len(shown), 420))
    rows = list(event.selection.rows) if event is not None else []
    if aggregate:
        return [rid for i in rows for rid in shown["Runs"].iloc[i].split(", ")]
    return [shown["Run"].iloc[i] for i in rows]


def tradeoff_panel(table, aggregate: bool) -> None:
    left, right = st.columns([1, 3])
    choices = list(compare.FAIRNESS_CHOICES)
    fairness = left.selectbox("Fairness metric", choices, key="compare-fairness",
                              index=choices.index(url_value("metric", choices[0], choices=choices)),
                              format_func=catalogue.label)
    sync("metric", fairness, choices[0])
    left.caption("Lower disparity and higher accuracy are better (worst-group accuracy: higher is better). "
                 "Black star: the model before mitigation. Dashed line: the Pareto front. Marker size: "
                 "robustness S_R, when the run measured it, under the run's recorded threat model (the "
                 "report names it; the FRoC methods use their authors' released one, other methods PGD-10 on "
                 "the numeric features). Bars: 95 % bootstrap intervals"
                 + (", or ± one standard deviation over seeds." if aggregate else "."))
    front = compare.pareto_table(table, fairness)
    if not front.empty:
        left.markdown("**On the Pareto front**")
        left.dataframe(front[["method", "settings", "accuracy", fairness]].rename(
            columns={"method": "Method", "settings": "Settings", "accuracy": "Accuracy",
                     fairness: catalogue.label(fairness)}), hide_index=True,
            column_config={"Accuracy": st.column_config.NumberColumn(format="%.3f"),
                           catalogue.label(fairness): st.column_config.NumberColumn(format="%.3f")})
    with right:
        chart(compare.tradeoff_figure(table, fairness, aggregate_seeds=aggregate), key="compare-scatter")
        missing = compare.unplotted_runs(table, fairness)
        if missing:
            st.caption("Not on the plot, because the audit could not define the value: " + "; ".join(missing))


def radar_panel(table, selected: list[str]) -> None:
    finished = done_runs(table)
    options = list(finished["run_id"])
    if not options:
        st.caption("The radar view appears when a run is done.")
        return
    default = [r for r in selected if r in options] or url_values("runs", options[:min(3, len(options))], options)
    labels = dict(zip(finished["run_id"], finished["method"] + " · " + finished["settings"]))
    chosen = st.multiselect("Runs to compare", options, default=default, key="compare-radar",
                            format_func=lambda r: f"{labels[r]} ({r})" if not r.startswith("baseline") else
                            f"baseline ({r.split(':', 1)[1]})")
    sync("runs", chosen, options[:min(3, len(options))])
    if chosen:
        chart(compare.radar_figure(table, chosen), key="compare-radar-chart")


# ---------------------------------------------------------------------------- sweeps


def _sweepable(method: str) -> list[str]:
    return [f.name for f in setting_fields(config_help(get_method(method))) if f.kind in ("int", "float", "bool",
                                                                                          "choice", "text")]


def _pairs(text: str) -> dict[str, str]:
    """``"a=1, b = x"`` → ``{"a": "1", "b": "x"}`` (what the settings text fields hold)."""
    pairs = (part.split("=", 1) for part in text.split(",") if "=" in part)
    return {k.strip(): v.strip() for k, v in pairs}


def sweep_launcher() -> None:
    load_methods()
    setup = current_setup()
    names = sorted(METHODS)
    c1, c2 = st.columns(2)
    method = c1.selectbox("Method", names, index=names.index("faap") if "faap" in names else 0,
                          key="compare-sweep-method")
    kinds = get_method(method).kinds
    datasets = [s.name for s in list_datasets() if s.kind in kinds and s.embedded]
    if not datasets:
        st.warning(f"No built-in dataset fits '{method}'.")
        return
    dataset = c2.selectbox("Dataset", datasets, key=f"compare-sweep-dataset:{method}",
                           index=datasets.index(setup.dataset) if setup.dataset in datasets else 0)
    params = _sweepable(method)
    with st.form(f"compare-sweep-form:{method}"):
        a, b = st.columns(2)
        param1 = a.selectbox("Setting to sweep", params, key=f"compare-sweep-p1:{method}")
        values1 = a.text_input("Values (comma-separated)", key=f"compare-sweep-v1:{method}",
                               placeholder="e.g. 0.5, 1, 2")
        param2 = b.selectbox("Second setting (optional)", [NONE, *params], key=f"compare-sweep-p2:{method}")
        values2 = b.text_input("Its values", key=f"compare-sweep-v2:{method}", placeholder="e.g. 0.1, 1")
        c, d, e, f = st.columns(4)
        seeds = int(c.number_input("Seeds k", min_value=1, max_value=20, value=1, step=1, key="compare-sweep-k",
                                   help="Repeat every grid point over seeds 0..k−1."))
        model = d.text_input("Model", value="demo", key="compare-sweep-model",
                             help="'demo' or the path of a checkpoint on this machine.")
        device = e.selectbox("Device", ("auto", "cpu", "cuda"), key="compare-sweep-device")
        n_boot = int(f.number_input("Bootstrap resamples", min_value=0, value=200, step=100,
                                    key="compare-sweep-boot"))
        fixed = st.text_input("Other settings (fixed)", key=f"compare-sweep-fixed:{method}",
                              placeholder="key=value, key=value")
        submitted, measure = launch_buttons("Launch sweep")

    def sweep_plan() -> tuple[jobs.JobSpec, list[str], list[jobs.JobSpec]]:
        grid = [f"{param1}={values1}"] if values1.strip() else []
        if param2 != NONE and values2.strip():
            grid.append(f"{param2}={values2}")
        if not grid and seeds < 2:
            raise FairauditError("enter the values to try, or more than one seed.")
        same = setup.dataset == dataset
        base = jobs.JobSpec(method=method, dataset=dataset, model=model.strip() or "demo",
                            target=setup.target if same else None,
                            sensitive=list(setup.sensitive) if same and setup.sensitive else None,
                            data_options=setup.option_dict if same else {},
                            data_dir=setup.data_dir if same else None,
                            settings=_pairs(fixed), device=device, n_boot=n_boot)
        return base, grid, compare.sweep_specs(base, grid, seeds if seeds > 1 else None).specs

    plan = planned(sweep_plan, submitted)
    if plan is None:
        return
    base, grid, specs = plan
    time_estimate(specs, measure)
    if not submitted:
        return
    try:
        sweep = compare.launch_sweep(base, grid, seeds if seeds > 1 else None)
    except USER_ERRORS as exc:
        show_error(exc)
        return
    st.session_state[SWEEP] = sweep.sweep_id
    st.session_state[SWEEP_RUNS] = sweep.run_ids
    st.success(f"Sweep {sweep.sweep_id}: {len(sweep.run_ids)} runs queued for the background workers.",
               icon=":material/rocket_launch:")


def sweep_progress() -> None:
    """The runs of the sweep launched from this page, polled from the registry."""
    run_ids = st.session_state.get(SWEEP_RUNS) or []
    if not run_ids:
        return
    runs = []
    for run_id in run_ids:
        try:
            runs.append(jobs.get_run(run_id))
        except FairauditError:
            continue
    if not runs:
        return
    state = progress_of(runs)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(state["counts"].items()))
    st.progress(state["progress"], text=f"Sweep {st.session_state[SWEEP]} · {state['finished']}/{state['n']} "
                                        f"finished · {counts}")
    st.dataframe(job_table(runs), hide_index=True, key="compare-sweep-jobs",
                 column_config={"Progress": st.column_config.ProgressColumn("Progress", min_value=0.0,
                                                                            max_value=1.0, format="percent"),
                                "Seconds": st.column_config.NumberColumn("Seconds", format="%.1f")})


def sweep_curves(table) -> None:
    sweeps = sorted({s for s in table["sweep"] if s}, reverse=True)
    if not sweeps:
        st.caption("Launch a sweep above: every value tried appears here as a curve, with the baseline.")
        return
    sweep = st.selectbox("Sweep", sweeps, key="compare-sweep-shown")
    fairness = st.session_state.get("compare-fairness", "deo")
    try:
        chart(compare.sweep_figure(table, sweep, fairness), key="compare-sweep-chart")
    except FairauditError as exc:
        st.caption(str(exc))
        return
    points = compare.sweep_points(table, sweep)
    collapsed = points[points["collapsed"].astype(bool)]
    for label in collapsed["label"]:
        st.warning(f"{label}: the model collapsed (chance-level balanced accuracy or a single predicted class).",
                   icon=":material/warning:")


# ---------------------------------------------------------------------------- benchmark

BENCH = "compare-bench"  # the id of the benchmark launched from this page


def _bench_label(manifest: dict) -> str:
    setup = manifest.get("setup") or {}
    return (f"{manifest['id']} · {setup.get('dataset', '?')} · {', '.join(setup.get('methods') or [])} · "
            f"{len(manifest.get('seeds') or [])} seed(s)" + (" · quick" if setup.get("quick") else ""))


def benchmark_launcher() -> None:
    """The form that launches a benchmark as ``fairaudit benchmark ... --detach`` does."""
    load_methods()
    setup = current_setup()
    embedded = [s for s in list_datasets() if s.embedded]
    names = [s.name for s in embedded]
    with st.form("compare-bench-form"):
        a, b = st.columns([1, 2])
        dataset = a.selectbox("Dataset", names, key="compare-bench-dataset",
                              index=names.index(setup.dataset) if setup.dataset in names else 0)
        methods = b.multiselect("Methods", sorted(METHODS), key="compare-bench-methods",
                                placeholder="choose the methods to compare")
        c, d, e, f = st.columns(4)
        seeds = int(c.number_input("Seeds", min_value=1, max_value=20, value=3, step=1, key="compare-bench-seeds"))
        controls = d.checkbox("With controls", value=True, key="compare-bench-controls",
                              help="Also run each method's controls: the method with its mechanism removed, or "
                                   "the method it must beat (e.g. erm).")
        quick = e.checkbox("Quick", key="compare-bench-quick", help="Small splits, one epoch, small audits.")
        model = f.text_input("Model", value="demo", key="compare-bench-model",
                             help="'demo' or the path of a checkpoint on this machine.")
        fixed = st.text_input("Settings", key="compare-bench-settings",
                              placeholder="key=value, method.key=value (e.g. epochs=2, faap.beta=0.5)")
        submitted, measure = launch_buttons("Launch benchmark")

    def bench_plan():
        if not methods:
            raise FairauditError("choose at least one method.")
        settings = _pairs(fixed)
        same = setup.dataset == dataset
        argv = ["benchmark", "--dataset", dataset, "--model", model.strip() or "demo", "--methods", ",".join(methods),
                "--seeds", str(seeds), *(["--controls"] if controls else []), *(["--quick"] if quick else []),
                *[a for k, v in settings.items() for a in ("--set", f"{k}={v}")], "--detach"]
        plan = benchmark.plan_benchmark(
            dataset, methods, controls=controls, seeds=seeds, model=model.strip() or "demo",
            target=setup.target if same else None,
            sensitive=list(setup.sensitive) if same and setup.sensitive else None,
            data_options=setup.option_dict if same else {}, data_dir=setup.data_dir if same else None,
            settings=settings, quick=quick, command="python -m fairaudit " + shlex.join(argv))
        return plan

    plan = planned(bench_plan, submitted)
    if plan is None:
        return
    time_estimate(plan.specs.values(), measure)
    if not submitted:
        return
    try:
        manifest = benchmark.launch_benchmark(plan)
    except USER_ERRORS as exc:
        show_error(exc)
        return
    st.session_state[BENCH] = st.session_state["compare-bench-shown"] = manifest["id"]
    reused = sum(m["reused"] for m in manifest["members"])
    st.success(f"Benchmark {manifest['id']}: {len(manifest['members'])} runs ({reused} reused) for the background "
               "workers.", icon=":material/rocket_launch:")


def benchmark_view() -> None:
    """The chosen benchmark: progress, leaderboard, trade-off scatter and comparisons, re-read on every poll."""
    manifests = {m["id"]: m for m in benchmark.list_benchmarks()}
    if not manifests:
        st.caption("No benchmark yet: launch one below, or run `python -m fairaudit benchmark`.")
        return
    ids = list(manifests)
    if st.session_state.get("compare-bench-shown") not in ids:
        st.session_state.pop("compare-bench-shown", None)
    bench_id = st.selectbox("Benchmark", ids, key="compare-bench-shown",
                            format_func=lambda i: _bench_label(manifests[i]))
    manifest = manifests[bench_id]
    runs = benchmark.member_runs(manifest)
    result = benchmark.aggregate(manifest, runs)
    setup = result["setup"]
    if setup.get("command"):
        st.code(setup["command"], language="bash")
    state = progress_of(runs)
    if state["finished"] < state["n"]:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(state["counts"].items()))
        st.progress(state["progress"], text=f"{state['finished']}/{state['n']} runs finished · {counts}")
    st.dataframe(leaderboard_frame(result), hide_index=True, key="compare-bench-table",
                 column_config={"Seconds / run": st.column_config.NumberColumn(format="%.1f")})
    st.caption(f"Cells: mean ± standard deviation over seeds [{setup['ci_method']}].")
    left, right = st.columns([1, 3])
    fairness = left.selectbox("Fairness metric", [m for m in compare.FAIRNESS_CHOICES if m != "leakage"],
                              key="compare-bench-fairness", format_func=catalogue.label)
    chart_in(right, benchmark_figure(result, fairness), key="compare-bench-scatter")
    st.markdown("**Comparisons** (paired by seed; ✓: the claimed direction holds and the interval excludes 0)")
    st.dataframe(comparisons_frame(result), hide_index=True, key="compare-bench-comparisons",
                 column_config={"Mean difference": st.column_config.NumberColumn(format="%+.3f")})
    for row in result["rows"]:
        if row["status"] == "failed":
            st.error(f"{row['method']} failed: {row['message']}", icon=":material/error:")
    a, b = st.columns(2)
    a.download_button("Download JSON", json.dumps(result, indent=2), file_name=f"{bench_id}.json",
                      mime="application/json", key="compare-bench-json", on_click="ignore")
    b.download_button("Download Markdown", benchmark.to_markdown(result), file_name=f"{bench_id}.md",
                      mime="text/markdown", key="compare-bench-md", on_click="ignore")


# ---------------------------------------------------------------------------- checks


def _warnings(messages: list[str]) -> None:
    for message in messages:
        st.warning(message, icon=":material/warning:")


def split_check(records: list[dict]) -> None:
    result = compare.split_disparities(records)
    if result.table.empty:
        st.caption("No finished run yet.")
        return
    _warnings(result.warnings)
    if result.table[["train", "val"]].isna().all().all():
        st.caption("These runs recorded test audits only; runs that also audit the train and validation "
                   "splits fill the other columns.")
    st.dataframe(split_display(result.table).rename(columns={"undefined": "Why n/a"}), hide_index=True,
                 key="compare-splits")
    if result.table["undefined"].astype(bool).any():
        st.caption("n/a: the gap is undefined on that split because fewer than two groups define the rate it "
                   "compares (e.g. only one group has samples of the class); it is not 0.")


def gerrymandering_check(records: list[dict]) -> None:
    finished = [r for r in records if r["status"] == "done"]
    if not finished:
        st.caption("No finished run yet.")
        return
    by_id = {r["id"]: r for r in finished}
    run_id = st.selectbox("Run", list(by_id), key="compare-gerry-run",
                          format_func=lambda i: f"{by_id[i]['method']} on {by_id[i]['dataset']} ({i})")
    run = by_id[run_id]
    spec = run.get("spec") or {}
    try:
        available = compare.other_attributes(run["dataset"], spec.get("target"), spec.get("sensitive"),
                                             spec.get("data_dir"), **(spec.get("data_options") or {}))
        attributes = st.multiselect("Other attributes", available, default=available, key="compare-gerry-attrs")
        if not attributes:
            return
        result = compare.gerrymandering(run, attributes)
    except USER_ERRORS as exc:
        show_error(exc)
        return
    meta = (run.get("before") or {}).get("meta") or {}
    mitigated = ", ".join(spec.get("sensitive") or meta.get("sensitive_names") or []) or "its sensitive attribute"
    st.caption(f"Mitigated on {mitigated}; per group of every other attribute, before → after (test split).")
    _warnings(result.warnings)
    if not result.warnings:
        st.success("No group of another attribute got worse.", icon=":material/check_circle:")
    st.dataframe(result.table, hide_index=True, key="compare-gerry-table",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in result.table.columns
                                if result.table[c].dtype.kind == "f"})
    st.dataframe(result.summary, hide_index=True, key="compare-gerry-summary")
    run_page_link(run_id)


def composition_check(records: list[dict]) -> None:
    setup = current_setup()
    choices: dict[str, dict[str, Any]] = {}
    for r in records:
        spec = r.get("spec") or {}
        label = f"{spec.get('dataset', r['dataset'])} · {spec.get('target') or 'default target'} · " \
                f"{','.join(spec.get('sensitive') or []) or 'default sensitive'}"
        choices.setdefault(label, spec or {"dataset": r["dataset"]})
    if setup.source == "dataset":
        label = f"{setup.dataset} · {setup.target or 'default target'} · {','.join(setup.sensitive)} (current audit)"
        choices.setdefault(label, {"dataset": setup.dataset, "target": setup.target,
                                   "sensitive": list(setup.sensitive), "data_dir": setup.data_dir,
                                   "data_options": setup.option_dict})
    if not choices:
        return
    label = st.selectbox("Dataset setup", list(choices), key="compare-composition")
    spec = choices[label]
    try:
        result = compare.data_composition(spec["dataset"], spec.get("target"), spec.get("sensitive"),
                                          spec.get("data_dir"), **(spec.get("data_options") or {}))
    except USER_ERRORS as exc:
        show_error(exc)
        return
    _warnings(result.warnings)
    left, right = st.columns([2, 3])
    left.dataframe(result.summary, hide_index=True, key="compare-composition-splits")
    left.dataframe(result.table, hide_index=True, key="compare-composition-groups")
    chart_in(right, composition_figure(result.table), key="compare-composition-chart")


# ---------------------------------------------------------------------------- page


def report_download(run_ids: list[str], records: list[dict]) -> None:
    """One self-contained HTML report of the selected runs, built only when the button is clicked."""
    from fairaudit.report import report_bytes

    finished = {rec["id"] for rec in records if rec.get("status") == "done"}
    done = [r for r in run_ids if r in finished]
    if not done:
        return
    st.download_button(f"Download audit report of {len(done)} run(s) (HTML)",
                       lambda: report_bytes(done, samples=REPORT_SAMPLES), file_name="fairaudit-report.html",
                       mime="text/html", key="compare-report-download", icon=":material/description:",
                       on_click="ignore", help="One HTML file that opens offline: metrics with intervals, "
                                               "verdicts, robustness, explanations, embeddings and the trade-off "
                                               "chart of the selected runs.")


def main() -> None:
    st.title("Compare runs")
    st.caption("Every mitigation run in one table, the fairness–accuracy trade-off with its Pareto front, sweeps "
               "over hyper-parameters and seeds, and checks for pitfalls of fairness mitigation.")
    records = load_runs()
    table = compare.runs_table(records)
    if table.empty:
        st.info("No runs yet: launch one on the Mitigate page, or a sweep below.", icon=":material/info:")
    else:
        chosen = filters(table)
        aggregate = st.toggle("Mean ± std over seeds", key="compare-aggregate",
                              value=url_value("seeds", False),
                              help="One row per configuration repeated over seeds.")
        sync("seeds", aggregate, False)
        shown = filter_table(table, **chosen)
        selected = runs_panel(shown, aggregate)
        mixed = threat_model_caption(shown)
        if mixed:
            st.caption(mixed)
        st.subheader("Trade-off")
        tradeoff_panel(shown, aggregate)
        st.subheader("Selected runs")
        radar_panel(shown, selected)
        runs = [r for r in selected if not r.startswith("baseline")]
        if runs:
            run_page_link(runs[0], "Open the first selected run")
            report_download(runs, records)

    st.subheader("Benchmark")
    st.caption("Every method and its controls over seeds: which one works on this setup, and is it the method "
               "that did it.")
    with st.expander("Launch a benchmark", expanded=not benchmark.list_benchmarks()):
        benchmark_launcher()
    active = jobs.list_runs(limit=MAX_RUNS, status="queued") + jobs.list_runs(limit=MAX_RUNS, status="running")
    st.fragment(benchmark_view, run_every=poll_interval(active) if active else None)()

    st.subheader("Sweeps")
    sweep_launcher()
    st.fragment(sweep_progress, run_every=poll_interval(active) if active else None)()
    if not table.empty:
        sweep_curves(table)

    st.subheader("Checks")
    tabs = st.tabs(["Train / val / test", "Other attributes", "Data composition"])
    with tabs[0]:
        split_check(records)
    with tabs[1]:
        gerrymandering_check(records)
    with tabs[2]:
        composition_check(records)
    if records:
        total = sum(float(r.get("seconds") or 0) for r in records)
        st.caption(f"{len(records)} runs · {format_seconds(total)} of compute in finished runs.")


main()
