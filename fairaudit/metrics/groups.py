"""Groups from one or several sensitive attributes.

With several attributes the groups are their intersections (as fairlearn's
``MetricFrame`` does with several sensitive features); combinations that no
sample has are not groups. Groups are ordered lexicographically by their codes
in attribute order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch


@dataclass
class GroupIndex:
    """Which group every sample belongs to and how to name the groups.

    ``ids`` holds the group index of every sample (on the computation device),
    ``codes`` the ``[G, k]`` attribute codes of every group, ``names`` readable
    names such as ``"Male=1 & Young=0"`` and ``attributes`` the per-attribute
    value labels of every group.
    """

    ids: torch.Tensor
    codes: np.ndarray
    sensitive_names: list[str]
    names: list[str]
    attributes: list[dict[str, str]]

    @property
    def n_groups(self) -> int:
        return len(self.names)

    def marginal(self, j: int) -> tuple[torch.Tensor, np.ndarray]:
        """Map from each group to its value index for attribute ``j`` alone, and those values' codes."""
        values, mapping = np.unique(self.codes[:, j], return_inverse=True)
        return torch.as_tensor(mapping, dtype=torch.int64, device=self.ids.device), values


def value_label(attr: str, code: int, value_names: Mapping[str, Sequence[str]] | None) -> str:
    """The readable label of ``code`` for ``attr`` (the code itself when no name is known)."""
    labels = (value_names or {}).get(attr)
    if labels is not None and 0 <= code < len(labels):
        return str(labels[code])
    return str(code)


def describe(attrs: Sequence[str], codes: Sequence[int],
             value_names: Mapping[str, Sequence[str]] | None) -> tuple[str, dict[str, str]]:
    """Name (``"a=x & b=y"``) and ``{attr: label}`` of the group with these codes."""
    labels = {a: value_label(a, int(c), value_names) for a, c in zip(attrs, codes)}
    return " & ".join(f"{a}={v}" for a, v in labels.items()), labels


def intersection_codes(codes, cardinalities: Sequence[int]):
    """One integer per row for the intersection of its sensitive attributes: the mixed-radix number
    ``((c_1·K_2 + c_2)·K_3 + c_3)…`` of the row's codes ``c_j`` with ``K_j = cardinalities[j]`` values each.

    ``codes`` is an ``[N, k]`` (or ``[N]``) integer array or tensor; the result has its type (int64) and
    device. Every part of fairaudit that numbers intersectional groups uses this one coding, so group ``g``
    means the same cell in a method's loss, a benchmark table and the audit.
    """
    codes = codes.reshape(len(codes), -1)
    out = codes[:, 0].long() if isinstance(codes, torch.Tensor) else codes[:, 0].astype(np.int64)
    for j in range(1, len(cardinalities)):
        out = out * int(cardinalities[j]) + codes[:, j]
    return out


def _dense_ranks(code: torch.Tensor, n_codes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted distinct values of ``code`` and each element's rank among them (``unique(return_inverse=True)``).

    When the code space is small, counting is O(N) where sorting is O(N log N).
    """
    if n_codes > max(1 << 24, 4 * code.numel()):
        return torch.unique(code, return_inverse=True)
    present = torch.bincount(code, minlength=n_codes).nonzero().squeeze(1)
    rank = torch.empty(n_codes, dtype=torch.int64, device=code.device)
    rank[present] = torch.arange(present.numel(), device=code.device)
    return present, rank[code]


def index_groups(sensitive: torch.Tensor, sensitive_names: Sequence[str],
                 value_names: Mapping[str, Sequence[str]] | None = None) -> GroupIndex:
    """Intersectional groups of the non-negative integer codes ``sensitive`` ``[N, k]``."""
    cards = (sensitive.amax(0) + 1).tolist()
    if float(np.prod(np.asarray(cards, dtype=np.float64))) < 2.0 ** 62:
        # One mixed-radix integer per row: a 1-D unique is an order of magnitude faster than unique(dim=0).
        code = intersection_codes(sensitive, cards)
        present, ids = _dense_ranks(code, int(np.prod(cards)))
        codes = np.zeros((present.numel(), len(cards)), dtype=np.int64)
        rest = present.cpu().numpy()
        for j in range(len(cards) - 1, -1, -1):
            codes[:, j] = rest % cards[j]
            rest = rest // cards[j]
    else:
        present, ids = torch.unique(sensitive, dim=0, return_inverse=True)
        codes = present.cpu().numpy()
    names, attributes = [], []
    for row in codes:
        name, labels = describe(sensitive_names, row, value_names)
        names.append(name)
        attributes.append(labels)
    return GroupIndex(ids=ids, codes=codes, sensitive_names=list(sensitive_names), names=names, attributes=attributes)
