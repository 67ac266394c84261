"""``audit_metrics``: per-group metrics, disparities and bootstrap intervals in one call."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from fairaudit.device import resolve_device
from fairaudit.errors import MetricInputError
from fairaudit.metrics.bootstrap import (BOOTSTRAP_METHODS, make_generator, percentile_interval, poisson_confusions_cells,
                                         poisson_confusions_rows)
from fairaudit.metrics.confusion import cell_ids, confusion_counts, merge_groups
from fairaudit.metrics.groups import GroupIndex, describe, index_groups
from fairaudit.metrics.inputs import MAX_GROUP_VALUES, prepare_inputs
from fairaudit.metrics.rates import DISPARITY_NAMES, OVERALL_METRICS, PER_GROUP_METRICS, summarize
from fairaudit.metrics.report import AuditReport
from fairaudit.metrics.undefined import gap_reasons, mean_reasons


def audit_metrics(
    y_true: Any,
    scores: Any = None,
    y_pred: Any = None,
    sensitive: Any = None,
    sensitive_names: Sequence[str] | None = None,
    value_names: Mapping[str, Sequence[str]] | None = None,
    class_names: Sequence[str] | None = None,
    threshold: float = 0.5,
    n_boot: int = 1000,
    ci_level: float = 0.95,
    seed: int = 0,
    device: str | torch.device = "auto",
    min_group_size: int = 1,
    bootstrap: str = "rows",
    check_groups: bool = True,
) -> AuditReport:
    """Audit classifier outputs for group fairness.

    Parameters
    ----------
    y_true:
        ``(N,)`` integer class codes ``0..C-1``.
    scores:
        Binary targets: ``(N,)`` P(y=1) or ``(N, 2)`` probabilities, predicted
        positive when ``P(y=1) >= threshold``. Multiclass: ``(N, C)``
        probabilities, predicted class = argmax.
    y_pred:
        Hard predictions ``(N,)``, used when ``scores`` is ``None``.
    sensitive:
        ``(N, k)`` (or ``(N,)``) non-negative integer codes of ``k`` sensitive
        attributes; several attributes give intersectional groups.
    sensitive_names, value_names, class_names:
        Attribute names, ``{attr: [label per code]}`` and class labels, used
        to name groups (``"Male=1 & Young=0"``) and classes.
    n_boot, ci_level, seed:
        Poisson-bootstrap resamples (0 = no intervals), interval level and
        seed of the device's random generator.
    device:
        ``"auto"``, ``"cpu"`` or ``"cuda"``; all arithmetic runs there in float64.
    min_group_size:
        Groups with fewer samples raise :class:`~fairaudit.errors.MetricInputError`.
    bootstrap:
        ``"rows"`` (a Poisson(1) weight per row) or ``"cells"`` (a Poisson draw
        per confusion cell; same distribution, much cheaper for large N).
    check_groups:
        Refuse a single group (every disparity would read 0) and an attribute
        with more than ``MAX_GROUP_VALUES`` (20) distinct values (a continuous
        column, to be binned); ``False`` for per-group tables that need no
        comparison.

    Rates whose denominator is zero are NaN and are ignored by max/min over
    groups. A gap between groups that fewer than two groups define (e.g. the
    true-positive rate of a class that only one group has samples of) is NaN
    in the report and ``null`` in its JSON, as is its interval, and
    :attr:`AuditReport.undefined` says why (also per attribute in
    ``marginal`` and per class in ``per_class``); see
    :mod:`fairaudit.metrics.rates` for every definition.
    """
    dev = resolve_device(device)
    _check_settings(n_boot, ci_level, min_group_size, bootstrap)
    inp = prepare_inputs(y_true, scores, y_pred, sensitive, sensitive_names, class_names, threshold, dev)
    index = index_groups(inp.sensitive, inp.sensitive_names, value_names)
    n_classes = inp.n_classes
    cells = cell_ids(index.ids, inp.y_true, inp.y_pred, n_classes)
    conf = confusion_counts(cells, index.n_groups, n_classes)
    sizes = check_counts(index, conf, min_group_size, check_groups)
    replicates = None
    if n_boot > 0:
        gen = make_generator(seed, dev)
        if bootstrap == "rows":
            replicates = poisson_confusions_rows(cells, index.n_groups, n_classes, n_boot, gen)
        else:
            replicates = poisson_confusions_cells(conf, n_boot, gen)
    meta = {
        "threshold": float(threshold) if inp.prediction_rule.startswith("scores") else None,
        "prediction": inp.prediction_rule,
        "n_boot": int(n_boot), "ci_level": float(ci_level), "seed": int(seed), "bootstrap": bootstrap,
        "device": str(dev),
    }
    return report_from_counts(conf, replicates, index, sizes, inp.class_names, ci_level, value_names, meta,
                              min_group_size)


def check_counts(index: GroupIndex, conf: torch.Tensor, min_group_size: int, check_groups: bool = True) -> np.ndarray:
    """Group sizes ``[G]`` of the confusion tensor, after the checks of :func:`audit_metrics` (at least two
    groups, no continuous attribute, no group under ``min_group_size``)."""
    sizes = conf.sum((-2, -1)).round().long().cpu().numpy()
    if check_groups:
        _check_groups(index)
    _check_group_sizes(index, sizes, min_group_size)
    return sizes


def report_from_counts(conf: torch.Tensor, replicates: torch.Tensor | None, index: GroupIndex, sizes: np.ndarray,
                       class_names: Sequence[str], ci_level: float,
                       value_names: Mapping[str, Sequence[str]] | None, meta: dict[str, Any],
                       min_group_size: int = 1) -> AuditReport:
    """The report of a confusion tensor ``[G, C, C]`` and its bootstrap replicates ``[B, G, C, C]`` (or ``None``).

    The one place where counts become a report: :func:`audit_metrics` and the streaming
    :class:`~fairaudit.metrics.GroupMetrics` both end here. ``meta`` holds the prediction and bootstrap
    settings; the group and class fields are added.
    """
    class_names = list(class_names)
    n_classes = len(class_names)
    section = _Section(conf, replicates, ci_level, index.names, class_names)
    groups = section.groups(index.attributes, sizes)
    disparities, ci = section.disparities()
    overall = {name: float(v) for name, v in section.point["overall"].items()}
    overall["n"] = int(sizes.sum())
    ci.update(section.intervals(section.point_ci("overall"), OVERALL_METRICS))

    marginal = {}
    if len(index.sensitive_names) > 1:
        for j, attr in enumerate(index.sensitive_names):
            marginal[attr] = _marginal_section(index, j, attr, conf, replicates, ci_level, value_names,
                                               class_names)

    per_class = {}
    if section.point["per_class"] is not None:
        point, bounds = section.point["per_class"], section.point_ci("per_class")
        for c, cname in enumerate(class_names):
            undefined = section.class_undefined[cname]
            per_class[cname] = {
                "disparities": {k: float(point[k][c]) for k in DISPARITY_NAMES},
                "ci": {k: (None if bounds is None or k in undefined else bounds[k][:, c].tolist())
                       for k in DISPARITY_NAMES},
                "undefined": undefined,
            }

    meta = {
        **meta, "sensitive_names": index.sensitive_names, "classes": class_names,
        "n_classes": n_classes, "positive_class": class_names[1] if n_classes == 2 else None,
        "min_group_size": int(min_group_size), "n_groups": index.n_groups,
        "groups": "intersections" if len(index.sensitive_names) > 1 else "single attribute",
    }
    return AuditReport(overall=overall, groups=groups, disparities=disparities, ci=ci, marginal=marginal,
                       per_class=per_class, meta=meta, undefined=section.undefined)


def _check_settings(n_boot: int, ci_level: float, min_group_size: int, bootstrap: str) -> None:
    if int(n_boot) != n_boot or n_boot < 0:
        raise MetricInputError(f"n_boot must be a whole number >= 0, got {n_boot!r}.")
    if not 0.0 < float(ci_level) < 1.0:
        raise MetricInputError(f"ci_level must lie strictly between 0 and 1, got {ci_level!r}.")
    if int(min_group_size) != min_group_size or min_group_size < 1:
        raise MetricInputError(f"min_group_size must be a whole number >= 1, got {min_group_size!r}.")
    if bootstrap not in BOOTSTRAP_METHODS:
        raise MetricInputError(f"bootstrap must be one of {', '.join(BOOTSTRAP_METHODS)}, got {bootstrap!r}.")


def _check_groups(index: GroupIndex) -> None:
    """At least two groups to compare, and no attribute with so many values that it must be continuous."""
    if index.n_groups < 2:
        raise MetricInputError(f"every sample is in the one group '{index.names[0]}', so there is nothing to "
                               "compare; audit a sensitive attribute that takes at least two values in the data.")
    for j, attr in enumerate(index.sensitive_names):
        n_values = len(np.unique(index.codes[:, j]))
        if n_values > MAX_GROUP_VALUES:
            raise MetricInputError(f"sensitive attribute '{attr}' has {n_values} distinct values, more than "
                                   f"{MAX_GROUP_VALUES}; bin it into a few ranges (e.g. age bands) before auditing, "
                                   "since one group per value makes tiny groups and meaningless disparities.")


def _check_group_sizes(index: GroupIndex, sizes: np.ndarray, min_group_size: int) -> None:
    small = [(index.names[g], int(sizes[g])) for g in np.argsort(sizes, kind="stable") if sizes[g] < min_group_size]
    if small:
        listed = ", ".join(f"'{name}' has {n}" for name, n in small[:3])
        more = f" (and {len(small) - 3} more)" if len(small) > 3 else ""
        raise MetricInputError(f"group {listed} sample(s){more}, fewer than min_group_size={min_group_size}; "
                               "merge values, drop an attribute or lower min_group_size (--min-group-size).")


class _Section:
    """Point estimates and intervals of one confusion tensor (all groups, or one attribute alone)."""

    def __init__(self, conf: torch.Tensor, replicates: torch.Tensor | None, ci_level: float,
                 names: Sequence[str], class_names: Sequence[str]):
        self.conf = conf
        self.names, self.class_names = list(names), list(class_names)
        self.point = _to_numpy(summarize(conf))
        self.bounds = None if replicates is None else _to_numpy(_intervals(summarize(replicates), ci_level))
        self.undefined, self.class_undefined = self._reasons()

    def _reasons(self) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        """Why each undefined disparity is undefined: overall, and per class for multiclass targets."""
        values = {k: float(v) for k, v in self.point["disparities"].items()}
        ovr = self.point["group_per_class"]
        if ovr is None:
            positive = self.class_names[1] if len(self.class_names) == 2 else None
            return gap_reasons(self.point["groups"], values, self.names, positive=positive), {}
        per_class = {}
        for c, cname in enumerate(self.class_names):
            class_values = {k: float(v[c]) for k, v in self.point["per_class"].items()}
            per_class[cname] = gap_reasons({k: v[:, c] for k, v in ovr.items()}, class_values, self.names,
                                           class_name=cname)
        reasons = mean_reasons(values, per_class)
        missing = [cname for cname, r in per_class.items() if "bias_sum" in r]
        if missing:  # a sum over classes needs every class's term, where a mean needs one
            first = per_class[missing[0]]["bias_sum"]
            reasons["bias_sum"] = (f"the sum over classes needs every class's gap, and {len(missing)} of the "
                                   f"{len(per_class)} classes leave it undefined, e.g. {first}")
        return reasons, per_class

    def point_ci(self, part: str) -> dict[str, np.ndarray] | None:
        return None if self.bounds is None else self.bounds[part]

    @staticmethod
    def intervals(bounds: dict[str, np.ndarray] | None, names: Sequence[str]) -> dict[str, list[float] | None]:
        return {k: (None if bounds is None else bounds[k].tolist()) for k in names}

    def groups(self, attributes: Sequence[dict[str, str]], sizes: np.ndarray) -> list[dict[str, Any]]:
        table, bounds = self.point["groups"], self.point_ci("groups")
        per_class = self.point["group_per_class"]
        confusion = self.conf.round().long().cpu().numpy()
        out = []
        for g, name in enumerate(self.names):
            row = {"group": name, "attributes": dict(attributes[g]), "n": int(sizes[g])}
            row.update({m: float(table[m][g]) for m in PER_GROUP_METRICS})
            row["ci"] = {m: (None if bounds is None else bounds[m][:, g].tolist()) for m in PER_GROUP_METRICS}
            row["confusion"] = confusion[g].tolist()
            if per_class is not None:
                row["per_class"] = {c: {m: float(per_class[m][g, j]) for m in PER_GROUP_METRICS}
                                    for j, c in enumerate(self.class_names)}
            out.append(row)
        return out

    def disparities(self) -> tuple[dict[str, Any], dict[str, Any]]:
        values = {k: float(self.point["disparities"][k]) for k in DISPARITY_NAMES}
        ratio = values["dp_ratio"]
        values["passes_80_rule"] = None if math.isnan(ratio) else bool(ratio >= 0.8)
        ci = self.intervals(self.point_ci("disparities"), DISPARITY_NAMES)
        return values, {k: (None if k in self.undefined else v) for k, v in ci.items()}


def _marginal_section(index: GroupIndex, j: int, attr: str, conf: torch.Tensor, replicates: torch.Tensor | None,
                      ci_level: float, value_names: Mapping[str, Sequence[str]] | None,
                      class_names: Sequence[str]) -> dict[str, Any]:
    """Groups and disparities of attribute ``j`` alone, by merging the intersectional confusion matrices."""
    mapping, codes = index.marginal(j)
    merged = merge_groups(conf, mapping, len(codes))
    merged_reps = None if replicates is None else merge_groups(replicates, mapping, len(codes))
    labelled = [describe([attr], [c], value_names) for c in codes]
    section = _Section(merged, merged_reps, ci_level, [n for n, _ in labelled], class_names)
    sizes = merged.sum((-2, -1)).round().long().cpu().numpy()
    groups = section.groups([a for _, a in labelled], sizes)
    disparities, ci = section.disparities()
    return {"groups": groups, "disparities": disparities, "ci": ci, "undefined": section.undefined}


def _intervals(summary: dict[str, Any], level: float) -> dict[str, Any]:
    # Per-class rates of each group are reported without intervals, so their quantiles are skipped.
    return {part: (None if values is None or part == "group_per_class"
                   else {k: percentile_interval(v, level) for k, v in values.items()})
            for part, values in summary.items()}


def _to_numpy(summary: dict[str, Any]) -> dict[str, Any]:
    return {part: (None if values is None else {k: v.cpu().numpy() for k, v in values.items()})
            for part, values in summary.items()}
