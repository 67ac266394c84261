"""FRoC-IN and the sequential fair-and-robust baselines RbF and FbR.

"Towards Fair and Robust Classification" (FRoC, EuroS&P 2022), §5 and §7.2.
The goal (Eq. 9) is a binary classifier that is accurate, fair in the sense
of statistical parity (bias score S_B = |P(ŷ=1|a=0) − P(ŷ=1|a=1)|, Eq. 7;
``bias_score`` in the audit) and robust to FGSM / PGD evasion attacks
(robustness score S_R = accuracy on adversarial test inputs, Eq. 8).

* ``froc_in`` (§5) trains the target model with Eq. 10::

      L = L_U(X, Y) + λ_F · F(A, X) + λ_R · R(X, Y)

  where L_U is the cross-entropy, F the relaxed statistical-parity gap
  (Eq. 13–14, :func:`relaxed_statistical_parity`) and R = L_U(X̃, Y) the
  loss on FGSM or PGD examples of the batch (Eq. 15). λ_F = λ_R = 0 is plain
  ERM, step for step.
* ``rbf`` (robustness before fairness, §7.2) and ``fbr`` (fairness before
  robustness) are PGD adversarial training (Eq. 3)::

      L̃ = L(x, y) + λ · L(x̃, y)

  combined with a fairness pre-processor, in the order of their names. The
  adversarial examples x̃ are regenerated against the model being trained at
  the start of every epoch, from the parameters at the end of the previous
  one (§5: "derived from the parameters of the model in the previous epoch";
  the authors' released code trains full-batch, so there an epoch is one
  step). By default (``train_threat=sr``) they are made within the very
  threat model the run's S_R is measured under (below): L∞ ε 0.1 on all
  columns, one-hot blocks included, 10 steps of ε/10 from the clean input,
  clipped to the range observed in the training split, so the model is
  trained against the attack it is scored under (against the true labels,
  which the loss L(x̃, y) needs). ``train_threat=numeric`` is the paper's ξ
  instead: ``epsilon`` (0.3) on the numeric columns only, clipped the same
  way. A sample and its adversarial example are in the same batch.

  - ``rbf``: every epoch, the training rows are first augmented with their
    adversarial examples (keeping ``a`` and ``y``), then the fairness
    pre-processor is applied to the augmented set and the epoch is trained on
    it: reweighing weighs both terms of Eq. 3 (the copies keep their rows'
    cells, so the augmented cells are the original ones doubled and the
    weights equal those of the original rows); DIR is fitted on the augmented
    rows, so the adversarial examples are repaired as well.
  - ``fbr``: the fairness pre-processor is applied once to the training rows;
    then adversarial training runs on the pre-processed rows (for DIR, the
    attack starts from the repaired rows). The robustness step does not know
    the fairness step: L(x̃, y) is unweighted, as in the authors' released code.

  Both train one fresh model for ``epochs`` epochs: with the same
  ``epochs``, ``batch_size`` and ``lr`` and ``optimizer=adam`` (the
  re-weighting baseline's optimiser) they take as many steps as the
  ``reweight`` control; ``lam = 0`` is the fairness pre-processor alone with
  this trainer and budget (the ``no_adversarial`` control, which the benchmark
  runs beside ``reweight`` with its own, shorter, defaults). The pre-processors (§7.1, both from
  AIF360 in the paper) are ``fairness=rw``, reweighing (Kamiran & Calders,
  :func:`fairaudit.mitigation.baselines.retraining.cell_weights`, scheme
  ``kamiran`` = AIF360's Reweighing), and ``fairness=dir``, Feldman et al.'s
  Disparate Impact Remover (:mod:`fairaudit.mitigation.baselines.disparate_impact`)
  with ``repair_level`` λ ∈ [0, 1]: each numeric feature's per-group
  distribution is moved towards the groups' median distribution,
  ``x̄ = (1 − λ)·x + λ·F_A⁻¹(F_a(x))``. As DIR repairs the test rows too
  (which needs each row's group), a ``dir`` result is the trained model
  applied to repaired inputs.

The training attacks are :func:`fairaudit.attacks.pgd_attack` /
:func:`~fairaudit.attacks.fgsm_attack` within :func:`fairaudit.robustness.attack_surface`
(settings ``attack``, ``epsilon``, ``steps``; ``rbf`` / ``fbr`` take the radius,
columns, steps and clipping from :func:`training_threat_model` and record theirs
as ``stats.training_attack``).

**S_R, one per result.** The S_R (Eq. 8) of a run is measured once, by the
job, before and after the method, under the method's named threat model
(:meth:`threat_model`, recorded as ``robustness.threat_model``); the method's
own stats carry no S_R. The FRoC family's default is the threat model of the
authors' released code, :func:`released_threat_model`: L∞ ε = 0.1
(``sr_eps``) on *all* input columns, one-hot blocks included
(``sr_features``), 10 PGD steps of ε/10 from the clean input (``sr_steps``),
scored against the model's *predicted* labels (``sr_labels``), on every test
row. Deviation from that code: the attacked columns are clipped to the range
observed in the test split (a one-hot column stays within [0, 1]), as every
other S_R of the project; ``sr_clip=none`` follows the code. Measured on
Adult (sex) with the demo model (clean accuracy 0.856, all 13,567 test rows):
S_R 0.560 clipped, 0.125 unclipped (the paper's Table 2: 0.146–0.148 under
PGD), 0.637 under the former ξ = 0.3 on the numeric columns only against the
true labels: with everything else equal, the clipping alone moves S_R from
0.125 to 0.560. With true labels, as everywhere in the project, a
test sample counts as robust only if its clean input and the attack's points
are all classified correctly; with predicted labels, S_R is the fraction of
test rows whose prediction the attack cannot change. ``eval_robustness=false``
turns the job's attack off for the run.

Choices where the paper is silent, made here:

1. FRoC-IN's training attack: ξ = 0.3 is the L∞ radius (as in Madry et al.,
   whom the paper follows); PGD takes 10 steps of ξ/10 from the clean input
   (no random start), as the authors' released code does. FGSM uses the same
   radius. This differs from the S_R threat model above (ε = 0.1, all
   columns), which follows the released code's evaluation. ``rbf`` / ``fbr``
   train within the S_R threat model by default (see above).
2. FRoC-IN's training attack on tabular data: only the standardised numeric
   features are perturbed (``feature_mask``); one-hot categorical blocks stay
   unchanged, and the perturbed values are not clipped. ``rbf`` / ``fbr``
   always clip to the observed range (unless ``sr_clip=none`` with
   ``train_threat=sr``), because unclipped examples that carry a
   label-dependent shift out of that range can be learnt as such (label
   leaking) instead of making the model robust. Images: every pixel, clipped
   to [0, 1].
3. The protected attribute is excluded from the model input (the tabular
   loaders' default); it must be a single binary attribute (a = code 0 vs 1;
   F is symmetric, so which code is the protected group does not matter).
4. F is computed per mini-batch with the dataset-level constants
   C0 = 1/Σ(1−a_i), C1 = 1/Σa_i of the whole training split (Eq. 14) and
   scaled by n/|B|, so the batch value estimates the full-data sum and λ_F
   does not depend on the batch size. Its gradient is autograd's, i.e.
   sign(Σc_iM_c)·Σc_i∇M_c (the printed formula's sign(|·|) and 1/n are read
   as typos).
5. FRoC-IN regenerates X̃ for every batch with the current parameters (the
   parameters of the previous optimisation step); ``rbf`` / ``fbr`` once per
   epoch, because their fairness pre-processor is applied to the whole
   augmented training set.
6. M_c(x) is the softmax probability of class 1 of the two-logit model, and
   L_U the two-class cross-entropy, which equals the paper's BCE.
7. ``froc_in`` trains a *fresh* model of the deployed architecture (the
   paper trains the target model with the new objective from scratch);
   ``init=deployed`` fine-tunes the deployed model instead. ``arch`` may
   name any registered builder, e.g. ``tabular_cnn``, the paper's §7.1
   network.
8. Optimiser: SGD (momentum 0.9) with the §7.1 learning rate 0.01, batch 256
   and 500 epochs. λ grids are not stated; λ_R = 0.1 (Table 3) and λ_F = 1.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from fairaudit.attacks import attack_by_name, check_attack
from fairaudit.data.base import FairDataset
from fairaudit.device import default_batch_size, resolve_device
from fairaudit.errors import FairauditError
from fairaudit.mitigation.base import MethodContext, MitigationMethod, MitigationResult, register_method, setting
from fairaudit.mitigation.baselines.common import CachedDataset, fresh_model, in_memory
from fairaudit.mitigation.baselines.disparate_impact import (QuantileRepair, RepairedPredictions, numeric_columns,
                                                             repair_stats)
from fairaudit.mitigation.baselines.retraining import cell_weights
from fairaudit.models.registry import MODEL_BUILDERS, MODEL_KINDS, build_model
from fairaudit.robustness import AttackSurface, ThreatModel, attack_surface
from fairaudit.seeding import seed_everything

__all__ = ["ExampleAttacker", "EpochAdversarialStep", "FbR", "FbrConfig", "FrocIn", "FrocInConfig", "FrocLoss", "RbF",
           "RbfConfig", "make_adversary", "numeric_feature_mask", "parity_constants", "positive_posterior",
           "released_threat_model", "relaxed_statistical_parity", "training_threat_model"]


# ---------------------------------------------------------------------------- the fairness regulariser

def parity_constants(a: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """``(c, C0, C1)`` of Eq. 14 for a binary protected attribute ``a`` (codes 0 / 1).

    ``C0 = 1/Σ(1−a_i)``, ``C1 = 1/Σa_i`` and ``c_i = C0 − a_i·C0 − a_i·C1``, so
    ``Σ c_i·p_i`` is the mean of ``p`` over group 0 minus its mean over group 1.
    """
    a = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).double().flatten()
    if a.numel() == 0 or not bool(((a == 0) | (a == 1)).all()):
        raise FairauditError("the statistical-parity regulariser needs a binary protected attribute coded 0 / 1.")
    n0, n1 = float((1 - a).sum()), float(a.sum())
    if n0 == 0 or n1 == 0:
        raise FairauditError("the statistical-parity regulariser needs members of both protected groups in the "
                             f"training split (got {int(n0)} with a=0 and {int(n1)} with a=1).")
    c0, c1 = 1.0 / n0, 1.0 / n1
    return (c0 - a * c0 - a * c1).float(), c0, c1


def relaxed_statistical_parity(scores: torch.Tensor, c: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """FRoC's fairness regulariser F (Eq. 13–14): ``|scale · Σ_i c_i · M_c(x_i)|``.

    ``scores`` are the posteriors M_c(x_i) of the positive class (the
    continuous relaxation of 1(ŷ=1), Eq. 12) and ``c`` the constants of
    :func:`parity_constants`. Over the whole training set (``scale=1``) this is
    the gap between the groups' mean posteriors; on a mini-batch ``B`` with
    the dataset-level ``c``, ``scale = n/|B|`` makes it an estimate of that sum.
    Differentiable in ``scores``.
    """
    return (scale * (c.to(scores.device, scores.dtype) * scores).sum()).abs()


def positive_posterior(logits: torch.Tensor) -> torch.Tensor:
    """M_c(x): the model's probability of class 1 (the favourable-or-not "positive" prediction of Eq. 7)."""
    return torch.softmax(logits.float(), dim=1)[:, 1]


