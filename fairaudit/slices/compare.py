"""Slices before → after: did a mitigation fix the worst slice, or move the harm to another one?

:func:`before_after_slices` runs :func:`~fairaudit.slices.find_slices` twice on the same
test rows and the same attribute table: once on the deployed model's decisions (*before*)
and once on the mitigated decisions (*after*). Both use the predictions the run's test
audits already made, so no model runs again. Every slice is compared with its complement
(the other test rows) as in :func:`find_slices` (SliceFinder, Chung et al. 2019, §3;
two-proportion z-test, Benjamini–Hochberg q-values over every slice tested, Poisson-bootstrap
interval of the gap).

What is recorded (the ``"slices"`` block of a run's result JSON):

* ``before`` / ``after``: the ``top`` (default 5) *harmful* slices of each model, in
  :func:`find_slices`' order (significant first, then by ``|gap|``), leaving out slices
  implied by a more general one. Harmful means the slice is worse off than its complement:
  a negative gap for accuracy, TPR, TNR and precision, a positive one for error rate, FNR and
  FPR; for the selection rate either sign counts. Each entry is :func:`find_slices`' own
  dictionary (``slice``, ``n``, ``value``, ``complement``, ``gap``, ``ci``, ``p_value``,
  ``q_value``, ``significant``, ``implied_by``).
* ``worst_before_after``: the first slice of ``before`` (the worst slice before) with its
  numbers before and after, the change of its gap, its rank among the harmful slices after
  (``None``: no longer harmful, or implied by a more general slice) and whether it is still
  significantly harmful after.
* ``after_top_before``: for each slice of ``after``, its numbers before (``None`` when the
  slice was not tested before), so a table can show whether the harm moved there.
* ``n_slices_tested`` and ``n_significant`` per stage, the settings, the attribute columns sliced
  on (``attributes``), those left out (``left_out``) and ``reason``: ``None``, or why nothing could be computed (then ``before``, ``after`` and
  ``worst_before_after`` are ``None``).

A mitigation run slices on every attribute of its test split (:func:`fairaudit.slices.dataset_attributes`:
the dataset's attribute table and, for tabular data, every input column) except the target: a
slice of the label alone is a per-class accuracy (the TPR or the TNR, which the audits report),
and with it nearly every top slice would read ``target = class ∧ …``, hiding which inputs the
harm follows. Deviation from :func:`find_slices`' defaults, to stay cheap inside every run:
depth 2 (pairs of attribute values), 200 bootstrap resamples, and a smallest slice of
:func:`default_min_size` rows (5 % of the test rows, between 10 and 50).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import pandas as pd

from fairaudit.errors import FairauditError
from fairaudit.slices import METRICS, find_slices

__all__ = ["before_after_slices", "unavailable", "default_min_size", "harmful", "HARM_SIGN", "SETTINGS"]

SETTINGS = {"metric": "accuracy", "max_depth": 2, "n_boot": 200, "alpha": 0.05, "top": 5, "threshold": 0.5}
"""The defaults a mitigation run records its slices with."""

HARM_SIGN = {"accuracy": -1, "tpr": -1, "tnr": -1, "ppv": -1, "error_rate": 1, "fnr": 1, "fpr": 1,
             "selection_rate": 0}
"""Sign of a harmful gap (slice − complement) per metric; 0: either sign."""

STATS = ("value", "complement", "gap", "ci", "p_value", "q_value", "significant", "implied_by")


def default_min_size(n_rows: int) -> int:
    """The smallest slice tested on ``n_rows`` test rows: 5 % of them, at least 10 and at most 50 (never more
    than the rows)."""
    return max(1, min(int(n_rows), 50, max(10, int(n_rows) // 20)))


def harmful(entry: dict, metric: str) -> bool:
    """Whether a slice of :func:`find_slices` is worse off than its complement under ``metric``."""
    gap = entry.get("gap")
    if gap is None:
        return False
    sign = HARM_SIGN[metric]
    return gap != 0 if sign == 0 else gap * sign > 0


def _ranked(slices: list[dict], metric: str) -> list[dict]:
    """The harmful, not implied slices in :func:`find_slices`' order."""
    return [s for s in slices if harmful(s, metric) and not s.get("implied_by")]


def _stats(entry: dict | None) -> dict | None:
    return None if entry is None else {k: entry.get(k) for k in STATS}


def _key(conditions: dict) -> tuple:
    return tuple(sorted((str(k), str(v)) for k, v in conditions.items()))


