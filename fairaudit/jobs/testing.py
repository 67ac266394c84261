"""A tiny method for exercising the job system: ``noop_finetune``.

It fine-tunes the deployed model with plain cross-entropy for a few short
epochs, checkpointing after each one, so it can be cancelled, killed and
resumed; ``sleep`` slows every step down, ``fail`` makes it raise, ``post``
hands back predictions instead of a model. It is registered only when this
module is imported, which :func:`fairaudit.jobs.spec.load_methods` does in
every process (workers and Ray tasks included) when
``FAIRAUDIT_TEST_METHODS=1``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from fairaudit.errors import FairauditError
from fairaudit.mitigation.base import METHODS, MethodContext, MitigationMethod, MitigationResult, register_method
from fairaudit.train import TrainConfig, cross_entropy_step, fit


@dataclass
class NoopFinetuneConfig:
    epochs: int = field(default=3, metadata={"help": "fine-tuning epochs"})
    steps: int = field(default=5, metadata={"help": "optimiser steps per epoch"})
    batch_size: int = field(default=64, metadata={"help": "mini-batch size"})
    lr: float = field(default=1e-4, metadata={"help": "learning rate"})
    sleep: float = field(default=0.0, metadata={"help": "seconds to wait in every step (to test cancel/kill)"})
    fail: str = field(default="", metadata={"help": "raise a FairauditError with this message"})
    post: bool = field(default=False, metadata={"help": "return predictions instead of a model"})

    def validate(self) -> None:
        if self.epochs < 1:
            raise FairauditError(f"setting 'epochs' of 'noop_finetune' must be ≥ 1, got {self.epochs}.")


class NoopFinetune(MitigationMethod):
    name = "noop_finetune"
    summary = "Test helper: a few epochs of plain fine-tuning with checkpoints."
    Config = NoopFinetuneConfig
    kinds = ("image", "tabular")

    def run(self, ctx: MethodContext, config: NoopFinetuneConfig) -> MitigationResult:
        if config.fail:
            raise FairauditError(config.fail)
        resumed_from = 0
        if ctx.resume and ctx.checkpoint_path is not None and ctx.checkpoint_path.exists():
            resumed_from = int(torch.load(ctx.checkpoint_path, map_location="cpu", weights_only=True)["epoch"])

        def step(model, batch):
            if config.sleep:
                time.sleep(config.sleep)
            return cross_entropy_step(model, batch)

        train_config = TrainConfig(epochs=config.epochs, max_steps=config.steps, batch_size=config.batch_size,
                                   lr=config.lr, seed=ctx.seed,
                                   checkpoint_path=str(ctx.checkpoint_path) if ctx.checkpoint_path else None)
        history = fit(ctx.model, ctx.load_split("train"), train_config, device=ctx.device, step_fn=step,
                      progress=ctx.progress, should_stop=ctx.should_stop,
                      resume_from=ctx.checkpoint_path if ctx.resume else None)
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
