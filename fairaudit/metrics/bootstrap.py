"""Poisson bootstrap of the confusion tensor, vectorised on the device.

The Poisson bootstrap gives every sample an independent Poisson(1) weight per
resample instead of drawing N rows with replacement; for large N the two are
equivalent, and the weights of a block of resamples are one tensor, so a block
of replicates is a single weighted ``index_add_`` of the cell ids.

Two ways to draw the replicates are offered:

* ``"rows"`` draws the Poisson(1) weight of every row (memory bounded by
  processing :data:`CHUNK_WEIGHTS` weights at a time);
* ``"cells"`` draws each confusion cell's weighted count directly as
  Poisson(count). A sum of ``n`` independent Poisson(1) weights is exactly
  Poisson(``n``), and every metric depends on the rows only through the cell
  counts, so both give replicates with the same distribution; ``"cells"``
  costs O(resamples × cells) instead of O(resamples × rows).

Intervals are percentile intervals of the replicates. For gaps defined as
max − min over groups the replicates are biased upward when the groups are
truly alike (resampling noise only widens a spread), so an interval for a
near-zero gap can sit above the point estimate; read such intervals as "how
large could the gap plausibly be".
"""

from __future__ import annotations

import torch

from fairaudit.metrics.confusion import weighted_confusion_counts

CHUNK_WEIGHTS = 1 << 25
"""Most Poisson weights held at once by the ``"rows"`` method (128 MiB as float32)."""

METHODS = ("rows", "cells")


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    """A seeded generator on ``device``; the same seed on the same device reproduces the resamples."""
    return torch.Generator(device=device).manual_seed(int(seed))


def poisson_confusions_rows(cells: torch.Tensor, n_groups: int, n_classes: int, n_boot: int,
                            generator: torch.Generator, chunk_weights: int = CHUNK_WEIGHTS) -> torch.Tensor:
    """Replicate confusion tensors ``[n_boot, G, C, C]`` (float64) from per-row Poisson(1) weights."""
    n = cells.numel()
    # float32 counts are exact integers up to 2**24; larger samples accumulate in float64.
    dtype = torch.float32 if n < (1 << 23) else torch.float64
    per_chunk = max(1, min(n_boot, chunk_weights // max(n, 1)))
    blocks = []
    for start in range(0, n_boot, per_chunk):
        b = min(per_chunk, n_boot - start)
        weights = torch.poisson(torch.ones(b, n, dtype=dtype, device=cells.device), generator=generator)
        blocks.append(weighted_confusion_counts(cells, weights, n_groups, n_classes).double())
    return torch.cat(blocks)


def poisson_confusions_cells(conf: torch.Tensor, n_boot: int, generator: torch.Generator) -> torch.Tensor:
    """Replicate confusion tensors ``[n_boot, G, C, C]`` drawn as Poisson(cell count) per cell."""
    rates = conf.double().unsqueeze(0).expand(n_boot, *conf.shape).contiguous()
    return torch.poisson(rates, generator=generator)


def percentile_interval(replicates: torch.Tensor, level: float) -> torch.Tensor:
    """Percentile interval ``[2, ...]`` (low, high) over the first axis, ignoring NaN replicates."""
    tail = (1.0 - level) / 2.0
    q = torch.tensor([tail, 1.0 - tail], dtype=replicates.dtype, device=replicates.device)
    return torch.nanquantile(replicates, q, dim=0)
