"""AEDA: adversarial example-based data augmentation for visual debiasing.

Zhang & Sang, "Towards Accuracy-Fairness Paradox: Adversarial Example-based
Data Augmentation for Visual Debiasing" (ACM MM 2020). When, for a target
class ``t``, one bias group ``b`` (e.g. a background colour or a gender) is
rare in training, a classifier learns the bias as a shortcut. AEDA fills the
rare (target, bias) cells with adversarial examples: a real sample of the
majority cell is attacked with I-FGSM until a bias classifier sees it as the
missing group, while a target classifier still sees its class (Eq. 3)::

    x_adv = argmin_x  λ·L_bias(x, b_attack) + (1 − λ)·L_target(x, t)

and the target model is trained on the originals plus ``{x_adv, t, b'}``.

Three variants, all returning the target classifier ``{g; h_t}`` as a model of
the deployed architecture:

* ``aeda_pre`` (§3.2): the examples are generated **once**, before training,
  against a separate bias network trained on the original data and against a
  preliminary target classifier (the deployed model, which is exactly a target
  classifier trained on the original training set, fn. 7); then a fresh model
  is trained on the augmented set.
* ``aeda_online`` (§3.3): one feature extractor ``g`` with two heads, ``h_t``
  (target) and ``h_b`` (bias). Every epoch ``m``: (Eq. 4) train ``g, h_t`` on
  ``X_ori ∪ X_adv^(m−1)``; (Eq. 5) train ``h_b`` on ``g(X_ori)`` with ``g``
  frozen; then regenerate ``X_adv^(m)`` from ``X_ori`` through ``{g; h_b}``
  and ``{g; h_t}`` (Eq. 3), so the examples keep up with the moving extractor.
* ``aeda_robust`` (§3.4): as online, but ``h_b`` is trained adversarially
  (Eq. 6) on ``g(X_ori ∪ X_adv^(m−1))``, which makes the bias classifier robust
  and the next examples carry more of the real bias attribute.

Choices the paper leaves open, made here:

1. I-FGSM under L∞ on ``[0, 1]`` pixels: ε = 0.1, 5 steps of ε/5, λ = 0.8,
   Adam at 2e-3 for the target model and 1e-2 for the linear bias head (it
   sees fixed features, so a few steps must fit it). None is stated in the
   paper. ε must stay below what separates the groups in pixel space, or the
   "adversarial" example is simply the sample repainted in the other group's
   colour: on colored-digits the red (0.80, 0.12, 0.10) and brown
   (0.55, 0.34, 0.14) backgrounds differ by at most 0.25 per channel, and with
   their ±0.06 jitter the closest red and brown backgrounds are 0.13 apart on
   the red channel. ε = 0.1 is below half the nominal gap (0.125) and below
   that 0.13, so no attacked background reaches the other colour's range: the
   bias classifier is fooled while the example keeps its own colour. (ε = 0.3,
   which covers the whole gap, debiased only slightly more on the 16 px
   protocol, one seed: bias-conflicting accuracy 0.52 against 0.49.) Every
   round records the mean and largest L∞ of the perturbation actually applied
   and the bias classifier's fooling rate (see :func:`generate_examples`).
2. Which samples are attacked: per target class, each bias group short of the
   class's largest group gets exactly the missing number of examples, drawn
   without replacement from that largest cell, so every (target, bias) cell
   of the augmented set has the same size (§3.2: "supplements the shortage of
   minority-bias samples"). The plan is drawn once (seeded); the online
   variants re-attack the same originals every epoch.
3. Several sensitive attributes: the bias variable is their intersection.
4. Eq. 6 as printed, ``min_{h_b} L_bias({X_ori, X_adv^(m−1)}, b; f)``: the
   bias head is fitted, with ``g`` frozen, on the features of the originals
   and of the examples trained on in this epoch, and every example is labelled
   with ``b``, the group of the original it was made from (standard adversarial
   training, which is what makes ``h_b`` robust to the previous attack); it
   carries the attacked label ``b'`` only in the target model's augmented
   training set (Eq. 4).
5. The alternation is per epoch as written; ``h_b`` is a linear head kept
   across epochs (not re-initialised) and trained for ``bias_epochs`` on
   features precomputed with the frozen ``g``.
6. ``X_adv^(0)`` is empty: the first epoch of the online variants is plain
   ERM, so they need at least two epochs to augment anything.

The paper's model bias, ``Σ_t |P(t̂ = t | b = 0, t) − P(t̂ = t | b = 1, t)|``
(Eq. 1 summed over the target classes; 7.84 for the original C-MNIST model,
0.53 for AEDA_robust), is every audit's ``bias_sum``; the methods are compared
with their controls on it and on ``eod`` (its mean over classes). The method's
statistics carry ``perturbation_linf`` and ``bias_fooling_rate`` of the last
examples the target model was trained on, and per round (online, robust) or
for the single attack (pre) the full attack statistics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, TensorDataset

from fairaudit.attacks import ifgsm_attack
from fairaudit.data.base import FairDataset
from fairaudit.device import resolve_device
from fairaudit.errors import FairauditError
from fairaudit.io_safety import atomic_write
from fairaudit.mitigation.base import MethodContext, MitigationMethod, MitigationResult, register_method
from fairaudit.mitigation.baselines.common import (RelabeledDataset, cell_counts, describe_cells, fresh_model,
                                                   group_attribute_codes, group_codes, in_memory, latent_dim,
                                                   setting)
from fairaudit.models.split import SplitModel

__all__ = ["AedaConfig", "AedaOnline", "AedaPre", "AedaRobust", "AdversarialSet", "AttackPlan", "SeparateModels",
           "TwoHeads", "balancing_plan", "composite_attack", "generate_examples"]


# ---------------------------------------------------------------------------- settings

@dataclass
class AedaConfig:
    """AEDA hyper-parameters (none is stated in the paper; defaults tuned on colored-digits)."""

    epochs: int = setting(10, "training epochs of the target model (paper: >= 40 on CelebA; bias stable after ~15)",
                          min=1)
    lr: float = setting(2e-3, "Adam learning rate of the target model g, h_t", min=0, min_inclusive=False)
    batch_size: int = setting(64, "mini-batch size", min=1)
    epsilon: float = setting(0.1, "L∞ bound of the I-FGSM perturbation on [0, 1] pixels (keep it below the "
                                  "pixel gap between the groups, or examples are repaints: colored-digits' "
                                  "backgrounds differ by at most 0.25 per channel)",
                                      min=0, min_inclusive=False, max=1, unit="pixels in [0, 1]")
    steps: int = setting(5, "I-FGSM iterations (step size epsilon / steps)", min=1)
    lam: float = setting(0.8, "λ of Eq. 3: weight of the bias-attack loss against the target-preserving loss",
                         min=0, max=1)
    bias_epochs: int = setting(1, "epochs of the bias classifier per round (aeda_pre: of the separate bias network)",
                               min=1)
    bias_lr: float = setting(1e-2, "Adam learning rate of the linear bias head h_b on frozen features "
                                        "(online / robust; aeda_pre's bias network uses lr)",
                                            min=0, min_inclusive=False)
    attack_batch_size: int = setting(256, "samples attacked at once", min=1)


# ---------------------------------------------------------------------------- which samples to attack

@dataclass
class AttackPlan:
    """Which originals are attacked (``sources``, indices into the train split) and into which group."""

    sources: np.ndarray
    targets: np.ndarray
    attack_groups: np.ndarray

    def __len__(self) -> int:
        return len(self.sources)


def balancing_plan(targets: np.ndarray, groups: np.ndarray, n_classes: int, n_groups: int,
                   rng: np.random.Generator) -> AttackPlan:
    """For every target class, enough examples per short group to match the class's largest group."""
    counts = cell_counts(targets, groups, n_classes, n_groups)
    sources, attack_groups = [], []
    for t in range(n_classes):
        if counts[t].sum() == 0:
            continue
        majority = int(counts[t].argmax())
        pool = np.flatnonzero((targets == t) & (groups == majority))
        for b in range(n_groups):
            missing = int(counts[t, majority] - counts[t, b])
            if missing > 0:
                sources.append(rng.choice(pool, missing, replace=False))
                attack_groups.append(np.full(missing, b))
    if not sources:
        empty = np.zeros(0, dtype=np.int64)
        return AttackPlan(empty, empty, empty)
    sources = np.concatenate(sources).astype(np.int64)
    return AttackPlan(sources, np.asarray(targets)[sources].astype(np.int64),
                      np.concatenate(attack_groups).astype(np.int64))


