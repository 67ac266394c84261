"""FAAP (Wang et al., CVPR 2023) on a tiny biased synthetic-faces model: learning, bounds, frozen model, effect."""

from __future__ import annotations

import copy

import pytest
import torch

from fairaudit.audit import predict, run_audit
from fairaudit.data import load_dataset
from fairaudit.errors import FairauditError
from fairaudit.mitigation import MethodContext, config_help, get_method, make_config
from fairaudit.mitigation.faap import (FaapModel, PerturbationGenerator, SensitiveDiscriminator, faap_step,
                                       load_generator)
from fairaudit.train import TrainConfig, fit
from fairaudit.train.deployed import train_deployed_model

TINY = {"image_size": 32, "n_train": 512, "n_val": 384, "n_test": 1000, "bias": 0.9, "seed": 0}
EPS = 0.05


@pytest.fixture(scope="session")
def biased_model():
    """A small CNN trained on the biased split: it predicts Smiling mostly from gender."""
    torch.manual_seed(0)  # the weights are initialised before fit() seeds its own generator
    model, _, _ = train_deployed_model("synthetic-faces", arch="small_cnn", data_options=TINY, device="cpu",
                                       config=TrainConfig(epochs=3, batch_size=64, lr=2e-3))
    return model


@pytest.fixture(scope="module")
def splits():
    return {s: load_dataset("synthetic-faces", s, None, None, None, **TINY) for s in ("val", "test")}


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
    config = make_config(method, {"epochs": 8})  # the defaults otherwise: G trains on the balanced val split
    ctx = MethodContext(model=deployed, dataset="synthetic-faces", target="Smiling", sensitive=["Male"],
                        data_options=TINY, data_dir=None, device="cpu", workdir=tmp_path_factory.mktemp("faap"))
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
    assert stats["l2_max"] >= stats["l2_mean"] > 0 and stats["n"] == TINY["n_test"]


def test_faap_lowers_deo_without_hurting_accuracy(faap_run, splits):
    deployed, _, _, result, _ = faap_run
    before, _ = run_audit(splits["test"], deployed, n_boot=0, device="cpu")
    after, _ = run_audit(splits["test"], result.after_model, n_boot=0, device="cpu")
    assert before.disparities["deo"] > 0.5
    assert after.disparities["deo"] <= 0.7 * before.disparities["deo"]
    assert after.overall["accuracy"] >= before.overall["accuracy"] - 0.03
    assert len(result.history) == 8 and {"loss_d", "d_accuracy", "loss_target"} <= set(result.history[-1])


def test_after_model_audits_like_any_model(faap_run, splits, batch):
    _, _, _, result, _ = faap_run
    model = result.after_model
    assert model.num_classes == 2 and model.arch == "small_cnn+faap"
    preds = predict(model, splits["test"], device="cpu", with_latents=True)
    assert preds.latents.shape == (TINY["n_test"], 128)
    model.train()
    assert model.generator.training and not model.g[1].training and not model.f.training
    model.eval()
    reloaded = load_generator(result.artifacts["generator"])
    with torch.no_grad():
        assert torch.allclose(reloaded(batch[0]), model.generator(batch[0]), atol=1e-6)


def test_config_help_and_validation():
    method = get_method("faap")
    rows = {r["name"]: r for r in config_help(method)}
    assert rows["epsilon"]["default"] == 0.05 and all(r["help"] for r in rows.values())
    with pytest.raises(FairauditError, match="epsilon"):
        make_config(method, {"epsilon": "1.5"})
    with pytest.raises(FairauditError, match="train_split"):
        make_config(method, {"train_split": "test"})
