"""Summaries over seeds and paired comparisons between two rows of a benchmark.

Confidence intervals are Student-t intervals over seeds at 95 %:

* a row's metric: ``mean ± t(0.975, n−1) · s / √n`` over its ``n`` seeds
  (``s`` the sample standard deviation, ``n − 1`` degrees of freedom);
* a comparison of row A against row B: the differences ``d_k = A_k − B_k``
  paired by seed ``k`` (the seeds both rows finished), then
  ``mean(d) ± t(0.975, n−1) · s_d / √n``.

With one seed (or one shared seed) the interval is undefined: ``None``, and
the comparison does not hold. The interval covers the variation between
training seeds on a fixed test split, not the sampling of the test split
(that is what each run's bootstrap interval is for).

A comparison *holds* when the difference goes in the claimed direction
(lower for disparities and leakage, higher for accuracy, balanced and
worst-group accuracy and robustness S_R) and its interval excludes 0.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from fairaudit.metrics.catalogue import lower_is_better

CONFIDENCE = 0.95
CI_METHOD = ("95 % Student-t interval over seeds (n − 1 degrees of freedom); comparisons use the differences "
             "paired by seed; undefined (null) for a single seed")


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> list[float] | None:
    """The t-interval of the mean of ``values``; ``None`` for fewer than two values."""
    from scipy import stats

    xs = _finite(values)
    n = len(xs)
    if n < 2:
        return None
    mean = sum(xs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return [mean - half, mean + half]


def summarize(values: Sequence[float | None]) -> dict:
    """``{"mean", "std", "ci", "values", "n_undefined"}`` of one metric over seeds (``std``: sample standard
    deviation, ``None`` for one value). Missing values (``None``, e.g. a gap the seed's audit could not
    define) are left out, never read as 0, and counted in ``n_undefined``; ``mean`` is ``None`` when no seed
    has a value."""
    xs = _finite(values)
    n = len(xs)
    mean = sum(xs) / n if n else None
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "ci": t_interval(xs), "values": xs, "n_undefined": len(values) - n}


def paired_comparison(values: Mapping[int, float | None], against: Mapping[int, float | None], metric: str) -> dict:
    """Row A (``values``, seed → value) against row B (``against``), paired by seed.

    Returns ``{"metric", "direction", "n", "seeds", "mean_diff", "ci", "holds", "verdict", "n_undefined"}``:
    ``mean_diff`` is the mean of A − B, ``direction`` the claimed one (``lower`` or ``higher``), ``verdict``
    ``better`` / ``worse`` (interval on one side of 0) or ``inconclusive``. A seed of both rows whose value
    is ``None`` on either side (undefined) is left out of the pairs and counted in ``n_undefined``.
    """
    common = [s for s in values if s in against]
    seeds = sorted(s for s in common if _finite([values[s]]) and _finite([against[s]]))
    diffs = [float(values[s]) - float(against[s]) for s in seeds]
    direction = "lower" if lower_is_better(metric) else "higher"
    mean = sum(diffs) / len(diffs) if diffs else None
    ci = t_interval(diffs)
    verdict = "inconclusive"
    if ci is not None:
        if ci[1] < 0 or ci[0] > 0:
            improved = (ci[1] < 0) == (direction == "lower")
            verdict = "better" if improved else "worse"
    return {"metric": metric, "direction": direction, "n": len(diffs), "seeds": seeds, "mean_diff": mean,
            "ci": ci, "holds": verdict == "better", "verdict": verdict, "n_undefined": len(common) - len(seeds)}
