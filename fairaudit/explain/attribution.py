"""Batched attribution maps: Grad-CAM and Integrated Gradients, built on captum.

Both explainers follow captum's shape: configure the explainer once, then call
``attribute(x, target)`` on a whole batch of images. Each returns one
``(N, H, W)`` map per image at the input resolution, so maps of different
models and methods can be compared and overlaid pixel for pixel.

* :class:`GradCam` – captum's ``LayerGradCam`` (Selvaraju et al., 2017) on
  the last convolutional block, ReLU'd and bilinearly upsampled to the input
  size. The FAAP paper (Wang et al., CVPR 2023, §5.3, Fig. 4) shows these maps for test
  images that were wrong before and right after the perturbation.
* :class:`IntegratedGradientsExplainer` – captum's ``IntegratedGradients``
  (Sundararajan et al., 2017) from a black or blurred baseline, summed over
  colour channels. Completeness holds: the map sums to
  ``f(x)[target] − f(baseline)[target]`` up to the Riemann-sum error. The
  ASAC paper (§6.2, Figs. 5 and 8) shows these maps before and after
  fine-tuning.

Work is done in chunks of ``batch_size`` images on the model's device (mixed
precision on CUDA for Grad-CAM); there is no per-image loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from fairaudit.device import autocast
from fairaudit.errors import FairauditError
from fairaudit.optional import require
from fairaudit.registry import Registry
from fairaudit.progress import Counter


_POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
BASELINES = ("black", "blur")


def _model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _input_shape(model: nn.Module, default: Sequence[int] | None = None) -> tuple[int, ...]:
    shape = getattr(model, "input_shape", None) or default
    if shape is None or len(shape) != 3:
        raise FairauditError("attribution maps need an image model with a (C, H, W) input shape; "
                             f"this model declares {tuple(shape) if shape else 'no input shape'}.")
    return tuple(int(d) for d in shape)


def find_target_layer(model: nn.Module, layer: str | None = None,
                      input_shape: Sequence[int] | None = None) -> nn.Module:
    """The module whose activations Grad-CAM weighs.

    ``layer`` names a module as in ``model.named_modules()`` (e.g.
    ``"g.body.layer4"``). Without it, one dummy forward pass finds the
    module that finishes last among those producing a spatial feature map
    (``(N, C, h, w)`` with ``h·w > 1``), pooling layers excluded: the
    activation of the last convolutional block before the head pools it
    (``small_cnn``: the ReLU of its fourth block; ``resnet18`` and other
    torchvision CNNs: ``layer4`` or its equivalent). ``input_shape`` is
    the ``(C, H, W)`` of that pass for models that do not declare
    ``input_shape`` themselves (plain torchvision models; default 3×224×224).
    """
    modules = dict(model.named_modules())
    if layer:
        if layer not in modules:
            convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
            raise FairauditError(f"the model has no module '{layer}'; its convolutions are: "
                                 f"{', '.join(convs[-6:]) or 'none'}.")
        return modules[layer]
    shape = _input_shape(model, input_shape or (3, 224, 224))
    finished: list[nn.Module] = []

    def record(module, _inputs, output):
        if (isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[2] * output.shape[3] > 1
                and not isinstance(module, _POOLING)):
            finished.append(module)

    handles = [m.register_forward_hook(record) for m in modules.values() if m is not model]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *shape, device=_model_device(model)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not finished:
        raise FairauditError("the model has no convolutional feature map for Grad-CAM; name a layer "
                             "explicitly or use Integrated Gradients.")
    return finished[-1]


def _targets(target, n: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(target, dtype=torch.int64, device=device)
    if t.dim() == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise FairauditError(f"target must be one class index or one per image ({n}); got shape {tuple(t.shape)}.")
    return t


def _check_batch(x: torch.Tensor, shape: Sequence[int]) -> None:
    if x.dim() != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise FairauditError(f"expected a batch of images shaped (N, {', '.join(map(str, shape))}), "
                             f"got {tuple(x.shape)}.")


class GradCam:
    """Grad-CAM maps of a batch of images, upsampled to the input size.

    Parameters
    ----------
    model:
        An image classifier (e.g. a :class:`~fairaudit.models.SplitModel`); it
        is used in eval mode and never modified.
    layer:
        The module to weigh, by name; ``None`` picks the last convolutional
        block (:func:`find_target_layer`).
    batch_size:
        Images per forward/backward pass; the default is large on CUDA.
    """

    def __init__(self, model: nn.Module, layer: str | None = None, batch_size: int | None = None):
        self.model = model.eval()
        self.device = _model_device(model)
        self.batch_size = batch_size or (512 if self.device.type == "cuda" else 128)
        self.input_shape = getattr(model, "input_shape", None)
        self._layer_name = layer
        self.layer: nn.Module | None = None
        if self.input_shape is not None or layer:
            self._resolve(self.input_shape)

    def _resolve(self, shape) -> None:
        LayerGradCam = require("captum.attr", "Grad-CAM maps").LayerGradCam

        self.input_shape = _input_shape(self.model, shape)
        self.layer = find_target_layer(self.model, self._layer_name, self.input_shape)
        self._captum = LayerGradCam(self.model, self.layer)

    def attribute(self, x: torch.Tensor, target, progress: Counter | None = None) -> torch.Tensor:
        """``(N, H, W)`` non-negative maps (ReLU of the channel-weighted activations, Eq. 2 of Grad-CAM)."""
        LayerAttribution = require("captum.attr", "Grad-CAM maps").LayerAttribution

        if self.layer is None:  # a model without a declared input shape: found on the first batch
            self._resolve(tuple(x.shape[1:]))
        _check_batch(x, self.input_shape)
        targets = _targets(target, len(x), self.device)
        out = []
        for start in range(0, len(x), self.batch_size):
            xb = x[start:start + self.batch_size].to(self.device, non_blocking=True).float()
            with autocast(self.device):
                cam = self._captum.attribute(xb, target=targets[start:start + len(xb)], relu_attributions=True)
            cam = LayerAttribution.interpolate(cam.float(), tuple(self.input_shape[1:]), interpolate_mode="bilinear")
            out.append(cam[:, 0].clamp_min(0).detach())
            if progress:
                progress(min(start + len(xb), len(x)), len(x))
        return torch.cat(out) if out else torch.zeros(0, *x.shape[2:], device=self.device)


def blurred(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """A Gaussian blur of a batch of images (``sigma`` in pixels; default 1/12 of the image side)."""
    from torchvision.transforms.functional import gaussian_blur

    side = min(x.shape[-2:])
    sigma = float(sigma) if sigma else max(1.0, side / 12)
    kernel = min(2 * int(3 * sigma) + 1, side - 1 if side % 2 == 0 else side)
    return gaussian_blur(x, [kernel, kernel], [sigma, sigma])


class IntegratedGradientsExplainer:
    """Integrated Gradients of a batch of images, summed over colour channels.

    Parameters
    ----------
    model:
        An image classifier; used in eval mode, never modified.
    baseline:
        ``"black"`` (all zeros) or ``"blur"`` (a Gaussian blur of each image,
        which removes edges but keeps colours).
    n_steps:
        Riemann steps along the straight path from the baseline to the image.
    internal_batch_size:
        Images × steps evaluated in one forward/backward pass; bounds memory
        (default 4096 on CUDA, ``max(64, n_steps)`` on the CPU).
    batch_size:
        Images handed to captum at once.
    blur_sigma:
        Blur width in pixels for ``baseline="blur"`` (default: image side / 12).
    """

    def __init__(self, model: nn.Module, baseline: str = "black", n_steps: int = 32,
                 internal_batch_size: int | None = None, batch_size: int | None = None,
                 blur_sigma: float | None = None):
        IntegratedGradients = require("captum.attr", "Integrated Gradients maps").IntegratedGradients

        if baseline not in BASELINES:
            raise FairauditError(f"unknown baseline '{baseline}'; choose one of {', '.join(BASELINES)}.")
        if int(n_steps) < 2:
            raise FairauditError(f"n_steps must be at least 2, got {n_steps}.")
        self.model = model.eval()
        self.input_shape = getattr(model, "input_shape", None)
        self.device = _model_device(model)
        self.baseline = baseline
        self.n_steps = int(n_steps)
        # CPU passes are compute-bound: a couple of images per pass keeps memory low at no cost in speed.
        self.internal_batch_size = int(internal_batch_size or (4096 if self.device.type == "cuda"
                                                               else max(64, self.n_steps)))
        self.batch_size = batch_size or max(1, self.internal_batch_size // self.n_steps)
        self.blur_sigma = blur_sigma
        self._captum = IntegratedGradients(self.model)

    def baselines(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x) if self.baseline == "black" else blurred(x, self.blur_sigma)

    def attribute(self, x: torch.Tensor, target, progress: Counter | None = None,
                  return_convergence_delta: bool = False):
        """``(N, H, W)`` signed maps; with ``return_convergence_delta`` also the per-image completeness error."""
        _check_batch(x, self.input_shape or tuple(x.shape[1:]))
        targets = _targets(target, len(x), self.device)
        maps, deltas = [], []
        for start in range(0, len(x), self.batch_size):
            xb = x[start:start + self.batch_size].to(self.device, non_blocking=True).float()
            attr, delta = self._captum.attribute(xb, baselines=self.baselines(xb),
                                                 target=targets[start:start + len(xb)], n_steps=self.n_steps,
                                                 internal_batch_size=self.internal_batch_size,
                                                 return_convergence_delta=True)
            maps.append(attr.sum(1).detach())
            deltas.append(delta.detach())
            if progress:
                progress(min(start + len(xb), len(x)), len(x))
        result = torch.cat(maps) if maps else torch.zeros(0, *x.shape[2:], device=self.device)
        if return_convergence_delta:
            return result, (torch.cat(deltas) if deltas else torch.zeros(0, device=self.device))
        return result


@dataclass(frozen=True)
class ExplainerEntry:
    """A registered attribution method: its display ``label`` and ``build(model, **options)``."""

    label: str
    build: Callable[..., Any]


EXPLAINERS: Registry[ExplainerEntry] = Registry("attribution method")
EXPLAINERS.register("gradcam", ExplainerEntry("Grad-CAM",
                                              lambda model, *, layer=None, **_: GradCam(model, layer=layer)))
EXPLAINERS.register("ig", ExplainerEntry("Integrated Gradients", lambda model, *, baseline="black", n_steps=32,
                                         internal_batch_size=None, **_: IntegratedGradientsExplainer(
                                             model, baseline=baseline, n_steps=n_steps,
                                             internal_batch_size=internal_batch_size)))


def make_explainer(model: nn.Module, method: str = "gradcam", *, layer: str | None = None,
                   baseline: str = "black", n_steps: int = 32, internal_batch_size: int | None = None):
    """The explainer for ``method`` (``"gradcam"`` or ``"ig"``) with its options (each reads its own)."""
    return EXPLAINERS[method].build(model, layer=layer, baseline=baseline, n_steps=n_steps,
                                    internal_batch_size=internal_batch_size)


def normalise_maps(maps, signed: bool = False) -> torch.Tensor:
    """Scale each map to ``[0, 1]`` (by its own maximum of the positive part, or of ``|a|`` if ``signed``)."""
    t = torch.as_tensor(maps).float()
    t = t.abs() if signed else t.clamp_min(0)
    peak = t.flatten(1).amax(1).clamp_min(1e-12)
    return t / peak[:, None, None]
