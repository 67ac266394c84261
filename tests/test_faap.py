"""FAAP (Wang et al., CVPR 2023) on the shipped synthetic-faces demo model: learning, bounds, frozen model,
resuming, effect."""

from __future__ import annotations

import copy

import pytest
import torch

from fairaudit.audit import predict, run_audit
from fairaudit.data import load_dataset
from fairaudit.demo import get_demo_model
from fairaudit.errors import FairauditError
from fairaudit.mitigation import MethodContext, config_help, get_method, make_config
from fairaudit.mitigation.faap import (FaapModel, PerturbationGenerator, SensitiveDiscriminator, faap_step,
                                       load_generator)
from fairaudit.train import TrainConfig, fit

# Split sizes only: the demo model's train split (64 px, bias 0.9) is unchanged, val keeps its 0.9 tie, test is
# balanced.
DATA = {"n_val": 384, "n_test": 400}
EPS = 0.05


@pytest.fixture(scope="session")
def biased_model():
    """The shipped demo model: it learned part of the smile and leans on gender (test: accuracy 0.755, DEO 0.32)."""
    model, _ = get_demo_model("synthetic-faces")
    return model


@pytest.fixture(scope="module")
def splits():
    return {s: load_dataset("synthetic-faces", s, None, None, None, **DATA) for s in ("val", "test")}


@pytest.fixture(scope="module")
def batch(splits):
    items = [splits["val"][i] for i in range(32)]
    return tuple(torch.stack([it[k] for it in items]) for k in range(3))


def _parts(deployed, seed=0):
    torch.manual_seed(seed)
    generator = PerturbationGenerator(3, 8, 1, EPS)
    model = FaapModel(generator, deployed)
    disc = SensitiveDiscriminator(128, 2)
    return generator, model, disc, torch.optim.Adam(disc.parameters(), lr=1e-3)


def test_fairness_gradient_flows_through_the_frozen_model(biased_model, batch):
    deployed = copy.deepcopy(biased_model).requires_grad_(False).eval()
    generator, model, disc, d_opt = _parts(deployed)
    loss, _ = faap_step(disc, d_opt, alpha=1.0, beta=0.0, cardinalities=[2])(model.train(), batch)
    loss.backward()  # β = 0: only −L_D − α·H, which reaches G only through g
    grads = [p.grad for p in generator.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in deployed.parameters())


def test_one_step_changes_every_generator_parameter(biased_model, batch):
    deployed = copy.deepcopy(biased_model).requires_grad_(False).eval()
    generator, model, disc, d_opt = _parts(deployed)
    before = [p.detach().clone() for p in generator.parameters()]
    data = torch.utils.data.TensorDataset(*batch)
    fit(model, data, TrainConfig(epochs=1, batch_size=32, max_steps=1, lr=1e-3), device="cpu",
        step_fn=faap_step(disc, d_opt, 1.0, 0.1, [2]), params=generator.parameters())
    assert all(not torch.equal(a, p) for a, p in zip(before, generator.parameters()))


def test_generator_output_is_bounded_for_any_size():
    torch.manual_seed(0)
    generator = PerturbationGenerator(3, 4, 1, 0.03)
    for shape in [(2, 3, 32, 32), (2, 3, 30, 27)]:
        out = generator(torch.rand(shape) * 10)
        assert out.shape == shape and out.abs().max() <= 0.03


@pytest.fixture(scope="module")
def faap_run(biased_model, splits, tmp_path_factory):
    deployed = copy.deepcopy(biased_model)
    state = {k: v.clone() for k, v in deployed.state_dict().items()}
    flags = {n: p.requires_grad for n, p in deployed.named_parameters()}
    method = get_method("faap")
    # The defaults otherwise (G trains on val); a smaller G and 4 epochs at batch 32 (48 steps) keep it to about a
    # minute of CPU time.
    config = make_config(method, {"epochs": 4, "batch_size": 32, "generator_width": 8, "generator_blocks": 1})
    ctx = MethodContext(model=deployed, dataset="synthetic-faces", target="Smiling", sensitive=["Male"],
                        data_options=DATA, data_dir=None, device="cpu", workdir=tmp_path_factory.mktemp("faap"))
    result = method().run(ctx, config)
    return deployed, state, flags, result, config


def test_deployed_model_is_untouched(faap_run):
    deployed, state, flags, _, _ = faap_run
    after = deployed.state_dict()
    assert set(after) == set(state)
    for key, value in state.items():  # parameters and batch-norm buffers (running stats, counters)
        assert torch.equal(after[key], value), key
    assert {n: p.requires_grad for n, p in deployed.named_parameters()} == flags


def test_perturbation_is_bounded_and_image_dependent(faap_run, batch):
    _, _, _, result, config = faap_run
    model = result.after_model.eval()
    x = batch[0]
    with torch.no_grad():
        x_hat = model.perturb(x)
    assert (x_hat - x).abs().max() <= config.epsilon + 1e-6
    assert x_hat.min() >= 0 and x_hat.max() <= 1
    assert (x_hat - x).std(0).mean() > 1e-3  # not one universal pattern
    stats = result.stats["perturbation"]
    assert 0 < stats["linf_mean"] <= stats["linf_max"] <= config.epsilon + 1e-6
    assert stats["l2_max"] >= stats["l2_mean"] > 0 and stats["n"] == DATA["n_test"]


