"""The guided demo: which results make up the story of one audit setup, and how to compute each of them.

The story tells an audit end to end in eight steps (:data:`STEPS`): the training data, the deployed model's
audit, what the model looks at, its latent space, one mitigation run, the before/after card, the same faces
explained after, and the trade-off against the other methods of a matching benchmark. This module holds the
parts that need no Streamlit, so they can be tested and exported on their own:

* :func:`composition` – group sizes and label balance per split (the Compare page's data-composition check);
* :func:`explain_model` – Grad-CAM maps of a few faces per group of the deployed model, and its
  attribution-bias table (the Explain page's engine, run on the model before any mitigation);
* :func:`latent_map` – a t-SNE map of the deployed model's latents and the linear leakage probe
  (the Embeddings page's engine);
* :func:`story_run`, :func:`launch_spec` – the mitigation run that belongs to the setup, and the job that
  launches one;
* :func:`explain_after` – the same faces explained by the run's *before* and *after* models;
* :func:`matching_benchmark`, :func:`tradeoff_figure`, :func:`effect_sentences` – the shipped benchmark
  that matches the setup, the trade-off plot with the run added, and what that benchmark measured;
* :func:`story_document` – the story as one self-contained HTML file (:mod:`fairaudit.report`).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fairaudit.errors import FairauditError


@dataclass(frozen=True)
class Step:
    """One step of the story: its key (the ``step`` URL parameter), its title and what it needs."""

    key: str
    title: str
    needs: str  # "data", "model", "images" (an image model), "run" (a finished mitigation run)


STEPS: tuple[Step, ...] = (
    Step("data", "The training data", "data"),
    Step("audit", "The deployed model's audit", "model"),
    Step("looks", "What the model looks at", "images"),
    Step("latent", "What the model's latent space knows", "model"),
    Step("mitigate", "One mitigation", "model"),
    Step("after", "Before and after", "run"),
    Step("looks-after", "The same faces, explained after", "images-run"),
    Step("tradeoff", "The trade-off against other methods", "run"),
)
STEP_KEYS: tuple[str, ...] = tuple(s.key for s in STEPS)
STEP_TITLES: dict[str, str] = {s.key: f"{i}. {s.title}" for i, s in enumerate(STEPS, start=1)}

DEFAULT_METHOD = "faap"
FACES_PER_GROUP = 2
BIAS_PER_GROUP = 16
LATENT_SAMPLE = 400


def skipped_steps(kind: str, has_dataset: bool = True) -> dict[str, str]:
    """The steps that do not apply to a setup, with the reason in one sentence (``kind``: image or tabular)."""
    out: dict[str, str] = {}
    if not has_dataset:
        why = ("an audit of stored predictions has no model to explain, probe or mitigate, and no training data "
               "to describe")
        return {key: why for key in STEP_KEYS if key != "audit"}
    if kind != "image":
        why = ("heat maps explain image pixels; this is a tabular dataset, so the Grad-CAM steps are skipped "
               "(the audit, the latent space and the mitigation still apply)")
        out["looks"] = out["looks-after"] = why
    return out


# ---------------------------------------------------------------------------- step 1: the data


def composition(dataset: str, target: str | None, sensitive: Sequence[str], data_dir: str | None,
                options: Mapping[str, Any]):
    """Group counts and label balance per split (:func:`fairaudit.compare.checks.data_composition`)."""
    from fairaudit.compare.checks import data_composition

    return data_composition(dataset, target, list(sensitive) or None, data_dir, **dict(options))


def composition_sentence(table: pd.DataFrame, split: str = "train") -> str:
    """``In the train split, Male=Male is 50 % of the samples with a base rate of 0.90, …``, from the table."""
    rows = table[table["split"] == split] if split in set(table["split"]) else table
    if rows.empty:
        return ""
    where = rows["split"].iloc[0]
    parts = [f"{r.group} is {100 * r.share:.0f} % of the samples with {r.base_rate:.0%} positive labels"
             for r in rows.itertuples()]
    return f"In the {where} split, " + "; ".join(parts) + "."


# ---------------------------------------------------------------------------- step 3: what the model looks at


def faces_per_group(groups: Sequence[str], indices: Sequence[int], per_group: int = FACES_PER_GROUP,
                    seed: int = 0) -> np.ndarray:
    """``per_group`` sample indices of each group (groups in sorted order, a seeded draw within each), so the
    same groups and the same split give the same faces before and after mitigation."""
    groups = np.asarray(groups, dtype=object)
    indices = np.asarray(indices, dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = []
    for group in sorted(set(groups.tolist())):
        pool = np.sort(indices[groups == group])
        chosen.append(np.sort(rng.choice(pool, size=min(per_group, len(pool)), replace=False)))
    return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)


def explain_model(model, dataset, predictions, *, per_group: int = FACES_PER_GROUP, bias_per_group: int =
                  BIAS_PER_GROUP, method: str = "gradcam", seed: int = 0, threshold: float = 0.5):
    """Heat maps of ``per_group`` faces of each group for the deployed ``model`` (an
    :class:`~fairaudit.explain.ExplanationGrid` with only *before* maps) and, when the dataset has region masks,
    the attribution-bias table on ``bias_per_group`` faces per group (else ``None``).

    Every map explains the image's true class, as on the Explain page."""
    import torch

    from fairaudit.explain import ExplanationGrid, attribute_regions, attribution_bias, make_explainer
    from fairaudit.explain.bias import dataset_masks
    from fairaudit.explain.selection import group_labels

    if dataset.kind != "image" or len(dataset.input_shape) != 3:
        raise FairauditError(f"the {dataset.kind} dataset '{dataset.name}' has no images to explain.")
    groups = group_labels(predictions)
    rows = np.asarray(predictions.indices, np.int64)
    labels = np.asarray(predictions.labels, np.int64)
    predicted = np.asarray(predictions.predictions(threshold), np.int64)
    position = {int(i): k for k, i in enumerate(rows)}
    device = next(model.parameters()).device
    explainer = make_explainer(model, method)

    def maps_of(chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = torch.stack([torch.as_tensor(dataset.load_input(int(i))).float() for i in chosen])
        target = torch.tensor(labels[[position[int(i)] for i in chosen]])
        return images.numpy(), explainer.attribute(images.to(device), target.to(device)).detach().cpu().numpy()

    chosen = faces_per_group(groups, rows, per_group, seed)
    at = [position[int(i)] for i in chosen]
    images, before = maps_of(chosen)
    grid = ExplanationGrid(run_id="", kind="postprocessing", method=method, selection="random", group=None,
                           indices=chosen, groups=[str(groups[k]) for k in at], labels=labels[at],
                           pred_before=predicted[at], pred_after=predicted[at],
                           class_names=list(dataset.class_names), images=images, before=before,
                           settings={"per_group": per_group, "seed": seed})
    names = attribute_regions(dataset)
    if names is not None and bias_per_group > 0:
        sample = faces_per_group(groups, rows, bias_per_group, seed)
        _, sample_maps = maps_of(sample)
        target_mask, sensitive_mask = dataset_masks(dataset, sample, *names)
        table = attribution_bias({"before": sample_maps}, [str(groups[position[int(i)]]) for i in sample],
                                 target_mask, sensitive_mask, method)
        table.attrs["regions"] = {"target": list(names[0]), "sensitive": list(names[1])}
        grid.attribution_bias = table
    return grid


def grid_rows(grid) -> list[str]:
    """The caption of each face of a grid: ``#12 · Male=Female · true Smiling · predicted Not smiling``."""
    names = grid.class_names
    out = []
    for k in range(len(grid)):
        text = f"#{int(grid.indices[k])} · {grid.groups[k]} · true {names[int(grid.labels[k])]}"
        if grid.after is None:
            text += f" · predicted {names[int(grid.pred_before[k])]}"
        else:
            text += f" · before {names[int(grid.pred_before[k])]} → after {names[int(grid.pred_after[k])]}"
        out.append(text)
    return out


def bias_sentence(table: pd.DataFrame | None, stage: str = "before") -> str:
    """``On average 41 % of the positive attribution falls on the target region (which covers 12 % of the
    image) and 8 % on the sensitive-attribute region (covers 10 %).``, from the table's ``all`` row."""
    if table is None or table.empty:
        return ""
    rows = table[(table["group"] == "all") & (table["stage"] == stage)]
    if rows.empty or np.isnan(rows["target_region_share"].iloc[0]):
        return ""
    r = rows.iloc[0]
    return (f"On average {r.target_region_share:.0%} of the positive attribution falls on the target region "
            f"(which covers {r.target_region_area:.0%} of the image) and {r.sensitive_region_share:.0%} on the "
            f"sensitive-attribute region (which covers {r.sensitive_region_area:.0%}).")


# ---------------------------------------------------------------------------- step 4: the latent space


@dataclass
class LatentMap:
    """A 2-D t-SNE map of the deployed model's latents ``g(x)`` on a stratified sample, and the leakage probe."""

    coords: np.ndarray  # (N, 2)
    indices: np.ndarray
    groups: list[str]
    target: list[str]
    leakage: dict[str, dict]  # attribute -> LeakageProbe result
    settings: dict = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"x": self.coords[:, 0], "y": self.coords[:, 1], "sample": self.indices,
                             "sensitive group": self.groups, "target": self.target})

    def figure(self, height: int = 460) -> go.Figure:
        import plotly.express as px

        from fairaudit.views.palette import PALETTE

        fig = px.scatter(self.frame(), x="x", y="y", color="sensitive group", hover_data=["sample", "target"],
                         category_orders={"sensitive group": sorted(set(self.groups))}, height=height,
                         color_discrete_sequence=PALETTE, render_mode="webgl")
        fig.update_traces(marker={"size": 5, "opacity": 0.8})
        fig.update_xaxes(title=None, showticklabels=False)
        fig.update_yaxes(title=None, showticklabels=False)
        return fig.update_layout(title=f"t-SNE of the deployed model's latents g(x), {len(self.indices):,} test "
                                       "samples, coloured by sensitive group", legend={"itemsizing": "constant"},
                                 margin={"l": 10, "r": 10, "t": 60, "b": 10})

    def table(self) -> pd.DataFrame:
        rows = []
        for attr, p in self.leakage.items():
            rows.append({"Attribute": attr, "Probe accuracy": p["accuracy"], "Accuracy CI low": p["accuracy_ci"][0],
                         "Accuracy CI high": p["accuracy_ci"][1], "AUC": p["auc"], "Chance": p["chance"],
                         "n": p["n"]})
        return pd.DataFrame(rows)


