"""Small in-memory tabular datasets whose group structure is known, for method effect tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from fairaudit.data.base import TensorFairDataset


def two_rules(n: int, seed: int) -> TensorFairDataset:
    """Group A (75 %) is labelled by the sign of x0, group B by the sign of x1; x2 is a noisy proxy of the
    group, which is not itself an input. One shared model serves the majority's rule better, so ERM leaves
    B the worst group."""
    rng = np.random.default_rng(seed)
    group = (rng.random(n) > 0.75).astype(np.int64)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    x[:, 2] += np.where(group == 0, 1.0, -1.0)
    y = (np.where(group == 0, x[:, 0], x[:, 1]) + 0.3 * rng.normal(size=n) > 0).astype(np.int64)
    return TensorFairDataset("two-rules", "train", torch.tensor(x), pd.DataFrame({"y": y, "group": group}),
                             {"y": ["neg", "pos"], "group": ["A", "B"]}, "y", ["group"])
