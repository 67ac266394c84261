"""Latent-space embeddings and the sensitive-attribute leakage probe (fairaudit.embed) and the Embeddings page.

The run-level tests share one finished FAAP run on a tiny biased
synthetic-faces split (32 px, bias 0.9), recorded in a workspace of their own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fairaudit import embed
from tests.conftest import workspace_at
from fairaudit.embed import projection as projection_module
from fairaudit.embed import runs as runs_module
from fairaudit.errors import FairauditError

TINY = {"image_size": 32, "n_train": 512, "n_val": 384, "n_test": 600, "bias": 0.9, "seed": 0}
# A small FAAP budget with a large bound: enough for the generator to hide gender from the frozen g in
# a couple of epochs (the default ε = 0.05 needs far more steps than a unit test can afford).
FAAP_SETTINGS = {"epochs": 2, "batch_size": 16, "epsilon": 0.5, "alpha": 4.0, "beta": 0.0}
EMBED = {"method": "tsne", "n": 200, "perplexity": 20, "device": "cpu"}


# ---------------------------------------------------------------------------- sampling, probe, projections

def test_stratified_sample_keeps_cells_and_proportions():
    rng = np.random.default_rng(0)
    group = rng.choice(2, 5000, p=[0.8, 0.2])
    label = np.where(group == 1, rng.random(5000) < 0.05, rng.random(5000) < 0.5).astype(int)
    strata = np.column_stack([group, label])
    rows = embed.stratified_sample(strata, 400, seed=1)
    assert len(rows) == 400 and len(np.unique(rows)) == 400 and np.all(np.diff(rows) > 0)
    for g in (0, 1):
        for y in (0, 1):
            cell = (group == g) & (label == y)
            assert cell[rows].sum() >= 1  # the rare cell (≈ 50 of 5 000 rows) is kept
            assert abs(cell[rows].mean() - cell.mean()) <= 1.5 / 400 + 1e-9
    assert np.array_equal(rows, embed.stratified_sample(strata, 400, seed=1))
    assert not np.array_equal(rows, embed.stratified_sample(strata, 400, seed=2))
    assert np.array_equal(embed.stratified_sample(strata, 10_000), np.arange(5000))
    with pytest.raises(FairauditError, match="cells"):
        embed.stratified_sample(strata, 3)


def test_probe_on_random_latents_is_at_chance():
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(1000, 32))
    codes = (rng.random(1000) < 0.7).astype(int)  # 70 % majority: chance is 0.7, not 0.5
    result = embed.LeakageProbe(seed=0).fit(latents, codes).result_
    assert result["chance"] == pytest.approx(codes.mean() if codes.mean() > 0.5 else 1 - codes.mean())
    assert abs(result["accuracy"] - result["chance"]) < 0.04
    assert abs(result["auc"] - 0.5) < 0.06
    assert result["auc_ci"][0] < 0.5 < result["auc_ci"][1] + 0.02
    assert result["n"] == 1000 and result["folds"] == 5


def test_probe_reads_a_planted_attribute_with_intervals():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 3, 900)  # three values: multinomial probe, one-vs-rest AUC
    latents = rng.normal(size=(900, 16))
    latents[:, 0] += 2.5 * codes
    result = embed.probe_leakage(latents, codes[:, None], ["race"], n_boot=50)["race"]
    assert result["accuracy"] > 0.75 > result["chance"] + 0.3
    lo, hi = result["accuracy_ci"]
    assert lo < result["accuracy"] < hi and hi - lo < 0.07
    assert embed.wilson_interval(result["accuracy"] * 900, 900) == pytest.approx((lo, hi))
    assert result["auc"] > 0.9 and result["auc_ci"][0] <= result["auc"] <= result["auc_ci"][1]
    assert embed.wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # textbook value
    with pytest.raises(FairauditError, match="only one value"):
        embed.LeakageProbe().fit(latents, np.zeros(900))


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=6, size=(3, 60))
    return (centres[np.arange(150) % 3] + rng.normal(size=(150, 60))).astype(np.float32)


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_projection_is_2d_deterministic_and_keeps_clusters(blobs, method):
    a = embed.project(blobs, method, perplexity=15, n_neighbors=10, seed=0)
    b = embed.project(blobs, method, perplexity=15, n_neighbors=10, seed=0)
    assert a.shape == (150, 2) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.allclose(a, embed.project(blobs, method, perplexity=15, n_neighbors=10, seed=1))
    cluster = np.arange(150) % 3
    centres = np.stack([a[cluster == k].mean(0) for k in range(3)])
    spread = np.mean([np.linalg.norm(a[cluster == k] - centres[k], axis=1).mean() for k in range(3)])
    gaps = [np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(gaps) > 2 * spread  # the three blobs stay apart in 2-D
    with pytest.raises(FairauditError, match="unknown projection"):
        embed.project(blobs, "pca")


def test_align_undoes_rotation_scale_and_shift():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 2)).astype(np.float32)
    angle = 1.1
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = 3.0 * ref @ rot * np.array([1, -1]) + 7.0  # rotated, reflected, scaled, shifted
    np.testing.assert_allclose(embed.align(ref, moved), ref, atol=1e-4)


def test_project_pair_chooses_joint_or_procrustes(blobs, monkeypatch):
    calls = []
    monkeypatch.setattr(projection_module, "project", lambda x, method, **kw: (calls.append(len(x)), x[:, :2])[1])
    before, after, axes = embed.project_pair(blobs, blobs + 1, "tsne", same_space=True)
    assert axes == "joint" and calls == [300] and before.shape == after.shape == (150, 2)
    calls.clear()
    _, _, axes = embed.project_pair(blobs, blobs[:, :40], "tsne", same_space=True)  # widths differ
    assert axes == "procrustes" and calls == [150, 150]
    _, _, axes = embed.project_pair(blobs, 2 * blobs, "tsne", same_space=False, shared_axes=False)
    assert axes == "separate"
    calls.clear()
    before, after, axes = embed.project_pair(blobs, blobs.copy(), "tsne", same_space=False)  # post-processing
    assert axes == "joint" and calls == [150] and np.array_equal(before, after)


# ---------------------------------------------------------------------------- a finished FAAP run

@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace of its own for this module's runs (the registry then holds only them)."""
    with workspace_at(tmp_path_factory.mktemp("embed_home")) as path:
        yield path


