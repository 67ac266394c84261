"""Honest time: how long a job's settings take on this device, said before launch, from a short calibration of
the method's unit of work and then from the finished runs; method presets in the CLI, the app and the engine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from explain_runs import TINY_FACES, TINY_FAAP, faces_model
from fairaudit.cli import main
from fairaudit.errors import FairauditError
from fairaudit.jobs import JobSpec, list_runs, run_job
from fairaudit.jobs.estimate import cached_calibration, calibrate, duration_text, estimate, estimate_many
from fairaudit.jobs.spec import load_methods
from fairaudit.mitigation import METHODS, get_method
from fairaudit.mitigation.base import preset_settings

EPOCHS = 24  # FAAP fits the 64-row val split in batches of 32: 2 steps an epoch, 48 steps in all


def faap_spec(model: str, epochs: int = EPOCHS, seed: int = 0) -> JobSpec:
    return JobSpec("faap", "synthetic-faces", model=model, device="cpu", data_options=TINY_FACES, seed=seed,
                   settings={**TINY_FAAP, "epochs": epochs}, n_boot=0, robustness_samples=0, split_samples=0)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    home = tmp_path_factory.mktemp("estimate_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRAUDIT_HOME", str(home))
        yield {"home": home, "model": faces_model(home)}


@pytest.fixture(scope="module")
def calibrated(workspace):
    """A calibration stopped after 4 steps of the method, the estimate it gives, then the real run."""
    spec = faap_spec(workspace["model"])
    calibration = calibrate(spec, units=4, seconds=0.0)
    found = estimate(spec, calibrate_if_needed=False)
    result = run_job(spec)
    return {"spec": spec, "calibration": calibration, "estimate": found, "run": result}


def test_a_calibration_times_a_few_steps_and_scales_them_to_the_whole_run(calibrated):
    calibration, found = calibrated["calibration"], calibrated["estimate"]
    assert not calibration["finished"] and calibration["units_timed"] == 4  # stopped after 4 of 48 steps
    assert calibration["sizes"] == {"train": 128, "val": 64, "test": 64}
    assert found.source == "calibration" and found.units == 2 * EPOCHS and found.unit == "step"
    assert found.seconds == pytest.approx(found.overhead_seconds + found.setup_seconds
                                          + found.units * found.unit_seconds)
    assert found.text.startswith(duration_text(found.seconds) + " on this CPU (")
    assert f"{2 * EPOCHS} steps × " in found.text
    # The whole run takes what the four timed steps said, within a factor 3 (a CI machine is noisy); the four
    # steps alone, not scaled to 48, would be an order of magnitude short.
    actual = calibrated["run"]["seconds"]
    assert actual / 3 < found.seconds < actual * 3, (found.seconds, actual)
    assert found.overhead_seconds + found.setup_seconds + 4 * found.unit_seconds < actual / 3


def test_finished_runs_refine_the_estimate_and_scale_it_by_the_settings(calibrated, workspace):
    spec = calibrated["spec"]
    from_runs = estimate(spec, calibrate_if_needed=False)
    run = calibrated["run"]
    assert from_runs.source == "runs" and from_runs.runs == 1 and "from 1 finished run" in from_runs.text
    assert from_runs.seconds == pytest.approx(run["seconds"])  # one run: its own duration
    twice = estimate(faap_spec(workspace["model"], epochs=2 * EPOCHS), calibrate_if_needed=False)
    assert twice.units == 2 * from_runs.units
    assert twice.seconds == pytest.approx(from_runs.overhead_seconds + 2 * (from_runs.seconds
                                                                             - from_runs.overhead_seconds))


def test_a_sweep_calibrates_once_and_sums_its_runs(calibrated, workspace):
    specs = [faap_spec(workspace["model"], epochs=e, seed=s) for e in (EPOCHS, 2 * EPOCHS) for s in (0, 1)]
    total = estimate_many(specs, calibrate_if_needed=False)
    each = [estimate(s, calibrate_if_needed=False).seconds for s in specs]
    assert total.seconds == pytest.approx(sum(each)) and total.details["runs"] == 4
    assert "for 4 runs one after another" in total.text


def test_without_a_run_or_a_calibration_nothing_is_guessed(workspace):
    spec = JobSpec("threshold", "synthetic-faces", model=workspace["model"], device="cpu", data_options=TINY_FACES)
    assert cached_calibration(spec) is None
    assert estimate(spec, calibrate_if_needed=False) is None
    with pytest.raises(FairauditError, match="there are no runs to estimate"):
        estimate_many([])


def test_presets_quick_and_paper():
    load_methods()
    for name in METHODS:
        method = get_method(name)
        if method.Config is not None and "epochs" in {f.name for f in dataclasses.fields(method.Config)}:
            assert "quick" in method.presets, name  # every trained method has a demo preset
    assert get_method("froc_in").presets["paper"]["epochs"] == 500
    assert preset_settings(get_method("froc_in"), "quick", {"epochs": 3})["epochs"] == 3  # explicit wins
    with pytest.raises(FairauditError, match=r"method 'threshold' has no preset 'paper'; its presets: "):
        preset_settings(get_method("threshold"), "paper")


def test_the_cli_estimates_without_queueing_and_refuses_an_unknown_preset(calibrated, workspace, capsys):
    argv = ["mitigate", "faap", "--dataset", "synthetic-faces", "--model", workspace["model"], "--device", "cpu",
            *[a for k, v in TINY_FACES.items() for a in ("--data-opt", f"{k}={v}")],
            *[a for k, v in {**TINY_FAAP, "epochs": 2 * EPOCHS}.items() for a in ("--set", f"{k}={v}")],
            "--bootstrap", "0", "--robustness-samples", "0", "--split-samples", "0"]
    runs = len(list_runs())
    assert main([*argv, "--estimate"]) == 0
    out = capsys.readouterr().out.strip()
    twice = estimate(faap_spec(workspace["model"], epochs=2 * EPOCHS), calibrate_if_needed=False)
    assert out == f"estimated time: {twice.text}"
    assert len(list_runs()) == runs  # nothing queued
    assert main([*argv, "--preset", "fast", "--estimate"]) == 2
    known = ", ".join(get_method("faap").presets)
    assert capsys.readouterr().err.strip() == f"fairaudit: error: method 'faap' has no preset 'fast'; its presets: {known}."


def test_the_mitigate_page_says_the_time_before_launch_and_starts_from_a_preset(calibrated, workspace, monkeypatch):
    from streamlit.testing.v1 import AppTest

    import appkit.state

    monkeypatch.setattr(appkit.state, "start_run", lambda setup: None)
    app = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    app.run()
    at = app.switch_page("app_pages/mitigate.py").run()
    assert not at.exception, [e.value for e in at.exception]
    # The demo model has no run or calibration in this workspace yet: the page says so and offers the timing.
    assert any("not measured yet" in c.value for c in at.caption)
    at.button_group(key="mitigate-preset:faap").set_value("quick").run()
    for name, value in get_method("faap").presets["quick"].items():
        assert at.number_input(key=f"setting:faap:quick:{name}").value == value, name
    assert all(r["model"] != "demo" for r in list_runs())  # nothing launched from the page
