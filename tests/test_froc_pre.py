"""FRoC-PRE on small Adult subsets: the influence estimator against real retraining, the edit loop, the job."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from torch import nn

from fairaudit.data import load_dataset
from fairaudit.errors import FairauditError
from fairaudit.influence import InfluenceFunction
from fairaudit.mitigation import MethodContext, get_method, make_config
from fairaudit.mitigation.froc import numeric_feature_mask
from fairaudit.mitigation.froc_pre import (BUDGET, MET, FrocPreConfig, PreprocessedData, build_surrogate,
                                           flip_influence, froc_preprocess, relaxed_parity_gap)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def adult_train():
    return load_dataset("adult", "train")


def _subset(ds, n, start=0):
    rows = slice(start, start + n)
    return ds.x[rows].clone(), np.array(ds.targets[rows]), np.array(ds.sensitive_codes[rows, 0])


# ---------------------------------------------------------------------------- influence functions

def test_hessian_solvers_agree_with_autograd():
    torch.manual_seed(0)
    x = torch.randn(200, 5)
    y = (x[:, 0] + 0.5 * torch.randn(200) > 0).long()
    model = nn.Linear(5, 2)
    inf = InfluenceFunction(model, l2=0.05, device="cpu").fit(x, y)

    def risk(w, b):
        return nn.functional.cross_entropy(x @ w.T + b, y) + 0.025 * ((w ** 2).sum() + (b ** 2).sum())

    hw = torch.autograd.functional.hessian(risk, (model.weight.detach(), model.bias.detach()))
    dense = torch.cat([torch.cat([hw[0][0].reshape(10, 10), hw[0][1].reshape(10, 2)], 1),
                       torch.cat([hw[1][0].reshape(2, 10), hw[1][1].reshape(2, 2)], 1)])
    assert torch.allclose(inf.hessian(), dense, atol=1e-5)
    # For a model linear in its parameters the Gauss-Newton matrix is the Hessian.
    ggn = InfluenceFunction(model, l2=0.05, curvature="gauss_newton", device="cpu").fit(x, y)
    assert torch.allclose(ggn.hessian(), dense, atol=1e-5)
    v = torch.randn(12)
    exact = torch.linalg.solve(dense, v)
    for solver in ("exact", "cg"):
        got = InfluenceFunction(model, l2=0.05, solver=solver, device="cpu").fit(x, y).inverse_hvp(v)
        assert torch.allclose(got, exact, rtol=1e-3, atol=1e-4), solver
    lissa = InfluenceFunction(model, l2=0.05, solver="lissa", max_iter=100, lissa_scale=1.0, lissa_batch=200,
                              device="cpu").fit(x, y).inverse_hvp(v)
    assert torch.nn.functional.cosine_similarity(lissa, exact, dim=0) > 0.99
    norms = inf.per_sample_grad_norms(x[:5], y[:5])
    for i in range(5):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        expected = torch.cat([model.weight.grad.flatten(), model.bias.grad]).norm()
        assert float(norms[i]) == pytest.approx(float(expected), rel=1e-4)
    with pytest.raises(FairauditError, match="too large"):
        InfluenceFunction(model, solver="exact", max_exact=5, device="cpu").fit(x, y).inverse_hvp(v)
    with pytest.raises(FairauditError, match="unknown influence solver"):
        InfluenceFunction(model, solver="newton")


def test_relaxed_parity_gap_is_the_gap_of_group_mean_scores():
    scores = torch.tensor([0.9, 0.7, 0.2, 0.4, 0.1])
    a = torch.tensor([0, 0, 1, 1, 1])
    assert float(relaxed_parity_gap(scores, a)) == pytest.approx(0.8 - 0.7 / 3)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _bias(u, x1, a):
    p = _sigmoid(x1 @ u)
    return abs(p[a == 0].mean() - p[a == 1].mean())


def _loss(u, x1, y):
    z = x1 @ u
    return float(np.mean(np.logaddexp(0, z) - y * z))


def test_flip_influence_predicts_the_effect_of_retraining(adult_train):
    """Flip one label, retrain an L2 logistic regression to convergence, compare with the predicted change."""
    x, y, a = _subset(adult_train, 400)
    keep = x.abs().sum(0) > 0  # one-hot columns absent from the subset carry no information
    x = x[:, keep]
    n, d = x.shape
    lam = 0.01
    x1 = np.c_[x.numpy().astype(np.float64), np.ones(n)]  # the bias as a penalised weight, as in the surrogate

    def solve(labels):
        # Two softmax logits with penalty λ/2·‖θ‖² equal one logit u = w1 − w0 with penalty λ/4·‖u‖².
        clf = LogisticRegression(C=2.0 / (lam * n), fit_intercept=False, tol=1e-12, max_iter=10_000)
        return clf.fit(x1, labels).coef_[0]

    u = solve(y)
    surrogate = build_surrogate("logistic", d)
    with torch.no_grad():
        linear = surrogate[1]
        linear.weight.copy_(torch.tensor(np.stack([-u[:-1] / 2, u[:-1] / 2]), dtype=torch.float32))
        linear.bias.copy_(torch.tensor([-u[-1] / 2, u[-1] / 2], dtype=torch.float32))
    yt, at = torch.tensor(y), torch.tensor(a)
    inf = flip_influence(surrogate, x, yt, x, yt, at, l2=lam, solver="exact", device="cpu")
    predicted = inf["fairness"].numpy()
    order = np.argsort(predicted)
    candidates = np.r_[order[:4], order[-4:]]  # the four flips predicted to help most and hurt most
    actual, actual_loss = [], []
    for j in candidates:
        flipped = y.copy()
        flipped[j] = 1 - flipped[j]
        u_new = solve(flipped)
        actual.append(_bias(u_new, x1, a) - _bias(u, x1, a))
        actual_loss.append(_loss(u_new, x1, y) - _loss(u, x1, y))
    actual, actual_loss = np.array(actual), np.array(actual_loss)
    agree = np.sign(actual) == np.sign(predicted[candidates])
    assert agree.sum() >= 7, (actual, predicted[candidates])
    assert spearmanr(actual, predicted[candidates])[0] > 0.6
    # The first-order estimate is also close in size for these single flips.
    assert np.abs(actual - predicted[candidates]).max() < 0.1 * np.abs(actual).max()
    assert spearmanr(actual_loss, inf["utility"].numpy()[candidates])[0] > 0.5
    # Eq. 21: negative combined score exactly where flipping is predicted to lower the bias.
    assert np.array_equal(np.sign(inf["score"].numpy()), np.sign(predicted))


# ---------------------------------------------------------------------------- the edit loop

def test_froc_pre_meets_thresholds_that_erm_misses_or_reports_its_budget(adult_train, tmp_path):
    x, y, a = _subset(adult_train, 1500)
    mask = numeric_feature_mask(adult_train)
    config = FrocPreConfig(epochs=3, delta_f=0.05, delta_r=0.75, ell=30, iterations=40, max_flip_fraction=0.1,
                           max_add_fraction=0.05)
    events = []
    data = froc_preprocess(x, y, a, config, feature_mask=mask, device="cpu", progress=events.append)
    first, last = data.history[0], data.history[-1]
    assert first["flipped"] == first["added"] == 0
    assert first["bias_score"] > config.delta_f  # the ERM surrogate is unfair: there is something to do
    assert data.status in (MET, BUDGET)
    if data.status == MET:
        assert last["bias_score"] <= config.delta_f and last["robust_accuracy"] >= config.delta_r
    else:  # every threshold still missed has its whole budget spent
        assert last["bias_score"] <= config.delta_f or len(data.flipped) == 150
        assert last["robust_accuracy"] >= config.delta_r or len(data.added) == 75
        assert last["new_flips"] == last["new_adds"] == 0
    assert last["bias_score"] < 0.5 * first["bias_score"]
    assert [e["iteration"] for e in events] == list(range(1, len(data.history) + 1))
    assert events[-1]["fraction"] == 1.0
    # The edited data: flipped labels, then adversarial copies that keep a, y and every categorical column.
    n = len(x)
    assert data.n_original == n and len(data.y) == n + len(data.added)
    assert len(set(data.flipped.tolist())) == len(data.flipped) > 0
    changed = np.flatnonzero(data.y[:n].numpy() != y)
    assert sorted(changed.tolist()) == sorted(data.flipped.tolist())
    if len(data.added):
        src = torch.as_tensor(data.added)
        adv = data.x[n:]
        assert torch.equal(data.y[n:], data.y[src]) and torch.equal(data.sensitive[n:, 0], torch.as_tensor(a)[src])
        moved = (adv - x[src]).abs()
        assert float(moved[:, mask == 0].max()) == 0.0
        assert float(moved[:, mask == 1].max()) <= config.eps + 1e-5 and float(moved.max()) > 0
    # The saved artefact round-trips.
    loaded = PreprocessedData.load(data.save(tmp_path / "froc.npz"))
    assert torch.equal(loaded.y, data.y) and np.array_equal(loaded.flipped, data.flipped)
    assert loaded.status == data.status and loaded.history == data.history


def test_influence_selected_flips_lower_the_bias_more_than_as_many_random_flips(adult_train):
    """The flip rule (Eq. 21) against its control, ``flip_selection=random``: as many flipped labels, on rows
    drawn at random, scored by a surrogate refit on the data each returns."""
    x, y, a = _subset(adult_train, 1500)
    bias = {}
    for selection in ("influence", "random"):
        # δ_R = 0: no adversarial examples, so the flips are the only edit.
        config = FrocPreConfig(epochs=3, delta_f=0.05, delta_r=0.0, ell=30, iterations=40, max_flip_fraction=0.1,
                               flip_selection=selection)
        data = froc_preprocess(x, y, a, config, feature_mask=numeric_feature_mask(adult_train), device="cpu",
                               seed=0)
        assert len(data.flipped) == 90 and len(data.added) == 0
        bias[selection] = (data.final or data.history[-1])["bias_score"]  # the surrogate fitted on the result
    # Measured: the ERM surrogate's S_B 0.155; influence-selected flips → 0.005, random flips → 0.078.
    assert bias["influence"] < 0.5 * bias["random"]


def test_influence_selected_adversarial_examples_raise_the_surrogates_robustness(adult_train):
    """The released rule (default) raises the surrogate's S_R; Eq. 22 as printed and random draws do not."""
    x, y, a = _subset(adult_train, 2000, start=6000)
    mask = numeric_feature_mask(adult_train)
    runs = {}
    for selection in (None, "smallest_grad", "random"):
        # δ_F = 1: no flips, so the added examples are the only edit; δ_R = 0.99 keeps the augmentation running.
        settings = dict(delta_f=1.0, delta_r=0.99, iterations=5)
        if selection is not None:
            settings["add_selection"] = selection
        config = FrocPreConfig(**settings)
        runs[selection or "default"] = froc_preprocess(x, y, a, config, feature_mask=mask, device="cpu", seed=0)
    default = runs["default"]
    assert default.history[0]["new_adds"] == 20 and len(default.flipped) == 0  # ℓ = 1 % of the rows
    for data in runs.values():
        # One S_R per iteration and one of a surrogate refit on the returned data.
        assert len(data.surrogate_s_r) == 6 and data.final is not None
        assert data.surrogate_s_r[0] == default.surrogate_s_r[0]  # the same ERM surrogate to start from
    start = default.surrogate_s_r[0]
    final = {name: data.surrogate_s_r[-1] for name, data in runs.items()}
    # Measured: start 0.717; default → 0.793, smallest ‖∇θL‖ → 0.660, random → 0.719 (100 rows added by each).
    assert final["default"] > start + 0.04
    assert final["default"] > final["smallest_grad"] + 0.08
    assert final["default"] > final["random"] + 0.04
    assert len(runs["random"].added) == len(runs["smallest_grad"].added) == 100