# ---------------------------------------------------------------------------- the robustness regulariser

RELEASED_THREAT_MODEL = "froc_released_code"


def released_threat_model(eps: float = 0.1, features: str = "all", labels: str = "predicted", steps: int = 10,
                          samples: int | None = None, clip: str | None = "observed") -> ThreatModel:
    """The S_R threat model of the FRoC authors' released code: L∞ ``eps`` = 0.1 on all input columns
    (one-hot blocks included), ``steps`` PGD steps of ``eps / steps`` from the clean input, scored against the
    model's predicted labels, on all test rows (``samples=None``); by default clipped to the observed range (a
    deviation: the released code does not clip; ``clip=None`` follows it)."""
    return ThreatModel(eps=float(eps), norm="linf", features=features, labels=labels, steps=int(steps),
                       random_start=False, samples=samples, clip=clip, name=RELEASED_THREAT_MODEL)


def _threat(ds: FairDataset) -> AttackSurface:
    """The training attack's surface on ``ds``: numeric features only and no clipping on tabular data,
    all pixels within [0, 1] on images (the robustness engine's :func:`~fairaudit.robustness.attack_surface`)."""
    return attack_surface(ds, clip=None)


def numeric_feature_mask(ds: FairDataset) -> torch.Tensor | None:
    """``1`` on the numeric feature columns of a tabular split, ``0`` on its one-hot blocks; ``None`` for images."""
    return _threat(ds).feature_mask


