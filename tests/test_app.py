"""The Streamlit app, driven headlessly with ``streamlit.testing.v1.AppTest``.

The demo model is trained once per session (``demo_home``); the first audit
pass is shared by the tests through the app's process-wide background
registry, so only the first test that opens the Audit page waits for it.
"""

from __future__ import annotations

import json

import io
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairaudit.audit import audit_predictions
from appkit import background
from appkit.runner import AuditRun
from fairaudit.views.tables import disparity_checks

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "app.py")
AUDIT = "app_pages/audit.py"
DATA = "app_pages/data_and_model.py"
TIMEOUT = 180


@pytest.fixture()
def app(demo_home) -> AppTest:
    yield AppTest.from_file(APP, default_timeout=TIMEOUT)
    # A pass still running when the interpreter exits would abort it: let started passes finish.
    for key in background.keys():
        background.wait(key, timeout=TIMEOUT)


def open_page(at: AppTest, page: str) -> AppTest:
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics_by_label(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# ---------------------------------------------------------------------------- pages render


def test_home_button_opens_the_demo_audit(app):
    app.run()
    assert not app.exception
    assert app.title[0].value == "fairaudit"
    assert [b.label for b in app.button] == ["Open the demo audit"]
    app.button[0].click().run()
    assert not app.exception
    assert "DEO" in metrics_by_label(app)  # the click lands on the demo audit


def test_data_page_previews_groups_of_demo_dataset(app):
    at = open_page(app, DATA)
    assert at.selectbox(key="dataset:builtin").value == "synthetic-faces"
    assert at.selectbox(key="target:synthetic-faces").value == "Smiling"
    assert at.multiselect(key="sensitive:synthetic-faces").value == ["Male"]
    # 2 groups (Male yes / no) × 6 preview images each.
    assert len(at.image) == 12
    assert not at.error


def test_audit_page_shows_disparity_cards_with_numbers(app):
    at = open_page(app, AUDIT)
    cards = metrics_by_label(at)
    for label in ("SPD", "DEO", "EO max", "EOD", "AAOD", "AED", "DP ratio", "Worst-group accuracy", "Accuracy"):
        assert label in cards, cards
    assert 0.0 <= float(cards["DEO"]) <= 2.0
    assert 0.0 <= float(cards["SPD"]) <= 1.0
    # The demo model is trained on data where Smiling follows Male 90 % of the time: a visible gap.
    assert float(cards["SPD"]) > 0.05
    assert at.tabs and [t.label for t in at.tabs][:4] == ["Groups", "Confusion matrices", "Intersections",
                                                          "Misclassified samples"]
    assert len(at.get("plotly_chart")) >= 4  # bars + 2 confusion matrices + intersection heatmap
    labels = [d.proto.label for d in at.get("download_button")]
    assert [label for label in labels if label != "Chart data (CSV)"] == ["Group table (CSV)", "Full report (JSON)"]
    assert labels.count("Chart data (CSV)") == len(at.get("plotly_chart"))  # every chart offers its data
    names = [json.loads(c.proto.config)["toImageButtonOptions"] for c in at.get("plotly_chart")]
    assert names[0] == {"format": "png", "filename": "fairaudit-metrics-per-group", "scale": 2}
    assert all(n["filename"].startswith("fairaudit-") and n["format"] == "png" for n in names)


def test_threshold_slider_recomputes_from_stored_predictions(app):
    at = open_page(app, AUDIT)
    before = metrics_by_label(at)
    audits = [background.get(k).result for k in background.keys() if background.get(k).done]
    preds = next(r.predictions for r in audits if isinstance(r, AuditRun) and r.setup.is_demo)
    at.slider(key="threshold").set_value(0.85).run()
    assert not at.exception
    after = metrics_by_label(at)
    assert after["Accuracy"] != before["Accuracy"] or after["SPD"] != before["SPD"]
    expected = audit_predictions(preds, threshold=0.85, n_boot=0)
    assert after["SPD"] == f"{expected.disparities['spd']:.3f}"
    assert after["Accuracy"] == f"{expected.overall['accuracy']:.3f}"


def test_tolerance_turns_a_card_from_fail_to_pass(app):
    at = open_page(app, AUDIT)
    spd = float(metrics_by_label(at)["SPD"])
    at.number_input(key="tol-gap").set_value(round(min(1.0, spd + 0.05), 2)).run()
    card = next(m for m in at.metric if m.label == "SPD")
    assert card.proto.delta.startswith("pass")
    at.number_input(key="tol-gap").set_value(round(max(0.0, spd - 0.05), 2)).run()
    card = next(m for m in at.metric if m.label == "SPD")
    assert card.proto.delta.startswith("fail")


# ---------------------------------------------------------------------------- errors are shown, not raised


def test_missing_checkpoint_path_shows_specific_error(app):
    at = open_page(app, DATA)
    at.radio(key="model-kind").set_value("path").run()
    at.text_input(key="model-path").input("/no/such/model.safetensors").run()
    at.button[0].click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["the model file '/no/such/model.safetensors' does not exist."]
    assert at.session_state["audit_setup"].model == "demo"  # the failed choice did not replace the audit


def test_corrupt_checkpoint_upload_shows_specific_error(app):
    at = open_page(app, DATA)
    at.radio(key="model-kind").set_value("upload").run()
    at.file_uploader(key="model-upload").set_value(("model.safetensors", b"not a model", "application/octet-stream"))
    at.run()
    at.button[0].click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "the file 'model.safetensors' is not a recognised model format "
        "(expected safetensors, a PyTorch state_dict or a TorchScript archive)."]


