"""Face-embedding networks and their angular-margin training (CosFace, ArcFace).

An embedding network is a :class:`~fairaudit.models.split.SplitModel` whose ``g`` maps a face to an
embedding vector (the registry's ``small_cnn`` or ``resnet18`` body followed by a linear layer of
:data:`EMBED_DIM` outputs) and whose ``f`` is a :class:`MarginHead`: one weight vector per training identity,
giving the cosine between the normalised embedding and each identity's normalised weight. At audit time only
``g`` is used (identities of the gallery are never those of training); any checkpoint whose ``g`` returns one
vector per image can be audited the same way.

Training uses the large-margin softmax losses. Write ``cos θ_j`` for the cosine between the embedding of an
image and the weight of identity ``j``, ``y`` for the image's identity, ``s`` for a scale and ``m`` for the
margin:

* **CosFace** subtracts the margin from the cosine of the true identity before the softmax cross-entropy,
  ``L = −log( e^{s(cos θ_y − m)} / (e^{s(cos θ_y − m)} + Σ_{j≠y} e^{s cos θ_j}) )``: the true identity has to
  win by at least ``m`` in cosine;
* **ArcFace** adds the margin to the *angle* instead, replacing ``cos θ_y`` by ``cos(θ_y + m)``: the true
  identity has to win by ``m`` radians on the sphere.

Both pull each identity's images into a tight cone around its weight and push the cones apart, so cosine
similarity between embeddings says whether two photos show the same person. Class-balanced sampling (each
identity drawn equally often, however many photos it has) is an option of :func:`train_embedder`.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fairaudit.errors import FairauditError
from fairaudit.models.registry import register_model, resnet18, small_cnn
from fairaudit.models.split import SplitModel
from fairaudit.train.loop import TrainConfig, fit

__all__ = ["EMBED_DIM", "MARGINS", "MarginHead", "build_embedder", "margin_loss", "margin_step", "train_embedder"]

EMBED_DIM = 128
MARGINS = {"cosface": 0.35, "arcface": 0.5}  # the usual margins of each loss (cosine units / radians)
DEFAULT_SCALE = 16.0


class MarginHead(nn.Module):
    """Cosines between the normalised embedding and one normalised weight vector per training identity."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embedding, dim=1), F.normalize(self.weight, dim=1))


def margin_loss(cosines: torch.Tensor, labels: torch.Tensor, kind: str = "cosface", margin: float | None = None,
                scale: float = DEFAULT_SCALE) -> torch.Tensor:
    """The CosFace or ArcFace loss of a batch of cosines ``(N, classes)`` (see the module docstring)."""
    if kind not in MARGINS:
        raise FairauditError(f"unknown margin loss '{kind}'; use cosface or arcface.")
    margin = MARGINS[kind] if margin is None else float(margin)
    cosines = cosines.float()
    true = cosines.gather(1, labels[:, None])
    if kind == "cosface":
        adjusted = true - margin
    else:
        theta = torch.acos(true.clamp(-1 + 1e-6, 1 - 1e-6))
        # Past θ = π − m the angle plus the margin would wrap around; there the usual linear fallback applies.
        adjusted = torch.where(theta + margin < math.pi, torch.cos(theta + margin),
                               true - margin * math.sin(margin))
    logits = cosines.scatter(1, labels[:, None], adjusted)
    return F.cross_entropy(scale * logits, labels)


def margin_step(kind: str = "cosface", margin: float | None = None, scale: float = DEFAULT_SCALE):
    """A ``step_fn`` of :func:`fairaudit.train.loop.fit`: the margin loss of ``f(g(x))`` on the identity labels."""
    def step(model: SplitModel, batch: tuple) -> torch.Tensor:
        x, y = batch[0], batch[1]
        return margin_loss(model(x), y, kind, margin, scale)
    return step


def build_embedder(body: str, num_classes: int, input_shape: Sequence[int], dim: int = EMBED_DIM) -> SplitModel:
    """``g`` = the ``body`` builder's feature extractor + a linear embedding layer, ``f`` = a :class:`MarginHead`."""
    base = {"small_cnn": small_cnn, "resnet18": resnet18}[body](2, input_shape)
    latent = base.f.in_features
    g = nn.Sequential(base.g, nn.Linear(latent, dim))
    return SplitModel(g, MarginHead(dim, num_classes), f"face_{body}", num_classes, input_shape)


@register_model("face_small_cnn", kind="face")
def face_small_cnn(num_classes: int, input_shape: Sequence[int]) -> SplitModel:
    """Face embedding: the four conv blocks of ``small_cnn``, a 128-wide embedding, a cosine (margin) head."""
    return build_embedder("small_cnn", num_classes, input_shape)


@register_model("face_resnet18", kind="face")
def face_resnet18(num_classes: int, input_shape: Sequence[int]) -> SplitModel:
    """Face embedding: the small-input ResNet-18, a 128-wide embedding, a cosine (margin) head."""
    return build_embedder("resnet18", num_classes, input_shape)


def balanced_weights(identities: np.ndarray) -> list[float]:
    """Sampling weight ``1 / (photos of the identity)`` per sample: every identity is drawn equally often."""
    counts = np.bincount(identities)
    return (1.0 / counts[identities]).tolist()


def train_embedder(dataset, arch: str = "face_small_cnn", loss: str = "cosface", margin: float | None = None,
                   scale: float = DEFAULT_SCALE, config: TrainConfig | None = None, balanced: bool = False,
                   device="auto", progress: Callable[[dict], None] | None = None) -> tuple[SplitModel, list[dict]]:
    """Train an embedding network on a dataset whose target is the identity (e.g. ``synthetic-identities``'s
    train split) with :func:`~fairaudit.train.loop.fit`; returns the model (eval mode) and the history."""
    from fairaudit.models.registry import build_model

    if getattr(dataset, "target", None) != "identity":
        raise FairauditError("an embedding is trained on identities: use a dataset whose target is 'identity'.")
    config = config or TrainConfig()
    if balanced:
        config = TrainConfig(**{**config.to_dict(), "sampler_weights": balanced_weights(dataset.identities)})
    torch.manual_seed(config.seed)  # the head and body initialisation follow the seed too
    model = build_model(arch, dataset.num_classes, dataset.input_shape)
    history = fit(model, dataset, config, device=device, step_fn=margin_step(loss, margin, scale),
                  progress=progress)
    return model.eval(), history
