"""The streaming inference pass and the audit built on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fairaudit.audit import Predictions, audit_predictions, predict, run_audit
from fairaudit.audit.external import read_predictions_csv
from fairaudit.data import TensorFairDataset, load_dataset
from fairaudit.errors import FairauditError
from fairaudit.models import build_model
from tests.bad_inputs.cases_data import predictions_args, predictions_frame, write_predictions


def _tabular(n=600, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    attrs = pd.DataFrame({"y": (x[:, 0] > 0).long().numpy(), "a": (x[:, 1] > 0).long().numpy(),
                          "b": torch.randint(0, 3, (n,), generator=g).numpy()})
    return TensorFairDataset("toy", "test", x, attrs, {"y": ["no", "yes"], "a": ["a0", "a1"], "b": ["p", "q", "r"]},
                             "y", ["a", "b"])


def test_predict_collects_everything_in_order():
    ds = _tabular()
    torch.manual_seed(0)
    model = build_model("mlp", 2, (6,))
    calls = []
    preds = predict(model, ds, device="cpu", batch_size=128, with_latents=True,
                    progress=lambda done, total: calls.append((done, total)))
    assert len(preds) == len(ds)
    np.testing.assert_array_equal(preds.indices, np.arange(len(ds)))
    np.testing.assert_array_equal(preds.labels, ds.targets)
    np.testing.assert_array_equal(preds.sensitive, ds.sensitive_codes)
    np.testing.assert_allclose(preds.probs.sum(1), 1.0, atol=1e-5)
    assert preds.latents.shape == (len(ds), 64)
    with torch.no_grad():
        expected = torch.softmax(model(ds.x), 1).numpy()
    np.testing.assert_allclose(preds.probs, expected, atol=1e-5)
    assert calls[-1] == (len(ds), len(ds)) and len(calls) == 5


def test_streamed_image_pass_matches_direct_forward():
    ds = load_dataset("synthetic-faces", "test", n_test=96, image_size=32)
    torch.manual_seed(0)
    model = build_model("small_cnn", ds.num_classes, ds.input_shape).eval()
    preds = predict(model, ds, device="cpu", batch_size=32, num_workers=2)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        expected = torch.softmax(model(x), 1).numpy()
    np.testing.assert_allclose(preds.probs, expected, atol=1e-5)


def test_threshold_recomputation_needs_no_inference(tmp_path):
    ds = _tabular()
    report, preds = run_audit(ds, build_model("mlp", 2, (6,)), n_boot=50, device="cpu")
    path = preds.save(tmp_path / "preds")
    again = Predictions.load(path)
    np.testing.assert_array_equal(again.probs, preds.probs)
    assert again.value_names == preds.value_names
    for t in (0.2, 0.5, 0.8):
        r = audit_predictions(again, threshold=t, n_boot=0)
        expected = ((preds.probs[:, 1] >= t).astype(int) == preds.labels).mean()
        assert r.overall["accuracy"] == pytest.approx(expected, abs=1e-12)
    assert report.meta["inference_seconds"] >= 0 and report.meta["dataset"] == "toy"


def test_the_audit_pass_counts_its_metrics_batch_by_batch_and_equals_the_stored_predictions_audit(monkeypatch):
    from fairaudit.metrics import GroupMetrics

    ds = _tabular()
    torch.manual_seed(0)
    model = build_model("mlp", 2, (6,))
    batches = []
    update = GroupMetrics.update
    monkeypatch.setattr(GroupMetrics, "update", lambda self, *a: (batches.append(len(a[1])), update(self, *a))[1])
    report, preds = run_audit(ds, model, n_boot=200, seed=3, device="cpu", batch_size=128)
    assert batches == [128, 128, 128, 128, 88]  # counted inside the inference pass, not after it
    again = audit_predictions(preds, n_boot=200, seed=3, device="cpu")
    assert report.meta["bootstrap"] == again.meta["bootstrap"] == "streamed-rows"
    assert report.ci == again.ci and report.disparities.keys() == again.disparities.keys()
    for name, value in report.disparities.items():
        assert again.disparities[name] == value or (np.isnan(value) and np.isnan(again.disparities[name]))
    assert report.overall == again.overall


def test_class_count_mismatch_is_refused():
    ds = _tabular()
    with pytest.raises(FairauditError, match="3 output classes"):
        predict(build_model("mlp", 3, (6,)), ds, device="cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_pass_matches_cpu():
    ds = load_dataset("synthetic-faces", "test", n_test=256, image_size=32)
    torch.manual_seed(0)
    model = build_model("small_cnn", ds.num_classes, ds.input_shape).eval()
    cpu_report, cpu = run_audit(ds, model, n_boot=100, device="cpu")
    gpu_report, gpu = run_audit(ds, model, n_boot=100, device="cuda")
    np.testing.assert_allclose(gpu.probs, cpu.probs, atol=2e-2)  # bf16 autocast on the GPU
    assert gpu_report.meta["device"].startswith("cuda")
    assert abs(gpu_report.overall["accuracy"] - cpu_report.overall["accuracy"]) < 0.02


# ---------------------------------------------------------------------------- predictions from a table

def _run_cli(args: list[str], capsys) -> tuple[int, dict | None, str]:
    from fairaudit.cli import main

    code = main(args)
    out = Path(args[args.index("--json") + 1])
    return code, (json.loads(out.read_text()) if out.is_file() else None), capsys.readouterr().err


def test_prediction_column_is_the_decision_when_scores_disagree(tmp_path, capsys):
    frame = predictions_frame()  # a perfect predictor whose scores are unrelated to its decisions
    disagree = int(((frame["score"] >= 0.5).astype(int) != frame["pred"]).sum())
    code, data, err = _run_cli(predictions_args(write_predictions(tmp_path), "--score", "score"), capsys)
    assert code == 0
    assert data["overall"]["accuracy"] == 1.0
    assert data["meta"]["columns"] == {"label": "y", "prediction": "pred", "score": None}
    first = int(np.flatnonzero((frame["score"] >= 0.5).astype(int) != frame["pred"])[0]) + 2
    warning = (f"'score' >= 0.5 disagrees with the prediction column 'pred' on {disagree} of 200 rows "
               f"(first at row {first}), so the audit uses 'pred' as the decision and does not use 'score'.")
    assert data["meta"]["warnings"] == [warning]
    assert err.strip() == f"fairaudit: warning: {warning}"


def test_scores_that_reproduce_the_predictions_are_kept_for_other_thresholds(tmp_path):
    frame = predictions_frame()
    pred = (frame["score"] >= 0.5).astype(int)
    preds = read_predictions_csv(write_predictions(tmp_path, pred=pred), "y", "pred", "sex", "score")
    assert preds.meta["columns"]["score"] == "score" and "warnings" not in preds.meta
    assert audit_predictions(preds, threshold=0.5, n_boot=0).overall["accuracy"] == pytest.approx(
        (pred == frame["y"]).mean(), abs=1e-12)
    at_07 = ((frame["score"] >= 0.7).astype(int) == frame["y"]).mean()
    assert audit_predictions(preds, threshold=0.7, n_boot=0).overall["accuracy"] == pytest.approx(at_07, abs=1e-12)


def test_score_alone_is_thresholded(tmp_path, capsys):
    frame = predictions_frame()
    args = predictions_args(write_predictions(tmp_path), "--score", "score", "--threshold", "0.7")
    args.remove("--pred"), args.remove("pred")
    code, data, _ = _run_cli(args, capsys)
    assert code == 0
    assert data["overall"]["accuracy"] == pytest.approx(((frame["score"] >= 0.7) == frame["y"]).mean(), abs=1e-12)
    assert data["meta"]["prediction"] == "scores>=0.7"


@pytest.mark.parametrize("columns, sensitive, message", [
    (dict(pred=np.where(predictions_frame()["y"] == 1, "yes", "no")), "sex",
     "the label column 'y' holds {0, 1} but the prediction column 'pred' holds {'no', 'yes'}; code both with the "
     "same values (e.g. 0/1 in both) so that predictions can be compared with labels."),
    (dict(sex="f"), "sex", "every sample is in the one group 'sex=f', so there is nothing to compare; audit a "
                           "sensitive attribute that takes at least two values in the data."),
    (dict(), "age", "sensitive attribute 'age' has 200 distinct values, more than 20; bin it into a few ranges "
                    "(e.g. age bands) before auditing, since one group per value makes tiny groups and meaningless "
                    "disparities."),
])
def test_misleading_tables_are_refused(tmp_path, columns, sensitive, message):
    with pytest.raises(FairauditError) as info:
        preds = read_predictions_csv(write_predictions(tmp_path, **columns), "y", "pred", sensitive)
        audit_predictions(preds, n_boot=0, device="cpu")
    assert str(info.value) == message


def test_small_groups_are_refused_below_the_minimum_size(tmp_path, capsys):
    sex = predictions_frame()["sex"].to_numpy().copy()
    sex[0] = "x"
    path = write_predictions(tmp_path, sex=sex)
    code, data, err = _run_cli(predictions_args(path), capsys)
    assert code == 2 and data is None
    assert err.strip() == ("fairaudit: error: group 'sex=x' has 1 sample(s), fewer than min_group_size=10; "
                           "merge values, drop an attribute or lower min_group_size (--min-group-size).")
    code, data, _ = _run_cli(predictions_args(path, "--min-group-size", "1"), capsys)
    assert code == 0 and data["meta"]["min_group_size"] == 1
    assert [(g["group"], g["n"]) for g in data["groups"]] == [("sex=f", 99), ("sex=m", 100), ("sex=x", 1)]


def test_audit_predictions_warns_about_nothing(tmp_path):
    # A fresh interpreter: torch prints its "array is not writable" warning only once per process.
    path = write_predictions(tmp_path)
    result = subprocess.run([sys.executable, "-W", "error", "-m", "fairaudit", *predictions_args(path)],
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
