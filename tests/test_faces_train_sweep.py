"""Training-composition sweeps of the face model at a tiny scale, and the identify CLI's bad inputs on user data."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch
from torch import nn

from fairaudit.cli import main
from fairaudit.data import load_dataset
from fairaudit.faces import embed_dataset, identify
from fairaudit.faces.demo import FACE_RECIPE
from fairaudit.faces.model import train_embedder
from fairaudit.faces.train_sweep import training_sweep
from fairaudit.train.loop import TrainConfig

try:
    from tests.test_faces import write_folders
except ImportError:  # tests/ itself is on sys.path
    from test_faces import write_folders

TINY = {"n_train_ids": 8, "train_images": 4, "n_test_ids": 8, "test_images": 3}


def test_identity_mix_trains_on_the_asked_people_and_reports_each_model(fairaudit_home):
    sweep = training_sweep("ids", (0.25, 1.0), seeds=(0, 1), data_options=TINY, epochs=1, device="cpu")
    assert sweep["share"] == [0.25, 1.0] and sweep["groups"] == ["Female", "Male"]
    assert sweep["train"] == [{"Female": {"identities": 6, "images": 24}, "Male": {"identities": 2, "images": 8}},
                              {"Female": {"identities": 0, "images": 0}, "Male": {"identities": 8, "images": 32}}]
    assert sweep["test"] == {"identities": 8, "images": 24}
    # Every cell is the audit of the model trained at that mix and seed, reproduced here by hand.
    train = load_dataset("synthetic-identities", "train", **{**TINY, "train_male": 1.0})
    config = TrainConfig(**{**FACE_RECIPE["config"].to_dict(), "seed": 1, "epochs": 1})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the sweep trains on the CPU
    try:
        model, _ = train_embedder(train, config=config, margin=FACE_RECIPE["margin"], scale=FACE_RECIPE["scale"],
                                  device="cpu")
    finally:
        torch.set_num_threads(threads)
    test = load_dataset("synthetic-identities", "test", **TINY)
    direct = identify(embed_dataset(model, test, device="cpu"), (1,), n_boot=0).summary["groups"]
    for group in ("Female", "Male"):
        assert sweep["rank1_by_seed"][group][1][1] == direct[group]["rank1"]
        cells = sweep["rank1_by_seed"][group][0]
        assert sweep["rank1"][group][0] == pytest.approx(sum(cells) / 2)
        assert sweep["rank1_std"][group][0] == pytest.approx(abs(cells[0] - cells[1]) / 2 ** 0.5)
    # Measured: 12 probes per group; the first seed's models.
    assert [sweep["rank1_by_seed"][g][i][0] * 12 for i in (0, 1) for g in ("Female", "Male")] == pytest.approx(
        MEASURED_IDS)


MEASURED_IDS = [6, 1, 6, 2]  # rank-1 hits of Female, Male at men's share 0.25, then 1.0 (seed 0)


def test_image_mix_keeps_every_person_and_moves_the_photos(fairaudit_home):
    sweep = training_sweep("images", (0.25, 0.75), seeds=(0,), data_options=TINY, epochs=1, device="cpu")
    assert sweep["train"] == [{"Female": {"identities": 4, "images": 12}, "Male": {"identities": 4, "images": 4}},
                              {"Female": {"identities": 4, "images": 4}, "Male": {"identities": 4, "images": 12}}]
    assert sweep["rank1_std"]["Male"] == [0.0, 0.0] and len(sweep["fnmr"]["Female"]) == 2


@pytest.mark.parametrize("args, message", [
    (["--kind", "images", "--mixes", "0,0.5"], "must lie strictly between 0 and 1: every person keeps"),
    (["--kind", "images", "--mixes", "0.1,0.5"], "with 4 training photos per person, a men's share of 0.1 leaves"),
    (["--mixes", "0.5"], "at least two mixes"),
    (["--mixes", "half,all"], "--mixes expects numbers"),
    (["--mixes", "0,1.5"], "must lie between 0 and 1"),
])
def test_training_sweep_bad_input_exits_2_with_one_sentence(fairaudit_home, tmp_path, capsys, args, message):
    out = tmp_path / "sweep.json"
    code = main(["face-train-sweep", *args, "--seeds", "1", "--epochs", "1", "--device", "cpu",
                 *[f"--data-opt={k}={v}" for k, v in TINY.items()], "--json", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and re.search(message, err), err
    assert not out.exists()


def identify_cli(tmp_path, *args):
    out = tmp_path / "out.json"
    code = main(["identify", *args, "--bootstrap", "0", "--device", "cpu", "--json", str(out)])
    return code, out


def test_identify_cli_refuses_unknown_people_in_the_attributes_csv(fairaudit_home, tmp_path, capsys):
    table = pd.DataFrame({"identity": ["Ann", "Bob", "Zed"], "gender": ["f", "m", "m"]})
    root = write_folders(tmp_path / "faces", {"Ann": 2, "Bob": 2}, table)
    code, out = identify_cli(tmp_path, "--dataset", "identity-folders", "--data-dir", str(root),
                             "--model", "demo")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and not out.exists()
    assert "names 1 identity with no image folder" in err and "'Zed'" in err


def test_identify_cli_refuses_a_folder_of_single_photos(fairaudit_home, tmp_path, capsys):
    root = write_folders(tmp_path / "faces", {"Ann": 1, "Bob": 1, "Cleo": 1, "Dan": 1})
    model = tmp_path / "embedder.safetensors"
    from fairaudit.faces.model import build_embedder
    from fairaudit.models.io import save_checkpoint

    save_checkpoint(build_embedder("small_cnn", 3, (3, 24, 24)), model)
    code, out = identify_cli(tmp_path, "--dataset", "identity-folders", "--data-dir", str(root),
                             "--data-opt", "image_size=24", "--model", str(model))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and not out.exists()
    assert "every identity has a single image, so no probe has a match" in err


def test_identify_cli_refuses_a_model_without_an_embedding(fairaudit_home, tmp_path, capsys):
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4)).eval()
    path = tmp_path / "classifier.pt"
    torch.jit.trace(net, torch.zeros(1, 3, 32, 32)).save(str(path))
    code, out = identify_cli(tmp_path, "--dataset", "synthetic-identities", "--data-opt", "n_test_ids=4",
                             "--data-opt", "test_images=2", "--model", str(path), "--allow-torchscript", "--num-classes", "4")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and not out.exists()
    assert "the model exposes no embedding" in err, err


def saved_embedder(tmp_path):
    from fairaudit.faces.model import build_embedder
    from fairaudit.models.io import save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(build_embedder("small_cnn", 3, (3, 24, 24)), tmp_path / "embedder.safetensors")


def test_identify_cli_refuses_a_folder_of_one_group(fairaudit_home, tmp_path, capsys):
    table = pd.DataFrame({"identity": ["Ann", "Bob"], "gender": ["f", "f"]})
    root = write_folders(tmp_path / "faces", {"Ann": 2, "Bob": 2}, table)
    code, out = identify_cli(tmp_path, "--dataset", "identity-folders", "--data-dir", str(root),
                             "--data-opt", "image_size=24", "--model", str(saved_embedder(tmp_path)),
                             "--sensitive", "gender")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and not out.exists()
    assert re.search(r"only one group \(f\) is present, so nothing can be compared", err), err


def test_identify_cli_audits_a_folder_of_people(fairaudit_home, tmp_path, capsys):
    root = write_folders(tmp_path / "faces", {"Ann": 3, "Bob": 2, "Cleo": 2, "Dan": 3})
    code, out = identify_cli(tmp_path, "--dataset", "identity-folders", "--data-dir", str(root),
                             "--data-opt", "image_size=24", "--model", str(saved_embedder(tmp_path)),
                             "--sensitive", "gender")
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["gallery"] == {"f": {"identities": 2, "images": 5, "images_per_identity": 2.5},
                                 "m": {"identities": 2, "images": 5, "images_per_identity": 2.5}}
    assert {g: e["n_probes"] for g, e in result["identification"]["groups"].items()} == {"f": 5, "m": 5}
    assert {g: e["n_genuine"] for g, e in result["verification"]["groups"].items()} == {"f": 4, "m": 4}
