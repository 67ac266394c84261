"""Shared pieces of the classic baselines: retraining settings, fresh models, group cells, dataset views.

Every retraining baseline builds a *fresh* model of the deployed architecture
and trains it from scratch on the train split (changed by the method: weights,
resampled indices or flipped labels) with :func:`fairaudit.train.fit`, so the
audit compares the deployed model with what the same architecture learns under
the mitigation.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from fairaudit.audit.inference import iterate_batches
from fairaudit.data.base import FairDataset, TensorFairDataset
from fairaudit.device import resolve_device
from fairaudit.errors import FairauditError
from fairaudit.metrics.groups import intersection_codes
from fairaudit.mitigation.base import MethodContext, setting  # noqa: F401  (re-exported for the baselines)
from fairaudit.models.registry import MODEL_BUILDERS, build_model
from fairaudit.models.split import SplitModel, latent_dim  # noqa: F401  (latent_dim re-exported)
from fairaudit.seeding import seed_everything
from fairaudit.train.loop import cross_entropy_step


@dataclass
class RetrainConfig:
    """Settings every retraining baseline shares."""

    epochs: int = setting(5, "training epochs of the new model", min=1)
    lr: float = setting(1e-3, "Adam learning rate", min=0, min_inclusive=False)
    batch_size: int = setting(128, "mini-batch size", min=1)
    weight_decay: float = setting(0.0, "Adam weight decay", min=0)

    def validate(self) -> None:
        """Rules between settings (none for these: each one's range is declared with it)."""


# ---------------------------------------------------------------------------- models

def _reset_parameters(model: nn.Module) -> None:
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()


def fresh_model(deployed: nn.Module, seed: int = 0) -> SplitModel:
    """An untrained model of the deployed architecture (same ``arch``, classes and input shape).

    Architectures of fairaudit's registry are rebuilt by their builder; any other
    split model (e.g. a torchvision one) is copied and its layers re-initialised.
    """
    if not isinstance(deployed, SplitModel) or not getattr(deployed, "features_available", True):
        raise FairauditError("retraining needs the deployed model's architecture, but this model is an opaque "
                             "TorchScript archive; save it as a fairaudit checkpoint instead.")
    seed_everything(seed)
    if deployed.arch in MODEL_BUILDERS:
        return build_model(deployed.arch, deployed.num_classes, deployed.input_shape)
    model = copy.deepcopy(deployed).cpu()
    _reset_parameters(model)
    model.requires_grad_(True)
    return model


# ---------------------------------------------------------------------------- groups and cells

def group_codes(ds: FairDataset) -> tuple[np.ndarray, int]:
    """One code per intersection of the sensitive attributes (mixed radix) and the number of such groups."""
    cardinalities = [len(ds.value_names[a]) for a in ds.sensitive]
    return intersection_codes(ds.sensitive_codes, cardinalities), int(math.prod(cardinalities))


def group_attribute_codes(group: int, ds: FairDataset) -> list[int]:
    """The per-attribute codes of intersection ``group`` (inverse of :func:`group_codes`)."""
    codes = []
    for a in reversed(ds.sensitive):
        k = len(ds.value_names[a])
        codes.append(group % k)
        group //= k
    return codes[::-1]


def favorable_label(ds: FairDataset) -> int:
    """The dataset's favourable (positive) class, 1 where it does not say."""
    return int(getattr(ds, "favorable_label", 1))


def group_name(group: int, ds: FairDataset) -> str:
    return " & ".join(f"{a}={ds.value_names[a][c]}" for a, c in zip(ds.sensitive, group_attribute_codes(group, ds)))


def cell_counts(targets: np.ndarray, groups: np.ndarray, n_classes: int, n_groups: int) -> np.ndarray:
    """``(C, G)`` number of samples in each (target, group) cell."""
    counts = np.zeros((n_classes, n_groups), dtype=np.int64)
    np.add.at(counts, (targets, groups), 1)
    return counts


def check_balanceable(counts: np.ndarray, what: str) -> None:
    """Refuse when no target class occurs in two groups: then there is nothing to rebalance.

    This is the fully confounded case (e.g. the colored-digits train split, where
    each digit has one colour); AEDA's Table 1 marks re-sampling and
    re-weighting as impossible there.
    """
    if not ((counts > 0).sum(1) >= 2).any():
        raise FairauditError(f"{what} cannot balance this training split: every target class occurs in a single "
                             "sensitive group, so there is no minority sample to up-weight or keep.")


def describe_cells(counts: np.ndarray, ds: FairDataset) -> list[dict]:
    return [{"target": ds.class_names[t], "group": group_name(g, ds), "n": int(counts[t, g])}
            for t in range(counts.shape[0]) for g in range(counts.shape[1])]


def base_rates(targets: np.ndarray, groups: np.ndarray, n_groups: int, positive: int = 1) -> np.ndarray:
    """``P(y = positive | group)`` per group (NaN for an empty group)."""
    rates = np.full(n_groups, np.nan)
    for g in range(n_groups):
        mask = groups == g
        if mask.any():
            rates[g] = float((targets[mask] == positive).mean())
    return rates


# ---------------------------------------------------------------------------- dataset views

class CachedDataset(Dataset):
    """A split's decoded inputs kept in memory, yielding ``(x, y, s, i)`` like the split itself."""

    def __init__(self, x: torch.Tensor, targets: np.ndarray, sensitive: np.ndarray):
        self.x = x
        self.targets = torch.tensor(np.asarray(targets), dtype=torch.int64)
        self.sensitive = torch.tensor(np.asarray(sensitive), dtype=torch.int64).view(len(self.targets), -1)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        i = int(i)
        return self.x[i], self.targets[i], self.sensitive[i], i


def in_memory(ds: FairDataset, device="cpu", budget_mb: int = 2048) -> Dataset:
    """``ds`` with its inputs decoded once into memory when they fit ``budget_mb`` (else ``ds`` itself).

    Images are otherwise decoded or rendered again in every epoch, and the
    methods below visit the train split many times.
    """
    if isinstance(ds, TensorFairDataset):
        return CachedDataset(ds.x, ds.targets, ds.sensitive_codes)
    if len(ds) * math.prod(ds.input_shape) * 4 > budget_mb * 2 ** 20:
        return ds
    xs = [x.float() for x, *_ in iterate_batches(ds, 256, resolve_device(device))]
    return CachedDataset(torch.cat(xs), ds.targets, ds.sensitive_codes)


class RelabeledDataset(Dataset):
    """``dataset`` with its target labels replaced by ``targets`` (label flipping)."""

    def __init__(self, dataset: Dataset, targets: Sequence[int]):
        self.dataset = dataset
        self.targets = torch.tensor(np.asarray(targets), dtype=torch.int64)
        if len(self.targets) != len(dataset):
            raise ValueError("one target per sample is needed.")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        x, _, s, idx = self.dataset[i]
        return x, self.targets[int(i)], s, idx


# ---------------------------------------------------------------------------- training

def retrain(ctx: MethodContext, config: RetrainConfig, dataset: Dataset, *,
            step_fn: Callable = cross_entropy_step, sampler_weights: Sequence[float] | None = None,
            model: SplitModel | None = None, state: dict | None = None,
            span: tuple[float, float] | None = None) -> tuple[SplitModel, list[dict]]:
    """Train a fresh deployed-architecture model (or ``model``) on ``dataset``; returns it and its history.

    Training goes through :meth:`MethodContext.fit`: progress, cancellation
    and checkpoints are the job's, a resumed job continues from its last
    checkpoint, ``state`` (objects the step updates itself, e.g. an
    adversary and its optimiser) is checkpointed with the model, and ``span``
    is the part of the method's progress the training takes.
    """
    model = model if model is not None else fresh_model(ctx.model, ctx.seed)
    weights = None if sampler_weights is None else [float(w) for w in sampler_weights]
    history = ctx.fit(model, dataset, step_fn, settings=config, sampler_weights=weights, state=state, span=span)
    return model.eval(), history
