"""The sections of the audit report, one function each.

Every section function takes the finished runs (dicts of :func:`load_report_run`)
and returns a :class:`Section`: HTML blocks (text, tables, plotly figures,
inline images) for the HTML report and the same content as plain data for
the JSON report. No metric is computed here: numbers come from the runs'
recorded audits, or from the explanation, embedding, robustness and
comparison modules, whose absence or failure becomes a short
"not available: <reason>" note in the section instead of an error.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fairaudit.errors import FairauditError
from fairaudit.metrics import AuditReport
from fairaudit.metrics.catalogue import label
from fairaudit.metrics.guardrails import FLAG_RULE, WHY_FLAGGED, describe_flag
from fairaudit.robustness.audit import describe_threat_model
from fairaudit.views import charts
from fairaudit.views.jobs_view import (before_after_long, cli_command, comparison_table, comparison_text, config_table,
                                    short_model, stats_rows, timings_table, training_curves)
from fairaudit.views.tables import DISPARITIES, disparity_checks, group_table

Block = Union[str, go.Figure]
"""An HTML fragment (already escaped) or a plotly figure, rendered in order."""

GROUP_METRICS = ("accuracy", "selection_rate", "tpr", "fpr", "ppv")


@dataclass
class Section:
    """One part of the report.

    ``blocks`` are rendered in order into the HTML report; ``data`` is the
    same content as JSON-friendly values (the ``--json`` report); ``note``
    says why the section, or part of it, is not available.
    """

    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def available(self) -> bool:
        return bool(self.data)

    def add_note(self, text: str) -> None:
        self.notes.append(text)
        self.blocks.append(note_html(text))

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "available": self.available, "notes": list(self.notes), **self.data}


# ---------------------------------------------------------------------------- HTML helpers


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def note_html(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def heading(text: str, level: int = 3) -> str:
    return f"<h{level}>{esc(text)}</h{level}>"


def paragraph(text: str) -> str:
    return f"<p>{esc(text)}</p>"


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return format(float(value), fmt)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return str(value)


def table_html(frame: pd.DataFrame, *, fmt: str = ".3f", formats: Mapping[str, str] | None = None, css: str = "",
               cell_class: Callable[[str, Any], str] | None = None) -> str:
    """A plain HTML table (numbers with ``fmt``, or ``formats[column]``); ``cell_class(column, value)`` adds a
    CSS class to a cell."""
    formats = dict(formats or {})
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, record):
            extra = cell_class(column, value) if cell_class else ""
            text = esc(_cell(value, formats.get(column, fmt)))
            cells.append(f'<td class="{extra}">{text}</td>' if extra else f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cls = f' class="{css}"' if css else ""
    return f'<div class="table-wrap"><table{cls}><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>' \
           f"</table></div>"


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table as JSON-friendly rows (NaN becomes ``None``)."""
    out = []
    for row in frame.to_dict(orient="records"):
        clean = {}
        for k, v in row.items():
            if isinstance(v, (np.floating, float)):
                v = None if math.isnan(float(v)) else float(v)
            elif isinstance(v, np.integer):
                v = int(v)
            elif isinstance(v, np.bool_):
                v = bool(v)
            elif isinstance(v, pd.Timestamp):
                v = v.isoformat()
            clean[str(k)] = v
        out.append(clean)
    return out


def png_data_uri(image: np.ndarray) -> str:
    """An ``(H, W, 3)`` float image in [0, 1] (or uint8) as a ``data:image/png;base64`` URI."""
    from PIL import Image

    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_grid_html(images: Sequence[np.ndarray], captions: Sequence[str], per_row: int) -> str:
    cells = "".join(f'<figure><img alt="{esc(c)}" src="{png_data_uri(img)}"><figcaption>{esc(c)}</figcaption>'
                    "</figure>" for img, c in zip(images, captions))
    return f'<div class="image-grid" style="grid-template-columns: repeat({int(per_row)}, auto)">{cells}</div>'


def run_heading(run: Mapping[str, Any]) -> str:
    return heading(f"Run {run['run_id']} · {run['method']} on {run['dataset']}")


