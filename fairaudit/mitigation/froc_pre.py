"""``froc_pre``: FRoC-PRE, fair and robust training data by label flipping and adversarial augmentation.

FRoC-PRE (seed paper "Towards Fair and Robust Classification", §6,
Algorithm 1) edits the training set so that a model trained on it is
δ_F-fair (bias score S_B = |SR₀ − SR₁| ≤ δ_F, Eq. 7) and δ_R-robust
(adversarial accuracy S_R ≥ δ_R, Eq. 8). Each iteration

1. trains a surrogate model M_S on the current data D (with
   :func:`fairaudit.train.fit`) and measures S_B (metrics engine) and S_R
   (PGD from :mod:`fairaudit.attacks`) on the original training rows;
2. stops once both thresholds are met;
3. if S_B > δ_F, flips the ℓ not yet flipped labels whose fairness-utility
   influence I_FU = I_F · exp(−|I_U^f|) (Eq. 21) is most negative, where I_F
   (Eq. 17–19) and I_U^f (Eq. 20) come from influence functions
   (:class:`fairaudit.influence.InfluenceFunction`, H⁻¹ by an exact Hessian
   or conjugate gradient over Hessian-vector products); the adversarial
   copies of flipped rows are flipped with them;
4. if S_R < δ_R, attacks the rows without an adversarial copy yet and
   appends ℓ of these adversarial examples x̃, keeping their a and (current)
   y. By default (``add_selection="influence"``, the rule of the authors'
   released code) each candidate is scored by its influence on the
   surrogate's adversarial loss L_rob (the loss on the PGD examples of the
   original rows, whose accuracy is S_R):
   ``I_R(x̃) = ∇_θL_rob · I_θ · exp(−|∇_θL_U · I_θ|)`` with
   ``I_θ = −H⁻¹ ∇_θ ℓ(x̃, y)``, the parameter shift of adding x̃ (the same
   H⁻¹ machinery as the flips, and the utility damping of Eq. 21); the ℓ
   most negative scores are kept, and only negative ones (adding them is
   predicted to lower the adversarial loss).
   ``add_selection="smallest_grad"`` is Eq. 22 as printed: keep the ℓ with
   the smallest I_U(x̃) = ‖∇_θ L_U(x̃, y)‖₂. These are the examples the
   surrogate already fits, and on Adult they *lower* its S_R (on a
   2,000-row subset, 5 iterations of 20 additions: 0.717 → 0.660, against
   0.793 with the influence rule). ``add_selection="random"`` draws ℓ
   candidates uniformly at random (a control: 0.719 on the same subset).

The target model (a fresh model of the deployed architecture) is then trained
on the edited data with :func:`fairaudit.train.fit`, with the §7.1 batch
size 256 and learning rate 0.01 but 20 epochs rather than 500: on a CPU an
Adult epoch of the default MLP takes about 2 s, so the paper's budget would
add about a quarter of an hour to every run (``epochs=500`` restores it).

Choices where the paper is silent:

* Curvature: H is the generalised Gauss-Newton matrix by default (the exact
  Hessian for the logistic surrogate; positive definite for the MLP, whose
  exact Hessian is indefinite away from a strict minimum).
* Sign convention: I_F here is the *predicted change* of the relaxed bias
  F (Eq. 14) when the label is flipped and the surrogate retrained,
  ``−∇Fᵀ H⁻¹ [∇L_U(x, 1−y) − ∇L_U(x, y)]`` (per unit weight, i.e. Eq. 17–19
  with the sign that makes "negative = lower bias" true, which retraining
  confirms; the printed Eq. 18–19 give the opposite sign). I_U^f is the
  predicted change of the training loss on the same scale.
* F and S_B are computed on the original training rows, S_R against their
  original labels; L_U and H on the current edited data.
* The surrogate is warm-started from the previous iteration (the influence
  approximates a move away from the current optimum); default surrogate:
  L2-regularised logistic regression (convex, so the influence estimate is
  accurate); ``surrogate="mlp"`` gives the paper's NN1x128.
* Attack: PGD under L∞ of radius ``eps`` on the numeric features only
  (standardised units; the paper's ξ = 0.3 taken as the radius), one-hot
  categorical features are not perturbed.
* δ_R defaults to 0.75: under this attack an ERM surrogate on Adult has
  S_R ≈ 0.65 on the whole train split and ≈ 0.72 on subsets of a few
  thousand rows (the paper's threat model gives ≈ 0.15, Table 2), so a
  threshold below that would never run the augmentation. With the defaults
  on Adult (sex) the surrogate goes from S_B 0.19, S_R 0.65 to S_B 0.008,
  S_R 0.75 in 7 iterations, flipping 6.0 % of the labels and adding 3.0 %
  of adversarial rows (the paper: 6.3 % and 15.6 %). The stats list the
  surrogate's S_R per iteration (``surrogate_s_r``) and, last, that of a
  surrogate refit on the returned data, so the effect of the last
  iteration's edits is seen too. These are the surrogate's training-split
  figures under the attack above; the result's one S_R (``summary.*.s_r``)
  is the job's, of the trained model on the test split, under the FRoC
  authors' released threat model (:func:`fairaudit.mitigation.froc.released_threat_model`:
  ε = 0.1 on all columns, predicted labels).
* ℓ defaults to 1 % of the training rows; budgets cap flips and additions at
  20 % of the training rows each (the paper reports at most 17.1 % and
  15.6 %). The loop ends when the thresholds are met, when no edit that is
  still needed is possible (budget spent, or no flip is predicted to lower
  the bias) or after L iterations.
* ``flip_selection="random"`` is the control of step 3: the loop runs as
  above, then the flips are replaced by as many labels flipped on rows drawn
  uniformly at random, so the influence rule is the only difference.
  ``add_selection="random"`` is the control of step 4; it selects inside the
  loop (ℓ per iteration, from the same candidates), so the count per
  iteration is the same and the total differs only where the loop stops at
  another iteration.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from fairaudit.attacks import pgd_attack
from fairaudit.device import resolve_device
from fairaudit.errors import FairauditError
from fairaudit.influence import InfluenceFunction, per_sample_cross_entropy
from fairaudit.metrics import audit_metrics
from fairaudit.mitigation.base import (MethodContext, MitigationMethod, MitigationResult, register_method,
                                       rescaled_progress)
from fairaudit.mitigation.baselines.common import (CachedDataset, RetrainConfig, group_codes, group_name, retrain,
                                                   setting)
from fairaudit.mitigation.froc import (numeric_feature_mask, parity_constants, positive_posterior,
                                      relaxed_statistical_parity, released_threat_model)
from fairaudit.seeding import seed_everything
from fairaudit.train.loop import TrainConfig, fit

__all__ = ["FrocPre", "FrocPreConfig", "PreprocessedData", "addition_influence", "build_surrogate", "flip_influence",
           "froc_preprocess", "relaxed_parity_gap"]

SURROGATES = ("logistic", "mlp")
ADD_SELECTIONS = ("influence", "smallest_grad", "random")
MET, BUDGET, STALLED, ITERATIONS = "thresholds_met", "budget_exhausted", "no_useful_edit", "iterations_exhausted"


def relaxed_parity_gap(scores: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """FRoC's relaxed bias score F (Eq. 13–14) over a whole set: |mean score of a=0 − mean score of a=1|.

    ``scores`` are P(ŷ = 1 | x), ``a`` binary group codes; the differentiable
    stand-in of S_B, shared with FRoC-IN's regulariser.
    """
    c, _, _ = parity_constants(a)
    return relaxed_statistical_parity(scores, c)


def build_surrogate(kind: str, n_features: int, seed: int = 0) -> nn.Module:
    """The surrogate M_S: ``"logistic"`` (linear, two logits) or ``"mlp"`` (one hidden layer of 128, NN1x128)."""
    seed_everything(seed)
    if kind == "logistic":
        return nn.Sequential(nn.Flatten(), nn.Linear(n_features, 2))
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(n_features, 128), nn.ReLU(), nn.Linear(128, 2))
    raise FairauditError(f"unknown surrogate '{kind}'; use {' or '.join(SURROGATES)}.")


@dataclass
class FrocPreConfig(RetrainConfig):
    """FRoC-PRE settings (``epochs``, ``lr``, ``batch_size``, ``weight_decay`` train the target model)."""

    epochs: int = setting(20, "training epochs of the new model (paper §7.1: 500; 20 keeps a CPU run short)", min=1)
    lr: float = setting(0.01, "Adam learning rate of the new model (paper §7.1: 0.01)", min=0, min_inclusive=False)
    batch_size: int = setting(256, "mini-batch size of the new model (paper §7.1: 256)", min=1)

    delta_f: float = setting(0.05, "δ_F: fairness threshold, stop once the bias score S_B <= δ_F (paper: 0.01–0.2)",
                             min=0, max=1)
    delta_r: float = setting(0.75, "δ_R: robustness threshold, stop once the adversarial accuracy S_R >= δ_R "
                                   "(paper: 0–1; an ERM surrogate on Adult scores about 0.65 under the default "
                                   "attack, so the augmentation runs)", min=0, max=1)
    ell: int = setting(0, "ℓ: labels flipped and adversarial examples added per iteration (0 = 1 % of the "
                          "training rows)", min=0)
    iterations: int = setting(1000, "L: maximum number of iterations (paper: 1000)", min=1)
    max_flip_fraction: float = setting(0.2, "budget: at most this fraction of the training labels is flipped",
                                       min=0, max=1)
    max_add_fraction: float = setting(0.2, "budget: at most this many adversarial rows, as a fraction of the "
                                           "training rows", min=0, max=1)
    eps: float = setting(0.3, "PGD radius (L∞, standardised units of the numeric features; paper: 0.3)", min=0)
    attack_steps: int = setting(10, "PGD iterations (step 2.5·eps/steps)", min=1)
    surrogate: str = setting("logistic", "surrogate M_S: 'logistic' (L2-regularised logistic regression) or "
                                         "'mlp' (one hidden layer of 128 units, the paper's NN1x128)",
                                             choices=SURROGATES)
    surrogate_epochs: int = setting(5, "epochs per surrogate fit (warm-started each iteration; 0 = same as "
                                       "epochs)", min=0)
    surrogate_lr: float = setting(0.01, "Adam learning rate of the surrogate", min=0, min_inclusive=False)
    surrogate_l2: float = setting(1e-3, "L2 penalty (weight decay) of the surrogate, part of its Hessian", min=0)
    curvature: str = setting("gauss_newton", "curvature matrix H of the influence: 'hessian' or 'gauss_newton' "
                                             "(positive definite; the same matrix for the logistic surrogate)",
                                                 choices=("hessian", "gauss_newton"))
    damping: float = setting(0.0, "extra damping added to H (useful with the mlp surrogate)", min=0)
    solver: str = setting("auto", "H⁻¹ solver: 'auto', 'exact', 'cg' or 'lissa'",
                          choices=("auto", "exact", "cg", "lissa"))
    flip_selection: str = setting("influence", "which labels are flipped: 'influence' (Eq. 21) or 'random' (as "
                                               "many labels as the influence rule flips, drawn at random: a control)",
                                                   choices=("influence", "random"))
    add_selection: str = setting("influence", "which adversarial examples are added: 'influence' (most lowering the "
                                              "surrogate's adversarial loss, the authors' released rule), "
                                              "'smallest_grad' (smallest ‖∇θL‖, Eq. 22 as printed) or 'random' "
                                              "(a control)", choices=ADD_SELECTIONS)


@dataclass
class PreprocessedData:
    """FRoC-PRE's output: the edited training set (original rows first, then the added adversarial rows)."""

    x: torch.Tensor  # (n + r, D) features
    y: torch.Tensor  # (n + r,) labels after flipping
    sensitive: torch.Tensor  # (n + r, k) sensitive codes (copied from the source row for adversarial rows)
    n_original: int
    flipped: np.ndarray  # original row indices whose label was flipped, in the order chosen
    added: np.ndarray  # original row indices whose adversarial copy was appended (row n + j is added[j]'s copy)
    status: str  # thresholds_met | budget_exhausted | no_useful_edit | iterations_exhausted
    history: list[dict] = field(default_factory=list)
    surrogate: nn.Module | None = None
    final: dict | None = None  # accuracy, S_B, S_R of a surrogate refit on the returned data (None: not measured)

    @property
    def surrogate_s_r(self) -> list[float]:
        """S_R of the surrogate per iteration (trained on the data as it was then), then on the returned data."""
        values = [float(h["robust_accuracy"]) for h in self.history]
        return values + ([float(self.final["robust_accuracy"])] if self.final else [])

    @property
    def thresholds_met(self) -> bool:
        return self.status == MET

    def dataset(self) -> CachedDataset:
        """The edited data as a training set for :func:`fairaudit.train.fit` (items ``(x, y, s, i)``)."""
        return CachedDataset(self.x, self.y.numpy(), self.sensitive.numpy())

    def save(self, path: str | Path) -> Path:
        """Write a compressed ``.npz``: the edited ``x``, ``y``, ``sensitive``, ``flipped``, ``added``, ``n_original``,
        ``status``, the per-iteration ``history`` and the ``final`` scores (JSON)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, x=self.x.numpy(), y=self.y.numpy(), sensitive=self.sensitive.numpy(),
                            flipped=self.flipped, added=self.added, n_original=np.int64(self.n_original),
                            status=np.array(self.status), history=np.array(json.dumps(self.history)),
                            final=np.array(json.dumps(self.final)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "PreprocessedData":
        with np.load(path, allow_pickle=False) as data:
            final = json.loads(str(data["final"])) if "final" in data.files else None
            return cls(torch.from_numpy(data["x"]), torch.from_numpy(data["y"]),
                       torch.from_numpy(data["sensitive"]), int(data["n_original"]), data["flipped"],
                       data["added"], str(data["status"]), json.loads(str(data["history"])), final=final)


def _scores(model: nn.Module, x: torch.Tensor, device: torch.device, batch: int = 8192) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch].to(device)).float().softmax(1)[:, 1].cpu()
                          for i in range(0, len(x), batch)])


def _attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: FrocPreConfig, mask, device,
            seed: int, batch: int = 8192) -> torch.Tensor:
    """PGD adversarial examples of ``(x, y)`` against ``model`` (numeric features only, via ``mask``)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    out = []
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch].to(device), y[i:i + batch].to(device)
        out.append(pgd_attack(model, xb, yb, eps=config.eps, steps=config.attack_steps, norm="linf",
                              clip=None, feature_mask=mask, generator=generator).cpu())
    return torch.cat(out) if out else x.clone()


