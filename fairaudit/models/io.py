"""Safe loading and saving of model checkpoints.

What loading executes: for weights files, only fairaudit's and torchvision's
own code (the architecture is built from its name, the file supplies numbers,
and one dummy batch checks that the built network accepts the dataset's
inputs). Nothing stored in a weights file can run. A TorchScript archive is a
program, so it is refused unless the caller opts in, and even then none of it
runs while loading: it first runs on the first real batch of an audit.

Files :func:`load_model` reads (the format is recognised from the file's
content, not its extension):

* **safetensors** (``.safetensors``): what :func:`save_checkpoint` writes by
  default; the format stores raw tensors only, so loading cannot run code.
* **PyTorch state_dict** (``.pt``/``.pth``/``.bin`` written with ``torch.save``):
  read with ``torch.load(weights_only=True)``, which accepts tensors and plain
  containers and refuses any other pickled Python object, so a malicious file
  is rejected before anything in it runs ("could execute code"). A file that
  is not even a well-formed pickle is "not a recognised model format".
  Training checkpoints that wrap the state_dict (``{"state_dict": ...}``,
  ``{"model": ...}``, ...) and the ``module.`` / ``_orig_mod.`` prefixes of
  ``DataParallel`` / ``torch.compile`` are accepted.
* **state_dict of a plain torchvision model** (keys such as ``conv1.weight`` and
  ``fc.weight``): mapped onto the ``g``/``f`` split (``g.body.conv1.weight``,
  ``f.weight``).
* **TorchScript archive** (``torch.jit.save``), recognised from the names in
  its zip without loading it: **refused unless** ``allow_torchscript=True``
  (``--allow-torchscript`` on the command line, "Allow TorchScript" in the
  app). TorchScript code runs with the permissions of the process: loading an
  archive runs its scripted ``__setstate__`` methods and its ``forward`` can,
  for example, read and write any file through ``torch.from_file``. With the
  opt-in, the archive is loaded but not run: the class count and input shape
  come from the arguments, the sidecar, the shapes of its parameters or the
  dataset, and :class:`ScriptedModel` checks every batch it is given, so a model
  that does not fit the data fails on the first batch with one sentence. A
  scripted :class:`SplitModel` (a module with ``g`` and ``f`` submodules)
  keeps its split; any other scripted module predicts but exposes no latent
  features (:func:`features_available` is ``False``), so latent-space analyses
  (FAAP, leakage probes, latent plots) are unavailable for it.

Checks against the dataset: the class count of the target, the input layer's
channel or feature count, and the input shape the checkpoint declares (its
sidecar's ``input_shape``, which must be a list of 1 to 3 positive whole
numbers of plausible size) must match the dataset's, or
:class:`~fairaudit.errors.ModelLoadError` says which does not.

Architectures: the names registered in :mod:`fairaudit.models.registry`
(``small_cnn``, ``resnet18``, ``mlp``, ``tabular_cnn``) and every torchvision
classification builder (``torchvision.models.list_models(module=torchvision.models)``), built
with ``weights=None`` (nothing is downloaded) and split at the head named by
``head`` (default: ``fc``, ``classifier``, ``head`` or ``heads``). A registered
name that torchvision also has (``resnet18``) first tries fairaudit's small-input
variant and falls back to torchvision's original when the weights only fit
that; ``torchvision/<name>`` always means torchvision's.

Sidecar: :func:`save_checkpoint` writes ``<weights>.json`` next to the weights
(e.g. ``model.safetensors.json``) with the architecture, class count, input
shape, the user's ``extra`` information (class names, dataset, target,
sensitive attributes, training settings), the fairaudit version and the SHA-256
of the weights file, so ``--model PATH`` needs no other flag. safetensors files
also embed the same information (minus the hash) in their header.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import safetensors.torch
import torch
import torchvision
from torch import nn

from fairaudit import __version__
from fairaudit.device import resolve_device
from fairaudit.errors import FairauditError, ModelLoadError
from fairaudit.models.checkpoint_files import (EMBEDDED_KEY, atomic_write, check_info, check_input_shape_value,
                                               check_model_file, detect_format, first_line, load_torchscript,
                                               read_safetensors, read_sidecar, read_torch_state, sha256,
                                               sidecar_path, torchscript_refusal)
from fairaudit.models.registry import MODEL_BUILDERS, check_input_shape, check_kind
from fairaudit.registry import did_you_mean
from fairaudit.models.split import _HEAD_NAMES, SplitModel, _Flattened, latent_dim, split_torchvision

__all__ = ["ScriptedModel", "features_available", "head_name", "load_checkpoint_file", "load_model",
           "model_summary", "read_sidecar", "save_checkpoint", "sidecar_path"]

SAVE_FORMATS = ("safetensors", "state_dict")
TORCHVISION_PREFIX = "torchvision/"
SCRIPTED_ARCH = "torchscript"


# ---------------------------------------------------------------------------- public helpers

def features_available(model: nn.Module) -> bool:
    """Whether ``model.g(x)`` gives latent features (``False`` for a :class:`ScriptedModel`)."""
    return bool(getattr(model, "features_available", True))


def head_name(model: SplitModel) -> str | None:
    """Name of the torchvision child module that became ``f``, or ``None`` for fairaudit's own heads."""
    name = getattr(model, "head_name", None)
    if name:
        return name
    if isinstance(model.g, _Flattened):
        for candidate in _HEAD_NAMES:
            if isinstance(getattr(model.g.body, candidate, None), nn.Identity):
                return candidate
    return None


