"""The demo face-recognition model: a CosFace embedding trained on ``synthetic-identities``' train identities.

The recipe (:data:`FACE_RECIPE`) is ``face_small_cnn`` at 32 × 32 pixels, CosFace with scale 16 and margin
0.35, 10 epochs of Adam at batch 64 on the 200 train identities (10 photos each). The model of the default
options ships in ``assets/demo/`` (rebuilt by :func:`rebuild_shipped_face_model`); other train options train
it on first use, on one CPU thread so the weights are the same on every run, into ``$FAIRAUDIT_HOME/models/``
under a hash of the recipe and the train split's options (about half a minute on a laptop CPU); later uses
load the file.
Options that shape only the test split (``n_test_ids``, ``test_images``, ``test_male``) leave the model as is.
Processes sharing a workspace train it once: the others wait on the same file lock as the classifier demos.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from fairaudit import workspace
from fairaudit.data import get_spec
from fairaudit.data.registry import parse_options
from fairaudit.demo import ASSET_DIR, RECIPE_THREADS, cache_lock
from fairaudit.errors import FairauditError
from fairaudit.models.checkpoint_files import sidecar_path
from fairaudit.train.loop import TrainConfig

DATASET = "synthetic-identities"
RECIPE_VERSION = 1
SHIPPED_PATH = ASSET_DIR / "demo-face-synthetic-identities.safetensors"
TEST_ONLY_OPTIONS = frozenset({"n_test_ids", "test_images", "test_male"})
FACE_RECIPE: dict[str, Any] = {"arch": "face_small_cnn", "loss": "cosface", "scale": 16.0, "margin": 0.35,
                               "balanced": False, "config": TrainConfig(epochs=10, batch_size=64, lr=2e-3)}


def face_recipe(data_options: dict | None = None) -> dict[str, Any]:
    spec = get_spec(DATASET)
    given = parse_options(spec, dict(data_options or {}))
    options = {k: v for k, v in {**spec.options, **given}.items() if k not in TEST_ONLY_OPTIONS}
    return {**FACE_RECIPE, "dataset": DATASET, "data_options": options, "version": RECIPE_VERSION}


def _digest(recipe: dict[str, Any]) -> str:
    key = json.dumps({**recipe, "config": recipe["config"].to_dict()}, sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def shipped_face_path(data_options: dict | None = None) -> Path | None:
    """The model in ``assets/demo/`` if it was trained with exactly this recipe, else None."""
    path = SHIPPED_PATH
    try:
        info = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return path if path.is_file() and info.get("demo_recipe") == _digest(face_recipe(data_options)) else None


def face_demo_path(data_options: dict | None = None) -> Path:
    """The shipped model of this recipe, else where the workspace keeps (or will keep) it."""
    shipped = shipped_face_path(data_options)
    if shipped is not None:
        return shipped
    return workspace.subdir("models") / f"demo-face-{_digest(face_recipe(data_options))}.safetensors"


def rebuild_shipped_face_model() -> Path:
    """Retrain the default recipe on the CPU into ``assets/demo/`` (run it in a process started with
    :data:`fairaudit.demo.RECIPE_CPU_ENV` for the same weights on every x86 machine)."""
    return train_face_demo(None, device="cpu", out=SHIPPED_PATH)


def train_face_demo(data_options: dict | None = None, *, device="cpu", out: Path,
                    progress: Callable[[dict], None] | None = None) -> Path:
    """Train the demo recipe on the train identities and save it to ``out`` (sidecar: the recipe)."""
    import torch

    from fairaudit.data import load_dataset
    from fairaudit.device import resolve_device
    from fairaudit.faces.model import train_embedder
    from fairaudit.models.io import save_checkpoint

    recipe = face_recipe(data_options)
    device = resolve_device(device)
    train = load_dataset(DATASET, "train", **recipe["data_options"])
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(RECIPE_THREADS)
    try:
        model, history = train_embedder(train, recipe["arch"], recipe["loss"], recipe["margin"], recipe["scale"],
                                        recipe["config"], recipe["balanced"], device=device, progress=progress)
    finally:
        torch.set_num_threads(threads)
    info = {"dataset": DATASET, "target": "identity", "kind": "face-embedding",
            "history": [{k: v for k, v in r.items() if k != "seconds"} for r in history],
            "demo_recipe": _digest(recipe), "recipe": {**recipe, "config": recipe["config"].to_dict()}}
    return save_checkpoint(model, out, extra=info)


def get_face_demo_model(data_options: dict | None = None, *, device="cpu",
                        progress: Callable[[dict], None] | None = None):
    """``(model, path)`` of the demo face-recognition model, trained once per workspace (under a file lock).

    It is trained on the CPU whatever ``device`` is, so every machine gets the same weights; ``device`` is where
    the loaded model is placed.
    """
    from fairaudit.faces import model as _registers  # noqa: F401  (the face_* architectures)
    from fairaudit.models.io import load_model

    path = face_demo_path(data_options)
    if path == SHIPPED_PATH:
        return load_model(path, device=device), path
    with cache_lock(path):
        if not path.exists():
            stage = Path(tempfile.mkdtemp(prefix=".training-", dir=path.parent))
            try:
                train_face_demo(data_options, device="cpu", out=stage / path.name, progress=progress)
                for item in sorted(stage.iterdir(), key=lambda item: item.name == path.name):  # weights last
                    os.replace(item, path.parent / item.name)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
    return load_model(path, device=device), path


def resolve_face_model(model: str | Path, dataset, *, data_options: dict | None = None, device="auto",
                       allow_torchscript: bool = False, progress=None, num_classes: int | None = None):
    """``(model, description)`` for ``"demo"`` or a checkpoint whose ``g`` gives an embedding.

    The demo model belongs to ``synthetic-identities``; a checkpoint is checked against the dataset's input
    shape only (its head, if any, predicts its own training identities, not the gallery's); ``num_classes`` is
    the head's size where the file cannot tell it.
    """
    from fairaudit.faces import model as _registers  # noqa: F401
    from fairaudit.models.io import load_model

    if str(model) == "demo":
        if dataset.name != DATASET:
            raise FairauditError(f"the demo face-recognition model belongs to {DATASET}; for '{dataset.name}' "
                                 "pass --model PATH to a checkpoint of your embedding network.")
        net, path = get_face_demo_model(data_options, device=device, progress=progress)
        return net, f"demo ({path.name})"
    net = load_model(model, expected_input_shape=dataset.input_shape, device=device,
                     allow_torchscript=allow_torchscript, num_classes=num_classes)
    return net, str(model)
