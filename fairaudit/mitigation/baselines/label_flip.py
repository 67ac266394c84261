"""``label_flip``: relabel training samples until every group has the same base rate, then retrain.

This is Kamiran & Calders' *massaging* (2012), the label-flipping mitigation of
the thesis (Cherepanova 2023, ch. 6, "flip labels"). With ``r`` the positive
rate of the whole train split and ``r_g`` that of group ``g`` (``n_g``
samples), group ``g`` needs ``rate · (r − r_g) · n_g`` flips:

* a group below ``r`` gets that many *negatives promoted* to the positive label,
  those the deployed model scores highest, i.e. closest to its decision
  boundary;
* a group above ``r`` gets its lowest-scored *positives demoted*.

With ``rate = 1`` every group ends at ``r`` (for two groups this is exactly
massaging's ``M = (r_fav − r_dep)·n_dep·n_fav / n`` flips in each direction,
which keeps the overall rate); smaller rates close that fraction of the gap.
``selection="random"`` flips random members of the same cells instead (the
thesis' random flipping). Binary targets only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fairaudit.audit.inference import predict
from fairaudit.data.base import FairDataset
from fairaudit.errors import FairauditError
from fairaudit.mitigation.base import MethodContext, MitigationMethod, MitigationResult, register_method
from fairaudit.mitigation.baselines.common import (RelabeledDataset, RetrainConfig, base_rates, group_codes,
                                                   group_name, in_memory, retrain, setting)

__all__ = ["LabelFlip", "massage_labels"]


def massage_labels(targets: np.ndarray, groups: np.ndarray, n_groups: int, scores: np.ndarray | None,
                   rate: float = 1.0, positive: int = 1,
                   rng: np.random.Generator | None = None) -> tuple[np.ndarray, dict[int, int]]:
    """Flipped copy of binary ``targets`` and the signed number of flips per group (+ promoted, − demoted).

    ``scores`` are the ranker's ``P(y = positive)``; ``None`` picks random
    members of each cell (``rng``).
    """
    targets = np.asarray(targets)
    flipped = targets.copy()
    overall = float((targets == positive).mean())
    rates = base_rates(targets, groups, n_groups, positive)
    changes: dict[int, int] = {}
    rng = rng or np.random.default_rng(0)
    for g in range(n_groups):
        members = groups == g
        if not members.any():
            continue
        wanted = int(round(rate * (overall - rates[g]) * int(members.sum())))
        if wanted == 0:
            continue
        label = positive if wanted < 0 else 1 - positive  # the label that is given away
        pool = np.flatnonzero(members & (targets == label))
        if scores is None:
            order = rng.permutation(pool)
        else:
            # Promote the negatives scored most positive; demote the positives scored least positive.
            key = scores[pool] if wanted < 0 else -scores[pool]
            order = pool[np.argsort(key, kind="stable")]
        chosen = order[:abs(wanted)]
        flipped[chosen] = 1 - label
        changes[g] = int(np.sign(wanted)) * len(chosen)
    return flipped, changes


@dataclass
class LabelFlipConfig(RetrainConfig):
    """Label-flipping (massaging) settings."""

    rate: float = setting(1.0, "fraction of each group's gap to the overall positive rate closed by flipping "
                               "(1 = equal train base rates)")
    selection: str = setting("boundary", "'boundary': flip the samples the deployed model scores closest to "
                                         "the decision boundary (massaging); 'random': random samples of the cell")

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.rate <= 1.0:
            raise FairauditError(f"setting 'rate' must lie in [0, 1], got {self.rate}.")
        if self.selection not in ("boundary", "random"):
            raise FairauditError(f"setting 'selection' must be 'boundary' or 'random', got '{self.selection}'.")


def _favorable(ds: FairDataset) -> int:
    return int(getattr(ds, "favorable_label", 1))


@register_method
class LabelFlip(MitigationMethod):
    name = "label_flip"
    summary = ("Massaging / label flipping (Kamiran & Calders; thesis ch. 6): flip the train labels nearest the "
               "deployed model's decision boundary until every group has the same base rate, then retrain.")
    Config = LabelFlipConfig
    controls = {"erm": "erm"}  # plain retraining of the same architecture with the same budget
    target_metrics = ("spd",)

    def run(self, ctx: MethodContext, config: LabelFlipConfig) -> MitigationResult:
        train_ds = ctx.load_split("train")
        if train_ds.num_classes != 2:
            raise FairauditError(f"label flipping needs a binary target; '{train_ds.target}' has "
                                 f"{train_ds.num_classes} classes.")
        positive = _favorable(train_ds)
        groups, n_groups = group_codes(train_ds)
        scores = None
        if config.selection == "boundary":
            scores = predict(ctx.model, train_ds, device=ctx.device).probs[:, positive]
        flipped, changes = massage_labels(train_ds.targets, groups, n_groups, scores, config.rate, positive,
                                          np.random.default_rng(ctx.seed))
        model, history = retrain(ctx, config, RelabeledDataset(in_memory(train_ds, ctx.device), flipped))
        before = base_rates(train_ds.targets, groups, n_groups, positive)
        after = base_rates(flipped, groups, n_groups, positive)
        stats = {
            "train_samples": len(train_ds), "flipped": int((flipped != train_ds.targets).sum()),
            "selection": config.selection, "rate": config.rate,
            "groups": [{"group": group_name(g, train_ds), "n": int((groups == g).sum()),
                        "base_rate_before": _float(before[g]), "base_rate_after": _float(after[g]),
                        "flips": changes.get(g, 0)} for g in range(n_groups)],
            "base_rate_gap_before": _gap(before), "base_rate_gap_after": _gap(after),
        }
        return MitigationResult(after_model=model, history=history, stats=stats)


def _float(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _gap(rates: np.ndarray) -> float:
    present = rates[~np.isnan(rates)]
    return float(present.max() - present.min()) if len(present) else 0.0
