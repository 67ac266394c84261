"""ASAC: fine-tuning on attribute-specific adversarial counterfactuals with a curriculum.

Shukla et al., "Utilizing Adversarial Examples for Bias Mitigation and
Accuracy Enhancement". An already biased target classifier ``M = f∘g`` is
fine-tuned on *attribute-specific adversarial counterfactuals* (ASACs):
images that an attack has changed just enough to fool a classifier ``C`` of
the *protected* attribute (e.g. gender), while keeping their target label
(e.g. Smiling). A model that still changes its target prediction on such an
image relies on the protected attribute; training it to keep the label
removes that shortcut.

* Eq. 1–2, the ASAC: ``x′ = clip(x + δ, 0, 1)`` with
  ``δ = ε·sign(∇_x J(C(x), a))`` (FGSM, untargeted, ``J`` = cross-entropy on
  the true protected group ``a``), or PGD in the same L∞ ball; one ASAC per
  ``ε`` of the curriculum set, ``ε = 0`` (the original image) always
  included, so a minibatch of ``k`` images becomes ``k × l`` items;
* Eq. 3–4, difficulty: ``DS(x′) = 1 − softmax(M(x′))_y``, the target model's
  missing confidence in the true class ``y``;
* Algorithm 1: the ``k × l`` items of each minibatch are sorted by ``DS`` in
  ``increasing`` (easy → hard, the paper's main setting), ``decreasing`` or
  ``random`` order;
* Eq. 5, the loss: ``Ĵ_α = α·J(M(x), y) + (1 − α)·J(M(x′), y)``.

Choices where the paper is silent or ambiguous:

* **How the order is used (§9.2).** Sorting the items of a batch changes
  nothing in one mean-loss step, and the shared trainer takes one optimiser
  step per minibatch. The sorted list is therefore consumed by a *pacing
  function* (Hacohen & Weinshall 2019, the baby-steps curriculum the paper
  cites): each step trains on the first ``⌈λ(t)·k·l⌉`` items of the sorted
  minibatch, where ``λ`` grows linearly from ``pace_start`` to 1 over the
  first ``pace_length`` of training (``t`` = training progress) and stays 1
  afterwards. With ``increasing`` the hard ASACs are withheld early and
  saved for later; ``decreasing`` starts with them; ``random`` draws a
  random subset of the same size. ``pace_start = 1`` disables the pacing
  (every item in every step). ``pace_end < 1`` keeps only that share from
  ``pace_length`` on (e.g. ``order=decreasing``, ``pace_start = pace_end =
  0.5``: always the hardest half).
* **Which class DS scores (§9.1):** the true class ``y`` (Eq. 3 indexes the
  softmax by the label), not the predicted one.
* **Eq. 5 with ε = 0 (§9.3):** the original image is the first term; for
  its ``ε = 0`` item the second term is the same image, so that item's loss
  is plain ``J(M(x), y)``. The loss of a step is the mean over the selected
  items; each item's first term is its own source image.
* **The protected-attribute classifier C (§9.4):** ``C(θ, φ)`` is a linear
  probe ``φ`` on ``g``. With ``classifier_features="shared"`` (default,
  Fig. 2: C shares ``θ`` with M and differs only in its last layer) C's
  ``g`` is the fine-tuned model's own ``g``: ``φ`` is first fitted on the
  deployed model's latents of the fine-tuning split, then refitted
  (``classifier_epochs`` more Adam epochs, warm-started) at the start of
  every epoch on the current latents, so the ASACs fool the gender
  classifier that M's *current* features support. ``"frozen"`` keeps a
  fixed copy of the deployed ``g`` and the first ``φ``. With several
  sensitive attributes C predicts their intersection.
* **ASACs once per epoch (§9.4).** Within an epoch C is fixed, so the
  ASACs of every fine-tuning image are made once, at the epoch's start, and
  scored (Eq. 4) by M as it is then; the steps of the epoch read them from
  memory (Algorithm 1 makes them per minibatch, which costs one attack per
  step and gives the same images while C does not change). With a frozen C
  and FGSM they are made once for the whole run. The difficulty used by the
  curriculum is therefore that of the epoch's start, not of the step.
* **Attack (§9.5):** ``ε`` in units of ``[0, 1]`` pixels, clipped to
  ``[0, 1]``, no success filter. PGD uses ``pgd_steps`` steps of
  ``2.5·ε/steps`` from a random start and stops moving a sample once C
  misclassifies it ("the smallest perturbation that causes
  misclassification").
* **Batch size (§9.6):** ``batch_size`` counts the ``k`` source images; a
  step scores ``k × l`` items.
* **Training data:** the ``val`` split by default, held out from the
  deployed model as FAAP does; on synthetic-faces it follows the train
  split's bias (0.9), as a real dataset's validation split does, so ASAC sees
  data of the deployed model's distribution and nothing a retraining
  baseline does not get. ``train_split="train"`` fine-tunes on the deployed
  model's own training split as the paper does (§5.3: "on the same D").
* **Epochs:** 4 by default, not the paper's 10, so that the defaults stay
  within 10 minutes on two CPU cores on the synthetic-faces demo (1 000 val
  images at 64 px, batch 128): the four epochs took 217 s with the load
  average at 1.3–1.9, about 50 s an epoch (one epoch took 108 s at load
  3.5).

What was measured (under the protocol above; the numbers do **not** show a
fairness gain, treat the method as unproven here):

* Both controls are built in (``fairaudit benchmark --controls``):
  ``no_counterfactuals`` (``epsilons=0``: fine-tuning on the clean images)
  and ``no_counterfactual_loss`` (``alpha=1``: Eq. 5's counterfactual term
  dropped, the curriculum unchanged).
* 48 px model of the effect test (1 024 train images, bias 0.9; 500 balanced
  test images, DEO 1.43, accuracy 0.622), 2 epochs at batch 64 on 256 val
  images: ASAC DEO 1.50 / accuracy 0.604, ``epsilons=0`` 1.50 / 0.614,
  ``alpha=1`` 1.40 / 0.614. ASAC does not beat its controls on DEO and
  costs about 2 accuracy points. What it does change: the model's mean
  difficulty on FGSM counterfactuals (ε = 0.05) of the deployed model's
  gender classifier, minus that on the clean images, falls from 0.021 to
  0.011 (``epsilons=0``: 0.017; ``alpha=1``: 0.033), i.e. M becomes less
  sensitive to the gender classifier's noise without becoming fairer.
* Synthetic-faces demo model (64 px, DEO 0.32, accuracy 0.739 on the
  balanced test split): one epoch of the defaults raised DEO to 0.63
  (accuracy 0.764); two epochs always on the hardest half of the items
  (``order=decreasing, pace_start=0.5, pace_end=0.5``) raised it to 1.27
  (accuracy 0.665) against 1.11 (0.708) for the same curriculum with
  ``epsilons=0``; the four default epochs (seed 0) raised it to 1.10 and
  lowered accuracy to 0.681. Fine-tuning on 0.9-biased data strengthens the shortcut,
  and the counterfactuals do not counter it.
* ``fairaudit benchmark --methods asac --controls --seeds 3 --set epochs=1``
  on the demo (one epoch, not the default four; paired by seed, 95 %
  t-intervals): ASAC DEO 0.587 ± 0.038, accuracy 0.767 (baseline 0.324,
  0.739): DEO +0.263 [+0.168, +0.358] against the baseline; against
  ``epsilons=0`` (DEO 0.541, accuracy 0.786) DEO +0.047 [−0.067, +0.160],
  accuracy −0.019 [−0.030, −0.009]; against ``alpha=1`` (DEO 0.619,
  accuracy 0.779) DEO −0.032 [−0.167, +0.103], accuracy −0.012
  [−0.044, +0.020]. ASAC beats neither control and worsens DEO.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import safetensors.torch
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from fairaudit.attacks import ATTACKS, attack_by_name, check_attack
from fairaudit.data import get_spec
from fairaudit.data.base import FairDataset
from fairaudit.device import resolve_device
from fairaudit.errors import FairauditError
from fairaudit.mitigation.base import (FIT_SPLITS, TEST_SPLIT_REFUSED, MethodContext, MitigationMethod,
                                       MitigationResult, fit_split, register_method, setting)
from fairaudit.mitigation.baselines.common import in_memory
from fairaudit.models.split import SplitModel
from fairaudit.seeding import make_generator, seed_everything
from fairaudit.train.loop import TrainConfig, fit
from fairaudit.train.variants import group_ids

__all__ = ["ASAC", "AsacConfig", "AttributeClassifier", "CounterfactualBank", "CurriculumClock", "asac_step",
           "curriculum_selection", "difficulty_scores", "make_counterfactuals", "pace", "parse_epsilons",
           "train_attribute_classifier"]

ORDERS = ("increasing", "decreasing", "random")


# ---------------------------------------------------------------------------- settings

def parse_epsilons(value) -> tuple[float, ...]:
    """The curriculum set of noise magnitudes, from ``"0,0.03,0.05"`` or a sequence; ``0`` is always added.

    Returned sorted and without duplicates.
    """
    items = value.replace(";", ",").split(",") if isinstance(value, str) else list(value)
    try:
        values = [float(v) for v in items if str(v).strip() != ""]
    except (TypeError, ValueError):
        raise FairauditError(f"ASAC setting 'epsilons' must be comma-separated numbers such as "
                             f"'0,0.03,0.05', got {value!r}.") from None
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad:
        raise FairauditError(f"ASAC setting 'epsilons' must lie in [0, 1] (pixels in [0, 1]), got {bad[0]}.")
    return tuple(sorted(set(values) | {0.0}))


@dataclass
class AsacConfig:
    """ASAC hyper-parameters (paper values where stated: §5.3, Tables 3–4)."""

    attack: str = setting("fgsm", "attack that makes the counterfactuals against C: 'fgsm' (Eq. 2) or 'pgd'",
                          choices=ATTACKS)
    epsilons: str = setting("0,0.03,0.05", "curriculum set of L∞ noise magnitudes on [0, 1] pixels, "
                                           "comma-separated; 0 (the original image) is always included")
    alpha: float = setting(0.5, "α of Eq. 5: weight of the original image's loss against the ASAC's", min=0, max=1)
    order: str = setting("increasing", "curriculum order of the items by difficulty (Alg. 1): 'increasing' "
                                       "(easy first), 'decreasing' or 'random'", choices=ORDERS)
    epochs: int = setting(4, "fine-tuning epochs of the target model (the paper: 10, §5.3)", min=1)
    lr: float = setting(1e-4, "Adam learning rate of the fine-tuning (§5.3)", min=0, min_inclusive=False)
    batch_size: int = setting(128, "source images k per minibatch; a step scores k × len(epsilons) items", min=1)
    classifier_epochs: int = setting(5, "epochs of the protected-attribute probe C on the frozen latent "
                                        "(not stated)", min=1)
    classifier_lr: float = setting(1e-3, "Adam learning rate of the probe C (not stated)", min=0, min_inclusive=False)
    classifier_features: str = setting("shared", "C's feature extractor: 'shared' (the fine-tuned model's "
                                                 "current g, its probe refitted every epoch; Fig. 2) or "
                                                 "'frozen' (a fixed copy of the deployed g)",
                                                     choices=("shared", "frozen"))
    pgd_steps: int = setting(10, "PGD iterations (attack=pgd; not stated), step 2.5·ε/steps", min=1)
    pace_start: float = setting(0.5, "share of each sorted minibatch trained on at the start; 1 uses every "
                                     "item in every step (not stated)", min=0, min_inclusive=False, max=1)
    pace_length: float = setting(0.5, "share of training over which that share moves to pace_end (not stated)",
                                 min=0, max=1)
    pace_end: float = setting(1.0, "share of each sorted minibatch trained on from pace_length on; below 1 the "
                                   "rest of the order is never used (not stated)", min=0, min_inclusive=False, max=1)
    train_split: str = setting("val", "split to fine-tune on: 'val' (held out from the deployed model, as for "
                                      "FAAP) or 'train' (the paper: the same data as the deployed model)",
                                          choices=FIT_SPLITS, refuse=TEST_SPLIT_REFUSED)
    cache_mb: int = setting(1024, "keep decoded training inputs in memory when they fit in this many MB",
                            min=0, unit="MB")
    stats_samples: int = setting(1000, "held-out images for the before/after counterfactual statistics "
                                       "(0 skips them)", min=0)

    @property
    def epsilon_values(self) -> tuple[float, ...]:
        return parse_epsilons(self.epsilons)

    def validate(self) -> None:
        """The curriculum set is a list in one string (ranges of the other settings are declared with them)."""
        if not isinstance(self.epsilons, str):
            self.epsilons = ",".join(f"{v:g}" for v in parse_epsilons(self.epsilons))
        self.epsilon_values  # noqa: B018  (raises on bad input)


# ---------------------------------------------------------------------------- the protected-attribute classifier

class AttributeClassifier(nn.Module):
    """``C(θ, φ)``: a linear probe ``φ`` on a frozen feature extractor ``g`` (one logit per protected group)."""

    def __init__(self, g: nn.Module, latent_dim: int, groups: int, freeze: bool = True):
        super().__init__()
        self.g = g
        self.probe = nn.Linear(latent_dim, groups)
        if freeze:
            self.g.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.probe(self.g(x).flatten(1).float())

    def train(self, mode: bool = True) -> "AttributeClassifier":
        super().train(mode)
        self.g.eval()  # the shared θ is frozen, batch-norm statistics included
        return self


@torch.no_grad()
def _latents(g: nn.Module, data: Dataset, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    return torch.cat([g(batch[0].to(device).float()).flatten(1).float().cpu() for batch in loader])


def _groups_of(data: Dataset, cardinalities: list[int], batch_size: int = 1024) -> torch.Tensor:
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    return torch.cat([group_ids(torch.as_tensor(batch[2]), cardinalities) for batch in loader])


def train_attribute_classifier(deployed: SplitModel, data: Dataset, cardinalities: list[int], *, epochs: int = 5,
                               lr: float = 1e-3, batch_size: int = 128, seed: int = 0, device="auto",
                               progress: Callable[[dict], None] | None = None,
                               should_stop: Callable[[], bool] | None = None) -> AttributeClassifier:
    """Fit the probe ``φ`` of ``C`` on the frozen latents ``g(x)`` of ``data`` (items ``(x, y, s, ...)``).

    ``g`` is a frozen copy of ``deployed.g``; the probe is trained with the
    shared trainer on precomputed latents (cross-entropy on the protected
    group, the intersection of all sensitive attributes).
    """
    device = resolve_device(device)
    g = copy.deepcopy(deployed.g).to(device).eval()
    g.requires_grad_(False)
    features = _latents(g, data, device)
    groups = _groups_of(data, cardinalities)
    seed_everything(seed)
    classifier = AttributeClassifier(g, features.shape[1], math.prod(cardinalities)).to(device)
    fit(classifier.probe, TensorDataset(features, groups),
        TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed), device=device, progress=progress,
        should_stop=should_stop)
    return classifier.eval()


# ---------------------------------------------------------------------------- ASACs, difficulty, curriculum

def make_counterfactuals(classifier: nn.Module, x: torch.Tensor, groups: torch.Tensor,
                         epsilons: tuple[float, ...], attack: str = "fgsm", pgd_steps: int = 10,
                         generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """One ASAC batch per ``ε`` (Eq. 1–2): untargeted attacks on ``C``'s cross-entropy for the true ``groups``.

    ``ε = 0`` returns the originals. Pixels stay in ``[0, 1]``.
    """
    out = []
    for eps in epsilons:
        if eps == 0:
            out.append(x.detach())
        else:
            def fooled(x_adv, groups=groups):
                return classifier(x_adv).argmax(1) != groups

            out.append(attack_by_name(check_attack(attack, "ASAC attack"), classifier, x, groups, eps=eps,
                                      steps=pgd_steps, clip=(0.0, 1.0), stop_when=fooled, generator=generator))
    return out


@torch.no_grad()
def difficulty_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 4: ``DS(x′) = 1 − softmax(M(x′))_y`` per sample, with ``M`` in eval mode (its modes are restored)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        probs = torch.softmax(model(x).float(), dim=1)
    finally:
        for module, mode in modes:
            module.training = mode
    return 1.0 - probs.gather(1, y.view(-1, 1)).squeeze(1)


def pace(progress: float, start: float, length: float, end: float = 1.0) -> float:
    """The pacing function ``λ(t)``: ``start`` at ``t = 0``, moving linearly to ``end`` at ``t = length``."""
    if length <= 0 or progress >= length:
        return end
    return start + (end - start) * max(0.0, progress) / length


def curriculum_selection(scores: torch.Tensor, order: str, fraction: float,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of the items a step trains on: the first ``⌈fraction·n⌉`` of the minibatch in curriculum order.

    ``increasing`` sorts by ascending difficulty (Algorithm 1), ``decreasing``
    by descending difficulty, ``random`` by a random permutation.
    """
    n = scores.numel()
    keep = max(1, min(n, math.ceil(fraction * n - 1e-9)))
    if order == "increasing":
        ranked = torch.argsort(scores, stable=True)
    elif order == "decreasing":
        ranked = torch.argsort(scores, descending=True, stable=True)
    elif order == "random":
        ranked = torch.randperm(n, generator=generator).to(scores.device)
    else:
        raise FairauditError(f"unknown curriculum order '{order}'; use {', '.join(ORDERS)}.")
    return ranked[:keep]


