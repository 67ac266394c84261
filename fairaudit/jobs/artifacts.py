"""The models of a finished run, rebuilt from its artefacts: what explanations, latent plots and reports compare.

Every mitigation run compares a *before* and an *after*:

* ``perturbation`` runs (FAAP): the same frozen deployed model, the *after*
  input is ``clip(x + G(x), 0, 1)`` from the saved generator;
* ``retrained`` runs (AEDA, ASAC, FRoC, ERM, reweighting, …): a new or
  fine-tuned model on clean input, saved as the ``model`` artefact;
* ``postprocessing`` runs (group thresholds): the model is unchanged, only its
  decisions move, so there is no *after* model to explain.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from fairaudit.errors import FairauditError
from fairaudit.jobs.spec import JobSpec

PERTURBATION, RETRAINED, POSTPROCESSING = "perturbation", "retrained", "postprocessing"


@dataclass
class RunModels:
    """A finished run's *before* (deployed) and *after* (mitigated) models, on ``device`` in eval mode."""

    run: dict[str, Any]
    spec: JobSpec
    device: torch.device
    before: torch.nn.Module
    after: torch.nn.Module | None
    perturb: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def kind(self) -> str:
        """``perturbation``, ``retrained`` or ``postprocessing`` (see the module docstring)."""
        if self.perturb is not None:
            return PERTURBATION
        return RETRAINED if self.after is not None else POSTPROCESSING

    @property
    def run_id(self) -> str:
        return self.run["id"]

    def dataset(self, split: str = "test", sensitive: list[str] | None = None):
        """The run's dataset and target on ``split``; ``sensitive`` defaults to the run's attributes."""
        from fairaudit.data import load_dataset

        spec = self.spec
        return load_dataset(spec.dataset, split, spec.target, sensitive or spec.sensitive, spec.data_dir,
                            **spec.data_options)

    def predictions(self, stage: str):
        """The saved test-split :class:`~fairaudit.audit.inference.Predictions` of ``stage`` (before / after)."""
        from fairaudit.audit.inference import Predictions

        path = (self.run.get("artifacts") or {}).get(f"{stage}_predictions")
        if not path or not Path(path).exists():
            raise FairauditError(f"run '{self.run_id}' has no saved {stage} predictions.")
        return Predictions.load(path)


def load_run_models(run_id: str, device="auto", *, registry=None) -> RunModels:
    """Rebuild the models of the finished run ``run_id``.

    Raises :class:`~fairaudit.errors.FairauditError` when the run does not
    exist, is not done, its artefacts are missing or unreadable, or the
    deployed model's file no longer has the SHA-256 the run recorded
    (``model_sha256``).
    """
    from fairaudit import jobs
    from fairaudit.device import resolve_device
    from fairaudit.jobs.execute import check_model_file
    from fairaudit.loading import resolve_model

    run = jobs.get_run(run_id, registry=registry)
    if run["status"] != jobs.DONE:
        raise FairauditError(f"run '{run_id}' is {run['status']}; its models are available when it is done.")
    spec = JobSpec.from_dict(run["spec"], run.get("config"))
    device = resolve_device(device)
    test_ds = _load(spec, "test")
    source: dict[str, str] = {}
    before, _ = resolve_model(spec.model, test_ds, arch=spec.arch, data_options=spec.data_options,
                              data_dir=spec.data_dir, device=device, allow_torchscript=spec.allow_torchscript,
                              source=source)
    check_model_file(source, run.get("model_sha256"), run_id)
    before = before.to(device).eval()
    artifacts = run.get("artifacts") or {}
    generator_path = artifacts.get("generator")
    if generator_path:
        from fairaudit.mitigation.faap import FaapModel, load_generator

        _require_file(generator_path, run_id, "FAAP generator")
        generator = load_generator(generator_path, channels=test_ds.input_shape[0])
        after = FaapModel(generator, before).to(device).eval()
        return RunModels(run, spec, device, before, after, perturb=after.perturb)
    model_path = artifacts.get("model")
    if model_path:
        from fairaudit.models.io import load_model

        _require_file(model_path, run_id, "mitigated model")
        after = load_model(model_path, device=str(device), expected_num_classes=test_ds.num_classes,
                           expected_input_shape=test_ds.input_shape, target=test_ds.target)
        return RunModels(run, spec, device, before, after.to(device).eval())
    return RunModels(run, spec, device, before, None)


def _load(spec: JobSpec, split: str):
    from fairaudit.data import load_dataset

    return load_dataset(spec.dataset, split, spec.target, spec.sensitive, spec.data_dir, **spec.data_options)


def _require_file(path: str, run_id: str, what: str) -> None:
    if not Path(path).is_file():
        raise FairauditError(f"the {what} of run '{run_id}' is missing ({path}); it may have been deleted.")
