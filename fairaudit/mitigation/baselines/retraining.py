"""Pre-processing baselines that retrain the deployed architecture: ERM, re-weighting, re-sampling.

* ``erm`` – plain empirical risk minimisation from scratch: the reference
  every other method is compared with.
* ``reweight`` – Kamiran & Calders (2012) reweighing: every sample of cell
  ``(t, g)`` (target ``t``, sensitive group ``g``, ``n_tg`` samples) gets one
  weight. ``scheme="balanced"`` gives the groups of each target class the same
  total weight and keeps the class sizes, ``w = n_t / (G_t·n_tg)`` for the
  ``G_t`` groups present in class ``t``; ``scheme="kamiran"`` gives each cell
  the weight it would have if target and group were independent,
  ``w = P(t)·P(g) / P(t, g)``. Both make the weighted base rate
  ``P(y = t | g)`` equal across groups. The weights enter the loss
  (``via="loss"``) or a weighted sampler (``via="sampler"``).
* ``resample`` – the same balance by sampling indices, class by class (AEDA's
  "Under/Down-sampling" baseline): ``undersample`` keeps a random
  ``min_g n_tg`` samples of every group of class ``t``, ``oversample`` draws
  extra samples with replacement until every group of class ``t`` has
  ``max_g n_tg``.

Cells with no training sample stay empty: nothing can be re-weighted or
re-sampled into them (the methods refuse outright when no target class occurs
in two groups).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from fairaudit.errors import FairauditError
from fairaudit.mitigation.base import MethodContext, MitigationMethod, MitigationResult, register_method
from fairaudit.mitigation.baselines.common import (RetrainConfig, cell_counts, check_balanceable, describe_cells,
                                                   group_codes, in_memory, retrain, setting)

__all__ = ["ERM", "Reweight", "Resample", "cell_weight_table", "cell_weights", "resample_indices",
           "weighted_cross_entropy_step"]


@dataclass
class ErmConfig(RetrainConfig):
    """ERM retraining settings."""


@register_method
class ERM(MitigationMethod):
    name = "erm"
    summary = "Retrain the deployed architecture from scratch with plain ERM on the train split (reference)."
    Config = ErmConfig

    def run(self, ctx: MethodContext, config: ErmConfig) -> MitigationResult:
        train_ds = ctx.load_split("train")
        model, history = retrain(ctx, config, in_memory(train_ds, ctx.device))
        return MitigationResult(after_model=model, history=history, stats={"train_samples": len(train_ds)})


# ---------------------------------------------------------------------------- re-weighting

def cell_weight_table(counts: np.ndarray, scheme: str = "balanced") -> np.ndarray:
    """``(C, G)`` weight of one sample of each (target, group) cell (0 for empty cells)."""
    counts = counts.astype(np.float64)
    n = counts.sum()
    if scheme == "balanced":
        present = np.maximum((counts > 0).sum(1, keepdims=True), 1)
        wanted = np.broadcast_to(counts.sum(1, keepdims=True) / present, counts.shape)
    elif scheme == "kamiran":
        wanted = np.outer(counts.sum(1), counts.sum(0)) / n
    else:
        raise FairauditError(f"unknown weighting scheme '{scheme}'; use balanced or kamiran.")
    return np.divide(wanted, counts, out=np.zeros_like(counts), where=counts > 0)


def cell_weights(targets: np.ndarray, groups: np.ndarray, n_classes: int, n_groups: int,
                 scheme: str = "balanced") -> np.ndarray:
    """Per-sample weights (mean 1) that balance the (target, group) cells; see the module docstring."""
    return cell_weight_table(cell_counts(targets, groups, n_classes, n_groups), scheme)[targets, groups]


def weighted_cross_entropy_step(weights: torch.Tensor):
    """A step for :func:`fairaudit.train.fit`: cross-entropy weighted by ``weights[sample index]``."""
    cache: dict = {}

    def step(model: nn.Module, batch: tuple) -> torch.Tensor:
        x, y, idx = batch[0], batch[1], batch[3]
        device = x.device
        if device not in cache:
            cache[device] = weights.to(device)
        w = cache[device][torch.as_tensor(idx, device=device).long()]
        losses = nn.functional.cross_entropy(model(x).float(), y, reduction="none")
        return (w * losses).mean()

    return step


@dataclass
class ReweightConfig(RetrainConfig):
    """Re-weighting settings."""

    scheme: str = setting("balanced", "'balanced': the groups of each target class get equal total weight "
                                      "(class sizes kept); 'kamiran': P(t)P(g)/P(t,g) (Kamiran & Calders)",
                        choices=("balanced", "kamiran"))
    via: str = setting("loss", "'loss': weighted cross-entropy; 'sampler': weighted sampling with replacement",
                       choices=("loss", "sampler"))


def _train_cells(ctx: MethodContext, what: str):
    """The train split, its group codes, their number and the (target, group) cell counts, refused in one
    sentence when a cell is empty and ``what`` (re-weighting, re-sampling) cannot balance it."""
    train_ds = ctx.load_split("train")
    groups, n_groups = group_codes(train_ds)
    counts = cell_counts(train_ds.targets, groups, train_ds.num_classes, n_groups)
    check_balanceable(counts, what)
    return train_ds, groups, n_groups, counts


@register_method
class Reweight(MitigationMethod):
    name = "reweight"
    summary = ("Group-balanced re-weighting (Kamiran & Calders): retrain with per-sample weights that give every "
               "(target, group) cell the same total weight.")
    Config = ReweightConfig
    controls = {"erm": "erm"}  # plain retraining of the same architecture with the same budget
    target_metrics = ("spd",)

    def run(self, ctx: MethodContext, config: ReweightConfig) -> MitigationResult:
        train_ds, groups, n_groups, counts = _train_cells(ctx, "re-weighting")
        weights = cell_weights(train_ds.targets, groups, train_ds.num_classes, n_groups, config.scheme)
        data = in_memory(train_ds, ctx.device)
        if config.via == "loss":
            model, history = retrain(ctx, config, data,
                                     step_fn=weighted_cross_entropy_step(torch.as_tensor(weights, dtype=torch.float32)))
        else:
            model, history = retrain(ctx, config, data, sampler_weights=weights)
        table = cell_weight_table(counts, config.scheme)
        cells = [{**cell, "weight": float(table.flat[k])} for k, cell in enumerate(describe_cells(counts, train_ds))]
        stats = {"scheme": config.scheme, "via": config.via, "train_samples": len(train_ds), "cells": cells,
                 "empty_cells": int((counts == 0).sum())}
        return MitigationResult(after_model=model, history=history, stats=stats)


# ---------------------------------------------------------------------------- re-sampling

def resample_indices(targets: np.ndarray, groups: np.ndarray, n_classes: int, n_groups: int, mode: str,
                     rng: np.random.Generator) -> np.ndarray:
    """Shuffled indices in which, within every target class, each present group has the same count.

    That count is the class's smallest group (``undersample``, drawn without
    replacement) or its largest (``oversample``: all samples plus draws with
    replacement). Empty cells stay empty.
    """
    if mode not in ("undersample", "oversample"):
        raise FairauditError(f"unknown resampling mode '{mode}'; use undersample or oversample.")
    counts = cell_counts(targets, groups, n_classes, n_groups)
    chosen = []
    for t in range(n_classes):
        present = counts[t][counts[t] > 0]
        if len(present) == 0:
            continue
        size = int(present.min() if mode == "undersample" else present.max())
        for g in np.flatnonzero(counts[t]):
            members = np.flatnonzero((targets == t) & (groups == g))
            if mode == "undersample":
                chosen.append(rng.choice(members, size, replace=False))
            else:
                chosen.append(np.concatenate([members, rng.choice(members, size - len(members), replace=True)]))
    return rng.permutation(np.concatenate(chosen))


@dataclass
class ResampleConfig(RetrainConfig):
    """Re-sampling settings."""

    mode: str = setting("undersample", "'undersample': keep as many samples of each group of a target class as "
                                       "its smallest group has; 'oversample': repeat samples up to its largest",
                        choices=("undersample", "oversample"))


@register_method
class Resample(MitigationMethod):
    name = "resample"
    summary = "Balance the (target, group) cells of the train split by under- or over-sampling, then retrain."
    Config = ResampleConfig
    controls = {"erm": "erm"}  # plain retraining of the same architecture with the same budget
    target_metrics = ("spd",)

    def run(self, ctx: MethodContext, config: ResampleConfig) -> MitigationResult:
        train_ds, groups, n_groups, counts = _train_cells(ctx, "re-sampling")
        indices = resample_indices(train_ds.targets, groups, train_ds.num_classes, n_groups, config.mode,
                                   np.random.default_rng(ctx.seed))
        model, history = retrain(ctx, config, Subset(in_memory(train_ds, ctx.device), indices.tolist()))
        after = cell_counts(train_ds.targets[indices], groups[indices], train_ds.num_classes, n_groups)
        stats = {"mode": config.mode, "train_samples": len(train_ds), "resampled_samples": int(len(indices)),
                 "cells_before": describe_cells(counts, train_ds), "cells_after": describe_cells(after, train_ds)}
        return MitigationResult(after_model=model, history=history, stats=stats)
