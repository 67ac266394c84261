"""Sensitive-attribute leakage: how well a linear probe recovers a sensitive attribute from latents.

A fair-representation method aims at latents from which the sensitive
attribute cannot be predicted (the "Sens Acc" of SIRN in Cherepanova's
thesis, ch. 6; FAAP's discriminator objective, Eq. 3–4 of Wang et al.). The
probe here is a standardised logistic regression evaluated with stratified
k-fold cross-validation, so every sample is scored by a probe that never saw
it. Reported per attribute:

* ``accuracy`` of the out-of-fold predictions, with a Wilson score interval
  (binomial over the ``n`` held-out predictions);
* ``auc``: ROC AUC of the out-of-fold probabilities (one-vs-rest macro mean
  for attributes with more than two values), with a percentile bootstrap
  interval over the held-out predictions;
* ``chance``: the majority-value rate, the accuracy of a probe that learned
  nothing (an AUC of 0.5 means the same).

Low leakage does not imply fair *behaviour* (the thesis, ch. 6: "fair features
are ill-posed"), so reports show it next to the behavioural disparities.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fairaudit.errors import FairauditError


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if n == 0:
        return (float("nan"), float("nan"))
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def _auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    if len(classes) == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes))


class LeakageProbe:
    """Cross-validated linear probe of one sensitive attribute (scikit-learn style: settings here, work in ``fit``).

    Parameters
    ----------
    folds:
        Stratified folds (reduced to the size of the rarest value if that is smaller, at least 2).
    C:
        Inverse L2 regularisation strength of the logistic regression.
    n_boot:
        Bootstrap resamples of the AUC interval.
    confidence:
        Level of both intervals.
    seed:
        Seeds the fold split and the bootstrap.

    After :meth:`fit`, ``result_`` holds the dictionary described in the module
    docstring plus ``n``, ``folds`` and ``values`` (how many samples of each value).
    """

    def __init__(self, folds: int = 5, C: float = 1.0, n_boot: int = 200, confidence: float = 0.95,
                 seed: int = 0, max_iter: int = 1000):
        self.folds, self.C, self.n_boot, self.confidence = folds, C, n_boot, confidence
        self.seed, self.max_iter = seed, max_iter

    def fit(self, latents: np.ndarray, codes: np.ndarray) -> "LeakageProbe":
        x = np.asarray(latents, dtype=np.float64).reshape(len(latents), -1)
        y = np.asarray(codes).reshape(-1)
        if len(x) != len(y):
            raise FairauditError(f"{len(x)} latent rows but {len(y)} attribute values.")
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) < 2:
            raise FairauditError("the sample holds only one value of the sensitive attribute; leakage needs two.")
        folds = int(min(self.folds, counts.min()))
        if folds < 2:
            raise FairauditError(f"a value of the sensitive attribute occurs only once in {len(y)} samples; "
                                 "cross-validation needs at least two of each.")
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=self.max_iter))
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            proba = cross_val_predict(probe, x, y, cv=cv, method="predict_proba")
        predicted = classes[proba.argmax(1)]
        correct = int((predicted == y).sum())
        auc = _auc(y, proba, classes)
        self.result_ = {
            "accuracy": correct / len(y), "accuracy_ci": list(wilson_interval(correct, len(y), self.confidence)),
            "auc": auc, "auc_ci": list(self._auc_interval(y, proba, classes)),
            "chance": float(counts.max() / len(y)), "n": int(len(y)), "folds": folds,
            "values": {str(int(c)): int(k) for c, k in zip(classes, counts)},
        }
        return self

    def _auc_interval(self, y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> tuple[float, float]:
        if not self.n_boot:
            return (float("nan"), float("nan"))
        rng = np.random.default_rng(self.seed)
        values = []
        for _ in range(self.n_boot):
            rows = rng.integers(0, len(y), len(y))
            value = _auc(y[rows], proba[rows], classes)
            if value == value:
                values.append(value)
        if not values:
            return (float("nan"), float("nan"))
        tail = (1 - self.confidence) / 2 * 100
        low, high = np.percentile(values, [tail, 100 - tail])
        return (float(low), float(high))


def probe_leakage(latents: np.ndarray, sensitive: np.ndarray, names: list[str], **probe_settings) -> dict:
    """:class:`LeakageProbe` results for each column of ``sensitive`` (``N × k`` codes), keyed by ``names``."""
    sensitive = np.asarray(sensitive).reshape(len(sensitive), -1)
    if sensitive.shape[1] != len(names):
        raise FairauditError(f"{sensitive.shape[1]} sensitive columns but {len(names)} names.")
    return {name: LeakageProbe(**probe_settings).fit(latents, sensitive[:, j]).result_
            for j, name in enumerate(names)}
