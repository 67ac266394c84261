"""The audit report: a plain dataclass that serialises to JSON and tables."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairaudit.metrics.guardrails import MAX_CI_WIDTH, MIN_GROUP_SIZE, flag_groups
from fairaudit.metrics.rates import DISPARITY_NAMES, OVERALL_METRICS, PER_GROUP_METRICS

PER_CLASS_COLUMNS = ("base_rate", "selection_rate")
"""Per-group rates that multiclass reports give per class only (see :meth:`AuditReport.groups_frame`)."""

_NUMERIC_KEYS = frozenset(PER_GROUP_METRICS) | frozenset(DISPARITY_NAMES) | frozenset(OVERALL_METRICS)


def to_json_types(obj: Any) -> Any:
    """Recursively convert to JSON types: numpy scalars to Python numbers, tuples to lists, NaN/inf to ``None``."""
    if isinstance(obj, dict):
        return {str(k): to_json_types(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [to_json_types(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _restore_nan(obj: Any, key: str | None = None, in_ci: bool = False) -> Any:
    """Inverse of the NaN → ``None`` step for metric values; a ``None`` interval (no bootstrap) stays ``None``."""
    if isinstance(obj, dict):
        return {k: _restore_nan(v, k, in_ci or k == "ci") for k, v in obj.items()}
    if isinstance(obj, list):
        if key in _NUMERIC_KEYS and len(obj) == 2 and all(v is None or isinstance(v, (int, float)) for v in obj):
            return [math.nan if v is None else v for v in obj]
        return [_restore_nan(v, None, in_ci) for v in obj]
    if obj is None and key in _NUMERIC_KEYS and not in_ci:
        return math.nan
    return obj


@dataclass
class AuditReport:
    """Per-group metrics, disparities and bootstrap intervals of one audit.

    Attributes
    ----------
    overall:
        ``accuracy``, ``balanced_accuracy``, ``bacc_cells`` and ``n`` of the whole population.
    groups:
        One dict per (intersectional) group: ``group`` (readable name),
        ``attributes`` ``{attr: value label}``, ``n``, every metric of
        :data:`~fairaudit.metrics.PER_GROUP_METRICS`, ``ci`` ``{metric: [low, high]}``
        and ``confusion`` (``C × C`` counts, rows = true class); multiclass
        targets add ``per_class`` ``{class: {metric: value}}`` one-vs-rest rates.
        For multiclass targets a group's ``base_rate`` and ``selection_rate``
        are NaN (their mean over classes is ``1/C`` in every group): read the
        share of each true and predicted class in ``per_class``.
    disparities:
        Every name of :data:`~fairaudit.metrics.DISPARITY_NAMES` plus the
        boolean ``passes_80_rule`` (``dp_ratio >= 0.8``; ``None`` when the ratio
        is undefined). A gap that fewer than two groups define is NaN here and
        ``null`` in JSON, never 0; ``undefined`` says why.
    ci:
        ``[low, high]`` percentile interval of every disparity and overall
        score (``None`` when no bootstrap was run, and for an undefined
        disparity).
    marginal:
        With several attributes, ``{attr: {"groups", "disparities", "ci",
        "undefined"}}`` for each attribute alone.
    per_class:
        Multiclass targets: ``{class: {"disparities", "ci", "undefined"}}``
        of each one-vs-rest problem (the top-level disparities are their mean
        over the classes where they are defined).
    meta:
        How the audit was run: threshold, prediction rule, bootstrap settings,
        device, sensitive attributes, classes.
    undefined:
        ``{disparity: reason}`` for every undefined disparity, e.g.
        ``{"eod": "only group 'color=red' defines the true-positive rate of
        class '3' (no other group has samples of class '3')"}``.

    The JSON adds ``flagged_groups`` (:meth:`flagged_groups`: groups under 30 rows or with an accuracy
    interval wider than 0.2, see :mod:`fairaudit.metrics.guardrails`) and ``guardrails``, the two limits used.
    """

    overall: dict[str, Any]
    groups: list[dict[str, Any]]
    disparities: dict[str, Any]
    ci: dict[str, Any]
    marginal: dict[str, Any] = field(default_factory=dict)
    per_class: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    undefined: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A dict of pure JSON types (NaN and infinities become ``None``)."""
        return to_json_types({
            "overall": self.overall, "groups": self.groups, "disparities": self.disparities, "ci": self.ci,
            "marginal": self.marginal, "per_class": self.per_class, "meta": self.meta,
            "undefined": self.undefined, "flagged_groups": self.flagged_groups(),
            "guardrails": {"min_group_size": MIN_GROUP_SIZE, "max_ci_width": MAX_CI_WIDTH},
        })

    def flagged_groups(self, min_group_size: int = MIN_GROUP_SIZE,
                       max_ci_width: float = MAX_CI_WIDTH) -> list[dict[str, Any]]:
        """The groups too small or too uncertain to be read on their own
        (:func:`fairaudit.metrics.guardrails.flag_groups`): ``group``, ``n``, ``ci_width``, ``reasons``."""
        return flag_groups(self.groups, min_group_size, max_ci_width)

    def to_json(self, path: str | Path | None = None) -> str:
        """The report as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AuditReport":
        """Rebuild a report from :meth:`to_dict` output (``None`` metric values become NaN again)."""
        d = _restore_nan(d)
        return cls(overall=d["overall"], groups=d["groups"], disparities=d["disparities"], ci=d["ci"],
                   marginal=d.get("marginal", {}), per_class=d.get("per_class", {}), meta=d.get("meta", {}),
                   undefined=d.get("undefined") or {})

    def groups_frame(self) -> pd.DataFrame:
        """One row per group: name, attribute labels, ``n``, every metric and, with CIs, ``<metric>_ci_low/high``.

        Multiclass targets add ``base_rate[<class>]`` and ``selection_rate[<class>]``: the share of the group's
        samples whose true (predicted) class is ``<class>``.
        """
        rows = []
        for g in self.groups:
            row = {"group": g["group"], **g["attributes"], "n": g["n"]}
            row.update({m: g[m] for m in PER_GROUP_METRICS})
            for m in PER_CLASS_COLUMNS:
                row.update({f"{m}[{c}]": rates[m] for c, rates in (g.get("per_class") or {}).items()})
            for m, interval in (g.get("ci") or {}).items():
                if interval is not None:
                    row[f"{m}_ci_low"], row[f"{m}_ci_high"] = interval
            rows.append(row)
        return pd.DataFrame(rows)

    def groups_csv(self) -> str:
        """:meth:`groups_frame` as CSV text, with cells that could run as spreadsheet formulas neutralised."""
        from fairaudit.io_safety import csv_text

        return csv_text(self.groups_frame())

    def disparity_frame(self) -> pd.DataFrame:
        """Columns ``name, value, ci_low, ci_high, undefined``, one row per disparity (``undefined``: why the
        value is NaN, else empty)."""
        rows = []
        for name in DISPARITY_NAMES:
            interval = self.ci.get(name) or (math.nan, math.nan)
            rows.append({"name": name, "value": self.disparities[name], "ci_low": interval[0], "ci_high": interval[1],
                         "undefined": self.undefined.get(name, "")})
        return pd.DataFrame(rows).astype({"value": float, "ci_low": float, "ci_high": float})
