"""Shared fixtures: an isolated workspace with the demo models trained once per test session."""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest
import torch

# An unexpected error in an app test fails it instead of becoming the page's one-sentence error: AppTest
# reports it in ``at.exception``, the served app of the browser tests (which inherits this) as an
# ``stException`` element.
os.environ.setdefault("FAIRAUDIT_RAISE_APP_ERRORS", "1")


@contextmanager
def workspace_at(path):
    """Point ``FAIRAUDIT_HOME`` at ``path`` for the duration of the block."""
    old = os.environ.get("FAIRAUDIT_HOME")
    os.environ["FAIRAUDIT_HOME"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("FAIRAUDIT_HOME", None)
        else:
            os.environ["FAIRAUDIT_HOME"] = old


@pytest.fixture(scope="session", autouse=True)
def fairaudit_home(tmp_path_factory):
    """Every test runs against a fresh workspace folder (``FAIRAUDIT_HOME``)."""
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    with workspace_at(tmp_path_factory.mktemp("fairaudit_home")) as home:
        yield home


@pytest.fixture(scope="session")
def adult():
    """Adult's train and test splits (target income, sensitive sex), loaded once."""
    from fairaudit.data import load_dataset

    return load_dataset("adult", "train"), load_dataset("adult", "test")


@pytest.fixture(scope="module")
def one_thread():
    """Small models are fastest on one thread, and two threads crawl on a busy two-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def demo_home(fairaudit_home):
    """The workspace with the synthetic-faces demo model ready (shared by app and CLI tests; it ships in assets/)."""
    from fairaudit.demo import get_demo_model

    get_demo_model("synthetic-faces", device="cpu")
    return fairaudit_home


@pytest.fixture(scope="session")
def demo_faces_model(demo_home):
    from fairaudit.demo import get_demo_model

    model, _ = get_demo_model("synthetic-faces", device="cpu")
    return model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """An Adult MLP trained for 20 steps: a real checkpoint that loads in milliseconds."""
    from fairaudit.train import TrainConfig
    from fairaudit.train.deployed import train_deployed_model

    path = tmp_path_factory.mktemp("jobs_model") / "adult_mlp.safetensors"
    train_deployed_model("adult", arch="mlp", config=TrainConfig(epochs=1, max_steps=20, batch_size=256),
                         device="cpu", out=path)
    return str(path)


@contextmanager
def registered_methods_workspace(folder):
    """A module-private workspace under ``folder`` with the test methods registered (for module fixtures)."""
    from fairaudit.jobs import testing
    from fairaudit.mitigation import METHODS

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRAUDIT_HOME", str(folder / "home"))
        mp.setenv("FAIRAUDIT_TEST_METHODS", "1")
        testing.register()
        try:
            yield folder / "home"
        finally:
            METHODS.pop("noop_finetune", None)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A workspace of its own, the test method registered here and in workers, workers that quit quickly."""
    path = tmp_path / "home"
    monkeypatch.setenv("FAIRAUDIT_HOME", str(path))
    monkeypatch.setenv("FAIRAUDIT_TEST_METHODS", "1")
    monkeypatch.setenv("FAIRAUDIT_WORKER_IDLE", "2")
    monkeypatch.setenv("FAIRAUDIT_WORKERS", "1")
    monkeypatch.delenv("FAIRAUDIT_RAY_ADDRESS", raising=False)
    from fairaudit.jobs import testing

    testing.register()
    yield path
    from fairaudit.jobs import worker as worker_module
    from fairaudit.mitigation import METHODS

    for proc in list(worker_module._CHILDREN):  # the workers this test started
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    worker_module._CHILDREN.clear()
    METHODS.pop("noop_finetune", None)
