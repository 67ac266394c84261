"""Face-recognition audits per group: identification, verification and the gallery's composition.

Everything here works on the embeddings of one dataset split (:func:`embed_dataset`: the model's ``g`` run
batch by batch on the device, each vector scaled to unit length), so similarity is the cosine, a dot product.
Comparisons are streamed in blocks of probes, so memory stays bounded however many images there are.

**Identification** (:func:`identify`), closed set with a leave-one-out gallery: every image is a probe once,
searched against all other images. An identity's score is its best cosine to the probe; the probe's *rank* is
1 + the number of other identities scoring higher than its own. Rank-k accuracy is the share of probes of a
group ranked k or better (rank-1: the nearest image shows the same person). Probes whose person has no other
image cannot be found and are not counted. Intervals: Poisson bootstrap over probes.

The **error ratio** of a group is its error over the best group's, ``(1 − acc_g) / (1 − acc_best)``: with two
groups, women and men, and men best, this is the ``(1 − acc_F) / (1 − acc_M)`` of the face-recognition
literature; 1 is parity, 2 means twice the misses. The **L2 ratio** of a probe is
``‖v_p − v_false‖ / (‖v_p − v_true‖ + ‖v_p − v_false‖)``, with ``v_true`` the nearest image of the probe's own
person and ``v_false`` the nearest image of anyone else: above 0.5 the right person is nearer, and the closer
to 1 the larger the safety margin; it is averaged per group.

**Verification** (:func:`verify`): every pair of images is compared once. Genuine pairs show the same person,
impostor pairs two different people. One global threshold ``t`` is chosen so that the false-match rate over
*all* impostor pairs is at most the target (e.g. 1e-3): ``t`` lies just above the ``(⌊target·M⌋ + 1)``-th
highest of the ``M`` impostor scores, and a pair is a match when its score is ≥ ``t``. At that threshold, per
group, the false non-match rate (FNMR) is the share of the group's genuine pairs below ``t`` and the false-match
rate (FMR) the share of impostor pairs *within* the group (both people in it, as demographic evaluations of
face recognition count them) at or above ``t``. The worst-to-best ratio of each rate over the groups says how
unequal they are. Intervals: bootstrap over identities (each identity's pairs and errors resampled together,
since pairs sharing a person are not independent).

**Gallery composition** (:func:`gallery_sweep`): galleries of a fixed size drawn from the split, in which one
group's share of the identities (or, with the number of identities fixed, of the images per identity) goes from
high to low; the leave-one-out rank-1 of every group is measured in each, over several seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fairaudit.device import resolve_device
from fairaudit.errors import FairauditError
from fairaudit.metrics.bootstrap import make_generator, percentile_interval

__all__ = ["Embeddings", "Identification", "Verification", "embed_dataset", "embeddings_from_arrays",
           "identify", "verify", "gallery_sweep", "ID_SHARES", "IMAGE_SHARES"]

ID_SHARES = (0.9, 0.7, 0.5, 0.3, 0.1)  # the varied group's share of the gallery identities (9:1 … 1:9)
IMAGE_SHARES = (0.8, 0.7, 0.5, 0.3, 0.2)  # its share of the gallery images (8:2 … 2:8), identities fixed
BLOCK_ELEMENTS = 1 << 24  # similarities held at once (probes × gallery)
SCORE_BINS = 400  # histogram bins of the cosine over [-1, 1] (score distributions and DET curves)


# ---------------------------------------------------------------------------- embeddings

@dataclass
class Embeddings:
    """Unit-length embeddings of a split with each sample's identity and group (all tensors on one device)."""

    vectors: torch.Tensor  # (N, D) float32, unit rows
    identities: torch.Tensor  # (N,) int64, 0..n_ids-1
    groups: torch.Tensor  # (N,) int64, 0..G-1
    group_names: list[str]
    indices: np.ndarray  # the dataset index of every row

    @property
    def n_groups(self) -> int:
        return len(self.group_names)

    def subset(self, rows: torch.Tensor | np.ndarray) -> "Embeddings":
        rows = torch.as_tensor(rows, dtype=torch.int64, device=self.vectors.device)
        _, ids = torch.unique(self.identities[rows], return_inverse=True)
        return Embeddings(self.vectors[rows], ids, self.groups[rows], self.group_names,
                          self.indices[rows.cpu().numpy()])


