"""adv_fair (Zhang, Lemoine & Mitchell 2018): the projected predictor update, and SPD below ERM's on Adult."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fairaudit.audit import run_audit
from fairaudit.data.base import TensorFairDataset
from fairaudit.errors import FairauditError
from fairaudit.mitigation import MethodContext, get_method, make_config
from fairaudit.models import build_model
from fairaudit.train.variants import projected_update

pytestmark = pytest.mark.usefixtures("one_thread")

TWO_EPOCHS = {"epochs": "2", "batch_size": "128", "lr": "0.002"}


def _rows(ds, n):
    return TensorFairDataset("adult", ds.split, ds.x[:n], ds.attributes.iloc[:n], ds.value_names, "income", ["sex"])


@pytest.fixture(scope="module")
def small_adult(adult):
    """3,000 training and 3,000 test rows of Adult (income, sensitive sex; sex is not a model input)."""
    return _rows(adult[0], 3000), _rows(adult[1], 3000)


class _Context(MethodContext):
    """A job context whose train split is the small subset."""

    train: TensorFairDataset | None = None

    def load_split(self, split, stage="fit"):
        self.splits_used.setdefault(stage, split)
        return self.train


def _run(name, train, tmp_path, settings, seed=0):
    torch.manual_seed(0)
    deployed = build_model("mlp", 2, train.input_shape)  # only its architecture is used: both methods retrain
    ctx = _Context(model=deployed, dataset="adult", target="income", sensitive=["sex"], data_options={},
                   data_dir=None, device=torch.device("cpu"), workdir=tmp_path, seed=seed)
    ctx.train = train
    method = get_method(name)
    return method().run(ctx, make_config(method, settings))


def _spd(result, test):
    return run_audit(test, result.after_model, n_boot=0, device="cpu")[0]


@pytest.fixture(scope="module")
def erm_report(small_adult, tmp_path_factory):
    return _spd(_run("erm", small_adult[0], tmp_path_factory.mktemp("erm"), TWO_EPOCHS), small_adult[1])


def test_projected_update_is_zhang_et_al_s_step():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x, y, z = torch.randn(16, 3), torch.randint(0, 2, (16,)), torch.randint(0, 2, (16,))
    adversary = nn.Linear(2, 2)
    params = list(model.parameters())

    def losses():
        logits = model(x)
        return nn.functional.cross_entropy(logits, y), nn.functional.cross_entropy(adversary(logits), z)

    alpha = 0.7
    loss_p, loss_a = losses()
    g_p = torch.autograd.grad(loss_p, params, retain_graph=True)
    g_a = torch.autograd.grad(loss_a, params)
    loss = projected_update(*losses(), params, alpha)
    assert float(loss.detach()) == pytest.approx(float(loss_p))  # what the training loop logs is the target loss
    got = torch.autograd.grad(loss, params)
    for gp, ga, g in zip(g_p, g_a, got):
        expected = gp - (gp * ga).sum() / (ga * ga).sum() * ga - alpha * ga
        assert torch.allclose(g, expected, atol=1e-6)
    # Without the −α·∇L_A term the step is orthogonal to the adversary's gradient: it never helps it.
    for ga, g in zip(g_a, torch.autograd.grad(projected_update(*losses(), params, 0.0), params)):
        assert abs(float((g * ga).sum())) < 1e-6


def test_the_adversary_reads_the_prediction_by_default(small_adult, tmp_path):
    from fairaudit.train.variants import make_variant_step

    train = small_adult[0]
    model = build_model("mlp", 2, train.input_shape)
    widths = {}
    for name, options in (("prediction", {}), ("equalized_odds", {"adv_criterion": "equalized_odds"}),
                          ("latent", {"adv_input": "latent"})):
        options = {"adv_input": "prediction", "adv_update": "projection", **options}
        step = make_variant_step("fair", model, train, "cpu", options=options)
        widths[name] = step.adversary.net[0].in_features
    assert widths["prediction"] == 2  # the two class probabilities
    assert widths["equalized_odds"] == 4  # plus the one-hot true label
    assert widths["latent"] > 4  # the latent g(x)
    assert make_config(get_method("adv_fair")).adversary_input == "prediction"
    assert make_config(get_method("adv_fair")).update == "projection"


def test_adv_fair_lowers_statistical_parity_difference_below_erm(small_adult, erm_report, tmp_path):
    result = _run("adv_fair", small_adult[0], tmp_path, TWO_EPOCHS)
    report = _spd(result, small_adult[1])
    assert erm_report.disparities["spd"] > 0.2  # the subset's ERM model is clearly unfair: something to remove
    assert report.disparities["spd"] < 0.6 * erm_report.disparities["spd"]
    assert report.overall["accuracy"] > erm_report.overall["accuracy"] - 0.03
    assert result.stats["update"] == "projection" and result.stats["adversary_input"] == "prediction"
    assert "loss_adversary" in result.history[-1]


@pytest.mark.parametrize("settings,message", [
    ({"update": "sideways"}, "setting 'update' of 'adv_fair' must be one of confusion, projection, reversal"),
    ({"adversary_input": "pixels"}, "setting 'adversary_input' of 'adv_fair' must be one of prediction, latent"),
    ({"fairness": "parity"}, "setting 'fairness' of 'adv_fair' must be one of demographic_parity, equalized_odds"),
    ({"adv_weight": "-1"}, "setting 'adv_weight' of 'adv_fair' must be a finite number >= 0"),
])
def test_bad_adv_fair_settings_are_refused(settings, message):
    with pytest.raises(FairauditError, match=message):
        make_config(get_method("adv_fair"), settings)
