"""The metrics engine against fairlearn / scikit-learn and against hand computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn.metrics import (MetricFrame, demographic_parity_difference, demographic_parity_ratio,
                               equal_opportunity_difference, equalized_odds_difference, false_negative_rate,
                               false_positive_rate, selection_rate, true_negative_rate, true_positive_rate)
from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_score

from fairaudit.errors import MetricInputError
from fairaudit.metrics import DISPARITY_NAMES, PER_GROUP_METRICS, AuditReport, audit_metrics

TOL = 1e-9


def _binary_data(n=3000, seed=0):
    """Two attributes (2 × 3 values) with group-dependent base rates and score shifts."""
    rng = np.random.default_rng(seed)
    sex = rng.integers(0, 2, n)
    age = rng.integers(0, 3, n)
    y = (rng.random(n) < 0.3 + 0.15 * sex + 0.1 * age).astype(int)
    scores = np.clip(0.35 * y + 0.1 * age + 0.08 * sex + rng.random(n) * 0.6, 0, 1)
    return y, scores, np.c_[sex, age]


FAIRLEARN_METRICS = {
    "base_rate": lambda y, p: float(np.mean(y)),
    "selection_rate": selection_rate,
    "accuracy": accuracy_score,
    "balanced_accuracy": balanced_accuracy_score,
    "tpr": true_positive_rate,
    "fpr": false_positive_rate,
    "fnr": false_negative_rate,
    "tnr": true_negative_rate,
    "ppv": precision_score,
    "npv": lambda y, p: precision_score(y, p, pos_label=0),
}


def test_per_group_metrics_match_fairlearn_on_intersections():
    y, scores, sens = _binary_data()
    y_pred = (scores >= 0.5).astype(int)
    report = audit_metrics(y, scores=scores, sensitive=sens, sensitive_names=["sex", "age"],
                           value_names={"sex": ["F", "M"], "age": ["young", "mid", "old"]}, n_boot=0, device="cpu")
    frame = MetricFrame(metrics=FAIRLEARN_METRICS, y_true=y, y_pred=y_pred,
                        sensitive_features=pd.DataFrame({"sex": sens[:, 0], "age": sens[:, 1]}))
    assert len(report.groups) == 6 == len(frame.by_group)
    assert report.groups[0]["group"] == "sex=F & age=young"
    assert report.groups[5]["attributes"] == {"sex": "M", "age": "old"}
    labels = {"F": 0, "M": 1, "young": 0, "mid": 1, "old": 2}
    for g in report.groups:
        key = (labels[g["attributes"]["sex"]], labels[g["attributes"]["age"]])
        expected = frame.by_group.loc[key]
        for m in PER_GROUP_METRICS:
            assert g[m] == pytest.approx(expected[m], abs=TOL), (g["group"], m)
        mask = (sens[:, 0] == key[0]) & (sens[:, 1] == key[1])
        assert g["n"] == mask.sum()
        assert g["confusion"] == [[int(((y[mask] == t) & (y_pred[mask] == p)).sum()) for p in (0, 1)] for t in (0, 1)]
    assert report.overall["accuracy"] == pytest.approx(accuracy_score(y, y_pred), abs=TOL)
    assert report.overall["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, y_pred), abs=TOL)
    assert report.overall["n"] == len(y)


@pytest.mark.parametrize("columns", [[0, 1], [0], [1]])
def test_disparities_match_fairlearn(columns):
    y, scores, sens = _binary_data(seed=1)
    y_pred = (scores >= 0.5).astype(int)
    names = ["sex", "age"]
    sf = pd.DataFrame({names[j]: sens[:, j] for j in columns})
    report = audit_metrics(y, y_pred=y_pred, sensitive=sens[:, columns], sensitive_names=[names[j] for j in columns],
                           n_boot=0, device="cpu")
    d = report.disparities
    frame = MetricFrame(metrics=FAIRLEARN_METRICS, y_true=y, y_pred=y_pred, sensitive_features=sf)
    diff = frame.difference()
    kw = dict(sensitive_features=sf)
    assert d["spd"] == pytest.approx(demographic_parity_difference(y, y_pred, **kw), abs=TOL)
    assert d["dp_ratio"] == pytest.approx(demographic_parity_ratio(y, y_pred, **kw), abs=TOL)
    assert d["eo_max"] == pytest.approx(equalized_odds_difference(y, y_pred, **kw), abs=TOL)
    assert d["aaod"] == pytest.approx(equalized_odds_difference(y, y_pred, agg="mean", **kw), abs=TOL)
    assert d["eod"] == pytest.approx(equal_opportunity_difference(y, y_pred, **kw), abs=TOL)
    assert d["deo"] == pytest.approx(diff["fnr"] + diff["fpr"], abs=TOL)
    assert d["aed"] == pytest.approx(diff["accuracy"], abs=TOL)
    assert d["worst_group_accuracy"] == pytest.approx(frame.group_min()["accuracy"], abs=TOL)
    assert d["bias_score"] == d["spd"]
    assert d["passes_80_rule"] == (d["dp_ratio"] >= 0.8)
    assert d["spd"] > 0.05  # the data has a real disparity, so the comparison is not trivially 0 == 0
    if len(columns) == 2:
        for j, attr in enumerate(names):
            alone = audit_metrics(y, y_pred=y_pred, sensitive=sens[:, j], sensitive_names=[attr], n_boot=0,
                                  device="cpu")
            for k in DISPARITY_NAMES:
                assert report.marginal[attr]["disparities"][k] == pytest.approx(alone.disparities[k], abs=TOL)
            assert [g["n"] for g in report.marginal[attr]["groups"]] == [g["n"] for g in alone.groups]
    else:
        assert report.marginal == {}


def test_zero_denominator_rates_are_nan_and_ignored():
    y = np.array([0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 1])
    y_pred = np.array([0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1])
    group = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])  # group 0 has no positives
    report = audit_metrics(y, y_pred=y_pred, sensitive=group, sensitive_names=["g"], n_boot=0, device="cpu")
    g0, g1, g2 = report.groups
    assert math.isnan(g0["tpr"]) and math.isnan(g0["fnr"])
    assert g0["fpr"] == 0.5 and g0["balanced_accuracy"] == 0.5  # mean recall over the classes present
    assert report.disparities["eod"] == pytest.approx(g2["tpr"] - g1["tpr"]) == pytest.approx(0.5)
    assert report.disparities["deo"] == pytest.approx(0.5 + (1.0 - 0.0))  # ΔFNR over groups 1-2, ΔFPR over 0-2
    text = report.to_json()
    assert "NaN" not in text and json.loads(text)["groups"][0]["tpr"] is None


def test_gap_that_only_one_group_defines_is_undefined_with_its_reason():
    # Group B has no positives: only group A has a TPR / FNR, so every gap built on them compares nothing.
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    y_pred = np.array([1, 0, 1, 0, 1, 0, 1, 1, 0, 0, 0, 1])
    group = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    report = audit_metrics(y, y_pred=y_pred, sensitive=group, sensitive_names=["g"], value_names={"g": ["A", "B"]},
                           n_boot=50, device="cpu")
    d = report.disparities
    for name in ("eod", "deo", "eo_max", "aaod", "bias_sum"):
        assert math.isnan(d[name]), name
        assert report.ci[name] is None, name
    assert report.undefined["eod"] == ("only group 'g=A' defines the true-positive rate "
                                       "(no other group has positives ('1'))")
    assert "false-negative rate" in report.undefined["deo"]
    assert set(report.undefined) == {"eod", "deo", "eo_max", "aaod", "bias_sum"}
    # Where the gap is defined it still is fairlearn's.
    kw = dict(sensitive_features=group)
    assert d["spd"] == pytest.approx(demographic_parity_difference(y, y_pred, **kw), abs=TOL)
    assert d["dp_ratio"] == pytest.approx(demographic_parity_ratio(y, y_pred, **kw), abs=TOL)
    accuracy = MetricFrame(metrics=accuracy_score, y_true=y, y_pred=y_pred, sensitive_features=group)
    assert d["aed"] == pytest.approx(accuracy.difference(), abs=TOL) == pytest.approx(4 / 6 - 3 / 6)
    assert report.ci["spd"] is not None
    data = json.loads(report.to_json())
    assert data["disparities"]["eod"] is None and data["ci"]["eod"] is None
    assert data["undefined"]["eod"] == report.undefined["eod"]
    back = AuditReport.from_dict(data)
    assert math.isnan(back.disparities["eod"]) and back.undefined == report.undefined
    frame = back.disparity_frame().set_index("name")
    assert frame.loc["eod", "undefined"] == report.undefined["eod"] and frame.loc["spd", "undefined"] == ""


def test_per_class_eod_on_colored_digits_train_split_is_undefined_not_zero():
    # The confounded training split gives every digit one colour (digits 0-4 red, 5-9 brown), so in every
    # one-vs-rest problem only one colour group has positives: there is no true-positive rate to compare.
    from fairaudit.data import load_dataset

    ds = load_dataset("colored-digits", "train")
    rows = np.random.default_rng(0).choice(len(ds), 200, replace=False)
    y = ds.attributes["digit"].to_numpy()[rows]
    color = ds.attributes["color"].to_numpy()[rows]
    y_pred = np.where(np.random.default_rng(1).random(len(y)) < 0.8, y, (y + 1) % 10)
    report = audit_metrics(y, y_pred=y_pred, sensitive=color, sensitive_names=["color"], value_names=ds.value_names,
                           class_names=ds.class_names, n_boot=20, device="cpu")
    data = report.to_dict()
    for c in ds.class_names:
        assert data["per_class"][c]["disparities"]["eod"] is None, c
        assert data["per_class"][c]["ci"]["eod"] is None, c
        owner = "red" if int(c) < 5 else "brown"
        assert data["per_class"][c]["undefined"]["eod"] == (
            f"only group 'color={owner}' defines the true-positive rate of class '{c}' "
            f"(no other group has samples of class '{c}')")
        assert data["per_class"][c]["disparities"]["spd"] is not None  # both colours are predicted as c or not
    assert data["disparities"]["eod"] is None and data["disparities"]["deo"] is None
    assert data["undefined"]["eod"].startswith("undefined in every one of the 10 classes, e.g. only group")
    assert data["disparities"]["spd"] > 0.05


def test_multiclass_group_base_and_selection_rates_are_per_class_not_one_over_c():
    y = np.array([0, 0, 1, 2, 2, 2, 0, 1, 1, 1, 2, 0])
    y_pred = np.array([0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 1, 0])
    group = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    report = audit_metrics(y, y_pred=y_pred, sensitive=group, sensitive_names=["g"], n_boot=0, device="cpu")
    for gi, g in enumerate(report.groups):
        assert math.isnan(g["selection_rate"]) and math.isnan(g["base_rate"])  # the class mean is 1/3 everywhere
        for c in range(3):
            assert g["per_class"][str(c)]["selection_rate"] == pytest.approx(np.mean(y_pred[group == gi] == c))
            assert g["per_class"][str(c)]["base_rate"] == pytest.approx(np.mean(y[group == gi] == c))
    assert report.to_dict()["groups"][0]["selection_rate"] is None
    frame = report.groups_frame()
    assert frame["selection_rate[1]"].tolist() == pytest.approx([2 / 6, 3 / 6])
    assert frame["selection_rate[2]"].tolist() == pytest.approx([2 / 6, 1 / 6])
    assert frame["base_rate[1]"].tolist() == pytest.approx([1 / 6, 3 / 6])
    # Multiclass SPD: the mean over classes of the gap in P(ŷ = c | group): (0 + 1/6 + 1/6) / 3.
    assert report.disparities["spd"] == pytest.approx(1 / 9)


def _manual_multiclass(y, y_pred, group, n_classes):
    """Straightforward loops: one-vs-rest rates per group and class, then means over classes."""
    groups = np.unique(group)
    rate = {m: np.full((len(groups), n_classes), np.nan) for m in ("selection_rate", "tpr", "fpr", "fnr", "accuracy")}
    acc = np.zeros(len(groups))
    for gi, g in enumerate(groups):
        yt, yp = y[group == g], y_pred[group == g]
        acc[gi] = np.mean(yt == yp)
        for c in range(n_classes):
            t, p = yt == c, yp == c
            rate["selection_rate"][gi, c] = p.mean()
            rate["accuracy"][gi, c] = np.mean(t == p)
            if t.any():
                rate["tpr"][gi, c] = (t & p).sum() / t.sum()
                rate["fnr"][gi, c] = (t & ~p).sum() / t.sum()
            if (~t).any():
                rate["fpr"][gi, c] = (~t & p).sum() / (~t).sum()
    gap = {m: np.nanmax(v, 0) - np.nanmin(v, 0) for m, v in rate.items()}
    per_class = {
        "spd": gap["selection_rate"], "eod": gap["tpr"], "deo": gap["fnr"] + gap["fpr"],
        "eo_max": np.maximum(gap["tpr"], gap["fpr"]), "aaod": 0.5 * (gap["tpr"] + gap["fpr"]),
        "aed": gap["accuracy"], "dp_ratio": np.nanmin(rate["selection_rate"], 0) / np.nanmax(rate["selection_rate"], 0),
    }
    return rate, acc, per_class


def test_multiclass_one_vs_rest_matches_manual_computation():
    rng = np.random.default_rng(3)
    n, n_classes = 900, 3
    y = rng.integers(0, n_classes, n)
    group = rng.integers(0, 3, n)
    probs = rng.dirichlet(np.ones(n_classes), n)
    probs[np.arange(n), y] += 0.3 * (group + 1) / 3  # accuracy differs between groups
    report = audit_metrics(y, scores=probs, sensitive=group, sensitive_names=["g"], class_names=["a", "b", "c"],
                           n_boot=0, device="cpu")
    y_pred = probs.argmax(1)
    rate, acc, per_class = _manual_multiclass(y, y_pred, group, n_classes)
    for gi, g in enumerate(report.groups):
        assert g["accuracy"] == pytest.approx(acc[gi], abs=TOL)
        assert g["balanced_accuracy"] == pytest.approx(
            balanced_accuracy_score(y[group == gi], y_pred[group == gi]), abs=TOL)
        assert g["tpr"] == pytest.approx(np.nanmean(rate["tpr"][gi]), abs=TOL)
        assert g["fpr"] == pytest.approx(np.nanmean(rate["fpr"][gi]), abs=TOL)
        assert g["per_class"]["b"]["selection_rate"] == pytest.approx(rate["selection_rate"][gi, 1], abs=TOL)
        assert np.array(g["confusion"]).shape == (3, 3)
    for k, v in per_class.items():
        assert report.disparities[k] == pytest.approx(np.mean(v), abs=TOL), k
        assert report.per_class["c"]["disparities"][k] == pytest.approx(v[2], abs=TOL), k
    assert report.disparities["worst_group_accuracy"] == pytest.approx(acc.min(), abs=TOL)
    assert report.disparities["aed"] > 0.01
    cells = [np.mean(y_pred[(group == g) & (y == c)] == c) for g in range(3) for c in range(n_classes)]
    assert report.overall["bacc_cells"] == pytest.approx(np.mean(cells), abs=TOL)
    assert report.meta["prediction"] == "argmax" and report.meta["classes"] == ["a", "b", "c"]


def test_threshold_predicts_scores_at_or_above_it():
    rng = np.random.default_rng(4)
    n = 2000
    y = rng.integers(0, 2, n)
    group = rng.integers(0, 4, n)
    scores = np.round(rng.random(n), 1)  # many scores tie exactly with the thresholds below
    previous = None
    for t in (0.3, 0.5, 0.7):
        by_threshold = audit_metrics(y, scores=scores, sensitive=group, threshold=t, n_boot=0, device="cpu")
        by_hand = audit_metrics(y, y_pred=(scores >= t).astype(int), sensitive=group, n_boot=0, device="cpu")
        assert [g["confusion"] for g in by_threshold.groups] == [g["confusion"] for g in by_hand.groups]
        for g in range(4):
            assert by_threshold.groups[g]["selection_rate"] == pytest.approx(np.mean(scores[group == g] >= t), abs=TOL)
        assert by_threshold.meta["threshold"] == t
        rates = [g["selection_rate"] for g in by_threshold.groups]
        if previous is not None:
            assert all(r < p for r, p in zip(rates, previous))
        previous = rates
    one_column = audit_metrics(y, scores=scores, sensitive=group, threshold=0.5, n_boot=0, device="cpu")
    two_column = audit_metrics(y, scores=np.c_[1 - scores, scores], sensitive=group, threshold=0.5, n_boot=0,
                               device="cpu")
    assert [g["confusion"] for g in two_column.groups] == [g["confusion"] for g in one_column.groups]


def _ci_report(n, seed=0, **kw):
    y, scores, sens = _binary_data(n, seed=5)
    return audit_metrics(y, scores=scores, sensitive=sens, sensitive_names=["sex", "age"], n_boot=300, seed=seed,
                         device="cpu", **kw)


def test_bootstrap_intervals_contain_estimates_shrink_and_are_reproducible():
    small, large = _ci_report(500), _ci_report(20000)
    for name in ("spd", "eod", "aed", "dp_ratio", "worst_group_accuracy", "accuracy", "balanced_accuracy"):
        value = large.disparities.get(name, large.overall.get(name))
        lo, hi = large.ci[name]
        assert lo <= value <= hi, name
        assert (hi - lo) < 0.6 * (small.ci[name][1] - small.ci[name][0]), name
    for g in large.groups:
        for m in PER_GROUP_METRICS:
            assert g["ci"][m][0] <= g[m] <= g["ci"][m][1], (g["group"], m)
    for attr in ("sex", "age"):
        lo, hi = large.marginal[attr]["ci"]["spd"]
        assert lo <= large.marginal[attr]["disparities"]["spd"] <= hi
    again, other_seed = _ci_report(500), _ci_report(500, seed=1)
    assert again.to_dict() == small.to_dict()
    assert other_seed.ci["spd"] != small.ci["spd"]


def test_cell_level_bootstrap_agrees_with_row_weights():
    rows, cells = _ci_report(20000), _ci_report(20000, bootstrap="cells")
    for name in ("spd", "eod", "accuracy"):
        width = rows.ci[name][1] - rows.ci[name][0]
        assert np.allclose(rows.ci[name], cells.ci[name], atol=0.25 * width), name
    assert rows.disparities == cells.disparities


def test_no_bootstrap_gives_none_intervals_and_json_round_trip():
    y, scores, sens = _binary_data(400)
    sens = sens.copy()
    y = y.copy()
    y[(sens[:, 0] == 1) & (sens[:, 1] == 2)] = 0  # a group without positives: NaN TPR
    report = audit_metrics(y, scores=scores, sensitive=sens, sensitive_names=["sex", "age"], n_boot=0, device="cpu")
    assert all(v is None for v in report.ci.values())
    assert all(v is None for g in report.groups for v in g["ci"].values())
    assert math.isnan(report.groups[-1]["tpr"])
    text = report.to_json()
    back = AuditReport.from_dict(json.loads(text))
    assert math.isnan(back.groups[-1]["tpr"]) and back.groups[-1]["ci"]["tpr"] is None
    assert back.to_dict() == report.to_dict() == json.loads(text)
    assert back.groups_frame()["tpr"].isna().sum() == 1
    assert list(back.disparity_frame()["name"]) == list(DISPARITY_NAMES)

    boot = audit_metrics(y, scores=scores, sensitive=sens, sensitive_names=["sex", "age"], n_boot=50, device="cpu")
    again = AuditReport.from_dict(json.loads(json.dumps(boot.to_dict())))
    assert again.to_dict() == boot.to_dict()
    frame = again.disparity_frame()
    assert frame.loc[frame["name"] == "spd", "ci_low"].item() == boot.ci["spd"][0]
    assert again.groups_frame().shape[0] == 6 and "tpr_ci_low" in again.groups_frame()


def test_report_file(tmp_path):
    y, scores, sens = _binary_data(300)
    report = audit_metrics(y, scores=scores, sensitive=sens[:, 0], n_boot=0, device="cpu")
    path = tmp_path / "audit.json"
    report.to_json(path)
    assert AuditReport.from_dict(json.loads(path.read_text())).disparities == report.disparities


@pytest.mark.parametrize("kwargs, message", [
    (dict(y_true=[0, 1, 1], y_pred=[0, 1], sensitive=[0, 1, 1]), "y_pred has 2 rows but y_true has 3"),
    (dict(y_true=[0, 1, 1], y_pred=[0, 1, 1], sensitive=[0, 1]), "sensitive has 2 rows but y_true has 3"),
    (dict(y_true=[0, 2, 1], scores=[0.1, 0.6, 0.9], sensitive=[0, 1, 1]),
     "y_true contains label 2 but there are only 2"),
    (dict(y_true=[0, 1, 1], y_pred=[0, 1, 3], sensitive=[0, 1, 1], class_names=["n", "y", "m"]),
     "y_pred contains label 3 but there are only 3"),
    (dict(y_true=[0, 1, 1], sensitive=[0, 1, 1]), "either scores"),
    (dict(y_true=[0, 1, 1], y_pred=[0, 1, 1], sensitive=[0, -1, 1]), "row 1 has -1"),
    (dict(y_true=[0, 0.5, 1], y_pred=[0, 1, 1], sensitive=[0, 1, 1]), "y_true must hold integer codes, but row 1"),
    (dict(y_true=[0, 1, 1], scores=[0.1, float("nan"), 0.2], sensitive=[0, 1, 1]), "row 1 is NaN"),
    (dict(y_true=[0, 1, 1], y_pred=[0, 1, 1], sensitive=[[0, 1], [1, 1], [1, 0]], sensitive_names=["a"]),
     "2 column(s) but 1 sensitive name"),
    (dict(y_true=[0, 1, 1, 0], y_pred=[0, 1, 1, 0], sensitive=[0, 1, 1, 1], sensitive_names=["sex"],
          value_names={"sex": ["F", "M"]}, min_group_size=2),
     "group 'sex=F' has 1 sample(s), fewer than min_group_size=2"),
    (dict(y_true=[0, 1, 1, 0], y_pred=[0, 1, 1, 1], sensitive=[1, 1, 1, 1], sensitive_names=["sex"],
          value_names={"sex": ["F", "M"]}), "every sample is in the one group 'sex=M', so there is nothing to compare"),
    (dict(y_true=np.arange(42) % 2, y_pred=np.arange(42) % 2, sensitive=np.arange(42) // 2, sensitive_names=["age"]),
     "sensitive attribute 'age' has 21 distinct values, more than 20; bin it"),
    (dict(y_true=[0, 1], y_pred=[0, 1], sensitive=[0, 1], n_boot=-1), "n_boot must be a whole number >= 0"),
    (dict(y_true=[0, 1], scores=[0.2, 0.7], sensitive=[0, 1], threshold="high"), "threshold must be a finite number"),
])
def test_bad_input_raises_specific_errors(kwargs, message):
    kwargs.setdefault("n_boot", 0)
    with pytest.raises(MetricInputError) as err:
        audit_metrics(device="cpu", **kwargs)
    assert message in str(err.value)


def test_min_group_size_names_intersection():
    y, scores, sens = _binary_data(200)
    sens = sens.copy()
    sens[:3] = [1, 3]
    with pytest.raises(MetricInputError, match=r"group 'sex=1 & age=3' has 3 sample\(s\)"):
        audit_metrics(y, scores=scores, sensitive=sens, sensitive_names=["sex", "age"], min_group_size=10, n_boot=0,
                      device="cpu")


def test_torch_inputs_and_large_input_point_estimate():
    rng = np.random.default_rng(6)
    n = 1_000_000
    y = torch.from_numpy(rng.integers(0, 2, n))
    sens = torch.from_numpy(np.c_[rng.integers(0, 2, n), rng.integers(0, 4, n)])
    scores = torch.from_numpy(rng.random(n).astype(np.float32))
    report = audit_metrics(y, scores=scores, sensitive=sens, sensitive_names=["a", "b"], n_boot=0, device="cpu")
    assert len(report.groups) == 8 and report.overall["n"] == n
    assert report.overall["accuracy"] == pytest.approx(np.mean((scores.numpy() >= 0.5) == y.numpy()), abs=TOL)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    y, scores, sens = _binary_data(20000)
    kw = dict(scores=scores, sensitive=sens, sensitive_names=["sex", "age"], n_boot=500)
    cpu = audit_metrics(y, device="cpu", **kw)
    gpu = audit_metrics(y, device="cuda", **kw)
    assert gpu.meta["device"].startswith("cuda")
    for k in DISPARITY_NAMES:
        assert gpu.disparities[k] == pytest.approx(cpu.disparities[k], abs=TOL)
        width = cpu.ci[k][1] - cpu.ci[k][0]
        assert np.allclose(gpu.ci[k], cpu.ci[k], atol=0.25 * width + 1e-12), k  # different random streams
    for a, b in zip(cpu.groups, gpu.groups):
        assert a["confusion"] == b["confusion"]
        for m in PER_GROUP_METRICS:
            assert a[m] == pytest.approx(b[m], abs=TOL)
    again = audit_metrics(y, device="cuda", **kw)
    assert again.ci == gpu.ci
