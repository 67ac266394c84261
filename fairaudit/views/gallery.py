"""Pick and describe samples to show per group: dataset previews and misclassified examples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from fairaudit.audit import Predictions
from fairaudit.data.base import FairDataset


def group_name(attrs: Sequence[str], codes: Sequence[int], value_names: dict[str, list[str]]) -> str:
    """``"a=x & b=y"`` for the group with these codes (the report's naming)."""
    return " & ".join(f"{a}={value_names[a][int(c)]}" for a, c in zip(attrs, codes))


def pick_per_group(codes: np.ndarray, per_group: int, seed: int = 0,
                   candidates: np.ndarray | None = None) -> dict[tuple[int, ...], np.ndarray]:
    """Up to ``per_group`` row numbers for every distinct row of ``codes`` (seeded, sorted by group).

    ``candidates`` (a boolean mask) restricts which rows may be picked, e.g.
    only misclassified ones.
    """
    codes = np.asarray(codes).reshape(len(codes), -1)
    rng = np.random.default_rng(seed)
    mask = np.ones(len(codes), bool) if candidates is None else np.asarray(candidates, bool)
    picked: dict[tuple[int, ...], np.ndarray] = {}
    for group in sorted({tuple(int(v) for v in row) for row in codes}):
        rows = np.flatnonzero(np.all(codes == np.asarray(group), axis=1) & mask)
        if len(rows) > per_group:
            rows = np.sort(rng.choice(rows, per_group, replace=False))
        picked[group] = rows
    return picked


def dataset_samples(dataset: FairDataset, sensitive: Sequence[str], per_group: int,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Up to ``per_group`` sample indices of each group of the ``sensitive`` columns, keyed by group name."""
    sensitive = list(sensitive)
    picked = pick_per_group(dataset.attributes[sensitive].to_numpy(dtype=np.int64), per_group, seed)
    return {group_name(sensitive, g, dataset.value_names): rows for g, rows in picked.items()}


def group_sizes(dataset: FairDataset, sensitive: Sequence[str]) -> dict[str, int]:
    """Number of samples of every group of the ``sensitive`` columns, keyed by group name."""
    sensitive = list(sensitive)
    counts = dataset.attributes.groupby(sensitive).size()
    return {group_name(sensitive, g if isinstance(g, tuple) else (g,), dataset.value_names): int(n)
            for g, n in counts.items()}


@dataclass
class GroupErrors:
    """Misclassified samples of one group: a few rows of the predictions to show, and the counts."""

    group: str
    rows: np.ndarray  # rows of the Predictions (not dataset indices)
    size: int
    errors: int


def misclassified_samples(preds: Predictions, threshold: float, per_group: int, seed: int = 0) -> list[GroupErrors]:
    """Up to ``per_group`` misclassified rows of ``preds`` for every group, with error counts.

    Groups without errors have no rows, so the page can say so.
    """
    wrong = preds.predictions(threshold) != preds.labels
    picked = pick_per_group(preds.sensitive, per_group, seed, candidates=wrong)
    out = []
    for codes, rows in picked.items():
        members = np.all(preds.sensitive == np.asarray(codes), axis=1)
        out.append(GroupErrors(group_name(preds.sensitive_names, codes, preds.value_names), rows,
                               int(members.sum()), int((members & wrong).sum())))
    return out


SENSITIVE_NAMES = ("sex", "gender", "race", "ethnicity", "age", "age_group", "group", "sensitive", "protected",
                   "skin_tone", "male", "religion", "nationality", "disability")
MAX_GROUP_VALUES = 20


def suggest_sensitive(frame: pd.DataFrame, exclude: Sequence[str]) -> list[str]:
    """Columns of ``frame`` ordered by how likely they are sensitive attributes.

    Commonly used names (``sex``, ``race``, ``age``...) come first, then
    columns with 2 to ``MAX_GROUP_VALUES`` distinct values, then the rest
    (identifiers and continuous columns make useless groups).
    """
    def rank(column: str) -> tuple[int, int]:
        distinct = frame[column].nunique(dropna=False)
        if str(column).lower() in SENSITIVE_NAMES and distinct <= MAX_GROUP_VALUES:
            return 0, SENSITIVE_NAMES.index(str(column).lower())
        return (1, distinct) if 2 <= distinct <= MAX_GROUP_VALUES else (2, distinct)

    candidates = [c for c in frame.columns if c not in set(exclude)]
    return sorted(candidates, key=lambda c: (rank(c), candidates.index(c)))


def to_image(x: torch.Tensor) -> np.ndarray:
    """A ``(C, H, W)`` tensor in ``[0, 1]`` as an ``(H, W, 3)`` float array for ``st.image``."""
    array = x.detach().float().cpu().clamp(0, 1).numpy()
    if array.ndim == 2:
        array = array[None]
    if array.shape[0] == 1:
        array = np.repeat(array, 3, 0)
    return np.ascontiguousarray(array[:3].transpose(1, 2, 0))


def attribute_rows(dataset: FairDataset, indices: Sequence[int],
                   columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Readable attribute values of the samples at ``indices`` (all columns unless ``columns`` is given)."""
    indices = np.asarray(indices, dtype=np.int64)
    table = dataset.attributes.iloc[indices]
    if columns is not None:
        table = table[list(columns)]
    out = pd.DataFrame({"sample": indices})
    for column in table.columns:
        names = dataset.value_names[column]
        out[column] = [names[int(c)] for c in table[column]]
    return out.reset_index(drop=True)


def sample_caption(dataset: FairDataset, index: int, columns: Sequence[str] | None = None) -> str:
    """A short caption such as ``#12 · Smiling · Female`` (``digit=3`` where a value is a bare number)."""
    columns = list(columns) if columns is not None else [dataset.target, *dataset.sensitive]
    row = dataset.attributes.iloc[int(index)]
    parts = []
    for column in columns:
        value = dataset.value_names[column][int(row[column])]
        parts.append(f"{column}={value}" if value.lstrip("-").replace(".", "", 1).isdigit() or len(value) < 2
                     else value)
    return " · ".join([f"#{int(index)}", *parts])


def prediction_rows(preds: Predictions, rows: Sequence[int], threshold: float) -> pd.DataFrame:
    """Sample index, true class, predicted class and score of selected rows of ``preds``."""
    rows = np.asarray(rows, dtype=np.int64)
    predicted = preds.predictions(threshold)[rows]
    frame = pd.DataFrame({
        "sample": preds.indices[rows],
        "true": [preds.class_names[int(c)] for c in preds.labels[rows]],
        "predicted": [preds.class_names[int(c)] for c in predicted],
    })
    if preds.probs.shape[1] == 2:
        frame["score"] = preds.probs[rows, 1].round(3)
    else:
        frame["confidence"] = preds.probs[rows].max(1).round(3)
    return frame