@dataclass
class ExampleAttacker:
    """FGSM or PGD examples against the true labels (Eq. 1, 2), as used by R (Eq. 15) and RbF / FbR.

    ``epsilon`` is the L∞ radius ξ; PGD takes ``steps`` steps of ``epsilon / steps``
    from the clean input. ``feature_mask`` restricts which features move and
    ``clip`` is the valid input range (``None`` for standardised tabular data).
    """

    attack: str = "pgd"
    epsilon: float = 0.3
    steps: int = 10
    feature_mask: torch.Tensor | None = None
    clip: tuple[float, float] | None = (0.0, 1.0)

    def __post_init__(self) -> None:
        check_attack(self.attack)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mask = None if self.feature_mask is None else self.feature_mask.to(x.device)
        # FRoC's schedule: steps of eps / steps from the clean input (not the library's random-start default).
        return attack_by_name(self.attack, model, x, y, eps=self.epsilon, steps=self.steps,
                              step_size=self.epsilon / self.steps, random_start=False, clip=self.clip,
                              feature_mask=mask)


def make_adversary(ds: FairDataset, attack: str = "pgd", epsilon: float = 0.3, steps: int = 10) -> ExampleAttacker:
    """FGSM / PGD examples within the paper's threat model for ``ds`` (see :func:`numeric_feature_mask`)."""
    threat = _threat(ds)
    return ExampleAttacker(attack, float(epsilon), int(steps), threat.feature_mask, threat.clip)


def _batch_size(ds: Dataset, device: torch.device, batch_size: int | None) -> int:
    return batch_size or default_batch_size(device, "tabular" if getattr(ds, "kind", None) == "tabular"
                                            or (len(ds) and ds[0][0].dim() == 1) else "image")


# ---------------------------------------------------------------------------- the objective (Eq. 10)

