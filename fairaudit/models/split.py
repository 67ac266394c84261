"""Models split into a feature extractor ``g`` and a head ``f``.

FAAP, leakage probes and latent-space plots need the last latent ``g(x)``; every
model fairaudit handles is therefore a :class:`SplitModel` with
``forward(x) == f(g(x))``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from fairaudit.errors import ModelLoadError


class SplitModel(nn.Module):
    """``f(g(x))`` with ``g`` returning a flat latent ``(N, D)``."""

    def __init__(self, g: nn.Module, f: nn.Module, arch: str, num_classes: int, input_shape: Sequence[int]):
        super().__init__()
        self.g = g
        self.f = f
        self.arch = arch
        self.num_classes = int(num_classes)
        self.input_shape = tuple(int(d) for d in input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(self.g(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.g(x)

    def describe(self) -> dict:
        return {"arch": self.arch, "num_classes": self.num_classes, "input_shape": list(self.input_shape),
                "parameters": sum(p.numel() for p in self.parameters())}


class _Flattened(nn.Module):
    """Everything before the head of a torchvision model, flattened to ``(N, D)``."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return torch.flatten(self.body(x), 1)


_HEAD_NAMES = ("fc", "classifier", "head", "heads")


def split_torchvision(model: nn.Module, arch: str, num_classes: int, input_shape: Sequence[int],
                      head: str | None = None) -> SplitModel:
    """Split a torchvision-style model at its head.

    The head is the child module named ``head`` if given, otherwise the first of
    ``fc``, ``classifier``, ``head``, ``heads`` that exists. ``g`` is the model
    with that child replaced by the identity (so its own ``forward`` logic, e.g.
    pooling and flattening, is kept) and ``f`` is the removed head.
    """
    names = [head] if head else [n for n in _HEAD_NAMES if hasattr(model, n)]
    if not names or not hasattr(model, names[0]):
        children = ", ".join(n for n, _ in model.named_children())
        raise ModelLoadError(f"cannot find the classification head of '{arch}': name it with --head "
                             f"(top-level modules: {children}).")
    name = names[0]
    f = getattr(model, name)
    setattr(model, name, nn.Identity())
    return SplitModel(_Flattened(model), f, arch, num_classes, input_shape)


@torch.no_grad()
def latent_dim(model: SplitModel, input_shape: Sequence[int] | None = None) -> int:
    """Width of the flat latent ``g(x)``, read by running ``g`` once on a zero input of ``input_shape``
    (the model's own by default) in eval mode, so batch-norm statistics are untouched: the one place that
    probes it (discriminators, adversaries, bias heads and model summaries size themselves from it)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        shape = tuple(input_shape if input_shape is not None else model.input_shape)
        return int(model.g(torch.zeros(1, *shape, device=device)).flatten(1).shape[1])
    finally:
        model.train(was_training)
