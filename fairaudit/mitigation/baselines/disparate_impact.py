"""``dir``: Feldman et al.'s Disparate Impact Remover, then retraining.

Feldman, Friedler, Moeller, Scheidegger and Venkatasubramanian, "Certifying and
removing disparate impact" (KDD 2015), §5. For one numeric feature, let
``F_g`` be its distribution function within sensitive group ``g`` and
``F_g⁻¹`` the matching quantile function. The *median distribution* ``A`` has
the quantile function

    F_A⁻¹(u) = median_g F_g⁻¹(u)

(for two groups, the mean of the two quantile functions: their 1-D Wasserstein
barycentre). The full repair maps a value ``x`` of a member of group ``g`` to
the value at the same quantile of ``A``,

    x̄ = F_A⁻¹(F_g(x)),

so every group ends with the same distribution of the feature, and the
partial ("geometric") repair of level λ ∈ [0, 1] moves it that fraction of
the way:

    x̄_λ = (1 − λ)·x + λ·F_A⁻¹(F_g(x)).

λ = 0 leaves the data as it is, λ = 1 removes every difference between the
groups' distributions of the feature. Both maps are non-decreasing in ``x``,
so within each group the order of the rows by the feature is kept (that is
what lets the repaired data keep the information a classifier needs); for
λ < 1 strictly.

Here ``F_g(x)`` is the mid-rank quantile ``(rank − ½)/n_g`` of ``x`` among the
``n_g`` members of ``g`` (ranks 1 … n_g) and ``F_g⁻¹`` its inverse: the
empirical quantile interpolated linearly between the plotting positions
``(k − ½)/n_g`` of the sorted values (Hazen's definition), so that
``F_g⁻¹(F_g(x)) = x``. Tied values (hours per week, years of education) are
ranked in a seeded random order, so a block of equal values is spread over
its quantiles: with one shared rank a group's mass at "40 hours" would stay
one mass point and the groups could not end with the same distribution.
Unequal values keep their order.

On tabular data only the numeric (standardised) features are repaired; one-hot
categorical blocks stay as they are, so every row keeps valid categories, and
the sensitive attribute itself is not an input. The method repairs the
training split, retrains a fresh model of the deployed architecture on it, and
predicts on test rows repaired with the training split's ``F_g`` and ``F_A⁻¹``
(:class:`QuantileRepair`, :class:`RepairedPredictions`): like Feldman et al.,
it repairs the data the classifier is applied to, which needs each row's
group. (A model trained on repaired rows but given raw test rows moved the
bias the other way on Adult: the repair lowers one group's values and raises
the other's, and the raw rows undo that.)

The repair is written with numpy because the maintained toolboxes do not
offer it without an unmaintained dependency: AIF360's ``DisparateImpactRemover``
delegates to the ``BlackBoxAuditing`` package, last released in 2019. That
implementation bins numeric values, takes the lower of two medians (so with
two groups it maps both onto one group's distribution) and moves a partial
repair along the values present in the data; here the median of two is their
mean, which does not depend on how the groups are coded, and the partial
repair is the geometric mix above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fairaudit.audit.inference import Predictions, predict
from fairaudit.data.base import FairDataset, TensorFairDataset
from fairaudit.errors import FairauditError
from fairaudit.mitigation.base import MethodContext, MitigationMethod, MitigationResult, register_method
from fairaudit.mitigation.baselines.common import (CachedDataset, RetrainConfig, group_codes, in_memory, retrain,
                                                   setting)

__all__ = ["DisparateImpactRemover", "QuantileRepair", "RepairedPredictions", "check_repair_level",
           "mid_rank_quantiles", "numeric_columns", "repair_stats", "repair_values"]


def check_repair_level(level: float, name: str = "repair_level") -> None:
    """Refuse a repair level outside [0, 1] (λ of the partial repair)."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 <= float(level) <= 1.0:
        raise FairauditError(f"setting '{name}' must be a number in [0, 1] (0: no repair, 1: full repair), "
                             f"got {level!r}.")


