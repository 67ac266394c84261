"""Encoding of tabular records into model features, fitted on the training split only.

Numeric columns are standardised with the training mean and standard
deviation; categorical columns are one-hot encoded with the categories seen in
training (an unseen category becomes an all-zero block). The resulting
:class:`TabularFairDataset` remembers which feature indices come from which
original column (``feature_groups``), so perturbations can respect the data
type of each column, e.g. PGD on numeric features and a category swap on
one-hot blocks (seed paper FRoC, §4.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from fairaudit.data.base import TensorFairDataset


@dataclass
class FeatureEncoder:
    """One-hot + standardisation, fitted with :meth:`fit` on training rows."""

    numeric: list[str]
    categorical: list[str]
    feature_names: list[str] = field(default_factory=list)
    feature_groups: dict[str, list[int]] = field(default_factory=dict)

    def fit(self, frame: pd.DataFrame) -> "FeatureEncoder":
        self._scaler = StandardScaler().fit(frame[self.numeric].to_numpy(dtype=np.float64)) if self.numeric else None
        self._onehot = (OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32)
                        .fit(frame[self.categorical].astype(str)) if self.categorical else None)
        names, groups = list(self.numeric), {c: [j] for j, c in enumerate(self.numeric)}
        if self._onehot is not None:
            for column, categories in zip(self.categorical, self._onehot.categories_):
                groups[column] = list(range(len(names), len(names) + len(categories)))
                names += [f"{column}={value}" for value in categories]
        self.feature_names, self.feature_groups = names, groups
        return self

    def transform(self, frame: pd.DataFrame) -> torch.Tensor:
        parts = []
        if self._scaler is not None:
            parts.append(self._scaler.transform(frame[self.numeric].to_numpy(dtype=np.float64)).astype(np.float32))
        if self._onehot is not None:
            parts.append(self._onehot.transform(frame[self.categorical].astype(str)))
        return torch.from_numpy(np.concatenate(parts, axis=1).astype(np.float32))

    @property
    def numeric_features(self) -> list[str]:
        return list(self.numeric)

    @property
    def categorical_features(self) -> list[str]:
        return list(self.categorical)


class TabularFairDataset(TensorFairDataset):
    """In-memory tabular split with the encoder's bookkeeping.

    Extra attributes: ``feature_groups`` (original column → feature indices),
    ``numeric_features`` / ``categorical_features`` (original column names)
    and ``favorable_label`` (the target code that is the desirable outcome).
    """

    def __init__(self, name: str, split: str, x: torch.Tensor, attributes: pd.DataFrame,
                 value_names: dict[str, list[str]], default_target: str, default_sensitive: Sequence[str],
                 encoder: FeatureEncoder, favorable_label: int = 1):
        self.feature_groups = {k: list(v) for k, v in encoder.feature_groups.items()}
        self.numeric_features = encoder.numeric_features
        self.categorical_features = encoder.categorical_features
        self.favorable_label = int(favorable_label)
        super().__init__(name, split, x, attributes, value_names, default_target, default_sensitive,
                         kind="tabular", feature_names=encoder.feature_names)


def encode_train_test(records: pd.DataFrame, table: pd.DataFrame, numeric: Sequence[str],
                      categorical: Sequence[str], test_fraction: float, seed: int):
    """Seeded train/test split; the encoder is fitted on the train rows only.

    Returns ``({"train": (x, table), "test": (x, table)}, encoder)``.
    """
    from fairaudit.data.loaders.common import seeded_split

    train_idx, test_idx = seeded_split(len(records), test_fraction, seed)
    encoder = FeatureEncoder(numeric, categorical).fit(records.iloc[train_idx])
    splits = {name: (encoder.transform(records.iloc[idx]), table.iloc[idx])
              for name, idx in (("train", train_idx), ("test", test_idx))}
    return splits, encoder
