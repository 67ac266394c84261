"""Per-group adversarial robustness auditing (FGSM / PGD accuracy per group, FRoC's S_R, robustness gap)."""

from fairaudit.robustness.audit import (ATTACKS, AttackConfig, RobustnessAuditor, RobustnessReport, ThreatModel,
                                        default_eps, epsilon_sweep, parse_attacks, robustness_audit, sample_rows,
                                        threat_model)

__all__ = ["ATTACKS", "AttackConfig", "RobustnessAuditor", "RobustnessReport", "ThreatModel", "default_eps",
           "epsilon_sweep", "parse_attacks", "robustness_audit", "sample_rows", "threat_model"]
