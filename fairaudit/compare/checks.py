"""Audit checks for the pitfalls of fairness mitigation in deep networks.

Three checks, after Cherepanova's thesis *Adversarial Robustness and Fairness
in Deep Learning* (UMD 2023), chapters 5–6:

* :func:`split_disparities` — train / validation / test disparities side by
  side. Over-parameterised networks interpolate their training set, so a
  fairness penalty drives the *training* gap to ≈ 0 whatever happens on new
  data (§6, "DNNs interpolate, so train fairness is vacuous"); and a gain
  tuned on the validation split need not transfer to test (adjusted margins:
  validation gap 6.8 → 0.5, test gap 2.1 → 4.9).
* :func:`gerrymandering` — after mitigating on attribute A, the change per
  group of every other attribute B (§6 "Gerrymandering", Fig. 6.3 and Table
  6.5: a gender-fair face model lost accuracy on every race group).
* :func:`data_composition` — group counts and label balance per split, with a
  warning when the test split repeats the training split's imbalance (§5.8:
  the same imbalance in train and test masks bias in an audit).

Each returns a :class:`CheckResult`: a pandas table and a list of warning
sentences (``table, warnings = check(...)`` works too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from fairaudit.compare.table import audit_undefined, audit_value, full_record
from fairaudit.errors import FairauditError
from fairaudit.metrics.catalogue import label as _label, lower_is_better

SPLITS = ("train", "val", "test")
SPLIT_SEP = " | "
"""Separates the splits' reasons in the ``undefined`` column of :func:`split_disparities`."""
TRAIN_ZERO = 0.01
"""A training-split gap at or below this counts as ≈ 0."""
TEST_GAP = 0.03
"""... while a test gap at or above this (and 3× the training gap) counts as real."""
VAL_GAIN = 0.02
"""A validation improvement of at least this much is expected to show on test ..."""
TRANSFER = 0.5
"""... by at least this fraction of it; otherwise the gain did not transfer."""
WORSE = 0.01
"""A group of another attribute got worse when its accuracy fell by more than this."""
MIN_GROUP = 10
IMBALANCE = 0.10
"""A split is imbalanced when group shares or group base rates differ by at least this much ..."""
MIRROR = 0.05
"""... and the test split mirrors the training split when both differences are within this of train's."""


@dataclass
class CheckResult:
    """A check's table and its warnings (one sentence each)."""

    table: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    summary: pd.DataFrame | None = None

    def __iter__(self) -> Iterator[Any]:
        yield self.table
        yield self.warnings


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


# ---------------------------------------------------------------------------- train / val / test


