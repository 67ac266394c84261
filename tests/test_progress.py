"""One progress shape, ``progress(fraction, message)``: every producer speaks it, directly or through the
adapters of :mod:`fairaudit.progress`."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from explain_runs import TINY_FACES, faces_model, tiny_run
from fairaudit.progress import clamp, counting, describe, from_events, span


class Recorder:
    """A ``progress(fraction, message)`` that refuses any other call."""

    def __init__(self):
        self.calls: list[tuple[float, str]] = []

    def __call__(self, *args, **kwargs) -> None:
        assert not kwargs, kwargs
        assert len(args) == 2, args
        fraction, message = args
        assert isinstance(fraction, float) and not isinstance(fraction, bool), args
        assert 0.0 <= fraction <= 1.0 and math.isfinite(fraction), args
        assert isinstance(message, str) and message, args
        self.calls.append((fraction, message))

    @property
    def fractions(self) -> list[float]:
        return [f for f, _ in self.calls]

    @property
    def messages(self) -> list[str]:
        return [m for _, m in self.calls]


def test_adapters_map_parts_counts_and_events():
    rec = Recorder()
    part = span(rec, 0.5, 0.9, prefix="after: ")
    part(0.5, "half")
    part(2.0, "past the end")  # clamped
    counting(rec, "batches", 0.0, 0.5)(3, 4)
    sink = from_events(rec)
    sink({"event": "epoch", "epoch": 2, "loss": 0.4123, "fraction": 0.25})
    sink({"event": "step", "epoch": 0, "step": 3, "steps": 10, "fraction": 0.1})
    sink({"event": "model_loaded", "model_sha256": "ab"})  # no fraction: no progress
    sink({"phase": "before_audit", "fraction": 0.02})
    assert rec.calls == [(pytest.approx(0.7), "after: half"), (0.9, "after: past the end"), (0.375, "batches"),
                         (0.25, "epoch 2 · loss 0.412"), (0.1, "step 3/10 of epoch 1"), (0.02, "before audit")]
    assert clamp(None) == 0.0 and clamp(float("nan")) == 0.0 and clamp(-1) == 0.0
    assert describe({"message": "as given", "event": "epoch"}) == "as given"


def test_training_loop_events_become_the_one_shape():
    from fairaudit.train import TrainConfig
    from fairaudit.train.loop import fit

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 3), torch.randint(0, 2, (64,)))
    events, rec = [], Recorder()
    sink = from_events(rec)
    fit(nn.Linear(3, 2), data, TrainConfig(epochs=2, batch_size=16, seed=0), device="cpu",
        step_fn=lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]), progress=lambda e: (events.append(e), sink(e)))
    assert all(isinstance(e["fraction"], float) for e in events)  # every event carries its fraction
    assert len(rec.calls) == len(events) == 2 * 4 + 2  # 4 steps an epoch, and the epoch ends
    assert rec.fractions == sorted(rec.fractions) and rec.fractions[-1] == 1.0
    assert rec.calls[3][0] == 0.5 and rec.messages[3].startswith("step 4/4 of epoch 1 · loss ")
    assert rec.messages[4].startswith("epoch 1 · loss ")


@pytest.fixture(scope="module")
def faces_run(tmp_path_factory):
    """A finished post-processing run on the tiny synthetic faces, in a workspace of this module."""
    home = tmp_path_factory.mktemp("progress_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRAUDIT_HOME", str(home))
        yield tiny_run(faces_model(home), "threshold")


def test_jobs_runner_events_become_the_one_shape(tmp_path, monkeypatch):
    from fairaudit.jobs import JobSpec, run_job

    monkeypatch.setenv("FAIRAUDIT_HOME", str(tmp_path / "home"))
    events, rec = [], Recorder()
    sink = from_events(rec)
    result = run_job(JobSpec("threshold", "synthetic-faces", model=faces_model(tmp_path), device="cpu",
                             data_options=TINY_FACES, n_boot=0, robustness_samples=0, split_samples=0),
                     progress=lambda e: (events.append(e), sink(e)))
    assert result["method"] == "threshold"
    assert all(isinstance(e["fraction"], float) for e in events if "fraction" in e)
    assert rec.fractions == sorted(rec.fractions) and rec.fractions[0] == 0.0 and rec.fractions[-1] == 1.0
    assert {"loading", "auditing before", "mitigating", "auditing after", "done"} <= {m.split(" · ")[0] for m in rec.messages}


def test_explain_runs_report_fraction_then_message(faces_run):
    from fairaudit.explain.runs import explain_run

    rec = Recorder()
    explain_run(faces_run["run_id"], selection="random", n=2, device="cpu", bias_samples=2, progress=rec)
    assert rec.calls == [(0.0, "loading the run's models"), (0.1, "explaining the selected images"),
                         (0.4, "measuring attribution bias"), (1.0, "done")]


def test_embed_runs_report_fraction_then_message(faces_run):
    from fairaudit.embed import embed_run

    rec = Recorder()
    embed_run(faces_run["run_id"], method="tsne", n=60, perplexity=10, device="cpu", progress=rec)
    assert rec.fractions == sorted(rec.fractions) and rec.fractions[0] == 0.0 and rec.fractions[-1] == 1.0
    assert rec.calls[0] == (0.0, "Loading the run's models")
    assert (0.7, "Projecting with tsne") in rec.calls and (0.85, "Projecting with tsne") in rec.calls
    assert rec.calls[-1] == (1.0, "Probing the latents for the sensitive attributes")
    assert "Latents before mitigation" in rec.messages
