"""Resolve what a user named (``demo`` or a checkpoint path) into a model that fits a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from fairaudit.data.base import FairDataset
from fairaudit.demo import get_demo_model
from fairaudit.models.checkpoint_files import sha256
from fairaudit.models.io import load_model


def resolve_model(model: str | Path, dataset: FairDataset, *, arch: str | None = None, head: str | None = None,
                  data_options: dict | None = None, data_dir=None, device="auto",
                  progress: Callable[[dict], None] | None = None, allow_torchscript: bool = False,
                  source: dict | None = None):
    """Return ``(model, description)`` for ``model`` = ``"demo"`` or a checkpoint path.

    A checkpoint is validated against the dataset: class count of the target
    and input shape must match, or a :class:`~fairaudit.errors.ModelLoadError`
    says which does not. A TorchScript archive is refused unless
    ``allow_torchscript`` (see :func:`fairaudit.models.io.load_model`).
    ``source``, when given, receives the ``path`` of the file the model was
    loaded from and that file's ``sha256``, so a run can record exactly which
    weights it audited.
    """
    if str(model) == "demo":
        net, path = get_demo_model(dataset.name, dataset.target, data_options=data_options, data_dir=data_dir,
                                   device=device, progress=progress)
        return _described(net, f"demo ({path.name})", path, source)
    net = load_model(model, arch=arch, head=head, expected_num_classes=dataset.num_classes,
                     expected_input_shape=dataset.input_shape, target=dataset.target,
                     allow_torchscript=allow_torchscript)
    return _described(net, str(model), Path(model), source)


def _described(net, description: str, path: Path, source: dict | None):
    if source is not None:
        source.update(path=str(path), sha256=sha256(path))
    return net, description