def _optional(module: str, *names: str) -> tuple[Any, ...]:
    """The named functions of a module, or :class:`FairauditError` saying why it cannot be used."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise FairauditError(f"{module} is not installed in this version ({exc}).") from None
    missing = [n for n in names if not hasattr(mod, n)]
    if missing:
        raise FairauditError(f"{module} has no {', '.join(missing)} in this version.")
    return tuple(getattr(mod, n) for n in names)


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, FairauditError) else f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------- loading runs


def load_report_run(run_id: str) -> dict[str, Any]:
    """A finished run as the report reads it: its ``result.json`` merged over its registry record.

    The result file carries what the registry does not (the model's
    description, robustness and per-split audits); the registry adds the
    per-epoch ``metrics`` and timestamps. Raises :class:`FairauditError` for an
    unknown run or one that is not done.
    """
    from fairaudit.jobs import get_run, run_result

    run = get_run(run_id)
    result = run_result(run)  # raises for a run that is not done
    path = (run.get("artifacts") or {}).get("result") or run.get("result_path")
    if path and Path(path).is_file():
        try:
            result = {**result, **json.loads(Path(path).read_text())}
        except (OSError, ValueError):
            pass  # the registry record is enough for every section but the optional ones
    for key in ("metrics", "created", "started", "finished", "backend", "status"):
        result.setdefault(key, run.get(key))
    result["run_id"] = run_id
    return result


# ---------------------------------------------------------------------------- sections


MODEL_FIELDS = (("arch", "Architecture"), ("num_classes", "Classes"), ("class_names", "Class names"),
                ("input_shape", "Input shape"), ("format", "Format"), ("dataset", "Trained on"),
                ("target", "Trained for"), ("variant", "Training objective"), ("train_seconds", "Training seconds"),
                ("fairaudit_version", "Saved by fairaudit"), ("sha256", "SHA-256"))


def model_info(run: Mapping[str, Any]) -> dict[str, Any]:
    """What the deployed model's JSON sidecar says about it (architecture, classes, input, training), or ``{}``.

    The demo model is looked up in the workspace cache; nothing is trained or loaded.
    """
    from fairaudit.models.io import read_sidecar

    spec = run.get("spec") or {}
    model = str(run.get("model") or spec.get("model") or "")
    try:
        if model == "demo":
            from fairaudit.demo import demo_model_path

            path = demo_model_path(run["dataset"], spec.get("target"), spec.get("data_options"))
        else:
            path = Path(model)
        info = read_sidecar(path) or {}
    except (FairauditError, OSError):
        return {}
    out = {}
    for key, _ in MODEL_FIELDS:
        value = info.get(key)
        if value is not None:
            out[key] = value
    if isinstance(info.get("history"), list):
        out["train_epochs"] = len(info["history"])
    return out


def overview_section(runs: Sequence[Mapping[str, Any]]) -> Section:
    """Which data and which model each run audited: dataset, target, sensitive attributes, test split, model."""
    from fairaudit.data.registry import get_spec

    section = Section("overview", "Data and models")
    rows, datasets, models = [], {}, {}
    for run in runs:
        spec = run.get("spec") or {}
        before = run.get("before") or {}
        meta = before.get("meta") or {}
        info = model_info(run)
        models[run["run_id"]] = {"model": str(run.get("model") or ""), "description": run.get("model_description"),
                                 **info}
        rows.append({
            "Run": run["run_id"], "Method": run["method"], "Dataset": run["dataset"],
            "Target": meta.get("target") or spec.get("target") or "default",
            "Positive class": meta.get("positive_class") or "–",
            "Sensitive": ", ".join(meta.get("sensitive") or spec.get("sensitive") or []) or "default",
            "Data options": ", ".join(f"{k}={v}" for k, v in (spec.get("data_options") or {}).items()) or "–",
            "Model": short_model(str(run.get("model") or spec.get("model") or "")),
            "Architecture": info.get("arch") or spec.get("arch") or "–",
            "Test samples": int((before.get("overall") or {}).get("n") or 0),
            "Groups": len(before.get("groups") or []), "Seed": run.get("seed"), "Device": run.get("device"),
            "Bootstrap resamples": spec.get("n_boot"),
        })
        if run["dataset"] not in datasets:
            try:
                ds = get_spec(run["dataset"])
                datasets[run["dataset"]] = {"kind": ds.kind, "description": ds.description}
            except FairauditError:
                datasets[run["dataset"]] = {"kind": "", "description": ""}
    table = pd.DataFrame(rows)
    section.blocks += [heading("Runs"), table_html(table), heading("Datasets")]
    for name, info in datasets.items():
        section.blocks.append(f"<p><b>{esc(name)}</b> ({esc(info['kind'])}): {esc(info['description'])}</p>")
    section.blocks.append(heading("Models"))
    labels = dict(MODEL_FIELDS)
    for run in runs:
        entry = models[run["run_id"]]
        rows = [("Checkpoint", entry["description"] or entry["model"])]
        rows += [(labels.get(k, k), ", ".join(map(str, v)) if isinstance(v, list) else v)
                 for k, v in entry.items() if k in labels]
        if "train_epochs" in entry:
            rows.append(("Training epochs", entry["train_epochs"]))
        section.blocks += [f"<h4>Deployed model of run {esc(run['run_id'])}</h4>",
                           table_html(pd.DataFrame(rows, columns=["Property", "Value"]), fmt=".4g")]
        groups = pd.DataFrame([{"Group": g["group"], "n": g["n"], "Base rate": g.get("base_rate")}
                               for g in before_groups(run)])
        if not groups.empty:
            section.blocks += [f"<h4>Test groups of run {esc(run['run_id'])}</h4>", table_html(groups)]
    section.data = {"runs": records(table), "datasets": datasets, "models": models}
    return section


def before_groups(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((run.get("before") or {}).get("groups") or [])


def flagged_html(flagged: Sequence[Mapping[str, Any]]) -> str:
    """A warning naming each flagged group (:func:`fairaudit.metrics.guardrails.flag_groups`) with its size and
    interval width, and why the flag matters."""
    items = "".join(f"<li>{esc(describe_flag(f))}</li>" for f in flagged)
    return (f'<div class="flag"><b>Small or uncertain group{"s" if len(flagged) > 1 else ""}</b><ul>{items}</ul>'
            f"<p>{esc(WHY_FLAGGED)} {esc(FLAG_RULE)}</p></div>")


def metrics_section(runs: Sequence[Mapping[str, Any]]) -> Section:
    """Overall scores and disparities before/after with their 95 % intervals, and per-group metrics; groups the
    small-group guardrails flag (:mod:`fairaudit.metrics.guardrails`) are named under their stage's table and
    listed in ``flagged_groups``; each run's recorded slices before → after (:mod:`fairaudit.report.slices`)
    close its part, in ``slices``."""
    from fairaudit.report.slices import slices_part

    section = Section("metrics", "Metrics with 95 % confidence intervals")
    section.blocks.append(paragraph(
        "Before: the deployed model; after: the outcome of the mitigation method. Intervals are percentile "
        "bootstrap intervals of the test-set audit."))
    data = {}
    for run in runs:
        before, after = run["before"], run["after"]
        table = comparison_table(before, after)
        section.blocks += [run_heading(run), table_html(comparison_text(table)),
                           charts.metric_bars(before_after_long(before, after), title="Before and after",
                                              height=320)]
        groups, flagged = {}, {}
        for stage in ("before", "after"):
            report = AuditReport.from_dict(run[stage])
            per_group = group_table(report.groups_frame(), GROUP_METRICS)
            section.blocks += [f"<h4>Per group, {stage}</h4>", table_html(per_group)]
            groups[stage] = records(per_group)
            flagged[stage] = report.flagged_groups()
            if flagged[stage]:
                section.blocks.append(flagged_html(flagged[stage]))
        data[run["run_id"]] = {"comparison": records(table), "groups": groups, "flagged_groups": flagged,
                               "before": {"overall": before.get("overall"), "disparities": before.get("disparities"),
                                          "ci": before.get("ci"), "undefined": before.get("undefined") or {}},
                               "after": {"overall": after.get("overall"), "disparities": after.get("disparities"),
                                         "ci": after.get("ci"), "undefined": after.get("undefined") or {}}}
        slice_blocks, data[run["run_id"]]["slices"] = slices_part(run)  # the worst slice before, and after
        section.blocks += slice_blocks
    section.data = {"runs": data}
    return section


def _verdict_class(column: str, value: Any) -> str:
    if isinstance(value, str) and value.startswith("pass"):
        return "pass"
    if isinstance(value, str) and value.startswith("fail"):
        return "fail"
    return ""


def verdicts_section(runs: Sequence[Mapping[str, Any]], tolerances: Mapping[str, float] | None = None) -> Section:
    """Every disparity held to its tolerance before and after: pass or fail.

    Differences pass at ``≤`` their tolerance (default 0.1), the DP ratio at
    ``≥ 0.8`` (the 80 % rule) and the worst-group accuracy at ``≥ 0.8``, as on
    the Audit page (:func:`fairaudit.views.tables.disparity_checks`). A disparity the audit could not define
    (a gap that fewer than two groups define) reads "n/a", neither passes nor fails, and its reason is given.
    """
    section = Section("verdicts", "Disparity verdicts")
    section.blocks.append(paragraph(
        "Each disparity is compared with its tolerance: differences (smaller is fairer) pass at or below it, "
        "the demographic-parity ratio passes the 80 % rule at or above 0.8, the worst-group accuracy at or "
        "above its floor."))
    data = {}
    for run in runs:
        before = disparity_checks(run["before"].get("disparities") or {}, tolerances, run["before"].get("undefined"))
        after = disparity_checks(run["after"].get("disparities") or {}, tolerances, run["after"].get("undefined"))
        table = pd.DataFrame([{"Disparity": b.label, "Rule": b.rule, "Before": "n/a" if b.reason else b.value,
                               "Before verdict": b.verdict.split(" · ")[0], "After": "n/a" if a.reason else a.value,
                               "After verdict": a.verdict.split(" · ")[0],
                               "Why n/a": "; ".join(f"{stage}: {c.reason}" for stage, c in (("before", b), ("after", a))
                                                    if c.reason)}
                              for b, a in zip(before, after)])
        passed = sum(a.passes is True for a in after)
        section.blocks += [run_heading(run), paragraph(f"After mitigation {passed} of {len(after)} disparities "
                                                       f"pass (before: {sum(b.passes is True for b in before)})."),
                           table_html(table, cell_class=_verdict_class)]
        data[run["run_id"]] = [{"name": b.name, "label": b.label, "rule": b.rule,
                                "before": None if b.passes is None else b.value, "before_passes": b.passes,
                                "after": None if a.passes is None else a.value, "after_passes": a.passes,
                                "before_undefined": b.reason or None, "after_undefined": a.reason or None}
                               for b, a in zip(before, after)]
    section.data = {"tolerances": dict(tolerances or {}), "runs": data}
    return section


def splits_section(runs: Sequence[Mapping[str, Any]]) -> Section:
    """Disparities on the train, validation and test splits side by side (runs that recorded ``splits``); a
    gap a split's audit could not define reads "n/a" with its reason (``Why n/a``), never 0."""
    section = Section("splits", "Disparities per data split")
    names = [info.name for info in DISPARITIES]
    data = {}
    for run in runs:
        splits = run.get("splits")
        if not splits:
            section.add_note(f"Run {run['run_id']}: not available: this run recorded no per-split audits.")
            continue
        rows = []
        for split, stages in splits.items():
            for stage in ("before", "after"):
                report = (stages or {}).get(stage)
                if not report:
                    continue
                disparities = report.get("disparities") or {}
                undefined = {n: r for n, r in (report.get("undefined") or {}).items()
                             if n in names and disparities.get(n) is None}
                rows.append({"Split": split, "Stage": stage,
                             label("accuracy"): (report.get("overall") or {}).get("accuracy"),
                             **{label(n): "n/a" if n in undefined else disparities.get(n) for n in names},
                             "Why n/a": "; ".join(f"{label(n)}: {r}" for n, r in undefined.items())})
        table = pd.DataFrame(rows)
        section.blocks += [run_heading(run), table_html(table)]
        data[run["run_id"]] = records(table)
    section.data = {"runs": data} if data else {}
    return section


