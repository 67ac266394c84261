"""Reading and writing checkpoint files without running anything they contain.

The format of a file is recognised from its first bytes, not its extension:

* safetensors: an 8-byte header length followed by a JSON header; raw tensors only.
* ``torch.save`` zip archive: read with ``torch.load(weights_only=True)``, which
  accepts tensors and plain containers and refuses every other pickled object,
  so a malicious pickle is rejected before it runs.
* legacy (pre-zip) ``torch.save`` pickle: read the same way.
* TorchScript zip archive (it has a ``code/`` folder or a ``constants.pkl``):
  recognised from the names in the zip alone. A TorchScript archive is a
  program: ``torch.jit.load`` runs its ``__setstate__`` methods and its
  ``forward`` can read and write files, so it is refused unless the caller
  opts in (``allow_torchscript``; ``--allow-torchscript`` on the command line).

Anything else, random bytes included, is "not a recognised model format".
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from fairaudit.errors import FairauditError, ModelLoadError
from fairaudit import io_safety

DEFAULT_MAX_BYTES = 2 * 1024 ** 3
MAX_BYTES_ENV = "FAIRAUDIT_MAX_MODEL_BYTES"
SIDECAR_SUFFIX = ".json"
EMBEDDED_KEY = "fairaudit"  # safetensors header metadata key holding the sidecar information
TORCHSCRIPT_FLAG = "--allow-torchscript"
TORCHSCRIPT_CHECKBOX = "Allow TorchScript"

MAX_INPUT_DIM = 65536  # the largest size of one input dimension a checkpoint may declare
MAX_INPUT_VALUES = 3 * 4096 * 4096  # and of one input sample in all
MAX_CLASSES = 100_000

_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ts")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
_STRIPPED_PREFIXES = ("module.", "_orig_mod.")  # DataParallel, torch.compile


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar that belongs to a weights file: ``<path>.json``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_sidecar(path: str | os.PathLike) -> dict | None:
    """The sidecar of the weights file ``path`` as a dict, or ``None`` when there is none."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        info = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"the sidecar '{side}' is not valid JSON ({first_line(exc)}); fix or delete it.") from None
    if not isinstance(info, dict):
        raise ModelLoadError(f"the sidecar '{side}' must hold a JSON object, not {type(info).__name__}.")
    return info


def check_info(info: Mapping[str, Any] | None, where: str) -> dict | None:
    """Refuse checkpoint information (a sidecar, or the header of a safetensors file) with fields of the wrong type.

    ``arch`` and ``head`` must be non-empty names, ``num_classes`` a whole
    number from 2 to :data:`MAX_CLASSES` and ``input_shape`` a list of 1 to 3
    positive whole numbers (features, or channels × height × width), none over
    :data:`MAX_INPUT_DIM` and at most :data:`MAX_INPUT_VALUES` in all. ``where`` names the source in messages
    (e.g. ``"the sidecar of 'model.pt'"``).
    """
    if info is None:
        return None
    info = dict(info)
    for name, example in (("arch", "small_cnn"), ("head", "fc")):
        value = info.get(name)
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise ModelLoadError(f"{where} gives {name} as {_shown(value)}, but it must be a name such as "
                                 f"\"{example}\"; fix or delete that field.")
    classes = info.get("num_classes")
    if classes is not None and not (_whole(classes) and 2 <= classes <= MAX_CLASSES):
        raise ModelLoadError(f"{where} gives num_classes as {_shown(classes)}, but it must be a whole number from 2 "
                             f"to {MAX_CLASSES:,}; fix or delete that field.")
    if info.get("input_shape") is not None:
        info["input_shape"] = list(check_input_shape_value(info["input_shape"], f"{where} gives input_shape as"))
    return info


