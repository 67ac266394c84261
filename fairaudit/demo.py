"""Demo models: the default model of a dataset and target, the same for every user.

For ``synthetic-faces`` it is the biased (bias 0.9) Smiling classifier, for
``adult`` an MLP on ``income``, for ``colored-digits`` a small CNN on the
colour-biased digits. The models of the default recipes ship in
``assets/demo/`` (written by ``python -m fairaudit demo --rebuild``, which
trains each recipe on the CPU with its seed), so the first audit loads a file
instead of training. Other options train (once, deterministically on the CPU) a
model into ``$FAIRAUDIT_HOME/models/``, keyed by a hash of the recipe. Options
that only change the evaluation splits (``val_bias``, ``test_bias``, ``n_val``,
``n_test``) are not part of the recipe: the model is the same.

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
import platform
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from fairaudit import workspace
from fairaudit.data import get_spec
from fairaudit.data.registry import parse_options
from fairaudit.errors import FairauditError
from fairaudit.models.checkpoint_files import sidecar_path
from fairaudit.models.io import load_model, save_checkpoint
from fairaudit.train.deployed import train_deployed_model
from fairaudit.train.loop import TrainConfig

RECIPE_VERSION = 3  # 3: the embedded images are 8-bit

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo"
SHIPPED = ("synthetic-faces", "adult", "colored-digits")  # datasets whose default demo model is in ASSET_DIR
EVAL_ONLY_OPTIONS = frozenset({"val_bias", "test_bias", "n_val", "n_test"})  # they leave the train split as is
RECIPE_THREADS = 1  # CPU threads of recipe training: float sums in one fixed order, on any machine
# PyTorch, oneDNN and MKL pick their x86 kernels at start-up from the CPU's instruction set, and AVX-512 kernels sum
# in another order than AVX2 ones: the same recipe on one thread trained weights 0.24 apart on two x86 hosts. The
# shipped models are trained with the AVX2 kernels, which every x86-64 CPU since 2013 runs, in a process started
# with these variables (they cannot be changed once torch is loaded).
RECIPE_CPU_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}

DEMO_RECIPES: dict[str, dict[str, Any]] = {
    # Three epochs at batch 32: on the 0.9-biased faces the model learns part of the smile and leans on gender
    # (accuracy 0.74, DEO 0.32 on the balanced test split); on unbiased faces (bias=0.5) the same recipe learns the
    # smile (accuracy 0.84, DEO 0.01).
    "synthetic-faces": {"arch": "small_cnn", "config": TrainConfig(epochs=3, batch_size=32, lr=1e-3)},
    "colored-digits": {"arch": "small_cnn", "config": TrainConfig(epochs=4, batch_size=64, lr=2e-3)},
    "adult": {"arch": "mlp", "config": TrainConfig(epochs=5, batch_size=256, lr=1e-3)},
}
_FALLBACK = {"config": TrainConfig(epochs=3)}


def demo_recipe(dataset: str, target: str | None, data_options: dict | None) -> dict[str, Any]:
    """What the demo model of ``dataset`` / ``target`` is trained with (the options that shape its train split)."""
    spec = get_spec(dataset)
    recipe = DEMO_RECIPES.get(dataset, _FALLBACK)
    given = parse_options(spec, dict(data_options or {}))  # "0.9" from the command line is the 0.9 of the default
    options = {k: v for k, v in {**spec.options, **given}.items() if k not in EVAL_ONLY_OPTIONS}
    return {"dataset": dataset, "target": target or spec.default_target, "data_options": options,
            "arch": recipe.get("arch"), "config": recipe["config"], "version": RECIPE_VERSION}


def recipe_digest(recipe: dict[str, Any]) -> str:
    key = json.dumps({**recipe, "config": recipe["config"].to_dict()}, sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def shipped_model_path(dataset: str, target: str | None = None, data_options: dict | None = None) -> Path | None:
    """The model in ``assets/demo/`` made with exactly this recipe, or None."""
    recipe = demo_recipe(dataset, target, data_options)
    path = ASSET_DIR / f"demo-{dataset}-{recipe['target']}.safetensors"
    try:
        info = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return path if path.is_file() and info.get("demo_recipe") == recipe_digest(recipe) else None


def demo_model_path(dataset: str, target: str | None = None, data_options: dict | None = None) -> Path:
    """The shipped model of this recipe, else where the workspace keeps (or will keep) it."""
    shipped = shipped_model_path(dataset, target, data_options)
    if shipped is not None:
        return shipped
    recipe = demo_recipe(dataset, target, data_options)
    return workspace.subdir("models") / f"demo-{dataset}-{recipe['target']}-{recipe_digest(recipe)}.safetensors"


def train_recipe(dataset: str, target: str | None = None, data_options: dict | None = None, *, data_dir=None,
                 device="auto", out: Path, progress: Callable[[dict], None] | None = None) -> Path:
    """Train the demo recipe and save it to ``out`` (sidecar: the recipe and its digest, no timings).

    On the CPU it trains on :data:`RECIPE_THREADS` threads, so the weights are the same bit for bit on every
    run and count of cores; :func:`rebuild_shipped_models` also pins the kernels, for every x86 machine.
    """
    import torch

    from fairaudit.device import resolve_device

    recipe = demo_recipe(dataset, target, data_options)
    device = resolve_device(device)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(RECIPE_THREADS)
    try:
        model, _, info = train_deployed_model(dataset, recipe["target"], get_spec(dataset).default_sensitive,
                                              arch=recipe["arch"], config=recipe["config"],
                                              data_options=data_options, data_dir=data_dir, device=device,
                                              progress=progress)
    finally:
        torch.set_num_threads(threads)
    info.pop("train_seconds", None)
    info["history"] = [{k: v for k, v in record.items() if k != "seconds"} for record in info["history"]]
    info.update(demo_recipe=recipe_digest(recipe), recipe={**recipe, "config": recipe["config"].to_dict()})
    return save_checkpoint(model, out, extra=info)


def get_demo_model(dataset: str, target: str | None = None, *, data_options: dict | None = None,
                   data_dir=None, device="auto", progress: Callable[[dict], None] | None = None):
    """Return ``(model, path)``: the cached demo model, training it first if needed (once per workspace, even
    when several processes ask at the same moment). The shipped model of the recipe loads without training."""
    path = demo_model_path(dataset, target, data_options)
    if path.parent == ASSET_DIR:
        return load_model(path), path
    with cache_lock(path):
        if not path.exists():
            stage = Path(tempfile.mkdtemp(prefix=".training-", dir=path.parent))
            try:
                train_recipe(dataset, target, data_options, data_dir=data_dir, device=device,
                             out=stage / path.name, progress=progress)
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


def rebuild_shipped_models(datasets: tuple[str, ...] = SHIPPED, out_dir: Path | None = None,
                           progress: Callable[[str, dict], None] | None = None) -> list[Path]:
    """Retrain the default recipe of each of ``datasets`` on the CPU into ``out_dir`` (default ``assets/demo/``).

    On x86 the training runs in a child process started with :data:`RECIPE_CPU_ENV` (AVX2 kernels on one thread),
    so the weights are the same bit for bit on every x86-64 machine, whichever vector unit it has.
    """
    out_dir = Path(out_dir) if out_dir is not None else ASSET_DIR
    unknown = [d for d in datasets if d not in SHIPPED]
    if unknown:
        raise FairauditError(f"no demo model of '{unknown[0]}' is shipped; shipped: {', '.join(SHIPPED)}.")
    out_dir.mkdir(parents=True, exist_ok=True)
    if _kernels_pinned():
        return _rebuild_here(tuple(datasets), out_dir, progress)
    return _rebuild_in_pinned_process(tuple(datasets), out_dir, progress)


def _kernels_pinned() -> bool:
    """True where this process already runs the recipe's kernels (or on a CPU without the x86 kernel choice)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return True
    return all(os.environ.get(name) == value for name, value in RECIPE_CPU_ENV.items())


