"""The dataset contract shared by every loader.

A :class:`FairDataset` holds a small table of integer-coded labels and
attributes (one row per sample, cheap to keep in memory) and decodes inputs
lazily, one sample at a time, so a dataset of any size streams through a
``DataLoader``. After :meth:`FairDataset.select` names the target and the
sensitive attributes, ``ds[i]`` yields ``(x, y, s, i)``:

* ``x`` – float32 tensor, ``(C, H, W)`` in ``[0, 1]`` for images or ``(D,)`` for
  tabular features;
* ``y`` – int64 scalar target label;
* ``s`` – int64 tensor ``(k,)`` with one code per sensitive attribute;
* ``i`` – the sample's index in this split.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from fairaudit.errors import DatasetError


class FairDataset(Dataset):
    """Base class: subclasses fill the fields below and implement :meth:`load_input`.

    Attributes
    ----------
    name, split:
        Registry name and split (``train``, ``val`` or ``test``).
    kind:
        ``"image"`` or ``"tabular"``.
    input_shape:
        Shape of one ``x`` (``(3, 64, 64)`` or ``(D,)``).
    attributes:
        ``DataFrame`` of integer codes ``0..K-1``, one column per label or
        attribute that can serve as target or sensitive attribute.
    value_names:
        For each column, the human-readable name of each code.
    feature_names:
        Tabular datasets only: the name of each input feature.
    """

    name: str = "dataset"
    kind: str = "image"
    region_names: tuple[str, ...] = ()

    def __init__(self, split: str, attributes: pd.DataFrame, value_names: dict[str, list[str]],
                 input_shape: Sequence[int], default_target: str, default_sensitive: Sequence[str],
                 feature_names: Sequence[str] | None = None):
        self.split = split
        self.attributes = attributes.reset_index(drop=True).astype("int64")
        self.value_names = {k: list(map(str, v)) for k, v in value_names.items()}
        self.input_shape = tuple(int(d) for d in input_shape)
        self.feature_names = list(feature_names) if feature_names is not None else None
        self.default_target = default_target
        self.default_sensitive = list(default_sensitive)
        self._codes = self.attributes.to_numpy(dtype=np.int64)
        self._col = {c: j for j, c in enumerate(self.attributes.columns)}
        self.select(default_target, default_sensitive)

    # -- selection -----------------------------------------------------------
    def select(self, target: str | None = None, sensitive: Sequence[str] | str | None = None) -> "FairDataset":
        """Name the target and sensitive attributes (validated); returns ``self``."""
        target = target or self.default_target
        if sensitive is None:
            sensitive = self.default_sensitive
        if isinstance(sensitive, str):
            sensitive = [s for s in sensitive.split(",") if s]
        sensitive = list(sensitive)
        cols = list(self.attributes.columns)
        for name in [target, *sensitive]:
            if name not in self._col:
                raise DatasetError(f"dataset '{self.name}' has no attribute '{name}'; available: {', '.join(cols)}.")
        if not sensitive:
            raise DatasetError("at least one sensitive attribute is required.")
        if target in sensitive:
            raise DatasetError(f"'{target}' cannot be both the target and a sensitive attribute.")
        self.target = target
        self.sensitive = sensitive
        self._t = self._col[target]
        self._s = [self._col[s] for s in sensitive]
        return self

    @property
    def num_classes(self) -> int:
        return len(self.value_names[self.target])

    @property
    def class_names(self) -> list[str]:
        return self.value_names[self.target]

    @property
    def targets(self) -> np.ndarray:
        return self._codes[:, self._t]

    @property
    def sensitive_codes(self) -> np.ndarray:
        return self._codes[:, self._s]

    # -- access --------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._codes)

    def load_input(self, i: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, i: int):
        i = int(i)
        row = self._codes[i]
        return (self.load_input(i), torch.tensor(row[self._t], dtype=torch.int64),
                torch.as_tensor(row[self._s], dtype=torch.int64), i)

    def region_mask(self, i: int, region: str) -> np.ndarray | None:
        """Binary ``(H, W)`` mask of where ``region`` is visible in image ``i``, if known."""
        return None

    def describe(self) -> dict:
        return {"name": self.name, "split": self.split, "kind": self.kind, "n": len(self),
                "input_shape": list(self.input_shape), "target": self.target,
                "sensitive": list(self.sensitive), "classes": self.class_names}


class TensorFairDataset(FairDataset):
    """A fully in-memory dataset (small tabular data and test fixtures)."""

    def __init__(self, name: str, split: str, x: torch.Tensor, attributes: pd.DataFrame,
                 value_names: dict[str, list[str]], default_target: str, default_sensitive: Sequence[str],
                 kind: str = "tabular", feature_names: Sequence[str] | None = None):
        self.name = name
        self.kind = kind
        self.x = x.float()
        super().__init__(split, attributes, value_names, tuple(x.shape[1:]), default_target,
                         default_sensitive, feature_names)

    def load_input(self, i: int) -> torch.Tensor:
        return self.x[i]
