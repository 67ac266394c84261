"""Per-group robustness audit: attacks per group, tabular threat model, CLI, job JSON blocks and the page."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fairaudit.audit import audit_predictions, predict
from fairaudit.cli import main
from fairaudit.data import load_dataset
from fairaudit.data.base import TensorFairDataset
from fairaudit.errors import FairauditError
from fairaudit.robustness import (RobustnessAuditor, epsilon_sweep, robustness_audit, sample_rows,
                                  threat_model)

SAMPLES = 200


@pytest.fixture(scope="module")
def adult():
    return load_dataset("adult", "test", sensitive="sex,race_binary")


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """An Adult MLP trained for 40 large steps: about 85 % accurate and not a constant predictor."""
    from fairaudit.train import TrainConfig
    from fairaudit.train.deployed import train_deployed_model

    path = tmp_path_factory.mktemp("robustness") / "adult_mlp.safetensors"
    model, _, _ = train_deployed_model("adult", arch="mlp", config=TrainConfig(epochs=1, max_steps=40, batch_size=512,
                                                                                 lr=1e-2), device="cpu", out=path)
    return model.eval()


def _accuracies(report) -> dict[str, float]:
    return {g["group"]: g["accuracy"] for g in report.groups}


def _predicted(probs: torch.Tensor) -> torch.Tensor:
    return (probs[:, 1] >= 0.5).long()


def test_pgd_below_fgsm_below_clean_in_every_group(adult, mlp):
    report = robustness_audit(mlp, adult, eps=0.3, steps=5, restarts=2, max_samples=SAMPLES, device="cpu")
    clean, fgsm, pgd = (_accuracies(r) for r in (report.clean, report.adversarial["fgsm"], report.adversarial["pgd"]))
    assert set(clean) == set(fgsm) == set(pgd) and len(clean) == 4
    for group in clean:
        assert pgd[group] <= fgsm[group] <= clean[group], group
    # The attack bites: a real drop, and S_R (Eq. 8) is the overall adversarial accuracy.
    assert report.s_r["pgd"] < report.clean.overall["accuracy"] - 0.05
    assert report.s_r == {name: r.overall["accuracy"] for name, r in report.adversarial.items()}
    assert report.gap("pgd") == pytest.approx(max(pgd.values()) - min(pgd.values()))

    # Clean numbers are the metrics engine's on the same sampled rows.
    rows = sample_rows(adult, SAMPLES, 0)
    direct = audit_predictions(predict(mlp, rows, device="cpu"), n_boot=0)
    assert _accuracies(report.clean) == pytest.approx(_accuracies(direct))

    # FGSM is deterministic: its pooled accuracy is exactly "right on x and right on the FGSM point".
    x, x_adv = RobustnessAuditor("fgsm", eps=0.3, max_samples=SAMPLES, device="cpu").perturb(mlp, rows, "fgsm")
    y = torch.as_tensor(rows.targets)
    with torch.no_grad():
        ok = (_predicted(torch.softmax(mlp(x), 1)) == y) & (_predicted(torch.softmax(mlp(x_adv), 1)) == y)
    assert report.s_r["fgsm"] == pytest.approx(ok.float().mean().item())


def test_zero_radius_equals_clean_accuracy_exactly(adult, mlp):
    report = robustness_audit(mlp, adult, eps=0.0, max_samples=200, device="cpu")
    for adversarial in report.adversarial.values():
        assert _accuracies(adversarial) == _accuracies(report.clean)
        assert adversarial.overall["accuracy"] == report.clean.overall["accuracy"]
    data = report.to_dict()
    assert data["adversarial"]["pgd"]["gap"] == data["clean"]["gap"]


def test_tabular_attack_moves_numeric_features_only_within_eps_and_range(adult, mlp):
    eps = 0.3
    threat = threat_model(adult)
    numeric = [j for c in adult.numeric_features for j in adult.feature_groups[c]]
    categorical = [j for c in adult.categorical_features for j in adult.feature_groups[c]]
    assert torch.equal(torch.nonzero(threat.feature_mask).flatten(), torch.tensor(numeric))
    for attack in ("fgsm", "pgd"):
        x, x_adv = RobustnessAuditor(attack, eps=eps, max_samples=200, device="cpu").perturb(mlp, adult, attack)
        assert torch.equal(x_adv[:, categorical], x[:, categorical])  # one-hot blocks untouched
        change = (x_adv - x)[:, numeric].abs()
        assert change.max() <= eps + 1e-6 and change.max() > eps / 2
        lo, hi = adult.x[:, numeric].amin(0), adult.x[:, numeric].amax(0)
        assert (x_adv[:, numeric] >= lo - 1e-6).all() and (x_adv[:, numeric] <= hi + 1e-6).all()
    # Without clipping a feature at its observed minimum can go below it.
    _, free = RobustnessAuditor("fgsm", eps=eps, clip=None, device="cpu").perturb(mlp, adult, "fgsm")
    assert (free[:, numeric] < adult.x[:, numeric].amin(0) - 1e-3).any()


def test_image_attack_stays_in_pixel_range_and_postprocessing_path_matches(mlp):
    from fairaudit.models import build_model

    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 3, 16, 16, generator=g)
    attributes = pd.DataFrame({"y": np.arange(32) % 2, "s": (np.arange(32) // 2) % 2})
    ds = TensorFairDataset("tiny-images", "test", x, attributes, {"y": ["no", "yes"], "s": ["a", "b"]}, "y", ["s"],
                           kind="image")
    torch.manual_seed(0)
    model = build_model("small_cnn", 2, (3, 16, 16)).eval()
    auditor = RobustnessAuditor("fgsm,pgd", eps=8 / 255, steps=2, device="cpu")
    clean, adv = auditor.perturb(model, ds, "pgd")
    assert adv.min() >= 0 and adv.max() <= 1 and (adv - clean).abs().max() <= 8 / 255 + 1e-6
    plain = auditor.audit(model, ds)
    post = auditor.audit(model, ds, postprocess=lambda view: predict(model, view, device="cpu"))
    assert post.meta["postprocessed"] and not plain.meta["postprocessed"]
    for name in ("fgsm", "pgd"):
        assert _accuracies(post.adversarial[name]) == pytest.approx(_accuracies(plain.adversarial[name]))


def test_epsilon_sweep_table(adult, mlp):
    sweep = epsilon_sweep(mlp, adult, [0.0, 0.2, 0.8], attack="fgsm", max_samples=200, device="cpu")
    assert list(sweep.columns) == ["eps", "group", "n", "accuracy"]
    assert len(sweep) == 3 * 5  # overall + four intersectional groups, per ε
    overall = sweep[sweep.group == "overall"].set_index("eps")["accuracy"]
    clean = robustness_audit(mlp, adult, attacks="fgsm", eps=0.0, max_samples=200, device="cpu").clean
    assert overall[0.0] == pytest.approx(clean.overall["accuracy"])
    assert overall[0.8] < overall[0.0] - 0.05
    with pytest.raises(FairauditError, match="one attack at a time"):
        epsilon_sweep(mlp, adult, [0.1], attack="fgsm,pgd")


@pytest.mark.parametrize("kwargs, message", [
    ({"attacks": "cw"}, "unknown attack 'cw'"),
    ({"eps": -0.1}, "eps must be a finite number ≥ 0"),
    ({"norm": "l3"}, "unknown attack norm 'l3'"),
    ({"steps": 0}, "whole number ≥ 1"),
])
def test_bad_settings_are_refused(adult, mlp, kwargs, message):
    with pytest.raises(FairauditError, match=message):
        robustness_audit(mlp, adult, max_samples=10, device="cpu", **kwargs)


def test_cli_robustness_json(tiny_model, tmp_path, capsys):
    out = tmp_path / "rob.json"
    code = main(["robustness", "--dataset", "adult", "--model", tiny_model, "--sensitive", "sex",
                 "--attack", "fgsm,pgd", "--eps", "0.3", "--steps", "5", "--max-samples", "150", "--device", "cpu",
                 "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert set(data) >= {"clean", "adversarial", "s_r"}
    assert set(data["clean"]) >= {"overall", "groups"} and set(data["adversarial"]) == {"fgsm", "pgd"}
    for block in data["adversarial"].values():
        assert set(block) >= {"overall", "groups", "gap"}
        assert [g["group"] for g in block["groups"]] == ["sex=Female", "sex=Male"]
    assert data["s_r"]["pgd"] == data["adversarial"]["pgd"]["overall"]["accuracy"]
    assert data["adversarial"]["pgd"]["attack"]["steps"] == 5 and data["meta"]["n"] == 150
    assert "-> " in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--attack", "cw"], "unknown attack 'cw'"),
    (["--eps", "-1"], "eps must be a finite number ≥ 0"),
    (["--norm", "l3"], "unknown attack norm"),
    (["--max-samples", "0"], "--max-samples must be ≥ 1"),
])
def test_cli_robustness_bad_args_exit_2(tiny_model, tmp_path, capsys, extra, message):
    code = main(["robustness", "--dataset", "adult", "--model", tiny_model, "--json", str(tmp_path / "x.json"),
                 *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()


def test_job_result_has_robustness_and_split_blocks(home, tiny_model):
    from fairaudit.jobs import JobSpec, run_job

    result = run_job(JobSpec("noop_finetune", "adult", model=tiny_model, device="cpu", n_boot=0,
                             settings={"epochs": 1, "steps": 2}, robustness_samples=100, split_samples=400))
    robustness = result["robustness"]
    for stage in ("before", "after"):
        block = robustness[stage]
        assert set(block["adversarial"]) == {"fgsm", "pgd"} and block["meta"]["n"] == 100
        assert block["adversarial"]["fgsm"]["attack"]["eps"] == pytest.approx(0.1)
        assert result["summary"][stage]["s_r"] == block["s_r"]["pgd"]
    assert set(result["splits"]) == {"train", "test"}  # Adult has no validation split
    assert result["splits"]["test"] == {"before": result["before"], "after": result["after"]}
    train = result["splits"]["train"]
    assert train["before"]["overall"]["n"] == train["after"]["overall"]["n"] == 400
    assert train["before"]["ci"]["spd"] in (None, [None, None])

    post = run_job(JobSpec("noop_finetune", "adult", model=tiny_model, device="cpu", n_boot=0,
                           settings={"epochs": 1, "steps": 1, "post": True}, split_samples=0))
    assert post["robustness"]["before"]["meta"]["n"] == 128  # the CPU default
    assert post["robustness"]["after"] is None
    assert "nothing to attack" in post["robustness"]["reason"] and post["summary"]["after"]["s_r"] is None
    assert set(post["splits"]) == {"test"}

    off = run_job(JobSpec("noop_finetune", "adult", model=tiny_model, device="cpu", n_boot=0,
                          settings={"epochs": 1, "steps": 1}, robustness_samples=0, split_samples=0))
    assert off["robustness"]["before"] is None and off["summary"]["before"]["s_r"] is None
    with pytest.raises(FairauditError, match="robustness_samples must be an integer ≥ 0"):
        JobSpec("noop_finetune", "adult", model=tiny_model, robustness_samples=-1)


# ---------------------------------------------------------------------------- the Audit page section

def _plotted(values) -> np.ndarray:
    """Values of a plotly trace array, which the figure JSON may store as base64 typed arrays."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    return np.asarray(values)