def _condition_row(stage: str, condition: str, block: Mapping[str, Any]) -> dict[str, Any]:
    overall = (block or {}).get("overall") or {}
    accuracies = [g.get("accuracy") for g in (block or {}).get("groups") or []
                  if isinstance(g, Mapping) and g.get("accuracy") is not None]
    gap = (block or {}).get("gap")
    return {"Stage": stage, "Input": condition, label("accuracy"): overall.get("accuracy"),
            label("worst_group_accuracy"): min(accuracies) if accuracies else None,
            "Group accuracy gap": gap if isinstance(gap, (int, float)) else None}


def _s_r_text(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_cell(v, '.3f')}" for k, v in value.items()) or "–"
    return _cell(value, ".3f")


def robustness_section(runs: Sequence[Mapping[str, Any]]) -> Section:
    """Clean and adversarial accuracy per attack before/after, the accuracy gap between groups and FRoC's
    robustness score S_R (Eq. 8: accuracy under attack), as recorded by :mod:`fairaudit.robustness`."""
    section = Section("robustness", "Robustness")
    data = {}
    for run in runs:
        robustness = run.get("robustness") or {}
        stages = [stage for stage in ("before", "after") if isinstance(robustness.get(stage), Mapping)]
        reason = robustness.get("reason") or "this run recorded no robustness evaluation"
        if not stages:
            section.add_note(f"Run {run['run_id']}: not available: {reason}.")
            continue
        if len(stages) == 1:
            section.add_note(f"Run {run['run_id']}: only {stages[0]} mitigation: {reason}.")
        rows, group_rows = [], []
        for stage in ("before", "after"):
            block = robustness.get(stage)
            if not isinstance(block, Mapping):
                continue
            conditions = [("clean", block.get("clean") or {}), *(block.get("adversarial") or {}).items()]
            for condition, result in conditions:
                rows.append(_condition_row(stage, condition, result))
                group_rows += [{"Stage": stage, "Input": condition, "Group": g.get("group"), "n": g.get("n"),
                                "Accuracy": g.get("accuracy")}
                               for g in (result or {}).get("groups") or [] if isinstance(g, Mapping)]
        table, groups = pd.DataFrame(rows), pd.DataFrame(group_rows)
        s_r = {stage: (robustness.get(stage) or {}).get("s_r") for stage in ("before", "after")}
        threat = robustness.get("threat_model") or next(
            (robustness[stage].get("threat_model") for stage in stages if robustness[stage].get("threat_model")), None)
        section.blocks += [run_heading(run), paragraph(f"Robustness score S_R (accuracy under attack): before "
                                                       f"{_s_r_text(s_r['before'])}; after {_s_r_text(s_r['after'])}. "
                                                       f"Threat model: {describe_threat_model(threat)}.")]
        if not table.empty:
            section.blocks.append(table_html(table))
        if not groups.empty:
            fig = go.Figure()
            for i, (group, part) in enumerate(groups.groupby("Group", sort=False)):
                fig.add_trace(go.Bar(name=str(group), x=[part["Stage"], part["Input"]], y=part["Accuracy"],
                                     marker_color=charts.PALETTE[i % len(charts.PALETTE)]))
            fig.update_layout(barmode="group", template="plotly_white", font=charts.FONT, height=320,
                              title=dict(text="Accuracy per group on clean and attacked inputs", x=0),
                              margin=dict(l=10, r=10, t=40, b=10), yaxis=dict(range=[0, 1]))
            section.blocks += [fig, "<h4>Per group</h4>", table_html(groups)]
        data[run["run_id"]] = {"s_r": s_r, "table": records(table), "groups": records(groups)}
    section.data = {"runs": data} if data else {}
    return section


