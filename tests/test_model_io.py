"""Saving and safely loading checkpoints (fairaudit.models.io / upload)."""

from __future__ import annotations

import builtins
import json
import pickle
import warnings

import pytest
import torch
import torchvision
from torch import nn

from fairaudit.errors import FairauditError, ModelLoadError
from fairaudit.models import (ScriptedModel, build_model, features_available, load_model, load_model_bytes,
                              model_summary, read_sidecar, save_checkpoint)
from fairaudit.models import checkpoint_files
from fairaudit.models.checkpoint_files import sha256
from tests.bad_inputs.cases_models import (HOSTILE_SCRIPTS, IMAGE_SHAPE, N_TEST, WritesOnForward, audit_args,
                                           hostile_torchscript, random_bytes)

SHAPES = {"small_cnn": (3, 16, 16), "resnet18": (3, 8, 8), "mlp": (10,)}


def trained_like(arch: str, num_classes: int = 3, shape=None, seed: int = 0) -> nn.Module:
    """A model whose batch-norm statistics differ from their defaults, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(arch, num_classes, shape or SHAPES[arch])
    model.train()
    with torch.no_grad():
        model(torch.randn(8, *model.input_shape) * 2 + 0.5)
    return model.eval()


def sample(shape, n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def load_error(path, **kwargs) -> str:
    with pytest.raises(ModelLoadError) as info:
        load_model(path, **kwargs)
    message = str(info.value)
    assert message.endswith(".") and "\n" not in message, message
    return message


class WritesMarker:
    """Unpickling this runs ``exec`` and creates ``path``: the payload of a malicious checkpoint."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return builtins.exec, (f"open({self.path!r}, 'w').close()",)


# ---------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("fmt", ["safetensors", "state_dict"])
@pytest.mark.parametrize("arch", sorted(SHAPES))
def test_round_trip_gives_identical_outputs_from_the_sidecar_alone(tmp_path, arch, fmt):
    model = trained_like(arch)
    path = save_checkpoint(model, tmp_path / f"model.{'safetensors' if fmt == 'safetensors' else 'pt'}",
                           extra={"class_names": ["a", "b", "c"], "target": "digit"}, format=fmt)
    info = read_sidecar(path)
    assert info["arch"] == arch and info["num_classes"] == 3 and info["input_shape"] == list(SHAPES[arch])
    assert info["format"] == fmt and info["class_names"] == ["a", "b", "c"] and info["target"] == "digit"
    assert info["sha256"] == sha256(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, path.name + ".json"])

    loaded = load_model(path)
    assert (loaded.arch, loaded.num_classes, loaded.input_shape) == (arch, 3, SHAPES[arch])
    assert not loaded.training and loaded.checkpoint_info["class_names"] == ["a", "b", "c"]
    x = sample(SHAPES[arch])
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        assert torch.equal(loaded.g(x), model.g(x))


def test_safetensors_without_sidecar_uses_the_header_information(tmp_path):
    model = trained_like("mlp")
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    path.with_name(path.name + ".json").unlink()
    loaded = load_model(path)
    assert (loaded.arch, loaded.num_classes, loaded.input_shape) == ("mlp", 3, (10,))
    x = sample((10,))
    assert torch.equal(loaded(x), model(x))


def test_state_dict_without_sidecar_needs_arch_and_infers_the_rest(tmp_path):
    model = trained_like("mlp")
    path = tmp_path / "plain.pt"
    torch.save(model.state_dict(), path)
    assert "pass --arch" in load_error(path)
    loaded = load_model(path, arch="mlp", expected_input_shape=(10,))
    assert loaded.num_classes == 3  # read from f.weight
    x = sample((10,))
    assert torch.equal(loaded(x), model(x))


def test_training_checkpoint_wrappers_and_dataparallel_prefix_are_accepted(tmp_path):
    model = trained_like("mlp")
    wrapped = {"epoch": 7, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "lr": 0.1}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    loaded = load_model(tmp_path / "ckpt.pth", arch="mlp", input_shape=(10,))
    x = sample((10,))
    assert torch.equal(loaded(x), model(x))