def latent_map(model, dataset, *, n: int = LATENT_SAMPLE, seed: int = 0, perplexity: float = 30.0,
               folds: int = 5, n_boot: int = 100) -> LatentMap:
    """Latents of a stratified sample of ``n`` rows (:func:`fairaudit.embed.latents_of`), their t-SNE map
    (:func:`fairaudit.embed.project`) and the cross-validated leakage probe of every sensitive attribute
    (:func:`fairaudit.embed.probe_leakage`)."""
    from fairaudit.embed import latents_of, probe_leakage, project, sample_indices
    from fairaudit.explain.selection import group_labels

    rows = sample_indices(dataset, min(int(n), len(dataset)), seed)
    device = next(model.parameters()).device
    preds = latents_of(model, dataset, rows, device=device)
    latents = np.asarray(preds.latents, np.float32)
    coords = project(latents, "tsne", perplexity=min(perplexity, max(2.0, (len(latents) - 1) / 3)), seed=seed)
    leakage = probe_leakage(latents, preds.sensitive, list(preds.sensitive_names), folds=folds, n_boot=n_boot,
                            seed=seed)
    target = [dataset.class_names[int(c)] for c in preds.labels]
    return LatentMap(coords=coords, indices=np.asarray(preds.indices), groups=[str(g) for g in group_labels(preds)],
                     target=target, leakage=leakage, settings={"n": len(rows), "seed": seed, "perplexity": perplexity})


