"""Hostile or broken model files: TorchScript programs, wrong sizes, sidecars of the wrong type, noise.

The builders are shared with the unit tests (``tests/test_model_io.py``),
which check the same files at the library level. Every image case audits
tiny synthetic faces (:data:`IMAGE_SIZE` pixels, :data:`N_TEST` test images),
so a case that is wrongly accepted still finishes in a second.
"""

from __future__ import annotations

import argparse
import json
import random
import warnings
from pathlib import Path
from typing import Tuple

import torch
from torch import nn

from tests.bad_inputs import BadInput, marker_path

IMAGE_SIZE = 32
N_TEST = 16
IMAGE_SHAPE = (3, IMAGE_SIZE, IMAGE_SIZE)


# ---------------------------------------------------------------------------- TorchScript programs that write a file

class WritesOnForward(nn.Module):
    """Predicts with a linear layer, and every call maps ``marker`` into memory and writes into it.

    ``torch.from_file(..., shared=True)`` creates the file (or overwrites an
    existing one); adding ``0 * sum`` keeps the write from being optimised away.
    """

    def __init__(self, marker: str, in_features: int = 3 * IMAGE_SIZE * IMAGE_SIZE, num_classes: int = 2):
        super().__init__()
        self.marker = marker
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        written = torch.from_file(self.marker, shared=True, size=4, dtype=torch.uint8)
        written.fill_(65)
        return self.fc(x.flatten(1)) + 0 * written.sum().float()


class WritesOnLoad(nn.Module):
    """A scripted ``__setstate__``: ``torch.jit.load`` itself writes ``marker``."""

    def __init__(self, marker: str, in_features: int = 3 * IMAGE_SIZE * IMAGE_SIZE, num_classes: int = 2):
        super().__init__()
        self.marker = marker
        self.weight = torch.zeros(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, torch.Tensor, bool]:
        return self.marker, self.weight, self.training

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, torch.Tensor, bool]) -> None:
        self.marker = state[0]
        written = torch.from_file(self.marker, shared=True, size=4, dtype=torch.uint8)
        written.fill_(66)
        self.weight = state[1] + 0 * written.sum().float()
        self.training = state[2]


HOSTILE_SCRIPTS = {"forward": WritesOnForward, "setstate": WritesOnLoad}