def _group_names(dataset, codes: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Group index per row of the ``(N, k)`` sensitive codes, and readable names (values, joined with ' & ')."""
    distinct, inverse = np.unique(codes, axis=0, return_inverse=True)
    names = []
    for row in distinct:
        labels = []
        for attr, code in zip(dataset.sensitive, row):
            values = dataset.value_names.get(attr, [])
            labels.append(str(values[code]) if 0 <= code < len(values) else f"{attr}={code}")
        names.append(" & ".join(labels))
    return inverse.reshape(-1).astype(np.int64), names


def check_identity_dataset(dataset) -> None:
    if not hasattr(dataset, "identities"):
        raise FairauditError(f"dataset '{dataset.name}' has no identities; face-recognition audits need photos "
                             "grouped by person (synthetic-identities or identity-folders).")


@torch.no_grad()
def embed_dataset(model, dataset, *, device="auto", batch_size: int = 256,
                  progress: Callable[[int, int], None] | None = None) -> Embeddings:
    """Run ``model.g`` over ``dataset`` in batches; a model whose ``g`` gives no per-image vector is refused."""
    from fairaudit.audit.inference import iterate_batches
    from fairaudit.models.io import features_available

    check_identity_dataset(dataset)
    if not features_available(model) or not hasattr(model, "g"):
        raise FairauditError("the model exposes no embedding (no feature extractor g), so faces cannot be compared; "
                             "use a checkpoint built by fairaudit or a TorchScript module with a g submodule.")
    device = resolve_device(device)
    model = model.to(device).eval()
    chunks, rows, done = [], [], 0
    for x, _, _, idx in iterate_batches(dataset, batch_size, device):
        out = model.g(x.to(device))
        if out.ndim != 2 or out.shape[1] < 2:
            raise FairauditError(f"the model's feature extractor g gives outputs of shape {tuple(out.shape[1:])}, "
                                 "not one embedding vector per image, so it cannot be used for face recognition.")
        chunks.append(F.normalize(out.float(), dim=1))
        rows.append(idx.numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx))
        done += len(x)
        if progress:
            progress(done, len(dataset))
    indices = np.concatenate(rows)
    groups, names = _group_names(dataset, dataset.sensitive_codes[indices])
    return Embeddings(torch.cat(chunks), torch.as_tensor(dataset.identities[indices], device=device),
                      torch.as_tensor(groups, device=device), names, indices)


def embeddings_from_arrays(vectors, identities, groups, group_names: Sequence[str], device="auto") -> Embeddings:
    """:class:`Embeddings` of given arrays (normalised here), e.g. of an external system's templates."""
    device = resolve_device(device)
    v = F.normalize(torch.as_tensor(np.asarray(vectors), dtype=torch.float32, device=device), dim=1)
    return Embeddings(v, torch.as_tensor(np.asarray(identities), dtype=torch.int64, device=device),
                      torch.as_tensor(np.asarray(groups), dtype=torch.int64, device=device), list(group_names),
                      np.arange(len(v)))


def _check_groups(emb: Embeddings) -> None:
    present = torch.unique(emb.groups).numel()
    if present < 2:
        only = emb.group_names[int(emb.groups[0])] if len(emb.groups) else "none"
        raise FairauditError(f"only one group ({only}) is present, so nothing can be compared; choose a sensitive "
                             "attribute with at least two values in the data.")


# ---------------------------------------------------------------------------- identification

@dataclass
class Identification:
    """Per-probe results of the leave-one-out search and their per-group summary (see :func:`identify`)."""

    ranks: tuple[int, ...]
    rank: np.ndarray  # (N,) rank of the true identity (0: no other image of the person, not a probe)
    nearest: np.ndarray  # (N,) row of the nearest other image
    l2_ratio: np.ndarray  # (N,) NaN where not a probe
    groups: np.ndarray
    group_names: list[str]
    indices: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.summary

    def failed(self, group: str, limit: int = 12) -> list[tuple[int, int]]:
        """``(probe index, nearest wrong index)`` dataset pairs of the group's probes missed at rank 1."""
        g = self.group_names.index(group)
        rows = np.flatnonzero((self.groups == g) & (self.rank > 1))[:limit]
        return [(int(self.indices[r]), int(self.indices[self.nearest[r]])) for r in rows]


def _block(n_rows: int, n_cols: int) -> int:
    return max(1, min(n_rows, BLOCK_ELEMENTS // max(n_cols, 1)))


@torch.no_grad()
def _search(emb: Embeddings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Leave-one-out search of every row: rank of the true identity, nearest other row, cosines of the nearest
    genuine and the nearest impostor image."""
    v, ids = emb.vectors, emb.identities
    n, n_ids = len(v), int(ids.max()) + 1 if len(ids) else 0
    rank = torch.zeros(n, dtype=torch.int64, device=v.device)
    nearest = torch.zeros(n, dtype=torch.int64, device=v.device)
    best_true = torch.full((n,), -math.inf, device=v.device)
    best_false = torch.full((n,), -math.inf, device=v.device)
    step = _block(n, max(n, n_ids))
    for start in range(0, n, step):
        rows = torch.arange(start, min(start + step, n), device=v.device)
        sims = v[rows] @ v.T
        sims[torch.arange(len(rows), device=v.device), rows] = -math.inf  # leave the probe out
        per_id = torch.full((len(rows), n_ids), -math.inf, device=v.device)
        per_id.scatter_reduce_(1, ids.expand(len(rows), n), sims, reduce="amax")
        true = per_id.gather(1, ids[rows, None]).squeeze(1)
        per_id.scatter_(1, ids[rows, None], -math.inf)
        rank[rows] = 1 + (per_id > true[:, None]).sum(1)
        nearest[rows] = sims.argmax(1)
        best_true[rows], best_false[rows] = true, per_id.max(1).values
    probe = torch.isfinite(best_true)
    rank[~probe] = 0
    return rank, nearest, best_true, best_false


def _poisson_replicates(n: int, n_boot: int, seed: int, device) -> torch.Tensor:
    generator = make_generator(seed, device)
    return torch.poisson(torch.ones(n_boot, n, device=device), generator=generator)


def _interval(replicates: torch.Tensor, level: float) -> list[list[float | None]]:
    """Per-column ``[low, high]`` of replicates ``(B, G)``; ``None`` where every replicate is undefined."""
    out = percentile_interval(replicates, level).T.cpu().numpy()
    return [[None if not np.isfinite(x) else float(x) for x in pair] for pair in out]


def _ratio_to_best(acc: torch.Tensor) -> torch.Tensor:
    """``(1 − acc_g) / (1 − max acc)`` along the last axis (NaN when the best group makes no error)."""
    err = 1.0 - acc
    best = err.nan_to_num(nan=math.inf).amin(-1, keepdim=True)
    return torch.where(best > 0, err / best, torch.full_like(err, math.nan))


def identify(emb: Embeddings, ranks: Sequence[int] = (1, 5), *, n_boot: int = 1000, level: float = 0.95,
             seed: int = 0) -> Identification:
    """Leave-one-out identification per group (see the module docstring); ``ranks`` are the k of rank-k."""
    ranks = tuple(sorted({int(k) for k in ranks}))
    if not ranks or ranks[0] < 1:
        raise FairauditError("ranks must be whole numbers ≥ 1, e.g. 1,5.")
    _check_groups(emb)
    rank, nearest, best_true, best_false = _search(emb)
    probe = rank > 0
    if not bool(probe.any()):
        raise FairauditError("every identity has a single image, so no probe has a match in the gallery; "
                             "identification needs at least two images of some people.")
    d_true = torch.sqrt((2 - 2 * best_true).clamp_min(0))
    d_false = torch.sqrt((2 - 2 * best_false).clamp_min(0))
    l2 = torch.where(probe, d_false / (d_true + d_false).clamp_min(1e-12), torch.full_like(d_true, math.nan))
    G = emb.n_groups
    member = F.one_hot(emb.groups, G).double() * probe[:, None].double()  # (N, G) probe of group g
    weights = _poisson_replicates(len(rank), n_boot, seed, rank.device).double() if n_boot else None
    groups_out: dict[str, dict[str, Any]] = {name: {} for name in emb.group_names}
    n_probes = member.sum(0)
    acc_by_k, reps_by_k = {}, {}
    for k in ranks:
        hit = ((rank >= 1) & (rank <= k)).double()
        acc = (hit[:, None] * member).sum(0) / n_probes
        acc_by_k[k] = acc
        if weights is not None:
            reps_by_k[k] = (weights @ (hit[:, None] * member)) / (weights @ member)
    l2_sum = (l2.double().nan_to_num(0.0)[:, None] * member).sum(0)
    for g, name in enumerate(emb.group_names):
        entry = groups_out[name]
        entry["n_probes"] = int(n_probes[g])
        entry["n_identities"] = int(torch.unique(emb.identities[(emb.groups == g) & probe]).numel())
        for k in ranks:
            entry[f"rank{k}"] = _num(acc_by_k[k][g])
        entry["ci"] = {f"rank{k}": _interval(reps_by_k[k], level)[g] for k in ranks} if weights is not None else {}
        entry["l2_ratio"] = _num(l2_sum[g] / n_probes[g])
    error = _ratio_to_best(acc_by_k[1])
    best = int(torch.nan_to_num(acc_by_k[1], nan=-1).argmax())
    ratio = {"best_group": emb.group_names[best], "per_group": {n: _num(error[g]) for g, n in
                                                              enumerate(emb.group_names)}}
    finite = error[torch.isfinite(error)]
    ratio["max"] = _num(finite.max()) if finite.numel() else None
    if weights is not None:
        reps = _ratio_to_best(reps_by_k[1])
        ratio["ci"] = {n: c for n, c in zip(emb.group_names, _interval(reps, level))}
        worst = torch.where(torch.isnan(reps), torch.full_like(reps, -math.inf), reps).amax(1)
        worst[~torch.isfinite(worst)] = math.nan
        ratio["max_ci"] = _interval(worst[:, None], level)[0]
    summary = {"ranks": list(ranks), "groups": groups_out, "error_ratio": ratio,
               "n_probes": int(probe.sum()), "n_images": len(rank),
               "n_identities": int(torch.unique(emb.identities).numel()), "bootstrap": int(n_boot), "level": level}
    return Identification(ranks, rank.cpu().numpy(), nearest.cpu().numpy(), l2.cpu().numpy(),
                          emb.groups.cpu().numpy(), list(emb.group_names), emb.indices, summary)


def _num(x) -> float | None:
    value = float(x)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------- verification

@dataclass
class Verification:
    """Threshold, per-group rates with intervals, and score histograms (see :func:`verify`)."""

    summary: dict[str, Any]
    edges: np.ndarray  # (bins + 1,) cosine bin edges
    genuine_hist: np.ndarray  # (G, bins) genuine pair counts per group
    impostor_hist: np.ndarray  # (G, bins) within-group impostor pair counts

    def to_dict(self) -> dict[str, Any]:
        return self.summary

    def det(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """``(fmr, fnmr)`` of group ``g`` at every bin edge used as threshold (from the histograms)."""
        gen, imp = self.genuine_hist[g], self.impostor_hist[g]
        fnmr = np.concatenate([[0.0], np.cumsum(gen)]) / max(gen.sum(), 1)
        fmr = np.concatenate([np.cumsum(imp[::-1])[::-1], [0.0]]) / max(imp.sum(), 1)
        return fmr, fnmr


def _pair_blocks(emb: Embeddings):
    """Blocks of the upper triangle: ``(rows, sims, genuine, impostor)`` with masks of the pairs i < j."""
    v, ids = emb.vectors, emb.identities
    n = len(v)
    step = _block(n, n)
    cols = torch.arange(n, device=v.device)
    for start in range(0, n, step):
        rows = torch.arange(start, min(start + step, n), device=v.device)
        sims = v[rows] @ v.T
        upper = cols[None, :] > rows[:, None]
        same = ids[rows, None] == ids[None, :]
        yield rows, sims, upper & same, upper & ~same


@torch.no_grad()
def verify(emb: Embeddings, fmr: float = 1e-3, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
           bins: int = SCORE_BINS) -> Verification:
    """One-to-one verification per group at the global threshold of target false-match rate ``fmr``."""
    if not 0.0 < float(fmr) < 1.0:
        raise FairauditError(f"the target false-match rate must lie strictly between 0 and 1, got {fmr}.")
    _check_groups(emb)
    v, ids, groups = emb.vectors, emb.identities, emb.groups
    G, device = emb.n_groups, v.device
    n_ids = int(ids.max()) + 1
    # Pass 1: how many impostor pairs, the highest of them, the score histograms.
    n_imp = n_gen = 0
    for rows, sims, gen, imp in _pair_blocks(emb):
        n_imp += int(imp.sum())
        n_gen += int(gen.sum())
    if n_gen == 0:
        raise FairauditError("every identity has a single image, so there is no genuine pair to verify; "
                             "verification needs at least two images of some people.")
    if n_imp == 0:
        raise FairauditError("all images show one person, so there is no impostor pair to verify against.")
    keep_n = min(int(math.floor(fmr * n_imp)) + 1, n_imp)
    top = torch.empty(0, device=device)
    edges = torch.linspace(-1.0, 1.0, bins + 1, device=device)
    hist = torch.zeros(2, G + 1, bins, device=device, dtype=torch.float64)
    for rows, sims, gen, imp in _pair_blocks(emb):
        scores = sims[imp]
        if scores.numel():
            top = torch.cat([top, scores.topk(min(keep_n, scores.numel())).values]).topk(
                min(keep_n, top.numel() + scores.numel())).values
        pair_group = torch.where(groups[rows, None] == groups[None, :], groups[rows, None].expand_as(sims),
                                 torch.full_like(sims, G, dtype=torch.int64))
        bin_of = torch.bucketize(sims.clamp(-1.0, 1.0), edges[1:-1])
        for kind, mask in ((0, gen), (1, imp)):
            flat = pair_group[mask] * bins + bin_of[mask]
            hist[kind].view(-1).add_(torch.bincount(flat, minlength=(G + 1) * bins).double())
    kth = top[keep_n - 1]  # the (⌊fmr·M⌋ + 1)-th highest impostor score
    threshold = float(np.nextafter(np.float32(kth.item()), np.float32(np.inf)))
    # Pass 2: errors at the threshold, per identity (for the bootstrap) and per group.
    counts = torch.zeros(4, n_ids, device=device, dtype=torch.float64)  # genuine, fnm, within-imp, fm
    overall_fm = 0
    for rows, sims, gen, imp in _pair_blocks(emb):
        within = imp & (groups[rows, None] == groups[None, :])
        match = sims >= threshold
        overall_fm += int((imp & match).sum())
        for slot, mask in ((0, gen), (1, gen & ~match), (2, within), (3, within & match)):
            r, c = mask.nonzero(as_tuple=True)
            ones = torch.ones(len(r), device=device, dtype=torch.float64)
            counts[slot].index_add_(0, ids[rows][r], ones)
            if slot >= 2:  # an impostor pair involves two people: credit both (genuine pairs belong to one)
                counts[slot].index_add_(0, ids[c], ones)
    id_group = torch.zeros(n_ids, dtype=torch.int64, device=device).scatter_(0, ids, groups)
    member = F.one_hot(id_group, G).double()  # (n_ids, G)
    totals = counts @ member  # (4, G)
    fnmr = totals[1] / totals[0]
    fmr_g = totals[3] / totals[2]
    groups_out = {}
    reps_fnmr = reps_fmr = None
    if n_boot:
        w = _poisson_replicates(n_ids, n_boot, seed, device).double()
        per = torch.stack([w @ (counts[s][:, None] * member) for s in range(4)])  # (4, B, G)
        reps_fnmr, reps_fmr = per[1] / per[0], per[3] / per[2]
    for g, name in enumerate(emb.group_names):
        groups_out[name] = {
            "fnmr": _num(fnmr[g]), "fmr": _num(fmr_g[g]),
            "n_genuine": int(totals[0, g] + 0.5), "n_impostor": int(totals[2, g] / 2 + 0.5),
            "ci": ({"fnmr": _interval(reps_fnmr.float(), level)[g], "fmr": _interval(reps_fmr.float(), level)[g]}
                   if n_boot else {}),
        }
    summary = {"threshold": threshold, "target_fmr": float(fmr), "overall_fmr": overall_fm / n_imp,
               "overall_fnmr": float(totals[1].sum() / totals[0].sum()) if float(totals[0].sum()) else None,
               "n_genuine": n_gen, "n_impostor": n_imp, "groups": groups_out, "bootstrap": int(n_boot),
               "level": level}
    for rate, point, reps in (("fnmr", fnmr, reps_fnmr), ("fmr", fmr_g, reps_fmr)):
        summary[f"{rate}_ratio"] = _num(_worst_best(point))
        summary[f"{rate}_ratio_ci"] = _interval(_worst_best(reps).float()[:, None], level)[0] if n_boot else None
    hist = hist.cpu().numpy()
    return Verification(summary, edges.cpu().numpy(), hist[0, :G], hist[1, :G])


def _worst_best(rates: torch.Tensor) -> torch.Tensor:
    """Worst over best group rate along the last axis (NaN where the best group's rate is 0)."""
    worst, best = rates.nan_to_num(nan=-math.inf).amax(-1), rates.nan_to_num(nan=math.inf).amin(-1)
    return torch.where(best > 0, worst / best, torch.full_like(worst, math.nan))


# ---------------------------------------------------------------------------- gallery composition

def _pool(emb: Embeddings, group: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Rows of every identity, split into the varied group's identities and the others'."""
    ids, groups = emb.identities.cpu().numpy(), emb.groups.cpu().numpy()
    order = np.argsort(ids, kind="stable")
    bounds = np.flatnonzero(np.diff(ids[order])) + 1
    people = np.split(order, bounds)
    varied = [p for p in people if groups[p[0]] == group]
    rest = [p for p in people if groups[p[0]] != group]
    return varied, rest


def gallery_sweep(emb: Embeddings, kind: str = "ids", group: str | None = None,
                  shares: Sequence[float] | None = None, seeds: Sequence[int] = (0, 1, 2),
                  n_ids: int | None = None, images_per_id: int | None = None) -> dict[str, Any]:
    """Per-group leave-one-out rank-1 in galleries where ``group`` (default: the first group) has a varying share.

    ``kind="ids"``: every gallery has ``n_ids`` identities (default: as many as the smaller side allows at the
    largest share) with ``images_per_id`` photos each (default: the fewest any person has, at most 5); the
    varied group holds ``share`` of the identities. ``kind="images"``: every gallery holds ``n_ids / 2``
    identities of each side and ``n_ids · images_per_id`` photos (default 5 per identity on average); the varied
    group's people have ``2 · share · images_per_id`` photos each, the others the rest. Each seed draws other
    people and photos.
    """
    if kind not in ("ids", "images"):
        raise FairauditError(f"unknown gallery sweep '{kind}'; use ids or images.")
    _check_groups(emb)
    name = group or emb.group_names[0]
    if name not in emb.group_names:
        raise FairauditError(f"no group '{name}'; groups: {', '.join(emb.group_names)}.")
    g = emb.group_names.index(name)
    shares = tuple(float(s) for s in (shares or (ID_SHARES if kind == "ids" else IMAGE_SHARES)))
    if any(not 0.0 < s < 1.0 for s in shares):
        raise FairauditError("gallery shares must lie strictly between 0 and 1.")
    varied, rest = _pool(emb, g)
    photos = min(len(p) for p in varied + rest)
    if kind == "ids":
        per_id = images_per_id or min(photos, 5)
        if per_id < 2 or photos < per_id:
            raise FairauditError(f"a gallery sweep over identities needs {max(per_id, 2)} photos of every person; "
                                 f"the fewest any person has is {photos}.")
        top = max(max(shares), 1 - min(shares))
        size = n_ids or int(min(len(varied), len(rest)) / top)
        plan = [(int(round(s * size)), size - int(round(s * size)), per_id, per_id) for s in shares]
    else:
        mean = images_per_id or 5
        size = n_ids or 2 * min(len(varied), len(rest))
        plan = [(size // 2, size // 2, int(round(2 * s * mean)), 2 * mean - int(round(2 * s * mean)))
                for s in shares]
        need = max(max(a, b) for _, _, a, b in plan)
        if min(min(a, b) for _, _, a, b in plan) < 2 or photos < need:
            raise FairauditError(f"a gallery sweep over images needs {need} photos of every person and at least 2 "
                                 f"in every gallery; the fewest any person has is {photos}.")
    if any(a > len(varied) or b > len(rest) or a + b < 2 for a, b, _, _ in plan):
        raise FairauditError(f"the split has {len(varied)} identities of {name} and {len(rest)} of the other "
                             "groups: too few for these galleries; lower n_ids.")
    results = {other: np.zeros((len(shares), len(seeds))) for other in emb.group_names}
    for i, (a, b, pa, pb) in enumerate(plan):
        for j, seed in enumerate(seeds):
            rng = np.random.default_rng([int(seed), i, 17])
            chosen = [rng.choice(p, pa, replace=False) for p in (varied[k] for k in rng.choice(len(varied), a,
                                                                                                   replace=False))]
            chosen += [rng.choice(p, pb, replace=False) for p in (rest[k] for k in rng.choice(len(rest), b,
                                                                                                 replace=False))]
            sub = emb.subset(np.concatenate(chosen))
            rank = _search(sub)[0]
            for h, other in enumerate(emb.group_names):
                mask = (sub.groups == h) & (rank > 0)
                results[other][i, j] = float((rank[mask] == 1).double().mean()) if bool(mask.any()) else math.nan
    out = {"kind": kind, "varied_group": name, "share": list(shares), "seeds": list(seeds),
           "galleries": [{"ids": {"varied": a, "others": b}, "images_per_id": {"varied": pa, "others": pb}}
                         for a, b, pa, pb in plan],
           "rank1": {n: [_num(x) for x in np.nanmean(r, 1)] for n, r in results.items() if np.isfinite(r).any()},
           "rank1_std": {n: [_num(x) for x in np.nanstd(r, 1, ddof=1 if len(seeds) > 1 else 0)] for n, r in results.items()
                         if np.isfinite(r).any()},
           "rank1_by_seed": {n: r.tolist() for n, r in results.items() if np.isfinite(r).any()}}
    return out
