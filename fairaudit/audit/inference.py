"""One streaming, batched inference pass over a dataset.

The pass runs under ``torch.inference_mode`` with AMP and channels-last on
CUDA, loads batches with worker processes and pinned memory, and collects
everything the metrics, the threshold slider and the latent-space views need:
labels, class probabilities, sensitive codes, sample indices and (optionally)
the latent ``g(x)``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from fairaudit.data.base import FairDataset, TensorFairDataset
from fairaudit.device import autocast, default_batch_size, resolve_device
from fairaudit.errors import FairauditError
from fairaudit.io_safety import atomic_write
from fairaudit.progress import Counter



@dataclass
class Predictions:
    """Everything one inference pass produced, as numpy arrays (row i = sample ``indices[i]``)."""

    labels: np.ndarray  # (N,) int64
    probs: np.ndarray  # (N, C) float32
    sensitive: np.ndarray  # (N, k) int64
    indices: np.ndarray  # (N,) int64
    sensitive_names: list[str]
    value_names: dict[str, list[str]]
    class_names: list[str]
    latents: np.ndarray | None = None  # (N, D) float32
    meta: dict = field(default_factory=dict)

    @property
    def scores(self) -> np.ndarray:
        """P(y = 1) for binary targets, the full probability matrix otherwise."""
        return self.probs[:, 1] if self.probs.shape[1] == 2 else self.probs

    def predictions(self, threshold: float = 0.5) -> np.ndarray:
        if self.probs.shape[1] == 2:
            return (self.probs[:, 1] >= threshold).astype(np.int64)
        return self.probs.argmax(1)

    def __len__(self) -> int:
        return len(self.labels)

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` (arrays) plus a ``.json`` (names); atomic."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"labels": self.labels, "probs": self.probs, "sensitive": self.sensitive, "indices": self.indices}
        if self.latents is not None:
            arrays["latents"] = self.latents
        atomic_write(path.with_suffix(".npz"), lambda tmp: np.savez_compressed(tmp, **arrays))
        info = {"sensitive_names": self.sensitive_names, "value_names": self.value_names,
                "class_names": self.class_names, "meta": self.meta}
        atomic_write(path.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(info)))
        return path.with_suffix(".npz")

    @classmethod
    def load(cls, path: str | Path) -> "Predictions":
        path = Path(path)
        with np.load(path.with_suffix(".npz"), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        info = json.loads(path.with_suffix(".json").read_text())
        return cls(latents=arrays.pop("latents", None), **arrays, **info)


def _tensor_batches(ds: TensorFairDataset, batch_size: int) -> Iterator[tuple]:
    # In-memory tabular data: slicing beats per-row __getitem__ by orders of magnitude.
    y = torch.as_tensor(np.array(ds.targets))  # a copy: the dataset's arrays may be read-only views
    s = torch.as_tensor(np.array(ds.sensitive_codes))
    for start in range(0, len(ds), batch_size):
        sl = slice(start, start + batch_size)
        yield ds.x[sl], y[sl], s[sl], torch.arange(start, min(start + batch_size, len(ds)))


def iterate_batches(dataset: FairDataset, batch_size: int, device: torch.device,
                    num_workers: int | None = None) -> Iterator[tuple]:
    """Yield ``(x, y, s, idx)`` batches in order, streaming from disk or the renderer."""
    if isinstance(dataset, TensorFairDataset):
        yield from _tensor_batches(dataset, batch_size)
        return
    if num_workers is None:
        num_workers = min(4, os.cpu_count() or 1) if len(dataset) > 4 * batch_size else 0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda", prefetch_factor=4 if num_workers else None)
    yield from loader


def predict(model: torch.nn.Module, dataset: FairDataset, *, device="auto", batch_size: int | None = None,
            num_workers: int | None = None, with_latents: bool = False,
            progress: Counter | None = None,
            on_batch: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None) -> Predictions:
    """Run ``model`` over ``dataset`` once and collect :class:`Predictions`.

    ``on_batch(probs, labels, sensitive)`` sees every batch in order while the pass runs, with the class
    probabilities still on the device (e.g. :meth:`fairaudit.metrics.GroupMetrics.update`).
    """
    device = resolve_device(device)
    batch_size = batch_size or default_batch_size(device, dataset.kind)
    num_classes = getattr(model, "num_classes", dataset.num_classes)
    if num_classes != dataset.num_classes:
        raise FairauditError(f"the model has {num_classes} output classes but target '{dataset.target}' "
                             f"has {dataset.num_classes}.")
    model = model.to(device).eval()
    channels_last = device.type == "cuda" and dataset.kind == "image"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    wants_latents = with_latents and hasattr(model, "g")
    outs: dict[str, list[torch.Tensor]] = {"probs": [], "labels": [], "sensitive": [], "indices": [], "latents": []}
    done, total = 0, len(dataset)
    with torch.inference_mode():
        for x, y, s, idx in iterate_batches(dataset, batch_size, device, num_workers):
            x = x.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device):
                if wants_latents:
                    z = model.g(x)
                    logits = model.f(z)
                    outs["latents"].append(z.float().cpu())
                else:
                    logits = model(x)
            probs = torch.softmax(logits.float(), dim=1)
            if on_batch is not None:
                on_batch(probs, y, s)
            outs["probs"].append(probs.cpu())
            outs["labels"].append(y)
            outs["sensitive"].append(s)
            outs["indices"].append(torch.as_tensor(idx))
            done += len(y)
            if progress:
                progress(done, total)
    if done == 0:
        raise FairauditError(f"split '{dataset.split}' of dataset '{dataset.name}' is empty.")
    cat = {k: torch.cat(v).numpy() for k, v in outs.items() if v}
    return Predictions(labels=cat["labels"].astype(np.int64), probs=cat["probs"].astype(np.float32),
                       sensitive=cat["sensitive"].astype(np.int64).reshape(done, -1),
                       indices=cat["indices"].astype(np.int64), sensitive_names=list(dataset.sensitive),
                       value_names={k: dataset.value_names[k] for k in dataset.sensitive},
                       class_names=dataset.class_names, latents=cat.get("latents"),
                       meta={"dataset": dataset.name, "split": dataset.split, "target": dataset.target,
                             "device": str(device)})
