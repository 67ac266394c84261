"""Loading a model from uploaded bytes (the Streamlit file uploader)."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

from fairaudit.errors import ModelLoadError
from fairaudit.models.checkpoint_files import check_model_size
from fairaudit.models.io import load_checkpoint_file
from fairaudit.models.split import SplitModel


def load_model_bytes(data: bytes, filename: str, *, sidecar: Mapping[str, Any] | bytes | str | None = None,
                     max_bytes: int | None = None, **kwargs) -> SplitModel:
    """Load an uploaded checkpoint with the same checks as :func:`~fairaudit.models.io.load_model`.

    ``filename`` is the name the user uploaded (used in messages only); the
    bytes go to a fresh private temporary directory that is removed afterwards.
    ``sidecar`` is the uploaded ``.json`` sidecar, as a dict or as its raw
    JSON text. Other keyword arguments are passed to ``load_model``; a
    TorchScript archive is refused unless ``allow_torchscript=True``.
    """
    label = Path(filename or "upload").name or "upload"
    check_model_size(len(data), label, max_bytes)
    info = _parse_sidecar(sidecar, label)
    # Only the extension survives from the user's name, so the name cannot steer the path.
    suffix = "".join(re.findall(r"\.[A-Za-z0-9]{1,12}$", label))
    with tempfile.TemporaryDirectory(prefix="fairaudit-upload-", ignore_cleanup_errors=True) as tmp:
        path = Path(tmp) / f"model{suffix}"
        path.write_bytes(data)
        return load_checkpoint_file(path, label, sidecar=info, max_bytes=max_bytes, **kwargs)


def _parse_sidecar(sidecar: Mapping[str, Any] | bytes | str | None, label: str) -> dict | None:
    if sidecar is None or isinstance(sidecar, Mapping):
        return None if sidecar is None else dict(sidecar)
    try:
        info = json.loads(sidecar)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"the sidecar uploaded with '{label}' is not valid JSON ({exc}).") from None
    if not isinstance(info, dict):
        raise ModelLoadError(f"the sidecar uploaded with '{label}' must hold a JSON object.")
    return info
