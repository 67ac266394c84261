"""The CLI contract: commands, JSON keys, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fairaudit.cli import main

DISPARITY_KEYS = {"spd", "deo", "eo_max", "eod", "aaod", "aed", "dp_ratio", "bias_score", "worst_group_accuracy",
                  "bias_sum"}
GROUP_KEYS = {"group", "n", "base_rate", "selection_rate", "accuracy", "balanced_accuracy", "tpr", "fpr", "fnr",
              "tnr", "ppv", "npv"}


def _check_audit_json(path):
    data = json.loads(path.read_text())
    assert {"overall", "groups", "disparities", "ci", "meta"} <= set(data)
    assert {"accuracy", "balanced_accuracy", "n"} <= set(data["overall"])
    assert DISPARITY_KEYS <= set(data["disparities"])
    assert DISPARITY_KEYS <= set(data["ci"])
    for group in data["groups"]:
        assert GROUP_KEYS <= set(group)
    return data


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.fixture
def predictions_csv(tmp_path):
    rng = np.random.default_rng(3)
    n = 3000
    sex = rng.choice(["female", "male"], n)
    race = rng.choice(["a", "b", "c"], n)
    y = rng.integers(0, 2, n)
    score = np.clip(0.5 * y + 0.3 * (sex == "male") + rng.normal(0.1, 0.2, n), 0, 1)
    frame = pd.DataFrame({"label": y, "pred": (score >= 0.5).astype(int), "score": score, "sex": sex, "race": race})
    path = tmp_path / "preds.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_audit_predictions_contract(predictions_csv, tmp_path, capsys):
    path, frame = predictions_csv
    out = tmp_path / "report.json"
    code = main(["audit-predictions", str(path), "--label", "label", "--pred", "pred", "--score", "score",
                 "--sensitive", "sex", "--bootstrap", "200", "--json", str(out)])
    assert code == 0
    data = _check_audit_json(out)
    assert {g["group"] for g in data["groups"]} == {"sex=female", "sex=male"}
    sr = frame.groupby("sex")["pred"].mean()
    assert data["disparities"]["spd"] == pytest.approx(abs(sr["male"] - sr["female"]), abs=1e-9)
    assert data["overall"]["n"] == len(frame)


def test_audit_predictions_prints_an_undefined_gap_as_na_with_its_reason(tmp_path, capsys):
    sex = np.repeat(["female", "male"], 20)
    label = np.where(sex == "female", 0, np.tile([0, 1], 20))  # no woman is a positive
    pred = np.tile([0, 1, 1, 0], 10)
    path = tmp_path / "one-sided.csv"
    pd.DataFrame({"label": label, "pred": pred, "sex": sex}).to_csv(path, index=False)
    out = tmp_path / "r.json"
    assert main(["audit-predictions", str(path), "--label", "label", "--pred", "pred", "--sensitive", "sex",
                 "--bootstrap", "20", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    reason = "only group 'sex=male' defines the true-positive rate (no other group has positives ('1'))"
    assert data["disparities"]["eod"] is None and data["ci"]["eod"] is None and data["undefined"]["eod"] == reason
    printed = capsys.readouterr().out
    assert f"  eod n/a: {reason}" in printed.splitlines()


def test_audit_predictions_intersections_and_threshold(predictions_csv, tmp_path):
    path, frame = predictions_csv
    out = tmp_path / "r.json"
    assert main(["audit-predictions", str(path), "--label", "label", "--score", "score",
                 "--sensitive", "sex,race", "--bootstrap", "0", "--threshold", "0.7", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data["groups"]) == 6
    expected = ((frame["score"] >= 0.7).astype(int) == frame["label"]).mean()
    assert data["overall"]["accuracy"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("args, message", [
    (["--label", "nope", "--pred", "pred", "--sensitive", "sex"], "no column 'nope'"),
    (["--label", "label", "--pred", "pred", "--sensitive", "sex", "--threshold", "2"], "threshold"),
])
def test_audit_predictions_bad_columns(predictions_csv, tmp_path, capsys, args, message):
    path, _ = predictions_csv
    assert main(["audit-predictions", str(path), *args, "--json", str(tmp_path / "x.json")]) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "x.json").exists()


def test_unknown_dataset_and_missing_model(tmp_path, capsys):
    assert main(["audit", "--dataset", "imagenet", "--json", str(tmp_path / "a.json")]) == 2
    assert "unknown dataset 'imagenet'" in _error_line(capsys)
    assert main(["audit", "--dataset", "adult", "--model", str(tmp_path / "missing.safetensors"),
                 "--json", str(tmp_path / "a.json")]) == 2
    assert "missing.safetensors" in _error_line(capsys)
    assert main(["audit", "--dataset", "adult", "--sensitive", "shoe_size", "--json", str(tmp_path / "a.json")]) == 2
    assert "shoe_size" in _error_line(capsys)
    assert main(["audit", "--dataset", "adult", "--data-opt", "bias", "--json", str(tmp_path / "a.json")]) == 2
    assert "key=value" in _error_line(capsys)


def test_train_then_audit_checkpoint_without_flags(tmp_path, capsys):
    ckpt = tmp_path / "adult_mlp.safetensors"
    assert main(["train", "--dataset", "adult", "--epochs", "1", "--batch-size", "512", "--out", str(ckpt)]) == 0
    assert ckpt.exists()
    out = tmp_path / "audit.json"
    assert main(["audit", "--dataset", "adult", "--sensitive", "sex,race", "--model", str(ckpt),
                 "--bootstrap", "100", "--json", str(out)]) == 0
    data = _check_audit_json(out)
    assert data["overall"]["accuracy"] > 0.78  # a 1-epoch MLP already beats the 0.75 majority rate
    assert "marginal" in data and set(data["marginal"]) == {"sex", "race"}
    # The same checkpoint cannot audit a dataset with another input size / class count.
    assert main(["audit", "--dataset", "colored-digits", "--model", str(ckpt), "--json", str(tmp_path / "b.json")]) == 2
    line = _error_line(capsys)
    assert "class" in line or "shape" in line


def test_demo_model_on_faces_is_biased(demo_home, tmp_path):
    out = tmp_path / "faces.json"
    assert main(["audit", "--dataset", "synthetic-faces", "--model", "demo", "--bootstrap", "200",
                 "--device", "cpu", "--json", str(out)]) == 0
    data = _check_audit_json(out)
    assert data["disparities"]["deo"] >= 0.2
    low, high = data["ci"]["deo"]
    assert low <= data["disparities"]["deo"] <= high
    assert data["meta"]["dataset"] == "synthetic-faces"


@pytest.mark.slow
def test_demo_model_unbiased_data_is_fair(tmp_path):
    out = tmp_path / "fair.json"
    assert main(["audit", "--dataset", "synthetic-faces", "--data-opt", "bias=0.5", "--model", "demo",
                 "--bootstrap", "0", "--device", "cpu", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["disparities"]["deo"] < 0.1
    assert data["overall"]["accuracy"] >= 0.75  # fair because it learned the smile, not by guessing a constant


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "fairaudit", "datasets"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "synthetic-faces" in proc.stdout and "adult" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "fairaudit", "audit"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "required" in proc.stderr
