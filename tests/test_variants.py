"""Deployed-model variants (normal / fair / lf / rg) on tiny biased synthetic faces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fairaudit.audit import run_audit
from fairaudit.cli import main
from fairaudit.data import load_dataset
from fairaudit.errors import FairauditError
from fairaudit.train import TrainConfig
from fairaudit.train.variants import VARIANTS, flip_labels_towards_groups, make_variant_step, train_variant

TINY = {"image_size": 32, "n_train": 512, "n_val": 64, "n_test": 400, "bias": 0.9, "seed": 0}
CONFIG = TrainConfig(epochs=6, batch_size=64, lr=2e-3)


@pytest.fixture(scope="module")
def test_split():
    return load_dataset("synthetic-faces", "test", None, None, None, **TINY)


@pytest.fixture(scope="module")
def deo_by_variant(test_split):
    out = {}
    for variant in VARIANTS:
        torch.manual_seed(0)  # the weights are initialised before fit() seeds its own generator
        model, _, info = train_variant(variant, "synthetic-faces", arch="small_cnn", config=CONFIG,
                                       data_options=TINY, device="cpu")
        assert info["variant"] == variant
        report, _ = run_audit(test_split, model, n_boot=0, device="cpu")
        out[variant] = (report.disparities["deo"], report.overall["accuracy"])
    return out


def test_fair_variant_lowers_deo_and_unfair_ones_keep_it_high(deo_by_variant):
    normal, fair, lf, rg = (deo_by_variant[v][0] for v in ("normal", "fair", "lf", "rg"))
    assert normal > 1.0  # the biased split makes a plainly trained model unfair
    assert fair < 0.5 * normal
    assert lf >= 0.9 * normal and rg >= 0.9 * normal


def test_label_flips_strengthen_the_group_correlation():
    ds = load_dataset("synthetic-faces", "train", None, None, None, **TINY)
    y, male = ds.targets, ds.sensitive_codes[:, 0]
    flipped = flip_labels_towards_groups(ds, 0.5, seed=0)
    changed = flipped != y
    # Only counter-stereotypical labels move (smiling males, neutral females), half of them.
    assert np.all(y[changed] == male[changed]) and np.all(flipped[changed] == 1 - male[changed])
    minority = int((y == male).sum())
    assert changed.sum() == round(0.5 * minority)
    corr = lambda labels: abs(np.corrcoef(labels, male)[0, 1])  # noqa: E731
    assert corr(flipped) > corr(y) + 0.02
    assert np.array_equal(flipped, flip_labels_towards_groups(ds, 0.5, seed=0))


def test_unknown_variant_and_bad_options_raise():
    ds = load_dataset("synthetic-faces", "train", None, None, None, **{**TINY, "n_train": 16})
    with pytest.raises(FairauditError, match="variant"):
        make_variant_step("robust", torch.nn.Linear(2, 2), ds, "cpu")
    with pytest.raises(FairauditError, match="flip_rate"):
        make_variant_step("lf", torch.nn.Linear(2, 2), ds, "cpu", options={"flip_rate": 1.5})


def test_cli_train_variant(tmp_path, capsys):
    out = tmp_path / "fair.safetensors"
    code = main(["train", "--dataset", "synthetic-faces", "--variant", "fair", "--epochs", "1", "--batch-size", "32",
                 "--device", "cpu", "--data-opt", "image_size=32", "--data-opt", "n_train=64", "--out", str(out)])
    assert code == 0 and out.exists()
    sidecar = json.loads((tmp_path / "fair.safetensors.json").read_text())
    assert sidecar["variant"] == "fair"
    assert main(["train", "--dataset", "synthetic-faces", "--variant", "nope", "--out", str(out)]) != 0
    assert "invalid choice: 'nope'" in capsys.readouterr().err
