"""ASAC (Shukla et al.) on a tiny biased synthetic-faces model: counterfactuals, difficulty, curriculum, effect."""

from __future__ import annotations

import contextlib
import copy
import json

import pytest
import torch
from torch import nn

from fairaudit.audit import run_audit
from fairaudit.data import load_dataset
from fairaudit.errors import FairauditError
from fairaudit.mitigation import MethodContext, config_help, get_method, make_config
from fairaudit.mitigation.asac import (CurriculumClock, asac_step, curriculum_selection, difficulty_scores,
                                       make_counterfactuals, pace, parse_epsilons, train_attribute_classifier)
from fairaudit.models.io import load_model
from fairaudit.train import TrainConfig
from fairaudit.train.deployed import train_deployed_model

TINY = {"image_size": 32, "n_train": 512, "n_val": 256, "n_test": 1000, "bias": 0.9, "seed": 0}
SMALL = {**TINY, "n_train": 128, "n_val": 64, "n_test": 200}  # the same images, fewer of them, for smoke runs
# For the effect test: at 48 px the 1-2 px smile is learnable, so the deployed model is above chance. Its
# validation split, which ASAC fine-tunes on, follows the train split's 0.9 bias (the fair protocol: the data of
# the deployed model's distribution, no balanced data a retraining baseline would not get).
FACES = {"image_size": 48, "n_train": 1024, "n_val": 256, "n_test": 500, "bias": 0.9, "seed": 0}


@pytest.fixture(scope="module")
def deployed_path(tmp_path_factory):
    """A small CNN trained on the biased split (it predicts Smiling mostly from gender), saved as a checkpoint."""
    path = tmp_path_factory.mktemp("asac_model") / "faces_cnn.safetensors"
    torch.manual_seed(0)  # the weights are initialised before fit() seeds its own generator
    train_deployed_model("synthetic-faces", arch="small_cnn", data_options=TINY, device="cpu", out=path,
                         config=TrainConfig(epochs=3, batch_size=64, lr=2e-3))
    return str(path)


@pytest.fixture(scope="module")
def deployed(deployed_path):
    return load_model(deployed_path).eval()


