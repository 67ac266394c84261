"""Audit predictions that already exist (e.g. from a black-box API): no model needed."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from fairaudit.audit.inference import Predictions
from fairaudit.errors import FairauditError


def _codes(series: pd.Series, categories: list | None = None) -> tuple[np.ndarray, list[str]]:
    categories = categories if categories is not None else sorted(series.dropna().unique().tolist(), key=str)
    lookup = {v: i for i, v in enumerate(categories)}
    return series.map(lookup).to_numpy(dtype=np.int64), [str(c) for c in categories]


def predictions_from_frame(frame: pd.DataFrame, label: str, pred: str, sensitive: Sequence[str] | str,
                           score: str | None = None, source: str = "table") -> Predictions:
    """Build :class:`Predictions` from columns of a table.

    Label and prediction values are coded together (sorted), so ``0/1``,
    ``no/yes`` or class names all work; a ``score`` column (P(y = 1), binary
    only) enables the threshold slider. Rows with a missing value are refused.
    """
    if isinstance(sensitive, str):
        sensitive = [s for s in sensitive.split(",") if s]
    needed = [label, pred, *sensitive] + ([score] if score else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise FairauditError(f"{source} has no column {', '.join(map(repr, missing))}; "
                             f"columns: {', '.join(map(str, frame.columns))}.")
    if not sensitive:
        raise FairauditError("name at least one sensitive column with --sensitive.")
    bad = frame[needed].isna().any(axis=1)
    if bad.any():
        raise FairauditError(f"{source} has {int(bad.sum())} rows with missing values in the audited columns "
                             f"(first at row {int(np.flatnonzero(bad.to_numpy())[0]) + 2}).")
    classes = sorted(set(frame[label].tolist()) | set(frame[pred].tolist()), key=str)
    if len(classes) < 2:
        raise FairauditError(f"column '{label}' and '{pred}' contain a single class ({classes[0]!r}); "
                             "fairness metrics need at least two.")
    y, class_names = _codes(frame[label], classes)
    yhat, _ = _codes(frame[pred], classes)
    n_classes = len(classes)
    if score:
        if n_classes != 2:
            raise FairauditError("--score is only meaningful for a binary target.")
        s = pd.to_numeric(frame[score], errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(s).any() or (s < 0).any() or (s > 1).any():
            raise FairauditError(f"score column '{score}' must hold probabilities in [0, 1].")
        probs = np.stack([1 - s, s], 1).astype(np.float32)
    else:
        probs = np.eye(n_classes, dtype=np.float32)[yhat]
    sens_codes, value_names = [], {}
    for col in sensitive:
        codes, names = _codes(frame[col])
        sens_codes.append(codes)
        value_names[col] = names
    return Predictions(labels=y, probs=probs, sensitive=np.stack(sens_codes, 1), indices=np.arange(len(frame)),
                       sensitive_names=list(sensitive), value_names=value_names, class_names=class_names,
                       meta={"dataset": source, "model": "external predictions", "split": "given"})


def read_predictions_csv(path: str | Path, label: str, pred: str, sensitive, score: str | None = None) -> Predictions:
    path = Path(path)
    if not path.is_file():
        raise FairauditError(f"predictions file '{path}' does not exist.")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise FairauditError(f"cannot read '{path}' as CSV: {str(exc).splitlines()[0]}") from None
    return predictions_from_frame(frame, label, pred, sensitive, score, source=path.name)
