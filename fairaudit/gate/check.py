"""Verdicts of policy rules on an audit's bootstrap intervals.

A rule ``metric <= t`` (``max``) **passes** when the whole interval lies on
the good side (``high <= t``), **fails** when the whole interval lies on the
bad side (``low > t``) and is **inconclusive** otherwise; ``min`` rules
mirror this (pass ``low >= t``, fail ``high < t``). A rule on ``group.<rate>``
is checked in every group: it fails when some group fails, passes when every
group passes, and is inconclusive otherwise.

Small-group guardrails: a group with fewer than ``min_group_size`` rows, or
whose accuracy interval is wider than ``max_ci_width``, is *flagged*. A
flagged group makes every disparity rule inconclusive (a gap involves every
group) and its own verdict of a ``group.<rate>`` rule inconclusive (also when
that rate's interval is wider than ``max_ci_width``); so does a disparity or
overall interval wider than ``max_ci_width``. Inconclusive, not failed: the
percentile bootstrap of a tiny group is unreliable in both directions (five
correct rows give the interval [1, 1]).

Needed sample size of an inconclusive rule: an interval's width shrinks as
``1/sqrt(n)``, so to shrink the interval's reach ``r`` towards the threshold
(``high − value`` for a threshold above the value, ``value − low`` below it;
the CI half-width for a symmetric interval) below the distance
``m = |value − t|`` between value and threshold needs about ``n·(r/m)²``
rows; to bring a width ``w`` under ``max_ci_width`` needs ``n·(w/max_ci_width)²``;
and a group of ``n_g`` rows reaches ``min_group_size`` at ``n·min_group_size/n_g``.
The reported ``needed_n`` is the largest of these, in total rows with the
groups in their present proportions (for a ``group.<rate>`` rule, the
largest over the undecided groups). It assumes the value stays where it is; a
value equal to the threshold can never be told apart (``needed_n`` is null).

S_R (FRoC Eq. 8) is recorded by runs without an interval, so an ``s_r`` rule is
decided on its value alone; the JSON says so in the rule's ``note``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from fairaudit.gate.policy import GROUP_PREFIX, Policy, Rule
from fairaudit.metrics import guardrails
from fairaudit.metrics.guardrails import finite as _finite
from fairaudit.metrics.guardrails import finite_interval as _interval

EXIT_PASS, EXIT_FAIL, EXIT_INCONCLUSIVE = 0, 1, 3
PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"


@dataclass
class RuleResult:
    """The verdict of one rule, with what it was decided on."""

    name: str
    metric: str
    kind: str
    threshold: float
    scope: str
    verdict: str
    value: float | None
    ci: list[float] | None
    message: str
    needed_n: int | None = None
    note: str | None = None
    groups: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class GateResult:
    rules: list[RuleResult]
    flagged_groups: list[dict[str, Any]]
    n: int
    settings: dict[str, Any]
    source: dict[str, Any]

    @property
    def outcome(self) -> str:
        verdicts = {r.verdict for r in self.rules}
        return FAIL if FAIL in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts else PASS

    @property
    def exit_code(self) -> int:
        return {PASS: EXIT_PASS, FAIL: EXIT_FAIL, INCONCLUSIVE: EXIT_INCONCLUSIVE}[self.outcome]

    def to_dict(self) -> dict[str, Any]:
        from fairaudit.metrics.report import to_json_types

        counts = {v: sum(r.verdict == v for r in self.rules) for v in (PASS, FAIL, INCONCLUSIVE)}
        return to_json_types({"outcome": self.outcome, "exit_code": self.exit_code, "counts": counts, "n": self.n,
                              "rules": [asdict(r) for r in self.rules], "flagged_groups": self.flagged_groups,
                              "settings": self.settings, "source": self.source})


def _decide(kind: str, t: float, ci: list[float]) -> str:
    lo, hi = ci
    if kind == "max":
        return PASS if hi <= t else FAIL if lo > t else INCONCLUSIVE
    return PASS if lo >= t else FAIL if hi < t else INCONCLUSIVE


def _factor(value: float | None, t: float, ci: list[float] | None, max_width: float) -> float | None:
    """How many times today's rows the interval needs to clear the threshold and the width guard."""
    if value is None or ci is None:
        return None
    margin = abs(value - t)
    if margin == 0:
        return None
    reach = max(ci[1] - value if t > value else value - ci[0], 0.0)
    return max(1.0, (reach / margin) ** 2, ((ci[1] - ci[0]) / max_width) ** 2)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _describe(rule: Rule, value: float | None, ci: list[float] | None, level: float) -> str:
    interval = f" ({level:.0%} CI {_fmt(ci[0])}–{_fmt(ci[1])})" if ci else " (no interval)"
    return f"{rule.metric} = {_fmt(value)}{interval}, threshold {rule.kind} {rule.threshold:g}"


