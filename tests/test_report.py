"""The self-contained HTML audit report: sections, offline HTML, JSON, the CLI ``report`` command, the Run page.

Two tiny finished runs are made once for the module in a workspace of its
own: ``noop_finetune`` on Adult (a retrained MLP) and a one-epoch FAAP run on
32-pixel synthetic faces (a generator in front of a frozen small CNN).
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from fairaudit.errors import FairauditError
from fairaudit.report import ReportOptions, build_report, report_tolerances
from fairaudit.report import sections as S

FACES = {"image_size": 32, "n_train": 128, "n_val": 64, "n_test": 128, "bias": 0.9, "seed": 0}
PLOTLY_SCRIPT = re.compile(r'<script type="text/javascript" id="plotly-js">.*?</script>', re.S)
EXTERNAL = re.compile(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}", re.I)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model):
    """``{"adult": result, "faces": result}`` of two finished runs in a module-private workspace."""
    from fairaudit.jobs import JobSpec, run_job
    from fairaudit.train import TrainConfig
    from fairaudit.train.deployed import train_deployed_model
    from tests.conftest import registered_methods_workspace

    folder = tmp_path_factory.mktemp("report")
    with registered_methods_workspace(folder):
        torch.manual_seed(0)
        faces_model = folder / "faces.safetensors"
        train_deployed_model("synthetic-faces", arch="small_cnn", data_options=FACES, device="cpu",
                             config=TrainConfig(epochs=1, batch_size=64, lr=2e-3), out=faces_model)
        # The robustness section is checked on recorded results below (attacks would cost seconds here).
        adult = run_job(JobSpec("noop_finetune", "adult", model=tiny_model, device="cpu",
                                settings={"epochs": 2, "steps": 3, "lr": 0.01}, n_boot=50, robustness_samples=0,
                                split_samples=300))
        faces = run_job(JobSpec("faap", "synthetic-faces", model=str(faces_model), data_options=FACES, device="cpu",
                                settings={"epochs": 1, "generator_width": 4, "generator_blocks": 1}, n_boot=50,
                                robustness_samples=0, split_samples=300))
        yield {"adult": adult, "faces": faces}


PROGRESS: list[tuple[float, str]] = []


@pytest.fixture(scope="module")
def document(runs):
    return build_report([runs["faces"]["run_id"], runs["adult"]["run_id"]], explain=False, embed=False,
                        progress=lambda fraction, title: PROGRESS.append((fraction, title)))


@pytest.fixture(scope="module")
def page(document):
    return document.to_html()


class _Links(HTMLParser):
    """Every ``src`` / ``href`` / ``action`` / ``srcset`` / ``poster`` attribute of the document."""

    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data") and value is not None:
                self.links.append((tag, name, value))


def test_html_is_self_contained(page):
    from plotly.offline import get_plotlyjs

    # plotly.js is inline, exactly once, and no script is fetched from anywhere.
    assert page.count(get_plotlyjs()[:400]) == 1
    assert len(PLOTLY_SCRIPT.findall(page)) == 1
    assert not re.search(r"<script[^>]*\ssrc\s*=", page, re.I)
    assert not re.search(r"<link\b", page, re.I)
    # Every attribute that could load or link something points inside the document or is a data URI.
    parser = _Links()
    parser.feed(page)
    assert parser.links, "the table of contents links to the sections"
    outside = [link for link in parser.links if not link[2].startswith(("#", "data:image/png;base64,"))]
    assert outside == []
    images = [link for link in parser.links if link[0] == "img"]
    assert len(images) >= 12  # FAAP: 2 groups × 2 samples × (original, perturbation, perturbed)
    # Outside plotly.js (whose code mentions map-tile servers it never contacts here) no URL at all.
    rest = PLOTLY_SCRIPT.sub("", page)
    assert EXTERNAL.findall(rest) == []
    assert "cdn.plot.ly" not in rest and "mathjax" not in rest.lower()
    # The charts are drawn by the embedded library.
    assert rest.count("Plotly.newPlot(") >= 4  # before/after bars of both runs and their training curves


def test_html_holds_the_metrics_and_intervals_of_every_run(runs, page):
    for result in runs.values():
        assert f"Run {result['run_id']} · {result['method']} on {result['dataset']}" in page
        for stage in ("before", "after"):
            audit = result[stage]
            assert audit["disparities"]["deo"] is not None
            for name in ("deo", "spd", "eod", "dp_ratio"):
                value = audit["disparities"][name]  # None: undefined (e.g. a ratio of zero selection rates)
                assert ("<td>n/a</td>" if value is None else f"<td>{value:.3f}</td>") in page, (stage, name)
                if value is None:
                    assert S.esc(audit["undefined"][name]) in page, (stage, name)
            lo, hi = audit["ci"]["deo"]
            assert f"[{lo:.3f}, {hi:.3f}]" in page
            assert f"<td>{audit['overall']['accuracy']:.3f}</td>" in page
            for group in audit["groups"]:  # per-group table
                assert f"<td>{group['group']}</td>" in page
        change = result["after"]["disparities"]["deo"] - result["before"]["disparities"]["deo"]
        assert f"<td>{change:+.3f}</td>" in page
    # Versions and the command that repeats a run.
    assert f"<td>{torch.__version__}</td>" in page
    assert "python -m fairaudit mitigate faap --dataset synthetic-faces" in page


def test_verdicts_follow_the_tolerances(runs, document):
    adult = runs["adult"]
    checks = {c["name"]: c for c in document.section("verdicts").data["runs"][adult["run_id"]]}
    after = adult["after"]["disparities"]
    assert checks["dp_ratio"]["after_passes"] == (after["dp_ratio"] >= 0.8)  # the 80 % rule
    assert checks["deo"]["after_passes"] == (after["deo"] <= 0.1)
    assert checks["deo"]["rule"] == "≤ 0.10" and checks["dp_ratio"]["rule"] == "≥ 0.80"
    record = S.load_report_run(adult["run_id"])
    # A tolerance just above and just below the recorded DEO flips the verdict.
    deo = after["deo"]
    loose = S.verdicts_section([record], {"deo": min(1.0, deo + 0.01)}).data["runs"][adult["run_id"]]
    strict = S.verdicts_section([record], {"deo": max(0.0, deo - 0.01)}).data["runs"][adult["run_id"]]
    assert next(c for c in loose if c["name"] == "deo")["after_passes"] is True
    assert next(c for c in strict if c["name"] == "deo")["after_passes"] is (deo <= max(0.0, deo - 0.01) + 1e-12)
    section = S.verdicts_section([record], {"gap": 1.0, "ratio": 0.0, "floor": 0.0})
    assert all(c["after_passes"] for c in section.data["runs"][adult["run_id"]])
    assert '<td class="pass">pass</td>' in "".join(section.blocks)


def test_sections_without_their_data_say_why(runs, document):
    assert [s.key for s in document.sections] == ["overview", "metrics", "verdicts", "splits", "robustness",
                                                  "explanations", "perturbations", "embeddings", "tradeoff",
                                                  "training", "configuration"]
    assert [p[0] for p in PROGRESS] == [i / 11 for i in range(1, 12)]  # one progress(fraction, title) per section
    assert PROGRESS[0][1] == "Data and models" and PROGRESS[-1][1] == "Configuration"
    for key in ("overview", "metrics", "verdicts", "splits", "perturbations", "training", "configuration"):
        assert document.section(key).available, key
    explanations = document.section("explanations")
    assert not explanations.available and explanations.notes == [
        "Not available: explanations were switched off for this report."]
    adult, faces = runs["adult"]["run_id"], runs["faces"]["run_id"]
    robustness = document.section("robustness")
    assert not robustness.available
    assert robustness.notes == [f"Run {run}: not available: turned off (robustness_samples = 0)."
                                for run in (faces, adult)]
    splits = pd.DataFrame(document.section("splits").data["runs"][adult]).set_index(["Split", "Stage"])
    assert {"train", "test"} <= set(splits.index.get_level_values("Split"))
    test_after = splits.loc[("test", "after")]
    assert test_after["DEO"] == pytest.approx(runs["adult"]["after"]["disparities"]["deo"])


def test_robustness_and_split_sections_read_the_recorded_results():
    def block(acc, group_acc, gap):
        return {"overall": {"accuracy": acc}, "gap": gap,
                "groups": [{"group": g, "n": 10, "accuracy": a} for g, a in zip(("A", "B"), group_acc)]}

    run = {"run_id": "r1", "method": "faap", "dataset": "synthetic-faces",
           "robustness": {"before": {"clean": block(0.9, (0.95, 0.85), 0.1),
                                     "adversarial": {"pgd": block(0.41, (0.5, 0.32), 0.18)}, "s_r": {"pgd": 0.41}},
                          "after": {"clean": block(0.88, (0.9, 0.86), 0.04),
                                    "adversarial": {"pgd": block(0.47, (0.49, 0.45), 0.04)}, "s_r": {"pgd": 0.47}}},
           "splits": {split: {"before": {"overall": {"accuracy": 0.8}, "disparities": {"deo": d}},
                              "after": {"overall": {"accuracy": 0.79}, "disparities": {"deo": d / 2}}}
                      for split, d in (("train", 0.3), ("test", 0.2))}}
    section = S.robustness_section([run])
    table = pd.DataFrame(section.data["runs"]["r1"]["table"]).set_index(["Stage", "Input"])
    assert table.loc[("before", "pgd"), "Accuracy"] == 0.41
    assert table.loc[("before", "pgd"), "Worst-group accuracy"] == 0.32
    assert table.loc[("after", "clean"), "Group accuracy gap"] == 0.04
    assert section.data["runs"]["r1"]["s_r"] == {"before": {"pgd": 0.41}, "after": {"pgd": 0.47}}
    html = "".join(b for b in section.blocks if isinstance(b, str))
    assert "before pgd 0.410; after pgd 0.470" in html
    assert sum(isinstance(b, go.Figure) for b in section.blocks) == 1

    splits = pd.DataFrame(S.splits_section([run]).data["runs"]["r1"]).set_index(["Split", "Stage"])
    assert splits.loc[("train", "after"), "DEO"] == 0.15 and splits.loc[("test", "before"), "DEO"] == 0.2

    empty = S.robustness_section([{**run, "robustness": None}])
    assert not empty.available and empty.notes == ["Run r1: not available: this run recorded no robustness "
                                                   "evaluation."]
    half = S.robustness_section([{**run, "robustness": {**run["robustness"], "after": None,
                                                        "reason": "nothing to attack"}}])
    assert half.available and half.notes == ["Run r1: only before mitigation: nothing to attack."]
    assert set(pd.DataFrame(half.data["runs"]["r1"]["table"])["Stage"]) == {"before"}


def test_optional_sections_degrade_to_a_note(monkeypatch, runs):
    import types

    record = S.load_report_run(runs["faces"]["run_id"])
    failing = types.SimpleNamespace(explain_run=lambda *a, **k: (_ for _ in ()).throw(
        FairauditError("this dataset has no region masks.")))
    monkeypatch.setitem(__import__("sys").modules, "fairaudit.explain", failing)
    section = S.explanations_section([record])
    assert section.notes == [f"Run {record['run_id']}: not available: this dataset has no region masks."]

    class Grid:
        attribution_bias = pd.DataFrame({"group": ["Male=Female", "Male=Male"], "target_share": [0.61, 0.42]})

        def figure(self, opacity=0.5):
            return go.Figure(go.Heatmap(z=[[0, opacity]]))

    calls = []

    def explain_run(run_id, **kwargs):
        calls.append((run_id, kwargs))
        if kwargs["selection"] == "wrong_to_right":
            raise FairauditError("no test sample went from wrong to right.")
        return Grid()

    monkeypatch.setitem(__import__("sys").modules, "fairaudit.explain", types.SimpleNamespace(explain_run=explain_run))
    section = S.explanations_section([record], n=4, device="cpu")
    assert calls == [(record["run_id"], {"method": "gradcam", "selection": rule, "n": 4, "device": "cpu", "seed": 0})
                     for rule in ("wrong_to_right", "confident_errors")]  # the fallback when none was corrected
    entry = section.data["runs"][record["run_id"]]
    assert section.notes == [] and entry["selection"] == "confident_errors"
    assert entry["attribution_bias"][0]["target_share"] == 0.61
    html = "".join(b for b in section.blocks if isinstance(b, str))
    assert "<td>0.610</td>" in html and "most confident errors" in html

    monkeypatch.setitem(__import__("sys").modules, "fairaudit.embed", types.SimpleNamespace())
    section = S.embeddings_section([record], samples=100)
    assert not section.available and section.notes[0].startswith("Not available: fairaudit.embed has no embed_run")


def test_json_report_has_the_same_content(runs, document, tmp_path):
    path = document.write_json(tmp_path / "report.json")
    data = json.loads(path.read_text())
    assert set(data) == {"title", "runs", "generated", "options", "versions", "sections"}
    assert data["runs"] == [runs["faces"]["run_id"], runs["adult"]["run_id"]]
    assert data["options"] == {"explain": False, "embed": False, "samples": 2000, "tolerances": {}}
    for result in runs.values():
        metrics = data["sections"]["metrics"]["runs"][result["run_id"]]
        for stage in ("before", "after"):
            assert metrics[stage]["disparities"]["deo"] == pytest.approx(result[stage]["disparities"]["deo"])
            assert metrics[stage]["ci"]["deo"] == pytest.approx(result[stage]["ci"]["deo"])
        assert data["sections"]["configuration"]["runs"][result["run_id"]]["config"] == result["config"]
    assert data["sections"]["explanations"] == {"title": "Explanations", "available": False,
                                                "notes": ["Not available: explanations were switched off for "
                                                          "this report."]}
    models = data["sections"]["overview"]["models"]
    assert models[runs["faces"]["run_id"]]["arch"] == "small_cnn"
    assert models[runs["faces"]["run_id"]]["input_shape"] == [3, 32, 32]


def test_bad_input_is_refused():
    with pytest.raises(FairauditError, match="at least one run"):
        build_report([])
    with pytest.raises(FairauditError, match="there is no run 'nope'"):
        build_report(["nope"])
    with pytest.raises(FairauditError, match="sample size"):
        ReportOptions(samples=3)
    with pytest.raises(FairauditError, match="unknown tolerance 'deoo'"):
        report_tolerances({"deoo": "0.1"})
    with pytest.raises(FairauditError, match="tolerance 'deo' must be a number in"):
        ReportOptions(tolerances={"deo": 3.0})


def test_cli_report(runs, tmp_path, capsys, monkeypatch):
    from fairaudit.cli import main

    monkeypatch.setenv("FAIRAUDIT_HOME", str(Path(runs["adult"]["artifacts"]["result"]).parents[2]))
    adult = runs["adult"]["run_id"]
    html, out = tmp_path / "r.html", tmp_path / "r.json"
    code = main(["report", adult, "--html", str(html), "--json", str(out), "--no-explain", "--no-embed",
                 "--tolerance", "dp_ratio=0.9", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"report on {adult}" in captured.out and str(html) in captured.out
    data = json.loads(out.read_text())
    assert data["runs"] == [adult] and data["options"]["tolerances"] == {"dp_ratio": 0.9}
    assert {"overview", "metrics", "verdicts", "configuration"} <= set(data["sections"])
    dp = next(c for c in data["sections"]["verdicts"]["runs"][adult] if c["name"] == "dp_ratio")
    assert dp["rule"] == "≥ 0.90"
    assert f"{runs['adult']['after']['disparities']['deo']:.3f}" in html.read_text()

    for argv, message in ((["report", "nope", "--html", str(tmp_path / "x.html")], "there is no run 'nope'"),
                          (["report", adult], "give --html"),
                          (["report", adult, "--html", str(tmp_path / "missing" / "x.html")], "does not exist"),
                          (["report", adult, "--json", str(out), "--tolerance", "deo"], "expects name=value")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "x.html").exists()


def test_run_page_offers_the_report(runs, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    import appkit.state

    monkeypatch.setenv("FAIRAUDIT_HOME", str(Path(runs["adult"]["artifacts"]["result"]).parents[2]))
    monkeypatch.setattr(appkit.state, "start_run", lambda setup: None)  # no demo audit in this workspace
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("app_pages/run.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == f"Run {runs['faces']['run_id']}"  # the newest run
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels.count("Download audit report (HTML)") == 1


def test_explanations_and_embeddings_of_a_real_run(runs):
    """The sections call the explanation and embedding modules for real on the tiny FAAP run."""
    import fairaudit.embed
    import fairaudit.explain

    if not hasattr(fairaudit.explain, "explain_run") or not hasattr(fairaudit.embed, "embed_run"):
        pytest.skip("the explanation or embedding module is not complete in this checkout")
    record = S.load_report_run(runs["faces"]["run_id"])
    explanations = S.explanations_section([record], n=2, device="cpu")
    assert explanations.notes == [] and explanations.available
    assert sum(isinstance(b, go.Figure) for b in explanations.blocks) == 1
    embeddings = S.embeddings_section([record], samples=60, device="cpu")
    assert embeddings.notes == [] and embeddings.available
    entry = embeddings.data["runs"][record["run_id"]]
    assert entry["n"] == 60 and {row["Stage"] for row in entry["leakage"]} == {"before", "after"}
    # Once computed, the leakage is reused by a report without embeddings.
    cached = S.embeddings_section([record], enabled=False)
    assert cached.data["runs"][record["run_id"]]["leakage"] == entry["leakage"]


def test_undefined_gaps_read_na_with_their_reason_in_the_report():
    reason = ("only group 'color=red' defines the true-positive rate of class '3' (no other group has samples "
              "of class '3')")
    undefined = {"overall": {"accuracy": 0.99}, "disparities": {"deo": None, "eod": None, "spd": 0.2},
                 "ci": {"deo": None, "eod": None}, "undefined": {"deo": reason, "eod": reason}}
    defined = {"overall": {"accuracy": 0.6}, "disparities": {"deo": 0.9, "eod": 0.45, "spd": 0.2}, "ci": {}}
    run = {"run_id": "r1", "method": "erm", "dataset": "colored-digits", "before": undefined, "after": defined,
           "splits": {"train": {"before": undefined, "after": undefined}, "test": {"before": defined,
                                                                              "after": defined}}}
    splits = S.splits_section([run])
    table = pd.DataFrame(splits.data["runs"]["r1"]).set_index(["Split", "Stage"])
    assert table.loc[("train", "after"), "EOD"] == "n/a" and table.loc[("test", "after"), "EOD"] == 0.45
    assert table.loc[("train", "after"), "Why n/a"] == f"DEO: {reason}; EOD: {reason}"
    assert table.loc[("test", "after"), "Why n/a"] == ""
    html = "".join(b for b in splits.blocks if isinstance(b, str))
    assert "<td>n/a</td>" in html and S.esc(reason) in html
    verdicts = S.verdicts_section([run])
    checks = {c["name"]: c for c in verdicts.data["runs"]["r1"]}
    assert checks["eod"]["before"] is None and checks["eod"]["before_passes"] is None
    assert checks["eod"]["before_undefined"] == reason and checks["eod"]["after_undefined"] is None
    assert checks["eod"]["after"] == 0.45
    html = "".join(b for b in verdicts.blocks if isinstance(b, str))
    assert "<td>undefined</td>" in html and S.esc(f"before: {reason}") in html
    from fairaudit.metrics import PER_GROUP_METRICS

    group = [{"group": "color=red", "attributes": {"color": "red"}, "n": 10, **dict.fromkeys(PER_GROUP_METRICS, 0.5)}]
    metrics = S.metrics_section([{**run, "before": {**undefined, "groups": group},
                                  "after": {**defined, "groups": group}}])
    comparison = pd.DataFrame(metrics.data["runs"]["r1"]["comparison"]).set_index("Metric")
    assert comparison.loc["EOD", "Note"] == f"before n/a: {reason}"
    html = "".join(b for b in metrics.blocks if isinstance(b, str))
    assert S.esc(f"before n/a: {reason}") in html
