"""Typed settings: every method setting and dataset option declares its type and its range or choices, and a
value outside them is refused with one message generated from the declaration, in the CLI and in the app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fairaudit.cli import main
from fairaudit.jobs import list_runs

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "app.py")

# Strings that name things (a group, a file, a column) or hold a list: free text, checked where they are used.
FREE_TEXT = {("methods", "label_flip", "flip_group"), ("methods", "asac", "epsilons"),
             ("datasets", "identity-folders", "attributes"), ("datasets", "manifest", "manifest"),
             ("datasets", "manifest", "path_column"), ("datasets", "manifest", "split_column")}


@pytest.fixture(scope="module")
def listing(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("settings") / "settings.json"
    assert main(["mitigate", "--list-settings", "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_every_setting_and_option_declares_its_type_and_range_or_choices(listing):
    free = set()
    rows = [("methods", name, row) for name, entry in listing["methods"].items() for row in entry["settings"]]
    rows += [("datasets", name, row) for name, entry in listing["datasets"].items() for row in entry["options"]]
    assert len(listing["methods"]) >= 15 and "adult" in listing["datasets"]
    for kind, owner, row in rows:
        assert row["type"] in ("int", "float", "bool", "str"), (owner, row)
        if row["type"] in ("int", "float"):
            assert row["range"] and row["range"]["text"], (owner, row["name"])  # every number has a range
        elif row["type"] == "bool":
            assert row["choices"] == [False, True]
        elif not row["choices"]:
            free.add((kind, owner, row["name"]))
    assert free == FREE_TEXT  # a new string setting either declares its choices or is added here on purpose
    epsilon = next(r for r in listing["methods"]["faap"]["settings"] if r["name"] == "epsilon")
    assert (epsilon["default"], epsilon["range"]["text"], epsilon["unit"]) == (0.05, "(0, 1]", "pixels in [0, 1]")


@pytest.mark.parametrize("argv, message", [
    (["mitigate", "faap", "--dataset", "synthetic-faces", "--set", "epsilon=2", "--json", "x.json"],
     "setting 'epsilon' of 'faap' must lie in (0, 1], got 2.0."),
    (["audit", "--dataset", "synthetic-identities", "--data-opt", "train_male=2", "--json", "x.json"],
     "option 'train_male' of dataset 'synthetic-identities' must lie in [0, 1], got 2.0."),
    (["audit", "--dataset", "synthetic-faces", "--data-opt", "image_size=4", "--json", "x.json"],
     "option 'image_size' of dataset 'synthetic-faces' must be >= 8, got 4."),
])
def test_the_cli_refuses_a_value_outside_its_range_with_the_generated_message(argv, message, home, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"fairaudit: error: {message}"


@pytest.fixture
def app(home, monkeypatch) -> AppTest:
    import appkit.state

    monkeypatch.setattr(appkit.state, "start_run", lambda setup: None)  # no demo warm-up in this workspace
    return AppTest.from_file(APP, default_timeout=60)


def test_the_mitigate_page_refuses_an_out_of_range_setting_and_queues_nothing(app):
    app.run()
    at = app.switch_page("app_pages/mitigate.py").run()
    at.number_input(key="setting:faap:epsilon").set_value(2.0)  # a form: the value goes with the submit
    next(b for b in at.button if b.label == "Launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error] == ["setting 'epsilon' of 'faap' must lie in (0, 1], got 2.0."]
    assert list_runs() == []


def test_the_data_page_generates_dataset_options_and_refuses_an_out_of_range_one(app):
    app.run()
    at = app.switch_page("app_pages/data_and_model.py").run()
    bias = at.number_input(key="option:synthetic-faces:bias")
    assert bias.value == 0.9 and "range [0, 1]" in bias.help
    bias.set_value(1.5).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error] == ["option 'bias' of dataset 'synthetic-faces' must lie in [0, 1], got 1.5."]
