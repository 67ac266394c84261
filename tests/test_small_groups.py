"""Small-group guardrails everywhere: the audit JSON, the Audit page's badge, the run report and the gate all
show the groups :func:`fairaudit.metrics.guardrails.flag_groups` flags."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fairaudit.audit import audit_predictions
from fairaudit.audit.external import predictions_from_frame
from fairaudit.gate import Policy, Rule, evaluate
from fairaudit.metrics.guardrails import FLAG_RULE, WHY_FLAGGED, describe_flag
from fairaudit.report import sections as S
from tests.test_app import AUDIT, DATA, app, open_page  # noqa: F401  (app: the demo AppTest fixture)

BADGE = ":orange-badge[:material/group: Small or uncertain group]"


def _table(sizes: dict[str, int], seed: int = 0) -> pd.DataFrame:
    """Predictions right 90 % of the time in every group; scores agree with the predictions."""
    rng = np.random.default_rng(seed)
    sex = np.concatenate([[g] * n for g, n in sizes.items()])
    label = rng.integers(0, 2, len(sex))
    pred = np.where(rng.random(len(sex)) < 0.9, label, 1 - label)
    score = np.where(pred == 1, rng.uniform(0.5, 1.0, len(sex)), rng.uniform(0.0, 0.49, len(sex)))
    return pd.DataFrame({"label": label, "pred": pred, "score": score, "sex": sex})


def _report(frame: pd.DataFrame, n_boot: int = 1000):
    preds = predictions_from_frame(frame, "label", "pred", ["sex"], "score")
    return audit_predictions(preds, threshold=0.5, n_boot=n_boot, seed=0, device="cpu")


TINY = {"F": 300, "M": 300, "x": 8}
LARGE = {"F": 300, "M": 300}


def test_the_audit_json_and_the_gate_flag_the_same_groups():
    report = _report(_table(TINY))
    data = report.to_dict()
    assert [f["group"] for f in data["flagged_groups"]] == ["sex=x"]
    flag = data["flagged_groups"][0]
    ci = next(g for g in data["groups"] if g["group"] == "sex=x")["ci"]["accuracy"]
    assert flag["n"] == 8 and flag["ci_width"] == ci[1] - ci[0] and flag["ci_width"] > 0.2
    assert flag["reasons"][0] == "8 rows, fewer than min_group_size 30"
    assert data["guardrails"] == {"min_group_size": 30, "max_ci_width": 0.2}
    gate = evaluate(data, Policy([Rule("deo", "max", 0.9)]))
    assert gate.flagged_groups == data["flagged_groups"] and gate.rules[0].verdict == "inconclusive"
    assert _report(_table(LARGE)).to_dict()["flagged_groups"] == []
    # Without bootstrap there is no interval: only the size is checked.
    (no_ci,) = _report(_table(TINY), n_boot=0).flagged_groups()
    assert no_ci["ci_width"] is None and no_ci["reasons"] == ["8 rows, fewer than min_group_size 30"]


def _audit_upload(at, frame: pd.DataFrame):
    at = open_page(at, DATA)
    at.segmented_control(key="data-source").set_value("predictions").run()
    at.file_uploader(key="predictions-upload").set_value(("preds.csv", frame.to_csv(index=False).encode(),
                                                          "text/csv")).run()
    assert at.multiselect(key="pred-sensitive").value == ["sex"]
    at.button[0].click().run()
    at.switch_page(AUDIT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert {m.label: m.value for m in at.metric}["Samples"] == f"{len(frame):,}"
    return at


def test_audit_page_badges_a_tiny_group_with_its_size_and_interval(app):
    frame = _table(TINY)
    at = _audit_upload(app, frame)
    (expected,) = _report(frame, n_boot=at.select_slider(key="n-boot").value).flagged_groups()
    badges = [w.value for w in at.warning if BADGE in w.value]
    assert len(badges) == 1, [w.value for w in at.warning]
    lines = badges[0].split("\n\n")
    assert lines == [f"{BADGE} {describe_flag(expected)}", f"{WHY_FLAGGED} {FLAG_RULE}"]
    assert lines[0].startswith(f"{BADGE} 'sex=x': 8 rows, accuracy CI width ")


def test_audit_page_shows_no_badge_without_a_flagged_group(app):
    at = _audit_upload(app, _table(LARGE))
    assert not [w.value for w in at.warning if BADGE in w.value]
    assert not any(WHY_FLAGGED in w.value for w in at.warning)


def test_the_report_names_flagged_groups_under_their_stage():
    before, after = _report(_table(TINY)).to_dict(), _report(_table(LARGE, seed=1)).to_dict()
    run = {"run_id": "r1", "method": "erm", "dataset": "adult", "before": before, "after": after}
    section = S.metrics_section([run])
    flagged = section.data["runs"]["r1"]["flagged_groups"]
    assert [f["group"] for f in flagged["before"]] == ["sex=x"] and flagged["after"] == []
    html = "".join(b for b in section.blocks if isinstance(b, str))
    assert html.count('<div class="flag">') == 1
    assert S.esc(describe_flag(flagged["before"][0])) in html and S.esc(WHY_FLAGGED) in html


def test_the_cli_warns_on_stderr_about_a_flagged_group(tmp_path, capsys):
    from fairaudit.cli import main

    # 15 rows: enough for audit-predictions to accept the group (--min-group-size 10), too few to judge it (30).
    for sizes, warned in (({**LARGE, "x": 15}, True), (LARGE, False)):
        csv = tmp_path / "preds.csv"
        _table(sizes).to_csv(csv, index=False)
        assert main(["audit-predictions", str(csv), "--label", "label", "--pred", "pred", "--sensitive", "sex",
                     "--score", "score", "--json", str(tmp_path / "out.json")]) == 0
        err = capsys.readouterr().err
        assert ("group 'sex=x': 15 rows" in err and "inconclusive" in err) is warned, err
