"""Slice discovery: planted slices are found, null data yields none, numbers agree with pandas."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from fairaudit.cli import main
from fairaudit.errors import FairauditError
from fairaudit.slices import find_slices

N_ATTRS = 8
PLANTED = {"a1": "1", "a4": "0", "a6": "1"}


def _data(seed: int, n: int = 6000, planted: dict | None = PLANTED, base: float = 0.9, inside: float = 0.6):
    rng = np.random.default_rng(seed)
    attrs = pd.DataFrame({f"a{i}": rng.integers(0, 2, n) for i in range(N_ATTRS)})
    y = rng.integers(0, 2, n)
    correct = rng.random(n) < base
    if planted:
        mask = np.ones(n, dtype=bool)
        for column, value in planted.items():
            mask &= attrs[column].astype(str).to_numpy() == value
        correct[mask] = rng.random(mask.sum()) < inside
    return attrs, y, np.where(correct, y, 1 - y)


def test_planted_depth3_slice_is_rank_one():
    attrs, y, yhat = _data(seed=1)
    report = find_slices((y, yhat), attrs, metric="accuracy", max_depth=3, min_size=50, n_boot=300, seed=0)
    top = report.slices[0]
    assert top["slice"] == PLANTED
    assert top["significant"] and top["implied_by"] is None
    assert top["gap"] < -0.2 and top["ci"][0] < top["gap"] < top["ci"][1] < 0
    # 8 binary attributes: 16 + 28·4 + 56·8 = 576 candidate slices, all above 50 rows at n = 6000.
    assert report.n_slices_tested == 576


def test_null_data_has_no_significant_slice_and_bh_is_what_prevents_it():
    attrs, y, yhat = _data(seed=2, planted=None)
    report = find_slices((y, yhat), attrs, metric="accuracy", max_depth=3, min_size=50, n_boot=0)
    assert report.n_slices_tested == 576
    assert not any(s["significant"] for s in report.slices)
    # Control: without the Benjamini–Hochberg correction the same data would report false discoveries.
    raw = sum(s["p_value"] <= report.alpha for s in report.slices)
    assert raw > 0, raw


def test_child_of_a_planted_general_slice_is_marked_implied():
    attrs, y, yhat = _data(seed=3, planted={"a2": "1"}, inside=0.7)
    report = find_slices((y, yhat), attrs, max_depth=2, min_size=50, n_boot=0)
    by_slice = {tuple(sorted(s["slice"].items())): s for s in report.slices}
    # a2 = 1 and a2 = 0 are complements of each other: the same test, both first.
    assert sorted(s["slice"]["a2"] for s in report.slices[:2]) == ["0", "1"]
    child = by_slice[(("a2", "1"), ("a5", "0"))]
    assert child["significant"] and child["implied_by"] == {"a2": "1"}
    pruned = find_slices((y, yhat), attrs, max_depth=2, min_size=50, n_boot=0, prune=True)
    assert all(s["implied_by"] is None for s in pruned.slices)
    assert len(pruned.slices) == len(report.slices) - report.meta["n_implied"]


@pytest.mark.parametrize("metric", ["accuracy", "tpr", "fpr", "selection_rate"])
def test_value_gap_and_p_value_agree_with_pandas(metric):
    attrs, y, yhat = _data(seed=4, n=3000)
    report = find_slices((y, yhat), attrs, metric=metric, max_depth=2, min_size=30, n_boot=200)
    frame = attrs.astype(str).assign(y=y, yhat=yhat)
    den = {"accuracy": frame.y >= 0, "tpr": frame.y == 1, "fpr": frame.y == 0, "selection_rate": frame.y >= 0}[metric]
    event = (frame.y == frame.yhat) if metric == "accuracy" else (frame.yhat == 1)
    for s in report.slices[:5] + report.slices[-3:]:
        inside = np.ones(len(frame), dtype=bool)
        for column, value in s["slice"].items():
            inside &= (frame[column] == value).to_numpy()
        d1, e1 = (den & inside).sum(), (den & event & inside).sum()
        d2, e2 = (den & ~inside).sum(), (den & event & ~inside).sum()
        assert s["n"] == inside.sum()
        assert s["value"] == pytest.approx(e1 / d1, abs=1e-12)
        assert s["complement"] == pytest.approx(e2 / d2, abs=1e-12)
        assert s["gap"] == pytest.approx(e1 / d1 - e2 / d2, abs=1e-12)
        pooled = (e1 + e2) / (d1 + d2)
        z = (e1 / d1 - e2 / d2) / math.sqrt(pooled * (1 - pooled) * (1 / d1 + 1 / d2))
        assert s["p_value"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9, abs=1e-300)
        assert s["ci"][0] <= s["ci"][1]


def test_rows_and_cells_bootstrap_give_the_same_intervals():
    attrs, y, yhat = _data(seed=5, n=4000)
    cells = find_slices((y, yhat), attrs, max_depth=2, min_size=50, n_boot=2000, method="cells")
    rows = find_slices((y, yhat), attrs, max_depth=2, min_size=50, n_boot=2000, method="rows")
    a = {tuple(sorted(s["slice"].items())): s["ci"] for s in cells.slices}
    b = {tuple(sorted(s["slice"].items())): s["ci"] for s in rows.slices}
    diffs = [abs(a[k][j] - b[k][j]) for k in a for j in (0, 1)]
    assert max(diffs) < 0.02, max(diffs)


def test_bad_inputs_raise_one_sentence():
    attrs, y, yhat = _data(seed=6, n=200)
    with pytest.raises(FairauditError, match="larger than the data"):
        find_slices((y, yhat), attrs, min_size=500)
    with pytest.raises(FairauditError, match="binary target"):
        find_slices((np.array([0, 1, 2] * 10), np.array([0, 1, 2] * 10)), attrs.iloc[:30], metric="tpr", min_size=5)
    with pytest.raises(FairauditError, match="unknown slice metric"):
        find_slices((y, yhat), attrs, metric="auc")
    with pytest.raises(FairauditError, match="must match"):
        find_slices((y, yhat), attrs.iloc[:10])


@pytest.fixture()
def predictions_csv(tmp_path):
    attrs, y, yhat = _data(seed=7, n=3000)
    path = tmp_path / "preds.csv"
    attrs.assign(y=y, y_hat=yhat, p=np.where(yhat == 1, 0.8, 0.2)).to_csv(path, index=False)
    return path


def test_cli_json_contract(predictions_csv, tmp_path, fairaudit_home, capsys):
    out = tmp_path / "slices.json"
    rc = main(["slices", str(predictions_csv), "--label", "y", "--pred", "y_hat", "--score", "p",
               "--attributes", ",".join(f"a{i}" for i in range(N_ATTRS)), "--metric", "accuracy",
               "--max-depth", "3", "--min-size", "50", "--bootstrap", "200", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert {"metric", "n_slices_tested", "alpha", "slices"} <= set(data)
    assert data["metric"] == "accuracy" and data["alpha"] == 0.05 and data["n_slices_tested"] == 576
    keys = {"slice", "n", "value", "complement", "gap", "ci", "p_value", "q_value", "significant"}
    assert all(keys <= set(s) for s in data["slices"])
    assert data["slices"][0]["slice"] == PLANTED
    order = [(not s["significant"], s["implied_by"] is not None, -abs(s["gap"])) for s in data["slices"]]
    assert [o[:2] for o in order] == sorted(o[:2] for o in order)
    assert "a1 = 1 ∧ a4 = 0 ∧ a6 = 1" in capsys.readouterr().out


def test_cli_bad_column_exits_2(predictions_csv, tmp_path, fairaudit_home, capsys):
    rc = main(["slices", str(predictions_csv), "--label", "y", "--pred", "y_hat", "--attributes", "a1,nope",
               "--json", str(tmp_path / "x.json")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no column 'nope'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()


def test_cli_on_a_model_and_dataset_slices_every_attribute(tiny_model, tmp_path, fairaudit_home, capsys):
    out = tmp_path / "adult.json"
    rc = main(["slices", "--dataset", "adult", "--model", tiny_model, "--max-depth", "1", "--min-size", "30",
               "--bootstrap", "50", "--metric", "tpr", "--device", "cpu", "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    data = json.loads(out.read_text())
    columns = set(data["meta"]["attributes"])
    # The attribute table, the categorical inputs and the binned numeric inputs.
    assert {"sex", "race", "age_group", "education", "occupation", "age", "hours_per_week"} <= columns, columns
    ages = {s["slice"]["age"] for s in data["slices"] if "age" in s["slice"]}
    assert ages == {"q1 (lowest)", "q2", "q3", "q4 (highest)"}
    rc = main(["slices", "--dataset", "adult", "--model", tiny_model, "--attributes", "sex,nope", "--device", "cpu",
               "--json", str(tmp_path / "bad.json")])
    assert rc == 2 and "no attribute 'nope'" in capsys.readouterr().err
