"""Slice discovery: the intersections of attribute values where a metric is significantly off.

:func:`find_slices` tests every conjunction of up to ``max_depth`` attribute values
(``Male = 1 ∧ Young = 0 ∧ Eyeglasses = 1``) over *all* the attributes it is given, not
only the sensitive ones, in the spirit of SliceFinder (Chung et al., 2019, "Slice Finder:
Automated Data Slicing for Model Validation", §3: a slice is problematic when its metric
differs significantly from its complement's). For each slice it reports its size, the
metric on the slice and on its complement (every other row), the gap (slice − complement),
a bootstrap percentile interval of the gap, a p-value and a Benjamini–Hochberg q-value.

How it is computed. Each row carries two indicators: ``d`` (the row counts in the metric's
denominator, e.g. ``y = 1`` for the TPR) and ``e`` (``d`` and the event, e.g. ``ŷ = 1``).
The one-hot columns of the attribute values form a matrix ``X`` (rows × values); the
membership matrix of a block of depth-``k`` slices is the elementwise product of ``k``
columns of ``X``, and one matrix product ``[1, d, e]ᵀ · M`` gives the counts of every
slice in the block. Blocks of slices are bounded so memory stays bounded; there is no
loop over rows and none over slices × resamples.

* p-value: the two-sided pooled two-proportion z-test of the slice against its complement
  (disjoint rows, so the two proportions are independent). It is a large-sample test:
  ``min_size`` keeps tiny slices out.
* False discoveries: Benjamini–Hochberg (1995) over every slice tested (``n_slices_tested``:
  the slices with at least ``min_size`` rows that define the metric on both sides);
  ``significant`` means ``q_value <= alpha``. Slices are positively dependent (they share
  rows), for which BH keeps its guarantee (Benjamini & Yekutieli, 2001, PRDS).
* Interval: the Poisson bootstrap of the metrics engine (:mod:`fairaudit.metrics.bootstrap`).
  ``method="cells"`` (default) draws each slice's four counts (slice/complement × event/no
  event) as Poisson(count): a sum of independent Poisson(1) row weights over disjoint rows
  is exactly Poisson(count), so each slice's replicates have exactly the distribution the
  row weights give, at a cost independent of the number of rows. ``method="rows"`` draws
  the Poisson(1) weights of every row (a ``[resamples, rows]`` tensor, in blocks) and gets
  every slice's weighted counts for all resamples as the product ``(W ⊙ e) · M``; its
  replicates are also jointly consistent across slices. The interval is the percentile
  interval of the gap replicates at level ``1 − alpha`` (no multiplicity correction).
* Implied slices: a significant slice is marked ``implied_by`` a more general significant
  slice (a subset of its conditions, gap of the same sign) when the slice does not differ
  significantly (same z-test, level ``alpha``) from the rest of that general slice, or is
  the same rows: it then adds nothing to the general finding. ``prune=True`` drops them.
  This is a marking rule of this implementation, not SliceFinder's (which stops expanding
  a significant slice).

Sorting: significant, not implied slices first, then implied ones, then the rest; within
each, by ``|gap|`` descending (ties: smaller p-value first).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from fairaudit.errors import FairauditError

__all__ = ["METRICS", "SliceReport", "find_slices", "encode_attributes", "dataset_attributes"]

METRICS = {
    # name: (denominator, event) as functions of (y, ŷ); "binary" marks metrics of a binary target.
    "accuracy": ("all", "correct", False),
    "error_rate": ("all", "wrong", False),
    "selection_rate": ("all", "yhat1", True),
    "tpr": ("y1", "yhat1", True),
    "fnr": ("y1", "yhat0", True),
    "fpr": ("y0", "yhat1", True),
    "tnr": ("y0", "yhat0", True),
    "ppv": ("yhat1", "y1", True),
}
SLICE_METHODS = ("cells", "rows")
MAX_LEVELS = 12
"""A column with more distinct values is binned (numeric) or keeps its most frequent values plus "other"."""
NUMERIC_BINS = 4
BLOCK_ELEMENTS = 1 << 25
"""Most membership-matrix entries (rows × slices) or replicate entries held at once (128 MiB as float32)."""
WEIGHT_ELEMENTS = 1 << 26
"""Most per-row Poisson weights held at once by ``method="rows"`` (256 MiB as float32)."""


@dataclass
class SliceReport:
    """Result of :func:`find_slices`; :meth:`to_dict` is the JSON contract."""

    metric: str
    n_slices_tested: int
    alpha: float
    slices: list[dict]
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"metric": self.metric, "n_slices_tested": self.n_slices_tested, "alpha": self.alpha,
                "slices": self.slices, "meta": self.meta}

    def frame(self, top: int | None = None) -> pd.DataFrame:
        """One row per slice (``slice`` as text ``a = x ∧ b = y``), in the report's order."""
        rows = []
        for s in self.slices[:top]:
            ci = s["ci"] or [None, None]
            rows.append({"slice": describe(s["slice"]), "depth": len(s["slice"]), "n": s["n"], "value": s["value"],
                         "complement": s["complement"], "gap": s["gap"], "ci_low": ci[0], "ci_high": ci[1],
                         "p_value": s["p_value"], "q_value": s["q_value"], "significant": s["significant"],
                         "implied_by": describe(s["implied_by"]) if s.get("implied_by") else ""})
        return pd.DataFrame(rows, columns=["slice", "depth", "n", "value", "complement", "gap", "ci_low", "ci_high",
                                           "p_value", "q_value", "significant", "implied_by"])