def test_torchscript_upload_is_refused_unless_allowed(app, tmp_path):
    from tests.bad_inputs.cases_models import hostile_torchscript

    marker = tmp_path / "marker"
    data = hostile_torchscript(tmp_path, "setstate", marker).read_bytes()
    at = open_page(app, DATA)
    at.radio(key="model-kind").set_value("upload").run()
    at.file_uploader(key="model-upload").set_value(("evil.pt", data, "application/octet-stream"))
    at.run()
    assert not at.checkbox(key="model-torchscript-upload").value and not at.warning
    at.button[0].click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "the file 'evil.pt' is a TorchScript archive, a program that can read and write files when it is loaded or "
        "run, so it was refused; pass --allow-torchscript (in the app: tick 'Allow TorchScript') only if you trust "
        "its author, or save its state_dict as safetensors instead."]
    assert not marker.exists()
    at.checkbox(key="model-torchscript-upload").check().run()
    assert any("A TorchScript archive is a program" in w.value for w in at.warning)
    assert not marker.exists()


def test_server_binds_to_localhost_with_the_documented_upload_limit():
    import tomllib

    root = Path(APP).parent
    server = tomllib.loads((root / ".streamlit" / "config.toml").read_text())["server"]
    assert server["address"] == "127.0.0.1" and server["maxUploadSize"] == 200
    readme = (root / "README.md").read_text()
    assert "binds the app to\n`127.0.0.1`" in readme and "limited to 200 MB per file" in readme


def test_missing_dataset_folder_shows_specific_error(app):
    at = open_page(app, DATA)
    at.segmented_control(key="data-source").set_value("folder").run()
    at.selectbox(key="dataset:folder").set_value("celeba").run()
    at.text_input(key="folder:celeba").input("/no/such/folder").run()
    assert not at.exception
    assert [e.value for e in at.error] == ["data folder '/no/such/folder' does not exist."]


def _predictions_csv(scores: np.ndarray) -> bytes:
    rng = np.random.default_rng(0)
    n = len(scores)
    frame = pd.DataFrame({"label": rng.integers(0, 2, n), "pred": (scores >= 0.5).astype(int), "score": scores,
                          "sex": rng.choice(["F", "M"], n), "age": rng.choice(["young", "old"], n)})
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return buf.getvalue().encode()


def test_bad_predictions_upload_shows_specific_error(app):
    at = open_page(app, DATA)
    at.segmented_control(key="data-source").set_value("predictions").run()
    bad = _predictions_csv(np.linspace(-0.5, 1.5, 40))
    at.file_uploader(key="predictions-upload").set_value(("preds.csv", bad, "text/csv")).run()
    at.button[0].click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["score column 'score' must hold probabilities in [0, 1]."]


def test_predictions_upload_is_audited(app):
    at = open_page(app, DATA)
    at.segmented_control(key="data-source").set_value("predictions").run()
    good = _predictions_csv(np.random.default_rng(1).uniform(0, 1, 200))
    at.file_uploader(key="predictions-upload").set_value(("preds.csv", good, "text/csv")).run()
    assert at.selectbox(key="pred-score").value == "score"
    assert at.multiselect(key="pred-sensitive").value == ["sex"]
    at.button[0].click().run()
    assert not at.exception
    at.switch_page(AUDIT).run()
    assert not at.exception
    cards = metrics_by_label(at)
    assert cards["Samples"] == "200"
    assert "DEO" in cards and cards["Groups"] == "2"
    # The URL names the audit, so a reloaded page (a new session) resumes it instead of the demo.
    key = at.query_params["audit"]
    key = key[0] if isinstance(key, list) else key
    reloaded = AppTest.from_file(APP, default_timeout=TIMEOUT)
    reloaded.query_params["audit"] = key
    open_page(reloaded, AUDIT)
    assert metrics_by_label(reloaded) == cards


