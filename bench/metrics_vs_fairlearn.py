"""Speed and agreement of ``audit_metrics`` against fairlearn's ``MetricFrame``.

Two timings on synthetic predictions with two sensitive attributes (2 × 4
values → 8 intersectional groups):

1. point estimates on ``--rows`` samples: ``audit_metrics(n_boot=0)`` vs a
   ``MetricFrame`` with the same ten per-group metrics plus its
   ``difference()``, ``ratio()`` and ``group_min()`` (from which every
   disparity follows);
2. bootstrap on ``--boot-rows`` samples: 1000 Poisson resamples with ours vs
   ``MetricFrame(n_boot=--fairlearn-boot)``, compared per resample (ours
   counts the whole call, fairlearn's has its point-estimate time subtracted).

It prints both speed ratios and the largest absolute difference between our
values and fairlearn's (expected ~1e-16).

    python bench/metrics_vs_fairlearn.py [--rows 1000000] [--boot-rows 200000] [--fairlearn-boot 3] [--device auto]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import argparse
import time

import numpy as np
import pandas as pd
import torch
from fairlearn.metrics import (MetricFrame, false_negative_rate, false_positive_rate, selection_rate,
                               true_negative_rate, true_positive_rate)
from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_score

from fairaudit.device import resolve_device
from fairaudit.metrics import PER_GROUP_METRICS, audit_metrics

FAIRLEARN_METRICS = {
    "base_rate": lambda y, p: float(np.mean(y)),
    "selection_rate": selection_rate,
    "accuracy": accuracy_score,
    "balanced_accuracy": balanced_accuracy_score,
    "tpr": true_positive_rate,
    "fpr": false_positive_rate,
    "fnr": false_negative_rate,
    "tnr": true_negative_rate,
    "ppv": lambda y, p: precision_score(y, p, zero_division=np.nan),
    "npv": lambda y, p: precision_score(y, p, pos_label=0, zero_division=np.nan),
}


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, scores and ``[n, 2]`` sensitive codes (2 and 4 values) with group-dependent rates."""
    rng = np.random.default_rng(seed)
    sens = np.c_[rng.integers(0, 2, n), rng.integers(0, 4, n)]
    y = (rng.random(n) < 0.3 + 0.1 * sens[:, 0] + 0.05 * sens[:, 1]).astype(np.int64)
    scores = np.clip(0.4 * y + 0.05 * sens[:, 1] + 0.6 * rng.random(n), 0.0, 1.0)
    return y, scores, sens


def fairlearn_frame(y, y_pred, sens, n_boot=None):
    sf = pd.DataFrame({"a": sens[:, 0], "b": sens[:, 1]})
    frame = MetricFrame(metrics=FAIRLEARN_METRICS, y_true=y, y_pred=y_pred, sensitive_features=sf,
                        n_boot=n_boot, ci_quantiles=[0.025, 0.975] if n_boot else None,
                        random_state=0 if n_boot else None)
    diff, ratio, low = frame.difference(), frame.ratio(), frame.group_min()
    disparities = {
        "spd": diff["selection_rate"], "dp_ratio": ratio["selection_rate"],
        "deo": diff["fnr"] + diff["fpr"], "eo_max": max(diff["tpr"], diff["fpr"]),
        "eod": diff["tpr"], "aaod": 0.5 * (diff["tpr"] + diff["fpr"]), "aed": diff["accuracy"],
        "worst_group_accuracy": low["accuracy"],
    }
    return frame, disparities


def timed(fn, repeats=1):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def max_abs_difference(report, frame, disparities) -> float:
    worst = 0.0
    for g in report.groups:
        key = (int(g["attributes"]["a"]), int(g["attributes"]["b"]))
        expected = frame.by_group.loc[key]
        worst = max(worst, max(abs(g[m] - float(expected[m])) for m in PER_GROUP_METRICS))
    return max(worst, max(abs(report.disparities[k] - float(v)) for k, v in disparities.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="samples for the point-estimate timing")
    ap.add_argument("--boot-rows", type=int, default=200_000, help="samples for the bootstrap timing")
    ap.add_argument("--n-boot", type=int, default=1000, help="our bootstrap resamples")
    ap.add_argument("--fairlearn-boot", type=int, default=3, help="MetricFrame bootstrap resamples")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, 8 intersectional groups")

    y, scores, sens = synthetic(1000)
    audit_metrics(y, scores=scores, sensitive=sens, n_boot=10, device=device)  # warm-up: kernels, allocator

    y, scores, sens = synthetic(args.rows)
    y_pred = (scores >= 0.5).astype(np.int64)
    kw = dict(scores=scores, sensitive=sens, sensitive_names=["a", "b"], device=device)
    ours_s, report = timed(lambda: audit_metrics(y, n_boot=0, **kw), repeats=3)
    theirs_s, (frame, disparities) = timed(lambda: fairlearn_frame(y, y_pred, sens))
    print(f"\npoint estimates, {args.rows:,} rows")
    print(f"  ours      {ours_s * 1e3:9.1f} ms")
    print(f"  fairlearn {theirs_s * 1e3:9.1f} ms   (MetricFrame + difference/ratio/group_min)")
    print(f"  speed-up  {theirs_s / ours_s:9.1f}x")
    print(f"  max |ours - fairlearn| over {len(report.groups)} groups x {len(PER_GROUP_METRICS)} metrics "
          f"and {len(disparities)} disparities: {max_abs_difference(report, frame, disparities):.2e}")

    y, scores, sens = synthetic(args.boot_rows, seed=1)
    y_pred = (scores >= 0.5).astype(np.int64)
    kw = dict(scores=scores, sensitive=sens, sensitive_names=["a", "b"], device=device)
    boot_s, boot = timed(lambda: audit_metrics(y, n_boot=args.n_boot, **kw))
    cells_s, cells = timed(lambda: audit_metrics(y, n_boot=args.n_boot, bootstrap="cells", **kw))
    fl_point_s, _ = timed(lambda: fairlearn_frame(y, y_pred, sens))
    fl_boot_s, _ = timed(lambda: fairlearn_frame(y, y_pred, sens, n_boot=args.fairlearn_boot))
    # Ours per resample includes the point estimate (conservative); fairlearn's has it subtracted.
    ours_per = boot_s / args.n_boot
    cells_per = cells_s / args.n_boot
    theirs_per = max(fl_boot_s - fl_point_s, 1e-9) / args.fairlearn_boot
    print(f"\nbootstrap, {args.boot_rows:,} rows")
    print(f"  ours (row weights)  {args.n_boot} resamples in {boot_s:7.2f} s -> {ours_per * 1e3:9.3f} ms/resample")
    print(f"  ours (cell counts)  {args.n_boot} resamples in {cells_s:7.2f} s -> {cells_per * 1e3:9.3f} ms/resample")
    print(f"  fairlearn           {args.fairlearn_boot} resamples in {fl_boot_s:7.2f} s -> "
          f"{theirs_per * 1e3:9.1f} ms/resample")
    print(f"  speed-up per resample: {theirs_per / ours_per:,.0f}x (row weights), "
          f"{theirs_per / cells_per:,.0f}x (cell counts)")
    print(f"  spd = {boot.disparities['spd']:.4f}, 95% CI rows {np.round(boot.ci['spd'], 4).tolist()}, "
          f"cells {np.round(cells.ci['spd'], 4).tolist()}")


if __name__ == "__main__":
    main()
