"""Every metric, derived from one confusion tensor.

A confusion tensor has shape ``[..., G, C, C]``: optional leading batch
dimensions (bootstrap resamples), ``G`` groups and a ``C × C`` matrix per group
with rows = true class and columns = predicted class. :func:`summarize` turns
it into per-group rates, overall scores and disparities; the point estimate and
every bootstrap replicate go through the same code, so they cannot disagree.

Conventions (JSON names; README's Metrics section defines each):

* Binary targets: class 1 is the favourable / positive class.
* Multiclass targets (``C > 2``): each rate is computed one-vs-rest for every
  class; the per-group table holds the mean over classes (accuracy and
  balanced accuracy stay the plain multiclass scores) and each disparity is
  the mean over classes of the one-vs-rest disparity (DLFS convention).
  ``worst_group_accuracy`` stays the minimum plain accuracy over groups.
  ``bias_sum`` (AEDA's model bias) is the one sum over classes: see
  :func:`aeda_bias`.
* Multiclass base and selection rates are per class only. Every sample has
  exactly one true and one predicted class, so the mean over classes of the
  one-vs-rest base rate or selection rate is ``1/C`` in every group and says
  nothing; the per-group table holds NaN there, and the meaningful figures
  are the per-class rates ``P(y = c | group)`` and ``P(ŷ = c | group)`` (the
  group's distribution of true and predicted classes, ``group_per_class``),
  whose gaps over groups are the per-class ``spd`` (multiclass demographic
  parity asks each of them to be equal across groups).
* A rate whose denominator is zero (e.g. TPR of a group without positives) is
  NaN. A gap between groups (max − min, or the min / max ratio) needs at
  least two groups that define the rate; with fewer it is NaN (undefined,
  ``null`` in JSON), not 0: one group cannot be unfair to no other. Groups
  that do not define a rate are left out of its max/min; a mean over classes
  ignores the classes where the gap is undefined and is NaN only when it is
  undefined in every class. Combinations of two gaps (``deo``, ``eo_max``,
  ``aaod``) are NaN when either gap is NaN. ``worst_group_accuracy`` is a
  minimum, not a gap: one group defines it.
"""

from __future__ import annotations

import torch

PER_GROUP_METRICS: tuple[str, ...] = (
    "base_rate", "selection_rate", "accuracy", "balanced_accuracy",
    "tpr", "fpr", "fnr", "tnr", "ppv", "npv",
)
"""Names of the rates reported for every group, in display order."""

DISPARITY_NAMES: tuple[str, ...] = (
    "spd", "deo", "eo_max", "eod", "aaod", "aed", "dp_ratio", "bias_score", "worst_group_accuracy", "bias_sum",
)
"""JSON names of the disparities (README's Metrics section defines each)."""