@torch.no_grad()
def model_summary(model: SplitModel) -> dict:
    """Architecture, sizes and the latent dimension of ``g`` for display."""
    params = list(model.parameters())
    tensors = params + list(model.buffers())
    first = params[0] if params else None
    return {
        "arch": model.arch,
        "num_classes": model.num_classes,
        "input_shape": list(model.input_shape),
        "head": head_name(model),
        "parameters": sum(p.numel() for p in params),
        "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
        "size_mb": round(sum(t.numel() * t.element_size() for t in tensors) / 2 ** 20, 3),
        "dtype": str(first.dtype).replace("torch.", "") if first is not None else None,
        "device": str(first.device) if first is not None else "cpu",
        "features_available": features_available(model),
        "latent_dim": _latent_dim(model),
    }


class _FeaturesUnavailable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ModelLoadError("this TorchScript model has no g/f submodules, so its latent features are unavailable; "
                             "script a fairaudit SplitModel to keep them.")


class _ScriptCall(nn.Module):
    """Runs a scripted module; its failures become one sentence naming the file and the input shape."""

    def __init__(self, module: nn.Module, label: str):
        super().__init__()
        self.module = module
        self.label = label

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self.module(x)
        except Exception as exc:  # the interpreter raises torch.jit.Error (a RuntimeError) or anything scripted
            raise ModelLoadError(f"the TorchScript model '{self.label}' failed on inputs of shape "
                                 f"{tuple(x.shape[1:])} ({first_line(exc)}); check that it was saved for this "
                                 "dataset.") from None


