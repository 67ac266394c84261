"""RbF / FbR (FRoC §7.2): PGD adversarial training (Eq. 3) with the examples regenerated against the model being
trained, combined with reweighing or DIR in the order of the method's name; on an Adult subset (sex)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from fairaudit.audit import audit_predictions, run_audit
from fairaudit.data.base import TensorFairDataset
from fairaudit.errors import FairauditError
from fairaudit.mitigation import MethodContext, get_method, make_config
from fairaudit.mitigation.froc import (EpochAdversarialStep, _training_adversary, numeric_feature_mask,
                                      training_threat_model)
from fairaudit.models import build_model
from fairaudit.robustness import RobustnessAuditor, sample_rows
from fairaudit.train import TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN_ROWS, TEST_ROWS = 2000, 1500
# The re-weighting baseline's trainer (Adam) and budget; λ = 1 is the top of the paper's grid.
BUDGET = {"epochs": "6", "batch_size": "128", "lr": "0.002"}
SEQUENTIAL = {**BUDGET, "optimizer": "adam", "lam": "1", "eval_robustness": "false"}


class _Subset(MethodContext):
    """The job's context with seeded subsamples of the training and test splits."""

    def load_split(self, split, stage="fit"):
        ds = super().load_split(split, stage)
        return sample_rows(ds, TRAIN_ROWS if split == "train" else TEST_ROWS, 0)


def _run(name, settings, workdir, dataset="adult", load=None):
    torch.manual_seed(0)
    deployed = build_model("mlp", 2, (97,)).eval()
    method = get_method(name)
    steps = []
    ctx = _Subset(model=deployed, dataset=dataset, target="income", sensitive=["sex"], data_options={},
                  data_dir=None, device=torch.device("cpu"), workdir=Path(workdir), checkpoint_path=None,
                  progress=lambda event: steps.append(event) if event.get("event") == "step" else None)
    if load is not None:
        ctx.load_split = load
    result = method().run(ctx, make_config(method, settings))
    return result, len(steps)


def _accuracy(result, test):
    if result.after_model is not None:
        return run_audit(test, result.after_model, n_boot=0, device="cpu")[0].overall["accuracy"]
    return audit_predictions(result.after_predictions(test), n_boot=0, device="cpu").overall["accuracy"]


def _s_r(result, test):
    """S_R (accuracy under attack, Eq. 8) under the run's own threat model, the one a job measures it under: the
    FRoC authors' released one (PGD, L∞ ε 0.1 on all columns, one-hot blocks included, predicted labels,
    clipped to the observed range)."""
    model = result.after_model if result.after_model is not None else result.after_predictions.model
    post = None if result.after_model is not None else result.after_predictions
    threat = get_method("rbf")().threat_model(make_config(get_method("rbf"), {}))
    auditor = RobustnessAuditor.from_threat_model(threat, ("pgd",), seed=0, device="cpu")
    return auditor.audit(model, test, postprocess=post).s_r["pgd"]


@pytest.fixture(scope="module")
def adult_test(adult):
    return sample_rows(adult[1], TEST_ROWS, 0)


@pytest.fixture(scope="module")
def reweighed(tmp_path_factory, adult_test):
    """The reweight control with the same trainer and budget: the ``no_adversarial`` control (λ = 0), step for
    step (see the λ = 0 test below)."""
    result, steps = _run("reweight", {**BUDGET, "scheme": "kamiran"}, tmp_path_factory.mktemp("reweight"))
    return result, steps, _s_r(result, adult_test)


# ---------------------------------------------------------------------------- adversarial training

