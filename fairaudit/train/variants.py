"""Deployed-model variants of the FAAP experiments (Wang et al., CVPR 2023, §5.1).

Each variant is a step function for the shared :func:`fairaudit.train.fit`:

* ``normal`` – plain cross-entropy on the target.
* ``fair`` – adversarial debiasing in the spirit of Zhang et al. 2018: an
  adversary MLP predicts the sensitive group ``z`` from the latent ``g(x)``
  and takes one Adam step inside every training step; the classifier
  minimises ``CE(f(g(x)), y) + λ·CE(adv(g(x)), uniform)``, i.e. it learns
  features on which the adversary can only guess. Pushing the adversary
  towards a uniform guess (the confusion loss of Alvi et al. 2018) rather than
  maximising its cross-entropy keeps the classifier from simply flipping the
  group encoding: with ``CE − λ·CE_adv`` the latent adversary stayed 80–90 %
  accurate and the test DEO barely moved on the 0.9-biased synthetic faces.
  ``adv_input="prediction"`` lets the adversary see the class probabilities
  instead of the latent, and ``adv_update`` picks the classifier's update
  (see :func:`adversarial_step`; the ``adv_fair`` mitigation uses Zhang et
  al.'s projection update on the prediction).
* ``rg`` – "reversed gradient": the same adversary, with the classifier's
  adversarial term reversed, ``CE(f(g(x)), y) + λ·CE(adv(g(x)), z)``: the
  classifier *helps* the adversary, so its latent encodes the group more
  strongly (an unfair model by construction).
* ``lf`` – label flipping: before training, a fraction ``flip_rate`` of the
  samples whose label disagrees with the majority label of their sensitive
  group is relabelled to that majority label. The paper only says "randomly
  flipping the target labels"; flipping towards each group's majority label
  always strengthens the label–group correlation, so the variant is reliably
  unfair. The flips are fixed per sample (seeded), not redrawn every epoch.

The sensitive group ``z`` is the intersection of all sensitive attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from fairaudit.data.base import FairDataset
from fairaudit.errors import FairauditError
from fairaudit.metrics.groups import intersection_codes
from fairaudit.models.split import latent_dim
from fairaudit.train.loop import StepFn, cross_entropy_step

VARIANTS = ("normal", "fair", "lf", "rg")
ADVERSARY_INPUTS = ("prediction", "latent")
ADVERSARY_UPDATES = ("confusion", "projection", "reversal")
ADVERSARY_CRITERIA = ("demographic_parity", "equalized_odds")

__all__ = ["VARIANTS", "ADVERSARY_INPUTS", "ADVERSARY_UPDATES", "ADVERSARY_CRITERIA", "VariantOptions",
           "Adversary", "adversarial_step", "check_adversary_options", "flip_labels_towards_groups", "group_ids",
           "label_flip_step", "make_variant_step", "projected_update", "train_variant"]


def check_adversary_options(adv_input: str, adv_update: str, adv_criterion: str) -> None:
    """Refuse an unknown adversary input, classifier update or fairness criterion."""
    for name, value, allowed in (("adversary input", adv_input, ADVERSARY_INPUTS),
                                 ("adversary update", adv_update, ADVERSARY_UPDATES),
                                 ("adversary criterion", adv_criterion, ADVERSARY_CRITERIA)):
        if value not in allowed:
            raise FairauditError(f"the {name} must be one of {', '.join(allowed)}, got '{value}'.")


@dataclass
class VariantOptions:
    """Settings of the non-normal variants (not stated in the paper; chosen here)."""

    adv_weight: float = 3.0  # λ of the fair / rg variants
    adv_lr: float = 5e-3  # Adam learning rate of the adversary
    adv_hidden: int = 64  # width of the adversary's hidden layer
    adv_input: str = "latent"  # what the adversary sees: "latent" (g(x)) or "prediction" (class probabilities)
    adv_update: str = "confusion"  # the fair variant's classifier update, see adversarial_step
    adv_criterion: str = "demographic_parity"  # "equalized_odds": the adversary also sees the true label
    flip_rate: float = 0.5  # share of counter-stereotypical labels flipped by lf

    def validate(self) -> None:
        if self.adv_weight < 0 or not self.adv_lr > 0 or self.adv_hidden < 1:
            raise FairauditError("variant options need adv_weight >= 0, adv_lr > 0 and adv_hidden >= 1.")
        check_adversary_options(self.adv_input, self.adv_update, self.adv_criterion)
        if not 0.0 <= self.flip_rate <= 1.0:
            raise FairauditError(f"flip_rate must lie in [0, 1], got {self.flip_rate}.")


def group_ids(s: torch.Tensor, cardinalities: list[int]) -> torch.Tensor:
    """One class per intersection of the sensitive attributes (:func:`fairaudit.metrics.groups.intersection_codes`
    of the batch's ``(N, k)`` codes)."""
    return intersection_codes(s.long(), cardinalities)


def _cardinalities(ds: FairDataset) -> list[int]:
    return [len(ds.value_names[a]) for a in ds.sensitive]


class Adversary(nn.Module):
    """MLP predicting the sensitive group from a latent vector."""

    def __init__(self, latent_dim: int, groups: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(True), nn.Linear(hidden, groups))

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.net(r.flatten(1).float())


def projected_update(loss_p: torch.Tensor, loss_a: torch.Tensor, params: list[nn.Parameter],
                     alpha: float) -> torch.Tensor:
    """A loss whose gradient is Zhang et al.'s (2018, §3) predictor update and whose value is ``loss_p``.

    With ``∇L_P`` and ``∇L_A`` the gradients of the predictor's and the
    adversary's losses with respect to the predictor's weights ``W``, the
    predictor descends along ``∇L_P − proj_{∇L_A} ∇L_P − α·∇L_A``: the
    projection removes the part of the step that would help the adversary,
    and ``−α·∇L_A`` makes the step hurt it. As in AIF360's
    ``AdversarialDebiasing``, the projection is taken for each parameter
    tensor of ``params`` separately. ``alpha = 0`` keeps the projection alone.
    """
    g_p = torch.autograd.grad(loss_p, params, retain_graph=True, allow_unused=True)
    g_a = torch.autograd.grad(loss_a, params, allow_unused=True)
    surrogate = loss_p.new_zeros((), dtype=torch.float32)
    for p, gp, ga in zip(params, g_p, g_a):
        if gp is None and ga is None:
            continue
        gp = torch.zeros_like(p, dtype=torch.float32) if gp is None else gp.float()
        direction = gp
        if ga is not None:
            ga = ga.float()
            norm2 = (ga * ga).sum()
            direction = gp - alpha * ga
            if norm2 > 0:
                direction = direction - ((gp * ga).sum() / norm2) * ga
        surrogate = surrogate + (p.float() * direction).sum()
    return loss_p.detach().float() + surrogate - surrogate.detach()


def adversarial_step(model: nn.Module, ds: FairDataset, device, *, hide_group: bool, adv_weight: float = 3.0,
                     adv_lr: float = 5e-3, adv_hidden: int = 64, adv_input: str = "latent",
                     adv_update: str = "confusion", adv_criterion: str = "demographic_parity") -> StepFn:
    """A classifier step against an adversary that takes one Adam step per batch first.

    The adversary reads ``adv_input``: the latent ``g(x)`` or the class
    probabilities ``softmax(f(g(x)))``; with ``adv_criterion="equalized_odds"``
    it also gets the one-hot true label, so hiding the group from it asks for
    equal error rates given ``y`` rather than equal selection rates (Zhang et
    al. 2018, §4). With ``λ = adv_weight`` and ``L_A`` the adversary's
    cross-entropy on the group ``z``:

    * ``hide_group=False`` (``rg``): loss ``CE(y) + λ·L_A``, exposing the group
      (``adv_update`` must be ``confusion``);
    * ``adv_update="confusion"``: loss ``CE(y) + λ·CE(adversary, uniform)``;
    * ``adv_update="reversal"``: loss ``CE(y) − λ·L_A`` (gradient reversal);
    * ``adv_update="projection"``: Zhang et al.'s update
      ``∇CE(y) − proj_{∇L_A} ∇CE(y) − λ·∇L_A`` (:func:`projected_update`).

    With ``λ = 0`` the ``confusion`` and ``reversal`` updates are plain
    cross-entropy (the adversary is trained but never acts on the classifier).
    """
    check_adversary_options(adv_input, adv_update, adv_criterion)
    if not hide_group and adv_update != "confusion":
        raise FairauditError("the rg variant exposes the group with λ·L_A; its adversary update must be "
                             f"'confusion', got '{adv_update}'.")
    cardinalities = _cardinalities(ds)
    if adv_input == "latent":
        in_dim = latent_dim(model, ds.input_shape)
    else:
        in_dim = ds.num_classes
    with_label = adv_criterion == "equalized_odds"
    if with_label:
        in_dim += ds.num_classes
    adversary = Adversary(in_dim, int(np.prod(cardinalities)), adv_hidden).to(device)
    optimizer = torch.optim.Adam(adversary.parameters(), lr=adv_lr)
    ce = nn.functional.cross_entropy

    def step(model: nn.Module, batch: tuple):
        x, y, s = batch[0], batch[1], batch[2]
        z = group_ids(s, cardinalities)
        r = model.g(x)
        logits = model.f(r)
        seen = r.flatten(1).float() if adv_input == "latent" else torch.softmax(logits.float(), 1)
        if with_label:
            seen = torch.cat([seen, nn.functional.one_hot(y, ds.num_classes).float()], 1)
        optimizer.zero_grad(set_to_none=True)
        loss_adv = ce(adversary(seen.detach()), z)
        loss_adv.backward()
        optimizer.step()
        logits_z = adversary(seen)
        loss_y = ce(logits.float(), y)
        with torch.no_grad():
            scalars = {"loss_target": loss_y.detach(), "loss_adversary": loss_adv.detach(),
                       "adversary_accuracy": (logits_z.argmax(1) == z).float().mean()}
        if not hide_group:
            return loss_y + adv_weight * ce(logits_z, z), scalars
        if adv_update == "confusion":
            loss_z = -torch.log_softmax(logits_z, 1).mean(1).mean()  # cross-entropy against the uniform guess
            return loss_y + adv_weight * loss_z, scalars
        if adv_update == "reversal":
            return loss_y - adv_weight * ce(logits_z, z), scalars
        params = [p for p in model.parameters() if p.requires_grad]
        return projected_update(loss_y, ce(logits_z, z), params, adv_weight), scalars

    step.adversary = adversary  # exposed for inspection and tests
    step.state = {"adversary": adversary, "adversary_optimizer": optimizer}  # checkpointed with the model
    return step


def flip_labels_towards_groups(ds: FairDataset, flip_rate: float, seed: int = 0) -> np.ndarray:
    """Target labels with ``flip_rate`` of each group's counter-majority labels set to the group's majority."""
    y = ds.targets.copy()
    groups = group_ids(torch.as_tensor(ds.sensitive_codes), _cardinalities(ds)).numpy()
    rng = np.random.default_rng(seed)
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        majority = np.bincount(y[members]).argmax()
        candidates = members[y[members] != majority]
        chosen = rng.choice(candidates, size=int(round(flip_rate * len(candidates))), replace=False)
        y[chosen] = majority
    return y


def label_flip_step(ds: FairDataset, device, *, flip_rate: float = 0.5, seed: int = 0) -> StepFn:
    """Cross-entropy against labels flipped by :func:`flip_labels_towards_groups` (looked up by sample index)."""
    flipped = torch.as_tensor(flip_labels_towards_groups(ds, flip_rate, seed), device=device)
    changed = int((flipped.cpu().numpy() != ds.targets).sum())

    def step(model: nn.Module, batch: tuple):
        x, index = batch[0], batch[3]
        y = flipped[torch.as_tensor(index, device=flipped.device).long()]
        return nn.functional.cross_entropy(model(x), y)

    step.flipped = changed
    return step


def make_variant_step(variant: str, model: nn.Module, ds: FairDataset, device, seed: int = 0,
                      options: VariantOptions | dict[str, Any] | None = None) -> StepFn:
    """The step function of ``variant`` for training ``model`` on ``ds``."""
    if variant not in VARIANTS:
        raise FairauditError(f"unknown training variant '{variant}'; use one of {', '.join(VARIANTS)}.")
    if not isinstance(options, VariantOptions):
        options = VariantOptions(**(options or {}))
    options.validate()
    device = torch.device(device)
    if variant == "normal":
        return cross_entropy_step
    if variant == "lf":
        return label_flip_step(ds, device, flip_rate=options.flip_rate, seed=seed)
    return adversarial_step(model, ds, device, hide_group=variant == "fair",
                            adv_weight=options.adv_weight, adv_lr=options.adv_lr, adv_hidden=options.adv_hidden,
                            adv_input=options.adv_input, adv_update=options.adv_update,
                            adv_criterion=options.adv_criterion)


def train_variant(variant: str, dataset: str, target: str | None = None, sensitive=None, **kwargs):
    """Train a deployed model of ``variant`` (see :func:`fairaudit.train.deployed.train_deployed_model`)."""
    from fairaudit.train.deployed import train_deployed_model

    return train_deployed_model(dataset, target, sensitive, variant=variant, **kwargs)