def mid_rank_quantiles(values: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """``F(x) = (rank − ½)/n`` of every value among ``values``, ranks 1 … n.

    Tied values are ranked in a random order drawn from ``rng`` (in row order
    without one), so that a block of equal values is spread over its quantile
    range and the repaired groups can end with the same distribution. The
    order of unequal values is kept: ``x_i < x_j`` gives ``F(x_i) < F(x_j)``.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    tie_break = np.arange(n) if rng is None else rng.permutation(n)
    order = np.lexsort((tie_break, values))
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.arange(1, n + 1, dtype=np.float64)
    return (ranks - 0.5) / n


def _median_quantile(sorted_groups: list[np.ndarray], u: np.ndarray) -> np.ndarray:
    """F_A⁻¹(u) = median over the groups of each group's quantile at ``u``."""
    return np.median(np.stack([np.quantile(s, u, method="hazen") for s in sorted_groups]), axis=0)


def repair_values(values: np.ndarray, groups: np.ndarray, level: float,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """One feature repaired towards the median distribution of its groups: ``(1 − λ)·x + λ·F_A⁻¹(F_g(x))``.

    ``rng`` breaks ties in ``F_g`` (see :func:`mid_rank_quantiles`).
    """
    check_repair_level(level)
    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups)
    if level == 0:
        return values.copy()
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    sorted_values = [np.sort(values[m]) for m in members]
    repaired = values.copy()
    for m in members:
        target = _median_quantile(sorted_values, mid_rank_quantiles(values[m], rng))
        repaired[m] = (1.0 - level) * values[m] + level * target
    return repaired


class QuantileRepair:
    """The repair of :func:`repair_values` fitted on training rows, applicable to new rows.

    ``fit_transform`` repairs the training rows themselves (ties spread at
    random, so each group ends with the median distribution); ``transform``
    maps new rows of a known group through that group's training distribution
    function, ``F_g(x)`` read off the training values by linear interpolation
    (a value tied with training values gets the middle of their quantiles;
    outside the training range, the end quantiles), then through the same
    ``F_A⁻¹`` and mixing with λ. Both maps are non-decreasing in ``x`` within a
    group. A group without training rows keeps its values.
    """

    def __init__(self, columns, level: float, seed: int = 0):
        check_repair_level(level)
        self.columns, self.level, self.seed = [int(j) for j in columns], float(level), int(seed)
        self._sorted: dict[int, dict[int, np.ndarray]] = {}

    def fit_transform(self, x: np.ndarray, groups: np.ndarray) -> np.ndarray:
        x, groups = np.asarray(x), np.asarray(groups)
        out = np.array(x, dtype=np.float64, copy=True)
        rng = np.random.default_rng(self.seed)
        present = np.unique(groups)
        for j in self.columns:
            self._sorted[j] = {int(g): np.sort(out[groups == g, j]) for g in present}
            out[:, j] = repair_values(out[:, j], groups, self.level, rng)
        return out.astype(x.dtype, copy=False)

    def transform(self, x: np.ndarray, groups: np.ndarray) -> np.ndarray:
        if not self._sorted:
            raise FairauditError("the disparate-impact repair must be fitted on training rows before it is applied.")
        x, groups = np.asarray(x), np.asarray(groups)
        out = np.array(x, dtype=np.float64, copy=True)
        if self.level == 0:
            return out.astype(x.dtype, copy=False)
        for j in self.columns:
            fitted = self._sorted[j]
            sorted_groups = list(fitted.values())
            for g, train_values in fitted.items():
                rows = np.flatnonzero(groups == g)
                if not len(rows):
                    continue
                uniq, first = np.unique(train_values, return_index=True)
                last = np.append(first[1:], len(train_values))
                u = np.interp(out[rows, j], uniq, (first + last) / (2.0 * len(train_values)))
                out[rows, j] = (1.0 - self.level) * out[rows, j] + self.level * _median_quantile(sorted_groups, u)
        return out.astype(x.dtype, copy=False)


class RepairedPredictions:
    """Callable ``(dataset) -> Predictions``: ``model`` on the dataset's rows after the fitted repair.

    The repair reads each row's sensitive group (as Feldman et al. repair the
    test data as well as the training data); ``model`` alone, trained on
    repaired rows, is what an attack targets.
    """

    def __init__(self, model, repair: QuantileRepair, device="cpu"):
        self.model, self.repair, self.device = model, repair, device

    def repaired(self, ds: FairDataset) -> TensorFairDataset:
        """``ds`` with its numeric features repaired (same rows, attributes and order)."""
        if not isinstance(ds, TensorFairDataset):
            raise FairauditError(f"the disparate-impact repair needs tabular rows in memory; '{ds.name}' is not.")
        groups, _ = group_codes(ds)
        x = torch.from_numpy(self.repair.transform(ds.x.numpy(), groups))
        view = TensorFairDataset(ds.name, ds.split, x, ds.attributes, ds.value_names, ds.target, ds.sensitive,
                                 kind=ds.kind, feature_names=ds.feature_names)
        for name in ("feature_groups", "numeric_features", "categorical_features", "favorable_label"):
            if hasattr(ds, name):
                setattr(view, name, getattr(ds, name))
        return view

    def __call__(self, ds: FairDataset) -> Predictions:
        preds = predict(self.model, self.repaired(ds), device=self.device)
        preds.meta = {**preds.meta, "preprocessing": f"disparate-impact repair (level {self.repair.level:g})"}
        return preds


def numeric_columns(ds: FairDataset, method: str = "DIR") -> list[int]:
    """Indices of the numeric feature columns of a tabular split (DIR repairs these and only these)."""
    if ds.kind != "tabular":
        raise FairauditError(f"{method} repairs numeric tabular features, but '{ds.name}' is {ds.kind} data.")
    groups = getattr(ds, "feature_groups", None) or {}
    columns = sorted(j for name in getattr(ds, "numeric_features", []) for j in groups.get(name, []))
    if not columns:
        raise FairauditError(f"{method} repairs numeric features, and '{ds.name}' has none.")
    return columns


def _ks_gap(values: np.ndarray, groups: np.ndarray) -> float:
    """Largest Kolmogorov–Smirnov distance between two groups' distributions of one feature."""
    from scipy.stats import ks_2samp

    parts = [values[groups == g] for g in np.unique(groups)]
    return max((float(ks_2samp(a, b).statistic) for i, a in enumerate(parts) for b in parts[i + 1:]), default=0.0)


def repair_stats(before: np.ndarray, after: np.ndarray, groups: np.ndarray, columns, names) -> list[dict]:
    """Per repaired feature, the largest between-group KS distance before and after the repair."""
    return [{"feature": names[j], "ks_before": _ks_gap(before[:, j], groups), "ks_after": _ks_gap(after[:, j], groups)}
            for j in columns]


@dataclass
class DirConfig(RetrainConfig):
    """Disparate Impact Remover settings."""

    repair_level: float = setting(1.0, "λ of the repair (Feldman et al. §5): 0 keeps the features, 1 gives every "
                                       "group the median distribution of each numeric feature",
                                  min=0, max=1)


@register_method
class DisparateImpactRemover(MitigationMethod):
    name = "dir"
    summary = ("Disparate Impact Remover (Feldman et al.): move each numeric feature's per-group distribution "
               "towards the groups' median distribution by quantile mapping (rank order kept), then retrain.")
    Config = DirConfig
    kinds = ("tabular",)
    controls = {"erm": "erm"}  # plain retraining of the same architecture with the same budget
    target_metrics = ("spd",)

    def run(self, ctx: MethodContext, config: DirConfig) -> MitigationResult:
        train_ds = ctx.load_split("train")
        columns = numeric_columns(train_ds)
        groups, _ = group_codes(train_ds)
        x = in_memory(train_ds, ctx.device).x.numpy()
        repair = QuantileRepair(columns, config.repair_level, ctx.seed)
        repaired = repair.fit_transform(x, groups)
        data = CachedDataset(torch.from_numpy(repaired), train_ds.targets, train_ds.sensitive_codes)
        model, history = retrain(ctx, config, data)
        names = train_ds.feature_names or [str(j) for j in range(x.shape[1])]
        stats = {"train_samples": len(train_ds), "repair_level": config.repair_level,
                 "repaired_features": repair_stats(x, repaired, groups, columns, names)}
        return MitigationResult(after_predictions=RepairedPredictions(model, repair, ctx.device), history=history,
                                stats=stats)