def save_script(module: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream
        torch.jit.save(torch.jit.script(module), str(path))
    return path


def hostile_torchscript(folder: Path, payload: str, marker: Path | None = None, name: str = "evil.pt") -> Path:
    """A TorchScript archive that writes ``marker`` (default: the corpus marker) on ``forward`` or on load."""
    marker = marker or marker_path(folder)
    return save_script(HOSTILE_SCRIPTS[payload](str(marker)), Path(folder) / name)


# ---------------------------------------------------------------------------- checkpoints with a doctored sidecar

def checkpoint(folder: Path, name: str = "model.pt", shape=IMAGE_SHAPE, arch: str = "small_cnn",
               sidecar: bool = True, fields: dict | None = None) -> Path:
    """A fairaudit checkpoint of ``arch`` (2 classes) with ``fields`` written over its sidecar's.

    ``sidecar=False`` deletes the sidecar (a bare state_dict, as trained elsewhere).
    """
    from fairaudit.models import build_model, save_checkpoint
    from fairaudit.models.checkpoint_files import sidecar_path

    torch.manual_seed(0)
    path = save_checkpoint(build_model(arch, 2, shape), Path(folder) / name,
                           format="safetensors" if name.endswith(".safetensors") else "state_dict")
    if not sidecar:
        sidecar_path(path).unlink()
    elif fields:
        side = sidecar_path(path)
        side.write_text(json.dumps({**json.loads(side.read_text()), **fields}))
    return path


def random_bytes(folder: Path, name: str = "noise.pt", seed: int = 0, n: int = 4096) -> Path:
    """Seeded noise that starts like a pickle (``0x80``), as a truncated or mistyped download might."""
    rng = random.Random(seed)
    path = Path(folder) / name
    path.write_bytes(b"\x80" + bytes(rng.getrandbits(8) for _ in range(n - 1)))
    return path


# ---------------------------------------------------------------------------- command lines

def audit_args(model: Path, *extra: str) -> list[str]:
    """``audit`` of ``model`` on tiny synthetic faces, no bootstrap."""
    return ["audit", "--dataset", "synthetic-faces", "--data-opt", f"image_size={IMAGE_SIZE}",
            "--data-opt", f"n_test={N_TEST}", "--bootstrap", "0", "--model", str(model),
            "--json", str(Path(model).parent / "audit.json"), *extra]


def upload(name: str, sidecar: str | None = None, **kwargs):
    """The app's upload loader on ``sandbox/name`` (and the sidecar file ``sidecar``, if given)."""
    def call(sandbox: Path):
        from fairaudit.models.upload import load_model_bytes

        side = (sandbox / sidecar).read_bytes() if sidecar else None
        return load_model_bytes((sandbox / name).read_bytes(), name, sidecar=side, expected_num_classes=2,
                                expected_input_shape=IMAGE_SHAPE, **kwargs)
    return call


def _torchscript_case(payload: str) -> BadInput:
    return BadInput(f"torchscript_writes_on_{payload}",
                    lambda sandbox: audit_args(hostile_torchscript(sandbox, payload)),
                    "--allow-torchscript", upload=upload("evil.pt"), tags=("models", "torchscript"))


def _torchscript_command(command: str) -> BadInput:
    """The other commands that take ``--model`` refuse TorchScript the same way (mitigation jobs when created)."""
    def build(sandbox: Path) -> list[str]:
        model = hostile_torchscript(sandbox, "setstate")
        args = audit_args(model)[1:]
        if command == "robustness":
            return ["robustness", *args, "--max-samples", "4"]
        seeds = ["--seeds", "2"] if command == "sweep" else []
        return [command, "erm", *args[:args.index("--bootstrap")], "--model", str(model), *seeds,
                "--json", str(sandbox / "run.json")]
    return BadInput(f"torchscript_{command}", build, "--allow-torchscript", tags=("models", "torchscript"))


def _sidecar_case(name: str, message: str, weights: str = "model.pt", shape=IMAGE_SHAPE, **fields) -> BadInput:
    """A checkpoint with ``fields`` in its sidecar, given to ``audit --model`` and to the app's upload."""
    return BadInput(name, lambda sandbox: audit_args(checkpoint(sandbox, weights, shape, fields=fields)),
                    message, upload=upload(weights, sidecar=weights + ".json"), tags=("models", "sidecar"))


def _usage_cases() -> list[BadInput]:
    """Every command, given an option without its value: argparse's message, prefixed once."""
    from fairaudit.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    cases = []
    for command, parser in commands.items():
        option = next((a.option_strings[-1] for a in parser._actions if a.option_strings and a.nargs is None
                       and not isinstance(a, argparse._HelpAction)), None)
        if option is not None:
            cases.append(BadInput(f"usage_{command}", lambda sandbox, c=command, o=option: [c, o],
                                  f"fairaudit: error: {command}: argument {option}: expected one argument.",
                                  tags=("cli",)))
    return cases


CASES = [_torchscript_case("forward"), _torchscript_case("setstate"),
         *(_torchscript_command(c) for c in ("robustness", "mitigate", "sweep")),
         _sidecar_case("model_64px_on_32px_data", "says the model takes inputs of shape (3, 64, 64) but the "
                       "dataset's inputs have shape (3, 32, 32)", weights="m64.safetensors", shape=(3, 64, 64)),
         _sidecar_case("sidecar_input_shape_implausible", "gives input_shape as [3, -1, 1000000000.0], but an input "
                       "shape must be a list of 1 to 3 positive whole numbers", input_shape=[3, -1, 1e9]),
         _sidecar_case("sidecar_num_classes_text", "gives num_classes as \"2\", but it must be a whole number",
                       num_classes="2"),
         _sidecar_case("sidecar_arch_number", "gives arch as 5, but it must be a name such as \"small_cnn\"", arch=5),
         _sidecar_case("sidecar_head_list", "gives head as [\"fc\"], but it must be a name such as \"fc\"",
                       head=["fc"]),
         _sidecar_case("sidecar_input_shape_text", "gives input_shape as \"3x32x32\", but an input shape must be",
                       input_shape="3x32x32"),
         BadInput("arch_mlp_on_image_checkpoint",
                  lambda sandbox: audit_args(checkpoint(sandbox, "plain.pt", sidecar=False), "--arch", "mlp"),
                  "architecture 'mlp' is for tabular features (inputs of shape (D,)), not inputs of shape (3, 32, 32)",
                  upload=upload("plain.pt", arch="mlp"), tags=("models",)),
         BadInput("random_bytes_like_a_pickle", lambda sandbox: audit_args(random_bytes(sandbox)),
                  "noise.pt' is not a recognised model format (expected safetensors, a PyTorch state_dict or a "
                  "TorchScript archive).", upload=upload("noise.pt"), tags=("models",)),
         *_usage_cases()]
