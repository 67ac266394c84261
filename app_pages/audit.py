"""Audit: per-group metrics, disparities with tolerances, confusion matrices, intersections, errors."""

from __future__ import annotations

import json

import streamlit as st

from appkit.figures import chart, chart_in
from appkit.query_state import sync, url_value, url_values
from appkit.state import cached_report, current_setup, remember_in_url
from appkit.widgets import await_run, disparity_cards, image_grid, setup_summary, show_error
from fairaudit.errors import FairauditError
from fairaudit.metrics import AuditReport, catalogue
from fairaudit.metrics.guardrails import FLAG_RULE, WHY_FLAGGED, describe_flag
from fairaudit.views import charts, gallery
from appkit.runner import AuditRun, load_setup_model, regroup
from appkit.slices_view import slices_tab
from fairaudit.views.tables import (DEFAULT_TOLERANCES, GROUP_METRICS, disparity_checks, group_table,
                                 intersection_matrix, metric_with_errors)

PER_GROUP_ERRORS = 8
DEFAULT_BAR_METRICS = ("accuracy", "selection_rate", "tpr", "fpr")
MAX_CONFUSION = 12


BOOT_CHOICES = [0, 200, 500, 1000, 2000]


def sidebar_settings() -> tuple[dict[str, float], int]:
    """Tolerances and bootstrap size, read from and written to the URL (``gap``, ``ratio``, ``floor``, ``boot``)."""
    with st.sidebar:
        st.markdown("**Tolerances**")
        gap = st.number_input("Largest acceptable difference", 0.0, 1.0,
                              url_value("gap", DEFAULT_TOLERANCES["gap"], bounds=(0.0, 1.0)), 0.01,
                              format="%.2f", key="tol-gap",
                              help="SPD, DEO, EO max, EOD, AAOD and AED pass at or below this value.")
        ratio = st.number_input("Smallest acceptable DP ratio", 0.0, 1.0,
                                url_value("ratio", DEFAULT_TOLERANCES["ratio"], bounds=(0.0, 1.0)), 0.01,
                                format="%.2f", key="tol-ratio", help="0.80 is the 80 % (four-fifths) rule.")
        floor = st.number_input("Smallest acceptable worst-group accuracy", 0.0, 1.0,
                                url_value("floor", DEFAULT_TOLERANCES["floor"], bounds=(0.0, 1.0)),
                                0.01, format="%.2f", key="tol-floor")
        st.markdown("**Confidence intervals**")
        n_boot = st.select_slider("Bootstrap resamples", BOOT_CHOICES,
                                  value=url_value("boot", 1000, choices=BOOT_CHOICES), key="n-boot",
                                  help="95 % percentile intervals; 0 turns them off.")
    for param, value in (("gap", gap), ("ratio", ratio), ("floor", floor)):
        sync(param, value, DEFAULT_TOLERANCES[param])
    sync("boot", n_boot, 1000)
    return {"gap": gap, "ratio": ratio, "floor": floor}, int(n_boot)


def threshold_control(run: AuditRun) -> float:
    if not run.has_scores:
        st.caption("Decision rule: the predicted class (no score, so no threshold).")
        return 0.5
    positive = run.predictions.class_names[1]
    target = run.predictions.meta.get("target") or run.setup.label_column
    event = f"{target} = {positive}" if positive.replace(".", "", 1).isdigit() or len(positive) < 2 else positive
    value = st.slider(f"Decision threshold on P({event})", 0.0, 1.0,
                      url_value("threshold", 0.5, bounds=(0.0, 1.0)), 0.01,
                      key="threshold", help="Metrics are recomputed from the stored predictions; "
                                            "the model is not run again.")
    sync("threshold", value, 0.5)
    return value


def overall_cards(report: AuditReport) -> None:
    cols = st.columns(4)
    cols[0].metric("Accuracy", f"{report.overall['accuracy']:.3f}", border=True)
    cols[1].metric("Balanced accuracy", f"{report.overall['balanced_accuracy']:.3f}", border=True)
    cols[2].metric("Samples", f"{int(report.overall['n']):,}", border=True)
    cols[3].metric("Groups", f"{len(report.groups)}", border=True,
                   help="Several sensitive attributes are crossed into intersectional groups.")


def _markdown_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "\\`*_[]<>$~|#" else c for c in text)


