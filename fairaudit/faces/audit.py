"""One face-recognition audit of a model on a split: embeddings, identification, verification, optional sweep."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from fairaudit.faces.engine import Embeddings, Identification, Verification, embed_dataset, gallery_sweep, identify, \
    verify

__all__ = ["FaceAudit", "run_face_audit", "gallery_composition"]


@dataclass
class FaceAudit:
    embeddings: Embeddings
    identification: Identification
    verification: Verification
    sweep: dict[str, Any] | None
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        ident = self.identification.summary
        out = {**self.meta, "groups": list(self.embeddings.group_names),
               "gallery": gallery_composition(self.embeddings),
               "identification": {k: v for k, v in ident.items() if k != "error_ratio"},
               "error_ratio": ident["error_ratio"],
               "l2_ratio": {g: e["l2_ratio"] for g, e in ident["groups"].items()},
               "verification": self.verification.summary}
        if self.sweep is not None:
            out["gallery_sweep"] = self.sweep
        return out


def gallery_composition(emb: Embeddings) -> dict[str, dict[str, float]]:
    """Identities, images and images per identity of every group in the split."""
    ids, groups = emb.identities.cpu().numpy(), emb.groups.cpu().numpy()
    out = {}
    for g, name in enumerate(emb.group_names):
        mask = groups == g
        n_ids = len(np.unique(ids[mask]))
        out[name] = {"identities": int(n_ids), "images": int(mask.sum()),
                     "images_per_identity": float(mask.sum() / n_ids) if n_ids else 0.0}
    return out


def run_face_audit(dataset, model, *, ranks: Sequence[int] = (1, 5), fmr: float = 1e-3, sweep: str | None = None,
                   sweep_group: str | None = None, seeds: Sequence[int] = (0, 1, 2), n_boot: int = 1000,
                   seed: int = 0, device="auto", batch_size: int = 256,
                   progress: Callable[[int, int], None] | None = None, meta: dict | None = None) -> FaceAudit:
    """Embed ``dataset`` with ``model.g`` and measure identification, verification and (``sweep`` = ``"ids"`` or
    ``"images"``) the gallery-composition sweep, per group of the dataset's sensitive attributes."""
    emb = embed_dataset(model, dataset, device=device, batch_size=batch_size, progress=progress)
    ident = identify(emb, ranks, n_boot=n_boot, seed=seed)
    ver = verify(emb, fmr, n_boot=n_boot, seed=seed)
    swept = gallery_sweep(emb, sweep, sweep_group, seeds=seeds) if sweep else None
    info = {"dataset": dataset.name, "split": dataset.split, "sensitive": list(dataset.sensitive), **(meta or {})}
    return FaceAudit(emb, ident, ver, swept, info)
