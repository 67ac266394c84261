"""Audit: per-group metrics, disparities with tolerances, confusion matrices, intersections, errors."""

from __future__ import annotations

import json

import streamlit as st

from appkit.state import cached_report, current_setup, remember_in_url
from appkit.widgets import await_run, disparity_cards, image_grid, setup_summary, show_error
from fairaudit.errors import FairauditError
from fairaudit.metrics import AuditReport
from fairaudit.ui import charts, gallery
from fairaudit.ui.runner import AuditRun, regroup
from fairaudit.ui.tables import (DEFAULT_TOLERANCES, METRIC_LABELS, disparity_checks, group_table,
                                 intersection_matrix, metric_with_errors)

PER_GROUP_ERRORS = 8
DEFAULT_BAR_METRICS = ("accuracy", "selection_rate", "tpr", "fpr")
MAX_CONFUSION = 12


def sidebar_settings() -> tuple[dict[str, float], int]:
    with st.sidebar:
        st.markdown("**Tolerances**")
        gap = st.number_input("Largest acceptable difference", 0.0, 1.0, DEFAULT_TOLERANCES["gap"], 0.01,
                              format="%.2f", key="tol-gap",
                              help="SPD, DEO, EO max, EOD, AAOD and AED pass at or below this value.")
        ratio = st.number_input("Smallest acceptable DP ratio", 0.0, 1.0, DEFAULT_TOLERANCES["ratio"], 0.01,
                                format="%.2f", key="tol-ratio", help="0.80 is the 80 % (four-fifths) rule.")
        floor = st.number_input("Smallest acceptable worst-group accuracy", 0.0, 1.0, DEFAULT_TOLERANCES["floor"],
                                0.01, format="%.2f", key="tol-floor")
        st.markdown("**Confidence intervals**")
        n_boot = st.select_slider("Bootstrap resamples", [0, 200, 500, 1000, 2000], value=1000, key="n-boot",
                                  help="95 % percentile intervals; 0 turns them off.")
    return {"gap": gap, "ratio": ratio, "floor": floor}, int(n_boot)


def threshold_control(run: AuditRun) -> float:
    if not run.has_scores:
        st.caption("Decision rule: the predicted class (no score, so no threshold).")
        return 0.5
    positive = run.predictions.class_names[1]
    target = run.predictions.meta.get("target") or run.setup.label_column
    event = f"{target} = {positive}" if positive.replace(".", "", 1).isdigit() or len(positive) < 2 else positive
    return st.slider(f"Decision threshold on P({event})", 0.0, 1.0, 0.5, 0.01,
                     key="threshold", help="Metrics are recomputed from the stored predictions; "
                                           "the model is not run again.")


def overall_cards(report: AuditReport) -> None:
    cols = st.columns(4)
    cols[0].metric("Accuracy", f"{report.overall['accuracy']:.3f}", border=True)
    cols[1].metric("Balanced accuracy", f"{report.overall['balanced_accuracy']:.3f}", border=True)
    cols[2].metric("Samples", f"{int(report.overall['n']):,}", border=True)
    cols[3].metric("Groups", f"{len(report.groups)}", border=True,
                   help="Several sensitive attributes are crossed into intersectional groups.")


def groups_tab(report: AuditReport, run_key: str) -> None:
    frame = report.groups_frame()
    metrics = st.multiselect("Metrics", list(METRIC_LABELS), default=list(DEFAULT_BAR_METRICS),
                             format_func=METRIC_LABELS.get, key="bar-metrics")
    if metrics:
        has_ci = f"{metrics[0]}_ci_low" in frame.columns
        st.plotly_chart(charts.metric_bars(metric_with_errors(frame, metrics), title="Metrics per group"),
                        key="bars")
        st.caption("Error bars: 95 % bootstrap confidence intervals." if has_ci
                   else "No confidence intervals (bootstrap resamples = 0).")
    table = group_table(frame)
    number_columns = {c: st.column_config.NumberColumn(c, format="%.3f") for c in table.columns
                      if c not in ("Group", "n") and not c.endswith("CI")}
    st.dataframe(table, hide_index=True, column_config=number_columns)
    left, right, _ = st.columns([1, 1, 3])
    left.download_button("Group table (CSV)", frame.to_csv(index=False), file_name=f"fairaudit-{run_key}-groups.csv",
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
            col.plotly_chart(fig, key=f"confusion-{start}-{group['group']}")
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
    metric = right.selectbox("Metric", list(METRIC_LABELS), format_func=METRIC_LABELS.get, key="ix-metric")
    if len(sensitive) == 1:
        st.caption(f"Only '{sensitive[0]}' is audited; the heatmap crosses it with another attribute of the data.")
    if sorted([first, second]) == sorted(sensitive):
        cross = report
    else:
        preds = regroup(run, [first, second])
        cross = cached_report(f"{run.setup.key()}:{first}:{second}", threshold, 0, preds)
    values, counts = intersection_matrix(cross.groups, first, second, metric)
    st.plotly_chart(charts.intersection_heatmap(values, counts, METRIC_LABELS[metric],
                                                title=f"{METRIC_LABELS[metric]} by {first} × {second}"),
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
    st.subheader("Disparities between groups")
    checks = disparity_checks(report.disparities, tolerances)
    disparity_cards(checks)
    failing = [c.label for c in checks if c.passes is False]
    st.caption(("Outside tolerance: " + ", ".join(failing)) if failing else "Every disparity is within tolerance.")

    tabs = st.tabs(["Groups", "Confusion matrices", "Intersections", "Misclassified samples"])
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


main()