def _needed(n: int, factor: float | None) -> int | None:
    return None if factor is None or not math.isfinite(factor) else int(math.ceil(n * factor))


def flag_groups(report: dict[str, Any], policy: Policy) -> list[dict[str, Any]]:
    """Groups under ``min_group_size`` rows or with an accuracy interval wider than ``max_ci_width``
    (:func:`fairaudit.metrics.guardrails.flag_groups` with the policy's limits)."""
    return guardrails.flag_groups(report["groups"], policy.min_group_size, policy.max_ci_width)


def _size_factor(flagged: list[dict[str, Any]], report: dict[str, Any], policy: Policy) -> float:
    """Rows (as a multiple of today's) at which every flagged group is large and narrow enough."""
    factor = 1.0
    by_name = {g["group"]: g for g in report["groups"]}
    for f in flagged:
        g = by_name[f["group"]]
        factor = max(factor, policy.min_group_size / max(g["n"], 1))
        ci = _interval((g.get("ci") or {}).get("accuracy"))
        if ci:
            factor = max(factor, ((ci[1] - ci[0]) / policy.max_ci_width) ** 2)
    return factor


def _scalar_rule(rule: Rule, value: Any, ci: Any, report: dict, policy: Policy, flagged: list, level: float,
                 undefined: str | None) -> RuleResult:
    n = int(report["overall"]["n"])
    value, ci = _finite(value), _interval(ci)
    base = dict(name=rule.name, metric=rule.metric, kind=rule.kind, threshold=rule.threshold, scope=rule.scope,
                value=value, ci=ci)
    text = _describe(rule, value, ci, level)
    if value is None:
        why = undefined or "the metric is undefined on this audit"
        return RuleResult(**base, verdict=INCONCLUSIVE, message=f"inconclusive: {rule.metric} is undefined ({why})")
    if ci is None:
        return RuleResult(**base, verdict=INCONCLUSIVE,
                          message=f"inconclusive: {text}; the audit has no interval (bootstrap 0), so the gate "
                                  "cannot tell")
    verdict = _decide(rule.kind, rule.threshold, ci)
    guards = []
    if rule.scope == "disparity" and flagged:
        guards.append(f"{len(flagged)} flagged group(s): {', '.join(f['group'] for f in flagged[:3])}")
    if ci[1] - ci[0] > policy.max_ci_width:
        guards.append(f"interval {ci[1] - ci[0]:.3f} wide, more than max_ci_width {policy.max_ci_width:g}")
    if verdict != INCONCLUSIVE and not guards:
        return RuleResult(**base, verdict=verdict, message=f"{verdict}: {text}")
    factor = _factor(value, rule.threshold, ci, policy.max_ci_width)
    if factor is not None and rule.scope == "disparity":
        factor = max(factor, _size_factor(flagged, report, policy))
    needed = _needed(n, factor)
    need_text = (f"about {needed} rows needed (now {n}, groups in today's proportions)" if needed
                 else "the value equals the threshold, so no sample size can tell")
    guard_text = f"; {'; '.join(guards)}" if guards else ""
    return RuleResult(**base, verdict=INCONCLUSIVE, needed_n=needed,
                      message=f"inconclusive: {text}{guard_text}; {need_text}")


