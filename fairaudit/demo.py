"""Demo models: the default model of a dataset and target, trained on first use and cached.

For ``synthetic-faces`` it is the biased (bias 0.9) Smiling classifier, for
``adult`` an MLP on ``income``, for ``colored-digits`` a small CNN on the
colour-biased digits. Models live in ``$FAIRAUDIT_HOME/models/`` keyed by a hash
of the recipe, so changing a dataset option trains (once) a different model.

Processes sharing a workspace (the app, the CLI, several workers) never race
on the cache: checking for a model, training it and writing it happen under an
exclusive file lock (``<model>.lock``, POSIX ``flock``), so the first process
trains and the others wait and load its file. A model is trained into a
private folder and renamed into place, sidecar first and weights last, and an
existing file is never replaced, so a run's *before* model (whose SHA-256 it
records) stays what it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from fairaudit import workspace
from fairaudit.data import get_spec
from fairaudit.models.io import load_model
from fairaudit.train.deployed import train_deployed_model
from fairaudit.train.loop import TrainConfig

RECIPE_VERSION = 1

DEMO_RECIPES: dict[str, dict[str, Any]] = {
    "synthetic-faces": {"arch": "small_cnn", "config": TrainConfig(epochs=4, batch_size=64, lr=2e-3)},
    "colored-digits": {"arch": "small_cnn", "config": TrainConfig(epochs=4, batch_size=64, lr=2e-3)},
    "adult": {"arch": "mlp", "config": TrainConfig(epochs=5, batch_size=256, lr=1e-3)},
}
_FALLBACK = {"config": TrainConfig(epochs=3)}


def demo_recipe(dataset: str, target: str | None, data_options: dict | None) -> dict[str, Any]:
    spec = get_spec(dataset)
    recipe = DEMO_RECIPES.get(dataset, _FALLBACK)
    options = {**spec.options, **(data_options or {})}
    return {"dataset": dataset, "target": target or spec.default_target, "data_options": options,
            "arch": recipe.get("arch"), "config": recipe["config"], "version": RECIPE_VERSION}


def demo_model_path(dataset: str, target: str | None = None, data_options: dict | None = None) -> Path:
    recipe = demo_recipe(dataset, target, data_options)
    key = json.dumps({**recipe, "config": recipe["config"].to_dict()}, sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return workspace.subdir("models") / f"demo-{dataset}-{recipe['target']}-{digest}.safetensors"


def get_demo_model(dataset: str, target: str | None = None, *, data_options: dict | None = None,
                   data_dir=None, device="auto", progress: Callable[[dict], None] | None = None):
    """Return ``(model, path)``: the cached demo model, training it first if needed (once per workspace, even
    when several processes ask at the same moment)."""
    path = demo_model_path(dataset, target, data_options)
    with cache_lock(path):
        if not path.exists():
            recipe = demo_recipe(dataset, target, data_options)
            spec = get_spec(dataset)
            stage = Path(tempfile.mkdtemp(prefix=".training-", dir=path.parent))
            try:
                train_deployed_model(dataset, recipe["target"], spec.default_sensitive, arch=recipe["arch"],
                                     config=recipe["config"], data_options=data_options, data_dir=data_dir,
                                     device=device, out=stage / path.name, progress=progress)
                for item in sorted(stage.iterdir(), key=lambda item: item.name == path.name):  # weights last
                    os.replace(item, path.parent / item.name)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
        return load_model(path), path


@contextmanager
def cache_lock(path: Path):
    """Hold the exclusive lock of cached file ``path`` (``<path>.lock``); other processes wait for it."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): one process per workspace
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def clear_demo_models() -> int:
    n = 0
    for p in workspace.subdir("models").glob("demo-*"):
        if p.suffix == ".lock":  # a lock file in use must stay the same file
            continue
        os.remove(p)
        n += 1
    return n