SELECTIONS = (("wrong_to_right", "test samples the deployed model got wrong and the mitigated one right"),
              ("confident_errors", "the deployed model's most confident errors (no sample went from wrong to "
                                   "right)"))
"""Which samples the explanation grid shows: the first rule that yields a grid."""


def explanations_section(runs: Sequence[Mapping[str, Any]], *, enabled: bool = True, method: str = "gradcam",
                         n: int = 8, device: str = "auto", seed: int = 0) -> Section:
    """Attribution maps before/after of samples whose prediction mitigation corrected (else of the deployed
    model's most confident errors), and the attribution bias per group (:func:`fairaudit.explain.explain_run`)."""
    section = Section("explanations", "Explanations")
    if not enabled:
        section.add_note("Not available: explanations were switched off for this report.")
        return section
    try:
        (explain_run,) = _optional("fairaudit.explain", "explain_run")
    except FairauditError as exc:
        section.add_note(f"Not available: {exc}")
        return section
    data = {}
    for run in runs:
        first_error, grid = None, None
        for selection, description in SELECTIONS:
            try:
                grid = explain_run(run["run_id"], method=method, selection=selection, n=n, device=device, seed=seed)
                figure = grid.figure(opacity=0.5)
                bias = grid.attribution_bias
                break
            except Exception as exc:  # one failing run must not cost the whole report
                first_error = first_error or exc
                grid = None
        if grid is None:
            section.add_note(f"Run {run['run_id']}: not available: {_reason(first_error)}")
            continue
        section.blocks += [run_heading(run), paragraph(f"{method} attribution maps of {description}."), figure]
        entry: dict[str, Any] = {"method": method, "selection": selection, "n": n}
        if bias is not None and not bias.empty:
            bias = bias.reset_index(drop=bias.index.name is None)
            section.blocks += ["<h4>Attribution bias</h4>", table_html(bias)]
            entry["attribution_bias"] = records(bias)
        data[run["run_id"]] = entry
    section.data = {"runs": data} if data else {}
    return section


