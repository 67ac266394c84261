"""The ``synthetic-faces`` demo dataset: determinism, attribute statistics, masks, and the shortcut it plants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fairaudit.data.base import FairDataset
from fairaudit.data.registry import DATASETS, parse_options
from fairaudit.data.synthetic_faces import SyntheticFaces, make_attributes, render_face
from fairaudit.errors import DatasetError

BASE_ATTRS = {"Smiling": 0, "Male": 0, "Blond_Hair": 0, "Eyeglasses": 0, "Young": 1, "Skin_Tone": 1}


def _centroid_row(mask: np.ndarray) -> float:
    return float(np.nonzero(mask)[0].mean())


def test_registered_spec_builds_every_split():
    spec = DATASETS["synthetic-faces"]
    assert spec.kind == "image" and spec.embedded
    assert spec.default_target == "Smiling" and spec.default_sensitive == ["Male"]
    assert spec.splits == ("train", "val", "test")
    assert {"bias", "seed", "image_size", "n_train", "n_test"} <= set(spec.options)
    opts = parse_options(spec, {"bias": "0.7", "n_train": "12", "n_val": "8", "n_test": "16", "image_size": "32"})
    assert opts["bias"] == pytest.approx(0.7) and opts["n_train"] == 12
    sizes = {split: len(spec.builder(split=split, data_dir=None, **opts)) for split in spec.splits}
    assert sizes == {"train": 12, "val": 8, "test": 16}
    ds = spec.builder(split="test", data_dir=None, **opts)
    assert isinstance(ds, FairDataset)
    assert ds.target == "Smiling" and ds.sensitive == ["Male"]
    assert set(ds.attributes.columns) >= {"Smiling", "Male", "Blond_Hair", "Eyeglasses", "Young", "Skin_Tone"}
    assert ds.value_names["Skin_Tone"] == ["Light", "Medium", "Dark"]
    assert ds.value_names["Male"] == ["Female", "Male"]


def test_samples_have_contract_shapes_and_range():
    ds = SyntheticFaces("test", n=8)
    x, y, s, i = ds[3]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.std()) > 0.05
    assert y.dtype == torch.int64 and y.shape == () and int(y) == ds.targets[3]
    assert s.dtype == torch.int64 and s.shape == (1,) and int(s[0]) == ds.sensitive_codes[3, 0]
    assert i == 3
    small = SyntheticFaces("test", n=8, image_size=32)
    assert small.input_shape == (3, 32, 32) and small[0][0].shape == (3, 32, 32)
    # The 32-pixel image is the area-averaged 64-pixel drawing up to noise and lighting.
    coarse = ds[0][0].reshape(3, 32, 2, 32, 2).mean(dim=(2, 4))
    assert float((coarse - small[0][0]).abs().mean()) < 0.06


def test_same_seed_same_tensors_and_other_seed_differs():
    a, b = SyntheticFaces("train", n=40, seed=3), SyntheticFaces("train", n=40, seed=3)
    assert a.attributes.equals(b.attributes)
    for i in (0, 17, 39):
        assert torch.equal(a[i][0], b[i][0])
        assert torch.equal(a[i][0], a[i][0])
    other = SyntheticFaces("train", n=40, seed=4)
    assert not torch.equal(a[0][0], other[0][0])
    test = SyntheticFaces("test", n=40, seed=3)
    assert not torch.equal(a[0][0], test[0][0])
    image, _ = render_face(BASE_ATTRS, [3, 0, 5], 64, masks=False)
    again, _ = render_face(BASE_ATTRS, [3, 0, 5], 64, masks=False)
    assert np.array_equal(image, again)


@pytest.mark.parametrize("bias", [0.9, 0.5, 0.75])
def test_train_split_bias_statistic(bias):
    attrs = make_attributes(2000, "train", bias, seed=0)
    smiling, male = attrs["Smiling"].to_numpy(), attrs["Male"].to_numpy()
    assert abs(smiling.mean() - 0.5) < 0.01
    assert abs(np.mean(male[smiling == 1] == 0) - bias) <= 0.03
    assert abs(np.mean(male[smiling == 0] == 1) - bias) <= 0.03


@pytest.mark.parametrize("split,n,options", [("test", 2000, {}), ("test", 1003, {}), ("val", 400, {"val_bias": 0.5})])
def test_test_cells_are_balanced_and_val_on_request(split, n, options):
    attrs = make_attributes(n, split, bias=0.9, seed=1, **options)
    cells = attrs.groupby(["Smiling", "Male"]).size()
    assert len(cells) == 4
    assert cells.max() - cells.min() <= 1


def _smiling_female_share(ds) -> float:
    smiling, male = ds.attributes["Smiling"].to_numpy(), ds.attributes["Male"].to_numpy()
    return float(np.mean(male[smiling == 1] == 0))


@pytest.mark.parametrize("bias", [0.9, 0.7])
def test_val_follows_the_train_distribution_and_test_is_balanced_by_default(bias):
    """Held-out data of the training distribution, as in real datasets: val has the train split's tie."""
    from fairaudit.data import load_dataset

    shares = {split: _smiling_female_share(load_dataset("synthetic-faces", split, bias=str(bias)))
              for split in ("train", "val", "test")}
    assert shares == {"train": pytest.approx(bias), "val": pytest.approx(bias), "test": 0.5}
    val = load_dataset("synthetic-faces", "val", bias=str(bias))
    neutral, male = val.attributes["Smiling"].to_numpy() == 0, val.attributes["Male"].to_numpy()
    assert np.mean(male[neutral] == 1) == pytest.approx(bias)  # 90 % of non-smiling val faces are male
    assert _smiling_female_share(load_dataset("synthetic-faces", "val", bias=str(bias), val_bias="0.5")) == 0.5
    deployment = load_dataset("synthetic-faces", "test", bias=str(bias), test_bias="0.8")
    assert _smiling_female_share(deployment) == pytest.approx(0.8)
    # The options of one split leave the others' tables as they were.
    train = load_dataset("synthetic-faces", "train", bias=str(bias), val_bias="0.5", test_bias="0.8")
    assert train.attributes.equals(load_dataset("synthetic-faces", "train", bias=str(bias)).attributes)


