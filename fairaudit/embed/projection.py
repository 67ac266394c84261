"""2-D projections of latents: t-SNE (openTSNE) and UMAP, and before/after maps on shared axes.

Latents wider than :data:`PCA_DIMS` are first reduced with PCA (the usual
preprocessing for both methods; it removes noise dimensions and makes the
neighbour search cheaper). Results are deterministic for a given ``seed``.

Shared axes for a *before* and an *after* map of the same samples:

* ``"joint"`` – one projection fitted on the concatenation of the before and
  after latents. Used when both come from the same feature extractor (FAAP:
  the frozen ``g`` on clean and on perturbed input), because then distances
  between a before point and an after point mean something.
* ``"procrustes"`` – two projections, the after map then rotated, reflected,
  scaled and shifted onto the before map (orthogonal Procrustes over the
  paired samples). Used for a retrained model, whose latent space is a
  different space: a joint fit would only separate the two clouds.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg import orthogonal_procrustes
from sklearn.decomposition import PCA

from fairaudit.errors import FairauditError
from fairaudit.optional import require

PROJECTIONS = ("tsne", "umap")
PCA_DIMS = 50
PARALLEL_FROM = 5000
JOINT, PROCRUSTES, SEPARATE = "joint", "procrustes", "separate"


def _check(latents: np.ndarray) -> np.ndarray:
    latents = np.asarray(latents, dtype=np.float32)
    if latents.ndim != 2:
        raise FairauditError(f"latents must be a 2-D array (samples × features), got shape {latents.shape}.")
    if len(latents) < 5:
        raise FairauditError(f"a projection needs at least 5 samples, got {len(latents)}.")
    if not np.isfinite(latents).all():
        raise FairauditError("the latents contain NaN or infinite values.")
    return latents


def reduce_dims(latents: np.ndarray, dims: int = PCA_DIMS, seed: int = 0) -> np.ndarray:
    """PCA to ``dims`` components when the latents are wider (unchanged otherwise)."""
    if latents.shape[1] <= dims or len(latents) <= dims:
        return latents
    return PCA(n_components=dims, random_state=seed).fit_transform(latents).astype(np.float32)


def tsne(latents: np.ndarray, perplexity: float = 30.0, seed: int = 0, n_jobs: int | None = None) -> np.ndarray:
    """t-SNE with openTSNE (FFT-accelerated gradients); scikit-learn's Barnes-Hut TSNE when openTSNE is missing.

    ``n_jobs`` defaults to all cores from :data:`PARALLEL_FROM` samples on and
    to one thread below (where thread start-up costs more than it saves).
    """
    x = reduce_dims(_check(latents), seed=seed)
    if n_jobs is None:
        n_jobs = -1 if len(x) >= PARALLEL_FROM else 1
    if perplexity <= 0:
        raise FairauditError(f"the perplexity must be > 0, got {perplexity}.")
    # Both libraries need 3·perplexity < n; cap it for small samples instead of failing.
    perplexity = float(min(perplexity, (len(x) - 1) / 3.0))
    try:
        from openTSNE import TSNE
    except ImportError:  # scikit-learn's Barnes-Hut t-SNE: slower, same objective
        from sklearn.manifold import TSNE as SklearnTSNE

        embedding = SklearnTSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                                n_jobs=n_jobs).fit_transform(x)
        return np.asarray(embedding, dtype=np.float32)
    embedding = TSNE(n_components=2, perplexity=perplexity, initialization="pca", random_state=seed,
                     n_jobs=n_jobs, verbose=False).fit(x)
    return np.asarray(embedding, dtype=np.float32)


def umap(latents: np.ndarray, n_neighbors: int = 15, seed: int = 0, min_dist: float = 0.1) -> np.ndarray:
    """UMAP (umap-learn); with a fixed seed it runs single-threaded, which makes it reproducible."""
    x = reduce_dims(_check(latents), seed=seed)
    if n_neighbors < 2:
        raise FairauditError(f"n_neighbors must be at least 2, got {n_neighbors}.")
    n_neighbors = int(min(n_neighbors, len(x) - 1))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs.*")  # "overridden to 1 by setting random_state"
        UMAP = require("umap", "UMAP maps").UMAP

        return UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed,
                    init="spectral" if len(x) > n_neighbors + 2 else "random").fit_transform(x).astype(np.float32)


def project(latents: np.ndarray, method: str = "tsne", *, perplexity: float = 30.0, n_neighbors: int = 15,
            seed: int = 0) -> np.ndarray:
    """``(N, 2)`` coordinates of ``latents`` (``N × D``) by ``method`` (``"tsne"`` or ``"umap"``)."""
    if method == "tsne":
        return tsne(latents, perplexity=perplexity, seed=seed)
    if method == "umap":
        return umap(latents, n_neighbors=n_neighbors, seed=seed)
    raise FairauditError(f"unknown projection method '{method}'; use one of: {', '.join(PROJECTIONS)}.")


def align(reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """``moving`` rotated/reflected, scaled and shifted to best match ``reference`` row by row (Procrustes)."""
    ref_mean, mov_mean = reference.mean(0), moving.mean(0)
    a, b = reference - ref_mean, moving - mov_mean
    rotation, _ = orthogonal_procrustes(b, a)
    turned = b @ rotation
    scale = float((turned * a).sum() / max((turned * turned).sum(), 1e-12))
    return (turned * scale + ref_mean).astype(np.float32)


def project_pair(before: np.ndarray, after: np.ndarray, method: str = "tsne", *, shared_axes: bool = True,
                 same_space: bool = True, perplexity: float = 30.0, n_neighbors: int = 15,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """Before and after maps of the same samples, and how their axes relate (``joint``/``procrustes``/``separate``).

    ``same_space`` says the two latent sets come from one feature extractor
    (see the module docstring); a joint fit also needs equal widths.
    """
    before, after = _check(before), _check(after)
    if len(before) != len(after):
        raise FairauditError(f"before and after need the same samples, got {len(before)} and {len(after)} rows.")
    kwargs = {"perplexity": perplexity, "n_neighbors": n_neighbors, "seed": seed}
    if before.shape == after.shape and np.array_equal(before, after):  # post-processing: the latents are unchanged
        xy = project(before, method, **kwargs)
        return xy, xy.copy(), JOINT
    if shared_axes and same_space and before.shape[1] == after.shape[1]:
        both = project(np.concatenate([before, after]), method, **kwargs)
        return both[:len(before)], both[len(before):], JOINT
    xy_before = project(before, method, **kwargs)
    xy_after = project(after, method, **kwargs)
    if shared_axes:
        return xy_before, align(xy_before, xy_after), PROCRUSTES
    return xy_before, xy_after, SEPARATE
