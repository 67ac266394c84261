"""Same command, same seed → the same model and the same numbers (on the CPU).

Every command runs in a fresh ``python -m fairaudit`` process, as a user runs it: a process
starts with a random global RNG state, so anything not derived from ``--seed`` shows here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

ROOT = Path(__file__).resolve().parents[1]
VOLATILE = ("seconds", "run_id", "model", "model_description", "artifacts", "result", "workdir", "checkpoint",
            "timings", "spec", "data_dir", "path", "source")


def _cli(*args: str, home: Path) -> str:
    env = {**os.environ, "FAIRAUDIT_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "random"}
    proc = subprocess.run([sys.executable, "-m", "fairaudit", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(path))


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _stable(value):
    """The JSON with wall-clock timings and file paths taken out (they differ between any two runs)."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items()
                if not any(k == v_ or k.endswith("_" + v_) for v_ in VOLATILE)}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


TRAIN_SETUPS = {
    "adult-mlp": ["--dataset", "adult", "--arch", "mlp", "--epochs", "1", "--max-steps", "15",
                  "--batch-size", "256"],
    "faces-small_cnn": ["--dataset", "synthetic-faces", "--target", "Smiling", "--arch", "small_cnn", "--epochs", "1",
                        "--batch-size", "32", "--data-opt", "n_train=96", "--data-opt", "n_test=64",
                        "--data-opt", "image_size=32"],
}


@pytest.mark.parametrize("setup", list(TRAIN_SETUPS))
def test_train_twice_with_one_seed_gives_identical_weights_and_audit(setup, tmp_path):
    args = TRAIN_SETUPS[setup]
    data_opts = [a for i, a in enumerate(args) if a == "--data-opt" or (i and args[i - 1] == "--data-opt")]
    dataset = args[args.index("--dataset") + 1]
    paths = {name: tmp_path / f"{name}.safetensors" for name in ("a", "b", "other")}
    for name, seed in (("a", "0"), ("b", "0"), ("other", "1")):
        _cli("train", *args, "--seed", seed, "--device", "cpu", "--out", str(paths[name]), home=tmp_path / "home")
    a, b, other = (_weights(paths[name]) for name in ("a", "b", "other"))
    assert _max_difference(a, b) == 0.0
    assert _max_difference(a, other) > 1e-3  # another seed is another model

    sidecar = json.loads(paths["a"].with_name("a.safetensors.json").read_text())
    assert sidecar["seed"] == 0 and sidecar["deterministic"] is True and sidecar["device"] == "cpu"
    assert set(sidecar["versions"]) >= {"torch", "torchvision", "numpy", "fairaudit", "python"}

    audits = []
    for name in ("a", "b"):
        out = tmp_path / f"audit_{name}.json"
        _cli("audit", "--dataset", dataset, *data_opts, "--model", str(paths[name]), "--device", "cpu",
             "--bootstrap", "50", "--json", str(out), home=tmp_path / "home")
        audits.append(json.loads(out.read_text()))
    assert _stable(audits[0]) == _stable(audits[1])
    meta = audits[0]["meta"]
    assert meta["seed"] == 0 and meta["deterministic"] is True and meta["device"] == "cpu"
    assert meta["versions"]["torch"] == torch.__version__


def test_mitigation_job_twice_gives_identical_numbers(tmp_path):
    model = tmp_path / "adult.safetensors"
    _cli("train", *TRAIN_SETUPS["adult-mlp"], "--seed", "0", "--device", "cpu", "--out", str(model),
         home=tmp_path / "home")
    results = []
    for name in ("a", "b"):
        out = tmp_path / f"reweight_{name}.json"
        _cli("mitigate", "reweight", "--dataset", "adult", "--model", str(model), "--device", "cpu",
             "--set", "epochs=1", "--bootstrap", "20", "--robustness-samples", "32", "--split-samples", "300",
             "--json", str(out), home=tmp_path / f"home_{name}")
        results.append(json.loads(out.read_text()))
    first, second = results
    assert first["after"]["overall"]["accuracy"] != first["before"]["overall"]["accuracy"]  # it did train
    for key in ("before", "after", "summary", "robustness", "splits", "stats", "history"):
        assert _stable(first[key]) == _stable(second[key]), key
    assert first["seed"] == 0 and first["deterministic"] is True and first["device"] == "cpu"
    assert set(first["versions"]) >= {"torch", "torchvision", "numpy", "fairaudit", "python"}
    assert first["splits_used"] == {"fit": "train", "before_audit": "test", "after_audit": "test",
                                    "robustness": "test"}


