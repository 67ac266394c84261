"""Classic baselines on Adult (sex): each retrains or post-processes end-to-end and moves the disparity it targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fairaudit.audit import audit_predictions, run_audit
from fairaudit.errors import FairauditError
from fairaudit.mitigation import MethodContext, get_method, make_config
from fairaudit.mitigation.baselines.common import base_rates, cell_counts
from fairaudit.mitigation.baselines.label_flip import massage_labels
from fairaudit.mitigation.baselines.retraining import cell_weights, resample_indices
from fairaudit.models import build_model
from fairaudit.models.split import SplitModel
from fairaudit.train import TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"epochs": "1", "batch_size": "256", "lr": "0.002"}


@pytest.fixture(scope="module")
def deployed(adult):
    """The deployed Adult MLP: one epoch of ERM (sex is not an input, it leaks through proxies)."""
    torch.manual_seed(0)
    model = build_model("mlp", 2, adult[0].input_shape)
    fit(model, adult[0], TrainConfig(epochs=1, batch_size=256, lr=2e-3), device="cpu")
    return model.eval()


def _ctx(model, tmp_path, dataset="adult", target="income", sensitive=("sex",), **options):
    return MethodContext(model=model, dataset=dataset, target=target, sensitive=list(sensitive),
                         data_options=options, data_dir=None, device=torch.device("cpu"), workdir=tmp_path,
                         checkpoint_path=tmp_path / "checkpoint.pt")


def _run(name, model, tmp_path, settings=None, **kwargs):
    method = get_method(name)
    return method().run(_ctx(model, tmp_path, **kwargs), make_config(method, settings or {}))


def _audit(result, test):
    if result.after_model is not None:
        return run_audit(test, result.after_model, n_boot=0, device="cpu")[0]
    return audit_predictions(result.after_predictions(test), n_boot=0, device="cpu")


@pytest.fixture(scope="module")
def erm(deployed, adult, tmp_path_factory):
    """The ERM reference retrained with the same budget as every baseline below."""
    result = _run("erm", deployed, tmp_path_factory.mktemp("erm"), FAST)
    return result, _audit(result, adult[1])


# ---------------------------------------------------------------------------- pure functions

def test_cell_weights_equalise_weighted_base_rates():
    targets = np.array([1] * 30 + [0] * 70 + [1] * 10 + [0] * 90)
    groups = np.array([0] * 100 + [1] * 100)
    for scheme in ("balanced", "kamiran"):
        w = cell_weights(targets, groups, 2, 2, scheme)
        assert w.mean() == pytest.approx(1.0)
        rates = [w[(groups == g) & (targets == 1)].sum() / w[groups == g].sum() for g in (0, 1)]
        assert rates[0] == pytest.approx(rates[1]) == pytest.approx(0.2)  # the overall positive rate
    # Unweighted, the base rates are 0.3 and 0.1.
    assert list(base_rates(targets, groups, 2)) == pytest.approx([0.3, 0.1])


def test_resample_indices_balance_groups_within_each_class():
    targets = np.array([1] * 30 + [0] * 70 + [1] * 10 + [0] * 90)
    groups = np.array([0] * 100 + [1] * 100)
    rng = np.random.default_rng(0)
    under = resample_indices(targets, groups, 2, 2, "undersample", rng)
    assert cell_counts(targets[under], groups[under], 2, 2).tolist() == [[70, 70], [10, 10]]
    assert len(np.unique(under)) == len(under)  # without replacement
    over = resample_indices(targets, groups, 2, 2, "oversample", rng)
    assert cell_counts(targets[over], groups[over], 2, 2).tolist() == [[90, 90], [30, 30]]
    assert set(range(200)) <= set(over.tolist())  # every original is kept


def test_massaging_flips_the_samples_nearest_the_boundary():
    targets = np.array([1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    groups = np.array([0] * 6 + [1] * 6)  # base rates 0.5 and 1/6, overall 1/3
    scores = np.array([0.9, 0.6, 0.8, 0.4, 0.1, 0.2, 0.9, 0.7, 0.3, 0.2, 0.1, 0.65])
    flipped, changes = massage_labels(targets, groups, 2, scores)
    assert changes == {0: -1, 1: 1}
    assert np.flatnonzero(flipped != targets).tolist() == [1, 7]  # lowest-scored positive, highest-scored negative
    assert list(base_rates(flipped, groups, 2)) == pytest.approx([1 / 3, 1 / 3])
    half, _ = massage_labels(targets, groups, 2, scores, rate=0.0)
    assert np.array_equal(half, targets)


# ---------------------------------------------------------------------------- methods end-to-end

def test_erm_retrains_the_deployed_architecture_from_scratch(erm, deployed):
    result, report = erm
    model = result.after_model
    assert isinstance(model, SplitModel) and model is not deployed
    assert model.arch == deployed.arch == "mlp" and model.num_classes == 2
    assert [h["epoch"] for h in result.history] == [1]  # epochs=1 honoured
    assert report.overall["accuracy"] > 0.8
    assert report.disparities["spd"] > 0.1  # Adult's sex gap survives ERM: something to mitigate


@pytest.mark.parametrize("name,settings", [("reweight", {}), ("resample", {"mode": "undersample"})])
def test_rebalancing_lowers_demographic_parity_gap(name, settings, deployed, adult, erm, tmp_path):
    result = _run(name, deployed, tmp_path, {**FAST, **settings})
    report = _audit(result, adult[1])
    assert report.disparities["spd"] < 0.6 * erm[1].disparities["spd"]
    assert report.overall["accuracy"] > 0.75
    if name == "resample":
        cells = {(c["target"], c["group"]): c["n"] for c in result.stats["cells_after"]}
        assert cells[("<=50K", "sex=Female")] == cells[("<=50K", "sex=Male")]
        assert cells[(">50K", "sex=Female")] == cells[(">50K", "sex=Male")]
        assert result.stats["resampled_samples"] < result.stats["train_samples"]


def test_oversampling_and_sampler_weights_run(deployed, adult, tmp_path):
    over = _run("resample", deployed, tmp_path / "o", {**FAST, "mode": "oversample"})
    assert over.stats["resampled_samples"] > over.stats["train_samples"]
    sampled = _run("reweight", deployed, tmp_path / "s", {**FAST, "via": "sampler", "scheme": "kamiran"})
    weights = {(c["target"], c["group"]): c["weight"] for c in sampled.stats["cells"]}
    assert weights[(">50K", "sex=Female")] > 1.5 > weights[(">50K", "sex=Male")]


def test_massaging_equalises_train_base_rates(deployed, adult, erm, tmp_path):
    result = _run("massaging", deployed, tmp_path, FAST)
    stats = result.stats
    assert stats["base_rate_gap_before"] > 0.15
    assert stats["base_rate_gap_after"] < 0.001
    flips = {g["group"]: g["flips"] for g in stats["groups"]}
    assert flips["sex=Female"] > 0 > flips["sex=Male"]  # women promoted, men demoted
    assert abs(flips["sex=Female"] + flips["sex=Male"]) <= 1  # the overall positive rate is kept
    report = _audit(result, adult[1])
    assert report.disparities["spd"] < 0.6 * erm[1].disparities["spd"]


def test_threshold_post_processing_meets_each_constraint(deployed, adult, erm, tmp_path):
    test = adult[1]
    before = run_audit(test, deployed, n_boot=0, device="cpu")[0]
    dp = _run("threshold", deployed, tmp_path)
    assert dp.after_model is None and dp.stats["fit_split"] == "train"  # Adult has no val split
    preds = dp.after_predictions(test)
    assert set(np.unique(preds.probs)) <= {0.0, 1.0} and np.all(preds.probs.sum(1) == 1.0)
    dp_report = audit_predictions(preds, n_boot=0, device="cpu")
    assert dp_report.disparities["spd"] < 0.03 < before.disparities["spd"]
    assert dp_report.disparities["spd"] < erm[1].disparities["spd"]
    assert set(dp.stats["thresholds"]) == {"sex=Female", "sex=Male"}
    eo = _run("threshold", deployed, tmp_path, {"constraints": "equalized_odds"})
    eo_report = _audit(eo, test)
    assert eo_report.disparities["eo_max"] < 0.5 * dp_report.disparities["eo_max"]


def test_confounded_training_data_is_refused_clearly(tmp_path):
    model = build_model("small_cnn", 10, (3, 16, 16))
    for name in ("reweight", "resample"):
        with pytest.raises(FairauditError, match="every target class occurs in a single sensitive group"):
            _run(name, model, tmp_path, FAST, dataset="colored-digits", target="digit", sensitive=("color",),
                 image_size=16)


@pytest.mark.parametrize("name,settings,message", [
    ("resample", {"mode": "both"}, "'mode' of 'resample' must be one of undersample, oversample"),
    ("reweight", {"scheme": "x"}, "'scheme' of 'reweight' must be one of balanced, kamiran"),
    ("erm", {"epochs": "0"}, "'epochs' of 'erm' must be >= 1"),
    ("massaging", {"rate": "1.5"}, r"\[0, 1\]"),
    ("label_flip", {"p": "1.5"}, r"'p' of 'label_flip' must lie in \[0, 1\]"),
    ("threshold", {"constraints": "parity"}, "demographic_parity"),
])
def test_bad_settings_are_rejected(name, settings, message):
    with pytest.raises(FairauditError, match=message):
        make_config(get_method(name), settings)


def test_job_runner_audits_a_baseline_before_and_after(tmp_path, monkeypatch):
    from fairaudit.jobs.execute import execute
    from fairaudit.jobs.spec import JobSpec
    from fairaudit.train.deployed import train_deployed_model

    monkeypatch.setenv("FAIRAUDIT_HOME", str(tmp_path / "home"))
    path = tmp_path / "adult.safetensors"
    # 100 steps: a deployed model that learned the income–sex correlation (SPD 0.17; after 30 steps it was 0.05).
    train_deployed_model("adult", arch="mlp", config=TrainConfig(epochs=1, max_steps=100, batch_size=256),
                         device="cpu", out=path)
    spec = JobSpec("reweight", "adult", model=str(path), device="cpu", settings={"epochs": "1"}, n_boot=0)
    result = execute(spec, "test-run", tmp_path / "run")
    assert result["config"]["epochs"] == 1 and len(result["history"]) == 1
    assert result["summary"]["after"]["spd"] < result["summary"]["before"]["spd"]
    assert (tmp_path / "run" / "checkpoint.pt").exists()
