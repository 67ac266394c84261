"""Every CSV the product writes neutralises cells a spreadsheet would run as formulas."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairaudit.cli import main
from fairaudit.io_safety import csv_safe, csv_text
from tests.bad_inputs.cases_data import HOSTILE_GROUP, predictions_args, predictions_frame, write_predictions

DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _hostile_predictions(folder: Path) -> Path:
    sex = np.where(predictions_frame()["sex"] == "f", HOSTILE_GROUP, "m")
    return write_predictions(folder, sex=sex)


def _assert_neutralised(text: str) -> None:
    rows = _cells(text)
    header, body = rows[0], rows[1:]
    assert header[:2] == ["group", "sex"]
    assert sorted(r[1] for r in body) == ["'" + HOSTILE_GROUP, "m"]
    assert not [cell for row in rows for cell in row if cell.startswith(DANGEROUS)]


def test_csv_safe_prefixes_text_that_starts_a_formula_and_keeps_numbers():
    frame = pd.DataFrame({"group": [HOSTILE_GROUP, "+1", "-x", "@SUM(A1)", "\tTAB", "\rCR", "plain", "a\r=b"],
                          "n": [-3, 1, 2, 3, 4, 5, 6, 7], "rate": [-0.25, 0.5, 0.0, 1.0, 0.1, 0.2, 0.3, np.nan],
                          "=cmd": pd.Categorical(["-a", "b", "c", "d", "e", "f", "g", "h"])})
    safe = csv_safe(frame)
    assert list(safe.columns) == ["group", "n", "rate", "'=cmd"]
    assert list(safe["group"]) == ["'" + HOSTILE_GROUP, "'+1", "'-x", "'@SUM(A1)", "'\tTAB", "'\rCR", "plain",
                                   "a\r=b"]
    assert list(safe["n"]) == [-3, 1, 2, 3, 4, 5, 6, 7] and safe["n"].dtype == frame["n"].dtype
    assert safe["rate"].iloc[0] == -0.25 and safe["rate"].dtype == np.float64
    assert list(safe["'=cmd"])[:2] == ["'-a", "b"]
    assert list(frame["group"])[0] == HOSTILE_GROUP  # the input is not changed
    rows = _cells(csv_text(frame))
    assert rows[1] == ["'" + HOSTILE_GROUP, "-3", "-0.25", "'-a"]
    assert len(rows) == 9 and rows[-1][0] == "a\r=b"  # a carriage return inside a cell cannot start a new row


@pytest.mark.parametrize("command", ["audit-predictions", "audit"])
def test_cli_group_csv_neutralises_hostile_group_names(tmp_path, command):
    out = tmp_path / "groups.csv"
    if command == "audit-predictions":
        args = predictions_args(_hostile_predictions(tmp_path), "--csv", str(out))
    else:  # a model on a dataset whose group names come from the data: a manifest
        from tests.bad_inputs.cases_data import tiny_checkpoint, write_manifest

        sex = np.where(np.arange(24) % 2 == 0, HOSTILE_GROUP, "m")
        data = write_manifest(tmp_path / "images", n=24, size=16, sex=sex, split=["test"] * 24)
        args = ["audit", "--dataset", "manifest", "--data-dir", str(data), "--model", str(tiny_checkpoint(tmp_path)),
                "--sensitive", "sex", "--data-opt", "image_size=16", "--data-opt", "split_column=split",
                "--bootstrap", "0", "--device", "cpu", "--json", str(tmp_path / "audit.json"), "--csv", str(out)]
    assert main(args) == 0
    text = out.read_text()
    rows = _cells(text)
    column = rows[0].index("sex")
    assert sorted(r[column] for r in rows[1:]) == ["'" + HOSTILE_GROUP, "m"]
    assert not [cell for row in rows for cell in row if cell.startswith(DANGEROUS)]
    assert float(rows[1][rows[0].index("accuracy")]) >= 0  # numbers stay numbers


def test_audit_page_group_download_is_neutralised(tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from streamlit.testing.v1 import AppTest

    from appkit import background

    downloads = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def capture(self, path_or_data, mimetype, kind, filename=None):
        downloads[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", capture)
    data = _hostile_predictions(tmp_path).read_bytes()
    root = Path(__file__).resolve().parents[1]
    at = AppTest.from_file(str(root / "app.py"), default_timeout=180)
    at.run()
    at.switch_page("app_pages/data_and_model.py").run()
    at.segmented_control(key="data-source").set_value("predictions").run()
    at.file_uploader(key="predictions-upload").set_value(("preds.csv", data, "text/csv")).run()
    at.selectbox(key="pred-label").set_value("y").run()
    at.selectbox(key="pred-pred").set_value("pred").run()
    at.selectbox(key="pred-score").set_value("— none —").run()
    at.multiselect(key="pred-sensitive").set_value(["sex"]).run()
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page("app_pages/audit.py").run()
    for key in background.keys():  # a pass still running when the interpreter exits would abort it
        background.wait(key, timeout=180)
    assert not at.exception, [e.value for e in at.exception]
    name = next(n for n in downloads if n and n.endswith("-groups.csv"))
    content = downloads[name]
    _assert_neutralised(content.decode() if isinstance(content, bytes) else content)
