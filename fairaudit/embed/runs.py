"""Latent-space views of a finished mitigation run: before/after projections and the leakage probe.

Everything is computed on a stratified sample of the run's test split and
cached as files in the run's folder (``$FAIRAUDIT_HOME/runs/<run_id>/``):

* ``embeddings/latents-<key>.npz`` – the sample's latents and predictions,
  keyed by sample size, seed and sensitive attributes;
* ``embeddings/projection-<key>.npz`` – 2-D coordinates, keyed by the latents'
  key plus method, its parameter and the axes mode;
* ``leakage.json`` – the leakage probe (:func:`run_leakage`), read by
  :func:`cached_leakage` for run comparisons.

*After* latents are the mitigated model's ``g`` on clean input, or for FAAP the
frozen deployed ``g`` on the perturbed input ``clip(x + G(x), 0, 1)``. A
post-processing run (group thresholds) changes decisions, not latents: its
after map repeats the before map, coloured by the after decisions.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from fairaudit.compare.table import undefined_text
from fairaudit.embed.latents import DEFAULT_SAMPLE, MAX_SAMPLE, latents_of, sample_indices
from fairaudit.embed.leakage import probe_leakage
from fairaudit.embed.projection import PROJECTIONS, project_pair
from fairaudit.errors import FairauditError
from fairaudit.io_safety import atomic_write
from fairaudit.metrics.groups import describe
from fairaudit.progress import Progress, counting, no_progress, span
from fairaudit.views.palette import PALETTE

LEAKAGE_FILE = "leakage.json"
LEAKAGE_SAMPLE = 5000
COLORS = ("sensitive", "target", "prediction", "correct")
STAGES = ("before", "after")
BEHAVIOUR = ("spd", "deo")

def run_folder(run_id: str) -> Path:
    """The folder of run ``run_id`` (where its artefacts and these caches live)."""
    from fairaudit.jobs.execute import run_dir

    return run_dir(run_id)


def _key(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _write_npz(path: Path, **arrays) -> None:
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays))


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError):  # a damaged cache file is recomputed, not fatal
        return None


def _done_run(run_id: str) -> dict:
    from fairaudit import jobs

    run = jobs.get_run(run_id)
    if run["status"] != jobs.DONE:
        raise FairauditError(f"run '{run_id}' is {run['status']}; its latent space is available when it is done.")
    return run


# ---------------------------------------------------------------------------- latents of a run's sample

def _predicted(probs: np.ndarray) -> np.ndarray:
    return probs.argmax(1) if probs.shape[1] != 2 else (probs[:, 1] >= 0.5).astype(np.int64)


def _latents_key(run: dict, n: int, seed: int) -> str:
    spec = run["spec"]
    return _key({"n": int(n), "seed": int(seed), "sensitive": spec.get("sensitive"), "target": spec.get("target")})


def sample_latents(run_id: str, n: int = DEFAULT_SAMPLE, *, seed: int = 0, device="auto",
                   progress: Progress = no_progress) -> dict[str, Any]:
    """Latents and predictions of a stratified test sample of a finished run, before and after (cached).

    Returns ``{"key", "kind", "indices", "labels", "sensitive", "sensitive_names",
    "value_names", "class_names", "before", "after", "pred_before",
    "pred_after", "same_space"}`` where ``before``/``after`` are ``N × D`` latents.
    """
    run = _done_run(run_id)
    key = _latents_key(run, n, seed)
    path = run_folder(run_id) / "embeddings" / f"latents-{key}.npz"
    cached = _read_npz(path)
    if cached is None:
        cached = _compute_latents(run_id, n, seed, device, progress)
        _write_npz(path, **{k: v for k, v in cached.items() if isinstance(v, np.ndarray)},
                   info=np.array(json.dumps({k: v for k, v in cached.items() if not isinstance(v, np.ndarray)})))
    else:
        info = json.loads(str(cached.pop("info")))
        cached.update(info)
    cached["key"] = key
    return cached


def _compute_latents(run_id: str, n: int, seed: int, device, progress: Progress) -> dict[str, Any]:
    from fairaudit.jobs.artifacts import load_run_models

    progress(0.0, "Loading the run's models")
    models = load_run_models(run_id, device=device)
    dataset = models.dataset("test")
    rows = sample_indices(dataset, min(int(n), len(dataset)), seed)
    progress(0.05, "Latents before mitigation")
    before = latents_of(models.before, dataset, rows, device=models.device,
                        progress=counting(progress, "Latents before mitigation", 0.05, 0.5))
    if models.after is not None:
        progress(0.5, "Latents after mitigation")
        after = latents_of(models.after, dataset, rows, device=models.device,
                           progress=counting(progress, "Latents after mitigation", 0.5, 1.0))
        after_latents, pred_after = after.latents, _predicted(after.probs)
    else:  # post-processing: same latents, the decisions of the saved after predictions
        saved = models.predictions("after")
        position = np.full(int(saved.indices.max()) + 1, -1, dtype=np.int64)
        position[saved.indices] = np.arange(len(saved.indices))
        after_latents, pred_after = before.latents, saved.predictions()[position[before.indices]]
    return {"indices": before.indices, "labels": before.labels, "sensitive": before.sensitive,
            "before": before.latents.astype(np.float32), "after": after_latents.astype(np.float32),
            "pred_before": _predicted(before.probs), "pred_after": np.asarray(pred_after, dtype=np.int64),
            "kind": models.kind, "sensitive_names": before.sensitive_names, "value_names": before.value_names,
            "class_names": before.class_names, "same_space": models.kind != "retrained"}


# ---------------------------------------------------------------------------- leakage

def _behaviour(run: dict) -> dict[str, dict[str, float | None]]:
    out = {}
    for stage in STAGES:
        report = run.get(stage) or {}
        out[stage] = {**{k: (report.get("disparities") or {}).get(k) for k in BEHAVIOUR},
                      "accuracy": (report.get("overall") or {}).get("accuracy"),
                      "undefined": {k: why for k, why in (report.get("undefined") or {}).items() if k in BEHAVIOUR}}
    return out


def run_leakage(run_id: str, *, n: int = LEAKAGE_SAMPLE, folds: int = 5, n_boot: int = 200, seed: int = 0,
                device="auto", refresh: bool = False, progress: Progress = no_progress) -> dict:
    """The leakage probe of a finished run, before and after, cached as ``leakage.json`` in its folder.

    Probes each sensitive attribute from the latents of a stratified test
    sample of ``n`` (all of a smaller split) with
    :class:`~fairaudit.embed.leakage.LeakageProbe`. The result holds
    ``attributes`` (``{attr: {"before": probe, "after": probe}}``),
    ``behaviour`` (spd, deo and accuracy of the run's before/after audits) and
    headline numbers for tables: ``leakage`` / ``leakage_before`` (probe
    accuracy after / before), ``leakage_auc`` / ``leakage_auc_before`` and
    ``chance``, all for ``leakage_attribute``, the attribute whose before AUC is
    highest. A cached result with the same settings is returned unless
    ``refresh``.
    """
    run = _done_run(run_id)
    settings = {"n": int(n), "folds": int(folds), "n_boot": int(n_boot), "seed": int(seed),
                "sensitive": run["spec"].get("sensitive"), "target": run["spec"].get("target")}
    cached = cached_leakage(run_id)
    if cached is not None and not refresh and cached.get("settings") == settings:
        return cached
    data = sample_latents(run_id, n, seed=seed, device=device, progress=span(progress, 0.0, 0.8))
    progress(0.8, "Probing the latents for the sensitive attributes")
    probe = {"folds": folds, "n_boot": n_boot, "seed": seed}
    stages = {stage: probe_leakage(data[stage], data["sensitive"], data["sensitive_names"], **probe)
              for stage in STAGES}
    attributes = {a: {stage: stages[stage][a] for stage in STAGES} for a in data["sensitive_names"]}
    headline = max(attributes, key=lambda a: attributes[a]["before"]["auc"])
    result = {
        "run_id": run_id, "method": run["method"], "kind": data["kind"], "settings": settings,
        "n": int(len(data["indices"])), "attributes": attributes, "behaviour": _behaviour(run),
        "leakage_attribute": headline,
        "leakage": attributes[headline]["after"]["accuracy"],
        "leakage_before": attributes[headline]["before"]["accuracy"],
        "leakage_auc": attributes[headline]["after"]["auc"],
        "leakage_auc_before": attributes[headline]["before"]["auc"],
        "chance": attributes[headline]["before"]["chance"], "created": time.time(),
    }
    path = run_folder(run_id) / LEAKAGE_FILE
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(result, indent=2)))
    progress(1.0, "Probing the latents for the sensitive attributes")
    return result


def cached_leakage(run_id: str) -> dict | None:
    """The stored :func:`run_leakage` result of a run, or ``None`` when it was never computed (cheap)."""
    from fairaudit import workspace

    path = workspace.home() / "runs" / run_id / LEAKAGE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def leakage_table(result: dict) -> pd.DataFrame:
    """One row per sensitive attribute × stage: probe accuracy and AUC with intervals, and chance."""
    rows = []
    for attr, stages in result["attributes"].items():
        for stage in STAGES:
            p = stages[stage]
            rows.append({"Attribute": attr, "Stage": stage, "Probe accuracy": p["accuracy"],
                         "Accuracy CI low": p["accuracy_ci"][0], "Accuracy CI high": p["accuracy_ci"][1],
                         "AUC": p["auc"], "AUC CI low": p["auc_ci"][0], "AUC CI high": p["auc_ci"][1],
                         "Chance": p["chance"], "n": p["n"]})
    return pd.DataFrame(rows)


def behaviour_table(result: dict) -> pd.DataFrame:
    """The run's behavioural disparities (spd, deo) and accuracy, before and after, one row per stage; a gap
    the audit could not define is empty, with the audit's reason in ``Note``."""
    return pd.DataFrame([{"Stage": stage, "SPD": result["behaviour"][stage]["spd"],
                          "DEO": result["behaviour"][stage]["deo"],
                          "Accuracy": result["behaviour"][stage]["accuracy"],
                          "Note": undefined_text(result["behaviour"][stage].get("undefined"))} for stage in STAGES])


# ---------------------------------------------------------------------------- projections

@dataclass
class RunEmbedding:
    """Before/after 2-D maps of a run's test sample; :meth:`figure` draws them side by side.

    ``axes`` says how the two maps relate: ``joint`` (one projection of both
    latent sets), ``procrustes`` (the after map aligned onto the before map)
    or ``separate``.
    """

    run_id: str
    method: str
    settings: dict
    kind: str
    axes: str
    coords: dict[str, np.ndarray]  # stage → (N, 2)
    indices: np.ndarray
    labels: np.ndarray
    sensitive: np.ndarray
    predictions: dict[str, np.ndarray]  # stage → (N,)
    sensitive_names: list[str]
    value_names: dict[str, list[str]]
    class_names: list[str]
    leakage_result: dict = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        """Long table: one row per sample and stage with x, y and every colouring."""
        groups = [describe(self.sensitive_names, row, self.value_names)[0] for row in self.sensitive]
        target = [self.class_names[int(c)] for c in self.labels]
        parts = []
        for stage in STAGES:
            pred = self.predictions[stage]
            xy = self.coords[stage]
            parts.append(pd.DataFrame({
                "stage": stage, "x": xy[:, 0], "y": xy[:, 1], "sample": self.indices, "sensitive": groups,
                "target": target, "prediction": [self.class_names[int(c)] for c in pred],
                "correct": np.where(pred == self.labels, "correct", "wrong")}))
        return pd.concat(parts, ignore_index=True)

    def figure(self, color: str = "sensitive", *, height: int = 480, point_size: int = 4) -> go.Figure:
        """Before and after maps side by side, points coloured by ``color`` (one of :data:`COLORS`)."""
        if color not in COLORS:
            raise FairauditError(f"unknown colouring '{color}'; use one of: {', '.join(COLORS)}.")
        frame = self.frame()
        order = {color: sorted(frame[color].unique())}
        label = {"sensitive": " & ".join(self.sensitive_names), "target": "target", "prediction": "prediction",
                 "correct": "prediction is"}[color]
        fig = px.scatter(frame, x="x", y="y", color=color, facet_col="stage", category_orders={**order,
                         "stage": list(STAGES)}, hover_data={"sample": True, "sensitive": True, "target": True,
                                                             "prediction": True, "x": False, "y": False,
                                                             "stage": False},
                         labels={color: label}, height=height, render_mode="webgl",
                         color_discrete_sequence=PALETTE)
        fig.update_traces(marker={"size": point_size, "opacity": 0.75})
        names = {"tsne": "t-SNE", "umap": "UMAP"}
        fig.for_each_annotation(lambda a: a.update(text=f"{a.text.split('=')[-1]} mitigation"))
        if self.axes == "separate":
            fig.update_xaxes(matches=None)
            fig.update_yaxes(matches=None)
        axes_note = {"joint": "one projection of both", "procrustes": "after aligned onto before",
                     "separate": "independent axes"}[self.axes]
        fig.update_xaxes(title=None, showticklabels=False)
        fig.update_yaxes(title=None, showticklabels=False)
        fig.update_layout(title=f"{names[self.method]} of the latents g(x), {len(self.indices):,} test samples "
                                f"({axes_note})", margin={"l": 10, "r": 10, "t": 60, "b": 10},
                          legend={"itemsizing": "constant"})
        return fig

    @property
    def leakage(self) -> pd.DataFrame:
        """The leakage probe of the run (:func:`leakage_table`)."""
        return leakage_table(self.leakage_result)

    @property
    def behaviour(self) -> pd.DataFrame:
        """The run's behavioural disparities before/after (:func:`behaviour_table`)."""
        return behaviour_table(self.leakage_result)


def _projection_settings(latents_key: str, method: str, perplexity: float, n_neighbors: int, shared_axes: bool,
                         seed: int) -> dict:
    parameter = {"perplexity": float(perplexity)} if method == "tsne" else {"n_neighbors": int(n_neighbors)}
    return {"method": method, **parameter, "shared_axes": bool(shared_axes), "latents": latents_key,
            "seed": int(seed)}


def embedding_cached(run_id: str, *, method: str = "tsne", n: int = DEFAULT_SAMPLE, perplexity: float = 30,
                     n_neighbors: int = 15, shared_axes: bool = True, seed: int = 0) -> bool:
    """Whether :func:`embed_run` with these settings would only read files (projection and leakage cached)."""
    run = _done_run(run_id)
    settings = _projection_settings(_latents_key(run, n, seed), method, perplexity, n_neighbors, shared_axes, seed)
    folder = run_folder(run_id)
    leakage = cached_leakage(run_id) or {}
    return (folder / "embeddings" / f"projection-{_key(settings)}.npz").is_file() and (
        leakage.get("settings") or {}).get("seed") == int(seed)


def embed_run(run_id: str, *, method: str = "tsne", n: int = DEFAULT_SAMPLE, perplexity: float = 30,
              n_neighbors: int = 15, shared_axes: bool = True, device="auto", seed: int = 0,
              leakage: bool = True, progress: Progress = no_progress) -> RunEmbedding:
    """Before/after 2-D projections of the latents of a finished run (cached per run and settings).

    ``method`` is ``"tsne"`` (uses ``perplexity``) or ``"umap"`` (uses
    ``n_neighbors``); ``n`` is the stratified sample size (≤ 20 000).
    With ``shared_axes`` the two maps share coordinates: one joint fit when
    both latent sets come from the same extractor (FAAP, post-processing),
    Procrustes alignment otherwise (see :mod:`fairaudit.embed.projection`).
    ``leakage`` also runs (or reads) :func:`run_leakage` for ``.leakage``.
    """
    if method not in PROJECTIONS:
        raise FairauditError(f"unknown projection method '{method}'; use one of: {', '.join(PROJECTIONS)}.")
    if not 1 <= int(n) <= MAX_SAMPLE:
        raise FairauditError(f"the sample size must lie between 1 and {MAX_SAMPLE:,}, got {n}.")
    data = sample_latents(run_id, n, seed=seed, device=device, progress=span(progress, 0.0, 0.7))
    settings = _projection_settings(data["key"], method, perplexity, n_neighbors, shared_axes, seed)
    path = run_folder(run_id) / "embeddings" / f"projection-{_key(settings)}.npz"
    cached = _read_npz(path)
    if cached is None:
        progress(0.7, f"Projecting with {method}")
        before, after, axes = project_pair(data["before"], data["after"], method, shared_axes=shared_axes,
                                           same_space=bool(data["same_space"]), perplexity=perplexity,
                                           n_neighbors=n_neighbors, seed=seed)
        cached = {"before": before, "after": after, "axes": np.array(axes)}
        _write_npz(path, **cached)
        progress(0.85 if leakage else 1.0, f"Projecting with {method}")
    result = run_leakage(run_id, seed=seed, device=device, progress=span(progress, 0.85, 1.0)) if leakage else {}
    return RunEmbedding(run_id=run_id, method=method, settings={**settings, "n": int(n)}, kind=str(data["kind"]),
                        axes=str(cached["axes"]), coords={s: cached[s] for s in STAGES}, indices=data["indices"],
                        labels=data["labels"], sensitive=data["sensitive"],
                        predictions={"before": data["pred_before"], "after": data["pred_after"]},
                        sensitive_names=list(data["sensitive_names"]), value_names=dict(data["value_names"]),
                        class_names=list(data["class_names"]), leakage_result=result)