class ScriptedModel(SplitModel):
    """A TorchScript model, loaded only when the user allowed TorchScript.

    Nothing of it runs while loading: the class count and input shape come
    from the caller, the sidecar or the shapes of its parameters, and every
    call checks that the module returned logits of shape ``(N, num_classes)``
    (a model that does not fit the data fails on the first batch with a
    :class:`~fairaudit.errors.ModelLoadError`). A scripted :class:`SplitModel`
    (a module with ``g`` and ``f`` submodules) keeps its split; for any other
    module ``model(x)`` predicts as usual, while ``model.g(x)`` and
    ``model.features(x)`` raise :class:`~fairaudit.errors.ModelLoadError`
    because the latent space of an opaque scripted module cannot be reached.
    """

    def __init__(self, module: nn.Module, num_classes: int, input_shape: Sequence[int], label: str = "model"):
        split = _has_submodule(module, "g") and _has_submodule(module, "f")
        g = _ScriptCall(module.g, label) if split else _FeaturesUnavailable()
        f = _ScriptCall(module.f, label) if split else nn.Identity()
        super().__init__(g, f, SCRIPTED_ARCH, num_classes, input_shape)
        self.features_available = split
        self.label = label
        self.scripted = None if split else _ScriptCall(module, label)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.f(self.g(x)) if self.scripted is None else self.scripted(x)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (x.shape[0], self.num_classes):
            got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelLoadError(f"the TorchScript model '{self.label}' returned {got} for {x.shape[0]} inputs of "
                                 f"shape {tuple(x.shape[1:])}, not logits of shape ({x.shape[0]}, "
                                 f"{self.num_classes}); check that it was saved for this dataset.")
        return out


# ---------------------------------------------------------------------------- saving

def save_checkpoint(model: SplitModel, path: str | os.PathLike, *, extra: dict | None = None,
                    format: str = "safetensors") -> Path:
    """Write the weights of ``model`` and the JSON sidecar ``<path>.json``; return ``path``.

    ``format="safetensors"`` (default) or ``"state_dict"`` (``torch.save`` of the
    state_dict). ``extra`` adds JSON-serialisable information to the sidecar
    (``class_names``, ``dataset``, ``target``, ``sensitive``, ``training``...);
    it cannot override the architecture fields. Both files are written to a
    temporary name and renamed, so a crash never leaves a half-written file.
    """
    if format not in SAVE_FORMATS:
        raise FairauditError(f"unknown checkpoint format '{format}'; use one of {', '.join(SAVE_FORMATS)}.")
    if not isinstance(model, SplitModel) or model.arch == SCRIPTED_ARCH:
        raise FairauditError("only models built by fairaudit can be saved as weights; keep a TorchScript model "
                             "as its original archive.")
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {**(extra or {}), "fairaudit_version": __version__, "format": format, "weights_file": path.name,
            "arch": model.arch, "num_classes": model.num_classes, "input_shape": list(model.input_shape),
            "head": head_name(model)}
    try:
        info_json = json.dumps(info)
    except (TypeError, ValueError) as exc:
        raise FairauditError(f"the extra checkpoint information is not JSON-serialisable ({exc}).") from None
    state = _cpu_state_dict(model)

    def write_weights(tmp: Path) -> None:
        if format == "safetensors":
            safetensors.torch.save_file(state, str(tmp), metadata={"format": "pt", EMBEDDED_KEY: info_json})
        else:
            torch.save(state, tmp)

    info["sha256"] = atomic_write(path, write_weights)
    atomic_write(sidecar_path(path), lambda tmp: tmp.write_text(json.dumps(info, indent=2), encoding="utf-8"))
    return path


def _cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share storage (tied weights); give repeats their own copy.
    seen: set[int] = set()
    state = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        state[key] = tensor.clone() if ptr in seen and tensor.numel() else tensor
        seen.add(ptr)
    return state


# ---------------------------------------------------------------------------- loading