def test_explicit_arguments_override_the_sidecar(tmp_path):
    model = trained_like("small_cnn")
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = load_model(path, input_shape=(3, 32, 32))
    assert loaded.input_shape == (3, 32, 32)
    assert loaded(sample((3, 32, 32))).shape == (4, 3)
    assert "has 3 output classes but --num-classes says 5" in load_error(path, num_classes=5)


def test_failed_save_keeps_the_previous_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    first = trained_like("mlp", seed=0)
    path = save_checkpoint(first, tmp_path / "m.safetensors")
    before = path.read_bytes()

    def broken_save(state, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(trained_like("mlp", seed=1), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "m.safetensors.json"]


def test_extra_cannot_override_architecture_fields_and_must_be_json(tmp_path):
    path = save_checkpoint(trained_like("mlp"), tmp_path / "m.safetensors", extra={"arch": "resnet18", "seed": 3})
    assert read_sidecar(path)["arch"] == "mlp" and read_sidecar(path)["seed"] == 3
    with pytest.raises(FairauditError, match="not JSON-serialisable"):
        save_checkpoint(trained_like("mlp"), tmp_path / "n.safetensors", extra={"bad": object()})
    with pytest.raises(FairauditError, match="unknown checkpoint format 'onnx'"):
        save_checkpoint(trained_like("mlp"), tmp_path / "n.onnx", format="onnx")


def test_model_summary_counts_parameters_and_latent_size():
    summary = model_summary(trained_like("mlp", num_classes=2))
    # (10·128 + 128) + (128·64 + 64) + (64·2 + 2)
    assert summary["parameters"] == summary["trainable_parameters"] == 9794
    assert summary["latent_dim"] == 64 and summary["input_shape"] == [10] and summary["features_available"]
    assert summary["size_mb"] == pytest.approx(9794 * 4 / 2 ** 20, abs=1e-3)


# ---------------------------------------------------------------------------- TorchScript

def script_file(module: nn.Module, path, trace_input: torch.Tensor | None = None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.trace(module, trace_input) if trace_input is not None else torch.jit.script(module)
        torch.jit.save(scripted, str(path))
    return path


@pytest.mark.parametrize("payload", sorted(HOSTILE_SCRIPTS))
def test_torchscript_is_refused_by_default_without_running(tmp_path, payload, monkeypatch):
    marker = tmp_path / "marker"
    path = hostile_torchscript(tmp_path, payload, marker)
    message = load_error(path, expected_input_shape=IMAGE_SHAPE)
    assert message.startswith(f"the file '{path}' is a TorchScript archive") and "pass --allow-torchscript" in message
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with pytest.raises(ModelLoadError, match="'evil.pt' is a TorchScript archive.*--allow-torchscript"):
        load_model_bytes(path.read_bytes(), "evil.pt", expected_input_shape=IMAGE_SHAPE)
    assert not marker.exists()
    # The file really is hostile: loading (setstate) or running it (forward) writes the marker.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path))(torch.zeros(1, *IMAGE_SHAPE))
    assert marker.read_bytes() == (b"A" if payload == "forward" else b"B") * 4


def test_torchscript_is_recognised_from_the_zip_without_loading_it(tmp_path, monkeypatch):
    path = hostile_torchscript(tmp_path, "setstate", tmp_path / "marker")

    def no_jit_load(*args, **kwargs):
        raise AssertionError("torch.jit.load was called")

    monkeypatch.setattr(torch.jit, "load", no_jit_load)
    assert checkpoint_files.detect_format(path, "evil.pt") == "torchscript"
    assert "is a TorchScript archive" in load_error(path)
    assert not (tmp_path / "marker").exists()


def test_allowed_torchscript_does_not_run_at_load_time(tmp_path):
    marker = tmp_path / "marker"
    path = hostile_torchscript(tmp_path, "forward", marker)
    model = load_model(path, allow_torchscript=True, expected_num_classes=2, expected_input_shape=IMAGE_SHAPE)
    assert isinstance(model, ScriptedModel) and model.num_classes == 2 and model.input_shape == IMAGE_SHAPE
    assert model_summary(model)["latent_dim"] is None
    assert not marker.exists()  # nothing ran while loading and summarising
    assert model(torch.zeros(2, *IMAGE_SHAPE)).shape == (2, 2)
    assert marker.exists()  # the user allowed it: the first real batch runs the program


def test_scripted_split_model_keeps_g_and_f(tmp_path):
    model = trained_like("small_cnn")
    path = script_file(model, tmp_path / "m.ts")
    assert "pass --allow-torchscript" in load_error(path)
    loaded = load_model(path, allow_torchscript=True)
    assert features_available(loaded) and loaded.num_classes == 3 and loaded.input_shape == (3, 16, 16)
    assert model_summary(loaded)["latent_dim"] == 128  # the width f takes, read from its weight
    x = sample((3, 16, 16))
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)
        assert torch.allclose(loaded.f(loaded.g(x)), model(x), atol=1e-6)
        assert torch.allclose(loaded.g(x), model.g(x), atol=1e-6)


def test_scripted_module_without_split_predicts_but_has_no_features(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 4)).eval()
    path = script_file(net, tmp_path / "traced.pt", torch.zeros(1, 3, 4, 4))
    assert "pass --input-shape" in load_error(path, allow_torchscript=True)
    assert "pass --num-classes" in load_error(path, allow_torchscript=True, input_shape=(3, 4, 4))
    loaded = load_model(path, allow_torchscript=True, input_shape=(3, 4, 4), num_classes=4)
    assert isinstance(loaded, ScriptedModel) and not features_available(loaded) and loaded.num_classes == 4
    x = sample((3, 4, 4))
    assert torch.allclose(loaded(x), net(x), atol=1e-6)
    with pytest.raises(ModelLoadError, match="latent features are unavailable"):
        loaded.features(x)
    assert model_summary(loaded)["latent_dim"] is None