def check_input_shape_value(shape: Any, what: str) -> tuple[int, ...]:
    """``shape`` as a tuple when it is a plausible input shape; otherwise one sentence starting with ``what``."""
    ok = isinstance(shape, (list, tuple)) and 1 <= len(shape) <= 3 and all(_whole(d) and 1 <= d <= MAX_INPUT_DIM
                                                                          for d in shape)
    if ok and math.prod(shape) <= MAX_INPUT_VALUES:
        return tuple(int(d) for d in shape)
    raise ModelLoadError(f"{what} {_shown(shape)}, but an input shape must be a list of 1 to 3 positive whole "
                         f"numbers (e.g. [3, 64, 64] or [14]), each at most {MAX_INPUT_DIM:,}, with at most "
                         f"{MAX_INPUT_VALUES:,} values in all.")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any, limit: int = 60) -> str:
    """A short JSON rendering of a user's value for a message."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def max_model_bytes(max_bytes: int | None = None) -> int:
    """The size limit: ``max_bytes``, else ``$FAIRAUDIT_MAX_MODEL_BYTES``, else 2 GB."""
    if max_bytes is not None:
        return int(max_bytes)
    raw = os.environ.get(MAX_BYTES_ENV)
    if raw:
        try:
            return int(float(raw))
        except ValueError:
            raise FairauditError(f"{MAX_BYTES_ENV} must be a number of bytes, got '{raw}'.") from None
    return DEFAULT_MAX_BYTES


def check_model_size(size: int, label: str, max_bytes: int | None = None) -> None:
    """Refuse empty files and files over the size limit."""
    if size == 0:
        raise ModelLoadError(f"the model file '{label}' is empty.")
    limit = max_model_bytes(max_bytes)
    if size > limit:
        raise ModelLoadError(f"the model file '{label}' is {human_size(size)}, over the {human_size(limit)} limit; "
                             f"raise {MAX_BYTES_ENV} if you trust the file.")


def check_model_file(path: Path, label: str, max_bytes: int | None = None) -> None:
    """Refuse missing paths, directories, empty files and files over the size limit."""
    if not path.exists():
        raise ModelLoadError(f"the model file '{label}' does not exist.")
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
        hint = f"; pass one of the files in it ({', '.join(inside[:3])})" if inside else ""
        raise ModelLoadError(f"'{label}' is a directory, not a model file{hint}.")
    if not path.is_file():
        raise ModelLoadError(f"'{label}' is not a regular file.")
    check_model_size(path.stat().st_size, label, max_bytes)


def detect_format(path: Path, label: str) -> str:
    """``'safetensors'``, ``'torch'`` (a ``torch.save`` file) or ``'torchscript'``, from the file's first bytes."""
    with path.open("rb") as fh:
        head = fh.read(16)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            raise ModelLoadError(f"the file '{label}' is truncated or corrupt (its zip archive is incomplete)."
                                 ) from None
        if any("/code/" in n or n.startswith("code/") or n.endswith("constants.pkl") for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        raise ModelLoadError(f"the file '{label}' is a zip archive but neither a PyTorch checkpoint nor a "
                             "TorchScript archive.")
    if len(head) > 8 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80" and _is_pickle(path):  # pickle PROTO opcode: a legacy torch.save file
        return "torch"
    if path.suffix == SIDECAR_SUFFIX:
        raise ModelLoadError(f"'{label}' is a JSON sidecar; pass the weights file next to it.")
    raise ModelLoadError(f"the file '{label}' is not a recognised model format (expected safetensors, a PyTorch "
                         "state_dict or a TorchScript archive).")


def _is_pickle(path: Path) -> bool:
    """Whether the file starts with a well-formed pickle; its opcodes are parsed, never executed."""
    try:
        with path.open("rb") as fh:
            for _ in pickletools.genops(fh):
                pass
    except Exception:  # genops raises ValueError, KeyError, EOFError... on bytes that are not a pickle
        return False
    return True


def refuse_torchscript(path: Path, label: str, allow_torchscript: bool) -> None:
    """Refuse a TorchScript archive unless the user opted in; other files pass (the loader checks them)."""
    if allow_torchscript or not path.is_file():
        return
    try:
        kind = detect_format(path, label)
    except ModelLoadError:
        return
    if kind == "torchscript":
        raise ModelLoadError(torchscript_refusal(label))


def torchscript_refusal(label: str) -> str:
    return (f"the file '{label}' is a TorchScript archive, a program that can read and write files when it is "
            f"loaded or run, so it was refused; pass {TORCHSCRIPT_FLAG} (in the app: tick '{TORCHSCRIPT_CHECKBOX}') "
            "only if you trust its author, or save its state_dict as safetensors instead.")


def read_safetensors(path: Path, label: str) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The tensors of a safetensors file and the fairaudit information embedded in its header (if any)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = fh.metadata() or {}
            state = {key: fh.get_tensor(key) for key in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"the file '{label}' is truncated or corrupt ({first_line(exc)}).") from None
    embedded = None
    if EMBEDDED_KEY in metadata:
        try:
            embedded = json.loads(metadata[EMBEDDED_KEY])
        except json.JSONDecodeError:
            raise ModelLoadError(f"the fairaudit information in the header of '{label}' is not valid JSON.") from None
    return _strip_prefixes(state), embedded if isinstance(embedded, dict) else None


def read_torch_state(path: Path, label: str) -> dict[str, torch.Tensor]:
    """The state_dict in a ``torch.save`` file, loaded with ``weights_only=True``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol ..." on a hostile file
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if found:
            raise ModelLoadError(f"the file '{label}' contains Python objects other than tensors ({found.group(1)}) "
                                 "and was refused because loading them could execute code; save model.state_dict() "
                                 "or use safetensors.") from None
        raise ModelLoadError(f"the file '{label}' is a pickle that the tensors-only loader cannot read and was "
                             "refused because loading it could execute code; save model.state_dict() with "
                             "torch.save or use safetensors.") from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, OSError... on damaged files
        raise ModelLoadError(f"the file '{label}' is truncated or corrupt ({first_line(exc)}).") from None
    return _strip_prefixes(_extract_state_dict(obj, label))


def load_torchscript(path: Path, label: str) -> nn.Module:
    """A TorchScript archive on the CPU, in eval mode.

    Loading runs the archive's ``__setstate__`` methods: call this only after
    the user opted in (see :func:`refuse_torchscript`).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecated upstream in favour of torch.export
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # the C++ loader raises RuntimeError subclasses on damaged archives
        raise ModelLoadError(f"the TorchScript archive '{label}' is corrupt or from an incompatible PyTorch "
                             f"({first_line(exc)}).") from None
    return module.eval()


def atomic_write(path: Path, write: Callable[[Path], None]) -> str:
    """Write via ``write(tmp)``, rename onto ``path`` and return the file's SHA-256.

    The temporary file sits next to ``path`` so the rename never crosses file systems.
    """
    digest: list[str] = []

    def write_and_hash(tmp: Path) -> None:
        write(tmp)
        digest.append(sha256(tmp))

    io_safety.atomic_write(path, write_and_hash, make_parent=False)
    return digest[0]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def first_line(exc: BaseException) -> str:
    """The first line of an exception message, without a trailing period (to embed in our sentences)."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def human_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    exp = min(int(math.log(n, 1024)), 4)
    return f"{n / 1024 ** exp:.1f} {'BKMGT'[exp]}B"


def _is_tensor_mapping(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _extract_state_dict(obj: Any, label: str) -> dict[str, torch.Tensor]:
    """The state_dict itself, or the one inside a training checkpoint (``{"state_dict": ..., "epoch": 3}``)."""
    if _is_tensor_mapping(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if _is_tensor_mapping(obj.get(key)):
                return dict(obj[key])
        what = f"a dict with keys {', '.join(map(str, list(obj)[:5]))}" if obj else "an empty dict"
    else:
        what = f"a {type(obj).__name__}"
    raise ModelLoadError(f"the file '{label}' holds {what}, not a state_dict (parameter names mapped to tensors).")


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _STRIPPED_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state