def load_model(path: str | os.PathLike, *, arch: str | None = None, num_classes: int | None = None,
               input_shape: Sequence[int] | None = None, head: str | None = None, device: str = "cpu",
               expected_num_classes: int | None = None, expected_input_shape: Sequence[int] | None = None,
               target: str | None = None, sidecar: Mapping[str, Any] | None = None,
               max_bytes: int | None = None, allow_torchscript: bool = False) -> SplitModel:
    """Load a checkpoint as a :class:`SplitModel` in eval mode on ``device``.

    ``arch`` / ``num_classes`` / ``input_shape`` / ``head`` default to the sidecar
    (``<path>.json``, or ``sidecar`` when given) or to the information embedded in
    a safetensors file; explicit values override them. The class count is also
    read from the head's weights. ``expected_num_classes`` and
    ``expected_input_shape`` describe the dataset the model will be audited on
    (``target`` names the label column in messages): a model that does not fit
    raises :class:`~fairaudit.errors.ModelLoadError`. Files over ``max_bytes``
    (default 2 GB, or the ``FAIRAUDIT_MAX_MODEL_BYTES`` environment variable) are
    refused. A TorchScript archive is refused unless ``allow_torchscript``
    (loading one runs its ``__setstate__`` code); even then nothing of it runs
    until the first real batch (see :class:`ScriptedModel`). The loaded model
    keeps the checkpoint information as ``model.checkpoint_info``.
    """
    path = Path(path).expanduser()
    return load_checkpoint_file(path, str(path), arch=arch, num_classes=num_classes, input_shape=input_shape,
                                head=head, device=device, expected_num_classes=expected_num_classes,
                                expected_input_shape=expected_input_shape, target=target, sidecar=sidecar,
                                max_bytes=max_bytes, allow_torchscript=allow_torchscript)


def load_checkpoint_file(path: Path, label: str, *, arch: str | None = None, num_classes: int | None = None,
                         input_shape: Sequence[int] | None = None, head: str | None = None, device: str = "cpu",
                         expected_num_classes: int | None = None, expected_input_shape: Sequence[int] | None = None,
                         target: str | None = None, sidecar: Mapping[str, Any] | None = None,
                         max_bytes: int | None = None, allow_torchscript: bool = False) -> SplitModel:
    """:func:`load_model` with ``label`` naming the file in messages (an upload's original name)."""
    device = resolve_device(device)
    check_model_file(path, label, max_bytes)
    kind = detect_format(path, label)
    if kind == "torchscript" and not allow_torchscript:
        raise ModelLoadError(torchscript_refusal(label))
    info = check_info(dict(sidecar) if sidecar is not None else read_sidecar(path), f"the sidecar of '{label}'")
    if input_shape is not None:
        input_shape = check_input_shape_value(input_shape, "input_shape is")
    dataset = _DatasetFit(expected_num_classes, expected_input_shape, target)
    if kind == "torchscript":
        _verify_hash(path, label, info)
        module = load_torchscript(path, label)
        model = _wrap_torchscript(module, label, info or {}, num_classes, input_shape, dataset)
    else:
        state, embedded = read_safetensors(path, label) if kind == "safetensors" else (read_torch_state(path, label),
                                                                                          None)
        info = info if info is not None else check_info(embedded, f"the fairaudit information in the header of "
                                                                  f"'{label}'")
        _verify_hash(path, label, info)
        model = _build_from_state(state, info or {}, label, arch=arch, num_classes=num_classes,
                                  input_shape=input_shape, head=head, dataset=dataset)
    dataset.check_model(model)
    model.checkpoint_info = dict(info or {})
    return model.to(device).eval()


def _verify_hash(path: Path, label: str, info: Mapping[str, Any] | None) -> None:
    if info and info.get("sha256") and info["sha256"] != sha256(path):
        raise ModelLoadError(f"the weights file '{label}' does not match the SHA-256 recorded in its sidecar, so it "
                             "was changed after saving or the sidecar belongs to another file; re-save the model or "
                             "delete the sidecar.")


# ---------------------------------------------------------------------------- matching a checkpoint to a model

