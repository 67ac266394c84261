"""Two label-changing baselines: ``label_flip`` (the thesis' random flips) and ``massaging``.

``label_flip`` (Cherepanova 2023, thesis §6.6, after Chang et al. 2020)
trains a fresh model on labels of which a fraction ``p`` of the *advantaged*
group's training samples (the group the deployed model is most accurate on,
or the one named by ``flip_group``) is flipped at random: to ``1 − y`` for a
binary target, to a uniformly drawn other class otherwise. The flipped
samples are drawn again in every epoch. The noise costs the advantaged group
accuracy and is meant to narrow the accuracy gap between groups (accuracy
equality, Eq. 6.1); the thesis found it to work on face recognition
(ResNet-152, p = 0.5: gap 2.1 → 0.3 points) and to be unreliable on CheXpert.
The other groups' labels are never changed. The default ``p = 0.5`` makes
the advantaged group's labels carry no information in any one epoch, so the
shared model serves the other groups' rule; with ``p < 0.5`` the most likely
label of every advantaged sample is still its own, and on Adult (sex) the
accuracy gap stayed where ERM leaves it.

``massaging`` (Kamiran & Calders 2012) relabels training samples until every
group has the same base rate, then retrains (aimed at demographic parity).
With ``r`` the positive rate of the whole train split and ``r_g`` that of
group ``g`` (``n_g`` samples), group ``g`` needs ``rate · (r − r_g) · n_g``
flips:

* a group below ``r`` gets that many *negatives promoted* to the positive label,
  those the deployed model scores highest, i.e. closest to its decision
  boundary;
* a group above ``r`` gets its lowest-scored *positives demoted*.

With ``rate = 1`` every group ends at ``r`` (for two groups this is exactly
massaging's ``M = (r_fav − r_dep)·n_dep·n_fav / n`` flips in each direction,
which keeps the overall rate); smaller rates close that fraction of the gap.
``selection="random"`` flips random members of the same cells instead. Binary
targets only. Before ``massaging`` had its own name it was registered as
``label_flip``; runs recorded under that name with massaging's settings
(``rate``, ``selection``) load as ``massaging``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from fairaudit.audit.inference import predict
from fairaudit.data.base import FairDataset
from fairaudit.errors import FairauditError
from fairaudit.mitigation.base import (FIT_SPLITS, TEST_SPLIT_REFUSED, MethodContext, MitigationMethod,
                                       MitigationResult, fit_split, register_method, register_rename)
from fairaudit.mitigation.baselines.common import (RelabeledDataset, RetrainConfig, base_rates, favorable_label,
                                                   group_codes, group_name, in_memory, retrain, setting)

__all__ = ["LabelFlip", "LabelFlipConfig", "Massaging", "MassagingConfig", "EpochFlips", "massage_labels",
           "advantaged_group"]


# ---------------------------------------------------------------------------- label_flip (thesis §6.6)

class EpochFlips:
    """Labels of one epoch: a fresh random ``p`` of ``members`` flipped, drawn again whenever an epoch starts.

    ``labels(index)`` returns the (possibly flipped) labels of the samples
    ``index`` of the current epoch; the epoch advances after ``len(targets)``
    samples, i.e. after one pass of the training loop over the split. Epoch
    ``e``'s draw depends only on ``(seed, e)``, so a resumed run (``epoch``
    set to the epoch it resumes at) flips the same samples it would have.
    """

    def __init__(self, targets: np.ndarray, members: np.ndarray, p: float, n_classes: int, seed: int = 0,
                 epoch: int = 0):
        self.targets = np.asarray(targets, dtype=np.int64)
        self.members = np.asarray(members, dtype=np.int64)
        self.n_flip = int(round(p * len(self.members)))
        self.n_classes = int(n_classes)
        self.seed = int(seed)
        self.start = int(epoch)
        self.epoch: int | None = None
        self.seen = 0
        self.current = self.targets

    def draw(self, epoch: int) -> np.ndarray:
        """The labels of ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch])
        chosen = rng.choice(self.members, size=self.n_flip, replace=False)
        labels = self.targets.copy()
        # A uniformly drawn *other* class: shift by 1..C-1 (for two classes, 1 - y).
        shift = rng.integers(1, self.n_classes, size=len(chosen))
        labels[chosen] = (labels[chosen] + shift) % self.n_classes
        return labels

    def labels(self, index: np.ndarray) -> np.ndarray:
        epoch = self.start + self.seen // len(self.targets)
        if epoch != self.epoch:
            self.epoch, self.current = epoch, self.draw(epoch)
        self.seen += len(index)
        return self.current[index]


def advantaged_group(accuracy: Mapping[int, float]) -> int:
    """The group with the highest accuracy (the first of a tie)."""
    return max(accuracy, key=lambda g: (accuracy[g], -g))


def _parse_group(name: str, ds: FairDataset, n_groups: int) -> int:
    names = [group_name(g, ds) for g in range(n_groups)]
    bare = [n.split("=", 1)[1] for n in names] if len(ds.sensitive) == 1 else []
    if name in names:
        return names.index(name)
    if name in bare:
        return bare.index(name)
    raise FairauditError(f"setting 'flip_group' must be 'auto' or one of the groups {', '.join(names)}; "
                         f"got '{name}'.")


