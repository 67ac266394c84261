"""One metric catalogue: every metric the product shows has one entry, and every page, table and report
reads its label and direction there."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from fairaudit.errors import FairauditError
from fairaudit.metrics import audit_metrics, catalogue
from fairaudit.metrics.catalogue import CATALOGUE, declare, label, lower_is_better, metric

ROOT = Path(__file__).resolve().parents[1]


def _report():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    s = rng.integers(0, 3, 400)
    return audit_metrics(y, scores=rng.random(400), sensitive=s, sensitive_names=["g"], n_boot=0)


def test_every_key_of_an_audit_report_has_an_entry():
    report = _report()
    numeric = lambda d: {k for k, v in d.items() if isinstance(v, float) and not isinstance(v, bool)}  # noqa: E731
    keys = numeric(report.overall) | numeric(report.disparities)
    keys |= {k for g in report.groups for k in numeric(g)}
    # 'n' (a count) and 'passes_80_rule' (a yes/no verdict of dp_ratio) are not metrics.
    assert {"accuracy", "spd", "deo", "worst_group_accuracy", "bias_sum", "tpr", "npv"} <= keys
    assert sorted(k for k in keys if k not in CATALOGUE) == []


def test_every_metric_choice_has_an_entry():
    from fairaudit.benchmark.aggregate import METRIC_NAMES
    from fairaudit.benchmark.markdown import TABLE_METRICS
    from fairaudit.compare.table import METRICS
    from fairaudit.compare.tradeoff import FAIRNESS_CHOICES, RADAR_METRICS
    from fairaudit.metrics.rates import DISPARITY_NAMES, OVERALL_METRICS, PER_GROUP_METRICS
    from fairaudit.report.sections import GROUP_METRICS as REPORT_GROUP_METRICS
    from fairaudit.slices import METRICS as SLICE_METRICS
    from fairaudit.views.jobs_view import HEADLINE, OVERALL_SCORES
    from fairaudit.views.tables import CARD_DISPARITIES, GROUP_METRICS

    choices = {*METRIC_NAMES, *TABLE_METRICS, *METRICS, *FAIRNESS_CHOICES, *RADAR_METRICS, *DISPARITY_NAMES,
               *OVERALL_METRICS, *PER_GROUP_METRICS, *REPORT_GROUP_METRICS, *SLICE_METRICS, *OVERALL_SCORES,
               *(name for name, _ in HEADLINE), *CARD_DISPARITIES, *GROUP_METRICS}
    assert sorted(c for c in choices if c not in CATALOGUE) == []


def test_directions_and_kinds_agree():
    for entry in CATALOGUE.values():
        if entry.kind == "gap":
            assert entry.lower_is_better, entry.name
        if entry.kind in ("ratio", "floor", "robustness"):
            assert entry.higher_is_better, entry.name
    assert lower_is_better("spd") and lower_is_better("leakage") and not lower_is_better("worst_group_accuracy")
    assert not lower_is_better("s_r") and lower_is_better("fpr")
    assert catalogue.names("ratio", "floor") == ("dp_ratio", "worst_group_accuracy")


def test_labels_and_formats():
    assert label("spd") == "SPD" and label("tpr") == "True positive rate"
    assert label("selection_rate[7]") == "Selection rate [7]"
    assert label("not_a_metric") == "not_a_metric"  # a column outside the catalogue keeps its name
    assert catalogue.phrase("tpr") == "true-positive rate"
    assert catalogue.short("balanced_accuracy") == "balanced acc." and catalogue.short("deo") == "DEO"
    assert metric("deo").text(0.12345) == "0.123" and metric("deo").text(None) == "n/a"
    assert metric("deo").text(float("nan")) == "n/a"
    assert metric("dp_ratio").direction == "higher is better"


def test_duplicate_declaration_raises_and_unknown_suggests():
    with pytest.raises(FairauditError, match="two metrics are named 'spd'"):
        declare("spd", "Statistical parity", "lower", "another definition", kind="gap")
    assert metric("spd").label == "SPD"  # the first declaration stands
    same = metric("eod")
    assert declare(same.name, same.label, same.better, same.help, kind=same.kind, short=same.short,
                   phrase=same.phrase) == same  # the same declaration again (a module imported twice) is fine
    with pytest.raises(FairauditError, match=r"unknown metric 'sdp' \(did you mean 'spd'\?\)"):
        metric("sdp")
    with pytest.raises(ValueError, match="better must be"):
        declare("new_metric", "New", "smaller", "x", kind="gap")
    assert "new_metric" not in CATALOGUE


def test_views_read_the_catalogue():
    import pandas as pd

    from fairaudit.compare.table import undefined_text
    from fairaudit.views.jobs_view import compare
    from fairaudit.views.tables import DISPARITIES, group_table

    assert [d.label for d in DISPARITIES] == [metric(d.name).label for d in DISPARITIES]
    assert DISPARITIES[0] is metric("spd")
    frame = pd.DataFrame({"group": ["a", "b"], "n": [3, 4], "tpr": [0.5, 0.25], "ppv": [1.0, 0.5]})
    assert list(group_table(frame, ["tpr", "ppv"]).columns) == ["Group", "n", "True positive rate", "Precision (PPV)"]
    assert undefined_text({"eod": "why"}) == "EOD n/a: why"
    row = compare({"disparities": {"worst_group_accuracy": 0.5}}, {"disparities": {"worst_group_accuracy": 0.7}},
                  "worst_group_accuracy")
    assert (row.label, row.higher_is_better, row.improved) == ("Worst-group accuracy", True, True)
    row = compare({"disparities": {"spd": 0.5}}, {"disparities": {"spd": 0.7}}, "spd")
    assert (row.label, row.higher_is_better, row.improved) == ("SPD", False, False)


OLD_TABLES = re.compile(r"^\s*(METRIC_LABELS|METRIC_NAMES|LOWER_IS_BETTER|RATE_LABELS|_HIGHER_IS_BETTER|_LABELS|"
                        r"LABELS|SHORT|_OVERALL)\s*(:[^=]+)?=\s*(\{|frozenset|dict\()", re.M)


def test_no_other_label_or_direction_table():
    found = []
    for folder in ("fairaudit", "appkit", "app_pages"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            found += [f"{path.relative_to(ROOT)}: {m.group(0).strip()}" for m in OLD_TABLES.finditer(path.read_text())]
    found += [f"app.py: {m.group(0).strip()}" for m in OLD_TABLES.finditer((ROOT / "app.py").read_text())]
    assert found == []


def test_cli_lists_the_catalogue(capsys):
    from fairaudit.cli import main

    assert main(["metrics", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listing] == list(CATALOGUE)
    spd = next(m for m in listing if m["name"] == "spd")
    assert (spd["label"], spd["better"], spd["kind"]) == ("SPD", "lower", "gap")
