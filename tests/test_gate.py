"""The CI gate: exit codes, JUnit XML, JSON, policy files and the small-group guardrails."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from fairaudit.audit import audit_predictions
from fairaudit.audit.external import predictions_from_frame
from fairaudit.cli import main
from fairaudit.gate import load_policy


def _table(n_per_group=(2000, 2000), accuracy=(0.9, 0.9), seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for g, (n, acc) in enumerate(zip(n_per_group, accuracy)):
        y = rng.integers(0, 2, n)
        pred = np.where(rng.random(n) < acc, y, 1 - y)
        parts.append(pd.DataFrame({"y": y, "p": pred, "a": g}))
    return pd.concat(parts, ignore_index=True)


def _csv(tmp_path, frame, name="preds.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def _check(tmp_path, frame, *rules, extra=()):
    junit, out = tmp_path / "gate.xml", tmp_path / "gate.json"
    argv = ["check", "--predictions", _csv(tmp_path, frame), "--label", "y", "--pred", "p", "--sensitive", "a",
            "--bootstrap", "200", "--junit", str(junit), "--json", str(out), *rules, *extra]
    code = main(argv)
    return code, ET.parse(junit).getroot(), json.loads(out.read_text())


def test_clear_pass_exits_0(tmp_path):
    code, xml, data = _check(tmp_path, _table(), "--max", "deo=0.2", "--min", "group.accuracy=0.8",
                             "--min", "dp_ratio=0.8")
    assert code == 0 and data["outcome"] == "pass" and data["exit_code"] == 0
    assert [r["verdict"] for r in data["rules"]] == ["pass", "pass", "pass"]
    assert data["flagged_groups"] == []
    assert xml.find("testsuite").get("failures") == "0"


def test_clear_fail_exits_1_and_junit_has_one_testcase_per_rule(tmp_path):
    code, xml, data = _check(tmp_path, _table(accuracy=(0.95, 0.6)), "--max", "aed=0.1", "--min",
                             "group.accuracy=0.8", "--min", "accuracy=0.5")
    assert code == 1 and data["outcome"] == "fail"
    cases = xml.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["aed <= 0.1", "group.accuracy >= 0.8", "accuracy >= 0.5"]
    assert [c.find("failure") is not None for c in cases] == [True, True, False]
    message = cases[0].find("failure").get("message")
    aed = data["rules"][0]
    assert aed["verdict"] == "fail" and aed["ci"][0] > 0.1
    assert f"{aed['value']:.4g}" in message and f"{aed['ci'][0]:.4g}" in message and "max 0.1" in message
    group_rule = data["rules"][1]
    assert [g["verdict"] for g in group_rule["groups"]] == ["pass", "fail"]
    assert group_rule["value"] == pytest.approx(0.6, abs=0.03)  # the worst group


def test_too_small_groups_are_inconclusive_exit_3_and_say_the_rows_needed(tmp_path, capsys):
    # 12 rows in group 1, all classified correctly: its bootstrap interval is [1, 1] and would "pass"
    frame = _table(n_per_group=(400, 12), accuracy=(0.95, 1.0))
    code, xml, data = _check(tmp_path, frame, "--min", "group.accuracy=0.8", "--max", "deo=0.5")
    assert code == 3 and data["outcome"] == "inconclusive"
    assert [f["group"] for f in data["flagged_groups"]] == ["a=1"]
    assert "fewer than min_group_size 30" in data["flagged_groups"][0]["reasons"][0]
    group_rule, deo = data["rules"]  # in the order given
    assert [g["verdict"] for g in group_rule["groups"]] == ["pass", "inconclusive"]
    assert group_rule["groups"][1]["ci"] == [1.0, 1.0]
    assert deo["verdict"] == "inconclusive" and "flagged group" in deo["message"]
    assert group_rule["needed_n"] >= 412 * 30 / 12  # at least min_group_size rows in the small group
    assert "rows needed" in capsys.readouterr().out
    assert len(xml.findall("./testsuite/testcase/skipped")) == 2
    # the guardrail is what makes it inconclusive: without it the degenerate interval passes
    code, _, data = _check(tmp_path, frame, "--min", "group.accuracy=0.8", "--max", "deo=0.5",
                           extra=["--min-group-size", "1"])
    widths = [g["ci"][1] - g["ci"][0] for g in data["rules"][0]["groups"]]
    assert max(widths) <= 0.2
    assert code == 0 and data["flagged_groups"] == []


def test_wide_interval_is_never_a_pass(tmp_path):
    frame = _table(n_per_group=(60, 60), accuracy=(0.9, 0.9))
    code, _, data = _check(tmp_path, frame, "--max", "eo_max=0.9", extra=["--min-group-size", "5"])
    eo = data["rules"][0]
    assert eo["ci"][1] <= 0.9 and eo["ci"][1] - eo["ci"][0] > 0.2  # on the good side, but too wide
    assert code == 3 and eo["verdict"] == "inconclusive" and "max_ci_width" in eo["message"]
    assert eo["needed_n"] >= 120 * ((eo["ci"][1] - eo["ci"][0]) / 0.2) ** 2 - 1


def test_policy_file_and_command_line_override(tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text("[gate]\nmin_group_size = 50\nbootstrap = 100\nseed = 3\n\n"
                      "[max]\ndeo = 0.1\nspd = 0.2\n\n[min]\ndp_ratio = 0.8\ngroup.accuracy = 0.7\n")
    loaded = load_policy(policy)
    assert loaded.min_group_size == 50 and loaded.bootstrap == 100 and loaded.seed == 3
    assert [r.name for r in loaded.rules] == ["deo <= 0.1", "spd <= 0.2", "dp_ratio >= 0.8",
                                             "group.accuracy >= 0.7"]
    out = tmp_path / "gate.json"
    frame = _table(accuracy=(0.9, 0.8))  # deo about 0.2
    argv = ["check", "--predictions", _csv(tmp_path, frame), "--label", "y", "--pred", "p", "--sensitive", "a",
            "--policy", str(policy), "--json", str(out)]
    assert main(argv) == 1
    assert json.loads(out.read_text())["rules"][0]["verdict"] == "fail"
    assert main([*argv, "--max", "deo=0.5"]) == 0  # replaces the policy's deo rule
    data = json.loads(out.read_text())
    assert [r["name"] for r in data["rules"]][0] == "deo <= 0.5" and data["settings"]["n_boot"] == 100
    assert data["settings"]["min_group_size"] == 50


def test_json_and_junit_hold_the_same_verdicts(tmp_path):
    code, xml, data = _check(tmp_path, _table(n_per_group=(1500, 200), accuracy=(0.9, 0.8)), "--max", "spd=0.05",
                             "--min", "group.accuracy=0.85", "--max", "deo=0.5")
    assert set(data) == {"outcome", "exit_code", "counts", "n", "rules", "flagged_groups", "settings", "source"}
    assert data["exit_code"] == code and data["n"] == 1700
    for rule in data["rules"]:
        assert set(rule) >= {"name", "metric", "kind", "threshold", "scope", "verdict", "value", "ci", "message",
                             "needed_n"}
    cases = {c.get("name"): c for c in xml.findall("./testsuite/testcase")}
    assert list(cases) == [r["name"] for r in data["rules"]]
    for rule in data["rules"]:
        case = cases[rule["name"]]
        kind = {"fail": "failure", "inconclusive": "skipped"}.get(rule["verdict"])
        assert (case.find(kind).get("message") if kind else case.find("system-out").text) == rule["message"]


@pytest.mark.parametrize("argv, message", [
    (["--max", "nope=0.1"], "no metric 'nope'"),
    (["--max", "deo"], "expects NAME=VALUE"),
    ([], "no rule to check"),
    (["--max", "deo=0.1", "--run", "r1"], "exactly one of"),
])
def test_usage_errors_exit_2(tmp_path, capsys, argv, message):
    base = ["check", "--predictions", _csv(tmp_path, _table()), "--label", "y", "--pred", "p", "--sensitive", "a"]
    assert main([*base, *argv]) == 2
    assert message in capsys.readouterr().err


def test_bad_policy_file_exits_2(tmp_path, capsys):
    policy = tmp_path / "policy.toml"
    policy.write_text("[max]\ndeo = 'low'\n")
    assert main(["check", "--predictions", _csv(tmp_path, _table()), "--label", "y", "--pred", "p",
                 "--sensitive", "a", "--policy", str(policy)]) == 2
    assert "must be a finite number" in capsys.readouterr().err
    policy.write_text("[max\n")
    assert main(["check", "--run", "x", "--policy", str(policy)]) == 2
    assert "as TOML" in capsys.readouterr().err


def test_run_source_gates_the_stored_audit_and_s_r(tmp_path, monkeypatch):
    import fairaudit.jobs as jobs

    frame = _table(accuracy=(0.92, 0.9))
    report = audit_predictions(predictions_from_frame(frame, "y", "p", ["a"]), n_boot=200, device="cpu").to_dict()
    record = {"id": "r1", "status": "done", "message": None, "method": "noop", "dataset": "toy",
              "before": report, "after": report, "summary": {"before": {"s_r": 0.4}, "after": {"s_r": 0.7}}}
    monkeypatch.setattr(jobs, "get_run", lambda run_id: {**record, "id": run_id})
    out = tmp_path / "gate.json"
    assert main(["check", "--run", "r1", "--min", "s_r=0.5", "--max", "deo=0.2", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["source"]["run"] == "r1" and data["rules"][0]["value"] == 0.7 and data["rules"][0]["note"]
    assert main(["check", "--run", "r1", "--stage", "before", "--min", "s_r=0.5"]) == 1


def test_dataset_and_model_source(demo_home, tmp_path):
    out = tmp_path / "gate.json"
    code = main(["check", "--dataset", "synthetic-faces", "--model", "demo", "--target", "Smiling", "--sensitive",
                 "Male", "--device", "cpu", "--bootstrap", "100", "--max", "deo=0.1", "--min", "accuracy=0.6",
                 "--json", str(out)])
    data = json.loads(out.read_text())
    assert code == 1 and [r["verdict"] for r in data["rules"]] == ["fail", "pass"]
    assert data["rules"][0]["value"] == pytest.approx(0.324, abs=1e-4)  # the README's demo DEO
    assert data["source"]["dataset"] == "synthetic-faces"


def test_readme_policy_example_is_a_valid_policy():
    import tomllib
    from pathlib import Path

    from fairaudit.gate.policy import policy_from_dict

    text = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    block = text.split("# policy.toml\n", 1)[1].split("```", 1)[0]
    policy = policy_from_dict(tomllib.loads(block))
    assert {r.scope for r in policy.rules} == {"disparity", "overall", "group", "s_r"}
