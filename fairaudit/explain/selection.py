"""Which test images to explain: rules over a run's saved *before* and *after* predictions.

A run saves the predictions of both audits (``before_predictions`` and
``after_predictions``); :func:`paired_predictions` matches them by sample
index into one table, and :func:`select_samples` picks images from it by a
rule, optionally within one sensitive group:

* ``wrong_to_right`` – misclassified before, correct after (the FAAP paper,
  §5.3: the images its Grad-CAM figure shows);
* ``right_to_wrong`` – correct before, misclassified after (what mitigation cost);
* ``confident_errors`` – the *before* model's errors with the highest
  confidence in the wrong class (the shortcut at its clearest);
* ``random`` – a seeded uniform sample.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fairaudit.errors import FairauditError

RULES = {
    "wrong_to_right": "wrong before → right after",
    "right_to_wrong": "right before → wrong after",
    "confident_errors": "highest-confidence errors (before)",
    "random": "random",
}


def group_labels(predictions) -> np.ndarray:
    """The report's group name (``"Male=Female"``, ``"a=x & b=y"``) of every row of ``predictions``."""
    names, values = predictions.sensitive_names, predictions.value_names
    codes = np.asarray(predictions.sensitive).reshape(len(predictions), -1)
    return np.array([" & ".join(f"{a}={values[a][int(c)]}" for a, c in zip(names, row)) for row in codes],
                    dtype=object)


def paired_predictions(before, after, threshold: float = 0.5) -> pd.DataFrame:
    """One row per test sample present in both :class:`~fairaudit.audit.inference.Predictions`.

    Indexed by sample index, with ``group``, ``label``, ``pred_before``,
    ``pred_after``, ``confidence_before`` / ``confidence_after`` (probability
    of the predicted class) and ``correct_before`` / ``correct_after``.
    """
    frames = []
    for stage, preds in (("before", before), ("after", after)):
        predicted = preds.predictions(threshold)
        frames.append(pd.DataFrame({
            "group": group_labels(preds), "label": np.asarray(preds.labels, np.int64),
            f"pred_{stage}": predicted,
            f"confidence_{stage}": np.asarray(preds.probs)[np.arange(len(preds)), predicted].astype(float),
        }, index=pd.Index(np.asarray(preds.indices, np.int64), name="index")))
    b, a = frames
    common = b.index.intersection(a.index)
    if len(common) == 0:
        raise FairauditError("the before and after predictions share no sample index; they are not of the same "
                             "test split.")
    frame = b.loc[common].join(a.loc[common, ["pred_after", "confidence_after"]])
    frame["correct_before"] = frame["pred_before"] == frame["label"]
    frame["correct_after"] = frame["pred_after"] == frame["label"]
    return frame.sort_index()


def select_samples(pairs: pd.DataFrame, rule: str = "wrong_to_right", group: str | None = None, n: int = 8,
                   seed: int = 0) -> np.ndarray:
    """Up to ``n`` sample indices of ``pairs`` (see :func:`paired_predictions`) that follow ``rule``.

    ``group`` restricts the choice to one group name. ``wrong_to_right``,
    ``right_to_wrong`` and ``random`` draw a seeded random subset of the
    matching samples (returned in index order); ``confident_errors`` returns
    the most confident errors first. Fewer than ``n`` (possibly none) are
    returned when fewer match.
    """
    if rule not in RULES:
        raise FairauditError(f"unknown selection rule '{rule}'; choose one of {', '.join(RULES)}.")
    if n < 1:
        raise FairauditError(f"n must be at least 1, got {n}.")
    frame = pairs
    if group is not None:
        groups = sorted(pairs["group"].unique())
        if group not in groups:
            raise FairauditError(f"unknown group '{group}'; groups: {', '.join(groups)}.")
        frame = pairs[pairs["group"] == group]
    if rule == "confident_errors":
        errors = frame[~frame["correct_before"]]
        order = errors.sort_values("confidence_before", ascending=False, kind="stable")
        return order.index.to_numpy(np.int64)[:n]
    if rule == "wrong_to_right":
        frame = frame[~frame["correct_before"] & frame["correct_after"]]
    elif rule == "right_to_wrong":
        frame = frame[frame["correct_before"] & ~frame["correct_after"]]
    index = frame.index.to_numpy(np.int64)
    if len(index) <= n:
        return index
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(index, size=n, replace=False))


def count_by_rule(pairs: pd.DataFrame) -> pd.DataFrame:
    """How many samples of each group each rule can choose from (plus the group size)."""
    flips = pd.DataFrame({
        "group": pairs["group"],
        "wrong_to_right": ~pairs["correct_before"] & pairs["correct_after"],
        "right_to_wrong": pairs["correct_before"] & ~pairs["correct_after"],
        "confident_errors": ~pairs["correct_before"],
        "random": True,
    })
    return flips.groupby("group").sum().astype(int).rename(columns={"random": "n"})