# ---------------------------------------------------------------------------- the attack (Eq. 3)

class TwoHeads(nn.Module):
    """``x ↦ (h_t(g(x)), h_b(g(x)))``: the coupled target and bias classifiers of Fig. 6 (one pass of ``g``)."""

    def __init__(self, g: nn.Module, target_head: nn.Module, bias_head: nn.Module):
        super().__init__()
        self.g, self.target_head, self.bias_head = g, target_head, bias_head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.g(x)
        return self.target_head(z), self.bias_head(z)


class SeparateModels(nn.Module):
    """``x ↦ (target(x), bias(x))`` for two independent networks (AEDA_pre)."""

    def __init__(self, target: nn.Module, bias: nn.Module):
        super().__init__()
        self.target, self.bias = target, bias

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.target(x), self.bias(x)


def composite_attack(classifiers: nn.Module, x: torch.Tensor, t: torch.Tensor, b_attack: torch.Tensor, *,
                     lam: float, epsilon: float, steps: int) -> torch.Tensor:
    """I-FGSM on Eq. 3: move ``x`` towards group ``b_attack`` while the target prediction stays ``t``.

    ``classifiers(x)`` returns ``(target_logits, bias_logits)`` (:class:`TwoHeads`
    or :class:`SeparateModels`); it runs in eval mode during the attack and
    gets its modes back.
    """
    ce = nn.functional.cross_entropy

    def objective(x_adv: torch.Tensor) -> torch.Tensor:
        target_logits, bias_logits = classifiers(x_adv)
        return (lam * ce(bias_logits.float(), b_attack, reduction="none")
                + (1.0 - lam) * ce(target_logits.float(), t, reduction="none"))

    return ifgsm_attack(classifiers, x, eps=epsilon, steps=steps, norm="linf", targeted=True, loss_fn=objective,
                        clip=(0.0, 1.0))