@dataclass
class LabelFlipConfig(RetrainConfig):
    """Random label flipping of the advantaged group (thesis §6.6)."""

    # 0.5 is the thesis' face-recognition setting. Below 0.5 a flip only softens the advantaged group's targets
    # (the most likely label stays the same), and on Adult p = 0.3 left the accuracy gap where ERM has it.
    p: float = setting(0.5, "fraction of the advantaged group's training labels flipped at random, drawn again "
                            "every epoch (the thesis tried 0.1–0.5 on face recognition, 0.01–0.1 on CheXpert)",
                       min=0, max=1)
    flip_group: str = setting("auto", "whose labels are flipped: 'auto' (the group the deployed model is most "
                                      "accurate on, measured on accuracy_split) or a group such as 'sex=Male'")
    accuracy_split: str = setting("val", "split on which flip_group=auto measures the deployed model's "
                                         "per-group accuracy: 'val' (the train split for a dataset without one) "
                                         "or 'train'", choices=FIT_SPLITS, refuse=TEST_SPLIT_REFUSED)

    def validate(self) -> None:
        """A group name is known only with the dataset (checked when the run starts); here: not empty."""
        super().validate()
        if not self.flip_group.strip():
            raise FairauditError("setting 'flip_group' must be 'auto' or a group name, got an empty string.")


def _group_accuracy(model, ds: FairDataset, device) -> dict[int, float]:
    preds = predict(model, ds, device=device)
    groups, n_groups = group_codes(ds)
    correct = preds.predictions() == ds.targets
    return {g: float(correct[groups == g].mean()) for g in range(n_groups) if (groups == g).any()}



@register_method
class LabelFlip(MitigationMethod):
    name = "label_flip"
    summary = ("Random label flipping (thesis §6.6, after Chang et al. 2020): retrain with a random fraction p "
               "of the advantaged group's labels flipped, drawn again every epoch, to narrow the accuracy gap "
               "between groups.")
    Config = LabelFlipConfig
    controls = {"erm": "erm"}  # plain retraining of the same architecture with the same budget
    target_metrics = ("aed",)

    def run(self, ctx: MethodContext, config: LabelFlipConfig) -> MitigationResult:
        train_ds = ctx.load_split("train")
        groups, n_groups = group_codes(train_ds)
        accuracy: dict[int, float] = {}
        if config.flip_group == "auto":
            split = "train" if config.accuracy_split == "train" else fit_split(ctx, config.accuracy_split,
                                                                                 "label_flip", "accuracy_split")
            reference = train_ds if split == "train" else ctx.load_split(split, stage="group_accuracy")
            accuracy = _group_accuracy(ctx.model, reference, ctx.device)
            flip = advantaged_group(accuracy)
        else:
            split = None
            flip = _parse_group(config.flip_group, train_ds, n_groups)
        members = np.flatnonzero(groups == flip)
        if len(members) == 0:
            raise FairauditError(f"the group '{group_name(flip, train_ds)}' has no training samples to flip.")
        flips = EpochFlips(train_ds.targets, members, config.p, train_ds.num_classes, ctx.seed,
                           epoch=ctx.checkpoint_epoch())

        def step(model: nn.Module, batch: tuple):
            x, index = batch[0], batch[3]
            index = np.asarray(torch.as_tensor(index).cpu(), dtype=np.int64)
            y = torch.as_tensor(flips.labels(index), device=x.device)
            return nn.functional.cross_entropy(model(x), y)

        model, history = retrain(ctx, config, in_memory(train_ds, ctx.device), step_fn=step)
        stats = {
            "train_samples": len(train_ds), "p": config.p, "flip_group": group_name(flip, train_ds),
            "flip_group_samples": int(len(members)), "flipped_per_epoch": flips.n_flip,
            "accuracy_split": split,
            "deployed_group_accuracy": {group_name(g, train_ds): a for g, a in accuracy.items()} or None,
        }
        return MitigationResult(after_model=model, history=history, stats=stats)


# ---------------------------------------------------------------------------- massaging (Kamiran & Calders)

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
class MassagingConfig(RetrainConfig):
    """Massaging settings."""

    rate: float = setting(1.0, "fraction of each group's gap to the overall positive rate closed by flipping "
                               "(1 = equal train base rates)", min=0, max=1)
    selection: str = setting("boundary", "'boundary': flip the samples the deployed model scores closest to "
                                         "the decision boundary (massaging); 'random': random samples of the cell",
                             choices=("boundary", "random"))


@register_method
class Massaging(MitigationMethod):
    name = "massaging"
    summary = ("Massaging (Kamiran & Calders 2012): flip the train labels nearest the deployed model's decision "
               "boundary until every group has the same base rate, then retrain.")
    Config = MassagingConfig
    controls = {"erm": "erm"}  # plain retraining of the same architecture with the same budget
    target_metrics = ("spd",)

    def run(self, ctx: MethodContext, config: MassagingConfig) -> MitigationResult:
        train_ds = ctx.load_split("train")
        if train_ds.num_classes != 2:
            raise FairauditError(f"massaging needs a binary target; '{train_ds.target}' has "
                                 f"{train_ds.num_classes} classes.")
        positive = favorable_label(train_ds)
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


def _massaging_record(recorded: Mapping[str, Any]) -> str | None:
    """Records of ``label_flip`` made before massaging was renamed carry massaging's settings."""
    return "massaging" if {"rate", "selection"} & set(recorded) else None


register_rename("label_flip", _massaging_record)


def _float(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _gap(rates: np.ndarray) -> float:
    present = rates[~np.isnan(rates)]
    return float(present.max() - present.min()) if len(present) else 0.0