@pytest.fixture(scope="module")
def faap_run(workspace) -> str:
    from fairaudit.jobs import JobSpec, run_job
    from fairaudit.train import TrainConfig
    from fairaudit.train.deployed import train_deployed_model

    path = workspace / "biased.safetensors"
    torch.manual_seed(0)
    train_deployed_model("synthetic-faces", arch="small_cnn", data_options=TINY, device="cpu",
                         config=TrainConfig(epochs=3, batch_size=64, lr=2e-3), out=path)
    result = run_job(JobSpec("faap", "synthetic-faces", model=str(path), target="Smiling", sensitive=["Male"],
                             data_options=TINY, settings=FAAP_SETTINGS, device="cpu", n_boot=0))
    return result["run_id"]


@pytest.mark.slow
def test_leakage_of_the_biased_model_is_high_and_faap_lowers_it(faap_run, monkeypatch):
    result = embed.run_leakage(faap_run, device="cpu")
    male = result["attributes"]["Male"]
    assert male["before"]["n"] == TINY["n_test"] and male["before"]["chance"] == pytest.approx(0.5, abs=0.02)
    assert male["before"]["accuracy"] > 0.85 and male["before"]["accuracy_ci"][0] > 0.8  # gender is in g(x)
    assert male["after"]["accuracy"] < male["before"]["accuracy"] - 0.05  # FAAP hides part of it
    assert male["after"]["accuracy_ci"][1] < male["before"]["accuracy_ci"][0]
    assert result["leakage"] == male["after"]["accuracy"] and result["leakage_before"] == male["before"]["accuracy"]
    assert result["behaviour"]["before"]["deo"] > 0.5  # and the table carries the run's behaviour

    stored = json.loads((Path(os.environ["FAIRAUDIT_HOME"]) / "runs" / faap_run / "leakage.json").read_text())
    assert stored == embed.cached_leakage(faap_run) == result
    monkeypatch.setattr(runs_module, "probe_leakage", lambda *a, **k: pytest.fail("recomputed a cached probe"))
    assert embed.run_leakage(faap_run, device="cpu") == result
    assert embed.cached_leakage("no-such-run") is None


