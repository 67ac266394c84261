"""Explanations: Grad-CAM and Integrated Gradients before and after mitigation, and attribution bias.

* :mod:`~fairaudit.explain.attribution` – batched explainers with a captum-like
  ``attribute(x, target)``: :class:`GradCam`, :class:`IntegratedGradientsExplainer`;
* :mod:`~fairaudit.explain.selection` – which test images to explain
  (wrong → right, right → wrong, confident errors, random; per group);
* :mod:`~fairaudit.explain.bias` – share of positive attribution mass on the
  target versus the sensitive-attribute region, per group and stage;
* :mod:`~fairaudit.explain.runs` – :func:`explain_run`, all of it for one
  finished mitigation run, as an :class:`ExplanationGrid`.
"""

from fairaudit.explain.attribution import (EXPLAINERS, GradCam, IntegratedGradientsExplainer, find_target_layer,
                                           make_explainer)
from fairaudit.explain.bias import ATTRIBUTE_REGIONS, attribute_regions, attribution_bias, region_share
from fairaudit.explain.runs import ExplanationGrid, explain_bias, explain_run, overlay
from fairaudit.explain.selection import RULES, count_by_rule, paired_predictions, select_samples

__all__ = ["EXPLAINERS", "RULES", "ATTRIBUTE_REGIONS", "GradCam", "IntegratedGradientsExplainer",
           "ExplanationGrid", "explain_run", "explain_bias", "find_target_layer", "make_explainer",
           "attribute_regions", "attribution_bias", "region_share", "paired_predictions", "select_samples",
           "count_by_rule", "overlay"]