class CurriculumClock:
    """Training progress ``t ∈ [0, 1]`` as seen by the step, fed by the trainer's progress events."""

    def __init__(self, start: float = 0.0, forward: Callable[[dict], None] | None = None):
        self.fraction = float(start)
        self.forward = forward

    def __call__(self, event: dict) -> None:
        if event.get("event") in ("step", "epoch") and "fraction" in event:
            self.fraction = float(event["fraction"])
        if self.forward is not None:
            self.forward(event)


def _eps_key(eps: float) -> str:
    return f"{eps:g}"


class CounterfactualBank:
    """The ASACs of every training image and their difficulty, made once per epoch (``C`` is fixed within it).

    ``refresh(model)`` runs at the first step of each epoch: with
    ``classifier_features="shared"`` C's ``g`` *is* the fine-tuned model's
    current ``g`` (Fig. 2: C and M share ``θ``), so the probe ``φ`` is first
    refitted (``classifier_epochs`` more epochs, warm-started) on the current
    latents; then one ASAC per image and ``ε > 0`` is made against C
    (Eq. 1–2) and every item is scored by the current M (Eq. 4). Steps of the
    epoch read their items from the bank instead of attacking again.
    """

    def __init__(self, data: Dataset, classifier: "AttributeClassifier", cardinalities: list[int],
                 config: "AsacConfig", device: torch.device, seed: int = 0, shared: bool = False, epoch: int = 0,
                 batch_size: int = 256):
        self.classifier, self.config, self.device, self.seed = classifier, config, device, seed
        self.shared, self.epoch, self.batch_size = shared, int(epoch), batch_size
        self.epsilons = config.epsilon_values
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        xs, ys, gs = [], [], []
        for batch in loader:
            xs.append(torch.as_tensor(batch[0]).float())
            ys.append(torch.as_tensor(batch[1]))
            gs.append(group_ids(torch.as_tensor(batch[2]), cardinalities))
        self.x, self.y, self.groups = torch.cat(xs).to(device), torch.cat(ys).to(device), torch.cat(gs).to(device)
        self.adversarial: list[torch.Tensor] = []
        self.scores = torch.empty(0)
        self.fooled = torch.empty(0)
        self.stale = True

    def on_event(self, event: dict) -> None:
        if event.get("event") == "epoch":
            self.stale = True
            self.epoch = int(event.get("epoch", self.epoch + 1))

    def refresh(self, model: nn.Module) -> None:
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            if self.shared:
                self._refit_probe()
            n, bs = len(self.y), self.batch_size
            if self.shared or self.config.attack != "fgsm" or not self.adversarial:  # a fixed C and FGSM: the same
                start = make_generator(self.seed, "asac pgd start", self.epoch, device=self.device)
                adversarial = [[] for _ in self.epsilons]
                for i in range(0, n, bs):
                    x, groups = self.x[i:i + bs], self.groups[i:i + bs]
                    for j, x_adv in enumerate(make_counterfactuals(self.classifier, x, groups, self.epsilons,
                                                                   self.config.attack, self.config.pgd_steps,
                                                                   start)):
                        adversarial[j].append(x_adv.detach())
                self.adversarial = [torch.cat(a) for a in adversarial]
            with torch.no_grad():
                self.scores = torch.stack([torch.cat([difficulty_scores(model, a[i:i + bs], self.y[i:i + bs])
                                                      for i in range(0, n, bs)]) for a in self.adversarial])
                self.fooled = torch.stack([torch.cat([self.classifier(a[i:i + bs]).argmax(1) != self.groups[i:i + bs]
                                                      for i in range(0, n, bs)]) for a in self.adversarial])
        finally:
            for module, mode in modes:
                module.training = mode
            model.zero_grad(set_to_none=True)
        self.stale = False

    def _refit_probe(self) -> None:
        """Warm-started Adam epochs of ``φ`` on the current latents (C's ``g`` is M's, in eval mode)."""
        with torch.no_grad():
            features = torch.cat([self.classifier.g(self.x[i:i + 512]).flatten(1).float()
                                  for i in range(0, len(self.x), 512)])
        probe = self.classifier.probe
        optimizer = torch.optim.Adam(probe.parameters(), lr=self.config.classifier_lr)
        generator = make_generator(self.seed, "asac probe", self.epoch)
        bs = self.config.batch_size
        for _ in range(self.config.classifier_epochs):
            order = torch.randperm(len(features), generator=generator).to(features.device)
            for i in range(0, len(order), bs):
                chosen = order[i:i + bs]
                loss = nn.functional.cross_entropy(probe(features[chosen]), self.groups[chosen])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

    def items(self, index: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor]]:
        index = index.to(self.device)
        return ([a[index] for a in self.adversarial], self.scores[:, index].reshape(-1),
                [f[index] for f in self.fooled])


