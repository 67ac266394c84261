"""Brute-force NumPy reference of the face-recognition audit numbers (loops over probes and pairs)."""

from __future__ import annotations

import numpy as np


def embedded_with_vectors(model, ds, batch_size: int):
    """The engine's embeddings of ``ds`` (batched on the CPU) beside the reference's: ``model.g`` applied to the
    whole split at once, and each image's group code."""
    import torch

    from fairaudit.faces import embed_dataset

    emb = embed_dataset(model, ds, device="cpu", batch_size=batch_size)
    with torch.no_grad():
        v = model.g(torch.stack([ds[i][0] for i in range(len(ds))])).numpy()
    return emb, v, ds.sensitive_codes[:, 0]


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def identification(v, ids, groups, ranks=(1, 5)):
    """Per-group rank-k accuracy, mean L2 ratio and per-probe ranks, probe by probe."""
    v = unit(v)
    n = len(v)
    rank = np.zeros(n, int)
    l2 = np.full(n, np.nan)
    for p in range(n):
        scores = {}
        for q in range(n):
            if q != p:
                s = float(v[p] @ v[q])
                scores[ids[q]] = max(scores.get(ids[q], -np.inf), s)
        if ids[p] not in scores:
            continue
        true = scores[ids[p]]
        rank[p] = 1 + sum(1 for k, s in scores.items() if k != ids[p] and s > true)
        false = max(s for k, s in scores.items() if k != ids[p])
        d_true, d_false = np.sqrt(max(2 - 2 * true, 0)), np.sqrt(max(2 - 2 * false, 0))
        l2[p] = d_false / (d_true + d_false)
    out = {}
    for g in np.unique(groups):
        probes = (groups == g) & (rank > 0)
        out[int(g)] = {f"rank{k}": float(np.mean(rank[probes] <= k)) for k in ranks}
        out[int(g)]["l2_ratio"] = float(np.mean(l2[probes]))
        out[int(g)]["n_probes"] = int(probes.sum())
    return out, rank


def verification(v, ids, groups, fmr):
    """Threshold at target FMR over all impostor pairs, then per-group FNMR and within-group FMR."""
    v = unit(v).astype(np.float32)
    n = len(v)
    genuine, impostor = [], []
    for i in range(n):
        for j in range(i + 1, n):
            s = float(np.float32(v[i] @ v[j]))
            (genuine if ids[i] == ids[j] else impostor).append((s, groups[i], groups[j]))
    imp = np.sort([s for s, _, _ in impostor])[::-1]
    k = int(np.floor(fmr * len(imp)))
    t = float(np.nextafter(np.float32(imp[min(k, len(imp) - 1)]), np.float32(np.inf)))
    out = {}
    for g in np.unique(groups):
        gen = [s for s, a, b in genuine if a == g and b == g]
        wit = [s for s, a, b in impostor if a == g and b == g]
        out[int(g)] = {"fnmr": float(np.mean(np.array(gen) < t)), "fmr": float(np.mean(np.array(wit) >= t)),
                       "n_genuine": len(gen), "n_impostor": len(wit)}
    return t, out, float(np.mean(imp >= t))
