"""Shared fixtures: an isolated workspace with the demo models trained once per test session."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def fairaudit_home(tmp_path_factory):
    """Every test runs against a fresh workspace folder (``FAIRAUDIT_HOME``)."""
    home = tmp_path_factory.mktemp("fairaudit_home")
    old = os.environ.get("FAIRAUDIT_HOME")
    os.environ["FAIRAUDIT_HOME"] = str(home)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield home
    if old is None:
        os.environ.pop("FAIRAUDIT_HOME", None)
    else:
        os.environ["FAIRAUDIT_HOME"] = old


@pytest.fixture(scope="session")
def demo_home(fairaudit_home):
    """The workspace with the synthetic-faces demo model already trained (shared by app and CLI tests)."""
    from fairaudit.demo import get_demo_model

    get_demo_model("synthetic-faces", device="cpu")
    return fairaudit_home


@pytest.fixture(scope="session")
def demo_faces_model(demo_home):
    from fairaudit.demo import get_demo_model

    model, _ = get_demo_model("synthetic-faces", device="cpu")
    return model
