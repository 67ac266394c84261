"""Face-recognition audits without the demo model: the engine against a brute-force NumPy reference, the margin
losses, synthetic-identities, the identity-folders loader on a tiny fixture, and the bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fairaudit.data import load_dataset
from fairaudit.errors import FairauditError
from fairaudit.faces import embed_dataset, embeddings_from_arrays, gallery_sweep, identify, verify
from fairaudit.faces.model import build_embedder, margin_loss

try:
    from tests import faces_reference as ref
except ImportError:  # tests/ itself is on sys.path
    import faces_reference as ref


def clustered(n_ids=40, dim=8, seed=0, n_groups=2, spreads=(0.9, 0.6, 0.75), max_images=5):
    """Identities as noisy clusters; group g's photos scatter by spreads[g]; 1..max_images photos each."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    counts = rng.integers(1, max_images + 1, n_ids)
    ids = np.repeat(np.arange(n_ids), counts)
    groups = (np.arange(n_ids) % n_groups)[ids]
    v = centres[ids] + rng.normal(size=(len(ids), dim)) * np.asarray(spreads)[groups][:, None]
    return v, ids, groups


def test_identification_matches_the_numpy_reference_exactly():
    v, ids, groups = clustered()
    emb = embeddings_from_arrays(v, ids, groups, ["A", "B"], device="cpu")
    result = identify(emb, (1, 5), n_boot=200)
    expected, rank = ref.identification(v, ids, groups)
    np.testing.assert_array_equal(result.rank, rank)
    assert (rank == 0).sum() > 0  # people with one photo are no probes
    for g, name in enumerate(["A", "B"]):
        got = result.summary["groups"][name]
        assert got["rank1"] == expected[g]["rank1"] and got["rank5"] == expected[g]["rank5"]
        assert got["n_probes"] == expected[g]["n_probes"]
        assert got["l2_ratio"] == pytest.approx(expected[g]["l2_ratio"], abs=1e-6)
        lo, hi = got["ci"]["rank1"]
        assert lo <= got["rank1"] <= hi
    # The measured numbers of this fixture: B's photos are tighter, so B is found more often.
    assert (expected[0]["rank1"], expected[1]["rank1"]) == (21 / 59, 38 / 51)
    best = max(expected, key=lambda g: expected[g]["rank1"])
    for g, name in enumerate(["A", "B"]):
        want = (1 - expected[g]["rank1"]) / (1 - expected[best]["rank1"])
        assert result.summary["error_ratio"]["per_group"][name] == pytest.approx(want, rel=1e-12)
    assert result.summary["error_ratio"]["best_group"] == "B"


def test_error_ratio_of_three_groups_is_each_groups_error_over_the_best_groups():
    v, ids, groups = clustered(n_ids=60, n_groups=3, seed=1)
    emb = embeddings_from_arrays(v, ids, groups, ["A", "B", "C"], device="cpu")
    result = identify(emb, (1,), n_boot=0)
    expected, _ = ref.identification(v, ids, groups, ranks=(1,))
    errors = {g: 1 - expected[g]["rank1"] for g in expected}
    best = min(errors.values())
    ratio = result.summary["error_ratio"]
    assert ratio["per_group"] == {n: pytest.approx(errors[g] / best, rel=1e-12) for g, n in enumerate("ABC")}
    assert ratio["max"] == pytest.approx(max(errors.values()) / best, rel=1e-12)
    assert result.summary["groups"]["A"]["ci"] == {}


def test_verification_matches_the_numpy_reference_exactly():
    v, ids, groups = clustered()
    emb = embeddings_from_arrays(v, ids, groups, ["A", "B"], device="cpu")
    for target in (0.01, 0.05):
        result = verify(emb, target, n_boot=200).summary
        threshold, expected, overall = ref.verification(v, ids, groups, target)
        assert result["threshold"] == pytest.approx(threshold, abs=1e-6)
        assert result["overall_fmr"] == overall and overall <= target
        for g, name in enumerate(["A", "B"]):
            got = result["groups"][name]
            assert (got["fnmr"], got["fmr"]) == (expected[g]["fnmr"], expected[g]["fmr"])
            assert (got["n_genuine"], got["n_impostor"]) == (expected[g]["n_genuine"], expected[g]["n_impostor"])
            assert got["ci"]["fnmr"][0] <= got["fnmr"] <= got["ci"]["fnmr"][1]
        rates = [expected[g]["fnmr"] for g in (0, 1)]
        assert result["fnmr_ratio"] == pytest.approx(max(rates) / min(rates), rel=1e-12)