def perturbations_section(runs: Sequence[Mapping[str, Any]], per_group: int = 2) -> Section:
    """FAAP runs: test images of each group, their learned perturbation and the perturbed image (inline PNGs)."""
    from fairaudit.views.jobs_view import AMPLIFY, faap_samples

    section = Section("perturbations", "Perturbed inputs (FAAP)")
    data = {}
    for run in runs:
        if run["method"] != "faap":
            continue
        try:
            samples = faap_samples(run, per_group=per_group)
        except FairauditError as exc:
            section.add_note(f"Run {run['run_id']}: not available: {exc}")
            continue
        section.blocks += [run_heading(run), paragraph(
            f"Per group: the original, the perturbation (×{AMPLIFY:g} around mid-grey) and the perturbed image.")]
        for group in dict.fromkeys(s.group for s in samples):
            rows = [s for s in samples if s.group == group]
            images, captions = [], []
            for s in rows:
                images += [s.original, s.perturbation, s.perturbed]
                captions += [f"#{s.index}", f"δ ×{AMPLIFY:g}", "perturbed"]
            section.blocks += [f"<h4>{esc(group)}</h4>", image_grid_html(images, captions, 3 * len(rows))]
        data[run["run_id"]] = [{"index": s.index, "group": s.group, "linf": s.linf} for s in samples]
    if not data and not section.notes:
        section.add_note("Not available: none of these runs perturbs its inputs.")
    section.data = {"runs": data} if data else {}
    return section