def test_the_step_regenerates_the_examples_every_epoch_against_the_current_model():
    x, y = torch.randn(10, 3), torch.tensor([0, 1] * 5)
    seen = []

    def prepare(model, device):
        seen.append(model.weight.detach().clone())
        return x, x + 0.1, torch.ones(10), torch.ones(10)

    model = torch.nn.Linear(3, 2)
    step = EpochAdversarialStep(10, 1.0, prepare)
    data = torch.utils.data.TensorDataset(x, y, torch.zeros(10, 1, dtype=torch.int64), torch.arange(10))
    history = fit(model, data, TrainConfig(epochs=3, batch_size=4, lr=0.1, seed=0), device="cpu", step_fn=step)
    assert step.regenerations == len(seen) == 3  # once per epoch (3 batches each), not once per run
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])  # from the current parameters
    assert "robustness" in history[0] and "utility" in history[0]


def test_training_examples_stay_within_the_s_r_threat_model(adult):
    train = sample_rows(adult[0], 512, 0)
    method = get_method("rbf")
    config = make_config(method, {})
    threat = training_threat_model(config)
    assert threat is not None and threat == method().threat_model(config)  # the one S_R is measured under
    assert (threat.eps, threat.features, threat.steps, threat.clip) == (0.1, "all", 10, "observed")
    adversary = _training_adversary(train, config)
    torch.manual_seed(0)
    model = build_model("mlp", 2, train.input_shape).eval()
    x, y = train.x, torch.as_tensor(train.targets)
    x_adv = adversary(model, x, y)
    assert adversary.feature_mask is None and (adversary.epsilon, adversary.steps) == (0.1, 10)
    moved = (x_adv - x).abs()
    assert float(moved.max()) <= 0.1 + 1e-6
    numeric = torch.zeros(x.shape[1], dtype=torch.bool)
    numeric[numeric_feature_mask(train) == 1] = True
    assert float(moved[:, ~numeric].max()) > 0.05  # one-hot blocks move too, as in the S_R threat model
    lo, hi = x.amin(0), x.amax(0)  # clipped to the range observed in the split: one-hot columns within [0, 1]
    assert bool((x_adv >= lo - 1e-6).all() and (x_adv <= hi + 1e-6).all())
    # The paper's ξ instead: 0.3 on the six numeric columns only, one-hot blocks untouched.
    paper = make_config(method, {"train_threat": "numeric", "epsilon": "0.3"})
    x_num = _training_adversary(train, paper)(model, x, y)
    assert float((x_num - x)[:, ~numeric].abs().max()) == 0.0 and int(numeric.sum()) == 6
    assert float((x_num - x).abs().max()) <= 0.3 + 1e-6


@pytest.mark.parametrize("name", ["rbf", "fbr"])
def test_adversarial_training_raises_s_r_above_its_no_adversarial_control(name, reweighed, adult_test, tmp_path):
    control, control_steps, control_s_r = reweighed
    result, steps = _run(name, SEQUENTIAL, tmp_path)
    s_r = _s_r(result, adult_test)
    # Measured (seed 0, 2,000 training rows, 6 epochs, λ = 1; S_R under the released threat model): the
    # no_adversarial control (λ = 0, = reweighing with this trainer) 0.567; rbf 0.817, fbr 0.835. Trained on the
    # paper's ξ 0.3 on the numeric columns instead (train_threat=numeric), rbf reaches only 0.627.
    assert s_r > control_s_r + 0.15
    assert result.stats["regenerations"] == 6 and result.stats["fairness"] == "rw"
    assert result.stats["training_attack"]["same_as_s_r"] and result.stats["training_attack"]["epsilon"] == 0.1
    assert steps == control_steps  # the same number of optimiser steps as the control
    assert len(result.history) == 6 and all("robustness" in r for r in result.history)
    weights = {(c["target"], c["group"]): c["weight"] for c in result.stats["cells"]}
    assert weights[(">50K", "Female")] > 1.5 and weights[(">50K", "Male")] < 1.0  # Kamiran reweighing
    assert _accuracy(result, adult_test) > _accuracy(control, adult_test) - 0.03


def test_the_no_adversarial_control_is_the_same_run_with_lambda_zero():
    for name in ("rbf", "fbr"):
        assert get_method(name).controls == {"reweight": "reweight", "no_adversarial": {"lam": 0.0}}


