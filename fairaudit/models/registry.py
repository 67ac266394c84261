"""Model builders, one registry (in the spirit of torchvision's ``get_model``)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torchvision
from torch import nn

from fairaudit.errors import ModelLoadError
from fairaudit.models.split import SplitModel, split_torchvision
from fairaudit.registry import Registry

MODEL_BUILDERS: Registry[Callable[[int, Sequence[int]], SplitModel]] = Registry("architecture",
                                                                                error=ModelLoadError)
MODEL_KINDS: dict[str, str] = {}  # architecture -> "image" | "tabular", filled by register_model


def register_model(name: str, kind: str = "image"):
    """Decorator: register ``fn(num_classes, input_shape) -> SplitModel`` as architecture ``name``."""
    def wrap(fn):
        MODEL_BUILDERS.register(name, fn)
        MODEL_KINDS[name] = kind
        return fn
    return wrap


def list_models(kind: str | None = None) -> list[str]:
    return [n for n, k in MODEL_KINDS.items() if kind is None or k == kind]


def build_model(arch: str, num_classes: int, input_shape: Sequence[int]) -> SplitModel:
    builder = MODEL_BUILDERS[arch]  # an unknown name: one sentence with the closest one
    if num_classes < 2:
        raise ModelLoadError(f"a classifier needs at least 2 classes, got {num_classes}.")
    check_kind(arch, input_shape)
    return builder(int(num_classes), tuple(input_shape))


_KIND_SHAPES = {"image": (3, "images (inputs of shape (C, H, W))"), "tabular": (1, "tabular features (inputs of "
                                                                                   "shape (D,))")}


def check_kind(arch: str, input_shape: Sequence[int]) -> None:
    """Refuse a registered architecture for inputs of the other kind (``mlp`` on images, ``small_cnn`` on a table)."""
    kind = MODEL_KINDS.get(arch)
    if kind not in _KIND_SHAPES or len(input_shape) == _KIND_SHAPES[kind][0]:
        return
    other = "tabular" if kind == "image" else "image"
    names = list_models(other) + (["a torchvision model name"] if other == "image" else [])
    options = ", ".join(names[:-1]) + " or " + names[-1]
    raise ModelLoadError(f"architecture '{arch}' is for {_KIND_SHAPES[kind][1]}, not inputs of shape "
                         f"{tuple(input_shape)}; use {'an image' if other == 'image' else 'a tabular'} architecture "
                         f"({options}).")


def default_arch(kind: str) -> str:
    return "small_cnn" if kind == "image" else "mlp"


@register_model("small_cnn")
def small_cnn(num_classes: int, input_shape: Sequence[int]) -> SplitModel:
    """Four conv blocks with batch norm, global average pooling, a linear head (latent 128)."""
    c = input_shape[0]

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.MaxPool2d(2)]

    g = nn.Sequential(*block(c, 32), *block(32, 64), *block(64, 128), *block(128, 128),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return SplitModel(g, nn.Linear(128, num_classes), "small_cnn", num_classes, input_shape)


@register_model("resnet18")
def resnet18(num_classes: int, input_shape: Sequence[int]) -> SplitModel:
    """torchvision ResNet-18 with a 3×3 stride-1 stem and no max-pool for small (≤ 64 px) inputs."""
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return split_torchvision(model, "resnet18", num_classes, input_shape)


@register_model("mlp", kind="tabular")
def mlp(num_classes: int, input_shape: Sequence[int]) -> SplitModel:
    """Two hidden layers (128, 64) with ReLU for tabular features (latent 64)."""
    (d,) = input_shape
    g = nn.Sequential(nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
    return SplitModel(g, nn.Linear(64, num_classes), "mlp", num_classes, input_shape)


@register_model("tabular_cnn", kind="tabular")
def tabular_cnn(num_classes: int, input_shape: Sequence[int]) -> SplitModel:
    """FRoC's tabular network (§7.1): 1-D conv with 2 filters, conv with 4 filters, a 64-unit hidden layer.

    The paper leaves kernel size and activation open: kernels of width 3 with
    padding 1 (the feature count is kept) and ReLU are used (latent 64).
    """
    (d,) = input_shape
    g = nn.Sequential(nn.Unflatten(1, (1, d)), nn.Conv1d(1, 2, 3, padding=1), nn.ReLU(),
                      nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * d, 64), nn.ReLU())
    return SplitModel(g, nn.Linear(64, num_classes), "tabular_cnn", num_classes, input_shape)


@torch.no_grad()
def check_input_shape(model: nn.Module, input_shape: Sequence[int]) -> None:
    """Run one dummy sample through ``model``; raise a clear error if the shape does not fit."""
    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        model(torch.zeros(1, *input_shape, device=device))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"the model does not accept inputs of shape {tuple(input_shape)}: {first}") from None
    finally:
        model.train(was_training)


# The face-embedding architectures (face_small_cnn, face_resnet18) register themselves with the margin losses.
from fairaudit.faces import model as _face_models  # noqa: E402,F401