def embeddings_section(runs: Sequence[Mapping[str, Any]], *, enabled: bool = True, samples: int = 2000,
                       method: str = "tsne", device: str = "auto", seed: int = 0) -> Section:
    """2-D maps of the latent features coloured by sensitive group, and how well a probe recovers the group
    from them (:func:`fairaudit.embed.embed_run`; with ``enabled=False`` only a leakage result computed
    before, :func:`fairaudit.embed.cached_leakage`)."""
    section = Section("embeddings", "Embeddings and sensitive-attribute leakage")
    data = {}
    try:
        embed_run, cached_leakage, leakage_table = _optional("fairaudit.embed", "embed_run", "cached_leakage",
                                                             "leakage_table")
    except FairauditError as exc:
        section.add_note(f"Not available: {exc}")
        return section
    for run in runs:
        try:
            if enabled:
                embedding = embed_run(run["run_id"], method=method, n=samples, device=device, seed=seed)
                figure, leakage = embedding.figure(color="sensitive"), embedding.leakage
                blocks: list[Block] = [run_heading(run), figure]
                entry: dict[str, Any] = {"method": method, "n": samples}
            else:
                cached = cached_leakage(run["run_id"])
                if cached is None:
                    section.add_note(f"Run {run['run_id']}: not available: embeddings were switched off for this "
                                     "report and no leakage probe was run before.")
                    continue
                leakage = leakage_table(cached)
                blocks, entry = [run_heading(run)], {"cached": True}
            if leakage is not None and not leakage.empty:
                blocks += ["<h4>Leakage of the sensitive attribute from the latents</h4>", table_html(leakage)]
                entry["leakage"] = records(leakage)
        except Exception as exc:  # one failing run must not cost the whole report
            section.add_note(f"Run {run['run_id']}: not available: {_reason(exc)}")
            continue
        section.blocks += blocks
        data[run["run_id"]] = entry
    section.data = {"runs": data} if data else {}
    return section