def _split_audits(record: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{split: {"before": audit, "after": audit}}``; the run's own audits stand for test when the run
    recorded no split audits for it."""
    splits = {k: dict(v) for k, v in (record.get("splits") or {}).items() if isinstance(v, Mapping)}
    test = splits.setdefault("test", {})
    test.setdefault("before", record.get("before"))
    test.setdefault("after", record.get("after"))
    return splits


def split_disparities(runs: Iterable[Mapping[str, Any]], metrics: Sequence[str] = ("deo", "spd", "aed"), *,
                      train_zero: float = TRAIN_ZERO, test_gap: float = TEST_GAP, val_gain: float = VAL_GAIN,
                      transfer: float = TRANSFER) -> CheckResult:
    """Disparities of every run on the train, validation and test splits, before and after mitigation.

    Table: one row per run × metric × stage (``before``/``after``) with columns ``train``, ``val``,
    ``test`` (NaN where the run recorded no audit of that split, or where the audit could not define the
    gap) and ``undefined`` (``"train: <reason> | val: <reason>"`` for the splits where the gap is undefined, e.g.
    only one group has positives there: such a gap is n/a, not 0). Warnings: a run whose *after* training
    gap is ≤ ``train_zero`` while its test gap is ≥ ``test_gap`` and at least 3× larger; a run whose
    training gap is undefined while its test gap is ≥ ``test_gap``; a run whose validation gap fell by
    ≥ ``val_gain`` while the test gap fell by less than ``transfer`` × that.
    """
    rows, warnings = [], []
    for run in runs:
        record = full_record(run)
        if record.get("status") != "done":
            continue
        audits = _split_audits(record)
        run_id, method = record.get("id"), record.get("method")
        for metric in metrics:
            sign = 1.0 if lower_is_better(metric) else -1.0  # gains are reductions of a gap
            values = {stage: {split: audit_value((audits.get(split) or {}).get(stage), metric) for split in SPLITS}
                      for stage in ("before", "after")}
            reasons = {stage: {split: audit_undefined((audits.get(split) or {}).get(stage), [metric]).get(metric)
                               for split in SPLITS} for stage in ("before", "after")}
            for stage in ("before", "after"):
                undefined = SPLIT_SEP.join(f"{split}: {r}" for split, r in reasons[stage].items() if r)
                rows.append({"run_id": run_id, "method": method, "metric": metric, "stage": stage,
                             **values[stage], "undefined": undefined})
            after, before = values["after"], values["before"]
            train_reason = reasons["after"]["train"] or reasons["before"]["train"]
            test = after["test"] if reasons["after"]["train"] else before["test"]
            if train_reason and test >= test_gap:
                warnings.append(
                    f"Run {run_id} ({method}): the {_label(metric)} gap is undefined on the training split "
                    f"({train_reason}) but {test:.3f} on test; the training split cannot show this disparity, "
                    "which does not make it 0.")
            if sign > 0 and after["train"] <= train_zero and after["test"] >= max(test_gap, 3 * after["train"]):
                warnings.append(
                    f"Run {run_id} ({method}): the {_label(metric)} gap is {after['train']:.3f} on the training "
                    f"split but {after['test']:.3f} on test. Deep networks fit their training data almost "
                    "perfectly, so fairness measured on the training split says nothing about new data.")
            gain_val = sign * (before["val"] - after["val"])
            gain_test = sign * (before["test"] - after["test"])
            if gain_val >= val_gain and not gain_test >= transfer * gain_val:
                warnings.append(
                    f"Run {run_id} ({method}): {_label(metric)} improved by {gain_val:.3f} on the validation "
                    f"split but by {gain_test:.3f} on test ({before['test']:.3f} → {after['test']:.3f}); the "
                    "gain tuned on validation does not transfer.")
    columns = ["run_id", "method", "metric", "stage", *SPLITS, "undefined"]
    return CheckResult(pd.DataFrame(rows, columns=columns), warnings)


def split_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`split_disparities`' table as shown: each split's gap as ``0.123`` text, ``n/a`` where the
    audit could not define it (the reason is in ``undefined``), empty where the split was not audited."""
    out = table.copy()
    for split in SPLITS:
        undefined = table["undefined"].map(
            lambda text, split=split: any(part.startswith(f"{split}: ") for part in str(text).split(SPLIT_SEP)))
        out[split] = ["n/a" if flag else ("" if pd.isna(v) else f"{v:.3f}")
                      for v, flag in zip(table[split], undefined)]
    return out


# ---------------------------------------------------------------------------- gerrymandering


def _group_metrics(labels: np.ndarray, scores: np.ndarray, codes: np.ndarray, attribute: str,
                   value_names: Sequence[str], class_names: Sequence[str], threshold: float,
                   device: Any) -> tuple[pd.DataFrame, dict]:
    from fairaudit.metrics import audit_metrics

    report = audit_metrics(labels, scores=scores, sensitive=codes.reshape(-1, 1), sensitive_names=[attribute],
                           value_names={attribute: list(value_names)}, class_names=list(class_names),
                           threshold=threshold, n_boot=0, device=device, check_groups=False)
    frame = pd.DataFrame([{"group": g["attributes"][attribute], "n": g["n"],
                           **{k: g.get(k) for k in ("accuracy", "selection_rate", "tpr", "fpr")}}
                          for g in report.groups])
    return frame, report.disparities


def gerrymandering_table(before, after, attributes: pd.DataFrame, value_names: Mapping[str, Sequence[str]], *,
                         mitigated: Sequence[str] = (), threshold: float = 0.5, tol: float = WORSE,
                         min_group: int = MIN_GROUP, device: Any = "auto") -> CheckResult:
    """Per-group change of other attributes between two sets of predictions of the same samples.

    ``before`` / ``after`` are :class:`~fairaudit.audit.Predictions` (rows matched by their ``indices``);
    ``attributes`` has one column of integer codes per attribute to group by, indexed by sample index;
    ``value_names`` names the codes. Table: one row per attribute × group with ``n``, accuracy, selection
    rate, TPR and FPR before and after, ``delta_accuracy`` and ``worse`` (accuracy fell by more than
    ``tol`` in a group of at least ``min_group`` samples). ``summary``: per attribute, the accuracy gap
    (AED), DEO and SPD across its groups before and after. A warning names every worsened group and every
    attribute whose accuracy gap widened by more than ``tol``.
    """
    common = np.intersect1d(before.indices, after.indices)
    if len(common) == 0:
        raise FairauditError("the before and after predictions share no sample.")
    missing = np.setdiff1d(common, attributes.index.to_numpy())
    if len(missing):
        raise FairauditError(f"{len(missing)} predicted samples have no attribute row (e.g. sample "
                             f"{int(missing[0])}); the predictions do not belong to this split.")
    pos_b = pd.Series(np.arange(len(before.indices)), index=before.indices)[common].to_numpy()
    pos_a = pd.Series(np.arange(len(after.indices)), index=after.indices)[common].to_numpy()
    labels = before.labels[pos_b]
    if not np.array_equal(labels, after.labels[pos_a]):
        raise FairauditError("the before and after predictions disagree on the labels of the same samples.")
    rows, summary, warnings = [], [], []
    where = f" after mitigating on {', '.join(mitigated)}" if mitigated else ""
    for attribute in attributes.columns:
        codes = attributes.loc[common, attribute].to_numpy(dtype=np.int64).copy()  # writable for torch
        names = list(value_names[attribute])
        b, dis_b = _group_metrics(labels, before.scores[pos_b], codes, attribute, names, before.class_names,
                                  threshold, device)
        a, dis_a = _group_metrics(labels, after.scores[pos_a], codes, attribute, names, after.class_names,
                                  threshold, device)
        merged = b.merge(a.drop(columns="n"), on="group", suffixes=("_before", "_after"))
        merged.insert(0, "attribute", attribute)
        merged["delta_accuracy"] = merged["accuracy_after"] - merged["accuracy_before"]
        merged["worse"] = (merged["delta_accuracy"] < -tol) & (merged["n"] >= min_group)
        rows.append(merged)
        summary.append({"attribute": attribute, **{f"{k}_before": dis_b.get(k) for k in ("aed", "deo", "spd")},
                        **{f"{k}_after": dis_a.get(k) for k in ("aed", "deo", "spd")}})
        for _, g in merged[merged["worse"]].iterrows():
            warnings.append(f"{attribute}={g['group']}: accuracy fell from {g['accuracy_before']:.3f} to "
                            f"{g['accuracy_after']:.3f}{where} (n = {int(g['n'])}).")
        widened = _number(dis_a.get("aed")) - _number(dis_b.get("aed"))  # NaN (undefined) never warns
        if widened > tol:
            warnings.append(f"The accuracy gap across {attribute} groups widened from {dis_b['aed']:.3f} to "
                            f"{dis_a['aed']:.3f}{where}.")
    columns = ["attribute", "group", "n", "accuracy_before", "accuracy_after", "delta_accuracy", "worse",
               "selection_rate_before", "selection_rate_after", "tpr_before", "tpr_after", "fpr_before",
               "fpr_after"]
    table = pd.concat(rows, ignore_index=True)[columns] if rows else pd.DataFrame(columns=columns)
    return CheckResult(table, warnings, pd.DataFrame(summary))


def other_attributes(dataset: str, target: str | None = None, sensitive: Sequence[str] | str | None = None,
                     data_dir: str | None = None, **options: Any) -> list[str]:
    """The attributes of a dataset's test split other than the target and the sensitive (mitigated) ones
    (the dataset's defaults when ``target`` / ``sensitive`` are ``None``)."""
    from fairaudit.data import load_dataset

    ds = load_dataset(dataset, "test", target, sensitive, data_dir, **options)
    return [c for c in ds.attributes.columns if c != ds.target and c not in ds.sensitive]


def gerrymandering(run: Mapping[str, Any], attributes: Sequence[str] | None = None, *, tol: float = WORSE,
                   min_group: int = MIN_GROUP, device: Any = "auto") -> CheckResult:
    """:func:`gerrymandering_table` for a finished run: its saved before/after test predictions, grouped by
    every other attribute of the test split (or by ``attributes``). No inference is run."""
    from fairaudit.audit import Predictions
    from fairaudit.data import load_dataset

    record = full_record(run)
    if record.get("status") != "done":
        raise FairauditError(f"run '{record.get('id')}' is {record.get('status')}; the check needs a finished run.")
    artifacts = record.get("artifacts") or {}
    if not artifacts.get("before_predictions") or not artifacts.get("after_predictions"):
        raise FairauditError(f"run '{record.get('id')}' saved no before/after predictions.")
    spec = record.get("spec") or {}
    ds = load_dataset(record.get("dataset") or spec["dataset"], "test", spec.get("target"), spec.get("sensitive"),
                      spec.get("data_dir"), **(spec.get("data_options") or {}))
    mitigated = list(ds.sensitive)
    if attributes is None:
        attributes = [c for c in ds.attributes.columns if c != ds.target and c not in mitigated]
    unknown = [a for a in attributes if a not in ds.attributes.columns or a == ds.target]
    if unknown:
        raise FairauditError(f"dataset '{ds.name}' has no attribute '{unknown[0]}' to group by; available: "
                             f"{', '.join(c for c in ds.attributes.columns if c != ds.target)}.")
    before = Predictions.load(artifacts["before_predictions"])
    after = Predictions.load(artifacts["after_predictions"])
    threshold = ((record.get("after") or {}).get("meta") or {}).get("threshold") or 0.5
    return gerrymandering_table(before, after, ds.attributes[list(attributes)], ds.value_names,
                                mitigated=mitigated, threshold=threshold, tol=tol, min_group=min_group,
                                device=device)


# ---------------------------------------------------------------------------- data composition


def composition_table(frames: Mapping[str, pd.DataFrame], target: str, sensitive: Sequence[str],
                      value_names: Mapping[str, Sequence[str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Group counts and label balance of attribute tables per split.

    Returns ``(groups, splits)``: ``groups`` has one row per split × group (intersection of ``sensitive``)
    with ``n``, ``share`` of the split and ``base_rate`` (share of the positive class, code 1; for
    multiclass targets the share of the group's most common class); ``splits`` has one row per split with
    ``n``, ``share_gap`` (largest − smallest group share) and ``base_rate_gap``.
    """
    rows, per_split = [], []
    for split, frame in frames.items():
        n_total = len(frame)
        grouped = frame.groupby(list(sensitive), sort=True)
        for key, part in grouped:
            key = key if isinstance(key, tuple) else (key,)
            name = " & ".join(f"{a}={value_names[a][int(v)]}" for a, v in zip(sensitive, key))
            y = part[target].to_numpy()
            positive = float((y == 1).mean()) if len(value_names[target]) == 2 else float(
                np.bincount(y).max() / len(y))
            rows.append({"split": split, "group": name, "n": len(part), "share": len(part) / n_total,
                         "base_rate": positive})
        this = [r for r in rows if r["split"] == split]
        shares = [r["share"] for r in this]
        rates = [r["base_rate"] for r in this]
        per_split.append({"split": split, "n": n_total, "groups": len(this),
                          "share_gap": max(shares) - min(shares) if len(this) > 1 else 0.0,
                          "base_rate_gap": max(rates) - min(rates) if len(this) > 1 else 0.0})
    return pd.DataFrame(rows), pd.DataFrame(per_split)


def mirror_warnings(splits: pd.DataFrame, *, imbalance: float = IMBALANCE, mirror: float = MIRROR) -> list[str]:
    """Warn when the training split is imbalanced and the test split repeats that imbalance."""
    by = splits.set_index("split")
    if "train" not in by.index or "test" not in by.index:
        return []
    train, test = by.loc["train"], by.loc["test"]
    warnings = []
    for column, what in (("share_gap", "group sizes"), ("base_rate_gap", "label balance across groups")):
        if train[column] >= imbalance and abs(test[column] - train[column]) <= mirror:
            warnings.append(
                f"The test split mirrors the training split's imbalance in {what} (difference between groups "
                f"{train[column]:.2f} in train, {test[column]:.2f} in test). An audit on a test set built like "
                "the training set can hide a bias that a population composed differently would show; audit "
                "on a balanced split as well.")
    return warnings


def data_composition(dataset: str, target: str | None = None, sensitive: Sequence[str] | str | None = None,
                     data_dir: str | None = None, *, splits: Sequence[str] | None = None,
                     imbalance: float = IMBALANCE, mirror: float = MIRROR, **options: Any) -> CheckResult:
    """Group counts and label balance per split of a dataset (attribute tables only: nothing is decoded).

    ``table`` has one row per split × group, ``summary`` one row per split (see
    :func:`composition_table`); a warning fires when the training split's group-size or label-balance
    gap is ≥ ``imbalance`` and the test split's gap is within ``mirror`` of it.
    """
    from fairaudit.data import get_spec, load_dataset

    spec = get_spec(dataset)
    splits = list(splits or spec.splits)
    unknown = [s for s in splits if s not in spec.splits]
    if unknown:
        raise FairauditError(f"dataset '{dataset}' has no split '{unknown[0]}'; splits: {', '.join(spec.splits)}.")
    frames, value_names, chosen_target, chosen_sensitive = {}, {}, None, None
    for split in splits:
        ds = load_dataset(dataset, split, target, sensitive, data_dir, **options)
        frames[split] = ds.attributes
        value_names, chosen_target, chosen_sensitive = ds.value_names, ds.target, list(ds.sensitive)
    groups, per_split = composition_table(frames, chosen_target, chosen_sensitive, value_names)
    return CheckResult(groups, mirror_warnings(per_split, imbalance=imbalance, mirror=mirror), per_split)


def composition_figure(groups: pd.DataFrame, *, height: int = 360):
    """Grouped bars of each group's share of its split, with the group's base rate in the hover."""
    import plotly.express as px

    from fairaudit.views.palette import PALETTE

    fig = px.bar(groups, x="group", y="share", color="split", barmode="group", height=height,
                 color_discrete_sequence=PALETTE,
                 hover_data={"n": True, "base_rate": ":.3f", "share": ":.3f"},
                 labels={"share": "share of the split", "group": "group", "base_rate": "base rate"})
    fig.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 10}, title="Group sizes per split")
    return fig