def leakage_sentence(result: LatentMap) -> str:
    """``A linear probe reads Male from the latents with accuracy 0.93 (chance 0.50).``"""
    parts = [f"{attr} with accuracy {p['accuracy']:.2f} (95 % CI {p['accuracy_ci'][0]:.2f}–{p['accuracy_ci'][1]:.2f};"
             f" chance {p['chance']:.2f})" for attr, p in result.leakage.items()]
    return "A linear probe on the latents reads " + "; ".join(parts) + "." if parts else ""


# ---------------------------------------------------------------------------- step 5: the mitigation run


def setup_identity(dataset: str, target: str | None, sensitive: Sequence[str], options: Mapping[str, Any],
                   model: str = "demo") -> dict[str, Any]:
    """What a run must share with the setup to belong to its story."""
    return {"dataset": dataset, "target": target, "sensitive": sorted(sensitive or ()), "model": model,
            "data_options": dict(options)}


def _spec_identity(spec: Mapping[str, Any]) -> dict[str, Any]:
    from fairaudit.data import get_spec

    try:
        defaults = get_spec(spec.get("dataset", "")).options
    except FairauditError:
        defaults = {}
    return {"dataset": spec.get("dataset"), "target": spec.get("target"), "sensitive": sorted(spec.get("sensitive")
            or ()), "model": spec.get("model", "demo"), "data_options": {**defaults, **(spec.get("data_options")
                                                                                     or {})}}