def small_group_warning(report: AuditReport) -> None:
    """A badge per flagged group (the engine's guardrails decide which), with its size, interval width and why
    the flag matters."""
    flagged = report.flagged_groups()
    if not flagged:
        return
    lines = [f":orange-badge[:material/group: Small or uncertain group] "
             f"{describe_flag({**flag, 'group': _markdown_escape(flag['group'])})}" for flag in flagged]
    lines.append(f"{WHY_FLAGGED} {FLAG_RULE}")
    st.warning("\n\n".join(lines), icon=":material/warning:")


def groups_tab(report: AuditReport, run_key: str) -> None:
    frame = report.groups_frame()
    metrics = st.multiselect("Metrics", list(GROUP_METRICS),
                             default=url_values("metrics", DEFAULT_BAR_METRICS, list(GROUP_METRICS)),
                             format_func=catalogue.label, key="bar-metrics")
    sync("metrics", metrics, list(DEFAULT_BAR_METRICS))
    if metrics:
        has_ci = f"{metrics[0]}_ci_low" in frame.columns
        chart(charts.metric_bars(metric_with_errors(frame, metrics), title="Metrics per group"),
                        key="bars")
        st.caption("Error bars: 95 % bootstrap confidence intervals." if has_ci
                   else "No confidence intervals (bootstrap resamples = 0).")
    table = group_table(frame)
    number_columns = {c: st.column_config.NumberColumn(c, format="%.3f") for c in table.columns
                      if c not in ("Group", "n") and not c.endswith("CI")}
    st.dataframe(table, hide_index=True, column_config=number_columns)
    left, right, _ = st.columns([1, 1, 3])
    left.download_button("Group table (CSV)", report.groups_csv(), file_name=f"fairaudit-{run_key}-groups.csv",
                         mime="text/csv", icon=":material/download:")
    right.download_button("Full report (JSON)", json.dumps(report.to_dict(), indent=2),
                          file_name=f"fairaudit-{run_key}-report.json", mime="application/json",
                          icon=":material/download:")


def confusion_tab(report: AuditReport, class_names: list[str]) -> None:
    groups = report.groups[:MAX_CONFUSION]
    per_row = 3 if len(class_names) <= 3 else 2
    for start in range(0, len(groups), per_row):
        cols = st.columns(per_row)
        for col, group in zip(cols, groups[start:start + per_row]):
            fig = charts.confusion_heatmap(group["confusion"], class_names,
                                           title=f"{group['group']} · n={group['n']:,}",
                                           height=220 + 30 * len(class_names))
            chart_in(col, fig, key=f"confusion-{start}-{group['group']}")
    if len(report.groups) > MAX_CONFUSION:
        st.caption(f"{len(report.groups) - MAX_CONFUSION} more groups: see the JSON report.")


def intersection_tab(run: AuditRun, threshold: float, report: AuditReport) -> None:
    sensitive = list(run.setup.sensitive)
    columns = run.attribute_columns
    left, middle, right = st.columns(3)
    first = left.selectbox("Rows", columns, index=columns.index(sensitive[0]) if sensitive[0] in columns else 0,
                           key="ix-rows")
    others = [c for c in columns if c != first]
    if not others:
        st.info("The data has no second attribute to cross with.")
        return
    wanted = next((s for s in sensitive[1:] if s in others), others[0])
    second = middle.selectbox("Columns", others, index=others.index(wanted), key="ix-cols",
                              help="Any other attribute can be crossed with the first, without running the "
                                   "model again.")
    names = list(GROUP_METRICS)
    metric = right.selectbox("Metric", names, index=names.index(url_value("ix-metric", names[0], choices=names)),
                             format_func=catalogue.label, key="ix-metric")
    sync("ix-metric", metric, names[0])
    if len(sensitive) == 1:
        st.caption(f"Only '{sensitive[0]}' is audited; the heatmap crosses it with another attribute of the data.")
    if sorted([first, second]) == sorted(sensitive):
        cross = report
    else:
        preds = regroup(run, [first, second])
        cross = cached_report(f"{run.setup.key()}:{first}:{second}", threshold, 0, preds)
    values, counts = intersection_matrix(cross.groups, first, second, metric)
    chart(charts.intersection_heatmap(values, counts, catalogue.label(metric),
                                                title=f"{catalogue.label(metric)} by {first} × {second}"),
                    key="intersection")


