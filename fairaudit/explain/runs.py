"""Explanations of a finished mitigation run: heat maps before and after, and the attribution-bias table.

:func:`explain_run` pairs the two models a run compares
(:func:`fairaudit.jobs.artifacts.load_run_models`):

* ``perturbation`` runs (FAAP): the deployed model on the clean image versus
  the same frozen model on the perturbed image ``clip(x + G(x), 0, 1)``;
* ``retrained`` runs: the deployed model versus the mitigated model, both on
  the clean image;
* ``postprocessing`` runs: the model is unchanged, so only the *before* maps
  are computed and the result says so.

Every map explains the image's true class, so *before* and *after* answer the
same question ("what makes this a smile?") even where the predictions differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from fairaudit.errors import FairauditError
from fairaudit.explain.attribution import EXPLAINERS, make_explainer, normalise_maps
from fairaudit.explain.bias import attribute_regions, attribution_bias, dataset_masks, supplied_masks
from fairaudit.explain.selection import RULES, paired_predictions, select_samples
from fairaudit.progress import Progress, no_progress

PERTURBATION_AMPLIFY = 10.0  # the perturbation is shown ×10 around mid-grey, as on the Run page
HEAT_SCALE = "Jet"


def _colour_table(scale: str = HEAT_SCALE, levels: int = 256) -> np.ndarray:
    """``(levels, 3)`` RGB in ``[0, 1]`` sampled from a plotly colour scale."""
    from plotly.colors import sample_colorscale, unlabel_rgb

    colours = sample_colorscale(scale, list(np.linspace(0, 1, levels)))
    return np.array([unlabel_rgb(c) for c in colours], np.float64) / 255.0


def overlay(images: np.ndarray, maps: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """Heat maps blended onto images: ``(N, C, H, W)`` and ``(N, H, W)`` → ``(N, H, W, 3)`` uint8.

    Each map is scaled by its own maximum of the positive part, so the
    pattern of each model shows whatever its overall magnitude.
    """
    if not 0.0 <= opacity <= 1.0:
        raise FairauditError(f"opacity must lie in [0, 1], got {opacity}.")
    rgb = _as_rgb(images)
    levels = (normalise_maps(maps).numpy() * 255).round().astype(np.int64)
    heat = _colour_table()[levels]
    return (255 * ((1 - opacity) * rgb + opacity * heat)).round().clip(0, 255).astype(np.uint8)


def _as_rgb(images: np.ndarray) -> np.ndarray:
    array = np.asarray(images, np.float64).clip(0, 1)
    if array.shape[1] == 1:
        array = np.repeat(array, 3, 1)
    return array[:, :3].transpose(0, 2, 3, 1)


@dataclass
class ExplanationGrid:
    """Before/after attribution maps of a few test images of a run, ready to plot.

    Arrays are numpy, row ``k`` for test sample ``indices[k]``: ``images``
    ``(N, C, H, W)`` in ``[0, 1]``; ``before`` and ``after`` ``(N, H, W)`` raw
    attributions (``after`` is ``None`` for post-processing runs);
    ``perturbed`` the FAAP input ``(N, C, H, W)`` (``None`` for other runs).
    """

    run_id: str
    kind: str
    method: str
    selection: str
    group: str | None
    indices: np.ndarray
    groups: list[str]
    labels: np.ndarray
    pred_before: np.ndarray
    pred_after: np.ndarray
    class_names: list[str]
    images: np.ndarray
    before: np.ndarray
    after: np.ndarray | None = None
    perturbed: np.ndarray | None = None
    attribution_bias: pd.DataFrame | None = None
    note: str = ""
    settings: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def columns(self) -> list[str]:
        names = ["Original", f"{EXPLAINERS[self.method].label} before"]
        if self.after is not None:
            names.append(f"{EXPLAINERS[self.method].label} after")
        if self.perturbed is not None:
            names.append(f"Perturbation ×{PERTURBATION_AMPLIFY:g}")
        return names

    def row_title(self, k: int) -> str:
        names = self.class_names
        return (f"#{int(self.indices[k])} · {self.groups[k]} · true {names[int(self.labels[k])]} · "
                f"before {names[int(self.pred_before[k])]} → after {names[int(self.pred_after[k])]}")

    def panels(self, opacity: float = 0.5) -> list[list[np.ndarray]]:
        """The images of the grid, one list per row (``(H, W, 3)`` uint8 each), in :attr:`columns` order."""
        if len(self) == 0:
            return []
        original = (255 * _as_rgb(self.images)).round().astype(np.uint8)
        columns = [original, overlay(self.images, self.before, opacity)]
        if self.after is not None:
            shown = self.perturbed if self.perturbed is not None else self.images
            columns.append(overlay(shown, self.after, opacity))
        if self.perturbed is not None:
            delta = 0.5 + PERTURBATION_AMPLIFY * (self.perturbed - self.images)
            columns.append((255 * _as_rgb(delta)).round().astype(np.uint8))
        return [[c[k] for c in columns] for k in range(len(self))]

    def figure(self, opacity: float = 0.5):
        """The grid as a plotly figure: one row per image, columns as :attr:`columns`."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        rows = self.panels(opacity)
        cols = len(self.columns)
        if not rows:
            fig = go.Figure()
            fig.add_annotation(text=self.note or "No images to show.", showarrow=False, x=0.5, y=0.5,
                               xref="paper", yref="paper")
            fig.update_xaxes(visible=False)
            fig.update_yaxes(visible=False)
            return fig.update_layout(height=200, margin=dict(l=10, r=10, t=30, b=10))
        titles = [f"{self.row_title(r)}" if c == 0 else "" for r in range(len(rows)) for c in range(cols)]
        fig = make_subplots(rows=len(rows), cols=cols, subplot_titles=titles, horizontal_spacing=0.01,
                            vertical_spacing=min(0.06, 0.3 / max(1, len(rows))))
        for r, panels in enumerate(rows, start=1):
            for c, image in enumerate(panels, start=1):
                fig.add_trace(go.Image(z=image, name=self.columns[c - 1],
                                       hovertemplate=f"{self.columns[c - 1]}<br>x %{{x}}, y %{{y}}<extra></extra>"),
                              row=r, col=c)
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        for annotation in fig.layout.annotations:
            annotation.update(x=0.0, xanchor="left", font=dict(size=12))
        header = " | ".join(self.columns)
        return fig.update_layout(height=60 + 210 * len(rows), width=None, margin=dict(l=10, r=10, t=60, b=10),
                                 title=dict(text=header, font=dict(size=14)))


