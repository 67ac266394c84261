"""Per-group confusion matrices as one tensor, built without a loop over samples.

Each sample falls in one cell ``group · C² + true · C + predicted``; counting
cell ids with ``bincount`` yields every group's ``C × C`` confusion matrix at
once, and a weighted count (``index_add_``) yields a bootstrap replicate.
"""

from __future__ import annotations

import torch


def cell_ids(group_ids: torch.Tensor, y_true: torch.Tensor, y_pred: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Flat cell index of every sample in the ``[G, C, C]`` confusion tensor."""
    return (group_ids * n_classes + y_true) * n_classes + y_pred


def confusion_counts(cells: torch.Tensor, n_groups: int, n_classes: int,
                     dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Confusion tensor ``[G, C, C]`` (rows = true class) from cell ids."""
    counts = torch.bincount(cells, minlength=n_groups * n_classes * n_classes)
    return counts.to(dtype).view(n_groups, n_classes, n_classes)


def weighted_confusion_counts(cells: torch.Tensor, weights: torch.Tensor, n_groups: int,
                              n_classes: int) -> torch.Tensor:
    """Confusion tensors ``[B, G, C, C]`` from per-sample weights ``[B, N]`` (one row per replicate)."""
    out = torch.zeros(weights.shape[0], n_groups * n_classes * n_classes, dtype=weights.dtype, device=weights.device)
    out.index_add_(1, cells, weights)
    return out.view(weights.shape[0], n_groups, n_classes, n_classes)


def merge_groups(conf: torch.Tensor, mapping: torch.Tensor, n_merged: int) -> torch.Tensor:
    """Sum the confusion matrices of groups that share a merged index (``[..., G, C, C] → [..., M, C, C]``).

    Used to go from intersectional groups to the groups of one attribute alone.
    """
    shape = (*conf.shape[:-3], n_merged, *conf.shape[-2:])
    return torch.zeros(shape, dtype=conf.dtype, device=conf.device).index_add_(conf.dim() - 3, mapping, conf)