@pytest.mark.slow
def test_embed_run_projects_caches_and_draws(faap_run, monkeypatch):
    emb = embed.embed_run(faap_run, **EMBED)
    assert emb.kind == "perturbation" and emb.axes == "joint"
    assert emb.coords["before"].shape == emb.coords["after"].shape == (200, 2)
    assert len(np.unique(emb.indices)) == 200
    assert not np.allclose(emb.coords["before"], emb.coords["after"])  # the perturbation moves the points
    assert set(emb.leakage["Stage"]) == {"before", "after"} and list(emb.leakage["Attribute"].unique()) == ["Male"]
    assert list(emb.behaviour["Stage"]) == ["before", "after"]
    for color in embed.COLORS:
        fig = emb.figure(color)
        assert {t.xaxis for t in fig.data} == {"x", "x2"}  # before and after side by side
        assert sum(len(t.x) for t in fig.data) == 400
    assert {t.name for t in emb.figure("correct").data} <= {"correct", "wrong"}
    with pytest.raises(FairauditError, match="colouring"):
        emb.figure("age")

    assert embed.embedding_cached(faap_run, **{k: v for k, v in EMBED.items() if k != "device"})
    monkeypatch.setattr(runs_module, "project_pair", lambda *a, **k: pytest.fail("recomputed a cached projection"))
    monkeypatch.setattr(runs_module, "_compute_latents", lambda *a, **k: pytest.fail("recomputed cached latents"))
    again = embed.embed_run(faap_run, **EMBED)
    assert np.array_equal(again.coords["after"], emb.coords["after"])
    with pytest.raises(FairauditError, match="sample size"):
        embed.embed_run(faap_run, n=50_000)


