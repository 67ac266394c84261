"""2-D projection speed: openTSNE and UMAP against scikit-learn's TSNE on the same latents.

Latents: a 64-D Gaussian mixture (10 clusters, like a trained model's class-
and group-structured features), 10 000 points by default. Every method gets
the same PCA-free input and its library's default optimisation length.

    python bench/embed.py [--n 10000] [--dims 64] [--threads 2] [--skip-sklearn]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def mixture(n: int, dims: int, clusters: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(clusters, dims))
    return (centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, dims))).astype(np.float32)


def timed(name: str, fn) -> tuple[float, float]:
    """Wall-clock and CPU seconds of ``fn()``; the CPU seconds of this process are printed too, because on a shared
    machine they are the steadier measure of the work done."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert out.shape[1] == 2
    print(f"{name:<26} {seconds:8.2f} s wall {cpu:8.2f} s CPU", flush=True)
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-sklearn", action="store_true", help="only time openTSNE and UMAP")
    args = parser.parse_args()
    x = mixture(args.n, args.dims)
    print(f"{args.n:,} latents × {args.dims} dims, {args.threads} threads", flush=True)

    from openTSNE import TSNE
    from sklearn.manifold import TSNE as SkTSNE
    from umap import UMAP

    # UMAP compiles its numba kernels on first use: warm them up on a small input, outside the timing.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        UMAP(n_neighbors=15, random_state=0).fit_transform(x[:500])
        UMAP(n_neighbors=15, random_state=None, n_jobs=args.threads).fit_transform(x[:500])
    times = {
        "openTSNE (FFT)": timed("openTSNE (FFT)", lambda: np.asarray(
            TSNE(perplexity=30, initialization="pca", random_state=0, n_jobs=args.threads).fit(x))),
        # Seeded as fairaudit runs it (reproducible maps; umap-learn then uses one thread).
        "UMAP": timed("UMAP", lambda: UMAP(n_neighbors=15, random_state=0).fit_transform(x)),
        # For reference: without a seed umap-learn runs its parallel (not reproducible) code path.
        "UMAP unseeded": timed("UMAP unseeded (parallel)", lambda: UMAP(
            n_neighbors=15, random_state=None, n_jobs=args.threads).fit_transform(x)),
    }
    if args.skip_sklearn:
        return
    sk = timed("scikit-learn TSNE (BH)", lambda: SkTSNE(perplexity=30, init="pca", random_state=0,
                                                        n_jobs=args.threads).fit_transform(x))
    for name, (seconds, cpu) in times.items():
        print(f"{name}: {seconds / sk[0]:.3f} × scikit-learn's wall time ({sk[0] / seconds:.1f}× faster), "
              f"{cpu / sk[1]:.3f} × its CPU time ({sk[1] / cpu:.1f}× faster)")


if __name__ == "__main__":
    main()
