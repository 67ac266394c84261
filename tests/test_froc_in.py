"""FRoC-IN and the sequential baselines RbF / FbR on Adult (protected attribute sex, excluded from the input)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fairaudit.audit import run_audit
from fairaudit.data import load_dataset
from fairaudit.errors import FairauditError
from fairaudit.jobs import JobSpec, run_job
from fairaudit.mitigation import MethodContext, config_help, get_method, make_config
from fairaudit.mitigation.baselines.common import in_memory
from fairaudit.mitigation.froc import (FrocLoss, make_adversary, numeric_feature_mask, parity_constants,
                                       positive_posterior, relaxed_statistical_parity)
from fairaudit.models import build_model
from fairaudit.robustness import RobustnessAuditor
from fairaudit.train import TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_thread")

# One epoch of Adam: enough for an Adult MLP to reach ~85 % accuracy in about two seconds.
FAST = {"epochs": "1", "optimizer": "adam", "lr": "0.005", "batch_size": "256", "eval_robustness": "false"}


@pytest.fixture(scope="module")
def deployed(adult):
    torch.manual_seed(0)
    return build_model("mlp", 2, adult[0].input_shape).eval()


def _run(name, model, workdir, settings, sensitive=("sex",)):
    method = get_method(name)
    ctx = MethodContext(model=model, dataset="adult", target="income", sensitive=list(sensitive), data_options={},
                        data_dir=None, device=torch.device("cpu"), workdir=Path(workdir), checkpoint_path=None)
    return method().run(ctx, make_config(method, settings))


def _robustness(model, test, attack, steps=10):
    """The robustness engine under the paper's threat model: ξ = 0.3 on the numeric features, no clipping,
    PGD steps of ξ/steps from the clean input."""
    return RobustnessAuditor(attack, eps=0.3, steps=steps, step_size=0.3 / steps, random_start=False, clip=None,
                             device="cpu").audit(model, test)


def _scores(model, test):
    """(accuracy, S_B from the metrics engine, S_R under the paper's PGD attack)."""
    report = run_audit(test, model, n_boot=0, device="cpu")[0].to_dict()
    s_r = _robustness(model, test, "pgd").s_r["pgd"]
    return report["overall"]["accuracy"], report["disparities"]["bias_score"], s_r


@pytest.fixture(scope="module")
def erm_and_froc(deployed, adult, tmp_path_factory):
    erm = _run("froc_in", deployed, tmp_path_factory.mktemp("erm"), {**FAST, "lambda_f": "0", "lambda_r": "0"})
    froc = _run("froc_in", deployed, tmp_path_factory.mktemp("froc"), {**FAST, "lambda_f": "1", "lambda_r": "1",
                                                                              "track_angle": "true"})
    return erm, froc


# ---------------------------------------------------------------------------- the regularisers

def test_relaxed_statistical_parity_is_the_gap_of_mean_posteriors():
    a = np.array([0, 0, 0, 1, 1])
    c, c0, c1 = parity_constants(a)
    assert (c0, c1) == (pytest.approx(1 / 3), pytest.approx(1 / 2))
    assert torch.allclose(c, torch.tensor([1 / 3, 1 / 3, 1 / 3, -1 / 2, -1 / 2]))
    p = torch.tensor([0.9, 0.6, 0.3, 0.2, 0.4], requires_grad=True)
    f = relaxed_statistical_parity(p, c)  # Eq. 13: |mean(0.9, 0.6, 0.3) − mean(0.2, 0.4)| = 0.3
    assert float(f.detach()) == pytest.approx(0.3)
    f.backward()  # d|Σc·p|/dp = sign(Σc·p)·c
    assert torch.allclose(p.grad, c)
    # On a batch with the dataset-level constants, n/|B| rescales the partial sum.
    assert float(relaxed_statistical_parity(p[:2], c[:2], 5 / 2)) == pytest.approx(2.5 * (0.9 + 0.6) / 3)
    assert torch.allclose(positive_posterior(torch.tensor([[0.0, 0.0], [0.0, 20.0]])), torch.tensor([0.5, 1.0]))
    with pytest.raises(FairauditError, match="binary"):
        parity_constants(np.array([0, 1, 2]))
    with pytest.raises(FairauditError, match="both protected groups"):
        parity_constants(np.array([1, 1, 1]))


def test_the_attack_moves_only_numeric_features_within_xi(adult, deployed):
    train = adult[0]
    mask = numeric_feature_mask(train)
    numeric = [j for col in train.numeric_features for j in train.feature_groups[col]]
    assert int(mask.sum()) == len(train.numeric_features) == 6 and mask[numeric].all()
    x, y = train.x[:256], torch.tensor(train.targets[:256])
    x_adv = make_adversary(train, "pgd", 0.3, 10)(deployed, x, y)
    delta = x_adv - x
    assert float(delta[:, mask == 0].abs().max()) == 0.0  # one-hot blocks untouched
    assert float(delta.abs().max()) == pytest.approx(0.3, abs=1e-5)  # standardised features, ξ = 0.3, no clip
    fgsm = make_adversary(train, "fgsm", 0.3)(deployed, x, y)
    assert torch.allclose((fgsm - x)[:, mask == 1].abs(), torch.full((256, 6), 0.3), atol=1e-5)


# ---------------------------------------------------------------------------- FRoC-IN on Adult

@pytest.fixture(scope="module")
def froc_controls(deployed, adult, tmp_path_factory):
    """FRoC-IN's two mechanism-removed controls, with the settings of ``erm_and_froc``'s FRoC-IN run otherwise."""
    settings = {**FAST, "lambda_f": "1", "lambda_r": "1"}
    return {name: _scores(_run("froc_in", deployed, tmp_path_factory.mktemp(name), {**settings, **removed}).after_model,
                          adult[1])
            for name, removed in (("no_fairness", {"lambda_f": "0"}), ("no_robustness", {"lambda_r": "0"}))}


def test_zero_lambdas_reproduce_the_shared_trainers_erm(erm_and_froc, deployed, adult):
    erm, _ = erm_and_froc
    torch.manual_seed(0)
    reference = build_model("mlp", 2, adult[0].input_shape)
    fit(reference, in_memory(adult[0]), TrainConfig(epochs=1, batch_size=256, lr=0.005, optimizer="adam", seed=0),
        device="cpu")
    got, want = erm.after_model.state_dict(), reference.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    x = adult[1].x[:2000]
    with torch.no_grad():
        assert torch.equal(erm.after_model(x), reference.eval()(x))
    assert erm.stats["lambda_f"] == 0 and "robustness" not in erm.history[0]


def test_froc_in_improves_bias_and_robustness_over_erm_together(erm_and_froc, adult):
    erm, froc = erm_and_froc
    erm_acc, erm_sb, erm_sr = _scores(erm.after_model, adult[1])
    acc, sb, sr = _scores(froc.after_model, adult[1])
    # Measured: ERM acc 0.847, S_B 0.115, S_R 0.692; FRoC-IN (λ_F = λ_R = 1) acc 0.815, S_B 0.033, S_R 0.799.
    assert erm_sb > 0.08 and erm_acc > 0.82
    assert sb < 0.5 * erm_sb
    assert sr > erm_sr + 0.05
    assert acc > erm_acc - 0.06  # the paper reports at most a few points of accuracy lost on Adult
    # The logged regularisers: F shrinks under λ_F, R is the loss on the PGD examples.
    assert froc.history[0]["fairness"] < erm.history[0]["fairness"]
    assert froc.history[0]["robustness"] > froc.history[0]["utility"]
    assert froc.stats["attack"] == "pgd" and froc.stats["perturbed_features"] == 6
    # Measured 108°: the two regularisers compete early in training, as in the paper's Fig. 4 (> 90°).
    assert 90.0 < froc.history[0]["angle_f_r"] < 150.0 and "angle_f_r" not in erm.history[0]


def test_each_regulariser_beats_the_run_without_it(erm_and_froc, froc_controls, adult):
    """Against its mechanism-removed controls, same data, seed and budget: F lowers S_B against λ_F = 0, R raises
    S_R against λ_R = 0 (the fairness term alone already moves S_R from ERM's 0.692 to 0.739)."""
    _, froc = erm_and_froc
    _, sb, sr = _scores(froc.after_model, adult[1])
    _, no_fairness_sb, _ = froc_controls["no_fairness"]
    _, _, no_robustness_sr = froc_controls["no_robustness"]
    # Measured: FRoC-IN S_B 0.033, S_R 0.799; λ_F = 0: S_B 0.127; λ_R = 0: S_R 0.739.
    assert sb < 0.5 * no_fairness_sb
    assert sr > no_robustness_sr + 0.03


COMPAS = Path("/work/shared/data/compas")


@pytest.mark.skipif(not (COMPAS / "compas-scores-two-years.csv.gz").exists(), reason="no local COMPAS file")
def test_froc_in_on_compas_gender(tmp_path):
    test = load_dataset("compas", "test", None, ["sex"], str(COMPAS))
    torch.manual_seed(0)
    deployed = build_model("mlp", 2, test.input_shape)
    method = get_method("froc_in")
    scores = []
    for lambdas in ({"lambda_f": "0", "lambda_r": "0"}, {"lambda_f": "1", "lambda_r": "1"}):
        ctx = MethodContext(model=deployed, dataset="compas", target="two_year_recid", sensitive=["sex"],
                            data_options={}, data_dir=str(COMPAS), device=torch.device("cpu"), workdir=tmp_path)
        result = method().run(ctx, make_config(method, {**FAST, "epochs": "5", **lambdas}))
        scores.append(_scores(result.after_model, test))
    (erm_acc, erm_sb, erm_sr), (acc, sb, sr) = scores
    # Measured: ERM acc 0.667, S_B 0.150, S_R 0.389; FRoC-IN acc 0.643, S_B 0.111, S_R 0.593.
    assert erm_sb > 0.1 and sb < 0.85 * erm_sb
    assert sr > erm_sr + 0.1 and acc > erm_acc - 0.05


def test_froc_in_with_the_papers_tabular_cnn_reports_s_r(deployed, adult, tmp_path):
    result = _run("froc_in", deployed, tmp_path, {**FAST, "arch": "tabular_cnn", "eval_robustness": "true",
                                                  "attack": "fgsm", "lambda_r": "0.5", "batch_size": "1024",
                                                  "lr": "0.01"})
    model = result.after_model
    assert model.arch == "tabular_cnn"
    assert [m.out_channels for m in model.g if isinstance(m, torch.nn.Conv1d)] == [2, 4]
    report = _robustness(model, adult[1], "fgsm")
    clean, robust = report.clean.overall["accuracy"], report.s_r["fgsm"]
    assert clean > 0.78
    assert robust < clean
    # S_R is the job's, under the method's threat model; the method's stats carry none of their own.
    assert not [k for k in result.stats if "robust_accuracy" in k]
    assert get_method("froc_in")().threat_model(make_config(get_method("froc_in"), {})).name == "froc_released_code"


def test_bad_settings_and_data_are_refused_clearly(deployed, tmp_path):
    method = get_method("froc_in")
    with pytest.raises(FairauditError, match="lambda_f"):
        make_config(method, {"lambda_f": "-1"})
    with pytest.raises(FairauditError, match="attack"):
        make_config(method, {"attack": "cw"})
    with pytest.raises(FairauditError, match="arch"):
        make_config(method, {"arch": "no_such_net"})
    with pytest.raises(FairauditError, match="one binary sensitive attribute"):
        _run("froc_in", deployed, tmp_path, FAST, sensitive=("race",))
    with pytest.raises(FairauditError, match="image"):
        _run("froc_in", deployed, tmp_path, {**FAST, "arch": "small_cnn"})
    with pytest.raises(FairauditError, match="adversary"):
        FrocLoss(lambda_r=1.0)
    help_rows = {row["name"]: row for row in config_help(get_method("froc_in"))}
    assert help_rows["epochs"]["default"] == 500 and help_rows["epsilon"]["default"] == 0.3
    assert help_rows["batch_size"]["default"] == 256 and help_rows["lr"]["default"] == 0.01
    assert all(row["help"] for row in help_rows.values())


# ---------------------------------------------------------------------------- jobs and CLI

def test_rbf_and_fbr_run_as_jobs_and_write_the_mitigation_json(home, tiny_model):
    for name in ("rbf", "fbr"):
        result = run_job(JobSpec(name, "adult", model=tiny_model, device="cpu", n_boot=0,
                                 settings={**FAST, "lam": "1", "eval_robustness": "true",
                                           "batch_size": "1024", "lr": "0.01", "steps": "5"}))
        on_disk = json.loads(Path(result["artifacts"]["result"]).read_text())
        assert on_disk["method"] == name and on_disk["config"]["lam"] == 1.0
        assert Path(on_disk["artifacts"]["model"]).exists()
        assert {"before", "after", "summary", "stats", "history"} <= set(on_disk)
        assert on_disk["after"]["overall"]["accuracy"] > 0.78
        assert 0.0 < on_disk["summary"]["after"]["s_r"] < 1.0
        assert on_disk["robustness"]["threat_model"]["name"] == "froc_released_code"
        # Reweighing (Kamiran) weights P(y)P(a)/P(y,a): positive women are up-weighted, positive men down.
        weights = {(c["target"], c["group"]): c["weight"] for c in on_disk["stats"]["cells"]}
        assert weights[(">50K", "Female")] > 1.5 and weights[(">50K", "Male")] < 1.0
        # One training of `epochs` epochs (the reweight control's budget), examples regenerated every epoch.
        assert len(on_disk["history"]) == 1 and "robustness" in on_disk["history"][0]
        attack = on_disk["stats"]["training_attack"]
        assert on_disk["stats"]["regenerations"] == 1 and attack["clip"] == "observed range (training split)"
        # Trained within the threat model S_R is measured under: ε 0.1 on all columns, one-hot blocks included.
        assert attack["same_as_s_r"] and (attack["epsilon"], attack["features"]) == (0.1, "all")


def test_cli_mitigate_froc_in_with_one_epoch(home, tmp_path, capsys):
    from fairaudit.cli import main

    assert main(["mitigate", "froc_in", "--list-settings"]) == 0
    listing = capsys.readouterr().out
    assert "lambda_f" in listing and "tabular_cnn" in listing and "500" in listing
    out = tmp_path / "froc.json"
    assert main(["mitigate", "froc_in", "--dataset", "adult", "--model", "demo", "--set", "epochs=1",
                 "--set", "batch_size=1024", "--device", "cpu", "--bootstrap", "0", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["method"] == "froc_in" and result["config"]["epochs"] == 1
    assert result["config"]["lambda_r"] == 0.1 and result["stats"]["attack"] == "pgd"
    assert result["after"]["disparities"]["bias_score"] == pytest.approx(result["after"]["disparities"]["spd"])
    assert result["summary"]["after"]["s_r"] > 0.5
    assert result["robustness"]["threat_model"]["features"] == "all"