@pytest.mark.slow
def test_embeddings_page_renders_the_run(faap_run, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    import appkit.state

    monkeypatch.setattr(appkit.state, "start_run", lambda setup: None)  # no demo warm-up in this workspace
    embed.embed_run(faap_run, **EMBED)  # the page then only reads files
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("app_pages/embeddings.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="embeddings-run").value == faap_run
    assert any(b.label == "Compute" for b in at.button)  # default settings: not computed yet
    at.number_input(key="embeddings-n").set_value(EMBED["n"])
    at.slider(key="embeddings-perplexity").set_value(EMBED["perplexity"])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 1
    leakage, behaviour = (frame.value for frame in at.dataframe)
    stored = embed.cached_leakage(faap_run)["attributes"]["Male"]
    row = leakage.set_index("Stage").loc["after"]
    assert row["Probe accuracy"] == pytest.approx(stored["after"]["accuracy"])
    behaviour = behaviour.set_index("Stage")
    assert behaviour.loc["before", "DEO"] == pytest.approx(embed.cached_leakage(faap_run)["behaviour"]["before"]["deo"])
    assert at.query_params["run"] in (faap_run, [faap_run])


@pytest.fixture
def test_method():
    """The job system's test method ``noop_finetune``, registered for one test (run specs are re-validated)."""
    from fairaudit.jobs import testing
    from fairaudit.mitigation import METHODS

    testing.register()
    yield
    METHODS.pop("noop_finetune", None)


def test_retrained_run_is_aligned_by_procrustes(workspace, tiny_model, test_method):
    from fairaudit.jobs import JobSpec, run_job

    result = run_job(JobSpec("noop_finetune", "adult", model=tiny_model, device="cpu",
                             settings={"epochs": 1, "steps": 3, "lr": 0.01}, n_boot=0))
    emb = embed.embed_run(result["run_id"], method="tsne", n=150, perplexity=10, device="cpu", leakage=False)
    assert emb.kind == "retrained" and emb.axes == "procrustes"  # a new latent space: aligned, not fitted jointly
    assert emb.coords["before"].shape == emb.coords["after"].shape == (150, 2)
    leak = embed.run_leakage(result["run_id"], n=600, n_boot=20, device="cpu")
    assert list(leak["attributes"]) == ["sex"] and leak["kind"] == "retrained"
    for stages in leak["attributes"].values():
        for probe in stages.values():
            assert probe["n"] == 600 and probe["chance"] <= probe["accuracy"] + 0.05 and 0 <= probe["auc"] <= 1

    from fairaudit.cli import main

    out = result["run_id"] + ".json"
    assert main(["leakage", result["run_id"], "--samples", "600", "--json", str(workspace / out)]) == 0
    written = json.loads((workspace / out).read_text())["attributes"]["sex"]
    for stage in ("before", "after"):  # same sample and folds; only the bootstrap resamples of the AUC interval differ
        assert written[stage]["accuracy"] == leak["attributes"]["sex"][stage]["accuracy"]
        assert written[stage]["auc"] == pytest.approx(leak["attributes"]["sex"][stage]["auc"])
    assert main(["leakage", "no-such-run"]) == 2


def test_behaviour_table_shows_an_undefined_gap_empty_with_its_reason():
    reason = "only group 'Male=1' has positive labels"
    result = {"behaviour": {"before": {"spd": 0.2, "deo": None, "accuracy": 0.8, "undefined": {"deo": reason}},
                            "after": {"spd": 0.1, "deo": 0.05, "accuracy": 0.79}}}  # a cache from before notes
    table = embed.behaviour_table(result).set_index("Stage")
    assert table.loc["before", "Note"] == f"DEO n/a: {reason}" and pd.isna(table.loc["before", "DEO"])
    assert table.loc["after", "Note"] == "" and table.loc["after", "DEO"] == 0.05


def test_map_groups_get_distinct_colour_blind_safe_palette_colours():
    from fairaudit.views.palette import PALETTE

    rng = np.random.default_rng(0)
    n = 60
    sensitive = np.stack([rng.integers(0, 2, n), rng.integers(0, 2, n)], 1)  # four intersectional groups
    labels = rng.integers(0, 2, n)
    emb = runs_module.RunEmbedding(
        run_id="r", method="tsne", settings={}, kind="perturbation", axes="joint",
        coords={"before": rng.normal(size=(n, 2)), "after": rng.normal(size=(n, 2))}, indices=np.arange(n),
        labels=labels, sensitive=sensitive, predictions={"before": labels, "after": 1 - labels},
        sensitive_names=["Male", "Young"], value_names={"Male": ["female", "male"], "Young": ["old", "young"]},
        class_names=["no", "yes"])
    for color, n_values in (("sensitive", 4), ("target", 2), ("correct", 2)):
        fig = emb.figure(color)
        colours = {}
        for trace in fig.data:  # one trace per value and stage; a value keeps its colour in both maps
            colours.setdefault(trace.name, set()).add(trace.marker.color)
        assert len(colours) == n_values and all(len(c) == 1 for c in colours.values())
        used = [next(iter(c)) for c in colours.values()]
        assert len(set(used)) == n_values  # distinct colours, not shades of one
        assert used == list(PALETTE[:n_values])  # the palette's first colours, in the legend's order
