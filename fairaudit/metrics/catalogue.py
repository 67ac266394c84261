"""The metric catalogue: one entry for every score, rate and disparity fairaudit shows.

Each :class:`Metric` gives the JSON name, the label pages, tables, charts and the report show, whether a lower
or a higher value is better, a one-line definition (the help text of a card or column), the kind of number
and how it is formatted. Pages, the report, Compare, the benchmark and the CLI look labels and directions up
here, so a metric reads the same everywhere::

    from fairaudit.metrics.catalogue import label, lower_is_better, metric
    label("spd"), lower_is_better("spd"), metric("deo").help

Kinds: ``rate`` (reported per group and, for accuracy and balanced accuracy, overall), ``score`` (a
whole-population score), ``gap`` (a difference between groups: smaller is fairer), ``ratio`` (min / max
over groups: larger is fairer), ``floor`` (a minimum over groups: larger is better), ``robustness`` and
``leakage``. A name declared twice with different content raises (:class:`~fairaudit.registry.Registry`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fairaudit.registry import Registry

__all__ = ["Metric", "CATALOGUE", "KINDS", "declare", "metric", "label", "phrase", "lower_is_better",
           "higher_is_better", "names", "value_text"]

KINDS = ("rate", "score", "gap", "ratio", "floor", "robustness", "leakage")
DIRECTIONS = ("lower", "higher")


@dataclass(frozen=True)
class Metric:
    """One metric: JSON ``name``, display ``label``, ``better`` (``"lower"`` or ``"higher"``), one-line
    ``help``, ``kind`` (one of :data:`KINDS`), ``format`` (a format spec such as ``".3f"``), ``short`` (a
    compact label for Markdown tables) and ``phrase`` (how a sentence names it, e.g. "true-positive rate")."""

    name: str
    label: str
    better: str
    help: str
    kind: str
    format: str = ".3f"
    short: str = ""
    phrase: str = ""

    def __post_init__(self) -> None:
        if self.better not in DIRECTIONS:
            raise ValueError(f"metric '{self.name}': better must be 'lower' or 'higher', not {self.better!r}.")
        if self.kind not in KINDS:
            raise ValueError(f"metric '{self.name}': kind must be one of {', '.join(KINDS)}, not {self.kind!r}.")

    @property
    def lower_is_better(self) -> bool:
        return self.better == "lower"

    @property
    def higher_is_better(self) -> bool:
        return self.better == "higher"

    @property
    def direction(self) -> str:
        """``lower is better`` or ``higher is better``."""
        return f"{self.better} is better"

    def text(self, value: Any) -> str:
        """``value`` in the metric's format; ``n/a`` when it is undefined (``None`` or NaN)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        return format(float(value), self.format)

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "label": self.label, "better": self.better, "help": self.help,
                "kind": self.kind, "format": self.format, "short": self.short or self.label,
                "phrase": self.phrase or self.label.lower()}


CATALOGUE: Registry[Metric] = Registry("metric")
"""Every declared metric, in declaration order."""


def declare(name: str, label: str, better: str, help: str, *, kind: str, format: str = ".3f", short: str = "",
            phrase: str = "") -> Metric:
    """Add a metric to :data:`CATALOGUE`; a name that is already taken by a different entry raises."""
    return CATALOGUE.register(name, Metric(name, label, better, help, kind, format, short, phrase))


def metric(name: str) -> Metric:
    """The catalogue entry of ``name``; an unknown name raises with the closest known one."""
    return CATALOGUE[name]


def _base(name: str) -> tuple[str, str]:
    """``("selection_rate", "[7]")`` for the per-class column ``selection_rate[7]``."""
    base, bracket, rest = str(name).partition("[")
    return base, f"[{rest}" if bracket else ""


def label(name: str) -> str:
    """The display label of ``name`` (``Selection rate [7]`` for the per-class ``selection_rate[7]``); a name
    outside the catalogue is returned as it is."""
    base, cls = _base(name)
    entry = CATALOGUE.get(base)
    if entry is None:
        return str(name)
    return f"{entry.label} {cls}" if cls else entry.label


def short(name: str) -> str:
    """The compact label of ``name`` for narrow tables (its label when no short one is declared)."""
    entry = CATALOGUE.get(name)
    return str(name) if entry is None else (entry.short or entry.label)


def phrase(name: str) -> str:
    """How a sentence names ``name`` (``true-positive rate``); a name outside the catalogue as it is."""
    entry = CATALOGUE.get(name)
    return str(name) if entry is None else (entry.phrase or entry.label.lower())


def lower_is_better(name: str) -> bool:
    """Whether a lower value of ``name`` is better (a gap between groups, leakage); unknown names raise."""
    return metric(_base(name)[0]).lower_is_better