def asac_step(classifier: nn.Module, cardinalities: list[int], config: AsacConfig, clock: CurriculumClock,
              seed: int = 0, bank: CounterfactualBank | None = None):
    """The per-minibatch update (Algorithm 1 + Eq. 5) as a step function for :func:`fairaudit.train.fit`.

    ``step(model, (x, y, s, index))`` takes the ``k × l`` ASACs of the batch
    from ``bank`` (made once per epoch; without a bank, or for a batch
    without ``index``, they are made here against ``classifier`` and scored
    with the current ``model``, Eq. 4), keeps the items the curriculum admits
    at the clock's progress and returns the mean Eq. 5 loss over them, plus
    per-``ε`` mean difficulty, the share of items that fool ``C`` and the
    share of items used.
    """
    epsilons = config.epsilon_values
    generator = make_generator(seed)  # the curriculum's random order
    starts: dict[str, torch.Generator] = {}  # PGD's random starts, one stream per device
    ce = nn.functional.cross_entropy

    def step(model: nn.Module, batch: tuple):
        x, y, s = batch[0], batch[1], batch[2]
        k = x.shape[0]
        groups = group_ids(s, cardinalities)
        if bank is not None and len(batch) > 3:
            if bank.stale:
                bank.refresh(model)
            adversarial, scores, fooled = bank.items(torch.as_tensor(batch[3]))
            adversarial[0] = x.detach()
        else:
            start = starts.setdefault(str(x.device), make_generator(seed, "asac pgd start", device=x.device))
            adversarial = make_counterfactuals(classifier, x, groups, epsilons, config.attack, config.pgd_steps,
                                               start)
            scores = difficulty_scores(model, torch.cat(adversarial), y.repeat(len(epsilons)))
            fooled = None
        items = torch.cat(adversarial)  # item j·k + i = image i at ε_j
        item_y = y.repeat(len(epsilons))
        fraction = pace(clock.fraction, config.pace_start, config.pace_length, config.pace_end)
        chosen = curriculum_selection(scores, config.order, fraction, generator)
        source = chosen % k
        perturbed = chosen[chosen >= k]  # ε > 0 items; for ε = 0 x′ is x itself
        logits = model(torch.cat([x, items[perturbed]]))
        loss_clean = ce(logits[:k].float(), y, reduction="none")
        loss_adv = loss_clean[source].clone()
        if len(perturbed):
            loss_adv[chosen >= k] = ce(logits[k:].float(), item_y[perturbed], reduction="none")
        loss = (config.alpha * loss_clean[source] + (1.0 - config.alpha) * loss_adv).mean()
        with torch.no_grad():
            scalars = {"items_used": chosen.numel() / items.shape[0],
                       "clean_accuracy": (logits[:k].argmax(1) == y).float().mean()}
            for j, eps in enumerate(epsilons):
                scalars[f"ds_eps_{_eps_key(eps)}"] = scores[j * k:(j + 1) * k].mean()
                if eps > 0:
                    hit = fooled[j] if fooled is not None else classifier(adversarial[j]).argmax(1) != groups
                    scalars[f"c_fooled_eps_{_eps_key(eps)}"] = hit.float().mean()
        return loss, scalars

    return step