class _DatasetFit:
    """What the dataset requires of a model, and the messages when a model does not fit."""

    def __init__(self, num_classes: int | None, input_shape: Sequence[int] | None, target: str | None):
        self.num_classes = None if num_classes is None else int(num_classes)
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.target = target
        self.declared: tuple[tuple[int, ...], str] | None = None  # the model's input shape and who declared it

    def declare(self, shape: Sequence[int], source: str) -> tuple[int, ...]:
        """Record the input shape the checkpoint (or the caller) declares; checked by :meth:`check_model`."""
        self.declared = (tuple(shape), source)
        return self.declared[0]

    def check_declared_shape(self) -> None:
        if self.declared is None or self.input_shape is None or self.declared[0] == self.input_shape:
            return
        shape, source = self.declared
        hint = f" (e.g. --data-opt image_size={shape[1]})" if len(shape) == 3 and shape[1] == shape[2] and \
            len(self.input_shape) == 3 else ""
        raise ModelLoadError(f"{source} says the model takes inputs of shape {shape} but the dataset's inputs have "
                             f"shape {self.input_shape}; audit it on data of its size{hint} or use a model trained "
                             "for this one.")

    def check_classes(self, found: int) -> None:
        if self.num_classes is not None and found != self.num_classes:
            where = f"the dataset target '{self.target}'" if self.target else "the dataset"
            raise ModelLoadError(f"the checkpoint has {found} output classes but {where} has {self.num_classes}.")

    def check_model(self, model: SplitModel) -> None:
        self.check_classes(model.num_classes)
        if self.input_shape is None:
            return
        if model.arch == SCRIPTED_ARCH:  # not run here: ScriptedModel checks every batch it is given
            self.check_declared_shape()
            return
        first = _first_layer_weight(model)
        if first is not None:
            _check_first_layer(first, self.input_shape, "the dataset has")
        self.check_declared_shape()
        try:
            check_input_shape(model, self.input_shape)
        except ModelLoadError as exc:
            detail = str(exc).split(": ", 1)[-1].rstrip(".")
            built = "" if tuple(model.input_shape) == self.input_shape else \
                f" (built for inputs of shape {tuple(model.input_shape)})"
            raise ModelLoadError(f"the model{built} fails on the dataset's inputs of shape {self.input_shape}: "
                                 f"{detail}.") from None


def _first_layer_weight(model: nn.Module) -> tuple[str, tuple[int, ...]] | None:
    """Key and shape of the input layer's weight, when that layer is a plain ``Linear`` or ``Conv2d``.

    ``named_modules`` follows registration order, so the first module with a
    weight matrix is the input layer; other kinds (embeddings, grouped or
    scripted layers) are left to the dummy forward pass of ``check_input_shape``.
    """
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.ndim >= 2:
            plain = isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1)
            return (f"{name}.weight", tuple(weight.shape)) if plain else None
    return None


def _check_first_layer(first: tuple[str, tuple[int, ...]], input_shape: tuple[int, ...], source: str) -> None:
    """Linear layers read ``shape[1]`` features and convolutions ``shape[1]`` channels of the input."""
    _, shape = first
    if len(shape) == 2 and len(input_shape) == 1:
        unit = "feature"
    elif len(shape) == 4 and len(input_shape) == 3:
        unit = "channel"
    else:
        return
    takes, has = shape[1], input_shape[0]
    if takes != has:
        raise ModelLoadError(f"the model's first layer takes {takes} input {unit}{'s' * (takes != 1)} but {source} "
                             f"{has} {unit}{'s' * (has != 1)} (inputs of shape {tuple(input_shape)}).")


