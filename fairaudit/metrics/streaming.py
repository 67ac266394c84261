"""Streaming group metrics for any evaluation loop: :class:`GroupMetrics`.

Each batch adds to one confusion-count tensor ``[G', C, C]`` over every possible
group (``G'`` = product of the attributes' value counts) and, with a bootstrap,
to its Poisson-bootstrap replicates ``[B, G', C, C]``. Nothing per sample is
kept, so memory does not grow with the data, and the state of several
processes is summed with one ``all_reduce`` per tensor::

    metrics = GroupMetrics(2, {"Male": ["no", "yes"]}, device="cuda", row_offset=rank << 40)
    for x, y, s in loader:
        metrics.update(model(x).softmax(1), y, s)
    for tensor in metrics.state_dict()["tensors"].values():   # the live state, summed in place
        torch.distributed.all_reduce(tensor)
    report = metrics.compute()  # an AuditReport, as audit_predictions returns

The report is built by the same code as :func:`~fairaudit.metrics.audit_metrics`
(:func:`~fairaudit.metrics.audit.report_from_counts`), so every rate, disparity
and undefined-gap reason is the batch audit's.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from fairaudit.device import resolve_device
from fairaudit.errors import MetricInputError
from fairaudit.metrics.audit import _check_settings, check_counts, report_from_counts
from fairaudit.metrics.bootstrap import counter_poisson_weights, make_generator, poisson_confusions_cells
from fairaudit.metrics.confusion import cell_ids, weighted_confusion_counts
from fairaudit.metrics.groups import GroupIndex, describe
from fairaudit.metrics.inputs import prepare_inputs
from fairaudit.metrics.report import AuditReport

BOOTSTRAPS = ("rows", "cells")
CHUNK_WEIGHTS = 1 << 22
"""Most bootstrap weights drawn at once in :meth:`GroupMetrics.update` (32 MiB as float64)."""


class GroupMetrics:
    """Per-group confusion counts accumulated batch by batch, reported as an :class:`AuditReport`.

    Parameters
    ----------
    num_classes:
        Number of target classes ``C`` (labels are codes ``0..C-1``).
    group_names:
        ``{attribute: [label of code 0, label of code 1, ...]}`` for one or several sensitive attributes
        (several give intersectional groups, as in :func:`~fairaudit.metrics.audit_metrics`), or a plain list
        of labels for one attribute named ``"group"``. The lists fix how many codes each attribute has.
    device:
        ``"auto"``, ``"cpu"`` or ``"cuda"``: where the counts live and every batch is counted (float64).
    threshold, class_names, n_boot, ci_level, seed, min_group_size, check_groups:
        As in :func:`~fairaudit.metrics.audit_metrics`.
    bootstrap:
        ``"rows"``: every row gets an independent Poisson(1) weight per resample, drawn at :meth:`update`
        from a counter-based generator (the weight is a function of ``seed``, the row's index in the stream
        and the resample index only). ``"cells"``: nothing is drawn while streaming; :meth:`compute` draws each
        confusion cell as Poisson(count), exactly as ``audit_metrics(..., bootstrap="cells")`` does.
    row_offset:
        Index of the first row this object sees (rows are numbered from it in update order). Processes that
        stream disjoint parts of a dataset with the same ``seed`` must use disjoint row ranges, e.g.
        ``row_offset=rank << 40``, or their rows would share bootstrap weights.

    What equals what (tested):

    * Point estimates, group sizes and confusion matrices of :meth:`compute` over any batching equal
      ``audit_predictions`` / ``audit_metrics`` on the concatenated data (to 1e-12; the counts are
      identical integers, so in practice exactly), as do the undefined-gap reasons.
    * With ``bootstrap="rows"`` the intervals do not depend on the batching, on the device or on splitting the
      stream over objects that are then :meth:`merge`-d (with each part's ``row_offset`` set to its first
      row's index): all give the same replicates. They are *not* the draws of ``audit_metrics(...,
      bootstrap="rows")``, whose generator cannot be split into batches; the weights have the same
      Poisson(1) distribution, so the two intervals differ by Monte-Carlo error only.
    * With ``bootstrap="cells"`` the whole report, intervals included, equals ``audit_metrics(...,
      bootstrap="cells")`` with the same seed on the same device.

    Groups that received no row are not groups of the report (as in the batch audit), so group indices of the
    report are those of the present groups, ordered by their codes.
    """

    def __init__(self, num_classes: int, group_names: Mapping[str, Sequence[str]] | Sequence[str], *,
                 device: str | torch.device = "auto", threshold: float = 0.5,
                 class_names: Sequence[str] | None = None, n_boot: int = 1000, ci_level: float = 0.95,
                 seed: int = 0, bootstrap: str = "rows", min_group_size: int = 1, check_groups: bool = True,
                 row_offset: int = 0):
        if int(num_classes) != num_classes or num_classes < 2:
            raise MetricInputError(f"num_classes must be a whole number >= 2, got {num_classes!r}.")
        if bootstrap not in BOOTSTRAPS:
            raise MetricInputError(f"bootstrap must be one of {', '.join(BOOTSTRAPS)}, got {bootstrap!r}.")
        _check_settings(n_boot, ci_level, min_group_size, "rows")
        if isinstance(group_names, Mapping):
            names = {str(a): [str(v) for v in labels] for a, labels in group_names.items()}
        else:
            names = {"group": [str(v) for v in group_names]}
        if not names or any(len(v) == 0 for v in names.values()):
            raise MetricInputError("group_names must give at least one attribute with at least one value label.")
        self.num_classes = int(num_classes)
        self.value_names = names
        self.sensitive_names = list(names)
        self.cards = [len(v) for v in names.values()]
        self.n_cells = int(np.prod(self.cards))
        self.device = resolve_device(device)
        self.threshold, self.n_boot, self.ci_level = threshold, int(n_boot), float(ci_level)
        self.seed, self.bootstrap, self.row_offset = int(seed), bootstrap, int(row_offset)
        self.min_group_size, self.check_groups = int(min_group_size), bool(check_groups)
        self.class_names = ([str(c) for c in class_names] if class_names is not None
                            else [str(c) for c in range(self.num_classes)])
        if len(self.class_names) != self.num_classes:
            raise MetricInputError(f"{len(self.class_names)} class names were given for {num_classes} classes.")
        self.reset()

    # ----------------------------------------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget every row: zero counts, row counter back to ``row_offset``."""
        shape = (self.n_cells, self.num_classes, self.num_classes)
        self.confusion = torch.zeros(shape, dtype=torch.float64, device=self.device)
        self.replicates = (torch.zeros((self.n_boot, *shape), dtype=torch.float64, device=self.device)
                           if self.n_boot > 0 and self.bootstrap == "rows" else None)
        self.rows = self.row_offset
        self.prediction_rule: str | None = None

    def state_dict(self) -> dict[str, Any]:
        """``{"tensors": {"confusion", ["replicates"]}, "rows", "prediction"}``.

        The tensors are the live state, not copies: ``torch.distributed.all_reduce`` on each of them (sum, the
        default) turns every process's object into the whole dataset's. Copy them to keep a snapshot.
        """
        tensors = {"confusion": self.confusion}
        if self.replicates is not None:
            tensors["replicates"] = self.replicates
        return {"tensors": tensors, "rows": self.rows, "prediction": self.prediction_rule}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` of an object with the same settings."""
        tensors = state["tensors"]
        mine = self.state_dict()["tensors"]
        if set(tensors) != set(mine) or any(tuple(tensors[k].shape) != tuple(mine[k].shape) for k in mine):
            raise MetricInputError("this state was saved by a GroupMetrics with other classes, groups or bootstrap.")
        self.confusion = tensors["confusion"].to(self.device, torch.float64).clone()
        if self.replicates is not None:
            self.replicates = tensors["replicates"].to(self.device, torch.float64).clone()
        self.rows, self.prediction_rule = int(state["rows"]), state.get("prediction")

    def merge(self, other: "GroupMetrics") -> "GroupMetrics":
        """Add ``other``'s counts (and replicates) to this object's; returns ``self``. Settings must match.

        The row counter of ``self`` is unchanged: give the parts disjoint ``row_offset`` ranges.
        """
        same = (other.num_classes == self.num_classes and other.value_names == self.value_names
                and other.n_boot == self.n_boot and other.bootstrap == self.bootstrap and other.seed == self.seed)
        if not same:
            raise MetricInputError("only GroupMetrics with the same classes, groups, bootstrap and seed can merge.")
        self._check_rule(other.prediction_rule)
        self.confusion += other.confusion.to(self.device)
        if self.replicates is not None:
            self.replicates += other.replicates.to(self.device)
        return self

    def _check_rule(self, rule: str | None) -> None:
        if rule is None:
            return
        if self.prediction_rule is not None and rule != self.prediction_rule:
            raise MetricInputError(f"batches were decided by '{self.prediction_rule}' and now by '{rule}'; "
                                   "pass the same kind of predictions (hard labels or scores) to every update.")
        self.prediction_rule = rule

    # ----------------------------------------------------------------------------------------------- update
    def update(self, preds_or_scores: Any, target: Any, groups: Any) -> None:
        """Count one batch.

        ``preds_or_scores``: integer (or boolean) predictions ``(n,)``, binary scores P(y=1) ``(n,)`` (float), or
        probabilities ``(n, C)`` (binary: positive when ``P(y=1) >= threshold``; multiclass: argmax).
        ``target``: labels ``(n,)``; ``groups``: codes ``(n,)`` or ``(n, k)`` of the ``k`` attributes.
        Tensors may live on any device; an empty batch is ignored.
        """
        t = preds_or_scores.detach() if isinstance(preds_or_scores, torch.Tensor) else np.asarray(preds_or_scores)
        if len(t) == 0:
            return
        scores, y_pred = (None, t) if not _is_floating(t) else (t, None)
        inp = prepare_inputs(target, scores, y_pred, groups, self.sensitive_names, self.class_names,
                             self.threshold, self.device)
        top = torch.tensor(self.cards, device=self.device) - 1
        over = inp.sensitive > top
        if bool(over.any()):
            row, j = (int(v) for v in over.nonzero()[0])
            raise MetricInputError(f"group code {int(inp.sensitive[row, j])} of '{self.sensitive_names[j]}' in row "
                                   f"{row} has no label; group_names gives {self.cards[j]} value(s).")
        self._check_rule(inp.prediction_rule)
        code = inp.sensitive[:, 0]
        for j in range(1, len(self.cards)):
            code = code * self.cards[j] + inp.sensitive[:, j]
        cells = cell_ids(code, inp.y_true, inp.y_pred, self.num_classes)
        flat = self.confusion.view(-1)
        flat.index_add_(0, cells, torch.ones_like(cells, dtype=torch.float64))
        n = cells.numel()
        if self.replicates is not None:
            step = max(1, CHUNK_WEIGHTS // max(self.n_boot, 1))
            reps = self.replicates.view(self.n_boot, -1)
            for start in range(0, n, step):
                part = cells[start:start + step]
                rows = torch.arange(self.rows + start, self.rows + start + part.numel(), dtype=torch.int64,
                                    device=self.device)
                weights = counter_poisson_weights(self.seed, rows, self.n_boot)
                reps += weighted_confusion_counts(part, weights, self.n_cells, self.num_classes).view(self.n_boot, -1)
        self.rows += n

    # ----------------------------------------------------------------------------------------------- compute
    def compute(self, meta: Mapping[str, Any] | None = None) -> AuditReport:
        """The :class:`AuditReport` of every row counted so far (the object ``audit_predictions`` returns)."""
        from fairaudit.seeding import run_metadata

        sizes_all = self.confusion.sum((-2, -1))
        present = torch.nonzero(sizes_all > 0).squeeze(1)
        if present.numel() == 0:
            raise MetricInputError("no row was counted; call update() with at least one batch before compute().")
        conf = self.confusion[present]
        present_codes = present.cpu().numpy()
        codes = np.zeros((present_codes.size, len(self.cards)), dtype=np.int64)
        rest = present_codes.copy()
        for j in range(len(self.cards) - 1, -1, -1):
            codes[:, j], rest = rest % self.cards[j], rest // self.cards[j]
        labelled = [describe(self.sensitive_names, row, self.value_names) for row in codes]
        index = GroupIndex(ids=present, codes=codes, sensitive_names=list(self.sensitive_names),
                           names=[n for n, _ in labelled], attributes=[a for _, a in labelled])
        sizes = check_counts(index, conf, self.min_group_size, self.check_groups)
        replicates = None
        if self.n_boot > 0:
            if self.bootstrap == "rows":
                replicates = self.replicates[:, present]
            else:
                replicates = poisson_confusions_cells(conf, self.n_boot, make_generator(self.seed, self.device))
        rule = self.prediction_rule or "y_pred"
        settings = {
            "threshold": float(self.threshold) if rule.startswith("scores") else None, "prediction": rule,
            "n_boot": self.n_boot, "ci_level": self.ci_level, "seed": self.seed,
            "bootstrap": "streamed-rows" if self.bootstrap == "rows" else "cells", "device": str(self.device),
        }
        report = report_from_counts(conf, replicates, index, sizes, self.class_names, self.ci_level,
                                    self.value_names, settings, self.min_group_size)
        report.meta.update(run_metadata(self.seed, report.meta["device"]))
        report.meta.update(meta or {})
        return report


def _is_floating(t: Any) -> bool:
    """Floating-point values are scores or probabilities; integer (or boolean) values are hard predictions."""
    if isinstance(t, torch.Tensor):
        return t.is_floating_point()
    return np.asarray(t).dtype.kind == "f"