@contextlib.contextmanager
def _one_thread():
    """The acceptance numbers below were measured on one thread (faster on a busy 2-core machine; fixed seeds)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def learned():
    """A small CNN trained on the 0.9-biased faces that learned some of the smile too (above chance, large DEO)."""
    torch.manual_seed(0)
    with _one_thread():
        model, _, _ = train_deployed_model("synthetic-faces", arch="small_cnn", data_options=FACES, device="cpu",
                                           config=TrainConfig(epochs=6, batch_size=64, lr=2e-3))
    return model.eval()


@pytest.fixture(scope="module")
def val_batch():
    ds = load_dataset("synthetic-faces", "val", None, None, None, **TINY)
    items = [ds[i] for i in range(64)]
    return tuple(torch.stack([torch.as_tensor(it[k]) for it in items]) for k in range(3))


@pytest.fixture(scope="module")
def attribute_classifier(deployed):
    train = load_dataset("synthetic-faces", "train", None, None, None, **TINY)
    return train_attribute_classifier(deployed, train, [2], epochs=5, lr=1e-3, batch_size=64, device="cpu")


def _run(deployed, tmp_path, data_options, settings, seed=0):
    method = get_method("asac")
    ctx = MethodContext(model=deployed, dataset="synthetic-faces", target="Smiling", sensitive=["Male"],
                        data_options=data_options, data_dir=None, device="cpu", workdir=tmp_path, seed=seed)
    return method().run(ctx, make_config(method, {"train_split": "train", **settings}))


# ---------------------------------------------------------------------------- settings and building blocks

def test_settings_defaults_and_validation():
    method = get_method("asac")
    rows = {r["name"]: r["default"] for r in config_help(method)}
    assert (rows["attack"], rows["epsilons"], rows["alpha"], rows["order"]) == ("fgsm", "0,0.03,0.05", 0.5,
                                                                                "increasing")
    assert (rows["epochs"], rows["lr"], rows["batch_size"]) == (4, 1e-4, 128)
    assert (rows["classifier_features"], rows["pace_end"]) == ("shared", 1.0)
    config = make_config(method, {"epochs": "1", "epsilons": "0.05, 0.01", "order": "random", "attack": "pgd"})
    assert config.epochs == 1 and config.epsilon_values == (0.0, 0.01, 0.05)  # ε = 0 always included
    assert parse_epsilons([0.03, 0.03, 0]) == (0.0, 0.03)
    assert make_config(method, {"epsilons": (0.02,)}).epsilons == "0,0.02"
    for bad, match in [({"epsilons": "0,abc"}, "epsilons"), ({"epsilons": "0,1.5"}, "epsilons"),
                       ({"attack": "cw"}, "attack"), ({"order": "sideways"}, "order"), ({"alpha": "1.2"}, "alpha"),
                       ({"epochs": "0"}, "epochs"), ({"pace_start": "0"}, "pace_start"),
                       ({"pace_end": "0"}, "pace_end"), ({"classifier_features": "copy"}, "classifier_features")]:
        with pytest.raises(FairauditError, match=match):
            make_config(method, bad)


def test_difficulty_score_is_one_minus_true_class_softmax():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Dropout(0.5)).train()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    x, y = torch.tensor([[1.0, 1.0], [0.0, 0.0]]), torch.tensor([0, 1])
    scores = difficulty_scores(model, x, y)
    # logits (1, 2): softmax_0 = 1 / (1 + e); logits (0, 0): 0.5. Dropout is off while scoring.
    assert scores.tolist() == pytest.approx([1 - 1 / (1 + torch.e), 0.5], abs=1e-6)
    assert model.training and model[1].training  # modes restored


def test_pacing_and_curriculum_orders():
    assert [pace(t, 0.5, 0.5) for t in (0.0, 0.25, 0.5, 0.9)] == pytest.approx([0.5, 0.75, 1.0, 1.0])
    assert pace(0.0, 0.3, 0.0) == 1.0
    assert [pace(t, 0.5, 0.5, 0.5) for t in (0.0, 0.9)] == [0.5, 0.5]  # pace_end < 1: the rest is never used
    scores = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
    assert curriculum_selection(scores, "increasing", 0.5).tolist() == [1, 5, 3]
    assert curriculum_selection(scores, "decreasing", 0.5).tolist() == [0, 4, 2]
    assert sorted(curriculum_selection(scores, "increasing", 1.0).tolist()) == list(range(6))
    random = curriculum_selection(scores, "random", 0.5, torch.Generator().manual_seed(0))
    assert len(random) == 3 and len(set(random.tolist())) == 3
    assert len(curriculum_selection(scores, "increasing", 0.01)) == 1
    with pytest.raises(FairauditError, match="order"):
        curriculum_selection(scores, "sideways", 0.5)


def test_counterfactuals_fool_the_attribute_classifier(attribute_classifier, val_batch):
    x, _, s = val_batch
    groups = s.view(-1)
    with torch.no_grad():
        clean_accuracy = float((attribute_classifier(x).argmax(1) == groups).float().mean())
    assert clean_accuracy > 0.7  # the biased model's latent carries gender
    fooled = {}
    for attack in ("fgsm", "pgd"):
        originals, small, large = make_counterfactuals(attribute_classifier, x, groups, (0.0, 0.01, 0.05), attack,
                                                       pgd_steps=5)
        assert torch.equal(originals, x)
        for eps, x_adv in [(0.01, small), (0.05, large)]:
            assert float((x_adv - x).abs().max()) <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
        with torch.no_grad():
            fooled[attack] = [float((attribute_classifier(a).argmax(1) != groups).float().mean())
                              for a in (small, large)]
    # Larger ε fools C more often; PGD fools it at least as often as one FGSM step.
    assert fooled["fgsm"][1] > fooled["fgsm"][0] > 1 - clean_accuracy
    assert fooled["pgd"][1] > fooled["fgsm"][1] + 0.1


def test_step_computes_equation_5(deployed, attribute_classifier, val_batch):
    model = copy.deepcopy(deployed).eval()  # eval: batch norm does not depend on how the items are batched
    x, y, s = val_batch
    ce = nn.functional.cross_entropy
    for alpha in (0.3, 1.0):
        config = make_config(get_method("asac"), {"alpha": alpha, "pace_start": 1.0})
        loss, scalars = asac_step(attribute_classifier, [2], config, CurriculumClock())(model, (x, y, s))
        assert loss.requires_grad  # the loop back-propagates it into M
        loss = loss.detach()
        adversarial = make_counterfactuals(attribute_classifier, x, s.view(-1), config.epsilon_values)
        with torch.no_grad():
            clean = ce(model(x), y, reduction="none")
            per_eps = [alpha * clean + (1 - alpha) * ce(model(a), y, reduction="none") for a in adversarial]
        assert float(loss) == pytest.approx(float(torch.cat(per_eps).mean()), rel=1e-4)
        assert scalars["items_used"] == 1.0
        assert float(scalars["ds_eps_0.05"]) > float(scalars["ds_eps_0"])  # ASACs are harder for the biased M
    assert float(loss) == pytest.approx(float(clean.mean()), rel=1e-4)  # α = 1: the clean loss alone


# ---------------------------------------------------------------------------- the method

@pytest.mark.parametrize("order", ["increasing", "decreasing", "random"])
def test_each_curriculum_order_runs(order, deployed, tmp_path):
    weights = {k: v.clone() for k, v in deployed.state_dict().items()}
    result = _run(deployed, tmp_path, SMALL, {"epochs": "1", "batch_size": "64", "order": order,
                                               "classifier_epochs": "1", "stats_samples": "0"})
    assert all(torch.equal(v, weights[k]) for k, v in deployed.state_dict().items())  # deployed model untouched
    model = result.after_model
    assert model is not deployed and not model.training and model.arch == deployed.arch
    assert not all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    (record,) = result.history
    # Two steps: λ = 0.5 at t = 0, then 1 from half-way on, so three quarters of the items are used.
    assert record["items_used"] == pytest.approx(0.75)
    assert 0 < record["c_fooled_eps_0.03"] <= record["c_fooled_eps_0.05"] <= 1
    assert result.stats["epsilons"] == [0.0, 0.03, 0.05] and result.stats["train_samples"] == SMALL["n_train"]


def test_asac_makes_the_model_insensitive_to_its_counterfactuals(learned, tmp_path):
    """The effect test, under the fair protocol (fine-tuning data with the train split's bias).

    What ASAC measurably does on this setup: the fine-tuned model's difficulty (Eq. 4) on counterfactuals made
    against the deployed model's gender classifier shrinks to about half of the deployed model's (0.021 -> 0.011);
    fine-tuning on the clean images alone (the ``no_counterfactuals`` control, ε = 0) leaves 0.017 (ratio 0.82)
    and dropping the counterfactuals' loss (``no_counterfactual_loss``, α = 1) 0.033 (ratio 1.54), so the
    assertion fails for both. It does *not* lower DEO here (1.43 before; ASAC 1.50, ε = 0 1.50, α = 1 1.40):
    the test checks the mechanism, not a fairness gain the method does not deliver.
    """
    with _one_thread():
        _check_asac_on(learned, tmp_path, {})


def _counterfactual_gap(model, x, y, x_adv) -> float:
    return float(difficulty_scores(model, x_adv, y).mean() - difficulty_scores(model, x, y).mean())


def _check_asac_on(learned, tmp_path, settings):
    test = load_dataset("synthetic-faces", "test", "Smiling", ["Male"], None, **FACES)
    before, _ = run_audit(test, learned, n_boot=0, device="cpu")
    assert before.overall["accuracy"] >= 0.6  # the deployed model learned the smile in part, it is not at chance
    assert before.disparities["deo"] > 1.0  # ... and still leans on gender
    train = load_dataset("synthetic-faces", "train", None, None, None, **FACES)
    judge = train_attribute_classifier(learned, train, [2], epochs=5, lr=1e-3, batch_size=64, device="cpu")
    items = [test[i] for i in range(256)]
    x, y, s = (torch.stack([torch.as_tensor(it[k]) for it in items]) for k in range(3))
    _, x_adv = make_counterfactuals(judge, x, s.view(-1), (0.0, 0.05))
    gap_before = _counterfactual_gap(learned, x, y, x_adv)
    assert gap_before > 0.01  # the gender classifier's noise moves the deployed model's smile prediction
    method = get_method("asac")
    ctx = MethodContext(model=copy.deepcopy(learned), dataset="synthetic-faces", target="Smiling", sensitive=["Male"],
                        data_options=FACES, data_dir=None, device="cpu", workdir=tmp_path, seed=0)
    # The defaults (train_split="val", C on M's shared features, ε = {0, 0.03, 0.05}, α = 0.5, lr 1e-4,
    # increasing order), sized down.
    result = method().run(ctx, make_config(method, {"epochs": "2", "batch_size": "64", "classifier_epochs": "2",
                                                    "stats_samples": "128", **settings}))
    gap_after = _counterfactual_gap(result.after_model, x, y, x_adv)
    assert gap_after < 0.75 * gap_before
    stats = result.stats
    assert (stats["train_split"], stats["train_samples"], stats["held_out_split"]) == ("val", FACES["n_val"], "test")
    assert stats["stats_samples"] == 128 and stats["classifier_accuracy"] > 0.7
    under_attack = stats["classifier_accuracy_under_attack"]
    assert under_attack["0"] == stats["classifier_accuracy"] > under_attack["0.03"] > under_attack["0.05"]
    assert set(stats["difficulty_before"]) == set(stats["difficulty_after"]) == {"0", "0.03", "0.05"}
    assert [h["epoch"] for h in result.history] == [1, 2] and result.history[-1]["items_used"] == 1.0


def test_cli_runs_asac_as_a_job(home, deployed_path, tmp_path):
    from fairaudit.cli import main

    out = tmp_path / "asac.json"
    options = [f"{k}={SMALL[k]}" for k in ("image_size", "n_train", "n_val", "n_test")]
    argv = ["mitigate", "asac", "--dataset", "synthetic-faces", "--model", deployed_path, "--target", "Smiling",
            "--sensitive", "Male", "--set", "epochs=1", "--set", "train_split=train", "--set", "batch_size=64",
            "--set", "classifier_epochs=1", "--set", "stats_samples=32", "--set", "attack=pgd", "--set", "pgd_steps=2",
            "--device", "cpu", "--bootstrap", "0", "--robustness-samples", "16", "--split-samples", "64",
            "--json", str(out)]
    for option in options:
        argv += ["--data-opt", option]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert data["method"] == "asac" and data["config"]["epochs"] == 1 and data["config"]["attack"] == "pgd"
    for stage in ("before", "after"):
        assert {"overall", "groups", "disparities", "ci", "meta"} <= set(data[stage])
        assert data[stage]["overall"]["n"] == SMALL["n_test"]
    assert data["before"]["disparities"]["deo"] != data["after"]["disparities"]["deo"]
    for stage in ("before", "after"):  # the robustness block every mitigation run records
        assert data["robustness"][stage]["adversarial"]["pgd"]["overall"]["n"] == 16
        assert 0.0 <= data["summary"][stage]["s_r"] <= 1.0
    for key in ("model", "attribute_classifier", "before_predictions", "after_predictions"):
        assert key in data["artifacts"]
    assert data["artifacts"]["model"].endswith("after_model.safetensors")
    assert load_model(data["artifacts"]["model"]).input_shape == (3, 32, 32)
    assert data["stats"]["stats_samples"] == 32 and 0.5 < data["stats"]["classifier_accuracy"] <= 1
    assert len(data["history"]) == 1 and "c_fooled_eps_0.05" in data["history"][0]