def _rebuild_here(datasets: tuple[str, ...], out_dir: Path, progress) -> list[Path]:
    paths = []
    for dataset in datasets:
        target = get_spec(dataset).default_target
        paths.append(train_recipe(dataset, target, None, device="cpu",
                                  out=out_dir / f"demo-{dataset}-{target}.safetensors",
                                  progress=(lambda event, d=dataset: progress(d, event)) if progress else None))
    return paths


_CHILD = """
import json, sys
from pathlib import Path
from fairaudit.demo import _rebuild_here
datasets, out_dir = json.loads(sys.argv[1])
def report(dataset, event):
    print(json.dumps({"dataset": dataset, "event": event}, default=float), flush=True)
for path in _rebuild_here(tuple(datasets), Path(out_dir), report):
    print(json.dumps({"path": str(path)}), flush=True)
"""


def _rebuild_in_pinned_process(datasets: tuple[str, ...], out_dir: Path, progress) -> list[Path]:
    package_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, **RECIPE_CPU_ENV,
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    paths = []
    with tempfile.TemporaryFile("w+") as stderr:  # a file, not a pipe: a chatty child cannot block on it
        child = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps([list(datasets), str(out_dir)])],
                                 env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        for line in child.stdout:
            message = json.loads(line)
            if "path" in message:
                paths.append(Path(message["path"]))
            elif progress:
                progress(message["dataset"], message["event"])
        code = child.wait()
        stderr.seek(0)
        errors = stderr.read()
    if code != 0 or len(paths) != len(datasets):
        last = (errors.strip().splitlines() or ["no message"])[-1]
        raise FairauditError(f"training the demo recipes failed in their pinned-kernel process: {last}")
    return paths


def clear_demo_models() -> int:
    n = 0
    for p in workspace.subdir("models").glob("demo-*"):
        if p.suffix == ".lock":  # a lock file in use must stay the same file
            continue
        os.remove(p)
        n += 1
    return n