def test_torchscript_that_does_not_fit_fails_on_the_first_batch_with_one_sentence(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 4)).eval()
    path = script_file(net, tmp_path / "traced.pt", torch.zeros(1, 3, 4, 4))
    # Four outputs, but the dataset has two classes: only running it can tell, so the first batch does.
    loaded = load_model(path, allow_torchscript=True, expected_num_classes=2, expected_input_shape=(3, 4, 4))
    with pytest.raises(ModelLoadError) as info:
        loaded(sample((3, 4, 4)))
    assert str(info.value) == ("the TorchScript model '" + str(path) + "' returned shape (4, 4) for 4 inputs of "
                               "shape (3, 4, 4), not logits of shape (4, 2); check that it was saved for this "
                               "dataset.")
    # Inputs of another size make the program itself fail.
    loaded = load_model(path, allow_torchscript=True, expected_num_classes=4, expected_input_shape=(3, 8, 8))
    with pytest.raises(ModelLoadError, match=r"failed on inputs of shape \(3, 8, 8\) \(.*\); check that it was "
                                             "saved for this dataset"):
        loaded(sample((3, 8, 8)))


def test_allowed_torchscript_audits_through_the_cli(tmp_path, capsys):
    from fairaudit.cli import main

    torch.manual_seed(0)
    path = script_file(WritesOnForward(str(tmp_path / "marker")), tmp_path / "ok.pt")
    assert main(audit_args(path)) == 2
    assert "pass --allow-torchscript" in capsys.readouterr().err
    assert not (tmp_path / "marker").exists()
    assert main(audit_args(path, "--allow-torchscript")) == 0
    report = json.loads((tmp_path / "audit.json").read_text())
    assert report["overall"]["n"] == N_TEST and report["meta"]["model"] == str(path)
    assert (tmp_path / "marker").exists()  # allowed, so its forward ran during the audit


# ---------------------------------------------------------------------------- torchvision models

def small_input_torchvision_resnet18(num_classes: int) -> nn.Module:
    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    return net.eval()