def errors_tab(run: AuditRun, threshold: float) -> None:
    preds = run.predictions
    st.caption("Captions read *sample · true class → predicted class (score)*, the score being "
               + (f"P({preds.class_names[1]})." if preds.probs.shape[1] == 2 else "the predicted class's probability."))
    for found in gallery.misclassified_samples(preds, threshold, PER_GROUP_ERRORS):
        st.markdown(f"**{found.group}** · {found.errors:,} of {found.size:,} misclassified")
        if not len(found.rows):
            st.caption("No misclassified samples in this group.")
            continue
        info = gallery.prediction_rows(preds, found.rows, threshold)
        if run.dataset is not None and run.dataset.kind == "image":
            images = [gallery.to_image(run.dataset.load_input(int(i))) for i in info["sample"]]
            confidence = info["score"] if "score" in info else info["confidence"]
            captions = [f"#{s} · {t} → {p} ({c:.2f})"
                        for s, t, p, c in zip(info["sample"], info["true"], info["predicted"], confidence)]
            image_grid(images, captions, per_row=PER_GROUP_ERRORS)
        elif run.dataset is not None:
            others = [c for c in run.dataset.attributes.columns if c != run.dataset.target]
            details = gallery.attribute_rows(run.dataset, info["sample"], others).drop(columns="sample")
            st.dataframe(info.join(details), hide_index=True)
        else:
            st.dataframe(info.join(run.table.iloc[info["sample"]].reset_index(drop=True), rsuffix=" (table)"),
                         hide_index=True)


ROBUSTNESS_SAMPLES = 200
SWEEP_DEFAULTS = {"image": "0, 0.002, 0.004, 0.008, 0.016, 0.031", "tabular": "0, 0.05, 0.1, 0.2, 0.4"}


def _eps_list(text: str) -> list[float]:
    try:
        values = sorted({float(v) for v in text.replace(";", ",").split(",") if v.strip()})
    except ValueError:
        raise FairauditError(f"the ε-sweep values must be numbers separated by commas, got '{text}'.") from None
    if not values or values[0] < 0:
        raise FairauditError("give at least one ε ≥ 0 for the sweep.")
    return values


def _robustness_results(run: AuditRun, settings: dict) -> tuple:
    """Run the (costly) robustness audit and ε-sweep, with a progress bar."""
    from fairaudit.robustness import RobustnessAuditor, epsilon_sweep

    bar = st.progress(0.0, text="Loading the model")
    model, _ = load_setup_model(run.setup, run.dataset)
    common = dict(steps=settings["steps"], max_samples=settings["samples"], seed=0)
    bar.progress(0.0, text="Attacking")
    report = RobustnessAuditor(settings["attacks"], eps=settings["eps"], **common).audit(
        model, run.dataset, progress=lambda done, total: bar.progress(0.5 * done / total, text="Attacking"))
    sweep = epsilon_sweep(model, run.dataset, settings["sweep"], attack=settings["sweep_attack"],
                          progress=lambda done, total: bar.progress(0.5 + 0.5 * done / total, text="ε-sweep"),
                          **common)
    bar.empty()
    return report, sweep