def describe(conditions: dict) -> str:
    return " ∧ ".join(f"{k} = {v}" for k, v in conditions.items())


# -- inputs -------------------------------------------------------------------------------------------------------

def _labels_and_decisions(predictions, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(predictions, "labels") and hasattr(predictions, "predictions"):
        return np.asarray(predictions.labels), np.asarray(predictions.predictions(threshold))
    if isinstance(predictions, (tuple, list)) and len(predictions) == 2:
        return np.asarray(predictions[0]), np.asarray(predictions[1])
    raise FairauditError("predictions must be a Predictions object or a pair (labels, decisions).")


def encode_attributes(attributes: pd.DataFrame, max_levels: int = MAX_LEVELS,
                      numeric_bins: int = NUMERIC_BINS) -> tuple[np.ndarray, list[str], list[list[str]]]:
    """Integer codes ``[N, A]``, column names and value names of every usable attribute column.

    Numeric columns with more than ``max_levels`` distinct values become ``numeric_bins``
    quantile bins (named by their interval); other columns with more than ``max_levels``
    values keep their ``max_levels − 1`` most frequent values and pool the rest as
    ``"other"``. Missing values are a value of their own (``"missing"``). Columns with a
    single value cannot split the data and are left out.
    """
    codes, names, values = [], [], []
    for column in attributes.columns:
        series = attributes[column]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series) \
                and series.nunique(dropna=True) > max_levels:
            series = pd.qcut(series, numeric_bins, duplicates="drop")
            raw, labels = series.cat.codes.to_numpy(dtype=np.int64), [str(c) for c in series.cat.categories]
        else:
            raw, uniques = pd.factorize(series, use_na_sentinel=True)
            raw, labels = raw.astype(np.int64), [str(u) for u in uniques]
        if (raw < 0).any():
            raw = np.where(raw < 0, len(labels), raw)
            labels.append("missing")
        if len(labels) > max_levels:
            keep = np.argsort(-np.bincount(raw, minlength=len(labels)), kind="stable")[: max_levels - 1]
            labels = [labels[k] for k in keep] + ["other"]
            remap = np.full(int(raw.max()) + 1, len(keep), dtype=np.int64)
            remap[keep] = np.arange(len(keep))
            raw = remap[raw]
        levels = sorted(set(labels), key=_natural)
        if len(levels) < 2:
            continue
        lookup = np.array([levels.index(label) for label in labels], dtype=np.int64)
        codes.append(lookup[raw])
        names.append(str(column))
        values.append(levels)
    if not codes:
        raise FairauditError("no attribute column has two or more values, so there is nothing to slice.")
    return np.stack(codes, 1), names, values


