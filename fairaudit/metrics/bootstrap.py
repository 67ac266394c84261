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

import math

import torch

from fairaudit.metrics.confusion import weighted_confusion_counts

CHUNK_WEIGHTS = 1 << 25
"""Most Poisson weights held at once by the ``"rows"`` method (128 MiB as float32)."""

BOOTSTRAP_METHODS = ("rows", "cells")


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


# Counter-based Poisson(1) weights: a weight is a pure function of (seed, row index, replicate index), so a
# stream of batches, one big batch, several processes over disjoint rows and every device give the same weights.
_M32 = 0xFFFFFFFF
_POISSON1_CDF = None


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x · c mod 2**32`` for ``0 <= x < 2**32`` without int64 overflow (16-bit halves of ``c``)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """Wellons' ``lowbias32`` integer hash of 32-bit values held in int64."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _poisson1_cdf(device: torch.device) -> torch.Tensor:
    """``P(W <= k)`` for ``W ~ Poisson(1)``, ``k = 0..23`` (the rest has probability below 1e-23)."""
    global _POISSON1_CDF
    if _POISSON1_CDF is None:
        pmf, total, cdf = math.exp(-1.0), 0.0, []
        for k in range(24):
            total += pmf
            cdf.append(total)
            pmf /= k + 1
        _POISSON1_CDF = torch.tensor(cdf, dtype=torch.float64)
    return _POISSON1_CDF.to(device)


def counter_poisson_weights(seed: int, rows: torch.Tensor, n_boot: int) -> torch.Tensor:
    """Poisson(1) weights ``[n_boot, len(rows)]`` (float64) of the rows with global indices ``rows`` (int64).

    Weight ``(b, i)`` is the inverse Poisson(1) CDF of a uniform made by hashing ``(seed, rows[i], b)`` with a
    32-bit integer hash, so it depends on nothing else: not on how the rows are batched, on the device or on
    the order of the calls. Uniforms have 32-bit resolution (the weight distribution is exact up to 2**-32).
    """
    device = rows.device
    key = _hash32(torch.full((), (int(seed) ^ 0x5EED) & _M32, dtype=torch.int64, device=device))
    key = _hash32(key ^ ((int(seed) >> 32) & _M32))
    per_row = _hash32(_hash32(key ^ ((rows >> 32) & _M32)) ^ (rows & _M32))  # [n]
    per_boot = _hash32(torch.arange(n_boot, dtype=torch.int64, device=device) * 0x9E3779B1 & _M32)  # [B]
    u = _hash32(per_boot.unsqueeze(1) ^ per_row.unsqueeze(0)).double() * (1.0 / 4294967296.0)
    return torch.bucketize(u, _poisson1_cdf(device), right=True).double()
