"""Adversarial input attacks shared by the mitigation methods (FGSM, I-FGSM, PGD under L∞ / L2)."""

from fairaudit.attacks.gradient import ATTACKS, attack_by_name, check_attack, fgsm_attack, ifgsm_attack, pgd_attack
from fairaudit.attacks.norms import per_sample_norm, project, random_start, steepest_direction

__all__ = ["ATTACKS", "attack_by_name", "check_attack", "fgsm_attack", "ifgsm_attack", "pgd_attack", "per_sample_norm", "project", "random_start",
           "steepest_direction"]
