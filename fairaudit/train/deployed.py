"""Train a "deployed" model on any registered dataset and save it as a checkpoint.

This is what ``python -m fairaudit train`` and the demo model use; the saved
checkpoint has a JSON sidecar, so ``--model PATH`` loads it back without
further flags.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from fairaudit.data import load_dataset
from fairaudit.device import resolve_device
from fairaudit.models import build_model, default_arch
from fairaudit.models.io import save_checkpoint
from fairaudit.seeding import run_metadata, seed_everything
from fairaudit.train.loop import TrainConfig, fit
from fairaudit.train.variants import make_variant_step


def train_deployed_model(dataset: str, target: str | None = None, sensitive=None, *, arch: str | None = None,
                         config: TrainConfig | None = None, data_options: dict[str, Any] | None = None,
                         data_dir=None, device="auto", out: str | Path | None = None,
                         progress: Callable[[dict], None] | None = None, variant: str = "normal",
                         variant_options: dict[str, Any] | None = None):
    """Train ``arch`` on the train split; save to ``out`` if given.

    ``variant`` picks the training objective (:mod:`fairaudit.train.variants`):
    ``normal`` (ERM), ``fair`` (adversarial debiasing), ``lf`` (label
    flipping) or ``rg`` (reversed adversary gradient), with ``variant_options``
    (:class:`~fairaudit.train.variants.VariantOptions` fields).
    Returns ``(model, path_or_None, info)``.
    """
    data_options = dict(data_options or {})
    device = resolve_device(device)
    train_ds = load_dataset(dataset, "train", target, sensitive, data_dir, **data_options)
    arch = arch or default_arch(train_ds.kind)
    config = config or TrainConfig()
    seed_everything(config.seed, device)  # before the model is built: the seed fixes its initial weights
    model = build_model(arch, train_ds.num_classes, train_ds.input_shape)
    step_fn = make_variant_step(variant, model, train_ds, device, seed=config.seed, options=variant_options)
    start = time.perf_counter()
    history = fit(model, train_ds, config, device=device, step_fn=step_fn, progress=progress)
    info = {"dataset": dataset, "target": train_ds.target, "sensitive": list(train_ds.sensitive),
            "class_names": train_ds.class_names, "data_options": data_options, "train": config.to_dict(),
            "variant": variant, "variant_options": dict(variant_options or {}),
            "history": history, "train_seconds": time.perf_counter() - start,
            "splits_used": {"fit": train_ds.split}, **run_metadata(config.seed, device)}
    model = model.cpu().eval()
    path = save_checkpoint(model, out, extra=info) if out is not None else None
    return model, path, info