def _natural(value: str):
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def dataset_attributes(dataset, indices: Sequence[int] | None = None, numeric_bins: int = NUMERIC_BINS) -> pd.DataFrame:
    """Every attribute a dataset has, decoded, one row per sample (``indices``: rows of the split).

    Image datasets: their attribute table (labels included, e.g. the 40 CelebA attributes).
    Tabular datasets: also each categorical input column (from its one-hot block; an unseen
    category is ``"unseen"``) and each numeric input column in ``numeric_bins`` quantile bins
    of the standardised value (named ``q1 (lowest)`` … ``qK (highest)``).
    """
    idx = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    table = dataset.attributes.iloc[idx].reset_index(drop=True)
    out = {}
    for column in table.columns:
        names = dataset.value_names.get(column)
        out[column] = table[column].map(lambda c, n=names: n[c] if n and 0 <= c < len(n) else str(c))
    groups = getattr(dataset, "feature_groups", None)
    if groups and getattr(dataset, "x", None) is not None:
        x = dataset.x[torch.as_tensor(idx)].numpy()
        feature_names = dataset.feature_names or []
        for column, cols in groups.items():
            if column in out:
                continue
            if column in getattr(dataset, "categorical_features", []):
                block = x[:, cols]
                labels = np.array([feature_names[j].split("=", 1)[-1] for j in cols] + ["unseen"], dtype=object)
                pick = np.where(block.max(1) > 0.5, block.argmax(1), len(cols))
                out[column] = labels[pick]
            else:
                value = pd.Series(x[:, cols[0]])
                bins = pd.qcut(value, numeric_bins, labels=False, duplicates="drop")
                k = int(bins.max()) + 1 if len(bins) else 1
                names = [f"q{i + 1}" + (" (lowest)" if i == 0 else " (highest)" if i == k - 1 else "")
                         for i in range(k)]
                out[column] = bins.map(lambda b, n=names: n[int(b)])
    return pd.DataFrame(out)


# -- enumeration ----------------------------------------------------------------------------------------------------

def _extend(parents: np.ndarray, col_attr: np.ndarray, large_keys: np.ndarray, base: int) -> np.ndarray:
    """Depth-``k`` candidates (sorted column tuples) whose every ``(k − 1)``-subset is a large slice."""
    last = col_attr[parents[:, -1]]
    ok = col_attr[None, :] > last[:, None]  # [m, V]: values of a later attribute
    pi, ci = np.nonzero(ok)
    cand = np.concatenate([parents[pi], ci[:, None]], 1)
    if cand.shape[1] > 2 and len(cand):
        keep = np.ones(len(cand), dtype=bool)
        for drop in range(cand.shape[1] - 1):  # dropping the last one gives the parent, already large
            sub = np.delete(cand, drop, axis=1)
            keep &= np.isin(_keys(sub, base), large_keys)
        cand = cand[keep]
    return cand


def _keys(tuples: np.ndarray, base: int) -> np.ndarray:
    weights = base ** np.arange(tuples.shape[1], dtype=np.int64)
    return (tuples.astype(np.int64) + 1) @ weights


