"""Dataset loaders: embedded datasets and each folder format on a tiny fixture."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import fairaudit.data.adult  # noqa: F401  (registers)
import fairaudit.data.colored_digits  # noqa: F401
import fairaudit.data.folders  # noqa: F401
from fairaudit.data.registry import DATASETS, parse_options
from fairaudit.errors import DatasetError
from tests.bad_inputs.cases_data import write_huge_png, write_manifest
try:
    from tests import fixtures_data as fx
except ImportError:  # tests/ itself is on sys.path
    import fixtures_data as fx

REAL_COMPAS = Path("/work/shared/data/compas/compas-scores-two-years.csv.gz")


def load(name, split="test", data_dir=None, target=None, sensitive=None, **options):
    """Like ``load_dataset`` (options parsed from strings too), for the datasets of this file only."""
    spec = DATASETS[name]
    ds = spec.builder(split=split, data_dir=data_dir, **parse_options(spec, options))
    return ds.select(target, sensitive)


def check_sample(ds, shape):
    x, y, s, i = ds[len(ds) - 1]
    assert x.dtype == torch.float32 and tuple(x.shape) == shape
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert y.dtype == torch.int64 and int(y) == ds.targets[-1]
    assert s.dtype == torch.int64 and s.tolist() == ds.sensitive_codes[-1].tolist()
    assert i == len(ds) - 1


# -- registry ----------------------------------------------------------------------------------------------------

def test_specs_are_registered_with_their_options():
    expected = {"adult": True, "colored-digits": True, "celeba": False, "utkface": False, "fairface": False,
                "cifar10s": False, "compas": False, "manifest": False}
    for name, embedded in expected.items():
        spec = DATASETS[name]
        assert spec.embedded is embedded, name
        assert set(spec.splits) >= {"train", "test"}, name
        assert "seed" in spec.options or "image_size" in spec.options, name
    assert DATASETS["colored-digits"].options == {"image_size": 28, "bias": 1.0, "seed": 0, "test_bias": 0.5}
    assert DATASETS["celeba"].splits == ("train", "val", "test")


def test_load_dataset_end_to_end():
    from fairaudit.data.registry import load_dataset

    ds = load_dataset("colored-digits", "test", image_size="16")
    assert ds.input_shape == (3, 16, 16) and ds.target == "digit" and ds.sensitive == ["color"]


# -- colored digits ----------------------------------------------------------------------------------------------

def test_colored_digits_train_follows_the_colour_rule():
    ds = load("colored-digits", "train")
    digits, colors = ds.attributes["digit"].to_numpy(), ds.attributes["color"].to_numpy()
    assert len(ds) == 1257 and ds.value_names["color"] == ["red", "brown"]
    assert np.array_equal(colors, (digits >= 5).astype(int))
    check_sample(ds, (3, 28, 28))
    assert ds.class_names == [str(d) for d in range(10)]


def test_colored_digits_test_split_is_balanced():
    ds = load("colored-digits", "test")
    assert len(ds) == 540
    table = pd.crosstab(ds.attributes["digit"], ds.attributes["color"]).to_numpy()
    assert table.shape == (10, 2)
    assert np.abs(table[:, 0] - table[:, 1]).max() <= 1  # each digit: as many red as brown


def test_colored_digits_test_bias_gives_a_deployment_like_test_split():
    balanced = load("colored-digits", "test")
    assert load("colored-digits", "test", test_bias="0.5").attributes.equals(balanced.attributes)
    ds = load("colored-digits", "test", test_bias="0.9")
    digits, colors = ds.attributes["digit"].to_numpy(), ds.attributes["color"].to_numpy()
    assert (colors == (digits >= 5)).mean() == pytest.approx(0.9, abs=0.01)
    assert load("colored-digits", "train", test_bias="0.9").attributes.equals(load("colored-digits", "train").attributes)
    with pytest.raises(DatasetError, match=r"option 'test_bias' of dataset 'colored-digits' must lie in \[0, 1\]"):
        load("colored-digits", "test", test_bias=-1.0)


def test_colored_digits_bias_option_and_determinism():
    ds = load("colored-digits", "train", bias="0.8")
    digits, colors = ds.attributes["digit"].to_numpy(), ds.attributes["color"].to_numpy()
    assert (colors == (digits >= 5)).mean() == pytest.approx(0.8, abs=0.01)
    again = load("colored-digits", "train", bias=0.8)
    assert torch.equal(ds[7][0], again[7][0])
    other = load("colored-digits", "train", bias=0.8, seed=1)
    assert not np.array_equal(other.attributes["digit"].to_numpy()[:50], digits[:50])
    with pytest.raises(DatasetError, match=r"option 'bias' of dataset 'colored-digits' must lie in \[0, 1\]"):
        load("colored-digits", "train", bias=1.5)


def test_colored_digits_rendering_jitters_the_background():
    ds = load("colored-digits", "test", image_size=32)
    assert ds.input_shape == (3, 32, 32)
    red = np.flatnonzero(ds.attributes["color"].to_numpy() == 0)[:20]
    corners = torch.stack([ds.load_input(int(i))[:, 0, 0] for i in red])
    assert corners[:, 0].min() > 0.7 and corners[:, 1].max() < 0.2  # red...
    assert corners.std(0).min() > 0.01  # ... but not one constant colour
    x = ds.load_input(int(red[0]))
    assert x.min(0).values.max() > 0.9  # the stroke is white (all channels high)


# -- adult -------------------------------------------------------------------------------------------------------

def test_adult_split_sizes_features_and_attributes():
    train, test = load("adult", "train"), load("adult", "test")
    assert (len(train), len(test)) == (31655, 13567)  # 45,222 complete records, 70/30
    assert train.input_shape == test.input_shape and train.feature_names == test.feature_names
    assert test.targets.mean() == pytest.approx(0.248, abs=0.01)
    assert train.value_names["income"] == ["<=50K", ">50K"] and train.favorable_label == 1
    assert train.value_names["sex"] == ["Female", "Male"]
    assert len(train.value_names["race"]) == 5 and train.value_names["race_binary"] == ["non-White", "White"]
    assert train.attributes["age_group"].nunique() == 3
    race = train.attributes["race"].to_numpy()
    white = train.value_names["race"].index("White")
    assert np.array_equal(train.attributes["race_binary"].to_numpy(), (race == white).astype(int))
    x, y, s, i = test.select("income", ["sex", "race"])[5]
    assert x.shape == train.input_shape and s.shape == (2,)


def test_adult_encoding_is_fitted_on_train_and_excludes_protected_columns():
    train = load("adult", "train")
    assert not any(n.startswith(("sex=", "race=")) for n in train.feature_names)
    groups = train.feature_groups
    assert sorted(j for idx in groups.values() for j in idx) == list(range(train.input_shape[0]))
    assert groups["age"] == [0] and len(groups["workclass"]) == 7
    numeric = train.x[:, [groups[c][0] for c in train.numeric_features]]
    assert torch.allclose(numeric.mean(0), torch.zeros(6), atol=1e-4)
    assert torch.allclose(numeric.std(0), torch.ones(6), atol=1e-3)
    onehot = train.x[:, groups["occupation"]]
    assert torch.equal(onehot.sum(1), torch.ones(len(train)))
    with_sensitive = load("adult", "train", include_sensitive="true")
    assert with_sensitive.input_shape[0] == train.input_shape[0] + 2 + 5
    assert len(with_sensitive.feature_groups["race"]) == 5


def test_adult_reports_missing_and_malformed_files(tmp_path):
    row = "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, "
    (tmp_path / "adult.data").write_text(row + "United-States, <=50K\n")
    with pytest.raises(DatasetError, match="the Adult file adult.test"):
        load("adult", "train", data_dir=tmp_path)
    (tmp_path / "adult.test").write_text("|1x3 Cross validator\n39, State-gov, 77516\n")
    with pytest.raises(DatasetError, match="adult.test' does not look like a UCI Adult file"):
        load("adult", "train", data_dir=tmp_path)


# -- celeba ------------------------------------------------------------------------------------------------------

def test_celeba_reads_the_official_layout(tmp_path):
    values = fx.make_celeba(tmp_path)
    train, val, test = (load("celeba", s, tmp_path, image_size=16) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (4, 2, 3)
    assert list(train.attributes.columns) == fx.CELEBA_ATTRIBUTES
    assert (train.target, train.sensitive) == ("Smiling", ["Male"])
    assert train.value_names["Male"] == ["Female", "Male"]
    assert train.value_names["Smiling"] == ["not Smiling", "Smiling"]
    assert np.array_equal(test.attributes.to_numpy(), (values[6:] > 0).astype(int))
    check_sample(test, (3, 16, 16))
    assert load("celeba", "val", tmp_path, target="Young", sensitive="Male,Pale_Skin")[0][2].shape == (2,)


def test_celeba_errors_name_the_missing_or_bad_file(tmp_path):
    fx.make_celeba(tmp_path)
    lines = (tmp_path / "list_attr_celeba.txt").read_text().splitlines()
    (tmp_path / "list_eval_partition.txt").unlink()
    with pytest.raises(DatasetError, match="list_eval_partition.txt"):
        load("celeba", "train", tmp_path)
    fx.make_celeba(tmp_path)
    (tmp_path / "list_attr_celeba.txt").write_text("\n".join([lines[0], lines[1].rsplit(" ", 1)[0], *lines[2:]]))
    with pytest.raises(DatasetError, match="40 attribute names, found 39"):
        load("celeba", "train", tmp_path)
    fx.make_celeba(tmp_path)
    (tmp_path / "img_align_celeba" / "000001.jpg").unlink()
    with pytest.raises(DatasetError, match="000001.jpg"):
        load("celeba", "train", tmp_path)


# -- utkface -----------------------------------------------------------------------------------------------------

def test_utkface_parses_file_names_and_skips_malformed_ones(tmp_path):
    fx.make_utkface(tmp_path)
    train, test = load("utkface", "train", tmp_path, image_size=8), load("utkface", "test", tmp_path, image_size=8)
    assert (len(train), len(test)) == (8, 2) and train.skipped == len(fx.UTK_MALFORMED) == 3
    assert train.value_names["race"] == ["White", "Black", "Asian", "Indian", "Others"]
    assert train.value_names["gender"] == ["Male", "Female"]
    assert (train.target, train.sensitive) == ("gender", ["race"])
    expected = {name: (age, gender, race) for name, age, gender, race in fx.UTK_VALID}
    seen = set()
    for ds in (train, test):
        for path, row in zip(ds.paths, ds.attributes.itertuples(index=False)):
            age, gender, race = expected[Path(path).name]
            assert (row.gender, row.race) == (gender, race)
            assert row.age_group == (0 if age < 20 else 1 if age < 40 else 2 if age < 60 else 3)
            seen.add(Path(path).name)
    assert seen == set(expected)  # train and test partition the valid files
    check_sample(test, (3, 8, 8))


def test_utkface_without_valid_names_is_an_error(tmp_path):
    fx.write_image(tmp_path / "holiday.jpg", np.random.default_rng(0))
    with pytest.raises(DatasetError, match=r"no UTKFace image .*\(1 \.jpg file"):
        load("utkface", "train", tmp_path)


# -- fairface ----------------------------------------------------------------------------------------------------

def test_fairface_reads_label_csvs(tmp_path):
    fx.make_fairface(tmp_path)
    train, val, test = (load("fairface", s, tmp_path, image_size=12) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (5, 3, 3)
    assert val.paths == test.paths
    assert len(train.value_names["age"]) == 9 and len(train.value_names["race"]) == 7
    row = train.attributes.iloc[0]
    assert train.value_names["age"][row["age"]] == "50-59"
    assert train.value_names["gender"][row["gender"]] == "Male"
    assert train.value_names["race"][row["race"]] == "East Asian"
    check_sample(train, (3, 12, 12))


def test_fairface_rejects_unknown_values_and_missing_columns(tmp_path):
    fx.make_fairface(tmp_path)
    labels = pd.read_csv(tmp_path / "fairface_label_val.csv")
    labels.loc[1, "race"] = "Martian"
    labels.to_csv(tmp_path / "fairface_label_val.csv", index=False)
    expected = "column 'race' of fairface_label_val.csv has the unexpected value 'Martian'"
    with pytest.raises(DatasetError, match=expected):
        load("fairface", "val", tmp_path)
    labels.drop(columns="race").to_csv(tmp_path / "fairface_label_train.csv", index=False)
    with pytest.raises(DatasetError, match="lacks the column\\(s\\) 'race'"):
        load("fairface", "train", tmp_path)
    with pytest.raises(DatasetError, match="fairface_label_val.csv"):
        load("fairface", "test", tmp_path / "train")


# -- cifar-10s ---------------------------------------------------------------------------------------------------

def test_cifar10s_train_skew(tmp_path):
    fx.make_cifar(tmp_path)
    train = load("cifar10s", "train", tmp_path, skew="0.75")
    assert len(train) == 200 and train.value_names["color"] == ["color", "gray"]
    table = pd.crosstab(train.attributes["label"], train.attributes["color"]).to_numpy()
    assert table[:5].tolist() == [[15, 5]] * 5 and table[5:].tolist() == [[5, 15]] * 5
    default = load("cifar10s", "train", tmp_path)
    assert pd.crosstab(default.attributes["label"], default.attributes["color"]).to_numpy()[0].tolist() == [19, 1]
    gray = int(np.flatnonzero(train.attributes["color"].to_numpy() == 1)[0])
    x = train.load_input(gray)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_cifar10s_test_has_colour_and_gray_copies(tmp_path):
    batches = fx.make_cifar(tmp_path)
    test = load("cifar10s", "test", tmp_path)
    n = 30
    assert len(test) == 2 * n
    assert test.attributes["color"].tolist() == [0] * n + [1] * n
    assert np.array_equal(test.attributes["label"].to_numpy(), np.tile(batches["test_batch"][b"labels"], 2))
    raw = batches["test_batch"][b"data"][4].reshape(3, 32, 32)
    assert torch.equal(test.load_input(4), torch.from_numpy(raw.astype(np.float32) / 255.0))
    gray = test.load_input(n + 4)
    assert torch.equal(gray[0], gray[2]) and not torch.equal(gray, test.load_input(4))
    check_sample(test, (3, 32, 32))
    assert load("cifar10s", "test", tmp_path, image_size=16).load_input(0).shape == (3, 16, 16)


def test_cifar10s_refuses_a_malicious_pickle_without_running_it(tmp_path):
    fx.make_cifar(tmp_path)
    # The payload is real: an ordinary unpickler runs it.
    control = tmp_path / "control-marker"
    pickle.loads(fx.malicious_pickle(control))
    assert control.exists()
    marker = tmp_path / "marker"
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(fx.malicious_pickle(marker))
    refused = r"not a plain CIFAR-10 batch .*refused to load '(__builtin__|builtins)\.exec'"
    with pytest.raises(DatasetError, match=refused):
        load("cifar10s", "test", tmp_path)
    assert not marker.exists()


def test_cifar10s_reports_missing_and_corrupt_batches(tmp_path):
    fx.make_cifar(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3"):
        load("cifar10s", "train", tmp_path)
    (folder / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(DatasetError, match="test_batch"):
        load("cifar10s", "test", tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DatasetError, match=r"shape \(N, 3072\)"):
        load("cifar10s", "test", tmp_path)


# -- compas ------------------------------------------------------------------------------------------------------

def test_compas_filters_encodes_and_splits(tmp_path):
    kept = fx.make_compas(tmp_path, n=40)
    train, test = load("compas", "train", tmp_path), load("compas", "test", tmp_path)
    assert (len(train), len(test)) == (28, 12)  # the four rows failing a filter are gone
    assert train.favorable_label == 0 and train.value_names["two_year_recid"] == ["no recidivism", "recidivism"]
    assert (train.target, train.sensitive) == ("two_year_recid", ["race_binary"])
    assert train.value_names["race"] == sorted(fx.COMPAS_RACES)
    assert train.value_names["race_binary"] == ["non-Caucasian", "Caucasian"]
    assert train.feature_names[:2] == ["age", "priors_count"] and len(train.feature_names) == 5 + 3 + 2
    assert sorted(train.feature_groups) == ["age", "age_cat", "c_charge_degree", "juv_fel_count",
                                            "juv_misd_count", "juv_other_count", "priors_count"]
    total = pd.concat([train.attributes, test.attributes])
    assert sorted(total["two_year_recid"]) == sorted(kept["two_year_recid"])
    x, y, s, i = test[0]
    assert x.shape == (10,) and s.shape == (1,)
    both = load("compas", "test", tmp_path, include_sensitive=True, two_races=True)
    assert both.value_names["race_binary"] == ["African-American", "Caucasian"]
    # two races and two sexes join the one-hot features
    assert len(both.feature_groups["race"]) == 2 and len(both.feature_groups["sex"]) == 2
    assert both.input_shape[0] == sum(len(v) for v in both.feature_groups.values())


def test_compas_gzip_and_missing_column(tmp_path):
    fx.make_compas(tmp_path, n=20, gzip=True)
    assert len(load("compas", "train", tmp_path)) == 14
    frame = pd.read_csv(tmp_path / "compas-scores-two-years.csv.gz").drop(columns="c_charge_degree")
    frame.to_csv(tmp_path / "compas-scores-two-years.csv", index=False)
    with pytest.raises(DatasetError, match="'c_charge_degree'"):
        load("compas", "train", tmp_path)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(DatasetError, match="compas-scores-two-years.csv"):
        load("compas", "train", tmp_path / "elsewhere")


@pytest.mark.skipif(not REAL_COMPAS.exists(), reason="the public COMPAS file is not on this machine")
def test_compas_real_file(tmp_path):
    shutil.copy(REAL_COMPAS, tmp_path)
    train, test = load("compas", "train", tmp_path), load("compas", "test", tmp_path)
    assert len(train) + len(test) == 6172 and len(test) == 1852
    rate = np.concatenate([train.targets, test.targets]).mean()
    assert rate == pytest.approx(0.455, abs=0.005)
    assert train.input_shape == test.input_shape == (10,)


# -- manifest ----------------------------------------------------------------------------------------------------

def test_manifest_codes_columns_in_sorted_order(tmp_path):
    frame = fx.make_manifest(tmp_path, n=10)
    train, test = load("manifest", "train", tmp_path, image_size=8), load("manifest", "test", tmp_path, image_size=8)
    assert (len(train), len(test)) == (8, 2)
    assert train.value_names == {"label": ["cat", "dog"], "group": ["middle", "old", "young"], "skin": ["1", "3"]}
    assert (train.target, train.sensitive) == ("label", ["group"])
    assert train.skipped_columns["age"] == ("it has no value on line 2 of 'manifest.csv' (1 row(s) in all); "
                                            "fill the value in or drop the row")
    for ds in (train, test):
        for path, row in zip(ds.paths, ds.attributes.itertuples(index=False)):
            source = frame[frame["path"] == str(Path(path).relative_to(tmp_path))].iloc[0]
            assert ds.value_names["label"][row.label] == source["label"]
            assert ds.value_names["skin"][row.skin] == str(source["skin"])
    check_sample(test, (3, 8, 8))
    with pytest.raises(DatasetError, match="manifest column 'age' cannot be used: it has no value on line 2"):
        train.select("label", "age")


def test_manifest_split_column_and_errors(tmp_path):
    fx.make_manifest(tmp_path, n=10, with_split=True)
    sizes = {s: len(load("manifest", s, tmp_path, split_column="split")) for s in ("train", "val", "test")}
    assert sizes == {"train": 4, "val": 4, "test": 2}
    with pytest.raises(DatasetError, match="no split column, so it has no 'val' split"):
        load("manifest", "val", tmp_path)
    with pytest.raises(DatasetError, match="lacks the column\\(s\\) 'file'"):
        load("manifest", "test", tmp_path, path_column="file")
    with pytest.raises(DatasetError, match="expected the manifest CSV at .*other.csv"):
        load("manifest", "test", tmp_path, manifest="other.csv")


def test_manifest_missing_images_in_a_split(tmp_path):
    fx.make_manifest(tmp_path, n=10, with_split=True)
    for name in ("0.png", "5.png"):  # rows 0 and 5 are both in the train split
        (tmp_path / "imgs" / str(int(name[0]) % 2) / name).unlink()
    with pytest.raises(DatasetError, match=r"2 of 4 image\(s\) listed in 'manifest.csv' are missing, "
                                           r"the first being '.*imgs/0/0.png'"):
        load("manifest", "train", tmp_path, split_column="split")
    assert len(load("manifest", "test", tmp_path, split_column="split")) == 2


def test_manifest_without_rows_says_so(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,label,group\n")
    with pytest.raises(DatasetError) as info:
        load("manifest", "test", tmp_path)
    assert str(info.value) == "'manifest.csv' has a header but no rows; list one image per row."


def test_manifest_label_with_a_gap_is_named_with_its_line_not_silently_replaced(tmp_path):
    label = (np.arange(12) % 2).astype(float)
    label[4] = np.nan
    write_manifest(tmp_path, label=label, region=np.where(np.arange(12) < 6, "north", "south"))
    message = ("manifest column 'label' cannot be used: it has no value on line 6 of 'manifest.csv' "
               "(1 row(s) in all); fill the value in or drop the row.")
    for target in (None, "label"):  # the default target is not silently moved to another column
        with pytest.raises(DatasetError) as info:
            load("manifest", "test", tmp_path, target=target, image_size=8)
        assert str(info.value) == message
    ds = load("manifest", "test", tmp_path, target="group", sensitive="region", image_size=8)
    assert (ds.target, ds.sensitive) == ("group", ["region"])
    (tmp_path / "manifest.csv").write_text((tmp_path / "manifest.csv").read_text().replace(",region", ",x"))
    pd.read_csv(tmp_path / "manifest.csv").drop(columns="x").to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(DatasetError) as info:  # label unusable and only one other column
        load("manifest", "test", tmp_path, image_size=8)
    assert str(info.value) == message


@pytest.mark.parametrize("width, height", [(20000, 20000), (9000, 8000)])
def test_huge_images_are_refused_from_their_header(tmp_path, width, height):
    write_manifest(tmp_path, split=["test"] * 12)
    write_huge_png(tmp_path / "img3.png", width, height)
    ds = load("manifest", "test", tmp_path, split_column="split", image_size=8)
    with pytest.raises(DatasetError) as info:
        ds[3]
    assert str(info.value) == (f"image '{tmp_path / 'img3.png'}' has {width * height:,} pixels, more than the "
                               "64,000,000 a dataset image may have (a guard against decompression bombs); shrink "
                               "it before auditing.")
    assert ds[2][0].shape == (3, 8, 8)


def test_an_error_in_a_loader_worker_reaches_the_user_as_its_sentence(tmp_path):
    write_manifest(tmp_path, split=["test"] * 12)
    write_huge_png(tmp_path / "img3.png")
    ds = load("manifest", "test", tmp_path, split_column="split", image_size=8)
    with pytest.raises(DatasetError) as info:
        list(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=1))
    assert str(info.value) == (f"image '{tmp_path / 'img3.png'}' has 400,000,000 pixels, more than the 64,000,000 "
                               "a dataset image may have (a guard against decompression bombs); shrink it before "
                               "auditing.")


def _escaping_manifest(tmp_path) -> tuple[Path, Path]:
    """``data/manifest.csv`` with one path per way out: ``../``, an absolute path and a symlink to outside."""
    outside = write_manifest(tmp_path / "outside", n=3)
    data = write_manifest(tmp_path / "data", n=6)
    (data / "link.png").symlink_to(outside / "img2.png")
    return data, outside


@pytest.mark.parametrize("row, path", [(1, "../outside/img0.png"), (2, "ABSOLUTE"), (3, "link.png")])
def test_contained_manifest_refuses_paths_that_leave_its_folder(tmp_path, row, path):
    data, outside = _escaping_manifest(tmp_path)
    path = str(outside / "img1.png") if path == "ABSOLUTE" else path
    frame = pd.read_csv(data / "manifest.csv")
    frame.loc[row, "path"] = path
    frame.to_csv(data / "manifest.csv", index=False)
    assert len(load("manifest", "train", data)) + len(load("manifest", "test", data)) == 6  # allowed by default
    with pytest.raises(DatasetError) as info:
        load("manifest", "train", data, contained="true")
    assert str(info.value) == (f"image path '{path}' on line {row + 2} of 'manifest.csv' lies outside the manifest's "
                               f"folder '{data.resolve()}', and only images inside it may be read; move the image "
                               "there or fix the path.")


def test_contained_manifest_accepts_its_own_images(tmp_path):
    data = write_manifest(tmp_path / "data", n=6)
    (data / "sub").mkdir()
    (data / "img0.png").rename(data / "sub" / "img0.png")
    frame = pd.read_csv(data / "manifest.csv")
    frame.loc[0, "path"] = "sub/../sub/img0.png"
    frame.loc[1, "path"] = str(data / "img1.png")
    frame.to_csv(data / "manifest.csv", index=False)
    ds = load("manifest", "train", data, contained="true", image_size=8)
    assert all(Path(p).is_relative_to(data.resolve()) for p in ds.paths)
    assert ds[0][0].shape == (3, 8, 8)


def test_uploaded_manifest_is_contained_in_its_image_folder(tmp_path):
    from appkit.uploads import stage_manifest

    data, outside = _escaping_manifest(tmp_path)
    good = (data / "manifest.csv").read_bytes()
    staged = pd.read_csv(stage_manifest(good, "upload.csv", str(data)) / "manifest.csv")
    assert list(staged["path"]) == [str(data.resolve() / f"img{i}.png") for i in range(6)]
    for path in ("../outside/img0.png", str(outside / "img1.png"), "link.png"):
        frame = pd.read_csv(data / "manifest.csv")
        frame.loc[4, "path"] = path
        with pytest.raises(DatasetError) as info:
            stage_manifest(frame.to_csv(index=False).encode(), "upload.csv", str(data))
        assert str(info.value) == (f"image path '{path}' on line 6 of 'upload.csv' lies outside the image folder "
                                   f"'{data.resolve()}', and only images inside it may be read; move the image "
                                   "there or fix the path.")
    with pytest.raises(DatasetError, match="enter the folder that holds the images of 'upload.csv'"):
        stage_manifest(good, "upload.csv", None)
