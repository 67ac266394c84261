"""No page shows a traceback: the served app hides error details, and every error a page lets through becomes
one sentence (with what to do, or with the log that holds the details)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from fairaudit.errors import FairauditError

ROOT = Path(__file__).resolve().parents[1]


def test_served_app_shows_no_error_details():
    from streamlit import config

    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert settings["client"]["showErrorDetails"] == "none"
    option = config._config_options_template["client.showErrorDetails"]
    assert "\"none\"" in option.description  # a value this Streamlit version accepts


def _page_script():
    """A page that raises the exception written in ``TEST_PAGE_ERROR``, run through ``guard_page``."""
    import os

    from appkit.widgets import guard_page
    from fairaudit.errors import FairauditError

    def page():
        raise eval(os.environ["TEST_PAGE_ERROR"], {"FairauditError": FairauditError})

    guard_page(page)


def _run() -> AppTest:
    return AppTest.from_function(_page_script, default_timeout=30).run()


@pytest.mark.parametrize("error, expected", [
    ("FairauditError('enter the path of a model checkpoint.')", "enter the path of a model checkpoint."),
    ("ModuleNotFoundError(\"No module named 'umap'\", name='umap')", "'umap-learn'"),
    ("FileNotFoundError(2, 'No such file or directory', '/nowhere/model.pt')", "'/nowhere/model.pt'"),
])
def test_expected_errors_become_one_sentence_with_what_to_do(error, expected, monkeypatch):
    monkeypatch.delenv("FAIRAUDIT_RAISE_APP_ERRORS", raising=False)
    monkeypatch.setenv("TEST_PAGE_ERROR", error)
    at = _run()
    assert not at.exception
    assert len(at.error) == 1 and expected in at.error[0].value
    text = at.error[0].value
    assert "Traceback" not in text and "\n" not in text
    if "umap" in error:
        assert "pip install -r requirements.txt" in text
    if "model.pt" in error:
        assert "check that the path exists" in text


def test_unexpected_error_names_the_log_that_holds_its_traceback(monkeypatch, tmp_path):
    monkeypatch.delenv("FAIRAUDIT_RAISE_APP_ERRORS", raising=False)
    monkeypatch.setenv("FAIRAUDIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TEST_PAGE_ERROR", "ZeroDivisionError('secret internal detail')")
    at = _run()
    assert not at.exception
    log = tmp_path / "home" / "logs" / "app.log"
    assert len(at.error) == 1
    text = at.error[0].value
    assert text.startswith("Something went wrong (ZeroDivisionError)") and str(log) in text
    assert "secret internal detail" not in text and "Traceback" not in text
    logged = log.read_text()
    assert "Traceback" in logged and "ZeroDivisionError: secret internal detail" in logged


def test_test_suite_sees_unexpected_errors_as_exceptions(monkeypatch):
    monkeypatch.setenv("FAIRAUDIT_RAISE_APP_ERRORS", "1")
    monkeypatch.setenv("TEST_PAGE_ERROR", "ZeroDivisionError('boom')")
    at = _run()
    assert at.exception and not at.error


def test_missing_umap_is_one_sentence_naming_the_package(monkeypatch):
    from fairaudit.embed import projection

    monkeypatch.setitem(sys.modules, "umap", None)  # `import umap` now raises ImportError
    with pytest.raises(FairauditError, match=r"'umap-learn' needed for UMAP maps.*pip install umap-learn"):
        projection.umap(np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32))


def test_missing_opentsne_falls_back_to_scikit_learn(monkeypatch):
    from fairaudit.embed import projection

    monkeypatch.setitem(sys.modules, "openTSNE", None)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (30, 8)), rng.normal(8, 1, (30, 8))]).astype(np.float32)
    xy = projection.tsne(x, perplexity=10)
    assert xy.shape == (60, 2)
    centre_gap = np.linalg.norm(xy[:30].mean(0) - xy[30:].mean(0))
    spread = max(xy[:30].std(0).max(), xy[30:].std(0).max())
    assert centre_gap > 3 * spread  # the two blobs stay apart


def test_missing_captum_is_one_sentence_naming_the_package(monkeypatch):
    import torch

    from fairaudit.explain.attribution import IntegratedGradientsExplainer

    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(FairauditError, match=r"'captum' needed for Integrated Gradients maps"):
        IntegratedGradientsExplainer(torch.nn.Linear(3, 2))
