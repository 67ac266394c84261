"""The demo face-recognition model on synthetic-identities: better than a random-init extractor, the gallery's
composition moving per-group rank-1 the way the face-recognition literature reports, and the CLI contract."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from fairaudit.cli import main
from fairaudit.data import load_dataset
from fairaudit.faces import embed_dataset, embeddings_from_arrays, gallery_sweep, identify, verify
from fairaudit.faces.demo import get_face_demo_model
from fairaudit.faces.model import build_embedder, train_embedder
from fairaudit.train.loop import TrainConfig

try:
    from tests import faces_reference as ref
except ImportError:  # tests/ itself is on sys.path
    import faces_reference as ref

POOL = {"n_test_ids": 300}  # 150 people of each group, 10 photos each: galleries of 166 people


@pytest.fixture(scope="module")
def demo_model(fairaudit_home):
    model, path = get_face_demo_model(device="cpu")
    assert path.parent.name == "demo"  # the shipped model: nothing to train
    return model


@pytest.fixture(scope="module")
def pool_embeddings(demo_model):
    return embed_dataset(demo_model, load_dataset("synthetic-identities", "test", **POOL), device="cpu")


def test_demo_model_finds_people_far_more_often_than_a_random_init_extractor(demo_model):
    ds = load_dataset("synthetic-identities", "test")
    trained = identify(embed_dataset(demo_model, ds, device="cpu"), (1,), n_boot=0).summary
    torch.manual_seed(0)
    random_init = build_embedder("small_cnn", 200, ds.input_shape).eval()
    control = identify(embed_dataset(random_init, ds, device="cpu"), (1,), n_boot=0).summary
    overall = {name: sum(e["rank1"] * e["n_probes"] for e in s["groups"].values()) / s["n_probes"]
               for name, s in (("demo", trained), ("random", control))}
    # Measured: demo 0.814 (977 of 1200), random init 0.116 (chance: 1 of 119 other people, 0.008).
    assert overall["demo"] == pytest.approx(977 / 1200)
    assert overall["random"] == pytest.approx(139 / 1200)


def test_demo_models_audit_of_a_small_gallery_matches_the_reference_exactly(demo_model):
    ds = load_dataset("synthetic-identities", "test", n_test_ids=16, test_images=4, seed=7)
    emb, v, groups = ref.embedded_with_vectors(demo_model, ds, batch_size=5)
    ident = identify(emb, (1, 5), n_boot=100)
    expected, rank = ref.identification(v, ds.identities, groups)
    np.testing.assert_array_equal(ident.rank, rank)
    for g, name in enumerate(("Female", "Male")):
        got = ident.summary["groups"][name]
        assert (got["rank1"], got["rank5"], got["n_probes"]) == (expected[g]["rank1"], expected[g]["rank5"],
                                                                 expected[g]["n_probes"])
        assert got["l2_ratio"] == pytest.approx(expected[g]["l2_ratio"], abs=1e-6)
    # Measured: 64 photos of 16 people; the demo model finds Female 29 of 32 probes, Male 31 of 32.
    assert (expected[0]["rank1"], expected[1]["rank1"]) == (29 / 32, 31 / 32)
    ver = verify(emb, 0.02, n_boot=100).summary
    threshold, rates, overall = ref.verification(v, ds.identities, groups, 0.02)
    assert ver["threshold"] == pytest.approx(threshold, abs=1e-6) and ver["overall_fmr"] == overall
    for g, name in enumerate(("Female", "Male")):
        got = ver["groups"][name]
        assert (got["fnmr"], got["fmr"], got["n_genuine"], got["n_impostor"]) == (
            rates[g]["fnmr"], rates[g]["fmr"], rates[g]["n_genuine"], rates[g]["n_impostor"])
    # Measured at the threshold 0.643 (overall FMR 0.0198): FNMR Female 5 of 48 genuine pairs, Male 7 of 48.
    assert (rates[0]["fnmr"], rates[1]["fnmr"]) == (5 / 48, 7 / 48)


def slope(sweep: dict, group: str) -> float:
    """Rank-1 of ``group`` at the lowest share minus at the highest (``share`` runs from high to low)."""
    return sweep["rank1"][group][-1] - sweep["rank1"][group][0]


def test_more_gallery_identities_of_a_group_lower_its_rank1(pool_embeddings):
    sweep = gallery_sweep(pool_embeddings, "ids", "Female", seeds=(0, 1, 2))
    # Measured (means over 3 seeds, Female share 0.9 → 0.1): Female 0.64 → 0.88, Male 0.79 → 0.57.
    female, male = np.array(sweep["rank1"]["Female"]), np.array(sweep["rank1"]["Male"])
    assert (np.diff(female) > 0).all() and (np.diff(male) < 0).all()
    assert slope(sweep, "Female") > 0.2 and slope(sweep, "Male") < -0.2
    # Control: the same sweep over a random half of the people (a "group" no face shows) has no such effect
    # (measured: A 0.72 → 0.65, B 0.69 → 0.69), because same-group distractors only hurt when a group's faces
    # resemble each other more than the other group's.
    control = randomly_grouped(pool_embeddings)
    swept = gallery_sweep(control, "ids", "A", seeds=(0, 1, 2))
    assert abs(slope(swept, "A")) < 0.1 and abs(slope(swept, "B")) < 0.1


def test_more_images_per_identity_of_a_group_raise_its_rank1(pool_embeddings):
    sweep = gallery_sweep(pool_embeddings, "images", "Female", seeds=(0, 1, 2))
    # Measured (Female 8 → 2 photos per person, Male 2 → 8): Female 0.70 → 0.45, Male 0.38 → 0.59.
    assert slope(sweep, "Female") < -0.15 and slope(sweep, "Male") > 0.15
    control = gallery_sweep(randomly_grouped(pool_embeddings), "images", "A", seeds=(0, 1, 2))
    # Photos help whoever has them, group or not (measured: A 0.72 → 0.30, B 0.33 → 0.70).
    assert slope(control, "A") < -0.15 and slope(control, "B") > 0.15
    assert sweep["galleries"][0]["images_per_id"] == {"varied": 8, "others": 2}


def randomly_grouped(emb):
    """The same embeddings with each person put in group A or B at random (balanced)."""
    n_ids = int(emb.identities.max()) + 1
    person_group = np.random.default_rng(0).permutation(np.arange(n_ids) % 2)
    ids = emb.identities.cpu().numpy()
    return embeddings_from_arrays(emb.vectors.cpu().numpy(), ids, person_group[ids], ["A", "B"], device="cpu")


def test_identify_cli_contract(demo_model, tmp_path, capsys):
    out = tmp_path / "faces.json"
    code = main(["identify", "--dataset", "synthetic-identities", "--model", "demo", "--sensitive", "Male",
                 "--rank", "1,5", "--fmr", "1e-3", "--gallery-sweep", "ids", "--bootstrap", "200", "--device", "cpu",
                 "--json", str(out), "--html", str(tmp_path / "faces.html")])
    assert code == 0
    html = (tmp_path / "faces.html").read_text()
    assert re.findall(r"<h2>([^<]*)</h2>", html) == ["Identification", "Verification", "Gallery composition",
                                                     "Score distributions", "DET curves", "Gallery sweep",
                                                     "Missed probes"]
    assert html.count('id="figure-') == 3 and html.count("<img") == 16  # 4 missed probes + matches per group
    assert f"<td>{515 / 600:.3f}</td>" in html
    result = json.loads(out.read_text())
    ident = result["identification"]["groups"]
    assert set(ident) == {"Female", "Male"}
    for entry in ident.values():
        assert {"rank1", "rank5", "ci", "n_probes"} <= set(entry) and entry["n_probes"] == 600
        assert entry["ci"]["rank1"][0] <= entry["rank1"] <= entry["ci"]["rank1"][1] and entry["rank5"] > entry["rank1"]
    # Measured on the default test split: Female 0.858, Male 0.770, error ratio (1 - 0.770) / (1 - 0.858) = 1.62.
    assert (ident["Female"]["rank1"], ident["Male"]["rank1"]) == (515 / 600, 462 / 600)
    assert result["error_ratio"]["max"] == pytest.approx((1 - 462 / 600) / (1 - 515 / 600))
    # The L2 ratio, per group and mean over its probes: the nearest right person is nearer (above 0.5), by a
    # wider margin for women (measured 0.573 against 0.552).
    assert result["l2_ratio"] == {g: e["l2_ratio"] for g, e in ident.items()}
    assert (round(result["l2_ratio"]["Female"], 3), round(result["l2_ratio"]["Male"], 3)) == (0.573, 0.552)
    ver = result["verification"]
    assert ver["overall_fmr"] <= 1e-3 and {"fmr", "fnmr", "ci"} <= set(ver["groups"]["Male"])
    for entry in ver["groups"].values():
        for rate in ("fmr", "fnmr"):
            assert entry["ci"][rate][0] <= entry[rate] <= entry["ci"][rate][1]
    # Measured: FNMR Female 0.684 (1848 of 2700 genuine pairs), Male 0.747; within-group FMR 1.8e-3 and 2.2e-3.
    assert (round(ver["groups"]["Female"]["fnmr"], 3), round(ver["groups"]["Male"]["fnmr"], 3)) == (0.684, 0.747)
    assert isinstance(ver["threshold"], float)
    sweep = result["gallery_sweep"]
    assert sweep["share"] == [0.9, 0.7, 0.5, 0.3, 0.1] and set(sweep["rank1"]) == {"Female", "Male"}
    assert len(sweep["rank1_std"]["Male"]) == 5
    assert "Female rank1 0.858  Male rank1 0.770" in capsys.readouterr().out
    # The report's tables carry the JSON's numbers, group by group; its sweep chart is the one measured.
    for group in ("Female", "Male"):
        e, v = ident[group], ver["groups"][group]
        assert report_row(html, "Identification", group) == [
            group, f"{e['n_probes']:,}", f"{e['n_identities']:,}", f"{e['rank1']:.3f}", ci(e["ci"]["rank1"]),
            f"{e['rank5']:.3f}", ci(e["ci"]["rank5"]), f"{e['l2_ratio']:.3f}",
            f"{result['error_ratio']['per_group'][group]:.3f}"]
        assert report_row(html, "Verification", group) == [
            group, f"{v['fnmr']:.3f}", ci(v["ci"]["fnmr"]), f"{v['fmr']:.2e}", ci(v["ci"]["fmr"], ".2e"),
            f"{v['n_genuine']:,}", f"{v['n_impostor']:,}"]
        assert report_row(html, "Gallery composition", group) == [group, "60", "600", "10.0"]
    assert f"Global threshold {ver['threshold']:.4f}" in html
    assert "Rank-1 against Female's share of the gallery identities" in html


def ci(pair, fmt: str = ".3f") -> str:
    return f"95 % CI [{pair[0]:{fmt}}, {pair[1]:{fmt}}]"


def report_row(html: str, section: str, group: str) -> list[str]:
    """The cells of ``group``'s row in the first table of the report's ``section``."""
    body = html.split(f"<h2>{section}</h2>", 1)[1].split("</section>", 1)[0]
    for row in re.findall(r"<tr>(.*?)</tr>", body):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        if cells and cells[0] == group:
            return cells
    raise AssertionError(f"no row of {group} in {section}")


@pytest.mark.parametrize("args, message", [
    (["--rank", "0"], "--rank expects whole numbers ≥ 1"),
    (["--fmr", "2"], "--fmr must lie strictly between 0 and 1"),
    (["--data-opt", "test_male=0", "--data-opt", "n_test_ids=8"], r"only one group \(Female\) is present"),
    (["--data-opt", "test_images=1", "--data-opt", "n_test_ids=8"], "every identity has a single image"),
    (["--dataset", "synthetic-faces"], "has no identities"),
    (["--data-opt", "n_test_ids=8", "--gallery-sweep", "ids", "--sweep-group", "Robots"],
     "no group 'Robots'; groups: Female, Male"),
])
def test_identify_cli_bad_input_exits_2_with_one_sentence(demo_model, tmp_path, capsys, args, message):
    out = tmp_path / "out.json"
    code = main(["identify", "--dataset", "synthetic-identities", "--model", "demo", "--sensitive", "Male", *args,
                 "--bootstrap", "0", "--device", "cpu", "--json", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert not out.exists()


def test_embedding_training_is_deterministic_by_seed():
    train = load_dataset("synthetic-identities", "train", n_train_ids=8, train_images=4)
    config = TrainConfig(epochs=1, batch_size=8, seed=3)
    a, b = (train_embedder(train, config=config, device="cpu")[0] for _ in range(2))
    c = train_embedder(train, "face_small_cnn", "arcface", config=TrainConfig(epochs=1, batch_size=8, seed=4),
                       balanced=True, device="cpu")[0]
    for (name, x), y, z in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(x, y), name
    assert not torch.equal(a.f.weight, c.f.weight)
