"""The Compare page's runs table says when its S_R values were measured under different threat models."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("FAIRAUDIT_RAISE_APP_ERRORS", "1")

from streamlit.testing.v1 import AppTest  # noqa: E402

from fairaudit.compare.table import runs_table, threat_model_caption  # noqa: E402
from fairaudit.mitigation.froc import released_threat_model  # noqa: E402
from fairaudit.robustness import ThreatModel  # noqa: E402

RELEASED = released_threat_model().resolved("tabular").to_dict()
DEFAULT = ThreatModel(samples=256).resolved("tabular").to_dict()


def _audit(accuracy: float) -> dict:
    return {"overall": {"accuracy": accuracy, "balanced_accuracy": accuracy, "n": 100},
            "disparities": {"spd": 0.1, "deo": 0.1}, "meta": {"n_classes": 2}}


def _run(run_id: str, method: str, threat: dict | None, s_r: float | None = 0.5) -> dict:
    spec = {"method": method, "dataset": "adult", "model": "demo", "target": "income", "sensitive": ["sex"],
            "data_options": {}, "settings": {}, "seed": 0}
    record = {"run_id": run_id, "method": method, "dataset": "adult", "model": "demo", "seed": 0, "spec": spec,
              "config": {}, "before": _audit(0.85), "after": _audit(0.84), "status": "done"}
    if s_r is not None:
        record["robustness"] = {"before": {"s_r": 0.56}, "after": {"s_r": s_r},
                                **({"threat_model": threat} if threat else {})}
    return record


def test_the_caption_names_each_threat_model_and_its_rows():
    table = runs_table([_run("r1", "rbf", RELEASED), _run("r2", "reweight", DEFAULT),
                        _run("r3", "fbr", RELEASED), _run("r4", "erm", None, s_r=None)])
    note = threat_model_caption(table)
    assert note.startswith("S_R is not comparable across these rows: they were measured under different threat "
                           "models. froc_released_code: ε 0.1 LINF on all columns (one-hot blocks included), "
                           "predicted labels")
    # The baseline row carries the before S_R of its setup's first run (rbf's, under the released threat model).
    assert "— rbf, fbr, baseline (adult);" in note
    assert note.endswith("default: ε 0.1 LINF on numeric columns, true labels, PGD-10 (step 0.025, random start), "
                         "clipped to the observed range — reweight.")
    assert "erm" not in note  # it measured no S_R
    # One threat model (the number of attacked rows aside): nothing to say.
    same = dict(RELEASED, samples=128)
    assert threat_model_caption(runs_table([_run("r1", "rbf", RELEASED), _run("r3", "fbr", same)])) is None
    older = threat_model_caption(runs_table([_run("r1", "rbf", RELEASED), _run("r5", "reweight", None)]))
    assert "threat model not recorded (an older result) — reweight." in older


def test_the_compare_page_shows_the_caption(tmp_path, monkeypatch):
    from fairaudit import jobs

    records = {r["run_id"]: {**r, "id": r["run_id"]} for r in (_run("r1", "rbf", RELEASED),
                                                               _run("r2", "reweight", DEFAULT))}
    monkeypatch.setenv("FAIRAUDIT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(jobs, "list_runs", lambda limit=None, status=None, **kw: [] if status else
                        [{"id": k} for k in records])
    monkeypatch.setattr(jobs, "get_run", lambda run_id: records[run_id])
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app_pages" / "compare.py"), default_timeout=90)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.value.startswith("S_R is not comparable across these rows") for c in at.caption)
