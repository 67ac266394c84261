"""Validation of labels, scores, predictions and sensitive codes.

Inputs may be numpy arrays, torch tensors, pandas objects or lists. Anything
inconsistent raises :class:`~fairaudit.errors.MetricInputError` with a message
that says which array is wrong and how.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from fairaudit.errors import MetricInputError

# More distinct values than this in one sensitive attribute means a continuous column that should be binned.
MAX_GROUP_VALUES = 20


@dataclass
class AuditInputs:
    """Validated inputs on the computation device."""

    y_true: torch.Tensor  # [N] int64
    y_pred: torch.Tensor  # [N] int64
    sensitive: torch.Tensor  # [N, k] int64
    sensitive_names: list[str]
    class_names: list[str]
    prediction_rule: str

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def _as_tensor(x: Any, name: str, device: torch.device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        arr = np.asarray(x)
        if arr.dtype == object or arr.dtype.kind in "USM":
            raise MetricInputError(f"{name} must be numeric (integer codes or probabilities), got {arr.dtype} values.")
        # A copy when numpy cannot hand out a writable buffer (read-only pandas arrays), which torch refuses to share.
        t = torch.from_numpy(np.require(arr, requirements=("C", "W")))
    if t.dtype == torch.bool:
        t = t.long()
    if t.is_complex():
        raise MetricInputError(f"{name} must be real-valued.")
    return t.to(device)


def _first(t: torch.Tensor, mask: torch.Tensor) -> tuple[int, float | int]:
    """Row and value of the first element flagged by ``mask``."""
    flat = int(mask.flatten().nonzero()[0, 0])
    row = flat // t.shape[1] if t.dim() == 2 else flat
    return row, t.flatten()[flat].item()


def _as_codes(x: Any, name: str, device: torch.device, ndim: int) -> torch.Tensor:
    """Integer codes ≥ 0 (float arrays are accepted when every value is a whole number)."""
    t = _as_tensor(x, name, device)
    if t.dim() != ndim:
        raise MetricInputError(f"{name} must be {ndim}-dimensional, got shape {tuple(t.shape)}.")
    if t.is_floating_point():
        bad = ~torch.isfinite(t) | (t != torch.round(t))
        if bool(bad.any()):
            row, value = _first(t, bad)
            raise MetricInputError(f"{name} must hold integer codes, but row {row} has {value!r}.")
    t = t.long()
    negative = t < 0
    if bool(negative.any()):
        row, value = _first(t, negative)
        raise MetricInputError(f"{name} must hold codes >= 0, but row {row} has {value}.")
    return t


def _check_length(t: torch.Tensor, name: str, n: int) -> None:
    if t.shape[0] != n:
        raise MetricInputError(f"{name} has {t.shape[0]} rows but y_true has {n}; they must describe the same samples.")


def _check_in_range(t: torch.Tensor, name: str, n_classes: int) -> None:
    top = int(t.max())
    if top >= n_classes:
        raise MetricInputError(
            f"{name} contains label {top} but there are only {n_classes} classes (codes 0..{n_classes - 1}).")


def _predictions(scores: Any, y_pred: Any, threshold: float, n: int, n_classes: int | None,
                 device: torch.device) -> tuple[torch.Tensor, int | None, str]:
    """Hard predictions, the class count implied by the scores (if any) and the rule used."""
    if scores is None:
        if y_pred is None:
            raise MetricInputError("pass either scores (probabilities) or y_pred (hard predictions).")
        pred = _as_codes(y_pred, "y_pred", device, 1)
        _check_length(pred, "y_pred", n)
        return pred, None, "y_pred"
    s = _as_tensor(scores, "scores", device).double()
    if s.dim() == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.dim() not in (1, 2):
        raise MetricInputError(f"scores must have shape (N,) or (N, C), got {tuple(s.shape)}.")
    _check_length(s, "scores", n)
    if s.numel() and not bool(torch.isfinite(s).all()):
        i = int((~torch.isfinite(s)).nonzero()[0, 0])
        raise MetricInputError(f"scores must be finite, but row {i} is NaN or infinite.")
    if s.dim() == 2 and s.shape[1] > 2:
        if n_classes is not None and n_classes != s.shape[1]:
            raise MetricInputError(f"scores have {s.shape[1]} columns but {n_classes} class names were given.")
        return s.argmax(1), s.shape[1], "argmax"
    if n_classes is not None and n_classes != 2:
        raise MetricInputError(f"binary scores were given but there are {n_classes} class names; "
                               "pass (N, C) probabilities for a multiclass target.")
    try:
        cut = float(threshold)
    except (TypeError, ValueError):
        cut = math.nan
    if not math.isfinite(cut):
        raise MetricInputError(f"threshold must be a finite number, got {threshold!r}.")
    positive = s[:, 1] if s.dim() == 2 else s
    return (positive >= cut).long(), 2, f"scores>={cut:g}"


def prepare_inputs(y_true: Any, scores: Any, y_pred: Any, sensitive: Any, sensitive_names: Sequence[str] | None,
                   class_names: Sequence[str] | None, threshold: float, device: torch.device) -> AuditInputs:
    """Validate and move every input to ``device``; see :func:`fairaudit.metrics.audit_metrics`."""
    y = _as_codes(y_true, "y_true", device, 1)
    n = y.shape[0]
    if n == 0:
        raise MetricInputError("y_true is empty; there is nothing to audit.")
    if sensitive is None:
        raise MetricInputError("sensitive attribute codes are required.")
    if sensitive_names is None and hasattr(sensitive, "columns"):
        sensitive_names = [str(c) for c in sensitive.columns]
    s = _as_tensor(sensitive, "sensitive", device)
    s = _as_codes(s.unsqueeze(1) if s.dim() == 1 else s, "sensitive", device, 2)
    _check_length(s, "sensitive", n)
    k = s.shape[1]
    if sensitive_names is None:
        sensitive_names = [f"a{j}" for j in range(k)] if k > 1 else ["a"]
    sensitive_names = [str(a) for a in ([sensitive_names] if isinstance(sensitive_names, str) else sensitive_names)]
    if len(sensitive_names) != k:
        raise MetricInputError(f"sensitive has {k} column(s) but {len(sensitive_names)} sensitive name(s) were given.")
    if len(set(sensitive_names)) != k:
        raise MetricInputError(f"sensitive names must be distinct, got {sensitive_names}.")

    n_named = None
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        n_named = len(class_names)
        if n_named < 2:
            raise MetricInputError(f"a classification target needs at least 2 classes, got {n_named} class name(s).")
    pred, n_scored, rule = _predictions(scores, y_pred, threshold, n, n_named, device)
    n_classes = n_named or n_scored or max(2, int(y.max()) + 1, int(pred.max()) + 1)
    _check_in_range(y, "y_true", n_classes)
    _check_in_range(pred, "y_pred", n_classes)
    if class_names is None:
        class_names = [str(c) for c in range(n_classes)]
    return AuditInputs(y_true=y, y_pred=pred, sensitive=s, sensitive_names=sensitive_names,
                       class_names=class_names, prediction_rule=rule)
