"""The streaming inference pass and the audit built on it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from fairaudit.audit import Predictions, audit_predictions, predict, run_audit
from fairaudit.data import TensorFairDataset, load_dataset
from fairaudit.errors import FairauditError
from fairaudit.models import build_model


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
