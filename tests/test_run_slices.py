"""Slices before → after of a mitigation run: the recorded block, the Run page section and the report.

One tiny finished run (``noop_finetune`` on Adult, seed 3) is made once for the module in a
workspace of its own; its slices are checked against :func:`find_slices` on the run's own
stored predictions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairaudit.audit.inference import Predictions
from fairaudit.errors import FairauditError
from fairaudit.slices import dataset_attributes, describe, find_slices
from fairaudit.slices.compare import before_after_slices, default_min_size, unavailable

SEED = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model):
    """The result JSON of one finished run in a module-private workspace."""
    from fairaudit.jobs import JobSpec, run_job
    from tests.conftest import registered_methods_workspace

    with registered_methods_workspace(tmp_path_factory.mktemp("run_slices")):
        yield run_job(JobSpec("noop_finetune", "adult", model=tiny_model, device="cpu", seed=SEED,
                              settings={"epochs": 1, "steps": 3, "lr": 0.05}, n_boot=0, robustness_samples=0,
                              split_samples=0))


@pytest.fixture(scope="module")
def expected(run):
    """:func:`find_slices` on the run's stored before/after predictions, with the settings a run uses."""
    from fairaudit.data import load_dataset

    test = load_dataset("adult", "test")
    before = Predictions.load(run["artifacts"]["before_predictions"])
    after = Predictions.load(run["artifacts"]["after_predictions"])
    attributes = dataset_attributes(test, before.indices).drop(columns=[test.target])
    options = dict(metric="accuracy", max_depth=2, min_size=50, n_boot=200, seed=SEED, device="cpu")
    return {"before": find_slices(before, attributes, **options), "after": find_slices(after, attributes, **options),
            "preds": (before, after), "attributes": attributes}


def _harmful(report) -> list[dict]:
    return [s for s in report.slices if s["gap"] < 0 and not s["implied_by"]]


def test_recorded_slices_are_find_slices_on_the_audits_predictions(run, expected):
    block = run["slices"]
    assert block["reason"] is None and block["metric"] == "accuracy" and block["min_size"] == 50 == \
        default_min_size(13567)
    assert block["left_out"] == ["income"] and "income" not in block["attributes"]
    assert block["attributes"] == expected["before"].meta["attributes"]
    assert block["n_slices_tested"] == {"before": expected["before"].n_slices_tested,
                                        "after": expected["after"].n_slices_tested} == {"before": 1697,
                                                                                        "after": 1697}
    assert block["n_significant"] == {stage: expected[stage].meta["n_significant"] for stage in ("before", "after")}
    harmful = {stage: _harmful(expected[stage]) for stage in ("before", "after")}
    assert block["before"] == harmful["before"][:5]  # the same dicts: slice, n, value, gap, CI, p, q, flags
    assert block["after"] == harmful["after"][:5]

    worst = block["worst_before_after"]
    first = harmful["before"][0]
    later = next(s for s in expected["after"].slices if s["slice"] == first["slice"])
    assert worst["slice"] == first["slice"] and worst["n"] == first["n"]
    assert worst["before"]["gap"] == first["gap"] and worst["after"]["gap"] == later["gap"]
    assert worst["before"]["ci"] == first["ci"] and worst["after"]["q_value"] == later["q_value"]
    assert worst["gap_change"] == later["gap"] - first["gap"]
    ranks = [i + 1 for i, s in enumerate(harmful["after"]) if s["slice"] == first["slice"]]
    assert worst["rank_after"] == (ranks[0] if ranks else None)
    assert worst["still_significant"] == (later["significant"] and later["gap"] < 0)
    for entry, before in zip(block["after"], block["after_top_before"]):
        same = next(s for s in expected["before"].slices if s["slice"] == entry["slice"])
        assert before["gap"] == same["gap"] and before["value"] == same["value"]

    # The worst slice's accuracies counted by hand on the same rows: before and after are the same rows.
    before_preds, after_preds = expected["preds"]
    mask = np.ones(len(expected["attributes"]), dtype=bool)
    for column, value in worst["slice"].items():
        mask &= expected["attributes"][column].astype(str).to_numpy() == value
    for stage, preds in (("before", before_preds), ("after", after_preds)):
        correct = preds.predictions(0.5) == preds.labels
        assert worst[stage]["value"] == pytest.approx(correct[mask].mean(), abs=1e-12)
        assert worst[stage]["complement"] == pytest.approx(correct[~mask].mean(), abs=1e-12)
    # The run's seed drives the bootstrap intervals.
    other = find_slices(before_preds, expected["attributes"], metric="accuracy", max_depth=2, min_size=50,
                        n_boot=200, seed=0, device="cpu")
    assert next(s for s in other.slices if s["slice"] == first["slice"])["ci"] != first["ci"]
    assert json.loads(Path(run["artifacts"]["result"]).read_text())["slices"] == block
    assert run["timings"]["slices"] > 0