OVERALL_METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "bacc_cells")
"""Whole-population scores; ``bacc_cells`` is AEDA's mean accuracy over (true class, group) cells."""


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` with NaN where the denominator is zero (an undefined rate, not an infinite one)."""
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), torch.nan)


def nan_extrema(x: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum and maximum along ``dim`` ignoring NaN (NaN when the whole slice is NaN)."""
    missing = torch.isnan(x)
    lo = torch.where(missing, torch.inf, x).amin(dim)
    hi = torch.where(missing, -torch.inf, x).amax(dim)
    empty = missing.all(dim)
    return lo.masked_fill(empty, torch.nan), hi.masked_fill(empty, torch.nan)


MIN_GROUPS_FOR_GAP = 2
"""A gap between groups is defined only when at least this many groups define the underlying rate."""

GAP_RATES: dict[str, tuple[str, ...]] = {
    "spd": ("selection_rate",), "deo": ("fnr", "fpr"), "eo_max": ("tpr", "fpr"), "eod": ("tpr",),
    "aaod": ("tpr", "fpr"), "aed": ("accuracy",), "dp_ratio": ("selection_rate",), "bias_score": ("selection_rate",),
    "bias_sum": ("tpr", "fpr"),
}
"""The per-group rates each between-group disparity compares (``worst_group_accuracy`` is no gap)."""


def between_groups(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum and maximum over groups (last axis) of the groups that define ``x``; both NaN when fewer than
    :data:`MIN_GROUPS_FOR_GAP` groups do."""
    lo, hi = nan_extrema(x)
    too_few = (~torch.isnan(x)).sum(-1) < MIN_GROUPS_FOR_GAP
    return lo.masked_fill(too_few, torch.nan), hi.masked_fill(too_few, torch.nan)


def one_vs_rest_counts(conf: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(tp, fn, fp, tn)`` per class, each ``[..., G, C]``, treating class ``c`` as positive."""
    tp = torch.diagonal(conf, dim1=-2, dim2=-1)
    actual = conf.sum(-1)
    predicted = conf.sum(-2)
    n = conf.sum((-2, -1)).unsqueeze(-1)
    fn = actual - tp
    fp = predicted - tp
    return tp, fn, fp, n - tp - fn - fp


def binary_rates(tp: torch.Tensor, fn: torch.Tensor, fp: torch.Tensor, tn: torch.Tensor) -> dict[str, torch.Tensor]:
    """The per-group rates of a binary problem from its four counts (any matching shapes)."""
    n = tp + fn + fp + tn
    pos, neg = tp + fn, fp + tn
    return {
        "base_rate": _ratio(pos, n),
        "selection_rate": _ratio(tp + fp, n),
        "accuracy": _ratio(tp + tn, n),
        "balanced_accuracy": torch.nanmean(torch.stack([_ratio(tp, pos), _ratio(tn, neg)]), 0),
        "tpr": _ratio(tp, pos),
        "fpr": _ratio(fp, neg),
        "fnr": _ratio(fn, pos),
        "tnr": _ratio(tn, neg),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
    }


def group_rates(conf: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """Per-group table ``{metric: [..., G]}`` and, for ``C > 2``, the one-vs-rest rates ``[..., G, C]``.

    Balanced accuracy is the mean recall over the classes present in the group
    (scikit-learn's ``balanced_accuracy_score``). For ``C > 2`` the table's
    ``base_rate`` and ``selection_rate`` are NaN: their mean over classes is
    ``1/C`` for every group, so only the per-class rates are reported.
    """
    n_classes = conf.shape[-1]
    tp, fn, fp, tn = one_vs_rest_counts(conf)
    accuracy = _ratio(tp.sum(-1), conf.sum((-2, -1)))
    balanced = torch.nanmean(_ratio(tp, tp + fn), -1)
    if n_classes == 2:
        table = binary_rates(tp[..., 1], fn[..., 1], fp[..., 1], tn[..., 1])
        per_class = None
    else:
        per_class = binary_rates(tp, fn, fp, tn)
        table = {name: torch.nanmean(rate, -1) for name, rate in per_class.items()}
        for name in ("base_rate", "selection_rate"):
            table[name] = torch.full_like(table[name], torch.nan)
    table["accuracy"] = accuracy
    table["balanced_accuracy"] = balanced
    return table, per_class


def overall_scores(conf: torch.Tensor) -> dict[str, torch.Tensor]:
    """Accuracy, balanced accuracy and ``bacc_cells`` of the pooled population, each ``[...]``."""
    pooled, _ = group_rates(conf.sum(-3, keepdim=True))
    tp = torch.diagonal(conf, dim1=-2, dim2=-1)
    cell_accuracy = _ratio(tp, conf.sum(-1))  # [..., G, C]: accuracy within each (group, true class) cell
    return {
        "accuracy": pooled["accuracy"].squeeze(-1),
        "balanced_accuracy": pooled["balanced_accuracy"].squeeze(-1),
        "bacc_cells": torch.nanmean(cell_accuracy.flatten(-2), -1),
    }


def disparities_from_rates(rates: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Between-group disparities from rates ``[..., G]`` (groups on the last axis).

    Each gap Δ is max − min over the groups that define the rate (fairlearn's
    ``between_groups``), NaN when fewer than two groups define it:
    ``spd = ΔSR``, ``dp_ratio = min SR / max SR``, ``deo = ΔFNR + ΔFPR`` (FAAP,
    sum form), ``eo_max = max(ΔTPR, ΔFPR)`` (fairlearn equalized-odds
    difference), ``aaod = ½(ΔTPR + ΔFPR)``, ``eod = ΔTPR``, ``aed = ΔACC``,
    ``bias_score = spd`` (FRoC Eq. 7), ``worst_group_accuracy = min ACC``
    (thesis Eq. 6.10).
    """
    def gap(name: str) -> torch.Tensor:
        lo, hi = between_groups(rates[name])
        return hi - lo

    sr_lo, sr_hi = between_groups(rates["selection_rate"])
    d_tpr, d_fpr, d_fnr = gap("tpr"), gap("fpr"), gap("fnr")
    spd = sr_hi - sr_lo
    return {
        "spd": spd,
        "deo": d_fnr + d_fpr,
        "eo_max": torch.maximum(d_tpr, d_fpr),
        "eod": d_tpr,
        "aaod": 0.5 * (d_tpr + d_fpr),
        "aed": gap("accuracy"),
        "dp_ratio": _ratio(sr_lo, sr_hi),
        "bias_score": spd,
        "worst_group_accuracy": nan_extrema(rates["accuracy"])[0],
    }


def aeda_bias(conf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """AEDA's model bias (Zhang & Sang 2020, Eq. 1 summed over the target classes): ``(bias_sum [...], terms
    [..., C])``.

    ``terms[t] = bias(θ, t)``, the gap over groups of the recall of class ``t``,
    ``P(ŷ = t | y = t, group)``, and ``bias_sum = Σ_t terms[t]``. For a
    multiclass target each term is the class's one-vs-rest ``eod``, so
    ``bias_sum = Σ_c eod_c`` (``C`` times the reported ``eod``); for a binary
    target it is ΔTPR + ΔTNR, equal to ``deo``. The sum is NaN when any class's
    term is undefined: leaving a class out would make the model look fairer.
    """
    recall = _ratio(torch.diagonal(conf, dim1=-2, dim2=-1), conf.sum(-1))  # [..., G, C]
    lo, hi = between_groups(recall.transpose(-1, -2))
    terms = hi - lo
    return terms.sum(-1), terms


def summarize(conf: torch.Tensor) -> dict[str, dict[str, torch.Tensor] | None]:
    """All metrics of a confusion tensor ``[..., G, C, C]`` (floating point).

    Returns ``{"groups": {metric: [..., G]}, "overall": {name: [...]},
    "disparities": {name: [...]}, "per_class": {name: [..., C]} or None,
    "group_per_class": {metric: [..., G, C]} or None}``; the ``per_class``
    entries are the disparities of each one-vs-rest problem (multiclass only;
    ``bias_sum``'s are its terms, see :func:`aeda_bias`).
    """
    table, ovr = group_rates(conf)
    if ovr is None:
        disparities = disparities_from_rates(table)
        per_class = None
    else:
        per_class = disparities_from_rates({k: v.transpose(-1, -2) for k, v in ovr.items()})
        disparities = {k: torch.nanmean(v, -1) for k, v in per_class.items()}
        disparities["worst_group_accuracy"] = nan_extrema(table["accuracy"])[0]
    disparities["bias_sum"], terms = aeda_bias(conf)
    if per_class is not None:
        per_class["bias_sum"] = terms
    return {
        "groups": table,
        "overall": overall_scores(conf),
        "disparities": disparities,
        "per_class": per_class,
        "group_per_class": ovr,
    }
