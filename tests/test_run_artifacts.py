"""Rebuilding a finished run's before/after models from its artefacts."""

from __future__ import annotations

import numpy as np
import pytest

from fairaudit.audit import predict
from fairaudit.errors import FairauditError
from fairaudit.jobs import JobSpec, run_job
from fairaudit.jobs.artifacts import POSTPROCESSING, RETRAINED, load_run_models


def _run(model, **settings):
    spec = JobSpec("noop_finetune", "adult", model=model, device="cpu", n_boot=0,
                   settings={"epochs": 1, "steps": 3, "lr": 0.05, **settings})
    return run_job(spec)["run_id"]


def test_retrained_run_reloads_the_audited_after_model(home, tiny_model):
    run_id = _run(tiny_model)
    models = load_run_models(run_id, device="cpu")
    assert models.kind == RETRAINED and models.perturb is None
    test = models.dataset("test")
    saved = models.predictions("after")
    again = predict(models.after, test, device="cpu")
    np.testing.assert_allclose(again.probs, saved.probs, atol=1e-5)
    before = predict(models.before, test, device="cpu")
    np.testing.assert_allclose(before.probs, models.predictions("before").probs, atol=1e-5)
    assert np.abs(before.probs - again.probs).max() > 1e-4  # fine-tuning with lr 0.05 moved the model


def test_postprocessing_run_has_no_after_model(home, tiny_model):
    models = load_run_models(_run(tiny_model, post=True), device="cpu")
    assert models.kind == POSTPROCESSING and models.after is None


def test_unknown_run_is_refused(home):
    with pytest.raises(FairauditError, match="no run 'nope'"):
        load_run_models("nope", device="cpu")