def test_audit_page_robustness_section(demo_home):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from appkit import background

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=180)
    try:
        at.run()
        at.switch_page("app_pages/audit.py")
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert "Robustness" in [t.label for t in at.tabs]
        at.multiselect(key="rob-attacks").set_value(["fgsm"])
        at.number_input(key="rob-samples").set_value(24)
        at.text_input(key="rob-sweep").input("0, 0.03")
        at.run()
        assert not any(m.label.startswith("S_R") for m in at.metric)  # nothing runs before the click
        at.button(key="rob-run").click().run()
        assert not at.exception, [e.value for e in at.exception]
        cards = {m.label: m.value for m in at.metric}
        assert 0.0 <= float(cards["S_R FGSM"]) <= float(cards["Clean accuracy"]) <= 1.0
        assert "Gap FGSM" in cards
        figures = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
        titles = [f["layout"].get("title", {}).get("text", "") for f in figures]
        assert any("Clean vs. adversarial" in t for t in titles) and any("against ε" in t for t in titles)
        curve = next(f for f, t in zip(figures, titles) if "against ε" in t)
        assert len(curve["data"]) == 3 and curve["data"][-1]["name"] == "all samples"  # 2 groups + overall
        assert all(_plotted(trace["x"]).tolist() == [0.0, 0.03] for trace in curve["data"])
        # Cached in the session: another rerun shows the results without attacking again.
        at.run()
        assert "S_R FGSM" in {m.label for m in at.metric}
    finally:
        for key in background.keys():
            background.wait(key, timeout=180)
