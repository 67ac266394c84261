"""The Compare engine (runs table, Pareto front, sweeps, seed repeats, checks), the ``sweep`` command and the
Compare page.

Hand-made run dicts test the arithmetic; three real ``noop_finetune`` runs on Adult (from a sweep of the
learning rate over two seeds, run in this process) test the registry path, the saved predictions and the
page. No worker process is started: submitted runs stay queued.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairaudit import compare, jobs
from fairaudit.audit import Predictions
from fairaudit.cli import main
from fairaudit.compare.checks import composition_table, mirror_warnings, split_display
from fairaudit.compare.table import display_table, filter_table
from fairaudit.errors import FairauditError

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "app.py")
COMPARE = "app_pages/compare.py"


# ---------------------------------------------------------------------------- hand-made runs


def audit(accuracy, deo, spd=0.1, *, balanced=None, ci=0.02, groups=None):
    """A minimal audit JSON with the keys the compare engine reads."""
    disparities = {"spd": spd, "deo": deo, "eod": deo / 2, "aaod": deo / 4, "aed": 0.05,
                   "worst_group_accuracy": accuracy - 0.05}
    overall = {"accuracy": accuracy, "balanced_accuracy": accuracy if balanced is None else balanced, "n": 100}
    intervals = {k: [v - ci, v + ci] for k, v in {**disparities, **overall}.items() if k != "n"}
    groups = groups or [{"group": "g=0", "n": 50, "selection_rate": 0.4}, {"group": "g=1", "n": 50,
                                                                             "selection_rate": 0.5}]
    return {"overall": overall, "disparities": disparities, "ci": intervals, "groups": groups,
            "meta": {"n_classes": 2}}


def run(run_id, method, after, *, before=None, seed=0, settings=None, model="demo", sweep=None, swept=(),
        **extra):
    spec = {"method": method, "dataset": "synthetic-faces", "model": model, "target": "Smiling",
            "sensitive": ["Male"], "data_options": {"bias": 0.9}, "settings": settings or {}, "seed": seed,
            "tags": {"sweep": sweep, "swept": list(swept)} if sweep else {}}
    return {"run_id": run_id, "method": method, "dataset": "synthetic-faces", "model": model, "seed": seed,
            "spec": spec, "config": {"epochs": 1, **(settings or {})}, "before": before or audit(0.90, 0.30),
            "after": after, "seconds": 12.5, **extra}


def test_runs_table_has_one_row_per_run_and_one_baseline_per_setup():
    runs = [
        run("r1", "faap", audit(0.85, 0.10), robustness={"before": {"s_r": 0.4},  # as a number or per attack
                                                         "after": {"s_r": {"fgsm": 0.8, "pgd": 0.7},
                                                                   "adversarial": {"fgsm": {}, "pgd": {}}}},
            leakage={"attributes": {"Male": {"before": {"accuracy": 0.95, "auc": 0.99},
                                             "after": {"accuracy": 0.62, "auc": 0.70}}}}),
        run("r2", "reweight", audit(0.88, 0.20)),  # an older run: no robustness, no leakage
        run("r3", "erm", audit(0.50, 0.0, balanced=0.5)),  # collapsed: chance-level balanced accuracy
        run("r4", "erm", audit(0.80, 0.05), model="/models/other.safetensors", before=audit(0.70, 0.4)),
    ]
    table = compare.runs_table(runs)
    assert list(table["kind"]) == ["run"] * 4 + ["baseline"] * 2  # two setups: demo and other.safetensors
    r1 = table.set_index("run_id").loc["r1"]
    assert (r1["accuracy"], r1["before_accuracy"], r1["deo"], r1["before_deo"]) == (0.85, 0.90, 0.10, 0.30)
    assert (r1["deo_low"], r1["deo_high"]) == pytest.approx((0.08, 0.12))
    assert (r1["s_r"], r1["before_s_r"]) == (0.7, 0.4)
    assert (r1["leakage"], r1["before_leakage"]) == (0.62, 0.95)
    assert r1["status"] == "done" and r1["seconds"] == 12.5 and not r1["collapsed"]
    r2 = table.set_index("run_id").loc["r2"]
    assert math.isnan(r2["s_r"]) and math.isnan(r2["leakage"]) and r2["eod"] == 0.10
    assert table.set_index("run_id").loc["r3", "collapsed"]
    baselines = table[table["kind"] == "baseline"].set_index("model")
    assert baselines.loc["demo", "accuracy"] == 0.90 and baselines.loc["demo", "deo"] == 0.30
    assert baselines.loc["demo", "s_r"] == 0.4  # the before robustness of the first run of the setup
    assert baselines.loc["/models/other.safetensors", "accuracy"] == 0.70

    # Filters keep the baselines; the display names every metric before and after.
    only_faap = filter_table(table, method=["faap"])
    assert list(only_faap["run_id"]) == ["r1", "baseline:r1", "baseline:r4"]
    shown = display_table(table)
    assert {"Accuracy", "Accuracy before", "S_R (robustness)", "Leakage before", "Seconds"} <= set(shown.columns)


def test_one_predicted_class_counts_as_collapsed():
    single = audit(0.7, 0.0, groups=[{"n": 60, "selection_rate": 0.0}, {"n": 40, "selection_rate": 0.0}])
    assert compare.is_collapsed(single)
    assert not compare.is_collapsed(audit(0.7, 0.0))
    assert not compare.is_collapsed(None)


def test_pareto_front_on_known_points():
    acc = [0.90, 0.85, 0.80, 0.70, 0.88, np.nan, 0.90]
    gap = [0.30, 0.10, 0.05, 0.20, 0.20, 0.00, 0.30]
    # (0.70, 0.20) is dominated by (0.85, 0.10); (0.88, 0.20) by nobody; the NaN point never counts;
    # the duplicate of the most accurate point stays on the front with it.
    assert list(compare.pareto_front(acc, gap)) == [True, True, True, False, True, False, True]
    # Higher-is-better second axis (e.g. worst-group accuracy): only (0.9, 0.3) survives.
    assert list(compare.pareto_front(acc, gap, minimize_y=False)) == [True, False, False, False, False, False,
                                                                      True]


def test_tradeoff_figure_marks_baseline_front_error_bars_and_sizes():
    runs = [run("r1", "faap", audit(0.85, 0.10), robustness={"after": {"s_r": 1.0}}),
            run("r2", "faap", audit(0.80, 0.20)),
            run("r3", "erm", audit(0.95, 0.25))]
    table = compare.runs_table(runs)
    fig = compare.tradeoff_figure(table, "deo")
    traces = {t.name: t for t in fig.data}
    assert {"faap", "erm", "baseline (no mitigation)", "Pareto front"} <= set(traces)
    baseline = traces["baseline (no mitigation)"]
    assert list(baseline.x) == [0.90] and list(baseline.y) == [0.30] and baseline.marker.symbol == "star"
    front = traces["Pareto front"]  # r2 (0.80, 0.20) is dominated by r1; the baseline by r3
    assert list(front.x) == [0.85, 0.95] and list(front.y) == [0.10, 0.25]
    faap = traces["faap"]
    assert list(faap.error_y.array) == pytest.approx([0.02, 0.02])
    assert faap.marker.size[0] > faap.marker.size[1]  # S_R 1.0 vs unknown
    assert "run r1" in faap.hovertext[0] and "S_R 1.000" in faap.hovertext[0]
    with pytest.raises(FairauditError, match="unknown metric 'nope'"):
        compare.tradeoff_figure(table, "nope")
    radar = compare.radar_figure(table, ["r1", "baseline:r1"])
    assert len(radar.data) == 2 and "1 − DEO" in list(radar.data[0].theta)
    assert radar.data[0].r[list(radar.data[0].theta).index("1 − DEO")] == pytest.approx(0.9)


def test_seed_repeats_are_grouped_into_mean_and_std():
    runs = [run(f"s{seed}", "faap", audit(acc, deo), seed=seed, settings={"beta": 1.0})
            for seed, (acc, deo) in enumerate([(0.80, 0.10), (0.84, 0.14), (0.82, 0.12)])]
    runs.append(run("other", "faap", audit(0.70, 0.05), settings={"beta": 2.0}))
    summary = compare.seed_summary(compare.runs_table(runs)).set_index("settings")
    repeated = summary.loc["beta=1.0"]
    assert repeated["n_seeds"] == 3 and repeated["seeds"] == "0,1,2"
    assert repeated["accuracy"] == pytest.approx(0.82) and repeated["accuracy_std"] == pytest.approx(0.02)
    assert repeated["deo"] == pytest.approx(0.12) and repeated["deo_std"] == pytest.approx(0.02)
    assert summary.loc["beta=2.0", "n_seeds"] == 1 and math.isnan(summary.loc["beta=2.0", "accuracy_std"])
    shown = display_table(compare.runs_table(runs), aggregate_seeds=True)
    assert "0.820 ± 0.020" in list(shown["Accuracy"])


def test_sweep_points_follow_the_swept_value_and_flag_collapse():
    runs = [run(f"p{v}", "faap", audit(acc, deo, balanced=bal), settings={"beta": v}, sweep="sw", swept=["beta"])
            for v, acc, deo, bal in ((2.0, 0.5, 0.0, 0.5), (0.5, 0.85, 0.2, None), (1.0, 0.80, 0.1, None))]
    table = compare.runs_table(runs)
    points = compare.sweep_points(table, "sw")
    assert list(points["value"]) == [0.5, 1.0, 2.0] and list(points["label"]) == ["beta=0.5", "beta=1.0",
                                                                                   "beta=2.0"]
    assert list(points["collapsed"]) == [False, False, True]
    fig = compare.sweep_figure(table, "sw")
    names = [t.name for t in fig.data]
    assert names == ["faap", "collapsed", "baseline (no mitigation)"]
    assert list(fig.data[0].x) == [0.85, 0.80, 0.5]  # joined in order of beta, every value shown


# ---------------------------------------------------------------------------- sweeps


def test_sweep_specs_cover_the_grid_times_the_seeds(monkeypatch):
    monkeypatch.setenv("FAIRAUDIT_TEST_METHODS", "1")
    base = jobs.JobSpec("noop_finetune", "adult", device="cpu", settings={"steps": 2})
    sweep = compare.sweep_specs(base, ["lr=0.001,0.01,0.1", "epochs=1,2"], seeds=2, sweep_id="sw-1")
    assert len(sweep.specs) == 3 * 2 * 2 and sweep.seeds == [0, 1]
    assert sweep.grid == {"lr": [0.001, 0.01, 0.1], "epochs": [1, 2]}  # coerced to the settings' types
    points = {(s.settings["lr"], s.settings["epochs"], s.seed) for s in sweep.specs}
    assert len(points) == 12 and all(s.settings["steps"] == 2 for s in sweep.specs)
    assert all(s.tags == {"sweep": "sw-1", "swept": ["lr", "epochs"]} for s in sweep.specs)

    submitted = []
    def fake_submit(spec, ray_address=None):
        submitted.append(spec)
        return f"id{len(submitted)}"

    launched = compare.launch_sweep(base, {"lr": [0.01, 0.1]}, seeds=3, submit=fake_submit)
    assert launched.run_ids == [f"id{i}" for i in range(1, 7)]
    assert [(s.settings["lr"], s.seed) for s in submitted] == [(0.01, 0), (0.01, 1), (0.01, 2), (0.1, 0),
                                                                 (0.1, 1), (0.1, 2)]

    for grid, message in ((["lr"], "a grid is given as setting=v1,v2"), (["lr=0.1,0.1"], "repeats a value"),
                          (["lr=1", "epochs=1", "steps=1"], "at most 2 settings"),
                          (["lr=fast"], "setting 'lr' of 'noop_finetune' expects a float"),
                          (["nope=1"], "has no setting 'nope'")):
        with pytest.raises(FairauditError, match=message):
            compare.sweep_specs(base, grid)
    with pytest.raises(FairauditError, match="positive integer"):
        compare.sweep_specs(base, ["lr=0.1"], seeds=0)


# ---------------------------------------------------------------------------- checks on hand-made data


def _predictions(indices, labels, scores, young):
    probs = np.stack([1 - scores, scores], 1).astype(np.float32)
    return Predictions(labels=labels, probs=probs, sensitive=np.zeros((len(labels), 1), np.int64),
                       indices=np.asarray(indices), sensitive_names=["Male"],
                       value_names={"Male": ["Female", "Male"]}, class_names=["no", "yes"])


def test_gerrymandering_flags_the_group_that_got_worse():
    rng = np.random.default_rng(0)
    n = 200
    labels = rng.integers(0, 2, n)
    young = (np.arange(n) % 2).astype(np.int64)  # Young=old for even samples, young for odd ones
    before = _predictions(np.arange(n), labels, labels * 0.8 + 0.1, young)  # every prediction right
    after_scores = labels * 0.8 + 0.1
    broken = np.flatnonzero(young == 0)[:30]  # 30 of the 100 "old" samples now wrong
    after_scores[broken] = 1 - after_scores[broken]
    order = rng.permutation(n)  # the after pass listed the samples in another order
    after = _predictions(order, labels[order], after_scores[order], young[order])
    attributes = pd.DataFrame({"Young": young, "Skin_Tone": np.arange(n) % 3 * 0})
    result = compare.gerrymandering_table(before, after, attributes,
                                          {"Young": ["old", "young"], "Skin_Tone": ["light", "mid", "dark"]},
                                          mitigated=["Male"], device="cpu")
    table = result.table.set_index(["attribute", "group"])
    assert table.loc[("Young", "old"), "accuracy_before"] == 1.0
    assert table.loc[("Young", "old"), "accuracy_after"] == pytest.approx(0.70)
    assert table.loc[("Young", "old"), "worse"] and not table.loc[("Young", "young"), "worse"]
    assert table.loc[("Skin_Tone", "light"), "delta_accuracy"] == pytest.approx(-0.15)
    assert list(result.table["worse"]) == [True, False, True]
    assert result.warnings[0] == "Young=old: accuracy fell from 1.000 to 0.700 after mitigating on Male (n = 100)."
    assert any("accuracy gap across Young groups widened from 0.000 to 0.300" in w for w in result.warnings)
    summary = result.summary.set_index("attribute")
    assert summary.loc["Young", "aed_after"] == pytest.approx(0.30)


def _split_run(run_id, train, val, test):
    """``train``/``val``/``test`` are (before, after) DEO values."""
    splits = {name: {"before": audit(0.9, b), "after": audit(0.9, a)}
              for name, (b, a) in (("train", train), ("val", val), ("test", test))}
    return run(run_id, "eq_loss", splits["test"]["after"], before=splits["test"]["before"], splits=splits)


def test_train_gap_zero_and_validation_gain_warnings():
    vacuous = _split_run("vacuous", train=(0.05, 0.0), val=(0.10, 0.09), test=(0.10, 0.12))
    no_transfer = _split_run("margins", train=(0.05, 0.04), val=(0.068, 0.005), test=(0.021, 0.049))
    fine = _split_run("fine", train=(0.06, 0.04), val=(0.10, 0.05), test=(0.10, 0.06))
    result = compare.split_disparities([vacuous, no_transfer, fine], metrics=["deo"])
    assert len(result.table) == 6
    row = result.table[(result.table["run_id"] == "vacuous") & (result.table["stage"] == "after")].iloc[0]
    assert (row["train"], row["val"], row["test"]) == (0.0, 0.09, 0.12)
    assert len(result.warnings) == 2
    assert result.warnings[0].startswith("Run vacuous (eq_loss): the DEO gap is 0.000 on the training split but "
                                         "0.120 on test.")
    assert result.warnings[1].startswith("Run margins (eq_loss): DEO improved by 0.063 on the validation split "
                                         "but by -0.028 on test (0.021 → 0.049)")


REASON = "only group 'color=red' defines the true-positive rate of class '3' (no other group has samples of class '3')"


def _undefined_eod(accuracy, deo):
    """An audit whose EOD is undefined (``null`` with its reason), as the metrics engine writes it."""
    audit_json = audit(accuracy, deo)
    audit_json["disparities"]["eod"] = None
    audit_json["ci"]["eod"] = None
    audit_json["undefined"] = {"eod": REASON}
    return audit_json


def test_undefined_gap_is_na_with_its_reason_and_left_out_of_seed_means():
    runs = [run("u0", "faap", _undefined_eod(0.80, 0.10), seed=0, settings={"beta": 1.0}),
            run("u1", "faap", audit(0.84, 0.14), seed=1, settings={"beta": 1.0}),
            run("u2", "faap", audit(0.82, 0.12), seed=2, settings={"beta": 1.0})]
    table = compare.runs_table(runs)
    row = table.set_index("run_id").loc["u0"]
    assert math.isnan(row["eod"]) and math.isnan(row["eod_low"]) and row["undefined"] == {"eod": REASON}
    assert row["deo"] == 0.10 and row["before_undefined"] == {}
    shown = display_table(table).set_index("Run")
    assert shown.loc["u0", "EOD"] == "n/a" and shown.loc["u1", "EOD"] == "0.070"
    assert shown.loc["u0", "Undefined"] == f"EOD n/a: {REASON}" and shown.loc["u1", "Undefined"] == ""
    assert shown["DEO"].dtype.kind == "f"  # a column without an undefined value stays numeric
    summary = compare.seed_summary(table).set_index("kind").loc["run"]
    assert summary["eod"] == pytest.approx((0.07 + 0.06) / 2)  # reading null as 0 would give 0.0433
    assert summary["eod_n_undefined"] == 1 and summary["deo_n_undefined"] == 0
    aggregated = display_table(table, aggregate_seeds=True).set_index("Settings")
    assert aggregated.loc["beta=1.0", "EOD"] == "0.065 ± 0.007 (1 of 3 n/a)"
    alone = display_table(compare.runs_table(runs[:1]), aggregate_seeds=True).set_index("Settings")
    assert alone.loc["beta=1.0", "EOD"] == "n/a"


def test_trade_off_plot_names_the_runs_it_cannot_place_and_why():
    runs = [run("u0", "faap", _undefined_eod(0.80, 0.10), seed=0), run("u1", "faap", audit(0.84, 0.14), seed=1)]
    table = compare.runs_table(runs)
    assert compare.unplotted_runs(table, "eod") == [f"run u0 (faap): EOD n/a: {REASON}"]
    assert compare.unplotted_runs(table, "deo") == []
    figure = compare.tradeoff_figure(table, "eod")
    placed = [y for trace in figure.data if trace.name == "faap" for y in trace.y if not math.isnan(y)]
    assert placed == [pytest.approx(0.07)]  # the undefined one is the run the caption names


def test_split_check_shows_an_undefined_training_gap_as_na_not_zero():
    splits = {"train": {"before": _undefined_eod(0.99, 0.0), "after": _undefined_eod(0.99, 0.0)},
              "test": {"before": audit(0.6, 0.9), "after": audit(0.6, 0.8)}}
    confounded = run("conf", "erm", splits["test"]["after"], before=splits["test"]["before"], splits=splits)
    result = compare.split_disparities([confounded], metrics=["eod"])
    after = result.table.set_index("stage").loc["after"]
    assert math.isnan(after["train"]) and after["test"] == pytest.approx(0.4) and math.isnan(after["val"])
    assert after["undefined"] == f"train: {REASON}"
    shown = split_display(result.table).set_index("stage").loc["after"]
    assert (shown["train"], shown["val"], shown["test"]) == ("n/a", "", "0.400")
    assert result.warnings == [f"Run conf (erm): the EOD gap is undefined on the training split ({REASON}) but "
                               "0.400 on test; the training split cannot show this disparity, which does not make "
                               "it 0."]


def test_data_composition_warns_when_test_mirrors_train():
    faces = compare.data_composition("synthetic-faces", "Smiling", ["Male"], bias=0.9)
    rates = faces.table.set_index(["split", "group"])["base_rate"]
    assert rates[("train", "Male=Female")] == pytest.approx(0.9) and rates[("train", "Male=Male")] == pytest.approx(0.1)
    assert rates[("test", "Male=Female")] == pytest.approx(0.5)  # the test split is balanced: nothing mirrors
    by_split = faces.summary.set_index("split")
    assert by_split.loc["train", "base_rate_gap"] == pytest.approx(0.8) and by_split.loc["test", "base_rate_gap"] == 0
    assert faces.warnings == []

    # A test split drawn like the training split repeats its imbalance: warned.
    frame = pd.DataFrame({"y": [1] * 30 + [0] * 50 + [1] * 5 + [0] * 15, "g": [0] * 80 + [1] * 20})
    groups, splits = composition_table({"train": frame, "test": frame.copy()}, "y", ["g"],
                                       {"y": ["no", "yes"], "g": ["a", "b"]})
    assert list(splits["share_gap"]) == pytest.approx([0.6, 0.6])
    warnings = mirror_warnings(splits)
    assert len(warnings) == 2 and "group sizes" in warnings[0] and "label balance" in warnings[1]
    with pytest.raises(FairauditError, match="has no split 'holdout'"):
        compare.data_composition("synthetic-faces", splits=["holdout"])


# ---------------------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def sweep_home(tmp_path_factory, tiny_model):
    """A workspace holding three finished runs of a sweep of ``noop_finetune`` on Adult (lr × seeds)."""
    home = tmp_path_factory.mktemp("compare_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRAUDIT_HOME", str(home))
        mp.setenv("FAIRAUDIT_TEST_METHODS", "1")
        from fairaudit.jobs import testing

        testing.register()
        base = jobs.JobSpec("noop_finetune", "adult", model=tiny_model, device="cpu", n_boot=20,
                            settings={"epochs": 1, "steps": 2}, robustness_samples=32, split_samples=300)
        sweep = compare.sweep_specs(base, ["lr=0.001,0.05"], seeds=2, sweep_id="sweep-test")
        ids = [jobs.run_job(spec)["run_id"] for spec in sweep.specs[:3]]  # lr=0.001 × seeds 0, 1; lr=0.05 × 0
        yield {"home": home, "ids": ids, "model": tiny_model}


def test_runs_table_reads_the_registry(sweep_home):
    table = compare.runs_table()
    runs = table[table["kind"] == "run"]
    assert sorted(runs["run_id"]) == sorted(sweep_home["ids"]) and (table["kind"] == "baseline").sum() == 1
    assert set(runs["sweep"]) == {"sweep-test"} and set(runs["swept"]) == {"lr"}
    recorded = jobs.get_run(sweep_home["ids"][0])
    row = table.set_index("run_id").loc[sweep_home["ids"][0]]
    assert row["deo"] == recorded["after"]["disparities"]["deo"]
    assert row["before_accuracy"] == recorded["before"]["overall"]["accuracy"]
    s_r = (recorded.get("summary") or {}).get("after", {}).get("s_r")
    assert (math.isnan(row["s_r"]) if s_r is None else row["s_r"] == s_r)
    summary = compare.seed_summary(table)
    assert sorted(summary["n_seeds"]) == [1, 1, 2]
    splits = compare.split_disparities([recorded], metrics=["deo"]).table.set_index("stage")
    assert splits.loc["after", "test"] == recorded["after"]["disparities"]["deo"]
    train = (compare.full_record(recorded).get("splits") or {}).get("train")
    if train:  # runs that audit the training split too
        assert splits.loc["after", "train"] == train["after"]["disparities"]["deo"]
    points = compare.sweep_points(table, "sweep-test")
    assert list(points["value"]) == [0.001, 0.05]

    assert compare.other_attributes("adult") == ["race", "race_binary", "age_group"]
    result = compare.gerrymandering(recorded, device="cpu")  # Adult: mitigated on sex, grouped by the rest
    assert set(result.table["attribute"]) == {"race", "race_binary", "age_group"}
    assert result.table["n"].groupby(result.table["attribute"]).sum().eq(13567).all()
    with pytest.raises(FairauditError, match="has no attribute 'Smiling'"):
        compare.gerrymandering(recorded, ["Smiling"])


def test_sweep_command_queues_tagged_runs(sweep_home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAIRAUDIT_HOME", str(tmp_path / "home"))
    original = jobs.submit
    monkeypatch.setattr(jobs, "submit", lambda spec, ray_address=None: original(spec, start=False))
    out = tmp_path / "sweep.json"
    code = main(["sweep", "noop_finetune", "--dataset", "adult", "--model", sweep_home["model"], "--grid",
                 "lr=0.001,0.01,0.1", "--seeds", "2", "--set", "steps=2", "--device", "cpu", "--json", str(out)])
    assert code == 0
    written = json.loads(out.read_text())
    assert len(written["runs"]) == 6 and written["grid"] == {"lr": [0.001, 0.01, 0.1]} and written["seeds"] == [0, 1]
    assert capsys.readouterr().out.startswith(f"sweep {written['sweep']}: 6 runs (lr ∈ {{0.001, 0.01, 0.1}}")
    queued = [jobs.get_run(r) for r in written["runs"]]
    assert {r["status"] for r in queued} == {"queued"}
    assert all(r["spec"]["tags"] == {"sweep": written["sweep"], "swept": ["lr"]} for r in queued)
    assert sorted((r["spec"]["settings"]["lr"], r["seed"]) for r in queued)[:2] == [(0.001, 0), (0.001, 1)]

    assert main(["sweep", "noop_finetune", "--dataset", "adult", "--grid", "lr=1", "--grid", "steps=1",
                 "--grid", "epochs=1"]) == 2
    assert "at most 2 settings" in capsys.readouterr().err
    assert main(["sweep", "noop_finetune", "--dataset", "adult"]) == 2
    assert "give at least one --grid" in capsys.readouterr().err


def test_compare_page_renders_finished_runs_and_launches_a_sweep(sweep_home, monkeypatch):
    import appkit.state

    monkeypatch.setattr(appkit.state, "start_run", lambda setup: None)
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.switch_page(COMPARE).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Compare runs"
    table = at.dataframe(key="compare-table").value
    assert len(table) == 4 and sorted(table["Run"])[:3] == sorted(sweep_home["ids"])
    assert len(at.get("plotly_chart")) >= 3  # trade-off, radar, sweep curve (+ composition chart)
    assert at.selectbox(key="compare-sweep-shown").value == "sweep-test"
    assert at.multiselect(key="compare-gerry-attrs").value == ["race", "race_binary", "age_group"]
    # Adult's test split is drawn like its training split.
    assert any("mirrors the training split" in w.value for w in at.warning)

    at.toggle(key="compare-aggregate").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    aggregated = at.dataframe(key="compare-table").value
    assert len(aggregated) == 3 and list(aggregated["Seeds"]).count(2) == 1
    assert all("±" in v for v, n in zip(aggregated["Accuracy"], aggregated["Seeds"]) if n == 2)

    original = jobs.submit
    monkeypatch.setattr(jobs, "submit", lambda spec, ray_address=None: original(spec, start=False))
    at.selectbox(key="compare-sweep-method").set_value("noop_finetune").run()
    at.selectbox(key="compare-sweep-dataset:noop_finetune").set_value("adult").run()
    at.selectbox(key="compare-sweep-p1:noop_finetune").set_value("lr")
    at.text_input(key="compare-sweep-v1:noop_finetune").input("0.01, 0.02")
    at.number_input(key="compare-sweep-k").set_value(2)
    at.text_input(key="compare-sweep-model").input(sweep_home["model"])
    at.text_input(key="compare-sweep-fixed:noop_finetune").input("steps=2")
    next(b for b in at.button if b.label == "Launch sweep").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    sweep_id = at.session_state["compare-sweep"]
    assert at.success[0].value.startswith(f"Sweep {sweep_id}: 4 runs queued")
    launched = [jobs.get_run(r) for r in at.session_state["compare-sweep-runs"]]
    assert sorted((r["spec"]["settings"]["lr"], r["seed"]) for r in launched) == [(0.01, 0), (0.01, 1), (0.02, 0),
                                                                                   (0.02, 1)]
    assert all(r["status"] == "queued" and r["spec"]["tags"]["sweep"] == sweep_id for r in launched)
    assert [p.proto.text for p in at.get("progress")] == [f"Sweep {sweep_id} · 0/4 finished · 4 queued"]
    followed = [d.value for d in at.dataframe if "Progress" in d.value.columns]
    assert [sorted(f["Run"]) for f in followed] == [sorted(r["id"] for r in launched)]
    for run_id in at.session_state["compare-sweep-runs"]:  # leave no queued run behind for other tests
        jobs.cancel(run_id)
