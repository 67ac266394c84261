"""``fair_penalty`` and ``minmax``: the in-processing fairness objectives of the thesis' chapter 6.

Both retrain a fresh model of the deployed architecture from scratch with a
changed loss; the groups are the intersections of the sensitive attributes.
Notation: ``L̂`` is the mean cross-entropy of a batch, ``L̂^a`` its mean over
the members of group ``a``, ``p_i`` the softmax probability of the favourable
class of sample ``i``, ``y_i ∈ {0, 1}`` whether its true label is favourable.

``fair_penalty`` minimises ``L̂ + α·penalty`` with one of three penalties:

* ``kind="eq_loss"`` — accuracy equality (Eq. 6.1) through its equal-loss
  surrogate, Eq. 6.2: ``|L̂^{a+} − L̂^{a−}|``, the gap between the groups' mean
  losses. Works for any number of classes.
* ``kind="eo"`` — the equalised-odds penalty (notion Eq. 6.3, objective
  Eqs. 6.4–6.6, after Padala & Gujar 2020): ``fpr + fnr`` with
  ``fpr = |Σ p_i(1−y_i)a_i / Σ a_i − Σ p_i(1−y_i)(1−a_i) / Σ(1−a_i)|`` and
  ``fnr`` the same with ``(1−p_i)y_i``. As printed, both terms are divided by
  the group's size, not by its number of negatives or positives: they are
  gaps of ``P(ŷ=1, y=0 | a)`` and ``P(ŷ=0, y=1 | a)`` on the scores, which
  equal the false-positive and false-negative rate gaps (up to the base rate)
  when the groups' base rates are equal. Where they differ, equalising the
  joint terms pulls the true rates apart (on Adult it raises ``deo``);
  ``eo_rates="conditional"`` divides by each group's number of negatives
  (``fpr``) and positives (``fnr``) instead, which relaxes the rates that
  equalised odds compares. Binary targets only.
* ``kind="di"`` — the disparate-impact penalty (notion Eq. 6.7, objective
  Eqs. 6.8–6.9): ``di = −min(r, 1/r)`` with ``r`` the ratio of the groups'
  mean ``p_i``; it is −1 at demographic parity and rises towards 0 as the
  mean scores drift apart. Binary targets only.

With more than two groups each gap is the largest minus the smallest group
value and ``di = −min_a m_a / max_a m_a`` (``m_a`` the group means), which
are the formulas above for two groups. Groups absent from a batch are left
out; a batch with fewer than two groups adds no penalty.

``penalty_split`` says where the penalty is measured. ``"train"`` (the
thesis' Table 6.1) evaluates it on the same training batch as ``L̂``: an
over-parameterised model can drive it to about zero by fitting the training
data while the gap on unseen data stays (the thesis' §6.4.1: "train fairness
is vacuous"). ``"val"`` (§6.4.2) evaluates it on batches of a held-out split
that ``L̂`` never sees: the dataset's ``val`` split, or, for a dataset without
one, ``holdout_fraction`` of the training split set aside at random (then
the model trains on the rest). The thesis found that this overfits too: the
penalty is driven down on the held-out data and the test gap can grow. The
result's statistics give the penalty measured after training on the whole
training split and on the held-out split (``final_penalty``) so the two can
be compared with the test split's gap.

``minmax`` is Max-Min fairness (Eq. 6.10, ``max min_a P(ŷ = y | a)``) trained
through Eq. 6.11, ``min max{L̂^{a+}, L̂^{a−}}``: with ``update="max"`` (the
thesis') every step minimises the mean loss of the group whose batch loss is
largest. ``update="exp_grad"`` replaces the hard max by the exponentiated-
gradient group weights of group DRO (Sagawa et al. 2020): weights ``q_a``
start uniform and after each batch become ``q_a ← q_a·exp(η·L̂^a)``,
normalised, and the step minimises ``Σ_a q_a·L̂^a``; ``η = step_size``
(``η → ∞`` is the hard max, ``η = 0`` a loss averaged over groups). The
weights are part of the checkpoint, so a resumed run continues with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from fairaudit.data import get_spec
from fairaudit.data.base import FairDataset
from fairaudit.errors import FairauditError
from fairaudit.mitigation.base import (FIT_SPLITS, TEST_SPLIT_REFUSED, MethodContext, MitigationMethod,
                                       MitigationResult, register_method)
from fairaudit.mitigation.baselines.common import (RetrainConfig, favorable_label, group_name, in_memory, retrain,
                                                   setting)
from fairaudit.train.variants import group_ids

__all__ = ["FairPenalty", "FairPenaltyConfig", "MinMax", "MinMaxConfig", "fairness_penalty", "group_means",
           "HeldOutBatches"]

KINDS = ("eq_loss", "eo", "di")
EO_RATES = ("joint", "conditional")
UPDATES = ("max", "exp_grad")


# ---------------------------------------------------------------------------- the penalties

batch_groups = group_ids  # one group code per sample of a batch, numbered as everywhere else


def group_means(values: torch.Tensor, groups: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(means [G], present [G])``: the mean of ``values`` over each group's samples (0 where absent)."""
    counts = torch.zeros(n_groups, dtype=values.dtype, device=values.device).index_add_(
        0, groups, torch.ones_like(values))
    sums = torch.zeros(n_groups, dtype=values.dtype, device=values.device).index_add_(0, groups, values)
    present = counts > 0
    return sums / counts.clamp(min=1), present