def _evaluate(model, x0, y0, a, config, mask, device, seed) -> tuple[dict, torch.Tensor]:
    """Accuracy, S_B (Eq. 7, metrics engine) and S_R (Eq. 8) of ``model`` on the original rows, and the attack."""
    p = _scores(model, x0, device)
    report = audit_metrics(y0.numpy(), scores=p.numpy(), sensitive=a.numpy(), n_boot=0, device=device)
    x_adv = _attack(model, x0, y0, config, mask, device, seed)
    robust = float(((_scores(model, x_adv, device) >= 0.5).long() == y0).float().mean())
    return {"accuracy": float(report.overall["accuracy"]), "bias_score": float(report.disparities["bias_score"]),
            "robust_accuracy": robust}, x_adv


def froc_preprocess(x: torch.Tensor, y, a, config: FrocPreConfig, *, sensitive=None, feature_mask=None,
                    device="auto", seed: int = 0, progress: Callable[[dict], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> PreprocessedData:
    """Run FRoC-PRE's Algorithm 1 on features ``x`` ``(n, D)``, binary labels ``y`` and binary groups ``a``.

    ``sensitive`` (``(n, k)`` codes, default ``a``) is carried over to the
    added rows; ``feature_mask`` marks the features the attack may change.
    ``progress`` receives one ``{"event": "froc_iteration", ...}`` per
    iteration with S_B, S_R, the edit counts and a ``fraction`` in [0, 1].
    """
    device = resolve_device(device)
    x0 = torch.as_tensor(x, dtype=torch.float32).cpu().flatten(1)
    y0 = torch.as_tensor(np.array(y)).long().cpu()
    a = torch.as_tensor(np.array(a)).long().cpu().view(-1)
    n = len(x0)
    if len(y0) != n or len(a) != n:
        raise FairauditError(f"FRoC-PRE needs one label and one group per row: {n} rows, {len(y0)} labels, "
                             f"{len(a)} groups.")
    if set(np.unique(y0.numpy())) - {0, 1} or set(np.unique(a.numpy())) != {0, 1}:
        raise FairauditError("FRoC-PRE needs binary labels (0/1) and a binary sensitive attribute with both "
                             "groups present.")
    sens = a.view(-1, 1) if sensitive is None else torch.as_tensor(np.array(sensitive)).long().view(n, -1)
    mask = None if feature_mask is None else torch.as_tensor(feature_mask, dtype=torch.float32).to(device)
    ell = config.ell or max(1, round(0.01 * n))
    max_flips = int(math.floor(config.max_flip_fraction * n))
    max_adds = int(math.floor(config.max_add_fraction * n))
    surrogate_epochs = config.surrogate_epochs or config.epochs

    labels = y0.clone()  # current labels of the original rows
    flipped: list[int] = []
    added: list[int] = []  # source rows of the appended adversarial examples
    adv_x = torch.zeros(0, x0.shape[1])
    is_flipped = torch.zeros(n, dtype=torch.bool)
    has_adv = torch.zeros(n, dtype=torch.bool)
    surrogate = build_surrogate(config.surrogate, x0.shape[1], seed).to(device)
    history: list[dict] = []
    status = ITERATIONS

    def current_data():
        src = torch.as_tensor(added, dtype=torch.long)
        return torch.cat([x0, adv_x]), torch.cat([labels, labels[src]]), torch.cat([sens, sens[src]])

    def fit_surrogate(xd, yd, sd, it):
        fit(surrogate, CachedDataset(xd, yd.numpy(), sd.numpy()),
            TrainConfig(epochs=surrogate_epochs, batch_size=config.batch_size, lr=config.surrogate_lr,
                        weight_decay=config.surrogate_l2, seed=seed + it), device=device, should_stop=should_stop)
        return _evaluate(surrogate, x0, y0, a, config, mask, device, seed + it)

    edited_since_fit = False
    for it in range(1, config.iterations + 1):
        if should_stop and should_stop():
            break
        xd, yd, sd = current_data()
        scores, x_rob = fit_surrogate(xd, yd, sd, it)
        edited_since_fit = False
        record = {"iteration": it, **scores, "flipped": len(flipped), "added": len(added)}
        fair = scores["bias_score"] <= config.delta_f
        robust = scores["robust_accuracy"] >= config.delta_r
        if fair and robust:
            status = MET
        want_flip = not fair and len(flipped) < max_flips
        want_add = not robust and len(added) < max_adds
        if status != MET and not want_flip and not want_add:
            status = BUDGET
        new_flips = new_adds = 0
        if status not in (MET, BUDGET):
            # One influence object per iteration: the flip and the addition scores share its H (and its solves).
            shared = {"influence": _influence(surrogate, config, xd, yd, device)}
            if want_flip:
                chosen, info = _flip_step(surrogate, config, xd, yd, x0, labels, a, is_flipped,
                                          min(ell, max_flips - len(flipped)), device, shared)
                record.update(info)
                new_flips = len(chosen)
                flipped += chosen
                is_flipped[chosen] = True
                labels[chosen] = 1 - labels[chosen]  # the adversarial copies follow via current_data()
            if want_add:
                new_x, src, info = _augment_step(surrogate, config, xd, yd, x0, y0, labels, has_adv, mask, x_rob,
                                                 min(ell, max_adds - len(added)), device, seed + it, shared)
                record.update(info)
                adv_x = torch.cat([adv_x, new_x])
                added += src
                has_adv[src] = True
                new_adds = len(src)
            if new_flips == 0 and new_adds == 0:
                status = STALLED
            edited_since_fit = new_flips > 0 or new_adds > 0
        record.update({"new_flips": new_flips, "new_adds": new_adds})
        history.append(record)
        if progress:
            spent = max(it / config.iterations,
                        len(flipped) / max(max_flips, 1) if not fair else 0.0,
                        len(added) / max(max_adds, 1) if not robust else 0.0)
            progress({"event": "froc_iteration", **record, "fraction": 1.0 if status != ITERATIONS else spent})
        if status != ITERATIONS:
            break
    if config.flip_selection == "random" and flipped:
        # The control of Eq. 21: as many flipped labels as the influence rule chose, on rows drawn at random
        # (the adversarial copies follow their rows' labels).
        flipped = sorted(np.random.default_rng(seed).choice(n, size=len(flipped), replace=False).tolist())
        labels = y0.clone()
        labels[flipped] = 1 - labels[flipped]
        edited_since_fit = True
    xd, yd, sd = current_data()
    final = None
    if edited_since_fit and not (should_stop and should_stop()):
        # The last iteration's edits are otherwise never seen by a surrogate: one more fit shows their effect.
        final, _ = fit_surrogate(xd, yd, sd, len(history) + 1)
    return PreprocessedData(xd, yd, sd, n, np.asarray(flipped, dtype=np.int64), np.asarray(added, dtype=np.int64),
                            status, history, surrogate.cpu().eval(), final)


def _influence(surrogate, config: FrocPreConfig, xd, yd, device) -> InfluenceFunction:
    return InfluenceFunction(surrogate, per_sample_cross_entropy, l2=config.surrogate_l2, damping=config.damping,
                             curvature=config.curvature, solver=config.solver, device=device).fit(xd, yd)


def _utility_solve(influence: InfluenceFunction, xd: torch.Tensor, yd: torch.Tensor) -> torch.Tensor:
    """``H⁻¹ ∇_θ L_U`` of the mean training loss (Eq. 20's direction; flips and additions can share it)."""
    xdd, ydd = xd.to(influence.device), yd.to(influence.device).long()
    grad_u = influence.objective_gradient(lambda f: per_sample_cross_entropy(f(xdd), ydd).mean())
    return influence.inverse_hvp(grad_u)


def flip_influence(surrogate: nn.Module, xd: torch.Tensor, yd: torch.Tensor, x0: torch.Tensor, labels: torch.Tensor,
                   a: torch.Tensor, *, l2: float, damping: float = 0.0, curvature: str = "hessian",
                   solver: str = "auto", device="auto", influence: InfluenceFunction | None = None,
                   utility_solve: torch.Tensor | None = None) -> dict:
    """Influence of flipping each original row's label (Eq. 17–21) for a surrogate trained on ``(xd, yd)``.

    Returns ``{"fairness": ΔF, "utility": ΔL_U, "score": I_FU}`` per row of
    ``x0``: ``fairness`` and ``utility`` are the predicted changes (first
    order, from influence functions) of the relaxed bias F (Eq. 14, on
    ``x0``, ``a``) and of the mean training loss L_U on ``(xd, yd)`` when
    the row's label becomes ``1 − labels`` and the surrogate is retrained;
    ``score`` is Eq. 21 on the paper's per-unit-weight scale,
    ``I_FU = n·ΔF · exp(−n·|ΔL_U|)`` (negative = flipping lowers the bias);
    ``solve`` reports the H⁻¹ solver of the fairness term and its residual.
    ``influence`` may pass an :class:`~fairaudit.influence.InfluenceFunction`
    already fitted on ``(xd, yd)`` for this surrogate and ``utility_solve``
    its ``H⁻¹ ∇L_U`` (returned as ``"utility_solve"``).
    """
    device = resolve_device(device)
    if influence is None:
        influence = InfluenceFunction(surrogate, per_sample_cross_entropy, l2=l2, damping=damping,
                                      curvature=curvature, solver=solver, device=device).fit(xd, yd)
    device = influence.device
    x0d, ad = x0.to(device), a.to(device)
    grad_f = influence.objective_gradient(lambda f: relaxed_parity_gap(positive_posterior(f(x0d)), ad))
    # One solve per objective serves every candidate row (H is symmetric).
    d_fair = influence.label_change_influence(grad_f, x0d, labels)
    solve = dict(influence.last_solve)
    if utility_solve is None:
        utility_solve = _utility_solve(influence, xd, yd)
    d_util = influence.label_change_influence(None, x0d, labels, solved=utility_solve)
    n = influence.n_train
    score = n * d_fair * torch.exp(-n * d_util.abs())
    return {"fairness": d_fair.cpu(), "utility": d_util.cpu(), "score": score.cpu(), "solve": solve,
            "utility_solve": utility_solve}


def addition_influence(surrogate: nn.Module, xd: torch.Tensor, yd: torch.Tensor, x_new: torch.Tensor,
                       y_new: torch.Tensor, x_rob: torch.Tensor, y_rob: torch.Tensor, *, l2: float,
                       damping: float = 0.0, curvature: str = "hessian", solver: str = "auto", device="auto",
                       influence: InfluenceFunction | None = None, utility_solve: torch.Tensor | None = None) -> dict:
    """Influence of appending each candidate ``(x_new, y_new)`` to the training set ``(xd, yd)`` of a surrogate.

    Adding a sample with weight τ moves the retrained parameters by
    ``I_θ = dθ/dτ = −H⁻¹ ∇_θ ℓ(x̃, y)`` (per unit weight). Returns per
    candidate ``{"robustness": ∇L_rob · I_θ, "utility": ∇L_U · I_θ, "score"}``
    where L_rob is the mean loss on the adversarial examples ``(x_rob, y_rob)``
    (whose accuracy is S_R, Eq. 8), L_U the mean training loss (Eq. 5), and
    ``score = robustness · exp(−|utility|)``, the damping of Eq. 21 applied to
    the adversarial loss: negative means adding the candidate is predicted to
    lower the adversarial loss, i.e. to make the surrogate more robust.
    ``influence`` and ``utility_solve`` may pass what :func:`flip_influence`
    uses for the same surrogate and data.
    """
    device = resolve_device(device)
    if influence is None:
        influence = InfluenceFunction(surrogate, per_sample_cross_entropy, l2=l2, damping=damping,
                                      curvature=curvature, solver=solver, device=device).fit(xd, yd)
    device = influence.device
    xr, yr = x_rob.to(device), torch.as_tensor(y_rob).to(device).long()
    grad_r = influence.objective_gradient(lambda f: per_sample_cross_entropy(f(xr), yr).mean())
    solved_r = influence.inverse_hvp(grad_r)
    solve = dict(influence.last_solve)
    # ∇G · (−H⁻¹ ∇ℓ) = −(H⁻¹ ∇G) · ∇ℓ: one solve per objective serves every candidate (H is symmetric).
    d_rob = -influence.loss_directional(x_new, y_new, solved_r)
    if utility_solve is None:
        utility_solve = _utility_solve(influence, xd, yd)
    d_util = -influence.loss_directional(x_new, y_new, utility_solve)
    score = d_rob * torch.exp(-d_util.abs())
    return {"robustness": d_rob.cpu(), "utility": d_util.cpu(), "score": score.cpu(), "solve": solve,
            "utility_solve": utility_solve}


def _flip_step(surrogate, config, xd, yd, x0, labels, a, is_flipped, k, device, shared) -> tuple[list[int], dict]:
    """The ``k`` unflipped rows with the most negative I_FU (Eq. 21), and what the estimate predicted."""
    inf = flip_influence(surrogate, xd, yd, x0, labels, a, l2=config.surrogate_l2, device=device,
                         influence=shared["influence"], utility_solve=shared.get("utility_solve"))
    shared["utility_solve"] = inf["utility_solve"]
    score = inf["score"].clone()
    score[is_flipped] = math.inf  # a row is flipped at most once
    candidates = torch.nonzero(score < 0).view(-1)
    chosen = candidates[torch.argsort(score[candidates])[:k]].tolist()
    info = {"predicted_bias_change": float(inf["fairness"][chosen].sum()) if chosen else 0.0,
            "hessian_solver": inf["solve"]["solver"], "solver_residual": inf["solve"].get("residual")}
    return chosen, info


def _augment_step(surrogate, config, xd, yd, x0, y0, labels, has_adv, mask, x_rob, k, device, seed, shared):
    """Adversarial copies of the rows without one yet; keep ``k`` of them by ``config.add_selection``."""
    candidates = torch.nonzero(~has_adv).view(-1)
    y_cand = labels[candidates]
    x_adv = _attack(surrogate, x0[candidates], y_cand, config, mask, device, seed)
    info: dict = {}
    influence = shared["influence"]
    if config.add_selection == "influence":
        inf = addition_influence(surrogate, xd, yd, x_adv, y_cand, x_rob, y0, l2=config.surrogate_l2,
                                 device=device, influence=influence, utility_solve=shared.get("utility_solve"))
        shared["utility_solve"] = inf["utility_solve"]
        score = inf["score"]
        negative = torch.nonzero(score < 0).view(-1)  # only additions predicted to lower the adversarial loss
        keep = negative[torch.argsort(score[negative])[:k]]
        info["predicted_adv_loss_change"] = float(inf["robustness"][keep].sum()) if len(keep) else 0.0
    elif config.add_selection == "smallest_grad":
        norms = influence.per_sample_grad_norms(x_adv, y_cand).cpu()
        keep = torch.argsort(norms)[:k]
        info["mean_grad_norm"] = float(norms[keep].mean()) if len(keep) else 0.0
    else:
        generator = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(candidates), generator=generator)[:k]
    keep = keep[torch.argsort(candidates[keep])]  # appended in row order
    return x_adv[keep], candidates[keep].tolist(), info


@register_method
class FrocPre(MitigationMethod):
    name = "froc_pre"
    summary = ("FRoC-PRE (FRoC Alg. 1): flip the training labels whose influence most lowers the bias and add "
               "the adversarial examples whose influence most lowers the surrogate's adversarial loss until it is "
               "δ_F-fair and δ_R-robust, then train the model on the edited data.")
    Config = FrocPreConfig
    kinds = ("tabular",)
    presets = {"quick": {"epochs": 2, "iterations": 5},
               # §7.1: the target model for 500 epochs at batch 256 and learning rate 0.01; Alg. 1: L = 1000, ε = 0.3
               "paper": {"epochs": 500, "batch_size": 256, "lr": 0.01, "iterations": 1000, "eps": 0.3}}
    work_unit = "froc_iteration"
    work_settings = ("iterations",)

    def work(self, config, sizes) -> int:
        """The iterations of Alg. 1 (at most ``iterations``: it stops once fair and robust enough)."""
        return int(config.iterations)

    controls = {"random_flips": {"flip_selection": "random"},  # as many flipped labels, chosen at random
                "random_adds": {"add_selection": "random"}}  # ℓ adversarial examples per iteration, drawn at random
    target_metrics = ("spd", "s_r")

    def run(self, ctx: MethodContext, config: FrocPreConfig) -> MitigationResult:
        train_ds = ctx.load_split("train")
        if train_ds.num_classes != 2:
            raise FairauditError(f"FRoC-PRE needs a binary target; '{train_ds.target}' has {train_ds.num_classes} "
                                 "classes.")
        groups, n_groups = group_codes(train_ds)
        if n_groups != 2:
            raise FairauditError(f"FRoC-PRE needs one binary sensitive attribute; {', '.join(train_ds.sensitive)} "
                                 f"gives {n_groups} groups.")
        data_path = Path(ctx.workdir) / "froc_pre_data.npz"
        if ctx.resume and data_path.exists():
            data = PreprocessedData.load(data_path)
        else:
            mask = numeric_feature_mask(train_ds)
            x = torch.stack([train_ds[i][0] for i in range(len(train_ds))]) if not hasattr(train_ds, "x") \
                else train_ds.x
            data = froc_preprocess(x, train_ds.targets, groups, config, sensitive=train_ds.sensitive_codes,
                                   feature_mask=mask, device=ctx.device, seed=ctx.seed,
                                   progress=rescaled_progress(ctx.progress, 0.0, 0.6), should_stop=ctx.should_stop)
            data.save(data_path)
        model, history = retrain(ctx, config, data.dataset(), span=(0.6, 1.0))
        n = data.n_original
        first, last = (data.history[0], data.history[-1]) if data.history else ({}, {})
        if data.final:
            last = {**data.final, "iteration": None}
        flip_groups = groups[data.flipped] if len(data.flipped) else np.zeros(0, dtype=np.int64)
        stats = {
            "train_samples": n, "edited_samples": int(len(data.y)),
            "flipped": int(len(data.flipped)), "flipped_fraction": len(data.flipped) / n,
            "added": int(len(data.added)), "added_fraction": len(data.added) / n,
            "flipped_by_group": {group_name(g, train_ds): int((flip_groups == g).sum()) for g in range(n_groups)},
            "iterations": len(data.history), "status": data.status, "thresholds_met": data.thresholds_met,
            "delta_f": config.delta_f, "delta_r": config.delta_r, "surrogate": config.surrogate,
            "add_selection": config.add_selection, "flip_selection": config.flip_selection,
            "surrogate_before": {k: first.get(k) for k in ("accuracy", "bias_score", "robust_accuracy")},
            "surrogate_after": {k: last.get(k) for k in ("accuracy", "bias_score", "robust_accuracy")},
            # None: a surrogate refit on the returned data; an iteration number: the data as it was there
            "surrogate_after_iteration": last.get("iteration"),
            "surrogate_s_r": data.surrogate_s_r,
        }
        return MitigationResult(after_model=model, history=history, stats=stats,
                                artifacts={"preprocessed_data": str(data_path)})

    def threat_model(self, config: FrocPreConfig):
        """The job's S_R of the trained model: the FRoC authors' released threat model
        (:func:`fairaudit.mitigation.froc.released_threat_model`), not the surrogate's attack above."""
        return released_threat_model()