def test_plain_torchvision_state_dict_maps_onto_our_resnet18(tmp_path):
    torch.manual_seed(0)
    net = small_input_torchvision_resnet18(2)
    assert "conv1.weight" in net.state_dict() and "fc.weight" in net.state_dict()
    torch.save(net.state_dict(), tmp_path / "tv.pth")
    loaded = load_model(tmp_path / "tv.pth", arch="resnet18", expected_input_shape=(3, 8, 8))
    assert loaded.arch == "resnet18" and loaded.num_classes == 2
    assert torch.equal(loaded.state_dict()["g.body.conv1.weight"], net.conv1.weight)
    assert torch.equal(loaded.state_dict()["f.weight"], net.fc.weight)
    x = sample((3, 8, 8))
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=1e-6)


def test_standard_torchvision_resnet18_falls_back_to_torchvision_builder(tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=2).eval()  # 7×7 stem, max-pool
    torch.save(net.state_dict(), tmp_path / "tv.pth")
    loaded = load_model(tmp_path / "tv.pth", arch="resnet18", input_shape=(3, 32, 32))
    assert loaded.arch == "torchvision/resnet18"
    x = sample((3, 32, 32))
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=1e-6)
    again = load_model(save_checkpoint(loaded, tmp_path / "again.safetensors"))
    assert again.arch == "torchvision/resnet18"
    with torch.no_grad():
        assert torch.equal(again(x), loaded(x))


