"""The gate's policy file (TOML, read with the standard library's ``tomllib``).

::

    [gate]
    min_group_size = 30      # smaller groups make every rule that involves them inconclusive
    max_ci_width = 0.2       # so does an interval wider than this
    bootstrap = 1000         # resamples of the audit the gate runs (--predictions, --dataset)
    seed = 0

    [max]
    deo = 0.1                # any disparity: spd, deo, eo_max, eod, aaod, aed, dp_ratio, bias_score, ...
    spd = 0.1

    [min]
    dp_ratio = 0.8
    accuracy = 0.75          # an overall score: accuracy, balanced_accuracy, bacc_cells
    group.accuracy = 0.8     # every group's rate: group.<base_rate|selection_rate|accuracy|tpr|fpr|...>
    s_r = 0.5                # FRoC's S_R (Eq. 8) under PGD, for --run of a run that measured it

Command-line ``--max NAME=VALUE`` / ``--min NAME=VALUE`` add rules or replace the policy's rule of the same
name and direction.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from fairaudit.errors import FairauditError
from fairaudit.metrics.guardrails import MAX_CI_WIDTH, MIN_GROUP_SIZE
from fairaudit.metrics.rates import DISPARITY_NAMES, OVERALL_METRICS, PER_GROUP_METRICS

DEFAULTS = {"min_group_size": MIN_GROUP_SIZE, "max_ci_width": MAX_CI_WIDTH, "bootstrap": 1000, "seed": 0}
GROUP_PREFIX = "group."
S_R = "s_r"


def metric_scope(name: str) -> str:
    """``"disparity"``, ``"overall"``, ``"group"`` or ``"s_r"``; unknown names raise :class:`FairauditError`."""
    if name in DISPARITY_NAMES:
        return "disparity"
    if name in OVERALL_METRICS:
        return "overall"
    if name.startswith(GROUP_PREFIX) and name[len(GROUP_PREFIX):] in PER_GROUP_METRICS:
        return "group"
    if name == S_R:
        return "s_r"
    known = [*DISPARITY_NAMES, *OVERALL_METRICS, *(GROUP_PREFIX + m for m in PER_GROUP_METRICS), S_R]
    raise FairauditError(f"no metric '{name}' to gate on; known: {', '.join(known)}.")


@dataclass(frozen=True)
class Rule:
    """``metric <= threshold`` (``kind="max"``) or ``metric >= threshold`` (``kind="min"``)."""

    metric: str
    kind: str
    threshold: float

    @property
    def scope(self) -> str:
        return metric_scope(self.metric)

    @property
    def name(self) -> str:
        return f"{self.metric} {'<=' if self.kind == 'max' else '>='} {self.threshold:g}"


@dataclass
class Policy:
    rules: list[Rule] = field(default_factory=list)
    min_group_size: int = DEFAULTS["min_group_size"]
    max_ci_width: float = DEFAULTS["max_ci_width"]
    bootstrap: int = DEFAULTS["bootstrap"]
    seed: int = DEFAULTS["seed"]

    def with_rules(self, rules: Iterable[Rule]) -> "Policy":
        """This policy with ``rules`` added; one of the same metric and kind replaces the policy's."""
        merged = {(r.metric, r.kind): r for r in self.rules}
        merged.update({(r.metric, r.kind): r for r in rules})
        return Policy(list(merged.values()), self.min_group_size, self.max_ci_width, self.bootstrap, self.seed)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FairauditError(f"{what} must be a finite number, got {value!r}.")
    return float(value)


def _flatten(table: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def make_rule(metric: str, kind: str, threshold: Any) -> Rule:
    rule = Rule(metric.strip(), kind, _number(threshold, f"the {kind} of '{metric}'"))
    rule.scope  # noqa: B018 - unknown metrics fail here
    return rule


def parse_pairs(pairs: Iterable[str] | None, kind: str) -> list[Rule]:
    """Rules from ``--max NAME=VALUE`` / ``--min NAME=VALUE`` options."""
    rules = []
    for pair in pairs or []:
        if "=" not in pair:
            raise FairauditError(f"--{kind} expects NAME=VALUE, got {pair!r}.")
        metric, value = pair.split("=", 1)
        try:
            number = float(value)
        except ValueError:
            raise FairauditError(f"--{kind} {metric.strip()}= needs a number, got {value.strip()!r}.") from None
        rules.append(make_rule(metric, kind, number))
    return rules


def policy_from_dict(data: dict, source: str = "policy") -> Policy:
    unknown = sorted(set(data) - {"gate", "max", "min"})
    if unknown:
        raise FairauditError(f"{source} has unknown table(s) {', '.join(unknown)}; use [gate], [max] and [min].")
    gate = data.get("gate", {})
    if not isinstance(gate, dict):
        raise FairauditError(f"{source}: 'gate' must be a table.")
    bad = sorted(set(gate) - set(DEFAULTS))
    if bad:
        raise FairauditError(f"{source}: unknown [gate] setting(s) {', '.join(bad)}; known: {', '.join(DEFAULTS)}.")
    settings = {**DEFAULTS, **gate}
    for key in ("min_group_size", "bootstrap", "seed"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key == "min_group_size" else 0):
            raise FairauditError(f"{source}: [gate] {key} must be a whole number ≥ "
                                 f"{1 if key == 'min_group_size' else 0}, got {value!r}.")
    width = _number(settings["max_ci_width"], f"{source}: [gate] max_ci_width")
    if width <= 0:
        raise FairauditError(f"{source}: [gate] max_ci_width must be > 0, got {width!r}.")
    rules = []
    for kind in ("max", "min"):
        table = data.get(kind, {})
        if not isinstance(table, dict):
            raise FairauditError(f"{source}: '{kind}' must be a table of NAME = VALUE.")
        rules += [make_rule(metric, kind, value) for metric, value in _flatten(table).items()]
    return Policy(rules, settings["min_group_size"], width, settings["bootstrap"], settings["seed"])


def load_policy(path: str | Path | None) -> Policy:
    """The policy in ``path`` (``None``: the defaults, no rules); bad files raise :class:`FairauditError`."""
    if path is None:
        return Policy()
    path = Path(path)
    if not path.is_file():
        raise FairauditError(f"policy file '{path}' does not exist.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FairauditError(f"cannot read policy '{path}' as TOML: {str(exc).rstrip('.')}.") from None
    return policy_from_dict(data, source=f"policy '{path.name}'")
