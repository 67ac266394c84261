"""``adv_fair``: adversarial debiasing (Zhang, Lemoine & Mitchell 2018), an in-processing baseline.

A fresh model of the deployed architecture (the *predictor*) is trained with
an *adversary*, a small MLP that learns to predict the sensitive group ``z``
from what the predictor outputs. In every training step the adversary first
takes one Adam step on its cross-entropy ``L_A``; then the predictor's weights
``W`` move along Zhang et al.'s update (§3 of the paper)::

    ∇_W L_P − proj_{∇_W L_A} ∇_W L_P − α·∇_W L_A

with ``L_P`` the target cross-entropy and ``α = adv_weight``: the projection
removes the part of the predictor's step that would help the adversary, and
``−α·∇_W L_A`` makes the step hurt it. The projection is taken for each
weight tensor separately, as in AIF360's ``AdversarialDebiasing``.

* ``adversary_input="prediction"`` (the paper's choice): the adversary reads
  the predictor's class probabilities. For ``fairness="demographic_parity"``
  that is all it sees, so the predictions are pushed towards equal selection
  rates across groups; for ``fairness="equalized_odds"`` it also gets the
  true label, so the push is towards equal error rates given ``y``.
* ``adversary_input="latent"``: the adversary reads the latent features
  ``g(x)`` instead (a fair-representation variant).
* ``update="reversal"`` drops the projection (``∇_W L_P − α·∇_W L_A``, i.e.
  the loss ``L_P − α·L_A``); ``update="confusion"`` trains the predictor on
  ``L_P + α·CE(adversary, uniform)``, pushing the adversary towards a uniform
  guess instead (Alvi et al. 2018); ``adversary_input="latent"`` with
  ``update="confusion"`` is how this baseline trained before it followed the
  paper.

Zhang et al. grow α and decay the learning rate over training; here both are
constant. The adversary's accuracy on the last epoch is reported in the
result's statistics (``adversary_accuracy``; the share of the larger group is
what a guess achieves).
"""

from __future__ import annotations

from dataclasses import dataclass

from fairaudit.device import resolve_device
from fairaudit.mitigation.base import MethodContext, MitigationMethod, MitigationResult, register_method
from fairaudit.mitigation.baselines.common import RetrainConfig, fresh_model, in_memory, retrain, setting
from fairaudit.train.variants import (ADVERSARY_INPUTS, ADVERSARY_UPDATES, VariantOptions,
                                      make_variant_step)

__all__ = ["AdvFair", "AdvFairConfig"]

FAIRNESS = ("demographic_parity", "equalized_odds")


@dataclass
class AdvFairConfig(RetrainConfig):
    """Adversarial debiasing settings."""

    adv_weight: float = setting(1.0, "α: how strongly the predictor's step works against the adversary "
                                     "(−α·∇L_A in Zhang et al.'s update; 0 with update=projection keeps the "
                                     "projection alone)", min=0)
    adversary_input: str = setting("prediction", "what the adversary reads the group from: 'prediction' (the "
                                                 "class probabilities, as in the paper) or 'latent' (g(x))",
                                   choices=ADVERSARY_INPUTS)
    update: str = setting("projection", "the predictor's update: 'projection' (∇L_P − proj_∇L_A ∇L_P − α∇L_A, "
                                        "the paper's), 'reversal' (∇L_P − α∇L_A) or 'confusion' (L_P + α·CE "
                                        "of the adversary against a uniform guess)", choices=ADVERSARY_UPDATES)
    fairness: str = setting("demographic_parity", "'demographic_parity': the adversary sees the prediction "
                                                  "only; 'equalized_odds': it also sees the true label",
                            choices=FAIRNESS)
    adv_lr: float = setting(5e-3, "Adam learning rate of the adversary", min=0, min_inclusive=False)
    adv_hidden: int = setting(64, "width of the adversary's hidden layer", min=1)


@register_method
class AdvFair(MitigationMethod):
    name = "adv_fair"
    summary = ("Adversarial debiasing (Zhang et al. 2018): retrain with an adversary that tries to read the "
               "sensitive group from the model's predictions; each step of the model is projected so that it "
               "never helps the adversary and is pushed to hurt it.")
    Config = AdvFairConfig
    controls = {"erm": "erm",  # plain retraining of the same architecture with the same budget
                # ∇L_P alone: the adversary is trained as usual but never acts on the predictor
                "no_adversary": {"adv_weight": 0.0, "update": "reversal"}}
    target_metrics = ("spd",)

    def run(self, ctx: MethodContext, config: AdvFairConfig) -> MitigationResult:
        train_ds = ctx.load_split("train")
        device = resolve_device(ctx.device)
        model = fresh_model(ctx.model, ctx.seed).to(device)
        options = VariantOptions(adv_weight=config.adv_weight, adv_lr=config.adv_lr, adv_hidden=config.adv_hidden,
                                 adv_input=config.adversary_input, adv_update=config.update,
                                 adv_criterion=config.fairness)
        step = make_variant_step("fair", model, train_ds, device, seed=ctx.seed, options=options)
        model, history = retrain(ctx, config, in_memory(train_ds, device), step_fn=step, model=model,
                                 state=step.state)
        last = history[-1] if history else {}
        stats = {"train_samples": len(train_ds), "adv_weight": config.adv_weight,
                 "adversary_input": config.adversary_input, "update": config.update, "fairness": config.fairness,
                 "adversary_accuracy": last.get("adversary_accuracy"), "loss_target": last.get("loss_target"),
                 "loss_adversary": last.get("loss_adversary")}
        return MitigationResult(after_model=model, history=history, stats=stats)