def test_mlp_surrogate_uses_conjugate_gradient_and_its_flips_lower_the_bias(adult_train):
    x, y, a = _subset(adult_train, 800, start=2000)
    config = FrocPreConfig(epochs=4, surrogate="mlp", damping=0.01, delta_f=0.0, delta_r=0.0, ell=40,
                           iterations=2)
    data = froc_preprocess(x, y, a, config, device="cpu")
    assert data.status == "iterations_exhausted" and len(data.flipped) == 80 and len(data.added) == 0
    first, second = data.history
    assert first["hessian_solver"] == "cg" and first["solver_residual"] < 1e-3  # 12.8 k parameters
    assert first["predicted_bias_change"] < 0
    assert second["bias_score"] < first["bias_score"] - 0.02


# ---------------------------------------------------------------------------- the method and the job

def _ctx(model, tmp_path, sensitive=("sex",)):
    return MethodContext(model=model, dataset="adult", target="income", sensitive=list(sensitive), data_options={},
                         data_dir=None, device=torch.device("cpu"), workdir=tmp_path,
                         checkpoint_path=tmp_path / "checkpoint.pt")


@pytest.mark.parametrize("settings,message", [
    ({"delta_f": "1.5"}, r"'delta_f' of 'froc_pre' must lie in \[0, 1\]"),
    ({"surrogate": "svm"}, "'surrogate' of 'froc_pre' must be one of logistic, mlp"),
    ({"add_selection": "largest_grad"}, "'add_selection' of 'froc_pre' must be one of influence, smallest_grad, random"),
    ({"iterations": "0"}, "'iterations' of 'froc_pre' must be >= 1"),
    ({"epochs": "0"}, "'epochs' of 'froc_pre' must be >= 1"),
])
def test_bad_settings_are_rejected(settings, message):
    with pytest.raises(FairauditError, match=message):
        make_config(get_method("froc_pre"), settings)