# ---------------------------------------------------------------------------- statistics

def _eval_batches(ds: Dataset, batch_size: int, limit: int):
    """The first ``limit`` samples of ``ds`` in batches (the last one cut to size)."""
    if limit <= 0:
        return
    subset = torch.utils.data.Subset(ds, range(min(limit, len(ds))))
    yield from DataLoader(subset, batch_size=batch_size, shuffle=False)


def counterfactual_stats(model: nn.Module, classifier: nn.Module, ds: Dataset, cardinalities: list[int],
                         config: AsacConfig, device: torch.device, limit: int = 1000,
                         batch_size: int = 256, seed: int = 0) -> dict:
    """On up to ``limit`` samples of ``ds``: C's accuracy per ``ε`` and the target model's mean DS per ``ε``.

    The paper's Fig. 4 view: how much the noise that fools the gender
    classifier also moves the target model, before and after fine-tuning.
    """
    epsilons = config.epsilon_values
    correct = {e: 0 for e in epsilons}
    ds_sum = {e: 0.0 for e in epsilons}
    n = 0
    classifier.eval()
    start = make_generator(seed, "asac stats pgd start", device=device)
    for batch in _eval_batches(ds, batch_size, limit):
        x, y = batch[0].to(device).float(), torch.as_tensor(batch[1]).to(device)
        groups = group_ids(torch.as_tensor(batch[2]).to(device), cardinalities)
        adversarial = make_counterfactuals(classifier, x, groups, epsilons, config.attack, config.pgd_steps, start)
        for eps, x_adv in zip(epsilons, adversarial):
            with torch.no_grad():
                correct[eps] += int((classifier(x_adv).argmax(1) == groups).sum())
            ds_sum[eps] += float(difficulty_scores(model, x_adv, y).sum())
        n += len(y)
    if n == 0:
        return {"n": 0, "classifier_accuracy": {}, "difficulty": {}}
    return {"n": n, "classifier_accuracy": {_eps_key(e): correct[e] / n for e in epsilons},
            "difficulty": {_eps_key(e): ds_sum[e] / n for e in epsilons}}


