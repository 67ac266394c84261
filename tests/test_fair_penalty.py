"""fair_penalty (thesis Eqs. 6.2, 6.4–6.6, 6.8–6.9) and minmax (Eq. 6.11): the penalties as printed, their
effect against the no-penalty control and ERM, and where the penalty is measured."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from fairaudit.audit import run_audit
from fairaudit.data.base import TensorFairDataset
from fairaudit.errors import FairauditError
from fairaudit.mitigation import MethodContext, get_method, make_config
from fairaudit.mitigation.baselines.fair_penalty import HeldOutBatches, fairness_penalty
from fairaudit.models import build_model
from tests.tabular_fixtures import two_rules

pytestmark = pytest.mark.usefixtures("one_thread")

BUDGET = {"epochs": "3", "batch_size": "128", "lr": "0.003"}


def _subset(ds, n: int, seed: int) -> TensorFairDataset:
    index = np.random.default_rng(seed).choice(len(ds), n, replace=False)
    return TensorFairDataset(ds.name, ds.split, ds.x[index], ds.attributes.iloc[index], ds.value_names, ds.target,
                             ds.sensitive)


class _Context(MethodContext):
    train: TensorFairDataset | None = None

    def load_split(self, split, stage="fit"):
        if stage == "fit" and split == "test":
            raise FairauditError("a method cannot fit on the test split")
        self.splits_used.setdefault(stage, split)
        return self.train


def _run(name, train, tmp_path, settings, target="income", sensitive="sex", checkpoint=False):
    model = build_model("mlp", train.num_classes, train.input_shape)
    ctx = _Context(model=model, dataset="adult", target=target, sensitive=[sensitive], data_options={},
                   data_dir=None, device=torch.device("cpu"), workdir=tmp_path, seed=0,
                   checkpoint_path=tmp_path / "checkpoint.pt" if checkpoint else None)
    ctx.train = train
    method = get_method(name)
    return method().run(ctx, make_config(method, settings))


def _audit(result, test):
    return run_audit(test, result.after_model, n_boot=0, device="cpu")[0]


@pytest.fixture(scope="module")
def small_adult(adult):
    """4,000 training and 4,000 test rows of Adult (sensitive: sex)."""
    return _subset(adult[0], 4000, 0), _subset(adult[1], 4000, 1)


# ---------------------------------------------------------------------------- the penalties as printed

def test_each_penalty_is_the_printed_formula():
    # Two samples per group; logits chosen so that p (favourable class) = 0.8, 0.4 | 0.3, 0.6.
    p = torch.tensor([0.8, 0.4, 0.3, 0.6])
    logits = torch.stack([torch.zeros(4), torch.log(p / (1 - p))], 1)
    y = torch.tensor([1, 0, 0, 0])
    a = torch.tensor([1, 1, 0, 0])
    ce = -torch.log(torch.where(y == 1, p, 1 - p))
    eq = fairness_penalty("eq_loss", logits, y, a, 2)
    assert float(eq) == pytest.approx(abs(float(ce[:2].mean() - ce[2:].mean())), abs=1e-6)  # Eq. 6.2
    # Eqs. 6.5–6.6: fpr = |(0.4)/2 − (0.3 + 0.6)/2| = 0.25, fnr = |(0.2)/2 − 0| = 0.1
    assert float(fairness_penalty("eo", logits, y, a, 2)) == pytest.approx(0.35, abs=1e-6)
    # Conditional rates: FPR |0.4 − 0.45| = 0.05; FNR undefined (no positive in group 0) adds nothing.
    assert float(fairness_penalty("eo", logits, y, a, 2, eo_rates="conditional")) == pytest.approx(0.05, abs=1e-6)
    # Eq. 6.9: means 0.6 and 0.45, −min(r, 1/r) = −0.75
    assert float(fairness_penalty("di", logits, y, a, 2)) == pytest.approx(-0.75, abs=1e-6)
    # A batch of one group adds no penalty (and keeps the graph).
    one = fairness_penalty("di", logits.requires_grad_(), y, torch.zeros(4, dtype=torch.int64), 2)
    assert float(one.detach()) == 0.0 and one.requires_grad


def test_held_out_batches_follow_the_step_and_resume_there():
    data = torch.utils.data.TensorDataset(torch.arange(10))
    first = HeldOutBatches(data, 4, seed=0)
    run = [first.next()[0].tolist() for _ in range(6)]
    assert sorted(sum(run[:3], [])) == list(range(10))  # one pass covers every sample once
    assert run[:3] != run[3:]  # each pass is reshuffled
    assert [HeldOutBatches(data, 4, seed=0, start_step=4).next()[0].tolist()] == [run[4]]


# ---------------------------------------------------------------------------- the effect

def test_default_loss_equality_penalty_lowers_aed_against_the_no_penalty_control(small_adult, tmp_path):
    train, test = small_adult
    control = _audit(_run("fair_penalty", train, tmp_path / "c", {**BUDGET, "alpha": "0"}), test)
    result = _run("fair_penalty", train, tmp_path / "m", BUDGET)  # kind=eq_loss (Eq. 6.2), α = 1: the defaults
    report = _audit(result, test)
    assert result.stats["kind"] == "eq_loss"
    # Measured: AED 0.124 without the penalty, 0.046 with it; accuracy 0.845 → 0.814.
    assert report.disparities["aed"] < 0.6 * control.disparities["aed"]
    assert report.overall["accuracy"] > control.overall["accuracy"] - 0.05


def test_di_penalty_lowers_spd_against_the_no_penalty_control(small_adult, tmp_path):
    train, test = small_adult
    control = _audit(_run("fair_penalty", train, tmp_path / "c", {**BUDGET, "kind": "di", "alpha": "0"}), test)
    result = _run("fair_penalty", train, tmp_path / "m", {**BUDGET, "kind": "di", "alpha": "1"})
    report = _audit(result, test)
    assert control.disparities["spd"] > 0.1  # without the penalty the model keeps Adult's gap
    assert report.disparities["spd"] < 0.5 * control.disparities["spd"]
    assert report.overall["accuracy"] > control.overall["accuracy"] - 0.05  # not a constant predictor
    assert result.stats["final_penalty"]["train"] < -0.9  # mean scores nearly equal on train (−1 is parity)


def test_conditional_eo_penalty_lowers_deo_against_the_no_penalty_control(small_adult, tmp_path):
    train, test = small_adult
    settings = {**BUDGET, "kind": "eo", "eo_rates": "conditional"}
    control = _audit(_run("fair_penalty", train, tmp_path / "c", {**settings, "alpha": "0"}), test)
    report = _audit(_run("fair_penalty", train, tmp_path / "m", {**settings, "alpha": "1"}), test)
    assert report.disparities["deo"] < 0.6 * control.disparities["deo"]
    assert report.overall["accuracy"] > control.overall["accuracy"] - 0.05


def test_a_held_out_penalty_is_measured_on_data_the_model_does_not_train_on(small_adult, tmp_path):
    train, _ = small_adult
    result = _run("fair_penalty", train, tmp_path, {**BUDGET, "epochs": "1", "kind": "eq_loss",
                                                    "penalty_split": "val", "holdout_fraction": "0.25"})
    assert result.stats["train_samples"] == 3000 and result.stats["held_out_samples"] == 1000
    assert result.stats["penalty_data"] == "train (a held-out 0.25 of it)"
    assert set(result.stats["final_penalty"]) == {"train", "held_out"}
    assert {"loss_ce", "penalty"} <= set(result.history[0])


def test_minmax_raises_the_worst_group_accuracy_of_erm(tmp_path):
    train, test = two_rules(2000, 0), two_rules(4000, 1)
    budget = {**BUDGET, "lr": "0.005"}
    erm = _audit(_run("erm", train, tmp_path / "erm", budget, "y", "group"), test)
    report = _audit(_run("minmax", train, tmp_path / "mm", budget, "y", "group"), test)
    assert erm.disparities["worst_group_accuracy"] < 0.8  # group B, whose rule ERM serves worse
    assert report.disparities["worst_group_accuracy"] > erm.disparities["worst_group_accuracy"] + 0.02
    assert report.overall["accuracy"] > erm.overall["accuracy"] - 0.03


def test_exp_grad_weights_are_checkpointed(tmp_path):
    train = two_rules(600, 0)
    result = _run("minmax", train, tmp_path, {**BUDGET, "epochs": "1", "update": "exp_grad", "step_size": "0.1"},
                  "y", "group", checkpoint=True)
    weights = result.stats["group_weights"]
    assert set(weights) == {"group=A", "group=B"} and sum(weights.values()) == pytest.approx(1.0)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["extra"]["group_weights"]["q"]
    assert saved.tolist() == pytest.approx([weights["group=A"], weights["group=B"]])


# ---------------------------------------------------------------------------- controls and bad input

def test_controls_and_target_metrics():
    assert get_method("fair_penalty").controls == {"erm": "erm", "no_penalty": {"alpha": 0.0}}
    assert get_method("minmax").controls == {"erm": "erm"}
    assert get_method("minmax").target_metrics == ("worst_group_accuracy",)
    assert {"aed", "deo", "spd"} <= set(get_method("fair_penalty").target_metrics)


@pytest.mark.parametrize("name,settings,message", [
    ("fair_penalty", {"kind": "dp"}, "'kind' of 'fair_penalty' must be one of eq_loss, eo, di"),
    ("fair_penalty", {"alpha": "-1"}, "'alpha' of 'fair_penalty' must be a finite number >= 0"),
    ("fair_penalty", {"penalty_split": "test"}, "cannot fit on the test split"),
    ("fair_penalty", {"eo_rates": "tpr"}, "'eo_rates' of 'fair_penalty' must be one of joint, conditional"),
    ("fair_penalty", {"holdout_fraction": "1"}, r"'holdout_fraction' of 'fair_penalty' must lie in \(0, 1\)"),
    ("minmax", {"update": "softmax"}, "'update' of 'minmax' must be one of max, exp_grad"),
    ("minmax", {"step_size": "-0.1"}, "'step_size' of 'minmax' must be a finite number >= 0"),
])
def test_bad_settings_are_refused(name, settings, message):
    with pytest.raises(FairauditError, match=message):
        make_config(get_method(name), settings)


def test_score_penalties_refuse_a_multiclass_target(tmp_path):
    rng = np.random.default_rng(0)
    three = TensorFairDataset("three", "train", torch.tensor(rng.normal(size=(30, 3)), dtype=torch.float32),
                              pd.DataFrame({"y": np.arange(30) % 3, "group": np.arange(30) % 2}),
                              {"y": ["a", "b", "c"], "group": ["A", "B"]}, "y", ["group"])
    with pytest.raises(FairauditError, match="kind='di' needs a binary target; 'y' has 3 classes"):
        _run("fair_penalty", three, tmp_path, {"kind": "di"}, "y", "group")
