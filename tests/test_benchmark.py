"""``fairaudit benchmark``: the interval arithmetic on hand-made numbers, the rows and controls, the controls'
own settings, the JSON contract on Adult (worker pool) and on small synthetic faces, failed members and reuse,
and the Compare page's Benchmark view."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fairaudit import jobs
from fairaudit.benchmark import aggregate, paired_comparison, resolve_rows, summarize, to_markdown
from fairaudit.benchmark.runner import load_manifest
from fairaudit.cli import main
from fairaudit.errors import FairauditError
from fairaudit.mitigation import METHODS, make_config

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "app.py")
COMPARE = "app_pages/compare.py"
REQUIRED = {"accuracy", "balanced_accuracy", "deo", "spd", "eod", "worst_group_accuracy"}
T_975 = {1: 12.706204736, 2: 4.302652730}  # Student-t quantiles for 1 and 2 degrees of freedom


# ---------------------------------------------------------------------------- interval arithmetic


def test_summary_over_seeds_is_mean_sample_std_and_t_interval():
    s = summarize([0.80, 0.84, 0.82])
    assert s["mean"] == pytest.approx(0.82) and s["std"] == pytest.approx(0.02)
    half = T_975[2] * 0.02 / math.sqrt(3)  # 0.049683
    assert s["ci"] == pytest.approx([0.82 - half, 0.82 + half]) and s["ci"][0] == pytest.approx(0.770317, abs=1e-6)
    assert s["values"] == [0.80, 0.84, 0.82]
    one = summarize([0.7])
    assert one == {"mean": 0.7, "std": None, "ci": None, "values": [0.7], "n_undefined": 0}
    missing = summarize([0.5, None, float("nan")])
    assert missing["values"] == [0.5] and missing["n_undefined"] == 2  # missing seeds are left out, and counted
    assert summarize([None, None]) == {"mean": None, "std": None, "ci": None, "values": [], "n_undefined": 2}


def test_paired_differences_give_the_interval_and_holds_flips_with_the_direction():
    method = {0: 0.30, 1: 0.25, 2: 0.35}
    control = {0: 0.40, 1: 0.37, 2: 0.41, 3: 0.10}  # seed 3 has no partner: left out
    c = paired_comparison(method, control, "deo")
    # differences −0.10, −0.12, −0.06: mean −0.09333, sd 0.030551, half-width 4.3027 · 0.030551 / √3 = 0.075893
    assert c["n"] == 3 and c["seeds"] == [0, 1, 2] and c["direction"] == "lower"
    assert c["mean_diff"] == pytest.approx(-0.0933333, abs=1e-6)
    assert c["ci"] == pytest.approx([-0.169226, -0.017441], abs=1e-5)
    assert c["holds"] and c["verdict"] == "better"
    flipped = paired_comparison(control, method, "deo")  # the control is the lower one now
    assert flipped["mean_diff"] == pytest.approx(0.0933333, abs=1e-6) and not flipped["holds"]
    assert flipped["verdict"] == "worse"
    # Accuracy: higher is better, so the same numbers read the other way round.
    assert paired_comparison(control, method, "accuracy")["holds"]
    assert not paired_comparison(method, control, "accuracy")["holds"]
    # Pairing by seed: a constant gain holds although the seeds scatter far more than the gain.
    a = {0: 0.5, 1: 0.2, 2: 0.8}
    paired = paired_comparison(a, {k: v + 0.05 for k, v in a.items()}, "spd")
    assert paired["ci"] == pytest.approx([-0.05, -0.05]) and paired["holds"]
    # An interval that contains 0 does not hold; one seed gives no interval.
    mixed = paired_comparison({0: 0.1, 1: 0.3}, {0: 0.2, 1: 0.2}, "deo")
    assert mixed["mean_diff"] == pytest.approx(0.0) and not mixed["holds"] and mixed["verdict"] == "inconclusive"
    single = paired_comparison({0: 0.1}, {0: 0.5}, "deo")
    assert single["mean_diff"] == pytest.approx(-0.4) and single["ci"] is None and not single["holds"]
    assert paired_comparison({}, {0: 0.5}, "deo")["mean_diff"] is None


# ---------------------------------------------------------------------------- rows and controls


def test_rows_follow_each_method_with_its_controls():
    rows = resolve_rows("faap,asac,erm", "synthetic-faces", controls=True)
    assert [r.name for r in rows] == ["faap", "faap[only_task]", "asac", "asac[no_counterfactuals]",
                                      "asac[no_counterfactual_loss]", "erm"]
    by = {r.name: r for r in rows}
    assert by["faap[only_task]"].control_of == "faap" and by["faap[only_task]"].settings == {"fairness_weight": 0.0}
    assert by["asac[no_counterfactuals]"].settings == {"epsilons": "0"}
    assert by["asac[no_counterfactual_loss]"].settings == {"alpha": 1.0}
    assert by["faap"].controls == ["faap[only_task]"] and by["erm"].control_of is None

    # A control that is another method: its ordinary row, added once, marked as the control it is.
    rows = resolve_rows(["reweight", "resample"], "adult", controls=True)
    assert [(r.name, r.control_of) for r in rows] == [("reweight", None), ("erm", "reweight"), ("resample", None)]
    assert {r.name: r.controls for r in rows}["resample"] == ["erm"]
    assert [r.name for r in resolve_rows("reweight", "adult")] == ["reweight"]  # no --controls: none
    chosen = resolve_rows("froc_in", "adult", controls="froc_in[no_robustness]")
    assert [r.name for r in chosen] == ["froc_in", "froc_in[no_robustness]"]
    assert chosen[1].settings == {"lambda_r": 0.0} and chosen[1].target_metrics == ("spd", "s_r")

    for methods, controls, message in (
            ("reweigth", False, "unknown method 'reweigth' (did you mean 'reweight'?)"),
            ("faap", "only_tsk", "unknown control 'only_tsk' (did you mean 'only_task'?)"),
            ("erm", "only_task", "these methods declare no controls"),
            ("erm,erm", False, "method 'erm' is given twice"),
            ("", False, "give at least one method")):
        with pytest.raises(FairauditError) as info:
            resolve_rows(methods, "synthetic-faces", controls)
        assert message in str(info.value)
    with pytest.raises(FairauditError, match="method 'faap' works on image datasets; 'adult' is tabular"):
        resolve_rows("erm,faap", "adult")


def test_every_method_declares_the_controls_of_its_claim():
    declared = {name: cls.controls for name, cls in METHODS.items() if name != "noop_finetune"}
    assert declared["faap"] == {"only_task": {"fairness_weight": 0.0}}
    assert declared["asac"] == {"no_counterfactuals": {"epsilons": "0"}, "no_counterfactual_loss": {"alpha": 1.0}}
    assert declared["froc_in"] == {"no_fairness": {"lambda_f": 0.0}, "no_robustness": {"lambda_r": 0.0}}
    assert declared["froc_pre"] == {"random_flips": {"flip_selection": "random"}, "random_adds": {"add_selection": "random"}}
    for name in ("aeda_pre", "aeda_online", "aeda_robust", "reweight", "resample", "label_flip", "massaging",
                 "dir", "minmax"):
        assert declared[name] == {"erm": "erm"}, name
    assert declared["adv_fair"] == {"erm": "erm", "no_adversary": {"adv_weight": 0.0, "update": "reversal"}}
    assert declared["fair_penalty"] == {"erm": "erm", "no_penalty": {"alpha": 0.0}}
    assert declared["rbf"] == declared["fbr"] == {"reweight": "reweight", "no_adversarial": {"lam": 0.0}}
    for name, controls in declared.items():  # every declaration is a valid setting or a registered method
        for what in controls.values():
            if isinstance(what, str):
                assert what in METHODS
            else:
                config = make_config(METHODS[name], what)
                assert {k: getattr(config, k) for k in what} == what


def test_faap_only_task_trains_the_generator_on_the_task_loss_alone():
    from torch import nn

    from fairaudit.mitigation.faap import SensitiveDiscriminator, faap_step

    torch.manual_seed(0)

    class Frozen(nn.Module):
        def __init__(self):
            super().__init__()
            self.g, self.f = nn.Linear(6, 4), nn.Linear(4, 2)

    model = Frozen()
    x, y, s = torch.randn(16, 6), torch.randint(0, 2, (16,)), torch.randint(0, 2, (16, 1))

    def loss(weight):
        torch.manual_seed(1)
        disc = SensitiveDiscriminator(4, 2, 8)
        step = faap_step(disc, torch.optim.SGD(disc.parameters(), lr=0.1), 2.0, 0.1, [2], fairness_weight=weight)
        loss_g, scalars = step(model, (x, y, s))
        return float(loss_g), float(scalars["loss_target"])

    only_task, task = loss(0.0)
    assert only_task == pytest.approx(0.1 * task, rel=1e-6)  # β·L_G^T and nothing else
    full, task_full = loss(1.0)
    assert task_full == pytest.approx(task) and abs(full - 0.1 * task_full) > 0.1


def test_froc_pre_random_flips_flip_as_many_labels_on_other_rows(adult):
    from fairaudit.mitigation.froc_pre import FrocPreConfig, froc_preprocess

    train, _ = adult
    x, y, a = train.x[:800].clone(), np.array(train.targets[:800]), np.array(train.sensitive_codes[:800, 0])
    runs = {}
    for selection in ("influence", "random"):
        config = FrocPreConfig(epochs=3, delta_f=0.0, delta_r=0.0, ell=40, iterations=2, flip_selection=selection)
        runs[selection] = froc_preprocess(x, y, a, config, device="cpu", seed=0)
    influence, random = runs["influence"], runs["random"]
    assert len(influence.flipped) == len(random.flipped) == 80  # the same budget of flips ...
    assert len(set(influence.flipped.tolist()) & set(random.flipped.tolist())) < 20  # ... on other rows
    for data in (influence, random):  # exactly the listed rows changed label
        assert sorted(np.flatnonzero(data.y[:800].numpy() != y).tolist()) == sorted(data.flipped.tolist())
    # The influence rule picks rows by group and label; random draws do not.
    picked = {name: (a[d.flipped] == 0).mean() for name, d in runs.items()}
    assert abs(picked["random"] - (a == 0).mean()) < 0.15
    assert picked["influence"] != pytest.approx(picked["random"], abs=0.05)


# ---------------------------------------------------------------------------- aggregation on hand-made runs


def _audit(accuracy, deo, spd):
    disparities = {"spd": spd, "deo": deo, "eod": deo / 2, "aaod": deo / 4, "aed": 0.05,
                   "worst_group_accuracy": accuracy - 0.05}
    return {"overall": {"accuracy": accuracy, "balanced_accuracy": accuracy, "n": 100}, "disparities": disparities,
            "ci": {}, "groups": [{"n": 50, "selection_rate": 0.4}, {"n": 50, "selection_rate": 0.5}],
            "meta": {"n_classes": 2}}


def _record(run_id, method, seed, after, status="done", message=None):
    spec = {"method": method, "dataset": "adult", "model": "demo", "target": "income", "sensitive": ["sex"],
            "data_options": {}, "settings": {}, "seed": seed, "tags": {}}
    return {"id": run_id, "method": method, "dataset": "adult", "model": "demo", "seed": seed, "spec": spec,
            "status": status, "message": message, "config": {}, "before": _audit(0.85, 0.20, 0.18 + 0.01 * seed),
            "after": after if status == "done" else None, "seconds": 10.0 + seed,
            "timings": {"before_audit": 1.0}, "summary": {"before": {"s_r": 0.5}, "after": {"s_r": 0.6 + 0.1 * seed}}}


def test_aggregate_pairs_by_seed_keeps_failures_and_writes_markdown():
    rows = [r.to_dict() for r in resolve_rows("reweight", "adult", controls=True)]
    runs = [_record("w0", "reweight", 0, _audit(0.84, 0.10, 0.05)), _record("w1", "reweight", 1, _audit(0.83, 0.12, 0.07)),
            _record("e0", "erm", 0, _audit(0.86, 0.20, 0.15)),
            _record("e1", "erm", 1, None, status="failed", message="erm ran out of patience.")]
    manifest = {"id": "bench-test", "setup": {"dataset": "adult", "target": "income", "sensitive": ["sex"],
                                               "model": "demo", "seeds": [0, 1], "command": "python -m fairaudit "
                                               "benchmark --dataset adult --methods reweight --controls"},
                "rows": rows, "seeds": [0, 1],
                "members": [{"row": m, "seed": s, "run_id": f"{p}{s}"} for m, p in (("reweight", "w"), ("erm", "e"))
                            for s in (0, 1)]}
    result = aggregate(manifest, runs)
    by = {r["method"]: r for r in result["rows"]}
    assert list(by) == ["baseline", "reweight", "erm"]
    base = by["baseline"]
    assert base["n_seeds"] == 2 and base["metrics"]["spd"]["values"] == pytest.approx([0.18, 0.19])
    assert base["metrics"]["s_r"]["values"] == [0.5, 0.5] and "leakage" not in base["metrics"]
    w = by["reweight"]
    assert w["status"] == "done" and w["n_seeds"] == 2 and w["run_ids"] == ["w0", "w1"]
    assert w["metrics"]["spd"]["mean"] == pytest.approx(0.06) and w["metrics"]["spd"]["std"] == pytest.approx(
        math.sqrt(0.0002))
    assert w["metrics"]["s_r"]["values"] == pytest.approx([0.6, 0.7])
    assert w["seconds"] == {"mean": 10.5, "std": pytest.approx(math.sqrt(0.5)), "total": 21.0, "values": [10.0, 11.0]}
    e = by["erm"]  # one seed failed: the row says so and keeps the finished seed
    assert e["status"] == "failed" and e["message"] == "erm ran out of patience." and e["n_seeds"] == 1
    assert e["failures"] == [{"seed": 1, "run_id": "e1", "message": "erm ran out of patience."}]
    assert e["metrics"]["accuracy"]["values"] == [0.86] and e["metrics"]["accuracy"]["ci"] is None
    assert e["control_of"] == "reweight"

    comps = {(c["method"], c["against"], c["metric"]): c for c in result["comparisons"]}
    assert set(comps) == {("reweight", "baseline", "spd"), ("reweight", "baseline", "accuracy"),
                          ("reweight", "erm", "spd"), ("reweight", "erm", "accuracy")}
    vs_base = comps[("reweight", "baseline", "spd")]  # each run against its own before audit
    assert vs_base["mean_diff"] == pytest.approx(((0.05 - 0.18) + (0.07 - 0.19)) / 2)
    assert vs_base["ci"] == pytest.approx([-0.125 - T_975[1] * 0.005, -0.125 + T_975[1] * 0.005])  # sd/√2 = 0.005
    assert vs_base["holds"]
    vs_erm = comps[("reweight", "erm", "spd")]  # only seed 0 is paired
    assert vs_erm["n"] == 1 and vs_erm["mean_diff"] == pytest.approx(-0.10) and vs_erm["ci"] is None
    assert not vs_erm["holds"]
    assert "95 % Student-t" in result["setup"]["ci_method"]

    text = to_markdown(result)
    lines = text.splitlines()
    assert lines[0] == "`python -m fairaudit benchmark --dataset adult --methods reweight --controls`"
    assert "| `reweight` | baseline | SPD | lower | −0.125 |" in text
    assert any(line.startswith("| `reweight` | baseline | SPD") and line.endswith("| 2 | ✓ |") for line in lines)
    assert any(line.startswith("| `reweight` | `erm` | SPD") and line.endswith("| n/a | 1 | ✗ |") for line in lines)
    assert "`erm` failed: erm ran out of patience." in text
    assert any(line.startswith("| `reweight` | defaults | 2 | 0.835 ± 0.007 [0.771, 0.899]") for line in lines)


def test_aggregate_leaves_undefined_seeds_out_counts_them_and_keeps_their_reasons():
    rows = [r.to_dict() for r in resolve_rows("reweight", "adult", controls=True)]
    reason = "only group 'sex=Male' defines the selection rate (no other group has samples)"
    undefined = _audit(0.83, 0.12, None)
    undefined["undefined"] = {"spd": reason}
    runs = [_record("w0", "reweight", 0, _audit(0.84, 0.10, 0.05)), _record("w1", "reweight", 1, undefined),
            _record("e0", "erm", 0, _audit(0.86, 0.20, 0.15)), _record("e1", "erm", 1, _audit(0.86, 0.20, 0.16))]
    manifest = {"id": "bench-undefined", "setup": {"dataset": "adult", "seeds": [0, 1]}, "rows": rows,
                "seeds": [0, 1], "members": [{"row": m, "seed": s, "run_id": f"{p}{s}"}
                                             for m, p in (("reweight", "w"), ("erm", "e")) for s in (0, 1)]}
    result = aggregate(manifest, runs)
    spd = {r["method"]: r for r in result["rows"]}["reweight"]["metrics"]["spd"]
    # The undefined seed is not a 0: the mean is seed 0's alone (0.05, where reading null as 0 gives 0.025).
    assert spd["values"] == [0.05] and spd["mean"] == pytest.approx(0.05) and spd["n_undefined"] == 1
    assert spd["undefined"] == [{"seed": 1, "reason": reason}]
    comps = {(c["against"], c["metric"]): c for c in result["comparisons"] if c["method"] == "reweight"}
    assert comps[("erm", "spd")]["n"] == 1 and comps[("erm", "spd")]["n_undefined"] == 1
    assert comps[("erm", "spd")]["mean_diff"] == pytest.approx(0.05 - 0.15)
    assert comps[("erm", "accuracy")]["n_undefined"] == 0
    text = to_markdown(result)
    assert "0.050 (1 of 2 n/a)" in text
    assert any(line.startswith("| `reweight` | `erm` | SPD") and line.endswith("| 1 (1 n/a) | ✗ |")
               for line in text.splitlines())
    json.dumps(result, allow_nan=False)


# ---------------------------------------------------------------------------- real runs


_SUBMIT = jobs.submit


def _run_here(spec, ray_address=None):
    """Submit and execute a member job in this process (a failing method is recorded, not raised)."""
    run_id = _SUBMIT(spec, start=False)
    try:
        jobs.run_job(run_id)
    except FairauditError:
        pass
    return run_id


def _check_metric(summary, values):
    assert summary["values"] == pytest.approx(values)
    assert summary["mean"] == pytest.approx(np.mean(values))
    sd = np.std(values, ddof=1)
    assert summary["std"] == pytest.approx(sd)
    half = T_975[len(values) - 1] * sd / math.sqrt(len(values))
    assert summary["ci"] == pytest.approx([np.mean(values) - half, np.mean(values) + half])


@pytest.mark.slow
def test_benchmark_on_adult_runs_tagged_jobs_in_the_workers_and_reuses_them(home, tiny_model, tmp_path, capsys):
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    argv = ["benchmark", "--dataset", "adult", "--model", tiny_model, "--methods", "reweight,erm", "--controls",
            "--seeds", "2", "--quick", "--device", "cpu", "--json", str(out), "--markdown", str(md)]
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "2 rows × 2 seeds = 4 runs (0 reused)" in printed
    result = json.loads(out.read_text())
    assert set(result) == {"setup", "rows", "comparisons"}
    setup = result["setup"]
    assert setup["methods"] == ["reweight", "erm"] and setup["seeds"] == [0, 1] and setup["quick"]
    assert setup["command"] == "python -m fairaudit " + " ".join(argv)
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["baseline", "reweight", "erm"]
    assert rows["erm"]["control_of"] is None  # asked for, so a method in its own right
    for name in ("reweight", "erm"):
        row = rows[name]
        assert row["status"] == "done" and row["n_seeds"] == 2 and row["settings"] == {"epochs": 1}
        assert REQUIRED | {"s_r"} <= set(row["metrics"])
        records = [jobs.get_run(r) for r in row["run_ids"]]
        assert [r["seed"] for r in records] == [0, 1] and {r["backend"] for r in records} == {"local"}
        assert all(r["spec"]["tags"] == {"sweep": f"{setup['benchmark_id']}:{name}", "swept": [],
                                         "benchmark": setup["benchmark_id"], "benchmark_row": name} for r in records)
        assert all(r["spec"]["n_boot"] == 50 and r["spec"]["robustness_samples"] == 64 for r in records)
        _check_metric(row["metrics"]["accuracy"], [r["after"]["overall"]["accuracy"] for r in records])
        _check_metric(row["metrics"]["spd"], [r["after"]["disparities"]["spd"] for r in records])
        assert row["metrics"]["s_r"]["values"] == pytest.approx([r["summary"]["after"]["s_r"] for r in records])
        assert row["seconds"]["values"] == pytest.approx([r["seconds"] for r in records])
    before = [jobs.get_run(r)["before"] for r in rows["reweight"]["run_ids"]]
    assert rows["baseline"]["metrics"]["deo"]["values"] == pytest.approx([b["disparities"]["deo"] for b in before])

    comps = {(c["method"], c["against"], c["metric"]): c for c in result["comparisons"]}
    assert set(comps) == {("reweight", "baseline", "spd"), ("reweight", "baseline", "accuracy"),
                          ("reweight", "erm", "spd"), ("reweight", "erm", "accuracy"),
                          ("erm", "baseline", "deo"), ("erm", "baseline", "accuracy")}
    c = comps[("reweight", "erm", "spd")]
    diffs = np.subtract(rows["reweight"]["metrics"]["spd"]["values"], rows["erm"]["metrics"]["spd"]["values"])
    assert c["n"] == 2 and c["mean_diff"] == pytest.approx(diffs.mean())
    assert c["holds"] == (c["ci"][1] < 0)
    text = md.read_text()
    assert text.splitlines()[0] == f"`{setup['command']}`"
    assert "| `reweight` | `erm` | SPD | lower |" in text and ("✓" in text or "✗" in text)

    # The same command again runs nothing: every member is reused.
    n_runs = len(jobs.list_runs(limit=100))
    assert main(argv) == 0
    assert "4 runs (4 reused)" in capsys.readouterr().out
    assert len(jobs.list_runs(limit=100)) == n_runs
    again = json.loads(out.read_text())
    assert [r["run_ids"] for r in again["rows"]] == [r["run_ids"] for r in result["rows"]]
    assert load_manifest(setup["benchmark_id"])["setup"]["benchmark_id"] == setup["benchmark_id"]


@pytest.fixture(scope="module")
def faces_model(tmp_path_factory):
    """A small CNN on 32 px synthetic faces (200 training images, a few steps): a real checkpoint."""
    from fairaudit.train import TrainConfig
    from fairaudit.train.deployed import train_deployed_model

    path = tmp_path_factory.mktemp("bench_faces") / "faces.safetensors"
    train_deployed_model("synthetic-faces", "Smiling", ["Male"], arch="small_cnn",
                         config=TrainConfig(epochs=1, max_steps=6, batch_size=32), device="cpu", out=path,
                         data_options={"image_size": 32, "n_train": 200, "n_val": 100, "n_test": 200})
    return str(path)


@pytest.mark.slow
def test_benchmark_on_small_faces_compares_faap_with_its_only_task_control(home, faces_model, tmp_path,
                                                                           monkeypatch, capsys):
    monkeypatch.setattr(jobs, "submit", _run_here)
    out = tmp_path / "faces.json"
    argv = ["benchmark", "--dataset", "synthetic-faces", "--model", faces_model, "--target", "Smiling",
            "--sensitive", "Male", "--methods", "faap", "--controls", "--seeds", "2", "--quick", "--device", "cpu",
            "--data-opt", "image_size=32", "--data-opt", "n_train=200", "--data-opt", "n_val=100",
            "--data-opt", "n_test=200", "--robustness-samples", "0", "--split-samples", "0", "--json", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["baseline", "faap", "faap[only_task]"]
    control = rows["faap[only_task]"]
    assert control["control_of"] == "faap" and control["run_method"] == "faap"
    assert control["settings"] == {"epochs": 1, "fairness_weight": 0.0}
    assert rows["faap"]["settings"] == {"epochs": 1}
    for row in rows.values():  # robustness was not measured, so there is no S_R
        assert row["n_seeds"] == 2 and set(row["metrics"]) == REQUIRED | {"aaod", "aed", "bias_sum"}
        assert all(len(m["values"]) == 2 and m["ci"] is not None for m in row["metrics"].values())
    records = [jobs.get_run(r) for r in control["run_ids"]]
    assert all(r["config"]["fairness_weight"] == 0.0 and r["spec"]["data_options"]["n_test"] == 200 for r in records)
    assert records[0]["after"]["overall"]["n"] == 200
    comps = {(c["method"], c["against"], c["metric"]) for c in result["comparisons"]}
    assert comps == {("faap", "baseline", "deo"), ("faap", "baseline", "accuracy"),
                     ("faap", "faap[only_task]", "deo"), ("faap", "faap[only_task]", "accuracy")}


BROKEN = {"broken": {"fail": "the broken control fails on purpose."}}


def _with_broken_control(mp: pytest.MonkeyPatch, home) -> None:
    """``noop_finetune`` (the test method) in workspace ``home``, with a control that always fails."""
    from fairaudit.jobs import testing

    mp.setenv("FAIRAUDIT_HOME", str(home))
    mp.setenv("FAIRAUDIT_TEST_METHODS", "1")
    testing.register()
    mp.setattr(testing.NoopFinetune, "controls", BROKEN)


@pytest.fixture(scope="module")
def noop_bench(tmp_path_factory, tiny_model):
    """A workspace with a finished benchmark of ``noop_finetune`` whose control ``broken`` fails (run here)."""
    home = tmp_path_factory.mktemp("bench_home")
    out = tmp_path_factory.mktemp("bench_out") / "noop.json"
    argv = ["benchmark", "--dataset", "adult", "--model", tiny_model, "--methods", "noop_finetune", "--controls",
            "--seeds", "2", "--quick", "--set", "steps=2", "--robustness-samples", "16", "--split-samples", "0",
            "--device", "cpu", "--json", str(out)]
    with pytest.MonkeyPatch.context() as mp:
        _with_broken_control(mp, home)
        mp.setattr(jobs, "submit", _run_here)
        code = main(argv)
    return {"home": home, "argv": argv, "code": code, "out": out, "result": json.loads(out.read_text())}


def test_a_failed_member_is_a_failed_row_and_nothing_finished_is_run_again(noop_bench, capsys, monkeypatch):
    assert noop_bench["code"] == 1
    rows = {r["method"]: r for r in noop_bench["result"]["rows"]}
    assert rows["noop_finetune"]["status"] == "done" and rows["noop_finetune"]["n_seeds"] == 2
    broken = rows["noop_finetune[broken]"]
    assert broken["status"] == "failed" and broken["message"] == "the broken control fails on purpose."
    assert broken["n_seeds"] == 0 and len(broken["failures"]) == 2
    comp = next(c for c in noop_bench["result"]["comparisons"]
                if c["against"] == "noop_finetune[broken]" and c["metric"] == "accuracy")
    assert comp["n"] == 0 and comp["mean_diff"] is None and comp["ci"] is None and not comp["holds"]

    # Again: the finished runs are reused, the failed ones tried anew (and fail again).
    _with_broken_control(monkeypatch, noop_bench["home"])
    monkeypatch.setattr(jobs, "submit", _run_here)
    capsys.readouterr()
    assert main(noop_bench["argv"]) == 1
    captured = capsys.readouterr()
    assert "4 runs (2 reused)" in captured.out
    assert "benchmark: noop_finetune[broken] is failed: the broken control fails on purpose." in captured.err
    again = {r["method"]: r for r in json.loads(noop_bench["out"].read_text())["rows"]}
    assert again["noop_finetune"]["run_ids"] == rows["noop_finetune"]["run_ids"]
    assert not set(again["noop_finetune[broken]"]["run_ids"]) & set(broken["run_ids"])
    for run_id in broken["run_ids"]:  # the earlier failures stay in the registry
        assert jobs.get_run(run_id)["status"] == "failed"


def _frame(at: AppTest, column: str):
    """The one table on the page with ``column`` (AppTest does not expose the keys of plain tables)."""
    frames = [d.value for d in at.dataframe if column in d.value.columns]
    assert len(frames) == 1, [list(d.value.columns) for d in at.dataframe]
    return frames[0]


def test_compare_page_shows_the_benchmark_and_launches_one(noop_bench, tiny_model, monkeypatch):
    import appkit.state

    _with_broken_control(monkeypatch, noop_bench["home"])
    monkeypatch.setattr(appkit.state, "start_run", lambda setup: None)
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.switch_page(COMPARE).run()
    assert not at.exception, [e.value for e in at.exception]
    board = _frame(at, "Control of")
    assert list(board["Method"]) == ["baseline", "noop_finetune", "noop_finetune[broken]"]
    assert list(board["Status"]) == ["done", "done", "failed"] and list(board["Seeds"]) == [2, 2, 0]
    expected = noop_bench["result"]["rows"][1]["metrics"]["accuracy"]
    cell = board["Accuracy"].iloc[1]
    assert cell.startswith(f"{expected['mean']:.3f} ± {expected['std']:.3f} [{expected['ci'][0]:.3f}, ")
    comparisons = _frame(at, "Against")
    assert set(comparisons["Against"]) == {"baseline", "noop_finetune[broken]"}
    assert set(comparisons["Holds"]) <= {"✓", "✗", "✗ (worse)"}
    assert list(comparisons.loc[comparisons["Against"] == "noop_finetune[broken]", "95 % CI"]) == ["n/a", "n/a"]
    assert any("noop_finetune[broken] failed: the broken control fails on purpose." in e.value for e in at.error)
    scatter = at.get("plotly_chart")
    assert any("mean ± std over seeds" in json.loads(c.proto.spec)["layout"]["title"]["text"] for c in scatter)

    original = jobs.submit
    monkeypatch.setattr(jobs, "submit", lambda spec, ray_address=None: original(spec, start=False))
    at.selectbox(key="compare-bench-dataset").set_value("adult")
    at.multiselect(key="compare-bench-methods").set_value(["noop_finetune"])
    at.number_input(key="compare-bench-seeds").set_value(2)
    at.checkbox(key="compare-bench-quick").check()
    at.text_input(key="compare-bench-model").input(tiny_model)
    at.text_input(key="compare-bench-settings").input("steps=1")
    next(b for b in at.button if b.label == "Launch benchmark").click().run()
    assert not at.exception, [e.value for e in at.exception]
    launched = at.session_state["compare-bench"]
    assert at.success[0].value.startswith(f"Benchmark {launched}: 4 runs (0 reused)")
    manifest = load_manifest(launched)
    assert manifest["setup"]["command"].startswith("python -m fairaudit benchmark --dataset adult --model ")
    runs = [jobs.get_run(m["run_id"]) for m in manifest["members"]]
    assert sorted((r["spec"]["tags"]["benchmark_row"], r["seed"]) for r in runs) == [
        ("noop_finetune", 0), ("noop_finetune", 1), ("noop_finetune[broken]", 0), ("noop_finetune[broken]", 1)]
    assert all(r["status"] == "queued" and r["spec"]["settings"]["steps"] == 1 for r in runs)
    board = _frame(at, "Control of")  # the new benchmark is the one shown
    assert list(board["Status"]) == ["missing", "queued", "queued"]
    for r in runs:  # leave no queued run behind
        jobs.cancel(r["id"])


def test_a_run_made_under_other_defaults_is_not_reused(home, tiny_model):
    from fairaudit.benchmark import runner
    from fairaudit.jobs import JobRegistry, JobSpec
    from fairaudit.jobs.execute import resolved_config

    spec = JobSpec("noop_finetune", "adult", model=tiny_model, device="cpu", settings={}, seed=0)
    key = runner.spec_key(spec.to_dict())
    older = {**resolved_config(spec), "epochs": resolved_config(spec)["epochs"] + 1}  # the default it had then
    JobRegistry().create_run(spec, config=older, status="done")
    assert runner._twins([spec]) == {}  # same spec ("defaults"), another experiment
    current = JobRegistry().create_run(spec, config=resolved_config(spec), status="done")
    assert runner._twins([spec])[key]["id"] == current


def test_a_control_measures_s_r_under_its_methods_threat_model(home, tiny_model):
    from fairaudit.benchmark import plan_benchmark
    from fairaudit.jobs.execute import _threat_model
    from fairaudit.mitigation.base import get_method

    plan = plan_benchmark("adult", "rbf", controls=True, seeds=1, model=tiny_model, device="cpu")
    rbf, reweight = plan.specs[("rbf", 0)], plan.specs[("reweight", 0)]
    own = _threat_model(get_method("rbf"), rbf.config(), rbf, torch.device("cpu"))
    as_control = _threat_model(get_method("reweight"), reweight.config(), reweight, torch.device("cpu"))
    assert own.features == "all" and own.labels == "predicted"  # the FRoC authors' released threat model
    assert as_control == own
    alone = plan_benchmark("adult", "reweight", seeds=1, model=tiny_model, device="cpu").specs[("reweight", 0)]
    assert _threat_model(get_method("reweight"), alone.config(), alone, torch.device("cpu")).features == "numeric"