# ---------------------------------------------------------------------------- the method

def _check_model(model: nn.Module) -> None:
    if not isinstance(model, SplitModel) or not getattr(model, "features_available", True):
        raise FairauditError("ASAC needs a model split into a feature extractor g and a head f (its protected-"
                             "attribute classifier is a probe on g); this model exposes no latent features.")


@register_method
class ASAC(MitigationMethod):
    name = "asac"
    summary = ("Attribute-specific adversarial counterfactuals (Shukla et al.): fine-tune the deployed model on "
               "images attacked to fool a gender (protected-attribute) classifier, easy to hard by the model's "
               "difficulty, with a convex mix of clean and counterfactual loss.")
    Config = AsacConfig
    kinds = ("image",)
    presets = {"quick": {"epochs": 1, "classifier_epochs": 1, "stats_samples": 200},
               # §5.3: 10 fine-tuning epochs on the deployed model's own data, batch 128, Adam at 1e-4; α = 0.5;
               # ε ∈ {0, 0.03, 0.05}
               "paper": {"epochs": 10, "batch_size": 128, "lr": 1e-4, "alpha": 0.5, "epsilons": "0,0.03,0.05",
                         "train_split": "train"}}
    controls = {"no_counterfactuals": {"epsilons": "0"},  # ε = 0 only: fine-tuning on the clean images
                "no_counterfactual_loss": {"alpha": 1.0}}  # α = 1 in Eq. 5: the counterfactuals' loss dropped
    target_metrics = ("deo",)

    def run(self, ctx: MethodContext, config: AsacConfig) -> MitigationResult:
        _check_model(ctx.model)
        device = resolve_device(ctx.device)
        splits = get_spec(ctx.dataset).splits
        split = fit_split(ctx, config.train_split, "ASAC")
        train_ds: FairDataset = ctx.load_split(split)
        if train_ds.kind != "image":
            raise FairauditError(f"ASAC attacks images; dataset '{ctx.dataset}' is {train_ds.kind}.")
        cardinalities = [len(train_ds.value_names[a]) for a in train_ds.sensitive]
        if math.prod(cardinalities) < 2:
            raise FairauditError("ASAC needs a sensitive attribute with at least two groups.")
        data = in_memory(train_ds, device, config.cache_mb)
        held_out = ctx.load_split("val" if "val" in splits and split != "val" else "test", "counterfactual_stats")

        ctx.progress({"event": "classifier", "fraction": 0.0})
        classifier = train_attribute_classifier(
            ctx.model, data, cardinalities, epochs=config.classifier_epochs, lr=config.classifier_lr,
            batch_size=config.batch_size, seed=ctx.seed, device=device, should_stop=ctx.should_stop)
        probe_path = _save_probe(classifier, Path(ctx.workdir))
        before = counterfactual_stats(ctx.model, classifier, held_out, cardinalities, config, device,
                                      limit=config.stats_samples, seed=ctx.seed)

        model = copy.deepcopy(ctx.model).to(device)
        model.requires_grad_(True)
        start = ctx.checkpoint_epoch() / config.epochs
        shared = config.classifier_features == "shared"
        attacked = classifier
        extra_state = None
        if shared:  # C(θ, φ) on the fine-tuned model's own θ, starting from the probe fitted above
            attacked = AttributeClassifier(model.g, classifier.probe.in_features, classifier.probe.out_features,
                                           freeze=False).to(device)
            attacked.probe.load_state_dict(classifier.probe.state_dict())
            extra_state = {"asac_probe": attacked.probe}
        bank = CounterfactualBank(data, attacked, cardinalities, config, device, seed=ctx.seed, shared=shared,
                                  epoch=round(start * config.epochs))

        def forward(event: dict) -> None:
            bank.on_event(event)
            ctx.progress(event)

        clock = CurriculumClock(start, forward=forward)
        history = ctx.fit(model, data, asac_step(attacked, cardinalities, config, clock, seed=ctx.seed, bank=bank),
                          settings=config, state=extra_state, progress=clock)
        bank.adversarial, bank.x = [], bank.x[:0]  # free the epoch's counterfactuals
        model.eval()
        after = counterfactual_stats(model, classifier, held_out, cardinalities, config, device,
                                     limit=config.stats_samples, seed=ctx.seed)
        stats = {"train_split": split, "train_samples": len(train_ds), "groups": math.prod(cardinalities),
                 "epsilons": list(config.epsilon_values), "held_out_split": held_out.split,
                 "stats_samples": before["n"],
                 "classifier_accuracy": before["classifier_accuracy"].get(_eps_key(0.0)),
                 "classifier_accuracy_under_attack": before["classifier_accuracy"],
                 "difficulty_before": before["difficulty"], "difficulty_after": after["difficulty"]}
        return MitigationResult(after_model=model, artifacts={"attribute_classifier": str(probe_path)},
                                stats=stats, history=history)


def _save_probe(classifier: AttributeClassifier, workdir: Path) -> Path:
    path = workdir / "asac_attribute_probe.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in classifier.probe.state_dict().items()}
    safetensors.torch.save_file(state, str(path))
    return path