def _group_rule(rule: Rule, report: dict, policy: Policy, flagged: list, level: float) -> RuleResult:
    rate = rule.metric[len(GROUP_PREFIX):]
    n = int(report["overall"]["n"])
    flagged_names = {f["group"] for f in flagged}
    entries, factors = [], []
    for g in report["groups"]:
        value, ci = _finite(g.get(rate)), _interval((g.get("ci") or {}).get(rate))
        entry = {"group": g["group"], "n": g["n"], "value": value, "ci": ci}
        if value is None:
            entry.update(verdict=INCONCLUSIVE, reason=f"the group does not define {rate}")
        elif ci is None:
            entry.update(verdict=INCONCLUSIVE, reason="no interval (bootstrap 0)")
        else:
            verdict = _decide(rule.kind, rule.threshold, ci)
            guards = []
            if g["group"] in flagged_names:
                guards.append("flagged group")
            if ci[1] - ci[0] > policy.max_ci_width:
                guards.append(f"{rate} interval {ci[1] - ci[0]:.3f} wide")
            if guards:
                verdict = INCONCLUSIVE
            entry.update(verdict=verdict, reason="; ".join(guards) or None)
            if verdict == INCONCLUSIVE:
                factor = _factor(value, rule.threshold, ci, policy.max_ci_width)
                if factor is not None:
                    factor = max(factor, policy.min_group_size / max(g["n"], 1))
                factors.append(factor)
        entries.append(entry)
    verdicts = {e["verdict"] for e in entries}
    verdict = FAIL if FAIL in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts else PASS
    worst = min(entries, key=lambda e: math.inf if e["value"] is None else
                (e["value"] if rule.kind == "min" else -e["value"]))
    base = dict(name=rule.name, metric=rule.metric, kind=rule.kind, threshold=rule.threshold, scope=rule.scope,
                value=worst["value"], ci=worst["ci"], groups=entries)
    text = f"worst group '{worst['group']}': " + _describe(rule, worst["value"], worst["ci"], level)
    if verdict == FAIL:
        failing = [e["group"] for e in entries if e["verdict"] == FAIL]
        return RuleResult(**base, verdict=FAIL, message=f"fail: {len(failing)} group(s) below the bar "
                                                           f"({', '.join(failing[:3])}); {text}")
    if verdict == PASS:
        return RuleResult(**base, verdict=PASS, message=f"pass: every group; {text}")
    undecided = [e["group"] for e in entries if e["verdict"] == INCONCLUSIVE]
    needed = None if not factors or None in factors else _needed(n, max(factors))
    need_text = (f"about {needed} rows needed (now {n}, groups in today's proportions)" if needed
                 else "no sample size can tell for some group (undefined, no interval or value at the threshold)")
    return RuleResult(**base, verdict=INCONCLUSIVE, needed_n=needed,
                      message=f"inconclusive: {len(undecided)} group(s) undecided ({', '.join(undecided[:3])}); "
                              f"{text}; {need_text}")


def evaluate(report: dict[str, Any], policy: Policy, s_r: float | None = None,
             source: dict[str, Any] | None = None) -> GateResult:
    """Check every rule of ``policy`` on ``report`` (an :class:`~fairaudit.metrics.AuditReport`'s ``to_dict``)."""
    from fairaudit.errors import FairauditError

    if not policy.rules:
        raise FairauditError("the gate has no rule; give a policy with [max]/[min] entries or --max/--min.")
    level = float((report.get("meta") or {}).get("ci_level") or 0.95)
    flagged = flag_groups(report, policy)
    results = []
    for rule in policy.rules:
        if rule.scope == "group":
            results.append(_group_rule(rule, report, policy, flagged, level))
        elif rule.scope == "s_r":
            results.append(_s_r_rule(rule, s_r))
        else:
            part = "disparities" if rule.scope == "disparity" else "overall"
            results.append(_scalar_rule(rule, report[part].get(rule.metric), (report.get("ci") or {}).get(rule.metric),
                                        report, policy, flagged, level,
                                        (report.get("undefined") or {}).get(rule.metric)))
    settings = {"min_group_size": policy.min_group_size, "max_ci_width": policy.max_ci_width, "ci_level": level,
                "n_boot": (report.get("meta") or {}).get("n_boot")}
    return GateResult(results, flagged, int(report["overall"]["n"]), settings, source or {})


def _s_r_rule(rule: Rule, s_r: float | None) -> RuleResult:
    from fairaudit.errors import FairauditError

    value = _finite(s_r)
    if s_r is None:
        raise FairauditError("an s_r rule needs --run of a run that measured robustness (its summary has no s_r).")
    base = dict(name=rule.name, metric=rule.metric, kind=rule.kind, threshold=rule.threshold, scope=rule.scope,
                value=value, ci=None, note="S_R is recorded without an interval; decided on its value")
    if value is None:
        return RuleResult(**base, verdict=INCONCLUSIVE, message="inconclusive: s_r is undefined on this run")
    good = value <= rule.threshold if rule.kind == "max" else value >= rule.threshold
    verdict = PASS if good else FAIL
    return RuleResult(**base, verdict=verdict,
                      message=f"{verdict}: s_r = {value:.4g} (no interval), threshold {rule.kind} {rule.threshold:g}")