class AdversarialSet(Dataset):
    """Generated examples as training samples ``(x_adv, t, s', i)``; ``s'`` are the attacked group's codes."""

    def __init__(self, x: torch.Tensor, plan: AttackPlan, group_attribute_codes: torch.Tensor, offset: int):
        self.x, self.plan, self.offset = x, plan, offset
        self.targets = torch.as_tensor(plan.targets, dtype=torch.int64)
        self.groups = torch.as_tensor(plan.attack_groups, dtype=torch.int64)
        self.sensitive = group_attribute_codes[self.groups] if len(self.groups) else group_attribute_codes[:0]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, j):
        j = int(j)
        return self.x[j], self.targets[j], self.sensitive[j], self.offset + j


def _attribute_table(ds: FairDataset, n_groups: int) -> torch.Tensor:
    return torch.tensor([group_attribute_codes(g, ds) for g in range(n_groups)], dtype=torch.int64)


def _inputs(data: Dataset, indices: np.ndarray) -> torch.Tensor:
    if hasattr(data, "x"):
        return data.x[torch.as_tensor(indices)]
    return torch.stack([data[int(i)][0] for i in indices])


def generate_examples(data: Dataset, plan: AttackPlan, classifiers: nn.Module, config: AedaConfig,
                      device: torch.device) -> tuple[torch.Tensor, dict]:
    """Attack the planned originals (Eq. 3); returns the examples (on the CPU) and attack statistics.

    Statistics: ``perturbation_linf`` and ``perturbation_linf_max``, the mean
    and largest L∞ size of the perturbation actually applied (at most
    ``epsilon``); ``bias_fooling_rate``, the share of attacked samples whose
    predicted bias group differs from the bias classifier's prediction on the
    original; ``attack_success``, the share the bias classifier assigns to the
    attacked group; ``target_kept``, the share the target classifier still
    assigns to ``t``.
    """
    if len(plan) == 0:
        return torch.zeros(0, *data[0][0].shape), {"adv_samples": 0}
    out, success, flipped, kept, sizes = [], [], [], [], []
    modes = [(module, module.training) for module in classifiers.modules()]  # restored exactly, e.g. a deployed model
    try:
        for start in range(0, len(plan), config.attack_batch_size):
            sl = slice(start, start + config.attack_batch_size)
            x = _inputs(data, plan.sources[sl]).to(device).float()
            t = torch.as_tensor(plan.targets[sl], device=device)
            b = torch.as_tensor(plan.attack_groups[sl], device=device)
            x_adv = composite_attack(classifiers, x, t, b, lam=config.lam, epsilon=config.epsilon,
                                     steps=config.steps)
            classifiers.eval()
            with torch.no_grad():
                clean_bias = classifiers(x)[1].argmax(1)
                target_logits, bias_logits = classifiers(x_adv)
            success.append((bias_logits.argmax(1) == b).cpu())
            flipped.append((bias_logits.argmax(1) != clean_bias).cpu())
            kept.append((target_logits.argmax(1) == t).cpu())
            sizes.append((x_adv - x).flatten(1).abs().amax(1).cpu())
            out.append(x_adv.cpu())
    finally:
        for module, mode in modes:
            module.training = mode
    sizes = torch.cat(sizes).double()  # a float32 mean can exceed the max by one ulp
    stats = {"adv_samples": len(plan), "epsilon": float(config.epsilon),
             "perturbation_linf": float(sizes.mean()), "perturbation_linf_max": float(sizes.max()),
             "bias_fooling_rate": float(torch.cat(flipped).float().mean()),
             "attack_success": float(torch.cat(success).float().mean()),
             "target_kept": float(torch.cat(kept).float().mean())}
    return torch.cat(out), stats