def robustness_tab(run: AuditRun) -> None:
    from fairaudit.robustness import default_eps, describe_threat_model
    from fairaudit.robustness.charts import accuracy_bars, sweep_curves

    if run.dataset is None:
        st.info("Robustness needs a model and a dataset: stored predictions cannot be attacked.")
        return
    kind = run.dataset.kind
    st.caption("Accuracy of each group on adversarial versions of its samples: FGSM and PGD in an ε-ball "
               + ("of pixel values in [0, 1]." if kind == "image" else "of the standardised numeric features "
                  "(categories are not changed).")
               + " The overall adversarial accuracy is FRoC's robustness score S_R; the gap is the largest "
                 "minus the smallest group accuracy. A sample counts as robust only if no attack fooled it.")
    cols = st.columns(4)
    attacks = cols[0].multiselect("Attacks", ["fgsm", "pgd"], default=["fgsm", "pgd"], key="rob-attacks",
                                  format_func=str.upper)
    eps = cols[1].number_input("ε", 0.0, 10.0, float(round(default_eps(kind), 4)), 0.001, format="%.4f",
                               key="rob-eps")
    samples = cols[2].number_input("Samples", 1, 100_000, ROBUSTNESS_SAMPLES, 50, key="rob-samples",
                                   help="A seeded random subsample of the split is attacked.")
    steps = cols[3].number_input("PGD steps", 1, 200, 10, key="rob-steps")
    left, right = st.columns([3, 1])
    sweep_text = left.text_input("ε-sweep values", SWEEP_DEFAULTS.get(kind, SWEEP_DEFAULTS["tabular"]),
                                 key="rob-sweep")
    sweep_attack = right.selectbox("Sweep attack", ["fgsm", "pgd"], key="rob-sweep-attack", format_func=str.upper)
    try:
        settings = {"attacks": list(attacks), "eps": float(eps), "samples": int(samples), "steps": int(steps),
                    "sweep": _eps_list(sweep_text), "sweep_attack": sweep_attack}
    except FairauditError as exc:
        show_error(exc)
        return
    key = json.dumps([run.setup.key(), settings])
    results = st.session_state.setdefault("robustness-results", {})
    if st.button("Run robustness check", key="rob-run", icon=":material/shield:", disabled=not attacks,
                 help="Costly: every sampled input is attacked, once per attack and per sweep value."):
        try:
            results[key] = _robustness_results(run, settings)
        except FairauditError as exc:
            show_error(exc)
            return
    if key not in results:
        st.caption("Choose the settings and run the check; results stay here until the settings change.")
        return
    report, sweep = results[key]
    cards = st.columns(1 + 2 * len(report.adversarial))
    cards[0].metric("Clean accuracy", f"{report.clean.overall['accuracy']:.3f}", border=True)
    for i, (name, value) in enumerate(report.s_r.items()):
        cards[1 + 2 * i].metric(f"S_R {name.upper()}", f"{value:.3f}", border=True,
                                help="Accuracy on adversarial inputs (FRoC Eq. 8).")
        cards[2 + 2 * i].metric(f"Gap {name.upper()}", f"{report.gap(name):.3f}", border=True,
                                help="Largest minus smallest group accuracy under this attack.")
    st.caption(f"Threat model: {describe_threat_model(report.threat)}.")
    frame = report.groups_frame()
    chart(accuracy_bars(frame, title=f"Clean vs. adversarial accuracy per group · "
                                               f"{report.meta['n']:,} samples"), key="rob-bars")
    chart(sweep_curves(sweep, title=f"{sweep_attack.upper()} accuracy against ε"), key="rob-sweep-chart")
    table = frame.pivot_table(index="group", columns="condition", values="accuracy", sort=False).reset_index()
    st.dataframe(table, hide_index=True)
    st.download_button("Robustness report (JSON)", json.dumps(report.to_dict(), indent=2),
                       file_name=f"fairaudit-{run.setup.key()}-robustness.json", mime="application/json",
                       icon=":material/download:")


def main() -> None:
    setup = current_setup()
    remember_in_url(setup)
    tolerances, n_boot = sidebar_settings()
    with st.sidebar:
        setup_summary(setup)
    st.title("Fairness audit")
    caption = st.empty()
    caption.caption(setup.title())
    run = await_run(setup)
    if run is None:
        return
    caption.caption(f"{setup.data_title()} · {len(run.predictions):,} predictions" if run.dataset is None else
                    f"{setup.data_title()} · model: {run.model_description} · {len(run.predictions):,} "
                    f"predictions from a {run.seconds:.1f} s pass")
    threshold = threshold_control(run)
    run_key = setup.key()
    try:
        with st.spinner("Computing metrics…"):
            report = cached_report(run_key, round(float(threshold), 4), n_boot, run.predictions)
    except FairauditError as exc:
        show_error(exc)
        return

    overall_cards(report)
    small_group_warning(report)
    st.subheader("Disparities between groups")
    checks = disparity_checks(report.disparities, tolerances, report.undefined)
    disparity_cards(checks)
    failing = [c.label for c in checks if c.passes is False]
    st.caption(("Outside tolerance: " + ", ".join(failing)) if failing else "Every disparity is within tolerance.")

    tab_names = ["Groups", "Confusion matrices", "Intersections", "Misclassified samples", "Robustness", "Slices"]
    tabs = st.tabs(tab_names, default=url_value("tab", tab_names[0], choices=tab_names), key="audit-tab",
                   on_change="rerun")
    sync("tab", st.session_state.get("audit-tab") or tab_names[0], tab_names[0])
    with tabs[0]:
        groups_tab(report, run_key)
    with tabs[1]:
        confusion_tab(report, run.predictions.class_names)
    with tabs[2]:
        try:
            intersection_tab(run, threshold, report)
        except FairauditError as exc:
            show_error(exc)
    with tabs[3]:
        errors_tab(run, threshold)
    with tabs[4]:
        robustness_tab(run)
    with tabs[5]:
        slices_tab(run, threshold, run_key, n_boot)


main()