def test_slices_say_why_when_they_cannot_be_computed(run, expected, tmp_path):
    from types import SimpleNamespace

    from fairaudit.data import load_dataset
    from fairaudit.jobs.execute import _slices

    before, after = expected["preds"]
    attributes = expected["attributes"]
    with pytest.raises(FairauditError, match="nothing to slice"):
        before_after_slices(before, after, pd.DataFrame({"one": ["x"] * len(before)}))
    with pytest.raises(FairauditError, match="do not cover the same test rows"):
        shifted = Predictions(**{**before.__dict__, "indices": before.indices + 1})
        before_after_slices(before, shifted, attributes)
    # Rows in another order are matched on their sample indices: the same block.
    order = np.random.default_rng(0).permutation(len(after))
    shuffled = Predictions(**{**after.__dict__, "labels": after.labels[order], "probs": after.probs[order],
                              "sensitive": after.sensitive[order], "indices": after.indices[order]})
    test = load_dataset("adult", "test")
    everything = dataset_attributes(test, before.indices)
    again = before_after_slices(before, shuffled, everything, seed=SEED, left_out=["income"])
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in run["slices"].items()
                                                                   if k != "seconds"}

    spec = SimpleNamespace(seed=SEED)
    # A resumed run reads the before predictions its first attempt stored; without them it says so.
    stored = _slices(test, None, after, Path(run["artifacts"]["result"]).parent, spec, "cpu")
    assert {k: v for k, v in stored.items() if k != "seconds"} == {k: v for k, v in run["slices"].items()
                                                                    if k != "seconds"}
    resumed = _slices(test, None, after, tmp_path, spec, "cpu")
    assert resumed == unavailable("the stored before audit of this resumed run has no predictions file to slice.")
    assert resumed["before"] is None and resumed["worst_before_after"] is None
    labels_only = SimpleNamespace(target="income", attributes=test.attributes[["income"]],
                                  value_names=test.value_names)  # a dataset whose only attribute is the target
    only_target = _slices(labels_only, before, after, tmp_path, spec, "cpu")
    assert only_target["before"] is None and only_target["reason"].startswith("no attribute column")


