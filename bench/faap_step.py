"""Cost of one FAAP training step (Algorithm 1) on the demo model: batched vs a per-sample loop.

The batched step perturbs, encodes and classifies the whole batch at once
(what :func:`fairaudit.mitigation.faap.faap_step` does inside the shared
trainer); the naive step runs the generator and the frozen deployed model one
image at a time and stacks the results, then takes the same D and G updates.
Both compute the same losses (checked), so the ratio is the pure cost of
batching. Peak memory: on CPU, how far the steps raise the process's peak
resident set above its level after setup (each path runs in a fresh child
process, so the two peaks do not mix; torch's CPU allocator is invisible to
``tracemalloc``); on CUDA, ``max_memory_allocated``. On CUDA the batched step is also timed with and without AMP.

    python bench/faap_step.py [--batch-size 64] [--steps 5] [--device auto]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import argparse
import contextlib
import multiprocessing as mp
import resource
import time

import torch
from torch import nn

from fairaudit.data import load_dataset
from fairaudit.demo import get_demo_model
from fairaudit.device import autocast, resolve_device
from fairaudit.mitigation.faap import FaapConfig, FaapModel, PerturbationGenerator, SensitiveDiscriminator, faap_step
from fairaudit.train.variants import group_ids


def _setup(batch_size: int, device: torch.device, seed: int = 0):
    deployed, _ = get_demo_model("synthetic-faces", device="cpu")
    deployed = deployed.to(device).requires_grad_(False).eval()
    ds = load_dataset("synthetic-faces", "val")
    items = [ds[i] for i in range(batch_size)]
    x = torch.stack([it[0] for it in items]).to(device)
    y = torch.stack([it[1] for it in items]).to(device)
    s = torch.stack([it[2] for it in items]).to(device)
    cfg = FaapConfig()
    torch.manual_seed(seed)
    generator = PerturbationGenerator(3, cfg.generator_width, cfg.generator_blocks, cfg.epsilon).to(device)
    model = FaapModel(generator, deployed).to(device).train()
    discriminator = SensitiveDiscriminator(128, 2, cfg.discriminator_hidden).to(device)
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr_discriminator)
    g_opt = torch.optim.Adam(generator.parameters(), lr=cfg.lr_generator)
    return cfg, model, discriminator, d_opt, g_opt, (x, y, s)


def naive_step(discriminator, d_opt, alpha: float, beta: float):
    """Algorithm 1 with the perturbation and the deployed model applied one sample at a time."""
    ce = nn.functional.cross_entropy

    def step(model: FaapModel, batch):
        x, y, s = batch
        z = group_ids(s, [2])
        r = torch.cat([model.g(x[i:i + 1]) for i in range(len(x))])
        d_opt.zero_grad(set_to_none=True)
        ce(discriminator(r.detach()), z).backward()
        d_opt.step()
        logits_z = discriminator(torch.cat([r[i:i + 1] for i in range(len(r))]))
        log_p = torch.log_softmax(logits_z.float(), 1)
        entropy = -(log_p.exp() * log_p).sum(1).mean()
        logits_y = torch.cat([model.f(r[i:i + 1]) for i in range(len(r))])
        return -ce(logits_z.float(), z) - alpha * entropy + beta * ce(logits_y.float(), y)

    return step


def _time(path: str, batch_size: int, steps: int, device: torch.device, amp: bool) -> dict:
    cfg, model, disc, d_opt, g_opt, batch = _setup(batch_size, device)
    step = (faap_step(disc, d_opt, cfg.alpha, cfg.beta, [2]) if path == "batched"
            else naive_step(disc, d_opt, cfg.alpha, cfg.beta))
    ctx = autocast(device) if amp else contextlib.nullcontext()

    def one():
        with ctx:
            out = step(model, batch)
        loss = out[0] if isinstance(out, tuple) else out
        g_opt.zero_grad(set_to_none=True)
        loss.backward()
        g_opt.step()

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # after setup, before any step
    one()  # warm-up (allocator, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline)
    return {"path": path, "amp": amp, "seconds": seconds, "images_per_s": batch_size / seconds,
            "peak_mb": peak / 2**20}


def _child(queue, *args):
    torch.set_num_threads(args[-1])
    queue.put(_time(*args[:-1]))


def measure(path: str, batch_size: int, steps: int, device: torch.device, amp: bool = False) -> dict:
    if device.type == "cuda":
        return _time(path, batch_size, steps, device, amp)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, path, batch_size, steps, device, amp, torch.get_num_threads()))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def check_same_loss(batch_size: int, device: torch.device) -> float:
    """Largest difference between the batched and per-sample losses on the same state."""
    cfg, model, disc, d_opt, _, batch = _setup(min(batch_size, 16), device)
    state = {k: v.clone() for k, v in disc.state_dict().items()}
    batched = float(faap_step(disc, d_opt, cfg.alpha, cfg.beta, [2])(model, batch)[0].detach())
    disc.load_state_dict(state)
    d_opt = torch.optim.Adam(disc.parameters(), lr=cfg.lr_discriminator)
    naive = float(naive_step(disc, d_opt, cfg.alpha, cfg.beta)(model, batch).detach())
    return abs(batched - naive)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    get_demo_model("synthetic-faces", device=device)  # train and cache it once, outside the timings
    print(f"device {device}, batch {args.batch_size}, {args.steps} timed steps, threads {torch.get_num_threads()}")
    print(f"batched vs per-sample loss difference: {check_same_loss(args.batch_size, device):.2e}")
    batched = measure("batched", args.batch_size, args.steps, device)
    naive = measure("naive", args.batch_size, args.steps, device)
    rows = [batched, naive]
    if device.type == "cuda":
        rows.append(measure("batched", args.batch_size, args.steps, device, amp=True))
    for r in rows:
        print(f"{r['path']:8s} amp={str(r['amp']):5s} {r['seconds'] * 1000:9.1f} ms/step "
              f"{r['images_per_s']:9.1f} images/s  peak {r['peak_mb']:8.1f} MB")
    print(f"speed-up batched / per-sample: {naive['seconds'] / batched['seconds']:.1f}x; "
          f"peak memory ratio batched / per-sample: {batched['peak_mb'] / naive['peak_mb']:.2f}")
    if device.type == "cuda":
        print(f"AMP speed-up: {batched['seconds'] / rows[2]['seconds']:.2f}x")


if __name__ == "__main__":
    main()
