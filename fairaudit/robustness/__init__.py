"""Per-group adversarial robustness auditing (FGSM / PGD accuracy per group, FRoC's S_R, robustness gap)."""

from fairaudit.robustness.audit import (ATTACKS, AttackConfig, AttackSurface, FEATURES, LABELS, RobustnessAuditor,
                                        RobustnessReport, ThreatModel, attack_surface,
                                        default_eps, describe_threat_model, epsilon_sweep, parse_attacks, robustness_audit, sample_rows,
                                        threat_model)

__all__ = ["ATTACKS", "AttackConfig", "AttackSurface", "FEATURES", "LABELS", "RobustnessAuditor", "RobustnessReport",
           "ThreatModel", "attack_surface", "default_eps", "describe_threat_model", "epsilon_sweep", "parse_attacks",
           "robustness_audit", "sample_rows", "threat_model"]
