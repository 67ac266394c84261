"""Audit = one inference pass + the metrics engine, with timings and metadata.

Both entry points count with :class:`~fairaudit.metrics.GroupMetrics`: :func:`run_audit` feeds it batch by batch
during the inference pass, :func:`audit_predictions` feeds it the stored predictions in one go. The Poisson
bootstrap weight of a row depends only on the seed and the row's position, so the two give the same report,
intervals included, and moving the threshold slider re-audits exactly what the first pass measured.
"""

from __future__ import annotations

import time

from fairaudit.audit.inference import Predictions, predict
from fairaudit.progress import Counter
from fairaudit.data.base import FairDataset
from fairaudit.device import resolve_device
from fairaudit.metrics import AuditReport, GroupMetrics


def _group_metrics(sensitive: list[str], value_names: dict, class_names: list[str], **settings) -> GroupMetrics:
    """An empty :class:`GroupMetrics` over the ``sensitive`` attributes (every value each can take)."""
    return GroupMetrics(len(class_names), {name: value_names[name] for name in sensitive},
                        class_names=class_names, **settings)


def audit_predictions(preds: Predictions, *, threshold: float = 0.5, n_boot: int = 1000, ci_level: float = 0.95,
                      seed: int = 0, device="auto", min_group_size: int = 1, meta: dict | None = None) -> AuditReport:
    """Metrics for stored predictions: changing ``threshold`` needs no new inference."""
    start = time.perf_counter()
    metrics = _group_metrics(preds.sensitive_names, preds.value_names, preds.class_names, threshold=threshold,
                             n_boot=n_boot, ci_level=ci_level, seed=seed, device=device, min_group_size=min_group_size)
    metrics.update(preds.scores, preds.labels, preds.sensitive)
    report = _finish(metrics, preds, meta)
    report.meta["metrics_seconds"] = time.perf_counter() - start
    return report


def _finish(metrics: GroupMetrics, preds: Predictions, meta: dict | None) -> AuditReport:
    report = metrics.compute()
    report.meta.update(preds.meta)
    report.meta.update(meta or {})
    return report


def run_audit(dataset: FairDataset, model, *, threshold: float = 0.5, n_boot: int = 1000, seed: int = 0,
              device="auto", batch_size: int | None = None, num_workers: int | None = None,
              with_latents: bool = False, progress: Counter | None = None,
              meta: dict | None = None) -> tuple[AuditReport, Predictions]:
    """Audit ``model`` on ``dataset`` in one pass; returns the report and the reusable predictions.

    The metrics are counted batch by batch while the model runs (binary targets: positive when
    ``P(y=1) >= threshold``; multiclass: argmax), so the report equals ``audit_predictions`` on the returned
    predictions.
    """
    device = resolve_device(device)
    start = time.perf_counter()
    metrics = _group_metrics(list(dataset.sensitive), dataset.value_names, dataset.class_names,
                             threshold=threshold, n_boot=n_boot, seed=seed, device=device)
    binary = dataset.num_classes == 2

    def count(probs, labels, sensitive):
        metrics.update(probs[:, 1] if binary else probs, labels, sensitive)

    preds = predict(model, dataset, device=device, batch_size=batch_size, num_workers=num_workers,
                    with_latents=with_latents, progress=progress, on_batch=count)
    report = _finish(metrics, preds, {"model": getattr(model, "arch", type(model).__name__),
                                      "sensitive": list(dataset.sensitive), **(meta or {})})
    report.meta["seconds"] = time.perf_counter() - start
    report.meta["inference_seconds"] = report.meta["seconds"]  # metrics are counted inside the pass
    return report, preds
