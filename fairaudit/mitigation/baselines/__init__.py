"""Classic mitigation baselines: ERM, re-weighting, re-sampling, label flipping, group thresholds,
adversarial fair training, the Disparate Impact Remover. Importing this package registers them."""

from fairaudit.mitigation.baselines import adv_fair, label_flip, retraining, threshold  # noqa: F401  (registers them)
from fairaudit.mitigation.baselines import disparate_impact  # noqa: F401,E402  (registers dir)
from fairaudit.mitigation.baselines import fair_penalty  # noqa: F401,E402  (registers fair_penalty, minmax)