def test_other_attributes_follow_documented_rates():
    attrs = make_attributes(6000, "test", bias=0.9, seed=2)
    assert abs(attrs["Young"].mean() - 0.75) < 0.03
    assert abs(attrs["Eyeglasses"].mean() - 0.20) < 0.03
    tone_share = np.bincount(attrs["Skin_Tone"], minlength=3) / len(attrs)
    assert np.allclose(tone_share, [0.5, 0.3, 0.2], atol=0.03)
    blond_by_sex = attrs.groupby("Male")["Blond_Hair"].mean()
    assert abs(blond_by_sex[0] - 0.25) < 0.03 and abs(blond_by_sex[1] - 0.08) < 0.03
    # Independent of the target within each sex.
    young_by_smile = attrs.groupby("Smiling")["Young"].mean()
    assert abs(young_by_smile[0] - young_by_smile[1]) < 0.04


def test_region_masks_are_where_the_parts_are():
    ds = SyntheticFaces("test", n=24, seed=5)
    assert set(ds.region_names) >= {"mouth", "eyes", "hair", "beard", "face", "skin"}
    for i in range(len(ds)):
        m = {r: ds.region_mask(i, r) for r in ds.region_names}
        for region, mask in m.items():
            assert mask.shape == (64, 64) and mask.dtype == bool
            assert mask.sum() >= 6, (i, region)
        assert _centroid_row(m["eyes"]) + 6 < _centroid_row(m["mouth"])
        assert np.nonzero(m["hair"])[0].min() < np.nonzero(m["eyes"])[0].min()
        assert _centroid_row(m["eyes"]) < _centroid_row(m["beard"])
        assert (m["mouth"] & m["face"]).sum() >= 0.95 * m["mouth"].sum()
        assert not (m["face"] & m["background"]).any()
        assert not (m["skin"] & m["mouth"]).any()
    small = SyntheticFaces("test", n=4, image_size=32)
    assert small.region_mask(0, "mouth").shape == (32, 32)
    with pytest.raises(DatasetError, match="unknown region"):
        ds.region_mask(0, "nose")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_smile_is_a_few_mouth_pixels_and_sex_is_many(seed):
    attrs = dict(BASE_ATTRS, Male=seed % 2, Skin_Tone=seed % 3)
    base, masks = render_face(attrs, [seed, 9], 64)
    smiling, _ = render_face(dict(attrs, Smiling=1), [seed, 9], 64)
    other_sex, _ = render_face(dict(attrs, Male=1 - attrs["Male"]), [seed, 9], 64)
    smile_diff = np.abs(smiling - base).sum(axis=0)
    sex_diff = np.abs(other_sex - base).sum(axis=0)
    assert smile_diff[masks["mouth"]].sum() >= 0.97 * smile_diff.sum()
    smile_pixels, sex_pixels = int((smile_diff > 0.1).sum()), int((sex_diff > 0.1).sum())
    assert 5 <= smile_pixels <= 80
    assert sex_pixels >= 8 * smile_pixels


def test_invalid_options_raise_dataset_errors():
    with pytest.raises(DatasetError, match="bias"):
        SyntheticFaces("train", n=8, bias=1.5)
    with pytest.raises(DatasetError, match="'val_bias' must lie in"):
        SyntheticFaces("val", n=8, val_bias=-0.1)
    with pytest.raises(DatasetError, match="'test_bias' must lie in"):
        SyntheticFaces("test", n=8, test_bias=2.0)
    with pytest.raises(DatasetError, match="'val_bias' expects a number"):
        SyntheticFaces("val", n=8, val_bias="high")
    with pytest.raises(DatasetError, match="image_size"):
        SyntheticFaces("train", n=8, image_size=8)
    with pytest.raises(DatasetError, match="no split"):
        SyntheticFaces("holdout", n=8)
    with pytest.raises(DatasetError, match="at least 4"):
        SyntheticFaces("train", n=2)


