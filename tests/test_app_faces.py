"""The Face recognition page, driven headlessly with ``streamlit.testing.v1.AppTest``."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "app.py")
FACES = "app_pages/faces.py"
TIMEOUT = 180


@pytest.fixture()
def at(fairaudit_home) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=TIMEOUT)
    app.run()
    app.switch_page(FACES)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def charts(at: AppTest) -> list[str]:
    return [c.proto.id for c in at.get("plotly_chart")]


def test_page_shows_the_engines_numbers_per_group(at):
    shown = metrics(at)
    # The shipped demo model on the default test split (see tests/test_faces_demo.py): 515 / 600 and 462 / 600.
    assert shown["Rank-1 · Female"] == f"{515 / 600:.3f}" and shown["Rank-1 · Male"] == f"{462 / 600:.3f}"
    assert shown["Error ratio (worst / best)"] == f"{(1 - 462 / 600) / (1 - 515 / 600):.2f}"
    assert {"Rank-5 · Female", "L2 ratio · Male", "FNMR · Female", "FMR · Male", "FMR ratio (worst / best)"} <= set(shown)
    assert len(charts(at)) == 2  # score distributions and DET curves; no sweep chosen
    assert [c.value for c in at.caption if c.value.startswith("Photos of Female")]  # failed probes shown
    assert len(at.get("image")) == 18  # 9 missed probes, each with its wrong match


def test_another_attribute_and_a_gallery_sweep(at):
    at.selectbox(key="faces-sensitive").select("Skin_Tone").run()
    assert not at.exception
    assert {"Rank-1 · Light", "Rank-1 · Medium", "Rank-1 · Dark"} <= set(metrics(at))
    at.selectbox(key="faces-sensitive").select("Male").run()
    at.segmented_control(key="faces-sweep").set_value("ids").run()
    assert not at.exception
    assert len(charts(at)) == 3


def test_bad_inputs_show_one_sentence(at, tmp_path):
    at.text_input(key="faces-model").input("/no/such/model.safetensors").run()
    assert not at.exception
    assert [e.value for e in at.error] == ["the model file '/no/such/model.safetensors' does not exist."]
    at.text_input(key="faces-model").input("demo").run()
    at.selectbox(key="faces-dataset").select("identity-folders").run()
    assert [i.value for i in at.info][0].startswith("Name a folder of people")
    at.text_input(key="faces-folder").input(str(tmp_path / "missing")).run()
    assert not at.exception
    assert [e.value for e in at.error] == [f"data folder '{tmp_path / 'missing'}' does not exist."]


def test_training_composition_runs_in_the_background_and_shows_the_engines_numbers(at):
    from appkit import background
    from fairaudit.faces.train_sweep import training_sweep

    at.text_input(key="faces-train-mixes-ids").input("0,1").run()
    for key, value in (("faces-train-seeds", 1), ("faces-train-epochs", 1), ("faces-train-ids", 8),
                       ("faces-train-images", 4)):
        at.number_input(key=key).set_value(value).run()
    at.button(key="faces-train-start").click().run()
    assert not at.exception
    keys = [k for k in background.keys() if k.startswith("faces-train:")]
    assert len(keys) == 1
    state = background.wait(keys[0], timeout=TIMEOUT)
    assert state.done, state.traceback
    at.run()
    assert not at.exception
    assert len(charts(at)) == 3  # score distributions, DET curves and the training composition
    table = at.dataframe[-1].value  # after the gallery composition table
    direct = training_sweep("ids", (0.0, 1.0), (0,), data_options={"n_train_ids": 8, "train_images": 4},
                            epochs=1, device="cpu")
    assert table["men's share"].tolist() == [0.0, 1.0]
    for group in ("Female", "Male"):
        assert table[f"rank-1 · {group}"].tolist() == direct["rank1"][group]
        assert table[f"FNMR · {group}"].tolist() == direct["fnmr"][group]


def test_the_report_download_holds_the_pages_sections_and_numbers(at, monkeypatch):
    """The report button's file is built when clicked; the file it builds has the sections and the numbers of
    the page (captured here from the deferred download the button registers)."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    builders, add = {}, MediaFileManager.add_deferred

    def capture(self, data, *args, **kwargs):
        file_id = add(self, data, *args, **kwargs)
        builders[file_id] = data
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", capture)
    at.run()
    button = next(b for b in at.get("download_button") if b.proto.label == "Download the report (HTML)")
    html = builders[button.proto.deferred_file_id]()
    from fairaudit.faces.report import SECTIONS

    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in html
    shown = metrics(at)
    for group in ("Female", "Male"):
        assert f"<tr><td>{group}</td><td>600</td><td>60</td><td>{shown[f'Rank-1 · {group}']}</td>" in html
        assert f"<td>{shown[f'FNMR · {group}']}</td>" in html and f"<td>{shown[f'FMR · {group}']}</td>" in html
    assert "Not measured: run identify with --gallery-sweep" in html
    assert html.count("<img") == 16  # 4 missed probes per group, each beside its wrong match
