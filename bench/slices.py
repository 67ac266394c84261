"""Speed of ``find_slices`` against a pandas groupby loop over slices and resamples.

Synthetic predictions: ``--rows`` rows, ``--attrs`` binary attributes, depth ``--depth``
(20 attributes at depth 2: 40 + 190·4 = 800 slices), ``--boot`` Poisson-bootstrap resamples,
metric accuracy. Timed:

1. ``find_slices(method="cells")`` (the default) and ``find_slices(method="rows")`` (per-row
   Poisson weights and membership-matrix products), each the whole call (encoding, counts,
   tests, BH, intervals);
2. pandas: for the point estimate and for each resample (per-row Poisson(1) weights), one
   ``groupby(...).sum()`` per attribute combination gives every slice's weighted counts, and the
   complement follows from the totals. It is timed on ``--pandas-boot`` resamples and the time
   per resample extrapolated linearly to ``--boot`` (the loop does the same work each resample).

It also checks that pandas' point estimates of the gaps equal ours (largest difference printed).

    python bench/slices.py [--rows 200000] [--attrs 20] [--depth 2] [--boot 1000] [--pandas-boot 3]
                           [--threads 2] [--device cpu]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import argparse
import itertools
import json
import time

import numpy as np
import pandas as pd
import torch

from fairaudit.slices import find_slices


def _pandas_gaps(frame: pd.DataFrame, columns: list[str], depth: int, weights: np.ndarray | None) -> dict:
    w = np.ones(len(frame)) if weights is None else weights
    work = frame[columns].assign(w=w, we=w * frame["correct"].to_numpy())
    total_w, total_we = work["w"].sum(), work["we"].sum()
    out = {}
    for k in range(1, depth + 1):
        for combo in itertools.combinations(columns, k):
            sums = work.groupby(list(combo), sort=False)[["w", "we"]].sum()
            for key, (sw, swe) in zip(sums.index, sums.to_numpy()):
                key = key if isinstance(key, tuple) else (key,)
                out[tuple(zip(combo, map(str, key)))] = swe / sw - (total_we - swe) / (total_w - sw)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--attrs", type=int, default=20)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--pandas-boot", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    attrs = pd.DataFrame({f"a{i}": rng.integers(0, 2, args.rows) for i in range(args.attrs)})
    y = rng.integers(0, 2, args.rows)
    correct = rng.random(args.rows) < 0.85
    yhat = np.where(correct, y, 1 - y)

    figures = {"rows": args.rows, "attrs": args.attrs, "depth": args.depth, "boot": args.boot,
               "threads": args.threads, "device": args.device}
    reports = {}
    for method in ("cells", "rows"):
        find_slices((y[:2000], yhat[:2000]), attrs.iloc[:2000], max_depth=1, min_size=1, n_boot=10,
                    method=method, device=args.device)  # warm-up
        start = time.perf_counter()
        reports[method] = find_slices((y, yhat), attrs, metric="accuracy", max_depth=args.depth, min_size=1,
                                      n_boot=args.boot, seed=0, method=method, device=args.device)
        figures[f"seconds_{method}"] = time.perf_counter() - start
    figures["n_slices_tested"] = reports["cells"].n_slices_tested

    frame = attrs.astype(str).assign(correct=correct.astype(np.float64))
    columns = list(attrs.columns)
    start = time.perf_counter()
    point = _pandas_gaps(frame, columns, args.depth, None)
    figures["pandas_point_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.pandas_boot):
        _pandas_gaps(frame, columns, args.depth, rng.poisson(1.0, args.rows).astype(np.float64))
    per_resample = (time.perf_counter() - start) / max(1, args.pandas_boot)
    figures["pandas_seconds_per_resample"] = per_resample
    figures["pandas_seconds_extrapolated"] = figures["pandas_point_seconds"] + per_resample * args.boot
    ours = {tuple(s["slice"].items()): s["gap"] for s in reports["cells"].slices}
    figures["max_gap_difference"] = max(abs(ours[k] - v) for k, v in point.items() if k in ours)
    figures["slices_compared"] = sum(k in ours for k in point)
    for method in ("cells", "rows"):
        figures[f"speedup_{method}"] = figures["pandas_seconds_extrapolated"] / figures[f"seconds_{method}"]

    print(f"{args.rows:,} rows × {args.attrs} binary attributes, depth {args.depth} "
          f"({figures['n_slices_tested']} slices), {args.boot} resamples, {args.threads} threads on {args.device}")
    for method in ("cells", "rows"):
        print(f"  find_slices(method={method!r}): {figures[f'seconds_{method}']:.2f} s  "
              f"({figures[f'speedup_{method}']:.0f}× the pandas loop)")
    print(f"  pandas groupby loop: {figures['pandas_point_seconds']:.2f} s point estimate + "
          f"{per_resample:.2f} s per resample (timed on {args.pandas_boot}) → "
          f"{figures['pandas_seconds_extrapolated']:.0f} s for {args.boot}")
    print(f"  largest |gap difference| vs pandas over {figures['slices_compared']} slices: "
          f"{figures['max_gap_difference']:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