TRADEOFF_COLUMNS = ("run_id", "kind", "method", "dataset", "model", "seed", "settings", "accuracy", "deo", "spd",
                    "eod", "worst_group_accuracy", "s_r", "leakage")


def tradeoff_section(runs: Sequence[Mapping[str, Any]], fairness: str = "deo") -> Section:
    """Accuracy against a disparity for the runs of the report and their unmitigated baselines
    (:func:`fairaudit.compare.runs_table`, :func:`fairaudit.compare.tradeoff_figure`)."""
    from fairaudit.jobs import get_run

    section = Section("tradeoff", "Accuracy–fairness trade-off")
    try:
        runs_table, tradeoff_figure = _optional("fairaudit.compare", "runs_table", "tradeoff_figure")
        table = runs_table([get_run(run["run_id"]) for run in runs])
        figure = tradeoff_figure(table, fairness=fairness)
    except Exception as exc:  # the rest of the report stands without this chart
        section.add_note(f"Not available: {_reason(exc)}")
        return section
    shown = table[[c for c in TRADEOFF_COLUMNS if c in table.columns]]
    section.blocks += [figure, table_html(shown)]
    section.data = {"fairness": fairness, "table": records(shown)}
    return section


def training_section(runs: Sequence[Mapping[str, Any]]) -> Section:
    """The per-epoch curves each run recorded."""
    section = Section("training", "Training curves")
    data = {}
    for run in runs:
        figure = training_curves(run.get("metrics") or [])
        if figure is None:
            section.add_note(f"Run {run['run_id']}: this run recorded no epochs.")
            continue
        section.blocks += [run_heading(run), figure]
        data[run["run_id"]] = run.get("history") or []
    section.data = {"runs": data} if data else {}
    return section


def configuration_section(runs: Sequence[Mapping[str, Any]]) -> Section:
    """Method settings, the command that repeats each run, timings, method statistics and library versions."""
    from fairaudit.jobs.spec import load_methods
    from fairaudit.mitigation import METHODS, config_help, recorded_method

    load_methods()
    section = Section("configuration", "Configuration and library versions")
    data = {}
    for run in runs:
        method = recorded_method(run["method"], run.get("config") or (run.get("spec") or {}).get("settings"))
        help_rows = config_help(METHODS[method]) if method in METHODS else []
        settings = config_table(run.get("config") or {}, help_rows)
        spec = run.get("spec") or {}
        section.blocks += [run_heading(run), "<h4>Method settings</h4>", table_html(settings)]
        if spec:
            section.blocks += ["<h4>Repeat this run</h4>", f"<pre>{esc(cli_command(spec))}</pre>"]
        timings = timings_table(run)
        if not timings.empty:
            section.blocks += ["<h4>Timings (seconds)</h4>", table_html(timings, fmt=".2f")]
        stats = stats_rows(run.get("stats"))
        if stats:
            section.blocks += ["<h4>Method statistics</h4>",
                               table_html(pd.DataFrame(stats, columns=["Statistic", "Value"]))]
        versions = run.get("versions") or {}
        if versions:
            section.blocks += ["<h4>Library versions</h4>",
                               table_html(pd.DataFrame(list(versions.items()), columns=["Library", "Version"]))]
        data[run["run_id"]] = {"config": run.get("config") or {}, "spec": spec, "versions": versions,
                               "timings": run.get("timings") or {}, "stats": run.get("stats") or {},
                               "seconds": run.get("seconds")}
    section.data = {"runs": data}
    return section
