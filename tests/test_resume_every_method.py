"""Every registered method, cut in the middle of its training and resumed, ends as an uninterrupted run.

A run is stopped at a training step past the middle of its steps (inside a
later epoch, so a checkpoint exists), then run again with ``resume=True`` on
the same folder. It must finish with exactly the weights (or, for a
post-processing method, the predictions) of a run of the same seed that was
never stopped, and record where it continued from in ``ctx.resumed_from``.
Budgets are tiny (two epochs or rounds on a few hundred rows or 16-pixel
images); what is checked is the wiring, not an effect.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fairaudit.data import DatasetSpec, get_spec, load_dataset, register_dataset
from fairaudit.data.base import TensorFairDataset
from fairaudit.data.registry import DATASETS
from fairaudit.jobs import testing
from fairaudit.mitigation.base import METHODS, MethodContext, get_method, make_config
from fairaudit.models.registry import build_model

FACES = {"image_size": 16, "n_train": 96, "n_val": 64, "n_test": 64}
ADULT_ROWS = {"train": 400, "test": 200}

# Two epochs (or rounds) for every method, and whatever else keeps it to a few seconds on one core.
RETRAIN = {"epochs": 2, "batch_size": 64}
SETTINGS: dict[str, dict] = {
    "erm": RETRAIN, "reweight": RETRAIN, "resample": RETRAIN, "massaging": RETRAIN, "dir": RETRAIN,
    "label_flip": RETRAIN, "minmax": {**RETRAIN, "update": "exp_grad"},
    "fair_penalty": {**RETRAIN, "penalty_split": "val"},
    "adv_fair": {**RETRAIN, "adv_hidden": 8},
    "threshold": {"grid_size": 50},
    "faap": {"epochs": 2, "batch_size": 16, "generator_width": 4, "generator_blocks": 1, "discriminator_hidden": 8},
    "asac": {"epochs": 2, "batch_size": 16, "classifier_epochs": 1, "stats_samples": 16, "epsilons": "0,0.05"},
    "aeda_pre": {"epochs": 2, "batch_size": 16, "steps": 2, "attack_batch_size": 64},
    "aeda_online": {"epochs": 3, "batch_size": 16, "steps": 2, "attack_batch_size": 64},
    "aeda_robust": {"epochs": 3, "batch_size": 16, "steps": 2, "attack_batch_size": 64},
    "froc_in": {"epochs": 2, "batch_size": 64, "steps": 2, "eval_robustness": False},
    "rbf": {"epochs": 2, "batch_size": 64, "steps": 2, "eval_robustness": False},
    "fbr": {"epochs": 2, "batch_size": 64, "steps": 2, "eval_robustness": False},
    "froc_pre": {"epochs": 2, "batch_size": 64, "iterations": 3, "surrogate_epochs": 1, "attack_steps": 2},
    "noop_finetune": {"epochs": 2, "steps": 3},
}
POST_PROCESSING = {"threshold"}  # nothing is trained, so there is nothing to cut


def _adult_sample(split: str, data_dir=None, **options) -> TensorFairDataset:
    full = get_spec("adult").builder(split=split, data_dir=None)
    n = ADULT_ROWS[split]
    rows = np.random.default_rng(0).permutation(len(full))[:n]
    sample = TensorFairDataset("adult-sample", split, full.x[rows], full.attributes.iloc[rows], full.value_names,
                               full.default_target, full.default_sensitive, feature_names=full.feature_names)
    for key, value in vars(full).items():  # Adult's column metadata (feature groups, numeric features, ...)
        vars(sample).setdefault(key, value)
    return sample


@pytest.fixture(scope="module")
def setups(one_thread):
    testing.register()
    if "adult-sample" not in DATASETS:
        adult = get_spec("adult")
        register_dataset(DatasetSpec("adult-sample", _adult_sample, "tabular", "a few hundred rows of Adult",
                                     adult.default_target, list(adult.default_sensitive), splits=("train", "test")))
    out = {}
    for kind, dataset, options, arch in (("image", "synthetic-faces", FACES, "small_cnn"),
                                         ("tabular", "adult-sample", {}, "mlp")):
        test = load_dataset(dataset, "test", **options)
        torch.manual_seed(0)
        out[kind] = (dataset, options, build_model(arch, test.num_classes, test.input_shape).eval(), test)
    yield out
    DATASETS.pop("adult-sample", None)
    METHODS.pop("noop_finetune", None)


class _Cut(Exception):
    """Stands for the process dying in the middle of a step."""


def _run(name, setup, workdir, *, resume=False, cut_at=None):
    dataset, options, deployed, _ = setup
    steps: list[tuple] = []

    def progress(event):
        if event.get("event") == "step":
            steps.append((event.get("stage", 1), event["epoch"], event["step"]))
            if cut_at is not None and len(steps) == cut_at:
                raise _Cut

    method = get_method(name)
    test = setup[3]
    ctx = MethodContext(model=copy.deepcopy(deployed), dataset=dataset, target=test.target,
                        sensitive=list(test.sensitive), data_options=dict(options), data_dir=None, device="cpu",
                        workdir=workdir, progress=progress, checkpoint_path=workdir / "checkpoint.pt",
                        resume=resume, seed=0)
    result = method().run(ctx, make_config(method, SETTINGS[name]))
    return result, ctx, steps


def _outcome(result, test):
    if result.after_model is not None:
        return {k: v.detach().clone() for k, v in result.after_model.state_dict().items()}
    return {"scores": torch.as_tensor(np.asarray(result.after_predictions(test).probs))}


def test_every_registered_method_has_a_resume_setting(setups):
    assert set(METHODS) <= set(SETTINGS), f"give these methods a tiny budget here: {set(METHODS) - set(SETTINGS)}"


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_a_cut_and_resumed_run_ends_as_an_uninterrupted_one(name, setups, tmp_path):
    method = get_method(name)
    kind = "image" if "image" in method.kinds and "tabular" not in method.kinds else "tabular"
    setup = setups[kind]
    whole, whole_ctx, steps = _run(name, setup, tmp_path / "whole")
    expected = _outcome(whole, setup[3])
    if name in POST_PROCESSING:
        assert steps == [] and whole_ctx.resumed_from is None
        again, _, _ = _run(name, setup, tmp_path / "again", resume=True)
        for key, value in _outcome(again, setup[3]).items():
            assert torch.equal(value, expected[key]), key
        return
    # The first step past the middle that lies in a later epoch of its stage: a checkpoint exists by then.
    later = [i for i, (_, epoch, _) in enumerate(steps) if epoch >= 1 and i >= len(steps) // 2]
    assert later, f"{name} trained no second epoch: {steps[-1] if steps else 'no steps'}"
    cut_at = later[0] + 1
    with pytest.raises(_Cut):
        _run(name, setup, tmp_path / "cut", cut_at=cut_at)
    resumed, ctx, resumed_steps = _run(name, setup, tmp_path / "cut", resume=True)
    stage, epoch, _ = steps[cut_at - 1]
    assert ctx.resumed_from is not None and ctx.resumed_from["stage"] == stage, ctx.resumed_from
    assert ctx.resumed_from["epoch"] >= 1
    assert len(resumed_steps) < len(steps)  # it continued rather than starting over
    got = _outcome(resumed, setup[3])
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(got[key], value), f"{name}: {key} differs after resuming"
