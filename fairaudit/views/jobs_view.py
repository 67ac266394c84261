"""Tables and figures of mitigation runs, read from the run registry (no Streamlit here).

The Mitigate and Run pages lay out what these functions build from the
dicts of :func:`fairaudit.jobs.get_run` / :func:`fairaudit.jobs.list_runs`:
the job table, the per-epoch curves, the before/after comparison of the two
audits (value, 95 % bootstrap interval and change of each headline metric),
the settings form of a method and, for FAAP, a grid of original, perturbation
and perturbed images. No metric is computed here; every number comes from the
recorded audits.
"""

from __future__ import annotations

import math
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fairaudit.errors import FairauditError
from fairaudit.metrics import catalogue
from fairaudit.views.charts import FONT, PALETTE
from fairaudit.views.tables import DISPARITIES

ACTIVE_STATUSES = ("queued", "running")

# Headline metrics of the before/after card.
HEADLINE: tuple[tuple[str, str], ...] = (("accuracy", "Accuracy"), ("spd", "DP difference (SPD)"), ("deo", "DEO"),
                                         ("eod", "EOD"))
OVERALL_SCORES = ("accuracy", "balanced_accuracy")
"""The overall scores next to the disparities (labels and directions in :mod:`fairaudit.metrics.catalogue`)."""


# ---------------------------------------------------------------------------- before / after


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def report_value(report: Mapping[str, Any], name: str) -> tuple[float, tuple[float, float] | None]:
    """``(value, 95 % interval or None)`` of an overall score or a disparity of a recorded audit."""
    source = report.get("overall", {}) if name in OVERALL_SCORES else report.get("disparities", {})
    interval = (report.get("ci") or {}).get(name)
    if interval is None or any(v is None for v in interval):
        ci = None
    else:
        ci = (float(interval[0]), float(interval[1]))
    return _number(source.get(name)), ci


def undefined_reason(report: Mapping[str, Any] | None, name: str) -> str:
    """Why a disparity of a recorded audit is undefined (``""`` when it is defined or no reason was recorded)."""
    return str(((report or {}).get("undefined") or {}).get(name) or "")


@dataclass(frozen=True)
class Comparison:
    """One metric before and after mitigation."""

    name: str
    label: str
    before: float
    after: float
    before_ci: tuple[float, float] | None
    after_ci: tuple[float, float] | None
    higher_is_better: bool
    before_reason: str = ""  # why an undefined value is undefined
    after_reason: str = ""

    @property
    def change(self) -> float:
        return self.after - self.before

    @property
    def improved(self) -> bool | None:
        """Whether the metric moved in its good direction (``None`` when undefined or unchanged)."""
        if math.isnan(self.change) or abs(self.change) < 5e-4:
            return None
        return (self.change > 0) == self.higher_is_better

    @staticmethod
    def ci_text(ci: tuple[float, float] | None) -> str:
        return "" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"

    @property
    def value_text(self) -> str:
        return "n/a" if math.isnan(self.after) else f"{self.after:.3f}"

    @property
    def change_text(self) -> str:
        return "" if math.isnan(self.change) else f"{self.change:+.3f}"

    @property
    def note(self) -> str:
        """Why the before or after value is n/a, e.g. ``after n/a: only group 'g=A' defines ...``."""
        parts = [f"{stage} n/a: {reason}" for stage, reason in (("before", self.before_reason),
                                                                 ("after", self.after_reason)) if reason]
        return "; ".join(parts)


def compare(before: Mapping[str, Any], after: Mapping[str, Any], name: str, label: str | None = None) -> Comparison:
    """One overall score (``accuracy``, ``balanced_accuracy``) or disparity before and after."""
    default_label, higher = catalogue.label(name), catalogue.higher_is_better(name)
    b, b_ci = report_value(before, name)
    a, a_ci = report_value(after, name)
    return Comparison(name, label or default_label, b, a, b_ci, a_ci, higher,
                      undefined_reason(before, name) if math.isnan(b) else "",
                      undefined_reason(after, name) if math.isnan(a) else "")


