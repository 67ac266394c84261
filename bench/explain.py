"""Batched Grad-CAM and Integrated Gradients vs one-image-at-a-time captum calls.

The batched path is :class:`fairaudit.explain.GradCam` /
:class:`fairaudit.explain.IntegratedGradientsExplainer` on all ``--images``
test images of ``synthetic-faces`` at once (chunked internally). The naive
path calls captum's ``LayerGradCam`` / ``IntegratedGradients`` once per
image on the same model, layer, targets and settings, upsampling each map the
same way; it runs on the first ``--loop-images`` images and its images/s is
compared with the batched one. Both produce the same maps (the largest
absolute difference is printed).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the rise of
the process's resident set above its level before the call, sampled every
2 ms (torch's CPU allocator is invisible to ``tracemalloc``).

    python bench/explain.py [--arch small_cnn] [--images 256] [--loop-images 32] [--n-steps 32] [--device auto]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import argparse
import os
import threading
import time

import torch

from fairaudit.data import load_dataset
from fairaudit.device import resolve_device
from fairaudit.explain import GradCam, IntegratedGradientsExplainer
from fairaudit.models.registry import build_model


class PeakMemory:
    """Peak extra memory of the block: CUDA allocations, or the process's resident set on CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_bytes = 0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self, base: int) -> None:
        while not self._stop.wait(0.002):
            self.peak_bytes = max(self.peak_bytes, self._rss() - base)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._thread = threading.Thread(target=self._sample, args=(self._rss(),), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._stop.set()
            self._thread.join()


def timed(fn, device: torch.device):
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return out, seconds, memory.peak_bytes


def gradcam_one_at_a_time(model, layer, x, target):
    from captum.attr import LayerAttribution, LayerGradCam

    captum_cam = LayerGradCam(model, layer)
    maps = []
    for i in range(len(x)):
        cam = captum_cam.attribute(x[i:i + 1], target=int(target[i]), relu_attributions=True)
        maps.append(LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")[:, 0])
    return torch.cat(maps)


def ig_one_at_a_time(model, x, target, n_steps):
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(model)
    return torch.cat([ig.attribute(x[i:i + 1], baselines=torch.zeros_like(x[i:i + 1]), target=int(target[i]),
                                   n_steps=n_steps).sum(1) for i in range(len(x))])


def report(name: str, n_batched: int, t_batched: float, m_batched: int, n_loop: int, t_loop: float, m_loop: int,
           diff: float) -> float:
    batched_rate, loop_rate = n_batched / t_batched, n_loop / t_loop
    ratio = batched_rate / loop_rate
    print(f"{name:22s} batched {batched_rate:9.1f} images/s (peak +{m_batched / 2**20:7.1f} MiB) | one at a time "
          f"{loop_rate:8.1f} images/s (peak +{m_loop / 2**20:6.1f} MiB) | {ratio:6.1f}× | max |Δ| {diff:.2e}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="small_cnn", help="small_cnn or resnet18")
    parser.add_argument("--images", type=int, default=256, help="images explained by the batched path")
    parser.add_argument("--loop-images", type=int, default=32, help="images explained one at a time")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--n-steps", type=int, default=32, help="Integrated Gradients steps")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = resolve_device(args.device)
    ds = load_dataset("synthetic-faces", "test", None, None, None, n_test=max(args.images, args.loop_images),
                      image_size=args.image_size)
    x = torch.stack([ds.load_input(i) for i in range(len(ds))]).to(device)
    target = torch.as_tensor(ds.targets.copy(), device=device)
    torch.manual_seed(0)
    model = build_model(args.arch, ds.num_classes, ds.input_shape).to(device).eval()
    loop_n = min(args.loop_images, len(x))
    print(f"{args.arch} on {args.image_size}-pixel synthetic faces, device {device}, torch threads "
          f"{torch.get_num_threads()}; batched: {args.images} images, one at a time: {loop_n} images")

    cam = GradCam(model)
    cam.attribute(x[:2], target[:2])  # warm-up (allocator, kernels)
    batched, t_b, m_b = timed(lambda: cam.attribute(x[:args.images], target[:args.images]), device)
    looped, t_l, m_l = timed(lambda: gradcam_one_at_a_time(model, cam.layer, x[:loop_n], target[:loop_n]), device)
    diff = (batched[:loop_n].float() - looped.float()).abs().max().item()
    gradcam_ratio = report("Grad-CAM", args.images, t_b, m_b, loop_n, t_l, m_l, diff)

    ig = IntegratedGradientsExplainer(model, n_steps=args.n_steps)
    ig.attribute(x[:2], target[:2])
    batched, t_b, m_b = timed(lambda: ig.attribute(x[:args.images], target[:args.images]), device)
    looped, t_l, m_l = timed(lambda: ig_one_at_a_time(model, x[:loop_n], target[:loop_n], args.n_steps), device)
    diff = (batched[:loop_n] - looped).abs().max().item()
    ig_ratio = report(f"Integrated Gradients×{args.n_steps}", args.images, t_b, m_b, loop_n, t_l, m_l, diff)
    print(f"speed-up: Grad-CAM {gradcam_ratio:.1f}× (target ≥ 10×), Integrated Gradients {ig_ratio:.1f}×; "
          f"IG internal batch {ig.internal_batch_size} image-steps")


if __name__ == "__main__":
    main()