def run_matches(run: Mapping[str, Any], identity: Mapping[str, Any]) -> bool:
    """Whether ``run`` (a registry row with ``spec``) was launched on the setup ``identity``
    (:func:`setup_identity`); a run without target or sensitive attributes used the dataset's defaults."""
    from fairaudit.data import get_spec

    spec = dict(run.get("spec") or {})
    try:
        data = get_spec(identity["dataset"])
        spec.setdefault("target", None)
        spec["target"] = spec["target"] or data.default_target
        spec["sensitive"] = spec.get("sensitive") or list(data.default_sensitive)
        wanted = {**identity, "target": identity["target"] or data.default_target,
                  "sensitive": sorted(identity["sensitive"] or data.default_sensitive),
                  "data_options": {**data.options, **identity["data_options"]}}
    except FairauditError:
        wanted = dict(identity)
    return _spec_identity(spec) == wanted


def story_run(runs: Sequence[Mapping[str, Any]], identity: Mapping[str, Any], load=None,
              chosen: str | None = None) -> Mapping[str, Any] | None:
    """The run the story tells: ``chosen`` when it matches the setup, else the newest matching run.

    ``runs`` are newest first, as :func:`fairaudit.jobs.list_runs` gives them; ``load(run_id)`` reads a run's
    full record (with its ``spec``; default :func:`fairaudit.jobs.get_run`) and is called only until one
    matches."""
    if load is None:
        from fairaudit.jobs import get_run as load
    ids = [r["id"] for r in runs]
    order = ([chosen] if chosen in ids else []) + [i for i in ids if i != chosen]
    for run_id in order:
        run = load(run_id)
        if run_matches(run, identity):
            return run
    return None


def launch_spec(method: str, dataset: str, *, model: str = "demo", target: str | None = None,
                sensitive: Sequence[str] | None = None, data_options: Mapping[str, Any] | None = None,
                data_dir: str | None = None, arch: str | None = None, settings: Mapping[str, Any] | None = None,
                seed: int = 0, n_boot: int = 200, robustness_samples: int | None = None,
                split_samples: int = 2000, device: str = "auto"):
    """The :class:`~fairaudit.jobs.JobSpec` of the story's mitigation run, tagged as launched from the story."""
    from fairaudit.jobs import JobSpec

    return JobSpec(method=method, dataset=dataset, model=model, target=target, sensitive=list(sensitive or []) or None,
                   data_options=dict(data_options or {}), data_dir=data_dir, settings=dict(settings or {}),
                   device=device, seed=int(seed), arch=arch, n_boot=int(n_boot), tags={"story": True},
                   robustness_samples=robustness_samples, split_samples=int(split_samples))


