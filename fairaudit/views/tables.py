"""Tables and pass/fail checks the audit page shows, read from an :class:`~fairaudit.metrics.AuditReport`.

No metric is computed here: every number comes from the report; this module
only selects, labels and arranges them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from fairaudit.metrics import catalogue
from fairaudit.metrics.catalogue import Metric

GROUP_METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "selection_rate", "base_rate", "tpr", "fpr",
                                   "fnr", "tnr", "ppv", "npv")
"""Per-group metrics in the order the page offers them (labels and help in :mod:`fairaudit.metrics.catalogue`)."""

CARD_DISPARITIES: tuple[str, ...] = ("spd", "deo", "eo_max", "eod", "aaod", "aed", "dp_ratio", "worst_group_accuracy")
DISPARITIES: tuple[Metric, ...] = tuple(catalogue.metric(name) for name in CARD_DISPARITIES)
"""The disparities the audit page shows as cards, in order: their catalogue entries (``kind`` ``gap``: smaller
is fairer; ``ratio`` / ``floor``: larger is better)."""

DEFAULT_TOLERANCES: dict[str, float] = {"gap": 0.1, "ratio": 0.8, "floor": 0.8}
"""Differences pass at ≤ 0.1, the DP ratio at ≥ 0.8 (80 % rule), worst-group accuracy at ≥ 0.8."""


@dataclass(frozen=True)
class DisparityCheck:
    """One disparity card: its value, whether it passes and the rule it was held to."""

    name: str
    label: str
    value: float
    passes: bool | None  # None when the value is undefined (NaN)
    rule: str
    help: str
    reason: str = ""  # why the value is undefined, when it is

    @property
    def value_text(self) -> str:
        return "n/a" if self.passes is None else f"{self.value:.3f}"

    @property
    def verdict(self) -> str:
        if self.passes is None:
            return "undefined"
        return f"pass · {self.rule}" if self.passes else f"fail · {self.rule}"

    @property
    def help_text(self) -> str:
        """The definition, and for an undefined value why it is undefined."""
        return f"{self.help}\n\nn/a: {self.reason}." if self.passes is None and self.reason else self.help


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def disparity_checks(disparities: Mapping[str, Any], tolerances: Mapping[str, float] | None = None,
                     undefined: Mapping[str, str] | None = None) -> list[DisparityCheck]:
    """Compare every disparity with its tolerance.

    ``tolerances`` maps a disparity name (or a kind: ``gap``, ``ratio``,
    ``floor``) to its limit; gaps pass at ``value <= limit``, the ratio and the
    worst-group accuracy at ``value >= limit``. An undefined disparity (a gap
    that fewer than two groups define) neither passes nor fails; its reason
    comes from ``undefined`` (:attr:`AuditReport.undefined`).
    """
    undefined = dict(undefined or {})
    tolerances = dict(tolerances or {})
    checks = []
    for info in DISPARITIES:
        value = disparities.get(info.name)
        limit = float(tolerances.get(info.name, tolerances.get(info.kind, DEFAULT_TOLERANCES[info.kind])))
        if _is_missing(value):
            passes, value = None, math.nan
        else:
            value = float(value)
            passes = value <= limit + 1e-12 if info.kind == "gap" else value >= limit - 1e-12
        rule = f"≤ {limit:.2f}" if info.kind == "gap" else f"≥ {limit:.2f}"
        reason = undefined.get(info.name, "") if passes is None else ""
        checks.append(DisparityCheck(info.name, info.label, value, passes, rule, info.help, reason))
    return checks


def _shown_metrics(groups: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    """The columns of ``metrics`` to show: a multiclass base or selection rate (NaN in every group, as its
    mean over classes is 1/C) is shown per class instead (``selection_rate[<class>]`` columns)."""
    shown = []
    for m in metrics:
        per_class = [c for c in groups.columns if c.startswith(f"{m}[") and c.endswith("]")]
        if per_class and m in groups.columns and groups[m].isna().all():
            shown += per_class
        elif m in groups.columns:
            shown.append(m)
    return shown


def metric_label(column: str) -> str:
    """``Selection rate`` for ``selection_rate``, ``Selection rate [7]`` for the per-class ``selection_rate[7]``."""
    return catalogue.label(column)


def group_table(groups: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """The per-group table to display: group, n, then each metric followed by its CI as ``[lo, hi]`` text.

    ``groups`` is :meth:`AuditReport.groups_frame` output. For multiclass targets the base and selection
    rates are shown per class (the share of the group's samples of / predicted as each class).
    """
    metrics = _shown_metrics(groups, metrics or list(GROUP_METRICS))
    out = pd.DataFrame({"Group": groups["group"], "n": groups["n"].astype(int)})
    for m in metrics:
        out[metric_label(m)] = groups[m].astype(float)
        lo, hi = f"{m}_ci_low", f"{m}_ci_high"
        if lo in groups.columns:
            out[f"{metric_label(m)} CI"] = [
                "" if _is_missing(a) or _is_missing(b) else f"[{a:.3f}, {b:.3f}]"
                for a, b in zip(groups[lo], groups[hi])]
    return out


def metric_with_errors(groups: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Long table ``group, metric, value, err_minus, err_plus, n`` for bar charts with CI error bars.

    ``groups`` is :meth:`AuditReport.groups_frame` output; ``metric`` holds the
    display label; the errors are the distances from the value to the CI bounds
    (NaN without a bootstrap). Multiclass base and selection rates are drawn per class.
    """
    parts = []
    for metric in _shown_metrics(groups, metrics):
        value = groups[metric].astype(float).to_numpy()
        lo_col, hi_col = f"{metric}_ci_low", f"{metric}_ci_high"
        if lo_col in groups.columns:
            lo = groups[lo_col].astype(float).to_numpy()
            hi = groups[hi_col].astype(float).to_numpy()
            minus, plus = np.clip(value - lo, 0, None), np.clip(hi - value, 0, None)
        else:
            minus = plus = np.full_like(value, np.nan)
        parts.append(pd.DataFrame({"group": groups["group"].astype(str), "metric": metric_label(metric),
                                   "value": value, "err_minus": minus, "err_plus": plus,
                                   "n": groups["n"].astype(int)}))
    return pd.concat(parts, ignore_index=True)


def intersection_matrix(groups: Sequence[Mapping[str, Any]], row_attr: str, col_attr: str,
                        metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pivot intersectional groups into ``row_attr × col_attr`` tables of ``metric`` and of ``n``.

    ``groups`` is :attr:`AuditReport.groups` of a report over exactly these two
    attributes; a combination with no samples is left empty (NaN).
    """
    rows = []
    for g in groups:
        attrs = g["attributes"]
        rows.append({row_attr: attrs[row_attr], col_attr: attrs[col_attr], "value": g[metric], "n": g["n"]})
    frame = pd.DataFrame(rows)
    values = frame.pivot(index=row_attr, columns=col_attr, values="value").astype(float)
    counts = frame.pivot(index=row_attr, columns=col_attr, values="n").fillna(0).astype(int)
    return values, counts