def _indicators(y: np.ndarray, yhat: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    den, event, _ = METRICS[metric]
    pick = {"all": np.ones_like(y, dtype=bool), "correct": y == yhat, "wrong": y != yhat, "y1": y == 1, "y0": y == 0,
            "yhat1": yhat == 1, "yhat0": yhat == 0}
    d = pick[den]
    return d, d & pick[event]


def _membership(xt: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """Transposed membership matrix ``[slices, rows]``: products of rows of the one-hot matrix ``[values, rows]``."""
    m = xt[cand[:, 0]]
    for j in range(1, cand.shape[1]):
        m = m * xt[cand[:, j]]
    return m


def _slice_counts(xt: torch.Tensor, cand: torch.Tensor, weighted_x: torch.Tensor) -> torch.Tensor:
    """Counts ``[S, 3]`` (rows, denominator, event) of the slices ``cand`` (column tuples of one depth).

    Slices sharing their first ``k − 1`` conditions share one prefix membership row: the product
    ``prefix · [X ⊙ 1, X ⊙ d, X ⊙ e]ᵀ`` gives the counts of the prefix crossed with every value at
    once, so the cost is one matrix product per block of prefixes instead of one membership row
    per slice.
    """
    n_values, n = xt.shape
    if cand.shape[1] == 1:
        prefix, inverse = torch.zeros(1, 0, dtype=cand.dtype, device=cand.device), torch.zeros_like(cand[:, 0])
    else:
        prefix, inverse = torch.unique(cand[:, :-1], dim=0, return_inverse=True)
    out = torch.empty(len(cand), 3, dtype=torch.float64, device=xt.device)
    per = max(1, BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, len(prefix), per):
        block = prefix[start:start + per]
        pm = _membership(xt, block) if block.shape[1] else torch.ones(1, n, device=xt.device)
        crossed = (pm @ weighted_x.T).double().view(len(block), 3, n_values)  # [p, 3, V]
        sel = torch.nonzero((inverse >= start) & (inverse < start + len(block))).squeeze(1)
        out[sel] = crossed[inverse[sel] - start, :, cand[sel, -1]]
    return out


def _z_pvalue(e1, d1, e2, d2) -> torch.Tensor:
    """Two-sided pooled two-proportion z-test of ``e1/d1`` against ``e2/d2`` (float64 tensors)."""
    pooled = (e1 + e2) / (d1 + d2)
    se = torch.sqrt(pooled * (1 - pooled) * (1 / d1 + 1 / d2))
    z = (e1 / d1 - e2 / d2) / se
    p = torch.special.erfc(z.abs() / math.sqrt(2.0))
    return torch.where(se > 0, p, torch.ones_like(p))


def _z_pvalue_scalar(e1: float, d1: float, e2: float, d2: float) -> float:
    """:func:`_z_pvalue` of one pair of proportions, in plain floats."""
    pooled = (e1 + e2) / (d1 + d2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / d1 + 1 / d2))
    return math.erfc(abs(e1 / d1 - e2 / d2) / se / math.sqrt(2.0)) if se > 0 else 1.0


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (q-values), Benjamini & Hochberg (1995), by scipy's ``false_discovery_control``."""
    from scipy.stats import false_discovery_control

    p = np.asarray(p, dtype=np.float64)
    return p.copy() if len(p) == 0 else false_discovery_control(p, method="bh")


# -- bootstrap ------------------------------------------------------------------------------------------------------

def _boot_cells(counts: torch.Tensor, totals: torch.Tensor, n_boot: int, gen: torch.Generator) -> torch.Tensor:
    """Gap replicates ``[B, S]`` from Poisson draws of each slice's four cells."""
    d_s, e_s = counts[:, 0], counts[:, 1]
    cells = torch.stack([e_s, d_s - e_s, totals[1] - e_s, (totals[0] - d_s) - (totals[1] - e_s)], 1)  # [S, 4]
    per = max(1, BLOCK_ELEMENTS // max(1, 4 * n_boot))
    out = []
    for start in range(0, len(cells), per):
        c = cells[start:start + per]
        draw = torch.poisson(c.unsqueeze(0).expand(n_boot, *c.shape).contiguous(), generator=gen)
        value = draw[..., 0] / (draw[..., 0] + draw[..., 1])
        comp = draw[..., 2] / (draw[..., 2] + draw[..., 3])
        out.append((value - comp).float())
    return torch.cat(out, 1)


def _boot_rows(x: torch.Tensor, cand_blocks: list[torch.Tensor], d: torch.Tensor, e: torch.Tensor, n_boot: int,
               gen: torch.Generator) -> torch.Tensor:
    """Gap replicates ``[B, S]`` from per-row Poisson(1) weights and membership-matrix products."""
    n = len(d)
    dtype = torch.float32 if n < (1 << 23) else torch.float64
    per_boot = max(1, min(n_boot, WEIGHT_ELEMENTS // max(n, 1)))
    n_slices = sum(len(c) for c in cand_blocks)
    out = torch.empty(n_boot, n_slices, dtype=torch.float32, device=x.device)
    de = torch.stack([d, e]).to(dtype)  # [2, N]
    all_rows = bool(d.all())
    for b0 in range(0, n_boot, per_boot):
        b = min(per_boot, n_boot - b0)
        w = torch.poisson(torch.ones(b, n, dtype=dtype, device=x.device), generator=gen)
        wd, we = (w if all_rows else w * de[0]), w * de[1]
        tot_d, tot_e = wd.sum(1, keepdim=True).double(), we.sum(1, keepdim=True).double()
        s0 = 0
        for cand in cand_blocks:
            per = max(1, BLOCK_ELEMENTS // max(n, 1))
            for c0 in range(0, len(cand), per):
                m = _membership(x, cand[c0:c0 + per]).to(dtype).T
                sd, se_ = (wd @ m).double(), (we @ m).double()
                gap = se_ / sd - (tot_e - se_) / (tot_d - sd)
                out[b0:b0 + b, s0:s0 + m.shape[1]] = gap.float()
                s0 += m.shape[1]
    return out


# -- main entry -----------------------------------------------------------------------------------------------------

def find_slices(predictions, attributes: pd.DataFrame, metric: str = "accuracy", max_depth: int = 3,
                min_size: int = 50, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                device: str | torch.device = "auto", threshold: float = 0.5, method: str = "cells",
                prune: bool = False, top: int | None = None) -> SliceReport:
    """Find the slices (conjunctions of up to ``max_depth`` attribute values) where ``metric`` is off.

    ``predictions``: a :class:`~fairaudit.audit.inference.Predictions` (decisions at
    ``threshold``) or a pair ``(labels, decisions)`` of integer arrays. ``attributes``: one
    row per sample, any columns (see :func:`encode_attributes` for how values are coded).
    ``metric``: one of :data:`METRICS` (all but accuracy and error rate need a binary
    target coded 0/1, class 1 positive). ``top`` keeps only that many slices in the report
    (``n_slices_tested`` still counts all). See the module docstring for the tests, the
    interval and the marking of implied slices.
    """
    from fairaudit.device import resolve_device
    from fairaudit.metrics.bootstrap import make_generator

    started = time.perf_counter()
    if metric not in METRICS:
        raise FairauditError(f"unknown slice metric {metric!r}; choose one of {', '.join(METRICS)}.")
    if method not in SLICE_METHODS:
        raise FairauditError(f"unknown bootstrap method {method!r}; choose 'cells' or 'rows'.")
    if not isinstance(max_depth, int) or not 1 <= max_depth <= 5:
        raise FairauditError("max_depth must be an integer from 1 to 5.")
    if n_boot < 0:
        raise FairauditError("n_boot must be ≥ 0.")
    if not 0.0 < alpha < 1.0:
        raise FairauditError("alpha must lie strictly between 0 and 1.")
    if min_size < 1:
        raise FairauditError("min_size must be ≥ 1.")
    y, yhat = _labels_and_decisions(predictions, threshold)
    if not isinstance(attributes, pd.DataFrame):
        raise FairauditError("attributes must be a table (pandas DataFrame) with one row per prediction.")
    if len(attributes) != len(y) or len(yhat) != len(y):
        raise FairauditError(f"attributes have {len(attributes)} rows but there are {len(y)} labels and "
                             f"{len(yhat)} decisions; they must match one to one.")
    if len(y) == 0:
        raise FairauditError("there are no rows to slice.")
    if min_size > len(y):
        raise FairauditError(f"min_size {min_size} is larger than the data ({len(y)} rows), so no slice can be tested.")
    if METRICS[metric][2] and not set(np.unique(np.concatenate([y, yhat])).tolist()) <= {0, 1}:
        raise FairauditError(f"metric '{metric}' needs a binary target coded 0/1; the labels and decisions hold "
                             f"{sorted(set(np.unique(np.concatenate([y, yhat])).tolist()))[:6]}.")
    dev = resolve_device(device)
    codes, names, values = encode_attributes(attributes)
    n_attr = len(names)
    col_attr = np.repeat(np.arange(n_attr), [len(v) for v in values])
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])[:-1]])
    n_values = len(col_attr)
    x = torch.zeros(n_values, len(y), dtype=torch.float32, device=dev)  # one-hot values, transposed
    x.scatter_(0, torch.as_tensor((codes + offsets).T.copy(), device=dev), 1.0)
    d_np, e_np = _indicators(y, yhat, metric)
    d = torch.as_tensor(d_np, device=dev)
    e = torch.as_tensor(e_np, device=dev)
    ones_de = torch.stack([torch.ones(len(y), device=dev), d.float(), e.float()])  # [3, N]
    weighted_x = (x.unsqueeze(0) * ones_de.unsqueeze(1)).reshape(3 * n_values, len(y))  # [3V, N]
    totals = torch.stack([d.sum(), e.sum()]).double()

    # Counts of every candidate slice, depth by depth (apriori: a slice smaller than min_size has no child tested).
    depth_cands, depth_counts = [], []
    parents = np.arange(n_values)[:, None]
    base = n_values + 1
    n_candidates = 0
    large_keys = None  # the keys of the previous depth's slices large enough to extend
    for depth in range(1, min(max_depth, n_attr) + 1):
        cand = parents if depth == 1 else _extend(parents, col_attr, large_keys, base)
        if len(cand) == 0:
            break
        cand_t = torch.as_tensor(cand, device=dev)
        counts = _slice_counts(x, cand_t, weighted_x)  # [S, 3]: n, d, e
        n_candidates += len(cand)
        large = (counts[:, 0] >= min_size).cpu().numpy()
        depth_cands.append(cand_t)
        depth_counts.append(counts)
        parents = cand[large]
        large_keys = _keys(parents, base)
    cand_all = [c for c in depth_cands]
    counts = torch.cat(depth_counts)  # [S, 3]
    n_s, d_s, e_s = counts[:, 0], counts[:, 1], counts[:, 2]
    d_c, e_c = totals[0] - d_s, totals[1] - e_s
    tested = (n_s >= min_size) & (d_s > 0) & (d_c > 0)
    tested_np = tested.cpu().numpy()
    m = int(tested_np.sum())
    value = e_s / d_s
    comp = e_c / d_c
    gap = value - comp
    p = _z_pvalue(e_s, d_s, e_c, d_c)

    ci = None
    if n_boot and m:
        gen = make_generator(seed, dev)
        if method == "cells":
            reps = _boot_cells(torch.stack([d_s, e_s], 1)[tested], totals, n_boot, gen)
        else:
            blocks, s0 = [], 0
            for c in cand_all:
                blocks.append(c[tested[s0:s0 + len(c)]])
                s0 += len(c)
            reps = _boot_rows(x, blocks, d.float(), e.float(), n_boot, gen)
        tail = alpha / 2
        q = torch.tensor([tail, 1 - tail], dtype=torch.float32, device=dev)
        ci = torch.cat([torch.nanquantile(reps[:, i:i + 4096], q, dim=0) for i in range(0, reps.shape[1], 4096)],
                       1).T.double().cpu().numpy()  # [m, 2]

    # Everything below is per tested slice on the host (no resamples involved).
    cand_np = np.full((len(counts), max(len(c[0]) for c in cand_all) if cand_all else 1), -1, dtype=np.int64)
    s0 = 0
    for c in cand_all:
        cand_np[s0:s0 + len(c), :c.shape[1]] = c.cpu().numpy()
        s0 += len(c)
    idx = np.flatnonzero(tested_np)
    p_t = p.cpu().numpy()[idx]
    q_t = benjamini_hochberg(p_t)
    sig = q_t <= alpha
    n_h, d_h, e_h = (t.cpu().numpy() for t in (n_s, d_s, e_s))
    gap_h, val_h, comp_h = (t.cpu().numpy() for t in (gap, value, comp))

    def conditions(row: np.ndarray) -> dict:
        return {names[col_attr[c]]: values[col_attr[c]][c - offsets[col_attr[c]]] for c in row if c >= 0}

    # Implied slices: compared with the rest of each significant, more general slice of the same gap sign.
    key_of = {tuple(int(c) for c in cand_np[i] if c >= 0): j for j, i in enumerate(idx)}
    implied = [None] * len(idx)
    for j in np.flatnonzero(sig):
        i = idx[j]
        row = tuple(int(c) for c in cand_np[i] if c >= 0)
        for k in range(1, len(row)):
            for sub in itertools.combinations(row, k):
                g = key_of.get(sub)
                if g is None or not sig[g] or np.sign(gap_h[idx[g]]) != np.sign(gap_h[i]):
                    continue
                pi = idx[g]
                rest_d, rest_e = d_h[pi] - d_h[i], e_h[pi] - e_h[i]
                if rest_d <= 0:
                    same = True
                else:
                    same = _z_pvalue_scalar(e_h[i], d_h[i], rest_e, rest_d) > alpha
                if same:
                    implied[j] = conditions(np.array(sub))
                    break
            if implied[j] is not None:
                break

    order = sorted(range(len(idx)), key=lambda j: (not sig[j], implied[j] is not None, -abs(gap_h[idx[j]]), p_t[j]))
    slices = []
    for j in order:
        if prune and implied[j] is not None:
            continue
        i = idx[j]
        slices.append({"slice": conditions(cand_np[i]), "n": int(n_h[i]), "value": _num(val_h[i]),
                       "complement": _num(comp_h[i]), "gap": _num(gap_h[i]),
                       "ci": [_num(ci[j, 0]), _num(ci[j, 1])] if ci is not None else None,
                       "p_value": _num(p_t[j]), "q_value": _num(q_t[j]), "significant": bool(sig[j]),
                       "implied_by": implied[j]})
        if top is not None and len(slices) >= top:
            break
    meta = {"n_rows": int(len(y)), "attributes": names, "max_depth": int(max_depth), "min_size": int(min_size),
            "n_boot": int(n_boot), "seed": int(seed), "method": method, "n_candidates": int(n_candidates),
            "n_significant": int(sig.sum()), "n_implied": int(sum(v is not None for v in implied)),
            "p_value": "pooled two-proportion z-test, slice vs complement", "correction": "Benjamini-Hochberg",
            "device": str(dev), "seconds": round(time.perf_counter() - started, 3)}
    return SliceReport(metric=metric, n_slices_tested=m, alpha=float(alpha), slices=slices, meta=meta)


def _num(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None