# ---------------------------------------------------------------------------- step 7: the same faces after


def explain_after(run_id: str, *, per_group: int = FACES_PER_GROUP, method: str = "gradcam", seed: int = 0,
                  bias_per_group: int = BIAS_PER_GROUP, device="auto"):
    """The faces of :func:`explain_model` (same groups, same draw) explained by the run's deployed and mitigated
    models (:mod:`fairaudit.explain.runs`); the attribution-bias table has *before* and *after* rows."""
    from fairaudit.explain import ExplanationGrid, explain_bias
    from fairaudit.explain.runs import _explainers, _image_run, _numpy, explain_rows, postprocessing_note

    models, dataset, pairs = _image_run(run_id, device)
    chosen = faces_per_group(pairs["group"].astype(str).to_numpy(), pairs.index.to_numpy(), per_group, seed)
    explainers = _explainers(models, method, {})
    images, maps, rows = explain_rows(models, explainers, dataset, pairs, chosen)
    note = postprocessing_note(models)
    bias = explain_bias(run_id, method=method, per_group=bias_per_group, seed=seed,
                        device=device) if bias_per_group > 0 else None
    return ExplanationGrid(
        run_id=run_id, kind=models.kind, method=method, selection="random", group=None, indices=chosen,
        groups=rows["group"].astype(str).tolist(), labels=rows["label"].to_numpy(np.int64),
        pred_before=rows["pred_before"].to_numpy(np.int64), pred_after=rows["pred_after"].to_numpy(np.int64),
        class_names=list(dataset.class_names), images=images.numpy(), before=_numpy(maps["before"]),
        after=_numpy(maps["after"]), perturbed=_numpy(maps["perturbed"]), attribution_bias=bias, note=note,
        settings={"per_group": per_group, "seed": seed})


# ---------------------------------------------------------------------------- step 8: the trade-off


def matching_benchmark(identity: Mapping[str, Any], method: str | None = None,
                       directory: Path | None = None) -> tuple[str, dict] | None:
    """The shipped benchmark (``assets/benchmarks/*.json``) run on the setup: same dataset, model, target,
    sensitive attributes and data options other than split sizes; one that benchmarks ``method`` first.
    ``(file stem, benchmark result)`` or ``None``."""
    from fairaudit.benchmark.published import PUBLISHED_DIR
    from fairaudit.data import get_spec

    try:
        data = get_spec(identity["dataset"])
    except FairauditError:
        return None

    def essential(options: Mapping[str, Any]) -> dict:
        full = {**data.options, **dict(options or {})}
        return {k: v for k, v in full.items() if not k.startswith("n_")}

    want_target = identity.get("target") or data.default_target
    want_sensitive = sorted(identity.get("sensitive") or data.default_sensitive)
    found = []
    for path in sorted((directory or PUBLISHED_DIR).glob("*.json")):
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        setup = result.get("setup") or {}
        if (setup.get("dataset") != identity["dataset"] or setup.get("model", "demo") != identity.get("model", "demo")
                or (setup.get("target") or data.default_target) != want_target
                or sorted(setup.get("sensitive") or data.default_sensitive) != want_sensitive
                or essential(setup.get("data_options")) != essential(identity.get("data_options"))):
            continue
        found.append((path.stem, result))
    if not found:
        return None
    with_method = [f for f in found if method in ((f[1].get("setup") or {}).get("methods") or [])]
    return (with_method or found)[0]


def _audit_value(report: Mapping[str, Any] | None, name: str) -> float | None:
    from fairaudit.views.jobs_view import report_value

    value, _ = report_value(report or {}, name)
    return None if value is None or np.isnan(value) else float(value)