def test_audit_page_shows_an_undefined_gap_as_na_with_its_reason(app):
    rng = np.random.default_rng(2)
    n = 120
    sex = np.repeat(["F", "M"], n // 2)
    label = np.where(sex == "F", 0, rng.integers(0, 2, n))  # no woman is a positive: only M has a TPR
    scores = rng.uniform(0, 1, n)
    frame = pd.DataFrame({"label": label, "pred": (scores >= 0.5).astype(int), "score": scores, "sex": sex})
    at = open_page(app, DATA)
    at.segmented_control(key="data-source").set_value("predictions").run()
    at.file_uploader(key="predictions-upload").set_value(("one-sided.csv", frame.to_csv(index=False).encode(),
                                                          "text/csv")).run()
    at.button[0].click().run()
    at.switch_page(AUDIT).run()
    assert not at.exception, [e.value for e in at.exception]
    cards = metrics_by_label(at)
    assert cards["EOD"] == "n/a" and cards["DEO"] == "n/a" and cards["SPD"] != "n/a"
    reason = "only group 'sex=M' defines the true-positive rate (no other group has positives ('1'))"
    assert f"n/a: {reason}." in [c.value for c in at.caption]


# ---------------------------------------------------------------------------- Streamlit-free helpers


def test_background_registry_runs_once_per_key_and_reports_progress():
    calls = []

    def work(x, progress):
        calls.append(x)
        progress(0.5, "half way")
        time.sleep(0.2)
        return x * 2

    key = f"test:{time.time()}"
    first = background.submit(key, work, 21)
    second = background.submit(key, work, 99)  # same key: the running task is reused
    assert first.running and second.key == key
    state = background.wait(key, timeout=10)
    assert state.done and state.result == 42 and state.fraction == 1.0 and state.message == "half way"
    assert calls == [21]


def test_background_registry_records_failure_and_retries():
    def boom(progress):
        raise ValueError("broken input")

    key = f"test-fail:{time.time()}"
    background.submit(key, boom)
    state = background.wait(key, timeout=10)
    assert state.failed and isinstance(state.error, ValueError) and "broken input" in state.traceback
    background.submit(key, lambda progress: "ok")  # a failed task is started afresh
    assert background.wait(key, timeout=10).result == "ok"


def test_disparity_checks_use_direction_of_each_metric():
    checks = {c.name: c for c in disparity_checks(
        {"spd": 0.12, "deo": 0.05, "eo_max": float("nan"), "eod": 0.1, "aaod": 0.0, "aed": 0.3,
         "dp_ratio": 0.79, "worst_group_accuracy": 0.81}, {"gap": 0.1, "ratio": 0.8, "floor": 0.8})}
    assert checks["spd"].passes is False and checks["deo"].passes is True and checks["eod"].passes is True
    assert checks["eo_max"].passes is None and checks["eo_max"].value_text == "n/a"
    assert checks["dp_ratio"].passes is False and checks["worst_group_accuracy"].passes is True
    assert checks["dp_ratio"].verdict == "fail · ≥ 0.80"


def test_suggested_sensitive_columns_put_named_and_few_valued_columns_first():
    from fairaudit.views.gallery import suggest_sensitive

    frame = pd.DataFrame({"id": range(50), "label": [0, 1] * 25, "pred": [1, 0] * 25,
                          "region": ["n", "s", "e", "w", "c"] * 10, "race": ["a", "b"] * 25})
    assert suggest_sensitive(frame, ("label", "pred")) == ["race", "region", "id"]


def test_setup_key_follows_every_choice_that_changes_predictions():
    from dataclasses import replace

    from appkit.setup import AuditSetup, demo_setup, full_options

    demo = demo_setup()
    same = AuditSetup().with_options(full_options("synthetic-faces", {"bias": 0.9}))
    assert same.key() == demo.key()
    assert demo.with_options(full_options("synthetic-faces", {"bias": 0.5})).key() != demo.key()
    assert replace(demo, split="val").key() != demo.key()
    upload = replace(demo, model="upload", upload_name="m.pt", upload_bytes=b"a")
    assert replace(upload, upload_bytes=b"b").key() != upload.key()
    assert demo.title() == "synthetic-faces · test · demo model"


def test_undefined_checks_carry_their_reason_and_multiclass_rates_show_per_class():
    from fairaudit.metrics import audit_metrics
    from fairaudit.views.tables import group_table, metric_with_errors

    checks = {c.name: c for c in disparity_checks({"spd": 0.2, "eod": None}, None, {"eod": "only group 'g=A' "
                                                                                          "defines it"})}
    assert checks["eod"].value_text == "n/a" and checks["eod"].reason == "only group 'g=A' defines it"
    assert checks["eod"].help_text.endswith("n/a: only group 'g=A' defines it.") and checks["spd"].reason == ""
    y = np.array([0, 1, 2, 2, 0, 1, 1, 2])
    report = audit_metrics(y, y_pred=np.array([0, 1, 2, 0, 0, 2, 1, 2]), sensitive=np.repeat([0, 1], 4),
                           sensitive_names=["g"], class_names=["a", "b", "c"], n_boot=0, device="cpu")
    table = group_table(report.groups_frame(), ["selection_rate", "tpr"])
    assert list(table.columns) == ["Group", "n", "Selection rate [a]", "Selection rate [b]", "Selection rate [c]",
                                   "True positive rate"]
    assert table["Selection rate [a]"].tolist() == [0.5, 0.25]
    bars = metric_with_errors(report.groups_frame(), ["selection_rate"])
    assert sorted(set(bars["metric"])) == ["Selection rate [a]", "Selection rate [b]", "Selection rate [c]"]
