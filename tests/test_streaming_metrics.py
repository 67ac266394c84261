"""GroupMetrics: streamed counts equal the batch audit; merge of parts equals the whole."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fairaudit.audit import Predictions, audit_predictions
from fairaudit.errors import MetricInputError
from fairaudit.metrics import DISPARITY_NAMES, OVERALL_METRICS, PER_GROUP_METRICS, GroupMetrics, audit_metrics

TOL = 1e-12
VALUES = {"sex": ["f", "m"], "age": ["young", "mid", "old"]}


def _data(n=3000, n_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    sens = np.c_[rng.integers(0, 2, n), rng.integers(0, 3, n)]
    logits = rng.normal(size=(n, n_classes)) + 1.5 * np.eye(n_classes)[y] + 0.6 * sens[:, :1]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y.astype(np.int64), probs.astype(np.float32), sens.astype(np.int64)


def _preds(y, probs, sens):
    return Predictions(labels=y, probs=probs, sensitive=sens, indices=np.arange(len(y)),
                       sensitive_names=list(VALUES), value_names=VALUES,
                       class_names=[str(c) for c in range(probs.shape[1])])


def _stream(y, probs, sens, splits, device="cpu", **kw):
    m = GroupMetrics(probs.shape[1], VALUES, device=device, **kw)
    for idx in np.array_split(np.arange(len(y)), splits):
        scores = probs[idx, 1] if probs.shape[1] == 2 else probs[idx]
        m.update(torch.from_numpy(scores), torch.from_numpy(y[idx]), torch.from_numpy(sens[idx]))
    return m


def _close(a, b):
    return (a is None and b is None) or (isinstance(a, float) and math.isnan(a) and math.isnan(b)) \
        or abs(a - b) <= TOL


def _assert_points_equal(stream, batch):
    for k in DISPARITY_NAMES:
        assert _close(stream.disparities[k], batch.disparities[k]), k
    for k in OVERALL_METRICS:
        assert _close(stream.overall[k], batch.overall[k]), k
    assert stream.overall["n"] == batch.overall["n"]
    assert [g["group"] for g in stream.groups] == [g["group"] for g in batch.groups]
    for a, b in zip(stream.groups, batch.groups):
        assert a["confusion"] == b["confusion"] and a["n"] == b["n"] and a["attributes"] == b["attributes"]
        for m in PER_GROUP_METRICS:
            assert _close(a[m], b[m]), (a["group"], m)
    for attr, section in batch.marginal.items():
        for k in DISPARITY_NAMES:
            assert _close(stream.marginal[attr]["disparities"][k], section["disparities"][k]), (attr, k)
    for cname, section in batch.per_class.items():
        for k in DISPARITY_NAMES:
            assert _close(stream.per_class[cname]["disparities"][k], section["disparities"][k]), (cname, k)
    assert stream.undefined == batch.undefined
    assert set(stream.to_dict()) == set(batch.to_dict())


@pytest.mark.parametrize("n_classes", [2, 4])
def test_k_batches_equal_audit_predictions_on_the_concatenation(n_classes):
    y, probs, sens = _data(n_classes=n_classes)
    batch = audit_predictions(_preds(y, probs, sens), n_boot=0, device="cpu")
    stream = _stream(y, probs, sens, splits=7, n_boot=0).compute()
    _assert_points_equal(stream, batch)
    assert stream.meta["prediction"] == batch.meta["prediction"]
    assert stream.meta["sensitive_names"] == batch.meta["sensitive_names"]


def test_hard_predictions_and_single_attribute_list():
    y, probs, sens = _data()
    pred = (probs[:, 1] >= 0.5).astype(np.int64)
    m = GroupMetrics(2, ["f", "m"], n_boot=0, device="cpu")
    for idx in np.array_split(np.arange(len(y)), 3):
        m.update(pred[idx], y[idx], sens[idx, 0])
    batch = audit_metrics(y, y_pred=pred, sensitive=sens[:, 0], sensitive_names=["group"],
                          value_names={"group": ["f", "m"]}, n_boot=0, device="cpu")
    _assert_points_equal(m.compute(), batch)


def test_streamed_bootstrap_does_not_depend_on_batching_and_matches_batch_distribution():
    y, probs, sens = _data()
    one = _stream(y, probs, sens, splits=1, n_boot=300, seed=3).compute()
    many = _stream(y, probs, sens, splits=9, n_boot=300, seed=3).compute()
    assert many.ci == one.ci and many.disparities == one.disparities
    other_seed = _stream(y, probs, sens, splits=1, n_boot=300, seed=4).compute()
    assert other_seed.ci != one.ci
    batch = audit_predictions(_preds(y, probs, sens), n_boot=300, seed=3, device="cpu")
    _assert_points_equal(one, batch)
    for k in ("spd", "deo", "eo_max", "aed"):  # same Poisson(1) weights in law, other draws
        width = batch.ci[k][1] - batch.ci[k][0]
        assert np.allclose(one.ci[k], batch.ci[k], atol=0.25 * width), k
    assert one.meta["bootstrap"] == "streamed-rows"


def test_cells_bootstrap_equals_audit_metrics_cells_exactly():
    y, probs, sens = _data(n_classes=3)
    batch = audit_metrics(y, scores=probs, sensitive=sens, sensitive_names=list(VALUES), value_names=VALUES,
                          n_boot=200, seed=5, bootstrap="cells", device="cpu")
    stream = _stream(y, probs, sens, splits=4, n_boot=200, seed=5, bootstrap="cells").compute()
    _assert_points_equal(stream, batch)
    assert stream.ci == batch.ci
    assert [g["ci"] for g in stream.to_dict()["groups"]] == [g["ci"] for g in batch.to_dict()["groups"]]


def test_merge_of_two_halves_equals_the_whole_and_state_dict_roundtrip():
    y, probs, sens = _data()
    half = len(y) // 2
    whole = _stream(y, probs, sens, splits=3, n_boot=200, seed=1)
    a = _stream(y[:half], probs[:half], sens[:half], splits=2, n_boot=200, seed=1)
    b = _stream(y[half:], probs[half:], sens[half:], splits=2, n_boot=200, seed=1, row_offset=half)
    merged = a.merge(b).compute()
    expected = whole.compute()
    _assert_points_equal(merged, expected)
    assert torch.equal(a.confusion, whole.confusion)
    assert torch.allclose(a.replicates, whole.replicates, rtol=0, atol=0)
    assert merged.ci == expected.ci
    # the state is plain counts: summing two states (what all_reduce does) is the merge
    c = _stream(y[:half], probs[:half], sens[:half], splits=1, n_boot=200, seed=1)
    d = _stream(y[half:], probs[half:], sens[half:], splits=1, n_boot=200, seed=1, row_offset=half)
    for name, tensor in c.state_dict()["tensors"].items():
        tensor += d.state_dict()["tensors"][name]
    assert c.compute().ci == expected.ci
    restored = GroupMetrics(2, VALUES, n_boot=200, seed=1, device="cpu")
    restored.load_state_dict(whole.state_dict())
    assert restored.compute().ci == expected.ci
    whole.reset()
    assert float(whole.confusion.sum()) == 0 and whole.rows == 0


def test_overlapping_rows_share_weights_so_offsets_matter():
    y, probs, sens = _data()
    half = len(y) // 2
    whole = _stream(y, probs, sens, splits=1, n_boot=200, seed=1).compute()
    a = _stream(y[:half], probs[:half], sens[:half], splits=1, n_boot=200, seed=1)
    b = _stream(y[half:], probs[half:], sens[half:], splits=1, n_boot=200, seed=1)  # no row_offset
    assert a.merge(b).compute().ci != whole.ci


def test_errors_are_one_sentence():
    m = GroupMetrics(2, VALUES, n_boot=0, device="cpu")
    with pytest.raises(MetricInputError, match="has no label"):
        m.update(np.array([0, 1]), np.array([0, 1]), np.array([[0, 3], [1, 0]]))
    with pytest.raises(MetricInputError, match="no row was counted"):
        m.compute()
    m.update(np.array([0, 1]), np.array([0, 1]), np.array([[0, 1], [1, 0]]))
    with pytest.raises(MetricInputError, match="same kind of predictions"):
        m.update(np.array([0.2, 0.9]), np.array([0, 1]), np.array([[0, 1], [1, 0]]))
    with pytest.raises(MetricInputError, match="same classes"):
        m.merge(GroupMetrics(3, VALUES, n_boot=0, device="cpu"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_stream_equals_cpu_and_batch():
    y, probs, sens = _data(n=20000)
    batch = audit_predictions(_preds(y, probs, sens), n_boot=0, device="cuda")
    gpu = _stream(y, probs, sens, splits=5, device="cuda", n_boot=300, seed=2)
    cpu = _stream(y, probs, sens, splits=2, device="cpu", n_boot=300, seed=2)
    report = gpu.compute()
    assert report.meta["device"].startswith("cuda")
    _assert_points_equal(report, batch)
    half = len(y) // 2
    a = _stream(y[:half], probs[:half], sens[:half], splits=2, device="cuda", n_boot=300, seed=2)
    b = _stream(y[half:], probs[half:], sens[half:], splits=3, device="cuda", n_boot=300, seed=2, row_offset=half)
    _assert_points_equal(a.merge(b).compute(), batch)
    assert torch.equal(gpu.replicates.cpu(), cpu.replicates)  # counter-based weights: the same on every device
    for k in DISPARITY_NAMES:
        got, want = report.ci[k], cpu.compute().ci[k]
        assert (got is None and want is None) or np.allclose(got, want, rtol=0, atol=TOL), k
