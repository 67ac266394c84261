"""Small-group guardrails: the groups of an audit too small or too uncertain to be read on their own.

A group is *flagged* when it has fewer than ``min_group_size`` rows (default 30) or when the percentile
bootstrap interval of its accuracy is wider than ``max_ci_width`` (default 0.2). Its rates, and every
disparity that involves it, are then inconclusive: a wide interval says so openly, and the interval of a
handful of rows is unreliable in both directions (five correct rows give the interval [1, 1]).

Every view asks :func:`flag_groups` (or :meth:`AuditReport.flagged_groups
<fairaudit.metrics.AuditReport.flagged_groups>`): the audit JSON (``flagged_groups``), the Audit page's
badge, the HTML/JSON run report and the CI gate (``fairaudit check``, whose policy may change both limits),
which never lets a rule involving a flagged group pass. An audit run without bootstrap (``n_boot = 0``) has
no interval, so only the size is checked.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

MIN_GROUP_SIZE = 30
"""Groups with fewer rows are flagged."""

MAX_CI_WIDTH = 0.2
"""Groups whose accuracy interval is wider are flagged."""

WHY_FLAGGED = ("A flagged group's rates and every disparity involving it are too uncertain to act on (its "
               "bootstrap interval is wide, or unreliable in both directions for a handful of rows), so read "
               "them as inconclusive until the group has more rows.")
"""The one sentence that tells a reader why a flag matters."""

FLAG_RULE = (f"Flagged: fewer than {MIN_GROUP_SIZE} rows or an accuracy interval wider than {MAX_CI_WIDTH:g}.")
"""The default limits in words."""


def finite(x: Any) -> float | None:
    """``x`` as a float, or ``None`` when it is missing, not a number or not finite."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def finite_interval(ci: Any) -> list[float] | None:
    """``[low, high]`` as floats, or ``None`` when there is no interval or a bound is not finite."""
    if not ci or len(ci) != 2:
        return None
    lo, hi = finite(ci[0]), finite(ci[1])
    return None if lo is None or hi is None else [lo, hi]


def flag_groups(groups: Sequence[Mapping[str, Any]], min_group_size: int = MIN_GROUP_SIZE,
                max_ci_width: float = MAX_CI_WIDTH) -> list[dict[str, Any]]:
    """The flagged groups among ``groups`` (an audit's ``groups`` entries), in their order.

    Each entry has ``group``, ``n``, ``ci_width`` (the width of the accuracy interval; ``None`` without
    bootstrap) and ``reasons``, one sentence fragment per limit the group breaks.
    """
    flagged = []
    for g in groups:
        n = int(g["n"])
        ci = finite_interval((g.get("ci") or {}).get("accuracy"))
        width = None if ci is None else ci[1] - ci[0]
        reasons = []
        if n < min_group_size:
            reasons.append(f"{n} rows, fewer than min_group_size {min_group_size}")
        if width is not None and width > max_ci_width:
            reasons.append(f"accuracy interval {width:.3f} wide, more than max_ci_width {max_ci_width:g}")
        if reasons:
            flagged.append({"group": g["group"], "n": n, "ci_width": width, "reasons": reasons})
    return flagged


def describe_flag(flag: Mapping[str, Any]) -> str:
    """One line for a flagged group: its name, size and interval width, e.g. ``'sex=x': 12 rows, accuracy
    CI width 0.410``."""
    width = "no interval" if flag.get("ci_width") is None else f"accuracy CI width {flag['ci_width']:.3f}"
    return f"'{flag['group']}': {flag['n']:,} rows, {width}"