def headline_comparisons(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Comparison]:
    """Accuracy, DP difference, DEO and EOD before and after, with their intervals (the run's card)."""
    return [compare(before, after, name, label) for name, label in HEADLINE]


def comparison_table(before: Mapping[str, Any], after: Mapping[str, Any]) -> pd.DataFrame:
    """Every overall score and disparity: before, after (each with its interval), change, verdict and, for a
    value that is undefined (NaN), why (``Note``)."""
    names = [*OVERALL_SCORES, *(info.name for info in DISPARITIES)]
    rows = []
    for name in names:
        c = compare(before, after, name)
        rows.append({"Metric": c.label, "Before": c.before, "Before CI": c.ci_text(c.before_ci),
                     "After": c.after, "After CI": c.ci_text(c.after_ci), "Change": c.change,
                     "Better?": "n/a" if math.isnan(c.change) else {True: "better", False: "worse",
                                                                     None: "≈ same"}[c.improved],
                     "Goal": "higher" if c.higher_is_better else "lower", "Note": c.note})
    return pd.DataFrame(rows)


def comparison_text(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`comparison_table` as text: values with 3 decimals (the change signed), ``n/a`` where the audit
    left the metric undefined (the ``Note`` says why), ``–`` where it is missing."""
    out = table.copy()
    for column, spec in (("Before", ".3f"), ("After", ".3f"), ("Change", "+.3f")):
        out[column] = ["n/a" if (pd.isna(v) and (column == "Change" or f"{column.lower()} n/a" in note)
                                 and note) else ("–" if pd.isna(v) else format(float(v), spec))
                       for v, note in zip(table[column], table["Note"])]
    return out


def before_after_long(before: Mapping[str, Any], after: Mapping[str, Any],
                      names: Sequence[str] = ("accuracy", "spd", "deo", "eod", "worst_group_accuracy")
                      ) -> pd.DataFrame:
    """Long table ``group, metric, value, err_minus, err_plus, n`` (group = Before / After) for
    :func:`fairaudit.views.charts.metric_bars`, the errors reaching the interval bounds."""
    rows = []
    for stage, report in (("Before", before), ("After", after)):
        n = int((report.get("overall") or {}).get("n") or 0)
        for name in names:
            value, ci = report_value(report, name)
            label = catalogue.label(name)
            minus, plus = (math.nan, math.nan) if ci is None else (max(0.0, value - ci[0]), max(0.0, ci[1] - value))
            rows.append({"group": stage, "metric": label, "value": value, "err_minus": minus, "err_plus": plus,
                         "n": n})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- job table


def short_model(model: str) -> str:
    """``demo`` or the checkpoint's file name."""
    return model if model == "demo" else Path(model).name


def run_label(run: Mapping[str, Any]) -> str:
    """``20250101-120000-3fa2c1 · faap on synthetic-faces · done``."""
    return f"{run['id']} · {run['method']} on {run['dataset']} · {run['status']}"


def run_duration(run: Mapping[str, Any], now: float | None = None) -> float | None:
    """Seconds from start to finish (to now while it runs); ``None`` before it started."""
    if not run.get("started"):
        return None
    end = run.get("finished") or (now or time.time())
    return max(0.0, float(end) - float(run["started"]))


def before_after_text(before: Any, after: Any) -> str:
    """``0.412 → 0.105`` (a missing value shows as ``–``)."""
    def fmt(value: Any) -> str:
        return "–" if value is None or value != value else f"{float(value):.3f}"

    return "" if before is None and after is None else f"{fmt(before)} → {fmt(after)}"


def job_table(runs: Sequence[Mapping[str, Any]], now: float | None = None) -> pd.DataFrame:
    """One row per run (newest first, as listed): status, phase, progress in [0, 1], DEO and accuracy
    before → after, start time and duration."""
    rows = []
    for run in runs:
        summary = run.get("summary") or {}
        before, after = summary.get("before") or {}, summary.get("after") or {}
        status = run["status"]
        phase = run.get("phase") or ""
        rows.append({
            "Run": run["id"], "Method": run["method"], "Dataset": run["dataset"],
            "Model": short_model(str(run["model"])),
            "Status": status,
            "Phase": "" if phase in (status, "done") else phase,
            "Progress": float(run.get("progress") or 0.0),
            "DEO before → after": before_after_text(before.get("deo"), after.get("deo")),
            "Accuracy before → after": before_after_text(before.get("accuracy"), after.get("accuracy")),
            "Created": pd.Timestamp.fromtimestamp(float(run["created"])).floor("s"),
            "Seconds": run_duration(run, now),
        })
    columns = ["Run", "Method", "Dataset", "Model", "Status", "Phase", "Progress", "DEO before → after",
               "Accuracy before → after", "Created", "Seconds"]
    return pd.DataFrame(rows, columns=columns)


def epoch_text(run: Mapping[str, Any]) -> str:
    """``epoch 2/6`` from the run's latest event (training events count epochs from 0, epoch ends from 1)."""
    event = run.get("event") or {}
    epoch = event.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        return ""
    current = epoch + 1 if event.get("event") == "step" else epoch
    total = (run.get("config") or {}).get("epochs")
    return f"epoch {current}/{total}" if isinstance(total, int) and total >= current else f"epoch {current}"


# ---------------------------------------------------------------------------- curves


def metric_history(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The per-epoch rows of :func:`fairaudit.jobs.get_run` as a table: one row per epoch, one column per
    recorded name (a resumed epoch recorded twice keeps its latest value)."""
    frame = pd.DataFrame([r for r in rows if r.get("epoch") is not None], columns=["step", "epoch", "name", "value"])
    if frame.empty:
        return pd.DataFrame()
    wide = frame.sort_values("step").pivot_table(index="epoch", columns="name", values="value", aggfunc="last")
    wide.columns.name = None
    return wide.sort_index()


def is_loss(name: str) -> bool:
    return "loss" in name.lower()


def training_curves(rows: Sequence[Mapping[str, Any]], *, height: int = 320) -> go.Figure | None:
    """Per-epoch curves: losses on the left, every other recorded number (accuracies, validation
    DEO, …) on the right; ``None`` before the first epoch is recorded."""
    history = metric_history(rows)
    if history.empty:
        return None
    losses = [c for c in history.columns if is_loss(c)]
    others = [c for c in history.columns if not is_loss(c)]
    panels = [(title, names) for title, names in (("Losses", losses), ("Accuracy and fairness", others)) if names]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for t, _ in panels], horizontal_spacing=0.08)
    epochs = history.index.to_numpy()
    colour = 0
    for col, (_, names) in enumerate(panels, start=1):
        for name in names:
            fig.add_trace(go.Scatter(x=epochs, y=history[name], mode="lines+markers", name=name,
                                     line=dict(color=PALETTE[colour % len(PALETTE)], width=2), marker=dict(size=6),
                                     hovertemplate=f"{name}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>"),
                          row=1, col=col)
            colour += 1
        fig.update_xaxes(title_text="epoch", row=1, col=col, dtick=1 if len(epochs) <= 12 else None,
                         gridcolor="#e5e7eb")
        fig.update_yaxes(row=1, col=col, gridcolor="#e5e7eb", zeroline=False)
    fig.update_layout(template="plotly_white", font=FONT, height=height, margin=dict(l=10, r=10, t=36, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0),
                      hovermode="x unified")
    fig.update_annotations(font=dict(size=14))
    return fig


# ---------------------------------------------------------------------------- settings form


@dataclass(frozen=True)
class SettingField:
    """One hyper-parameter of a method's form.

    ``kind`` is ``int``, ``float``, ``bool``, ``choice``, ``text``, ``optional``
    (default ``None``: free text, empty means ``None``) or ``fixed`` (a list,
    dict or computed default: shown, not editable).
    """

    name: str
    default: Any
    help: str
    kind: str
    choices: tuple[Any, ...] = ()
    min: float | None = None  # the range of a number, as declared
    max: float | None = None
    unit: str | None = None
    range_text: str | None = None  # "[0, 1]", ">= 1", "> 0"

    @property
    def help_text(self) -> str:
        """The help with the range and unit appended (what a number input shows under its **?**)."""
        extra = [f"range {self.range_text}"] if self.range_text else []
        extra += [f"in {self.unit}"] if self.unit else []
        return self.help + (f" ({'; '.join(extra)})" if extra else "")

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    @property
    def step(self) -> float | int:
        """A step of the default's order of magnitude (1e-4 steps for a learning rate of 3e-4)."""
        if self.kind == "int":
            return 1
        magnitude = abs(float(self.default or 0.0))
        return 10.0 ** math.floor(math.log10(magnitude)) if magnitude else 0.01


def setting_fields(help_rows: Sequence[Mapping[str, Any]]) -> list[SettingField]:
    """Form fields from :func:`fairaudit.mitigation.config_help` rows (or a dataset's
    :func:`fairaudit.data.registry.option_help` rows), from each setting's declaration: a drop-down for a
    setting with choices, a number input bounded by its range, a checkbox for a bool, text otherwise."""
    out = []
    for row in help_rows:
        default, text = row["default"], str(row.get("help") or "")
        kind_name = row.get("type") or (type(default).__name__ if default is not None else "str")
        bounds = row.get("range") or {}
        choices = tuple(row.get("choices") or ())
        if row.get("optional") or default is None:
            kind, choices = "optional", ()
        elif not isinstance(default, (bool, int, float, str)):
            kind, choices = "fixed", ()
        elif kind_name == "bool":
            kind, choices = "bool", ()
        elif choices and default in choices:
            kind = "choice"
        elif kind_name in ("int", "float"):
            kind, choices = kind_name, ()
        else:
            kind, choices = "text", ()
        out.append(SettingField(row["name"], default, text, kind, choices, bounds.get("min"), bounds.get("max"),
                                row.get("unit"), bounds.get("text")))
    return out


def changed_settings(fields: Sequence[SettingField], values: Mapping[str, Any]) -> dict[str, Any]:
    """The values that differ from the defaults (what the run records as its ``settings``)."""
    return {f.name: values[f.name] for f in fields if f.name in values and values[f.name] != f.default}


def cli_command(spec: Mapping[str, Any]) -> str:
    """The ``python -m fairaudit mitigate`` command that queues the same job (a :class:`JobSpec` dict)."""
    parts = ["python", "-m", "fairaudit", "mitigate", spec["method"], "--dataset", spec["dataset"]]
    if spec.get("model", "demo") != "demo":
        parts += ["--model", spec["model"]]
    for flag, key in (("--arch", "arch"), ("--data-dir", "data_dir"), ("--target", "target")):
        if spec.get(key):
            parts += [flag, str(spec[key])]
    if spec.get("sensitive"):
        parts += ["--sensitive", ",".join(spec["sensitive"])]
    for key, value in (spec.get("data_options") or {}).items():
        parts += ["--data-opt", f"{key}={value}"]
    for key, value in (spec.get("settings") or {}).items():
        parts += ["--set", f"{key}={value}"]
    if spec.get("device", "auto") != "auto":
        parts += ["--device", spec["device"]]
    if spec.get("seed", 0):
        parts += ["--seed", str(spec["seed"])]
    parts += ["--bootstrap", str(spec.get("n_boot", 200)), "--detach"]
    return shlex.join(parts)


# ---------------------------------------------------------------------------- run details


def config_table(config: Mapping[str, Any], help_rows: Sequence[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """Setting, value used, default and help of a run's method configuration."""
    info = {row["name"]: row for row in help_rows}
    rows = []
    for name, value in config.items():
        default = info.get(name, {}).get("default")
        rows.append({"Setting": name, "Value": _text(value), "Default": "" if name not in info else _text(default),
                     "Changed": name in info and value != default, "Help": info.get(name, {}).get("help", "")})
    return pd.DataFrame(rows, columns=["Setting", "Value", "Default", "Changed", "Help"])


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def timings_table(run: Mapping[str, Any]) -> pd.DataFrame:
    """Seconds spent loading, auditing before, running the method, auditing after, in total, and waiting."""
    labels = {"load": "Loading data and model", "before_audit": "Audit before", "method": "Method",
              "after_audit": "Audit after", "total": "Total"}
    timings = run.get("timings") or {}
    rows = [{"Phase": labels.get(k, k), "Seconds": float(v)} for k, v in timings.items() if v is not None]
    if run.get("started") and run.get("created"):
        rows.append({"Phase": "Waiting in the queue", "Seconds": max(0.0, run["started"] - run["created"])})
    return pd.DataFrame(rows, columns=["Phase", "Seconds"])


def artifact_table(artifacts: Mapping[str, str] | None) -> pd.DataFrame:
    """Name, path and size of a run's artefacts (a missing file shows size ``None``)."""
    rows = []
    for name, path in (artifacts or {}).items():
        if path is None:
            continue
        file = Path(path)
        size = file.stat().st_size / 1024 if file.is_file() else None
        rows.append({"Artefact": name, "Path": str(file), "Size (KB)": size})
    return pd.DataFrame(rows, columns=["Artefact", "Path", "Size (KB)"])


def stats_rows(stats: Mapping[str, Any] | None, prefix: str = "") -> list[tuple[str, str]]:
    """A method's statistics flattened to ``(name, value)`` pairs (nested dicts become ``a.b``)."""
    out: list[tuple[str, str]] = []
    for key, value in (stats or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(stats_rows(value, name + "."))
        elif isinstance(value, float):
            out.append((name, f"{value:.4g}"))
        else:
            out.append((name, str(value)))
    return out


# ---------------------------------------------------------------------------- FAAP samples


AMPLIFY = 10.0
"""FAAP perturbations are at most ε = 0.05 per pixel: shown ×10 around mid-grey so they are visible."""


@dataclass
class PerturbationSample:
    """One image of the FAAP grid: the input, its perturbation (amplified around 0.5) and the perturbed input."""

    index: int
    group: str
    original: np.ndarray
    perturbation: np.ndarray
    perturbed: np.ndarray
    linf: float


def faap_samples(run: Mapping[str, Any], per_group: int = 2, amplify: float = AMPLIFY,
                 seed: int = 0) -> list[PerturbationSample]:
    """Test images of each sensitive group passed through the run's trained generator.

    Loads the ``generator`` artefact with :func:`fairaudit.mitigation.faap.load_generator`;
    the perturbed image is ``clip(x + G(x), 0, 1)`` as the mitigated model sees it,
    the perturbation is shown as ``clip(0.5 + amplify·(x̂ − x), 0, 1)``.
    """
    import torch

    from fairaudit.data import load_dataset
    from fairaudit.mitigation import faap
    from fairaudit.views.gallery import dataset_samples, to_image

    path = (run.get("artifacts") or {}).get("generator")
    if not path or not Path(path).is_file():
        raise FairauditError("this run has no saved FAAP generator to show samples with.")
    loader = getattr(faap, "load_generator", None)
    if loader is None:
        raise FairauditError("this version of fairaudit cannot load saved FAAP generators.")
    spec = run.get("spec") or {}
    dataset = load_dataset(spec["dataset"], "test", spec.get("target"), spec.get("sensitive"), spec.get("data_dir"),
                           **(spec.get("data_options") or {}))
    if dataset.kind != "image":
        raise FairauditError(f"dataset '{dataset.name}' holds no images to perturb.")
    generator = loader(path, channels=dataset.input_shape[0])
    picked = dataset_samples(dataset, dataset.sensitive, per_group, seed)
    samples = []
    with torch.no_grad():
        for group, rows in picked.items():
            x = torch.stack([torch.as_tensor(dataset.load_input(int(i))).float() for i in rows])
            perturbed = (x + generator(x)).clamp(0, 1)
            delta = perturbed - x
            shown = (0.5 + amplify * delta).clamp(0, 1)
            for k, i in enumerate(rows):
                samples.append(PerturbationSample(int(i), group, to_image(x[k]), to_image(shown[k]),
                                                  to_image(perturbed[k]), float(delta[k].abs().max())))
    return samples
