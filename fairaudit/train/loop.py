"""The single training loop every model and mitigation method plugs into.

Methods customise *what* a step computes by passing ``step_fn`` (returns the
loss of one batch, plus optional logged scalars); the loop owns epochs,
optimisation, AMP on CUDA, progress callbacks, checkpoints and early stopping.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fairaudit.device import autocast, resolve_device
from fairaudit.errors import FairauditError
from fairaudit.io_safety import atomic_write
from fairaudit.seeding import make_generator, seed_everything, worker_init_fn
from fairaudit.progress import EventSink

StepFn = Callable[[nn.Module, tuple], "torch.Tensor | tuple[torch.Tensor, dict]"]


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`fit` (scikit-learn style: configuration only, no work)."""

    epochs: int = 2
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"  # "adam" | "sgd"
    momentum: float = 0.9
    seed: int = 0
    num_workers: int = 0
    early_stop_patience: int | None = None  # epochs without validation improvement
    checkpoint_path: str | None = None  # written atomically after every epoch
    max_steps: int | None = None
    sampler_weights: list[float] | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("sampler_weights")
        return d


def cross_entropy_step(model: nn.Module, batch: tuple) -> torch.Tensor:
    """Default step: plain ERM on the target label."""
    x, y = batch[0], batch[1]
    return nn.functional.cross_entropy(model(x), y)


def make_optimizer(params: Iterable[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer '{config.optimizer}'; use adam or sgd.")


def make_loader(dataset: Dataset, batch_size: int, device: torch.device, shuffle: bool, seed: int = 0,
                num_workers: int = 0, sampler_weights=None) -> DataLoader:
    """A DataLoader whose order, sampler draws and worker seeds all follow ``seed``."""
    generator = make_generator(seed)
    sampler = None
    if sampler_weights is not None:
        sampler = torch.utils.data.WeightedRandomSampler(sampler_weights, len(dataset), generator=generator)
        shuffle = False
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler, generator=generator,
                      num_workers=num_workers, pin_memory=device.type == "cuda",
                      persistent_workers=num_workers > 0, worker_init_fn=worker_init_fn if num_workers else None)


def _to_device(batch, device: torch.device, channels_last: bool) -> tuple:
    out = []
    for item in batch:
        if isinstance(item, torch.Tensor):
            item = item.to(device, non_blocking=True)
            if channels_last and item.dim() == 4:
                item = item.contiguous(memory_format=torch.channels_last)
        out.append(item)
    return tuple(out)


def fit(model: nn.Module, train_ds: Dataset, config: TrainConfig | None = None, *, device="auto",
        step_fn: StepFn = cross_entropy_step, params: Iterable[torch.nn.Parameter] | None = None,
        val_fn: Callable[[nn.Module], float] | None = None, progress: EventSink | None = None,
        should_stop: Callable[[], bool] | None = None, resume_from: str | Path | None = None,
        extra_state: dict[str, Any] | None = None) -> list[dict]:
    """Train ``model`` on ``train_ds`` and return the per-epoch history.

    ``step_fn(model, batch)`` returns the batch loss (or ``(loss, scalars)``);
    ``params`` restricts which parameters are optimised; ``val_fn(model)``
    returns a score to maximise (used for early stopping, best weights are
    restored); ``progress`` receives a dict after every step and every epoch;
    ``should_stop()`` lets a caller cancel between steps. ``resume_from`` names
    a checkpoint written by ``config.checkpoint_path``: model and optimizer
    state, epoch count, history and (for the same seed and number of samples)
    the random state (data order, torch's global generator) are restored and
    training continues with the next epoch, so on the CPU an interrupted and
    resumed run ends with the weights of an uninterrupted one (a missing file
    starts from scratch; the best weights of early stopping are not part of a
    checkpoint). ``extra_state`` names further objects with ``state_dict()`` /
    ``load_state_dict()`` that ``step_fn`` updates itself, e.g. an adversary
    and its optimiser: they are saved in every checkpoint and restored with
    the model.
    """
    config = config or TrainConfig()
    device = resolve_device(device)
    seed_everything(config.seed, device)
    model.to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    optimizer = make_optimizer(params, config)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    loader = make_loader(train_ds, config.batch_size, device, True, config.seed, config.num_workers,
                         config.sampler_weights)
    steps_per_epoch = len(loader) if config.max_steps is None else min(len(loader), config.max_steps)
    history: list[dict] = []
    start_epoch = 0
    extra = dict(extra_state or {})
    if resume_from is not None and Path(resume_from).exists():
        state = torch.load(resume_from, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for name, obj in extra.items():
            if name not in state.get("extra", {}):
                raise FairauditError(f"the checkpoint {resume_from} holds no state for '{name}'; it was written by "
                                     "another method or version, so start a new run or delete the checkpoint.")
            obj.load_state_dict(state["extra"][name])
        rng = state.get("rng")
        # Only the same stream is continued: a checkpoint carried on under another seed or on other data (the next
        # round of a multi-round method) draws its own order, as does one written before the state was saved.
        if rng is not None and (rng["seed"], rng["samples"]) == (config.seed, len(train_ds)):
            loader.generator.set_state(rng["loader"].cpu())  # map_location moved them to the device
            torch.set_rng_state(rng["torch"].cpu())
        start_epoch, history = int(state["epoch"]), list(state["history"])
    best, best_state, stale = -math.inf, None, 0
    start = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        model.train()
        total, count, extras = 0.0, 0, {}
        for step, batch in enumerate(loader):
            if step >= steps_per_epoch or (should_stop and should_stop()):
                break
            batch = _to_device(batch, device, channels_last)
            with autocast(device):
                out = step_fn(model, batch)
            loss, scalars = out if isinstance(out, tuple) else (out, {})
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += float(loss.detach())
            count += 1
            for k, v in scalars.items():
                extras[k] = extras.get(k, 0.0) + float(v)
            if progress:
                progress({"event": "step", "epoch": epoch, "step": step + 1, "steps": steps_per_epoch,
                          "loss": float(loss.detach()), "fraction": (epoch + (step + 1) / steps_per_epoch)
                          / config.epochs})
        record = {"epoch": epoch + 1, "loss": total / max(count, 1),
                  **{k: v / max(count, 1) for k, v in extras.items()},
                  "seconds": time.perf_counter() - start}
        if val_fn is not None:
            model.eval()
            record["val_score"] = float(val_fn(model))
            if record["val_score"] > best:
                best, stale = record["val_score"], 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
        history.append(record)
        if config.checkpoint_path:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "extra": {name: obj.state_dict() for name, obj in extra.items()},
                     "rng": {"loader": loader.generator.get_state(), "torch": torch.get_rng_state(),
                             "seed": config.seed, "samples": len(train_ds)},
                     "epoch": epoch + 1, "history": history}
            atomic_write(config.checkpoint_path, lambda tmp: torch.save(state, tmp))
        if progress:
            progress({"event": "epoch", **record, "fraction": (epoch + 1) / config.epochs})
        if should_stop and should_stop():
            break
        if config.early_stop_patience is not None and stale > config.early_stop_patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    return history