def _gap(means: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    kept = means[present]
    return kept.max() - kept.min()


def fairness_penalty(kind: str, logits: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor, n_groups: int,
                     positive: int = 1, eo_rates: str = "joint") -> torch.Tensor:
    """The penalty ``kind`` of one batch (Eq. 6.2, Eqs. 6.5–6.6 or Eq. 6.9; see the module's text)."""
    logits = logits.float()
    present = torch.bincount(groups, minlength=n_groups) > 0
    if int(present.sum()) < 2:
        return logits.sum() * 0.0  # keeps the graph, adds nothing
    if kind == "eq_loss":
        losses = nn.functional.cross_entropy(logits, targets, reduction="none")
        return _gap(group_means(losses, groups, n_groups)[0], present)
    p = logits.softmax(1)[:, positive]
    y = (targets == positive).float()
    if kind == "eo" and eo_rates == "joint":
        fpr = _gap(group_means(p * (1 - y), groups, n_groups)[0], present)
        fnr = _gap(group_means((1 - p) * y, groups, n_groups)[0], present)
        return fpr + fnr
    if kind == "eo":  # conditional: the rates among each group's negatives and positives
        total = logits.sum() * 0.0
        for members, value in ((y == 0, p), (y == 1, 1 - p)):
            means, within = group_means(value[members], groups[members], n_groups)
            if int(within.sum()) >= 2:
                total = total + _gap(means, within)
        return total
    if kind == "di":
        kept = group_means(p, groups, n_groups)[0][present]
        return -kept.min() / kept.max().clamp(min=1e-12)
    raise ValueError(f"unknown penalty kind '{kind}'.")


class HeldOutBatches:
    """Batches of a held-out dataset, one per training step, reshuffled on every pass over it.

    Step ``t``'s batch depends only on ``(seed, t)``: pass ``t // n_batches``
    draws its own permutation, so a resumed run (``start_step`` set to the
    steps already taken) sees the batches the uninterrupted run would have.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int = 0, start_step: int = 0):
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.step = int(start_step)
        self.n_batches = math.ceil(len(dataset) / self.batch_size)
        self._pass, self._order = None, None

    def next(self) -> tuple:
        pass_no, k = divmod(self.step, self.n_batches)
        if pass_no != self._pass:
            self._pass = pass_no
            self._order = np.random.default_rng([self.seed, 7, pass_no]).permutation(len(self.dataset))
        self.step += 1
        index = self._order[k * self.batch_size:(k + 1) * self.batch_size]
        return default_collate([self.dataset[int(i)] for i in index])


def _cardinalities(ds: FairDataset) -> list[int]:
    return [len(ds.value_names[a]) for a in ds.sensitive]



@torch.no_grad()
def _split_penalty(model: nn.Module, dataset: Dataset, kind: str, cards: list[int], n_groups: int, positive: int,
                   device, eo_rates: str = "joint") -> float:
    """The penalty over a whole dataset (one batch of everything), with the model in evaluation mode."""
    model.eval()
    logits, targets, groups = [], [], []
    for x, y, s, _ in DataLoader(dataset, batch_size=1024, shuffle=False):
        logits.append(model(x.to(device)).float().cpu())
        targets.append(y)
        groups.append(batch_groups(s, cards))
    return float(fairness_penalty(kind, torch.cat(logits), torch.cat(targets), torch.cat(groups), n_groups,
                                  positive, eo_rates))


# ---------------------------------------------------------------------------- fair_penalty

@dataclass
class FairPenaltyConfig(RetrainConfig):
    """Fairness-penalty settings (thesis Eqs. 6.2, 6.4–6.6, 6.8–6.9)."""

    kind: str = setting("eq_loss", "the penalty: 'eq_loss' (gap of the groups' mean losses, Eq. 6.2), 'eo' "
                                   "(equalised-odds relaxation on the scores, Eqs. 6.4–6.6) or 'di' (disparate-"
                                   "impact relaxation −min(r, 1/r), Eqs. 6.8–6.9); eo and di need a binary target",
                        choices=KINDS)
    alpha: float = setting(1.0, "α, the penalty's weight in CE + α·penalty (0: plain retraining)", min=0)
    eo_rates: str = setting("joint", "kind=eo only: 'joint' divides each group's sums by the group's size, as "
                                     "printed in Eqs. 6.5–6.6; 'conditional' by its number of negatives "
                                     "(fpr) and positives (fnr), the rates equalised odds compares",
                            choices=EO_RATES)
    penalty_split: str = setting("train", "where the penalty is measured: 'train' (the training batch) or 'val' "
                                          "(batches of the val split, or of a held-out part of train for a "
                                          "dataset without one; the model does not train on it)",
                                 choices=FIT_SPLITS, refuse=TEST_SPLIT_REFUSED)
    holdout_fraction: float = setting(0.2, "for penalty_split=val on a dataset without a val split: the "
                                           "fraction of the training split held out for the penalty",
                                      min=0, max=1, min_inclusive=False, max_inclusive=False)


@register_method
class FairPenalty(MitigationMethod):
    name = "fair_penalty"
    summary = ("Fairness penalty (thesis ch. 6): retrain on cross-entropy + α·penalty, the penalty being the gap "
               "between the groups' mean losses (eq_loss), an equalised-odds (eo) or a disparate-impact (di) "
               "relaxation on the scores, measured on the training batch or on held-out data.")
    Config = FairPenaltyConfig
    controls = {"erm": "erm",  # plain retraining of the same architecture with the same budget
                "no_penalty": {"alpha": 0.0}}  # the same data, split and budget, without the penalty
    # eq_loss targets the accuracy gap (and, through it, the worst group), eo the error-rate gaps, di parity.
    target_metrics = ("aed", "worst_group_accuracy", "deo", "spd")

    def run(self, ctx: MethodContext, config: FairPenaltyConfig) -> MitigationResult:
        train_ds = ctx.load_split("train")
        if config.kind in ("eo", "di") and train_ds.num_classes != 2:
            raise FairauditError(f"fair_penalty kind='{config.kind}' needs a binary target; '{train_ds.target}' "
                                 f"has {train_ds.num_classes} classes (use kind='eq_loss').")
        cards = _cardinalities(train_ds)
        n_groups = int(math.prod(cards))
        positive = favorable_label(train_ds)
        train_data: Dataset = in_memory(train_ds, ctx.device)
        held_out, held_out_from = None, None
        if config.penalty_split == "val":
            if "val" in get_spec(ctx.dataset).splits:
                held_out, held_out_from = in_memory(ctx.load_split("val", stage="penalty"), ctx.device), "val"
            else:
                order = np.random.default_rng([ctx.seed, 11]).permutation(len(train_ds))
                n_out = max(1, int(round(config.holdout_fraction * len(train_ds))))
                held_out = Subset(train_data, np.sort(order[:n_out]).tolist())
                train_data = Subset(train_data, np.sort(order[n_out:]).tolist())
                held_out_from = f"train (a held-out {config.holdout_fraction:g} of it)"
        steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
        batches = (HeldOutBatches(held_out, config.batch_size, ctx.seed, ctx.checkpoint_epoch() * steps_per_epoch)
                   if held_out is not None else None)

        def step(model: nn.Module, batch: tuple):
            x, y, s = batch[0], batch[1], batch[2]
            logits = model(x)
            ce = nn.functional.cross_entropy(logits, y)
            if config.alpha == 0:
                return ce, {"loss_ce": ce.detach()}
            if batches is None:
                pen = fairness_penalty(config.kind, logits, y, batch_groups(s, cards), n_groups, positive,
                                       config.eo_rates)
            else:
                hx, hy, hs, _ = batches.next()
                pen = fairness_penalty(config.kind, model(hx.to(x.device)), hy.to(x.device),
                                       batch_groups(hs.to(x.device), cards), n_groups, positive, config.eo_rates)
            return ce + config.alpha * pen, {"loss_ce": ce.detach(), "penalty": pen.detach()}

        model, history = retrain(ctx, config, train_data, step_fn=step)
        device = next(model.parameters()).device
        measure = (config.kind, cards, n_groups, positive, device, config.eo_rates)
        final = {"train": _split_penalty(model, train_data, *measure)}
        if held_out is not None:
            final["held_out"] = _split_penalty(model, held_out, *measure)
        stats = {"kind": config.kind, "eo_rates": config.eo_rates if config.kind == "eo" else None,
                 "alpha": config.alpha, "penalty_split": config.penalty_split,
                 "penalty_data": held_out_from or "train (the training batch)",
                 "train_samples": len(train_data), "held_out_samples": len(held_out) if held_out is not None else 0,
                 "final_penalty": final}
        return MitigationResult(after_model=model.eval(), history=history, stats=stats)


# ---------------------------------------------------------------------------- minmax

@dataclass
class MinMaxConfig(RetrainConfig):
    """Max-Min training settings (thesis Eq. 6.11)."""

    update: str = setting("max", "'max': every step minimises the loss of the group with the largest batch loss "
                                 "(Eq. 6.11, the thesis'); 'exp_grad': group-DRO weights q_a ← q_a·exp(η·L^a), "
                                 "normalised, and the step minimises Σ q_a·L^a", choices=UPDATES)
    step_size: float = setting(0.01, "η of update=exp_grad (Sagawa et al. 2020's default); unused by 'max'",
                               min=0)


class GroupWeights:
    """The exponentiated-gradient weights over groups, saved in every checkpoint."""

    def __init__(self, n_groups: int):
        self.q = torch.full((n_groups,), 1.0 / n_groups, dtype=torch.float64)

    def update(self, losses: torch.Tensor, present: torch.Tensor, step_size: float) -> torch.Tensor:
        step = torch.where(present, losses.detach().double().cpu() * step_size, torch.zeros_like(self.q))
        self.q = self.q * torch.exp(step)
        self.q = self.q / self.q.sum()
        return self.q

    def state_dict(self) -> dict:
        return {"q": self.q.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.q = state["q"].double().cpu().clone()


@register_method
class MinMax(MitigationMethod):
    name = "minmax"
    summary = ("Max-Min training (thesis Eq. 6.11): retrain minimising, at every step, the mean loss of the group "
               "with the largest loss (or group-DRO weights over groups), to raise the worst group's accuracy.")
    Config = MinMaxConfig
    controls = {"erm": "erm"}  # plain retraining of the same architecture with the same budget
    target_metrics = ("worst_group_accuracy",)

    def run(self, ctx: MethodContext, config: MinMaxConfig) -> MitigationResult:
        train_ds = ctx.load_split("train")
        cards = _cardinalities(train_ds)
        n_groups = int(math.prod(cards))
        weights = GroupWeights(n_groups)

        def step(model: nn.Module, batch: tuple):
            x, y, s = batch[0], batch[1], batch[2]
            losses = nn.functional.cross_entropy(model(x).float(), y, reduction="none")
            means, present = group_means(losses, batch_groups(s, cards), n_groups)
            if config.update == "max":
                worst = torch.where(present, means.detach(), torch.full_like(means, -math.inf)).argmax()
                loss = means[worst]
            else:
                q = weights.update(means, present, config.step_size).to(means)
                loss = (q * torch.where(present, means, torch.zeros_like(means))).sum()
            kept = means.detach()[present]
            return loss, {"loss_mean": losses.mean().detach(), "group_loss_gap": kept.max() - kept.min()}

        # The group weights must survive a resume: they are checkpointed with the model.
        model, history = retrain(ctx, config, in_memory(train_ds, ctx.device), step_fn=step,
                                 state={"group_weights": weights} if config.update != "max" else None)
        stats = {"train_samples": len(train_ds), "update": config.update,
                 "step_size": config.step_size if config.update == "exp_grad" else None,
                 "group_weights": ({group_name(g, train_ds): float(w) for g, w in enumerate(weights.q)}
                                   if config.update == "exp_grad" else None)}
        return MitigationResult(after_model=model.eval(), history=history, stats=stats)