def _decisions(preds, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(preds.labels), np.asarray(preds.predictions(threshold))


def aligned(before, after, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, decisions before and decisions after, in the row order of ``before`` (matched on the sample
    indices); :class:`FairauditError` when the two predictions do not cover the same test rows."""
    y, yhat_b = _decisions(before, threshold)
    y_a, yhat_a = _decisions(after, threshold)
    ib, ia = np.asarray(before.indices), np.asarray(after.indices)
    if not np.array_equal(ib, ia):
        if len(ib) != len(ia) or not np.array_equal(np.sort(ib), np.sort(ia)):
            raise FairauditError("the before and after predictions do not cover the same test rows, so their "
                                 "slices cannot be compared.")
        order = np.argsort(ia, kind="stable")[np.argsort(np.argsort(ib, kind="stable"), kind="stable")]
        y_a, yhat_a = y_a[order], yhat_a[order]
    if not np.array_equal(y, y_a):
        raise FairauditError("the before and after predictions disagree on the true labels of the test rows.")
    return y, yhat_b, yhat_a


def unavailable(reason: str, metric: str = SETTINGS["metric"]) -> dict:
    """The ``"slices"`` block of a run whose slices could not be computed, saying why."""
    return {"metric": metric, "n_slices_tested": None, "n_significant": None, "before": None, "after": None,
            "worst_before_after": None, "after_top_before": None, "reason": reason}


def before_after_slices(before, after, attributes: pd.DataFrame, *, metric: str = SETTINGS["metric"],
                        max_depth: int = SETTINGS["max_depth"], min_size: int | None = None,
                        n_boot: int = SETTINGS["n_boot"], alpha: float = SETTINGS["alpha"], seed: int = 0,
                        device: Any = "cpu", threshold: float = SETTINGS["threshold"],
                        top: int = SETTINGS["top"], left_out: Sequence[str] = ()) -> dict:
    """The top slices of the deployed model (``before``) and of the mitigated one (``after``) on the same rows.

    ``before`` / ``after``: :class:`~fairaudit.audit.inference.Predictions` of the same test rows
    (matched on their sample indices; decisions at ``threshold``, as the audits make them);
    ``attributes``: one row per row of ``before``, in its order (e.g.
    :func:`fairaudit.slices.dataset_attributes` of ``before.indices``). ``min_size`` defaults
    to :func:`default_min_size`; the columns ``left_out`` are not sliced on (a mitigation run leaves
    out the target: see the module docstring). Both searches use the same ``seed``. See the module docstring
    for what the returned block holds; raises :class:`FairauditError` when the slices cannot
    be computed (the caller records :func:`unavailable` with its message).
    """
    started = time.perf_counter()
    if metric not in METRICS:
        raise FairauditError(f"unknown slice metric {metric!r}; choose one of {', '.join(METRICS)}.")
    y, yhat_b, yhat_a = aligned(before, after, threshold)
    left_out = [str(c) for c in left_out if c in attributes.columns]
    attributes = attributes.drop(columns=left_out)
    min_size = default_min_size(len(y)) if min_size is None else int(min_size)
    options = dict(metric=metric, max_depth=max_depth, min_size=min_size, n_boot=n_boot, alpha=alpha, seed=seed,
                   device=device)
    reports = {"before": find_slices((y, yhat_b), attributes, **options),
               "after": find_slices((y, yhat_a), attributes, **options)}
    ranked = {stage: _ranked(r.slices, metric) for stage, r in reports.items()}
    by_key = {stage: {_key(s["slice"]): s for s in r.slices} for stage, r in reports.items()}
    rank_after = {_key(s["slice"]): i + 1 for i, s in enumerate(ranked["after"])}
    worst = None
    if ranked["before"]:
        first = ranked["before"][0]
        later = by_key["after"].get(_key(first["slice"]))
        worst = {"slice": first["slice"], "n": first["n"], "before": _stats(first), "after": _stats(later),
                 "gap_change": (later["gap"] - first["gap"]) if later and later["gap"] is not None
                 and first["gap"] is not None else None,
                 "rank_after": rank_after.get(_key(first["slice"])),
                 "still_significant": bool(later and later["significant"] and harmful(later, metric))}
    top_after = ranked["after"][:top]
    meta = reports["before"].meta
    return {"metric": metric, "direction": {-1: "lower is worse", 1: "higher is worse", 0: "either way"}[
                HARM_SIGN[metric]],
            "max_depth": int(max_depth), "min_size": int(min_size), "n_boot": int(n_boot), "alpha": float(alpha),
            "seed": int(seed), "threshold": float(threshold), "top": int(top), "n_rows": int(len(y)),
            "attributes": list(meta["attributes"]), "left_out": left_out,
            "n_slices_tested": {stage: r.n_slices_tested for stage, r in reports.items()},
            "n_significant": {stage: r.meta["n_significant"] for stage, r in reports.items()},
            "before": ranked["before"][:top], "after": top_after, "worst_before_after": worst,
            "after_top_before": [_stats(by_key["before"].get(_key(s["slice"]))) for s in top_after],
            "seconds": round(time.perf_counter() - started, 3), "reason": None}