def test_user_torchvision_arch_is_split_at_its_classifier(tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v3_small(weights=None, num_classes=3).eval()
    torch.save(net.state_dict(), tmp_path / "mobile.pt")
    loaded = load_model(tmp_path / "mobile.pt", arch="mobilenet_v3_small", input_shape=(3, 32, 32))
    assert loaded.num_classes == 3 and isinstance(loaded.f, nn.Sequential)
    x = sample((3, 32, 32))
    with torch.no_grad():
        latent = loaded.g(x)
        assert latent.shape == (4, 576)
        assert torch.allclose(loaded.f(latent), net(x), atol=1e-5)
    path = save_checkpoint(loaded, tmp_path / "mobile.safetensors")
    assert read_sidecar(path)["head"] == "classifier" and read_sidecar(path)["arch"] == "mobilenet_v3_small"
    with torch.no_grad():
        assert torch.equal(load_model(path)(x), loaded(x))
    assert model_summary(loaded)["latent_dim"] == 576


# ---------------------------------------------------------------------------- refused files

def test_missing_directory_and_empty_files_are_refused(tmp_path):
    assert "does not exist" in load_error(tmp_path / "nope.pt")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.safetensors").write_bytes(b"x")
    message = load_error(tmp_path / "run")
    assert "is a directory" in message and "best.safetensors" in message
    (tmp_path / "empty.pt").write_bytes(b"")
    assert "is empty" in load_error(tmp_path / "empty.pt")


@pytest.mark.parametrize("fmt", ["safetensors", "state_dict"])
def test_truncated_checkpoints_are_reported_as_corrupt(tmp_path, fmt):
    path = save_checkpoint(trained_like("small_cnn"), tmp_path / "m.bin", format=fmt)
    path.with_name(path.name + ".json").unlink()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in load_error(path, arch="small_cnn")
    # With its sidecar present the damage is still reported as such, not as a hash mismatch.
    save_checkpoint(trained_like("small_cnn"), tmp_path / "full.bin", format=fmt)
    (tmp_path / "full.bin").write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in load_error(tmp_path / "full.bin")


def test_random_bytes_and_sidecars_are_not_model_files(tmp_path):
    (tmp_path / "noise.pt").write_bytes(bytes(range(1, 256)) * 8)
    assert "not a recognised model format" in load_error(tmp_path / "noise.pt", arch="mlp")
    path = save_checkpoint(trained_like("mlp"), tmp_path / "m.safetensors")
    assert "is a JSON sidecar" in load_error(path.with_name(path.name + ".json"))

@pytest.mark.parametrize("seed", range(6))
def test_noise_that_starts_like_a_pickle_is_not_a_model_file_and_not_code(tmp_path, seed):
    path = random_bytes(tmp_path, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Detected pickle protocol ..." warning either
        assert load_error(path, arch="mlp") == (
            f"the file '{path}' is not a recognised model format (expected safetensors, a PyTorch state_dict or a "
            "TorchScript archive).")
        with pytest.raises(ModelLoadError, match="^the file 'noise.pt' is not a recognised model format"):
            load_model_bytes(path.read_bytes(), "noise.pt", arch="mlp")


@pytest.mark.parametrize("writer", ["torch_save", "raw_pickle"])
def test_malicious_pickle_is_refused_without_running(tmp_path, writer):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    if writer == "torch_save":
        torch.save({"weight": torch.zeros(2), "payload": WritesMarker(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"payload": WritesMarker(marker)}, protocol=2))
    message = load_error(path, arch="mlp")
    assert "could execute code" in message and "refused" in message
    assert "(exec)" in message  # the refused global is named
    assert not marker.exists()
    # The file really is malicious: an unrestricted unpickler runs the payload.
    if writer == "torch_save":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()


def test_pickled_whole_model_is_refused_with_its_class_name(tmp_path):
    torch.save(trained_like("mlp"), tmp_path / "whole.pt")
    message = load_error(tmp_path / "whole.pt")
    assert "fairaudit.models.split.SplitModel" in message and "save model.state_dict()" in message


def test_upload_of_malicious_pickle_does_not_run(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    marker = tmp_path / "marker"
    data = pickle.dumps(WritesMarker(marker), protocol=2)
    with pytest.raises(ModelLoadError, match="'evil.pt' contains Python objects other than tensors"):
        load_model_bytes(data, "../../evil.pt", arch="mlp")
    assert not marker.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # the temporary upload folder is gone


def test_wrong_architecture_lists_missing_and_unexpected_keys(tmp_path):
    path = save_checkpoint(trained_like("mlp"), tmp_path / "m.safetensors")
    message = load_error(path, arch="small_cnn", input_shape=(3, 16, 16))
    assert "does not match architecture 'small_cnn'" in message
    assert "missing keys g.1.weight" in message and "unexpected keys" in message and "check --arch" in message


def test_wrong_class_count_names_the_target(tmp_path):
    path = save_checkpoint(trained_like("small_cnn", num_classes=2), tmp_path / "m.safetensors")
    message = load_error(path, expected_num_classes=10, target="digit")
    assert message == "the checkpoint has 2 output classes but the dataset target 'digit' has 10."


def test_wrong_feature_count_for_tabular_model(tmp_path):
    model = trained_like("mlp")
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    assert "first layer takes 10 input features but the dataset has 12 features" in load_error(
        path, expected_input_shape=(12,))
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    assert "first layer takes 10 input features but the dataset has 12 features" in load_error(
        tmp_path / "plain.pt", arch="mlp", expected_input_shape=(12,))


def test_grayscale_conv_net_refuses_colour_images(tmp_path):
    model = trained_like("small_cnn", shape=(1, 16, 16))
    path = save_checkpoint(model, tmp_path / "gray.safetensors")
    assert "first layer takes 1 input channel but the dataset has 3 channels" in load_error(
        path, expected_input_shape=(3, 16, 16))
    torch.save(model.state_dict(), tmp_path / "gray.pt")
    assert "first layer takes 1 input channel but the dataset has 3 channels" in load_error(
        tmp_path / "gray.pt", arch="small_cnn", expected_input_shape=(3, 16, 16))
    assert load_model(path, expected_input_shape=(1, 16, 16)).num_classes == 3


def test_declared_input_size_must_match_the_dataset(tmp_path):
    path = save_checkpoint(trained_like("small_cnn", num_classes=2, shape=(3, 64, 64)), tmp_path / "m64.safetensors")
    # small_cnn pools globally, so 32 px images would run through a 64 px model without an error.
    assert load_error(path, expected_input_shape=(3, 32, 32)) == (
        f"the sidecar of '{path}' says the model takes inputs of shape (3, 64, 64) but the dataset's inputs have "
        "shape (3, 32, 32); audit it on data of its size (e.g. --data-opt image_size=64) or use a model trained "
        "for this one.")
    path.with_name(path.name + ".json").unlink()  # the same information in the safetensors header
    assert "says the model takes inputs of shape (3, 64, 64)" in load_error(path, expected_input_shape=(3, 32, 32))
    assert "--input-shape says the model takes inputs of shape (3, 48, 48)" in load_error(
        path, input_shape=(3, 48, 48), expected_input_shape=(3, 32, 32))
    assert load_model(path, expected_input_shape=(3, 64, 64)).input_shape == (3, 64, 64)


@pytest.mark.parametrize("shape", [[3, -1, 1e9], [3, 0, 32], [3, 32.0, 32], "3x32x32", [], [1, 2, 3, 4],
                                   [3, 100000, 100000], [True, 32, 32], {"c": 3}])
def test_implausible_declared_input_shape_is_refused(tmp_path, shape):
    model = trained_like("small_cnn", num_classes=2, shape=(3, 32, 32))
    torch.save(model.state_dict(), tmp_path / "m.pt")
    sidecar = {"arch": "small_cnn", "num_classes": 2, "input_shape": shape}
    (tmp_path / "m.pt.json").write_text(json.dumps(sidecar))
    message = load_error(tmp_path / "m.pt", expected_input_shape=(3, 32, 32))
    assert message.startswith(f"the sidecar of '{tmp_path / 'm.pt'}' gives input_shape as {json.dumps(shape)}, but "
                              "an input shape must be a list of 1 to 3 positive whole numbers"), message
    with pytest.raises(ModelLoadError, match=r"the sidecar of 'm.pt' gives input_shape as .*, but an input shape"):
        load_model_bytes((tmp_path / "m.pt").read_bytes(), "m.pt", sidecar=sidecar, expected_input_shape=(3, 32, 32))
    (tmp_path / "m.pt.json").unlink()
    with pytest.raises(ModelLoadError, match="^input_shape is .*, but an input shape must be"):
        load_model(tmp_path / "m.pt", arch="small_cnn", input_shape=shape)


@pytest.mark.parametrize("classes", [1, 0, -2, 2.0, "2", [2], True, 10 ** 9])
def test_implausible_class_count_in_the_sidecar_is_refused(tmp_path, classes):
    torch.save(trained_like("mlp", num_classes=2).state_dict(), tmp_path / "m.pt")
    (tmp_path / "m.pt.json").write_text(json.dumps({"arch": "mlp", "num_classes": classes, "input_shape": [10]}))
    assert load_error(tmp_path / "m.pt") == (
        f"the sidecar of '{tmp_path / 'm.pt'}' gives num_classes as {json.dumps(classes)}, but it must be a whole "
        "number from 2 to 100,000; fix or delete that field.")


@pytest.mark.parametrize("field, value, example", [("arch", 5, "small_cnn"), ("arch", "", "small_cnn"),
                                                   ("arch", ["mlp"], "small_cnn"), ("head", ["fc"], "fc"),
                                                   ("head", {"name": "fc"}, "fc")])
def test_sidecar_names_of_the_wrong_type_are_refused(tmp_path, field, value, example):
    path = save_checkpoint(trained_like("small_cnn", num_classes=2), tmp_path / "m.pt", format="state_dict")
    sidecar = {**read_sidecar(path), field: value}
    path.with_name(path.name + ".json").write_text(json.dumps(sidecar))
    expected = (f"gives {field} as {json.dumps(value)}, but it must be a name such as \"{example}\"; fix or delete "
                "that field.")
    assert load_error(path) == f"the sidecar of '{path}' {expected}"
    with pytest.raises(ModelLoadError) as info:
        load_model_bytes(path.read_bytes(), "m.pt", sidecar=json.dumps(sidecar).encode())
    assert str(info.value) == f"the sidecar of 'm.pt' {expected}"


def test_architecture_of_the_other_kind_is_refused(tmp_path):
    torch.save(trained_like("small_cnn", num_classes=2).state_dict(), tmp_path / "cnn.pt")
    assert load_error(tmp_path / "cnn.pt", arch="mlp", expected_input_shape=(3, 16, 16)) == (
        "architecture 'mlp' is for tabular features (inputs of shape (D,)), not inputs of shape (3, 16, 16); use an "
        "image architecture (small_cnn, resnet18 or a torchvision model name).")
    with pytest.raises(ModelLoadError, match="architecture 'tabular_cnn' is for tabular features"):
        load_model_bytes((tmp_path / "cnn.pt").read_bytes(), "cnn.pt", arch="tabular_cnn",
                         expected_input_shape=(3, 16, 16))
    torch.save(trained_like("mlp", num_classes=2).state_dict(), tmp_path / "mlp.pt")
    assert load_error(tmp_path / "mlp.pt", arch="small_cnn", expected_input_shape=(10,)) == (
        "architecture 'small_cnn' is for images (inputs of shape (C, H, W)), not inputs of shape (10,); use a "
        "tabular architecture (mlp or tabular_cnn).")
    with pytest.raises(ModelLoadError, match="architecture 'mlp' is for tabular features"):
        build_model("mlp", 2, (3, 16, 16))


def test_unknown_architecture_suggests_a_close_name(tmp_path):
    torch.save(trained_like("mlp").state_dict(), tmp_path / "m.pt")
    message = load_error(tmp_path / "m.pt", arch="resnet19", input_shape=(10,))
    assert "unknown architecture 'resnet19'" in message and "(did you mean 'resnet18'?)" in message


def test_size_limit_from_argument_and_environment(tmp_path, monkeypatch):
    path = save_checkpoint(trained_like("mlp"), tmp_path / "m.safetensors")
    assert "over the 1.0 KB limit" in load_error(path, max_bytes=1024)
    monkeypatch.setenv("FAIRAUDIT_MAX_MODEL_BYTES", "2048")
    assert "over the 2.0 KB limit; raise FAIRAUDIT_MAX_MODEL_BYTES" in load_error(path)
    assert checkpoint_files.max_model_bytes() == 2048
    monkeypatch.delenv("FAIRAUDIT_MAX_MODEL_BYTES")
    assert checkpoint_files.max_model_bytes() == 2 * 1024 ** 3


def test_weights_changed_after_saving_fail_the_hash_check(tmp_path):
    path = save_checkpoint(trained_like("mlp", seed=0), tmp_path / "m.safetensors")
    sidecar = path.with_name(path.name + ".json").read_text()
    save_checkpoint(trained_like("mlp", seed=1), path)
    path.with_name(path.name + ".json").write_text(sidecar)
    assert "does not match the SHA-256 recorded in its sidecar" in load_error(path)


def test_corrupt_sidecar_is_reported(tmp_path):
    path = save_checkpoint(trained_like("mlp"), tmp_path / "m.safetensors")
    path.with_name(path.name + ".json").write_text("{not json")
    assert "is not valid JSON" in load_error(path)


# ---------------------------------------------------------------------------- uploads

def test_upload_round_trip_with_sidecar_dict_or_text(tmp_path):
    model = trained_like("small_cnn")
    path = save_checkpoint(model, tmp_path / "m.pt", format="state_dict")
    data, sidecar = path.read_bytes(), read_sidecar(path)
    x = sample((3, 16, 16))
    for given in (sidecar, json.dumps(sidecar).encode()):
        loaded = load_model_bytes(data, "m.pt", sidecar=given, expected_input_shape=(3, 16, 16))
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))
    with pytest.raises(ModelLoadError, match="'m.pt' has no sidecar naming its architecture"):
        load_model_bytes(data, "m.pt")
    with pytest.raises(ModelLoadError, match="the model file 'big.pt' is .* over the 1.0 KB limit"):
        load_model_bytes(data, "big.pt", max_bytes=1024)
    with pytest.raises(ModelLoadError, match="the model file 'none.pt' is empty"):
        load_model_bytes(b"", "none.pt")
