"""``adv_fair``: adversarial fair training (Zhang, Lemoine & Mitchell 2018), an in-processing baseline.

A fresh model of the deployed architecture is trained with the ``fair``
step of :mod:`fairaudit.train.variants`: an adversary MLP learns to predict the
sensitive group from the latent ``g(x)`` (one Adam step per batch), while the
classifier minimises ``CE(f(g(x)), y) − λ·CE(adversary(g(x)), z)``, i.e. it
keeps the target and removes what the adversary reads the group from. This
is the "Adv debiasing" baseline of AEDA's Tables 1–2 and the SIRN-style
method of the thesis (ch. 6).
"""

from __future__ import annotations

from dataclasses import dataclass

from fairaudit.device import resolve_device
from fairaudit.errors import FairauditError
from fairaudit.mitigation.base import MethodContext, MitigationMethod, MitigationResult, register_method
from fairaudit.mitigation.baselines.common import RetrainConfig, fresh_model, in_memory, retrain, setting
from fairaudit.train.variants import VariantOptions, make_variant_step

__all__ = ["AdvFair", "AdvFairConfig"]


@dataclass
class AdvFairConfig(RetrainConfig):
    """Adversarial fair training settings."""

    adv_weight: float = setting(1.0, "λ: weight of the adversary's loss subtracted from the target loss")
    adv_lr: float = setting(1e-3, "Adam learning rate of the adversary")
    adv_hidden: int = setting(64, "width of the adversary's hidden layer")

    def validate(self) -> None:
        super().validate()
        if self.adv_weight < 0 or not self.adv_lr > 0 or self.adv_hidden < 1:
            raise FairauditError("adv_fair needs adv_weight >= 0, adv_lr > 0 and adv_hidden >= 1.")


@register_method
class AdvFair(MitigationMethod):
    name = "adv_fair"
    summary = ("Adversarial fair training (Zhang et al. 2018): retrain with an adversary that tries to read the "
               "sensitive group from the latent features, which the classifier learns to hide.")
    Config = AdvFairConfig
    controls = {"erm": "erm"}  # plain retraining of the same architecture with the same budget
    target_metrics = ("spd",)

    def run(self, ctx: MethodContext, config: AdvFairConfig) -> MitigationResult:
        train_ds = ctx.load_split("train")
        device = resolve_device(ctx.device)
        model = fresh_model(ctx.model, ctx.seed).to(device)
        options = VariantOptions(adv_weight=config.adv_weight, adv_lr=config.adv_lr, adv_hidden=config.adv_hidden)
        step = make_variant_step("fair", model, train_ds, device, seed=ctx.seed, options=options)
        model, history = retrain(ctx, config, in_memory(train_ds, device), step_fn=step, model=model)
        last = history[-1] if history else {}
        stats = {"train_samples": len(train_ds), "adv_weight": config.adv_weight,
                 "adversary_accuracy": last.get("adversary_accuracy"), "loss_target": last.get("loss_target")}
        return MitigationResult(after_model=model, history=history, stats=stats)
