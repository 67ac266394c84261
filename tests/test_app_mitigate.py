"""The Mitigate and Run pages (``streamlit.testing.v1.AppTest``) and their Streamlit-free helpers.

Every test gets a workspace of its own (so the job table holds only its
runs) and the test method ``noop_finetune``. Runs launched from the page go
to a real detached worker process, which is killed at the end of the test.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from fairaudit.errors import FairauditError
from fairaudit.jobs import JobSpec, get_run, list_runs, run_job
from fairaudit.jobs import worker as worker_module
from fairaudit.mitigation.base import METHODS, config_help
from fairaudit.views import jobs_view

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "app.py")
MITIGATE = "app_pages/mitigate.py"
RUN = "app_pages/run.py"
TIMEOUT = 60


@pytest.fixture
def app(home, monkeypatch) -> AppTest:
    import appkit.state

    # The home page warms up the demo audit; in this fresh workspace that would train the faces demo model.
    monkeypatch.setattr(appkit.state, "start_run", lambda setup: None)
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def open_page(at: AppTest, page: str) -> AppTest:
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics_by_label(at: AppTest) -> dict:
    return {m.label: m for m in at.metric}


def choose(at: AppTest, method: str, dataset: str) -> None:
    at.selectbox(key="mitigate-method").set_value(method).run()
    at.selectbox(key=f"mitigate-dataset:{method}").set_value(dataset).run()
    assert not at.exception, [e.value for e in at.exception]


def launch(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label == "Launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# ---------------------------------------------------------------------------- pages


def test_mitigate_page_builds_the_form_from_the_method_settings(app):
    from fairaudit.mitigation.faap import FAAP

    at = open_page(app, MITIGATE)
    assert at.title[0].value == "Mitigate bias"
    # Defaults: FAAP on the audited setup (the synthetic-faces demo), with the paper's hyper-parameters.
    assert at.selectbox(key="mitigate-method").value == "faap"
    assert at.selectbox(key="mitigate-dataset:faap").value == "synthetic-faces"
    assert at.radio(key="mitigate-model").value == "demo"
    epsilon = at.number_input(key="setting:faap:epsilon")
    assert epsilon.value == 0.05 and "0.05" in epsilon.help
    assert at.number_input(key="setting:faap:epochs").value == FAAP.Config().epochs
    split = at.selectbox(key="setting:faap:train_split")  # a string setting whose help lists its values
    assert split.value == FAAP.Config().train_split and split.options == ["train", "val"]
    assert [i.value for i in at.info] == ["No runs yet: choose a method above and launch one."]
    # FAAP perturbs images: the tabular Adult dataset is not offered for it.
    assert not any(o.startswith("adult") for o in at.selectbox(key="mitigate-dataset:faap").options)
    # Every registered method gets a form with one widget per setting.
    for name in sorted(METHODS):
        at.selectbox(key="mitigate-method").set_value(name).run()
        assert not at.exception, (name, [e.value for e in at.exception])
        shown = {w.key.rsplit(":", 1)[1] for w in at.main if getattr(w, "key", None)
                 and str(w.key).startswith(f"setting:{name}:")}
        assert shown == {row["name"] for row in config_help(METHODS[name])}, name


def test_mitigate_page_states_only_the_effects_the_shipped_benchmark_measured(app):
    from fairaudit.benchmark.published import published_effects

    at = open_page(app, MITIGATE)
    # FAAP was benchmarked against only_task and did not beat it: the page says so, with the numbers.
    expander = next(e for e in at.expander if e.label.startswith("Measured effect of faap"))
    assert expander.label == "Measured effect of faap: does not beat its controls (fairaudit benchmark)"
    shown = expander.markdown[0].value
    for effect in published_effects("faap"):
        assert f"- {effect.sentence()}" in shown
    assert "DEO vs faap[only_task]: −0.005 [−0.017, +0.006] over 3 seeds" in shown
    # The benchmarks on other deployed models name their target and data options.
    assert ("DEO vs the deployed model: +0.229 [−0.200, +0.658] over 3 seeds on synthetic-faces (Smiling, "
            "bias=0.7) with epochs=4 ✗") in shown
    assert "on synthetic-faces (Blond_Hair) with epochs=4" in shown
    # reweight beat its erm control on SPD over 3 seeds on Adult.
    at.selectbox(key="mitigate-method").set_value("reweight").run()
    expander = next(e for e in at.expander if e.label.startswith("Measured effect of reweight"))
    assert expander.label == "Measured effect of reweight: beats its controls on SPD (fairaudit benchmark)"
    assert "SPD vs erm: −0.080 [−0.094, −0.066] over 3 seeds on adult ✓" in expander.markdown[0].value
    at.selectbox(key="mitigate-method").set_value("fair_penalty").run()
    assert any(e.label == "Measured effect of fair_penalty: beats its controls on AED, SPD (not on Worst-group "
               "accuracy, DEO) (fairaudit benchmark)" for e in at.expander), [e.label for e in at.expander]
    # label_flip beats erm with its defaults (p = 0.5); the p = 0.3 benchmark is shown, labelled, and not counted.
    at.selectbox(key="mitigate-method").set_value("label_flip").run()
    expander = next(e for e in at.expander if e.label.startswith("Measured effect of label_flip"))
    assert expander.label == "Measured effect of label_flip: beats its controls on AED (fairaudit benchmark)"
    assert "AED vs erm: −0.003 [−0.014, +0.009] over 3 seeds on adult with p=0.3 ✗" in expander.markdown[0].value
    # ASAC was measured with one epoch only: shown with those settings, and it does not beat its controls.
    at.selectbox(key="mitigate-method").set_value("asac").run()
    expander = next(e for e in at.expander if e.label.startswith("Measured effect of asac"))
    assert expander.label == "Measured effect of asac: does not beat its controls (fairaudit benchmark)"
    assert "with epochs=1, stats_samples=200" in expander.markdown[0].value
    # A method the benchmark has not measured claims nothing (erm is only ever a control).
    at.selectbox(key="mitigate-method").set_value("erm").run()
    assert not any(e.label.startswith("Measured effect of erm") for e in at.expander)
    assert any("Measured effect: none yet — `erm` has not been benchmarked" in c.value for c in at.caption)


def test_launch_queues_a_run_for_a_background_worker(app):
    at = open_page(app, MITIGATE)
    choose(at, "noop_finetune", "adult")
    at.number_input(key="setting:noop_finetune:epochs").set_value(2)
    at.checkbox(key="setting:noop_finetune:post").check()
    launch(at)
    assert not at.error, [e.value for e in at.error]
    runs = list_runs()
    assert len(runs) == 1
    run = get_run(runs[0]["id"])
    assert at.success[0].value.startswith(f"Run {run['id']} queued")
    assert run["status"] in ("queued", "running") and run["backend"] == "local"
    assert run["spec"]["settings"] == {"epochs": 2, "post": True} and run["spec"]["model"] == "demo"
    assert run["config"]["epochs"] == 2 and run["config"]["steps"] == 5  # the rest keeps its default
    # A detached worker process takes it, not the script thread.
    assert len(worker_module._CHILDREN) == 1 and worker_module._CHILDREN[0].pid != os.getpid()

    table = at.dataframe[0].value
    assert list(table["Run"]) == [run["id"]] and list(table["Method"]) == ["noop_finetune"]
    assert table["Status"].iloc[0] in ("queued", "running")
    assert '"progress"' in at.dataframe[0].proto.columns  # the Progress column draws a bar
    assert at.selectbox(key="mitigate-run").value == run["id"]
    assert [b.label for b in at.button if b.key and b.key.startswith("mitigate-")] == ["Cancel"]

    at.button(key="mitigate-cancel").click().run()
    assert not at.exception, [e.value for e in at.exception]
    stopped = get_run(run["id"])
    assert stopped["status"] == "cancelled" or stopped["cancel_requested"]


def test_bad_settings_show_the_error_and_queue_nothing(app, tiny_model):
    at = open_page(app, MITIGATE)
    choose(at, "noop_finetune", "adult")
    at.number_input(key="setting:noop_finetune:epochs").set_value(0)
    launch(at)
    assert [e.value for e in at.error] == ["setting 'epochs' of 'noop_finetune' must be >= 1, got 0."]

    at.radio(key="mitigate-model").set_value("path").run()
    at.text_input(key="mitigate-model-path").input("/no/such/model.safetensors").run()
    at.number_input(key="setting:noop_finetune:epochs").set_value(1)  # form values count on submit
    launch(at)
    assert [e.value for e in at.error] == ["model file '/no/such/model.safetensors' does not exist."]
    assert list_runs() == [] and worker_module._CHILDREN == []


def test_finished_run_shows_before_after_card_and_run_page(app, tiny_model):
    result = run_job(JobSpec("noop_finetune", "adult", model=tiny_model, device="cpu",
                             settings={"epochs": 2, "steps": 3, "lr": 0.01}, n_boot=50))
    before, after = result["before"], result["after"]

    at = open_page(app, MITIGATE)
    assert at.selectbox(key="mitigate-run").value == result["run_id"]
    cards = metrics_by_label(at)
    assert list(cards) == ["Accuracy", "DP difference (SPD)", "DEO", "EOD"]
    for label, section, name in (("Accuracy", "overall", "accuracy"), ("DEO", "disparities", "deo"),
                                 ("EOD", "disparities", "eod")):
        assert cards[label].value == f"{after[section][name]:.3f}"
        assert cards[label].proto.delta == f"{after[section][name] - before[section][name]:+.3f}"
    lo, hi = after["ci"]["deo"]
    assert any(f"[{lo:.3f}, {hi:.3f}]" in c.value for c in at.caption)  # the interval is shown
    assert len(at.get("plotly_chart")) == 1  # the loss curve over 2 epochs

    at.switch_page(RUN).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == f"Run {result['run_id']}"
    assert metrics_by_label(at)["DEO"].value == f"{after['disparities']['deo']:.3f}"
    assert [t.label for t in at.tabs] == ["Before / after", "Groups", "Training", "Configuration", "Artefacts"]
    comparison = at.dataframe[0].value
    deo = comparison.set_index("Metric").loc["DEO"]
    assert deo["Before"] == f"{before['disparities']['deo']:.3f}"  # shown as text, so an undefined one reads n/a
    assert deo["After"] == f"{after['disparities']['deo']:.3f}"
    labels = [d.proto.label for d in at.get("download_button")]
    assert {"model", "result", "before_predictions", "after_predictions"} <= set(labels)
    assert at.query_params["run"] in (result["run_id"], [result["run_id"]])  # a reload shows the same run


# ---------------------------------------------------------------------------- Streamlit-free helpers


def test_setting_fields_follow_the_defaults_and_help():
    from fairaudit.mitigation.faap import FAAP

    fields = {f.name: f for f in jobs_view.setting_fields(config_help(FAAP))}
    assert (fields["epsilon"].kind, fields["epsilon"].step) == ("float", 0.01)
    assert (fields["lr_generator"].kind, fields["lr_generator"].step) == ("float", 0.001)
    assert fields["epochs"].kind == "int" and fields["train_split"].choices == ("train", "val")
    assert jobs_view.changed_settings(list(fields.values()), {"epsilon": 0.05, "epochs": 3}) == {"epochs": 3}
    free_text, optional, fixed = jobs_view.setting_fields([
        {"name": "note", "default": "", "help": "any 'x' text"}, {"name": "groups", "default": None, "help": ""},
        {"name": "layers", "default": [64, 64], "help": ""}])
    assert free_text.kind == "text" and free_text.choices == ()
    assert (optional.kind, fixed.kind) == ("optional", "fixed")


def test_curves_split_losses_from_other_metrics_and_keep_the_latest_epoch():
    rows = [{"step": 0, "epoch": 1, "name": "loss", "value": 0.9},
            {"step": 0, "epoch": 1, "name": "val_deo", "value": 0.30},
            {"step": 1, "epoch": 2, "name": "loss", "value": 0.7},
            {"step": 1, "epoch": 2, "name": "val_deo", "value": 0.20},
            {"step": 2, "epoch": 2, "name": "loss", "value": 0.6},  # epoch 2 again, after a resume
            {"step": 3, "epoch": None, "name": "loss", "value": 5.0}]
    history = jobs_view.metric_history(rows)
    assert history.index.tolist() == [1, 2] and history["loss"].tolist() == [0.9, 0.6]
    fig = jobs_view.training_curves(rows)
    panels = {t.name: t.xaxis for t in fig.data}
    assert panels == {"loss": "x", "val_deo": "x2"}
    assert [a.text for a in fig.layout.annotations] == ["Losses", "Accuracy and fairness"]
    assert jobs_view.training_curves([]) is None


def test_comparisons_and_job_table_read_the_recorded_audits():
    before = {"overall": {"accuracy": 0.80, "n": 100}, "disparities": {"spd": 0.30, "deo": 0.40, "eod": 0.2},
              "ci": {"accuracy": [0.75, 0.85], "deo": [0.3, 0.5], "spd": None}}
    after = {"overall": {"accuracy": 0.78, "n": 100}, "disparities": {"spd": 0.10, "deo": None, "eod": 0.25},
             "ci": {"accuracy": [0.70, 0.82]}}
    acc, spd, deo, eod = jobs_view.headline_comparisons(before, after)
    assert acc.change == pytest.approx(-0.02) and acc.improved is False and acc.before_ci == (0.75, 0.85)
    assert spd.improved is True and spd.before_ci is None and spd.change_text == "-0.200"
    assert math.isnan(deo.after) and deo.improved is None and deo.value_text == "n/a"
    assert eod.improved is False
    long = jobs_view.before_after_long(before, after, ["accuracy", "deo"])
    row = long[(long.group == "Before") & (long.metric == "DEO")].iloc[0]
    assert (row.err_minus, row.err_plus) == pytest.approx((0.1, 0.1))

    runs = [{"id": "r2", "method": "faap", "dataset": "synthetic-faces", "model": "/x/m.safetensors",
             "status": "running", "phase": "mitigating", "progress": 0.5, "summary": {"before": {"deo": 0.4}},
             "created": 100.0, "started": 110.0, "finished": None}]
    table = jobs_view.job_table(runs, now=130.0)
    assert table.loc[0, ["Model", "Progress", "DEO before → after", "Seconds"]].tolist() == [
        "m.safetensors", 0.5, "0.400 → –", 20.0]
    assert table.loc[0, "Accuracy before → after"] == "" and table.loc[0, "Status"] == "running"
    assert jobs_view.epoch_text({"event": {"event": "step", "epoch": 0}, "config": {"epochs": 6}}) == "epoch 1/6"
    assert jobs_view.epoch_text({"event": {"event": "epoch", "epoch": 2}, "config": {}}) == "epoch 2"


def test_cli_command_reproduces_the_spec():
    spec = JobSpec("faap", "synthetic-faces", settings={"epochs": "3", "train_split": "val"}, device="cpu",
                   data_options={"bias": 0.5}, seed=2).to_dict()
    command = jobs_view.cli_command(spec)
    assert command.startswith("python -m fairaudit mitigate faap --dataset synthetic-faces")
    assert "--set epochs=3 --set train_split=val" in command and "--data-opt bias=0.5" in command
    assert command.endswith("--device cpu --seed 2 --bootstrap 200 --detach")


def test_faap_samples_apply_the_saved_generator(tmp_path):
    from fairaudit.mitigation import faap

    torch.manual_seed(0)
    config = faap.FaapConfig(epsilon=0.05, generator_width=4, generator_blocks=1)
    generator = faap.PerturbationGenerator(3, config.generator_width, config.generator_blocks, config.epsilon)
    path = faap._save_generator(generator, config, tmp_path)  # the file a FAAP run leaves as its artefact
    run = {"artifacts": {"generator": str(path)},
           "spec": {"dataset": "synthetic-faces", "data_options": {"n_test": 64, "image_size": 32}}}
    samples = jobs_view.faap_samples(run, per_group=2)
    assert len(samples) == 4 and {s.group for s in samples} == {"Male=Female", "Male=Male"}
    for s in samples:
        delta = s.perturbed - s.original
        assert s.original.shape == (32, 32, 3) and 0 < s.linf <= 0.05 + 1e-6
        assert abs(delta).max() == pytest.approx(s.linf, abs=1e-6)
        # The perturbation is shown ×10 around mid-grey.
        assert s.perturbation == pytest.approx((0.5 + 10 * delta).clip(0, 1), abs=1e-5)
    with pytest.raises(FairauditError, match="no saved FAAP generator"):
        jobs_view.faap_samples({"artifacts": {}, "spec": run["spec"]})


def test_tables_of_a_run(tmp_path):
    artefact = tmp_path / "a.bin"
    artefact.write_bytes(b"x" * 2048)
    table = jobs_view.artifact_table({"model": str(artefact), "gone": str(tmp_path / "nope")})
    assert table["Size (KB)"].tolist()[0] == 2.0 and pd.isna(table["Size (KB)"].tolist()[1])
    config = jobs_view.config_table({"epochs": 3, "lr": 1e-4}, [{"name": "epochs", "default": 6, "help": "passes"}])
    assert config.to_dict("records")[0] == {"Setting": "epochs", "Value": "3", "Default": "6", "Changed": True,
                                            "Help": "passes"}
    timings = jobs_view.timings_table({"timings": {"method": 2.0, "total": 3.0}, "created": 1.0, "started": 1.5})
    assert timings["Seconds"].tolist() == [2.0, 3.0, 0.5]
    assert jobs_view.stats_rows({"perturbation": {"linf_mean": 0.0412345}, "groups": 2}) == [
        ("perturbation.linf_mean", "0.04123"), ("groups", "2")]
