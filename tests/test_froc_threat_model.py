"""FRoC's S_R threat model: one named threat model per result, the released code's by default, one S_R."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fairaudit.errors import FairauditError
from fairaudit.jobs import JobSpec, run_job
from fairaudit.mitigation import get_method, make_config
from fairaudit.mitigation.froc import released_threat_model
from fairaudit.models import build_model
from fairaudit.robustness import RobustnessAuditor, ThreatModel, describe_threat_model, sample_rows

pytestmark = pytest.mark.usefixtures("one_thread")

FIELDS = {"name", "eps", "norm", "features", "labels", "steps", "step_size", "random_start", "samples", "clip"}


@pytest.fixture(scope="module")
def model(adult):
    torch.manual_seed(0)
    return build_model("mlp", 2, adult[0].input_shape).eval()


def _one_hot_columns(ds) -> list[int]:
    return sorted(j for column in ds.categorical_features for j in ds.feature_groups[column])


def test_the_froc_default_threat_model_moves_one_hot_columns_within_their_range(adult, model):
    test = sample_rows(adult[1], 64, 0)
    one_hot = _one_hot_columns(test)
    default = released_threat_model()
    assert (default.eps, default.features, default.labels, default.random_start) == (0.1, "all", "predicted", False)
    x, x_adv = RobustnessAuditor.from_threat_model(default, "pgd", device="cpu").perturb(model, test)
    moved = (x_adv - x)[:, one_hot].abs()
    # Measured: the largest change of a one-hot column is 0.1 (= ε); 27 % of the one-hot cells move (the others
    # are pushed out of [0, 1] and clipped back).
    assert float(moved.max()) == pytest.approx(0.1, abs=1e-5)
    assert float((moved > 0).float().mean()) > 0.2
    assert bool((x_adv[:, one_hot] >= 0).all() and (x_adv[:, one_hot] <= 1).all())  # clipped to [0, 1]
    # Control: the numeric-only threat model (the job default for other methods) leaves them untouched.
    numeric = dataclasses.replace(default, features="numeric")
    x, x_adv = RobustnessAuditor.from_threat_model(numeric, "pgd", device="cpu").perturb(model, test)
    assert float((x_adv - x)[:, one_hot].abs().max()) == 0.0


def test_predicted_labels_score_how_many_predictions_the_attack_keeps(adult, model):
    test = sample_rows(adult[1], 200, 0)
    zero = ThreatModel(eps=0.0, features="all", random_start=False)
    true = RobustnessAuditor.from_threat_model(zero, "pgd", device="cpu").audit(model, test)
    predicted = RobustnessAuditor.from_threat_model(dataclasses.replace(zero, labels="predicted"), "pgd",
                                                    device="cpu").audit(model, test)
    # With ε = 0 the attack changes nothing: against the true labels S_R is the clean accuracy (measured 0.205 for
    # this untrained model), against the predicted labels every prediction is kept.
    assert true.s_r["pgd"] == pytest.approx(true.clean.overall["accuracy"]) and true.s_r["pgd"] < 0.5
    assert predicted.s_r["pgd"] == 1.0
    assert predicted.clean.overall["accuracy"] == true.clean.overall["accuracy"]  # clean audit: true labels
    assert predicted.threat["labels"] == "predicted" and predicted.threat["samples"] == 200


def _keys(value, prefix=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield f"{prefix}{k}"
            yield from _keys(v, f"{prefix}{k}.")


def test_a_froc_result_has_one_s_r_under_a_named_threat_model(home, tiny_model):
    result = run_job(JobSpec("froc_in", "adult", model=tiny_model, device="cpu", n_boot=0, split_samples=0,
                             robustness_samples=64,
                             settings={"epochs": 1, "optimizer": "adam", "lr": "0.005", "batch_size": "1024"}))
    threat = result["robustness"]["threat_model"]
    assert FIELDS <= set(threat)
    assert {k: threat[k] for k in FIELDS} == {
        "name": "froc_released_code", "eps": 0.1, "norm": "linf", "features": "all", "labels": "predicted",
        "steps": 10, "step_size": pytest.approx(0.01), "random_start": False, "samples": 64, "clip": "observed"}
    for stage in ("before", "after"):
        block = result["robustness"][stage]
        assert block["threat_model"] == threat
        assert result["summary"][stage]["s_r"] == block["s_r"]["pgd"]
        assert result["summary"][stage]["s_r_threat_model"] == "froc_released_code"
    # Exactly one S_R: nothing in the method's stats is an S_R or an accuracy under attack.
    assert not [k for k in _keys(result["stats"]) if "s_r" in k or "robust" in k]
    assert "froc_released_code: ε 0.1 LINF on all columns" in describe_threat_model(threat)


def test_old_results_without_a_threat_model_still_read():
    old = {"kind": "tabular", "perturbed": ["age"], "fixed": "one-hot categorical blocks", "clip": "observed"}
    assert describe_threat_model(old) == describe_threat_model(None) == "threat model not recorded (an older result)"
    threat = released_threat_model().resolved("tabular")
    assert ThreatModel.from_dict({**threat.to_dict(), "perturbed": ["age"]}) == threat


def test_the_s_r_threat_model_follows_the_sr_settings():
    method = get_method("froc_in")
    default = method().threat_model(make_config(method, {}))
    assert default == released_threat_model()
    unclipped = method().threat_model(make_config(method, {"sr_clip": "none", "sr_labels": "true", "sr_eps": "0.2",
                                                           "sr_features": "numeric"}))
    assert (unclipped.clip, unclipped.labels, unclipped.eps, unclipped.features) == (None, "true", 0.2, "numeric")
    assert method().threat_model(make_config(method, {"eval_robustness": "false"})).samples == 0
    for name in ("rbf", "fbr", "froc_pre"):
        assert get_method(name)().threat_model(make_config(get_method(name), {})).name == "froc_released_code"
    with pytest.raises(FairauditError, match="sr_clip"):
        make_config(method, {"sr_clip": "range"})