def test_a_real_extractor_on_synthetic_identities_matches_the_reference():
    ds = load_dataset("synthetic-identities", "test", n_test_ids=12, test_images=3)
    torch.manual_seed(0)
    model = build_embedder("small_cnn", 5, ds.input_shape).eval()
    emb, v, groups = ref.embedded_with_vectors(model, ds, batch_size=7)
    got = identify(emb, (1, 5), n_boot=0)
    expected, rank = ref.identification(v, ds.identities, groups)
    np.testing.assert_array_equal(got.rank, rank)
    assert [got.summary["groups"][n]["rank1"] for n in ("Female", "Male")] == [expected[0]["rank1"],
                                                                               expected[1]["rank1"]]


def test_cosface_and_arcface_losses_follow_their_equations():
    cos = torch.tensor([[0.8, 0.1, -0.3], [0.2, 0.6, 0.5]])
    y = torch.tensor([0, 2])
    s, m = 10.0, 0.3
    for kind, adjust in (("cosface", lambda c: c - m), ("arcface", lambda c: math.cos(math.acos(c) + m))):
        total = 0.0
        for row, label in zip(cos.tolist(), y.tolist()):
            logits = [s * (adjust(c) if j == label else c) for j, c in enumerate(row)]
            total += -logits[label] + math.log(sum(math.exp(z) for z in logits))
        assert float(margin_loss(cos, y, kind, m, s)) == pytest.approx(total / 2, rel=1e-5)
    # The margin makes the loss larger than the plain scaled softmax on the same cosines.
    plain = float(nn.functional.cross_entropy(s * cos, y))
    assert float(margin_loss(cos, y, "cosface", m, s)) > plain


def test_synthetic_identities_keep_the_person_and_vary_the_photo():
    ds = load_dataset("synthetic-identities", "test", n_test_ids=6, test_images=4, seed=3)
    assert len(ds) == 24 and ds.target == "identity" and ds.num_classes == 6
    people = ds.identity_attributes()
    for k in range(6):
        rows = np.flatnonzero(ds.identities == k)
        assert (ds.attributes.loc[rows, ["Male", "Skin_Tone", "Young"]].to_numpy()
                == people.loc[k, ["Male", "Skin_Tone", "Young"]].to_numpy()).all()
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    same = (x[0] - x[1]).abs().mean().item()  # two photos of person 0
    assert same > 0.02  # the photos differ
    again = load_dataset("synthetic-identities", "test", n_test_ids=6, test_images=4, seed=3)
    assert torch.equal(again[5][0], x[5])
    train = load_dataset("synthetic-identities", "train", n_train_ids=10, train_images=2, train_male=0.2)
    assert int(train.identity_attributes()["Male"].sum()) == 2


# ---------------------------------------------------------------------------- identity folders