def _natural_key(key: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def _checkpoint_classes(state: Mapping[str, torch.Tensor], head: str | None) -> int | None:
    """Rows of the head's last weight matrix (our ``f.`` keys or a torchvision head's)."""
    for prefix in ["f."] + [f"{name}." for name in ([head] if head else _HEAD_NAMES)]:
        keys = [k for k in state if k.startswith(prefix) and k.endswith("weight") and state[k].ndim >= 2]
        if keys:
            return int(state[max(keys, key=_natural_key)].shape[0])
    return None


def _align_keys(state: dict[str, torch.Tensor], model: SplitModel) -> dict[str, torch.Tensor]:
    """Map a plain torchvision state_dict (``conv1.weight``, ``fc.weight``) onto ``g.body.*`` / ``f.*``."""
    wanted = set(model.state_dict())
    head = head_name(model)
    if set(state) == wanted or head is None:
        return state
    prefix = head + "."
    mapped = {("f." + k[len(prefix):] if k.startswith(prefix) else "g.body." + k): v for k, v in state.items()}
    return mapped if len(wanted & set(mapped)) > len(wanted & set(state)) else state


def _few(keys: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


def _state_mismatch(state: Mapping[str, torch.Tensor], model: SplitModel, shape_source: str) -> str | None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = ([f"missing keys {_few(missing)}"] if missing else []) + \
                ([f"unexpected keys {_few(unexpected)}"] if unexpected else [])
        return f"the checkpoint does not match architecture '{model.arch}' ({'; '.join(parts)}); check --arch."
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items() if state[k].shape != v.shape]
    if not wrong:
        return None
    key, got, want = wrong[0]
    first = _first_layer_weight(model)
    if first is not None and key == first[0] and len(got) == len(want) and got[0] == want[0] and got[2:] == want[2:]:
        try:
            _check_first_layer((key, got), model.input_shape, shape_source)
        except ModelLoadError as exc:
            return str(exc)
    return (f"the checkpoint does not fit architecture '{model.arch}' ('{key}' has shape {got} in the file but "
            f"{want} in the model); check --arch.")


def _torchvision_names() -> list[str]:
    return torchvision.models.list_models(module=torchvision.models)


def _builders(arch: str, head: str | None) -> list[Callable[[int, tuple[int, ...]], SplitModel]]:
    """Candidate builders for ``arch``: fairaudit's own first, then torchvision's of the same name."""
    tv_names = _torchvision_names()
    if arch.startswith(TORCHVISION_PREFIX) and arch[len(TORCHVISION_PREFIX):] in tv_names:
        return [_torchvision_builder(arch[len(TORCHVISION_PREFIX):], head)]
    builders = []
    if arch in MODEL_BUILDERS:
        builders.append(lambda n, shape: MODEL_BUILDERS[arch](n, shape))
    if arch in tv_names:
        builders.append(_torchvision_builder(arch, head))
    if not builders:
        hint = did_you_mean(arch, sorted(MODEL_BUILDERS) + tv_names)
        raise ModelLoadError(f"unknown architecture '{arch}'{hint}; use one of {', '.join(sorted(MODEL_BUILDERS))} "
                             "or a torchvision classification model name such as mobilenet_v3_small.")
    return builders


def _torchvision_builder(name: str, head: str | None) -> Callable[[int, tuple[int, ...]], SplitModel]:
    arch = TORCHVISION_PREFIX + name if name in MODEL_BUILDERS else name

    def build(num_classes: int, input_shape: tuple[int, ...]) -> SplitModel:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # e.g. googlenet's note on init_weights
                net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        except Exception as exc:  # builder-specific argument errors
            raise ModelLoadError(f"torchvision could not build '{name}' with {num_classes} classes "
                                 f"({first_line(exc)}).") from None
        model = split_torchvision(net, arch, num_classes, input_shape, head=head)
        model.head_name = head or head_name(model)
        return model

    return build


def _build_from_state(state: dict[str, torch.Tensor], info: Mapping[str, Any], label: str, *, arch, num_classes,
                      input_shape, head, dataset: _DatasetFit) -> SplitModel:
    arch = arch or info.get("arch")
    if not arch:
        raise ModelLoadError(f"the file '{label}' has no sidecar naming its architecture; pass --arch (e.g. "
                             f"{', '.join(sorted(MODEL_BUILDERS))} or a torchvision model name).")
    head = head or info.get("head")
    builders = _builders(arch, head)

    found = _checkpoint_classes(state, head)
    n = num_classes or info.get("num_classes") or found
    if found is not None and n != found:
        source = "--num-classes" if num_classes else "its sidecar"
        raise ModelLoadError(f"the checkpoint has {found} output classes but {source} says {n}.")
    if n is None:
        raise ModelLoadError(f"cannot tell how many classes '{label}' predicts; pass --num-classes.")
    dataset.check_classes(int(n))

    if input_shape is not None:
        shape, source = dataset.declare(input_shape, "--input-shape"), "--input-shape gives"
    elif info.get("input_shape"):
        shape, source = dataset.declare(info["input_shape"], f"the sidecar of '{label}'"), "its sidecar gives"
    elif dataset.input_shape is not None:
        shape, source = dataset.input_shape, "the dataset has"
    else:
        raise ModelLoadError(f"cannot tell which input shape '{label}' expects; pass --input-shape (e.g. 3,32,32).")
    check_kind(arch, shape)

    first_problem = None
    for build in builders:
        model = build(int(n), shape)
        aligned = _align_keys(state, model)
        problem = _state_mismatch(aligned, model, source)
        if problem is None:
            model.load_state_dict(aligned)
            return model
        first_problem = first_problem or problem
    raise ModelLoadError(first_problem)


# ---------------------------------------------------------------------------- TorchScript

def _wrap_torchscript(module: nn.Module, label: str, info: Mapping[str, Any], num_classes, input_shape,
                      dataset: _DatasetFit) -> SplitModel:
    """A :class:`ScriptedModel` around ``module``, sized without running any of its code.

    The input shape comes from the caller, the sidecar, a stored ``input_shape``
    attribute of the module or the dataset; the class count from the caller,
    the sidecar, the rows of the head's weight (``f``, ``fc``, ``classifier``...)
    or the dataset.
    """
    attribute = _script_attr(module, "input_shape")
    declared = [(input_shape, "--input-shape"), (info.get("input_shape"), f"the sidecar of '{label}'"),
                (attribute and check_input_shape_value(attribute, f"the input_shape attribute of '{label}' is"),
                 f"the input_shape attribute of '{label}'")]
    shape = next((dataset.declare(v, where) for v, where in declared if v), dataset.input_shape)
    if not shape:
        raise ModelLoadError(f"cannot tell which input shape '{label}' expects; pass --input-shape (e.g. 3,32,32).")
    found = _checkpoint_classes(module.state_dict(), None)
    declared = [(num_classes, "--num-classes"), (info.get("num_classes"), "its sidecar"),
                (_script_attr(module, "num_classes"), "its num_classes attribute")]
    n, source = next(((v, where) for v, where in declared if v), (found, None))
    if found is not None and n != found:
        raise ModelLoadError(f"the checkpoint has {found} output classes but {source} says {n}.")
    n = n or dataset.num_classes
    if n is None:
        raise ModelLoadError(f"cannot tell how many classes '{label}' predicts; pass --num-classes.")
    dataset.check_classes(int(n))
    return ScriptedModel(module, int(n), shape, label)


def _has_submodule(module: nn.Module, name: str) -> bool:
    return any(child == name for child, _ in module.named_children())


def _script_attr(module: nn.Module, name: str):
    """A stored attribute of a scripted module (a scripted method of that name is never called)."""
    try:
        value = getattr(module, name)
    except (AttributeError, RuntimeError):
        return None
    return value if isinstance(value, (tuple, list, int)) and not isinstance(value, bool) else None


# ---------------------------------------------------------------------------- small helpers

@torch.no_grad()
def _latent_dim(model: SplitModel) -> int | None:
    if not features_available(model):
        return None
    if model.arch == SCRIPTED_ARCH:  # a user's program: read the width the head takes, run nothing
        weights = [t for t in model.f.state_dict().values() if t.ndim == 2]
        return int(weights[0].shape[1]) if weights else None
    try:
        return latent_dim(model)
    except Exception:  # a summary must not fail on a model that needs other inputs
        return None
