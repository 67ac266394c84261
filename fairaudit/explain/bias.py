"""Attribution bias: how much of a model's evidence lies on the sensitive cue rather than on the target.

A heat map becomes a number: for each image, the share of the *positive*
attribution mass that falls inside a region,

    share(region) = Σ_{p ∈ region} max(a_p, 0) / Σ_p max(a_p, 0),

averaged per group and stage. A smile classifier that looks at the mouth has
a high ``target_region_share``; one that took the gender shortcut puts its
mass on hair and beard (``sensitive_region_share``). Comparing each share with
the region's area share (what a uniform map would give) tells attention from
coverage.

Regions come from the dataset's ground-truth masks
(:meth:`~fairaudit.data.base.FairDataset.region_mask`; ``synthetic-faces``
draws them with every face, see :data:`ATTRIBUTE_REGIONS`) or from masks the
user supplies.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from fairaudit.errors import FairauditError

#: Which ground-truth regions show each attribute, per dataset. ``Male`` shows
#: as beard/stubble on the jaw and as short versus long hair; ``Young`` as grey
#: hair (wrinkles are drawn on the face, too spread out to separate).
ATTRIBUTE_REGIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "synthetic-faces": {
        "Smiling": ("mouth",),
        "Male": ("beard", "hair"),
        "Blond_Hair": ("hair",),
        "Eyeglasses": ("eyes",),
        "Young": ("hair",),
        "Skin_Tone": ("skin",),
    },
}

BIAS_COLUMNS = ["group", "stage", "method", "target_region_share", "sensitive_region_share", "n",
                "target_region_area", "sensitive_region_area"]

MaskFn = Callable[[int], tuple[np.ndarray, np.ndarray]]  # sample index -> (target mask, sensitive mask)


def attribute_regions(dataset, target: str | None = None, sensitive: Sequence[str] | None = None,
                      regions: Mapping[str, Sequence[str]] | None = None) -> tuple[list[str], list[str]] | None:
    """The region names of the target and of the sensitive attributes, or ``None`` if unknown.

    ``regions`` overrides the built-in table, e.g. ``{"target": ["mouth"],
    "sensitive": ["hair"]}``; its names must be in ``dataset.region_names``.
    """
    available = tuple(getattr(dataset, "region_names", ()) or ())
    if not available:
        return None
    target = target or dataset.target
    sensitive = list(sensitive or dataset.sensitive)
    if regions is not None:
        chosen = (list(regions.get("target", ())), list(regions.get("sensitive", ())))
    else:
        table = ATTRIBUTE_REGIONS.get(dataset.name, {})
        if target not in table:
            return None
        chosen = (list(table[target]), [r for s in sensitive for r in table.get(s, ())])
    for name in chosen[0] + chosen[1]:
        if name not in available:
            raise FairauditError(f"dataset '{dataset.name}' has no region '{name}'; regions: {', '.join(available)}.")
    if not chosen[0] or not chosen[1]:
        return None
    return chosen[0], list(dict.fromkeys(chosen[1]))


def dataset_masks(dataset, indices: Sequence[int], target_regions: Sequence[str],
                  sensitive_regions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Boolean ``(N, H, W)`` target and sensitive masks of the images at ``indices``.

    The sensitive mask excludes the target region, so that no pixel counts
    for both.
    """
    target, sensitive = [], []
    for i in indices:
        t = np.logical_or.reduce([dataset.region_mask(int(i), r) for r in target_regions])
        s = np.logical_or.reduce([dataset.region_mask(int(i), r) for r in sensitive_regions])
        target.append(t)
        sensitive.append(s & ~t)
    return np.stack(target), np.stack(sensitive)


def supplied_masks(masks: MaskFn, indices: Sequence[int], shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Masks from a user function ``index -> (target mask, sensitive mask)``, checked against ``shape``."""
    target, sensitive = [], []
    for i in indices:
        t, s = (np.asarray(m).astype(bool) for m in masks(int(i)))
        if t.shape != tuple(shape) or s.shape != tuple(shape):
            raise FairauditError(f"the masks of sample {int(i)} are {t.shape} and {s.shape}; "
                                 f"expected {tuple(shape)} like the images.")
        target.append(t)
        sensitive.append(s & ~t)
    return np.stack(target), np.stack(sensitive)


def region_share(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per image, the share of positive attribution mass inside ``mask`` (NaN for a map with no positive mass)."""
    positive = np.clip(np.asarray(maps, np.float64), 0, None)
    if positive.shape != np.shape(mask):
        raise FairauditError(f"maps {positive.shape} and masks {np.shape(mask)} differ in shape.")
    total = positive.reshape(len(positive), -1).sum(1)
    inside = (positive * np.asarray(mask, bool)).reshape(len(positive), -1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, np.nan)


def attribution_bias(maps: Mapping[str, np.ndarray], groups: Sequence[str], target_mask: np.ndarray,
                     sensitive_mask: np.ndarray, method: str) -> pd.DataFrame:
    """The attribution-bias table: one row per group and stage (plus ``all`` groups).

    ``maps`` holds one ``(N, H, W)`` array per stage (``"before"``, ``"after"``)
    for the same ``N`` images, whose groups and masks are given. Shares are
    means over the group's images with positive mass (``n`` counts them);
    ``*_area`` is the mean share of the image the region covers.
    """
    groups = np.asarray(groups, dtype=object)
    target_area = np.asarray(target_mask, bool).reshape(len(groups), -1).mean(1)
    sensitive_area = np.asarray(sensitive_mask, bool).reshape(len(groups), -1).mean(1)
    rows = []
    for stage, stage_maps in maps.items():
        target_share = region_share(stage_maps, target_mask)
        sensitive_share = region_share(stage_maps, sensitive_mask)
        for group in [*sorted(set(groups)), "all"]:
            chosen = (groups == group if group != "all" else np.ones(len(groups), bool)) & ~np.isnan(target_share)
            rows.append({"group": group, "stage": stage, "method": method,
                         "target_region_share": float(target_share[chosen].mean()) if chosen.any() else np.nan,
                         "sensitive_region_share": float(sensitive_share[chosen].mean()) if chosen.any() else np.nan,
                         "target_region_area": float(target_area[chosen].mean()) if chosen.any() else np.nan,
                         "sensitive_region_area": float(sensitive_area[chosen].mean()) if chosen.any() else np.nan,
                         "n": int(chosen.sum())})
    return pd.DataFrame(rows, columns=BIAS_COLUMNS)
