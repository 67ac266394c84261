"""Tiny finished runs for the explanation tests (engine, Explain page and browser)."""

from __future__ import annotations

from pathlib import Path

import torch

#: 32-pixel synthetic faces with small splits: a whole run takes seconds on a CPU.
TINY_FACES = {"image_size": 32, "n_train": 128, "n_val": 64, "n_test": 64, "bias": 0.9, "seed": 0}
TINY_FAAP = {"epochs": 1, "batch_size": 32, "generator_width": 4, "generator_blocks": 1,
             "discriminator_hidden": 32}


def faces_model(folder: Path) -> str:
    """A seeded, untrained small CNN for the tiny faces, saved with its sidecar (explanations need no accuracy)."""
    from fairaudit.data import load_dataset
    from fairaudit.models.io import save_checkpoint
    from fairaudit.models.registry import build_model

    path = Path(folder) / "faces_cnn.safetensors"
    if not path.exists():
        ds = load_dataset("synthetic-faces", "test", None, None, None, **TINY_FACES)
        torch.manual_seed(0)
        model = build_model("small_cnn", ds.num_classes, ds.input_shape)
        save_checkpoint(model, path, extra={"dataset": "synthetic-faces", "target": ds.target,
                                            "sensitive": list(ds.sensitive), "class_names": ds.class_names,
                                            "data_options": TINY_FACES})
    return str(path)


def tiny_run(model_path: str, method: str = "faap", settings: dict | None = None) -> dict:
    """Run ``method`` in the foreground on the tiny faces and return its result JSON."""
    from fairaudit.jobs import JobSpec, run_job

    if settings is None:
        settings = TINY_FAAP if method == "faap" else {}
    # Robustness and train/val audits are not what explanations need: off, for speed.
    return run_job(JobSpec(method, "synthetic-faces", model=model_path, device="cpu", data_options=TINY_FACES,
                           settings=settings, n_boot=20, robustness_samples=0, split_samples=0))