def test_run_page_shows_the_slices_section(run, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    import appkit.state

    monkeypatch.setenv("FAIRAUDIT_HOME", str(Path(run["artifacts"]["result"]).parents[2]))
    monkeypatch.setattr(appkit.state, "start_run", lambda setup: None)  # no demo audit in this workspace
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("app_pages/run.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == f"Run {run['run_id']}"
    assert "Slices before → after" in [h.value for h in at.subheader]
    worst = run["slices"]["worst_before_after"]
    table = next(d for d in at.dataframe if "Gap before" in d.value.columns).value
    assert table["Slice"].iloc[0] == describe(worst["slice"]) and table["Role"].iloc[0].startswith("worst before")
    assert table["Gap before"].iloc[0] == worst["before"]["gap"]
    assert table["Gap after"].iloc[0] == worst["after"]["gap"]
    shown_after = [s for s, r in zip(table["Slice"], table["Role"]) if "after" in r]
    assert shown_after == [describe(s["slice"]) for s in run["slices"]["after"]][:len(shown_after)]
    assert len(shown_after) == 5
    assert any(describe(worst["slice"]) in m.value for m in at.markdown)  # the summary sentence names it
    assert [c for c in at.get("plotly_chart") if "run-slices-chart" in c.proto.id]


def test_report_holds_the_slices_table(run, tmp_path):
    from fairaudit.report import build_report
    from fairaudit.report.slices import slices_part

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRAUDIT_HOME", str(Path(run["artifacts"]["result"]).parents[2]))
        document = build_report([run["run_id"]], explain=False, embed=False)
    worst = run["slices"]["worst_before_after"]
    page = document.to_html()
    assert "<h4>Slices before → after</h4>" in page
    assert f"<td>{describe(worst['slice'])}</td>" in page
    assert f"<td>{worst['before']['gap']:+.3f}</td>" in page and f"<td>{worst['after']['gap']:+.3f}</td>" in page
    for entry in run["slices"]["after"]:
        assert f"<td>{describe(entry['slice'])}</td>" in page
    data = json.loads(document.write_json(tmp_path / "report.json").read_text())
    part = data["sections"]["metrics"]["runs"][run["run_id"]]["slices"]
    assert part["available"] is True and part["worst_before_after"] == worst
    assert part["table"][0]["Slice"] == describe(worst["slice"])
    assert part["table"][0]["Gap before"] == worst["before"]["gap"]
    assert part["table"][0]["Gap after"] == worst["after"]["gap"]
    assert part["after"] == run["slices"]["after"]
    # A run without slices (recorded before they existed, or without usable attributes) says why.
    blocks, missing = slices_part({"run_id": "r1"})
    assert missing == {"available": False, "reason": "this run recorded no slices"}
    blocks, none = slices_part({"run_id": "r1", "slices": unavailable("no attribute column has two or more "
                                                                       "values, so there is nothing to slice.")})
    assert none["available"] is False and "nothing to slice" in "".join(blocks)


def test_summary_says_whether_the_harm_moved():
    from fairaudit.views.slices_compare import slices_summary, slices_table

    def entry(gap, q, significant, **slice_):
        return {"slice": slice_, "n": 80, "value": 0.8 + gap, "complement": 0.8, "gap": gap, "ci": [gap, gap],
                "p_value": q, "q_value": q, "significant": significant, "implied_by": None}

    worst, other = entry(-0.3, 1e-6, True, sex="F"), entry(-0.2, 1e-4, True, race="B")
    block = {"metric": "accuracy", "alpha": 0.05, "before": [worst], "reason": None,
             "worst_before_after": {"slice": {"sex": "F"}, "n": 80, "before": worst,
                                    "after": entry(-0.01, 0.7, False, sex="F"), "rank_after": None,
                                    "still_significant": False},
             "after": [other], "after_top_before": [entry(-0.05, 0.3, False, race="B")]}
    assert slices_summary(block) == ("The worst slice before, sex = F (gap -0.300, q = 1e-06), is no longer "
                                     "significantly worse off after mitigation (gap -0.010, q = 0.7). The worst "
                                     "slice after is race = B (gap -0.200, q = 0.0001): the harm moved there.")
    table = slices_table(block)
    assert table["Role"].tolist() == ["worst before", "#1 after"]
    assert table["Gap change"].round(12).tolist() == [0.29, -0.15]
    still = {**block, "after": [entry(-0.25, 1e-5, True, sex="F")], "after_top_before": [worst],
             "worst_before_after": {**block["worst_before_after"], "after": entry(-0.25, 1e-5, True, sex="F"),
                                    "rank_after": 1, "still_significant": True}}
    assert slices_summary(still) == ("The worst slice before, sex = F (gap -0.300, q = 1e-06), is still the worst "
                                     "slice after mitigation (gap -0.250, q = 1e-05).")
    assert slices_table(still)["Role"].tolist() == ["worst before, #1 after"]
    assert slices_summary(unavailable("no attribute column has two or more values, so there is nothing to "
                                      "slice.")).startswith("Slices were not computed: no attribute column")
