"""A CI gate on an audit: ``python -m fairaudit check``.

Rules from a TOML policy (:mod:`fairaudit.gate.policy`) are checked against an
audit's bootstrap intervals (:mod:`fairaudit.gate.check`); the verdicts are
printed, written as JUnit XML (:mod:`fairaudit.gate.junit`) and JSON, and
summed up in the exit code: 0 every rule passes, 1 some rule fails, 3 none
fails but some are inconclusive, 2 usage or input error.
"""

from fairaudit.gate.check import EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_PASS, GateResult, RuleResult, evaluate
from fairaudit.gate.policy import Policy, Rule, load_policy

__all__ = ["evaluate", "GateResult", "RuleResult", "Policy", "Rule", "load_policy", "EXIT_PASS", "EXIT_FAIL",
           "EXIT_INCONCLUSIVE"]
