"""A tiny method for exercising the job system: ``noop_finetune``.

It fine-tunes the deployed model with plain cross-entropy for a few short
epochs, checkpointing after each one, so it can be cancelled, killed and
resumed; ``sleep`` slows every step down, ``fail`` makes it raise bad-input, ``crash`` a bug, ``post``
hands back predictions instead of a model. It is registered only when this
module is imported, which :func:`fairaudit.jobs.spec.load_methods` does in
every process (workers and Ray tasks included) when
``FAIRAUDIT_TEST_METHODS=1``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fairaudit.errors import FairauditError
from fairaudit.mitigation.base import (METHODS, MethodContext, MitigationMethod, MitigationResult, register_method,
                                       setting)
from fairaudit.train import cross_entropy_step


@dataclass
class NoopFinetuneConfig:
    epochs: int = setting(3, "fine-tuning epochs", min=1)
    steps: int = setting(5, "optimiser steps per epoch", min=0)
    batch_size: int = setting(64, "mini-batch size", min=1)
    lr: float = setting(1e-4, "learning rate", min=0, min_inclusive=False)
    sleep: float = setting(0.0, "seconds to wait in every step (to test cancel/kill)", min=0, unit="s")
    fail: str = setting("", "raise a FairauditError with this message")
    crash: str = setting("", "raise a RuntimeError with this message, as a bug would")
    post: bool = setting(False, "return predictions instead of a model")


class NoopFinetune(MitigationMethod):
    name = "noop_finetune"
    summary = "Test helper: a few epochs of plain fine-tuning with checkpoints."
    Config = NoopFinetuneConfig
    kinds = ("image", "tabular")

    def work(self, config: NoopFinetuneConfig, sizes) -> int:
        """``epochs × min(steps, ⌈train rows / batch_size⌉)`` optimiser steps."""
        return config.epochs * min(config.steps, -(-int(sizes.get("train", 0)) // config.batch_size))

    def run(self, ctx: MethodContext, config: NoopFinetuneConfig) -> MitigationResult:
        if config.fail:
            raise FairauditError(config.fail)
        if config.crash:
            raise RuntimeError(config.crash)
        resumed_from = ctx.checkpoint_epoch()

        def step(model, batch):
            if config.sleep:
                time.sleep(config.sleep)
            return cross_entropy_step(model, batch)

        history = ctx.fit(ctx.model, ctx.load_split("train"), step, settings=config, max_steps=config.steps)
        stats = {"resumed_from_epoch": resumed_from, "epochs_trained": len(history) - resumed_from}
        if config.post:
            from fairaudit.audit import predict

            model = ctx.model
            return MitigationResult(after_predictions=lambda ds: predict(model, ds, device=ctx.device),
                                    stats=stats, history=history)
        return MitigationResult(after_model=ctx.model, stats=stats, history=history)


def register() -> None:
    """Register ``noop_finetune`` (idempotent; tests may remove it from ``METHODS`` again)."""
    if NoopFinetune.name not in METHODS:
        register_method(NoopFinetune)


register()
