"""Explanations: Grad-CAM and Integrated Gradients, image selection, attribution bias, explain_run and the page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fairaudit.audit.inference import Predictions
from fairaudit.errors import FairauditError
from fairaudit.explain import (GradCam, IntegratedGradientsExplainer, attribution_bias, explain_run,
                               find_target_layer, paired_predictions, region_share, select_samples)
from fairaudit.models.registry import build_model
from fairaudit.models.split import SplitModel

from explain_runs import TINY_FACES, faces_model, tiny_run

SIZE = 32


class FixedMask(nn.Module):
    """Multiplies the input by a fixed binary mask: the layers after it see only that region."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.float())

    def forward(self, x):
        return x * self.mask


def masked_model(mask: torch.Tensor) -> SplitModel:
    torch.manual_seed(0)
    g = nn.Sequential(FixedMask(mask), nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.ReLU(),
                      nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return SplitModel(g, nn.Linear(16, 2), "masked_cnn", 2, (3, SIZE, SIZE)).eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(6, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------------------- explainers


def test_gradcam_puts_the_mass_where_the_model_looks(images):
    region = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    region[:, :SIZE // 2] = True  # the left half (a hard edge in the masked image: its border gets some mass)
    model = masked_model(region)
    cam = GradCam(model)
    assert cam.layer is model.g[5]  # the last conv block's activation, not the pooling after it
    maps = cam.attribute(images, target=torch.tensor([0, 1, 0, 1, 0, 1]))
    assert maps.shape == (6, SIZE, SIZE) and (maps >= 0).all()
    inside = (maps * region).flatten(1).sum(1) / maps.flatten(1).sum(1)
    assert inside.min() >= 0.8, inside
    # The same model with the mask on the other side looks there instead.
    flipped = GradCam(masked_model(region.flip(1))).attribute(images, 1)
    assert ((flipped * region).flatten(1).sum(1) / flipped.flatten(1).sum(1)).max() < 0.5


def test_target_layer_is_found_for_registry_and_torchvision_models():
    import torchvision

    small = build_model("small_cnn", 2, (3, SIZE, SIZE))
    names = {m: n for n, m in small.named_modules()}
    assert names[find_target_layer(small)] == "g.14"  # ReLU of the fourth block
    resnet = build_model("resnet18", 2, (3, SIZE, SIZE))
    assert find_target_layer(resnet) is resnet.g.body.layer4
    plain = torchvision.models.resnet18(num_classes=3).eval()
    cam = GradCam(plain)  # no declared input shape: found on the first batch
    assert cam.attribute(torch.rand(2, 3, 48, 48), 0).shape == (2, 48, 48) and cam.layer is plain.layer4
    assert GradCam(small, layer="g.10").layer is small.g[10]
    with pytest.raises(FairauditError, match="no module 'g.99'"):
        GradCam(small, layer="g.99")
    with pytest.raises(FairauditError, match=r"expected a batch of images shaped \(N, 3, 32, 32\)"):
        GradCam(small).attribute(torch.rand(2, 3, 16, 16), 0)


@pytest.fixture(scope="module")
def small():
    """A seeded small CNN on 16-pixel images (four poolings down to 1×1) and four images for it."""
    torch.manual_seed(0)
    return (build_model("small_cnn", 2, (3, 16, 16)).eval(),
            torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("baseline", ["black", "blur"])
def test_integrated_gradients_are_complete(small, baseline):
    model, images = small
    target = torch.tensor([1, 0, 1, 0])
    ig = IntegratedGradientsExplainer(model, baseline=baseline, n_steps=48, internal_batch_size=96)
    maps, delta = ig.attribute(images, target, return_convergence_delta=True)
    with torch.no_grad():
        gap = (model(images) - model(ig.baselines(images))).gather(1, target[:, None])[:, 0]
    assert maps.shape == (4, 16, 16)
    assert gap.abs().min() > 1e-3  # a non-trivial difference to explain
    torch.testing.assert_close(maps.flatten(1).sum(1), gap, atol=2e-3 + 0.02 * gap.abs().max().item(), rtol=0)
    assert delta.abs().max() < 2e-3 + 0.02 * gap.abs().max()
    with pytest.raises(FairauditError, match="unknown baseline 'grey'"):
        IntegratedGradientsExplainer(model, baseline="grey")


def test_batched_attributions_equal_one_image_at_a_time(small):
    model, images = small
    target = torch.tensor([1, 0, 1, 1])
    for explainer in (GradCam(model, layer="g.10"), IntegratedGradientsExplainer(model, n_steps=8)):
        batched = explainer.attribute(images, target)
        single = torch.cat([explainer.attribute(images[i:i + 1], target[i:i + 1]) for i in range(len(images))])
        torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)
    # Chunking inside one call does not change the result either.
    chunked = GradCam(model, layer="g.10", batch_size=3).attribute(images, target)
    torch.testing.assert_close(chunked, GradCam(model, layer="g.10").attribute(images, target), atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------- selection


def _predictions(labels, p1, groups, indices) -> Predictions:
    p1 = np.asarray(p1, np.float32)
    return Predictions(labels=np.asarray(labels), probs=np.stack([1 - p1, p1], 1),
                       sensitive=np.asarray(groups)[:, None], indices=np.asarray(indices),
                       sensitive_names=["Male"], value_names={"Male": ["Female", "Male"]},
                       class_names=["No", "Yes"])


@pytest.fixture
def pairs():
    labels = [1, 1, 0, 0, 1, 0, 1, 0]
    groups = [0, 0, 0, 0, 1, 1, 1, 1]
    before = _predictions(labels, [0.2, 0.9, 0.7, 0.1, 0.4, 0.95, 0.6, 0.3], groups, range(8))
    # After: saved in another order; samples 0, 2, 4, 5 flip to right, 3 and 7 flip to wrong.
    order = [7, 6, 5, 4, 3, 2, 1, 0]
    after_p1 = {0: 0.8, 1: 0.9, 2: 0.3, 3: 0.6, 4: 0.7, 5: 0.2, 6: 0.6, 7: 0.55}
    after = _predictions([labels[i] for i in order], [after_p1[i] for i in order], [groups[i] for i in order],
                         order)
    return paired_predictions(before, after)


def test_pairs_match_by_sample_index(pairs):
    assert pairs.index.tolist() == list(range(8))
    assert pairs["pred_after"].tolist() == [1, 1, 0, 1, 1, 0, 1, 1]
    assert pairs["group"].tolist() == ["Male=Female"] * 4 + ["Male=Male"] * 4
    assert pairs.loc[5, "confidence_before"] == pytest.approx(0.95)


def test_selection_rules_pick_the_right_samples(pairs):
    assert select_samples(pairs, "wrong_to_right").tolist() == [0, 2, 4, 5]
    assert select_samples(pairs, "wrong_to_right", group="Male=Male").tolist() == [4, 5]
    assert select_samples(pairs, "right_to_wrong").tolist() == [3, 7]
    # Errors before: 0 (conf 0.8), 2 (0.7), 4 (0.6), 5 (0.95) – most confident first.
    assert select_samples(pairs, "confident_errors").tolist() == [5, 0, 2, 4]
    assert select_samples(pairs, "confident_errors", n=2).tolist() == [5, 0]
    picked = select_samples(pairs, "random", n=3, seed=4)
    assert len(picked) == 3 and set(picked) <= set(range(8))
    assert picked.tolist() == select_samples(pairs, "random", n=3, seed=4).tolist()
    assert select_samples(pairs, "right_to_wrong", group="Male=Female").tolist() == [3]
    with pytest.raises(FairauditError, match="unknown group 'Male=Other'"):
        select_samples(pairs, group="Male=Other")
    with pytest.raises(FairauditError, match="unknown selection rule 'best'"):
        select_samples(pairs, "best")


def test_region_shares_and_bias_table_on_hand_made_maps():
    maps = np.zeros((3, 4, 4))
    maps[0, 0, 0] = 3.0  # all in the target
    maps[0, 3, 3] = -5.0  # negative evidence does not count
    maps[1, 0, 0], maps[1, 2, 2] = 1.0, 3.0  # a quarter in the target, the rest in the sensitive region
    target = np.zeros((3, 4, 4), bool)
    target[:, :2, :2] = True
    sensitive = np.zeros((3, 4, 4), bool)
    sensitive[:, 2:, 2:] = True
    assert region_share(maps, target)[:2].tolist() == [1.0, 0.25]
    assert np.isnan(region_share(maps, target)[2])  # no positive mass at all
    table = attribution_bias({"before": maps}, ["a", "b", "b"], target, sensitive, "gradcam")
    rows = table.set_index("group")
    assert rows.loc["a", "target_region_share"] == 1.0 and rows.loc["b", "sensitive_region_share"] == 0.75
    assert rows.loc["b", "n"] == 1 and rows.loc["all", "n"] == 2
    assert rows.loc["all", "target_region_share"] == pytest.approx(0.625)
    assert rows.loc["a", "target_region_area"] == 0.25


# ---------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished FAAP, fine-tuning and threshold run on the tiny faces, in a workspace of this module."""
    home = tmp_path_factory.mktemp("explain_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRAUDIT_HOME", str(home))
        mp.setenv("FAIRAUDIT_TEST_METHODS", "1")
        from fairaudit.jobs import testing

        testing.register()
        model = faces_model(home)
        ids = {"faap": tiny_run(model)["run_id"],
               "noop_finetune": tiny_run(model, "noop_finetune", {"epochs": 1, "steps": 3, "lr": 0.05})["run_id"],
               "threshold": tiny_run(model, "threshold")["run_id"]}
        yield ids


def test_faap_run_explains_the_perturbed_input_and_scores_regions(runs):
    from fairaudit.data import load_dataset
    from fairaudit.explain.bias import dataset_masks
    from fairaudit.jobs.artifacts import load_run_models

    grid = explain_run(runs["faap"], selection="random", n=4, device="cpu", bias_samples=6)
    assert grid.kind == "perturbation" and len(grid) == 4
    assert grid.images.shape == (4, 3, 32, 32) and grid.before.shape == grid.after.shape == (4, 32, 32)
    assert 0 < np.abs(grid.perturbed - grid.images).max() <= 0.05 + 1e-6
    models = load_run_models(runs["faap"], device="cpu")
    cam = GradCam(models.before)
    # Before: the deployed model on the clean image; after: the same model on the perturbed image.
    target = torch.tensor(grid.labels)
    np.testing.assert_allclose(grid.before, cam.attribute(torch.as_tensor(grid.images), target).numpy(), atol=1e-5)
    np.testing.assert_allclose(grid.after, cam.attribute(torch.as_tensor(grid.perturbed), target).numpy(), atol=1e-5)
    assert grid.columns == ["Original", "Grad-CAM before", "Grad-CAM after", "Perturbation ×10"]
    fig = grid.figure(opacity=0.3)
    assert [t.type for t in fig.data] == ["image"] * 16

    table = grid.attribution_bias
    assert list(table.columns) == ["group", "stage", "method", "target_region_share", "sensitive_region_share", "n",
                                   "target_region_area", "sensitive_region_area"]
    assert set(zip(table.group, table.stage)) == {(g, s) for g in ("Male=Female", "Male=Male", "all")
                                                  for s in ("before", "after")}
    assert table.attrs["regions"] == {"target": ["mouth"], "sensitive": ["beard", "hair"]}
    rows = table.set_index(["group", "stage"])
    assert rows.loc[("Male=Female", "before"), "n"] == 6 and rows.loc[("all", "after"), "n"] == 12
    shares = table[["target_region_share", "sensitive_region_share"]]
    assert ((shares >= 0) & (shares <= 1)).all().all() and (shares.sum(1) <= 1 + 1e-9).all()
    # The mouth is ~3 % of a face image, hair and beard far more.
    assert 0.01 < rows.loc[("all", "before"), "target_region_area"] < 0.08
    assert rows.loc[("all", "before"), "sensitive_region_area"] > 0.1

    # The same numbers from scratch for one group: the seeded sample, its masks and Grad-CAM.
    ds = load_dataset("synthetic-faces", "test", None, None, None, **TINY_FACES)
    rng = np.random.default_rng(0)
    female = np.flatnonzero(ds.sensitive_codes[:, 0] == 0)
    picked = np.sort(rng.choice(female, size=6, replace=False))
    x = torch.stack([ds.load_input(int(i)) for i in picked])
    maps = cam.attribute(x, torch.as_tensor(ds.targets[picked])).numpy()
    t_mask, s_mask = dataset_masks(ds, picked, ["mouth"], ["beard", "hair"])
    assert rows.loc[("Male=Female", "before"), "target_region_share"] == pytest.approx(
        np.nanmean(region_share(maps, t_mask)), abs=1e-6)
    assert rows.loc[("Male=Female", "before"), "sensitive_region_share"] == pytest.approx(
        np.nanmean(region_share(maps, s_mask)), abs=1e-6)


def test_retrained_and_postprocessing_runs(runs):
    grid = explain_run(runs["noop_finetune"], method="ig", selection="random", group="Male=Male", n=3,
                       device="cpu", n_steps=8, bias_samples=0)
    assert grid.kind == "retrained" and grid.groups == ["Male=Male"] * 3 and grid.attribution_bias is None
    assert grid.after.shape == (3, 32, 32) and grid.perturbed is None
    assert not np.allclose(grid.before, grid.after)  # the fine-tuned weights explain differently
    assert grid.columns == ["Original", "Integrated Gradients before", "Integrated Gradients after"]

    post = explain_run(runs["threshold"], n=2, selection="random", device="cpu", bias_samples=2)
    assert post.kind == "postprocessing" and post.after is None and "model is unchanged" in post.note
    assert set(post.attribution_bias.stage) == {"before"}
    assert len(post.figure().data) == 4  # original and before map for two images

    with pytest.raises(FairauditError, match="unknown attribution method 'lime'"):
        explain_run(runs["faap"], method="lime")


def test_explain_page_renders_a_finished_run(runs, monkeypatch):
    from streamlit.testing.v1 import AppTest

    import appkit.state

    monkeypatch.setattr(appkit.state, "start_run", lambda setup: None)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.run()
    at.query_params["run"] = runs["faap"]
    at.switch_page("app_pages/explain.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == f"Explain run {runs['faap']}"
    assert at.selectbox(key="explain-page-run").value == runs["faap"]
    at.selectbox(key="explain-selection").set_value("random")
    at.slider(key="explain-n").set_value(2)
    at.slider(key="explain-bias-n").set_value(8).run()
    assert not at.exception, [e.value for e in at.exception]
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    traces = json.loads(charts[0].proto.spec)["data"]
    assert [t["type"] for t in traces] == ["image"] * 8  # 2 images × original, before, after, perturbation
    table = at.dataframe[0].value
    assert isinstance(table, pd.DataFrame) and set(table.stage) == {"before", "after"}
    assert table.loc[table.group == "all", "n"].tolist() == [16, 16]

    at.switch_page("app_pages/run.py").run()
    assert not at.exception, [e.value for e in at.exception]
    # The Run page of the same run links here with the run in the URL.
    links = [link.proto for link in at.get("page_link") if link.proto.label == "Explain this run"]
    assert [(link.page, link.query_string) for link in links] == [("explain", f"run={runs['faap']}")]