def tradeoff_figure(benchmark: Mapping[str, Any] | None, run: Mapping[str, Any] | None, fairness: str = "deo",
                    accuracy: str = "accuracy") -> go.Figure:
    """The benchmark's trade-off plot (:func:`fairaudit.compare.leaderboard.benchmark_figure`) with the story's
    run added: its deployed model (before) and its mitigated model (after), joined by an arrow."""
    from fairaudit.compare.leaderboard import benchmark_figure
    from fairaudit.compare.tradeoff import trade_off_layout

    fig = benchmark_figure(benchmark, fairness, accuracy) if benchmark else trade_off_layout(
        go.Figure(), fairness, accuracy, 480, "(higher is better)", "")
    if run and run.get("before") and run.get("after"):
        points = [(stage, _audit_value(run.get(stage), accuracy), _audit_value(run.get(stage), fairness))
                  for stage in ("before", "after")]
        points = [p for p in points if p[1] is not None and p[2] is not None]
        if points:
            fig.add_trace(go.Scatter(
                x=[p[1] for p in points], y=[p[2] for p in points], mode="lines+markers+text",
                name=f"this run ({run['method']} {run['id']})", text=[f"{p[0]}" for p in points],
                textposition="bottom center", line={"dash": "dot", "color": "#dc2626"},
                marker={"symbol": "diamond", "size": 14, "color": "#dc2626"},
                hovertext=[f"<b>run {run['id']} · {p[0]}</b><br>{accuracy} {p[1]:.3f}<br>{fairness} {p[2]:.3f}"
                           for p in points], hoverinfo="text"))
    title = "Trade-off: this run" + (" and the benchmark's methods" if benchmark else "")
    return fig.update_layout(title=title)


def effect_sentences(method: str, benchmark_stem: str | None = None) -> list[str]:
    """What the shipped benchmarks measured for ``method`` (:func:`fairaudit.benchmark.published.published_effects`),
    those of ``benchmark_stem`` when it has any; empty when nothing was measured."""
    from fairaudit.benchmark.published import published_effects

    effects = published_effects(method)
    if benchmark_stem:
        own = [e for e in effects if Path(e.command.split("--json", 1)[-1].split()[0]).stem == benchmark_stem
               ] if effects else []
        effects = own or effects
    return [e.sentence() for e in effects]


# ---------------------------------------------------------------------------- the story as one HTML file


@dataclass
class StoryResults:
    """What the story has computed so far; a step whose result is ``None`` is left out of the export with a
    note."""

    title: str
    composition: Any = None  # CheckResult
    audit: Any = None  # AuditReport
    tolerances: dict = field(default_factory=dict)
    looks: Any = None  # ExplanationGrid
    latent: LatentMap | None = None
    run: Mapping[str, Any] | None = None
    looks_after: Any = None  # ExplanationGrid
    benchmark: tuple[str, dict] | None = None
    skipped: dict[str, str] = field(default_factory=dict)


def _grid_html(grid) -> str:
    from fairaudit.report import sections as S

    rows = grid.panels()
    images = [panel for row in rows for panel in row]
    captions = [f"{title} · {column}" for title, row in zip(grid_rows(grid), rows) for column in grid.columns]
    return S.image_grid_html(images, captions, per_row=len(grid.columns))