def _tiny_image_batch(n: int = 8):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 8, 8, generator=gen)
    y = torch.randint(0, 2, (n,), generator=gen)
    s = torch.randint(0, 2, (n, 1), generator=gen)
    return x, y, s, torch.arange(n)


def test_asac_pgd_counterfactuals_follow_the_run_seed_not_the_global_generator():
    from torch import nn

    from fairaudit.mitigation.asac import AsacConfig, CurriculumClock, asac_step

    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    config = AsacConfig(attack="pgd", epsilons="0,0.05", pgd_steps=2, order="random")
    batch = _tiny_image_batch()
    losses = []
    for global_seed in (1, 2):
        step = asac_step(classifier, [2], config, CurriculumClock(), seed=0)
        torch.manual_seed(global_seed)  # whatever ran before the step
        losses.append(float(step(model, batch)[0].detach()))
    assert losses[0] == losses[1]
    other = asac_step(classifier, [2], config, CurriculumClock(), seed=1)
    assert float(other(model, batch)[0].detach()) != losses[0]


class _NoisyDataset(torch.utils.data.Dataset):
    """Items that draw from NumPy's global generator, as an augmentation in a DataLoader worker would."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        import numpy as np

        return torch.tensor([float(i), float(np.random.random())])


def test_dataloader_workers_draw_the_same_numbers_for_the_same_seed():
    from fairaudit.train.loop import make_loader

    def epoch(seed: int) -> torch.Tensor:
        loader = make_loader(_NoisyDataset(), 4, torch.device("cpu"), True, seed=seed, num_workers=2)
        return torch.cat(list(loader))

    first, second = epoch(0), epoch(0)
    assert torch.equal(first, second)
    assert not torch.equal(first, epoch(1))
    assert sorted(first[:, 0].tolist()) == [float(i) for i in range(12)]


@pytest.mark.parametrize("method,setting", [("faap", "train_split"), ("asac", "train_split"),
                                            ("threshold", "fit_split"), ("label_flip", "accuracy_split"),
                                            ("fair_penalty", "penalty_split")])
def test_no_method_fits_on_the_test_split(method, setting):
    from fairaudit.errors import FairauditError
    from fairaudit.mitigation import get_method, make_config

    with pytest.raises(FairauditError, match=r"cannot fit on the test split .*; use 'train' or 'val'\.$"):
        make_config(get_method(method), {setting: "test"})


def test_every_method_fits_on_train_or_val_by_default():
    import dataclasses

    from fairaudit.mitigation import METHODS, get_method

    get_method("erm")  # registers the built-in methods
    split_settings = {}
    for name, cls in METHODS.items():
        for f in dataclasses.fields(cls.Config):
            if "split" in f.name:
                split_settings[(name, f.name)] = f.default
    assert split_settings == {("faap", "train_split"): "val", ("asac", "train_split"): "val",
                              ("threshold", "fit_split"): "auto", ("fair_penalty", "penalty_split"): "train",
                              ("label_flip", "accuracy_split"): "val"}


def test_a_method_context_refuses_to_fit_on_test_and_records_what_each_stage_read(tmp_path):
    from fairaudit.errors import FairauditError
    from fairaudit.mitigation.base import MethodContext

    ctx = MethodContext(model=None, dataset="adult", target="income", sensitive=["sex"], data_options={},
                        data_dir=None, device="cpu", workdir=tmp_path)
    with pytest.raises(FairauditError, match="cannot fit on the test split of 'adult'"):
        ctx.load_split("test")
    ctx.load_split("train")
    ctx.load_split("test", "robustness_stats")
    assert ctx.splits_used == {"fit": "train", "robustness_stats": "test"}


# -- the shipped demo models ---------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["synthetic-faces", "adult", "colored-digits"])
def test_shipped_demo_model_is_what_its_recipe_trains(dataset, tmp_path):
    """Retraining the recipe on the CPU with its seed gives the shipped weights bit for bit."""
    from fairaudit.demo import ASSET_DIR, rebuild_shipped_models, shipped_model_path

    shipped = shipped_model_path(dataset)
    assert shipped is not None and shipped.parent == ASSET_DIR
    assert shipped.stat().st_size < 2 * 2**20
    (retrained,) = rebuild_shipped_models((dataset,), out_dir=tmp_path)
    assert _max_difference(_weights(shipped), _weights(retrained)) == 0.0
    assert json.loads(shipped.with_name(shipped.name + ".json").read_text())["deterministic"] is True


def test_the_demo_model_loads_from_assets_without_training(tmp_path, monkeypatch):
    from fairaudit import demo
    from tests.conftest import workspace_at

    def no_training(*args, **kwargs):
        raise AssertionError("the shipped demo model was trained again")

    monkeypatch.setattr(demo, "train_deployed_model", no_training)
    with workspace_at(tmp_path / "fresh"):
        model, path = demo.get_demo_model("synthetic-faces", device="cpu")
        assert path == demo.ASSET_DIR / "demo-synthetic-faces-Smiling.safetensors"
        assert _max_difference(model.state_dict(), _weights(path)) == 0.0
        # Options of the evaluation splits only, given as on the command line: the same model.
        same = demo.demo_model_path("synthetic-faces", "Smiling", {"bias": "0.9", "test_bias": "0.8", "n_test": "64",
                                                                   "val_bias": "0.5"})
        assert same == path
        other = demo.demo_model_path("synthetic-faces", "Smiling", {"bias": "0.8"})
        assert other.parent == tmp_path / "fresh" / "models" and not other.exists()
        assert not (tmp_path / "fresh" / "models").exists() or not any((tmp_path / "fresh" / "models").iterdir())


def _readme_demo_figures() -> dict[str, str]:
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"accuracy (\d\.\d{4}), DEO (\d\.\d{4}), SPD (\d\.\d{4})", text)
    assert match, "README states the demo audit's accuracy, DEO and SPD"
    return dict(zip(("accuracy", "deo", "spd"), match.groups()))


def test_the_demo_audit_a_new_user_sees_is_the_readmes(tmp_path, capsys):
    """`python -m fairaudit audit --dataset synthetic-faces --model demo --target Smiling --sensitive Male`."""
    from fairaudit.cli import main
    from tests.conftest import workspace_at

    out = tmp_path / "x.json"
    with workspace_at(tmp_path / "fresh"):
        # --bootstrap 0: the figures are point estimates, the same with any number of resamples.
        assert main(["audit", "--dataset", "synthetic-faces", "--model", "demo", "--target", "Smiling",
                     "--sensitive", "Male", "--device", "cpu", "--bootstrap", "0", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    seen = {"accuracy": report["overall"]["accuracy"], "deo": report["disparities"]["deo"],
            "spd": report["disparities"]["spd"]}
    assert {k: f"{v:.4f}" for k, v in seen.items()} == _readme_demo_figures()
    assert report["overall"]["n"] == 2000 and report["meta"]["deterministic"] is True


def test_recipe_kernels_are_the_avx2_ones_on_any_x86_cpu():
    """The shipped weights depend on the kernels' summation order, which the CPU's vector unit picks at start-up."""
    import platform

    from fairaudit.demo import RECIPE_CPU_ENV

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the kernel choice by instruction set is x86's")
    probe = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    out = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **RECIPE_CPU_ENV}, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "AVX2"
