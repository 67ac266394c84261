"""Geometry of the L∞ and L2 threat models: steepest-ascent steps, projections, random starts.

Every function works on a batch: norms are taken per sample over all
non-batch dimensions, and an optional ``mask`` (``1`` = the feature may change)
restricts both the step and the random start to the allowed features.
"""

from __future__ import annotations

import torch

NORMS = ("linf", "l2")


def per_sample_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """``(N,)`` L∞ or L2 norm of each sample of ``delta``."""
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(p=2, dim=1)


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *([1] * (like.dim() - 1)))


def steepest_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The unit-norm direction that increases the loss fastest to first order.

    L∞: ``sign(grad)`` (FGSM / I-FGSM); L2: ``grad / ‖grad‖₂`` (fast gradient method).
    """
    if norm == "linf":
        return grad.sign()
    return grad / _expand(per_sample_norm(grad, "l2").clamp_min(1e-12), grad)


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """The closest point to ``delta`` in the ε-ball (clamping for L∞, radial scaling for L2)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    scale = (eps / per_sample_norm(delta, "l2").clamp_min(1e-12)).clamp(max=1.0)
    return delta * _expand(scale, delta)


def random_start(like: torch.Tensor, eps: float, norm: str, mask: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """A point drawn uniformly from the ε-ball (restricted to the masked features)."""
    if norm == "linf":
        delta = (torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype) * 2 - 1) * eps
        return delta if mask is None else delta * mask
    direction = torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    if mask is not None:
        direction = direction * mask
    direction = direction / _expand(per_sample_norm(direction, "l2").clamp_min(1e-12), direction)
    dims = direction[0].numel() if mask is None else int(torch.count_nonzero(mask.expand_as(like)[0]))
    # Radius eps·U^(1/d) makes the draw uniform in volume, not concentrated at the centre.
    radius = eps * torch.rand(like.shape[0], generator=generator, device=like.device,
                              dtype=like.dtype) ** (1.0 / max(dims, 1))
    return direction * _expand(radius, direction)