class FrocLoss:
    """A step for :func:`fairaudit.train.fit`: Eq. 10, ``L_U + λ_F·F + λ_R·R`` on one batch ``(x, y, s, i)``.

    Parameters
    ----------
    lambda_f, lambda_r:
        Weights of the fairness (Eq. 14) and robustness (Eq. 15) regularisers;
        a term with weight 0 is not computed at all, so λ_F = λ_R = 0 is the
        plain cross-entropy step exactly.
    c:
        Per-sample constants ``c_i`` of Eq. 14 for the whole training split,
        indexed by the sample index ``i`` of the batch (needed when ``lambda_f > 0``).
    adversary:
        Builds X̃ for R (needed when ``lambda_r > 0``).
    sample_weights:
        Optional per-sample weights (indexed like ``c``) of L_U and R, e.g.
        reweighing; F stays unweighted.
    track_angle:
        Also log ``angle_f_r``, the angle in degrees between ∇_θF and ∇_θR
        (§7.3, Fig. 4: above 90° the two regularisers compete); costs two
        extra backward passes per batch.

    Logged per batch: ``utility`` (L_U), ``fairness`` (F) and, with λ_R > 0,
    ``robustness`` (R).
    """

    def __init__(self, lambda_f: float = 0.0, lambda_r: float = 0.0, c: torch.Tensor | None = None,
                 adversary: ExampleAttacker | None = None, sample_weights: torch.Tensor | None = None,
                 track_angle: bool = False):
        if lambda_f < 0 or lambda_r < 0:
            raise FairauditError(f"the regulariser weights must be >= 0, got λ_F={lambda_f}, λ_R={lambda_r}.")
        if lambda_f > 0 and c is None:
            raise FairauditError("the fairness regulariser needs the constants c of Eq. 14.")
        if lambda_r > 0 and adversary is None:
            raise FairauditError("the robustness regulariser needs an adversary (FGSM or PGD).")
        self.lambda_f, self.lambda_r, self.adversary = float(lambda_f), float(lambda_r), adversary
        self._c = c
        self._weights = sample_weights
        self.track_angle = bool(track_angle)
        self._cache: dict = {}

    def _on(self, name: str, tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
        if tensor is None:
            return None
        key = (name, device)
        if key not in self._cache:
            self._cache[key] = tensor.to(device)
        return self._cache[key]

    def _utility(self, logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        if w is None:
            return nn.functional.cross_entropy(logits, y)  # the exact ERM step of the shared trainer
        return (w * nn.functional.cross_entropy(logits.float(), y, reduction="none")).mean()

    def __call__(self, model: nn.Module, batch: tuple):
        x, y = batch[0], batch[1]
        idx = torch.as_tensor(batch[3], device=x.device).long()
        w = self._on("w", self._weights, x.device)
        w = None if w is None else w[idx]
        logits = model(x)
        utility = self._utility(logits, y, w)
        loss, scalars = utility, {"utility": float(utility.detach())}
        c = self._on("c", self._c, x.device)
        if c is not None:
            fairness = relaxed_statistical_parity(positive_posterior(logits), c[idx], len(c) / len(y))
            scalars["fairness"] = float(fairness.detach())
            if self.lambda_f > 0:
                loss = loss + self.lambda_f * fairness
        if self.lambda_r > 0:
            x_adv = self.adversary(model, x, y)
            robustness = self._utility(model(x_adv), y, w)
            scalars["robustness"] = float(robustness.detach())
            loss = loss + self.lambda_r * robustness
            if self.track_angle and c is not None:
                scalars["angle_f_r"] = _gradient_angle(model, fairness, robustness)
        return loss, scalars


def _gradient_angle(model: nn.Module, first: torch.Tensor, second: torch.Tensor) -> float:
    """Angle in degrees between the parameter gradients of two losses (the graph is kept for the step)."""
    params = [p for p in model.parameters() if p.requires_grad]
    flat = []
    for value in (first, second):
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten().float()
                               for g, p in zip(grads, params)]))
    cosine = torch.nn.functional.cosine_similarity(flat[0], flat[1], dim=0).clamp(-1.0, 1.0)
    return float(torch.rad2deg(torch.arccos(cosine)))


# ---------------------------------------------------------------------------- settings

def _ARCHES() -> tuple[str, ...]:
    """The architectures a FRoC method may train: the deployed model's, or a registered builder."""
    return ("deployed", *sorted(MODEL_BUILDERS))


@dataclass
class _FrocTraining:
    """Training and threat-model settings shared by froc_in, rbf and fbr (defaults of §7.1)."""

    epochs: int = setting(500, "training epochs (paper §7.1: 500)", min=1)
    batch_size: int = setting(256, "mini-batch size (paper: 256)", min=1)
    lr: float = setting(0.01, "learning rate (paper: 0.01)", min=0, min_inclusive=False)
    optimizer: str = setting("sgd", "'sgd' (momentum 0.9, as in the paper) or 'adam'", choices=("sgd", "adam"))
    attack: str = setting("pgd", "training attack (the robustness term / adversarial training): 'pgd' or 'fgsm'",
                          choices=("pgd", "fgsm"))
    epsilon: float = setting(0.3, "L∞ radius ξ of the training attack (paper: 0.3, on standardised numeric "
                                  "features)", min=0)
    steps: int = setting(10, "PGD steps of the training attack, of size epsilon / steps", min=1)
    arch: str = setting("deployed", "architecture trained: 'deployed' (that of the deployed model) or a builder, "
                                    "e.g. 'tabular_cnn' (the paper's conv net, §7.1) or 'mlp'", choices=_ARCHES)
    eval_robustness: bool = setting(True, "measure S_R (accuracy under attack, Eq. 8) before and after, on the "
                                          "test split, under the sr_* threat model")
    sr_eps: float = setting(0.1, "S_R threat model: L∞ radius (the authors' released code: 0.1)", min=0)
    sr_features: str = setting("all", "S_R threat model: attacked columns, 'all' (one-hot blocks included, as the "
                                      "released code) or 'numeric'", choices=("all", "numeric"))
    sr_labels: str = setting("predicted", "S_R threat model: labels attacked and scored against, 'predicted' (the "
                                          "model's clean prediction, as the released code) or 'true'",
                                              choices=("predicted", "true"))
    sr_steps: int = setting(10, "S_R threat model: PGD steps of size sr_eps / sr_steps from the clean input", min=1)
    sr_clip: str = setting("observed", "S_R threat model: 'observed' (attacked columns stay within their range "
                                       "observed in the test split) or 'none' (unclipped, as the released code)",
                                           choices=("observed", "none"))


