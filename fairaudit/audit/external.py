"""Audit predictions that already exist (e.g. from a black-box API): no model needed."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from fairaudit.audit.inference import Predictions
from fairaudit.errors import FairauditError

SHOWN_VALUES = 6


def _codes(series: pd.Series, categories: list | None = None) -> tuple[np.ndarray, list[str]]:
    categories = categories if categories is not None else sorted(series.dropna().unique().tolist(), key=str)
    lookup = {v: i for i, v in enumerate(categories)}
    # np.array copies: pandas may hand out read-only buffers, which torch refuses to share.
    return np.array(series.map(lookup).to_numpy(dtype=np.int64)), [str(c) for c in categories]


def _value_set(values: set) -> str:
    shown = sorted(values, key=str)
    text = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in shown[:SHOWN_VALUES])
    return "{" + text + (f", … ({len(shown)} values)" if len(shown) > SHOWN_VALUES else "") + "}"


def _check_label_sets(frame: pd.DataFrame, label: str, pred: str) -> None:
    """Labels and predictions must share one coding: one set of values contains the other."""
    labels, predicted = set(frame[label].tolist()), set(frame[pred].tolist())
    if not (predicted <= labels or labels <= predicted):
        raise FairauditError(f"the label column '{label}' holds {_value_set(labels)} but the prediction column "
                             f"'{pred}' holds {_value_set(predicted)}; code both with the same values "
                             "(e.g. 0/1 in both) so that predictions can be compared with labels.")


def _score_probs(frame: pd.DataFrame, score: str, n_classes: int) -> np.ndarray:
    if n_classes != 2:
        raise FairauditError("--score is only meaningful for a binary target.")
    s = pd.to_numeric(frame[score], errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(s).any() or (s < 0).any() or (s > 1).any():
        raise FairauditError(f"score column '{score}' must hold probabilities in [0, 1].")
    return np.stack([1 - s, s], 1).astype(np.float32)


def predictions_from_frame(frame: pd.DataFrame, label: str, pred: str | None, sensitive: Sequence[str] | str,
                           score: str | None = None, source: str = "table", threshold: float = 0.5) -> Predictions:
    """Build :class:`Predictions` from columns of a table.

    Label and prediction values are coded together (sorted), so ``0/1``,
    ``no/yes`` or class names all work, but both columns must use the same
    coding (labels ``0/1`` with predictions ``no/yes`` are refused). A
    ``score`` column holds P(y = 1) of a binary target.

    Which column is the decision: with ``pred`` the audited decision is always
    the prediction column. With ``score`` alone it is ``score >= threshold``.
    With both, the scores are kept (so that other thresholds can be explored)
    only if ``score >= threshold`` reproduces the prediction column on every
    row; otherwise they are set aside and ``meta["warnings"]`` says so. Rows
    with a missing value and a table without rows are refused.
    """
    if isinstance(sensitive, str):
        sensitive = [s for s in sensitive.split(",") if s]
    pred = pred or None
    if pred is None and not score:
        raise FairauditError("name the prediction column (--pred) or a score column (--score) to audit.")
    needed = [label, *([pred] if pred else []), *sensitive] + ([score] if score else [])
    require_columns(frame, needed, source)
    if not sensitive:
        raise FairauditError("name at least one sensitive column with --sensitive.")
    if frame.empty:
        raise FairauditError(f"{source} has a header but no rows, so there is nothing to audit.")
    bad = frame[needed].isna().any(axis=1)
    if bad.any():
        raise FairauditError(f"{source} has {int(bad.sum())} rows with missing values in the audited columns "
                             f"(first at row {int(np.flatnonzero(bad.to_numpy())[0]) + 2}).")
    if pred:
        _check_label_sets(frame, label, pred)
    classes = sorted(set(frame[label].tolist()) | (set(frame[pred].tolist()) if pred else set()), key=str)
    if len(classes) < 2:
        columns = f"columns '{label}' and '{pred}' contain" if pred else f"column '{label}' contains"
        raise FairauditError(f"{columns} a single class ({classes[0]!r}); fairness metrics need at least two.")
    y, class_names = _codes(frame[label], classes)
    meta = {"dataset": source, "model": "external predictions", "split": "given",
            "columns": {"label": label, "prediction": pred, "score": score or None}}
    probs = _score_probs(frame, score, len(classes)) if score else None
    if pred:
        yhat, _ = _codes(frame[pred], classes)
        if probs is not None:
            disagree = (probs[:, 1].astype(np.float64) >= threshold) != (yhat == 1)
            if disagree.any():
                first = int(np.flatnonzero(disagree)[0]) + 2
                meta["columns"]["score"] = None
                meta["warnings"] = [
                    f"'{score}' >= {threshold:g} disagrees with the prediction column '{pred}' on "
                    f"{int(disagree.sum())} of {len(frame)} rows (first at row {first}), "
                    f"so the audit uses '{pred}' as the decision and does not use '{score}'."]
                probs = None
        if probs is None:
            probs = np.eye(len(classes), dtype=np.float32)[yhat]
    sens_codes, value_names = [], {}
    for col in sensitive:
        codes, names = _codes(frame[col])
        sens_codes.append(codes)
        value_names[col] = names
    return Predictions(labels=y, probs=probs, sensitive=np.stack(sens_codes, 1), indices=np.arange(len(frame)),
                       sensitive_names=list(sensitive), value_names=value_names, class_names=class_names,
                       meta=meta)


def require_columns(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    """Refuse a table that lacks any of ``columns``, naming them and the columns it has."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FairauditError(f"{source} has no column {', '.join(map(repr, missing))}; "
                             f"columns: {', '.join(map(str, frame.columns))}.")


def read_csv_frame(path: str | Path) -> pd.DataFrame:
    """A predictions CSV as a table; a missing or unreadable file gets one clear sentence."""
    path = Path(path)
    if not path.is_file():
        raise FairauditError(f"predictions file '{path}' does not exist.")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise FairauditError(f"cannot read '{path}' as CSV: {str(exc).splitlines()[0].rstrip('.')}.") from None


def read_predictions_csv(path: str | Path, label: str, pred: str | None, sensitive, score: str | None = None,
                         threshold: float = 0.5) -> Predictions:
    """:func:`predictions_from_frame` of a CSV file; unreadable files get one clear sentence."""
    return predictions_from_frame(read_csv_frame(path), label, pred, sensitive, score, source=Path(path).name,
                                  threshold=threshold)