def write_folders(root, people: dict[str, int], table: pd.DataFrame | None = None):
    """``root/<identity>/<k>.png`` with ``people[identity]`` photos each, drawn by synthetic-identities."""
    from PIL import Image

    source = load_dataset("synthetic-identities", "test", n_test_ids=len(people), test_images=max(people.values()),
                          image_size=24)
    for k, (name, count) in enumerate(people.items()):
        (root / name).mkdir(parents=True)
        for j in range(count):
            img = (source[k * max(people.values()) + j][0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{j:03d}.png")
    if table is None:
        table = pd.DataFrame({"identity": list(people), "gender": ["f", "m"] * (len(people) // 2)})
    table.to_csv(root / "identities.csv", index=False)
    return root


def test_identity_folders_read_people_from_their_folders(tmp_path):
    root = write_folders(tmp_path / "faces", {"Ann": 3, "Bob": 2, "Cleo": 2, "Dan": 3})
    (root / "notes.txt").write_text("not a person")
    ds = load_dataset("identity-folders", "test", data_dir=root, image_size=24)
    assert len(ds) == 10 and ds.sensitive == ["gender"]
    assert ds.value_names["identity"] == ["Ann", "Bob", "Cleo", "Dan"]
    assert ds.identities.tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]
    assert ds.sensitive_codes[:, 0].tolist() == [0, 0, 0, 1, 1, 0, 0, 1, 1, 1]
    assert tuple(ds[0][0].shape) == (3, 24, 24)
    torch.manual_seed(0)
    model = build_embedder("small_cnn", 3, ds.input_shape).eval()
    result = identify(embed_dataset(model, ds, device="cpu"), (1,), n_boot=0)
    assert {g: e["n_probes"] for g, e in result.summary["groups"].items()} == {"f": 5, "m": 5}


def test_unknown_identity_keys_in_the_attributes_table_are_named(tmp_path):
    table = pd.DataFrame({"identity": ["Ann", "Bob", "Zed"], "gender": ["f", "m", "m"]})
    root = write_folders(tmp_path / "faces", {"Ann": 2, "Bob": 2}, table)
    with pytest.raises(FairauditError, match=r"names 1 identity with no image folder .*'Zed'"):
        load_dataset("identity-folders", "test", data_dir=root)
    table = pd.DataFrame({"identity": ["Ann"], "gender": ["f"]})
    root = write_folders(tmp_path / "faces2", {"Ann": 2, "Bob": 2}, table)
    with pytest.raises(FairauditError, match=r"1 identity folder\(s\) .* have no row .*'Bob'"):
        load_dataset("identity-folders", "test", data_dir=root)


def test_identities_of_one_image_each_have_no_genuine_pairs(tmp_path):
    root = write_folders(tmp_path / "faces", {"Ann": 1, "Bob": 1, "Cleo": 1, "Dan": 1})
    ds = load_dataset("identity-folders", "test", data_dir=root, image_size=24)
    emb = embed_dataset(build_embedder("small_cnn", 3, ds.input_shape).eval(), ds, device="cpu")
    with pytest.raises(FairauditError, match="single image, so no probe has a match"):
        identify(emb)
    with pytest.raises(FairauditError, match="single image, so there is no genuine pair"):
        verify(emb)


def test_a_model_without_an_embedding_is_refused():
    ds = load_dataset("synthetic-identities", "test", n_test_ids=4, test_images=2)
    with pytest.raises(FairauditError, match="exposes no embedding"):
        embed_dataset(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4)), ds, device="cpu")

    class MapsOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.g = nn.Conv2d(3, 4, 3)

    with pytest.raises(FairauditError, match=r"outputs of shape \(4, 30, 30\), not one embedding vector"):
        embed_dataset(MapsOnly(), ds, device="cpu")


def test_fewer_than_two_groups_is_refused():
    ds = load_dataset("synthetic-identities", "test", n_test_ids=6, test_images=2, test_male=0.0)
    emb = embed_dataset(build_embedder("small_cnn", 3, ds.input_shape).eval(), ds, device="cpu")
    for audit in (identify, verify, gallery_sweep):
        with pytest.raises(FairauditError, match=r"only one group \(Female\) is present"):
            audit(emb)


def test_gallery_sweep_draws_the_planned_galleries():
    v, ids, groups = clustered(n_ids=60, max_images=1, seed=2)
    v = np.repeat(v, 8, axis=0) + np.random.default_rng(0).normal(size=(len(v) * 8, v.shape[1])) * 0.5
    ids, groups = np.repeat(ids, 8), np.repeat(groups, 8)
    emb = embeddings_from_arrays(v, ids, groups, ["A", "B"], device="cpu")
    by_ids = gallery_sweep(emb, "ids", "A", seeds=(0, 1))
    assert [(g["ids"]["varied"], g["ids"]["others"]) for g in by_ids["galleries"]] == [
        (30, 3), (23, 10), (16, 17), (10, 23), (3, 30)]
    by_images = gallery_sweep(emb, "images", "B", seeds=(0,))
    assert [(g["images_per_id"]["varied"], g["images_per_id"]["others"]) for g in by_images["galleries"]] == [
        (8, 2), (7, 3), (5, 5), (3, 7), (2, 8)]
    assert len(by_images["rank1"]["A"]) == 5 and by_images["rank1_by_seed"]["B"][0][0] == by_images["rank1"]["B"][0]
    with pytest.raises(FairauditError, match="unknown gallery sweep 'people'"):
        gallery_sweep(emb, "people")


@pytest.mark.parametrize("kind, photos", [("ids", 4), ("images", 2)])
def test_a_gallery_sweep_holding_every_photo_measures_the_reference_rank1(kind, photos):
    """A sweep whose one gallery must take every person and photo of the split: its rank-1 per group is the
    brute-force reference's on the whole split (the draw reorders and renumbers the rows, nothing else)."""
    v, ids, groups = clustered(n_ids=40, max_images=1, seed=4)
    v = np.repeat(v, photos, axis=0) + np.random.default_rng(1).normal(size=(len(v) * photos, v.shape[1])) * 0.7
    ids, groups = np.repeat(ids, photos), np.repeat(groups, photos)
    emb = embeddings_from_arrays(v, ids, groups, ["A", "B"], device="cpu")
    sweep = gallery_sweep(emb, kind, "A", shares=(0.5,), seeds=(0, 1, 2), n_ids=40, images_per_id=photos)
    assert sweep["galleries"] == [{"ids": {"varied": 20, "others": 20},
                                   "images_per_id": {"varied": photos, "others": photos}}]
    expected, _ = ref.identification(v, ids, groups, ranks=(1,))
    assert 0.3 < expected[0]["rank1"] < 0.95 and 0.3 < expected[1]["rank1"] < 0.95  # neither trivial nor hopeless
    for g, name in enumerate(["A", "B"]):
        assert sweep["rank1_by_seed"][name] == [[expected[g]["rank1"]] * 3]
        assert sweep["rank1"][name] == [pytest.approx(expected[g]["rank1"], abs=1e-12)]
        assert sweep["rank1_std"][name] == [pytest.approx(0.0, abs=1e-12)]


def test_every_gallery_of_a_sweep_is_drawn_as_planned_and_measured_as_the_reference(monkeypatch):
    """The rows of each drawn gallery (recorded as the sweep takes them): its make-up is the planned one, and
    the rank-1 per group the sweep reports for it is the brute-force reference's on those rows."""
    from fairaudit.faces.engine import Embeddings

    v, ids, groups = clustered(n_ids=60, max_images=1, seed=5)
    v = np.repeat(v, 8, axis=0) + np.random.default_rng(2).normal(size=(len(v) * 8, v.shape[1])) * 0.6
    ids, groups = np.repeat(ids, 8), np.repeat(groups, 8)
    emb = embeddings_from_arrays(v, ids, groups, ["A", "B"], device="cpu")
    drawn, subset = [], Embeddings.subset
    monkeypatch.setattr(Embeddings, "subset", lambda self, rows: drawn.append(np.asarray(rows)) or subset(self, rows))
    for kind in ("ids", "images"):
        drawn.clear()
        sweep = gallery_sweep(emb, kind, "A", seeds=(0, 1, 2), n_ids=20)
        assert len(drawn) == 5 * 3
        for i, plan in enumerate(sweep["galleries"]):
            for j in range(3):
                rows = drawn[3 * i + j]
                assert len(np.unique(rows)) == len(rows)  # no photo twice
                for g, side in ((0, "varied"), (1, "others")):
                    people, photos = np.unique(ids[rows][groups[rows] == g], return_counts=True)
                    assert len(people) == plan["ids"][side] and set(photos) == {plan["images_per_id"][side]}
                expected, _ = ref.identification(v[rows], ids[rows], groups[rows], ranks=(1,))
                for g, name in enumerate(["A", "B"]):
                    assert sweep["rank1_by_seed"][name][i][j] == expected[g]["rank1"]
