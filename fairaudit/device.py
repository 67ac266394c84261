"""Device selection and the CUDA fast path (AMP, channels_last, large batches)."""

from __future__ import annotations

import contextlib

import torch

from fairaudit.errors import FairauditError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a concrete device; ``"auto"`` (or ``None``) picks CUDA when available."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FairauditError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu or auto.")
    if dev.type not in ("cpu", "cuda"):
        raise FairauditError(f"unsupported device {device!r}; use auto, cpu or cuda.")
    return dev


def autocast(device: torch.device):
    """Mixed precision on CUDA (bfloat16 when supported), a no-op on CPU."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def default_batch_size(device: torch.device, kind: str = "image") -> int:
    """Large batches on the GPU, cache-friendly ones on the CPU."""
    if device.type == "cuda":
        return 1024 if kind == "image" else 8192
    return 256 if kind == "image" else 4096
