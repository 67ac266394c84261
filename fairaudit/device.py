"""Device selection and the CUDA fast path (AMP, channels_last, large batches)."""

from __future__ import annotations

import contextlib

import torch

from fairaudit.errors import FairauditError


DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def check_device_name(device: str | torch.device | None) -> None:
    """Refuse anything but ``auto``, ``cpu``, ``cuda`` and ``cuda:N``, with one sentence listing them."""
    if device is None or isinstance(device, torch.device) and device.type in ("cpu", "cuda"):
        return
    name = str(device)
    kind, colon, index = name.partition(":")
    if name not in ("auto", "cpu") and not (kind == "cuda" and (not colon or index.isdigit())):
        raise FairauditError(f"unsupported device {name!r}; use {DEVICE_CHOICES}.")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a concrete device; ``"auto"`` (or ``None``) picks CUDA when available."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device_name(device)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FairauditError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu or auto.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise FairauditError(f"device '{dev}' was requested but this machine has {torch.cuda.device_count()} "
                             "CUDA GPU(s), numbered from 0.")
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