def test_non_binary_sensitive_attribute_is_refused(tmp_path):
    method = get_method("froc_pre")
    assert method.kinds == ("tabular",)
    with pytest.raises(FairauditError, match="one binary sensitive attribute"):
        method().run(_ctx(nn.Linear(1, 2), tmp_path, sensitive=("race",)), make_config(method, {}))


def test_froc_pre_runs_as_a_job(tmp_path, monkeypatch):
    from fairaudit.jobs.execute import execute
    from fairaudit.jobs.spec import JobSpec
    from fairaudit.train import TrainConfig
    from fairaudit.train.deployed import train_deployed_model

    monkeypatch.setenv("FAIRAUDIT_HOME", str(tmp_path / "home"))
    path = tmp_path / "adult.safetensors"
    train_deployed_model("adult", arch="mlp", config=TrainConfig(epochs=1, max_steps=30, batch_size=256),
                         device="cpu", out=path)
    settings = {"epochs": "1", "batch_size": "512", "iterations": "2", "delta_r": "0", "ell": "900",
                "surrogate_epochs": "1"}
    spec = JobSpec("froc_pre", "adult", model=str(path), device="cpu", settings=settings, n_boot=0)
    result = execute(spec, "froc-run", tmp_path / "run")
    stats = result["stats"]
    assert result["config"]["epochs"] == 1 and len(result["history"]) == 1
    assert stats["status"] == "iterations_exhausted" and stats["thresholds_met"] is False
    assert stats["flipped"] == 1800 and stats["added"] == 0  # δ_R = 0: every model is robust enough
    assert stats["flipped_fraction"] == pytest.approx(1800 / stats["train_samples"])
    # Mostly women's labels are promoted: the flips close the gap between the groups' positive rates.
    assert stats["flipped_by_group"]["sex=Female"] > 5 * stats["flipped_by_group"]["sex=Male"]
    # A surrogate refit on the returned data (after 1800 flips) is much fairer than ERM.
    assert stats["surrogate_after_iteration"] is None and len(stats["surrogate_s_r"]) == 3
    before, after = stats["surrogate_before"]["bias_score"], stats["surrogate_after"]["bias_score"]
    assert before > 0.15 > stats["delta_f"] and after < 0.75 * before
    data = PreprocessedData.load(result["artifacts"]["preprocessed_data"])
    assert len(data.flipped) == stats["flipped"] and data.n_original == stats["train_samples"]
    assert result["artifacts"]["model"].endswith("after_model.safetensors")
    # ERM with this budget leaves a statistical-parity gap of about 0.18 on the test split.
    assert result["summary"]["after"]["spd"] < 0.12
    assert result["after"]["overall"]["accuracy"] > 0.75