def higher_is_better(name: str) -> bool:
    return not lower_is_better(name)


def names(*kinds: str) -> tuple[str, ...]:
    """The names of the given kinds (all names without arguments), in declaration order."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown metric kind '{unknown[0]}'; use one of {', '.join(KINDS)}.")
    return tuple(n for n, m in CATALOGUE.items() if not kinds or m.kind in kinds)


def value_text(name: str, value: Any) -> str:
    """``value`` formatted as ``name`` is (``.3f`` unless declared otherwise); ``n/a`` when undefined."""
    entry = CATALOGUE.get(_base(name)[0])
    return (entry or Metric(str(name), str(name), "higher", "", "score")).text(value)


# ---------------------------------------------------------------------------- per-group rates
declare("accuracy", "Accuracy", "higher", "Share of samples whose prediction is right.", kind="rate",
        short="accuracy")
declare("balanced_accuracy", "Balanced accuracy", "higher",
        "Mean over classes of the recall of each class; 1 / number of classes for a model that learned nothing.",
        kind="rate", short="balanced acc.")
declare("selection_rate", "Selection rate", "higher",
        "P(ŷ = 1 | group): share of the group predicted as the favourable class.", kind="rate",
        phrase="selection rate")
declare("base_rate", "Base rate", "higher", "P(y = 1 | group): share of the group whose true label is favourable.",
        kind="rate")
declare("tpr", "True positive rate", "higher", "Recall: share of the group's positives predicted positive.",
        kind="rate", short="TPR", phrase="true-positive rate")
declare("fpr", "False positive rate", "lower", "Share of the group's negatives predicted positive.",
        kind="rate", short="FPR", phrase="false-positive rate")
declare("fnr", "False negative rate", "lower", "Share of the group's positives predicted negative (1 − TPR).",
        kind="rate", short="FNR", phrase="false-negative rate")
declare("tnr", "True negative rate", "higher", "Specificity: share of the group's negatives predicted negative.",
        kind="rate", short="TNR", phrase="true-negative rate")
declare("ppv", "Precision (PPV)", "higher", "Share of the group's positive predictions that are right.",
        kind="rate", short="PPV", phrase="precision")
declare("npv", "Negative predictive value", "higher", "Share of the group's negative predictions that are right.",
        kind="rate", short="NPV")
declare("error_rate", "Error rate", "lower", "Share of samples whose prediction is wrong (1 − accuracy).",
        kind="rate")

# ---------------------------------------------------------------------------- whole-population scores
declare("bacc_cells", "Cell-balanced accuracy", "higher",
        "AEDA's mean accuracy over the (true class, group) cells.", kind="score")

# ---------------------------------------------------------------------------- disparities
declare("spd", "SPD", "lower", "Statistical parity difference: max − min selection rate over groups.", kind="gap")
declare("deo", "DEO", "lower", "Difference of equalized odds: |ΔFNR| + |ΔFPR| (FAAP's definition).", kind="gap")
declare("eo_max", "EO max", "lower", "Equalized-odds difference: max(|ΔTPR|, |ΔFPR|) (fairlearn).", kind="gap")
declare("eod", "EOD", "lower", "Equal-opportunity difference: |ΔTPR|.", kind="gap")
declare("aaod", "AAOD", "lower", "Average absolute odds difference: ½(|ΔTPR| + |ΔFPR|).", kind="gap")
declare("aed", "AED", "lower", "Accuracy equality difference: |ΔAccuracy| between groups.", kind="gap")
declare("dp_ratio", "DP ratio", "higher",
        "Demographic-parity ratio: min / max selection rate; the 80 % rule asks for ≥ 0.8.", kind="ratio")
declare("bias_score", "S_B (bias score)", "lower",
        "FRoC's bias score S_B = |SR₀ − SR₁|, the selection-rate gap (equals SPD).", kind="gap", short="S_B")
declare("worst_group_accuracy", "Worst-group accuracy", "higher", "Lowest accuracy of any group (Max-Min fairness).",
        kind="floor", short="worst-group acc.")
declare("bias_sum", "AEDA bias (Σ over classes)", "lower",
        "AEDA's model bias: the sum over classes of the gap in per-class recall between groups.", kind="gap",
        short="Σ-class bias")

# ---------------------------------------------------------------------------- robustness and latents
declare("s_r", "S_R (robustness)", "higher",
        "FRoC's robustness score S_R: accuracy under the recorded adversarial attack.", kind="robustness",
        short="S_R")
declare("leakage", "Leakage", "lower",
        "Highest out-of-fold accuracy of a linear probe recovering a sensitive attribute from the latents.",
        kind="leakage", short="leakage")
