"""The reference every audit-throughput goal is measured against: the model alone on pre-loaded batches."""
from __future__ import annotations

import time

import torch

from fairaudit.device import autocast


def bare_model_seconds(model: torch.nn.Module, dataset, batch_size: int, device: torch.device) -> float:
    """Seconds for ``model(x)`` over ``dataset`` in batches already on ``device`` (no loading, no metrics).

    On CUDA the model and batches are channels_last and the clock waits for the device, as the audit
    pass does, so a ratio against it measures only what the audit adds.
    """
    batches = [torch.stack([dataset[i][0] for i in range(s, min(s + batch_size, len(dataset)))]).to(device)
               for s in range(0, len(dataset), batch_size)]
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        batches = [b.contiguous(memory_format=torch.channels_last) for b in batches]
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.inference_mode(), autocast(device):
        for b in batches:
            model(b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0