def _load_images(dataset, indices: Sequence[int]) -> torch.Tensor:
    if len(indices) == 0:
        return torch.zeros(0, *dataset.input_shape)
    return torch.stack([torch.as_tensor(dataset.load_input(int(i))).float() for i in indices])


def _stage_maps(models, explainers: dict, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor | None]:
    """``before`` and ``after`` maps (and the perturbed input) for one batch, on the run's device."""
    x = x.to(models.device)
    target = target.to(models.device)
    out: dict[str, torch.Tensor | None] = {"before": explainers["before"].attribute(x, target), "after": None,
                                           "perturbed": None}
    if len(x) == 0:  # nothing selected: empty maps of the right shape
        if models.kind != "postprocessing":
            out["after"] = out["before"]
        if models.kind == "perturbation":
            out["perturbed"] = x
        return out
    if models.kind == "perturbation":
        with torch.no_grad():
            perturbed = models.perturb(x).float()
        out["perturbed"] = perturbed
        out["after"] = explainers["before"].attribute(perturbed, target)
    elif models.kind == "retrained":
        out["after"] = explainers["after"].attribute(x, target)
    return out


def _numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().float().cpu().numpy()


def explain_rows(models, explainers, dataset, pairs: pd.DataFrame, indices) -> tuple[torch.Tensor, dict, pd.DataFrame]:
    """The images of the test rows ``indices`` of a run, their before/after maps (labels as targets) and those
    rows of ``pairs``."""
    images = _load_images(dataset, indices)
    target = torch.tensor(pairs.loc[indices, "label"].to_numpy(np.int64))
    return images, _stage_maps(models, explainers, images, target), pairs.loc[indices]


def postprocessing_note(models) -> str:
    """Why a post-processing run's maps are the same before and after ("" for any other run)."""
    if models.kind != "postprocessing":
        return ""
    return (f"'{models.run['method']}' post-processes the decisions: the model is unchanged, so its "
            "attributions are the same before and after; only the predictions differ.")