def _equalised_odds_gap(y: np.ndarray, pred: np.ndarray, group: np.ndarray) -> float:
    """DEO = |ΔFNR| + |ΔFPR| between the two groups."""
    fnr = [np.mean(pred[(group == g) & (y == 1)] == 0) for g in (0, 1)]
    fpr = [np.mean(pred[(group == g) & (y == 0)] == 1) for g in (0, 1)]
    return float(abs(fnr[0] - fnr[1]) + abs(fpr[0] - fpr[1]))


@pytest.mark.slow
def test_bias_plants_a_shortcut_that_a_balanced_split_does_not():
    """A small CNN trained on bias 0.9 uses Male for Smiling (DEO ≥ 0.2); on bias 0.5 it does not (DEO < 0.1)."""
    from fairaudit.metrics import audit_metrics
    from fairaudit.models.registry import build_model
    from fairaudit.demo import DEMO_RECIPES
    from fairaudit.train import fit

    test = SyntheticFaces("test", n=1000, seed=0)
    x_test = torch.stack([test.load_input(i) for i in range(len(test))])
    y, male = test.targets, test.sensitive_codes[:, 0]
    gaps, accuracy = {}, {}
    for bias in (0.9, 0.5):
        train = SyntheticFaces("train", n=2000, bias=bias, seed=0)
        torch.manual_seed(0)
        model = build_model("small_cnn", 2, train.input_shape)
        fit(model, train, DEMO_RECIPES["synthetic-faces"]["config"], device="cpu")
        with torch.no_grad():
            pred = torch.cat([model(x_test[i:i + 250]).argmax(1) for i in range(0, len(x_test), 250)]).numpy()
        gaps[bias] = _equalised_odds_gap(y, pred, male)
        accuracy[bias] = float(np.mean(pred == y))
        report = audit_metrics(y.copy(), y_pred=pred, sensitive=male.copy(), sensitive_names=["Male"], n_boot=0,
                               device="cpu")
        assert report.disparities["deo"] == pytest.approx(gaps[bias], abs=1e-9)
    assert gaps[0.9] >= 0.2, (gaps, accuracy)
    assert gaps[0.5] < 0.1, (gaps, accuracy)
    # Both learned the smile, not a constant guess (0.5); the unbiased model better.
    assert accuracy[0.9] >= 0.68 and accuracy[0.5] >= 0.8, (gaps, accuracy)


def test_images_are_drawn_once_and_read_back_from_the_workspace(tmp_path, monkeypatch):
    """A second pass over a split, even through a new dataset object, draws nothing and gives the same tensors."""
    from fairaudit.data import colored_digits, synthetic_faces
    from tests.conftest import workspace_at

    drawn = []
    real_render = synthetic_faces.render_face
    monkeypatch.setattr(synthetic_faces, "render_face", lambda *a, **k: drawn.append(1) or real_render(*a, **k))
    with workspace_at(tmp_path):
        first = torch.stack([SyntheticFaces("test", n=16, image_size=32)[i][0] for i in range(16)])
        assert len(drawn) == 16
        again = torch.stack([SyntheticFaces("test", n=16, image_size=32)[i][0] for i in range(16)])
        assert len(drawn) == 16 and torch.equal(first, again)
        assert torch.equal(first * 255, (first * 255).round())  # 8-bit images, on the first pass too
        assert any((tmp_path / "cache" / "render").glob("synthetic-faces-test-*.u8"))
        # Another split or drawing option is another file, drawn afresh.
        SyntheticFaces("test", n=16, image_size=48)[0]
        assert len(drawn) == 17
        digits = colored_digits.ColoredDigits("test", image_size=16)
        x = digits[3][0]
        assert torch.equal(x, colored_digits.ColoredDigits("test", image_size=16)[3][0])
        assert float((x - digits.draw(3)).abs().max()) <= 0.5 / 255 + 1e-6
    monkeypatch.setenv("FAIRAUDIT_RENDER_CACHE", "0")
    with workspace_at(tmp_path / "off"):
        assert torch.equal(SyntheticFaces("test", n=16, image_size=32)[5][0], first[5])
        assert not (tmp_path / "off" / "cache").exists()


def test_images_are_drawn_every_time_when_the_workspace_cannot_be_used(tmp_path):
    from tests.conftest import workspace_at

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the workspace should be")
    with workspace_at(blocker):
        x = SyntheticFaces("test", n=8, image_size=32)[2][0]
    with workspace_at(tmp_path / "home"):
        assert torch.equal(x, SyntheticFaces("test", n=8, image_size=32)[2][0])
    assert blocker.read_text() == "a file where the workspace should be"