def story_sections(story: StoryResults) -> list:
    """The story's steps as report sections (:class:`fairaudit.report.sections.Section`)."""
    from fairaudit.report import sections as S
    from fairaudit.views.jobs_view import comparison_table, comparison_text
    from fairaudit.views.tables import disparity_checks

    out = []
    for step in STEPS:
        section = S.Section(step.key, STEP_TITLES[step.key])
        out.append(section)
        if step.key in story.skipped:
            section.add_note(story.skipped[step.key] + ".")
            continue
        if step.key == "data" and story.composition is not None:
            from fairaudit.compare.checks import composition_figure

            section.blocks += [S.paragraph(composition_sentence(story.composition.table)),
                               composition_figure(story.composition.table),
                               S.table_html(story.composition.summary)]
            section.data["composition"] = S.records(story.composition.table)
            for warning in story.composition.warnings:
                section.blocks.append(f'<p class="flag">{S.esc(warning)}</p>')
        elif step.key == "audit" and story.audit is not None:
            checks = disparity_checks(story.audit.disparities, story.tolerances, story.audit.undefined)
            frame = story.audit.disparity_frame().set_index("name")
            table = pd.DataFrame([{"Disparity": c.label, "Value": c.value, "95 % CI low": frame.loc[c.name, "ci_low"],
                                   "95 % CI high": frame.loc[c.name, "ci_high"], "Verdict": c.verdict}
                                  for c in checks])
            failing = [c.label for c in checks if c.passes is False]
            section.blocks += [S.paragraph(f"Accuracy {story.audit.overall['accuracy']:.3f} on "
                                           f"{int(story.audit.overall['n']):,} samples. " +
                                           ("Outside tolerance: " + ", ".join(failing) + "." if failing else
                                            "Every disparity is within tolerance.")), S.table_html(table)]
            section.data["disparities"] = S.records(table)
        elif step.key == "looks" and story.looks is not None:
            section.blocks.append(_grid_html(story.looks))
            if story.looks.attribution_bias is not None:
                section.blocks += [S.paragraph(bias_sentence(story.looks.attribution_bias)),
                                   S.table_html(story.looks.attribution_bias)]
                section.data["attribution_bias"] = S.records(story.looks.attribution_bias)
            section.data["faces"] = [int(i) for i in story.looks.indices]
        elif step.key == "latent" and story.latent is not None:
            section.blocks += [S.paragraph(leakage_sentence(story.latent)), story.latent.figure(),
                               S.table_html(story.latent.table())]
            section.data["leakage"] = S.records(story.latent.table())
        elif step.key == "mitigate" and story.run is not None:
            run = story.run
            section.blocks.append(S.paragraph(f"Run {run['id']}: {run['method']} on {run['dataset']}, "
                                              f"status {run['status']}."))
            section.data["run"] = run["id"]
        elif step.key == "after" and story.run is not None and story.run.get("after"):
            table = comparison_text(comparison_table(story.run["before"], story.run["after"]))
            section.blocks.append(S.table_html(table))
            section.data["comparison"] = S.records(table)
        elif step.key == "looks-after" and story.looks_after is not None:
            if story.looks_after.note:
                section.add_note(story.looks_after.note)
            section.blocks.append(_grid_html(story.looks_after))
            if story.looks_after.attribution_bias is not None:
                section.blocks.append(S.table_html(story.looks_after.attribution_bias))
                section.data["attribution_bias"] = S.records(story.looks_after.attribution_bias)
            section.data["faces"] = [int(i) for i in story.looks_after.indices]
        elif step.key == "tradeoff" and story.run is not None and story.run.get("after"):
            stem, result = story.benchmark or (None, None)
            section.blocks.append(tradeoff_figure(result, story.run))
            if stem:
                section.blocks.append(S.paragraph(f"Benchmark: {stem}."))
                sentences = effect_sentences(story.run["method"], stem)
                if sentences:
                    section.blocks.append("<ul>" + "".join(f"<li>{S.esc(s)}</li>" for s in sentences) + "</ul>")
            else:
                section.add_note("No shipped benchmark matches this setup, so only this run is plotted.")
            section.data["benchmark"] = stem
        if not section.blocks:
            section.add_note("Not computed yet when the story was exported.")
    return out


def story_document(story: StoryResults):
    """The story as a :class:`fairaudit.report.html.AuditReportDocument`: ``.to_html()`` is one self-contained
    file (plotly.js inline once, images as data URIs, nothing loaded from the network)."""
    from fairaudit.report.html import AuditReportDocument, ReportOptions

    run_ids = [story.run["id"]] if story.run else []

    class StoryDocument(AuditReportDocument):
        @property
        def title(self) -> str:
            return f"fairaudit guided demo · {story.title}"

    generated = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return StoryDocument(run_ids, story_sections(story), ReportOptions(explain=False, embed=False), generated)
