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
  instead of the latent.
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
from fairaudit.train.loop import StepFn, cross_entropy_step

VARIANTS = ("normal", "fair", "lf", "rg")
ADVERSARY_INPUTS = ("prediction", "latent")

__all__ = ["VARIANTS", "VariantOptions", "Adversary", "adversarial_step", "flip_labels_towards_groups",
           "group_ids", "label_flip_step", "make_variant_step", "train_variant"]


@dataclass
class VariantOptions:
    """Settings of the non-normal variants (not stated in the paper; chosen here)."""

    adv_weight: float = 3.0  # λ of the fair / rg variants
    adv_lr: float = 5e-3  # Adam learning rate of the adversary
    adv_hidden: int = 64  # width of the adversary's hidden layer
    adv_input: str = "latent"  # what the adversary sees: "latent" (g(x)) or "prediction" (class probabilities)
    flip_rate: float = 0.5  # share of counter-stereotypical labels flipped by lf

    def validate(self) -> None:
        if self.adv_weight < 0 or not self.adv_lr > 0 or self.adv_hidden < 1:
            raise FairauditError("variant options need adv_weight >= 0, adv_lr > 0 and adv_hidden >= 1.")
        if self.adv_input not in ADVERSARY_INPUTS:
            raise FairauditError(f"adv_input must be one of {', '.join(ADVERSARY_INPUTS)}, got '{self.adv_input}'.")
        if not 0.0 <= self.flip_rate <= 1.0:
            raise FairauditError(f"flip_rate must lie in [0, 1], got {self.flip_rate}.")


def group_ids(s: torch.Tensor, cardinalities: list[int]) -> torch.Tensor:
    """One class per intersection of the sensitive attributes (mixed-radix code of the ``(N, k)`` codes)."""
    s = s.view(s.shape[0], -1)
    ids = torch.zeros(s.shape[0], dtype=torch.long, device=s.device)
    for j, k in enumerate(cardinalities):
        ids = ids * k + s[:, j].long()
    return ids


def _cardinalities(ds: FairDataset) -> list[int]:
    return [len(ds.value_names[a]) for a in ds.sensitive]


class Adversary(nn.Module):
    """MLP predicting the sensitive group from a latent vector."""

    def __init__(self, latent_dim: int, groups: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(True), nn.Linear(hidden, groups))

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.net(r.flatten(1).float())


def adversarial_step(model: nn.Module, ds: FairDataset, device, *, hide_group: bool, adv_weight: float = 3.0,
                     adv_lr: float = 5e-3, adv_hidden: int = 64, adv_input: str = "latent") -> StepFn:
    """A classifier step against an adversary that takes one Adam step per batch first.

    ``hide_group=True`` (``fair``): loss ``CE(y) + λ·CE(adversary, uniform)``;
    ``hide_group=False`` (``rg``): loss ``CE(y) + λ·CE(adversary, z)``, exposing the group.
    ``adv_input``: the adversary reads the latent ``g(x)`` or the class probabilities.
    """
    cardinalities = _cardinalities(ds)
    if adv_input == "latent":
        with torch.no_grad():
            was_training = model.training
            model.eval()
            probe = torch.zeros(1, *ds.input_shape, device=next(model.parameters()).device)
            in_dim = model.g(probe).flatten(1).shape[1]
            model.train(was_training)
    else:
        in_dim = ds.num_classes
    adversary = Adversary(in_dim, int(np.prod(cardinalities)), adv_hidden).to(device)
    optimizer = torch.optim.Adam(adversary.parameters(), lr=adv_lr)
    ce = nn.functional.cross_entropy

    def step(model: nn.Module, batch: tuple):
        x, y, s = batch[0], batch[1], batch[2]
        z = group_ids(s, cardinalities)
        r = model.g(x)
        logits = model.f(r)
        if adv_input == "latent":
            seen = r
        else:
            seen = torch.softmax(logits.float(), 1)
        optimizer.zero_grad(set_to_none=True)
        loss_adv = ce(adversary(seen.detach()), z)
        loss_adv.backward()
        optimizer.step()
        logits_z = adversary(seen)
        loss_y = ce(logits.float(), y)
        if hide_group:
            loss_z = -torch.log_softmax(logits_z, 1).mean(1).mean()  # cross-entropy against the uniform guess
        else:
            loss_z = ce(logits_z, z)
        with torch.no_grad():
            scalars = {"loss_target": loss_y.detach(), "loss_adversary": loss_adv.detach(),
                       "adversary_accuracy": (logits_z.argmax(1) == z).float().mean()}
        return loss_y + adv_weight * loss_z, scalars

    step.adversary = adversary  # exposed for inspection and tests
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
                            adv_input=options.adv_input)


def train_variant(variant: str, dataset: str, target: str | None = None, sensitive=None, **kwargs):
    """Train a deployed model of ``variant`` (see :func:`fairaudit.train.deployed.train_deployed_model`)."""
    from fairaudit.train.deployed import train_deployed_model

    return train_deployed_model(dataset, target, sensitive, variant=variant, **kwargs)