@dataclass
class FrocInConfig(_FrocTraining):
    """FRoC-IN settings (Eq. 10)."""

    lambda_f: float = setting(1.0, "λ_F, weight of the statistical-parity regulariser F (Eq. 13-14)", min=0)
    lambda_r: float = setting(0.1, "λ_R, weight of the robustness regulariser R = L_U(X̃, Y) (Eq. 15; Table 3: 0.1)",
                              min=0)
    init: str = setting("fresh", "'fresh': train a new model (as the paper); 'deployed': fine-tune the deployed one",
                        choices=("fresh", "deployed"))
    track_angle: bool = setting(False, "log the angle between the gradients of F and R per epoch (Fig. 4; slower)")


@dataclass
class _SequentialConfig(_FrocTraining):
    """Settings of the sequential baselines (§7.2)."""

    epsilon: float = setting(0.3, "L∞ radius ξ of the training attack with train_threat=numeric (paper: 0.3, on "
                                  "standardised numeric features); with train_threat=sr the radius is sr_eps", min=0)
    steps: int = setting(10, "PGD steps of the training attack with train_threat=numeric (sr_steps with "
                             "train_threat=sr)", min=1)
    lam: float = setting(0.1, "λ of adversarial training (Eq. 3), weight of the loss on the adversarial examples "
                              "(paper grid 0, 0.01, 0.05, 0.1, 0.5, 1)", min=0)
    fairness: str = setting("rw", "fairness pre-processor: 'rw' (reweighing, Kamiran & Calders) or 'dir' (Disparate "
                                  "Impact Remover, Feldman et al.; numeric tabular features)", choices=("rw", "dir"))
    scheme: str = setting("kamiran", "reweighing (fairness=rw): 'kamiran' (P(y)P(a)/P(y,a), AIF360's Reweighing) "
                                     "or 'balanced'", choices=("kamiran", "balanced"))
    repair_level: float = setting(1.0, "λ of DIR's repair (fairness=dir): 0 keeps the features, 1 gives both groups "
                                       "the median distribution of each numeric feature", min=0, max=1)
    train_threat: str = setting("sr", "threat model of the training attack: 'sr' (the one S_R is measured under: "
                                      "sr_eps on sr_features in sr_steps steps, clipped as sr_clip; epsilon and "
                                      "steps are then unused) or 'numeric' (the paper's ξ: epsilon on the numeric "
                                      "columns, steps steps, clipped to the observed range)", choices=("sr", "numeric"))


@dataclass
class RbfConfig(_SequentialConfig):
    """RbF (robustness before fairness) settings."""


@dataclass
class FbrConfig(_SequentialConfig):
    """FbR (fairness before robustness) settings."""


# ---------------------------------------------------------------------------- shared plumbing

def _binary_attribute(ds: FairDataset, method: str) -> np.ndarray:
    """The protected attribute a ∈ {0, 1} of every row; FRoC handles one binary attribute and a binary target."""
    if ds.num_classes != 2:
        raise FairauditError(f"{method} is defined for binary classifiers; target '{ds.target}' has "
                             f"{ds.num_classes} classes.")
    if len(ds.sensitive) != 1 or len(ds.value_names[ds.sensitive[0]]) != 2:
        values = {a: len(ds.value_names[a]) for a in ds.sensitive}
        raise FairauditError(f"{method} needs one binary sensitive attribute (e.g. sex or race_binary), got "
                             f"{values}.")
    return np.asarray(ds.sensitive_codes[:, 0], dtype=np.int64)


def _new_model(ctx: MethodContext, config: _FrocTraining, ds: FairDataset) -> nn.Module:
    if config.arch == "deployed":
        return fresh_model(ctx.model, ctx.seed)
    if MODEL_KINDS.get(config.arch, "image") != ds.kind:
        raise FairauditError(f"architecture '{config.arch}' is for {MODEL_KINDS.get(config.arch)} data, but "
                             f"'{ds.name}' is {ds.kind}.")
    seed_everything(ctx.seed)
    return build_model(config.arch, ds.num_classes, ds.input_shape)


def _fit(ctx: MethodContext, model: nn.Module, data: Dataset, config: _FrocTraining, step: FrocLoss) -> list[dict]:
    return ctx.fit(model, data, step, settings=config, optimizer=config.optimizer)


def _threat_model(config: _FrocTraining) -> ThreatModel:
    """The S_R threat model of a FRoC-family run (see the module docstring); ``samples=0`` with
    ``eval_robustness=false``."""
    return released_threat_model(config.sr_eps, config.sr_features, config.sr_labels, config.sr_steps,
                                 samples=None if config.eval_robustness else 0,
                                 clip=None if config.sr_clip == "none" else "observed")


