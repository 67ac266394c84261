"""Why a disparity is undefined, in one sentence a reader can act on.

A gap between groups compares a rate of at least two groups (see
:mod:`fairaudit.metrics.rates`); when fewer define it (e.g. only one colour
group has samples of a digit, so only that group has a true-positive rate for
it) the gap is undefined rather than 0, and the report records the reason next
to the ``null`` value, e.g. ``"only group 'color=red' defines the true-positive
rate of class '3' (no other group has samples of class '3')"``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from fairaudit.metrics.catalogue import phrase
from fairaudit.metrics.rates import GAP_RATES, MIN_GROUPS_FOR_GAP



def _denominator(rate: str, class_name: str | None, positive: str | None) -> str:
    """What a group must contain to define ``rate``."""
    if rate in ("tpr", "fnr"):
        return f"samples of class '{class_name}'" if class_name is not None else f"positives ('{positive}')"
    if rate == "fpr":
        return f"samples of another class than '{class_name}'" if class_name is not None else "negatives"
    return "samples"


def rate_reason(rate: str, values: np.ndarray, group_names: Sequence[str], class_name: str | None = None,
                positive: str | None = None) -> str | None:
    """Why a gap over the per-group ``values`` (``[G]``, NaN = undefined) of ``rate`` is undefined, or ``None``
    when at least two groups define it. ``class_name`` names the one-vs-rest class of a multiclass target."""
    defining = [name for name, v in zip(group_names, values) if not np.isnan(v)]
    if len(defining) >= MIN_GROUPS_FOR_GAP:
        return None
    what = phrase(rate) + ("" if class_name is None else f" of class '{class_name}'")
    needed = _denominator(rate, class_name, positive)
    if len(group_names) < MIN_GROUPS_FOR_GAP:
        return f"there is only one group, so no {what} can be compared"
    if not defining:
        return f"no group defines the {what} (no group has {needed})"
    return f"only group '{defining[0]}' defines the {what} (no other group has {needed})"


def gap_reasons(rates: Mapping[str, np.ndarray], values: Mapping[str, float], group_names: Sequence[str],
                class_name: str | None = None, positive: str | None = None) -> dict[str, str]:
    """``{disparity: reason}`` for every disparity in ``values`` that is NaN, from the per-group ``rates``
    (``{rate: [G]}``) it compares."""
    out = {}
    for name, needed in GAP_RATES.items():
        if name not in values or not np.isnan(values[name]):
            continue
        reasons = [rate_reason(rate, rates[rate], group_names, class_name, positive) for rate in needed]
        reasons = list(dict.fromkeys(r for r in reasons if r is not None))
        if not reasons and name == "dp_ratio":
            of = "" if class_name is None else f" of class '{class_name}'"
            reasons = [f"every group's selection rate{of} is 0, so the ratio min / max is 0 / 0"]
        out[name] = "; ".join(reasons) if reasons else "undefined"
    return out


def mean_reasons(values: Mapping[str, float], per_class: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """Reasons for the multiclass disparities (means over classes) that are NaN: undefined in every class,
    quoting the first class's reason (``per_class``: ``{class: {disparity: reason}}``)."""
    out = {}
    for name in GAP_RATES:
        if name not in values or not np.isnan(values[name]):
            continue
        first = next((reasons[name] for reasons in per_class.values() if name in reasons), None)
        out[name] = (f"undefined in every one of the {len(per_class)} classes, e.g. {first}" if first
                     else "undefined in every class")
    return out
