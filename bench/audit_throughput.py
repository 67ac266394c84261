"""Images per second of the audit pass vs a bare ``model(x)`` loop over pre-loaded tensors.

The audit pass streams samples from the dataset (rendered/decoded lazily by
DataLoader workers), runs the model under inference mode (AMP + channels-last on
CUDA) and collects probabilities, labels and groups. The reference is the
fastest possible loop: the same batches already in device memory, only
``model(x)``. Goal: ratio ≥ 0.8.

    python bench/audit_throughput.py [--n 4096] [--arch resnet18] [--device auto]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import argparse
import time

import torch

from bare_loop import bare_model_seconds
from fairaudit.audit import predict
from fairaudit.data import load_dataset
from fairaudit.device import autocast, default_batch_size, resolve_device
from fairaudit.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096, help="test images")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--workers", type=int)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    device = resolve_device(args.device)
    ds = load_dataset("synthetic-faces", "test", n_test=args.n, image_size=args.image_size)
    bs = args.batch_size or default_batch_size(device, "image")
    model = build_model(args.arch, ds.num_classes, ds.input_shape).to(device).eval()
    print(f"device {device}, {args.arch}, {len(ds)} images of {ds.input_shape}, batch {bs}, "
          f"torch threads {torch.get_num_threads()}")

    if device.type == "cuda":  # cuDNN autotuning and allocator warm-up, outside both timings
        with torch.inference_mode(), autocast(device):
            for _ in range(3):
                model(torch.rand(bs, *ds.input_shape, device=device))
        torch.cuda.synchronize()

    t0 = time.perf_counter()
    preds = predict(model, ds, device=device, batch_size=bs, num_workers=args.workers)
    audit_s = time.perf_counter() - t0

    bare_s = bare_model_seconds(model, ds, bs, device)

    audit_ips, bare_ips = len(preds) / audit_s, len(ds) / bare_s
    print(f"audit pass : {audit_ips:9.1f} img/s ({audit_s:.2f} s, includes lazy rendering)")
    print(f"bare loop  : {bare_ips:9.1f} img/s ({bare_s:.2f} s, tensors pre-loaded on {device})")
    print(f"ratio audit/bare = {audit_ips / bare_ips:.2f} (goal >= 0.8)")


if __name__ == "__main__":
    main()
