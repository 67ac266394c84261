"""Latents ``g(x)`` of a stratified sample of a split, from the one streaming inference pass.

The sample is stratified by *sensitive group × target label*, so that small
cells (e.g. smiling men in a dataset where 90 % of smiling faces are women)
stay represented in proportion; every non-empty cell keeps at least one
sample. Latents come from :func:`fairaudit.audit.inference.predict` with
``with_latents=True`` (mixed precision, channels-last and large batches on
CUDA), run on a row subset of the dataset.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch

from fairaudit.audit.inference import Predictions, predict
from fairaudit.data.base import FairDataset, TensorFairDataset
from fairaudit.errors import FairauditError

DEFAULT_SAMPLE = 2000
MAX_SAMPLE = 20000


def stratified_sample(strata: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Row indices of a sample of ``n`` rows whose strata keep their proportions (sorted ascending).

    ``strata`` is one integer (or row of integers) per row. Each stratum gets
    its largest-remainder share of ``n`` and at least one row; all rows are
    returned when ``n`` is at least their number.
    """
    strata = np.asarray(strata)
    total = len(strata)
    if n < 1:
        raise FairauditError(f"the sample size must be at least 1, got {n}.")
    if n >= total:
        return np.arange(total)
    keys = strata.reshape(total, -1)
    _, cell = np.unique(keys, axis=0, return_inverse=True)
    cell = cell.reshape(-1)
    counts = np.bincount(cell)
    if n < len(counts):
        raise FairauditError(f"a sample of {n} cannot hold one row of each of the {len(counts)} "
                             "group × label cells; use a larger sample.")
    exact = counts * n / total
    share = np.maximum(1, np.floor(exact).astype(int))
    # Hand out the rows still missing by largest remainder, never beyond a cell's size.
    remainder = exact - np.floor(exact)
    for c in np.argsort(-remainder, kind="stable"):
        if share.sum() >= n:
            break
        if share[c] < counts[c]:
            share[c] += 1
    while share.sum() > n:  # the at-least-one rule overshot: trim the largest cells
        share[np.argmax(share)] -= 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(cell == c), size=int(k), replace=False) for c, k in enumerate(share)]
    return np.sort(np.concatenate(picked))


class SubsetDataset(FairDataset):
    """The rows ``indices`` of ``parent`` as a dataset of their own (inputs still decoded lazily)."""

    def __init__(self, parent: FairDataset, indices: np.ndarray):
        self.parent = parent
        self.rows = np.asarray(indices, dtype=np.int64)
        self.name, self.kind, self.region_names = parent.name, parent.kind, parent.region_names
        attributes = pd.DataFrame(parent._codes[self.rows], columns=parent.attributes.columns)
        super().__init__(parent.split, attributes, parent.value_names, parent.input_shape, parent.target,
                         parent.sensitive, parent.feature_names)

    def load_input(self, i: int) -> torch.Tensor:
        return self.parent.load_input(int(self.rows[i]))


def subset(dataset: FairDataset, indices: np.ndarray) -> FairDataset:
    """Rows ``indices`` of ``dataset``; in-memory tensors stay in memory (sliced, not wrapped)."""
    indices = np.asarray(indices, dtype=np.int64)
    if isinstance(dataset, TensorFairDataset):
        attributes = pd.DataFrame(dataset._codes[indices], columns=dataset.attributes.columns)
        out = TensorFairDataset(dataset.name, dataset.split, dataset.x[torch.as_tensor(indices)], attributes,
                                dataset.value_names, dataset.target, dataset.sensitive, kind=dataset.kind,
                                feature_names=dataset.feature_names)
        return out
    return SubsetDataset(dataset, indices)


def sample_indices(dataset: FairDataset, n: int = DEFAULT_SAMPLE, seed: int = 0) -> np.ndarray:
    """A stratified (sensitive group × target) sample of ``dataset``'s rows, ``n`` ≤ :data:`MAX_SAMPLE`."""
    if not 1 <= n <= MAX_SAMPLE:
        raise FairauditError(f"the sample size must lie between 1 and {MAX_SAMPLE:,}, got {n}.")
    strata = np.column_stack([dataset.sensitive_codes, dataset.targets])
    return stratified_sample(strata, n, seed)


def latents_of(model: torch.nn.Module, dataset: FairDataset, indices: np.ndarray | None = None, *,
               device="auto", batch_size: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> Predictions:
    """Predictions with latents ``g(x)`` of ``model`` on rows ``indices`` of ``dataset`` (all rows if None).

    The returned ``indices`` are row numbers of ``dataset`` (not of the
    subset). Raises :class:`FairauditError` when the model has no feature
    extractor ``g``.
    """
    if not (hasattr(model, "g") and hasattr(model, "f")) or not getattr(model, "features_available", True):
        raise FairauditError("this model exposes no latent features (it is not split into a feature extractor "
                             "g and a head f), so its latent space cannot be shown or probed.")
    part = dataset if indices is None else subset(dataset, indices)
    preds = predict(model, part, device=device, batch_size=batch_size, with_latents=True, progress=progress)
    if preds.latents is None:
        raise FairauditError("the model returned no latent features.")
    preds.latents = preds.latents.reshape(len(preds), -1)
    if indices is not None:
        preds.indices = np.asarray(indices, dtype=np.int64)[preds.indices]
    return preds
