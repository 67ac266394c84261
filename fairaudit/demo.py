"""Demo models: the default model of a dataset and target, trained on first use and cached.

For ``synthetic-faces`` it is the biased (bias 0.9) Smiling classifier, for
``adult`` an MLP on ``income``, for ``colored-digits`` a small CNN on the
colour-biased digits. Models live in ``$FAIRAUDIT_HOME/models/`` keyed by a hash
of the recipe, so changing a dataset option trains (once) a different model.
"""

from __future__ import annotations

import hashlib
import json
import os
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
    """Return ``(model, path)``: the cached demo model, training it first if needed."""
    path = demo_model_path(dataset, target, data_options)
    if not path.exists():
        recipe = demo_recipe(dataset, target, data_options)
        spec = get_spec(dataset)
        train_deployed_model(dataset, recipe["target"], spec.default_sensitive, arch=recipe["arch"],
                             config=recipe["config"], data_options=data_options, data_dir=data_dir, device=device,
                             out=path, progress=progress)
    return load_model(path), path


def clear_demo_models() -> int:
    n = 0
    for p in workspace.subdir("models").glob("demo-*"):
        os.remove(p)
        n += 1
    return n
