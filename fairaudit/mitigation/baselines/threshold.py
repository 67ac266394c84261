"""``threshold``: group-specific decision thresholds on the deployed model's scores (post-processing).

Hardt et al. (2016) as implemented by fairlearn's
:class:`~fairlearn.postprocessing.ThresholdOptimizer`: the deployed model is
never changed; for every sensitive group (intersection of the sensitive
attributes) a threshold on ``P(y = 1)`` is chosen, possibly randomised between
two thresholds, that maximises ``objective`` subject to ``constraints``
(``demographic_parity``: equal selection rates; ``equalized_odds``: equal TPR
and FPR). The thresholds are fitted on the deployed model's scores on the
``val`` split when the dataset has one (``fit_split="auto"``), otherwise on
``train``: scores of a model on its own training data are over-confident, so a
held-out split gives thresholds that transfer better.

The result is a set of predictions, not a model: for any split the deployed
model's scores are thresholded per group and the hard decisions are returned
as one-hot probabilities (which the audit reads with its usual 0.5 threshold).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.frozen import FrozenEstimator

from fairaudit.audit.inference import Predictions, predict
from fairaudit.data.base import FairDataset
from fairaudit.errors import FairauditError
from fairaudit.mitigation.base import (TEST_SPLIT_REFUSED, MethodContext, MitigationMethod, MitigationResult,
                                       fit_split, register_method)
from fairaudit.mitigation.baselines.common import group_codes, group_name, setting

__all__ = ["GroupThresholds", "ScoreColumn", "fit_group_thresholds"]

CONSTRAINTS = ("demographic_parity", "equalized_odds")
OBJECTIVES = ("accuracy_score", "balanced_accuracy_score")


class ScoreColumn(ClassifierMixin, BaseEstimator):
    """A "classifier" whose input is already its score: ``X[:, 0] = P(y = 1)`` of the deployed model.

    It lets fairlearn post-process stored scores without running the network
    again; ``fit`` only records the classes.
    """

    def fit(self, X, y=None):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        p = np.clip(np.asarray(X, dtype=np.float64)[:, 0], 0.0, 1.0)
        return np.column_stack([1.0 - p, p])

    def predict(self, X):
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)


def _group_labels(ds: FairDataset) -> np.ndarray:
    codes, _ = group_codes(ds)
    return np.array([group_name(int(c), ds) for c in codes], dtype=object)


def fit_group_thresholds(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                         constraints: str = "demographic_parity", objective: str = "accuracy_score",
                         grid_size: int = 1000) -> ThresholdOptimizer:
    """A fitted :class:`ThresholdOptimizer` over precomputed scores ``P(y = 1)``."""
    optimizer = ThresholdOptimizer(estimator=FrozenEstimator(ScoreColumn().fit(None)), constraints=constraints,
                                   objective=objective, grid_size=grid_size, prefit=True,
                                   predict_method="predict_proba")
    return optimizer.fit(np.asarray(scores, dtype=np.float64)[:, None], np.asarray(labels).astype(int),
                         sensitive_features=groups)


class GroupThresholds:
    """Callable ``(dataset) -> Predictions``: the deployed model's decisions after the group thresholds."""

    def __init__(self, model, optimizer: ThresholdOptimizer, device, seed: int = 0):
        self.model, self.optimizer, self.device, self.seed = model, optimizer, device, seed

    def __call__(self, ds: FairDataset) -> Predictions:
        preds = predict(self.model, ds, device=self.device)
        decisions = self.optimizer.predict(preds.probs[:, 1:2].astype(np.float64),
                                           sensitive_features=_group_labels(ds)[preds.indices],
                                           random_state=self.seed)
        probs = np.eye(2, dtype=np.float32)[np.asarray(decisions, dtype=np.int64)]
        preds.probs = probs
        preds.meta = {**preds.meta, "postprocessing": "group thresholds"}
        return preds


def describe_thresholds(optimizer: ThresholdOptimizer) -> dict:
    """JSON-friendly rule per group: with probability ``p0`` apply ``operation0`` (e.g. ``> 0.42``), else
    ``operation1``."""
    out = {}
    for group, rule in optimizer.interpolated_thresholder_.interpolation_dict.items():
        out[str(group)] = {
            "p0": float(rule.p0), "operation0": f"{rule.operation0.operator} {float(rule.operation0.threshold):.4g}",
            "p1": float(rule.p1), "operation1": f"{rule.operation1.operator} {float(rule.operation1.threshold):.4g}",
            **({"p_ignore": float(rule.p_ignore), "prediction_constant": float(rule.prediction_constant)}
               if "p_ignore" in rule else {}),
        }
    return out


@dataclass
class ThresholdConfig:
    """Group-threshold post-processing settings (fairlearn's ThresholdOptimizer)."""

    constraints: str = setting("demographic_parity", "'demographic_parity' (equal selection rates) or "
                                                     "'equalized_odds' (equal TPR and FPR)", choices=CONSTRAINTS)
    objective: str = setting("accuracy_score", "what the thresholds maximise under the constraint: "
                                               "'accuracy_score' or 'balanced_accuracy_score'", choices=OBJECTIVES)
    fit_split: str = setting("auto", "split whose scores fit the thresholds: 'auto' (val if the dataset has one, "
                                     "else train), 'val' or 'train'", choices=("auto", "val", "train"),
                             refuse=TEST_SPLIT_REFUSED)
    grid_size: int = setting(1000, "number of candidate thresholds searched (fairlearn's grid_size)",
                             min=2)


@register_method
class Threshold(MitigationMethod):
    name = "threshold"
    summary = ("Post-processing (Hardt et al. 2016, fairlearn ThresholdOptimizer): per-group decision thresholds "
               "on the deployed model's scores for demographic parity or equalized odds.")
    Config = ThresholdConfig
    target_metrics = ("spd",)  # the default constraint is demographic parity

    def run(self, ctx: MethodContext, config: ThresholdConfig) -> MitigationResult:
        split = fit_split(ctx, "val" if config.fit_split == "auto" else config.fit_split, "threshold", "fit_split")
        fit_ds = ctx.load_split(split)
        if fit_ds.num_classes != 2:
            raise FairauditError(f"group thresholds need a binary target; '{fit_ds.target}' has "
                                 f"{fit_ds.num_classes} classes.")
        ctx.progress({"event": "scores", "fraction": 0.0})
        preds = predict(ctx.model, fit_ds, device=ctx.device)
        groups = _group_labels(fit_ds)[preds.indices]
        optimizer = fit_group_thresholds(preds.probs[:, 1], preds.labels, groups, config.constraints,
                                         config.objective, config.grid_size)
        ctx.progress({"event": "fitted", "fraction": 1.0})
        stats = {"fit_split": split, "fit_samples": len(fit_ds), "constraints": config.constraints,
                 "objective": config.objective, "thresholds": describe_thresholds(optimizer)}
        return MitigationResult(after_predictions=GroupThresholds(ctx.model, optimizer, ctx.device, ctx.seed),
                                stats=stats)