def test_lam_zero_is_the_fairness_pre_processor_alone(reweighed, adult_test, tmp_path):
    control = reweighed[0]
    result, _ = _run("rbf", {**SEQUENTIAL, "lam": "0"}, tmp_path)
    got, want = result.after_model.state_dict(), control.after_model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)  # reweighing, step for step
    assert result.stats["regenerations"] == 0


@pytest.mark.parametrize("name", ["rbf", "fbr"])
def test_dir_as_the_fairness_pre_processor(name, adult_test, tmp_path):
    result, _ = _run(name, {**SEQUENTIAL, "epochs": "2", "fairness": "dir", "repair_level": "1"}, tmp_path)
    assert result.after_model is None  # the test rows are repaired before the model sees them
    preds = result.after_predictions(adult_test)
    assert preds.meta["preprocessing"] == "disparate-impact repair (level 1)"
    assert result.stats["fairness"] == "dir" and "cells" not in result.stats
    features = {f["feature"]: f for f in result.stats["repaired_features"]}
    # fbr repairs the training rows; rbf the training rows together with their adversarial examples.
    assert result.stats["repaired_rows"] == (TRAIN_ROWS if name == "fbr" else 2 * TRAIN_ROWS)
    assert features["hours_per_week"]["ks_before"] > 0.15  # measured 0.23 (fbr), 0.18 (rbf)
    assert all(f["ks_after"] <= 0.005 for f in features.values())
    assert 0.0 < _s_r(result, adult_test) < 1.0
    assert audit_predictions(preds, n_boot=0, device="cpu").to_dict()["overall"]["accuracy"] > 0.78


def test_dir_on_images_and_bad_settings_are_refused(tmp_path):
    images = TensorFairDataset("tiny-images", "train", torch.rand(8, 3, 8, 8),
                               pd.DataFrame({"income": [0, 1] * 4, "sex": [0, 0, 1, 1] * 2}),
                               {"income": ["no", "yes"], "sex": ["a", "b"]}, "income", ["sex"], kind="image")
    with pytest.raises(FairauditError, match="RbF with fairness=dir repairs numeric tabular features, but "
                                             "'tiny-images' is image data"):
        _run("rbf", {**SEQUENTIAL, "fairness": "dir"}, tmp_path, load=lambda split, stage="fit": images)
    for name in ("rbf", "fbr"):
        with pytest.raises(FairauditError, match=f"'fairness' of '{name}' must be one of rw, dir"):
            make_config(get_method(name), {"fairness": "lfr"})
        for level in ("-0.5", "1.5"):
            with pytest.raises(FairauditError, match=rf"'repair_level' of '{name}' must lie in \[0, 1\]"):
                make_config(get_method(name), {"repair_level": level})




def test_the_mitigate_page_shows_only_the_benchmark_of_today_s_rbf_and_fbr():
    from fairaudit.benchmark.published import published_effects

    for name in ("rbf", "fbr"):
        effects = published_effects(name)
        # adult_froc's rows predate training within the S_R threat model; only adult_rbf_fbr's are shown.
        assert effects and {e.command for e in effects} == {
            "python -m fairaudit benchmark --dataset adult --model demo --sensitive sex --methods rbf,fbr --controls "
            "--seeds 3 --set rbf.epochs=50 --set fbr.epochs=50 --json assets/benchmarks/adult_rbf_fbr.json "
            "--markdown assets/benchmarks/adult_rbf_fbr.md"}
        s_r = {e.against: e for e in effects if e.metric == "s_r"}
        assert s_r[f"{name}[no_adversarial]"].holds and s_r["reweight"].holds
        assert s_r[f"{name}[no_adversarial]"].mean_diff > 0.25  # measured +0.309
        assert not any(e.holds for e in effects if e.metric == "spd" and e.against != "baseline")