def explain_run(run_id: str, *, method: str = "gradcam", selection: str = "wrong_to_right", group: str | None = None,
                n: int = 8, device="auto", seed: int = 0, layer: str | None = None, baseline: str = "black",
                n_steps: int = 32, internal_batch_size: int | None = None, bias_samples: int = 64,
                regions: Mapping[str, Sequence[str]] | None = None,
                masks: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None,
                progress: Progress | None = None) -> ExplanationGrid:
    """Attribution maps of ``n`` test images of run ``run_id``, before and after mitigation.

    Parameters
    ----------
    method:
        ``"gradcam"`` (:class:`~fairaudit.explain.attribution.GradCam`, on
        ``layer`` or the last convolutional block) or ``"ig"``
        (:class:`~fairaudit.explain.attribution.IntegratedGradientsExplainer`
        with ``baseline``, ``n_steps``, ``internal_batch_size``).
    selection, group, n, seed:
        Which images (:func:`~fairaudit.explain.selection.select_samples` on
        the run's saved before/after predictions).
    bias_samples:
        Images per group (a seeded random sample of the test split) on which
        the attribution-bias table is computed; 0 skips it. The table needs
        region masks: the dataset's ground truth (``synthetic-faces``), chosen
        by ``regions`` (``{"target": [...], "sensitive": [...]}``) or the
        built-in :data:`~fairaudit.explain.bias.ATTRIBUTE_REGIONS`, or
        ``masks``, a function ``sample index -> (target mask, sensitive mask)``
        of ``(H, W)`` booleans. Without masks it is ``None``.
    progress:
        Called as ``progress(fraction, message)`` (:class:`fairaudit.progress.Progress`) as the work
        advances.
    """
    EXPLAINERS[method]  # an unknown name: one sentence with the closest one
    if selection not in RULES:
        raise FairauditError(f"unknown selection rule '{selection}'; choose one of {', '.join(RULES)}.")
    report = progress or no_progress
    report(0.0, "loading the run's models")
    models, dataset, pairs = _image_run(run_id, device)
    indices = select_samples(pairs, selection, group, n, seed)

    options = dict(layer=layer, baseline=baseline, n_steps=n_steps, internal_batch_size=internal_batch_size)
    explainers = _explainers(models, method, options)

    report(0.1, "explaining the selected images")
    images, maps, rows = explain_rows(models, explainers, dataset, pairs, indices)

    note = postprocessing_note(models)
    if not note and len(indices) == 0:
        where = f" of group {group}" if group else ""
        note = f"No test image{where} is {RULES[selection]}."

    bias = None
    if bias_samples > 0:
        report(0.4, "measuring attribution bias")
        bias = _bias_table(models, explainers, dataset, pairs, method, bias_samples, seed, regions, masks)
    report(1.0, "done")
    settings = {"n": n, "seed": seed, "device": str(models.device), **options, "bias_samples": bias_samples}
    return ExplanationGrid(
        run_id=run_id, kind=models.kind, method=method, selection=selection, group=group,
        indices=np.asarray(indices, np.int64), groups=rows["group"].astype(str).tolist(),
        labels=rows["label"].to_numpy(np.int64), pred_before=rows["pred_before"].to_numpy(np.int64),
        pred_after=rows["pred_after"].to_numpy(np.int64), class_names=list(dataset.class_names),
        images=images.numpy(), before=_numpy(maps["before"]), after=_numpy(maps["after"]),
        perturbed=_numpy(maps["perturbed"]), attribution_bias=bias, note=note, settings=settings)


def explain_bias(run_id: str, *, method: str = "gradcam", per_group: int = 64, device="auto", seed: int = 0,
                 layer: str | None = None, baseline: str = "black", n_steps: int = 32,
                 internal_batch_size: int | None = None, regions: Mapping[str, Sequence[str]] | None = None,
                 masks: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None) -> pd.DataFrame | None:
    """Only the attribution-bias table of :func:`explain_run` (same arguments; ``per_group`` images per group).

    ``None`` when the dataset has no region masks for its target and
    sensitive attributes and no ``masks`` are given. The region names used
    are in ``table.attrs["regions"]``.
    """
    EXPLAINERS[method]  # an unknown name: one sentence with the closest one
    if per_group < 1:
        raise FairauditError(f"per_group must be at least 1, got {per_group}.")
    models, dataset, pairs = _image_run(run_id, device)
    options = dict(layer=layer, baseline=baseline, n_steps=n_steps, internal_batch_size=internal_batch_size)
    return _bias_table(models, _explainers(models, method, options), dataset, pairs, method, per_group, seed,
                       regions, masks)


def _image_run(run_id: str, device):
    """The run's models, its test split (images only) and its before/after predictions paired by sample."""
    from fairaudit.jobs.artifacts import load_run_models

    models = load_run_models(run_id, device=device)
    dataset = models.dataset("test")
    if dataset.kind != "image" or len(dataset.input_shape) != 3:
        raise FairauditError(f"run '{run_id}' is on the {dataset.kind} dataset '{dataset.name}'; heat maps need "
                             "images.")
    return models, dataset, paired_predictions(models.predictions("before"), models.predictions("after"))


def _explainers(models, method: str, options: dict) -> dict:
    explainers = {"before": make_explainer(models.before, method, **options)}
    if models.kind == "retrained":
        explainers["after"] = make_explainer(models.after, method, **options)
    return explainers


def _bias_table(models, explainers, dataset, pairs: pd.DataFrame, method: str, per_group: int, seed: int,
                regions, masks) -> pd.DataFrame | None:
    if masks is None:
        names = attribute_regions(dataset, regions=regions)
        if names is None:
            return None
    rng = np.random.default_rng(seed)
    chosen = []
    for _, frame in pairs.groupby("group", sort=True):
        index = frame.index.to_numpy(np.int64)
        chosen.append(np.sort(rng.choice(index, size=min(per_group, len(index)), replace=False)))
    indices = np.concatenate(chosen)
    if masks is not None:
        target_mask, sensitive_mask = supplied_masks(masks, indices, dataset.input_shape[1:])
    else:
        target_mask, sensitive_mask = dataset_masks(dataset, indices, *names)
    images = _load_images(dataset, indices)
    target = torch.tensor(pairs.loc[indices, "label"].to_numpy(np.int64))
    maps = _stage_maps(models, explainers, images, target)
    stages = {"before": _numpy(maps["before"])}
    if maps["after"] is not None:
        stages["after"] = _numpy(maps["after"])
    table = attribution_bias(stages, pairs.loc[indices, "group"].astype(str).tolist(), target_mask, sensitive_mask,
                             method)
    if masks is None:
        table.attrs["regions"] = {"target": list(names[0]), "sensitive": list(names[1])}
    return table