def _attack_stats(config: _FrocTraining, adversary: ExampleAttacker) -> dict:
    return {"attack": adversary.attack, "epsilon": adversary.epsilon,
            "steps": adversary.steps if adversary.attack == "pgd" else 1,
            "perturbed_features": None if adversary.feature_mask is None else int(adversary.feature_mask.sum())}


# ---------------------------------------------------------------------------- FRoC-IN

@register_method
class FrocIn(MitigationMethod):
    name = "froc_in"
    summary = ("FRoC-IN: train with cross-entropy + λ_F·(relaxed statistical-parity gap) + λ_R·(loss on FGSM/PGD "
               "examples), for a fair and robust binary classifier.")
    Config = FrocInConfig
    presets = {"quick": {"epochs": 2},
               # §7.1: 500 epochs, batch 256, learning rate 0.01 (SGD), ξ = 0.3 on the standardised numeric features
               "paper": {"epochs": 500, "batch_size": 256, "lr": 0.01, "optimizer": "sgd", "epsilon": 0.3,
                         "lambda_r": 0.1}}
    controls = {"no_fairness": {"lambda_f": 0.0},  # λ_F = 0 in Eq. 10: no statistical-parity term
                "no_robustness": {"lambda_r": 0.0}}  # λ_R = 0 in Eq. 10: no adversarial term
    target_metrics = ("spd", "s_r")

    def run(self, ctx: MethodContext, config: FrocInConfig) -> MitigationResult:
        train_ds = ctx.load_split("train")
        a = _binary_attribute(train_ds, "FRoC-IN")
        c, c0, c1 = parity_constants(a)
        adversary = make_adversary(train_ds, config.attack, config.epsilon, config.steps)
        if config.init == "deployed":
            model = copy.deepcopy(ctx.model)
            model.requires_grad_(True)
        else:
            model = _new_model(ctx, config, train_ds)
        step = FrocLoss(config.lambda_f, config.lambda_r, c, adversary if config.lambda_r > 0 else None,
                        track_angle=config.track_angle)
        history = _fit(ctx, model, in_memory(train_ds, ctx.device), config, step)
        model.eval()
        stats = {"train_samples": len(train_ds), "protected_attribute": train_ds.sensitive[0], "C0": c0, "C1": c1,
                 "lambda_f": config.lambda_f, "lambda_r": config.lambda_r, **_attack_stats(config, adversary)}
        return MitigationResult(after_model=model, history=history, stats=stats)

    def threat_model(self, config: FrocInConfig) -> ThreatModel:
        return _threat_model(config)


# ---------------------------------------------------------------------------- sequential baselines

def _reweighing(targets: np.ndarray, a: np.ndarray, scheme: str) -> np.ndarray:
    """Per-sample reweighing weights of the (label, protected group) cells (the re-weighting baseline's)."""
    return cell_weights(np.asarray(targets, dtype=np.int64), np.asarray(a, dtype=np.int64), 2, 2, scheme)


def training_threat_model(config: _SequentialConfig) -> ThreatModel:
    """The threat model adversarial training (Eq. 3) defends against.

    With ``train_threat=sr`` (the default) it is the run's S_R threat model (equal to what
    :meth:`RbF.threat_model` returns), so the model is trained against the attack it is scored under: radius ``sr_eps``,
    columns ``sr_features``, ``sr_steps`` steps of ``sr_eps / sr_steps`` from the clean input, clipping
    ``sr_clip``. With ``train_threat=numeric`` it is the paper's ξ: ``epsilon`` on the numeric columns only,
    ``steps`` steps, clipped to the observed range. Either way the attack targets the true labels (the loss
    L(x̃, y) of Eq. 3 needs them), and the range a tabular column is clipped to is the one observed in the
    training split."""
    if config.train_threat == "sr":
        return _threat_model(config)
    return ThreatModel(eps=float(config.epsilon), norm="linf", features="numeric", labels="true",
                       steps=int(config.steps), random_start=False, clip="observed", name="paper_xi")


def _training_adversary(ds: FairDataset, config: _SequentialConfig) -> ExampleAttacker:
    """The configured FGSM / PGD of adversarial training within :func:`training_threat_model` on ``ds``
    (all pixels of an image, within ``[0, 1]``)."""
    threat = training_threat_model(config)
    surface = attack_surface(ds, clip=threat.clip, features=threat.features)
    return ExampleAttacker(config.attack, float(threat.eps), int(threat.steps), surface.feature_mask, surface.clip)


def _attack_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, adversary: ExampleAttacker,
                 batch_size: int) -> torch.Tensor:
    """X̃ of every row of ``x`` (on ``x``'s device) against ``model`` as it is now."""
    return torch.cat([adversary(model, x[k:k + batch_size], y[k:k + batch_size]).float()
                      for k in range(0, len(x), batch_size)])