# ---------------------------------------------------------------------------- helpers

def _round_progress(progress: Callable[[dict], None], start: float, end: float, extra: dict,
                    ) -> Callable[[dict], None]:
    """Forward one round's training events with ``fraction`` mapped into ``[start, end]`` by the position
    within the round's epoch; the epoch events carry the statistics of the examples trained on."""
    def emit(event: dict) -> None:
        event = dict(event)
        event["fraction"] = start + (end - start) * min(1.0, max(0.0, _within_epoch(event)))
        if event.get("event") == "epoch":
            event.update(extra)
        progress(event)

    return emit


def _within_epoch(event: dict) -> float:
    if event.get("event") == "step":
        return event["step"] / max(event["steps"], 1)
    return 1.0


@torch.no_grad()
def _features(g: nn.Module, data: Dataset, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """``g(x)`` of every sample of ``data`` in eval mode (batch-norm statistics untouched)."""
    was_training = g.training
    g.eval()
    try:
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        return torch.cat([g(batch[0].to(device).float()).flatten(1).float().cpu() for batch in loader])
    finally:
        g.train(was_training)


def _train_bias_head(head: nn.Linear, features: torch.Tensor, labels: torch.Tensor, config: AedaConfig,
                     ctx: MethodContext, seed: int, progress) -> float:
    """Eq. 5 / Eq. 6: fit ``h_b`` on frozen features; returns its accuracy on those training features."""
    ctx.fit(head, TensorDataset(features, labels), settings=config, epochs=config.bias_epochs, lr=config.bias_lr,
            seed=seed, checkpoint=False, **progress)
    device = next(head.parameters()).device
    with torch.no_grad():
        return float((head(features.to(device)).argmax(1).cpu() == labels).float().mean())


def _save_atomic(state: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _load(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None


class _Setup:
    """What every variant needs: the train split in memory, its groups and the balancing plan."""

    def __init__(self, ctx: MethodContext):
        self.ds = ctx.load_split("train")
        if self.ds.kind != "image":
            raise FairauditError(f"AEDA augments images; dataset '{ctx.dataset}' is {self.ds.kind}.")
        self.device = resolve_device(ctx.device)
        self.data = in_memory(self.ds, self.device)
        self.groups, self.n_groups = group_codes(self.ds)
        if self.n_groups < 2:
            raise FairauditError("AEDA needs a sensitive attribute with at least two groups.")
        self.counts = cell_counts(self.ds.targets, self.groups, self.ds.num_classes, self.n_groups)
        self.plan = balancing_plan(self.ds.targets, self.groups, self.ds.num_classes, self.n_groups,
                                   np.random.default_rng(ctx.seed))
        self.attribute_table = _attribute_table(self.ds, self.n_groups)

    def augmented(self, x_adv: torch.Tensor) -> Dataset:
        if len(x_adv) == 0:
            return self.data
        return ConcatDataset([self.data, AdversarialSet(x_adv, self.plan, self.attribute_table, len(self.ds))])

    def stats(self) -> dict:
        return {"train_samples": len(self.ds), "adv_samples_per_round": len(self.plan),
                "cells": describe_cells(self.counts, self.ds), "groups": self.n_groups}


def _headline(attack: dict, config: AedaConfig) -> dict:
    """The attack figures a reader checks first: the size of the perturbation and whether it fooled ``h_b``."""
    return {"epsilon": config.epsilon, "perturbation_linf": attack.get("perturbation_linf"),
            "bias_fooling_rate": attack.get("bias_fooling_rate")}


def _target_model(ctx: MethodContext) -> SplitModel:
    model = fresh_model(ctx.model, ctx.seed)
    model.requires_grad_(True)
    return model


# ---------------------------------------------------------------------------- AEDA_pre

class _AedaMethod(MitigationMethod):
    """What the three AEDA variants declare alike."""

    Config = AedaConfig
    kinds = ("image",)
    # The paper trains for at least 40 epochs (its Fig. 10b); optimiser, rate and batch are not published.
    presets = {"quick": {"epochs": 2, "bias_epochs": 1}, "paper": {"epochs": 40}}
    controls = {"erm": "erm"}  # the same architecture retrained without the adversarial examples
    target_metrics = ("bias_sum", "eod", "worst_group_accuracy")


@register_method
class AedaPre(_AedaMethod):
    name = "aeda_pre"
    summary = ("AEDA_pre (Zhang & Sang 2020, §3.2): fill the rare (target, bias) cells once with adversarial "
               "examples of a separate bias classifier, then retrain on the augmented set.")

    def run(self, ctx: MethodContext, config: AedaConfig) -> MitigationResult:
        setup = _Setup(ctx)
        examples_path = Path(ctx.workdir) / "aeda_examples.pt"
        saved = _load(examples_path) if ctx.resume else None
        if saved is not None:
            x_adv, attack = saved["x_adv"], dict(saved["stats"])
        else:
            bias_net = self._bias_network(ctx, setup, config)
            ctx.progress({"event": "attack", "fraction": 0.15})
            x_adv, attack = generate_examples(setup.data, setup.plan, SeparateModels(ctx.model, bias_net), config,
                                               setup.device)
            _save_atomic({"x_adv": x_adv, "stats": attack}, examples_path)
        model = _target_model(ctx)
        history = ctx.fit(model, setup.augmented(x_adv), settings=config, span=(0.2, 1.0))
        return MitigationResult(after_model=model.eval(), history=history,
                                stats={**setup.stats(), **_headline(attack, config), "attack": attack},
                                artifacts={"adversarial_examples": str(examples_path)})

    @staticmethod
    def _bias_network(ctx: MethodContext, setup: _Setup, config: AedaConfig) -> nn.Module:
        """A separate network of the deployed architecture that predicts the bias group (trained on X_ori)."""
        body = _target_model(ctx)
        net = SplitModel(body.g, nn.Linear(latent_dim(body), setup.n_groups), body.arch, setup.n_groups,
                         body.input_shape)
        ctx.fit(net, RelabeledDataset(setup.data, setup.groups), settings=config, epochs=config.bias_epochs,
                span=(0.0, 0.15), prefix="bias_", checkpoint=False)  # cheap: a resumed run trains it again
        return net.eval()


# ---------------------------------------------------------------------------- AEDA_online / AEDA_robust

class _CoupledAeda(_AedaMethod):
    """The alternation of §3.3 (``robust = False``) and §3.4 (``robust = True``)."""

    robust: bool = False

    def run(self, ctx: MethodContext, config: AedaConfig) -> MitigationResult:
        setup = _Setup(ctx)
        device = setup.device
        model = _target_model(ctx).to(device)  # {g; h_t}
        head = nn.Linear(latent_dim(model), setup.n_groups).to(device)  # h_b
        # The rounds continue one optimiser through a checkpoint, so a run without a job's checkpoint keeps one
        # in its own folder.
        train_ctx = ctx if ctx.checkpoint_path else dataclasses.replace(
            ctx, checkpoint_path=Path(ctx.workdir) / "aeda_checkpoint.pt")
        state_path = Path(ctx.workdir) / "aeda_state.pt"
        x_adv, attack, log, start = torch.zeros(0, *setup.ds.input_shape), {"adv_samples": 0}, [], 0
        state = _load(state_path) if ctx.resume else None
        if state is not None:
            head.load_state_dict(state["bias_head"])
            x_adv, attack, log, start = state["x_adv"], dict(state["attack"]), list(state["log"]), int(state["epoch"])
        b_ori = torch.as_tensor(setup.groups, dtype=torch.int64)
        history: list[dict] = []
        epochs = config.epochs
        for m in range(start, epochs):
            if ctx.should_stop():
                break
            # Eq. 4: train g and h_t on X_ori ∪ X_adv^(m−1), continuing the optimiser state of the last epoch.
            history = train_ctx.fit(model, setup.augmented(x_adv), settings=config, epochs=m + 1,
                                    seed=ctx.seed + m, stage=(m, epochs), checkpoint="rounds",
                                    resume=m > 0 or ctx.resume, span=(0.0, 1.0),
                                    progress=_round_progress(ctx.progress, m / epochs, (m + 0.5) / epochs, attack))
            record = {"epoch": m + 1, **attack}  # statistics of the examples trained on in this epoch
            if m == epochs - 1 or ctx.should_stop():
                log.append(record)
                break  # the last round's examples would never be trained on
            # Eq. 5 (online) / Eq. 6 (robust): the bias head on frozen features.
            features = _features(model.g, setup.data, device)
            labels = b_ori
            if self.robust and len(x_adv):
                features = torch.cat([features, _features(model.g, TensorDataset(x_adv), device)])
                labels = torch.cat([b_ori, b_ori[torch.as_tensor(setup.plan.sources)]])
            record["bias_head_accuracy"] = _train_bias_head(
                head, features, labels, config, ctx, ctx.seed + m,
                {"span": ((m + 0.5) / epochs, (m + 0.6) / epochs), "prefix": "bias_"})
            # Eq. 3 through {g; h_b} and {g; h_t}: X_adv^(m) from the originals.
            ctx.progress({"event": "attack", "fraction": (m + 0.6) / epochs})
            x_adv, attack = generate_examples(setup.data, setup.plan, TwoHeads(model.g, model.f, head), config,
                                              device)
            log.append(record)
            _save_atomic({"epoch": m + 1, "bias_head": head.state_dict(), "x_adv": x_adv, "attack": attack,
                          "log": log}, state_path)
        by_epoch = {r["epoch"]: r for r in log}
        history = [{**r, **{f"aeda_{k}": v for k, v in by_epoch.get(r["epoch"], {}).items() if k != "epoch"}}
                   for r in history]
        stats = {**setup.stats(), **_headline(attack, config), "variant": self.name, "last_attack": attack,
                 "rounds": log}
        return MitigationResult(after_model=model.eval(), history=history, stats=stats,
                                artifacts={"aeda_state": str(state_path)} if state_path.exists() else {})


@register_method
class AedaOnline(_CoupledAeda):
    name = "aeda_online"
    summary = ("AEDA_online (Zhang & Sang 2020, §3.3): shared extractor with target and bias heads; the "
               "adversarial examples that balance the (target, bias) cells are regenerated every epoch.")
    robust = False


@register_method
class AedaRobust(_CoupledAeda):
    name = "aeda_robust"
    summary = ("AEDA_robust (Zhang & Sang 2020, §3.4): AEDA_online with the bias head trained adversarially on "
               "the previous epoch's examples, so the examples carry more of the real bias attribute.")
    robust = True