def test_faap_lowers_deo_without_hurting_accuracy(faap_run, splits):
    deployed, _, _, result, _ = faap_run
    before, _ = run_audit(splits["test"], deployed, n_boot=0, device="cpu")
    after, _ = run_audit(splits["test"], result.after_model, n_boot=0, device="cpu")
    assert before.overall["balanced_accuracy"] > 0.7 and before.disparities["deo"] > 0.3  # it learned, and it is biased
    assert after.disparities["deo"] <= 0.8 * before.disparities["deo"]  # measured: 0.32 -> 0.23
    # A constant prediction has DEO 0 but balanced accuracy 0.5: the target must survive the perturbation.
    assert after.overall["balanced_accuracy"] >= max(0.6, before.overall["balanced_accuracy"] - 0.05)
    assert len(result.history) == 4 and {"loss_d", "d_accuracy", "loss_target"} <= set(result.history[-1])


def test_after_model_audits_like_any_model(faap_run, splits, batch):
    _, _, _, result, _ = faap_run
    model = result.after_model
    assert model.num_classes == 2 and model.arch == "small_cnn+faap"
    preds = predict(model, splits["test"], device="cpu", with_latents=True)
    assert preds.latents.shape == (DATA["n_test"], 128)
    model.train()
    assert model.generator.training and not model.g[1].training and not model.f.training
    model.eval()
    reloaded = load_generator(result.artifacts["generator"])
    with torch.no_grad():
        assert torch.allclose(reloaded(batch[0]), model.generator(batch[0]), atol=1e-6)


class _Killed(Exception):
    """Stands for the worker process dying in the middle of an epoch."""


def _faap_job(deployed, workdir, resume=False, progress=lambda event: None):
    method = get_method("faap")
    config = make_config(method, {"epochs": 2, "batch_size": 8, "generator_width": 4, "generator_blocks": 1,
                                  "discriminator_hidden": 16})
    ctx = MethodContext(model=copy.deepcopy(deployed), dataset="synthetic-faces", target="Smiling",
                        sensitive=["Male"], data_options={**DATA, "n_val": 32}, data_dir=None, device="cpu",
                        workdir=workdir, progress=progress, checkpoint_path=workdir / "checkpoint.pt", resume=resume)
    return method().run(ctx, config)


def test_interrupted_run_resumes_with_generator_discriminator_and_optimisers(biased_model, tmp_path):
    whole = _faap_job(biased_model, tmp_path / "whole")

    def die_in_second_epoch(event):
        if event.get("event") == "step" and event["epoch"] == 1:
            raise _Killed  # after one step of epoch 2: G, D and both optimisers have moved past the checkpoint

    with pytest.raises(_Killed):
        _faap_job(biased_model, tmp_path / "cut", progress=die_in_second_epoch)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    epochs_run = []
    resumed = _faap_job(biased_model, tmp_path / "cut", resume=True,
                        progress=lambda e: epochs_run.append(e["epoch"]) if e.get("event") == "step" else None)
    assert set(epochs_run) == {1}  # only the second epoch was trained again
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]
    for name, value in whole.after_model.generator.state_dict().items():
        assert torch.equal(resumed.after_model.generator.state_dict()[name], value), name
    final = [torch.load(tmp_path / run / "checkpoint.pt", weights_only=True) for run in ("whole", "cut")]
    assert final[0]["epoch"] == final[1]["epoch"] == 2
    for name, value in final[0]["extra"]["discriminator"].items():
        assert torch.equal(final[1]["extra"]["discriminator"][name], value), name
    assert final[0]["extra"]["discriminator_optimizer"]["state"][0]["step"] == 8  # D took one Adam step a batch


def test_a_checkpoint_without_the_discriminator_is_refused(tmp_path):
    # A checkpoint written before D was saved (or by another method) cannot resume FAAP with a fresh D.
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,)))
    config = TrainConfig(epochs=1, batch_size=4, checkpoint_path=str(tmp_path / "checkpoint.pt"))
    fit(torch.nn.Linear(4, 2), data, config, device="cpu")
    disc = SensitiveDiscriminator(4, 2, 8)
    with pytest.raises(FairauditError, match="holds no state for 'discriminator'"):
        fit(torch.nn.Linear(4, 2), data, TrainConfig(epochs=2, batch_size=4), device="cpu",
            extra_state={"discriminator": disc}, resume_from=config.checkpoint_path)


def test_config_help_and_validation():
    method = get_method("faap")
    rows = {r["name"]: r for r in config_help(method)}
    assert rows["epsilon"]["default"] == 0.05 and all(r["help"] for r in rows.values())
    with pytest.raises(FairauditError, match="epsilon"):
        make_config(method, {"epsilon": "1.5"})
    with pytest.raises(FairauditError, match="train_split"):
        make_config(method, {"train_split": "test"})