class EpochAdversarialStep:
    """A step for :func:`fairaudit.train.fit`: Eq. 3, ``L(x, y) + λ·L(x̃, y)``, with per-sample weights.

    At the first batch of every epoch, ``prepare(model, device)`` builds the
    epoch's training tensors from the current parameters (those at the end of
    the previous epoch): ``(inputs, adversarial, w, w_adv)``, one row per
    training sample; ``adversarial`` is ``None`` when λ = 0. Each batch
    ``(x, y, s, i)`` then reads its rows ``i`` of these tensors, so the
    adversarial examples always target the model being trained. The losses are
    ``mean(w·CE(inputs))`` (logged as ``utility``) and ``mean(w_adv·CE(adversarial))``
    (``robustness``). ``regenerations`` counts the epochs prepared.
    """

    def __init__(self, n: int, lam: float, prepare: Callable[[nn.Module, torch.device], tuple]):
        self.n, self.lam, self.prepare = int(n), float(lam), prepare
        self.regenerations = 0
        self._seen = 0
        self._tensors: tuple | None = None

    @staticmethod
    def _weighted(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (w * nn.functional.cross_entropy(logits.float(), y, reduction="none")).mean()

    def __call__(self, model: nn.Module, batch: tuple):
        y = batch[1]
        idx = torch.as_tensor(batch[3], device=y.device).long()
        if self._seen == 0:  # a new epoch: every sample index is visited once per epoch
            self._tensors = tuple(None if t is None else t.to(y.device) for t in self.prepare(model, y.device))
            self.regenerations += 1
        self._seen += len(idx)
        if self._seen >= self.n:
            self._seen = 0
        inputs, adversarial, w, w_adv = self._tensors
        utility = self._weighted(model(inputs[idx]), y, w[idx])
        loss, scalars = utility, {"utility": float(utility.detach())}
        if self.lam > 0 and adversarial is not None:
            robustness = self._weighted(model(adversarial[idx]), y, w_adv[idx])
            scalars["robustness"] = float(robustness.detach())
            loss = loss + self.lam * robustness
        return loss, scalars


class _SequentialRun:
    """What RbF and FbR share: the training split, its protected attribute, the attack and the fairness step."""

    def __init__(self, ctx: MethodContext, config: _SequentialConfig, method: str):
        self.ctx, self.config, self.method = ctx, config, method
        self.train = ctx.load_split("train")
        self.a = _binary_attribute(self.train, method)
        self.columns = numeric_columns(self.train, f"{method} with fairness=dir") if config.fairness == "dir" else []
        data = in_memory(self.train, ctx.device)
        if not isinstance(data, CachedDataset):
            raise FairauditError(f"{method} keeps the training split and one adversarial example of each sample in "
                                 f"memory, but the {len(self.train)} training inputs of '{self.train.name}' exceed "
                                 "the 2 GB in-memory budget; use froc_in, which attacks each batch on the fly.")
        self.data = data
        self.x = data.x.float()
        self.y = torch.as_tensor(self.train.targets, dtype=torch.int64)
        self.threat = training_threat_model(config)
        self.adversary = _training_adversary(self.train, config)
        self.batch = _batch_size(data, resolve_device(ctx.device), None)
        self.repair: QuantileRepair | None = None
        self.repaired_rows: tuple | None = None  # (before, after, groups) of the last repair

    def training_attack(self) -> dict:
        """What the training attack was: its threat model's fields, the attack and the number of moved columns."""
        threat, adversary = self.threat, self.adversary
        steps = adversary.steps if adversary.attack == "pgd" else 1
        clip = threat.clip if self.train.kind == "tabular" else [0.0, 1.0]
        return {"threat_model": threat.name, "same_as_s_r": self.config.train_threat == "sr",
                "attack": adversary.attack, "epsilon": adversary.epsilon, "steps": steps,
                "step_size": adversary.epsilon / steps, "random_start": False, "features": threat.features,
                "perturbed_features": None if adversary.feature_mask is None else int(adversary.feature_mask.sum()),
                "clip": "observed range (training split)" if clip == "observed" else clip, "labels": "true"}

    def attack(self, model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        return _attack_rows(model, x, self.y.to(device), self.adversary, self.batch)

    def fairness(self, x: torch.Tensor, targets: np.ndarray, a: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The fairness pre-processor on rows ``x`` with labels ``targets`` and groups ``a``: reweighing
        (weights, inputs unchanged) or the disparate-impact repair (repaired inputs, weights 1)."""
        if self.config.fairness == "rw":
            return x, torch.as_tensor(_reweighing(targets, a, self.config.scheme), dtype=torch.float32)
        self.repair = QuantileRepair(self.columns, self.config.repair_level, self.ctx.seed)
        rows = x.detach().cpu().numpy()
        repaired = self.repair.fit_transform(rows, a)
        self.repaired_rows = (rows, repaired, np.asarray(a))
        return torch.from_numpy(repaired).to(x.device, torch.float32), torch.ones(len(x))

    def finish(self, model: nn.Module, history: list[dict], step: EpochAdversarialStep) -> MitigationResult:
        model.eval()
        config = self.config
        predictions = None if self.repair is None else RepairedPredictions(model, self.repair, self.ctx.device)
        stats = {"train_samples": len(self.train), "lam": config.lam, "fairness": config.fairness,
                 "adversarial_examples": "regenerated every epoch against the model being trained",
                 "regenerations": step.regenerations if config.lam > 0 else 0,
                 **_attack_stats(config, self.adversary),
                 "training_attack": self.training_attack()}
        if config.fairness == "rw":
            stats["scheme"] = config.scheme
            stats.update(_weight_stats(_reweighing(self.train.targets, self.a, config.scheme), self.train.targets,
                                       self.a, self.train))
        else:
            # Over the rows the (last) repair was fitted on: for rbf, the training rows and their adversarial
            # examples together.
            names = self.train.feature_names or [str(j) for j in range(self.x.shape[1])]
            before, after, groups = self.repaired_rows
            stats["repair_level"] = config.repair_level
            stats["repaired_rows"] = len(groups)
            stats["repaired_features"] = repair_stats(before, after, groups, self.columns, names)
        if predictions is not None:
            return MitigationResult(after_predictions=predictions, history=history, stats=stats)
        return MitigationResult(after_model=model, history=history, stats=stats)


SEQUENTIAL_PRESETS = {
    "quick": {"epochs": 2},
    # §7.1: 500 epochs, batch 256, learning rate 0.01 (SGD), ξ = 0.3 on the standardised numeric features
    "paper": {"epochs": 500, "batch_size": 256, "lr": 0.01, "optimizer": "sgd", "epsilon": 0.3},
}
"""Presets of the two sequential baselines, RbF and FbR."""
SEQUENTIAL_CONTROLS = {"reweight": "reweight", "no_adversarial": {"lam": 0.0}}
"""Controls of RbF and FbR: the fairness step alone (the reweight method, with its own trainer and defaults),
and the same run, same trainer and budget, with the adversarial term of Eq. 3 removed (λ = 0)."""


@register_method
class RbF(MitigationMethod):
    name = "rbf"
    summary = ("Robustness before fairness (FRoC §7.2 baseline): PGD adversarial training (Eq. 3) within the "
               "threat model S_R is measured under, the examples of each epoch added to the data before the "
               "fairness pre-processor (reweighing or DIR) is applied.")
    Config = RbfConfig
    presets = SEQUENTIAL_PRESETS
    controls = SEQUENTIAL_CONTROLS
    target_metrics = ("spd", "s_r")

    def run(self, ctx: MethodContext, config: RbfConfig) -> MitigationResult:
        run = _SequentialRun(ctx, config, "RbF")
        n, targets, a = len(run.train), run.train.targets, run.a

        def prepare(model: nn.Module, device: torch.device) -> tuple:
            # Robustness first: this epoch's X̃ of every row against the current model, same a and y ...
            x = run.x.to(device)
            if config.lam == 0:
                inputs, w = run.fairness(x, targets, a)
                return inputs, None, w, None
            x_adv = run.attack(model, x, device)
            # ... then fairness, on the training data augmented with them.
            augmented, w = run.fairness(torch.cat([x, x_adv]), np.concatenate([targets, targets]),
                                        np.concatenate([a, a]))
            return augmented[:n], augmented[n:], w[:n], w[n:]

        step = EpochAdversarialStep(n, config.lam, prepare)
        model = _new_model(ctx, config, run.train)
        history = _fit(ctx, model, run.data, config, step)
        return run.finish(model, history, step)

    def threat_model(self, config: RbfConfig) -> ThreatModel:
        return _threat_model(config)


@register_method
class FbR(MitigationMethod):
    name = "fbr"
    summary = ("Fairness before robustness (FRoC §7.2 baseline): apply the fairness pre-processor (reweighing or "
               "DIR) to the training data, then PGD adversarial training (Eq. 3) on it within the threat model S_R "
               "is measured under, with the same budget.")
    Config = FbrConfig
    presets = SEQUENTIAL_PRESETS
    controls = SEQUENTIAL_CONTROLS
    target_metrics = ("spd", "s_r")

    def run(self, ctx: MethodContext, config: FbrConfig) -> MitigationResult:
        run = _SequentialRun(ctx, config, "FbR")
        # Fairness first, once, on the training data ...
        fair_x, w = run.fairness(run.x, run.train.targets, run.a)
        ones = torch.ones(len(run.train))

        def prepare(model: nn.Module, device: torch.device) -> tuple:
            # ... then robustness: this epoch's X̃ of the pre-processed rows against the current model. The
            # attack's examples carry no fairness weight (L(x̃, y) of Eq. 3, as the authors' released code).
            x = fair_x.to(device)
            return x, (run.attack(model, x, device) if config.lam > 0 else None), w, ones

        step = EpochAdversarialStep(len(run.train), config.lam, prepare)
        model = _new_model(ctx, config, run.train)
        history = _fit(ctx, model, run.data, config, step)
        return run.finish(model, history, step)

    def threat_model(self, config: FbrConfig) -> ThreatModel:
        return _threat_model(config)


def _weight_stats(weights: np.ndarray, targets: np.ndarray, a: np.ndarray, ds: FairDataset) -> dict:
    names, classes = ds.value_names[ds.sensitive[0]], ds.class_names
    cells = []
    for t in range(2):
        for g in range(2):
            mask = (targets == t) & (a == g)
            cells.append({"target": classes[t], "group": names[g], "n": int(mask.sum()),
                          "weight": float(weights[mask][0]) if mask.any() else 0.0})
    return {"cells": cells}
